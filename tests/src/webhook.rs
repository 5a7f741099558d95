//! A webhook receiver for tests: records each request and answers scripted statuses.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpListener;

#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub idempotency_key: String,
    pub headers: hyper::HeaderMap,
    pub body: Value,
    pub at: std::time::Instant,
}

/// What the receiver answers, in order; the last answer repeats.
#[derive(Debug, Clone)]
pub enum Answer {
    Status(u16),
    /// 200 with `{"content": ...}`: the module passes changed content on.
    Content(Value),
    /// Answers after a delay, to outlast a client's timeout.
    Slow(Duration),
}

#[derive(Clone)]
pub struct Webhook {
    pub url: String,
    received: Arc<Mutex<Vec<Received>>>,
}

impl Webhook {
    pub async fn start(answers: Vec<Answer>) -> Self {
        let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let received = Arc::new(Mutex::new(Vec::new()));
        let answers = Arc::new(Mutex::new(VecDeque::from(answers)));
        let log = received.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (log, answers) = (log.clone(), answers.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                        let (log, answers) = (log.clone(), answers.clone());
                        async move {
                            let (parts, body) = request.into_parts();
                            let bytes = body.collect().await?.to_bytes();
                            log.lock().unwrap().push(Received {
                                path: parts.uri.path().to_owned(),
                                idempotency_key: parts
                                    .headers
                                    .get("idempotency-key")
                                    .and_then(|value| value.to_str().ok())
                                    .unwrap_or_default()
                                    .to_owned(),
                                headers: parts.headers.clone(),
                                body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
                                at: std::time::Instant::now(),
                            });
                            let answer = {
                                let mut answers = answers.lock().unwrap();
                                if answers.len() > 1 { answers.pop_front() } else { answers.front().cloned() }
                            };
                            let (status, body) = match answer.unwrap_or(Answer::Status(200)) {
                                Answer::Status(status) => (status, String::new()),
                                Answer::Content(content) => (200, serde_json::json!({"content": content}).to_string()),
                                Answer::Slow(delay) => {
                                    tokio::time::sleep(delay).await;
                                    (200, String::new())
                                }
                            };
                            let response =
                                hyper::Response::builder().status(status).body(Full::new(Bytes::from(body))).unwrap();
                            Ok::<_, hyper::Error>(response)
                        }
                    });
                    let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
                });
            }
        });
        Self { url, received }
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
}
