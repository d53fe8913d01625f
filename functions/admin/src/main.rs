//! The admin function: the bearer-token routes (leads, health, OpenAPI) behind API Gateway.
//! It serves the same Router as ingest; the template gives it read-only table access.

#[tokio::main]
async fn main() -> Result<(), leadrouter::aws::Error> {
    leadrouter::aws::run_http().await
}
