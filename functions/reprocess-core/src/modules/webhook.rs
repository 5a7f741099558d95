//! `webhook`: POSTs the Process event as JSON to a URL.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;

use super::{IDEMPOTENCY_KEY, ModuleFailure, ProcessEvent};
use crate::config::WebhookSettings;

/// 2xx succeeds, and an answer `{"content": {...}}` passes that content to the next module;
/// 429, 5xx, a timeout or a broken connection are retryable; any other status is permanent.
pub(super) async fn process(
    http: &reqwest::Client,
    settings: &WebhookSettings,
    event: &ProcessEvent,
    idempotency_key: &str,
) -> Result<Option<Value>, ModuleFailure> {
    let body = serde_json::to_vec(event).map_err(|error| ModuleFailure::Permanent(error.to_string()))?;
    let mut request = http
        .post(&settings.url)
        .timeout(Duration::from_millis(settings.timeout_ms))
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(IDEMPOTENCY_KEY, idempotency_key)
        .body(body);
    for (name, value) in &settings.headers {
        request = request.header(name, value);
    }

    let response = request.send().await.map_err(|error| {
        let cause = if error.is_timeout() { "timed out" } else { "could not be reached" };
        ModuleFailure::Retryable(format!("webhook {cause}"))
    })?;

    let status = response.status();
    if status.is_success() {
        let answer = response.bytes().await.unwrap_or_default();
        return Ok(changed_content(&answer));
    }
    let failure = format!("webhook answered {}", status.as_u16());
    if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
        Err(ModuleFailure::Retryable(failure))
    } else {
        Err(ModuleFailure::Permanent(failure))
    }
}

fn changed_content(answer: &[u8]) -> Option<Value> {
    let mut answer: Value = serde_json::from_slice(answer).ok()?;
    match answer.get_mut("content")?.take() {
        content @ Value::Object(_) => Some(content),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_object_under_content_changes_the_document() {
        assert_eq!(changed_content(br#"{"content":{"a":1}}"#), Some(serde_json::json!({"a": 1})));
        assert_eq!(changed_content(br#"{"content":"text"}"#), None);
        assert_eq!(changed_content(b"accepted"), None);
        assert_eq!(changed_content(b""), None);
    }
}
