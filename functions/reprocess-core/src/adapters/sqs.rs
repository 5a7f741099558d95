//! The SQS adapters: the work queue that feeds the worker, and the `sqs` module's sends.

use async_trait::async_trait;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::error::ProvideErrorMetadata;
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use futures::{StreamExt, stream};

use super::classify;
use crate::error::BackendError;
use crate::modules::{DocumentSink, ModuleFailure};
use crate::ports::WorkQueue;
use crate::queue::Outgoing;

/// SQS's limit of entries per SendMessageBatch.
const SEND_BATCH: usize = 10;
const BATCHES_IN_FLIGHT: usize = 8;

#[derive(Clone)]
pub struct SqsWorkQueue {
    client: Client,
    queue_url: String,
}

impl SqsWorkQueue {
    pub fn new(client: Client, queue_url: String) -> Self {
        Self { client, queue_url }
    }

    /// Sends one batch; answers the positions, within `messages`, that were not accepted.
    async fn send_batch(&self, offset: usize, messages: &[Outgoing]) -> Result<Vec<usize>, BackendError> {
        const OP: &str = "sending to the work queue";
        let mut entries = Vec::with_capacity(messages.len());
        for (index, outgoing) in messages.iter().enumerate() {
            let body = serde_json::to_string(&outgoing.message)
                .map_err(|error| BackendError::unexpected(OP, error.to_string()))?;
            let entry = SendMessageBatchRequestEntry::builder()
                .id(index.to_string())
                .message_body(body)
                .delay_seconds(outgoing.delay_seconds as i32)
                .build()
                .map_err(|error| BackendError::unexpected(OP, error.to_string()))?;
            entries.push(entry);
        }
        match self.client.send_message_batch().queue_url(&self.queue_url).set_entries(Some(entries)).send().await {
            Ok(output) => Ok(output
                .failed
                .iter()
                .filter_map(|failure| failure.id.parse::<usize>().ok())
                .map(|index| offset + index)
                .collect()),
            Err(error) => match classify(OP, &error) {
                // Nothing of this batch was sent; the caller handles it like refused entries.
                BackendError::Unavailable { .. } => Ok((offset..offset + messages.len()).collect()),
                unexpected => Err(unexpected),
            },
        }
    }
}

#[async_trait]
impl WorkQueue for SqsWorkQueue {
    async fn send(&self, messages: &[Outgoing]) -> Result<Vec<usize>, BackendError> {
        let mut batches = Vec::with_capacity(messages.len().div_ceil(SEND_BATCH));
        for (number, batch) in messages.chunks(SEND_BATCH).enumerate() {
            batches.push(self.send_batch(number * SEND_BATCH, batch));
        }
        let results: Vec<_> = stream::iter(batches).buffer_unordered(BATCHES_IN_FLIGHT).collect().await;
        let mut unsent = Vec::new();
        for result in results {
            unsent.extend(result?);
        }
        unsent.sort_unstable();
        Ok(unsent)
    }
}

/// Sends the `sqs` module's documents with the worker's SQS client.
#[derive(Clone)]
pub struct SqsDocumentSink {
    client: Client,
}

impl SqsDocumentSink {
    pub fn new(client: Client) -> Self {
        Self { client }
    }
}

/// Codes that will not change on a retry: the item fails at once rather than after backoff.
const PERMANENT_CODES: &[&str] = &[
    "AWS.SimpleQueueService.NonExistentQueue",
    "QueueDoesNotExist",
    "InvalidParameterValue",
    "InvalidMessageContents",
];

#[async_trait]
impl DocumentSink for SqsDocumentSink {
    async fn send_document(
        &self,
        queue_url: &str,
        body: String,
        group_id: &str,
        deduplication_id: &str,
    ) -> Result<(), ModuleFailure> {
        let mut request = self.client.send_message().queue_url(queue_url).message_body(body);
        if queue_url.ends_with(".fifo") {
            request = request.message_group_id(group_id).message_deduplication_id(deduplication_id);
        }
        match request.send().await {
            Ok(_) => Ok(()),
            Err(error) => {
                let code = error.code().unwrap_or("").to_owned();
                let detail = format!("queue refused the document: {}", classify("sending a document", &error));
                if PERMANENT_CODES.contains(&code.as_str()) {
                    Err(ModuleFailure::Permanent(detail))
                } else {
                    Err(ModuleFailure::Retryable(detail))
                }
            }
        }
    }
}
