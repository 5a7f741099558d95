//! `make bench`: AWS requests per item, which do not drift with machine noise, for queueing,
//! processing and expanding, and the time of one batched request against one request per key,
//! measured side by side in the same run on LocalStack.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use integration_tests::{RequestCounter, TestBed};
use reprocess_core::Key;
use serde_json::json;

const KEYS: usize = 1_000;

/// The event source mapping's own calls, which Lambda makes and bills apart from the function.
const EVENT_SOURCE_OPERATIONS: [&str; 2] = ["ReceiveMessage", "DeleteMessageBatch"];

fn per_item(counts: &BTreeMap<String, usize>, items: usize) -> f64 {
    let function_requests: usize = counts
        .iter()
        .filter(|(operation, _)| !EVENT_SOURCE_OPERATIONS.contains(&operation.as_str()))
        .map(|(_, n)| n)
        .sum();
    function_requests as f64 / items as f64
}

fn describe(counts: &BTreeMap<String, usize>) -> String {
    counts
        .iter()
        .filter(|(operation, _)| !EVENT_SOURCE_OPERATIONS.contains(&operation.as_str()))
        .map(|(operation, n)| format!("{operation} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

async fn drain(bed: &TestBed) {
    bed.run_worker_until_idle(Duration::from_secs(2), Duration::from_secs(300)).await;
}

#[tokio::main]
async fn main() {
    let bed = TestBed::new().await;
    // No modules: what is measured is the service's own cost per item.
    bed.configure(json!({"reprocessQueue": {"enabled": true}, "modules": {}})).await;
    let keys: Vec<String> = (0..KEYS).map(|n| format!("bench/doc-{n:05}")).collect();
    bed.store_many("index", keys.clone()).await;
    let scope = TestBed::scope("index");
    let parsed: Vec<Key> = keys.iter().map(|key| Key::parse(key.as_str()).unwrap()).collect();
    bed.requests.take();

    // Queueing: one reprocess/keys request for every key.
    let started = Instant::now();
    let report = bed.backends.ports.queue_keys(&bed.unit, &scope, parsed.clone()).await.unwrap();
    let batched_time = started.elapsed();
    assert_eq!(report.queued, KEYS);
    let queueing = bed.requests.take();

    // Processing, ten messages a batch as the event source mapping delivers them.
    drain(&bed).await;
    let processing = bed.requests.take();

    // The same keys again, one reprocess/key request each.
    let started = Instant::now();
    for key in &parsed {
        let item = reprocess_core::ItemRef::new(bed.unit.clone(), scope.clone(), key.clone());
        bed.backends.ports.queue_key(&item).await.unwrap();
    }
    let single_time = started.elapsed();
    let single = bed.requests.take();
    drain(&bed).await;
    bed.requests.take();

    // Every key of the scope, expanded in the background; the job is stopped, so the items
    // wait and what is counted is the expansion alone.
    bed.backends.ports.set_job_running(&bed.unit, false).await.unwrap();
    drain(&bed).await;
    bed.requests.take();
    bed.backends.ports.queue_all(&bed.unit, &scope).await.unwrap();
    drain(&bed).await;
    let expanding = bed.requests.take();

    println!("\n{KEYS} keys, LocalStack on this machine, no modules configured\n");
    println!("| what | AWS requests per item | requests |");
    println!("|---|---|---|");
    println!(
        "| queue with one `reprocess/keys` request | {:.3} | {} |",
        per_item(&queueing, KEYS),
        describe(&queueing)
    );
    println!(
        "| process, batches of 10 (besides the event source mapping) | {:.3} | {} |",
        per_item(&processing, KEYS),
        describe(&processing)
    );
    println!(
        "| queue with one `reprocess/key` request per key | {:.3} | {} |",
        per_item(&single, KEYS),
        describe(&single)
    );
    println!(
        "| expand `reprocess/all` (queueing included) | {:.3} | {} |",
        per_item(&expanding, KEYS),
        describe(&expanding)
    );
    println!();
    println!(
        "one `reprocess/keys` request for {KEYS} keys: {:.2} s; {KEYS} `reprocess/key` requests: {:.2} s; ratio {:.1}x",
        batched_time.as_secs_f64(),
        single_time.as_secs_f64(),
        single_time.as_secs_f64() / batched_time.as_secs_f64()
    );
    println!(
        "requests: {} against {}; ratio {:.2}x",
        RequestCounter::total(&queueing),
        RequestCounter::total(&single),
        RequestCounter::total(&single) as f64 / RequestCounter::total(&queueing) as f64
    );
}
