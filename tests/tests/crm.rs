//! The CRM loop end to end in the embedded runtime, against local servers playing HubSpot and
//! Salesforce (`leadrouter_tests::crm`): a routed lead upserted once with its owner, a repeat
//! a no-op, a reassignment one owner update, a 429 retried after its wait, a refused record
//! dead with the CRM's words, outcomes from each CRM moving the funnel, and stickiness by the
//! CRM's account owner.

use leadrouter::domain::LeadId;
use leadrouter::ports::LeadStore;
use leadrouter_tests::crm::{FakeHubSpot, FakeSalesforce, Scripted};
use leadrouter_tests::{Receiver, TestApp, TestClock};
use serde_json::{Value, json};
use std::sync::Arc;

const HS_TOKEN: &str = "pat-na1-test-token";
const HS_SECRET: &str = "hubspot-client-secret";
const SF_ID: &str = "3MVG9-test-client";
const SF_SECRET: &str = "sf-test-secret";
const ANA_HS: &str = "41629779";
const BEN_HS: &str = "52000001";
const ANA_SF: &str = "005000000000001AAA";
const BEN_SF: &str = "005000000000002AAA";

struct Crms {
    hs: FakeHubSpot,
    sf: FakeSalesforce,
}

async fn crms() -> Crms {
    let hs = FakeHubSpot::start(HS_TOKEN).await;
    hs.add_owner(ANA_HS, "ana@example.com");
    hs.add_owner(BEN_HS, "ben@example.com");
    let sf = FakeSalesforce::start(SF_ID, SF_SECRET, "Leadrouter_Id__c").await;
    sf.add_user(ANA_SF, "ana@example.com");
    sf.add_user(BEN_SF, "ben@example.com");
    Crms { hs, sf }
}

/// ana has her CRM users in the roster; ben is found by his email.
fn doc(r: &Receiver, c: &Crms, which: &[&str], stickiness: Option<&str>) -> String {
    let mut d = format!(
        r#"
[server]
admin_token = "{admin}"
webhook_secret = "{webhook}"
public_url = "http://leadrouter.test"
allow_private_targets = true

[[reps]]
id = "ana"
name = "Ana Ortiz"
email = "ana@example.com"
notify = ["webhook:{ana}"]
crm_owner = {{ hubspot = "{ANA_HS}", salesforce = "{ANA_SF}" }}

[[reps]]
id = "ben"
name = "Ben Okafor"
email = "ben@example.com"
notify = ["webhook:{ben}"]

[[pools]]
id = "everyone"
match = {{}}
reps = [{{ id = "ana" }}, {{ id = "ben" }}]
"#,
        admin = leadrouter_tests::ADMIN_TOKEN,
        webhook = leadrouter_tests::WEBHOOK_SECRET,
        ana = r.hook("ana"),
        ben = r.hook("ben"),
    );
    if which.contains(&"hubspot") {
        d.push_str(&format!(
            "\n[crm.hubspot]\ntoken = \"{HS_TOKEN}\"\nwebhook_secret = \"{HS_SECRET}\"\napi_base_url = \"{}\"\n",
            c.hs.url
        ));
    }
    if which.contains(&"salesforce") {
        d.push_str(&format!(
            "\n[crm.salesforce]\ninstance_url = \"{}\"\nclient_id = \"{SF_ID}\"\nclient_secret = \"{SF_SECRET}\"\n\
             external_id_field = \"Leadrouter_Id__c\"\napi_version = \"v63.0\"\n",
            c.sf.url
        ));
    }
    if let Some(s) = stickiness {
        d.push_str(&format!("\n[stickiness]\ncrm = \"{s}\"\n"));
    }
    d
}

async fn app(c: &Crms, which: &[&str], stickiness: Option<&str>) -> TestApp {
    let (hs, sf) = (c.hs.clone(), c.sf.clone());
    let which: Vec<String> = which.iter().map(|s| s.to_string()).collect();
    let stickiness = stickiness.map(str::to_owned);
    TestApp::spawn_custom(
        move |r, _| {
            let which: Vec<&str> = which.iter().map(String::as_str).collect();
            doc(r, &Crms { hs: hs.clone(), sf: sf.clone() }, &which, stickiness.as_deref())
        },
        Arc::new(TestClock::default()),
    )
    .await
}

async fn post_lead(app: &TestApp, email: &str, company: Option<&str>) -> String {
    let mut fields = vec![("email", email), ("first_name", "Dana"), ("last_name", "Scully"), ("country", "US")];
    if let Some(c) = company {
        fields.push(("company", c));
    }
    let r = app.post_form(&fields).await;
    assert_eq!(r.status(), 202);
    r.json::<Value>().await.unwrap()["lead_id"].as_str().unwrap().to_owned()
}

fn crm_deliveries(lead: &Value, recipient: &str) -> Vec<Value> {
    lead["deliveries"].as_array().unwrap().iter().filter(|d| d["recipient"] == recipient).cloned().collect()
}

async fn wait_for(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    while !check() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Adds rep `cy`, whose HubSpot owner id (999) HubSpot does not know, moves the lead to them, and
/// waits for the pipeline to settle: HubSpot refuses the record for good.
async fn moved_to_an_owner_hubspot_does_not_know(app: &TestApp, id: &str) {
    let r = app
        .admin_send(
            reqwest::Method::PUT,
            "/v1/reps/cy",
            Some(&json!({"name": "Cy", "notify": ["log:"], "crm_owner": {"hubspot": "999"}, "pools": ["everyone"]})),
        )
        .await;
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    let r = app
        .admin_send(
            reqwest::Method::POST,
            &format!("/v1/leads/{id}/assign"),
            Some(&json!({"rep": "cy", "by": "Maria", "force": true})),
        )
        .await;
    assert_eq!(r.status(), 200);
    app.settle().await;
}

#[tokio::test]
async fn a_routed_lead_is_one_hubspot_contact_with_its_owner_and_a_move_updates_the_owner() {
    let c = crms().await;
    let app = app(&c, &["hubspot"], None).await;
    let id = post_lead(&app, "dana@fbi-example.com", Some("FBI")).await;
    let lead = app.wait_status(&id, &["notified"]).await;
    let owner = lead["owner"].as_str().unwrap().to_owned();
    let owner_hs = if owner == "ana" { ANA_HS } else { BEN_HS };

    let upserts = c.hs.requests("/crm/v3/objects/contacts/batch/upsert");
    assert_eq!(upserts.len(), 1, "one upsert for one routed lead");
    let input = &upserts[0].body["inputs"][0];
    assert_eq!(input["idProperty"], "email");
    assert_eq!(input["id"], "dana@fbi-example.com");
    assert_eq!(input["properties"]["hubspot_owner_id"], owner_hs);
    assert_eq!(input["properties"]["leadrouter_lead_id"], id.as_str());
    assert_eq!(input["properties"]["leadrouter_source"], "web");
    assert_eq!(input["properties"]["firstname"], "Dana");
    assert_eq!(input["properties"]["company"], "FBI");
    assert!(input["properties"]["leadrouter_why"].as_str().unwrap().contains("round-robin"), "{input}");
    assert_eq!(upserts[0].headers["authorization"], format!("Bearer {HS_TOKEN}").as_str());

    let contacts = c.hs.contacts_where("email", "dana@fbi-example.com");
    assert_eq!(contacts.len(), 1);
    assert_eq!(lead["crm"]["hubspot"], contacts[0].0.as_str(), "the contact id is kept on the lead");
    let d = crm_deliveries(&lead, "crm:hubspot");
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(d[0]["kind"], "crm_upsert");
    assert_eq!(d[0]["state"], "delivered");

    // The same upsert again (a redelivered message, a resync): still one contact.
    let pipeline = &app.runtime.pipeline;
    let stored = pipeline.store.get(&LeadId::parse(&id).unwrap()).await.unwrap().unwrap();
    let crm = pipeline.crm.as_ref().unwrap();
    let roster = pipeline.roster().await.unwrap();
    let again = crm.upsert(leadrouter::crm::CrmName::HubSpot, &stored, roster.rep(&owner).unwrap()).await;
    assert_eq!(again.unwrap().as_deref(), Some(contacts[0].0.as_str()));
    assert_eq!(c.hs.contacts_where("email", "dana@fbi-example.com").len(), 1);

    // A manager moves the lead: one more upsert, the contact's owner follows.
    let other = if owner == "ana" { "ben" } else { "ana" };
    let other_hs = if other == "ana" { ANA_HS } else { BEN_HS };
    let r = app
        .admin_send(
            reqwest::Method::POST,
            &format!("/v1/leads/{id}/assign"),
            Some(&json!({"rep": other, "by": "Maria"})),
        )
        .await;
    assert_eq!(r.status(), 200);
    wait_for("the owner update", || c.hs.requests("/crm/v3/objects/contacts/batch/upsert").len() == 2).await;
    app.settle().await;
    let contacts = c.hs.contacts_where("email", "dana@fbi-example.com");
    assert_eq!(contacts.len(), 1, "still one contact");
    assert_eq!(contacts[0].1["hubspot_owner_id"], other_hs);
    if other == "ben" {
        // ben has no crm_owner: found by his email through the owners API.
        let asked = c.hs.requests("/crm/v3/owners");
        assert!(asked.iter().any(|r| r.query.contains("ben%40example.com")), "{asked:?}");
    }
    let moved = crm_deliveries(&app.lead(&id).await, "crm:hubspot");
    assert_eq!(moved[0]["state"], "delivered");
    assert_ne!(moved[0]["delivery_id"], d[0]["delivery_id"], "each owner's upsert is a delivery of its own");
}

#[tokio::test]
async fn a_hubspot_429_is_retried_after_its_wait_and_a_refused_record_is_dead_with_hubspots_words() {
    let c = crms().await;
    c.hs.script_upserts(&[Scripted { status: 429, retry_after: Some(1) }]);
    let app = app(&c, &["hubspot"], None).await;
    let id = post_lead(&app, "mulder@x-files-example.com", None).await;
    let lead = app.wait_status(&id, &["notified"]).await;
    let upserts = c.hs.requests("/crm/v3/objects/contacts/batch/upsert");
    assert_eq!(upserts.len(), 2, "the 429, then the upsert");
    let gap = upserts[1].at - upserts[0].at;
    assert!(gap >= std::time::Duration::from_millis(950), "Retry-After: 1 honoured, waited {gap:?}");
    let d = crm_deliveries(&lead, "crm:hubspot");
    assert_eq!(d[0]["state"], "delivered");
    assert_eq!(d[0]["attempts"], 2);

    // A rep whose HubSpot owner id HubSpot does not know: the record is refused for good.
    let before = c.hs.requests("/crm/v3/objects/contacts/batch/upsert").len();
    moved_to_an_owner_hubspot_does_not_know(&app, &id).await;
    let lead = app.wait_status(&id, &["notified"]).await;
    let dead: Vec<Value> = crm_deliveries(&lead, "crm:hubspot").into_iter().filter(|d| d["state"] == "dead").collect();
    assert_eq!(dead.len(), 1, "{lead}");
    let full = app.runtime.pipeline.store.deliveries(&LeadId::parse(&id).unwrap()).await.unwrap();
    let err = full.iter().find(|d| d.dead).and_then(|d| d.last_error.clone()).unwrap();
    assert!(err.contains("INVALID_OWNER_ID"), "HubSpot's message is kept: {err}");
    assert_eq!(c.hs.requests("/crm/v3/objects/contacts/batch/upsert").len(), before + 1, "never retried");

    // The cause fixed (the owner exists now), `crm resync` sends it again: one update.
    c.hs.add_owner("999", "cy@example.com");
    let r = app.runtime.pipeline.crm_resync(chrono::DateTime::<chrono::Utc>::MIN_UTC).await.unwrap();
    assert_eq!((r.tried, r.delivered, r.failed.len()), (1, 1, 0), "{r:?}");
    let contacts = c.hs.contacts_where("email", "mulder@x-files-example.com");
    assert_eq!(contacts.len(), 1);
    assert_eq!(contacts[0].1["hubspot_owner_id"], "999");
    let lead = app.lead(&id).await;
    assert_eq!(crm_deliveries(&lead, "crm:hubspot")[0]["state"], "delivered");
    let again = app.runtime.pipeline.crm_resync(chrono::DateTime::<chrono::Utc>::MIN_UTC).await.unwrap();
    assert_eq!(again.tried, 0, "nothing left to send");
}

/// A CRM's refusal can quote the lead's fields; once the person's data is erased, their lead's
/// CRM deliveries keep that they failed, not what the CRM said.
#[tokio::test]
async fn an_erased_leads_crm_deliveries_keep_no_words_of_the_crm() {
    let c = crms().await;
    let app = app(&c, &["hubspot"], None).await;
    let id = post_lead(&app, "scully@x-files-example.com", None).await;
    app.wait_status(&id, &["notified"]).await;
    moved_to_an_owner_hubspot_does_not_know(&app, &id).await;
    let lead_id = LeadId::parse(&id).unwrap();
    let error = |ds: &[leadrouter::ports::Delivery]| ds.iter().find(|d| d.dead).and_then(|d| d.last_error.clone());
    let before = error(&app.runtime.pipeline.store.deliveries(&lead_id).await.unwrap()).expect("a dead delivery");
    assert!(before.contains("INVALID_OWNER_ID"), "{before}");

    let r = app
        .admin_send(reqwest::Method::POST, "/v1/erasures", Some(&json!({"email": "scully@x-files-example.com"})))
        .await;
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    let after = error(&app.runtime.pipeline.store.deliveries(&lead_id).await.unwrap()).expect("still a dead delivery");
    assert!(!after.contains("INVALID_OWNER_ID") && after.contains("erased"), "{after}");
}

/// An erasure asked for while the lead is still being routed waits for it to settle (the lead
/// is routed and its rep told), then erases it, and its CRM delivery, refused meanwhile, keeps
/// no words of the CRM either.
#[tokio::test]
async fn an_erasure_waiting_for_its_lead_to_settle_erases_it_then_and_scrubs_the_crms_words() {
    use leadrouter::domain::{Contact, Email, Lead, Stage};
    use leadrouter::ports::{Message, Queue};

    // A HubSpot that knows no owners: ana's owner id, given in the roster, is refused.
    let hs = FakeHubSpot::start(HS_TOKEN).await;
    let sf = FakeSalesforce::start(SF_ID, SF_SECRET, "Leadrouter_Id__c").await;
    let app = app(&Crms { hs, sf }, &["hubspot"], None).await;
    // A lead caught between two stages: stored, not yet deduplicated.
    let contact = Contact {
        email: Email::parse("skinner@fbi-example.com").ok(),
        first_name: Some("Walter".into()),
        ..Contact::default()
    };
    let lead = Lead::new(LeadId::new(), "web".into(), contact, chrono::Utc::now());
    let id = lead.id.clone();
    app.runtime.pipeline.store.insert(lead).await.unwrap();
    let r = app.admin_send(reqwest::Method::POST, "/v1/erasures", Some(&json!({"lead_id": id.to_string()}))).await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body, json!({"erased": [], "pending": [id.to_string()]}), "it waits for the lead to settle");

    let message = Message { lead_id: id.clone(), kind: None, unique_at: None };
    app.runtime.pipeline.queue.offer(Stage::Dedup, vec![message]).await.unwrap();
    let lead = app.wait_status(&id.to_string(), &["notified"]).await;
    app.settle().await;
    assert_eq!(lead["owner"], "ana", "the first turn is ana's");
    let lead = app.lead(&id.to_string()).await;
    assert!(lead.get("email").is_none() && lead.get("first_name").is_none(), "erased once settled: {lead}");
    assert!(
        lead["history"].as_array().unwrap().iter().any(|h| h["reason"] == "personal data erased (request)"),
        "{lead}"
    );
    let ds = app.runtime.pipeline.store.deliveries(&id).await.unwrap();
    let crm = ds.iter().find(|d| d.recipient == "crm:hubspot" && d.dead).expect("HubSpot refused the record");
    let error = crm.last_error.clone().unwrap_or_default();
    assert!(!error.contains("INVALID_OWNER_ID") && error.contains("erased"), "{error}");
}

#[tokio::test]
async fn a_hubspot_webhook_moves_the_lead_forwards_and_a_bad_signature_changes_nothing() {
    let c = crms().await;
    let app = app(&c, &["hubspot"], None).await;
    let id = post_lead(&app, "skinner@fbi-example.com", None).await;
    let lead = app.wait_status(&id, &["notified"]).await;
    let contact = lead["crm"]["hubspot"].as_str().unwrap().to_owned();
    let event = |property: &str, value: &str| {
        json!([{"eventId": 1, "subscriptionId": 2, "portalId": 3, "appId": 4, "occurredAt": 1764979200000u64,
            "subscriptionType": "contact.propertyChange", "attemptNumber": 0, "objectId": contact.parse::<u64>().unwrap(),
            "propertyName": property, "propertyValue": value, "changeSource": "CRM_UI", "sourceId": "userId:1"}])
        .to_string()
    };
    let send = |body: String, secret: &str| {
        let ts = chrono::Utc::now().timestamp_millis().to_string();
        let sig = leadrouter::crm::hubspot::sign(
            secret,
            "POST",
            "http://leadrouter.test/v1/webhooks/hubspot",
            body.as_bytes(),
            &ts,
        );
        app.client
            .post(app.url("/v1/webhooks/hubspot"))
            .header("content-type", "application/json")
            .header("x-hubspot-signature-v3", sig)
            .header("x-hubspot-request-timestamp", ts)
            .body(body)
            .send()
    };
    let r = send(event("lifecyclestage", "customer"), "not-the-secret").await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    assert_eq!(app.lead(&id).await["status"], "notified", "nothing changed");

    let r = send(event("hs_lead_status", "CONNECTED"), HS_SECRET).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["moved"], 1);
    let lead = app.lead(&id).await;
    assert_eq!(lead["status"], "contacted");
    let h = lead["history"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(h["by"], "crm:hubspot");
    assert!(h["reason"].as_str().unwrap().contains("HubSpot (hs_lead_status = CONNECTED)"), "{h}");
    assert!(lead["sla_due_at"].is_null(), "working it in the CRM stops the SLA clock");

    let r = send(event("lifecyclestage", "customer"), HS_SECRET).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(app.lead(&id).await["status"], "won");
    // Backwards is never taken.
    let r = send(event("hs_lead_status", "ATTEMPTED_TO_CONTACT"), HS_SECRET).await.unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["moved"], 0);
    assert_eq!(app.lead(&id).await["status"], "won");
    let m: Value = app.admin_get("/v1/metrics").await.json().await.unwrap();
    assert_eq!(m["sources"]["web"]["won"], 1, "{m}");
}

#[tokio::test]
async fn salesforce_upserts_by_external_id_keeps_the_owner_renews_its_token_and_reads_outcomes_back() {
    let c = crms().await;
    let app = app(&c, &["salesforce"], None).await;
    let id = post_lead(&app, "reyes@fbi-example.com", None).await;
    let lead = app.wait_status(&id, &["notified"]).await;
    let owner_sf = if lead["owner"] == "ana" { ANA_SF } else { BEN_SF };
    let upserts = c.sf.requests("/composite/sobjects/Lead/Leadrouter_Id__c");
    assert_eq!(upserts.len(), 1);
    assert_eq!(upserts[0].method, "PATCH");
    assert_eq!(upserts[0].headers["sforce-auto-assign"], "FALSE");
    let rec = &upserts[0].body["records"][0];
    assert_eq!(rec["Leadrouter_Id__c"], id.as_str());
    assert_eq!(rec["Company"], "fbi-example.com", "no company: the email's domain");
    assert_eq!(rec["LastName"], "Scully");
    assert_eq!(rec["OwnerId"], owner_sf);
    let leads = c.sf.leads_with(&id);
    assert_eq!(leads.len(), 1);
    assert_eq!(leads[0].1["OwnerId"], owner_sf, "kept: the org's assignment rule did not run");
    assert_eq!(app.lead(&id).await["crm"]["salesforce"], leads[0].0.as_str());

    // The org's API limit spent once: 403 REQUEST_LIMIT_EXCEEDED, retried; a validation rule
    // refusing a Lead: dead with Salesforce's words, never retried.
    c.sf.state.lock().unwrap().upsert_script.push_back(Scripted { status: 403, retry_after: None });
    c.sf.state.lock().unwrap().refuse_company = Some("Lone Gunmen".into());
    let limited = post_lead(&app, "byers@fbi-example.com", None).await;
    let refused = post_lead(&app, "frohike@lone-gunmen-example.com", Some("Lone Gunmen")).await;
    for id in [&limited, &refused] {
        app.wait_status(id, &["notified"]).await;
    }
    assert_eq!(c.sf.leads_with(&limited).len(), 1, "landed after the limit");
    assert!(c.sf.leads_with(&refused).is_empty());
    let full = app.runtime.pipeline.store.deliveries(&LeadId::parse(&refused).unwrap()).await.unwrap();
    let d = full.iter().find(|d| d.recipient == "crm:salesforce").unwrap();
    assert!(d.dead, "{d:?}");
    assert!(d.last_error.as_deref().unwrap().contains("FIELD_CUSTOM_VALIDATION_EXCEPTION"), "{d:?}");
    let full = app.runtime.pipeline.store.deliveries(&LeadId::parse(&limited).unwrap()).await.unwrap();
    let d = full.iter().find(|d| d.recipient == "crm:salesforce").unwrap();
    assert!(d.delivered_at.is_some() && d.attempts >= 2, "{d:?}");

    // The token expires: fetched again, and the next lead still lands.
    c.sf.expire_tokens();
    let id2 = post_lead(&app, "doggett@fbi-example.com", Some("FBI")).await;
    app.wait_status(&id2, &["notified"]).await;
    assert_eq!(c.sf.requests("/services/oauth2/token").len(), 2, "a new token after the 401");
    assert_eq!(c.sf.leads_with(&id2).len(), 1);

    // Outcomes come back through the sweep: a status, then a conversion closed won.
    c.sf.set_status(&id, "Working - Contacted");
    let swept = app.sweep().await;
    assert_eq!(swept.crm_outcomes, 1);
    let lead = app.lead(&id).await;
    assert_eq!(lead["status"], "contacted");
    assert_eq!(lead["history"].as_array().unwrap().last().unwrap()["by"], "crm:salesforce");
    c.sf.convert(&id, Some(true));
    c.sf.convert(&id2, None);
    app.sweep().await;
    assert_eq!(app.lead(&id).await["status"], "won");
    assert_eq!(app.lead(&id2).await["status"], "qualified", "conversion alone is not a win");
    let m: Value = app.admin_get("/v1/metrics").await.json().await.unwrap();
    assert_eq!(m["sources"]["web"]["won"], 1, "{m}");
    // The next pass reads from where this one stopped: nothing moves again.
    assert_eq!(app.sweep().await.crm_outcomes, 0);
}

#[tokio::test]
async fn stickiness_by_the_crms_account_owner_breaks_ties_by_the_latest_account_and_never_waits_long() {
    let c = crms().await;
    // Two companies on one domain: the most recently modified one's owner wins.
    c.hs.add_company("901", "acme-example.com", "Acme (old)", ANA_HS, "2026-01-01T00:00:00.000Z");
    c.hs.add_company("902", "acme-example.com", "Acme Inc", BEN_HS, "2026-11-01T00:00:00.000Z");
    let app = app(&c, &["hubspot"], Some("hubspot")).await;
    for i in 0..3 {
        let id = post_lead(&app, &format!("buyer{i}@acme-example.com"), Some("Acme")).await;
        let lead = app.wait_status(&id, &["notified"]).await;
        assert_eq!(lead["owner"], "ben", "{lead}");
        let why = lead["why"].as_str().unwrap();
        assert!(why.starts_with("existing owner: ben owns acme-example.com in HubSpot (account Acme Inc)"), "{why}");
    }
    let searches = c.hs.requests("/crm/v3/objects/companies/search");
    assert_eq!(searches.len(), 1, "the company's owners are cached");
    assert_eq!(searches[0].body["filterGroups"][0]["filters"][0]["value"], "acme-example.com");

    // ben away: the next account's owner, ana, takes it.
    let r = app
        .admin_send(
            reqwest::Method::PUT,
            "/v1/reps/ben",
            Some(&json!({"name": "Ben Okafor", "email": "ben@example.com", "active": false})),
        )
        .await;
    assert_eq!(r.status(), 200);
    let id = post_lead(&app, "buyer9@acme-example.com", Some("Acme")).await;
    let lead = app.wait_status(&id, &["notified"]).await;
    assert_eq!(lead["owner"], "ana");
    assert!(lead["why"].as_str().unwrap().contains("ana owns acme-example.com in HubSpot (account Acme (old))"));

    // A CRM that does not answer in time: round-robin, and why says so.
    c.hs.state.lock().unwrap().search_delay_ms = 2_000;
    let started = std::time::Instant::now();
    let id = post_lead(&app, "someone@slow-example.com", None).await;
    let lead = app.wait_status(&id, &["notified"]).await;
    assert!(started.elapsed() < std::time::Duration::from_millis(1_900), "routing did not wait for the CRM");
    let why = lead["why"].as_str().unwrap();
    assert!(why.contains("round-robin turn") && why.contains("HubSpot did not answer within 400 ms"), "{why}");
    // The slow answer still came, and was kept: the company's next lead is decided at once.
    c.hs.add_company("903", "slow-example.com", "Slow Co", ANA_HS, "2026-11-01T00:00:00.000Z");
    tokio::time::sleep(std::time::Duration::from_millis(2_200)).await;
    let searches = c.hs.requests("/crm/v3/objects/companies/search").len();
    let id = post_lead(&app, "another@slow-example.com", None).await;
    let lead = app.wait_status(&id, &["notified"]).await;
    assert_eq!(c.hs.requests("/crm/v3/objects/companies/search").len(), searches, "answered from the cache");
    assert!(lead["why"].as_str().unwrap().contains("round-robin"), "the cached answer had no owner then");
}
