//! `GET|POST reprocess/all/{storageUnit}/{scope}`: queue every key stored in the scope. Answers
//! at once; the worker expands the scope in the background, page by page.
//!
//! The same function also takes a direct invocation `{"storageUnit": "...", "scope": "..."}`,
//! from an EventBridge schedule or another service, validated the same way.

use aws_lambda_events::apigw::ApiGatewayV2httpResponse;
use aws_lambda_events::encodings::Body as EventBody;
use lambda_http::http::Method;
use lambda_http::request::LambdaRequest;
use lambda_http::{Body, Request, Response};
use reprocess_core::api::{self, ApiError};
use reprocess_core::{Ports, Scope, StorageUnit};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tracing::{Instrument, info_span, warn};

pub const ROUTE: &str = "reprocess/all";

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Started {
    expansion_id: String,
}

pub async fn handle(ports: &Ports, request: Request) -> Response<Body> {
    api::serve(ROUTE, request, |request| queue_all(ports, request)).await
}

async fn queue_all(ports: &Ports, request: Request) -> Result<Response<Body>, ApiError> {
    api::allow(&request, &[Method::GET, Method::POST])?;

    let [unit, scope] = api::path_params(&request, ROUTE, ["storageUnit", "scope"])?;
    let (unit, scope) = (StorageUnit::parse(unit)?, Scope::parse(scope)?);

    let expansion = ports.queue_all(&unit, &scope).await?;

    Ok(api::ok(&Started { expansion_id: expansion.id }))
}

/// What invokes the function: a direct invocation, or an HTTP API event.
pub enum Invocation {
    Direct(DirectInvocation),
    Http(Box<LambdaRequest>),
}

impl<'de> Deserialize<'de> for Invocation {
    /// An HTTP API event always carries a `requestContext`; a direct invocation never does.
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        let event = Value::deserialize(deserializer)?;
        if event.get("requestContext").is_some() {
            let request = serde_json::from_value(event).map_err(D::Error::custom)?;
            Ok(Self::Http(Box::new(request)))
        } else {
            let direct = serde_json::from_value(event).map_err(D::Error::custom)?;
            Ok(Self::Direct(direct))
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DirectInvocation {
    pub storage_unit: String,
    pub scope: String,
}

/// A direct invocation's refusal; Lambda reports it as the invocation's error, so that the
/// caller (EventBridge retries, for one) sees it.
#[derive(Debug, thiserror::Error)]
#[error("{code}: {detail}")]
pub struct Refused {
    pub code: &'static str,
    pub detail: String,
}

impl From<Refused> for lambda_runtime::Diagnostic {
    fn from(refused: Refused) -> Self {
        lambda_runtime::Diagnostic { error_type: refused.code.to_owned(), error_message: refused.detail }
    }
}

/// Answers an invocation of either kind: an HTTP API response, or `{"message":"OK",...}`.
pub async fn invoke(ports: &Ports, invocation: Invocation) -> Result<Value, Refused> {
    match invocation {
        Invocation::Http(event) => {
            let request: Request = (*event).into();
            Ok(http_answer(handle(ports, request).await))
        }
        Invocation::Direct(direct) => {
            let span =
                info_span!("invocation", route = ROUTE, storage_unit = %direct.storage_unit, scope = %direct.scope);
            async move {
                let started = async {
                    let unit = StorageUnit::parse(direct.storage_unit)?;
                    let scope = Scope::parse(direct.scope)?;
                    ports.queue_all(&unit, &scope).await
                };
                match started.await {
                    Ok(expansion) => Ok(serde_json::json!({"message": "OK", "expansionId": expansion.id})),
                    Err(error) => {
                        let api_error = ApiError::from(error);
                        let (code, detail) = (api_error.code(), api_error.detail());
                        warn!(code, %detail, "invocation refused");
                        Err(Refused { code, detail })
                    }
                }
            }
            .instrument(span)
            .await
        }
    }
}

fn http_answer(response: Response<Body>) -> Value {
    let (parts, body) = response.into_parts();
    let mut answer = ApiGatewayV2httpResponse::default();
    answer.status_code = i64::from(parts.status.as_u16());
    answer.headers = parts.headers;
    answer.body = match body {
        Body::Text(text) => Some(EventBody::Text(text)),
        Body::Binary(bytes) => Some(EventBody::Binary(bytes)),
        _ => None,
    };
    answer.is_base64_encoded = matches!(answer.body, Some(EventBody::Binary(_)));
    serde_json::to_value(answer).unwrap_or_default()
}
