use std::convert::Infallible;

use lambda_runtime::{Error, service_fn};
use reprocess_core::runtime::{Backends, init_tracing};

#[tokio::main]
async fn main() -> Result<(), Error> {
    init_tracing();
    let backends = Backends::from_env().await?;
    let worker = reprocess_worker::build_worker(&backends, reqwest::Client::new());
    let worker = &worker;
    lambda_runtime::run(service_fn(move |event| async move {
        Ok::<_, Infallible>(reprocess_worker::handle(worker, event).await)
    }))
    .await
}
