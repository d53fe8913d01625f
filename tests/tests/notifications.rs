//! Slack and email notifications against real local receivers: Block Kit content, 429 with
//! `Retry-After` honoured, a dead channel or mailbox recorded and not retried, SMTP delivery
//! with the accept link and a Message-ID from the delivery id.

use leadrouter_tests::{ADMIN_TOKEN, Receiver, SmtpSink, TestApp, TestClock, WEBHOOK_SECRET};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(20);

fn doc(r: &Receiver, smtp: &str) -> String {
    format!(
        r#"
[server]
admin_token = "{ADMIN_TOKEN}"
webhook_secret = "{WEBHOOK_SECRET}"
public_url = "http://leadrouter.test"
allow_private_targets = true

[email]
from = "Leadrouter <leads@example.com>"
smtp_url = "{smtp}"

[[scoring.rules]]
name = "senior title"
field = "job_title"
matches = '(?i)\bvp\b'
points = 25

[[reps]]
id = "ana"
name = "Ana Ortiz"
notify = ["slack:{slack_ana}", "email:ana@example.com"]

[[reps]]
id = "ben"
name = "Ben Okafor"
notify = ["slack:{slack_ben}", "email:dead-ben@example.com"]

[[pools]]
id = "everyone"
reps = [{{ id = "ana" }}, {{ id = "ben" }}]
"#,
        slack_ana = r.hook("slack-ana"),
        slack_ben = r.hook("slack-ben"),
    )
}

/// Undoes quoted-printable (lettre picks it for non-ASCII text): soft breaks and =XX bytes.
fn quoted_printable(s: &str) -> String {
    let s = s.replace("=\n", "");
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match (b[i], s.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'=', Some(v)) => {
                out.push(v);
                i += 3;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

async fn app(smtp: &SmtpSink) -> TestApp {
    let url = smtp.url.clone();
    TestApp::spawn_custom(move |r, _| doc(r, &url), Arc::new(TestClock::default())).await
}

async fn post(app: &TestApp, email: &str) -> String {
    let r = app.post_json(&json!({"email": email, "first_name": "Jo", "last_name": "Doe", "job_title": "VP Sales", "company": "Acme"})).await;
    assert_eq!(r.status(), 202);
    r.json::<Value>().await.unwrap()["lead_id"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_gets_block_kit_and_its_retry_after_is_honoured_and_email_goes_out_over_smtp() {
    let smtp = SmtpSink::start().await;
    let app = app(&smtp).await;
    app.receiver.script("slack-ana", &[(429, Some(1))]);
    let id = post(&app, "jo@acme-slack.com").await;
    let reqs = app
        .receiver
        .wait_until(WAIT, "slack's second try", |r| r.iter().filter(|x| x.hook == "slack-ana").count() == 2)
        .await;
    let tries: Vec<_> = reqs.iter().filter(|x| x.hook == "slack-ana").collect();
    let gap = tries[1].at - tries[0].at;
    assert!(gap >= Duration::from_millis(950), "Retry-After: 1 was not honoured: {gap:?}");
    assert_eq!(tries[0].raw, tries[1].raw, "the same message both times");
    let msg = &tries[1].body;
    assert_eq!(msg["text"], "New lead for you: Jo Doe");
    let blocks = msg["blocks"].as_array().unwrap();
    assert!(blocks.len() <= 50);
    assert!(blocks[0]["text"]["text"].as_str().unwrap().contains("Acme · jo@acme-slack.com"));
    assert!(blocks[1]["text"]["text"].as_str().unwrap().contains("senior title +25"), "{}", blocks[1]);
    assert!(blocks[2]["elements"][0]["text"].as_str().unwrap().starts_with("pool everyone"));
    let button = &blocks[3]["elements"][0];
    assert_eq!((button["type"].as_str(), button["action_id"].as_str()), (Some("button"), Some("accept")));
    assert!(
        button["url"]
            .as_str()
            .unwrap()
            .starts_with(&format!("http://leadrouter.test/v1/leads/{id}/accept?rep=ana&exp="))
    );

    let l = app.wait_status(&id, &["notified"]).await;
    let d = l["deliveries"].as_array().unwrap();
    let slack = d.iter().find(|d| d["target"].as_str().unwrap().starts_with("slack:")).unwrap();
    assert_eq!(slack["attempts"], 2);
    assert!(slack["delivered_at"].is_string());
    // The email, through the SMTP server, under the same delivery id.
    let mail = smtp.mail();
    assert_eq!(mail.len(), 1);
    assert_eq!(mail[0].to, ["ana@example.com"]);
    assert_eq!(mail[0].from, "leads@example.com");
    let data = &quoted_printable(&mail[0].data);
    assert!(data.contains("Subject: New lead for you: Jo Doe"), "{data}");
    assert!(data.contains(&format!("Message-ID: <{}@leadrouter>", slack["delivery_id"].as_str().unwrap())), "{data}");
    assert!(data.contains(&format!("Accept: http://leadrouter.test/v1/leads/{id}/accept?rep=ana&exp=")), "{data}");
    let email = d.iter().find(|d| d["target"] == "email:ana@example.com").unwrap();
    assert_eq!((email["attempts"].clone(), email["dead"].clone()), (json!(1), json!(false)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_channel_and_a_refused_mailbox_are_recorded_and_not_retried() {
    let smtp = SmtpSink::start().await;
    let app = app(&smtp).await;
    app.receiver.script("slack-ben", &[(404, None)]);
    let first = post(&app, "one@acme-one.com").await;
    app.wait_status(&first, &["notified"]).await;
    let second = post(&app, "two@acme-two.com").await;
    let l = app.wait_status(&second, &["notified"]).await;
    assert_eq!(l["owner"], "ben");
    let history = l["history"].as_array().unwrap();
    assert!(history.last().unwrap()["reason"].as_str().unwrap().contains("gave up on ben"), "{history:?}");
    let d = l["deliveries"].as_array().unwrap();
    let slack = d.iter().find(|d| d["target"].as_str().unwrap().starts_with("slack:")).unwrap();
    assert_eq!((slack["attempts"].clone(), slack["dead"].clone()), (json!(1), json!(true)));
    assert!(slack["last_error"].as_str().unwrap().contains("404"));
    let email = d.iter().find(|d| d["target"] == "email:dead-ben@example.com").unwrap();
    assert_eq!((email["attempts"].clone(), email["dead"].clone()), (json!(1), json!(true)));
    assert!(email["last_error"].as_str().unwrap().contains("550"), "{email}");
    // Nothing more is tried.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(app.receiver.requests().iter().filter(|r| r.hook == "slack-ben").count(), 1);
    assert!(smtp.mail().iter().all(|m| !m.to.iter().any(|t| t.starts_with("dead"))));
}
