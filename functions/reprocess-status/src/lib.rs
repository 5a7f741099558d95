//! `GET reprocess/status/{storageUnit}`: counts per state and background expansions;
//! `GET reprocess/status/{storageUnit}/{key}/{scope}`: one item's state, attempts, last error
//! and lease.

use lambda_http::http::Method;
use lambda_http::{Body, Request, RequestExt, Response};
use reprocess_core::api::{self, ApiError};
use reprocess_core::{ItemRef, Key, Ports, Scope, StorageUnit};

pub const ROUTE: &str = "reprocess/status";

pub async fn handle(ports: &Ports, request: Request) -> Response<Body> {
    api::serve(ROUTE, request, |request| status(ports, request)).await
}

/// The unit route has one segment after the prefix; the item route more.
fn is_item_route(request: &Request) -> bool {
    if request.path_parameters().first("storageUnit").is_some() {
        return request.path_parameters().first("keyAndScope").is_some();
    }
    let path = request.uri().path();
    let prefix = format!("/{ROUTE}/");
    path.find(&prefix).is_some_and(|start| path[start + prefix.len()..].trim_end_matches('/').contains('/'))
}

async fn status(ports: &Ports, request: Request) -> Result<Response<Body>, ApiError> {
    api::allow(&request, &[Method::GET])?;

    if !is_item_route(&request) {
        let [unit] = api::path_params(&request, ROUTE, ["storageUnit"])?;
        let status = ports.unit_status(&StorageUnit::parse(unit)?).await?;
        return Ok(api::ok(&status));
    }

    let [unit, key_and_scope] = api::path_params(&request, ROUTE, ["storageUnit", "keyAndScope+"])?;
    let (key, scope) = api::split_key_and_scope(&key_and_scope)?;
    let item = ItemRef::new(StorageUnit::parse(unit)?, Scope::parse(scope)?, Key::parse(key)?);

    let status = ports.item_status(&item).await?;

    Ok(api::ok(&status))
}
