//! The DynamoDB adapters: configuration and expansions, content, queue items with their leases.
//!
//! Tables (`infra/template.yaml` declares the same keys; a test holds them to each other):
//! - configuration: `storageUnit` (hash), `record` (range): `config`, or `expansion#<id>`;
//! - content: `partition` = `<unit>#<scope>#<shard>` (hash), `key` (range);
//! - queue: `id` = `<unit>#<scope>#<key>` (hash), with the index `byUnitState` on
//!   `unitState` = `<unit>#<state>` (hash) and `id` (range).
//!
//! Every lease decision is a condition expression comparing stored timestamps: nothing
//! depends on TTL deletion, which is lazy.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes, ReturnValue, ReturnValuesOnConditionCheckFailure};
use futures::{StreamExt, TryStreamExt, stream};
use serde_json::Value;

use super::classify;
use crate::config::UnitConfig;
use crate::error::{BackendError, Error};
use crate::expansion::{CONTENT_SHARDS, Expansion, content_shard};
use crate::names::{ItemRef, Key, Scope, StorageUnit};
use crate::ports::{
    Change, ConfigStore, ContentStore, EnqueueRequest, Enqueued, ExpansionStore, Expect, Page, QueueStore, Transition,
};
use crate::queue::{Dispatch, ItemState, Lease, Millis, QueueItem};

// Limitation: one index partition per (unit, state); a unit with millions of waiting items
// leans on DynamoDB's split-for-heat rather than on a sharded key like the content table's.
pub const STATE_INDEX: &str = "byUnitState";
const CONFIG_RECORD: &str = "config";
const EXPANSION_PREFIX: &str = "expansion#";
/// DynamoDB's item size limit.
pub const MAX_ITEM_BYTES: usize = 400 * 1024;
const BATCH_GET_LIMIT: usize = 100;
const BATCH_GETS_IN_FLIGHT: usize = 8;
/// Expansion records are kept for a week after they start, then left to TTL.
const EXPANSION_RETENTION_SECONDS: i64 = 7 * 24 * 3600;

type Attributes = HashMap<String, AttributeValue>;

#[derive(Debug, Clone)]
pub struct Tables {
    pub config: String,
    pub content: String,
    pub queue: String,
}

/// One client for the three tables.
#[derive(Clone)]
pub struct Dynamo {
    client: Client,
    tables: Tables,
}

impl Dynamo {
    pub fn new(client: Client, tables: Tables) -> Self {
        Self { client, tables }
    }
}

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn get_s<'a>(item: &'a Attributes, name: &str) -> Option<&'a str> {
    item.get(name).and_then(|value| value.as_s().ok()).map(String::as_str)
}

fn get_n<T: std::str::FromStr>(item: &Attributes, name: &str) -> Option<T> {
    item.get(name).and_then(|value| value.as_n().ok()).and_then(|number| number.parse().ok())
}

fn corrupt(operation: &'static str, what: &str) -> BackendError {
    BackendError::unexpected(operation, format!("stored item without a valid {what}"))
}

fn is_conditional_failure<E: aws_sdk_dynamodb::error::ProvideErrorMetadata>(error: &E) -> bool {
    error.code() == Some("ConditionalCheckFailedException")
}

fn content_partition(unit: &StorageUnit, scope: &Scope, shard: u16) -> String {
    format!("{unit}#{scope}#{shard:02}")
}

fn queue_id(item: &ItemRef) -> String {
    format!("{}#{}#{}", item.storage_unit, item.scope, item.key)
}

fn unit_state(unit: &StorageUnit, state: ItemState) -> String {
    format!("{unit}#{}", state.as_str())
}

fn content_key(item: &ItemRef) -> Attributes {
    let partition = content_partition(&item.storage_unit, &item.scope, content_shard(&item.key));
    HashMap::from([("partition".to_owned(), s(partition)), ("key".to_owned(), s(item.key.as_str()))])
}

fn encode_cursor(key: &Attributes) -> Option<String> {
    let strings: BTreeMap<&str, &str> =
        key.iter().filter_map(|(name, value)| Some((name.as_str(), value.as_s().ok()?.as_str()))).collect();
    serde_json::to_string(&strings).ok()
}

fn decode_cursor(cursor: &str) -> Result<Attributes, BackendError> {
    let strings: BTreeMap<String, String> =
        serde_json::from_str(cursor).map_err(|_| BackendError::unexpected("reading a cursor", "not a cursor"))?;
    Ok(strings.into_iter().map(|(name, value)| (name, s(value))).collect())
}

// ---------------------------------------------------------------------------------------------
// Configuration and expansions

#[async_trait]
impl ConfigStore for Dynamo {
    async fn get(&self, unit: &StorageUnit) -> Result<Option<UnitConfig>, BackendError> {
        const OP: &str = "reading a storage unit's configuration";
        let output = self
            .client
            .get_item()
            .table_name(&self.tables.config)
            .key("storageUnit", s(unit.as_str()))
            .key("record", s(CONFIG_RECORD))
            .consistent_read(true)
            .send()
            .await
            .map_err(|error| classify(OP, &error))?;
        let Some(item) = output.item else {
            return Ok(None);
        };
        let document = get_s(&item, "document").ok_or_else(|| corrupt(OP, "document"))?;
        serde_json::from_str(document).map(Some).map_err(|error| BackendError::unexpected(OP, error.to_string()))
    }

    async fn put(&self, unit: &StorageUnit, config: &UnitConfig) -> Result<(), BackendError> {
        const OP: &str = "writing a storage unit's configuration";
        let document =
            serde_json::to_string(config).map_err(|error| BackendError::unexpected(OP, error.to_string()))?;
        self.client
            .put_item()
            .table_name(&self.tables.config)
            .item("storageUnit", s(unit.as_str()))
            .item("record", s(CONFIG_RECORD))
            .item("document", s(document))
            .send()
            .await
            .map_err(|error| classify(OP, &error))?;
        Ok(())
    }

    async fn delete(&self, unit: &StorageUnit) -> Result<bool, BackendError> {
        let output = self
            .client
            .delete_item()
            .table_name(&self.tables.config)
            .key("storageUnit", s(unit.as_str()))
            .key("record", s(CONFIG_RECORD))
            .return_values(ReturnValue::AllOld)
            .send()
            .await
            .map_err(|error| classify("deleting a storage unit's configuration", &error))?;
        Ok(output.attributes.is_some_and(|attributes| !attributes.is_empty()))
    }
}

fn shard_attribute(shard: u16) -> String {
    format!("p{shard:02}")
}

fn parse_expansion(unit: &StorageUnit, id: &str, item: &Attributes) -> Result<Expansion, BackendError> {
    const OP: &str = "reading an expansion";
    let scope = get_s(item, "scope").and_then(|scope| Scope::parse(scope).ok()).ok_or_else(|| corrupt(OP, "scope"))?;
    let shard_pages = (0..CONTENT_SHARDS)
        .map(|shard| get_n::<i64>(item, &shard_attribute(shard)).map(|page| u32::try_from(page).ok()))
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| corrupt(OP, "shard page"))?;
    Ok(Expansion {
        id: id.to_owned(),
        storage_unit: unit.clone(),
        scope,
        started_at: get_n(item, "startedAt").unwrap_or_default(),
        shard_pages,
        keys_queued: get_n(item, "keysQueued").unwrap_or_default(),
    })
}

#[async_trait]
impl ExpansionStore for Dynamo {
    async fn create(&self, expansion: &Expansion) -> Result<(), BackendError> {
        const OP: &str = "recording an expansion";
        let mut request = self
            .client
            .put_item()
            .table_name(&self.tables.config)
            .item("storageUnit", s(expansion.storage_unit.as_str()))
            .item("record", s(format!("{EXPANSION_PREFIX}{}", expansion.id)))
            .item("scope", s(expansion.scope.as_str()))
            .item("startedAt", n(expansion.started_at))
            .item("keysQueued", n(expansion.keys_queued))
            .item("expiresAt", n(expansion.started_at / 1000 + EXPANSION_RETENTION_SECONDS));
        for (shard, page) in expansion.shard_pages.iter().enumerate() {
            request = request.item(shard_attribute(shard as u16), n(page.map_or(-1, i64::from)));
        }
        request.send().await.map_err(|error| classify(OP, &error))?;
        Ok(())
    }

    async fn get(&self, unit: &StorageUnit, id: &str) -> Result<Option<Expansion>, BackendError> {
        const OP: &str = "reading an expansion";
        let output = self
            .client
            .get_item()
            .table_name(&self.tables.config)
            .key("storageUnit", s(unit.as_str()))
            .key("record", s(format!("{EXPANSION_PREFIX}{id}")))
            .consistent_read(true)
            .send()
            .await
            .map_err(|error| classify(OP, &error))?;
        output.item.map(|item| parse_expansion(unit, id, &item)).transpose()
    }

    async fn list(&self, unit: &StorageUnit) -> Result<Vec<Expansion>, BackendError> {
        const OP: &str = "listing expansions";
        let mut expansions = Vec::new();
        let mut start = None;
        loop {
            let output = self
                .client
                .query()
                .table_name(&self.tables.config)
                .key_condition_expression("storageUnit = :unit AND begins_with(#record, :prefix)")
                .expression_attribute_names("#record", "record")
                .expression_attribute_values(":unit", s(unit.as_str()))
                .expression_attribute_values(":prefix", s(EXPANSION_PREFIX))
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|error| classify(OP, &error))?;
            for item in output.items.unwrap_or_default() {
                let record = get_s(&item, "record").unwrap_or_default();
                let id = record.strip_prefix(EXPANSION_PREFIX).unwrap_or(record).to_owned();
                expansions.push(parse_expansion(unit, &id, &item)?);
            }
            start = output.last_evaluated_key;
            if start.is_none() {
                break;
            }
        }
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
        const OP: &str = "recording an expansion's progress";
        let result = self
            .client
            .update_item()
            .table_name(&self.tables.config)
            .key("storageUnit", s(unit.as_str()))
            .key("record", s(format!("{EXPANSION_PREFIX}{id}")))
            .update_expression("SET #page = :next ADD keysQueued :keys")
            .condition_expression("#page = :page")
            .expression_attribute_names("#page", shard_attribute(shard))
            .expression_attribute_values(":next", n(next.map_or(-1, i64::from)))
            .expression_attribute_values(":page", n(page))
            .expression_attribute_values(":keys", n(keys_queued))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(error) if error.as_service_error().is_some_and(is_conditional_failure) => Ok(false),
            Err(error) => Err(classify(OP, &error)),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Content

impl Dynamo {
    /// One BatchGetItem of at most 100 keys, with what DynamoDB left unprocessed asked again.
    async fn batch_get(
        &self,
        keys: Vec<Attributes>,
        projection: &str,
        names: &[(&str, &str)],
    ) -> Result<Vec<Attributes>, BackendError> {
        const OP: &str = "reading stored content";
        let table = &self.tables.content;
        let mut pending = keys;
        let mut found = Vec::new();
        let mut round = 0u32;
        while !pending.is_empty() {
            let mut request = KeysAndAttributes::builder().set_keys(Some(pending)).projection_expression(projection);
            for (placeholder, name) in names {
                request = request.expression_attribute_names(*placeholder, *name);
            }
            let request = request.build().map_err(|error| BackendError::unexpected(OP, error.to_string()))?;
            let output = self
                .client
                .batch_get_item()
                .request_items(table, request)
                .send()
                .await
                .map_err(|error| classify(OP, &error))?;
            found.extend(output.responses.and_then(|mut tables| tables.remove(table)).unwrap_or_default());
            pending = output
                .unprocessed_keys
                .and_then(|mut tables| tables.remove(table))
                .map(|unprocessed| unprocessed.keys)
                .unwrap_or_default();
            if !pending.is_empty() {
                round += 1;
                if round > 8 {
                    return Err(BackendError::Unavailable { operation: OP, detail: "keys left unprocessed".into() });
                }
                tokio::time::sleep(Duration::from_millis(25 << round.min(5))).await;
            }
        }
        Ok(found)
    }
}

#[async_trait]
impl ContentStore for Dynamo {
    async fn existing_keys(
        &self,
        unit: &StorageUnit,
        scope: &Scope,
        keys: &[Key],
    ) -> Result<HashSet<Key>, BackendError> {
        let chunks: Vec<Vec<Attributes>> = keys
            .chunks(BATCH_GET_LIMIT)
            .map(|chunk| {
                chunk.iter().map(|key| content_key(&ItemRef::new(unit.clone(), scope.clone(), key.clone()))).collect()
            })
            .collect();
        let found: Vec<Vec<Attributes>> = stream::iter(chunks)
            .map(|chunk| self.batch_get(chunk, "#k", &[("#k", "key")]))
            .buffer_unordered(BATCH_GETS_IN_FLIGHT)
            .try_collect()
            .await?;
        Ok(found
            .iter()
            .flatten()
            .filter_map(|item| get_s(item, "key"))
            .filter_map(|key| Key::parse(key).ok())
            .collect())
    }

    async fn get_many(&self, items: &[ItemRef]) -> Result<HashMap<ItemRef, Value>, BackendError> {
        const OP: &str = "reading stored content";
        let by_location: HashMap<(String, String), &ItemRef> = items
            .iter()
            .map(|item| {
                let key = content_key(item);
                let location = (get_s(&key, "partition").unwrap_or_default().to_owned(), item.key.as_str().to_owned());
                (location, item)
            })
            .collect();
        let chunks: Vec<Vec<Attributes>> =
            items.chunks(BATCH_GET_LIMIT).map(|chunk| chunk.iter().map(content_key).collect()).collect();
        let found: Vec<Vec<Attributes>> = stream::iter(chunks)
            .map(|chunk| self.batch_get(chunk, "#p, #k, content", &[("#p", "partition"), ("#k", "key")]))
            .buffer_unordered(BATCH_GETS_IN_FLIGHT)
            .try_collect()
            .await?;
        let mut contents = HashMap::with_capacity(items.len());
        for stored in found.iter().flatten() {
            let location = (
                get_s(stored, "partition").unwrap_or_default().to_owned(),
                get_s(stored, "key").unwrap_or_default().to_owned(),
            );
            let Some(item) = by_location.get(&location) else {
                continue;
            };
            let content = get_s(stored, "content").ok_or_else(|| corrupt(OP, "content"))?;
            let content =
                serde_json::from_str(content).map_err(|error| BackendError::unexpected(OP, error.to_string()))?;
            contents.insert((*item).clone(), content);
        }
        Ok(contents)
    }

    async fn list_keys(
        &self,
        unit: &StorageUnit,
        scope: &Scope,
        shard: u16,
        cursor: Option<String>,
        limit: u32,
    ) -> Result<Page<Key>, BackendError> {
        const OP: &str = "listing stored keys";
        let partition = content_partition(unit, scope, shard);
        let start =
            cursor.map(|after| HashMap::from([("partition".to_owned(), s(&partition)), ("key".to_owned(), s(after))]));
        let output = self
            .client
            .query()
            .table_name(&self.tables.content)
            .key_condition_expression("#p = :p")
            .expression_attribute_names("#p", "partition")
            .expression_attribute_names("#k", "key")
            .expression_attribute_values(":p", s(&partition))
            .projection_expression("#k")
            .limit(limit as i32)
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(|error| classify(OP, &error))?;
        let items = output.items.unwrap_or_default();
        let keys = items.iter().filter_map(|item| get_s(item, "key")).filter_map(|key| Key::parse(key).ok()).collect();
        let next = output.last_evaluated_key.as_ref().and_then(|last| get_s(last, "key")).map(str::to_owned);
        Ok(Page { items: keys, next })
    }

    async fn put(&self, item: &ItemRef, content: &Value, only_if_absent: bool) -> Result<(), Error> {
        const OP: &str = "storing content";
        let document = content.to_string();
        // The key attributes and names add a little to the document itself.
        if document.len() + item.key.as_str().len() * 2 + 128 > MAX_ITEM_BYTES {
            return Err(Error::ContentTooLarge { limit_bytes: MAX_ITEM_BYTES });
        }
        let mut request = self
            .client
            .put_item()
            .table_name(&self.tables.content)
            .set_item(Some(content_key(item)))
            .item("content", s(document));
        if only_if_absent {
            request = request.condition_expression("attribute_not_exists(#k)").expression_attribute_names("#k", "key");
        }
        match request.send().await {
            Ok(_) => Ok(()),
            Err(error) if error.as_service_error().is_some_and(is_conditional_failure) => Err(Error::KeyExists),
            Err(error) if error.message().is_some_and(|message| message.contains("size")) => {
                Err(Error::ContentTooLarge { limit_bytes: MAX_ITEM_BYTES })
            }
            Err(error) => Err(classify(OP, &error).into()),
        }
    }

    async fn delete(&self, item: &ItemRef) -> Result<bool, BackendError> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.tables.content)
            .set_key(Some(content_key(item)))
            .condition_expression("attribute_exists(#k)")
            .expression_attribute_names("#k", "key")
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(error) if error.as_service_error().is_some_and(is_conditional_failure) => Ok(false),
            Err(error) => Err(classify("deleting content", &error)),
        }
    }

    async fn get(&self, item: &ItemRef) -> Result<Option<Value>, BackendError> {
        const OP: &str = "reading stored content";
        let output = self
            .client
            .get_item()
            .table_name(&self.tables.content)
            .set_key(Some(content_key(item)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|error| classify(OP, &error))?;
        let Some(stored) = output.item else { return Ok(None) };
        let content = get_s(&stored, "content").ok_or_else(|| corrupt(OP, "content"))?;
        serde_json::from_str(content).map(Some).map_err(|error| BackendError::unexpected(OP, error.to_string()))
    }
}

// ---------------------------------------------------------------------------------------------
// Queue items and leases

fn parse_item(attributes: &Attributes) -> Result<QueueItem, BackendError> {
    const OP: &str = "reading a queue item";
    let unit = get_s(attributes, "storageUnit")
        .and_then(|v| StorageUnit::parse(v).ok())
        .ok_or_else(|| corrupt(OP, "storageUnit"))?;
    let scope = get_s(attributes, "scope").and_then(|v| Scope::parse(v).ok()).ok_or_else(|| corrupt(OP, "scope"))?;
    let key = get_s(attributes, "itemKey").and_then(|v| Key::parse(v).ok()).ok_or_else(|| corrupt(OP, "itemKey"))?;
    let state = get_s(attributes, "state").and_then(ItemState::parse).ok_or_else(|| corrupt(OP, "state"))?;
    let lease = match (get_s(attributes, "leaseOwner"), get_n::<Millis>(attributes, "leaseExpiresAt")) {
        (Some(owner), Some(expires_at)) => Some(Lease { owner: owner.to_owned(), expires_at }),
        _ => None,
    };
    Ok(QueueItem {
        item: ItemRef::new(unit, scope, key),
        state,
        dispatch: Dispatch {
            token: get_s(attributes, "token").ok_or_else(|| corrupt(OP, "token"))?.to_owned(),
            seq: get_n(attributes, "seq").ok_or_else(|| corrupt(OP, "seq"))?,
        },
        attempts: get_n(attributes, "attempts").unwrap_or_default(),
        run_again: attributes.get("runAgain").and_then(|value| value.as_bool().ok()).copied().unwrap_or(false),
        lease,
        last_error: get_s(attributes, "lastError").map(str::to_owned),
        dispatched_at: get_n(attributes, "dispatchedAt").unwrap_or_default(),
    })
}

/// An update expression under construction, with its placeholders.
#[derive(Default)]
struct Update {
    set: Vec<String>,
    remove: Vec<&'static str>,
    names: HashMap<String, String>,
    values: HashMap<String, AttributeValue>,
}

impl Update {
    fn set(&mut self, attribute: &str, value: AttributeValue) -> &mut Self {
        let placeholder = format!(":v{}", self.values.len());
        self.names.insert(format!("#{attribute}"), attribute.to_owned());
        self.set.push(format!("#{attribute} = {placeholder}"));
        self.values.insert(placeholder, value);
        self
    }

    fn state(&mut self, unit: &StorageUnit, state: ItemState, now: Millis) -> &mut Self {
        self.set("state", s(state.as_str())).set("unitState", s(unit_state(unit, state))).set("updatedAt", n(now))
    }

    fn value(&mut self, placeholder: &str, value: AttributeValue) -> &mut Self {
        self.values.insert(placeholder.to_owned(), value);
        self
    }

    fn name(&mut self, attribute: &str) -> &mut Self {
        self.names.insert(format!("#{attribute}"), attribute.to_owned());
        self
    }

    fn expression(&self) -> String {
        let mut expression = String::new();
        if !self.set.is_empty() {
            expression.push_str("SET ");
            expression.push_str(&self.set.join(", "));
        }
        if !self.remove.is_empty() {
            expression.push_str(" REMOVE ");
            expression.push_str(&self.remove.join(", "));
        }
        expression
    }
}

impl Dynamo {
    async fn read_item(&self, id: &str) -> Result<Option<QueueItem>, BackendError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.tables.queue)
            .key("id", s(id))
            .consistent_read(true)
            .send()
            .await
            .map_err(|error| classify("reading a queue item", &error))?;
        output.item.as_ref().map(parse_item).transpose()
    }

    /// The item as a refused condition saw it: from the refusal itself where DynamoDB returned
    /// it, otherwise from a consistent read.
    async fn refused_item(&self, id: &str, old: Option<&Attributes>) -> Result<Option<QueueItem>, BackendError> {
        match old {
            Some(attributes) if !attributes.is_empty() => parse_item(attributes).map(Some),
            _ => self.read_item(id).await,
        }
    }

    /// A query of the unit's items in one state, on the state index.
    fn state_query(
        &self,
        unit: &StorageUnit,
        state: ItemState,
    ) -> aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder {
        self.client
            .query()
            .table_name(&self.tables.queue)
            .index_name(STATE_INDEX)
            .key_condition_expression("unitState = :unitState")
            .expression_attribute_values(":unitState", s(unit_state(unit, state)))
    }

    async fn mark_run_again(&self, id: &str, token: &str, now: Millis) -> Result<bool, BackendError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.tables.queue)
            .key("id", s(id))
            .update_expression("SET runAgain = :yes, updatedAt = :now")
            .condition_expression("#state = :assigned AND #token = :token")
            .expression_attribute_names("#state", "state")
            .expression_attribute_names("#token", "token")
            .expression_attribute_values(":yes", AttributeValue::Bool(true))
            .expression_attribute_values(":now", n(now))
            .expression_attribute_values(":assigned", s(ItemState::Assigned.as_str()))
            .expression_attribute_values(":token", s(token))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(error) if error.as_service_error().is_some_and(is_conditional_failure) => Ok(false),
            Err(error) => Err(classify("marking a queue item to run again", &error)),
        }
    }
}

#[async_trait]
impl QueueStore for Dynamo {
    async fn enqueue(&self, item: &ItemRef, request: &EnqueueRequest) -> Result<Enqueued, BackendError> {
        const OP: &str = "queueing an item";
        let id = queue_id(item);
        let mut condition = String::from(
            "attribute_not_exists(id) OR #state = :failed \
             OR (#state = :assigned AND leaseExpiresAt < :now) \
             OR (#state = :queued AND dispatchedAt < :stale)",
        );
        // A waiting item is released by a request that finds the job running.
        let mut waiting_value = None;
        if request.state == ItemState::Queued {
            condition.push_str(" OR #state = :waiting");
            waiting_value = Some(s(ItemState::Waiting.as_str()));
        }
        // Each pass either writes, coalesces, or marks a run again; a pass is repeated only
        // when the item changed between its two writes.
        for _ in 0..5 {
            let mut write = self
                .client
                .update_item()
                .table_name(&self.tables.queue)
                .key("id", s(&id))
                .update_expression(
                    "SET storageUnit = :unit, #scope = :scope, itemKey = :key, #state = :state, unitState = :unitState, \
                     #token = :token, seq = if_not_exists(seq, :now) + :one, attempts = :zero, dispatchedAt = :now, \
                     updatedAt = :now REMOVE leaseOwner, leaseExpiresAt, runAgain, lastError",
                )
                .condition_expression(&condition)
                .expression_attribute_names("#scope", "scope")
                .expression_attribute_names("#state", "state")
                .expression_attribute_names("#token", "token")
                .expression_attribute_values(":unit", s(item.storage_unit.as_str()))
                .expression_attribute_values(":scope", s(item.scope.as_str()))
                .expression_attribute_values(":key", s(item.key.as_str()))
                .expression_attribute_values(":state", s(request.state.as_str()))
                .expression_attribute_values(":unitState", s(unit_state(&item.storage_unit, request.state)))
                .expression_attribute_values(":token", s(&request.token))
                .expression_attribute_values(":now", n(request.now))
                .expression_attribute_values(":one", n(1))
                .expression_attribute_values(":zero", n(0))
                .expression_attribute_values(":stale", n(request.redispatch_queued_before))
                .expression_attribute_values(":failed", s(ItemState::Failed.as_str()))
                .expression_attribute_values(":assigned", s(ItemState::Assigned.as_str()))
                .expression_attribute_values(":queued", s(ItemState::Queued.as_str()))
                .return_values(ReturnValue::AllNew)
                .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
            if let Some(waiting) = &waiting_value {
                write = write.expression_attribute_values(":waiting", waiting.clone());
            }
            let result = write.send().await;
            let error = match result {
                Ok(output) => {
                    if request.state == ItemState::Waiting {
                        return Ok(Enqueued::Waiting);
                    }
                    let written = output.attributes.as_ref().ok_or_else(|| corrupt(OP, "item"))?;
                    let seq = get_n(written, "seq").ok_or_else(|| corrupt(OP, "seq"))?;
                    return Ok(Enqueued::Dispatch(Dispatch { token: request.token.clone(), seq }));
                }
                Err(error) => error,
            };
            let Some(refusal) = error.as_service_error().filter(|refusal| is_conditional_failure(*refusal)) else {
                return Err(classify(OP, &error));
            };
            let old = match refusal {
                aws_sdk_dynamodb::operation::update_item::UpdateItemError::ConditionalCheckFailedException(refusal) => {
                    refusal.item()
                }
                _ => None,
            };
            let Some(current) = self.refused_item(&id, old).await? else {
                continue;
            };
            match current.state {
                ItemState::Queued | ItemState::Waiting => {
                    return Ok(Enqueued::Coalesced(current.state));
                }
                ItemState::Assigned => {
                    if self.mark_run_again(&id, &current.dispatch.token, request.now).await? {
                        return Ok(Enqueued::RunAgain);
                    }
                }
                ItemState::Failed => {}
            }
        }
        Err(BackendError::Unavailable {
            operation: OP,
            detail: "the item kept changing under concurrent writes".into(),
        })
    }

    async fn transition(&self, item: &ItemRef, expect: &Expect, change: &Change) -> Result<Transition, BackendError> {
        const OP: &str = "updating a queue item";
        let id = queue_id(item);
        let mut update = Update::default();
        update.name("state").name("token");
        let mut condition = match expect {
            Expect::Takeable { token, now } => {
                update.value(":expectToken", s(token)).value(":queued", s(ItemState::Queued.as_str()));
                update.value(":assigned", s(ItemState::Assigned.as_str())).value(":expectNow", n(*now));
                "#token = :expectToken AND (#state = :queued OR (#state = :assigned AND leaseExpiresAt < :expectNow))"
                    .to_owned()
            }
            Expect::Held { token, owner } => {
                update.value(":expectToken", s(token)).value(":expectOwner", s(owner));
                update.value(":assigned", s(ItemState::Assigned.as_str()));
                "#token = :expectToken AND #state = :assigned AND leaseOwner = :expectOwner".to_owned()
            }
            Expect::InState { token, state } => {
                update.value(":expectToken", s(token)).value(":expectState", s(state.as_str()));
                "#token = :expectToken AND #state = :expectState".to_owned()
            }
        };
        if matches!(change, Change::Remove | Change::Fail { .. }) {
            update.value(":no", AttributeValue::Bool(false));
            condition.push_str(" AND (attribute_not_exists(runAgain) OR runAgain = :no)");
        }

        if let Change::Remove = change {
            let result = self
                .client
                .delete_item()
                .table_name(&self.tables.queue)
                .key("id", s(&id))
                .condition_expression(condition)
                .set_expression_attribute_names(Some(update.names))
                .set_expression_attribute_values(Some(update.values))
                .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
                .send()
                .await;
            return match result {
                Ok(_) => Ok(Transition::Applied(None)),
                Err(error) => match error.as_service_error() {
                    Some(
                        aws_sdk_dynamodb::operation::delete_item::DeleteItemError::ConditionalCheckFailedException(
                            refusal,
                        ),
                    ) => Ok(Transition::Refused(self.refused_item(&id, refusal.item()).await?)),
                    _ => Err(classify(OP, &error)),
                },
            };
        }

        let unit = &item.storage_unit;
        match change {
            Change::Assign { owner, lease_expires_at, now } => {
                update
                    .state(unit, ItemState::Assigned, *now)
                    .set("leaseOwner", s(owner))
                    .set("leaseExpiresAt", n(lease_expires_at));
                update.set.push("attempts = if_not_exists(attempts, :zero) + :one".to_owned());
                update.value(":zero", n(0)).value(":one", n(1));
                update.remove.push("runAgain");
            }
            Change::Redispatch { dispatch, state, reset_attempts, last_error, now } => {
                update.state(unit, *state, *now).set("token", s(&dispatch.token)).set("seq", n(dispatch.seq));
                update.set("dispatchedAt", n(now));
                if *reset_attempts {
                    update.set("attempts", n(0));
                }
                match last_error {
                    Some(error) => update.set("lastError", s(error)),
                    None => {
                        update.remove.push("lastError");
                        &mut update
                    }
                };
                update.remove.extend(["leaseOwner", "leaseExpiresAt", "runAgain"]);
            }
            Change::Park { now } => {
                update.state(unit, ItemState::Waiting, *now);
                update.remove.extend(["leaseOwner", "leaseExpiresAt"]);
            }
            Change::Fail { error, now } => {
                update.state(unit, ItemState::Failed, *now).set("lastError", s(error));
                update.remove.extend(["leaseOwner", "leaseExpiresAt"]);
            }
            Change::ForgetDispatch => {
                update.set("dispatchedAt", n(0));
            }
            Change::Remove => unreachable!("handled above"),
        }

        let result = self
            .client
            .update_item()
            .table_name(&self.tables.queue)
            .key("id", s(&id))
            .update_expression(update.expression())
            .condition_expression(condition)
            .set_expression_attribute_names(Some(update.names))
            .set_expression_attribute_values(Some(update.values))
            .return_values(ReturnValue::AllNew)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(output) => Ok(Transition::Applied(output.attributes.as_ref().map(parse_item).transpose()?)),
            Err(error) => match error.as_service_error() {
                Some(aws_sdk_dynamodb::operation::update_item::UpdateItemError::ConditionalCheckFailedException(
                    refusal,
                )) => Ok(Transition::Refused(self.refused_item(&id, refusal.item()).await?)),
                _ => Err(classify(OP, &error)),
            },
        }
    }

    async fn get(&self, item: &ItemRef) -> Result<Option<QueueItem>, BackendError> {
        self.read_item(&queue_id(item)).await
    }

    async fn list_in_state(
        &self,
        unit: &StorageUnit,
        state: ItemState,
        cursor: Option<String>,
        limit: u32,
    ) -> Result<Page<QueueItem>, BackendError> {
        const OP: &str = "listing queue items";
        let start = cursor.as_deref().map(decode_cursor).transpose()?;
        let output = self
            .state_query(unit, state)
            .limit(limit as i32)
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(|error| classify(OP, &error))?;
        let items = output.items.unwrap_or_default().iter().map(parse_item).collect::<Result<Vec<_>, _>>()?;
        Ok(Page { items, next: output.last_evaluated_key.as_ref().and_then(encode_cursor) })
    }

    // Limitation: a count reads the whole (unit, state) slice of the index, a page per
    // megabyte; fine for a status page, costly to poll on units with millions of items.
    async fn count_in_state(&self, unit: &StorageUnit, state: ItemState) -> Result<u64, BackendError> {
        const OP: &str = "counting queue items";
        let mut count = 0u64;
        let mut start = None;
        loop {
            let output = self
                .state_query(unit, state)
                .select(aws_sdk_dynamodb::types::Select::Count)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|error| classify(OP, &error))?;
            count += output.count.max(0) as u64;
            start = output.last_evaluated_key;
            if start.is_none() {
                return Ok(count);
            }
        }
    }
}
