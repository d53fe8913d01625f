//! Shared test harness: a real webhook receiver, a leadrouter on a real socket, and the store
//! contract suite that every `LeadStore` adapter must pass.

pub mod aws;
pub mod contract;
pub mod crm;
pub mod queue_contract;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use leadrouter::config::{Secret, Settings};
use leadrouter::pipeline::{RetryPolicy, Secrets};
use leadrouter::runtime::Embedded;
use serde_json::Value;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

pub const ADMIN_TOKEN: &str = "test-admin-token";
pub const WEBHOOK_SECRET: &str = "test-webhook-secret";
pub const ACCEPT_SECRET: &str = "test-accept-secret";
pub const META_VERIFY_TOKEN: &str = "test-meta-verify";
pub const META_APP_SECRET: &str = "test-meta-app-secret";
pub const META_PAGE_TOKEN: &str = "test-meta-page-token";
pub const GOOGLE_KEY: &str = "test-google-key";
pub const TYPEFORM_SECRET: &str = "test-typeform-secret";
pub const WEBFLOW_SECRET: &str = "test-webflow-secret";

/// The source secrets the test document names, as the runtime looks them up.
pub fn source_secrets() -> std::collections::BTreeMap<String, Secret> {
    [
        ("meta.verify_token", META_VERIFY_TOKEN),
        ("meta.app_secret", META_APP_SECRET),
        ("meta.access_token", META_PAGE_TOKEN),
        ("google.key", GOOGLE_KEY),
        ("generic.typeform", TYPEFORM_SECRET),
        ("generic.webflow", WEBFLOW_SECRET),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), Secret::new(v)))
    .collect()
}

/// A local server playing Meta's Graph API. A lead id says how it behaves:
/// `fail500-…` answers 500 once, `rate429-…` answers 429 with `Retry-After: 1` once, `gone-…`
/// never answers with the lead; any other id answers its lead at once.
#[derive(Clone)]
pub struct FakeGraph {
    pub url: String,
    hits: Arc<Mutex<std::collections::HashMap<String, usize>>>,
}

async fn graph_lead(
    State(hits): State<Arc<Mutex<std::collections::HashMap<String, usize>>>>,
    Path((_version, id)): Path<(String, String)>,
    axum::extract::Query(q): axum::extract::Query<std::collections::HashMap<String, String>>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let n = {
        let mut h = hits.lock().unwrap();
        let n = h.entry(id.clone()).or_default();
        *n += 1;
        *n
    };
    if q.get("access_token").map(String::as_str) != Some(META_PAGE_TOKEN) {
        return (StatusCode::BAD_REQUEST, axum::Json(serde_json::json!({"error": {"code": 190}}))).into_response();
    }
    if (id.starts_with("fail500") && n == 1) || id.starts_with("gone") {
        let status = if id.starts_with("gone") { StatusCode::BAD_REQUEST } else { StatusCode::INTERNAL_SERVER_ERROR };
        return (status, axum::Json(serde_json::json!({"error": {"code": 100, "message": "x"}}))).into_response();
    }
    if id.starts_with("rate429") && n == 1 {
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [("retry-after", "1")],
            axum::Json(serde_json::json!({"error": {"code": 4}})),
        )
            .into_response();
    }
    axum::Json(serde_json::json!({
        "created_time": "2026-11-24T08:49:14+0000", "id": id, "ad_id": "900", "form_id": "700", "campaign_name": "Q4",
        "field_data": [
            {"name": "full_name", "values": [format!("Meta Person {id}")]},
            {"name": "email", "values": [format!("m{id}@meta-buyer.com")]},
            {"name": "job_title", "values": ["Head of Growth"]},
            {"name": "company_name", "values": ["Buyer Inc"]},
            {"name": "country", "values": ["US"]},
            {"name": "how_soon", "values": ["this quarter"]}
        ]
    }))
    .into_response()
}

impl FakeGraph {
    pub async fn start() -> FakeGraph {
        let hits = Arc::new(Mutex::new(std::collections::HashMap::new()));
        let app = Router::new().route("/{version}/{id}", axum::routing::get(graph_lead)).with_state(hits.clone());
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind graph");
        let url = format!("http://{}/v21.0", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.ok() });
        FakeGraph { url, hits }
    }

    pub fn hits(&self, id: &str) -> usize {
        self.hits.lock().unwrap().get(id).copied().unwrap_or(0)
    }
}

/// One request a receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    pub hook: String,
    pub signature: Option<String>,
    pub idempotency_key: Option<String>,
    pub raw: Vec<u8>,
    pub body: Value,
    /// When it arrived.
    pub at: std::time::Instant,
}

/// A scripted answer: status, and `Retry-After` seconds.
type Answer = (u16, Option<u64>);

#[derive(Default)]
struct ReceiverState {
    log: Mutex<Vec<Received>>,
    /// When each lead's first `assigned` notification reached a rep, by the lead's email.
    rep_arrivals: Mutex<std::collections::HashMap<String, std::time::Instant>>,
    /// Requests still to answer with 500 before answering 200.
    fail_next: AtomicUsize,
    /// Every this many requests one is answered 500 (0: none).
    fail_every: AtomicUsize,
    seen: AtomicUsize,
    /// Whether every request is kept in `log` (a long benchmark keeps only `rep_arrivals`).
    unlogged: std::sync::atomic::AtomicBool,
    /// Per hook, answers to give before answering 200: (status, Retry-After seconds).
    script: Mutex<std::collections::HashMap<String, std::collections::VecDeque<Answer>>>,
}

/// A local HTTP server that records every webhook POST, as a rep's CRM would.
#[derive(Clone)]
pub struct Receiver {
    pub url: String,
    state: Arc<ReceiverState>,
}

async fn record(
    State(s): State<Arc<ReceiverState>>,
    Path(hook): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let header = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let scripted = s.script.lock().unwrap().get_mut(&hook).and_then(|q| q.pop_front());
    let every = s.fail_every.load(Ordering::SeqCst);
    let nth = s.seen.fetch_add(1, Ordering::SeqCst);
    let failing = scripted.is_none()
        && (s.fail_next.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok()
            || (every > 0 && nth % every == every - 1));
    let parsed: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if hook != "manager"
        && parsed["kind"] == "assigned"
        && let Some(email) = parsed["lead"]["email"].as_str()
    {
        s.rep_arrivals.lock().unwrap().entry(email.to_owned()).or_insert_with(std::time::Instant::now);
    }
    if !s.unlogged.load(Ordering::Relaxed) {
        s.log.lock().unwrap().push(Received {
            hook,
            signature: header("x-leadrouter-signature"),
            idempotency_key: header("idempotency-key"),
            raw: body.to_vec(),
            body: parsed,
            at: std::time::Instant::now(),
        });
    }
    if let Some((status, retry_after)) = scripted {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return match retry_after {
            Some(secs) => (status, [("retry-after", secs.to_string())], "scripted").into_response(),
            None => (status, "scripted").into_response(),
        };
    }
    // Slack answers `ok`; other receivers an empty 200.
    if failing { StatusCode::INTERNAL_SERVER_ERROR.into_response() } else { (StatusCode::OK, "ok").into_response() }
}

impl Receiver {
    pub async fn start() -> Receiver {
        let state = Arc::new(ReceiverState::default());
        let app = Router::new().route("/hook/{name}", post(record)).with_state(state.clone());
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind receiver");
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.ok() });
        Receiver { url, state }
    }

    pub fn hook(&self, name: &str) -> String {
        format!("{}/hook/{name}", self.url)
    }

    /// The next answers `hook` gives (status, Retry-After seconds), before answering 200 `ok`.
    pub fn script(&self, hook: &str, answers: &[(u16, Option<u64>)]) {
        self.state.script.lock().unwrap().insert(hook.to_owned(), answers.iter().copied().collect());
    }

    /// Answers one request in `n` with 500, from now on.
    pub fn fail_every(&self, n: usize) {
        self.state.fail_every.store(n, Ordering::SeqCst);
    }

    pub fn fail_next(&self, n: usize) {
        self.state.fail_next.store(n, Ordering::SeqCst);
    }

    /// First arrival of an `assigned` notification at a rep, by lead email (cheap to poll).
    pub fn rep_arrivals(&self) -> std::collections::HashMap<String, std::time::Instant> {
        self.state.rep_arrivals.lock().unwrap().clone()
    }

    /// When each of `emails`' `assigned` notification first reached a rep, if it has.
    pub fn rep_arrival_of(&self, emails: &[String]) -> Vec<Option<std::time::Instant>> {
        let arrivals = self.state.rep_arrivals.lock().unwrap();
        emails.iter().map(|e| arrivals.get(e).copied()).collect()
    }

    /// Keeps no request in `requests()` from now on, only first arrivals (`rep_arrivals`): a
    /// benchmark of millions of notifications.
    pub fn stop_logging(&self) {
        self.state.unlogged.store(true, Ordering::Relaxed);
    }

    pub fn rep_arrival_count(&self) -> usize {
        self.state.rep_arrivals.lock().unwrap().len()
    }

    pub fn requests(&self) -> Vec<Received> {
        self.state.log.lock().unwrap().clone()
    }

    /// Waits until `pred` holds over the requests so far, or panics after `limit`.
    pub async fn wait_until(&self, limit: Duration, what: &str, pred: impl Fn(&[Received]) -> bool) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let reqs = self.requests();
            if pred(&reqs) {
                return reqs;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}; got {} requests",
                reqs.len()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// A routing document for tests: ana (weight 2) and ben (1) share `enterprise-na`, whose
/// manager is notified too; every other lead goes to `everyone`.
pub fn routing_doc(receiver: &Receiver, max_body: usize) -> String {
    routing_doc_with_graph(receiver, max_body, "http://127.0.0.1:9/v21.0")
}

pub fn routing_doc_with_graph(receiver: &Receiver, max_body: usize, graph_url: &str) -> String {
    format!(
        r#"
[server]
admin_token = "{ADMIN_TOKEN}"
webhook_secret = "{WEBHOOK_SECRET}"
max_body_bytes = {max_body}
public_url = "http://leadrouter.test"
allow_private_targets = true

[sources.meta]
verify_token = "env:TEST_META_VERIFY_TOKEN"
app_secret = "env:TEST_META_APP_SECRET"
access_token = "env:TEST_META_PAGE_TOKEN"
graph_base_url = "{graph_url}"

[sources.google]
key = "env:TEST_GOOGLE_KEY"

[sources.generic.typeform]
secret = "env:TEST_TYPEFORM_SECRET"
fields = {{ email = "/form_response/hidden/email", phone = "/form_response/hidden/phone",
           first_name = "/form_response/hidden/first_name", company = "/form_response/hidden/company" }}

[sources.generic.webflow]
secret = "env:TEST_WEBFLOW_SECRET"
fields = {{ email = "/payload/data/Email", name = "/payload/data/Name", company = "/payload/data/Company",
           message = "/payload/data/Message", utm_campaign = "/payload/data/utm_campaign" }}

[dedup]
window_days = 90
fold_gmail = true
default_phone_region = "US"

[scoring]
grades = {{ A = 70, B = 40, C = 15 }}
disqualify_below = -50

[[scoring.rules]]
name = "senior title"
field = "job_title"
matches = '(?i)\b(vp|vice president|head of|director|chief|c[etfo]o)\b'
points = 25

[[scoring.rules]]
name = "free email domain"
field = "email"
free_email = true
points = -15

[[scoring.rules]]
name = "large company"
field = "company_size"
gte = 200
points = 20

[[scoring.rules]]
name = "target market"
field = "country"
in = ["US", "CA", "GB", "DE"]
points = 10

[[scoring.rules]]
name = "spam words"
field = "message"
matches = '(?i)casino'
points = -100

[[reps]]
id = "ana"
name = "Ana Ortiz"
notify = ["webhook:{ana}"]

[[reps]]
id = "ben"
name = "Ben Okafor"
notify = ["webhook:{ben}"]

[[pools]]
id = "enterprise-na"
match = {{ grade = ["A", "B"], country = ["US", "CA"] }}
reps = [{{ id = "ana", weight = 2 }}, {{ id = "ben", weight = 1 }}]
manager = {{ name = "Maria Chen", notify = ["webhook:{mgr}"] }}

[[pools]]
id = "everyone"
match = {{}}
reps = [{{ id = "ana" }}, {{ id = "ben" }}]
"#,
        ana = receiver.hook("ana"),
        ben = receiver.hook("ben"),
        mgr = receiver.hook("manager"),
    )
}

/// Real time plus an offset the test moves forward (SLA deadlines, working hours).
#[derive(Default)]
pub struct TestClock {
    offset: Mutex<chrono::Duration>,
}

impl TestClock {
    /// A clock that starts at `at` and moves with real time.
    pub fn at(at: chrono::DateTime<chrono::Utc>) -> TestClock {
        let c = TestClock::default();
        *c.offset.lock().unwrap() = at - chrono::Utc::now();
        c
    }

    /// Today's date on this clock, `YYYY-MM-DD` (UTC).
    pub fn now_date(&self) -> String {
        leadrouter::ports::Clock::now(self).date_naive().to_string()
    }

    pub fn advance(&self, by: chrono::Duration) {
        *self.offset.lock().unwrap() += by;
    }
}

impl leadrouter::ports::Clock for TestClock {
    fn now(&self) -> chrono::DateTime<chrono::Utc> {
        chrono::Utc::now() + *self.offset.lock().unwrap()
    }
}

/// A leadrouter serving on 127.0.0.1:0 with its own SQLite file.
pub struct TestApp {
    pub base: String,
    pub graph: FakeGraph,
    pub client: reqwest::Client,
    pub receiver: Receiver,
    pub runtime: Arc<Embedded>,
    pub dir: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
}

pub fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        inline_attempts: 3,
        inline_backoff: Duration::from_millis(20),
        give_up_after: Duration::from_secs(3600),
    }
}

impl TestApp {
    pub async fn spawn() -> TestApp {
        Self::spawn_with(64 * 1024).await
    }

    pub async fn spawn_with(max_body: usize) -> TestApp {
        Self::spawn_custom(|r, g| routing_doc_with_graph(r, max_body, g), Arc::new(TestClock::default())).await
    }

    /// A leadrouter on the document `doc` makes (given the receiver and the fake Graph URL),
    /// on `clock`; the periodic sweep is off: tests call `sweep()`.
    pub async fn spawn_custom(doc: impl Fn(&Receiver, &str) -> String, clock: Arc<TestClock>) -> TestApp {
        Self::spawn_sweeping(doc, clock, None).await
    }

    /// As `spawn_custom`, with the runtime's own periodic sweep on when `sweep_every` is set
    /// (tests otherwise sweep by hand, at the moments they choose).
    pub async fn spawn_sweeping(
        doc: impl Fn(&Receiver, &str) -> String,
        clock: Arc<TestClock>,
        sweep_every: Option<Duration>,
    ) -> TestApp {
        Self::spawn_queues(doc, clock, sweep_every, None).await
    }

    /// As `spawn_sweeping`, with each stage's queue holding `queue_capacity` messages (the
    /// rest wait in the store); None for the runtime's defaults.
    pub async fn spawn_queues(
        doc: impl Fn(&Receiver, &str) -> String,
        clock: Arc<TestClock>,
        sweep_every: Option<Duration>,
        queue_capacity: Option<usize>,
    ) -> TestApp {
        let receiver = Receiver::start().await;
        let graph = FakeGraph::start().await;
        let settings = Settings::parse(&doc(&receiver, &graph.url)).unwrap_or_else(|p| panic!("test config: {p}"));
        let dir = tempfile::tempdir().expect("temp dir");
        let mut sources = source_secrets();
        // Secrets written inline in the test document (an SMTP URL) resolve as themselves.
        for (name, r) in settings.source_secret_refs() {
            if let Some(v) = r.resolve(&|_| None) {
                sources.insert(name, Secret::new(v));
            }
        }
        let secrets = Secrets {
            admin_token: Secret::new(ADMIN_TOKEN),
            webhook_secret: Secret::new(WEBHOOK_SECRET),
            accept_secret: Secret::new(ACCEPT_SECRET),
            sources,
        };
        let mailer = leadrouter::adapters::notifier::mailer_for(&settings, &secrets).expect("mailer");
        let options = leadrouter::runtime::Options {
            retry: fast_retry(),
            clock,
            sweep_every,
            mailer,
            queue_capacity,
            circuits: Default::default(),
        };
        let runtime = Arc::new(
            Embedded::start_with(settings, secrets, &dir.path().join("leads.db"), options)
                .await
                .expect("start runtime"),
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind app");
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = oneshot::channel::<()>();
        let rt = runtime.clone();
        tokio::spawn(async move {
            rt.serve(
                listener,
                async {
                    stopped.await.ok();
                },
                Duration::from_secs(5),
            )
            .await
            .ok();
        });
        TestApp { base, graph, client: reqwest::Client::new(), receiver, runtime, dir, stop: Some(stop) }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// One pass of the sweep, as the runtime's timer would run it.
    pub async fn sweep(&self) -> leadrouter::pipeline::Swept {
        self.runtime.pipeline.sweep(None).await.expect("sweep")
    }

    /// Waits until no message is in flight between stages.
    pub async fn settle(&self) {
        assert!(self.runtime.drain(Duration::from_secs(20)).await, "the pipeline did not settle");
    }

    pub async fn admin_send(&self, method: reqwest::Method, path: &str, body: Option<&Value>) -> reqwest::Response {
        let mut r = self.client.request(method, self.url(path)).bearer_auth(ADMIN_TOKEN);
        if let Some(b) = body {
            r = r.json(b);
        }
        r.send().await.expect("admin request")
    }

    pub async fn post_form(&self, fields: &[(&str, &str)]) -> reqwest::Response {
        self.client.post(self.url("/v1/leads")).form(fields).send().await.expect("post form")
    }

    pub async fn post_json(&self, body: &Value) -> reqwest::Response {
        self.client.post(self.url("/v1/leads")).json(body).send().await.expect("post json")
    }

    pub async fn admin_get(&self, path: &str) -> reqwest::Response {
        self.client.get(self.url(path)).bearer_auth(ADMIN_TOKEN).send().await.expect("admin get")
    }

    pub async fn lead(&self, id: &str) -> Value {
        let r = self.admin_get(&format!("/v1/leads/{id}")).await;
        assert_eq!(r.status(), 200, "GET lead {id}");
        r.json().await.expect("lead json")
    }

    /// Waits until the lead's status is one of `statuses`.
    pub async fn wait_status(&self, id: &str, statuses: &[&str]) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let l = self.lead(id).await;
            if statuses.iter().any(|s| l["status"] == *s) {
                return l;
            }
            assert!(tokio::time::Instant::now() < deadline, "lead {id} stuck in {}", l["status"]);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// How many leads are stored, counted through the API.
    pub async fn lead_count(&self) -> usize {
        let mut n = 0;
        let mut cursor: Option<String> = None;
        loop {
            let path = match &cursor {
                Some(c) => format!("/v1/leads?limit=500&cursor={c}"),
                None => "/v1/leads?limit=500".to_owned(),
            };
            let page: Value = self.admin_get(&path).await.json().await.expect("page");
            n += page["items"].as_array().map(Vec::len).unwrap_or(0);
            match page["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => return n,
            }
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

/// Checks `X-Leadrouter-Signature: t=…,v1=…` against the raw body.
pub fn signature_valid(header: &str, body: &[u8], secret: &str) -> bool {
    let mut t = None;
    let mut v1 = None;
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", x)) => t = Some(x),
            Some(("v1", x)) => v1 = Some(x),
            _ => {}
        }
    }
    let (Some(t), Some(v1)) = (t, v1) else { return false };
    let mut signed = format!("{t}.").into_bytes();
    signed.extend_from_slice(body);
    leadrouter::notification::hmac_verify(secret.as_bytes(), &signed, v1)
}

/// One message an [`SmtpSink`] took.
#[derive(Debug, Clone)]
pub struct Mail {
    pub from: String,
    pub to: Vec<String>,
    /// Headers and body as sent (dot-stuffing undone).
    pub data: String,
}

/// A local SMTP server that keeps every message, as a mail relay would. A recipient whose
/// address starts with `dead` is refused for good (550).
#[derive(Clone)]
pub struct SmtpSink {
    pub url: String,
    mail: Arc<Mutex<Vec<Mail>>>,
}

impl SmtpSink {
    pub async fn start() -> SmtpSink {
        use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind smtp");
        let url = format!("smtp://{}", listener.local_addr().unwrap());
        let mail = Arc::new(Mutex::new(Vec::new()));
        let kept = mail.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let kept = kept.clone();
                tokio::spawn(async move {
                    let (r, mut w) = stream.into_split();
                    let mut lines = BufReader::new(r).lines();
                    let _ = w.write_all(b"220 sink ESMTP\r\n").await;
                    let (mut from, mut to) = (String::new(), Vec::new());
                    while let Ok(Some(line)) = lines.next_line().await {
                        let upper = line.to_ascii_uppercase();
                        let reply: &[u8] = if upper.starts_with("EHLO") || upper.starts_with("HELO") {
                            b"250-sink\r\n250 8BITMIME\r\n"
                        } else if upper.starts_with("MAIL FROM:") {
                            from = line[10..].trim().trim_matches(['<', '>']).to_owned();
                            to.clear();
                            b"250 OK\r\n"
                        } else if upper.starts_with("RCPT TO:") {
                            let rcpt = line[8..].trim().trim_matches(['<', '>']).to_owned();
                            if rcpt.starts_with("dead") {
                                b"550 5.1.1 no such mailbox\r\n"
                            } else {
                                to.push(rcpt);
                                b"250 OK\r\n"
                            }
                        } else if upper == "DATA" {
                            let _ = w.write_all(b"354 go ahead\r\n").await;
                            let mut data = String::new();
                            while let Ok(Some(l)) = lines.next_line().await {
                                if l == "." {
                                    break;
                                }
                                data.push_str(l.strip_prefix('.').filter(|_| l.starts_with("..")).unwrap_or(&l));
                                data.push('\n');
                            }
                            kept.lock().unwrap().push(Mail { from: from.clone(), to: to.clone(), data });
                            b"250 OK queued\r\n"
                        } else if upper == "QUIT" {
                            let _ = w.write_all(b"221 bye\r\n").await;
                            break;
                        } else {
                            b"250 OK\r\n"
                        };
                        if w.write_all(reply).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        SmtpSink { url, mail }
    }

    pub fn mail(&self) -> Vec<Mail> {
        self.mail.lock().unwrap().clone()
    }
}

/// A `leadrouter serve` process listening on 127.0.0.1:0.
pub struct Served {
    pub child: std::process::Child,
    pub base: String,
    /// Leads it found mid-pipeline in its store at start.
    pub resumed: usize,
}

/// Starts the `leadrouter` binary `bin` serving `config` on `db`, and waits until it listens.
/// Its later output is read and dropped, as a terminal would.
pub fn serve_binary(bin: &std::path::Path, config: &std::path::Path, db: &std::path::Path) -> Served {
    use std::io::{BufRead, BufReader};
    let mut child = std::process::Command::new(bin)
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(config)
        .arg("--db")
        .arg(db)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.display()));
    let mut reader = BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    let mut resumed = 0;
    while !line.contains("listening on") {
        line.clear();
        assert!(reader.read_line(&mut line).expect("read stdout") > 0, "the server exited before listening");
        if let Some(n) = line.strip_prefix("resumed ") {
            resumed = n.split(' ').next().and_then(|n| n.parse().ok()).unwrap_or(0);
        }
    }
    std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
    let base = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_owned();
    Served { child, base, resumed }
}
