//! `reprocess/all` on a unit that needs several pages per shard: every key is queued once, the
//! expansion's progress is exact, and no invocation's work grows with the unit's size.

use std::collections::HashSet;
use std::time::Duration;

use integration_tests::{RequestCounter, TestBed};
use reprocess_core::expansion::{CONTENT_SHARDS, ExpansionState};
use reprocess_core::queue::ItemState;
use serde_json::json;

const KEYS: usize = 400;
/// About 25 keys per shard: three pages each.
const PAGE: u32 = 10;

#[tokio::test(flavor = "multi_thread")]
async fn a_large_scope_is_expanded_page_by_page_through_the_queue() {
    let bed = TestBed::new().await;
    // Stopped, so the queued keys wait and the queue carries only the expansion's pages.
    bed.configure(json!({"reprocessQueue": {"enabled": true}, "reprocessJob": {"running": false}})).await;
    bed.store_many("index", (0..KEYS).map(|n| format!("doc-{n:05}"))).await;
    bed.store("other", "doc-00001", json!({})).await;
    bed.requests.take();

    let expansion = bed.backends.ports.queue_all(&bed.unit, &TestBed::scope("index")).await.unwrap();
    let answer_requests = RequestCounter::total(&bed.requests.take());
    assert!(answer_requests <= 4, "the request itself does a constant amount of work: {answer_requests}");

    // One message per invocation, so each invocation's cost is seen on its own.
    let worker = reprocess_worker::build_worker(&bed.backends, reqwest::Client::new()).with_expansion_page_size(PAGE);
    let mut settings = bed.poll_settings();
    settings.batch_size = 1;
    let mut invocations = 0;
    let mut most_writes = 0;
    let started = tokio::time::Instant::now();
    let mut idle_since = tokio::time::Instant::now();
    while idle_since.elapsed() < Duration::from_secs(2) && started.elapsed() < Duration::from_secs(120) {
        let received = local_gateway::poll_once(&bed.sqs, &worker, &settings).await.unwrap();
        let counts = bed.requests.take();
        if received == 0 {
            continue;
        }
        idle_since = tokio::time::Instant::now();
        invocations += 1;
        most_writes = most_writes.max(counts.get("UpdateItem").copied().unwrap_or(0));
    }

    let minimum_pages = (KEYS / PAGE as usize).max(usize::from(CONTENT_SHARDS));
    assert!(invocations >= minimum_pages, "{invocations} invocations for {KEYS} keys");
    // A page's conditional writes, and the one that records the page.
    assert!(most_writes <= PAGE as usize + 1, "an invocation wrote {most_writes} items; a page is {PAGE}");

    let recorded = bed.backends.ports.expansions.get(&bed.unit, &expansion.id).await.unwrap().unwrap();
    assert_eq!(recorded.state(), ExpansionState::Completed);
    assert_eq!(recorded.keys_queued, KEYS as u64);

    let mut waiting = HashSet::new();
    let mut cursor = None;
    loop {
        let page = bed.backends.ports.queue.list_in_state(&bed.unit, ItemState::Waiting, cursor, 500).await.unwrap();
        for item in page.items {
            assert_eq!(item.item.scope.as_str(), "index", "only the expanded scope is queued");
            assert!(waiting.insert(item.item.key.clone()), "{} queued twice", item.item.key);
        }
        cursor = page.next;
        if cursor.is_none() {
            break;
        }
    }
    assert_eq!(waiting.len(), KEYS, "every key of the scope is queued once");
}
