//! The CRM loop on AWS's protocols: stage handlers fed from the emulator's SQS (every message
//! twice, shuffled), state in its DynamoDB, the CRMs played by local servers written from their
//! references (`leadrouter_tests::crm`). Each routed lead is one HubSpot contact and one
//! Salesforce Lead with its owner; outcomes from each CRM move the funnel.

use leadrouter::aws::AwsPipeline;
use leadrouter::domain::LeadId;
use leadrouter::ports::LeadStore;
use leadrouter_tests::aws::{Delivery, aws_pipeline, drain_queues};
use leadrouter_tests::crm::{FakeHubSpot, FakeSalesforce};
use leadrouter_tests::{ADMIN_TOKEN, WEBHOOK_SECRET};
use serde_json::{Value, json};
use std::sync::Arc;
use tower::ServiceExt;

async fn call(pipeline: &Arc<AwsPipeline>, req: axum::http::Request<axum::body::Body>) -> (u16, Value) {
    let res = leadrouter::http::router(pipeline.clone()).oneshot(req).await.unwrap();
    let status = res.status().as_u16();
    let body = axum::body::to_bytes(res.into_body(), 1 << 24).await.unwrap();
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routed_leads_land_in_both_crms_once_and_outcomes_come_home() {
    let hs = FakeHubSpot::start("pat-aws").await;
    hs.add_owner("41629779", "ana@example.com");
    hs.add_owner("52000001", "ben@example.com");
    let sf = FakeSalesforce::start("sf-id", "sf-secret", "Leadrouter_Id__c").await;
    sf.add_user("005000000000001AAA", "ana@example.com");
    sf.add_user("005000000000002AAA", "ben@example.com");
    let doc = format!(
        r#"
[server]
admin_token = "{ADMIN_TOKEN}"
webhook_secret = "{WEBHOOK_SECRET}"
public_url = "https://api.example.com"

[[reps]]
id = "ana"
email = "ana@example.com"
notify = ["log:"]

[[reps]]
id = "ben"
email = "ben@example.com"
notify = ["log:"]

[[pools]]
id = "everyone"
reps = [{{ id = "ana" }}, {{ id = "ben" }}]

[crm.hubspot]
token = "pat-aws"
webhook_secret = "hs-secret"
api_base_url = "{hs}"

[crm.salesforce]
instance_url = "{sf}"
client_id = "sf-id"
client_secret = "sf-secret"
"#,
        hs = hs.url,
        sf = sf.url
    );
    let (pipeline, sqs, urls) = aws_pipeline(&doc).await;
    let pipeline = Arc::new(pipeline);
    let mut ids = Vec::new();
    for i in 0..6 {
        let req = axum::http::Request::post("/v1/leads")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(axum::body::Body::from(format!("email=buyer{i}%40corp{i}-example.com&last_name=Buyer{i}")))
            .unwrap();
        let (status, body) = call(&pipeline, req).await;
        assert_eq!(status, 202);
        ids.push(body["lead_id"].as_str().unwrap().to_owned());
    }
    drain_queues(&pipeline, &sqs, &urls, Delivery { twice: true, shuffle: true }).await;
    for (i, id) in ids.iter().enumerate() {
        let lead = pipeline.store.get(&LeadId::parse(id).unwrap()).await.unwrap().unwrap();
        assert_eq!(lead.status.as_str(), "notified", "{:?}", lead.history);
        let contacts = hs.contacts_where("email", &format!("buyer{i}@corp{i}-example.com"));
        assert_eq!(contacts.len(), 1, "one contact per lead, though every message came twice");
        let owner_hs = if lead.owner.as_deref() == Some("ana") { "41629779" } else { "52000001" };
        assert_eq!(contacts[0].1["hubspot_owner_id"], owner_hs);
        assert_eq!(lead.crm.get("hubspot"), Some(&contacts[0].0));
        let sf_leads = sf.leads_with(id);
        assert_eq!(sf_leads.len(), 1);
        let owner_sf = if lead.owner.as_deref() == Some("ana") { "005000000000001AAA" } else { "005000000000002AAA" };
        assert_eq!(sf_leads[0].1["OwnerId"], owner_sf);
    }
    let upserts = hs.requests("/crm/v3/objects/contacts/batch/upsert");
    let inputs: usize = upserts.iter().map(|r| r.body["inputs"].as_array().unwrap().len()).sum();
    assert_eq!(inputs, 6, "each lead sent once");
    assert!(upserts.len() < 6, "leads handled together share a batch request ({} requests)", upserts.len());

    // HubSpot says the first lead's contact became a customer: won.
    let contact = hs.contacts_where("email", "buyer0@corp0-example.com")[0].0.clone();
    let body = json!([{"subscriptionType": "contact.propertyChange", "objectId": contact.parse::<u64>().unwrap(),
        "propertyName": "lifecyclestage", "propertyValue": "customer", "occurredAt": 1, "eventId": 1}])
    .to_string();
    let ts = chrono::Utc::now().timestamp_millis().to_string();
    let sig = leadrouter::crm::hubspot::sign(
        "hs-secret",
        "POST",
        "https://api.example.com/v1/webhooks/hubspot",
        body.as_bytes(),
        &ts,
    );
    let webhook = |sig: &str| {
        axum::http::Request::post("/v1/webhooks/hubspot")
            .header("content-type", "application/json")
            .header("x-hubspot-signature-v3", sig)
            .header("x-hubspot-request-timestamp", &ts)
            .body(axum::body::Body::from(body.clone()))
            .unwrap()
    };
    assert_eq!(call(&pipeline, webhook("AAAA")).await.0, 401, "a bad signature is refused");
    let (status, answer) = call(&pipeline, webhook(&sig)).await;
    assert_eq!((status, answer["moved"].clone()), (200, json!(1)));
    // Salesforce: the second lead converted and closed won, read back by the sweep.
    sf.convert(&ids[1], Some(true));
    let swept = pipeline.sweep(Some(chrono::Duration::minutes(5))).await.unwrap();
    assert_eq!(swept.crm_outcomes, 1);
    for id in &ids[..2] {
        assert_eq!(pipeline.store.get(&LeadId::parse(id).unwrap()).await.unwrap().unwrap().status.as_str(), "won");
    }
    let req = axum::http::Request::get("/v1/metrics")
        .header("authorization", format!("Bearer {ADMIN_TOKEN}"))
        .body(axum::body::Body::empty())
        .unwrap();
    let (_, m) = call(&pipeline, req).await;
    assert_eq!(m["sources"]["web"]["won"], 2, "{m}");
}
