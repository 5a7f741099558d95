//! The SQS-triggered worker: runs the modules of each dispatched item and answers a partial
//! batch response, so that SQS delivers again only the messages that failed.

use std::sync::Arc;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::LambdaEvent;
use reprocess_core::adapters::sqs::SqsDocumentSink;
use reprocess_core::modules::BuiltinModules;
use reprocess_core::runtime::Backends;
use reprocess_core::worker::{Delivery, Worker};
use tracing::{Instrument, info_span};

/// The worker with the built-in modules over the deployment's clients.
pub fn build_worker(backends: &Backends, http: reqwest::Client) -> Worker {
    let modules = BuiltinModules::new(http, Arc::new(SqsDocumentSink::new(backends.sqs.clone())));
    let owner = format!("worker-{}", uuid::Uuid::new_v4().simple());
    Worker::new(backends.ports.clone(), Arc::new(modules), owner)
}

pub async fn handle(worker: &Worker, event: LambdaEvent<SqsEvent>) -> SqsBatchResponse {
    let span = info_span!("batch", request_id = %event.context.request_id, messages = event.payload.records.len());
    let deliveries = event
        .payload
        .records
        .into_iter()
        .map(|record| Delivery {
            message_id: record.message_id.unwrap_or_default(),
            body: record.body.unwrap_or_default(),
        })
        .collect();
    let failed = worker.process_batch(deliveries).instrument(span).await;
    let mut response = SqsBatchResponse::default();
    for message_id in failed {
        response.add_failure(message_id);
    }
    response
}
