//! Administration, content and status: what makes the service usable and observable on its own.

use std::collections::BTreeMap;
use std::time::{Duration, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tracing::info;

use crate::config::{ModuleSpec, UnitConfig};
use crate::error::Error;
use crate::expansion::{CONTENT_SHARDS, ExpansionState};
use crate::names::{ItemRef, Scope, StorageUnit};
use crate::ports::Ports;
use crate::queue::{ItemState, Millis};

/// What `transaction/execute` does with one key's scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Store; refused when the key is already stored in the scope.
    Add,
    /// Store, whether or not the key is stored.
    Update,
    Delete,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ItemCounts {
    pub queued: u64,
    pub assigned: u64,
    pub waiting: u64,
    pub failed: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExpansionStatus {
    pub id: String,
    pub scope: Scope,
    pub state: ExpansionState,
    pub keys_queued: u64,
    pub shards_done: usize,
    pub shards: u16,
    pub started_at: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UnitStatus {
    pub storage_unit: StorageUnit,
    pub items: ItemCounts,
    pub expansions: Vec<ExpansionStatus>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LeaseStatus {
    pub owner: String,
    pub expires_at: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ItemStatus {
    pub state: ItemState,
    pub attempts: u32,
    pub last_error: Option<String>,
    pub lease: Option<LeaseStatus>,
    pub run_again: bool,
}

/// RFC 3339 in UTC, to the second.
pub fn timestamp(millis: Millis) -> String {
    let instant = UNIX_EPOCH + Duration::from_millis(millis.max(0) as u64);
    humantime::format_rfc3339_seconds(instant).to_string()
}

impl Ports {
    async fn existing_config(&self, unit: &StorageUnit) -> Result<UnitConfig, Error> {
        self.config.get(unit).await?.ok_or_else(|| Error::StorageUnitNotFound(unit.clone()))
    }

    /// Writes the whole configuration, already validated. A configuration with the job running
    /// releases whatever waits, as the job route does: after a stop, after a deletion, or
    /// after an earlier write whose release was not sent. With nothing waiting it costs two
    /// messages and an empty query.
    pub async fn put_config(&self, unit: &StorageUnit, config: &UnitConfig) -> Result<(), Error> {
        self.config.put(unit, config).await?;
        if config.reprocess_job.running {
            self.release_waiting(unit).await?;
        }
        info!(storage_unit = %unit, "configuration written");
        Ok(())
    }

    pub async fn get_config(&self, unit: &StorageUnit) -> Result<UnitConfig, Error> {
        self.existing_config(unit).await
    }

    /// Deletes the configuration only. Stored content and queue items stay, so that nothing
    /// stored is lost by a mistaken call; the worker drops the dispatches of a unit that no
    /// longer exists, and writing the configuration again brings the unit back.
    pub async fn delete_unit(&self, unit: &StorageUnit) -> Result<(), Error> {
        if !self.config.delete(unit).await? {
            return Err(Error::StorageUnitNotFound(unit.clone()));
        }
        info!(storage_unit = %unit, "configuration deleted");
        Ok(())
    }

    pub async fn set_queue_enabled(&self, unit: &StorageUnit, enabled: bool) -> Result<(), Error> {
        let mut config = self.existing_config(unit).await?;
        config.reprocess_queue.enabled = enabled;
        // Limitation: read-modify-write without a version check; two concurrent
        // configuration writes to one unit keep the last.
        self.config.put(unit, &config).await?;
        info!(storage_unit = %unit, enabled, "reprocess queue switched");
        Ok(())
    }

    /// Replaces the modules of every scope; the whole configuration is validated again.
    pub async fn set_modules(
        &self,
        unit: &StorageUnit,
        modules: BTreeMap<Scope, Vec<ModuleSpec>>,
    ) -> Result<(), Error> {
        let mut config = self.existing_config(unit).await?;
        config.modules = modules;
        config.validate()?;
        self.config.put(unit, &config).await?;
        info!(storage_unit = %unit, scopes = config.modules.len(), "modules set");
        Ok(())
    }

    pub async fn execute(&self, item: &ItemRef, action: Action, content: Option<Value>) -> Result<(), Error> {
        self.existing_config(&item.storage_unit).await?;
        match action {
            Action::Add | Action::Update => {
                let content = match content {
                    Some(content @ Value::Object(_)) => content,
                    Some(_) => return Err(Error::BadRequest("content: must be a JSON object".into())),
                    None => return Err(Error::BadRequest("content: required for add and update".into())),
                };
                self.content.put(item, &content, action == Action::Add).await
            }
            Action::Delete => {
                if self.content.delete(item).await? {
                    Ok(())
                } else {
                    Err(Error::KeyNotFound(format!("key '{}' is not stored in scope '{}'", item.key, item.scope)))
                }
            }
        }
    }

    pub async fn fetch(&self, item: &ItemRef) -> Result<Value, Error> {
        self.existing_config(&item.storage_unit).await?;
        self.content
            .get(item)
            .await?
            .ok_or_else(|| Error::KeyNotFound(format!("key '{}' is not stored in scope '{}'", item.key, item.scope)))
    }

    pub async fn unit_status(&self, unit: &StorageUnit) -> Result<UnitStatus, Error> {
        self.existing_config(unit).await?;
        let (queued, assigned, waiting, failed) = futures::try_join!(
            self.queue.count_in_state(unit, ItemState::Queued),
            self.queue.count_in_state(unit, ItemState::Assigned),
            self.queue.count_in_state(unit, ItemState::Waiting),
            self.queue.count_in_state(unit, ItemState::Failed),
        )?;
        let expansions = self
            .expansions
            .list(unit)
            .await?
            .into_iter()
            .map(|expansion| ExpansionStatus {
                state: expansion.state(),
                shards_done: expansion.shards_done(),
                shards: CONTENT_SHARDS,
                started_at: timestamp(expansion.started_at),
                id: expansion.id,
                scope: expansion.scope,
                keys_queued: expansion.keys_queued,
            })
            .collect();
        Ok(UnitStatus {
            storage_unit: unit.clone(),
            items: ItemCounts { queued, assigned, waiting, failed },
            expansions,
        })
    }

    pub async fn item_status(&self, item: &ItemRef) -> Result<ItemStatus, Error> {
        self.existing_config(&item.storage_unit).await?;
        let current = self.queue.get(item).await?.ok_or_else(|| {
            Error::KeyNotFound(format!("key '{}' has no queue item in scope '{}'", item.key, item.scope))
        })?;
        Ok(ItemStatus {
            state: current.state,
            attempts: current.attempts,
            last_error: current.last_error,
            lease: current
                .lease
                .map(|lease| LeaseStatus { owner: lease.owner, expires_at: timestamp(lease.expires_at) }),
            run_again: current.run_again,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339_utc() {
        assert_eq!(timestamp(1_796_292_000_000), "2026-12-03T10:00:00Z");
    }
}
