//! `POST /v1/erasures` (admin): erasure on request, by lead id, email or phone.

use super::openapi::{Op, STORE_DOWN, TOO_LARGE, UNAUTHORIZED};
use super::{AppState, Problem, authorize, store_down};
use crate::domain::{Email, FieldError, LeadId, Phone};
use crate::ports::{LeadStore, Notifier, Queue};
use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

/// Who to erase: one of these (more than one names the same person, or several).
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ErasureRequest {
    pub lead_id: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
}

pub async fn post_erasure<S: LeadStore, Q: Queue, N: Notifier>(
    State(p): State<AppState<S, Q, N>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Problem> {
    authorize(&headers, p.secrets.admin_token.expose())?;
    let bytes = super::read_body(&headers, body, p.settings.server.max_body_bytes).await?;
    let req: ErasureRequest = serde_json::from_slice(&bytes).map_err(|e| {
        Problem::bad_request(format!(
            "the body is not an erasure request ({{\"lead_id\"}}, {{\"email\"}} or {{\"phone\"}}): {e}"
        ))
    })?;
    let present = |v: &Option<String>| v.as_deref().map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned);
    let (lead_id, email, phone) = (present(&req.lead_id), present(&req.email), present(&req.phone));
    let mut errors = Vec::new();
    if lead_id.is_none() && email.is_none() && phone.is_none() {
        errors.push(FieldError::new("lead_id", "name the person by one of lead_id, email or phone"));
    }
    let mut leads = Vec::new();
    if let Some(id) = &lead_id {
        match LeadId::parse(id) {
            Some(id) => leads.push(id),
            None => {
                errors.push(FieldError::new("lead_id", "is not a lead id (26 characters, as leadrouter gives them)"))
            }
        }
    }
    let mut keys = Vec::new();
    if let Some(e) = &email {
        match Email::parse(e) {
            Ok(e) => keys.push(format!("email:{}", e.identity(p.settings.dedup.fold_gmail))),
            Err(why) => errors.push(FieldError::new("email", format!("cannot be an address: it {why}"))),
        }
    }
    if let Some(ph) = &phone {
        match Phone::parse(ph, p.settings.dedup.default_phone_region) {
            Ok(ph) => keys.push(format!("phone:{}", ph.as_str())),
            Err(why) => errors.push(FieldError::new("phone", format!("cannot be a phone number: {why}"))),
        }
    }
    if !errors.is_empty() {
        return Err(Problem::invalid("the erasure request is invalid", errors));
    }
    let done = p.erase_person(keys, leads).await.map_err(store_down)?;
    Ok(Json(done).into_response())
}

pub(super) fn erasure_op() -> Op {
    Op::new("postErasure", "admin", "Erase a person's personal data (GDPR Art. 17, CCPA)")
        .admin()
        .body_json::<ErasureRequest>(
            "One of lead_id, email or phone: every lead sharing that person's identity keys is erased.",
        )
        .ok_json::<crate::pipeline::Erasure>(
            "200",
            "Erased now, and still being routed (erased once they settle); both empty when nobody matched.",
        )
        .problems(&[
            ("400", "Not JSON, or fields other than lead_id, email and phone."),
            UNAUTHORIZED,
            TOO_LARGE,
            ("422", "None of lead_id, email or phone, or one that cannot be what it names."),
            STORE_DOWN,
        ])
}
