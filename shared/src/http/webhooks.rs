//! The ad platforms' webhooks and generic signed webhooks.

use super::ingest::accepted;
use super::openapi::{Op, STORE_DOWN, TOO_LARGE, free_object, string};
use super::{AppState, Problem, read_body};
use crate::domain::{IntakeOptions, LeadId};
use crate::ports::{LeadStore, Notifier, Queue, StoreError};
use crate::sources::{Delivery, PayloadError, Refusal, Reply, Source, secret_matches};
use axum::Json;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use std::collections::BTreeMap;
use utoipa::openapi::path::ParameterIn;

fn payload_problem(e: PayloadError) -> Problem {
    match e {
        PayloadError::Malformed(m) => Problem::bad_request(m),
        PayloadError::Invalid(m) => Problem::invalid(m, vec![]),
    }
}

fn refusal_problem(e: Refusal) -> Problem {
    match e {
        Refusal::Unauthenticated(m) => Problem::unauthorized(m),
        Refusal::Payload(p) => payload_problem(p),
        Refusal::Fields { detail, errors } => Problem::invalid(detail, errors),
    }
}

fn stored_problem(e: StoreError) -> Problem {
    tracing::error!(error = %e, "webhook leads could not be stored");
    Problem::unavailable("the leads could not be stored; retry the webhook")
}

fn not_configured(source: &str) -> Problem {
    Problem::not_found(format!("the source '{source}' is not configured"))
}

fn secret_unset(what: &str) -> Problem {
    Problem::unavailable(format!("{what} is not set on this server, so the source cannot be verified"))
}

/// Any webhook source: its secret, the body, the source's own verification and reading, then
/// the leads stored durably before the answer the source's platform expects.
async fn receive<S: LeadStore, Q: Queue, N: Notifier>(
    p: &AppState<S, Q, N>,
    source: &dyn Source,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Problem> {
    let (secret_name, set_in) = source.signing_secret();
    let Some(secret) = p.secrets.source(&secret_name) else { return Err(secret_unset(&set_in)) };
    let body = read_body(&headers, body, p.settings.server.max_body_bytes).await?;
    let delivery = Delivery {
        headers: &headers,
        body: &body,
        now: p.clock.now().timestamp(),
        intake: IntakeOptions { default_region: p.settings.dedup.default_phone_region },
    };
    let subs = source.receive(&delivery, secret).map_err(refusal_problem)?;
    let stored = p.accept_many(subs).await.map_err(stored_problem)?;
    let lead_ids: Vec<LeadId> = stored.into_iter().map(|a| a.lead_id).collect();
    Ok(match (source.reply(), lead_ids.first()) {
        (Reply::Stored, Some(id)) => accepted(id),
        (Reply::Listed, _) | (Reply::Stored, None) => {
            Json(super::openapi::MetaAccepted { accepted: lead_ids.len(), lead_ids }).into_response()
        }
        (Reply::Empty, _) => (StatusCode::OK, Json(json!({}))).into_response(),
    })
}

/// Meta's subscription check: `hub.mode=subscribe`, the verify token, echo the challenge.
pub async fn meta_verify<S: LeadStore, Q: Queue, N: Notifier>(
    State(p): State<AppState<S, Q, N>>,
    RawQuery(query): RawQuery,
) -> Result<Response, Problem> {
    if p.settings.sources.meta.is_none() {
        return Err(not_configured("meta"));
    }
    let Some(token) = p.secrets.source("meta.verify_token") else {
        return Err(secret_unset("[sources.meta] verify_token"));
    };
    let params: BTreeMap<String, String> = serde_urlencoded::from_str(query.as_deref().unwrap_or(""))
        .map_err(|e| Problem::bad_request(format!("the query string is malformed: {e}")))?;
    let get = |k: &str| params.get(k).map(String::as_str).unwrap_or("");
    if get("hub.mode") != "subscribe" || !secret_matches(get("hub.verify_token"), token) {
        return Err(Problem::forbidden("hub.mode must be subscribe and hub.verify_token must match"));
    }
    let challenge = get("hub.challenge").to_owned();
    Ok(([(header::CONTENT_TYPE, "text/plain")], challenge).into_response())
}

/// `leadgen` notifications: 200 once every change is durably recorded; fields are fetched later.
pub async fn meta_notify<S: LeadStore, Q: Queue, N: Notifier>(
    State(p): State<AppState<S, Q, N>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Problem> {
    let Some(meta) = &p.settings.sources.meta else { return Err(not_configured("meta")) };
    receive(&p, meta, headers, body).await
}

/// Google Ads lead forms: the key in the body, columns by `column_id`, `lead_id` the identity.
pub async fn google<S: LeadStore, Q: Queue, N: Notifier>(
    State(p): State<AppState<S, Q, N>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Problem> {
    let Some(google) = &p.settings.sources.google else { return Err(not_configured("google")) };
    receive(&p, google, headers, body).await
}

/// Any JSON, signed `t=<unix>,v1=<hex>`, mapped by the source's JSON Pointers.
pub async fn generic<S: LeadStore, Q: Queue, N: Notifier>(
    State(p): State<AppState<S, Q, N>>,
    Path(source): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Problem> {
    let Some(generic) = p.settings.sources.generic.get(&source) else { return Err(not_configured(&source)) };
    receive(&p, generic, headers, body).await
}

pub(super) fn meta_verify_op() -> Op {
    Op::new("metaVerify", "webhooks", "Meta's subscription check")
        .param("hub.mode", ParameterIn::Query, false, string(), "subscribe")
        .param("hub.verify_token", ParameterIn::Query, false, string(), "[sources.meta] verify_token")
        .param("hub.challenge", ParameterIn::Query, false, string(), "Echoed back on success.")
        .ok("200", "The challenge, as given.", "text/plain", string())
        .problems(&[
            ("400", "Malformed query string."),
            ("403", "Wrong mode or verify token."),
            ("404", "The meta source is not configured."),
            STORE_DOWN,
        ])
}

pub(super) fn meta_notify_op() -> Op {
    Op::new("metaNotify", "webhooks", "Meta leadgen change notifications")
        .param(
            "X-Hub-Signature-256",
            ParameterIn::Header,
            true,
            string(),
            "sha256=<hex HMAC-SHA256 of the raw body, keyed by the app secret>",
        )
        .body(
            &[("application/json", free_object("Meta's page webhook body; changes whose field is leadgen are taken."))],
            "",
        )
        .ok_json::<super::openapi::MetaAccepted>(
            "200",
            "Every leadgen change is durably recorded; fields are fetched next.",
        )
        .problems(&[
            ("400", "Not JSON, or not the notification's shape."),
            ("401", "Missing or wrong X-Hub-Signature-256."),
            ("404", "The meta source is not configured."),
            TOO_LARGE,
            ("422", "A leadgen change without a usable leadgen_id."),
            STORE_DOWN,
        ])
}

pub(super) fn google_op() -> Op {
    Op::new("googleLead", "webhooks", "Google Ads lead form webhook")
        .body(&[("application/json", free_object("lead_id, user_column_data, google_key, is_test, campaign ids…"))], "")
        .ok("200", "Stored.", "application/json", free_object("An empty object."))
        .problems(&[
            ("400", "Not JSON."),
            ("401", "google_key missing or wrong."),
            ("404", "The google source is not configured."),
            TOO_LARGE,
            ("422", "lead_id is missing."),
            STORE_DOWN,
        ])
}

pub(super) fn generic_op() -> Op {
    Op::new("genericLead", "webhooks", "Any signed JSON, mapped by the source's JSON Pointers")
        .idempotency()
        .param("source", ParameterIn::Path, true, string(), "A [sources.generic.NAME] of the routing document.")
        .param(
            "X-Leadrouter-Signature",
            ParameterIn::Header,
            true,
            string(),
            "t=<unix>,v1=<hex HMAC-SHA256 of \"t.body\">; five minutes' tolerance.",
        )
        .body(&[("application/json", free_object("Any JSON document."))], "")
        .ok_json::<super::openapi::LeadAccepted>("202", "Stored durably; routing has begun.")
        .problems(&[
            ("400", "Not JSON, or a malformed Idempotency-Key."),
            ("401", "Missing, wrong or stale signature."),
            ("404", "No such source."),
            TOO_LARGE,
            ("422", "The map found neither email nor phone (the empty pointers are named), or a field is invalid."),
            STORE_DOWN,
        ])
}

/// HubSpot's webhooks: outcomes of the contacts leadrouter created (`lifecyclestage`,
/// `hs_lead_status` changes, mapped by `[crm.hubspot.outcomes]`), forwards only. Signed with
/// `X-HubSpot-Signature-v3` over method + `public_url` + path and query + body + timestamp.
pub async fn hubspot<S: LeadStore, Q: Queue, N: Notifier>(
    State(p): State<AppState<S, Q, N>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Problem> {
    use crate::crm::{CrmName, hubspot};
    // Unsigned is refused first, whether or not HubSpot is configured here.
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).filter(|v| !v.trim().is_empty());
    let (Some(signature), Some(timestamp)) = (header("x-hubspot-signature-v3"), header("x-hubspot-request-timestamp"))
    else {
        return Err(Problem::unauthorized("X-HubSpot-Signature-v3 and X-HubSpot-Request-Timestamp are required"));
    };
    let Some(settings) = &p.settings.crm.hubspot else { return Err(not_configured("hubspot")) };
    let Some(secret) = p.secrets.source("crm.hubspot.webhook_secret") else {
        return Err(secret_unset("[crm.hubspot] webhook_secret"));
    };
    let body = read_body(&headers, body, p.settings.server.max_body_bytes).await?;
    let path = uri.path_and_query().map(|pq| pq.as_str()).unwrap_or("/v1/webhooks/hubspot");
    let signed_uri = format!("{}{path}", p.settings.server.public_url);
    let now_ms = p.clock.now().timestamp_millis();
    if !hubspot::signature_valid(secret, "POST", &signed_uri, &body, timestamp, signature, now_ms) {
        return Err(Problem::unauthorized(
            "X-HubSpot-Signature-v3 does not match (or the timestamp is over five minutes off); the signed URI is \
             [server] public_url + the path",
        ));
    }
    let events: Vec<hubspot::Event> = serde_json::from_slice(&body)
        .map_err(|e| Problem::bad_request(format!("the body is not HubSpot's array of events: {e}")))?;
    let mut outcomes = Vec::new();
    for e in &events {
        let Some((record, status, said)) = hubspot::outcome_of(settings, e) else { continue };
        // Contacts leadrouter did not create are not ours to move.
        if let Some(lead) = p.crm_lead(CrmName::HubSpot, &record).await.map_err(super::store_down)? {
            outcomes.push((lead, status, said));
        }
    }
    let matched = outcomes.len();
    let moved = p.crm_outcomes(CrmName::HubSpot, outcomes).await.map_err(super::store_down)?;
    Ok(Json(json!({ "events": events.len(), "matched": matched, "moved": moved })).into_response())
}

pub(super) fn hubspot_op() -> Op {
    Op::new("hubspotWebhook", "webhooks", "HubSpot webhook events: outcomes of the contacts leadrouter created")
        .param(
            "X-HubSpot-Signature-v3",
            ParameterIn::Header,
            true,
            string(),
            "base64 HMAC-SHA256 of method + URI + body + timestamp, keyed by the app's client secret",
        )
        .param(
            "X-HubSpot-Request-Timestamp",
            ParameterIn::Header,
            true,
            string(),
            "Milliseconds since the epoch; at most five minutes off.",
        )
        .body(&[("application/json", free_object("A JSON array of HubSpot events (contact.propertyChange, …)."))], "")
        .ok(
            "200",
            "Taken: how many events came, how many were about leadrouter's contacts with a mapped value, and how \
             many leads moved.",
            "application/json",
            free_object("{\"events\": n, \"matched\": n, \"moved\": n}"),
        )
        .problems(&[
            ("400", "Not a JSON array of events."),
            ("401", "Missing or wrong signature, or a stale timestamp."),
            ("404", "[crm.hubspot] is not configured."),
            TOO_LARGE,
            STORE_DOWN,
        ])
}
