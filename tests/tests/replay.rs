//! Replay is the router: a run with a capacity cap, a rep out of office, a rep outside working
//! hours, shared company domains (owner stickiness), test leads and leads closed as it goes is
//! replayed with the very document that routed it, the roster changed through `/v1/reps` on the
//! way (a rep away for a while, a weight raised), and every stored first assignment is
//! reproduced. Once on the embedded runtime (SQLite, real HTTP, its own concurrent batches)
//! and once through the AWS stage handlers on the DynamoDB and SQS emulator.

use leadrouter::ports::LeadStore;
use leadrouter::replay::{ReplayReport, replay_store};
use leadrouter_tests::{ADMIN_TOKEN, GOOGLE_KEY, Receiver, TestApp, TestClock};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

const LEADS: usize = 1_000;
const CHUNK: usize = 100;

/// ana takes at most 4 open leads; ben's working hours are one minute a day; cara is out of
/// office from yesterday to tomorrow; dan and eve are always in.
fn doc(r: &Receiver, _graph: &str) -> String {
    let day = |d: i64| (chrono::Utc::now() + chrono::Duration::days(d)).format("%Y-%m-%d").to_string();
    format!(
        r#"
[server]
admin_token = "{ADMIN_TOKEN}"
webhook_secret = "{secret}"
public_url = "http://leadrouter.test"
allow_private_targets = true

[sources.google]
key = "env:TEST_GOOGLE_KEY"

[scoring]
grades = {{ A = 70, B = 40, C = 15 }}

[[scoring.rules]]
name = "senior title"
field = "job_title"
matches = '(?i)\b(vp|director)\b'
points = 25

[[scoring.rules]]
name = "large company"
field = "company_size"
gte = 200
points = 20

[[reps]]
id = "ana"
notify = ["webhook:{hook}"]
max_open_leads = 4

[[reps]]
id = "ben"
notify = ["webhook:{hook}"]
working_hours = "Mon-Sun 03:00-03:01"

[[reps]]
id = "cara"
notify = ["webhook:{hook}"]
out_of_office = ["{yesterday}", "{today}", "{tomorrow}"]

[[reps]]
id = "dan"
notify = ["webhook:{hook}"]

[[reps]]
id = "eve"
notify = ["webhook:{hook}"]

[[pools]]
id = "enterprise"
match = {{ grade = ["A", "B"] }}
reps = [{{ id = "ana", weight = 2 }}, {{ id = "ben" }}, {{ id = "dan" }}]
sla_minutes = 30

[[pools]]
id = "everyone"
match = {{}}
reps = [{{ id = "cara" }}, {{ id = "ana" }}, {{ id = "eve", weight = 2 }}, {{ id = "dan" }}]
"#,
        secret = leadrouter_tests::WEBHOOK_SECRET,
        hook = r.hook("reps"),
        yesterday = day(-1),
        today = day(0),
        tomorrow = day(1),
    )
}

/// Lead `i`'s web form: one of 40 companies (so companies come back: stickiness), every
/// seventh from a free mail domain (never sticky), titles and sizes varied (grades A to C).
fn form(i: usize) -> String {
    let email = if i.is_multiple_of(7) { format!("p{i}%40gmail.com") } else { format!("p{i}%40co{}.example", i % 40) };
    let title = ["VP+Sales", "Director", "Analyst"][i % 3];
    let size = if i.is_multiple_of(2) { 500 } else { 20 };
    format!("email={email}&job_title={title}&company_size={size}&country=US")
}

/// The roster changes a manager makes through `/v1/reps` as the run goes on: eve is away for
/// the fourth and fifth chunks, and dan's weight in every pool is 3 from the seventh.
fn roster_change(chunk: usize, hook: &str) -> Option<(&'static str, Value)> {
    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    let tomorrow = (chrono::Utc::now() + chrono::Duration::days(1)).format("%Y-%m-%d").to_string();
    let notify = vec![format!("webhook:{hook}")];
    match chunk {
        3 => Some(("eve", json!({"name": "eve", "notify": notify, "out_of_office": [today, tomorrow]}))),
        5 => Some(("eve", json!({"name": "eve", "notify": notify, "out_of_office": []}))),
        6 => Some(("dan", json!({"name": "dan", "notify": notify, "weight": 3}))),
        _ => None,
    }
}

fn google_test_lead(i: usize) -> String {
    let sample = include_str!("../../examples/payloads/google-lead.json");
    sample
        .replace(
            "TeSter-123-ABCDEFGHIJKLMNOPQRSTUVWXYZ-abcdefghijklmnopqrstuvwxyz-0123456789-AaBbCcDdEeFfGgHhIiJjKkLl",
            &format!("replay-test-{i}"),
        )
        .replace("test@example.com", &format!("tester{i}@co{}.example", i % 40))
        .replace("your-google-lead-form-key", GOOGLE_KEY)
}

/// Every stored first assignment reproduced, and the run did exercise what replay rebuilds.
fn check(report: &ReplayReport, leads: &[leadrouter::domain::Lead], test_leads: bool) {
    let routed: Vec<_> = leads.iter().filter(|l| l.first_assignment.is_some() && !l.test).collect();
    assert!(routed.len() >= LEADS * 9 / 10, "{} of {LEADS} leads routed", routed.len());
    let why = |needle: &str| routed.iter().filter(|l| l.history.iter().any(|h| h.reason.contains(needle))).count();
    for needle in [
        "ana (at capacity",
        "ben (outside working hours",
        "cara (out of office",
        "eve (out of office",
        "existing owner: ",
        "dan:3",
    ] {
        assert!(why(needle) > 0, "the run never had a decision with {needle:?}");
    }
    if test_leads {
        assert!(leads.iter().any(|l| l.test && l.owner.is_some()), "the run had test leads");
    }
    assert!(leads.iter().any(|l| l.status.as_str() == "won"), "the run closed leads (ana's cap freed as it went)");
    let summary = format!("{}\n{}", report.render(), serde_json::to_string(report).unwrap());
    assert_eq!(report.owner_changes, 0, "replay of the live document moved owners:\n{summary}");
    assert_eq!(report.excluded.count, 0, "{summary}");
    assert_eq!(
        report.leads as usize,
        leads
            .iter()
            .filter(|l| !l.test && !l.history.is_empty())
            .filter(|l| {
                l.history.iter().any(|h| matches!(h.to.as_str(), "assigned" | "unassigned" | "disqualified"))
            })
            .count(),
        "{summary}"
    );
    for (pool, n) in &report.pools {
        assert_eq!(n.before, n.after, "pool {pool}: {summary}");
    }
}

fn is_settled(l: &leadrouter::domain::Lead) -> bool {
    !matches!(l.status.as_str(), "fetching" | "received" | "unique" | "scored") && l.reroute.is_none()
}

/// Waits until every lead has had its routing decision.
async fn settled<S: LeadStore>(store: &S, ids: &[leadrouter::domain::LeadId]) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let leads = futures::future::join_all(ids.iter().map(|id| store.get(id))).await;
        if leads.iter().all(|l| l.as_ref().unwrap().as_ref().is_some_and(is_settled)) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "leads were not routed within 30 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replaying_the_live_document_reproduces_every_first_assignment_on_sqlite() {
    let app = TestApp::spawn_custom(doc, Arc::new(TestClock::default())).await;
    let store = &app.runtime.pipeline.store;
    let mut ids = Vec::new();
    for chunk in 0..LEADS / CHUNK {
        if let Some((rep, body)) = roster_change(chunk, &app.receiver.hook("reps")) {
            let r = app.admin_send(reqwest::Method::PUT, &format!("/v1/reps/{rep}"), Some(&body)).await;
            assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
        }
        // A chunk at once, so that the assign stage decides leads in batches.
        let posts = (chunk * CHUNK..(chunk + 1) * CHUNK).map(|i| {
            app.client
                .post(app.url("/v1/leads"))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(form(i))
                .send()
        });
        for r in futures::future::join_all(posts).await {
            let r = r.expect("post a lead");
            assert_eq!(r.status(), 202);
            let v: Value = r.json().await.unwrap();
            ids.push(leadrouter::domain::LeadId::parse(v["lead_id"].as_str().unwrap()).unwrap());
        }
        let r = app.client.post(app.url("/v1/webhooks/google")).body(google_test_lead(chunk)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
        // Everything routed, then ana wins her oldest open leads and dan accepts his: her cap
        // frees as the run goes on.
        settled(store, &ids).await;
        let page: Value = app.admin_get("/v1/leads?owner=ana&status=notified&limit=3").await.json().await.unwrap();
        let dan: Value = app.admin_get("/v1/leads?owner=dan&status=notified&limit=5").await.json().await.unwrap();
        for (items, status) in [(&page["items"], "won"), (&dan["items"], "accepted")] {
            for l in items.as_array().unwrap() {
                let path = format!("/v1/leads/{}/status", l["id"].as_str().unwrap());
                let body = json!({"status": status, "by": l["owner"]});
                let r = app.admin_send(reqwest::Method::POST, &path, Some(&body)).await;
                assert_eq!(r.status(), 200, "{path}: {}", r.text().await.unwrap_or_default());
            }
        }
        // Eve is away: her manager sends her open leads back through routing. Replay decides
        // them again at the same times, eve excluded.
        if chunk == 4 {
            let r = app
                .admin_send(reqwest::Method::POST, "/v1/reps/eve/reassign", Some(&json!({"by": "Maria Chen"})))
                .await;
            let n: Value = r.json().await.unwrap();
            assert!(n["reassigned"].as_u64().unwrap() > 0, "{n}");
            settled(store, &ids).await;
        }
        // A manager moves one of dan's leads to ana, past her cap: replay makes the same move,
        // and ana's cap counts it from then on.
        let dans: Value = app.admin_get("/v1/leads?owner=dan&status=notified&limit=1").await.json().await.unwrap();
        if let Some(l) = dans["items"].as_array().unwrap().first() {
            let path = format!("/v1/leads/{}/assign", l["id"].as_str().unwrap());
            let body = json!({"rep": "ana", "by": "Maria Chen", "force": true});
            let r = app.admin_send(reqwest::Method::POST, &path, Some(&body)).await;
            assert_eq!(r.status(), 200, "{path}: {}", r.text().await.unwrap_or_default());
        }
    }
    app.settle().await;
    let leads = every_lead(store).await;
    let moved = leads.iter().filter(|l| l.history.iter().any(|h| h.by.as_deref() == Some("Maria Chen"))).count();
    assert!(moved >= 5, "the run moved {moved} leads by hand");
    let rerouted = leads.iter().filter(|l| l.history.iter().any(|h| h.reason.contains("away from eve"))).count();
    assert!(rerouted > 0, "the run sent none of eve's leads back through routing");
    let report = replay_store(store, &app.runtime.pipeline.settings, chrono::DateTime::<chrono::Utc>::MIN_UTC, |_| {})
        .await
        .unwrap();
    check(&report, &leads, true);
}

async fn every_lead<S: LeadStore>(store: &S) -> Vec<leadrouter::domain::Lead> {
    let mut out = Vec::new();
    let mut after = None;
    loop {
        let page = store.since(chrono::DateTime::<chrono::Utc>::MIN_UTC, after, 1000).await.unwrap();
        out.extend(page.items);
        match page.next_cursor {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    out
}

/// An API Gateway v2 event, as the ingest and admin functions receive it.
fn apigw(method: &str, path: &str, content_type: &str, body: &str) -> axum::http::Request<axum::body::Body> {
    let event = json!({
        "version": "2.0", "routeKey": format!("{method} {path}"), "rawPath": path, "rawQueryString": "",
        "headers": {"content-type": content_type, "host": "api.example.com",
            "authorization": format!("Bearer {ADMIN_TOKEN}")},
        "requestContext": {"accountId": "123456789012", "apiId": "api", "domainName": "api.example.com",
            "domainPrefix": "api", "http": {"method": method, "path": path, "protocol": "HTTP/1.1",
            "sourceIp": "192.0.2.1", "userAgent": "curl"}, "requestId": "r", "routeKey": format!("{method} {path}"),
            "stage": "$default", "time": "24/Nov/2026:12:00:00 +0000", "timeEpoch": 1795000000000u64},
        "body": body, "isBase64Encoded": false
    });
    let request = lambda_http::request::from_str(&event.to_string()).expect("an API Gateway v2 event");
    request.map(|b| axum::body::Body::from(b.as_ref().to_vec()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replaying_the_live_document_reproduces_every_first_assignment_on_dynamodb() {
    use leadrouter_tests::aws::{Delivery, aws_pipeline, drain_queues};
    use tower::ServiceExt;
    let receiver = Receiver::start().await;
    let (pipeline, sqs, urls) = aws_pipeline(&doc(&receiver, "")).await;
    let pipeline = Arc::new(pipeline);
    let call = async |method: &str, path: &str, content_type: &str, body: &str| {
        let response =
            leadrouter::http::router(pipeline.clone()).oneshot(apigw(method, path, content_type, body)).await.unwrap();
        let status = response.status().as_u16();
        let body = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
        (status, serde_json::from_slice::<Value>(&body).unwrap_or_default())
    };
    for chunk in 0..LEADS / CHUNK {
        if let Some((rep, body)) = roster_change(chunk, &receiver.hook("reps")) {
            let (status, answer) = call("PUT", &format!("/v1/reps/{rep}"), "application/json", &body.to_string()).await;
            assert_eq!(status, 200, "{answer}");
        }
        for i in chunk * CHUNK..(chunk + 1) * CHUNK {
            let (status, _) = call("POST", "/v1/leads", "application/x-www-form-urlencoded", &form(i)).await;
            assert_eq!(status, 202);
        }
        // Lambda's event source mapping: batches of ten, shuffled, each stage in turn.
        drain_queues(&pipeline, &sqs, &urls, Delivery { twice: false, shuffle: true }).await;
        for (owner, status) in [("ana", "won"), ("dan", "accepted")] {
            let (_, page) = call("GET", &format!("/v1/leads?owner={owner}&status=notified&limit=3"), "", "").await;
            for l in page["items"].as_array().unwrap() {
                let path = format!("/v1/leads/{}/status", l["id"].as_str().unwrap());
                let body = json!({"status": status, "by": owner}).to_string();
                let (code, answer) = call("POST", &path, "application/json", &body).await;
                assert_eq!(code, 200, "{path}: {answer}");
            }
        }
    }
    drain_queues(&pipeline, &sqs, &urls, Delivery { twice: false, shuffle: true }).await;
    let leads = every_lead(&pipeline.store).await;
    let report = replay_store(&pipeline.store, &pipeline.settings, chrono::DateTime::<chrono::Utc>::MIN_UTC, |_| {})
        .await
        .unwrap();
    check(&report, &leads, false);
}

/// `POST /v1/routing/replay`: the live document changes no owner, a changed one says what it
/// would change, a broken one is refused with its lines, and nothing is changed by any.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_replay_route_reports_on_a_pasted_document_and_changes_nothing() {
    let app = TestApp::spawn_custom(doc, Arc::new(TestClock::default())).await;
    for i in 0..30 {
        let r = app
            .client
            .post(app.url("/v1/leads"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form(i))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
    }
    app.settle().await;
    let before = every_lead(&app.runtime.pipeline.store).await;
    let replay = async |body: String, query: &str| {
        let r = app
            .client
            .post(app.url(&format!("/v1/routing/replay{query}")))
            .bearer_auth(ADMIN_TOKEN)
            .header("content-type", "application/toml")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json::<Value>().await.unwrap_or_default())
    };
    let live = doc(&app.receiver, "");
    let (status, report) = replay(live.clone(), "").await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["leads"], 30, "{report}");
    assert_eq!(report["owner_changes"], 0, "{report}");
    assert_eq!(report["excluded"]["count"], 0);
    assert!(report["pools"]["everyone"]["before"].as_u64().unwrap() > 0, "{report}");
    // Without eve, everything she had goes elsewhere.
    let without_eve =
        live.replace(r#", {{ id = "eve", weight = 2 }}"#.replace("{{", "{").replace("}}", "}").as_str(), "");
    assert_ne!(without_eve, live);
    let eve = before.iter().filter(|l| l.owner.as_deref() == Some("eve")).count() as u64;
    assert!(eve > 0);
    let (status, report) = replay(without_eve, "?since=2000-01-01").await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["reps"]["eve"]["after"], 0, "{report}");
    assert_eq!(report["reps"]["eve"]["before"], eve, "{report}");
    assert!(report["owner_changes"].as_u64().unwrap() >= eve, "{report}");
    // A broken document: 422 with the line; a bad since: 422; no token: 401.
    let (status, problem) = replay(live.replace("max_open_leads = 4", "max_open_leads = \"four\""), "").await;
    assert_eq!(status, 422, "{problem}");
    assert!(problem["errors"][0]["field"].as_str().unwrap().starts_with("line "), "{problem}");
    assert_eq!(replay(live.clone(), "?since=yesterday").await.0, 422);
    let r = app.client.post(app.url("/v1/routing/replay")).body(live).send().await.unwrap();
    assert_eq!(r.status(), 401);
    // Nothing changed.
    let after = every_lead(&app.runtime.pipeline.store).await;
    assert_eq!(before, after);
}
