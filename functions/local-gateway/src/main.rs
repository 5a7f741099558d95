//! `make dev`: the whole service on one machine, against LocalStack, with a demo storage unit.
//! Serves every route on http://127.0.0.1:$PORT (3000 by default) and runs the worker.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_sqs::types::QueueAttributeName;
use lambda_http::{Body, Request, Response};
use local_gateway::{PollSettings, api_routes, poll_queue, spawn_server};
use reprocess_core::config::UnitConfig;
use reprocess_core::runtime::{Backends, Settings, init_tracing};
use reprocess_core::{ItemRef, Key, Scope, StorageUnit};
use serde_json::{Value, json};
use tokio::sync::watch;
use tracing::info;

const DEMO_UNIT: &str = "demo";
const DEMO_DOWNSTREAM_QUEUE: &str = "reprocess-demo-downstream";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    init_tracing();
    let port: u16 = std::env::var("PORT").ok().and_then(|port| port.parse().ok()).unwrap_or(3000);
    let settings = Settings::from_env()?;
    let backends = Backends::from_env().await?;

    let downstream = seed_demo(&backends, port).await?;
    info!(storage_unit = DEMO_UNIT, downstream_queue = %downstream, "demo storage unit ready");

    let (stop, stopped) = watch::channel(false);
    let ports = Arc::new(backends.ports.clone());
    let router = api_routes(ports).route("dev/webhook", demo_webhook);
    let address = spawn_server(SocketAddr::from(([127, 0, 0, 1], port)), router, stopped.clone()).await?;

    let worker = Arc::new(reprocess_worker::build_worker(&backends, reqwest::Client::new()));
    let poll = PollSettings {
        queue_url: settings.work_queue_url.clone(),
        batch_size: 10,
        visibility_timeout: queue_visibility_timeout(&backends.sqs, &settings.work_queue_url).await,
        wait_time: Duration::from_secs(2),
    };
    let poller = tokio::spawn(poll_queue(backends.sqs.clone(), worker, poll, stopped));
    info!("serving every route on http://{address}; the worker consumes the work queue; Ctrl-C stops");

    tokio::signal::ctrl_c().await?;
    info!("stopping");
    stop.send_replace(true);
    let _ = tokio::time::timeout(Duration::from_secs(5), poller).await;
    Ok(())
}

/// The visibility timeout the event source mapping would see: the queue's own.
async fn queue_visibility_timeout(sqs: &aws_sdk_sqs::Client, queue_url: &str) -> Duration {
    let attributes = sqs
        .get_queue_attributes()
        .queue_url(queue_url)
        .attribute_names(QueueAttributeName::VisibilityTimeout)
        .send()
        .await
        .ok()
        .and_then(|output| output.attributes);
    let seconds = attributes
        .and_then(|attributes| {
            attributes.get(&QueueAttributeName::VisibilityTimeout).and_then(|value| value.parse().ok())
        })
        .unwrap_or(360);
    Duration::from_secs(seconds)
}

/// A storage unit a newcomer can watch working: `index` posts to this server's demo webhook,
/// which logs what it receives; `ocr` sends to a LocalStack queue.
async fn seed_demo(backends: &Backends, port: u16) -> Result<String, Box<dyn std::error::Error>> {
    let downstream =
        backends.sqs.create_queue().queue_name(DEMO_DOWNSTREAM_QUEUE).send().await?.queue_url.unwrap_or_default();
    let unit = StorageUnit::parse(DEMO_UNIT)?;
    let config = UnitConfig::from_json(
        json!({
            "reprocessQueue": {"enabled": true},
            "reprocessJob": {"running": true},
            "maxAttempts": 5,
            "leaseSeconds": 60,
            "modules": {
                "index": [{"module": "webhook", "settings": {"url": format!("http://127.0.0.1:{port}/dev/webhook")}}],
                "ocr": [{"module": "sqs", "settings": {"queueUrl": downstream}}]
            }
        })
        .to_string()
        .as_bytes(),
    )?;
    backends.ports.config.put(&unit, &config).await?;
    let documents = [
        ("index", "doc-1", json!({"title": "Getting started", "body": "Store, configure, reprocess."})),
        ("index", "doc-2", json!({"title": "Leases", "body": "One worker at a time."})),
        ("index", "reports/2026/q4", json!({"title": "A key with slashes"})),
        ("ocr", "doc-1", json!({"pages": 2, "text": "scanned text"})),
        ("ocr", "doc-2", json!({"pages": 1, "text": "more scanned text"})),
    ];
    for (scope, key, content) in documents {
        let item = ItemRef::new(unit.clone(), Scope::parse(scope)?, Key::parse(key)?);
        backends.ports.content.put(&item, &content, false).await?;
    }
    Ok(downstream)
}

/// The demo's webhook: logs which document it received (never its content) and accepts it.
async fn demo_webhook(request: Request) -> Response<Body> {
    let event: Value = match request.body() {
        Body::Binary(bytes) => serde_json::from_slice(bytes).unwrap_or_default(),
        Body::Text(text) => serde_json::from_str(text).unwrap_or_default(),
        _ => Value::Null,
    };
    let idempotency_key = request.headers().get("idempotency-key").and_then(|value| value.to_str().ok()).unwrap_or("");
    info!(
        storage_unit = event["storageUnit"].as_str().unwrap_or(""),
        key = event["key"].as_str().unwrap_or(""),
        scope = event["scope"].as_str().unwrap_or(""),
        idempotency_key,
        "demo webhook: Process event received"
    );
    Response::builder().status(200).body(Body::Empty).expect("static response")
}
