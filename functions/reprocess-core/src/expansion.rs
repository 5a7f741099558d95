//! `reprocess/all` in the background: each content shard of the scope is walked by its own
//! chain of SQS messages, one page per message, so no invocation does work proportional to the
//! unit's size and the shards' partitions are read side by side rather than one hot one.

use serde::Serialize;

use crate::names::{Key, Scope, StorageUnit};
use crate::queue::Millis;

/// Partitions per (storage unit, scope) in the content table. Part of the stored layout: a
/// key's shard is where its content lives, so changing this needs a migration.
pub const CONTENT_SHARDS: u16 = 16;

/// Keys queued by one expansion message: a hundred conditional writes and ten sends, well
/// inside one invocation's time whatever the unit's size.
pub const EXPANSION_PAGE_SIZE: u32 = 100;

/// The content shard of a key: FNV-1a, stable across releases and platforms.
pub fn content_shard(key: &Key) -> u16 {
    let hash =
        key.as_str().bytes().fold(0x811c_9dc5_u32, |hash, byte| (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193));
    (hash % u32::from(CONTENT_SHARDS)) as u16
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expansion {
    pub id: String,
    pub storage_unit: StorageUnit,
    pub scope: Scope,
    pub started_at: Millis,
    /// Per shard, the page its chain is at; `None` once the shard is done.
    pub shard_pages: Vec<Option<u32>>,
    pub keys_queued: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ExpansionState {
    Running,
    Completed,
}

impl Expansion {
    pub fn start(id: String, storage_unit: StorageUnit, scope: Scope, started_at: Millis) -> Self {
        Self {
            id,
            storage_unit,
            scope,
            started_at,
            shard_pages: vec![Some(0); usize::from(CONTENT_SHARDS)],
            keys_queued: 0,
        }
    }

    pub fn state(&self) -> ExpansionState {
        if self.shard_pages.iter().all(Option::is_none) { ExpansionState::Completed } else { ExpansionState::Running }
    }

    pub fn shards_done(&self) -> usize {
        self.shard_pages.iter().filter(|page| page.is_none()).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_spread_over_every_shard() {
        let mut counts = vec![0u32; usize::from(CONTENT_SHARDS)];
        for n in 0..1600 {
            counts[usize::from(content_shard(&Key::parse(format!("doc-{n}")).unwrap()))] += 1;
        }
        assert!(counts.iter().all(|&count| (50..=150).contains(&count)), "{counts:?}");
    }

    #[test]
    fn an_expansion_completes_when_every_shard_is_done() {
        let unit = StorageUnit::parse("su").unwrap();
        let mut expansion = Expansion::start("e".into(), unit, Scope::parse("index").unwrap(), 0);
        assert_eq!(expansion.state(), ExpansionState::Running);
        expansion.shard_pages.iter_mut().for_each(|page| *page = None);
        assert_eq!(expansion.state(), ExpansionState::Completed);
    }
}
