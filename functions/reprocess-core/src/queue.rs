//! The queue item, its states and the messages that dispatch it.
//!
//! ```text
//! queued --(lease taken)--> assigned --(modules succeed)--> removed
//!    ^                        |  \--(retryable, attempts left)--> queued (new dispatch, delayed)
//!    |                        |  \--(permanent, or attempts spent)--> failed
//!    +--(reset, or expired lease re-queued)--+
//! queued --(job stopped)--> waiting --(job started)--> queued
//! ```

use serde::{Deserialize, Serialize};

use crate::names::{ItemRef, Key, Scope, StorageUnit};

/// Milliseconds since the Unix epoch; every timestamp stored or compared is one of these.
pub type Millis = i64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ItemState {
    Queued,
    Waiting,
    Assigned,
    Failed,
}

impl ItemState {
    pub const ALL: [ItemState; 4] = [Self::Queued, Self::Waiting, Self::Assigned, Self::Failed];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Waiting => "waiting",
            Self::Assigned => "assigned",
            Self::Failed => "failed",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|state| state.as_str() == value)
    }
}

/// One dispatch of an item. The token is fresh for every dispatch and travels in the SQS
/// message; the sequence number grows with every dispatch of the same item, so that a message
/// sent just before its item's transition is committed can be told from a stale one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dispatch {
    pub token: String,
    pub seq: u64,
}

impl Dispatch {
    pub fn first() -> Self {
        Self { token: new_token(), seq: 1 }
    }

    pub fn next(&self) -> Self {
        Self { token: new_token(), seq: self.seq + 1 }
    }
}

pub fn new_token() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub owner: String,
    pub expires_at: Millis,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueItem {
    pub item: ItemRef,
    pub state: ItemState,
    pub dispatch: Dispatch,
    /// Runs begun in the item's current life; a revival starts again at zero.
    pub attempts: u32,
    /// Queued again while assigned: run once more after the current run.
    pub run_again: bool,
    pub lease: Option<Lease>,
    pub last_error: Option<String>,
    pub dispatched_at: Millis,
}

/// What travels through SQS to the worker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum WorkMessage {
    /// Run the modules of one item.
    #[serde(rename_all = "camelCase")]
    Dispatch { storage_unit: StorageUnit, scope: Scope, key: Key, token: String, seq: u64 },
    /// Queue one page of the keys of one shard of a scope, then pass the next page on.
    #[serde(rename_all = "camelCase")]
    Expand {
        storage_unit: StorageUnit,
        scope: Scope,
        expansion_id: String,
        shard: u16,
        page: u32,
        cursor: Option<String>,
    },
    /// Move a page of the unit's waiting items back to the queue, then look for more.
    #[serde(rename_all = "camelCase")]
    ReleaseWaiting { storage_unit: StorageUnit, cursor: Option<String> },
}

impl WorkMessage {
    pub fn dispatch(item: &ItemRef, dispatch: &Dispatch) -> Self {
        Self::Dispatch {
            storage_unit: item.storage_unit.clone(),
            scope: item.scope.clone(),
            key: item.key.clone(),
            token: dispatch.token.clone(),
            seq: dispatch.seq,
        }
    }
}

/// A message and how long SQS keeps it hidden before its first delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    pub message: WorkMessage,
    pub delay_seconds: u32,
}

impl Outgoing {
    pub fn now(message: WorkMessage) -> Self {
        Self { message, delay_seconds: 0 }
    }
}

/// SQS refuses delays above fifteen minutes.
pub const MAX_DELAY_SECONDS: u32 = 900;

/// Exponential backoff after the `attempts`-th failed run: base, 2×base, 4×base, … capped.
pub fn backoff_seconds(base_seconds: u32, attempts: u32) -> u32 {
    let factor = 1u64 << attempts.saturating_sub(1).min(20);
    (u64::from(base_seconds) * factor).min(u64::from(MAX_DELAY_SECONDS)) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_then_caps_at_the_sqs_limit() {
        let delays: Vec<u32> = (1..=6).map(|attempt| backoff_seconds(10, attempt)).collect();
        assert_eq!(delays, [10, 20, 40, 80, 160, 320]);
        assert_eq!(backoff_seconds(10, 40), MAX_DELAY_SECONDS);
        assert_eq!(backoff_seconds(0, 3), 0);
    }

    #[test]
    fn a_dispatch_message_round_trips_through_json() {
        let item = ItemRef::new(
            StorageUnit::parse("su").unwrap(),
            Scope::parse("index").unwrap(),
            Key::parse("a/b c,ü").unwrap(),
        );
        let message = WorkMessage::dispatch(&item, &Dispatch { token: "t".into(), seq: 3 });
        let json = serde_json::to_string(&message).unwrap();
        assert!(json.contains(r#""type":"dispatch""#), "{json}");
        assert_eq!(serde_json::from_str::<WorkMessage>(&json).unwrap(), message);
    }
}
