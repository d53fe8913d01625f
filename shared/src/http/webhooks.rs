//! The ad platforms' webhooks and generic signed webhooks.

use super::ingest::{accepted, idempotency_key};
use super::{AppState, Problem, read_body};
use crate::domain::{Intake, IntakeOptions, LeadId, normalize, normalize_lenient};
use crate::pipeline::Submission;
use crate::ports::{LeadStore, Notifier, Queue, StoreError};
use crate::sources::{PayloadError, generic, google, meta};
use axum::Json;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use subtle::ConstantTimeEq;

fn payload_problem(e: PayloadError) -> Problem {
    match e {
        PayloadError::Malformed(m) => Problem::bad_request(m),
        PayloadError::Invalid(m) => Problem::invalid(m, vec![]),
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

fn equal(a: &str, b: &str) -> bool {
    !b.is_empty() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
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
    if get("hub.mode") != "subscribe" || !equal(get("hub.verify_token"), token) {
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
    if p.settings.sources.meta.is_none() {
        return Err(not_configured("meta"));
    }
    let Some(app_secret) = p.secrets.source("meta.app_secret") else {
        return Err(secret_unset("[sources.meta] app_secret"));
    };
    let body = read_body(&headers, body, p.settings.server.max_body_bytes).await?;
    if !meta::signature_valid(app_secret, header_str(&headers, "x-hub-signature-256"), &body) {
        return Err(Problem::unauthorized("X-Hub-Signature-256 is missing or does not match the body"));
    }
    let changes = meta::parse_notification(&body).map_err(payload_problem)?;
    let subs: Vec<Submission> = changes
        .into_iter()
        .map(|c| {
            let attributes = c.context.into_iter().map(|(k, v)| (format!("meta_{k}"), Value::String(v))).collect();
            let intake = Intake { contact: Default::default(), attributes, source: None, honeypot: false };
            let mut sub = Submission::new(LeadId::derived(&format!("meta:{}", c.leadgen_id)), "meta", intake);
            sub.source_ref = Some(c.leadgen_id);
            sub.fetch = true;
            sub
        })
        .collect();
    let accepted = p.accept_many(subs).await.map_err(stored_problem)?;
    let lead_ids: Vec<LeadId> = accepted.into_iter().map(|a| a.lead_id).collect();
    Ok(Json(super::openapi::MetaAccepted { accepted: lead_ids.len(), lead_ids }).into_response())
}

/// Google Ads lead forms: the key in the body, columns by `column_id`, `lead_id` the identity.
pub async fn google<S: LeadStore, Q: Queue, N: Notifier>(
    State(p): State<AppState<S, Q, N>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Problem> {
    if p.settings.sources.google_key.is_none() {
        return Err(not_configured("google"));
    }
    let Some(key) = p.secrets.source("google.key") else { return Err(secret_unset("[sources.google] key")) };
    let body = read_body(&headers, body, p.settings.server.max_body_bytes).await?;
    let lead = google::parse(&body).map_err(payload_problem)?;
    if !lead.key.as_deref().is_some_and(|k| equal(k, key)) {
        return Err(Problem::unauthorized("google_key is missing or wrong"));
    }
    let Some(lead_id) = lead.lead_id else { return Err(Problem::invalid("lead_id is missing or not an id", vec![])) };
    let opts = IntakeOptions { default_region: p.settings.dedup.default_phone_region };
    let (intake, reject) = match normalize_lenient(lead.fields.clone(), opts) {
        Ok(i) => (i, None),
        // A real person filled the form: keep what came, refuse it for routing, say why.
        Err(_) => (
            Intake { contact: Default::default(), attributes: Default::default(), source: None, honeypot: false },
            Some("the google lead has no usable email or phone".to_owned()),
        ),
    };
    let mut sub = Submission::new(LeadId::derived(&format!("google:{lead_id}")), "google", intake);
    sub.source_ref = Some(lead_id);
    sub.test = lead.is_test;
    sub.reject = reject;
    p.accept(sub).await.map_err(stored_problem)?;
    Ok((StatusCode::OK, Json(json!({}))).into_response())
}

/// Any JSON, signed `t=<unix>,v1=<hex>`, mapped by the source's JSON Pointers.
pub async fn generic<S: LeadStore, Q: Queue, N: Notifier>(
    State(p): State<AppState<S, Q, N>>,
    Path(source): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Problem> {
    let Some(cfg) = p.settings.sources.generic.get(&source) else { return Err(not_configured(&source)) };
    let Some(secret) = p.secrets.source(&format!("generic.{source}")) else {
        return Err(secret_unset(&format!("[sources.generic.{source}] secret")));
    };
    let body = read_body(&headers, body, p.settings.server.max_body_bytes).await?;
    generic::verify(secret, header_str(&headers, "x-leadrouter-signature"), &body, p.clock.now().timestamp())
        .map_err(|e| Problem::unauthorized(e.to_string()))?;
    let key = idempotency_key(&headers)?;
    let generic::Mapped { fields, empty } = generic::map_fields(&body, &cfg.fields).map_err(payload_problem)?;
    let opts = IntakeOptions { default_region: p.settings.dedup.default_phone_region };
    let intake = normalize(fields, opts).map_err(|mut errors| {
        for e in errors.iter_mut().filter(|e| e.message.contains("one of email or phone")) {
            let pointer = cfg.fields.get(&e.field).cloned().unwrap_or_else(|| "(not mapped)".into());
            e.message = format!("one of email or phone is required; the pointer {pointer} found nothing");
        }
        let detail = if empty.is_empty() {
            "the mapped fields are invalid".to_owned()
        } else {
            format!("these pointers found nothing: {}", empty.join(", "))
        };
        Problem::invalid(detail, errors)
    })?;
    let id = match key {
        Some(k) => LeadId::derived(&format!("generic:{source}:{k}")),
        None => LeadId::new(),
    };
    let accepted_lead = p.accept(Submission::new(id, source, intake)).await.map_err(stored_problem)?;
    Ok(accepted(&accepted_lead.lead_id))
}
