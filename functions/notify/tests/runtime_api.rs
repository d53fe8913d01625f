//! The real notify binary, `main` and all, against a small Lambda Runtime API server that hands
//! out one SQS event with a real deadline, and a target that never answers: no attempt begins
//! that could not finish before the deadline, every attempt made is recorded, and the function
//! answers before its time is up (the message comes back through its batch item failure).
//! cargo-lambda's emulator sends a fixed far deadline, so it cannot show this.
//! The Runtime API: https://docs.aws.amazon.com/lambda/latest/dg/runtimes-api.html

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::routing::{get, post};
use leadrouter::domain::{Contact, Email, Lead, LeadId, NotificationKind};
use leadrouter::ports::LeadStore;
use leadrouter_tests::aws::aws_pipeline;
use leadrouter_tests::{Receiver, routing_doc};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Default)]
struct Runtime {
    event: Mutex<Option<(String, u64)>>,
    responses: Mutex<Vec<(String, Instant, Value)>>,
}

async fn next(State(rt): State<Arc<Runtime>>) -> axum::response::Response {
    use axum::response::IntoResponse;
    let Some((body, deadline_ms)) = rt.event.lock().unwrap().take() else {
        // One invocation only: the next one never comes.
        std::future::pending::<()>().await;
        unreachable!()
    };
    let mut h = HeaderMap::new();
    h.insert("lambda-runtime-aws-request-id", "req-1".parse().unwrap());
    h.insert("lambda-runtime-deadline-ms", deadline_ms.to_string().parse().unwrap());
    h.insert(
        "lambda-runtime-invoked-function-arn",
        "arn:aws:lambda:us-east-1:123456789012:function:notify".parse().unwrap(),
    );
    h.insert("lambda-runtime-trace-id", "Root=1-00000000-000000000000000000000000".parse().unwrap());
    (h, body).into_response()
}

async fn answer(
    State(rt): State<Arc<Runtime>>,
    Path((id, kind)): Path<(String, String)>,
    body: String,
) -> &'static str {
    let v = serde_json::from_str(&body).unwrap_or(Value::String(body));
    rt.responses.lock().unwrap().push((format!("{id}/{kind}"), Instant::now(), v));
    ""
}

async fn init_error(State(rt): State<Arc<Runtime>>, body: String) -> &'static str {
    rt.responses.lock().unwrap().push(("init/error".into(), Instant::now(), Value::String(body)));
    ""
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_notify_function_begins_no_attempt_it_cannot_finish_before_its_deadline() {
    // A target that takes the connection and never answers.
    let hole = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hole_url = format!("http://{}/hook", hole.local_addr().unwrap());
    let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = hole.accept().await {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            held.push(s);
        }
    });
    let receiver = Receiver::start().await;
    let doc = routing_doc(&receiver, 65536)
        .replace(&format!("webhook:{}", receiver.hook("ana")), &format!("webhook:{hole_url}"));
    let (pipeline, _sqs, urls) = aws_pipeline(&doc).await;
    let now = chrono::Utc::now();
    let contact = Contact { email: Some(Email::parse("slow@hole-co.com").unwrap()), ..Contact::default() };
    let mut lead = Lead::new(LeadId::new(), "web".into(), contact, now);
    lead.give_to("everyone", "ana".into(), "test".into(), NotificationKind::Assigned, now);
    pipeline.store.insert(lead.clone()).await.unwrap();

    let message = json!({"lead_id": lead.id, "kind": "assigned"}).to_string();
    let event = json!({"Records": [{
        "messageId": "m-1", "receiptHandle": "r-1", "body": message, "attributes": {}, "messageAttributes": {},
        "md5OfBody": "", "eventSource": "aws:sqs", "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:notify",
        "awsRegion": "us-east-1"
    }]});
    // 15 s: one 10 s attempt fits, a second would not.
    let deadline = std::time::SystemTime::now() + Duration::from_secs(15);
    let deadline_ms = deadline.duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    let rt = Arc::new(Runtime::default());
    *rt.event.lock().unwrap() = Some((event.to_string(), deadline_ms));
    let api = axum::Router::new()
        .route("/2018-06-01/runtime/invocation/next", get(next))
        .route("/2018-06-01/runtime/invocation/{id}/{kind}", post(answer))
        .route("/2018-06-01/runtime/init/error", post(init_error))
        .with_state(rt.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api_addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, api).await.ok() });

    let started = Instant::now();
    let deadline_at = started + Duration::from_secs(15);
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_notify"));
    cmd.env("AWS_LAMBDA_RUNTIME_API", api_addr.to_string())
        .env("AWS_LAMBDA_FUNCTION_NAME", "notify")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "1")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
        .env("AWS_LAMBDA_LOG_STREAM_NAME", "test")
        .env("AWS_LAMBDA_LOG_GROUP_NAME", "test")
        .env("LEADROUTER_TABLE", pipeline.store.table())
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    for (stage, url) in &urls {
        cmd.env(format!("LEADROUTER_QUEUE_{}", stage.as_str().to_ascii_uppercase()), url);
    }
    let mut child = cmd.spawn().expect("the notify binary starts");
    let answered = loop {
        if let Some(r) = rt.responses.lock().unwrap().first().cloned() {
            break r;
        }
        assert!(started.elapsed() < Duration::from_secs(40), "the function never answered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    child.kill().ok();
    child.wait().ok();
    let (what, at, body) = answered;
    assert_eq!(what, "req-1/response", "{body}");
    assert!(at < deadline_at, "answered {:?} after its deadline", at - deadline_at);
    assert_eq!(body["batchItemFailures"][0]["itemIdentifier"], "m-1", "the message comes back: {body}");
    let made = accepted.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(made, 1, "one attempt fits in 15 s, a second would not");
    let deliveries = pipeline.store.deliveries(&lead.id).await.unwrap();
    let d = deliveries.iter().find(|d| d.recipient == "ana").expect("ana's delivery is recorded");
    assert_eq!(d.attempts as usize, made, "every attempt made is recorded: {d:?}");
    assert!(d.last_error.as_deref().unwrap_or("").contains("timed out"), "{d:?}");
}
