//! `GET reprocess/keys/{storageUnit}/{scope}?keys=k1,k2` and `POST` with `{"keys": [...]}`:
//! queue the listed keys' scope. Keys holding a comma, `?` or `#` travel in the POST body.

use lambda_http::http::Method;
use lambda_http::{Body, Request, Response};
use reprocess_core::api::{self, ApiError};
use reprocess_core::service::MAX_KEYS_PER_REQUEST;
use reprocess_core::{Error, Key, Ports, Scope, StorageUnit};
use serde::Deserialize;

pub const ROUTE: &str = "reprocess/keys";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeysBody {
    keys: Vec<String>,
}

pub async fn handle(ports: &Ports, request: Request) -> Response<Body> {
    api::serve(ROUTE, request, |request| queue_keys(ports, request)).await
}

async fn queue_keys(ports: &Ports, request: Request) -> Result<Response<Body>, ApiError> {
    api::allow(&request, &[Method::GET, Method::POST])?;

    let [unit, scope] = api::path_params(&request, ROUTE, ["storageUnit", "scope"])?;
    let (unit, scope) = (StorageUnit::parse(unit)?, Scope::parse(scope)?);
    let raw_keys = if request.method() == Method::POST {
        api::json_body::<KeysBody>(&request)?.keys
    } else {
        let listed = api::query_param(&request, "keys").unwrap_or_default();
        listed.split(',').filter(|key| !key.is_empty()).map(str::to_owned).collect()
    };
    if raw_keys.is_empty() {
        return Err(Error::BadRequest("keys: at least one key is needed".into()).into());
    }
    // Counted before each key is checked, so an oversized request is refused cheaply.
    if raw_keys.len() > MAX_KEYS_PER_REQUEST {
        return Err(Error::TooManyKeys { count: raw_keys.len(), limit: MAX_KEYS_PER_REQUEST }.into());
    }
    let keys = raw_keys
        .into_iter()
        .enumerate()
        .map(|(index, key)| Key::parse(key).map_err(|error| Error::BadRequest(format!("keys[{index}]: {error}"))))
        .collect::<Result<Vec<_>, _>>()?;

    let report = ports.queue_keys(&unit, &scope, keys).await?;

    Ok(api::ok(&report))
}
