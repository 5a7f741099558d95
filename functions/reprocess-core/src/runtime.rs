//! What every function does once per cold start: logging, AWS clients, the ports.

use std::sync::Arc;

use aws_config::{BehaviorVersion, SdkConfig};

use crate::adapters::dynamo::{Dynamo, Tables};
use crate::adapters::sqs::SqsWorkQueue;
use crate::ports::{Ports, SystemClock};

/// The deployment's settings, from the environment that the template sets.
#[derive(Debug, Clone)]
pub struct Settings {
    pub tables: Tables,
    pub work_queue_url: String,
    /// Set only to target an emulator such as LocalStack; unset on AWS.
    pub endpoint_url: Option<String>,
}

#[derive(Debug, thiserror::Error)]
#[error("environment variable {0} is not set")]
pub struct MissingSetting(&'static str);

fn required(name: &'static str) -> Result<String, MissingSetting> {
    std::env::var(name).ok().filter(|value| !value.is_empty()).ok_or(MissingSetting(name))
}

impl Settings {
    pub fn from_env() -> Result<Self, MissingSetting> {
        Ok(Self {
            tables: Tables {
                config: required("CONFIG_TABLE")?,
                content: required("CONTENT_TABLE")?,
                queue: required("QUEUE_TABLE")?,
            },
            work_queue_url: required("WORK_QUEUE_URL")?,
            endpoint_url: std::env::var("AWS_ENDPOINT_URL").ok().filter(|value| !value.is_empty()),
        })
    }
}

/// The SDK configuration, with the endpoint set explicitly when one is configured.
pub async fn sdk_config(endpoint_url: Option<&str>) -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest());
    if let Some(endpoint) = endpoint_url {
        loader = loader.endpoint_url(endpoint);
    }
    loader.load().await
}

/// The AWS clients and the ports over them; built once, shared by every request.
pub struct Backends {
    pub ports: Ports,
    pub sqs: aws_sdk_sqs::Client,
}

impl Backends {
    pub fn new(sdk: &SdkConfig, settings: &Settings) -> Self {
        Self::from_clients(aws_sdk_dynamodb::Client::new(sdk), aws_sdk_sqs::Client::new(sdk), settings)
    }

    pub fn from_clients(dynamo: aws_sdk_dynamodb::Client, sqs: aws_sdk_sqs::Client, settings: &Settings) -> Self {
        let dynamo = Arc::new(Dynamo::new(dynamo, settings.tables.clone()));
        let ports = Ports {
            config: dynamo.clone(),
            content: dynamo.clone(),
            queue: dynamo.clone(),
            expansions: dynamo,
            work: Arc::new(SqsWorkQueue::new(sqs.clone(), settings.work_queue_url.clone())),
            clock: Arc::new(SystemClock),
        };
        Self { ports, sqs }
    }

    pub async fn from_env() -> Result<Self, MissingSetting> {
        let settings = Settings::from_env()?;
        let sdk = sdk_config(settings.endpoint_url.as_deref()).await;
        Ok(Self::new(&sdk, &settings))
    }
}

/// Logs through `tracing`: JSON without timestamps in Lambda when its log format is JSON
/// (CloudWatch stamps each line), readable lines elsewhere. The level comes from
/// `AWS_LAMBDA_LOG_LEVEL`, else `RUST_LOG`, else `info`.
pub fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let level = std::env::var("AWS_LAMBDA_LOG_LEVEL").ok().map(|level| level.to_lowercase());
    let filter = match level {
        Some(level) => EnvFilter::new(level),
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
    };
    let json = std::env::var("AWS_LAMBDA_LOG_FORMAT").is_ok_and(|format| format.eq_ignore_ascii_case("json"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_target(false);
    let installed = if json {
        builder.json().with_current_span(true).with_span_list(false).without_time().try_init()
    } else if std::env::var("AWS_LAMBDA_FUNCTION_NAME").is_ok() {
        builder.without_time().with_ansi(false).try_init()
    } else {
        builder.try_init()
    };
    // A second initialisation (tests, the local gateway) keeps the first subscriber.
    drop(installed);
}
