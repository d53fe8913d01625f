//! The manager console on the AWS path: the admin function's Router over DynamoDB (the
//! emulator), as API Gateway hands it requests. Log in, see a lead on Live (the page polls
//! there: the event stream answers 404), open it, move it with a CSRF-checked form, and load
//! Reps, SLA, Funnel and Routing. The browser tests cover the same pages with `serve`.

use leadrouter::aws::AwsPipeline;
use leadrouter::domain::LeadId;
use leadrouter::ports::LeadStore;
use leadrouter_tests::aws::{Delivery, aws_pipeline, drain_queues};
use leadrouter_tests::{ADMIN_TOKEN, Receiver, routing_doc};
use std::sync::Arc;
use tower::ServiceExt;

async fn send(
    p: &Arc<AwsPipeline>,
    req: axum::http::Request<axum::body::Body>,
) -> (u16, axum::http::HeaderMap, String) {
    let res = leadrouter::http::router(p.clone()).oneshot(req).await.unwrap();
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let body = axum::body::to_bytes(res.into_body(), 1 << 24).await.unwrap();
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}

fn get(path: &str, cookie: &str) -> axum::http::Request<axum::body::Body> {
    axum::http::Request::get(path).header("cookie", cookie).body(axum::body::Body::empty()).unwrap()
}

fn form(path: &str, cookie: &str, body: String) -> axum::http::Request<axum::body::Body> {
    axum::http::Request::post(path)
        .header("cookie", cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(axum::body::Body::from(body))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_works_over_dynamodb_through_the_admin_router() {
    let receiver = Receiver::start().await;
    let (pipeline, sqs, urls) = aws_pipeline(&routing_doc(&receiver, 65536)).await;
    let p = Arc::new(pipeline);
    let req = axum::http::Request::post("/v1/leads")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(axum::body::Body::from("email=scully%40fbi-example.com&name=Dana+%3Cb%3EScully%3C%2Fb%3E&country=US"))
        .unwrap();
    let (status, _, body) = send(&p, req).await;
    assert_eq!(status, 202, "{body}");
    let id = serde_json::from_str::<serde_json::Value>(&body).unwrap()["lead_id"].as_str().unwrap().to_owned();
    drain_queues(&p, &sqs, &urls, Delivery::default()).await;

    // A wrong token is refused; the right one gives a session cookie.
    let login = |token: &str| form("/login", "", format!("name=Maria+Chen&token={token}"));
    let (status, headers, _) = send(&p, login("wrong")).await;
    assert!(headers.get("set-cookie").is_none(), "no session for a wrong token (status {status})");
    let (_, headers, _) = send(&p, login(ADMIN_TOKEN)).await;
    let cookie = headers["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();

    let (status, _, live) = send(&p, get("/console/live", &cookie)).await;
    assert_eq!(status, 200);
    assert!(
        live.contains("Dana &lt;b&gt;Scully&lt;/b&gt;") || live.contains("Dana &#60;b&#62;Scully"),
        "escaped: {live}"
    );
    // No function holds a connection on AWS: the page's script polls instead.
    assert_eq!(send(&p, get("/console/events", &cookie)).await.0, 404);
    let (status, _, rows) = send(&p, get("/console/rows", &cookie)).await;
    assert_eq!(status, 200);
    assert!(rows.contains(&id), "{rows}");

    let (status, _, page) = send(&p, get(&format!("/console/leads/{id}"), &cookie)).await;
    assert_eq!(status, 200);
    assert!(page.contains("round-robin turn"), "the why is shown: {page}");
    let csrf = page.split("name=\"csrf\" value=\"").nth(1).unwrap().split('"').next().unwrap().to_owned();
    let owner = p.store.get(&LeadId::parse(&id).unwrap()).await.unwrap().unwrap().owner.unwrap();
    let other = if owner == "ana" { "ben" } else { "ana" };
    // Without the CSRF token: refused, nothing moves.
    let (status, _, _) = send(&p, form(&format!("/console/leads/{id}/assign"), &cookie, format!("rep={other}"))).await;
    assert_eq!(status, 403);
    let (status, _, _) =
        send(&p, form(&format!("/console/leads/{id}/assign"), &cookie, format!("rep={other}&csrf={csrf}"))).await;
    assert!(status == 303 || status == 302, "{status}");
    let lead = p.store.get(&LeadId::parse(&id).unwrap()).await.unwrap().unwrap();
    assert_eq!(lead.owner.as_deref(), Some(other));
    assert_eq!(lead.history.iter().rev().find_map(|h| h.by.clone()).as_deref(), Some("Maria Chen"));

    for path in ["/console/reps", "/console/sla", "/console/funnel?fresh=1", "/console/routing"] {
        let (status, _, page) = send(&p, get(path, &cookie)).await;
        assert_eq!(status, 200, "{path}: {page}");
    }
}
