//! `POST /v1/route/preview` (admin): where a lead would go and why, changing nothing.

use super::openapi::{Op, STORE_DOWN, TOO_LARGE, UNAUTHORIZED, string};
use super::{AppState, Problem, authorize};
use crate::ports::{LeadStore, Notifier, Queue};
use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use utoipa::openapi::path::ParameterIn;

pub async fn post_preview<S: LeadStore, Q: Queue, N: Notifier>(
    State(p): State<AppState<S, Q, N>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Problem> {
    authorize(&headers, p.secrets.admin_token.expose())?;
    let body = super::read_body(&headers, body, p.settings.server.max_body_bytes).await?;
    let mut fields = super::ingest::form_fields(&headers, &body)?;
    // `at`: when the lead is taken to arrive (RFC 3339); not a field of the lead.
    let mut at: Option<DateTime<Utc>> = None;
    if let Some(i) = fields.iter().position(|(k, _)| k == "at") {
        let (_, v) = fields.remove(i);
        let text = v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string());
        let parsed = DateTime::parse_from_rfc3339(text.trim()).map_err(|_| {
            Problem::invalid(
                "at must be an RFC 3339 time, e.g. 2026-11-24T15:00:00Z",
                vec![crate::domain::FieldError::new("at", "is not an RFC 3339 time")],
            )
        })?;
        at = Some(parsed.with_timezone(&Utc));
    }
    let intake = super::ingest::form_intake(fields, &p.settings)?;
    let preview = p.preview(intake, at).await.map_err(|e| {
        tracing::error!(error = %e, "preview could not read the store");
        Problem::unavailable("the store could not be read; try again")
    })?;
    Ok(axum::Json(preview).into_response())
}

#[derive(serde::Deserialize)]
struct ReplayParams {
    since: Option<String>,
}

/// `POST /v1/routing/replay` (admin): a routing document (TOML) in, the report `leadrouter
/// replay --format json` prints out, over the stored leads (since `?since=`, a date or an
/// RFC 3339 time). Changes nothing: the document is not published.
pub async fn post_replay<S: LeadStore, Q: Queue, N: Notifier>(
    State(p): State<AppState<S, Q, N>>,
    headers: HeaderMap,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
    body: Body,
) -> Result<Response, Problem> {
    authorize(&headers, p.secrets.admin_token.expose())?;
    let params: ReplayParams = serde_urlencoded::from_str(query.as_deref().unwrap_or(""))
        .map_err(|e| Problem::bad_request(format!("the query string is malformed: {e}")))?;
    let since = match params.since.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        None => DateTime::<Utc>::MIN_UTC,
        Some(s) => crate::replay::parse_since(s).ok_or_else(|| {
            Problem::invalid(
                "since must be a date (YYYY-MM-DD) or an RFC 3339 time",
                vec![crate::domain::FieldError::new("since", "is neither a date nor an RFC 3339 time")],
            )
        })?,
    };
    let body = super::read_body(&headers, body, p.settings.server.max_body_bytes).await?;
    let src = std::str::from_utf8(&body).map_err(|_| Problem::bad_request("the document is not UTF-8 text"))?;
    let settings = crate::config::Settings::parse(src).map_err(|problems| {
        let errors = problems
            .0
            .iter()
            .map(|e| crate::domain::FieldError::new(format!("line {}", e.line), e.message.clone()))
            .collect();
        Problem::invalid("the routing document has problems; nothing was replayed", errors)
    })?;
    let report = crate::replay::replay_store(&p.store, &settings, since, |_| {}).await.map_err(|e| {
        tracing::error!(error = %e, "replay could not read the store");
        Problem::unavailable("the store could not be read; try again")
    })?;
    Ok(axum::Json(report).into_response())
}

pub(super) fn replay_op() -> Op {
    Op::new("routingReplay", "admin", "What a routing document would change over the stored leads, changing nothing")
        .admin()
        .param(
            "since",
            ParameterIn::Query,
            false,
            string(),
            "Only leads received on or after this date (YYYY-MM-DD) or RFC 3339 time; default all.",
        )
        .body(
            &[("application/toml", string()), ("text/plain", string())],
            "A routing document (TOML), as `leadrouter config check` takes it. It is not published.",
        )
        .ok_json::<crate::replay::ReplayReport>(
            "200",
            "The report `leadrouter replay --format json` prints: leads, owner_changes, pools, reps, unassigned_total, excluded.",
        )
        .problems(&[
            ("400", "Malformed query string, or a body that is not UTF-8."),
            UNAUTHORIZED,
            TOO_LARGE,
            ("422", "The document has problems (each with its line in errors), or since is not a date."),
            STORE_DOWN,
        ])
}

pub(super) fn preview_op() -> Op {
    Op::new("routePreview", "admin", "Where a lead would go and why, changing nothing")
        .admin()
        .form_body(
            "A lead's fields as a web form posts them (source may name any source), and optionally at (RFC 3339, default now).",
        )
        .ok_json::<crate::pipeline::Preview>(
            "200",
            "Grade, score, duplicate_of, the pool and rep it would go to (null when nobody would), why, and who was skipped.",
        )
        .problems(&[
            ("400", "Malformed body."),
            UNAUTHORIZED,
            TOO_LARGE,
            ("415", "Content-Type is neither JSON nor urlencoded."),
            ("422", "Well-formed but invalid: every bad field is listed in errors."),
            STORE_DOWN,
        ])
}
