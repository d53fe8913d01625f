//! Clients for the AWS emulator that `scripts/with-moto.sh` starts (and `make test` uses).

use leadrouter::adapters::dynamo::DynamoStore;

/// Fails with the way to run it when no emulator is configured: never skips silently.
pub async fn sdk_config() -> aws_config::SdkConfig {
    let endpoint = std::env::var("AWS_ENDPOINT_URL").unwrap_or_else(|_| {
        panic!(
            "AWS_ENDPOINT_URL is not set: these tests need the moto server. Run them with \
             `./scripts/with-moto.sh cargo test ...` or `make test`, which start it."
        )
    });
    assert!(
        endpoint.starts_with("http://127.0.0.1") || endpoint.starts_with("http://localhost"),
        "AWS_ENDPOINT_URL must point at a local emulator, not {endpoint}"
    );
    aws_config::defaults(aws_config::BehaviorVersion::latest()).load().await
}

/// A DynamoDB store on a fresh table of its own.
pub async fn fresh_dynamo() -> DynamoStore {
    let conf = sdk_config().await;
    let client = aws_sdk_dynamodb::Client::new(&conf);
    let table = format!("leadrouter-test-{}", leadrouter::domain::LeadId::new().as_str().to_ascii_lowercase());
    let store = DynamoStore::new(client, table);
    store.create_table().await.expect("create the table on the emulator");
    store
}
