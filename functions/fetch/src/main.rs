//! The fetch stage: SQS batches in, partial batch failures out (the platform's lead fields (Meta's Graph API)).

#[tokio::main]
async fn main() -> Result<(), leadrouter::aws::Error> {
    leadrouter::aws::run_stage(leadrouter::domain::Stage::Fetch).await
}
