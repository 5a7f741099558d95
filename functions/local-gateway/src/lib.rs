//! The service on one machine: the API functions' handlers behind a plain HTTP server, and the
//! worker's handler fed from the SQS queue the way Lambda's event source mapping feeds it
//! (batches, partial batch failures, the visibility timeout as the retry delay). The handlers
//! are the very ones deployed; only the transport differs. Plain HTTP requests carry no path
//! parameters, so the handlers decode the raw path, as behind a Lambda Function URL.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use lambda_http::{Body, Request, Response};
use lambda_runtime::{Context, LambdaEvent};
use reprocess_core::Ports;
use reprocess_core::worker::Worker;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{info, warn};

type BoxFuture = Pin<Box<dyn Future<Output = Response<Body>> + Send>>;
type Handler = Arc<dyn Fn(Request) -> BoxFuture + Send + Sync>;

/// Routes by the first two path segments, as the HTTP API's routes do.
#[derive(Clone, Default)]
pub struct Router {
    routes: Vec<(&'static str, Handler)>,
}

impl Router {
    pub fn route<F, Fut>(mut self, prefix: &'static str, handler: F) -> Self
    where
        F: Fn(Request) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Response<Body>> + Send + 'static,
    {
        self.routes.push((prefix, Arc::new(move |request| Box::pin(handler(request)))));
        self
    }

    async fn dispatch(&self, request: Request) -> Response<Body> {
        let path = request.uri().path().trim_start_matches('/').to_owned();
        let handler = self
            .routes
            .iter()
            .find(|(prefix, _)| path.strip_prefix(prefix).is_some_and(|rest| rest.is_empty() || rest.starts_with('/')));
        match handler {
            Some((_, handler)) => handler(request).await,
            None => Response::builder()
                .status(404)
                .header("content-type", "application/json")
                .body(Body::Text(r#"{"message":"NOT_FOUND","detail":"no route matches this path"}"#.into()))
                .expect("static response"),
        }
    }
}

/// Every API function of the service, over one set of ports, routed as the HTTP API routes.
pub fn api_routes(ports: Arc<Ports>) -> Router {
    macro_rules! routes {
        ($router:expr, $($prefix:expr => $handler:path),+ $(,)?) => {{
            let router = $router;
            $(
                let handler_ports = ports.clone();
                let router = router.route($prefix, move |request| {
                    let ports = handler_ports.clone();
                    async move { $handler(&ports, request).await }
                });
            )+
            router
        }};
    }
    routes!(Router::default(),
        reprocess_key::ROUTE => reprocess_key::handle,
        reprocess_keys::ROUTE => reprocess_keys::handle,
        reprocess_all::ROUTE => reprocess_all::handle,
        reprocess_reset::ROUTE => reprocess_reset::handle,
        reprocess_status::ROUTE => reprocess_status::handle,
        admin::ROUTE => admin::handle,
        transaction_execute::ROUTE => transaction_execute::handle,
        access_fetch::ROUTE => access_fetch::handle,
    )
}

async fn to_lambda_request(request: hyper::Request<hyper::body::Incoming>) -> Result<Request, hyper::Error> {
    let (parts, body) = request.into_parts();
    let bytes = body.collect().await?.to_bytes();
    let body = if bytes.is_empty() { Body::Empty } else { Body::Binary(bytes.to_vec()) };
    Ok(Request::from_parts(parts, body))
}

fn to_hyper_response(response: Response<Body>) -> hyper::Response<Full<Bytes>> {
    let (parts, body) = response.into_parts();
    let bytes = match body {
        Body::Text(text) => Bytes::from(text),
        Body::Binary(bytes) => Bytes::from(bytes),
        _ => Bytes::new(),
    };
    hyper::Response::from_parts(parts, Full::new(bytes))
}

/// Serves `router` on `listener` until `shutdown` turns true.
pub async fn serve(listener: TcpListener, router: Router, mut shutdown: watch::Receiver<bool>) {
    let router = Arc::new(router);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.wait_for(|stop| *stop) => return,
        };
        let (stream, _) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                warn!(%error, "connection not accepted");
                continue;
            }
        };
        let router = router.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let router = router.clone();
                async move {
                    let request = to_lambda_request(request).await?;
                    Ok::<_, hyper::Error>(to_hyper_response(router.dispatch(request).await))
                }
            });
            if let Err(error) = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await {
                warn!(%error, "connection ended with an error");
            }
        });
    }
}

/// Binds an address and serves on it; answers the address bound (port 0 picks a free one).
pub async fn spawn_server(
    address: SocketAddr,
    router: Router,
    shutdown: watch::Receiver<bool>,
) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(address).await?;
    let bound = listener.local_addr()?;
    tokio::spawn(serve(listener, router, shutdown));
    Ok(bound)
}

/// How the worker is fed, as an event source mapping would be configured.
#[derive(Debug, Clone)]
pub struct PollSettings {
    pub queue_url: String,
    pub batch_size: i32,
    /// How long a delivered message stays hidden; a failed message comes back after it.
    pub visibility_timeout: Duration,
    pub wait_time: Duration,
}

/// Receives batches from the queue, hands them to the worker's Lambda handler, and deletes the
/// messages its partial batch response does not name, until `shutdown` turns true.
pub async fn poll_queue(
    sqs: aws_sdk_sqs::Client,
    worker: Arc<Worker>,
    settings: PollSettings,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let polled = tokio::select! {
            polled = poll_once(&sqs, &worker, &settings) => polled,
            _ = shutdown.wait_for(|stop| *stop) => return,
        };
        if let Err(error) = polled {
            warn!(%error, "receiving from the work queue failed; retrying");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

/// One receive, one invocation of the worker's handler, one delete of what it handled.
/// Answers how many messages were received.
pub async fn poll_once(sqs: &aws_sdk_sqs::Client, worker: &Worker, settings: &PollSettings) -> Result<usize, String> {
    let output = sqs
        .receive_message()
        .queue_url(&settings.queue_url)
        .max_number_of_messages(settings.batch_size)
        .visibility_timeout(settings.visibility_timeout.as_secs() as i32)
        .wait_time_seconds(settings.wait_time.as_secs() as i32)
        .send()
        .await
        .map_err(|error| aws_sdk_sqs::error::DisplayErrorContext(&error).to_string())?;
    let messages = output.messages.unwrap_or_default();
    if messages.is_empty() {
        return Ok(0);
    }
    let received = messages.len();

    let mut event = SqsEvent::default();
    let mut receipts = Vec::with_capacity(received);
    for message in messages {
        let mut record = SqsMessage::default();
        record.message_id = message.message_id.clone();
        record.body = message.body;
        receipts.push((message.message_id.unwrap_or_default(), message.receipt_handle.unwrap_or_default()));
        event.records.push(record);
    }
    let response = reprocess_worker::handle(worker, LambdaEvent::new(event, Context::default())).await;
    let failed: Vec<String> =
        response.batch_item_failures.iter().map(|failure| failure.item_identifier.clone()).collect();
    if !failed.is_empty() {
        info!(failed = failed.len(), "messages left for a later delivery");
    }
    let done: Vec<_> = receipts.into_iter().filter(|(id, _)| !failed.contains(id)).collect();
    delete_messages(sqs, &settings.queue_url, done).await;
    Ok(received)
}

async fn delete_messages(sqs: &aws_sdk_sqs::Client, queue_url: &str, done: Vec<(String, String)>) {
    use aws_sdk_sqs::types::DeleteMessageBatchRequestEntry;
    for chunk in done.chunks(10) {
        let entries = chunk
            .iter()
            .enumerate()
            .filter_map(|(index, (_, receipt))| {
                DeleteMessageBatchRequestEntry::builder().id(index.to_string()).receipt_handle(receipt).build().ok()
            })
            .collect();
        if let Err(error) = sqs.delete_message_batch().queue_url(queue_url).set_entries(Some(entries)).send().await {
            warn!(error = %aws_sdk_sqs::error::DisplayErrorContext(&error), "deleting handled messages failed; they will be delivered again");
        }
    }
}
