//! The ad platforms' webhooks and generic signed webhooks, end to end through real HTTP, with a
//! local server playing Meta's Graph API.

use leadrouter::notification::hmac_hex;
use leadrouter_tests::{GOOGLE_KEY, META_APP_SECRET, META_VERIFY_TOKEN, TYPEFORM_SECRET, TestApp, WEBFLOW_SECRET};
use serde_json::{Value, json};
use std::time::Duration;

const META_SAMPLE: &str = include_str!("../../examples/payloads/meta-leadgen.json");
const GOOGLE_SAMPLE: &str = include_str!("../../examples/payloads/google-lead.json");
const TYPEFORM_SAMPLE: &str = include_str!("../../examples/payloads/typeform.json");
const WEBFLOW_SAMPLE: &str = include_str!("../../examples/payloads/webflow.json");

fn derived(reference: &str) -> String {
    leadrouter::domain::LeadId::derived(reference).to_string()
}

async fn post_meta(app: &TestApp, body: &str) -> reqwest::Response {
    let sig = format!("sha256={}", hmac_hex(META_APP_SECRET.as_bytes(), body.as_bytes()));
    app.client
        .post(app.url("/v1/webhooks/meta"))
        .header("content-type", "application/json")
        .header("x-hub-signature-256", sig)
        .body(body.to_owned())
        .send()
        .await
        .unwrap()
}

fn leadgen(ids: &[&str]) -> String {
    let changes: Vec<Value> = ids
        .iter()
        .map(|id| json!({"field": "leadgen", "value": {"leadgen_id": id, "page_id": "1", "form_id": "2", "created_time": 1440120384}}))
        .collect();
    json!({"object": "page", "entry": [{"id": "1", "time": 1438292065, "changes": changes}]}).to_string()
}

fn google_body(lead_id: &str, email: &str, test: bool) -> String {
    GOOGLE_SAMPLE
        .replace(
            "TeSter-123-ABCDEFGHIJKLMNOPQRSTUVWXYZ-abcdefghijklmnopqrstuvwxyz-0123456789-AaBbCcDdEeFfGgHhIiJjKkLl",
            lead_id,
        )
        .replace("test@example.com", email)
        .replace("your-google-lead-form-key", GOOGLE_KEY)
        .replace("\"is_test\": true", &format!("\"is_test\": {test}"))
}

fn signed(secret: &str, t: i64, body: &str) -> String {
    format!("t={t},v1={}", hmac_hex(secret.as_bytes(), format!("{t}.{body}").as_bytes()))
}

async fn post_generic(app: &TestApp, source: &str, secret: &str, t: i64, body: &str) -> reqwest::Response {
    app.client
        .post(app.url(&format!("/v1/webhooks/generic/{source}")))
        .header("content-type", "application/json")
        .header("x-leadrouter-signature", signed(secret, t, body))
        .body(body.to_owned())
        .send()
        .await
        .unwrap()
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn meta_subscription_check() {
    let app = TestApp::spawn().await;
    let url = |token: &str| {
        app.url(&format!("/v1/webhooks/meta?hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token={token}"))
    };
    let r = app.client.get(url(META_VERIFY_TOKEN)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "1158201444");
    let r = app.client.get(url("wrong")).send().await.unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let r = app
        .client
        .get(app.url("/v1/webhooks/meta?hub.mode=unsubscribe&hub.verify_token=test-meta-verify"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn meta_sample_is_fetched_mapped_and_routed() {
    let app = TestApp::spawn().await;
    let r = post_meta(&app, META_SAMPLE).await;
    assert_eq!(r.status(), 200);
    let id = derived("meta:123123123123");
    let lead = app.wait_status(&id, &["notified"]).await;
    assert_eq!(lead["source"], "meta");
    assert_eq!(lead["email"], "m123123123123@meta-buyer.com");
    assert_eq!(lead["name"], "Meta Person 123123123123");
    assert_eq!(lead["company"], "Buyer Inc");
    assert_eq!(lead["attributes"]["how_soon"], "this quarter", "unmapped answers are kept");
    assert_eq!(lead["attributes"]["meta_page_id"], "123123123", "the notification's context is kept");
    assert_eq!(lead["attributes"]["meta_campaign_name"], "Q4", "and the Graph API's");
    assert_eq!(lead["history"][0]["to"], "fetching");
    assert_eq!(lead["history"][1]["to"], "received");
    assert_eq!(lead["grade"], "C", "senior title +25 and target market +10");
    assert_eq!(app.graph.hits("123123123123"), 1);
    // Meta retries the same notification, even an hour later: the same lead, nothing new.
    let replay = META_SAMPLE.replace("1438292065", "1438295665");
    assert_eq!(post_meta(&app, &replay).await.status(), 200);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(app.lead_count().await, 1);
    assert_eq!(app.graph.hits("123123123123"), 1, "no second fetch");
    let reqs = app.receiver.requests();
    assert_eq!(reqs.iter().filter(|r| r.body["lead"]["id"] == id.as_str() && r.hook != "manager").count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn meta_batches_string_ids_and_ignores_other_fields() {
    let app = TestApp::spawn().await;
    let body = json!({"object": "page", "entry": [
        {"id": "1", "time": 1, "changes": [{"field": "feed", "value": {"item": "post"}}, {"field": "leadgen", "value": {"leadgen_id": "501"}}]},
        {"id": 2, "time": 2, "changes": [{"field": "leadgen", "value": {"leadgen_id": 502}}, {"field": "leadgen", "value": {"leadgen_id": "503"}}]}
    ]})
    .to_string();
    let r = post_meta(&app, &body).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["accepted"], 3);
    for id in ["501", "502", "503"] {
        app.wait_status(&derived(&format!("meta:{id}")), &["notified"]).await;
    }
    assert_eq!(app.lead_count().await, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn meta_graph_failures_are_retried_and_a_lost_lead_waits_visibly() {
    let app = TestApp::spawn().await;
    assert_eq!(post_meta(&app, &leadgen(&["fail500-1", "rate429-1", "gone-1"])).await.status(), 200);
    let l = app.wait_status(&derived("meta:fail500-1"), &["notified"]).await;
    assert_eq!(l["fetch_attempts"], 1, "one failed attempt is recorded");
    let l = app.wait_status(&derived("meta:rate429-1"), &["notified"]).await;
    assert_eq!(l["fetch_attempts"], 1);
    assert_eq!(app.graph.hits("rate429-1"), 2);
    // A lead the Graph API never returns waits in `fetching`, with its failures on record.
    let gone = derived("meta:gone-1");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let l = app.lead(&gone).await;
        assert_eq!(l["status"], "fetching");
        if l["fetch_attempts"].as_u64().unwrap_or(0) >= 2 {
            assert!(l["fetch_error"].as_str().unwrap().contains("400"), "{}", l["fetch_error"]);
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no retries of the lost lead");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let page: Value = app.admin_get("/v1/leads?status=fetching").await.json().await.unwrap();
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn meta_bad_input() {
    let app = TestApp::spawn().await;
    let url = app.url("/v1/webhooks/meta");
    let bad_sig =
        app.client.post(&url).header("x-hub-signature-256", "sha256=00").body(META_SAMPLE).send().await.unwrap();
    assert_eq!(bad_sig.status(), 401);
    let no_sig = app.client.post(&url).body(META_SAMPLE).send().await.unwrap();
    assert_eq!(no_sig.status(), 401);
    let resigned_other_body = META_SAMPLE.replace("123123123123", "999");
    let sig = format!("sha256={}", hmac_hex(META_APP_SECRET.as_bytes(), META_SAMPLE.as_bytes()));
    let swapped =
        app.client.post(&url).header("x-hub-signature-256", sig).body(resigned_other_body).send().await.unwrap();
    assert_eq!(swapped.status(), 401, "the signature covers the exact bytes");
    assert_eq!(post_meta(&app, "not json").await.status(), 400);
    let no_leadgen = json!({"object": "page", "entry": [{"changes": [{"field": "feed", "value": {}}]}]}).to_string();
    let r = post_meta(&app, &no_leadgen).await;
    assert_eq!(r.status(), 200);
    let big = leadgen(&vec!["1"; 4000]);
    assert_eq!(post_meta(&app, &big).await.status(), 413);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(app.lead_count().await, 0, "nothing stored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn google_leads_test_leads_and_retries() {
    let app = TestApp::spawn().await;
    let url = app.url("/v1/webhooks/google");
    // Google's sample as published: capital Google_key and trailing commas.
    let quirky = google_body("g-1", "buyer@factory.com", false)
        .replace("\"google_key\"", "\"Google_key\"")
        .replace("\"creative_id\": 30000000000", "\"creative_id\": 30000000000,");
    let r = app.client.post(&url).header("content-type", "application/json").body(quirky.clone()).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap(), json!({}));
    let id = derived("google:g-1");
    let lead = app.wait_status(&id, &["notified"]).await;
    assert_eq!(lead["source"], "google");
    assert_eq!(lead["email"], "buyer@factory.com");
    assert_eq!(lead["phone"], "+16505550123");
    assert_eq!(lead["job_title"], "Director of IT");
    assert_eq!(lead["attributes"]["budget"], "5000");
    assert_eq!(lead["attributes"]["google_campaign_id"], "20000000000");
    // Sent twice: one lead.
    assert_eq!(app.client.post(&url).body(quirky).send().await.unwrap().status(), 200);
    // A test lead is stored, tagged, and kept away from reps.
    let r = app.client.post(&url).body(google_body("g-test", "tester@factory.com", true)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let test_id = derived("google:g-test");
    let t = app.wait_status(&test_id, &["notified"]).await;
    assert_eq!(t["test"], true);
    assert!(t["history"].as_array().unwrap().last().unwrap()["reason"].as_str().unwrap().contains("test lead"));
    assert!(t["why"].as_str().unwrap().contains("without taking a round-robin turn"), "{}", t["why"]);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let reqs = app.receiver.requests();
    assert!(!reqs.iter().any(|r| r.body["lead"]["id"] == test_id.as_str()), "no notification for a test lead");
    assert_eq!(reqs.iter().filter(|r| r.body["lead"]["id"] == id.as_str() && r.hook != "manager").count(), 1);
    assert_eq!(app.lead_count().await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn google_bad_input() {
    let app = TestApp::spawn().await;
    let url = app.url("/v1/webhooks/google");
    let c = &app.client;
    let wrong = google_body("g-2", "a@b.co", false).replace(GOOGLE_KEY, "nope");
    assert_eq!(c.post(&url).body(wrong).send().await.unwrap().status(), 401);
    let missing = google_body("g-2", "a@b.co", false).replace("\"google_key\"", "\"other\"");
    assert_eq!(c.post(&url).body(missing).send().await.unwrap().status(), 401);
    assert_eq!(c.post(&url).body("lead_id=1&google_key=x").send().await.unwrap().status(), 400);
    let no_id = json!({"google_key": GOOGLE_KEY, "user_column_data": []}).to_string();
    assert_eq!(c.post(&url).body(no_id).send().await.unwrap().status(), 422);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(app.lead_count().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generic_typeform_and_webflow_examples_are_routed() {
    let app = TestApp::spawn().await;
    let r = post_generic(&app, "typeform", TYPEFORM_SECRET, now(), TYPEFORM_SAMPLE).await;
    assert_eq!(r.status(), 202);
    let id = r.json::<Value>().await.unwrap()["lead_id"].as_str().unwrap().to_owned();
    let l = app.wait_status(&id, &["notified"]).await;
    assert_eq!(l["source"], "typeform");
    assert_eq!(l["email"], "priya.shah@northwind.io");
    assert_eq!(l["phone"], "+16465550188");
    assert_eq!(l["first_name"], "Priya");
    assert_eq!(l["company"], "Northwind");
    let r = post_generic(&app, "webflow", WEBFLOW_SECRET, now(), WEBFLOW_SAMPLE).await;
    assert_eq!(r.status(), 202);
    let id = r.json::<Value>().await.unwrap()["lead_id"].as_str().unwrap().to_owned();
    let l = app.wait_status(&id, &["notified"]).await;
    assert_eq!((l["name"].as_str(), l["utm_campaign"].as_str()), (Some("Lena Fischer"), Some("winter-launch")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generic_bad_input_and_idempotency() {
    let app = TestApp::spawn_with(4096).await;
    let body = TYPEFORM_SAMPLE;
    let c = &app.client;
    // Unknown source.
    assert_eq!(post_generic(&app, "nosuch", TYPEFORM_SECRET, now(), body).await.status(), 404);
    // Wrong secret, missing header, stale and future timestamps.
    assert_eq!(post_generic(&app, "typeform", "wrong", now(), body).await.status(), 401);
    let r = c.post(app.url("/v1/webhooks/generic/typeform")).body(body).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(post_generic(&app, "typeform", TYPEFORM_SECRET, now() - 301, body).await.status(), 401);
    assert_eq!(post_generic(&app, "typeform", TYPEFORM_SECRET, now() + 301, body).await.status(), 401);
    // Not JSON, over the limit.
    assert_eq!(post_generic(&app, "typeform", TYPEFORM_SECRET, now(), "{oops").await.status(), 400);
    let huge = json!({"form_response": {"hidden": {"email": "a@b.co", "pad": "x".repeat(5000)}}}).to_string();
    assert_eq!(post_generic(&app, "typeform", TYPEFORM_SECRET, now(), &huge).await.status(), 413);
    // A map that finds neither email nor phone names the pointers.
    let empty = json!({"form_response": {"hidden": {"first_name": "Nobody"}}}).to_string();
    let r = post_generic(&app, "typeform", TYPEFORM_SECRET, now(), &empty).await;
    assert_eq!(r.status(), 422);
    let p: Value = r.json().await.unwrap();
    let text = p.to_string();
    assert!(text.contains("/form_response/hidden/email") && text.contains("/form_response/hidden/phone"), "{p}");
    assert_eq!(app.lead_count().await, 0, "nothing stored by a 4xx");
    // The same Idempotency-Key is one lead.
    let send = |t: i64| {
        c.post(app.url("/v1/webhooks/generic/typeform"))
            .header("x-leadrouter-signature", signed(TYPEFORM_SECRET, t, body))
            .header("idempotency-key", "evt-1")
            .body(body)
            .send()
    };
    let a: Value = send(now()).await.unwrap().json().await.unwrap();
    let b: Value = send(now()).await.unwrap().json().await.unwrap();
    assert_eq!(a["lead_id"], b["lead_id"]);
    assert_eq!(app.lead_count().await, 1);
}
