//! What the HTTP functions share: reading paths, queries and bodies from API Gateway HTTP API
//! (payload 2.0) events or plain HTTP requests alike, and the one mapping from errors to
//! status codes and bodies.

use std::future::Future;

use lambda_http::http::{Method, StatusCode, header};
use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt, Response};
use percent_encoding::percent_decode_str;
use serde::Serialize;
use serde_json::{Value, json};
use tracing::{Instrument, error, info, info_span, warn};

use crate::error::{BackendError, Error};

/// The `main` of an HTTP function: logging and clients once per cold start, then every
/// request to `$handler(&Ports, Request) -> Response<Body>`.
#[macro_export]
macro_rules! http_function_main {
    ($handler:path) => {
        #[::tokio::main]
        async fn main() -> Result<(), ::lambda_http::Error> {
            $crate::runtime::init_tracing();
            let backends = $crate::runtime::Backends::from_env().await?;
            let ports = &backends.ports;
            ::lambda_http::run(::lambda_http::service_fn(move |request| async move {
                Ok::<_, ::std::convert::Infallible>($handler(ports, request).await)
            }))
            .await
        }
    };
}

/// An error as the API answers it.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Domain(#[from] Error),
    #[error("method {method} is not allowed here; use {allowed}")]
    MethodNotAllowed { method: Method, allowed: String },
}

impl From<BackendError> for ApiError {
    fn from(error: BackendError) -> Self {
        Self::Domain(Error::Backend(error))
    }
}

impl ApiError {
    /// The one place where errors become status codes.
    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            Self::MethodNotAllowed { .. } => (StatusCode::METHOD_NOT_ALLOWED, "METHOD_NOT_ALLOWED"),
            Self::Domain(error) => match error {
                Error::BadRequest(_) => (StatusCode::BAD_REQUEST, "BAD_REQUEST"),
                Error::StorageUnitNotFound(_) => (StatusCode::NOT_FOUND, "STORAGE_UNIT_NOT_FOUND"),
                Error::QueueDisabled(_) => (StatusCode::CONFLICT, "REPROCESS_QUEUE_DISABLED"),
                Error::KeyNotFound(_) => (StatusCode::NOT_FOUND, "KEY_NOT_FOUND"),
                Error::KeyExists => (StatusCode::CONFLICT, "KEY_EXISTS"),
                Error::TooManyKeys { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "TOO_MANY_KEYS"),
                Error::ContentTooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "CONTENT_TOO_LARGE"),
                Error::Backend(BackendError::Unavailable { .. }) => {
                    (StatusCode::SERVICE_UNAVAILABLE, "SERVICE_UNAVAILABLE")
                }
                Error::Backend(BackendError::Unexpected { .. }) => {
                    (StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL_ERROR")
                }
            },
        }
    }

    /// The contract's code for this error, such as `KEY_NOT_FOUND`.
    pub fn code(&self) -> &'static str {
        self.status_and_code().1
    }

    /// The answer's sentence. A backend failure is told in the log, never to the caller: its
    /// details name tables, operations and AWS request ids.
    pub fn detail(&self) -> String {
        match self {
            Self::Domain(Error::Backend(BackendError::Unavailable { .. })) => {
                "a backing service is throttling or unavailable; retry with backoff".into()
            }
            Self::Domain(Error::Backend(BackendError::Unexpected { .. })) => {
                "the request could not be completed".into()
            }
            other => other.to_string(),
        }
    }

    pub fn into_response(self) -> Response<Body> {
        let (status, code) = self.status_and_code();
        let mut response = json_response(status, &json!({"message": code, "detail": self.detail()}));
        if let Self::MethodNotAllowed { allowed, .. } = &self
            && let Ok(value) = allowed.parse()
        {
            response.headers_mut().insert(header::ALLOW, value);
        }
        response
    }
}

fn json_response(status: StatusCode, body: &Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::Text(body.to_string()))
        .expect("a status and a static header always build")
}

/// `200 {"message":"OK", ...fields}`.
pub fn ok(fields: &impl Serialize) -> Response<Body> {
    let mut body = json!({"message": "OK"});
    if let (Some(body), Ok(Value::Object(fields))) = (body.as_object_mut(), serde_json::to_value(fields)) {
        body.extend(fields);
    }
    json_response(StatusCode::OK, &body)
}

/// Runs a handler in a span of its own and answers its error, if any, as the contract says.
pub async fn serve<F, Fut>(route: &'static str, request: Request, handler: F) -> Response<Body>
where
    F: FnOnce(Request) -> Fut,
    Fut: Future<Output = Result<Response<Body>, ApiError>>,
{
    let request_id = match request.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(context)) => context.request_id.clone().unwrap_or_default(),
        _ => String::new(),
    };
    let span = info_span!("request", route, method = %request.method(), request_id);
    async move {
        let response = match handler(request).await {
            Ok(response) => response,
            Err(api_error) => {
                let (status, code) = api_error.status_and_code();
                if status.is_server_error() {
                    error!(status = status.as_u16(), code, error = %api_error, "request failed");
                } else {
                    warn!(status = status.as_u16(), code, detail = %api_error, "request refused");
                }
                api_error.into_response()
            }
        };
        info!(status = response.status().as_u16(), "answered");
        response
    }
    .instrument(span)
    .await
}

pub fn allow(request: &Request, allowed: &[Method]) -> Result<(), ApiError> {
    if allowed.contains(request.method()) {
        return Ok(());
    }
    let allowed = allowed.iter().map(Method::as_str).collect::<Vec<_>>().join(", ");
    Err(ApiError::MethodNotAllowed { method: request.method().clone(), allowed })
}

fn bad(detail: impl Into<String>) -> ApiError {
    ApiError::Domain(Error::BadRequest(detail.into()))
}

fn decode(segment: &str, name: &str) -> Result<String, ApiError> {
    percent_decode_str(segment)
        .decode_utf8()
        .map(|decoded| decoded.into_owned())
        .map_err(|_| bad(format!("{name}: percent-encoding does not decode to UTF-8")))
}

/// The route's path parameters, each decoded exactly once. `names` follow the route's
/// template; a last name ending in `+` is greedy and takes the rest of the path, slashes
/// included. API Gateway's events carry the parameters already decoded, and those are taken
/// as they are; a request without them (a local server, a Function URL) has its raw path cut
/// after `route` and decoded here.
pub fn path_params<const N: usize>(request: &Request, route: &str, names: [&str; N]) -> Result<[String; N], ApiError> {
    let event_params = request.path_parameters();
    let from_event: Option<Vec<String>> =
        names.iter().map(|name| event_params.first(name.trim_end_matches('+')).map(str::to_owned)).collect();
    if let Some(values) = from_event {
        return values.try_into().map_err(|_| bad("path parameters do not match the route"));
    }

    let path = request.uri().path();
    let prefix = format!("/{route}/");
    let rest = path
        .find(&prefix)
        .map(|start| &path[start + prefix.len()..])
        .ok_or_else(|| bad("the path does not match the route"))?;
    let mut segments = rest.split('/');
    let mut values = Vec::with_capacity(N);
    for name in names {
        let raw = if name.ends_with('+') {
            Some(segments.by_ref().collect::<Vec<_>>().join("/")).filter(|joined| !joined.is_empty())
        } else {
            segments.next().map(str::to_owned)
        };
        let raw = raw.ok_or_else(|| bad(format!("the path lacks {}", name.trim_end_matches('+'))))?;
        values.push(decode(&raw, name.trim_end_matches('+'))?);
    }
    if segments.next().is_some_and(|extra| !extra.is_empty()) {
        return Err(bad("the path has more segments than the route"));
    }
    values.try_into().map_err(|_| bad("path parameters do not match the route"))
}

/// Splits `<key>/<scope>`: the scope is the last segment, the key everything before it.
pub fn split_key_and_scope(key_and_scope: &str) -> Result<(&str, &str), ApiError> {
    key_and_scope
        .rsplit_once('/')
        .filter(|(key, scope)| !key.is_empty() && !scope.is_empty())
        .ok_or_else(|| bad("the path must end in /<key>/<scope>"))
}

/// A query parameter, decoded as HTML forms encode (`+` is a space; `%2B` is a plus).
pub fn query_param(request: &Request, name: &str) -> Option<String> {
    let query = request.uri().query()?;
    form_urlencoded::parse(query.as_bytes()).find(|(key, _)| key == name).map(|(_, value)| value.into_owned())
}

/// The body's bytes; API Gateway's base64 bodies arrive here already decoded.
pub fn body_bytes(request: &Request) -> &[u8] {
    match request.body() {
        Body::Text(text) => text.as_bytes(),
        Body::Binary(bytes) => bytes,
        _ => b"",
    }
}

/// The body as JSON.
pub fn json_body<T: serde::de::DeserializeOwned>(request: &Request) -> Result<T, ApiError> {
    let bytes = body_bytes(request);
    if bytes.is_empty() {
        return Err(bad("the body must be a JSON document"));
    }
    serde_json::from_slice(bytes).map_err(|error| bad(format!("malformed JSON body: {error}")))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn plain(uri: &str) -> Request {
        lambda_http::http::Request::builder().uri(uri).body(Body::Empty).unwrap()
    }

    #[test]
    fn a_raw_path_is_decoded_once_with_a_greedy_last_parameter() {
        let request = plain("http://localhost/reprocess/key/su/a%2Fb%20c%2525/d/index");
        let [unit, rest] = path_params(&request, "reprocess/key", ["storageUnit", "keyAndScope+"]).unwrap();
        assert_eq!((unit.as_str(), rest.as_str()), ("su", "a/b c%25/d/index"));
        assert_eq!(split_key_and_scope(&rest).unwrap(), ("a/b c%25/d", "index"));
    }

    #[test]
    fn event_parameters_are_taken_as_they_are() {
        let request = plain("http://localhost/reprocess/key/su/whatever/index").with_path_parameters(HashMap::from([
            ("storageUnit".to_owned(), "su".to_owned()),
            ("keyAndScope".to_owned(), "100%/x/index".to_owned()),
        ]));
        let [_, rest] = path_params(&request, "reprocess/key", ["storageUnit", "keyAndScope+"]).unwrap();
        assert_eq!(rest, "100%/x/index");
    }

    #[test]
    fn query_values_decode_as_forms_do() {
        let request = plain("http://localhost/x?keys=a%2Bb,c+d,%C3%BC");
        assert_eq!(query_param(&request, "keys").as_deref(), Some("a+b,c d,ü"));
        assert_eq!(query_param(&request, "other"), None);
    }

    #[test]
    fn bad_paths_are_refused() {
        for uri in ["http://h/reprocess/key/su", "http://h/reprocess/key/su/%FF/index", "http://h/elsewhere/su/k/s"] {
            let result = path_params(&plain(uri), "reprocess/key", ["storageUnit", "keyAndScope+"])
                .and_then(|[_, rest]| split_key_and_scope(&rest).map(|_| ()));
            assert!(matches!(result, Err(ApiError::Domain(Error::BadRequest(_)))), "{uri}");
        }
    }
}
