//! The queue's semantics, each on its own, with the real adapters on LocalStack, the worker's
//! Lambda handler, and a webhook receiver that counts the modules' runs.

use std::time::Duration;

use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use integration_tests::TestBed;
use integration_tests::webhook::{Answer, Webhook};
use lambda_runtime::{Context, LambdaEvent};
use reprocess_core::ports::{Change, Expect, Transition};
use reprocess_core::queue::{ItemState, QueueItem, WorkMessage};
use serde_json::{Value, json};

const QUIET: Duration = Duration::from_secs(3);
const LIMIT: Duration = Duration::from_secs(30);

fn config(webhook: &Webhook, extra: Value) -> Value {
    let mut config = json!({
        "reprocessQueue": {"enabled": true},
        "maxAttempts": 3,
        "retryBaseSeconds": 1,
        "leaseSeconds": 30,
        "modules": {"index": [{"module": "webhook", "settings": {"url": webhook.url, "timeoutMs": 5000}}]}
    });
    if let (Some(config), Value::Object(extra)) = (config.as_object_mut(), extra) {
        config.extend(extra);
    }
    config
}

async fn bed_with(answers: Vec<Answer>, extra: Value) -> (TestBed, Webhook) {
    let webhook = Webhook::start(answers).await;
    let bed = TestBed::new().await;
    bed.configure(config(&webhook, extra)).await;
    (bed, webhook)
}

async fn wait_until<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = tokio::time::Instant::now();
    while !condition().await {
        assert!(started.elapsed() < LIMIT, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Takes the item's lease as another worker would, for `millis`.
async fn hold(bed: &TestBed, queued: &QueueItem, owner: &str, millis: i64) {
    let now = bed.backends.ports.clock.now();
    let expect = Expect::Takeable { token: queued.dispatch.token.clone(), now };
    let take = Change::Assign { owner: owner.into(), lease_expires_at: now + millis, now };
    let taken = bed.backends.ports.queue.transition(&queued.item, &expect, &take).await.unwrap();
    assert!(matches!(taken, Transition::Applied(_)), "{owner} takes the lease: {taken:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn queueing_a_queued_key_again_coalesces_into_one_run() {
    let (bed, webhook) = bed_with(vec![Answer::Status(200)], json!({})).await;
    bed.store("index", "doc", json!({"v": 1})).await;
    let item = bed.item("index", "doc");

    let first = bed.backends.ports.queue_key(&item).await.unwrap();
    let second = bed.backends.ports.queue_key(&item).await.unwrap();

    assert_eq!((first.queued, second.queued, second.already_queued), (1, 0, 1));
    assert_eq!(bed.queue_depth(&bed.queue_url).await, 1, "one message for one item");
    bed.run_worker_until_idle(QUIET, LIMIT).await;
    assert_eq!(webhook.received().len(), 1);
    assert!(bed.queue_item("index", "doc").await.is_none(), "a finished item is removed");
}

#[tokio::test(flavor = "multi_thread")]
async fn queueing_a_waiting_key_again_coalesces_and_nothing_runs() {
    let (bed, webhook) = bed_with(vec![Answer::Status(200)], json!({"reprocessJob": {"running": false}})).await;
    bed.store("index", "doc", json!({})).await;
    let item = bed.item("index", "doc");

    let first = bed.backends.ports.queue_key(&item).await.unwrap();
    let second = bed.backends.ports.queue_key(&item).await.unwrap();

    assert_eq!((first.waiting, second.already_queued), (1, 1));
    assert_eq!(bed.queue_item("index", "doc").await.unwrap().state, ItemState::Waiting);
    assert_eq!(bed.queue_depth(&bed.queue_url).await, 0, "a waiting item has no message");
    assert!(webhook.received().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_key_queued_while_assigned_runs_once_more_after_the_current_run() {
    let (bed, webhook) =
        bed_with(vec![Answer::Slow(Duration::from_millis(1500)), Answer::Status(200)], json!({})).await;
    bed.store("index", "doc", json!({"v": 1})).await;
    let item = bed.item("index", "doc");
    bed.backends.ports.queue_key(&item).await.unwrap();

    let running = {
        let bed = &bed;
        async move { bed.run_worker_once().await }
    };
    let queue_during_run = async {
        wait_until("the item is assigned", || async {
            bed.queue_item("index", "doc").await.is_some_and(|item| item.state == ItemState::Assigned)
        })
        .await;
        bed.store("index", "doc", json!({"v": 2})).await;
        bed.backends.ports.queue_key(&item).await.unwrap()
    };
    let (_, report) = tokio::join!(running, queue_during_run);
    assert_eq!(report.run_again, 1);

    bed.run_worker_until_idle(QUIET, LIMIT).await;
    let received = webhook.received();
    assert_eq!(received.len(), 2, "one run more, and only one");
    assert_eq!(received[1].body["content"], json!({"v": 2}), "the second run sees the new content");
    assert_ne!(received[0].idempotency_key, received[1].idempotency_key, "each run is its own dispatch");
    assert!(bed.queue_item("index", "doc").await.is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_expired_lease_is_taken_over_and_the_old_holders_outcome_dropped() {
    let (bed, webhook) =
        bed_with(vec![Answer::Slow(Duration::from_millis(1500)), Answer::Status(200)], json!({})).await;
    bed.store("index", "doc", json!({})).await;
    let item = bed.item("index", "doc");
    bed.backends.ports.queue_key(&item).await.unwrap();
    let queued = bed.queue_item("index", "doc").await.unwrap();

    // A worker takes the lease for one second and dies.
    hold(&bed, &queued, "dead-worker", 1000).await;

    // While its lease lives, the dispatch is put back rather than run a second time at once.
    assert_eq!(bed.run_worker_once().await, 1);
    assert!(webhook.received().is_empty());
    assert_eq!(bed.queue_item("index", "doc").await.unwrap().lease.unwrap().owner, "dead-worker");

    // After expiry, the redelivered dispatch takes the item over.
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let takeover = bed.run_worker_until_idle(QUIET, LIMIT);
    let old_holder_finishes = async {
        wait_until("the item is taken over", || async {
            bed.queue_item("index", "doc")
                .await
                .and_then(|item| item.lease)
                .is_some_and(|lease| lease.owner != "dead-worker")
        })
        .await;
        let held = Expect::Held { token: queued.dispatch.token.clone(), owner: "dead-worker".into() };
        bed.backends.ports.queue.transition(&item, &held, &Change::Remove).await.unwrap()
    };
    let (_, late_outcome) = tokio::join!(takeover, old_holder_finishes);

    assert!(matches!(late_outcome, Transition::Refused(Some(_))), "the old holder may not complete: {late_outcome:?}");
    assert_eq!(webhook.received().len(), 1, "the modules ran once, under the new lease");
    assert!(bed.queue_item("index", "doc").await.is_none(), "the new holder completed the item");
}

#[tokio::test(flavor = "multi_thread")]
async fn duplicate_and_stale_dispatches_are_dropped() {
    let (bed, webhook) = bed_with(vec![Answer::Status(200)], json!({})).await;
    bed.store("index", "doc", json!({})).await;
    let item = bed.item("index", "doc");
    bed.backends.ports.queue_key(&item).await.unwrap();
    let first = bed.queue_item("index", "doc").await.unwrap();
    let first_message = serde_json::to_string(&WorkMessage::dispatch(&item, &first.dispatch)).unwrap();

    // SQS delivers the same dispatch twice.
    bed.send_raw(&first_message).await;
    bed.run_worker_until_idle(QUIET, LIMIT).await;
    assert_eq!(webhook.received().len(), 1, "one run per dispatch");

    // Queued again, then the first dispatch arrives once more, late.
    bed.backends.ports.queue_key(&item).await.unwrap();
    bed.send_raw(&first_message).await;
    bed.run_worker_until_idle(QUIET, LIMIT).await;
    let received = webhook.received();
    assert_eq!(received.len(), 2, "the stale dispatch did not run");
    assert_eq!(received[0].idempotency_key, first.dispatch.token);
    assert_ne!(received[1].idempotency_key, first.dispatch.token);
    assert_eq!(bed.queue_depth(&bed.queue_url).await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn retryable_failures_are_retried_with_exponential_backoff() {
    let (bed, webhook) = bed_with(vec![Answer::Status(500), Answer::Status(429), Answer::Status(200)], json!({})).await;
    bed.store("index", "doc", json!({})).await;
    bed.backends.ports.queue_key(&bed.item("index", "doc")).await.unwrap();

    bed.run_worker_once().await;
    let after_first = bed.queue_item("index", "doc").await.unwrap();
    assert_eq!(after_first.state, ItemState::Queued);
    assert_eq!(after_first.attempts, 1);
    assert!(after_first.last_error.as_deref().is_some_and(|error| error.contains("500")), "{after_first:?}");

    bed.run_worker_until_idle(QUIET, LIMIT).await;
    let received = webhook.received();
    assert_eq!(received.len(), 3);
    let gaps: Vec<Duration> = received.windows(2).map(|pair| pair[1].at - pair[0].at).collect();
    assert!(gaps[0] >= Duration::from_millis(900), "first retry after the base delay: {gaps:?}");
    assert!(gaps[1] >= Duration::from_millis(1900), "second retry after twice the base delay: {gaps:?}");
    assert!(bed.queue_item("index", "doc").await.is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_permanent_failure_fails_at_once_and_queueing_again_revives_it() {
    let (bed, webhook) = bed_with(vec![Answer::Status(400), Answer::Status(200)], json!({})).await;
    bed.store("index", "doc", json!({})).await;
    let item = bed.item("index", "doc");
    bed.backends.ports.queue_key(&item).await.unwrap();

    bed.run_worker_until_idle(QUIET, LIMIT).await;
    let failed = bed.queue_item("index", "doc").await.unwrap();
    assert_eq!((failed.state, failed.attempts), (ItemState::Failed, 1));
    assert!(failed.last_error.as_deref().is_some_and(|error| error.contains("400")), "{failed:?}");
    assert_eq!(webhook.received().len(), 1);

    let revived = bed.backends.ports.queue_key(&item).await.unwrap();
    assert_eq!(revived.queued, 1);
    bed.run_worker_until_idle(QUIET, LIMIT).await;
    assert_eq!(webhook.received().len(), 2);
    assert!(bed.queue_item("index", "doc").await.is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn spent_attempts_fail_the_item_with_its_error() {
    let (bed, webhook) = bed_with(vec![Answer::Status(503)], json!({"maxAttempts": 2})).await;
    bed.store("index", "doc", json!({})).await;
    bed.backends.ports.queue_key(&bed.item("index", "doc")).await.unwrap();

    bed.run_worker_until_idle(QUIET, LIMIT).await;

    let failed = bed.queue_item("index", "doc").await.unwrap();
    assert_eq!((failed.state, failed.attempts), (ItemState::Failed, 2));
    assert!(failed.last_error.as_deref().is_some_and(|error| error.contains("after 2 attempts")), "{failed:?}");
    assert_eq!(webhook.received().len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_content_is_a_permanent_failure() {
    let (bed, webhook) = bed_with(vec![Answer::Status(200)], json!({})).await;
    bed.store("index", "doc", json!({})).await;
    let item = bed.item("index", "doc");
    bed.backends.ports.queue_key(&item).await.unwrap();
    assert!(bed.backends.ports.content.delete(&item).await.unwrap());

    bed.run_worker_until_idle(QUIET, LIMIT).await;

    let failed = bed.queue_item("index", "doc").await.unwrap();
    assert_eq!(failed.state, ItemState::Failed);
    assert!(failed.last_error.as_deref().is_some_and(|error| error.contains("content missing")));
    assert!(webhook.received().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_message_that_crashes_the_worker_goes_to_the_dead_letter_queue() {
    let bed = TestBed::with_max_receive_count(Some(2)).await;
    bed.configure(json!({"reprocessQueue": {"enabled": true}})).await;
    bed.send_raw("this is not a work message").await;

    bed.run_worker_until_idle(Duration::from_secs(5), LIMIT).await;

    let dead = bed.peek(&bed.dlq_url, Duration::from_secs(5)).await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].body.as_deref(), Some("this is not a work message"));
    assert_eq!(bed.queue_depth(&bed.queue_url).await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn one_failing_message_never_makes_its_neighbours_run_again() {
    let (bed, webhook) = bed_with(vec![Answer::Status(200)], json!({})).await;
    let mut event = SqsEvent::default();
    for key in ["a", "b"] {
        bed.store("index", key, json!({})).await;
        bed.backends.ports.queue_key(&bed.item("index", key)).await.unwrap();
        let queued = bed.queue_item("index", key).await.unwrap();
        let mut record = SqsMessage::default();
        record.message_id = Some(format!("message-{key}"));
        record.body = Some(serde_json::to_string(&WorkMessage::dispatch(&queued.item, &queued.dispatch)).unwrap());
        event.records.push(record);
    }
    let mut poison = SqsMessage::default();
    poison.message_id = Some("message-poison".into());
    poison.body = Some("{\"type\":\"unknown\"}".into());
    event.records.insert(1, poison);

    let response = reprocess_worker::handle(&bed.worker, LambdaEvent::new(event, Context::default())).await;

    let failed: Vec<&str> =
        response.batch_item_failures.iter().map(|failure| failure.item_identifier.as_str()).collect();
    assert_eq!(failed, ["message-poison"]);
    assert_eq!(webhook.received().len(), 2);
    assert!(bed.queue_item("index", "a").await.is_none() && bed.queue_item("index", "b").await.is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn reset_takes_assigned_items_back_and_drops_the_old_outcome() {
    let (bed, webhook) = bed_with(vec![Answer::Status(200)], json!({})).await;
    bed.store("index", "doc", json!({})).await;
    let item = bed.item("index", "doc");
    bed.backends.ports.queue_key(&item).await.unwrap();
    let queued = bed.queue_item("index", "doc").await.unwrap();

    // A worker holds the item and is stuck; its lease has two seconds left.
    hold(&bed, &queued, "stuck-worker", 2_000).await;

    let requeued = bed.backends.ports.reset(&bed.unit).await.unwrap();
    assert_eq!(requeued, 1);
    let reset = bed.queue_item("index", "doc").await.unwrap();
    assert_eq!(reset.state, ItemState::Queued);
    assert_ne!(reset.dispatch.token, queued.dispatch.token, "a new dispatch");
    assert!(reset.lease.is_none());

    let held = Expect::Held { token: queued.dispatch.token.clone(), owner: "stuck-worker".into() };
    let stuck_outcome = bed.backends.ports.queue.transition(&item, &held, &Change::Remove).await.unwrap();
    assert!(matches!(stuck_outcome, Transition::Refused(Some(_))), "{stuck_outcome:?}");

    bed.run_worker_until_idle(QUIET, LIMIT).await;
    let received = webhook.received();
    assert_eq!(received.len(), 1, "the original dispatch is stale; the new one ran");
    assert_eq!(received[0].idempotency_key, reset.dispatch.token);
    assert!(bed.queue_item("index", "doc").await.is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn items_wait_while_the_job_is_stopped_and_run_when_it_starts() {
    let (bed, webhook) = bed_with(vec![Answer::Status(200)], json!({})).await;
    for key in ["a", "b", "c"] {
        bed.store("index", key, json!({})).await;
    }
    // "a" is queued while the job runs; the job stops before a worker gets to it.
    bed.backends.ports.queue_key(&bed.item("index", "a")).await.unwrap();
    bed.backends.ports.set_job_running(&bed.unit, false).await.unwrap();
    for key in ["b", "c"] {
        let report = bed.backends.ports.queue_key(&bed.item("index", key)).await.unwrap();
        assert_eq!(report.waiting, 1);
    }

    bed.run_worker_until_idle(QUIET, LIMIT).await;
    assert!(webhook.received().is_empty(), "nothing runs while the job is stopped");
    for key in ["a", "b", "c"] {
        assert_eq!(bed.queue_item("index", key).await.unwrap().state, ItemState::Waiting, "{key} waits");
    }

    bed.backends.ports.set_job_running(&bed.unit, true).await.unwrap();
    bed.run_worker_until_idle(QUIET, LIMIT).await;
    let mut keys: Vec<String> =
        webhook.received().iter().map(|received| received.body["key"].as_str().unwrap().to_owned()).collect();
    keys.sort();
    assert_eq!(keys, ["a", "b", "c"], "each waiting item ran once");
    for key in ["a", "b", "c"] {
        assert!(bed.queue_item("index", key).await.is_none());
    }
}
