//! `leadrouter config push FILE --table NAME` against the emulator's DynamoDB: a checked
//! document is stored where the Lambdas read it; a document with problems is refused and
//! nothing is written.

use std::process::Command;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_stores_a_checked_document_and_refuses_a_bad_one() {
    let store = leadrouter_tests::aws::fresh_dynamo().await;
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[server]\nadmin_token = \"env:\"\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_leadrouter"))
        .args(["config", "push"])
        .arg(&bad)
        .args(["--table", store.table()])
        .output()
        .unwrap();
    assert!(!out.status.success(), "a document with problems is refused");
    assert!(String::from_utf8_lossy(&out.stderr).contains("bad.toml:2:"), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(store.load_routing().await.unwrap(), None, "nothing was written");

    let good = dir.path().join("leadrouter.toml");
    let doc = leadrouter::config::DEMO_DOCUMENT;
    std::fs::write(&good, doc).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_leadrouter"))
        .args(["config", "push"])
        .arg(&good)
        .args(["--table", store.table()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(store.load_routing().await.unwrap().as_deref(), Some(doc));
}
