//! Personal data with a lifecycle, through the real HTTP routes and the runtime: erasure on
//! request (`POST /v1/erasures`) and retention (`[retention]`) on a clock the test moves.

use leadrouter_tests::{TestApp, TestClock, routing_doc_with_graph};
use reqwest::Method;
use serde_json::{Value, json};
use std::sync::Arc;

fn lead_id(v: &Value) -> String {
    v["lead_id"].as_str().expect("lead_id").to_owned()
}

fn history(l: &Value) -> Vec<String> {
    l["history"].as_array().unwrap().iter().map(|h| h["reason"].as_str().unwrap().to_owned()).collect()
}

async fn erase(app: &TestApp, body: Value) -> (u16, Value) {
    let r = app.admin_send(Method::POST, "/v1/erasures", Some(&body)).await;
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_erasure_request_reaches_every_lead_of_the_person_and_only_theirs() {
    let app = TestApp::spawn().await;
    let jane =
        [("email", "Jane.Doe@acme.com"), ("name", "Jane Doe"), ("phone", "(415) 555-0132"), ("message", "call me")];
    let first = lead_id(&app.post_form(&jane).await.json().await.unwrap());
    app.wait_status(&first, &["notified"]).await;
    // The same person again, by phone only, with a new email: a duplicate of the first.
    let second = lead_id(
        &app.post_form(&[("email", "jd@home-mail.com"), ("phone", "+1 415 555 0132")]).await.json().await.unwrap(),
    );
    let other = lead_id(&app.post_form(&[("email", "sam@globex.com"), ("name", "Sam")]).await.json().await.unwrap());
    app.settle().await;
    assert_eq!(app.lead(&second).await["status"], "duplicate");

    // Bad requests change nothing.
    assert_eq!(erase(&app, json!({})).await.0, 422);
    assert_eq!(erase(&app, json!({"email": "not an address"})).await.0, 422);
    assert_eq!(erase(&app, json!({"phone": "abc"})).await.0, 422);
    assert_eq!(erase(&app, json!({"lead_id": "nope"})).await.0, 422);
    assert_eq!(erase(&app, json!({"name": "Jane"})).await.0, 400);
    assert_eq!(app.lead(&first).await["email"], "Jane.Doe@acme.com");

    // By the second lead's email: it leads to the first through the shared phone.
    let (status, body) = erase(&app, json!({"email": "JD@home-mail.com"})).await;
    assert_eq!(status, 200, "{body}");
    let mut erased: Vec<String> =
        body["erased"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_owned()).collect();
    erased.sort();
    let mut both = vec![first.clone(), second.clone()];
    both.sort();
    assert_eq!(erased, both);
    assert_eq!(body["pending"], json!([]));
    for id in [&first, &second] {
        let l = app.lead(id).await;
        for field in ["email", "phone", "name", "message"] {
            assert!(l[field].is_null(), "{field} of {id} is kept: {l}");
        }
        assert_eq!(l["source"], "web", "the routing facts stay");
        assert!(history(&l).iter().any(|h| h == "personal data erased (request)"), "{:?}", history(&l));
    }
    let kept = app.lead(&first).await;
    assert!(kept["owner"].is_string() && kept["pool"].is_string());
    assert_eq!(kept["status"], "notified");
    assert!(!kept["deliveries"].as_array().unwrap().is_empty(), "delivery records stay");
    assert_eq!(app.lead(&other).await["name"], "Sam", "another person is untouched");

    // Again, or nobody: 200 and empty lists.
    for body in
        [json!({"email": "jd@home-mail.com"}), json!({"phone": "+14155550132"}), json!({"email": "nobody@x.com"})]
    {
        let (status, r) = erase(&app, body).await;
        assert_eq!((status, r), (200, json!({"erased": [], "pending": []})));
    }
    // The person's keys are forgotten: they come back as a new lead.
    let back = lead_id(&app.post_form(&jane).await.json().await.unwrap());
    let l = app.wait_status(&back, &["notified", "duplicate"]).await;
    assert_eq!(l["status"], "notified", "a later lead from an erased person is new");

    // By lead id.
    let (status, r) = erase(&app, json!({"lead_id": other})).await;
    assert_eq!((status, r["erased"].clone()), (200, json!([other])));
    assert!(app.lead(&other).await["name"].is_null());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_erases_idle_leads_then_deletes_them() {
    let clock = Arc::new(TestClock::default());
    let app = TestApp::spawn_custom(
        |r, g| {
            routing_doc_with_graph(r, 64 * 1024, g)
                .replace("[dedup]\n", "[retention]\npersonal_data_days = 30\ndelete_after_days = 60\n\n[dedup]\n")
        },
        clock.clone(),
    )
    .await;
    let old = lead_id(&app.post_form(&[("email", "old@idle-co.com"), ("name", "Olga")]).await.json().await.unwrap());
    app.wait_status(&old, &["notified"]).await;
    let p = &app.runtime.pipeline;
    assert_eq!(p.retention().await.unwrap(), Default::default(), "nothing is due yet");

    // 20 days on a rep moves it forwards: that is activity, and the clock starts again.
    clock.advance(chrono::Duration::days(20));
    let owner = app.lead(&old).await["owner"].as_str().unwrap().to_owned();
    let r = app
        .admin_send(
            Method::POST,
            &format!("/v1/leads/{old}/status"),
            Some(&json!({"status": "contacted", "by": owner, "note": "spoke to Olga"})),
        )
        .await;
    assert_eq!(r.status(), 200);
    app.settle().await;
    clock.advance(chrono::Duration::days(25));
    assert_eq!(p.retention().await.unwrap().erased, 0, "45 days since arrival, 25 since the last activity");
    let fresh = lead_id(&app.post_form(&[("email", "new@busy-co.com")]).await.json().await.unwrap());
    app.wait_status(&fresh, &["notified"]).await;

    clock.advance(chrono::Duration::days(6));
    let done = p.retention().await.unwrap();
    assert_eq!(done.erased, 1);
    let l = app.lead(&old).await;
    assert!(l["email"].is_null() && l["name"].is_null(), "{l}");
    assert_eq!(l["status"], "contacted");
    let h = history(&l);
    assert_eq!(h.last().unwrap(), "personal data erased (retention: no activity for 30 days)");
    assert!(h.iter().all(|r| !r.contains("Olga")), "notes are free text: {h:?}");
    assert!(app.lead(&fresh).await["email"].is_string(), "a lead idle for 6 days is kept");
    assert_eq!(p.retention().await.unwrap().erased, 0, "erased once");

    // The person's claim went with the data: the same email is a new lead.
    let again = lead_id(&app.post_form(&[("email", "old@idle-co.com")]).await.json().await.unwrap());
    assert_eq!(app.wait_status(&again, &["notified", "duplicate"]).await["status"], "notified");

    // 60 days without activity: the anonymous facts go too.
    clock.advance(chrono::Duration::days(30));
    let done = p.retention().await.unwrap();
    assert_eq!(done.deleted, 1, "{done:?}");
    assert_eq!(app.admin_get(&format!("/v1/leads/{old}")).await.status(), 404);
    assert_eq!(app.lead(&fresh).await["status"], "notified", "erased, not deleted yet");
}
