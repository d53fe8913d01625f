//! Safe in front of the public: what a lead types is shown as text, a person posting again and
//! again pages nobody twice, accept links cannot be forged or outlive their expiry, a client is
//! throttled, a web form cannot pass for a signed source, and notifications go nowhere inward.

use leadrouter_tests::{ACCEPT_SECRET, Receiver, TestApp, TestClock, WEBHOOK_SECRET, routing_doc_with_graph};
use reqwest::Method;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(20);

/// The test document with `edit` applied (a replace of a line, a section added).
async fn app_with(
    edit: impl Fn(String, &Receiver) -> String + Send + Sync + 'static,
    clock: Arc<TestClock>,
) -> TestApp {
    TestApp::spawn_custom(move |r, g| edit(routing_doc_with_graph(r, 64 * 1024, g), r), clock).await
}

fn lead_id(v: &Value) -> String {
    v["lead_id"].as_str().expect("lead_id").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_name_reaches_slack_as_text_and_pings_nobody() {
    let app = app_with(
        |doc, r| {
            doc.replace(&format!("webhook:{}", r.hook("ana")), &format!("slack:{}", r.hook("ana")))
                .replace(&format!("webhook:{}", r.hook("ben")), &format!("slack:{}", r.hook("ben")))
        },
        Arc::new(TestClock::default()),
    )
    .await;
    let hostile = "<!channel> <https://evil.example|Verify your Slack>";
    let r = app.post_form(&[("email", "mallory@evil-co.com"), ("name", hostile), ("company", "A & <B>")]).await;
    assert_eq!(r.status(), 202);
    let reqs = app.receiver.wait_until(WAIT, "the Slack message", |r| !r.is_empty()).await;
    let msg = &reqs[0].body;
    let all_text = {
        let mut t = vec![msg["text"].as_str().unwrap().to_owned()];
        for b in msg["blocks"].as_array().unwrap() {
            if let Some(s) = b["text"]["text"].as_str() {
                t.push(s.to_owned());
            }
            for e in b["elements"].as_array().into_iter().flatten() {
                if let Some(s) = e["text"].as_str() {
                    t.push(s.to_owned());
                }
            }
        }
        t.join("\n")
    };
    assert!(!all_text.contains("<!channel>"), "a mention reached Slack: {all_text}");
    assert!(!all_text.contains("<https://evil.example"), "a link reached Slack: {all_text}");
    assert!(msg["text"].as_str().unwrap().contains("&lt;!channel&gt; &lt;https://evil.example|Verify your Slack&gt;"));
    assert!(all_text.contains("A &amp; &lt;B&gt;"), "{all_text}");
    // The Accept button's URL is ours, not the lead's.
    let button = msg["blocks"].as_array().unwrap().iter().find(|b| b["type"] == "actions").unwrap();
    assert!(button["elements"][0]["url"].as_str().unwrap().starts_with("http://leadrouter.test/v1/leads/"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_posts_of_one_email_make_one_re_engaged() {
    let app = app_with(|doc, _| doc, Arc::new(TestClock::default())).await;
    let first =
        lead_id(&app.post_form(&[("email", "again@repeat-co.com"), ("name", "Rae")]).await.json().await.unwrap());
    let l = app.wait_status(&first, &["notified"]).await;
    let owner = l["owner"].as_str().unwrap().to_owned();
    for _ in 0..999 {
        assert_eq!(app.post_form(&[("email", "again@repeat-co.com"), ("name", "Rae")]).await.status(), 202);
    }
    app.settle().await;
    let original = app.lead(&first).await;
    assert_eq!(original["touch_count"], 999, "every post is a touch");
    assert_eq!(original["touches"].as_array().unwrap().len(), 20, "the most recent touches are kept");
    let told: Vec<_> = app
        .receiver
        .requests()
        .into_iter()
        .filter(|r| r.body["kind"] == "re_engaged" && r.body["lead"]["id"] == first.as_str())
        .collect();
    assert_eq!(told.len(), 1, "one re_engaged per original lead and rep per hour");
    assert_eq!(told[0].hook, owner);
    // A duplicate that told nobody says so.
    let last_dup = original["touches"].as_array().unwrap().last().unwrap()["lead_id"].as_str().unwrap().to_owned();
    let dup = app.lead(&last_dup).await;
    assert_eq!(dup["status"], "duplicate");
    let why = dup["history"].as_array().unwrap().last().unwrap()["reason"].as_str().unwrap();
    assert!(why.contains("not notified"), "{why}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accept_links_cannot_be_forged_tampered_with_or_used_after_expiry() {
    let clock = Arc::new(TestClock::default());
    let app = app_with(|doc, _| doc, clock.clone()).await;
    let id = lead_id(&app.post_form(&[("email", "link@links-co.com")]).await.json().await.unwrap());
    let l = app.wait_status(&id, &["notified"]).await;
    let owner = l["owner"].as_str().unwrap().to_owned();
    let reqs = app
        .receiver
        .wait_until(WAIT, "the assignment", |r| r.iter().any(|r| r.body["lead"]["id"] == id.as_str()))
        .await;
    let link = reqs[0].body["accept_url"].as_str().unwrap().replace("http://leadrouter.test", &app.base);
    let exp: i64 = link.split("exp=").nth(1).unwrap().split('&').next().unwrap().parse().unwrap();
    let week = (clock_now(&clock) + chrono::Duration::days(7)).timestamp();
    assert!((exp - week).abs() < 60, "a link expires after accept_link_days (7): {exp} vs {week}");

    // A receiver holds the webhook secret: a link it signs is refused.
    let forged_sig = leadrouter::notification::accept_sig(WEBHOOK_SECRET, &id.parse_id(), &owner, exp);
    let forged = format!("{}/v1/leads/{id}/accept?rep={owner}&exp={exp}&sig={forged_sig}", app.base);
    let r = app.client.post(&forged).send().await.unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    // A later expiry on a real link: its signature no longer holds.
    let tampered = link.replace(&format!("exp={exp}"), &format!("exp={}", exp + 86_400 * 365));
    assert_eq!(app.client.post(&tampered).send().await.unwrap().status(), 403);
    assert_eq!(app.client.post(link.replace("&sig=", "&sig=00")).send().await.unwrap().status(), 403);
    // The key is [server] accept_secret: a link signed with it holds.
    let good = leadrouter::notification::accept_sig(ACCEPT_SECRET, &id.parse_id(), &owner, exp);
    assert!(link.ends_with(&good), "{link}");

    // Eight days on, the link has expired: a page for a browser, nothing changed.
    clock.advance(chrono::Duration::days(8));
    let r = app.client.get(&link).header("accept", "text/html").send().await.unwrap();
    assert_eq!(r.status(), 410);
    assert!(r.text().await.unwrap().contains("expired"));
    let r = app.client.post(&link).send().await.unwrap();
    assert_eq!(r.status(), 410);
    let p: Value = r.json().await.unwrap();
    assert!(p["detail"].as_str().unwrap().contains("expired"), "{p}");
    assert_eq!(app.lead(&id).await["status"], "notified", "an expired link changes nothing");
}

fn clock_now(c: &TestClock) -> chrono::DateTime<chrono::Utc> {
    leadrouter::ports::Clock::now(c)
}

trait ParseId {
    fn parse_id(&self) -> leadrouter::domain::LeadId;
}

impl ParseId for String {
    fn parse_id(&self) -> leadrouter::domain::LeadId {
        leadrouter::domain::LeadId::parse(self).expect("a lead id")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_over_its_rate_is_told_to_wait_and_nothing_is_stored() {
    let app = app_with(
        |doc, _| {
            doc.replace(
                "allow_private_targets = true",
                "allow_private_targets = true\nrate_limit_per_minute = 3\ntrusted_proxies = [\"127.0.0.0/8\"]",
            )
        },
        Arc::new(TestClock::default()),
    )
    .await;
    let post = |client_ip: &'static str, n: usize| {
        let app = &app;
        async move {
            app.client
                .post(app.url("/v1/leads"))
                .header("x-forwarded-for", format!("198.51.100.99, {client_ip}"))
                .form(&[("email", format!("r{n}@rate-co.com"))])
                .send()
                .await
                .unwrap()
        }
    };
    for n in 0..3 {
        assert_eq!(post("203.0.113.1", n).await.status(), 202);
    }
    app.settle().await;
    let before = app.lead_count().await;
    let r = post("203.0.113.1", 3).await;
    assert_eq!(r.status(), 429);
    let wait: u64 = r.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=20).contains(&wait), "Retry-After {wait}");
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let p: Value = r.json().await.unwrap();
    assert_eq!(p["status"], 429);
    // Another client behind the same proxy has its own allowance.
    assert_eq!(post("203.0.113.2", 4).await.status(), 202);
    app.settle().await;
    assert_eq!(app.lead_count().await, before + 1, "the refused lead was not stored");
    // The admin routes are not limited.
    for _ in 0..5 {
        assert_eq!(app.admin_get("/v1/leads?limit=1").await.status(), 200);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_web_form_cannot_pass_for_a_signed_source() {
    let app = app_with(|doc, _| doc, Arc::new(TestClock::default())).await;
    for (claimed, source) in [("meta", "web"), ("google", "web"), ("typeform", "web"), ("landing-b", "landing-b")] {
        let v: Value = app
            .post_form(&[("email", &format!("{claimed}@source-co.com")), ("source", claimed)])
            .await
            .json()
            .await
            .unwrap();
        let l = app.lead(&lead_id(&v)).await;
        assert_eq!(l["source"], source, "source={claimed}");
        if source == "web" {
            assert_eq!(l["attributes"]["source"], claimed, "kept as an attribute");
        }
    }
}

/// A server that answers every request with a redirect to `to`.
async fn redirector(to: String) -> String {
    let app = axum::Router::new().fallback(move || {
        let to = to.clone();
        async move { (axum::http::StatusCode::TEMPORARY_REDIRECT, [("location", to)], "") }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.ok() });
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications_go_nowhere_inward_and_follow_no_redirect() {
    // A document target that redirects: the document is trusted, its redirect is not followed.
    let receiver = Receiver::start().await;
    let redirect = redirector(receiver.hook("stolen")).await;
    let app = TestApp::spawn_custom(
        move |r, g| {
            let doc = routing_doc_with_graph(r, 64 * 1024, g).replace("allow_private_targets = true\n", "");
            doc.replace(&format!("webhook:{}", r.hook("ana")), &format!("webhook:{redirect}"))
                .replace(&format!("webhook:{}", r.hook("ben")), &format!("webhook:{redirect}"))
        },
        Arc::new(TestClock::default()),
    )
    .await;
    let id = lead_id(&app.post_form(&[("email", "redir@redirect-co.com")]).await.json().await.unwrap());
    app.settle().await;
    let detail = app.lead(&id).await;
    let d = &detail["deliveries"][0];
    assert_eq!(d["state"], "dead", "{d}");
    assert!(d["last_error"].as_str().unwrap().contains("redirect"), "{d}");
    assert_eq!(d["attempts"], 1, "a redirect is not retried");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(receiver.requests().is_empty(), "the redirect was followed");

    // Targets set through the API: nothing loopback, private or link-local.
    for target in [
        "webhook:http://127.0.0.1:9/x",
        "webhook:http://localhost:9/x",
        "slack:http://10.1.2.3/hook",
        "webhook:http://169.254.169.254/latest/meta-data",
        "webhook:http://[::1]:9/x",
    ] {
        let r = app.admin_send(Method::PUT, "/v1/reps/zed", Some(&json!({"name": "Zed", "notify": [target]}))).await;
        assert_eq!(r.status(), 422, "{target}");
        let p: Value = r.json().await.unwrap();
        assert!(p["errors"][0]["message"].as_str().unwrap().contains("private"), "{p}");
    }
    assert_eq!(app.admin_get("/v1/reps/zed").await.status(), 404, "a refused rep is not stored");
    let r = app
        .admin_send(
            Method::PUT,
            "/v1/reps/zed",
            Some(&json!({"name": "Zed", "notify": ["webhook:https://93.184.216.34/hook"]})),
        )
        .await;
    assert_eq!(r.status(), 200, "a public address is fine");

    // And again when connecting: a name that resolves inward is refused then too.
    let n = leadrouter::adapters::notifier::HttpNotifier::new(
        leadrouter::config::Secret::new(WEBHOOK_SECRET),
        Arc::new(leadrouter::ports::SystemClock),
    )
    .guarding(Default::default());
    let target = format!("webhook:{}", receiver.hook("inward").replace("127.0.0.1", "localhost"));
    let body: leadrouter::notification::Notification = serde_json::from_value(json!({
        "delivery_id": "d", "kind": "assigned", "lead": {"id": id, "name": null, "email": null, "phone": null,
        "company": null, "source": "web", "score": null, "grade": null, "reasons": []},
        "rep": null, "pool": null, "why": null, "accept_url": null, "sent_at": "2026-11-29T00:00:00Z"
    }))
    .unwrap();
    match leadrouter::ports::Notifier::deliver(&n, &target, &body).await {
        leadrouter::ports::DeliveryResult::Dead { error } => assert!(error.contains("internal"), "{error}"),
        other => panic!("a name resolving to loopback was reached: {other:?}"),
    }
    assert!(receiver.requests().is_empty());
}
