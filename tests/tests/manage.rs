//! A manager's moves over real HTTP: `POST /v1/leads/{id}/assign` on the embedded runtime, with
//! notifications to a real receiver.

use leadrouter_tests::{Received, TestApp};
use reqwest::Method;
use serde_json::{Value, json};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(20);

/// A lead routed and notified: its id and its owner.
async fn routed(app: &TestApp, email: &str) -> (String, String) {
    let r = app.post_form(&[("email", email), ("name", "Jo Park"), ("country", "FR")]).await;
    assert_eq!(r.status(), 202);
    let id = r.json::<Value>().await.unwrap()["lead_id"].as_str().unwrap().to_owned();
    let lead = app.wait_status(&id, &["notified"]).await;
    (id, lead["owner"].as_str().unwrap().to_owned())
}

/// The lead once its reassignment is decided and its new owner told.
async fn moved_on(app: &TestApp, id: &str) -> Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let lead = app.lead(id).await;
        if lead.get("reroute").is_none() && lead["status"] == "notified" {
            return lead;
        }
        assert!(tokio::time::Instant::now() < deadline, "not rerouted in {WAIT:?}: {lead}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn other(rep: &str) -> &'static str {
    if rep == "ana" { "ben" } else { "ana" }
}

async fn assign(app: &TestApp, id: &str, body: Value) -> reqwest::Response {
    app.admin_send(Method::POST, &format!("/v1/leads/{id}/assign"), Some(&body)).await
}

fn told<'a>(log: &'a [Received], id: &str, hook: &str, kind: &str) -> Vec<&'a Received> {
    log.iter().filter(|r| r.hook == hook && r.body["kind"] == kind && r.body["lead"]["id"] == id).collect()
}

#[tokio::test]
async fn a_manager_moves_a_lead_and_both_reps_are_told_once() {
    let app = TestApp::spawn().await;
    let (id, first) = routed(&app, "jo@example.org").await;
    let to = other(&first);
    let r = assign(&app, &id, json!({"rep": to, "by": "Maria Chen", "note": "knows them"})).await;
    assert_eq!(r.status(), 200);
    let lead: Value = r.json().await.unwrap();
    assert_eq!(lead["owner"], to);
    assert_eq!(lead["assignment"]["how"], json!({"by": "manual", "manager": "Maria Chen"}));
    let h = lead["history"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(h["by"], "Maria Chen");
    assert_eq!(h["reason"], format!("moved by Maria Chen from {first} to {to}: knows them"));
    app.wait_status(&id, &["notified"]).await;
    let log = app
        .receiver
        .wait_until(WAIT, "assigned to the new owner and reassigned to the old", |log| {
            !told(log, &id, to, "assigned").is_empty() && !told(log, &id, &first, "reassigned").is_empty()
        })
        .await;
    let new = told(&log, &id, to, "assigned");
    let old = told(&log, &id, &first, "reassigned");
    let first_assigned = told(&log, &id, &first, "assigned");
    assert_eq!((new.len(), old.len(), first_assigned.len()), (1, 1, 1), "each told once");
    let ids = [&new[0].body["delivery_id"], &old[0].body["delivery_id"], &first_assigned[0].body["delivery_id"]];
    assert!(ids[0] != ids[1] && ids[0] != ids[2] && ids[1] != ids[2], "each under its own delivery id: {ids:?}");
    assert!(new[0].body["accept_url"].is_string(), "the new owner can accept it");
    assert!(old[0].body["accept_url"].is_null(), "the old owner cannot");

    // Moving it to the rep who has it changes nothing and tells nobody again.
    let again = assign(&app, &id, json!({"rep": to, "by": "Maria Chen"})).await;
    assert_eq!(again.status(), 200);
    assert_eq!(
        again.json::<Value>().await.unwrap()["history"].as_array().unwrap().len(),
        lead["history"].as_array().unwrap().len() + 1
    );
    app.settle().await;
    assert_eq!(told(&app.receiver.requests(), &id, to, "assigned").len(), 1);
}

#[tokio::test]
async fn a_move_that_cannot_be_made_is_refused_and_changes_nothing() {
    let app = TestApp::spawn().await;
    let (id, first) = routed(&app, "kim@example.org").await;
    let to = other(&first);
    let before = app.lead(&id).await;

    let missing = assign(&app, &id, json!({"rep": to})).await;
    assert_eq!(missing.status(), 422);
    let p: Value = missing.json().await.unwrap();
    assert_eq!(p["errors"][0]["field"], "by");
    assert_eq!(assign(&app, &id, json!({"rep": "nobody", "by": "m"})).await.status(), 422);
    assert_eq!(assign(&app, "01JZZZZZZZZZZZZZZZZZZZZZZZ", json!({"rep": to, "by": "m"})).await.status(), 404);
    assert_eq!(app.admin_send(Method::POST, &format!("/v1/leads/{id}/assign"), None).await.status(), 400);
    let r = app
        .client
        .post(app.url(&format!("/v1/leads/{id}/assign")))
        .json(&json!({"rep": to, "by": "m"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    // Away: refused with why, unless forced.
    let away = json!({"name": "Away Rep", "notify": [format!("webhook:{}", app.receiver.hook(to))], "out_of_office": ["2020-01-01/2099-12-31"]});
    assert_eq!(app.admin_send(Method::PUT, &format!("/v1/reps/{to}"), Some(&away)).await.status(), 200);
    let r = assign(&app, &id, json!({"rep": to, "by": "m"})).await;
    assert_eq!(r.status(), 409);
    let p: Value = r.json().await.unwrap();
    assert!(p["detail"].as_str().unwrap().contains("out of office"), "{p}");
    assert_eq!(p["owner"], first.as_str());
    assert_eq!(app.lead(&id).await["history"], before["history"], "a refused move writes nothing");
    let r = assign(&app, &id, json!({"rep": to, "by": "m", "force": true})).await;
    assert_eq!(r.status(), 200);
    let lead: Value = r.json().await.unwrap();
    assert!(lead["why"].as_str().unwrap().contains("(forced:"), "{}", lead["why"]);

    // Won is final.
    app.wait_status(&id, &["notified"]).await;
    let won = json!({"status": "won", "by": to});
    assert_eq!(app.admin_send(Method::POST, &format!("/v1/leads/{id}/status"), Some(&won)).await.status(), 200);
    let r = assign(&app, &id, json!({"rep": first, "by": "m"})).await;
    assert_eq!(r.status(), 409);
    assert_eq!(app.lead(&id).await["owner"], to);
}

#[tokio::test]
async fn a_reps_open_leads_go_back_through_routing_without_them() {
    let app = TestApp::spawn().await;
    let mut ana = Vec::new();
    for i in 0..6 {
        let (id, owner) = routed(&app, &format!("p{i}@example.org")).await;
        if owner == "ana" {
            ana.push(id);
        }
    }
    assert!(ana.len() >= 2, "the rotation gave ana {} leads", ana.len());
    let body = json!({"by": "Maria Chen", "note": "ana is at a conference"});
    let r = app.admin_send(Method::POST, "/v1/reps/ana/reassign", Some(&body)).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"reassigned": ana.len()}));
    for id in &ana {
        let lead = moved_on(&app, id).await;
        assert_eq!(lead["owner"], "ben", "{lead}");
        assert_eq!(lead["previous_owner"], "ana");
        assert!(
            lead["why"].as_str().unwrap().starts_with("reassigned by Maria Chen away from ana; pool everyone"),
            "{}",
            lead["why"]
        );
        assert_eq!(lead["assignment"]["how"]["by"], "rerouted");
    }
    let log = app
        .receiver
        .wait_until(WAIT, "ana told of each lead that left her", |log| {
            ana.iter()
                .all(|id| told(log, id, "ana", "reassigned").len() == 1 && told(log, id, "ben", "assigned").len() == 1)
        })
        .await;
    assert!(ana.iter().all(|id| told(&log, id, "ana", "assigned").len() == 1));
    let again = app.admin_send(Method::POST, "/v1/reps/ana/reassign", Some(&json!({"by": "Maria Chen"}))).await;
    assert_eq!(again.json::<Value>().await.unwrap(), json!({"reassigned": 0}));
    assert_eq!(app.admin_send(Method::POST, "/v1/reps/zed/reassign", Some(&json!({"by": "m"}))).await.status(), 404);
    assert_eq!(app.admin_send(Method::POST, "/v1/reps/ana/reassign", Some(&json!({}))).await.status(), 422);
}

/// The console's SLA page finds a lead whose SLA clock runs however many newer leads sit
/// unaccepted without one (it reads the store's index of waiting leads, not the newest leads of
/// each status).
#[tokio::test]
async fn the_sla_page_shows_a_waiting_lead_behind_thousands_of_newer_ones() {
    use leadrouter::domain::{Contact, Lead, LeadId, LeadStatus, NotificationKind};
    use leadrouter::ports::LeadStore;

    let app = TestApp::spawn_custom(
        |r, g| {
            leadrouter_tests::routing_doc_with_graph(r, 64 * 1024, g)
                .replace("[[pools]]\n", "[[pools]]\nsla_minutes = 15\n")
        },
        std::sync::Arc::new(leadrouter_tests::TestClock::default()),
    )
    .await;
    let (id, _) = routed(&app, "waiting@initech-example.com").await;
    let lead = app.lead(&id).await;
    assert!(lead["sla_due_at"].is_string(), "every pool has an SLA: {lead}");

    // 2,001 newer leads notified to ana and left without an SLA clock (as in a pool without one).
    let store = &app.runtime.pipeline.store;
    let now = chrono::Utc::now();
    let fillers = (0..2_001).map(|i| {
        let mut l = Lead::new(LeadId::new(), "web".into(), Contact::default(), now);
        l.give_to("other", "ana".into(), format!("filler {i}"), NotificationKind::Assigned, now);
        l.notify_pending = None;
        l.transition(LeadStatus::Notified, "told", now);
        store.insert(l)
    });
    for r in futures::future::join_all(fillers).await {
        r.expect("insert");
    }

    let page = console_page(&app, "/console/sla").await;
    assert!(page.contains(&id), "the waiting lead is on the SLA page");
    assert!(page.contains("class=\"countdown\""), "with its countdown");
}

/// A console page's HTML, logged in as Maria Chen.
async fn console_page(app: &TestApp, path: &str) -> String {
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let login = client
        .post(app.url("/login"))
        .form(&[("name", "Maria Chen"), ("token", leadrouter_tests::ADMIN_TOKEN)])
        .send()
        .await
        .unwrap();
    let cookie = login.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
    let page = client.get(app.url(path)).header("cookie", cookie).send().await.unwrap();
    assert_eq!(page.status(), 200, "{path}");
    page.text().await.unwrap()
}

/// The console's Live page shows the newest 50 leads and links to the older ones, keeping its
/// filters; the last page has no such link.
#[tokio::test]
async fn the_live_page_pages_to_older_leads_with_its_filters() {
    use leadrouter::domain::{Contact, Lead, LeadId};
    use leadrouter::ports::LeadStore;

    let app = TestApp::spawn().await;
    let store = &app.runtime.pipeline.store;
    let mut ids = Vec::new();
    for i in 0..60 {
        let contact = Contact { company: Some(format!("Pager {i}")), ..Contact::default() };
        let l = Lead::new(LeadId::new(), "web".into(), contact, chrono::Utc::now());
        ids.push(l.id.to_string());
        store.insert(l).await.unwrap();
    }
    let first = console_page(&app, "/console/live?q=pager").await;
    assert!(first.contains(&ids[59]) && first.contains(&ids[10]), "the newest 50");
    assert!(!first.contains(&ids[9]), "not the older ones");
    let older = first.split("<p class=\"older\">").nth(1).expect("a link to older leads");
    let href =
        older.split("href=\"").nth(1).unwrap().split('"').next().unwrap().replace("&#38;", "&").replace("&amp;", "&");
    assert!(href.contains("q=pager") && href.contains("cursor="), "{href}");
    let second = console_page(&app, &href).await;
    let missing: Vec<usize> = (0..10).filter(|&i| !second.contains(&ids[i])).collect();
    assert!(missing.is_empty(), "the 10 older ones; missing {missing:?} from {href}");
    assert!(!second.contains(&ids[10]), "and no newer");
    assert!(!second.contains("class=\"older\""), "the last page links no further");
}
