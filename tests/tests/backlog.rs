//! Routing falling behind: with queues far smaller than the burst, ingest still answers 202 at
//! once, leads that find a queue full wait in the store and are read back when there is room,
//! and every lead is routed and told once.

use leadrouter_tests::{TestApp, TestClock, routing_doc_with_graph};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_larger_than_every_queue_is_routed_from_the_store() {
    let app = TestApp::spawn_queues(
        |r, g| routing_doc_with_graph(r, 64 * 1024, g),
        Arc::new(TestClock::default()),
        None,
        Some(8),
    )
    .await;
    let n = 400;
    let posts = futures::future::join_all((0..n).map(|i| {
        let app = &app;
        async move { app.post_form(&[("email", &format!("burst{i}@burst{i}-co.com"))]).await.status().as_u16() }
    }))
    .await;
    assert!(posts.iter().all(|s| *s == 202), "ingest answers 202 whatever the queues hold");
    let reqs = app
        .receiver
        .wait_until(Duration::from_secs(60), "every lead's assignment", |r| {
            r.iter().filter(|r| r.body["kind"] == "assigned").count() >= n
        })
        .await;
    app.settle().await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut per_lead: HashMap<String, usize> = HashMap::new();
    for r in reqs.iter().chain(app.receiver.requests().iter().skip(reqs.len())) {
        if r.body["kind"] == "assigned" && r.hook != "manager" {
            *per_lead.entry(r.body["lead"]["id"].as_str().unwrap().to_owned()).or_default() += 1;
        }
    }
    assert_eq!(per_lead.len(), n, "every lead reached a rep");
    let twice: Vec<_> = per_lead.iter().filter(|(_, c)| **c > 1).collect();
    assert!(twice.is_empty(), "each once; told more than once: {twice:?}");
    let leads: Value = app.admin_get("/v1/leads?status=notified&limit=500").await.json().await.unwrap();
    assert_eq!(leads["items"].as_array().unwrap().len(), n);
}
