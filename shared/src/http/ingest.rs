//! `POST /v1/leads`: web forms, as JSON or urlencoded.

use super::openapi::{Op, STORE_DOWN, TOO_LARGE};
use super::{AppState, Problem, read_body};
use crate::domain::LeadId;
use crate::domain::intake::{Intake, IntakeOptions, normalize};
use crate::pipeline::Submission;
use crate::ports::{LeadStore, Notifier, Queue};
use crate::sources::PayloadError;
use crate::sources::form::{self, FormError};
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

/// The raw fields of a form body, in order, by content type.
pub(crate) fn form_fields(headers: &HeaderMap, body: &[u8]) -> Result<Vec<(String, Value)>, Problem> {
    let ctype = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
    form::parse(ctype, body).map_err(|e| match e {
        FormError::Unsupported(m) => Problem::unsupported_media(m),
        FormError::Payload(PayloadError::Malformed(m)) => Problem::bad_request(m),
        FormError::Payload(PayloadError::Invalid(m)) => Problem::invalid(m, vec![]),
    })
}

/// A web form's fields normalized, or 422 listing every bad field.
pub(crate) fn form_intake(fields: Vec<(String, Value)>, settings: &crate::config::Settings) -> Result<Intake, Problem> {
    let opts = IntakeOptions { default_region: settings.dedup.default_phone_region };
    normalize(fields, opts).map_err(|errors| {
        let detail = errors.iter().map(|e| format!("{} {}", e.field, e.message)).collect::<Vec<_>>().join("; ");
        Problem::invalid(detail, errors)
    })
}

/// The `Idempotency-Key` header, if present and sane; 400 if not.
pub(crate) fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, Problem> {
    crate::sources::idempotency_key(headers).map_err(|e| Problem::bad_request(e.to_string()))
}

pub(crate) fn accepted(lead_id: &LeadId) -> Response {
    let body = super::openapi::LeadAccepted { lead_id: lead_id.clone(), status: "received".into() };
    (StatusCode::ACCEPTED, axum::Json(body)).into_response()
}

pub async fn post_lead<S: LeadStore, Q: Queue, N: Notifier>(
    State(p): State<AppState<S, Q, N>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Problem> {
    let body = read_body(&headers, body, p.settings.server.max_body_bytes).await?;
    let fields = form_fields(&headers, &body)?;
    let key = idempotency_key(&headers)?;
    let intake = form_intake(fields, &p.settings)?;
    let id = match &key {
        Some(k) => LeadId::derived(&format!("idempotency:web:{k}")),
        None => LeadId::new(),
    };
    let sub = Submission::new(id, "web", intake);
    let accepted_lead = p.accept(sub).await.map_err(|e| {
        tracing::error!(error = %e, "ingest could not store a lead");
        Problem::unavailable("the lead could not be stored; retry with the same Idempotency-Key")
    })?;
    Ok(accepted(&accepted_lead.lead_id))
}

pub(super) fn post_lead_op() -> Op {
    Op::new("postLead", "ingest", "Submit a web-form lead")
        .idempotency()
        .form_body("One of email or phone must be present.")
        .ok_json::<super::openapi::LeadAccepted>("202", "Stored durably; routing has begun.")
        .problems(&[
            ("400", "Malformed body or Idempotency-Key."),
            TOO_LARGE,
            ("415", "Content-Type is neither JSON nor urlencoded."),
            ("422", "Well-formed but invalid: every bad field is listed in errors."),
            ("429", "Over [server] rate_limit_per_minute for this client: nothing stored; Retry-After says when."),
            STORE_DOWN,
        ])
}
