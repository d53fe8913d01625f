//! The admin function: the bearer-token routes (leads, health, OpenAPI) behind API Gateway.
//! It serves the whole Router (ingest serves its public routes); the template gives it the
//! table access the admin routes need.

#[tokio::main]
async fn main() -> Result<(), leadrouter::aws::Error> {
    leadrouter::aws::run_http().await
}
