//! In-memory adapters with the conditional semantics of the DynamoDB ones, so that the domain's
//! logic is tested without a network. The DynamoDB adapters are held to the same behaviour by
//! the integration tests against LocalStack.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde_json::Value;

use crate::config::UnitConfig;
use crate::error::{BackendError, Error};
use crate::expansion::{Expansion, content_shard};
use crate::names::{ItemRef, Key, Scope, StorageUnit};
use crate::ports::{
    Change, Clock, ConfigStore, ContentStore, EnqueueRequest, Enqueued, ExpansionStore, Expect, Page, Ports,
    QueueStore, Transition, WorkQueue,
};
use crate::queue::{Dispatch, ItemState, Lease, Millis, Outgoing, QueueItem};

/// A clock that moves only when told to.
#[derive(Default)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    pub fn at(now: Millis) -> Self {
        Self(AtomicI64::new(now))
    }

    pub fn advance(&self, millis: Millis) {
        self.0.fetch_add(millis, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Millis {
        self.0.load(Ordering::SeqCst)
    }
}

#[derive(Default)]
struct State {
    configs: HashMap<StorageUnit, UnitConfig>,
    content: HashMap<(StorageUnit, Scope), BTreeMap<Key, Value>>,
    items: BTreeMap<String, QueueItem>,
    expansions: HashMap<(StorageUnit, String), Expansion>,
    sent: Vec<Outgoing>,
}

/// Every store and the work queue, in memory. Sent messages are kept for the test to deliver.
#[derive(Default)]
pub struct Memory {
    state: Mutex<State>,
}

impl Memory {
    /// Ports over a fresh memory and the given clock.
    pub fn ports(clock: Arc<ManualClock>) -> (Arc<Memory>, Ports) {
        let memory = Arc::new(Memory::default());
        let ports = Ports {
            config: memory.clone(),
            content: memory.clone(),
            queue: memory.clone(),
            expansions: memory.clone(),
            work: memory.clone(),
            clock,
        };
        (memory, ports)
    }

    /// The messages sent since the last call.
    pub fn take_sent(&self) -> Vec<Outgoing> {
        std::mem::take(&mut self.state.lock().unwrap().sent)
    }

    pub fn items(&self) -> Vec<QueueItem> {
        self.state.lock().unwrap().items.values().cloned().collect()
    }
}

fn id(item: &ItemRef) -> String {
    format!("{}#{}#{}", item.storage_unit, item.scope, item.key)
}

#[async_trait]
impl ConfigStore for Memory {
    async fn get(&self, unit: &StorageUnit) -> Result<Option<UnitConfig>, BackendError> {
        Ok(self.state.lock().unwrap().configs.get(unit).cloned())
    }

    async fn put(&self, unit: &StorageUnit, config: &UnitConfig) -> Result<(), BackendError> {
        self.state.lock().unwrap().configs.insert(unit.clone(), config.clone());
        Ok(())
    }

    async fn delete(&self, unit: &StorageUnit) -> Result<bool, BackendError> {
        Ok(self.state.lock().unwrap().configs.remove(unit).is_some())
    }
}

#[async_trait]
impl ContentStore for Memory {
    async fn existing_keys(
        &self,
        unit: &StorageUnit,
        scope: &Scope,
        keys: &[Key],
    ) -> Result<HashSet<Key>, BackendError> {
        let state = self.state.lock().unwrap();
        let stored = state.content.get(&(unit.clone(), scope.clone()));
        Ok(keys.iter().filter(|key| stored.is_some_and(|stored| stored.contains_key(*key))).cloned().collect())
    }

    async fn get_many(&self, items: &[ItemRef]) -> Result<HashMap<ItemRef, Value>, BackendError> {
        let state = self.state.lock().unwrap();
        Ok(items
            .iter()
            .filter_map(|item| {
                let stored = state.content.get(&(item.storage_unit.clone(), item.scope.clone()))?;
                Some((item.clone(), stored.get(&item.key)?.clone()))
            })
            .collect())
    }

    async fn list_keys(
        &self,
        unit: &StorageUnit,
        scope: &Scope,
        shard: u16,
        cursor: Option<String>,
        limit: u32,
    ) -> Result<Page<Key>, BackendError> {
        let state = self.state.lock().unwrap();
        let Some(stored) = state.content.get(&(unit.clone(), scope.clone())) else {
            return Ok(Page { items: Vec::new(), next: None });
        };
        let keys: Vec<Key> = stored
            .keys()
            .filter(|key| content_shard(key) == shard)
            .filter(|key| cursor.as_deref().is_none_or(|after| key.as_str() > after))
            .take(limit as usize)
            .cloned()
            .collect();
        let next = (keys.len() == limit as usize).then(|| keys.last().map(|key| key.as_str().to_owned())).flatten();
        Ok(Page { items: keys, next })
    }

    async fn put(&self, item: &ItemRef, content: &Value, only_if_absent: bool) -> Result<(), Error> {
        let mut state = self.state.lock().unwrap();
        let stored = state.content.entry((item.storage_unit.clone(), item.scope.clone())).or_default();
        if only_if_absent && stored.contains_key(&item.key) {
            return Err(Error::KeyExists);
        }
        stored.insert(item.key.clone(), content.clone());
        Ok(())
    }

    async fn delete(&self, item: &ItemRef) -> Result<bool, BackendError> {
        let mut state = self.state.lock().unwrap();
        let stored = state.content.get_mut(&(item.storage_unit.clone(), item.scope.clone()));
        Ok(stored.is_some_and(|stored| stored.remove(&item.key).is_some()))
    }

    async fn get(&self, item: &ItemRef) -> Result<Option<Value>, BackendError> {
        Ok(self.get_many(std::slice::from_ref(item)).await?.remove(item))
    }
}

fn expected(item: &QueueItem, expect: &Expect) -> bool {
    match expect {
        Expect::Takeable { token, now } => {
            item.dispatch.token == *token
                && (item.state == ItemState::Queued
                    || (item.state == ItemState::Assigned
                        && item.lease.as_ref().is_some_and(|lease| lease.expires_at < *now)))
        }
        Expect::Held { token, owner } => {
            item.dispatch.token == *token
                && item.state == ItemState::Assigned
                && item.lease.as_ref().is_some_and(|lease| lease.owner == *owner)
        }
        Expect::InState { token, state } => item.dispatch.token == *token && item.state == *state,
    }
}

#[async_trait]
impl QueueStore for Memory {
    async fn enqueue(&self, item: &ItemRef, request: &EnqueueRequest) -> Result<Enqueued, BackendError> {
        let mut state = self.state.lock().unwrap();
        let current = state.items.get(&id(item));
        let replace = match current {
            None => true,
            Some(current) => match current.state {
                ItemState::Failed => true,
                ItemState::Assigned => current.lease.as_ref().is_some_and(|lease| lease.expires_at < request.now),
                ItemState::Queued => current.dispatched_at < request.redispatch_queued_before,
                ItemState::Waiting => request.state == ItemState::Queued,
            },
        };
        if !replace {
            let current = state.items.get_mut(&id(item)).expect("checked above");
            if current.state == ItemState::Assigned {
                current.run_again = true;
                return Ok(Enqueued::RunAgain);
            }
            return Ok(Enqueued::Coalesced(current.state));
        }
        let seq = current.map_or(request.now as u64, |current| current.dispatch.seq) + 1;
        let dispatch = Dispatch { token: request.token.clone(), seq };
        let queued = QueueItem {
            item: item.clone(),
            state: request.state,
            dispatch: dispatch.clone(),
            attempts: 0,
            run_again: false,
            lease: None,
            last_error: None,
            dispatched_at: request.now,
        };
        state.items.insert(id(item), queued);
        Ok(if request.state == ItemState::Queued { Enqueued::Dispatch(dispatch) } else { Enqueued::Waiting })
    }

    async fn transition(&self, item: &ItemRef, expect: &Expect, change: &Change) -> Result<Transition, BackendError> {
        let mut state = self.state.lock().unwrap();
        let key = id(item);
        let Some(current) = state.items.get_mut(&key) else {
            return Ok(Transition::Refused(None));
        };
        let blocked_by_run_again = matches!(change, Change::Remove | Change::Fail { .. }) && current.run_again;
        if !expected(current, expect) || blocked_by_run_again {
            return Ok(Transition::Refused(Some(current.clone())));
        }
        match change {
            Change::Assign { owner, lease_expires_at, .. } => {
                current.state = ItemState::Assigned;
                current.lease = Some(Lease { owner: owner.clone(), expires_at: *lease_expires_at });
                current.attempts += 1;
                current.run_again = false;
            }
            Change::Redispatch { dispatch, state: next, reset_attempts, last_error, now } => {
                current.state = *next;
                current.dispatch = dispatch.clone();
                current.dispatched_at = *now;
                if *reset_attempts {
                    current.attempts = 0;
                }
                current.last_error = last_error.clone();
                current.lease = None;
                current.run_again = false;
            }
            Change::Park { .. } => {
                current.state = ItemState::Waiting;
                current.lease = None;
            }
            Change::Fail { error, .. } => {
                current.state = ItemState::Failed;
                current.last_error = Some(error.clone());
                current.lease = None;
            }
            Change::ForgetDispatch => current.dispatched_at = 0,
            Change::Remove => {
                state.items.remove(&key);
                return Ok(Transition::Applied(None));
            }
        }
        Ok(Transition::Applied(Some(current.clone())))
    }

    async fn get(&self, item: &ItemRef) -> Result<Option<QueueItem>, BackendError> {
        Ok(self.state.lock().unwrap().items.get(&id(item)).cloned())
    }

    async fn list_in_state(
        &self,
        unit: &StorageUnit,
        wanted: ItemState,
        cursor: Option<String>,
        limit: u32,
    ) -> Result<Page<QueueItem>, BackendError> {
        let state = self.state.lock().unwrap();
        let items: Vec<(String, QueueItem)> = state
            .items
            .iter()
            .filter(|(key, item)| {
                item.item.storage_unit == *unit
                    && item.state == wanted
                    && cursor.as_deref().is_none_or(|after| key.as_str() > after)
            })
            .take(limit as usize)
            .map(|(key, item)| (key.clone(), item.clone()))
            .collect();
        let next = (items.len() == limit as usize).then(|| items.last().map(|(key, _)| key.clone())).flatten();
        Ok(Page { items: items.into_iter().map(|(_, item)| item).collect(), next })
    }

    async fn count_in_state(&self, unit: &StorageUnit, wanted: ItemState) -> Result<u64, BackendError> {
        let state = self.state.lock().unwrap();
        Ok(state.items.values().filter(|item| item.item.storage_unit == *unit && item.state == wanted).count() as u64)
    }
}

#[async_trait]
impl ExpansionStore for Memory {
    async fn create(&self, expansion: &Expansion) -> Result<(), BackendError> {
        let key = (expansion.storage_unit.clone(), expansion.id.clone());
        self.state.lock().unwrap().expansions.insert(key, expansion.clone());
        Ok(())
    }

    async fn get(&self, unit: &StorageUnit, id: &str) -> Result<Option<Expansion>, BackendError> {
        Ok(self.state.lock().unwrap().expansions.get(&(unit.clone(), id.to_owned())).cloned())
    }

    async fn list(&self, unit: &StorageUnit) -> Result<Vec<Expansion>, BackendError> {
        let state = self.state.lock().unwrap();
        let mut expansions: Vec<Expansion> =
            state.expansions.values().filter(|expansion| expansion.storage_unit == *unit).cloned().collect();
        expansions.sort_by_key(|expansion| expansion.started_at);
        Ok(expansions)
    }

    async fn advance(
        &self,
        unit: &StorageUnit,
        id: &str,
        shard: u16,
        page: u32,
        next: Option<u32>,
        keys_queued: u64,
    ) -> Result<bool, BackendError> {
        let mut state = self.state.lock().unwrap();
        let Some(expansion) = state.expansions.get_mut(&(unit.clone(), id.to_owned())) else {
            return Ok(false);
        };
        let slot = &mut expansion.shard_pages[usize::from(shard)];
        if *slot != Some(page) {
            return Ok(false);
        }
        *slot = next;
        expansion.keys_queued += keys_queued;
        Ok(true)
    }
}

#[async_trait]
impl WorkQueue for Memory {
    async fn send(&self, messages: &[Outgoing]) -> Result<Vec<usize>, BackendError> {
        self.state.lock().unwrap().sent.extend_from_slice(messages);
        Ok(Vec::new())
    }
}
