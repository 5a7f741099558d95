//! The worker's domain: one SQS batch in, the ids of the messages to deliver again out.
//!
//! Per dispatch the cost is one conditional write to take the lease and one to complete,
//! plus this batch's share of one configuration read per unit and one content batch read.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use serde_json::Value;
use tracing::{Instrument, error, info, info_span, warn};

use crate::config::{LEASE_MARGIN_MS, UnitConfig};
use crate::error::{BackendError, Error};
use crate::expansion::EXPANSION_PAGE_SIZE;
use crate::modules::{ModuleFailure, ModuleRunner, ProcessEvent};
use crate::names::{ItemRef, Scope, StorageUnit};
use crate::ports::{Change, Expect, Ports, Transition};
use crate::queue::{Dispatch, ItemState, Outgoing, QueueItem, WorkMessage, backoff_seconds};

/// A message as SQS delivered it.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub message_id: String,
    pub body: String,
}

/// What becomes of a delivered message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// Handled, or harmless to drop: SQS deletes it.
    Done,
    /// Deliver again after the visibility timeout; after `maxReceiveCount` deliveries SQS
    /// moves it to the dead-letter queue.
    Retry,
}

/// A dispatch whose lease this worker holds, ready to run.
struct Claimed {
    message_id: String,
    item: QueueItem,
    config: Arc<UnitConfig>,
}

pub struct Worker {
    ports: Ports,
    modules: Arc<dyn ModuleRunner>,
    /// This worker's identity in leases: one per process, so one instance's concurrent runs
    /// never mistake each other's leases for their own.
    owner: String,
    expansion_page_size: u32,
}

impl Worker {
    pub fn new(ports: Ports, modules: Arc<dyn ModuleRunner>, owner: String) -> Self {
        Self { ports, modules, owner, expansion_page_size: EXPANSION_PAGE_SIZE }
    }

    /// Smaller pages let a test see many pages without storing many thousand keys.
    pub fn with_expansion_page_size(mut self, keys: u32) -> Self {
        self.expansion_page_size = keys.max(1);
        self
    }

    /// Handles a batch; answers the ids of the messages that failed, for a partial batch
    /// response. One message's failure never makes its neighbours run again.
    pub async fn process_batch(&self, deliveries: Vec<Delivery>) -> Vec<String> {
        let mut failed = Vec::new();
        let mut parsed = Vec::with_capacity(deliveries.len());
        for delivery in deliveries {
            match serde_json::from_str::<WorkMessage>(&delivery.body) {
                Ok(message) => parsed.push((delivery.message_id, message)),
                Err(parse_error) => {
                    error!(message_id = %delivery.message_id, %parse_error, "unreadable message; it goes to the dead-letter queue after its last delivery");
                    failed.push(delivery.message_id);
                }
            }
        }

        let configs = self.load_configs(parsed.iter().map(|(_, message)| message_unit(message))).await;

        let mut dispatches = Vec::new();
        let mut others = Vec::new();
        for (message_id, message) in parsed {
            match message {
                WorkMessage::Dispatch { storage_unit, scope, key, token, seq } => {
                    let item = ItemRef::new(storage_unit, scope, key);
                    dispatches.push((message_id, item, Dispatch { token, seq }));
                }
                other => others.push((message_id, other)),
            }
        }

        let claims = join_all(dispatches.into_iter().map(|(message_id, item, dispatch)| {
            let span = info_span!("dispatch", %message_id, storage_unit = %item.storage_unit, scope = %item.scope, key = %item.key, seq = dispatch.seq);
            let config = configs.get(&item.storage_unit).cloned();
            async move { (message_id.clone(), self.claim(message_id, item, dispatch, config).await) }.instrument(span)
        }))
        .await;

        let mut to_run = Vec::new();
        for (message_id, claim) in claims {
            match claim {
                Ok(Some(claimed)) => to_run.push(claimed),
                Ok(None) => {}
                Err(()) => failed.push(message_id),
            }
        }
        failed.extend(self.run_claimed(to_run).await);

        let other_outcomes = join_all(others.into_iter().map(|(message_id, message)| {
            let span = info_span!("message", %message_id, storage_unit = %message_unit(&message));
            let config = configs.get(message_unit(&message)).cloned();
            async move { (message_id, self.handle_other(message, config).await) }.instrument(span)
        }))
        .await;
        failed.extend(other_outcomes.into_iter().filter(|(_, outcome)| *outcome == Outcome::Retry).map(|(id, _)| id));
        failed
    }

    /// One configuration read per unit in the batch. A unit whose read failed is absent, and
    /// its messages are delivered again.
    async fn load_configs<'a>(
        &self,
        units: impl Iterator<Item = &'a StorageUnit>,
    ) -> HashMap<StorageUnit, Option<Arc<UnitConfig>>> {
        let mut distinct: Vec<&StorageUnit> = units.collect();
        distinct.sort();
        distinct.dedup();
        let reads =
            join_all(distinct.into_iter().map(|unit| async move { (unit.clone(), self.ports.config.get(unit).await) }));
        let mut configs = HashMap::new();
        for (unit, read) in reads.await {
            match read {
                Ok(config) => {
                    configs.insert(unit, config.map(Arc::new));
                }
                Err(error) => {
                    warn!(storage_unit = %unit, %error, "configuration unreadable; its messages will be delivered again")
                }
            }
        }
        configs
    }

    /// Takes the lease of a dispatch, parks it while the job is stopped, or drops it when it
    /// is stale. `Err(())` asks for a later delivery.
    async fn claim(
        &self,
        message_id: String,
        item: ItemRef,
        dispatch: Dispatch,
        config: Option<Option<Arc<UnitConfig>>>,
    ) -> Result<Option<Claimed>, ()> {
        let Some(config) = config else { return Err(()) };
        let Some(config) = config else {
            // Marked lost, so that queueing the key once the unit exists again dispatches it.
            let expect = Expect::InState { token: dispatch.token.clone(), state: ItemState::Queued };
            let forgotten = self.ports.queue.transition(&item, &expect, &Change::ForgetDispatch).await;
            info!(forgotten = forgotten.is_ok(), "storage unit no longer exists; dispatch dropped");
            return Ok(None);
        };

        // A message sent just ahead of its item's transition is looked at again shortly, rather
        // than left hidden for a whole visibility timeout.
        for recheck in 0..=SENT_AHEAD_RECHECKS {
            let now = self.ports.clock.now();
            let (expect, change) = if config.reprocess_job.running {
                let lease_expires_at = now + i64::from(config.lease_seconds) * 1000;
                let change = Change::Assign { owner: self.owner.clone(), lease_expires_at, now };
                (Expect::Takeable { token: dispatch.token.clone(), now }, change)
            } else {
                // Takeable, not just queued: an item whose holder died while the job was
                // stopped waits too, instead of its dispatch bouncing to the dead-letter queue.
                (Expect::Takeable { token: dispatch.token.clone(), now }, Change::Park { now })
            };
            let transition = self.ports.queue.transition(&item, &expect, &change).await.map_err(|error| {
                warn!(%error, "lease not taken; the dispatch will be delivered again");
            })?;

            match transition {
                Transition::Applied(Some(current)) if current.state == ItemState::Assigned => {
                    if current.attempts > 1 {
                        info!(attempt = current.attempts, "lease taken over or retry begun");
                    }
                    return Ok(Some(Claimed { message_id, item: current, config }));
                }
                Transition::Applied(_) => {
                    info!("job stopped; item waits until it is started");
                    return Ok(None);
                }
                Transition::Refused(current) => match judge_refused(&dispatch, current.as_ref()) {
                    Refusal::Drop => return Ok(None),
                    Refusal::Later => return Err(()),
                    Refusal::SentAhead if recheck < SENT_AHEAD_RECHECKS => {
                        tokio::time::sleep(SENT_AHEAD_PAUSE).await;
                    }
                    Refusal::SentAhead => return Err(()),
                },
            }
        }
        Err(())
    }

    /// Reads the claimed items' content in one batch and runs their modules side by side.
    async fn run_claimed(&self, claimed: Vec<Claimed>) -> Vec<String> {
        if claimed.is_empty() {
            return Vec::new();
        }
        let items: Vec<ItemRef> = claimed.iter().map(|claim| claim.item.item.clone()).collect();
        let contents = match self.ports.content.get_many(&items).await {
            Ok(contents) => contents,
            Err(error) => {
                // The leases run out and the redelivered messages take the items over.
                warn!(%error, "content unreadable; the batch's dispatches will be delivered again");
                return claimed.into_iter().map(|claim| claim.message_id).collect();
            }
        };

        let outcomes = join_all(claimed.into_iter().map(|claim| {
            let item = &claim.item.item;
            let span = info_span!("run", message_id = %claim.message_id, storage_unit = %item.storage_unit, scope = %item.scope, key = %item.key, attempt = claim.item.attempts);
            let content = contents.get(item).cloned();
            async move { (claim.message_id.clone(), self.run_one(&claim, content).await) }.instrument(span)
        }))
        .await;
        outcomes.into_iter().filter(|(_, outcome)| *outcome == Outcome::Retry).map(|(id, _)| id).collect()
    }

    async fn run_one(&self, claim: &Claimed, content: Option<Value>) -> Outcome {
        // The run ends before the lease does, so no other worker can take the item over while
        // its modules still run here.
        let lease_ends = claim.item.lease.as_ref().map_or(0, |lease| lease.expires_at);
        let budget_ms = (lease_ends - self.ports.clock.now() - LEASE_MARGIN_MS as i64 / 2).max(0) as u64;
        let result = match content {
            None => Err(ModuleFailure::Permanent("content missing: the key is no longer stored in this scope".into())),
            Some(content) => tokio::time::timeout(Duration::from_millis(budget_ms), self.run_modules(claim, content))
                .await
                .unwrap_or_else(|_| Err(ModuleFailure::Retryable("the run was cut off before its lease ended".into()))),
        };
        match self.finish(claim, result).await {
            Ok(outcome) => outcome,
            Err(error) => {
                warn!(%error, "outcome not recorded; the dispatch will be delivered again and the lease taken over");
                Outcome::Retry
            }
        }
    }

    async fn run_modules(&self, claim: &Claimed, content: Value) -> Result<(), ModuleFailure> {
        let item = &claim.item.item;
        let modules =
            claim.config.modules_for(&item.scope).map_err(|error| ModuleFailure::Permanent(error.to_string()))?;
        let mut event = ProcessEvent {
            storage_unit: item.storage_unit.clone(),
            key: item.key.clone(),
            scope: item.scope.clone(),
            content,
        };
        for (index, module) in modules.iter().enumerate() {
            let changed =
                self.modules.process(module, &event, &claim.item.dispatch.token).await.map_err(|failure| {
                    let detail = format!("module {index} ({}): {failure}", module.kind());
                    match failure {
                        ModuleFailure::Retryable(_) => ModuleFailure::Retryable(detail),
                        ModuleFailure::Permanent(_) => ModuleFailure::Permanent(detail),
                    }
                })?;
            if let Some(content) = changed {
                event.content = content;
            }
        }
        Ok(())
    }

    /// Records a run's outcome under this worker's lease. A lease lost meanwhile (reset, or
    /// expiry and takeover) drops the outcome: the current holder's run is the one that counts.
    async fn finish(&self, claim: &Claimed, result: Result<(), ModuleFailure>) -> Result<Outcome, BackendError> {
        let item = &claim.item.item;
        let held = Expect::Held { token: claim.item.dispatch.token.clone(), owner: self.owner.clone() };
        let now = self.ports.clock.now();
        let attempts = claim.item.attempts;

        let change = match &result {
            Ok(()) => Change::Remove,
            Err(ModuleFailure::Retryable(error)) if attempts < claim.config.max_attempts => {
                let delay = backoff_seconds(claim.config.retry_base_seconds, attempts);
                info!(%error, attempt = attempts, retry_in_seconds = delay, "retryable failure; dispatched again with backoff");
                return self.dispatch_again(claim, Some(error.clone()), false, delay).await;
            }
            Err(failure) => {
                let error = match failure {
                    ModuleFailure::Retryable(error) => {
                        format!("{error} (after {attempts} attempts)")
                    }
                    ModuleFailure::Permanent(error) => error.clone(),
                };
                Change::Fail { error, now }
            }
        };

        match self.ports.queue.transition(item, &held, &change).await? {
            Transition::Applied(_) => {
                match &change {
                    Change::Fail { error, .. } => {
                        warn!(%error, "item failed; queue it again to revive it")
                    }
                    _ => info!("modules succeeded; item done"),
                }
                Ok(Outcome::Done)
            }
            Transition::Refused(Some(current))
                if current.run_again
                    && current.dispatch.token == claim.item.dispatch.token
                    && current.lease.as_ref().is_some_and(|lease| lease.owner == self.owner) =>
            {
                info!("queued again during the run; dispatched once more");
                self.dispatch_again(claim, None, true, 0).await
            }
            Transition::Refused(_) => {
                info!("lease lost during the run (reset or takeover); this run's outcome is dropped");
                Ok(Outcome::Done)
            }
        }
    }

    /// A new dispatch for the item, sent before the transition is written so that the item is
    /// never queued without a message.
    async fn dispatch_again(
        &self,
        claim: &Claimed,
        last_error: Option<String>,
        reset_attempts: bool,
        delay_seconds: u32,
    ) -> Result<Outcome, BackendError> {
        let item = &claim.item.item;
        let dispatch = claim.item.dispatch.next();
        let unsent = self.ports.send_dispatches(&[(item.clone(), dispatch.clone())], |_| delay_seconds).await?;
        if !unsent.is_empty() {
            return Ok(Outcome::Retry);
        }
        let held = Expect::Held { token: claim.item.dispatch.token.clone(), owner: self.owner.clone() };
        let now = self.ports.clock.now();
        let change = Change::Redispatch { dispatch, state: ItemState::Queued, reset_attempts, last_error, now };
        if let Transition::Refused(_) = self.ports.queue.transition(item, &held, &change).await? {
            info!("lease lost during the run; the new dispatch is stale and will be dropped");
        }
        Ok(Outcome::Done)
    }

    async fn handle_other(&self, message: WorkMessage, config: Option<Option<Arc<UnitConfig>>>) -> Outcome {
        let Some(config) = config else {
            return Outcome::Retry;
        };
        let Some(config) = config else {
            info!("storage unit no longer exists; message dropped");
            return Outcome::Done;
        };
        let result = match message {
            WorkMessage::Expand { storage_unit, scope, expansion_id, shard, page, cursor } => {
                let page = ExpandPage { unit: storage_unit, scope, expansion_id, shard, page, cursor };
                self.expand_page(&config, page).await
            }
            WorkMessage::ReleaseWaiting { storage_unit, cursor } => {
                self.release_waiting(&config, storage_unit, cursor).await
            }
            WorkMessage::Dispatch { .. } => unreachable!("dispatches are claimed in process_batch"),
        };
        match result {
            Ok(()) => Outcome::Done,
            Err(error) => {
                warn!(%error, "message not handled; it will be delivered again");
                Outcome::Retry
            }
        }
    }

    /// Queues one page of one shard, sends the next page on, then records the progress. A
    /// repeated delivery of a page re-queues its keys harmlessly (they coalesce) and loses the
    /// race to record it, so the chain never forks for long and every key count is exact.
    async fn expand_page(&self, config: &UnitConfig, page: ExpandPage) -> Result<(), Error> {
        let ExpandPage { unit, scope, expansion_id, shard, page, cursor } = page;
        let Some(expansion) = self.ports.expansions.get(&unit, &expansion_id).await? else {
            info!(%expansion_id, "expansion no longer exists; page dropped");
            return Ok(());
        };
        if expansion.shard_pages.get(usize::from(shard)).copied().flatten() != Some(page) {
            info!(%expansion_id, shard, page, "page already expanded; repeated delivery dropped");
            return Ok(());
        }

        let keys = self.ports.content.list_keys(&unit, &scope, shard, cursor, self.expansion_page_size).await?;
        let report = self.ports.enqueue_stored(config, &unit, &scope, keys.items).await?;
        let next_page = keys.next.is_some().then_some(page + 1);
        if let Some(next_cursor) = keys.next {
            let next = WorkMessage::Expand {
                storage_unit: unit.clone(),
                scope: scope.clone(),
                expansion_id: expansion_id.clone(),
                shard,
                page: page + 1,
                cursor: Some(next_cursor),
            };
            if !self.ports.work.send(&[Outgoing::now(next)]).await?.is_empty() {
                return Err(BackendError::Unavailable {
                    operation: "sending the next page",
                    detail: "not accepted".into(),
                }
                .into());
            }
        }
        let recorded =
            self.ports.expansions.advance(&unit, &expansion_id, shard, page, next_page, report.keys_queued()).await?;
        if !recorded {
            info!(%expansion_id, shard, page, "page recorded by a concurrent delivery");
        } else if next_page.is_none() {
            info!(%expansion_id, shard, "shard expanded");
        }
        Ok(())
    }

    /// Moves a page of waiting items back to the queue, and passes the rest on.
    async fn release_waiting(
        &self,
        config: &UnitConfig,
        unit: StorageUnit,
        cursor: Option<String>,
    ) -> Result<(), Error> {
        if !config.reprocess_job.running {
            info!("job stopped again; release ended");
            return Ok(());
        }
        let page = self.ports.queue.list_in_state(&unit, ItemState::Waiting, cursor, 100).await?;
        let released = self.ports.redispatch(page.items, ItemState::Waiting, |_| 0).await?;
        info!(released, "waiting items queued");
        if let Some(cursor) = page.next {
            let next = WorkMessage::ReleaseWaiting { storage_unit: unit, cursor: Some(cursor) };
            if !self.ports.work.send(&[Outgoing::now(next)]).await?.is_empty() {
                return Err(BackendError::Unavailable {
                    operation: "sending the next release",
                    detail: "not accepted".into(),
                }
                .into());
            }
        }
        Ok(())
    }
}

struct ExpandPage {
    unit: StorageUnit,
    scope: Scope,
    expansion_id: String,
    shard: u16,
    page: u32,
    cursor: Option<String>,
}

fn message_unit(message: &WorkMessage) -> &StorageUnit {
    match message {
        WorkMessage::Dispatch { storage_unit, .. }
        | WorkMessage::Expand { storage_unit, .. }
        | WorkMessage::ReleaseWaiting { storage_unit, .. } => storage_unit,
    }
}

/// What becomes of a dispatch that could not be taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    /// Done, stale or no longer runnable: delete the message.
    Drop,
    /// Another worker holds the item: deliver again after the visibility timeout.
    Later,
    /// Sent ahead of its item's transition, which is about to be written.
    SentAhead,
}

const SENT_AHEAD_RECHECKS: u32 = 3;
const SENT_AHEAD_PAUSE: Duration = Duration::from_millis(200);

/// Why a dispatch could not be taken, and whether its message is worth a later delivery.
fn judge_refused(dispatch: &Dispatch, current: Option<&QueueItem>) -> Refusal {
    let Some(current) = current else {
        info!("item already done; dispatch dropped");
        return Refusal::Drop;
    };
    if current.dispatch.token == dispatch.token {
        return match current.state {
            ItemState::Assigned => {
                let owner = current.lease.as_ref().map_or("", |lease| lease.owner.as_str());
                info!(lease_owner = owner, "another worker holds the lease; delivered again after it ends or expires");
                Refusal::Later
            }
            ItemState::Queued => Refusal::Later,
            ItemState::Waiting | ItemState::Failed => {
                info!(state = current.state.as_str(), "dispatch no longer runnable; dropped");
                Refusal::Drop
            }
        };
    }
    // Only an assigned item (reset, retry, run again) or a waiting one (release) has a
    // transition that a message can be sent ahead of.
    if dispatch.seq > current.dispatch.seq && matches!(current.state, ItemState::Assigned | ItemState::Waiting) {
        info!(item_seq = current.dispatch.seq, "dispatch sent ahead of its item's transition");
        return Refusal::SentAhead;
    }
    info!(item_seq = current.dispatch.seq, "stale dispatch dropped");
    Refusal::Drop
}
