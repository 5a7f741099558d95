//! The domain's view of the outside world: one small trait per backing store or queue.
//! The DynamoDB and SQS adapters implement them for AWS; `memory` implements them for tests.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;

use crate::config::UnitConfig;
use crate::error::{BackendError, Error};
use crate::expansion::Expansion;
use crate::names::{ItemRef, Key, Scope, StorageUnit};
use crate::queue::{Dispatch, ItemState, Millis, Outgoing, QueueItem};

/// One page of a listing and the cursor of the next, if there is one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<String>,
}

pub trait Clock: Send + Sync {
    fn now(&self) -> Millis;
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Millis {
        let since_epoch = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        since_epoch.as_millis() as Millis
    }
}

#[async_trait]
pub trait ConfigStore: Send + Sync {
    async fn get(&self, unit: &StorageUnit) -> Result<Option<UnitConfig>, BackendError>;
    async fn put(&self, unit: &StorageUnit, config: &UnitConfig) -> Result<(), BackendError>;
    /// Deletes the configuration; false when there was none.
    async fn delete(&self, unit: &StorageUnit) -> Result<bool, BackendError>;
}

/// Stored documents, one entry per (storage unit, scope, key). Keys are spread over
/// `CONTENT_SHARDS` partitions per scope, so that listing a scope runs in parallel.
#[async_trait]
pub trait ContentStore: Send + Sync {
    /// Which of `keys` are stored in the scope.
    async fn existing_keys(
        &self,
        unit: &StorageUnit,
        scope: &Scope,
        keys: &[Key],
    ) -> Result<HashSet<Key>, BackendError>;
    /// The content of each item that is stored; missing items are absent from the map.
    async fn get_many(&self, items: &[ItemRef]) -> Result<HashMap<ItemRef, Value>, BackendError>;
    async fn list_keys(
        &self,
        unit: &StorageUnit,
        scope: &Scope,
        shard: u16,
        cursor: Option<String>,
        limit: u32,
    ) -> Result<Page<Key>, BackendError>;
    /// Stores the content; with `only_if_absent`, refuses with `Error::KeyExists`.
    async fn put(&self, item: &ItemRef, content: &Value, only_if_absent: bool) -> Result<(), Error>;
    /// Deletes the content; false when it was not stored.
    async fn delete(&self, item: &ItemRef) -> Result<bool, BackendError>;
    async fn get(&self, item: &ItemRef) -> Result<Option<Value>, BackendError>;
}

/// What `QueueStore::enqueue` did to the item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Enqueued {
    /// Created or revived as queued: the caller sends this dispatch.
    Dispatch(Dispatch),
    /// Created or revived as waiting, because the job is not running.
    Waiting,
    /// Already queued or waiting: nothing more to do.
    Coalesced(ItemState),
    /// Assigned: marked to run once more when the current run ends.
    RunAgain,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnqueueRequest {
    pub token: String,
    /// `Queued` while the job runs, `Waiting` while it does not.
    pub state: ItemState,
    pub now: Millis,
    /// A queued item dispatched before this instant has likely lost its message (a send that
    /// failed after the write): it is dispatched again instead of coalesced.
    pub redispatch_queued_before: Millis,
}

/// The condition under which `QueueStore::transition` applies its change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    /// The dispatch is current and nobody holds the item: queued, or assigned with a lease
    /// that expired before `now`.
    Takeable { token: String, now: Millis },
    /// `owner` holds the lease of this dispatch.
    Held { token: String, owner: String },
    /// The item is in `state` with this dispatch.
    InState { token: String, state: ItemState },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Take the lease: assigned to `owner`, one more attempt, no pending run-again mark.
    Assign { owner: String, lease_expires_at: Millis, now: Millis },
    /// A new dispatch in `state` (queued or waiting), lease released. `reset_attempts` starts a
    /// new life; otherwise the attempts so far still count against the limit.
    Redispatch { dispatch: Dispatch, state: ItemState, reset_attempts: bool, last_error: Option<String>, now: Millis },
    /// The job is stopped: the item waits, keeping its dispatch, with no lease.
    Park { now: Millis },
    /// Permanent failure, or attempts spent; unless it was marked to run again.
    Fail { error: String, now: Millis },
    /// Done: delete the item, unless it was marked to run again.
    Remove,
    /// The dispatch's message was never sent: let the next queueing dispatch it at once.
    ForgetDispatch,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transition {
    /// The change was made; the item as it now is (`None` once removed).
    Applied(Option<QueueItem>),
    /// The condition did not hold; the item as it is, if it exists.
    Refused(Option<QueueItem>),
}

#[async_trait]
pub trait QueueStore: Send + Sync {
    /// Queue an item with one conditional write: create it, revive it (failed, or its lease
    /// expired), or coalesce with what is already there.
    async fn enqueue(&self, item: &ItemRef, request: &EnqueueRequest) -> Result<Enqueued, BackendError>;
    async fn transition(&self, item: &ItemRef, expect: &Expect, change: &Change) -> Result<Transition, BackendError>;
    async fn get(&self, item: &ItemRef) -> Result<Option<QueueItem>, BackendError>;
    /// Items of the unit in one state. The listing may lag writes by a moment (a secondary
    /// index), so every use of it re-checks with a conditional write.
    async fn list_in_state(
        &self,
        unit: &StorageUnit,
        state: ItemState,
        cursor: Option<String>,
        limit: u32,
    ) -> Result<Page<QueueItem>, BackendError>;
    /// How many of the unit's items are in `state`, read from the same index.
    async fn count_in_state(&self, unit: &StorageUnit, state: ItemState) -> Result<u64, BackendError>;
}

/// Progress records of `reprocess/all` expansions.
#[async_trait]
pub trait ExpansionStore: Send + Sync {
    async fn create(&self, expansion: &Expansion) -> Result<(), BackendError>;
    async fn get(&self, unit: &StorageUnit, id: &str) -> Result<Option<Expansion>, BackendError>;
    /// The unit's expansions, oldest first.
    async fn list(&self, unit: &StorageUnit) -> Result<Vec<Expansion>, BackendError>;
    /// Moves one shard from `page` to `next` (`None`: the shard is done) and counts the keys
    /// that page queued, if the shard is still at `page`. False when another delivery of the
    /// same page got there first.
    async fn advance(
        &self,
        unit: &StorageUnit,
        id: &str,
        shard: u16,
        page: u32,
        next: Option<u32>,
        keys_queued: u64,
    ) -> Result<bool, BackendError>;
}

/// The SQS queue that carries work to the worker.
#[async_trait]
pub trait WorkQueue: Send + Sync {
    /// Sends in batches of ten; the answer lists the positions of the messages not sent.
    async fn send(&self, messages: &[Outgoing]) -> Result<Vec<usize>, BackendError>;
}

/// Every port the domain uses, built once per cold start.
#[derive(Clone)]
pub struct Ports {
    pub config: Arc<dyn ConfigStore>,
    pub content: Arc<dyn ContentStore>,
    pub queue: Arc<dyn QueueStore>,
    pub expansions: Arc<dyn ExpansionStore>,
    pub work: Arc<dyn WorkQueue>,
    pub clock: Arc<dyn Clock>,
}
