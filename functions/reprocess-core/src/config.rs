//! A storage unit's configuration: its switches, limits and modules, validated as a whole.

use std::collections::BTreeMap;

use reqwest::Url;
use reqwest::header::{HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::Error;
use crate::names::Scope;

pub const DEFAULT_MAX_ATTEMPTS: u32 = 5;
pub const DEFAULT_LEASE_SECONDS: u32 = 60;
pub const DEFAULT_RETRY_BASE_SECONDS: u32 = 10;
pub const DEFAULT_WEBHOOK_TIMEOUT_MS: u64 = 10_000;
const MAX_MODULES_PER_SCOPE: usize = 20;
/// Longest lease: the worker's Lambda timeout (300 s in the template) less the time to read the
/// content and record the outcome, so that a run never outlives the invocation that holds it.
pub const MAX_LEASE_SECONDS: u32 = 240;
/// Room within a lease, beside the modules' timeouts, for reading content and recording the
/// outcome; the worker cuts a run off this long before its lease ends.
pub const LEASE_MARGIN_MS: u64 = 10_000;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UnitConfig {
    #[serde(default)]
    pub reprocess_queue: QueueSwitch,
    #[serde(default)]
    pub reprocess_job: JobSwitch,
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    #[serde(default = "default_lease_seconds")]
    pub lease_seconds: u32,
    /// First retry delay; each later one doubles, up to SQS's fifteen minutes.
    #[serde(default = "default_retry_base_seconds")]
    pub retry_base_seconds: u32,
    #[serde(default)]
    pub modules: BTreeMap<Scope, Vec<ModuleSpec>>,
}

/// Without it the reprocess endpoints refuse the unit. Off unless switched on: queueing is
/// something a unit's owner opts into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueSwitch {
    pub enabled: bool,
}

/// While off, queued items wait. On unless stopped, so that a queue once enabled does work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobSwitch {
    pub running: bool,
}

impl Default for JobSwitch {
    fn default() -> Self {
        Self { running: true }
    }
}

fn default_max_attempts() -> u32 {
    DEFAULT_MAX_ATTEMPTS
}
fn default_lease_seconds() -> u32 {
    DEFAULT_LEASE_SECONDS
}
fn default_retry_base_seconds() -> u32 {
    DEFAULT_RETRY_BASE_SECONDS
}

/// A module as configured: its kind and its kind's settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModuleSpec {
    pub module: String,
    #[serde(default)]
    pub settings: Value,
}

/// A module with settings that passed validation.
#[derive(Debug, Clone, PartialEq)]
pub enum Module {
    Webhook(WebhookSettings),
    Sqs(SqsSettings),
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WebhookSettings {
    pub url: String,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default = "default_webhook_timeout_ms")]
    pub timeout_ms: u64,
}

fn default_webhook_timeout_ms() -> u64 {
    DEFAULT_WEBHOOK_TIMEOUT_MS
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SqsSettings {
    pub queue_url: String,
}

impl Default for UnitConfig {
    fn default() -> Self {
        Self {
            reprocess_queue: QueueSwitch::default(),
            reprocess_job: JobSwitch::default(),
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            lease_seconds: DEFAULT_LEASE_SECONDS,
            retry_base_seconds: DEFAULT_RETRY_BASE_SECONDS,
            modules: BTreeMap::new(),
        }
    }
}

fn bad(field: &str, problem: impl std::fmt::Display) -> Error {
    Error::BadRequest(format!("{field}: {problem}"))
}

impl UnitConfig {
    /// Parses and validates a configuration document, naming the field at fault.
    pub fn from_json(body: &[u8]) -> Result<Self, Error> {
        let mut document = serde_json::Deserializer::from_slice(body);
        let config: UnitConfig = serde_path_to_error::deserialize(&mut document).map_err(|error| {
            let field = error.path().to_string();
            let field = if field == "." { "configuration".to_owned() } else { field };
            Error::BadRequest(format!("{field}: {}", error.inner()))
        })?;
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<(), Error> {
        if !(1..=100).contains(&self.max_attempts) {
            return Err(bad("maxAttempts", "must be 1 to 100"));
        }
        if !(15..=MAX_LEASE_SECONDS).contains(&self.lease_seconds) {
            return Err(bad("leaseSeconds", format!("must be 15 to {MAX_LEASE_SECONDS}")));
        }
        if self.retry_base_seconds > crate::queue::MAX_DELAY_SECONDS {
            return Err(bad("retryBaseSeconds", "must be 0 to 900"));
        }
        for (scope, specs) in &self.modules {
            if specs.len() > MAX_MODULES_PER_SCOPE {
                return Err(bad(&format!("modules.{scope}"), format!("at most {MAX_MODULES_PER_SCOPE} modules")));
            }
            let mut budget_ms = 0;
            for (index, spec) in specs.iter().enumerate() {
                let module = spec.parse(&format!("modules.{scope}[{index}]"))?;
                budget_ms += module.timeout_ms();
            }
            // A run that outlives its lease could overlap the run of a worker that took it over.
            if budget_ms + LEASE_MARGIN_MS > u64::from(self.lease_seconds) * 1000 {
                return Err(bad(
                    &format!("modules.{scope}"),
                    format!(
                        "the modules' timeouts add up to {budget_ms} ms; with {LEASE_MARGIN_MS} ms to spare they must \
                         fit in leaseSeconds"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The validated modules of a scope, in order; none when the scope has no modules.
    pub fn modules_for(&self, scope: &Scope) -> Result<Vec<Module>, Error> {
        let Some(specs) = self.modules.get(scope) else {
            return Ok(Vec::new());
        };
        specs.iter().enumerate().map(|(index, spec)| spec.parse(&format!("modules.{scope}[{index}]"))).collect()
    }
}

impl ModuleSpec {
    pub fn parse(&self, field: &str) -> Result<Module, Error> {
        let settings_field = format!("{field}.settings");
        match self.module.as_str() {
            "webhook" => {
                let settings: WebhookSettings =
                    serde_json::from_value(self.settings.clone()).map_err(|error| bad(&settings_field, error))?;
                settings.validate(&settings_field)?;
                Ok(Module::Webhook(settings))
            }
            "sqs" => {
                let settings: SqsSettings =
                    serde_json::from_value(self.settings.clone()).map_err(|error| bad(&settings_field, error))?;
                settings.validate(&settings_field)?;
                Ok(Module::Sqs(settings))
            }
            other => {
                Err(bad(&format!("{field}.module"), format!("unknown module kind '{other}'; known: webhook, sqs")))
            }
        }
    }
}

impl Module {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Webhook(_) => "webhook",
            Self::Sqs(_) => "sqs",
        }
    }

    /// The longest one Process call may take.
    pub fn timeout_ms(&self) -> u64 {
        match self {
            Self::Webhook(settings) => settings.timeout_ms,
            Self::Sqs(_) => crate::modules::SQS_MODULE_TIMEOUT_MS,
        }
    }
}

impl WebhookSettings {
    fn validate(&self, field: &str) -> Result<(), Error> {
        let url = Url::parse(&self.url).map_err(|error| bad(&format!("{field}.url"), error))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(bad(&format!("{field}.url"), "must be an http or https URL"));
        }
        if !(1..=300_000).contains(&self.timeout_ms) {
            return Err(bad(&format!("{field}.timeoutMs"), "must be 1 to 300000"));
        }
        for (name, value) in &self.headers {
            let header_field = format!("{field}.headers.{name}");
            let parsed =
                HeaderName::from_bytes(name.as_bytes()).map_err(|_| bad(&header_field, "not a header name"))?;
            if parsed == crate::modules::IDEMPOTENCY_KEY || parsed == reqwest::header::CONTENT_TYPE {
                return Err(bad(&header_field, "is set by the webhook module itself"));
            }
            HeaderValue::from_str(value).map_err(|_| bad(&header_field, "not a valid header value"))?;
        }
        Ok(())
    }
}

impl SqsSettings {
    fn validate(&self, field: &str) -> Result<(), Error> {
        let field = format!("{field}.queueUrl");
        let url = Url::parse(&self.queue_url).map_err(|error| bad(&field, error))?;
        let segments: Vec<&str> = url.path_segments().map(|segments| segments.collect()).unwrap_or_default();
        let [.., account, name] = segments.as_slice() else {
            return Err(bad(&field, "must end in /ACCOUNT_ID/QUEUE_NAME"));
        };
        let name_ok = !name.is_empty()
            && name.len() <= 80
            && name.trim_end_matches(".fifo").bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        let account_ok = account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit());
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() || !name_ok || !account_ok {
            return Err(bad(
                &field,
                "must be an SQS queue URL such as https://sqs.REGION.amazonaws.com/ACCOUNT_ID/NAME",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn config(modules: Value) -> Result<UnitConfig, Error> {
        UnitConfig::from_json(json!({"reprocessQueue": {"enabled": true}, "modules": modules}).to_string().as_bytes())
    }

    fn refusal(modules: Value) -> String {
        match config(modules) {
            Err(Error::BadRequest(detail)) => detail,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn the_spec_example_is_accepted_with_defaults_filled_in() {
        let config =
            config(json!({"index": [{"module": "webhook", "settings": {"url": "https://example.org/hook"}}]})).unwrap();
        assert!(config.reprocess_queue.enabled);
        assert!(config.reprocess_job.running);
        assert_eq!((config.max_attempts, config.lease_seconds), (DEFAULT_MAX_ATTEMPTS, DEFAULT_LEASE_SECONDS));
        let modules = config.modules_for(&Scope::parse("index").unwrap()).unwrap();
        assert!(
            matches!(&modules[..], [Module::Webhook(settings)] if settings.timeout_ms == DEFAULT_WEBHOOK_TIMEOUT_MS)
        );
    }

    #[test]
    fn bad_modules_are_refused_naming_the_field() {
        let detail = refusal(json!({"index": [{"module": "ftp", "settings": {}}]}));
        assert!(detail.starts_with("modules.index[0].module"), "{detail}");
        let detail = refusal(json!({"index": [{"module": "webhook", "settings": {"url": "ftp://x/y"}}]}));
        assert!(detail.starts_with("modules.index[0].settings.url"), "{detail}");
        let detail = refusal(json!({"ocr": [{"module": "webhook", "settings": {}}]}));
        assert!(detail.starts_with("modules.ocr[0].settings"), "{detail}");
        let detail = refusal(json!({"ocr": [{"module": "sqs", "settings": {"queueUrl": "https://example.org/"}}]}));
        assert!(detail.starts_with("modules.ocr[0].settings.queueUrl"), "{detail}");
        let detail =
            refusal(json!({"ocr": [{"module": "webhook", "settings": {"url": "http://h/", "timeoutMs": 60000}}]}));
        assert!(detail.contains("leaseSeconds"), "{detail}");
        let detail = refusal(json!({"bad scope": []}));
        assert!(detail.contains("scope"), "{detail}");
    }

    #[test]
    fn sqs_queue_urls_of_aws_and_localstack_are_accepted() {
        for url in [
            "https://sqs.eu-west-1.amazonaws.com/123456789012/downstream",
            "http://127.0.0.1:4566/queue/us-east-1/000000000000/downstream.fifo",
        ] {
            assert!(config(json!({"index": [{"module": "sqs", "settings": {"queueUrl": url}}]})).is_ok(), "{url}");
        }
    }

    #[test]
    fn limits_and_unknown_fields_are_refused() {
        for (document, field) in [
            (json!({"maxAttempts": 0}), "maxAttempts"),
            (json!({"leaseSeconds": 1}), "leaseSeconds"),
            (json!({"retryBaseSeconds": 901}), "retryBaseSeconds"),
            (json!({"maxAttempt": 3}), "maxAttempt"),
        ] {
            match UnitConfig::from_json(document.to_string().as_bytes()) {
                Err(Error::BadRequest(detail)) => assert!(detail.contains(field), "{detail}"),
                other => panic!("{document} gave {other:?}"),
            }
        }
    }
}
