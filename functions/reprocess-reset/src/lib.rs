//! `GET|POST reprocess/reset/{storageUnit}`: take every assigned item of the unit away from its
//! worker and queue it again; the old worker's outcome is dropped.

use lambda_http::http::Method;
use lambda_http::{Body, Request, Response};
use reprocess_core::api::{self, ApiError};
use reprocess_core::{Ports, StorageUnit};
use serde::Serialize;

pub const ROUTE: &str = "reprocess/reset";

#[derive(Serialize)]
struct Reset {
    requeued: usize,
}

pub async fn handle(ports: &Ports, request: Request) -> Response<Body> {
    api::serve(ROUTE, request, |request| reset(ports, request)).await
}

async fn reset(ports: &Ports, request: Request) -> Result<Response<Body>, ApiError> {
    api::allow(&request, &[Method::GET, Method::POST])?;

    let [unit] = api::path_params(&request, ROUTE, ["storageUnit"])?;
    let unit = StorageUnit::parse(unit)?;

    let requeued = ports.reset(&unit).await?;

    Ok(api::ok(&Reset { requeued }))
}
