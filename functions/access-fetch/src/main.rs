use std::convert::Infallible;

use lambda_http::{Error, service_fn};
use reprocess_core::runtime::{Backends, init_tracing};

#[tokio::main]
async fn main() -> Result<(), Error> {
    init_tracing();
    let backends = Backends::from_env().await?;
    let ports = &backends.ports;
    lambda_http::run(service_fn(move |request| async move {
        Ok::<_, Infallible>(access_fetch::handle(ports, request).await)
    }))
    .await
}
