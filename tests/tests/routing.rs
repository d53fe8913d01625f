//! Routing that sales teams trust, end to end through real HTTP on the embedded runtime:
//! availability with reasons, fall-through pools, unassigned leads and the manager, owner
//! stickiness, capacity, SLA reassignment, accept links, sales statuses, the roster API and
//! the funnel metrics.

use chrono::{TimeZone, Utc};
use leadrouter_tests::{ADMIN_TOKEN, Received, Receiver, TestApp, TestClock};
use reqwest::Method;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(20);

/// ana (New York hours, weight 2) and ben (weight 1) in `enterprise-na` with a 15-minute SLA
/// and a manager; cy alone in `everyone`, with the same manager.
fn doc(r: &Receiver, _graph: &str) -> String {
    format!(
        r#"
[server]
admin_token = "{ADMIN_TOKEN}"
webhook_secret = "{secret}"
public_url = "http://leadrouter.test"
allow_private_targets = true

[sources.web]
monthly_spend = 3044

[scoring]
grades = {{ A = 70, B = 40, C = 15 }}

[[scoring.rules]]
name = "senior title"
field = "job_title"
matches = '(?i)\b(vp|head of|director)\b'
points = 25

[[scoring.rules]]
name = "large company"
field = "company_size"
gte = 200
points = 20

[[reps]]
id = "ana"
name = "Ana Ortiz"
notify = ["webhook:{ana}"]
timezone = "America/New_York"
working_hours = "Mon-Fri 08:00-18:00"

[[reps]]
id = "ben"
name = "Ben Okafor"
notify = ["webhook:{ben}"]

[[reps]]
id = "cy"
name = "Cy Park"
notify = ["webhook:{cy}"]

[[pools]]
id = "enterprise-na"
match = {{ grade = ["A", "B"] }}
reps = [{{ id = "ana", weight = 2 }}, {{ id = "ben", weight = 1 }}]
manager = {{ name = "Maria Chen", notify = ["webhook:{mgr}"] }}
sla_minutes = 15

[[pools]]
id = "everyone"
match = {{}}
reps = [{{ id = "cy" }}]
manager = {{ name = "Maria Chen", notify = ["webhook:{mgr}"] }}
"#,
        secret = leadrouter_tests::WEBHOOK_SECRET,
        ana = r.hook("ana"),
        ben = r.hook("ben"),
        cy = r.hook("cy"),
        mgr = r.hook("manager"),
    )
}

/// Tuesday 2026-11-24 15:00 UTC: 10:00 in New York, inside ana's hours.
fn tuesday_morning() -> Arc<TestClock> {
    Arc::new(TestClock::at(Utc.with_ymd_and_hms(2026, 11, 24, 15, 0, 0).unwrap()))
}

async fn app(clock: Arc<TestClock>) -> TestApp {
    TestApp::spawn_custom(doc, clock).await
}

/// Posts an enterprise lead (grade B) and returns its id.
async fn enterprise(app: &TestApp, email: &str) -> String {
    let r = app
        .post_json(&json!({"email": email, "job_title": "VP Sales", "company_size": "500", "first_name": "Jo"}))
        .await;
    assert_eq!(r.status(), 202);
    r.json::<Value>().await.unwrap()["lead_id"].as_str().unwrap().to_owned()
}

fn to(reqs: &[Received], hook: &str, lead: &str) -> Vec<Received> {
    reqs.iter().filter(|r| r.hook == hook && r.body["lead"]["id"] == lead).cloned().collect()
}

fn kinds(reqs: &[Received], hook: &str, lead: &str) -> Vec<String> {
    to(reqs, hook, lead).iter().map(|r| r.body["kind"].as_str().unwrap_or_default().to_owned()).collect()
}

async fn put_rep(app: &TestApp, id: &str, body: Value) -> Value {
    let r = app.admin_send(Method::PUT, &format!("/v1/reps/{id}"), Some(&body)).await;
    assert_eq!(r.status(), 200, "PUT /v1/reps/{id}");
    r.json().await.unwrap()
}

fn ana(extra: Value) -> Value {
    let mut v = json!({"name": "Ana Ortiz", "notify": [], "timezone": "America/New_York", "working_hours": "Mon-Fri 08:00-18:00"});
    for (k, x) in extra.as_object().unwrap() {
        v[k] = x.clone();
    }
    v
}

fn history_text(lead: &Value) -> String {
    lead["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["reason"].as_str().unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unavailable_reps_are_skipped_with_reasons_and_leads_fall_through_then_wait_unassigned() {
    let app = app(tuesday_morning()).await;
    let hooks = app.receiver.clone();
    let ana_hook = hooks.hook("ana");
    put_rep(&app, "ana", ana(json!({"notify": [format!("webhook:{ana_hook}")], "out_of_office": ["2026-11-24"]})))
        .await;
    put_rep(
        &app,
        "ben",
        json!({"name": "Ben Okafor", "notify": [format!("webhook:{}", hooks.hook("ben"))], "active": false}),
    )
    .await;

    // Nobody in enterprise-na can take it: it falls through to everyone, and says why.
    let first = enterprise(&app, "jo@first-co.com").await;
    let l = app.wait_status(&first, &["notified"]).await;
    assert_eq!((l["pool"].as_str(), l["owner"].as_str()), (Some("everyone"), Some("cy")));
    let why = l["why"].as_str().unwrap();
    assert!(
        why.contains("passed over pool enterprise-na: ana (out of office until 2026-11-24), ben (inactive)"),
        "{why}"
    );

    // cy is deactivated: their open lead is reassigned, and with nobody left it waits; the
    // manager of its first matching pool is told.
    let r = put_rep(
        &app,
        "cy",
        json!({"name": "Cy Park", "notify": [format!("webhook:{}", hooks.hook("cy"))], "active": false}),
    )
    .await;
    assert_eq!(r["active"], false);
    let l = app.wait_status(&first, &["unassigned"]).await;
    assert_eq!(l["owner"], Value::Null);
    assert_eq!(l["previous_owner"], "cy");
    let second = enterprise(&app, "kim@second-co.com").await;
    let l2 = app.wait_status(&second, &["unassigned"]).await;
    let text = history_text(&l2);
    assert!(text.contains("nobody could take it: pool enterprise-na: ana (out of office until 2026-11-24), ben (inactive); pool everyone: cy (inactive)"), "{text}");
    let reqs = hooks
        .wait_until(WAIT, "the manager told of both", |r| {
            kinds(r, "manager", &first).contains(&"unassigned".to_owned())
                && kinds(r, "manager", &second).contains(&"unassigned".to_owned())
        })
        .await;
    let told = to(&reqs, "manager", &second);
    assert_eq!(told.len(), 1);
    assert!(told[0].body["why"].as_str().unwrap().contains("nobody could take it"));

    // The sweep finds nobody yet and changes nothing (counted once the manager's notice is
    // recorded on the lead: that is a history entry of its own).
    app.settle().await;
    let before = app.lead(&second).await["history"].as_array().unwrap().len();
    app.sweep().await;
    app.settle().await;
    assert_eq!(app.lead(&second).await["history"].as_array().unwrap().len(), before);

    // ana is back: the next sweep gives both to her, oldest first.
    put_rep(&app, "ana", ana(json!({"notify": [format!("webhook:{ana_hook}")]}))).await;
    let swept = app.sweep().await;
    assert_eq!(swept.unassigned, 2);
    let a = app.wait_status(&first, &["notified"]).await;
    let b = app.wait_status(&second, &["notified"]).await;
    assert_eq!((a["owner"].as_str(), b["owner"].as_str()), (Some("ana"), Some("ana")));
    assert!(
        a["history"].as_array().unwrap().iter().position(|h| h["to"] == "assigned" && h["owner"] == "ana").is_some()
    );
    let assigned_at = |l: &Value| l["assigned_at"].as_str().unwrap().to_owned();
    assert!(assigned_at(&a) <= assigned_at(&b), "oldest first");
    let reqs = hooks
        .wait_until(WAIT, "ana told of both", |r| {
            kinds(r, "ana", &first) == ["assigned"] && kinds(r, "ana", &second) == ["assigned"]
        })
        .await;
    // cy was told of the first lead in round 0; ana's notice is round 2, under a new id.
    let cy_id = to(&reqs, "cy", &first)[0].body["delivery_id"].clone();
    let ana_id = to(&reqs, "ana", &first)[0].body["delivery_id"].clone();
    assert_ne!(cy_id, ana_id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn working_hours_are_read_in_the_reps_time_zone() {
    // 23:30 UTC is 18:30 in New York: ana has gone home.
    let app = app(Arc::new(TestClock::at(Utc.with_ymd_and_hms(2026, 11, 24, 23, 30, 0).unwrap()))).await;
    let id = enterprise(&app, "late@evening-co.com").await;
    let l = app.wait_status(&id, &["notified"]).await;
    assert_eq!(l["owner"], "ben");
    let why = l["why"].as_str().unwrap();
    assert!(why.contains("skipped ana (outside working hours (Mon-Fri 08:00-18:00 America/New_York))"), "{why}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sla_reassigns_once_tells_everyone_and_accept_links_follow_the_owner() {
    let clock = tuesday_morning();
    let app = app(clock.clone()).await;
    let hooks = app.receiver.clone();
    let id = enterprise(&app, "sla@slow-co.com").await;
    let l = app.wait_status(&id, &["notified"]).await;
    assert_eq!(l["owner"], "ana");
    let reqs = hooks.wait_until(WAIT, "ana's assignment", |r| !to(r, "ana", &id).is_empty()).await;
    let ana_link =
        to(&reqs, "ana", &id)[0].body["accept_url"].as_str().unwrap().replace("http://leadrouter.test", &app.base);

    // Not yet due: the sweep leaves it.
    clock.advance(chrono::Duration::minutes(14));
    assert_eq!(app.sweep().await.sla_due, 0);
    clock.advance(chrono::Duration::minutes(2));
    assert_eq!(app.sweep().await.sla_due, 1);
    let reqs = hooks
        .wait_until(WAIT, "the SLA notices", |r| {
            kinds(r, "ben", &id) == ["sla_reassigned"]
                && kinds(r, "ana", &id) == ["assigned", "sla_reassigned"]
                && kinds(r, "manager", &id) == ["assigned", "sla_breached"]
        })
        .await;
    app.settle().await;
    let l = app.lead(&id).await;
    assert_eq!(l["status"], "notified");
    assert_eq!((l["owner"].as_str(), l["previous_owner"].as_str()), (Some("ben"), Some("ana")));
    assert!(l["why"].as_str().unwrap().starts_with("sla: ana did not accept within 15 minutes; pool enterprise-na"));
    let ben_notice = &to(&reqs, "ben", &id)[0].body;
    assert!(ben_notice["accept_url"].as_str().unwrap().contains("rep=ben"));
    assert_eq!(to(&reqs, "ana", &id)[1].body["accept_url"], Value::Null, "ana's link would be stale");

    // Exactly once: more sweeps send nothing new.
    app.sweep().await;
    app.settle().await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(hooks.requests().iter().filter(|r| r.body["lead"]["id"] == id.as_str()).count(), 5);

    // ana's old link: 409 naming ben, as JSON for a client and as a page for a browser.
    let r = app.client.get(&ana_link).send().await.unwrap();
    assert_eq!(r.status(), 409);
    let p: Value = r.json().await.unwrap();
    assert_eq!(p["owner"], "ben");
    assert!(p["detail"].as_str().unwrap().contains("owned by ben"));
    let r = app.client.post(&ana_link).header("accept", "text/html").send().await.unwrap();
    assert_eq!(r.status(), 409);
    assert!(r.text().await.unwrap().contains("owned by ben"));
    // A forged link is refused.
    let r = app.client.post(ana_link.replace("rep=ana", "rep=ben")).send().await.unwrap();
    assert_eq!(r.status(), 403);

    // ben's link: a page with a confirm button, then the POST accepts (twice is harmless).
    let ben_link = ben_notice["accept_url"].as_str().unwrap().replace("http://leadrouter.test", &app.base);
    let r = app.client.get(&ben_link).header("accept", "text/html").send().await.unwrap();
    assert_eq!(r.status(), 200);
    let page = r.text().await.unwrap();
    assert!(page.contains("method=\"post\"") && page.contains("VP Sales"), "{page}");
    for _ in 0..2 {
        let r = app.client.post(&ben_link).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let v: Value = r.json().await.unwrap();
        assert_eq!((v["status"].as_str(), v["owner"].as_str()), (Some("accepted"), Some("ben")));
    }
    // Accepted leads are not reassigned any more.
    clock.advance(chrono::Duration::minutes(30));
    assert_eq!(app.sweep().await.sla_due, 0);

    // The sales statuses: forwards only, by the owner only.
    let status = |body: Value| {
        let app = &app;
        let id = id.clone();
        async move { app.admin_send(Method::POST, &format!("/v1/leads/{id}/status"), Some(&body)).await }
    };
    let r = status(json!({"status": "contacted", "by": "ben", "note": "left a voicemail"})).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["status"], "contacted");
    assert!(history_text(&v).contains("contacted by ben (status): left a voicemail"));
    let r = status(json!({"status": "won", "by": "ana"})).await;
    assert_eq!(r.status(), 409);
    assert_eq!(r.json::<Value>().await.unwrap()["owner"], "ben");
    assert_eq!(status(json!({"status": "accepted", "by": "ben"})).await.status(), 409, "backwards");
    assert_eq!(status(json!({"status": "bogus", "by": "ben"})).await.status(), 422);
    assert_eq!(status(json!({"status": "won"})).await.status(), 422);
    assert_eq!(status(json!("won")).await.status(), 400);
    let r = app
        .client
        .post(app.url(&format!("/v1/leads/{id}/status")))
        .json(&json!({"status": "won", "by": "ben"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = app
        .admin_send(
            Method::POST,
            "/v1/leads/01KAZZZZZZZZZZZZZZZZZZZZZZ/status",
            Some(&json!({"status": "won", "by": "ben"})),
        )
        .await;
    assert_eq!(r.status(), 404);
    assert_eq!(status(json!({"status": "won", "by": "ben"})).await.status(), 200);
    assert_eq!(status(json!({"status": "lost", "by": "ben"})).await.status(), 409, "won is final");
    assert_eq!(app.lead(&id).await["status"], "won");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_stays_with_its_owner_and_capacity_is_respected() {
    let app = app(tuesday_morning()).await;
    let first = enterprise(&app, "jo@acme-corp.com").await;
    assert_eq!(app.wait_status(&first, &["notified"]).await["owner"], "ana");
    // ben's turn, but acme-corp.com is ana's account.
    let second = enterprise(&app, "kim@acme-corp.com").await;
    let l = app.wait_status(&second, &["notified"]).await;
    assert_eq!(l["owner"], "ana");
    assert!(l["why"].as_str().unwrap().starts_with(&format!("existing owner: ana owns acme-corp.com (lead {first})")));
    // The sticky lead took no turn: the next new account is ben's.
    let third = enterprise(&app, "lee@other-corp.com").await;
    assert_eq!(app.wait_status(&third, &["notified"]).await["owner"], "ben");
    // ana holds 2 open leads; at a capacity of 2 her next turn passes to ben.
    let ana_hook = app.receiver.hook("ana");
    let rep = put_rep(&app, "ana", ana(json!({"notify": [format!("webhook:{ana_hook}")], "max_open_leads": 2}))).await;
    assert_eq!(rep["open_leads"], 2);
    let fourth = enterprise(&app, "max@third-corp.com").await;
    let l = app.wait_status(&fourth, &["notified"]).await;
    assert_eq!(l["owner"], "ben");
    assert!(l["why"].as_str().unwrap().contains("skipped ana (at capacity (2 of 2 open leads))"), "{}", l["why"]);
    // Once ana wins one, she has room again.
    let r = app
        .admin_send(Method::POST, &format!("/v1/leads/{first}/status"), Some(&json!({"status": "won", "by": "ana"})))
        .await;
    assert_eq!(r.status(), 200);
    let fifth = enterprise(&app, "ivy@fourth-corp.com").await;
    assert_eq!(app.wait_status(&fifth, &["notified"]).await["owner"], "ana");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_roster_is_read_changed_checked_and_removed_through_the_api() {
    let app = app(tuesday_morning()).await;
    let r = app.admin_get("/v1/reps").await;
    assert_eq!(r.status(), 200);
    let list: Value = r.json().await.unwrap();
    let ids: Vec<&str> = list["items"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["ana", "ben", "cy"]);
    let ana_rec = &list["items"][0];
    assert_eq!(ana_rec["pools"], json!(["enterprise-na"]));
    assert_eq!(ana_rec["weight"], 2);
    assert_eq!(ana_rec["timezone"], "America/New_York");
    assert_eq!(ana_rec["working_hours"], "Mon-Fri 08:00-18:00");
    assert_eq!(ana_rec["open_leads"], 0);

    // A new rep joins everyone with weight 2.
    let dee = put_rep(
        &app,
        "dee",
        json!({"name": "Dee Rao", "email": "dee@example.com", "notify": ["log:"], "weight": 2, "pools": ["everyone"]}),
    )
    .await;
    assert_eq!(
        (dee["id"].as_str(), dee["pools"].clone(), dee["active"].clone()),
        (Some("dee"), json!(["everyone"]), json!(true))
    );
    let got: Value = app.admin_get("/v1/reps/dee").await.json().await.unwrap();
    assert_eq!(got["name"], "Dee Rao");

    // Every bad field is named; nothing is stored.
    let r = app.admin_send(Method::PUT, "/v1/reps/eve", Some(&json!({
        "name": "Eve", "email": "not-an-address", "notify": ["carrier-pigeon:coo"], "weight": 0,
        "timezone": "Mars/Olympus", "working_hours": "Funday 08:00-09:00", "out_of_office": ["2027-01-02/2026-12-24"],
        "pools": ["nowhere"]
    }))).await;
    assert_eq!(r.status(), 422);
    let p: Value = r.json().await.unwrap();
    let fields: Vec<&str> = p["errors"].as_array().unwrap().iter().map(|e| e["field"].as_str().unwrap()).collect();
    for f in ["email", "notify", "weight", "timezone", "working_hours", "out_of_office", "pools"] {
        assert!(fields.contains(&f), "{f} in {fields:?}");
    }
    assert_eq!(app.admin_get("/v1/reps/eve").await.status(), 404);
    let r = app.admin_send(Method::PUT, "/v1/reps/eve", Some(&json!({"name": "Eve", "shoe_size": 9}))).await;
    assert_eq!(r.status(), 400);
    let r = app.admin_send(Method::PUT, "/v1/reps/bad%20id", Some(&json!({"name": "X"}))).await;
    assert_eq!(r.status(), 422);
    let r = app.client.put(app.url("/v1/reps/eve")).json(&json!({"name": "Eve"})).send().await.unwrap();
    assert_eq!(r.status(), 401);

    // ben leaves: his open lead goes to someone else, with the reason.
    let first = enterprise(&app, "a@one-co.com").await;
    let second = enterprise(&app, "b@two-co.com").await;
    app.wait_status(&first, &["notified"]).await;
    let l = app.wait_status(&second, &["notified"]).await;
    assert_eq!(l["owner"], "ben");
    let r = app.admin_send(Method::DELETE, "/v1/reps/ben", None).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!((v["removed"].clone(), v["reassigning"].clone()), (json!(true), json!(1)));
    app.settle().await;
    let l = app.wait_status(&second, &["notified"]).await;
    assert_eq!(l["owner"], "ana");
    assert!(
        l["why"].as_str().unwrap().starts_with("owner ben was removed from the roster; pool enterprise-na"),
        "{}",
        l["why"]
    );
    assert_eq!(app.admin_get("/v1/reps/ben").await.status(), 404);
    assert_eq!(app.admin_send(Method::DELETE, "/v1/reps/ben", None).await.status(), 404);
    let list: Value = app.admin_get("/v1/reps").await.json().await.unwrap();
    let ids: Vec<&str> = list["items"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["ana", "cy", "dee"]);
    // Nothing new for ben: the next three enterprise leads all go to ana.
    for i in 0..3 {
        let id = enterprise(&app, &format!("n{i}@new{i}-co.com")).await;
        assert_eq!(app.wait_status(&id, &["notified"]).await["owner"], "ana");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_exact_on_known_data() {
    let clock = tuesday_morning();
    let app = app(clock.clone()).await;
    // Four enterprise leads (ana, ben, ana, ana by 2:1 weights), one duplicate, one honeypot,
    // one low-grade lead for cy.
    let mut ids = Vec::new();
    for (i, email) in ["m1@co-one.com", "m2@co-two.com", "m3@co-three.com", "m4@co-four.com"].iter().enumerate() {
        ids.push(enterprise(&app, email).await);
        app.wait_status(&ids[i], &["notified"]).await;
    }
    let dup = app.post_json(&json!({"email": "m1@co-one.com"})).await.json::<Value>().await.unwrap()["lead_id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.wait_status(&dup, &["duplicate"]).await;
    let spam = app
        .post_json(&json!({"email": "bot@spam.com", "website_url": "x"}))
        .await
        .json::<Value>()
        .await
        .unwrap()["lead_id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.wait_status(&spam, &["rejected"]).await;
    let small = app.post_json(&json!({"email": "tiny@small-co.com"})).await.json::<Value>().await.unwrap()["lead_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(app.wait_status(&small, &["notified"]).await["owner"], "cy");
    app.settle().await;
    // ana accepts her first after 10 minutes and wins it; ben accepts his after 20.
    let owner = |l: &Value| l["owner"].as_str().unwrap().to_owned();
    let (l0, l1) = (app.lead(&ids[0]).await, app.lead(&ids[1]).await);
    assert_eq!((owner(&l0), owner(&l1)), ("ana".into(), "ben".into()));
    let status = |id: String, s: &'static str, by: &'static str| {
        let app = &app;
        async move {
            let r = app
                .admin_send(Method::POST, &format!("/v1/leads/{id}/status"), Some(&json!({"status": s, "by": by})))
                .await;
            assert_eq!(r.status(), 200, "{s} by {by}");
        }
    };
    clock.advance(chrono::Duration::minutes(10));
    status(ids[0].clone(), "accepted", "ana").await;
    status(ids[0].clone(), "won", "ana").await;
    clock.advance(chrono::Duration::minutes(10));
    status(ids[1].clone(), "accepted", "ben").await;

    let r = app.admin_get("/v1/metrics?from=2026-11-01&to=2026-12-01").await;
    assert_eq!(r.status(), 200);
    let m: Value = r.json().await.unwrap();
    let web = &m["sources"]["web"];
    assert_eq!(web["leads"], 7);
    assert_eq!(web["duplicates"], 1);
    assert_eq!(web["rejected"], 1);
    assert_eq!(web["assigned"], 5);
    assert_eq!(web["accepted"], 2);
    assert_eq!(web["won"], 1);
    assert_eq!(web["grades"], json!({"B": 4, "D": 1}));
    assert_eq!(web["conversion_rate"], 0.2, "1 won of 5 new leads");
    // Accepted 10 and 20 minutes (and the seconds this test took) after arrival.
    let p50 = web["time_to_accept_seconds"]["p50"].as_f64().unwrap();
    let p90 = web["time_to_accept_seconds"]["p90"].as_f64().unwrap();
    assert!((600.0..620.0).contains(&p50) && (1200.0..1220.0).contains(&p90), "{p50} {p90}");
    assert_eq!(web["time_to_assign_seconds"]["count"], 5);
    // 30 days of a 3,044/month spend over 5 new leads.
    let spend = (3044.0 * 30.0 / 30.4375 * 100.0_f64).round() / 100.0;
    assert_eq!(web["spend"], spend);
    assert_eq!(web["cost_per_lead"], ((spend / 5.0) * 100.0).round() / 100.0);
    assert_eq!(m["total"]["leads"], 7);
    assert_eq!(m["reps"]["ana"]["assigned"], 3);
    assert_eq!(m["reps"]["ana"]["won"], 1);
    assert_eq!(m["reps"]["ben"]["accepted"], 1);
    let pool = m["pools"].as_array().unwrap().iter().find(|p| p["pool"] == "enterprise-na").unwrap();
    assert_eq!(pool["assigned"], 4);
    assert_eq!(
        pool["reps"][0],
        json!({"rep": "ana", "weight": 2, "expected_share": 0.6667, "assigned": 3, "share": 0.75})
    );
    assert_eq!(pool["reps"][1]["share"], 0.25);
    // An empty window, a bad window, no token.
    let m: Value = app.admin_get("/v1/metrics?from=2026-10-01&to=2026-10-02").await.json().await.unwrap();
    assert_eq!(m["total"]["leads"], 0);
    assert_eq!(app.admin_get("/v1/metrics?from=yesterday").await.status(), 422);
    assert_eq!(app.admin_get("/v1/metrics?from=2026-12-01&to=2026-11-01").await.status(), 422);
    assert_eq!(app.client.get(app.url("/v1/metrics")).send().await.unwrap().status(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lead_is_passed_on_once_after_its_sla_then_left_to_the_manager() {
    let clock = tuesday_morning();
    let app = app(clock.clone()).await;
    let id = enterprise(&app, "nobody@ignored-co.com").await;
    let first = app.wait_status(&id, &["notified"]).await;
    assert_eq!(first["owner"], "ana");
    assert_eq!(first["assignment"]["how"]["by"], "turn", "how ana got it is typed on the lead");
    clock.advance(chrono::Duration::minutes(16));
    assert_eq!(app.sweep().await.sla_due, 1);
    app.settle().await;
    let second = app.wait_status(&id, &["notified"]).await;
    assert_eq!(second["owner"], "ben");
    assert_eq!(
        (second["assignment"]["how"]["by"].as_str(), second["assignment"]["how"]["from"].as_str()),
        (Some("sla_reassignment"), Some("ana")),
        "what the next breach reads: ben got it from ana's breach"
    );
    // ben lets it pass too: it stays with ben and the manager hears of it a second time.
    clock.advance(chrono::Duration::minutes(16));
    assert_eq!(app.sweep().await.sla_due, 1);
    app.settle().await;
    let reqs = app
        .receiver
        .wait_until(WAIT, "the second breach", |r| {
            kinds(r, "manager", &id) == ["assigned", "sla_breached", "sla_breached"]
        })
        .await;
    let l = app.lead(&id).await;
    assert_eq!((l["owner"].as_str(), l["sla_due_at"].clone()), (Some("ben"), Value::Null));
    assert!(history_text(&l).contains("already reassigned once after its SLA"));
    // No more rounds: later sweeps find nothing due and nobody is told anything new.
    clock.advance(chrono::Duration::hours(2));
    assert_eq!(app.sweep().await.sla_due, 0);
    app.settle().await;
    assert_eq!(app.receiver.requests().len(), reqs.len());
}

/// `POST /v1/route/preview`: the same decision as the router, over the same state, changing
/// nothing: posting the lead right after goes where the preview said.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_preview_says_where_a_lead_goes_and_changes_nothing() {
    let clock = tuesday_morning();
    let app = app(clock.clone()).await;
    let preview = |body: Value| {
        let app = &app;
        async move {
            let r = app.admin_send(reqwest::Method::POST, "/v1/route/preview", Some(&body)).await;
            assert_eq!(r.status(), 200);
            r.json::<Value>().await.unwrap()
        }
    };
    let fields =
        |email: &str| json!({"email": email, "job_title": "VP Sales", "company_size": "500", "first_name": "Jo"});
    let mut ids = Vec::new();
    for i in 0..5 {
        let email = format!("preview{i}@preview{i}-co.com");
        let p = preview(fields(&email)).await;
        assert_eq!(preview(fields(&email)).await, p, "a preview moves no cursor");
        assert_eq!((p["grade"].as_str(), p["pool"].as_str()), (Some("B"), Some("enterprise-na")));
        assert_eq!(p["score"], 45);
        assert!(p["why"].as_str().unwrap().starts_with("pool enterprise-na (grade B); round-robin turn"), "{p}");
        let id = enterprise(&app, &email).await;
        let l = app.wait_status(&id, &["notified"]).await;
        assert_eq!(l["owner"], p["rep"], "the lead went where the preview said: {p}");
        assert_eq!(l["why"], p["why"]);
        ids.push(id);
    }
    // Outside ana's working hours (18:30 in New York), on her turn: ben, and why ana was skipped.
    let mut late = fields("late@late-co.com");
    late["at"] = json!("2026-11-24T23:30:00Z");
    let p = preview(late).await;
    assert_eq!(p["rep"], "ben", "{p}");
    let skipped = p["skipped"].as_array().unwrap();
    assert!(
        skipped.iter().any(|s| s["pool"] == "enterprise-na"
            && s["rep"] == "ana"
            && s["reason"].as_str().unwrap().contains("outside working hours")),
        "{p}"
    );
    // A person already here: a duplicate, going to no pool of its own.
    let p = preview(fields("preview0@preview0-co.com")).await;
    assert_eq!(p["duplicate_of"], ids[0].as_str());
    assert_eq!(p["grade"], "B", "the grade is said of a duplicate too: {p}");
    assert_eq!((p["pool"].clone(), p["rep"].clone()), (Value::Null, Value::Null));
    assert!(p["why"].as_str().unwrap().starts_with("duplicate: same email as lead"), "{p}");
    // A lead no pool can take says who could not.
    let p = preview(json!({"email": "x@nobody-co.com", "source": "meta", "at": "2026-11-29T12:00:00Z"})).await;
    assert_eq!(p["grade"], "D");
    assert_eq!(p["pool"], "everyone", "{p}");
    // Nothing was stored, claimed or counted.
    let leads: Value = app.admin_get("/v1/leads?limit=100").await.json().await.unwrap();
    assert_eq!(leads["items"].as_array().unwrap().len(), ids.len());
    let r = app
        .admin_send(reqwest::Method::POST, "/v1/route/preview", Some(&json!({"email": "a@b.com", "at": "soon"})))
        .await;
    assert_eq!(r.status(), 422);
    let r = app.client.post(app.url("/v1/route/preview")).json(&json!({"email": "a@b.com"})).send().await.unwrap();
    assert_eq!(r.status(), 401);
}
