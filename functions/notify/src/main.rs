//! The notify stage: SQS batches in, partial batch failures out (rep and manager notifications, one delivery id each).

#[tokio::main]
async fn main() -> Result<(), leadrouter::aws::Error> {
    leadrouter::aws::run_stage(leadrouter::domain::Stage::Notify).await
}
