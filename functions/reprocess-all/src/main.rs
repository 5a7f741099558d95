use lambda_runtime::{Error, LambdaEvent, service_fn};
use reprocess_all::Invocation;
use reprocess_core::runtime::{Backends, init_tracing};

#[tokio::main]
async fn main() -> Result<(), Error> {
    init_tracing();
    let backends = Backends::from_env().await?;
    let ports = &backends.ports;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Invocation>| async move {
        reprocess_all::invoke(ports, event.payload).await
    }))
    .await
}
