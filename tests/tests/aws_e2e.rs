//! End to end on AWS's protocols: API Gateway v2 events into the one Router, stage handlers fed
//! batches received from the emulator's SQS queues (deleting exactly what they did not report as
//! failed, as the event source mapping does), state in the emulator's DynamoDB, notifications
//! to a real local webhook receiver.

use leadrouter::aws::AwsPipeline;
use leadrouter::domain::LeadId;
use leadrouter::ports::LeadStore;
use leadrouter_tests::aws::{Delivery, aws_pipeline, drain_queues};
use leadrouter_tests::{ADMIN_TOKEN, Receiver, routing_doc};
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use tower::ServiceExt;

/// A form POST as API Gateway's HTTP API (payload v2) hands it to the ingest function.
fn apigw_form(body: &str) -> String {
    json!({
        "version": "2.0", "routeKey": "POST /v1/leads", "rawPath": "/v1/leads", "rawQueryString": "",
        "headers": {"content-type": "application/x-www-form-urlencoded", "host": "api.example.com"},
        "requestContext": {"accountId": "123456789012", "apiId": "api", "domainName": "api.example.com",
            "domainPrefix": "api", "http": {"method": "POST", "path": "/v1/leads", "protocol": "HTTP/1.1",
            "sourceIp": "192.0.2.1", "userAgent": "curl"}, "requestId": "r", "routeKey": "POST /v1/leads",
            "stage": "$default", "time": "24/Nov/2026:12:00:00 +0000", "timeEpoch": 1795000000000u64},
        "body": body, "isBase64Encoded": false
    })
    .to_string()
}

async fn ingest(pipeline: &Arc<AwsPipeline>, form: &str) -> String {
    let request = lambda_http::request::from_str(&apigw_form(form)).expect("an API Gateway v2 event");
    let request = request.map(|b| axum::body::Body::from(b.as_ref().to_vec()));
    let response = leadrouter::http::router(pipeline.clone()).oneshot(request).await.unwrap();
    assert_eq!(response.status(), 202);
    let body = axum::body::to_bytes(response.into_body(), 1 << 16).await.unwrap();
    let v: Value = serde_json::from_slice(&body).unwrap();
    v["lead_id"].as_str().unwrap().to_owned()
}

/// A Lambda function URL event (the ingest function's own URL): the same payload format as
/// the HTTP API's, with `$default` routes and a `lambda-url` domain.
fn function_url_event(method: &str, path: &str, content_type: &str, body: &str) -> String {
    json!({
        "version": "2.0", "routeKey": "$default", "rawPath": path, "rawQueryString": "",
        "headers": {"content-type": content_type, "host": "abc123.lambda-url.us-east-1.on.aws"},
        "requestContext": {"accountId": "anonymous", "apiId": "abc123",
            "domainName": "abc123.lambda-url.us-east-1.on.aws", "domainPrefix": "abc123",
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "192.0.2.1",
            "userAgent": "curl"}, "requestId": "r", "routeKey": "$default", "stage": "$default",
            "time": "24/Nov/2026:12:00:00 +0000", "timeEpoch": 1795000000000u64},
        "body": body, "isBase64Encoded": false
    })
    .to_string()
}

/// Through the ingest function's URL a web form's lead is taken (and routed like any other),
/// and the admin routes are not there: the ingest function serves the public routes only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ingest_function_url_takes_leads_and_nothing_else() {
    let receiver = Receiver::start().await;
    let (pipeline, sqs, urls) = aws_pipeline(&routing_doc(&receiver, 65536)).await;
    let pipeline = Arc::new(pipeline);
    let call = async |method: &str, path: &str, body: &str| {
        let event = function_url_event(method, path, "application/x-www-form-urlencoded", body);
        let request = lambda_http::request::from_str(&event).expect("a function URL event");
        let request = request.map(|b| axum::body::Body::from(b.as_ref().to_vec()));
        let response = leadrouter::http::public_router(pipeline.clone()).oneshot(request).await.unwrap();
        let status = response.status().as_u16();
        let body = axum::body::to_bytes(response.into_body(), 1 << 16).await.unwrap();
        (status, serde_json::from_slice::<Value>(&body).unwrap_or_default())
    };
    let (status, body) = call("POST", "/v1/leads", "email=url%40corp.com&country=US").await;
    assert_eq!(status, 202, "{body}");
    let id = LeadId::parse(body["lead_id"].as_str().unwrap()).unwrap();
    assert_eq!(call("GET", "/v1/leads", "").await.0, 405, "listing is an admin route");
    assert_eq!(call("GET", "/v1/metrics", "").await.0, 404);
    assert_eq!(call("GET", &format!("/v1/leads/{id}"), "").await.0, 404);
    drain_queues(&pipeline, &sqs, &urls, Delivery::default()).await;
    assert_eq!(pipeline.store.get(&id).await.unwrap().unwrap().status.as_str(), "notified");
}

fn checks_one_delivery_id_each(receiver: &Receiver) {
    let mut ids: HashMap<(String, String, String), HashSet<String>> = HashMap::new();
    for r in receiver.requests() {
        let key = (
            r.body["lead"]["id"].as_str().unwrap().to_owned(),
            r.hook.clone(),
            r.body["kind"].as_str().unwrap().to_owned(),
        );
        ids.entry(key).or_default().insert(r.body["delivery_id"].as_str().unwrap().to_owned());
    }
    for (key, set) in ids {
        assert_eq!(set.len(), 1, "{key:?} got {} delivery ids", set.len());
    }
}

async fn run(how: Delivery) {
    let receiver = Receiver::start().await;
    let (pipeline, sqs, urls) = aws_pipeline(&routing_doc(&receiver, 65536)).await;
    let pipeline = Arc::new(pipeline);
    let mut ids = Vec::new();
    for i in 0..30 {
        ids.push(
            ingest(&pipeline, &format!("email=aws{i}%40corp{i}.com&job_title=VP+Sales&company_size=900&country=US"))
                .await,
        );
    }
    drain_queues(&pipeline, &sqs, &urls, how).await;
    let mut owners: HashMap<String, usize> = HashMap::new();
    for id in &ids {
        let lead = pipeline.store.get(&LeadId::parse(id).unwrap()).await.unwrap().unwrap();
        assert_eq!(lead.status.as_str(), "notified", "lead {id}: {:?}", lead.history);
        assert_eq!(lead.score, Some(55));
        assert_eq!(lead.history.iter().filter(|h| h.to.as_str() == "assigned").count(), 1, "assigned once");
        *owners.entry(lead.owner.unwrap()).or_default() += 1;
    }
    assert_eq!(owners, HashMap::from([("ana".to_owned(), 20), ("ben".to_owned(), 10)]), "2:1 over 30 leads");

    // A duplicate reaches the first lead's owner.
    let dup = ingest(&pipeline, "email=AWS0%40corp0.com&utm_source=retarget").await;
    drain_queues(&pipeline, &sqs, &urls, how).await;
    let d = pipeline.store.get(&LeadId::parse(&dup).unwrap()).await.unwrap().unwrap();
    assert_eq!(d.duplicate_of.as_ref().map(|x| x.as_str()), Some(ids[0].as_str()));
    let first_owner = pipeline.store.get(&LeadId::parse(&ids[0]).unwrap()).await.unwrap().unwrap().owner.unwrap();
    let re: Vec<_> = receiver.requests().into_iter().filter(|r| r.body["kind"] == "re_engaged").collect();
    assert!(!re.is_empty() && re.iter().all(|r| r.hook == first_owner));

    let reps = receiver
        .requests()
        .iter()
        .filter(|r| r.hook != "manager" && r.body["kind"] == "assigned")
        .map(|r| r.body["lead"]["id"].clone())
        .collect::<HashSet<_>>();
    assert_eq!(reps.len(), 30, "every lead reached its rep");
    checks_one_delivery_id_each(&receiver);

    // The admin routes answer from DynamoDB through the same Router.
    let (status, page) = admin_get(&pipeline, "/v1/leads?owner=ana&limit=500").await;
    assert_eq!(status, 200);
    assert_eq!(page["items"].as_array().unwrap().len(), 20);
    // Changed since a minute ago: every lead, read from the `by_update` hours.
    let since = (chrono::Utc::now() - chrono::Duration::minutes(1)).to_rfc3339().replace('+', "%2B");
    let (status, changed) = admin_get(&pipeline, &format!("/v1/leads?updated_since={since}&limit=500")).await;
    assert_eq!(status, 200);
    let changed = changed["items"].as_array().unwrap().len();
    let (_, all) = admin_get(&pipeline, "/v1/leads?limit=500").await;
    assert!(changed >= 30, "{changed}");
    assert_eq!(changed, all["items"].as_array().unwrap().len(), "every lead changed within the minute");
    // No function holds a connection on AWS: no event stream; clients poll instead.
    assert_eq!(admin_get(&pipeline, "/v1/events").await.0, 404);
}

/// An admin GET through the Router, as the admin function serves it: status and JSON body.
async fn admin_get(pipeline: &Arc<AwsPipeline>, path: &str) -> (u16, Value) {
    let req = axum::http::Request::get(path)
        .header("authorization", format!("Bearer {ADMIN_TOKEN}"))
        .body(axum::body::Body::empty())
        .unwrap();
    let res = leadrouter::http::router(pipeline.clone()).oneshot(req).await.unwrap();
    let status = res.status().as_u16();
    let body = axum::body::to_bytes(res.into_body(), 1 << 24).await.unwrap();
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routed_end_to_end_on_dynamodb_and_sqs() {
    run(Delivery { twice: false, shuffle: false }).await;
}

/// At-least-once for real: every message handed over twice, in shuffled order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_message_twice_and_shuffled_changes_nothing() {
    run(Delivery { twice: true, shuffle: true }).await;
}

/// Throttling injected into the store port: every 4th store call fails as DynamoDB's
/// ProvisionedThroughputExceeded does. The messages come back and nothing is lost or doubled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_loses_nothing() {
    use leadrouter::adapters::notifier::HttpNotifier;
    use leadrouter::pipeline::Pipeline;
    use leadrouter_tests::aws::Throttled;
    let receiver = Receiver::start().await;
    let (pipeline, sqs, urls) = aws_pipeline(&routing_doc(&receiver, 65536)).await;
    let pipeline = Arc::new(pipeline);
    let mut ids = Vec::new();
    for i in 0..12 {
        ids.push(
            ingest(&pipeline, &format!("email=thr{i}%40corp{i}.com&country=US&job_title=CEO&company_size=900")).await,
        );
    }
    let flaky = Pipeline {
        store: Throttled::new(pipeline.store.clone(), 4),
        queue: pipeline.queue.clone(),
        notifier: HttpNotifier::new(pipeline.secrets.webhook_secret.clone(), pipeline.clock.clone()),
        fetcher: pipeline.fetcher.clone(),
        clock: pipeline.clock.clone(),
        settings: pipeline.settings.clone(),
        secrets: pipeline.secrets.clone(),
        retry: pipeline.retry,
        events: None,
        crm: None,
        circuits: pipeline.circuits.clone(),
    };
    drain_queues(&flaky, &sqs, &urls, Delivery { twice: false, shuffle: true }).await;
    assert!(flaky.store.throttled.load(std::sync::atomic::Ordering::SeqCst) > 10, "throttling was injected");
    for id in &ids {
        let lead = pipeline.store.get(&LeadId::parse(id).unwrap()).await.unwrap().unwrap();
        assert_eq!(lead.status.as_str(), "notified", "lead {id}: {:?}", lead.history);
        assert_eq!(lead.history.iter().filter(|h| h.to.as_str() == "assigned").count(), 1);
    }
    let reached: HashSet<Value> =
        receiver.requests().iter().filter(|r| r.hook != "manager").map(|r| r.body["lead"]["id"].clone()).collect();
    assert_eq!(reached.len(), 12);
    checks_one_delivery_id_each(&receiver);
}

/// The AWS requests one routed lead costs (for BENCHMARKS.md): the pipeline's own DynamoDB and
/// SQS calls, and the Lambda invocations the event source mapping would make at batch size 10.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_per_routed_lead() {
    use leadrouter_tests::aws::{CapacityMeter, RequestCounter, aws_pipeline_counted};
    let receiver = Receiver::start().await;
    let counter = RequestCounter::default();
    let meter = CapacityMeter::default();
    let (pipeline, sqs, urls) =
        aws_pipeline_counted(&routing_doc(&receiver, 65536), Some(counter.clone()), Some(meter.clone())).await;
    let pipeline = Arc::new(pipeline);
    counter.reset();
    meter.reset();
    let n = 50;
    for i in 0..n {
        ingest(&pipeline, &format!("email=cost{i}%40corp{i}.com&job_title=VP+Sales&company_size=900&country=US")).await;
    }
    let invocations = drain_queues(&pipeline, &sqs, &urls, Delivery { twice: false, shuffle: false }).await;
    let counts = counter.counts();
    let (wru, rru) = (meter.write_units(), meter.read_units());
    let page = pipeline.store.list(leadrouter::ports::LeadQuery { limit: 1, ..Default::default() }).await.unwrap();
    let lead = &page.items[0];
    assert_eq!(lead.status.as_str(), "notified", "every lead routed and notified");
    let size = meter.item_size(&format!("LEAD#{}", lead.id), "A").expect("the lead was written");
    println!("a routed lead's item is {size} bytes (DynamoDB's size rules)");
    let per = |c: f64| c / n as f64;
    let total = |service: &str| counts.iter().filter(|(k, _)| k.starts_with(service)).map(|(_, v)| v).sum::<usize>();
    println!("AWS requests for {n} leads routed (rep and manager notified):");
    for (op, c) in &counts {
        println!("  {op}: {c} ({:.1} per lead)", per(*c as f64));
    }
    println!(
        "  stage Lambda invocations (batches of up to 10): {invocations} ({:.2} per lead)",
        per(invocations as f64)
    );
    println!("  ingest Lambda invocations: {n} (1 per lead)");
    println!("DynamoDB capacity per lead (metered by the documented rules):");
    for (what, units) in &wru {
        println!("  {what}: {:.2} WRU", per(*units));
    }
    let wru_per_lead = per(wru.values().sum::<f64>());
    println!("  writes: {wru_per_lead:.2} WRU, reads: {:.2} RRU", per(rru));
    let dynamo = total("dynamodb") as f64 / n as f64;
    let sqs_calls = total("sqs") as f64 / n as f64;
    // Dollars per million leads at us-east-1 list prices: DynamoDB on demand $0.625 per million
    // write units and $0.125 per million read units; SQS $0.40 per million requests (the sends
    // counted, and the event source mapping's receive and delete per batch); Lambda $0.20 per
    // million invocations and $0.0000133334 per GB-second on arm64 at 256 MB, assuming 20 ms
    // per ingest and 60 ms per stage batch (durations are not measured here); API Gateway's
    // HTTP API $1.00 per million requests, none through the ingest function's URL.
    let sqs_requests = sqs_calls + 2.0 * per(invocations as f64);
    let lambda_invocations = 1.0 + per(invocations as f64);
    let gb_seconds = 0.25 * (0.020 + 0.060 * per(invocations as f64));
    let parts = [
        ("DynamoDB writes", wru_per_lead * 0.625),
        ("DynamoDB reads", per(rru) * 0.125),
        ("SQS", sqs_requests * 0.40),
        ("Lambda", lambda_invocations * 0.20 + gb_seconds * 13.3334),
    ];
    println!("$ per million leads:");
    for (part, dollars) in parts {
        println!("  {part}: {dollars:.2}");
    }
    let direct: f64 = parts.iter().map(|p| p.1).sum();
    println!("  total through the ingest function's URL: {direct:.2}; through the HTTP API: {:.2}", direct + 1.0);
    // Bounds that catch a regression (an extra write or read per lead shows).
    assert!(dynamo <= 40.0, "{dynamo} DynamoDB requests per lead");
    assert!(sqs_calls <= 1.5, "{sqs_calls} SQS sends per lead");
    assert!(size < 1024, "a routed lead's item stays under 1 KB, one write unit: {size} bytes");
    assert!(wru_per_lead <= 13.5, "{wru_per_lead} write units per lead");
    assert!(direct <= 10.5, "${direct:.2} per million leads");
}

/// A lead whose message was lost (stored, never queued) is found by the sweep and routed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sweep_requeues_a_lead_whose_message_was_lost() {
    use leadrouter::domain::{Contact, Email, Lead};
    let receiver = Receiver::start().await;
    let (pipeline, sqs, urls) = aws_pipeline(&routing_doc(&receiver, 65536)).await;
    let long_ago = chrono::Utc::now() - chrono::Duration::minutes(10);
    let contact = Contact { email: Some(Email::parse("lost@msg.com").unwrap()), ..Contact::default() };
    let lost = Lead::new(LeadId::new(), "web".into(), contact, long_ago);
    pipeline.store.insert(lost.clone()).await.unwrap();
    let fresh = Lead::new(
        LeadId::new(),
        "web".into(),
        Contact { email: Some(Email::parse("fresh@msg.com").unwrap()), ..Contact::default() },
        chrono::Utc::now(),
    );
    pipeline.store.insert(fresh.clone()).await.unwrap();
    // While dedup's queue holds messages, a lead waiting for dedup is most likely among them:
    // it is not sent again (a slow stage's backlog would only grow).
    use leadrouter::ports::Queue;
    pipeline
        .queue
        .send(leadrouter::domain::Stage::Dedup, vec![leadrouter::ports::Message::lead(fresh.id.clone())])
        .await
        .unwrap();
    let swept = pipeline.sweep(Some(chrono::Duration::minutes(5))).await.unwrap();
    assert_eq!((swept.stuck, swept.queued), (0, 1), "{swept:?}");
    drain_queues(&pipeline, &sqs, &urls, Delivery { twice: false, shuffle: false }).await;
    assert_eq!(pipeline.store.get(&fresh.id).await.unwrap().unwrap().status.as_str(), "notified");
    assert_eq!(pipeline.store.get(&lost.id).await.unwrap().unwrap().status.as_str(), "received");
    // The queue empty, the lost lead is sent again.
    let n = pipeline.sweep(Some(chrono::Duration::minutes(5))).await.unwrap().stuck;
    assert_eq!(n, 1, "only the lead waiting longer than 5 minutes is requeued");
    drain_queues(&pipeline, &sqs, &urls, Delivery { twice: false, shuffle: false }).await;
    assert_eq!(pipeline.store.get(&lost.id).await.unwrap().unwrap().status.as_str(), "notified");
}

/// Availability and the SLA through the stage handlers: a rep out of office is skipped with the
/// reason, the sweep finds the lead past its SLA, the assign stage gives it to the next rep, and
/// the notify stage tells both reps and the manager, once each; with nobody available a lead
/// waits unassigned and the manager is told.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn availability_and_sla_through_the_stage_handlers() {
    use leadrouter::adapters::notifier::HttpNotifier;
    use leadrouter::domain::RepRecord;
    use leadrouter::pipeline::Pipeline;
    use leadrouter_tests::TestClock;
    let receiver = Receiver::start().await;
    let doc = routing_doc(&receiver, 65536).replacen(
        "\n\n[[pools]]\nid = \"everyone\"",
        "\nsla_minutes = 15\n\n[[pools]]\nid = \"everyone\"",
        1,
    );
    let (p, sqs, urls) = aws_pipeline(&doc).await;
    let clock = Arc::new(TestClock::default());
    let pipeline = Arc::new(Pipeline {
        notifier: HttpNotifier::new(p.secrets.webhook_secret.clone(), clock.clone()),
        clock: clock.clone(),
        store: p.store,
        queue: p.queue,
        fetcher: p.fetcher,
        settings: p.settings,
        secrets: p.secrets,
        retry: p.retry,
        events: None,
        crm: None,
        circuits: p.circuits,
    });
    let drain = || drain_queues(&pipeline, &sqs, &urls, Delivery { twice: true, shuffle: true });
    let today = clock.now_date();
    let rep = |id: &str, ooo: Vec<String>, active: bool| RepRecord {
        id: id.into(),
        name: id.into(),
        email: None,
        notify: vec![format!("webhook:{}", receiver.hook(id))],
        weight: None,
        active,
        timezone: None,
        working_hours: None,
        out_of_office: ooo,
        max_open_leads: None,
        crm_owner: Default::default(),
        pools: None,
        open_leads: None,
        removed: false,
        updated_by: None,
        updated_at: None,
    };
    // ana is out of office today: the lead goes to ben, and says why.
    pipeline.store.put_rep(rep("ana", vec![today.clone()], true)).await.unwrap();
    let id = ingest(&pipeline, "email=sla%40slow-corp.com&country=US&job_title=CEO&company_size=900").await;
    drain().await;
    let lead = pipeline.store.get(&LeadId::parse(&id).unwrap()).await.unwrap().unwrap();
    assert_eq!(lead.owner.as_deref(), Some("ben"));
    assert!(lead.why.as_deref().unwrap().contains(&format!("skipped ana (out of office until {today})")));
    // ana is back; ben lets the SLA pass: the sweep sends it to assign, which gives it to ana.
    pipeline.store.put_rep(rep("ana", vec![], true)).await.unwrap();
    clock.advance(chrono::Duration::minutes(16));
    let swept = pipeline.sweep(Some(chrono::Duration::minutes(5))).await.unwrap();
    assert_eq!(swept.sla_due, 1);
    drain().await;
    let lead = pipeline.store.get(&lead.id).await.unwrap().unwrap();
    assert_eq!((lead.owner.as_deref(), lead.previous_owner.as_deref()), (Some("ana"), Some("ben")));
    let kinds = |hook: &str| -> Vec<String> {
        receiver
            .requests()
            .iter()
            .filter(|r| r.hook == hook && r.body["lead"]["id"] == id.as_str())
            .map(|r| r.body["kind"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(kinds("ben"), ["assigned", "sla_reassigned"]);
    assert_eq!(kinds("ana"), ["sla_reassigned"]);
    assert_eq!(kinds("manager"), ["assigned", "sla_breached"]);
    // A second sweep finds nothing due.
    assert_eq!(pipeline.sweep(Some(chrono::Duration::minutes(5))).await.unwrap().sla_due, 0);
    drain().await;
    // Nobody available: the next lead waits unassigned; the manager is told.
    pipeline.store.put_rep(rep("ana", vec![], false)).await.unwrap();
    pipeline.store.put_rep(rep("ben", vec![today.clone()], true)).await.unwrap();
    // ana's open lead goes back to the pool too (ben is away): unassigned.
    assert_eq!(pipeline.reassign_orphans().await.unwrap(), 1);
    let waiting = ingest(&pipeline, "email=wait%40waiting-corp.com&country=US&job_title=CEO&company_size=900").await;
    drain().await;
    for l in [&id, &waiting] {
        let l = pipeline.store.get(&LeadId::parse(l).unwrap()).await.unwrap().unwrap();
        assert_eq!(l.status.as_str(), "unassigned", "{:?}", l.history);
    }
    assert_eq!(receiver.requests().iter().filter(|r| r.hook == "manager" && r.body["kind"] == "unassigned").count(), 2);
    checks_one_delivery_id_each(&receiver);
}

/// `email:` on AWS goes through SES (API v2) when `[email]` names no SMTP server: the same MIME
/// message as over SMTP, its Message-ID the delivery id. A sender SES has not verified is
/// refused for good: the delivery is recorded dead, not retried, and the webhook still goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn email_goes_through_ses() {
    let receiver = Receiver::start().await;
    let run = LeadId::new().as_str().to_ascii_lowercase();
    let domain = format!("{run}.leadrouter.test");
    let ana_email = format!("ana@{run}.sales.test");
    let ana_hook = format!("\"webhook:{}\"", receiver.hook("ana"));
    let doc = routing_doc(&receiver, 65536).replacen(&ana_hook, &format!("{ana_hook}, \"email:{ana_email}\""), 1)
        + &format!("\n[email]\nfrom = \"Leads <leads@{domain}>\"\n");
    let (pipeline, sqs, urls) = aws_pipeline(&doc).await;
    let pipeline = Arc::new(pipeline);
    let ses = aws_sdk_sesv2::Client::new(&leadrouter_tests::aws::sdk_config().await);
    ses.create_email_identity().email_identity(&domain).send().await.expect("verify the sender's domain");

    // Ingest until ana has a lead (weights 2:1, so within three).
    let ana_lead = async || {
        for i in 0..3 {
            let id =
                ingest(&pipeline, &format!("email=ses{i}%40{run}-buyer.com&country=US&job_title=CEO&company_size=900"))
                    .await;
            drain_queues(&pipeline, &sqs, &urls, Delivery::default()).await;
            let lead = pipeline.store.get(&LeadId::parse(&id).unwrap()).await.unwrap().unwrap();
            if lead.owner.as_deref() == Some("ana") {
                return lead;
            }
        }
        panic!("ana got none of three leads");
    };
    let lead = ana_lead().await;
    let deliveries = pipeline.store.deliveries(&lead.id).await.unwrap();
    let email = deliveries.iter().find(|d| d.target == format!("email:{ana_email}")).expect("an email delivery");
    assert!(email.delivered_at.is_some() && !email.dead, "{email:?}");
    assert_eq!(email.attempts, 1);
    // What SES received: moto keeps the raw messages.
    let endpoint = std::env::var("AWS_ENDPOINT_URL").unwrap();
    let data: Value = reqwest::get(format!("{endpoint}/moto-api/data.json")).await.unwrap().json().await.unwrap();
    let sent: Vec<&Value> = data["ses"]["RawMessage"]
        .as_array()
        .expect("moto's SES messages")
        .iter()
        .filter(|m| m["destinations"].as_array().is_some_and(|d| d.iter().any(|a| a == ana_email.as_str())))
        .collect();
    assert_eq!(sent.len(), 1, "one message to ana: {sent:?}");
    let raw = sent[0]["raw_data"].as_str().unwrap();
    assert!(raw.contains(&format!("Message-ID: <{}@leadrouter>", email.delivery_id)), "{raw}");
    assert!(raw.contains(&format!("From: Leads <leads@{domain}>")), "{raw}");
    // The body is quoted-printable: soft line breaks and `=3D` for `=`.
    let body = raw.replace("=\r\n", "").replace("=\n", "").replace("=3D", "=");
    assert!(body.contains(&format!("/v1/leads/{}/accept?rep=ana", lead.id)), "the accept link: {body}");
    assert_eq!(sent[0]["source"], format!("Leads <leads@{domain}>"));

    // The sender is no longer verified: refused for good, recorded, not retried.
    ses.delete_email_identity().email_identity(&domain).send().await.unwrap();
    let lead = ana_lead().await;
    let deliveries = pipeline.store.deliveries(&lead.id).await.unwrap();
    let email = deliveries.iter().find(|d| d.target.starts_with("email:")).expect("an email delivery");
    assert!(email.dead && email.delivered_at.is_none(), "{email:?}");
    assert_eq!(email.attempts, 1, "not retried");
    assert!(email.last_error.as_deref().unwrap().contains("refused for good by SES"), "{email:?}");
    let hook = deliveries.iter().find(|d| d.target.starts_with("webhook:")).unwrap();
    assert!(hook.delivered_at.is_some(), "the rep's webhook still went");
}

/// On AWS the rate limit's client is the request's `sourceIp` (API Gateway or the function
/// URL), and the same lead twice in one assign batch is one write, not a rejected transaction.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rate_limit_counts_source_ips_and_a_lead_twice_in_a_batch_is_one_write() {
    use leadrouter::domain::Stage;
    use leadrouter::ports::Message;
    let receiver = Receiver::start().await;
    let doc = routing_doc(&receiver, 65536)
        .replace("allow_private_targets = true", "allow_private_targets = true\nrate_limit_per_minute = 2");
    let (pipeline, _sqs, _urls) = aws_pipeline(&doc).await;
    let pipeline = Arc::new(pipeline);
    // Built once, as a Lambda container does: its limiter counts across requests.
    let router = leadrouter::http::public_router(pipeline.clone());
    let post = async |ip: &str, n: usize| {
        let event = function_url_event(
            "POST",
            "/v1/leads",
            "application/x-www-form-urlencoded",
            &format!("email=ip{n}%40corp.com"),
        )
        .replace("192.0.2.1", ip);
        let request = lambda_http::request::from_str(&event).expect("a function URL event");
        let request = request.map(|b| axum::body::Body::from(b.as_ref().to_vec()));
        let response = router.clone().oneshot(request).await.unwrap();
        let status = response.status().as_u16();
        let retry = response.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
        let body = axum::body::to_bytes(response.into_body(), 1 << 16).await.unwrap();
        (status, retry, serde_json::from_slice::<Value>(&body).unwrap_or_default())
    };
    let router_statuses = [post("198.51.100.1", 0).await.0, post("198.51.100.1", 1).await.0];
    assert_eq!(router_statuses, [202, 202]);
    let (status, retry, _) = post("198.51.100.1", 2).await;
    assert_eq!((status, retry.is_some()), (429, true));
    let (status, _, body) = post("198.51.100.2", 3).await;
    assert_eq!(status, 202, "another address has its own allowance");

    let id = LeadId::parse(body["lead_id"].as_str().unwrap()).unwrap();
    let at = chrono::Utc::now();
    let twice = vec![
        Message { unique_at: Some(at), ..Message::lead(id.clone()) },
        Message { unique_at: Some(at + chrono::Duration::milliseconds(1)), ..Message::lead(id.clone()) },
    ];
    let results = pipeline.run(Stage::Assign, twice).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    let lead = pipeline.store.get(&id).await.unwrap().unwrap();
    assert_eq!(lead.history.iter().filter(|h| h.to.as_str() == "assigned").count(), 1, "{:?}", lead.history);
}
