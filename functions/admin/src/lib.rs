//! The administration routes of a storage unit, in one function since they share one table:
//! - `PUT|GET|DELETE admin/storageUnits/{storageUnit}`: the whole configuration;
//! - `PUT admin/enableReprocessingQueue/{storageUnit}/{true|false}`: the queue switch;
//! - `POST admin/setContentProcessingModules/{storageUnit}` `{"modules": {...}}`;
//! - `PUT admin/reprocessingJob/{storageUnit}/{start|stop}`: the job switch.

use std::collections::BTreeMap;

use lambda_http::http::Method;
use lambda_http::{Body, Request, Response};
use reprocess_core::api::{self, ApiError};
use reprocess_core::config::{ModuleSpec, UnitConfig};
use reprocess_core::{Error, Ports, Scope, StorageUnit};
use serde::{Deserialize, Serialize};

pub const ROUTE: &str = "admin";
const UNITS: &str = "admin/storageUnits";
const QUEUE_SWITCH: &str = "admin/enableReprocessingQueue";
const MODULES: &str = "admin/setContentProcessingModules";
const JOB_SWITCH: &str = "admin/reprocessingJob";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ModulesBody {
    modules: BTreeMap<Scope, Vec<ModuleSpec>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Configuration {
    storage_unit: StorageUnit,
    #[serde(flatten)]
    config: UnitConfig,
}

pub async fn handle(ports: &Ports, request: Request) -> Response<Body> {
    api::serve(ROUTE, request, |request| admin(ports, request)).await
}

fn route_of(request: &Request) -> Option<&'static str> {
    let path = request.uri().path();
    [UNITS, QUEUE_SWITCH, MODULES, JOB_SWITCH].into_iter().find(|route| path.contains(&format!("/{route}/")))
}

async fn admin(ports: &Ports, request: Request) -> Result<Response<Body>, ApiError> {
    match route_of(&request) {
        Some(UNITS) => storage_unit(ports, request).await,
        Some(QUEUE_SWITCH) => queue_switch(ports, request).await,
        Some(MODULES) => modules(ports, request).await,
        Some(JOB_SWITCH) => job_switch(ports, request).await,
        _ => Err(Error::BadRequest("no administration route matches this path".into()).into()),
    }
}

async fn storage_unit(ports: &Ports, request: Request) -> Result<Response<Body>, ApiError> {
    api::allow(&request, &[Method::PUT, Method::GET, Method::DELETE])?;

    let [unit] = api::path_params(&request, UNITS, ["storageUnit"])?;
    let unit = StorageUnit::parse(unit)?;

    match *request.method() {
        Method::PUT => {
            let config = UnitConfig::from_json(api::body_bytes(&request))?;
            ports.put_config(&unit, &config).await?;
            Ok(api::ok(&Configuration { storage_unit: unit, config }))
        }
        Method::GET => {
            let config = ports.get_config(&unit).await?;
            Ok(api::ok(&Configuration { storage_unit: unit, config }))
        }
        _ => {
            ports.delete_unit(&unit).await?;
            Ok(api::ok(&serde_json::json!({})))
        }
    }
}

async fn queue_switch(ports: &Ports, request: Request) -> Result<Response<Body>, ApiError> {
    api::allow(&request, &[Method::PUT])?;

    let [unit, enabled] = api::path_params(&request, QUEUE_SWITCH, ["storageUnit", "enabled"])?;
    let unit = StorageUnit::parse(unit)?;
    let enabled = match enabled.as_str() {
        "true" => true,
        "false" => false,
        _ => return Err(Error::BadRequest("the switch must be 'true' or 'false'".into()).into()),
    };

    ports.set_queue_enabled(&unit, enabled).await?;

    Ok(api::ok(&serde_json::json!({"reprocessQueue": {"enabled": enabled}})))
}

async fn modules(ports: &Ports, request: Request) -> Result<Response<Body>, ApiError> {
    api::allow(&request, &[Method::POST])?;

    let [unit] = api::path_params(&request, MODULES, ["storageUnit"])?;
    let unit = StorageUnit::parse(unit)?;
    let body: ModulesBody = api::json_body(&request)?;

    ports.set_modules(&unit, body.modules).await?;

    Ok(api::ok(&serde_json::json!({})))
}

async fn job_switch(ports: &Ports, request: Request) -> Result<Response<Body>, ApiError> {
    api::allow(&request, &[Method::PUT])?;

    let [unit, switch] = api::path_params(&request, JOB_SWITCH, ["storageUnit", "action"])?;
    let unit = StorageUnit::parse(unit)?;
    let running = match switch.as_str() {
        "start" => true,
        "stop" => false,
        _ => return Err(Error::BadRequest("the job switch must be 'start' or 'stop'".into()).into()),
    };

    ports.set_job_running(&unit, running).await?;

    Ok(api::ok(&serde_json::json!({"reprocessJob": {"running": running}})))
}
