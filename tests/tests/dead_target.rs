//! A dead notification target costs a few requests a minute, not one per lead per backoff
//! step: after 5 consecutive failures it is down, its deliveries wait as `parked`, one probe
//! goes out every 30 s (tried once), the managers hear of it once, and when it answers again
//! every parked notification goes out.

use leadrouter_tests::{TestApp, TestClock, routing_doc_with_graph};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_target_is_probed_not_hammered_and_gets_everything_when_it_answers() {
    let clock = Arc::new(TestClock::default());
    let app = TestApp::spawn_custom(|r, g| routing_doc_with_graph(r, 64 * 1024, g), clock.clone()).await;
    let hooks = app.receiver.clone();
    hooks.script("ana", &vec![(500, None); 100_000]);
    let to_ana = || hooks.requests().into_iter().filter(|r| r.hook == "ana").collect::<Vec<_>>();

    let n = 300;
    let mut ids = Vec::new();
    for i in 0..n {
        let v: Value = app.post_form(&[("email", &format!("dead{i}@dead{i}-co.com"))]).await.json().await.unwrap();
        ids.push(v["lead_id"].as_str().unwrap().to_owned());
    }
    app.settle().await;
    let mut anas = Vec::new();
    for id in &ids {
        let l = app.lead(id).await;
        if l["owner"] == "ana" {
            anas.push(l);
        }
    }
    assert!(anas.len() >= n / 3, "ana has her share: {}", anas.len());
    // Before the circuit opened: 5 failures, plus what was already in flight to it.
    let before = to_ana().len();
    assert!(before <= 5 + 16, "{before} requests reached the dead target for {} leads", anas.len());
    let attempts: u64 = anas
        .iter()
        .map(|l| {
            l["deliveries"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|d| d["recipient"] == "ana")
                .map(|d| d["attempts"].as_u64().unwrap())
                .sum::<u64>()
        })
        .sum();
    assert_eq!(attempts as usize, before, "every request is one recorded attempt");
    let parked = anas
        .iter()
        .filter(|l| {
            l["deliveries"].as_array().unwrap().iter().any(|d| d["recipient"] == "ana" && d["state"] == "parked")
        })
        .count();
    assert_eq!(parked, anas.len(), "every notification to ana waits, parked");
    for l in &anas {
        assert_eq!(l["status"], "assigned", "not notified while its rep's target is down");
    }
    let told: Vec<_> = hooks.requests().into_iter().filter(|r| r.body["kind"] == "target_down").collect();
    assert_eq!(told.len(), 1, "the manager is told once per outage");
    assert_eq!(told[0].hook, "manager");
    assert!(told[0].body["why"].as_str().unwrap().contains("parked"));
    let url_leak = told[0].body.to_string().contains(&hooks.hook("ana"));
    assert!(!url_leak, "a target's URL (it may carry a token) is not told");

    // Down: one probe per 30 s, nothing in between.
    for minute_half in 1..=4 {
        app.sweep().await;
        app.settle().await;
        assert_eq!(to_ana().len(), before + minute_half - 1, "no probe before its time");
        clock.advance(chrono::Duration::seconds(31));
        assert_eq!(app.sweep().await.probes, 1);
        app.settle().await;
        assert_eq!(to_ana().len(), before + minute_half, "one probe per 30 s");
    }

    // It answers again: the probe goes through and every parked notification follows.
    hooks.script("ana", &[]);
    clock.advance(chrono::Duration::seconds(31));
    app.sweep().await;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        app.settle().await;
        let mut notified = 0;
        for l in &anas {
            notified += usize::from(app.lead(l["id"].as_str().unwrap()).await["status"] == "notified");
        }
        if notified == anas.len() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{notified} of {} notified after the target came back",
            anas.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let reqs = to_ana();
    let delivered_after = &reqs[before + 4..];
    assert_eq!(delivered_after.len(), anas.len(), "each parked notification once, after the target answered");
    let l = app.lead(anas[1]["id"].as_str().unwrap()).await;
    let d = l["deliveries"].as_array().unwrap().iter().find(|d| d["recipient"] == "ana").unwrap().clone();
    assert_eq!(d["state"], "delivered", "{d}");
}
