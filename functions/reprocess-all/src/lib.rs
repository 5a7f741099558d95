//! `GET|POST reprocess/all/{storageUnit}/{scope}`: queue every key stored in the scope. Answers
//! at once; the worker expands the scope in the background, page by page.

use lambda_http::http::Method;
use lambda_http::{Body, Request, Response};
use reprocess_core::api::{self, ApiError};
use reprocess_core::{Ports, Scope, StorageUnit};
use serde::Serialize;

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
