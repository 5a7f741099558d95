//! `GET|POST reprocess/key/{storageUnit}/{key}/{scope}`: queue one key's scope.

use lambda_http::http::Method;
use lambda_http::{Body, Request, Response};
use reprocess_core::api::{self, ApiError};
use reprocess_core::{ItemRef, Key, Ports, Scope, StorageUnit};

pub const ROUTE: &str = "reprocess/key";

pub async fn handle(ports: &Ports, request: Request) -> Response<Body> {
    api::serve(ROUTE, request, |request| queue_key(ports, request)).await
}

async fn queue_key(ports: &Ports, request: Request) -> Result<Response<Body>, ApiError> {
    api::allow(&request, &[Method::GET, Method::POST])?;

    // The key may hold slashes: it is all that lies between the unit and the last segment.
    let [unit, key_and_scope] = api::path_params(&request, ROUTE, ["storageUnit", "keyAndScope+"])?;
    let (key, scope) = api::split_key_and_scope(&key_and_scope)?;
    let item = ItemRef::new(StorageUnit::parse(unit)?, Scope::parse(scope)?, Key::parse(key)?);

    let report = ports.queue_key(&item).await?;

    Ok(api::ok(&report))
}
