//! The assign stage: SQS batches in, partial batch failures out (pool matching and the round-robin turn, in one transaction).

#[tokio::main]
async fn main() -> Result<(), leadrouter::aws::Error> {
    leadrouter::aws::run_stage(leadrouter::domain::Stage::Assign).await
}
