//! The test bed: the deployed storage stack on LocalStack, a work queue of the test's own,
//! the real adapters, the functions' handlers and the worker's Lambda handler.
//!
//! `make test` deploys the template's tables and queues and exports their names; a test run
//! without them, or without LocalStack, fails at once rather than skipping.

pub mod events;
pub mod webhook;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_sqs::types::QueueAttributeName;
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextRef;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use local_gateway::PollSettings;
use reprocess_core::adapters::dynamo::Tables;
use reprocess_core::config::UnitConfig;
use reprocess_core::names::{ItemRef, Key, Scope, StorageUnit};
use reprocess_core::queue::QueueItem;
use reprocess_core::runtime::{Backends, Settings};
use reprocess_core::worker::Worker;
use serde_json::Value;

pub fn endpoint() -> String {
    std::env::var("AWS_ENDPOINT_URL").unwrap_or_else(|_| "http://127.0.0.1:4566".into())
}

fn stack_variable(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run the tests through `make test`, which starts LocalStack and deploys the storage stack")
    })
}

/// The SDK configuration for LocalStack: explicit endpoint, region and dummy credentials, so
/// that no client can reach a real AWS endpoint or the instance metadata service.
pub fn sdk_config() -> SdkConfig {
    SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(endpoint())
        .region(Region::new("us-east-1"))
        .credentials_provider(aws_sdk_sqs::config::SharedCredentialsProvider::new(
            aws_sdk_sqs::config::Credentials::new("test", "test", None, None, "tests"),
        ))
        .build()
}

/// Counts the HTTP requests each AWS client sends, retries included, by operation.
#[derive(Debug, Clone, Default)]
pub struct RequestCounter(Arc<Mutex<BTreeMap<String, usize>>>);

impl RequestCounter {
    pub fn take(&self) -> BTreeMap<String, usize> {
        std::mem::take(&mut self.0.lock().unwrap())
    }

    pub fn total(counts: &BTreeMap<String, usize>) -> usize {
        counts.values().sum()
    }
}

impl Intercept for RequestCounter {
    fn name(&self) -> &'static str {
        "RequestCounter"
    }

    fn read_before_transmit(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        config: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let operation = config.load::<Metadata>().map_or("unknown", |metadata| metadata.name()).to_owned();
        *self.0.lock().unwrap().entry(operation).or_default() += 1;
        Ok(())
    }
}

/// One test's world: a storage unit and a work queue (with its dead-letter queue) of its own,
/// over the stack's tables. The work queue takes the template queue's redrive policy; only its
/// visibility timeout is shortened, so that redeliveries happen within a test.
pub struct TestBed {
    pub unit: StorageUnit,
    pub backends: Backends,
    pub worker: Arc<Worker>,
    pub sqs: aws_sdk_sqs::Client,
    pub dynamo: aws_sdk_dynamodb::Client,
    pub queue_url: String,
    pub dlq_url: String,
    pub requests: RequestCounter,
    pub visibility_timeout: Duration,
}

pub const TEST_VISIBILITY_TIMEOUT: Duration = Duration::from_secs(2);

impl TestBed {
    pub async fn new() -> Self {
        Self::with_max_receive_count(None).await
    }

    /// A test bed whose dead-letter redrive happens after `max_receive_count` deliveries
    /// instead of the template's count.
    pub async fn with_max_receive_count(max_receive_count: Option<u32>) -> Self {
        let sdk = sdk_config();
        let requests = RequestCounter::default();
        let sqs_plain = aws_sdk_sqs::Client::new(&sdk);
        health_check(&sqs_plain).await;

        let suffix = uuid::Uuid::new_v4().simple().to_string();
        let (queue_url, dlq_url) = create_work_queue(&sqs_plain, &suffix[..12], max_receive_count).await;
        let settings = Settings {
            tables: Tables {
                config: stack_variable("CONFIG_TABLE"),
                content: stack_variable("CONTENT_TABLE"),
                queue: stack_variable("QUEUE_TABLE"),
            },
            work_queue_url: queue_url.clone(),
            endpoint_url: Some(endpoint()),
        };
        let dynamo = aws_sdk_dynamodb::Client::from_conf(
            aws_sdk_dynamodb::config::Builder::from(&sdk).interceptor(requests.clone()).build(),
        );
        let sqs = aws_sdk_sqs::Client::from_conf(
            aws_sdk_sqs::config::Builder::from(&sdk).interceptor(requests.clone()).build(),
        );
        let backends = Backends::from_clients(dynamo.clone(), sqs.clone(), &settings);
        let worker = Arc::new(reprocess_worker::build_worker(&backends, reqwest::Client::new()));
        Self {
            unit: StorageUnit::parse(format!("unit-{suffix}")).unwrap(),
            backends,
            worker,
            sqs,
            dynamo,
            queue_url,
            dlq_url,
            requests,
            visibility_timeout: TEST_VISIBILITY_TIMEOUT,
        }
    }

    pub fn scope(name: &str) -> Scope {
        Scope::parse(name).unwrap()
    }

    pub fn item(&self, scope: &str, key: &str) -> ItemRef {
        ItemRef::new(self.unit.clone(), Self::scope(scope), Key::parse(key).unwrap())
    }

    /// Writes the unit's configuration, validated as the admin API validates it.
    pub async fn configure(&self, document: Value) {
        let config = UnitConfig::from_json(document.to_string().as_bytes()).expect("a valid test configuration");
        self.backends.ports.config.put(&self.unit, &config).await.unwrap();
    }

    pub async fn store(&self, scope: &str, key: &str, content: Value) {
        self.backends.ports.content.put(&self.item(scope, key), &content, false).await.unwrap();
    }

    /// Stores many documents with batch writes: set-up, not the code under test.
    pub async fn store_many(&self, scope: &str, keys: impl IntoIterator<Item = String>) {
        let items: Vec<ItemRef> = keys.into_iter().map(|key| self.item(scope, &key)).collect();
        let content = self.backends.ports.content.clone();
        futures::future::join_all(items.chunks(25).map(|chunk| {
            let content = content.clone();
            let chunk = chunk.to_vec();
            async move {
                for item in chunk {
                    content.put(&item, &serde_json::json!({"n": item.key.as_str()}), false).await.unwrap();
                }
            }
        }))
        .await;
    }

    pub async fn queue_item(&self, scope: &str, key: &str) -> Option<QueueItem> {
        self.backends.ports.queue.get(&self.item(scope, key)).await.unwrap()
    }

    pub fn poll_settings(&self) -> PollSettings {
        PollSettings {
            queue_url: self.queue_url.clone(),
            batch_size: 10,
            visibility_timeout: self.visibility_timeout,
            wait_time: Duration::ZERO,
        }
    }

    /// One delivery of a batch to the worker's handler; answers how many messages it held.
    pub async fn run_worker_once(&self) -> usize {
        local_gateway::poll_once(&self.sqs, &self.worker, &self.poll_settings()).await.unwrap()
    }

    /// Feeds the worker until the queue has been empty for `quiet`, or `limit` passes.
    pub async fn run_worker_until_idle(&self, quiet: Duration, limit: Duration) -> usize {
        let started = tokio::time::Instant::now();
        let mut last_work = tokio::time::Instant::now();
        let mut handled = 0;
        while started.elapsed() < limit {
            let received = self.run_worker_once().await;
            handled += received;
            if received > 0 {
                last_work = tokio::time::Instant::now();
            } else if last_work.elapsed() >= quiet {
                break;
            } else {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        handled
    }

    /// Receives what waits in a queue without handling it (the messages come back later).
    pub async fn peek(&self, queue_url: &str, wait: Duration) -> Vec<aws_sdk_sqs::types::Message> {
        let mut messages = Vec::new();
        let started = tokio::time::Instant::now();
        loop {
            let output = self
                .sqs
                .receive_message()
                .queue_url(queue_url)
                .max_number_of_messages(10)
                .visibility_timeout(30)
                .wait_time_seconds(0)
                .send()
                .await
                .unwrap();
            let received = output.messages.unwrap_or_default();
            let empty = received.is_empty();
            messages.extend(received);
            if empty && (started.elapsed() >= wait || !messages.is_empty()) {
                return messages;
            }
            if empty {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }

    /// Sends a raw body to the work queue, as a misbehaving producer would.
    pub async fn send_raw(&self, body: &str) {
        self.sqs.send_message().queue_url(&self.queue_url).message_body(body).send().await.unwrap();
    }

    /// Every route served over plain HTTP by the local gateway; answers its base URL. The
    /// server stops when the answer's sender is dropped.
    pub async fn gateway(&self) -> Gateway {
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let router = local_gateway::api_routes(Arc::new(self.backends.ports.clone()));
        let address = local_gateway::spawn_server(std::net::SocketAddr::from(([127, 0, 0, 1], 0)), router, stopped)
            .await
            .unwrap();
        Gateway { base: format!("http://{address}"), http: reqwest::Client::new(), _stop: stop }
    }

    pub async fn queue_depth(&self, queue_url: &str) -> usize {
        let output = self
            .sqs
            .get_queue_attributes()
            .queue_url(queue_url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesDelayed)
            .send()
            .await
            .unwrap();
        output.attributes.unwrap_or_default().values().filter_map(|count| count.parse::<usize>().ok()).sum()
    }
}

pub struct Gateway {
    pub base: String,
    pub http: reqwest::Client,
    _stop: tokio::sync::watch::Sender<bool>,
}

impl Gateway {
    /// Sends a request; answers the status and the JSON body.
    pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        self.call_raw(method, path, &body.map(|body| body.to_string()).unwrap_or_default()).await
    }

    /// Sends `body` as it is, well-formed or not.
    pub async fn call_raw(&self, method: &str, path: &str, body: &str) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let response =
            self.http.request(method, format!("{}{path}", self.base)).body(body.to_owned()).send().await.unwrap();
        let status = response.status().as_u16();
        (status, serde_json::from_slice(&response.bytes().await.unwrap()).unwrap_or(Value::Null))
    }
}

async fn health_check(sqs: &aws_sdk_sqs::Client) {
    let reachable = tokio::time::timeout(Duration::from_secs(10), sqs.list_queues().max_results(1).send()).await;
    match reachable {
        Ok(Ok(_)) => {}
        other => panic!("LocalStack does not answer on {}: {other:?}. Run the tests through `make test`.", endpoint()),
    }
}

/// A work queue shaped like the template's: same redrive to a dead-letter queue of its own.
async fn create_work_queue(
    sqs: &aws_sdk_sqs::Client,
    suffix: &str,
    max_receive_count: Option<u32>,
) -> (String, String) {
    let template_queue = stack_variable("WORK_QUEUE_URL");
    let template = sqs
        .get_queue_attributes()
        .queue_url(&template_queue)
        .attribute_names(QueueAttributeName::All)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap_or_default();
    let redrive: Value = serde_json::from_str(
        template.get(&QueueAttributeName::RedrivePolicy).expect("the template's queue has a redrive policy"),
    )
    .unwrap();
    let template_receives =
        redrive["maxReceiveCount"].as_u64().or_else(|| redrive["maxReceiveCount"].as_str()?.parse().ok()).unwrap();

    let dlq_url = sqs.create_queue().queue_name(format!("test-dlq-{suffix}")).send().await.unwrap().queue_url.unwrap();
    let dlq_arn = sqs
        .get_queue_attributes()
        .queue_url(&dlq_url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap()
        .remove(&QueueAttributeName::QueueArn)
        .unwrap();
    let policy = serde_json::json!({
        "deadLetterTargetArn": dlq_arn,
        "maxReceiveCount": max_receive_count.map_or(template_receives, u64::from),
    });
    let queue_url = sqs
        .create_queue()
        .queue_name(format!("test-work-{suffix}"))
        .attributes(QueueAttributeName::RedrivePolicy, policy.to_string())
        .attributes(QueueAttributeName::VisibilityTimeout, TEST_VISIBILITY_TIMEOUT.as_secs().to_string())
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    (queue_url, dlq_url)
}
