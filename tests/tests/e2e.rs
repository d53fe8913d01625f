//! End to end through real HTTP: leadrouter on 127.0.0.1:0, notifications to a real receiver.

use leadrouter_tests::{ADMIN_TOKEN, Received, TestApp, WEBHOOK_SECRET, signature_valid};
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(20);

/// Every log line of this test binary, so that one test can check none carries personal data.
fn captured_logs() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let sink = buf.clone();
        let writer = move || CaptureWriter(sink.clone());
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("leadrouter=trace,info"))
            .with_writer(writer)
            .with_ansi(false)
            .try_init();
        buf
    })
    .clone()
}

struct CaptureWriter(Arc<Mutex<Vec<u8>>>);
impl std::io::Write for CaptureWriter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        if std::env::var("TEST_LOG").is_ok() {
            std::io::stderr().write_all(b)?;
        }
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

async fn spawn() -> TestApp {
    captured_logs();
    TestApp::spawn().await
}

async fn accepted_id(r: reqwest::Response) -> String {
    assert_eq!(r.status(), 202);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["status"], "received");
    v["lead_id"].as_str().unwrap().to_owned()
}

fn for_lead<'a>(reqs: &'a [Received], id: &str) -> Vec<&'a Received> {
    reqs.iter().filter(|r| r.body["lead"]["id"] == id).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_form_lead_is_scored_assigned_and_notified_once() {
    let app = spawn().await;
    let id = accepted_id(
        app.post_form(&[
            ("email", "Jane@ACME.com"),
            ("name", "Jane Doe"),
            ("job_title", "VP Sales"),
            ("company_size", "500"),
            ("country", "US"),
            ("phone", "(415) 555-0132"),
            ("favourite_color", "teal"),
        ])
        .await,
    )
    .await;
    let lead = app.wait_status(&id, &["notified"]).await;
    assert_eq!(lead["email"], "Jane@acme.com");
    assert_eq!(lead["phone"], "+14155550132");
    assert_eq!(lead["score"], 55);
    assert_eq!(lead["grade"], "B");
    assert_eq!(
        lead["breakdown"],
        json!([
            {"rule": "senior title", "points": 25}, {"rule": "large company", "points": 20}, {"rule": "target market", "points": 10}
        ])
    );
    assert_eq!(lead["pool"], "enterprise-na");
    assert_eq!(lead["owner"], "ana");
    assert_eq!(lead["attributes"]["favourite_color"], "teal");
    let path: Vec<&str> = lead["history"].as_array().unwrap().iter().map(|h| h["to"].as_str().unwrap()).collect();
    assert_eq!(path, ["received", "unique", "scored", "assigned", "notified"]);
    let why = lead["history"][3]["reason"].as_str().unwrap();
    assert!(
        why.contains("pool enterprise-na (grade B, country US)")
            && why.contains("round-robin turn 1 of weights ana:2 ben:1"),
        "{why}"
    );
    let deliveries = lead["deliveries"].as_array().unwrap();
    assert_eq!(deliveries.len(), 2, "rep and manager");
    assert!(deliveries.iter().all(|d| d["attempts"] == 1 && d["delivered_at"].is_string()));

    let reqs = app.receiver.wait_until(WAIT, "rep and manager notifications", |r| for_lead(r, &id).len() >= 2).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mine = for_lead(&app.receiver.requests(), &id).into_iter().cloned().collect::<Vec<_>>();
    assert_eq!(mine.len(), 2, "exactly one request per recipient: {reqs:?}");
    let rep = mine.iter().find(|r| r.hook == "ana").expect("ana notified");
    let mgr = mine.iter().find(|r| r.hook == "manager").expect("manager notified");
    for r in [rep, mgr] {
        assert!(signature_valid(r.signature.as_deref().unwrap(), &r.raw, WEBHOOK_SECRET), "signed with webhook_secret");
        assert!(!signature_valid(r.signature.as_deref().unwrap(), &r.raw, "wrong"), "a wrong secret fails");
        assert_eq!(r.idempotency_key.as_deref(), r.body["delivery_id"].as_str());
        assert_eq!(r.body["kind"], "assigned");
    }
    assert_ne!(rep.body["delivery_id"], mgr.body["delivery_id"]);
    let b = &rep.body;
    assert_eq!(b["lead"]["email"], "Jane@acme.com");
    assert_eq!(b["lead"]["name"], "Jane Doe");
    assert_eq!(b["lead"]["score"], 55);
    assert_eq!(b["lead"]["grade"], "B");
    assert_eq!(b["lead"]["reasons"][0], json!({"rule": "senior title", "points": 25}));
    assert_eq!(b["rep"], json!({"id": "ana", "name": "Ana Ortiz"}));
    assert_eq!(b["pool"], "enterprise-na");
    assert_eq!(b["why"], lead["why"]);
    let accept = b["accept_url"].as_str().unwrap();
    assert!(accept.starts_with(&format!("http://leadrouter.test/v1/leads/{id}/accept?rep=ana&exp=")), "{accept}");
    assert!(chrono::DateTime::parse_from_rfc3339(b["sent_at"].as_str().unwrap()).is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_two_to_one_pool_splits_thirty_leads_twenty_to_ten() {
    let app = spawn().await;
    let mut ids = Vec::new();
    for i in 0..30 {
        let email = format!("buyer{i}@bigco{i}.com");
        ids.push(
            accepted_id(
                app.post_form(&[
                    ("email", &email),
                    ("job_title", "Director"),
                    ("company_size", "1000"),
                    ("country", "CA"),
                ])
                .await,
            )
            .await,
        );
    }
    let reqs = app
        .receiver
        .wait_until(WAIT, "30 rep notifications", |r| r.iter().filter(|x| x.hook != "manager").count() >= 30)
        .await;
    let mut per_rep: HashMap<String, usize> = HashMap::new();
    for r in reqs.iter().filter(|r| r.hook != "manager") {
        *per_rep.entry(r.hook.clone()).or_default() += 1;
    }
    assert_eq!(per_rep.get("ana"), Some(&20));
    assert_eq!(per_rep.get("ben"), Some(&10));
    let mut owners: HashMap<String, usize> = HashMap::new();
    for id in &ids {
        let l = app.wait_status(id, &["notified"]).await;
        *owners.entry(l["owner"].as_str().unwrap().to_owned()).or_default() += 1;
    }
    assert_eq!(owners, HashMap::from([("ana".into(), 20), ("ben".into(), 10)]));
    let turns: HashSet<String> = futures::future::join_all(ids.iter().map(|id| app.lead(id)))
        .await
        .iter()
        .map(|l| l["why"].as_str().unwrap().split("turn ").nth(1).unwrap().split(' ').next().unwrap().to_owned())
        .collect();
    assert_eq!(turns.len(), 30, "every lead had a turn of its own");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_reaches_the_first_leads_owner() {
    let app = spawn().await;
    let first = accepted_id(app.post_form(&[("email", "sam.lee@gmail.com"), ("country", "FR")]).await).await;
    let original = app.wait_status(&first, &["notified"]).await;
    let owner = original["owner"].as_str().unwrap().to_owned();
    // Same person: Gmail ignores dots and +tags.
    let second =
        accepted_id(app.post_json(&json!({"email": "SamLee+promo@gmail.com", "utm_source": "ads"})).await).await;
    let dup = app.wait_status(&second, &["duplicate"]).await;
    assert_eq!(dup["duplicate_of"], first.as_str());
    assert!(dup["history"][1]["reason"].as_str().unwrap().contains("same email"));
    let reqs = app.receiver.wait_until(WAIT, "re_engaged", |r| r.iter().any(|x| x.body["kind"] == "re_engaged")).await;
    let re: Vec<&Received> = reqs.iter().filter(|x| x.body["kind"] == "re_engaged").collect();
    assert_eq!(re.len(), 1);
    assert_eq!(re[0].hook, owner, "the owner of the first lead hears of it");
    assert_eq!(re[0].body["lead"]["id"], first.as_str());
    assert_eq!(re[0].body["touch"]["lead_id"], second.as_str());
    let original = app.lead(&first).await;
    assert_eq!(original["touches"][0]["lead_id"], second.as_str());
    assert_eq!(original["touches"][0]["matched_on"], "email");
    // A phone match is a duplicate too, and nobody else is notified for it.
    let third = accepted_id(app.post_form(&[("phone", "+1 415 555 0199"), ("email", "other@acme.com")]).await).await;
    app.wait_status(&third, &["notified"]).await;
    let fourth = accepted_id(app.post_form(&[("phone", "415.555.0199")]).await).await;
    let d = app.wait_status(&fourth, &["duplicate"]).await;
    assert_eq!(d["duplicate_of"], third.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_its_status_and_changes_nothing() {
    let app = TestApp::spawn_with(2048).await;
    let before = app.lead_count().await;
    let url = app.url("/v1/leads");
    let c = &app.client;
    let cases: Vec<(&str, reqwest::RequestBuilder, u16)> = vec![
        ("malformed json", c.post(&url).header("content-type", "application/json").body("{\"email\": "), 400),
        ("json not an object", c.post(&url).json(&json!(["a@b.co"])), 422),
        ("no content type", c.post(&url).body("email=a@b.co"), 415),
        ("text/plain", c.post(&url).header("content-type", "text/plain").body("email=a@b.co"), 415),
        ("too large", c.post(&url).form(&[("email", "a@b.co"), ("message", &"x".repeat(3000))]), 413),
        ("no email and no phone", c.post(&url).form(&[("name", "Nobody")]), 422),
        ("email that cannot be", c.post(&url).form(&[("email", "jane@")]), 422),
        ("phone that cannot be", c.post(&url).json(&json!({"phone": "12"})), 422),
        ("object in a known field", c.post(&url).json(&json!({"email": {"x": 1}})), 422),
        ("bad consent", c.post(&url).form(&[("email", "a@b.co"), ("consent", "perhaps")]), 422),
        (
            "bad idempotency key",
            c.post(&url).header("idempotency-key", "x".repeat(300)).form(&[("email", "a@b.co")]),
            400,
        ),
        ("wrong method", c.put(&url).form(&[("email", "a@b.co")]), 405),
        ("admin without token", c.get(&url), 401),
        ("admin with wrong token", c.get(&url).bearer_auth("nope"), 401),
        ("lead without token", c.get(app.url("/v1/leads/01M86S3KAYBKDXYD8ZJ6NRE3PF")), 401),
        ("unknown lead", c.get(app.url("/v1/leads/01M86S3KAYBKDXYD8ZJ6NRE3PF")).bearer_auth(ADMIN_TOKEN), 404),
        ("not a lead id", c.get(app.url("/v1/leads/..%2f..")).bearer_auth(ADMIN_TOKEN), 404),
        ("limit over 500", c.get(app.url("/v1/leads?limit=501")).bearer_auth(ADMIN_TOKEN), 422),
        ("unknown status", c.get(app.url("/v1/leads?status=happy")).bearer_auth(ADMIN_TOKEN), 422),
        ("unknown route", c.get(app.url("/v2/nothing")), 404),
    ];
    for (what, req, status) in cases {
        let r = req.send().await.unwrap();
        assert_eq!(r.status().as_u16(), status, "{what}");
        assert_eq!(r.headers()["content-type"], "application/problem+json", "{what}");
        let p: Value = r.json().await.unwrap();
        assert_eq!(p["status"], status, "{what}");
        assert!(p["type"].is_string() && p["title"].is_string() && p["detail"].is_string(), "{what}: {p}");
        if status == 422 && what.contains("field") {
            assert!(!p["errors"].as_array().unwrap().is_empty(), "{what}: {p}");
        }
    }
    let p: Value =
        c.post(&url).form(&[("email", "jane@"), ("phone", "12")]).send().await.unwrap().json().await.unwrap();
    let fields: Vec<&str> = p["errors"].as_array().unwrap().iter().map(|e| e["field"].as_str().unwrap()).collect();
    assert_eq!(fields, ["email", "phone"], "every bad field is named");
    assert_eq!(app.lead_count().await, before, "no 4xx stored anything");
    assert!(app.receiver.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotency_key_returns_the_same_lead() {
    let app = spawn().await;
    let send = || {
        app.client
            .post(app.url("/v1/leads"))
            .header("idempotency-key", "form-42")
            .form(&[("email", "k@acme.com")])
            .send()
    };
    let a = accepted_id(send().await.unwrap()).await;
    let b = accepted_id(send().await.unwrap()).await;
    assert_eq!(a, b);
    app.wait_status(&a, &["notified"]).await;
    let c = accepted_id(send().await.unwrap()).await;
    assert_eq!(a, c);
    assert_eq!(app.lead_count().await, 1);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(app.receiver.requests().iter().filter(|r| r.hook != "manager").count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filled_honeypot_is_answered_like_success_and_rejected() {
    let app = spawn().await;
    let id =
        accepted_id(app.post_form(&[("email", "bot@spam.com"), ("website_url", "http://spam.example")]).await).await;
    let l = app.lead(&id).await;
    assert_eq!(l["status"], "rejected");
    assert!(l["history"][1]["reason"].as_str().unwrap().contains("honeypot"));
    assert!(l.get("attributes").unwrap().get("website_url").is_none());
    // A real lead with the same email is not a duplicate of the bot.
    let real = accepted_id(app.post_form(&[("email", "bot@spam.com")]).await).await;
    app.wait_status(&real, &["notified"]).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(for_lead(&app.receiver.requests(), &id).is_empty(), "a rejected lead is never notified");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_receiver_gets_retries_under_one_delivery_id() {
    let app = spawn().await;
    app.receiver.fail_next(4);
    let id = accepted_id(app.post_form(&[("email", "retry@acme.com"), ("country", "FR")]).await).await;
    let lead = app.wait_status(&id, &["notified"]).await;
    let reqs = for_lead(&app.receiver.requests(), &id).into_iter().cloned().collect::<Vec<_>>();
    assert!(reqs.len() >= 5, "4 failures then success: {}", reqs.len());
    let ids: HashSet<&str> = reqs.iter().map(|r| r.body["delivery_id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 1, "one delivery_id across retries");
    let d = &lead["deliveries"][0];
    assert_eq!(d["attempts"], reqs.len());
    assert!(d["delivered_at"].is_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leads_page_newest_first_with_filters() {
    let app = spawn().await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let source = if i % 2 == 0 { "landing" } else { "webinar" };
        ids.push(
            accepted_id(app.post_form(&[("email", &format!("p{i}@acme{i}.com")), ("source", source)]).await).await,
        );
    }
    for id in &ids {
        app.wait_status(id, &["notified"]).await;
    }
    let page: Value = app.admin_get("/v1/leads?limit=2").await.json().await.unwrap();
    let got: Vec<&str> = page["items"].as_array().unwrap().iter().map(|l| l["id"].as_str().unwrap()).collect();
    assert_eq!(got, [ids[4].as_str(), ids[3].as_str()]);
    let cursor = page["next_cursor"].as_str().unwrap();
    let page2: Value = app.admin_get(&format!("/v1/leads?limit=2&cursor={cursor}")).await.json().await.unwrap();
    assert_eq!(page2["items"][0]["id"], ids[2].as_str());
    let webinar: Value = app.admin_get("/v1/leads?source=webinar").await.json().await.unwrap();
    assert_eq!(webinar["items"].as_array().unwrap().len(), 2);
    assert!(webinar["next_cursor"].is_null());
    let ana: Value = app.admin_get("/v1/leads?owner=ana&status=notified").await.json().await.unwrap();
    let ben: Value = app.admin_get("/v1/leads?owner=ben").await.json().await.unwrap();
    assert_eq!(ana["items"].as_array().unwrap().len() + ben["items"].as_array().unwrap().len(), 5);
    assert!(ana["items"].as_array().unwrap().iter().all(|l| l["owner"] == "ana" && l["status"] == "notified"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disqualified_and_health() {
    let app = spawn().await;
    let r = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let id = accepted_id(app.post_form(&[("email", "win@gmail.com"), ("message", "Casino bonus!!")]).await).await;
    let l = app.wait_status(&id, &["disqualified"]).await;
    assert_eq!(l["score"], -115);
    assert!(l["owner"].is_null());
    assert!(
        l["history"].as_array().unwrap().last().unwrap()["reason"].as_str().unwrap().contains("disqualify_below -50")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_personal_data_in_any_log_line() {
    let app = spawn().await;
    let id = accepted_id(
        app.post_form(&[
            ("email", "canary.person@pii-canary.com"),
            ("phone", "+1 212 555 0147"),
            ("first_name", "Zebulon"),
            ("last_name", "Quixotic"),
            ("company", "Canarycorp"),
        ])
        .await,
    )
    .await;
    app.wait_status(&id, &["notified"]).await;
    let dup = accepted_id(app.post_form(&[("email", "canary.person@pii-canary.com")]).await).await;
    app.wait_status(&dup, &["duplicate"]).await;
    app.receiver
        .wait_until(WAIT, "re_engaged", |r| {
            r.iter().any(|x| x.body["lead"]["id"] == id.as_str() && x.body["kind"] == "re_engaged")
        })
        .await;
    let logs = String::from_utf8(captured_logs().lock().unwrap().clone()).unwrap();
    assert!(logs.contains(&id), "the lead id is logged, so the capture works");
    for pii in ["canary.person", "pii-canary", "2125550147", "212 555", "Zebulon", "Quixotic", "Canarycorp"] {
        assert!(!logs.contains(pii), "personal data '{pii}' appeared in the logs");
    }
}

/// A lead left in `unique` (written by an older version, or a dedup that stopped there) is
/// scored by the score stage and routed on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lead_waiting_in_unique_is_scored_by_the_score_stage() {
    use leadrouter::domain::{Contact, Email, Lead, LeadId, LeadStatus, Stage};
    use leadrouter::ports::{LeadStore, Message, Queue};
    let app = spawn().await;
    let p = &app.runtime.pipeline;
    let contact = Contact {
        email: Some(Email::parse("left@unique.com").unwrap()),
        country: Some("US".into()),
        ..Contact::default()
    };
    let mut lead = Lead::new(LeadId::new(), "web".into(), contact, chrono::Utc::now());
    lead.transition(LeadStatus::Unique, "unique", chrono::Utc::now());
    p.store.insert(lead.clone()).await.unwrap();
    p.queue.send(Stage::Score, vec![Message::lead(lead.id.clone())]).await.unwrap();
    let l = app.wait_status(lead.id.as_str(), &["notified"]).await;
    let path: Vec<&str> = l["history"].as_array().unwrap().iter().map(|h| h["to"].as_str().unwrap()).collect();
    assert_eq!(path, ["received", "unique", "scored", "assigned", "notified"]);
    assert_eq!(l["score"], 10);
}

/// The document is produced from the route table: every operation it lists is answered by its
/// handler, never by the router's fallbacks (404 "no such route", 405), and the routes it
/// cannot list are exactly those fallbacks.
#[tokio::test]
async fn every_documented_operation_is_routed_and_nothing_else_is() {
    let app = TestApp::spawn().await;
    let c = reqwest::Client::new();
    let doc: Value = c.get(app.url("/openapi.json")).send().await.unwrap().json().await.unwrap();
    let paths = doc["paths"].as_object().expect("paths");
    assert!(paths.len() >= 15, "{} paths", paths.len());
    let mut checked = 0;
    for (path, item) in paths {
        let concrete = path.replace("{id}", "01JZZZZZZZZZZZZZZZZZZZZZZZ").replace("{source}", "nosuch");
        for method in item.as_object().unwrap().keys() {
            let m = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let r = c.request(m, app.url(&concrete)).send().await.unwrap();
            let status = r.status().as_u16();
            let body = r.text().await.unwrap();
            assert_ne!(status, 405, "{method} {path} is documented but not routed: {body}");
            assert!(!body.contains("no such route"), "{method} {path} is documented but not routed: {body}");
            checked += 1;
        }
    }
    assert!(checked >= 20, "{checked} operations");
    // A path the table does not have, and a method a documented path does not take.
    let r = c.get(app.url("/v1/nothing")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert!(r.text().await.unwrap().contains("no such route"));
    assert_eq!(c.patch(app.url("/v1/reps")).send().await.unwrap().status(), 405);
}

/// The list's search, pool and polling filters over HTTP, and the CSV export: a formula a
/// lead typed is text in the spreadsheet.
#[tokio::test]
async fn leads_are_searched_polled_and_exported_as_csv() {
    let app = TestApp::spawn().await;
    let start = chrono::Utc::now();
    let mut ids = Vec::new();
    for (email, company) in [("ivy@acme.com", "Acme"), ("hal@globex.com", "=HYPERLINK(\"http://x\",\"go\")")] {
        let r = app.post_form(&[("email", email), ("company", company), ("name", "Ivy Hal"), ("country", "US")]).await;
        assert_eq!(r.status(), 202);
        let id = r.json::<Value>().await.unwrap()["lead_id"].as_str().unwrap().to_owned();
        app.wait_status(&id, &["notified"]).await;
        ids.push(id);
    }
    let list = |query: String| {
        let app = &app;
        async move {
            let r = app.admin_get(&format!("/v1/leads?{query}")).await;
            assert_eq!(r.status(), 200, "{query}");
            let page: Value = r.json().await.unwrap();
            page["items"].as_array().unwrap().iter().map(|l| l["id"].as_str().unwrap().to_owned()).collect::<Vec<_>>()
        }
    };
    assert_eq!(list("q=ACME".into()).await, vec![ids[0].clone()]);
    assert_eq!(list("q=ivy%20hal".into()).await, vec![ids[1].clone(), ids[0].clone()]);
    assert_eq!(list("pool=everyone".into()).await.len(), 2, "grade D: the catch-all pool");
    assert!(list("pool=enterprise-na".into()).await.is_empty());
    let since = urlencode(&start.to_rfc3339());
    assert_eq!(list(format!("updated_since={since}")).await.len(), 2);
    let later = urlencode(&(chrono::Utc::now() + chrono::Duration::seconds(5)).to_rfc3339());
    assert!(list(format!("updated_since={later}")).await.is_empty());
    for bad in ["yesterday", ""] {
        let r = app.admin_get(&format!("/v1/leads?updated_since={bad}")).await;
        assert_eq!(r.status(), 422, "{bad:?}");
        assert_eq!(r.json::<Value>().await.unwrap()["errors"][0]["field"], "updated_since");
    }

    let r = app
        .client
        .get(app.url("/v1/leads?q=ivy"))
        .bearer_auth(leadrouter_tests::ADMIN_TOKEN)
        .header("accept", "text/csv")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("text/csv"));
    let text = r.text().await.unwrap();
    let mut rows = text.lines();
    assert!(rows.next().unwrap().starts_with("id,received_at,updated_at,source,status,grade,score,pool,owner,email"));
    let rows: Vec<&str> = rows.collect();
    assert_eq!(rows.len(), 2, "{text}");
    assert!(rows[0].starts_with(&ids[1]) && rows[1].starts_with(&ids[0]), "newest first: {text}");
    assert!(text.contains("\"'=HYPERLINK(\"\"http://x\"\",\"\"go\"\")\""), "a formula is text: {text}");
}

fn urlencode(s: &str) -> String {
    s.replace('+', "%2B").replace(':', "%3A")
}

/// Reads Server-Sent Events from `r` until `done` holds for what was read (or `WAIT` passes):
/// each event as (id, data).
async fn read_events(r: &mut reqwest::Response, done: impl Fn(&[(u64, Value)]) -> bool) -> Vec<(u64, Value)> {
    let mut buf = String::new();
    let mut events = Vec::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    while !done(&events) {
        let chunk = tokio::time::timeout_at(deadline, r.chunk()).await.expect("events in time").unwrap();
        buf.push_str(std::str::from_utf8(&chunk.expect("the stream stays open")).unwrap());
        while let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            let (mut id, mut data, mut name) = (None, None, None);
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("id:") {
                    id = v.trim().parse::<u64>().ok();
                } else if let Some(v) = line.strip_prefix("data:") {
                    data = serde_json::from_str::<Value>(v.trim()).ok();
                } else if let Some(v) = line.strip_prefix("event:") {
                    name = Some(v.trim().to_owned());
                }
            }
            if let (Some(id), Some(data)) = (id, data) {
                assert_eq!(name.as_deref(), Some("lead"));
                events.push((id, data));
            }
        }
    }
    events
}

#[tokio::test]
async fn events_stream_every_transition_and_resume_after_the_last_one_seen() {
    let app = TestApp::spawn().await;
    let open = |last: Option<u64>| {
        let mut req = app.client.get(app.url("/v1/events")).bearer_auth(leadrouter_tests::ADMIN_TOKEN);
        if let Some(l) = last {
            req = req.header("last-event-id", l.to_string());
        }
        req.send()
    };
    let mut stream = open(None).await.unwrap();
    assert_eq!(stream.status(), 200);
    assert!(stream.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
    let r = app.post_form(&[("email", "sse@acme.com"), ("country", "US")]).await;
    let id = r.json::<Value>().await.unwrap()["lead_id"].as_str().unwrap().to_owned();
    let of_lead = |events: &[(u64, Value)]| -> Vec<(u64, Value)> {
        events.iter().filter(|(_, d)| d["id"] == id.as_str()).cloned().collect()
    };
    let events = read_events(&mut stream, |e| of_lead(e).iter().any(|(_, d)| d["status"] == "notified")).await;
    let mine = of_lead(&events);
    let statuses: Vec<&str> = mine.iter().map(|(_, d)| d["status"].as_str().unwrap()).collect();
    assert_eq!(statuses.first(), Some(&"received"), "{statuses:?}");
    assert_eq!(statuses.last(), Some(&"notified"), "{statuses:?}");
    assert!(statuses.contains(&"assigned"), "{statuses:?}");
    let assigned = mine.iter().find(|(_, d)| d["status"] == "assigned").unwrap();
    assert!(assigned.1["owner"].is_string() && assigned.1["pool"].is_string() && assigned.1["at"].is_string());
    assert!(events.windows(2).all(|w| w[0].0 < w[1].0), "ids increase");
    drop(stream);

    // Reconnecting after the assigned event gives what followed it first.
    let mut again = open(Some(assigned.0)).await.unwrap();
    let resumed = read_events(&mut again, |e| e.iter().any(|(_, d)| d["id"] == id.as_str())).await;
    assert_eq!(resumed[0].0, assigned.0 + 1, "resumes right after the last id seen");
    assert!(resumed.iter().any(|(_, d)| d["id"] == id.as_str() && d["status"] == "notified"));

    let r = app.client.get(app.url("/v1/events")).send().await.unwrap();
    assert_eq!(r.status(), 401);
}
