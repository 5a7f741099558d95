//! The built-in module kinds and the Process event they receive.

mod sqs;
mod webhook;

use std::sync::Arc;

use async_trait::async_trait;
use serde::Serialize;
use serde_json::Value;

use crate::config::Module;
use crate::names::{Key, Scope, StorageUnit};

pub use sqs::DocumentSink;

/// The header that carries the dispatch token to a webhook, so that a receiver can drop a
/// repeated delivery of one dispatch.
pub const IDEMPOTENCY_KEY: reqwest::header::HeaderName = reqwest::header::HeaderName::from_static("idempotency-key");

/// What an `sqs` module may take: one SendMessage with the SDK's retries.
pub const SQS_MODULE_TIMEOUT_MS: u64 = 5_000;

/// A module's input: the document of one key's scope.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProcessEvent {
    pub storage_unit: StorageUnit,
    pub key: Key,
    pub scope: Scope,
    pub content: Value,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModuleFailure {
    /// Worth another attempt later: a timeout, throttling, an outage.
    #[error("{0}")]
    Retryable(String),
    /// Will fail the same way every time: the item goes to `failed` at once.
    #[error("{0}")]
    Permanent(String),
}

/// Runs one module's Process event. `Ok(Some(content))` passes a changed document on to the
/// next module of the scope; `Ok(None)` passes the document on unchanged.
#[async_trait]
pub trait ModuleRunner: Send + Sync {
    async fn process(
        &self,
        module: &Module,
        event: &ProcessEvent,
        idempotency_key: &str,
    ) -> Result<Option<Value>, ModuleFailure>;
}

/// The module kinds this service ships, sharing one HTTP client and one SQS client.
pub struct BuiltinModules {
    http: reqwest::Client,
    documents: Arc<dyn DocumentSink>,
}

impl BuiltinModules {
    pub fn new(http: reqwest::Client, documents: Arc<dyn DocumentSink>) -> Self {
        Self { http, documents }
    }
}

#[async_trait]
impl ModuleRunner for BuiltinModules {
    async fn process(
        &self,
        module: &Module,
        event: &ProcessEvent,
        idempotency_key: &str,
    ) -> Result<Option<Value>, ModuleFailure> {
        match module {
            Module::Webhook(settings) => webhook::process(&self.http, settings, event, idempotency_key).await,
            Module::Sqs(settings) => sqs::process(self.documents.as_ref(), settings, event, idempotency_key).await,
        }
    }
}
