//! The `leadrouter` binary killed mid-flight, and stopped gracefully: no lead that got a 202 is
//! lost, none is assigned twice, and each notification keeps one delivery id.

use leadrouter_tests::{ADMIN_TOKEN, Receiver, Served, routing_doc, serve_binary};
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

fn start(config: &Path, db: &Path) -> Served {
    serve_binary(Path::new(env!("CARGO_BIN_EXE_leadrouter")), config, db)
}

fn lead_form(i: usize) -> Vec<(String, String)> {
    vec![
        ("email".into(), format!("crash{i}@company{i}.com")),
        ("job_title".into(), "Director of Ops".into()),
        ("company_size".into(), "1000".into()),
        ("country".into(), "US".into()),
    ]
}

async fn all_leads(client: &reqwest::Client, base: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let url = match &cursor {
            Some(c) => format!("{base}/v1/leads?limit=500&cursor={c}"),
            None => format!("{base}/v1/leads?limit=500"),
        };
        let page: Value = client.get(url).bearer_auth(ADMIN_TOKEN).send().await.unwrap().json().await.unwrap();
        out.extend(page["items"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return out,
        }
    }
}

async fn wait_all_notified(client: &reqwest::Client, base: &str, at_least: usize) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let leads = all_leads(client, base).await;
        if leads.len() >= at_least && leads.iter().all(|l| l["status"] == "notified") {
            return leads;
        }
        let pending = leads.iter().filter(|l| l["status"] != "notified").count();
        assert!(tokio::time::Instant::now() < deadline, "{pending} of {} leads never got notified", leads.len());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Checks every stored lead: assigned exactly once, turns contiguous (none skipped, none
/// shared), and at the receiver one delivery id per (lead, recipient, kind), the rep's going
/// to the owner.
fn check_exactly_once(leads: &[Value], receiver: &Receiver) {
    let mut turns = HashSet::new();
    for l in leads {
        let assigned = l["history"].as_array().unwrap().iter().filter(|h| h["to"] == "assigned").count();
        assert_eq!(assigned, 1, "lead {} assigned {assigned} times", l["id"]);
        let turn: u64 =
            l["why"].as_str().unwrap().split("turn ").nth(1).unwrap().split(' ').next().unwrap().parse().unwrap();
        assert!(turns.insert(turn), "turn {turn} given twice");
    }
    assert_eq!(turns, (1..=leads.len() as u64).collect::<HashSet<_>>(), "no turn skipped");
    let owners: HashMap<&str, &str> =
        leads.iter().map(|l| (l["id"].as_str().unwrap(), l["owner"].as_str().unwrap())).collect();
    let mut ids: HashMap<(String, String, String), HashSet<String>> = HashMap::new();
    for r in receiver.requests() {
        let lead = r.body["lead"]["id"].as_str().unwrap().to_owned();
        if r.hook != "manager" {
            assert_eq!(
                owners.get(lead.as_str()).copied(),
                Some(r.hook.as_str()),
                "a rep was told of a lead they do not own"
            );
        }
        ids.entry((lead, r.hook.clone(), r.body["kind"].as_str().unwrap().to_owned()))
            .or_default()
            .insert(r.body["delivery_id"].as_str().unwrap().to_owned());
    }
    for l in leads {
        let id = l["id"].as_str().unwrap();
        for who in [owners[id], "manager"] {
            let set = ids.get(&(id.to_owned(), who.to_owned(), "assigned".to_owned()));
            assert_eq!(set.map(HashSet::len), Some(1), "lead {id} to {who}: one delivery id, at least once");
        }
    }
}

/// After the restart: every lead that got a 202 is stored and notified, each assigned once
/// with one delivery id per (lead, recipient, kind); how many leads are stored.
async fn every_202_routed_once(
    client: &reqwest::Client,
    base: &str,
    accepted: &[String],
    receiver: &Receiver,
) -> usize {
    let leads = wait_all_notified(client, base, accepted.len()).await;
    let stored: HashSet<&str> = leads.iter().map(|l| l["id"].as_str().unwrap()).collect();
    for id in accepted {
        assert!(stored.contains(id.as_str()), "lead {id} got a 202 and was lost");
    }
    // Deliveries may still be landing at the receiver just after the last status change.
    receiver
        .wait_until(Duration::from_secs(60), "a manager notification for every lead", |r| {
            r.iter().filter(|x| x.hook == "manager").map(|x| x.body["lead"]["id"].clone()).collect::<HashSet<_>>().len()
                >= leads.len()
        })
        .await;
    check_exactly_once(&leads, receiver);
    leads.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_with_a_thousand_leads_in_flight_loses_none() {
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("leadrouter.toml");
    std::fs::write(&config, routing_doc(&receiver, 65536)).unwrap();
    let db = dir.path().join("crash.db");
    let mut server = start(&config, &db);
    let client = reqwest::Client::new();
    let accepted = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let count = Arc::new(AtomicUsize::new(0));
    let base = server.base.clone();
    let sender = {
        let (client, accepted, count) = (client.clone(), accepted.clone(), count.clone());
        tokio::spawn(async move {
            use futures::StreamExt;
            futures::stream::iter(0..1000)
                .for_each_concurrent(64, |i| {
                    let (client, accepted, count, base) =
                        (client.clone(), accepted.clone(), count.clone(), base.clone());
                    async move {
                        let Ok(r) = client.post(format!("{base}/v1/leads")).form(&lead_form(i)).send().await else {
                            return;
                        };
                        if r.status() == 202 {
                            let v: Value = r.json().await.unwrap_or(Value::Null);
                            if let Some(id) = v["lead_id"].as_str() {
                                accepted.lock().unwrap().push(id.to_owned());
                                count.fetch_add(1, Ordering::SeqCst);
                            }
                        }
                    }
                })
                .await;
        })
    };
    while count.load(Ordering::SeqCst) < 300 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    server.child.kill().expect("SIGKILL");
    server.child.wait().unwrap();
    sender.await.unwrap();
    let accepted: Vec<String> = accepted.lock().unwrap().clone();
    assert!(accepted.len() >= 300 && accepted.len() < 1000, "the kill landed mid-flight: {} accepted", accepted.len());

    let restarted = start(&config, &db);
    eprintln!(
        "{} leads accepted before SIGKILL; {} resumed mid-pipeline on restart",
        accepted.len(),
        restarted.resumed
    );
    every_202_routed_once(&client, &restarted.base, &accepted, &receiver).await;
    let mut restarted = restarted;
    restarted.child.kill().ok();
}

/// Twenty SIGKILLs under load, the receiver failing one delivery in ten: every lead that got a
/// 202 is assigned once, turns are neither skipped nor shared, and each (lead, recipient, kind)
/// keeps one delivery id across the retries and restarts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_sigkills_under_load_with_a_failing_receiver_lose_nothing() {
    let receiver = Receiver::start().await;
    receiver.fail_every(10);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("leadrouter.toml");
    std::fs::write(&config, routing_doc(&receiver, 65536)).unwrap();
    let db = dir.path().join("kills.db");
    let client = reqwest::Client::new();
    let accepted = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let mut next = 0usize;
    for round in 0..20 {
        let mut server = start(&config, &db);
        let count = Arc::new(AtomicUsize::new(0));
        let base = server.base.clone();
        let from = next;
        next += 120;
        let sender = {
            let (client, accepted, count) = (client.clone(), accepted.clone(), count.clone());
            tokio::spawn(async move {
                use futures::StreamExt;
                futures::stream::iter(from..from + 120)
                    .for_each_concurrent(32, |i| {
                        let (client, accepted, count, base) =
                            (client.clone(), accepted.clone(), count.clone(), base.clone());
                        async move {
                            let Ok(r) = client.post(format!("{base}/v1/leads")).form(&lead_form(i)).send().await else {
                                return;
                            };
                            if r.status() == 202
                                && let Some(id) =
                                    r.json::<Value>().await.ok().and_then(|v| v["lead_id"].as_str().map(str::to_owned))
                            {
                                accepted.lock().unwrap().push(id);
                                count.fetch_add(1, Ordering::SeqCst);
                            }
                        }
                    })
                    .await;
            })
        };
        // Kill at a different depth each round.
        let at = 10 + (round * 7) % 60;
        while count.load(Ordering::SeqCst) < at && !sender.is_finished() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        server.child.kill().expect("SIGKILL");
        server.child.wait().unwrap();
        sender.await.unwrap();
    }
    let accepted: Vec<String> = accepted.lock().unwrap().clone();
    assert!(accepted.len() >= 200, "{} accepted over 20 runs", accepted.len());
    let mut last = start(&config, &db);
    let stored = every_202_routed_once(&client, &last.base, &accepted, &receiver).await;
    eprintln!("20 SIGKILLs: {} leads accepted, {stored} stored, every one assigned once", accepted.len());
    last.child.kill().ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_and_exits_zero() {
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("leadrouter.toml");
    std::fs::write(&config, routing_doc(&receiver, 65536)).unwrap();
    let db = dir.path().join("term.db");
    let mut server = start(&config, &db);
    let client = reqwest::Client::new();
    for i in 0..50 {
        let r = client.post(format!("{}/v1/leads", server.base)).form(&lead_form(i)).send().await.unwrap();
        assert_eq!(r.status(), 202);
    }
    let pid = server.child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let status = server.child.wait().unwrap();
    assert!(status.success(), "SIGTERM ends with exit 0, got {status:?}");
    let mut restarted = start(&config, &db);
    let leads = wait_all_notified(&client, &restarted.base, 50).await;
    assert_eq!(leads.len(), 50);
    check_exactly_once(&leads, &receiver);
    restarted.child.kill().ok();
}
