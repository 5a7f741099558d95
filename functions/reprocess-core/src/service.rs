//! The Reprocess API's domain: queue keys, expand a whole scope, reset, switch the job.

use std::collections::HashSet;

use futures::{StreamExt, stream};
use serde::Serialize;
use tracing::{info, warn};

use crate::config::UnitConfig;
use crate::error::{BackendError, Error};
use crate::expansion::{CONTENT_SHARDS, Expansion};
use crate::names::{ItemRef, Key, Scope, StorageUnit};
use crate::ports::{Change, EnqueueRequest, Enqueued, Expect, Ports, Transition};
use crate::queue::{Dispatch, ItemState, Millis, Outgoing, QueueItem, WorkMessage, new_token};

/// Most keys one request may queue.
pub const MAX_KEYS_PER_REQUEST: usize = 10_000;
/// Most missing keys an answer lists; the count covers them all.
pub const NOT_FOUND_LISTED: usize = 100;
/// A queued item whose dispatch is older than this has likely lost its message: queueing it
/// again dispatches it anew. Longer than SQS's longest delay, so a retry's delayed message is
/// never taken for lost.
const REDISPATCH_QUEUED_AFTER_MS: Millis = 20 * 60 * 1000;
/// Conditional writes in flight per request: enough to queue 10,000 keys in a few seconds.
const WRITE_CONCURRENCY: usize = 32;
/// A second pass over waiting items after the job starts, for items a worker parked while it
/// still saw the job stopped.
const LATE_RELEASE_DELAY_SECONDS: u32 = 60;

/// What queueing did, key by key, as the API answers it.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct QueueReport {
    /// Dispatched to the worker now.
    pub queued: usize,
    /// Stored as waiting: the job is stopped.
    pub waiting: usize,
    /// Already queued or waiting: nothing more was needed.
    pub already_queued: usize,
    /// Running now: marked to run once more when the run ends.
    pub run_again: usize,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub not_found: Vec<Key>,
    #[serde(skip_serializing_if = "is_zero")]
    pub not_found_count: usize,
}

fn is_zero(count: &usize) -> bool {
    *count == 0
}

impl QueueReport {
    pub fn keys_queued(&self) -> u64 {
        (self.queued + self.waiting + self.already_queued + self.run_again) as u64
    }
}

impl Ports {
    /// The unit's configuration, if it exists and accepts reprocess requests.
    pub async fn open_unit(&self, unit: &StorageUnit) -> Result<UnitConfig, Error> {
        let config = self.config.get(unit).await?.ok_or_else(|| Error::StorageUnitNotFound(unit.clone()))?;
        if !config.reprocess_queue.enabled {
            return Err(Error::QueueDisabled(unit.clone()));
        }
        Ok(config)
    }

    pub async fn queue_key(&self, item: &ItemRef) -> Result<QueueReport, Error> {
        let config = self.open_unit(&item.storage_unit).await?;
        let stored =
            self.content.existing_keys(&item.storage_unit, &item.scope, std::slice::from_ref(&item.key)).await?;
        if stored.is_empty() {
            return Err(Error::KeyNotFound(format!("key '{}' is not stored in scope '{}'", item.key, item.scope)));
        }
        self.enqueue_stored(&config, &item.storage_unit, &item.scope, vec![item.key.clone()]).await
    }

    /// Queues the listed keys that are stored; the others are reported, not queued.
    pub async fn queue_keys(&self, unit: &StorageUnit, scope: &Scope, keys: Vec<Key>) -> Result<QueueReport, Error> {
        if keys.is_empty() {
            return Err(Error::BadRequest("keys: at least one key is needed".into()));
        }
        if keys.len() > MAX_KEYS_PER_REQUEST {
            return Err(Error::TooManyKeys { count: keys.len(), limit: MAX_KEYS_PER_REQUEST });
        }
        let mut seen = HashSet::with_capacity(keys.len());
        let keys: Vec<Key> = keys.into_iter().filter(|key| seen.insert(key.clone())).collect();
        let config = self.open_unit(unit).await?;

        let stored = self.content.existing_keys(unit, scope, &keys).await?;
        let (present, missing): (Vec<Key>, Vec<Key>) = keys.into_iter().partition(|key| stored.contains(key));
        if present.is_empty() {
            return Err(Error::KeyNotFound(format!("none of the {} keys is stored in scope '{scope}'", missing.len())));
        }

        let mut report = self.enqueue_stored(&config, unit, scope, present).await?;
        report.not_found_count = missing.len();
        report.not_found = missing.into_iter().take(NOT_FOUND_LISTED).collect();
        Ok(report)
    }

    /// Starts a background expansion of every key stored in the scope; answers at once.
    pub async fn queue_all(&self, unit: &StorageUnit, scope: &Scope) -> Result<Expansion, Error> {
        self.open_unit(unit).await?;
        let expansion = Expansion::start(new_token(), unit.clone(), scope.clone(), self.clock.now());
        self.expansions.create(&expansion).await?;

        let first_pages: Vec<Outgoing> = (0..CONTENT_SHARDS)
            .map(|shard| {
                Outgoing::now(WorkMessage::Expand {
                    storage_unit: unit.clone(),
                    scope: scope.clone(),
                    expansion_id: expansion.id.clone(),
                    shard,
                    page: 0,
                    cursor: None,
                })
            })
            .collect();
        // Limitation: if some first pages cannot be sent, the expansion record stays "running"
        // with those shards never walked; the caller gets a 503 and starts a new expansion.
        let unsent = self.work.send(&first_pages).await?;
        if !unsent.is_empty() {
            return Err(unavailable("sending the expansion's first pages").into());
        }
        info!(storage_unit = %unit, %scope, expansion_id = %expansion.id, "expansion started");
        Ok(expansion)
    }

    /// Takes every item of the unit away from the worker that holds it and queues it again.
    /// The old worker's outcome is then dropped, since its dispatch is no longer current.
    pub async fn reset(&self, unit: &StorageUnit) -> Result<usize, Error> {
        self.open_unit(unit).await?;
        let mut assigned = Vec::new();
        let mut cursor = None;
        loop {
            let page = self.queue.list_in_state(unit, ItemState::Assigned, cursor, 100).await?;
            assigned.extend(page.items);
            cursor = page.next;
            if cursor.is_none() {
                break;
            }
        }
        // Each new dispatch is delayed until the old lease would have ended: the old worker's
        // outcome is dropped at once, and no second worker runs the modules beside it.
        let now = self.clock.now();
        let requeued = self
            .redispatch(assigned, ItemState::Assigned, |item| {
                let left_ms = item.lease.as_ref().map_or(0, |lease| lease.expires_at - now).max(0);
                ((left_ms as u64).div_ceil(1000) as u32).min(crate::queue::MAX_DELAY_SECONDS)
            })
            .await?;
        info!(storage_unit = %unit, requeued, "reset: assigned items queued again with new dispatches");
        Ok(requeued)
    }

    /// Switches the job on or off. Starting it releases what waits, in the background.
    pub async fn set_job_running(&self, unit: &StorageUnit, running: bool) -> Result<(), Error> {
        let mut config = self.config.get(unit).await?.ok_or_else(|| Error::StorageUnitNotFound(unit.clone()))?;
        config.reprocess_job.running = running;
        // Limitation: read-modify-write without a version check; two concurrent configuration
        // writes to one unit keep the last.
        self.config.put(unit, &config).await?;
        if running {
            self.release_waiting(unit).await?;
        }
        info!(storage_unit = %unit, running, "job switched");
        Ok(())
    }

    /// Starts the background release of the unit's waiting items, with a second pass later.
    pub(crate) async fn release_waiting(&self, unit: &StorageUnit) -> Result<(), Error> {
        let release = WorkMessage::ReleaseWaiting { storage_unit: unit.clone(), cursor: None };
        let passes =
            [Outgoing::now(release.clone()), Outgoing { message: release, delay_seconds: LATE_RELEASE_DELAY_SECONDS }];
        if !self.work.send(&passes).await?.is_empty() {
            return Err(unavailable("sending the release of waiting items").into());
        }
        Ok(())
    }

    /// Queues keys known to be stored: one conditional write each, then the dispatches in
    /// batches of ten. Shared by the API and by the background expansion.
    pub async fn enqueue_stored(
        &self,
        config: &UnitConfig,
        unit: &StorageUnit,
        scope: &Scope,
        keys: Vec<Key>,
    ) -> Result<QueueReport, Error> {
        let now = self.clock.now();
        let state = if config.reprocess_job.running { ItemState::Queued } else { ItemState::Waiting };
        let outcomes: Vec<(ItemRef, Result<Enqueued, BackendError>)> = stream::iter(keys)
            .map(|key| async move {
                let item = ItemRef::new(unit.clone(), scope.clone(), key);
                let request = EnqueueRequest {
                    token: new_token(),
                    state,
                    now,
                    redispatch_queued_before: now - REDISPATCH_QUEUED_AFTER_MS,
                };
                let outcome = self.queue.enqueue(&item, &request).await;
                (item, outcome)
            })
            .buffer_unordered(WRITE_CONCURRENCY)
            .collect()
            .await;

        let mut report = QueueReport::default();
        let mut dispatches = Vec::new();
        let mut first_error = None;
        for (item, outcome) in outcomes {
            match outcome {
                Ok(Enqueued::Dispatch(dispatch)) => dispatches.push((item, dispatch)),
                Ok(Enqueued::Waiting) => report.waiting += 1,
                Ok(Enqueued::Coalesced(_)) => report.already_queued += 1,
                Ok(Enqueued::RunAgain) => report.run_again += 1,
                Err(error) => {
                    first_error.get_or_insert(error);
                }
            }
        }

        // The writes that did succeed get their messages even when others failed, so no
        // item is left queued without one.
        report.queued = dispatches.len();
        let unsent = match self.send_dispatches(&dispatches, |_| 0).await {
            Ok(unsent) => unsent,
            // Which batches went out is unknown: every dispatch is marked lost, and a lost one
            // that was in fact sent is harmless (its message still matches the item).
            Err(error) => {
                for (item, dispatch) in &dispatches {
                    self.forget_dispatch(item, dispatch).await;
                }
                return Err(error.into());
            }
        };
        for index in &unsent {
            let (item, dispatch) = &dispatches[*index];
            self.forget_dispatch(item, dispatch).await;
        }
        if let Some(error) = first_error {
            return Err(error.into());
        }
        if !unsent.is_empty() {
            return Err(unavailable("sending dispatches").into());
        }
        // The job may have started while these items were written as waiting, after its
        // release passed them by.
        if report.waiting > 0 && self.config.get(unit).await?.is_some_and(|config| config.reprocess_job.running) {
            self.release_waiting(unit).await?;
        }
        Ok(report)
    }

    /// Gives each item, found in `from`, a new dispatch, sent before the item's transition is
    /// written so that no item is ever queued without a message. A message that arrives
    /// before its transition is committed carries a higher sequence than its item, and the
    /// worker puts it back for later.
    pub async fn redispatch(
        &self,
        items: Vec<QueueItem>,
        from: ItemState,
        delay_seconds: impl Fn(&QueueItem) -> u32,
    ) -> Result<usize, Error> {
        let next: Vec<(ItemRef, Dispatch)> =
            items.iter().map(|item| (item.item.clone(), item.dispatch.next())).collect();
        let delays: Vec<u32> = items.iter().map(&delay_seconds).collect();
        let unsent: HashSet<usize> =
            self.send_dispatches_delayed(&next, |index| delays[index]).await?.into_iter().collect();
        let now = self.clock.now();

        let transitions = items.into_iter().zip(next).enumerate().filter(|(index, _)| !unsent.contains(index)).map(
            |(_, (current, (item, dispatch)))| async move {
                let expect = Expect::InState { token: current.dispatch.token, state: from };
                let change = Change::Redispatch {
                    dispatch,
                    state: ItemState::Queued,
                    reset_attempts: false,
                    last_error: current.last_error,
                    now,
                };
                self.queue.transition(&item, &expect, &change).await
            },
        );
        let results: Vec<_> = stream::iter(transitions).buffer_unordered(WRITE_CONCURRENCY).collect().await;
        let mut moved = 0;
        for result in results {
            if matches!(result?, Transition::Applied(_)) {
                moved += 1;
            }
        }
        if !unsent.is_empty() {
            return Err(unavailable("sending dispatches").into());
        }
        Ok(moved)
    }

    /// Sends one dispatch message per item; answers the positions not sent.
    pub async fn send_dispatches(
        &self,
        dispatches: &[(ItemRef, Dispatch)],
        delay_seconds: impl Fn(&ItemRef) -> u32,
    ) -> Result<Vec<usize>, BackendError> {
        self.send_dispatches_delayed(dispatches, |index| delay_seconds(&dispatches[index].0)).await
    }

    async fn send_dispatches_delayed(
        &self,
        dispatches: &[(ItemRef, Dispatch)],
        delay_seconds: impl Fn(usize) -> u32,
    ) -> Result<Vec<usize>, BackendError> {
        if dispatches.is_empty() {
            return Ok(Vec::new());
        }
        let messages: Vec<Outgoing> = dispatches
            .iter()
            .enumerate()
            .map(|(index, (item, dispatch))| Outgoing {
                message: WorkMessage::dispatch(item, dispatch),
                delay_seconds: delay_seconds(index),
            })
            .collect();
        self.work.send(&messages).await
    }

    /// After a failed send: marks the item's dispatch as lost, so that queueing it again
    /// dispatches it at once instead of coalescing with a message that does not exist.
    async fn forget_dispatch(&self, item: &ItemRef, dispatch: &Dispatch) {
        let expect = Expect::InState { token: dispatch.token.clone(), state: ItemState::Queued };
        if let Err(error) = self.queue.transition(item, &expect, &Change::ForgetDispatch).await {
            warn!(%item, %error, "dispatch not sent and not marked lost; it is dispatched again when queued after 20 minutes");
        }
    }
}

fn unavailable(operation: &'static str) -> BackendError {
    BackendError::Unavailable { operation, detail: "some messages were not accepted by SQS".into() }
}
