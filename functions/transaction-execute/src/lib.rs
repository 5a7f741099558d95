//! `PUT|POST transaction/execute/{storageUnit}/{scope}` `{"key","content","action"}`: store
//! (`add`, `update`) or `delete` one key's scope.

use lambda_http::http::Method;
use lambda_http::{Body, Request, Response};
use reprocess_core::admin::Action;
use reprocess_core::api::{self, ApiError};
use reprocess_core::{ItemRef, Key, Ports, Scope, StorageUnit};
use serde::Deserialize;
use serde_json::Value;

pub const ROUTE: &str = "transaction/execute";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Transaction {
    key: String,
    #[serde(default)]
    content: Option<Value>,
    action: Action,
}

pub async fn handle(ports: &Ports, request: Request) -> Response<Body> {
    api::serve(ROUTE, request, |request| execute(ports, request)).await
}

async fn execute(ports: &Ports, request: Request) -> Result<Response<Body>, ApiError> {
    api::allow(&request, &[Method::PUT, Method::POST])?;

    let [unit, scope] = api::path_params(&request, ROUTE, ["storageUnit", "scope"])?;
    let transaction: Transaction = api::json_body(&request)?;
    let item = ItemRef::new(StorageUnit::parse(unit)?, Scope::parse(scope)?, Key::parse(transaction.key)?);

    ports.execute(&item, transaction.action, transaction.content).await?;

    Ok(api::ok(&serde_json::json!({"key": item.key})))
}
