//! The ingest function: the public routes (web forms, platform webhooks) behind API Gateway
//! and its own function URL.

#[tokio::main]
async fn main() -> Result<(), leadrouter::aws::Error> {
    leadrouter::aws::run_ingest().await
}
