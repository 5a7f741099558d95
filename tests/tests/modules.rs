//! The built-in modules, observed for real: a webhook receiver in the test, a LocalStack queue.

use std::time::Duration;

use integration_tests::TestBed;
use integration_tests::webhook::{Answer, Webhook};
use reprocess_core::queue::ItemState;
use serde_json::{Value, json};

const QUIET: Duration = Duration::from_secs(2);
const LIMIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread")]
async fn the_webhook_receives_the_document_with_the_dispatch_token_as_idempotency_key() {
    let webhook = Webhook::start(vec![Answer::Status(204)]).await;
    let bed = TestBed::new().await;
    bed.configure(json!({
        "reprocessQueue": {"enabled": true},
        "modules": {"index": [{"module": "webhook", "settings": {
            "url": webhook.url, "headers": {"Authorization": "Bearer s3cret", "X-Team": "search"}
        }}]}
    }))
    .await;
    bed.store("index", "a/b ü", json!({"title": "Hello", "n": 1})).await;
    bed.backends.ports.queue_key(&bed.item("index", "a/b ü")).await.unwrap();
    let token = bed.queue_item("index", "a/b ü").await.unwrap().dispatch.token;

    bed.run_worker_until_idle(QUIET, LIMIT).await;

    let received = webhook.received();
    assert_eq!(received.len(), 1);
    let call = &received[0];
    assert_eq!(call.path, "/hook");
    assert_eq!(
        call.body,
        json!({"storageUnit": bed.unit.as_str(), "key": "a/b ü", "scope": "index", "content": {"title": "Hello", "n": 1}})
    );
    assert_eq!(call.idempotency_key, token);
    assert_eq!(call.headers["content-type"], "application/json");
    assert_eq!(call.headers["authorization"], "Bearer s3cret");
    assert_eq!(call.headers["x-team"], "search");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_module_passes_changed_content_to_the_next_one() {
    let enrich = Webhook::start(vec![Answer::Content(json!({"title": "Hello", "language": "en"}))]).await;
    let index = Webhook::start(vec![Answer::Status(200)]).await;
    let bed = TestBed::new().await;
    bed.configure(json!({
        "reprocessQueue": {"enabled": true},
        "modules": {"index": [
            {"module": "webhook", "settings": {"url": enrich.url}},
            {"module": "webhook", "settings": {"url": index.url}}
        ]}
    }))
    .await;
    bed.store("index", "doc", json!({"title": "Hello"})).await;
    bed.backends.ports.queue_key(&bed.item("index", "doc")).await.unwrap();

    bed.run_worker_until_idle(QUIET, LIMIT).await;

    assert_eq!(enrich.received()[0].body["content"], json!({"title": "Hello"}));
    assert_eq!(index.received()[0].body["content"], json!({"title": "Hello", "language": "en"}));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_webhook_timeout_is_retryable() {
    let webhook = Webhook::start(vec![Answer::Slow(Duration::from_secs(2)), Answer::Status(200)]).await;
    let bed = TestBed::new().await;
    bed.configure(json!({
        "reprocessQueue": {"enabled": true},
        "retryBaseSeconds": 1,
        "modules": {"index": [{"module": "webhook", "settings": {"url": webhook.url, "timeoutMs": 300}}]}
    }))
    .await;
    bed.store("index", "doc", json!({})).await;
    bed.backends.ports.queue_key(&bed.item("index", "doc")).await.unwrap();

    bed.run_worker_once().await;
    let retrying = bed.queue_item("index", "doc").await.unwrap();
    assert_eq!(retrying.state, ItemState::Queued);
    assert!(retrying.last_error.as_deref().is_some_and(|error| error.contains("timed out")), "{retrying:?}");

    bed.run_worker_until_idle(QUIET, LIMIT).await;
    assert!(bed.queue_item("index", "doc").await.is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_sqs_module_sends_the_document_downstream() {
    let bed = TestBed::new().await;
    let downstream =
        bed.sqs.create_queue().queue_name(format!("downstream-{}", bed.unit)).send().await.unwrap().queue_url.unwrap();
    bed.configure(json!({
        "reprocessQueue": {"enabled": true},
        "modules": {"ocr": [{"module": "sqs", "settings": {"queueUrl": downstream}}]}
    }))
    .await;
    bed.store("ocr", "scan-7", json!({"pages": 3})).await;
    bed.backends.ports.queue_key(&bed.item("ocr", "scan-7")).await.unwrap();

    bed.run_worker_until_idle(QUIET, LIMIT).await;

    let sent = bed.peek(&downstream, Duration::from_secs(5)).await;
    assert_eq!(sent.len(), 1);
    let body: Value = serde_json::from_str(sent[0].body.as_deref().unwrap()).unwrap();
    assert_eq!(
        body,
        json!({"storageUnit": bed.unit.as_str(), "key": "scan-7", "scope": "ocr", "content": {"pages": 3}})
    );
    assert!(bed.queue_item("ocr", "scan-7").await.is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_sqs_module_aimed_at_a_missing_queue_fails_the_item_at_once() {
    let bed = TestBed::new().await;
    bed.configure(json!({
        "reprocessQueue": {"enabled": true},
        "modules": {"ocr": [{"module": "sqs", "settings": {
            "queueUrl": format!("{}/000000000000/no-such-queue-{}", integration_tests::endpoint(), bed.unit)
        }}]}
    }))
    .await;
    bed.store("ocr", "scan", json!({})).await;
    bed.backends.ports.queue_key(&bed.item("ocr", "scan")).await.unwrap();

    bed.run_worker_until_idle(QUIET, LIMIT).await;

    let failed = bed.queue_item("ocr", "scan").await.unwrap();
    assert_eq!((failed.state, failed.attempts), (ItemState::Failed, 1), "{failed:?}");
}
