//! The domain on the in-memory adapters: the cases that are hard to stage against a real
//! queue (lost sends, messages that overtake their item's write, repeated pages).

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde_json::{Value, json};

use crate::config::{Module, UnitConfig};
use crate::memory::{ManualClock, Memory};
use crate::modules::{ModuleFailure, ModuleRunner, ProcessEvent};
use crate::names::{ItemRef, Key, Scope, StorageUnit};
use crate::ports::{Change, Clock, Expect, Ports, Transition};
use crate::queue::{ItemState, Outgoing, WorkMessage};
use crate::worker::{Delivery, Worker};

#[derive(Default)]
struct Recorder(Mutex<Vec<(String, String)>>);

#[async_trait]
impl ModuleRunner for Recorder {
    async fn process(&self, _: &Module, event: &ProcessEvent, token: &str) -> Result<Option<Value>, ModuleFailure> {
        self.0.lock().unwrap().push((event.key.as_str().to_owned(), token.to_owned()));
        Ok(None)
    }
}

struct World {
    memory: Arc<Memory>,
    ports: Ports,
    clock: Arc<ManualClock>,
    runs: Arc<Recorder>,
    worker: Worker,
    unit: StorageUnit,
}

impl World {
    async fn new() -> Self {
        let clock = Arc::new(ManualClock::at(1_800_000_000_000));
        let (memory, ports) = Memory::ports(clock.clone());
        let runs = Arc::new(Recorder::default());
        let worker = Worker::new(ports.clone(), runs.clone(), "worker-1".into()).with_expansion_page_size(3);
        let unit = StorageUnit::parse("su").unwrap();
        let config = UnitConfig::from_json(
            json!({"reprocessQueue": {"enabled": true},
                   "modules": {"index": [{"module": "webhook", "settings": {"url": "http://127.0.0.1:9/x"}}]}})
            .to_string()
            .as_bytes(),
        )
        .unwrap();
        ports.config.put(&unit, &config).await.unwrap();
        Self { memory, ports, clock, runs, worker, unit }
    }

    fn item(&self, key: &str) -> ItemRef {
        ItemRef::new(self.unit.clone(), Scope::parse("index").unwrap(), Key::parse(key).unwrap())
    }

    async fn store(&self, key: &str) {
        self.ports.content.put(&self.item(key), &json!({}), false).await.unwrap();
    }

    /// Delivers every sent message once, in order; answers the ids that failed.
    async fn deliver(&self, messages: Vec<Outgoing>) -> Vec<String> {
        let deliveries = messages
            .into_iter()
            .enumerate()
            .map(|(n, outgoing)| Delivery {
                message_id: format!("m{n}"),
                body: serde_json::to_string(&outgoing.message).unwrap(),
            })
            .collect();
        self.worker.process_batch(deliveries).await
    }

    /// Takes the item's lease as `owner`, for `millis` from now.
    async fn hold(&self, key: &str, token: &str, owner: &str, millis: i64) -> Transition {
        let now = self.clock.now();
        let take = Change::Assign { owner: owner.into(), lease_expires_at: now + millis, now };
        let takeable = Expect::Takeable { token: token.to_owned(), now };
        self.ports.queue.transition(&self.item(key), &takeable, &take).await.unwrap()
    }

    fn runs(&self) -> usize {
        self.runs.0.lock().unwrap().len()
    }
}

#[tokio::test]
async fn a_dispatch_whose_send_failed_is_dispatched_again_by_the_next_request() {
    let world = World::new().await;
    world.store("doc").await;
    world.ports.queue_key(&world.item("doc")).await.unwrap();
    let queued = world.ports.queue.get(&world.item("doc")).await.unwrap().unwrap();
    world.memory.take_sent();

    // The message was lost: the worker's forget-dispatch mark is what a failed send leaves.
    let expect = Expect::InState { token: queued.dispatch.token.clone(), state: ItemState::Queued };
    world.ports.queue.transition(&world.item("doc"), &expect, &Change::ForgetDispatch).await.unwrap();

    let again = world.ports.queue_key(&world.item("doc")).await.unwrap();
    assert_eq!(again.queued, 1, "dispatched anew instead of coalesced with a message that does not exist");
    assert_eq!(world.memory.take_sent().len(), 1);
}

#[tokio::test]
async fn a_queued_item_whose_dispatch_is_old_is_dispatched_again() {
    let world = World::new().await;
    world.store("doc").await;
    world.ports.queue_key(&world.item("doc")).await.unwrap();
    world.memory.take_sent();

    world.clock.advance(10 * 60 * 1000);
    assert_eq!(world.ports.queue_key(&world.item("doc")).await.unwrap().already_queued, 1);
    world.clock.advance(11 * 60 * 1000);
    assert_eq!(world.ports.queue_key(&world.item("doc")).await.unwrap().queued, 1);
    let sent = world.memory.take_sent();
    assert_eq!(sent.len(), 1);

    // Only the newest dispatch runs.
    world.deliver(sent).await;
    assert_eq!(world.runs(), 1);
}

#[tokio::test]
async fn a_dispatch_that_overtakes_its_items_write_is_delivered_again_and_an_older_one_dropped() {
    let world = World::new().await;
    world.store("doc").await;
    world.ports.queue_key(&world.item("doc")).await.unwrap();
    let current = world.ports.queue.get(&world.item("doc")).await.unwrap().unwrap();
    // A worker holds it, and a reset's new dispatch is sent ahead of the reset's write.
    world.hold("doc", &current.dispatch.token, "a", 30_000).await;
    let ahead = current.dispatch.next();
    let behind = crate::queue::Dispatch { token: "old".into(), seq: current.dispatch.seq - 1 };

    let failed = world
        .deliver(vec![
            Outgoing::now(WorkMessage::dispatch(&current.item, &ahead)),
            Outgoing::now(WorkMessage::dispatch(&current.item, &behind)),
        ])
        .await;

    assert_eq!(failed, ["m0"], "only the message from ahead is worth another delivery");
    assert_eq!(world.runs(), 0);
}

#[tokio::test]
async fn a_repeated_expansion_page_queues_nothing_twice_and_counts_exactly() {
    let world = World::new().await;
    let keys: Vec<String> = (0..40).map(|n| format!("k{n}")).collect();
    for key in &keys {
        world.store(key).await;
    }
    world.ports.set_job_running(&world.unit, false).await.unwrap();
    world.memory.take_sent();

    let expansion = world.ports.queue_all(&world.unit, &Scope::parse("index").unwrap()).await.unwrap();
    let mut pending = world.memory.take_sent();
    let mut delivered_pages = 0;
    while !pending.is_empty() {
        // Every page arrives twice.
        let doubled: Vec<Outgoing> = pending.iter().flat_map(|outgoing| [outgoing.clone(), outgoing.clone()]).collect();
        delivered_pages += doubled.len();
        assert!(world.deliver(doubled).await.is_empty());
        pending = world.memory.take_sent();
        pending.dedup();
    }

    let recorded = world.ports.expansions.get(&world.unit, &expansion.id).await.unwrap().unwrap();
    assert_eq!(recorded.keys_queued, 40, "each page counted once");
    assert!(recorded.shard_pages.iter().all(Option::is_none));
    let waiting = world.memory.items().into_iter().filter(|item| item.state == ItemState::Waiting).count();
    assert_eq!(waiting, 40);
    assert!(delivered_pages > 32, "several pages per shard at three keys a page");
}

#[tokio::test]
async fn completing_under_a_lease_taken_over_is_refused() {
    let world = World::new().await;
    world.store("doc").await;
    world.ports.queue_key(&world.item("doc")).await.unwrap();
    let queued = world.ports.queue.get(&world.item("doc")).await.unwrap().unwrap();
    let token = &queued.dispatch.token;

    let first = world.hold("doc", token, "a", 5_000).await;
    assert!(matches!(first, Transition::Applied(_)));
    world.clock.advance(1);
    let early = world.hold("doc", token, "b", 5_000).await;
    assert!(matches!(early, Transition::Refused(_)), "a live lease cannot be taken");

    world.clock.advance(6_000);
    let over = world.hold("doc", token, "b", 5_000).await;
    let Transition::Applied(Some(taken)) = over else { panic!("an expired lease is taken over: {over:?}") };
    assert_eq!(taken.attempts, 2);

    let held_by_a = Expect::Held { token: queued.dispatch.token.clone(), owner: "a".into() };
    let late = world.ports.queue.transition(&world.item("doc"), &held_by_a, &Change::Remove).await.unwrap();
    assert!(matches!(late, Transition::Refused(Some(_))));
}

#[tokio::test]
async fn an_item_whose_holder_died_while_the_job_is_stopped_waits() {
    let world = World::new().await;
    world.store("doc").await;
    world.ports.queue_key(&world.item("doc")).await.unwrap();
    let queued = world.ports.queue.get(&world.item("doc")).await.unwrap().unwrap();
    world.hold("doc", &queued.dispatch.token, "dead", 1_000).await;
    world.ports.set_job_running(&world.unit, false).await.unwrap();
    world.memory.take_sent();
    world.clock.advance(2_000);

    // The dispatch comes back after the holder died.
    let failed = world.deliver(vec![Outgoing::now(WorkMessage::dispatch(&queued.item, &queued.dispatch))]).await;

    assert!(failed.is_empty(), "the dispatch is not put back to bounce until the dead-letter queue");
    let parked = world.ports.queue.get(&world.item("doc")).await.unwrap().unwrap();
    assert_eq!((parked.state, parked.lease), (ItemState::Waiting, None));
    assert_eq!(world.runs(), 0);
}

struct Sleeper;

#[async_trait]
impl ModuleRunner for Sleeper {
    async fn process(&self, _: &Module, _: &ProcessEvent, _: &str) -> Result<Option<Value>, ModuleFailure> {
        tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
        Ok(None)
    }
}

#[tokio::test(start_paused = true)]
async fn a_run_is_cut_off_before_its_lease_ends() {
    let world = World::new().await;
    let worker = Worker::new(world.ports.clone(), Arc::new(Sleeper), "worker-2".into());
    world.store("doc").await;
    world.ports.queue_key(&world.item("doc")).await.unwrap();
    let sent = world.memory.take_sent();
    let deliveries = sent
        .into_iter()
        .map(|outgoing| Delivery { message_id: "m".into(), body: serde_json::to_string(&outgoing.message).unwrap() })
        .collect();

    let started = tokio::time::Instant::now();
    let failed = worker.process_batch(deliveries).await;

    let lease = std::time::Duration::from_secs(u64::from(crate::config::DEFAULT_LEASE_SECONDS));
    assert!(started.elapsed() < lease, "the run ended after {:?}, within its lease", started.elapsed());
    assert!(failed.is_empty());
    let item = world.ports.queue.get(&world.item("doc")).await.unwrap().unwrap();
    assert_eq!(item.state, ItemState::Queued, "dispatched again for a later attempt");
    assert!(item.last_error.as_deref().is_some_and(|error| error.contains("cut off")), "{item:?}");
}
