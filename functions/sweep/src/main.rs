//! The sweep function, on a schedule: requeues leads left waiting for a stage.

#[tokio::main]
async fn main() -> Result<(), leadrouter::aws::Error> {
    leadrouter::aws::run_sweep().await
}
