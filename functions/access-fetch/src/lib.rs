//! `GET access/fetch/{storageUnit}/{key}/{scope}`: the stored content of one key's scope.

use lambda_http::http::Method;
use lambda_http::{Body, Request, Response};
use reprocess_core::api::{self, ApiError};
use reprocess_core::{ItemRef, Key, Ports, Scope, StorageUnit};

pub const ROUTE: &str = "access/fetch";

pub async fn handle(ports: &Ports, request: Request) -> Response<Body> {
    api::serve(ROUTE, request, |request| fetch(ports, request)).await
}

async fn fetch(ports: &Ports, request: Request) -> Result<Response<Body>, ApiError> {
    api::allow(&request, &[Method::GET])?;

    let [unit, key_and_scope] = api::path_params(&request, ROUTE, ["storageUnit", "keyAndScope+"])?;
    let (key, scope) = api::split_key_and_scope(&key_and_scope)?;
    let item = ItemRef::new(StorageUnit::parse(unit)?, Scope::parse(scope)?, Key::parse(key)?);

    let content = ports.fetch(&item).await?;

    Ok(api::ok(&serde_json::json!({"key": item.key, "content": {item.scope.as_str(): content}})))
}
