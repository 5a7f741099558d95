//! `sqs`: sends the Process event to a queue, for a downstream pipeline.

use async_trait::async_trait;
use serde_json::Value;

use super::{ModuleFailure, ProcessEvent};
use crate::config::SqsSettings;

/// Where the `sqs` module's messages go; implemented over the SQS client.
#[async_trait]
pub trait DocumentSink: Send + Sync {
    /// `deduplication_id` is the dispatch token; FIFO queues use it to drop a repeat.
    async fn send_document(
        &self,
        queue_url: &str,
        body: String,
        group_id: &str,
        deduplication_id: &str,
    ) -> Result<(), ModuleFailure>;
}

pub(super) async fn process(
    sink: &dyn DocumentSink,
    settings: &SqsSettings,
    event: &ProcessEvent,
    idempotency_key: &str,
) -> Result<Option<Value>, ModuleFailure> {
    let body = serde_json::to_string(event).map_err(|error| ModuleFailure::Permanent(error.to_string()))?;
    let group_id = format!("{}/{}", event.storage_unit, event.scope);
    let send = sink.send_document(&settings.queue_url, body, &group_id, idempotency_key);
    tokio::time::timeout(std::time::Duration::from_millis(super::SQS_MODULE_TIMEOUT_MS), send)
        .await
        .map_err(|_| ModuleFailure::Retryable("the queue did not answer in time".into()))??;
    Ok(None)
}
