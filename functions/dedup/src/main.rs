//! The dedup stage: SQS batches in, partial batch failures out (identity claims; duplicates become touches).

#[tokio::main]
async fn main() -> Result<(), leadrouter::aws::Error> {
    leadrouter::aws::run_stage(leadrouter::domain::Stage::Dedup).await
}
