//! The score stage: SQS batches in, partial batch failures out (scoring rules and grades).

#[tokio::main]
async fn main() -> Result<(), leadrouter::aws::Error> {
    leadrouter::aws::run_stage(leadrouter::domain::Stage::Score).await
}
