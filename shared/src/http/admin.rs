//! Admin routes (bearer token) and the health check.

use super::openapi::{IntoSchema, Op, STORE_DOWN, UNAUTHORIZED, string};
use super::{AppState, Problem, authorize};
use crate::domain::{LeadId, LeadStatus};
use crate::ports::{LeadQuery, LeadStore, Notifier, Queue};
use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa::PartialSchema;
use utoipa::openapi::path::ParameterIn;
use utoipa::openapi::schema::{ObjectBuilder, Type};

const MAX_PAGE: usize = 500;
const DEFAULT_PAGE: usize = 50;

use super::store_down;

pub async fn get_lead<S: LeadStore, Q: Queue, N: Notifier>(
    State(p): State<AppState<S, Q, N>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    authorize(&headers, p.secrets.admin_token.expose())?;
    let Some(lead_id) = LeadId::parse(&id) else {
        return Err(Problem::not_found(format!("no lead has the id '{}'", id.chars().take(64).collect::<String>())));
    };
    let lead = p.store.get(&lead_id).await.map_err(store_down)?;
    let Some(lead) = lead else { return Err(Problem::not_found(format!("no lead has the id '{lead_id}'"))) };
    let deliveries = p.store.deliveries(&lead_id).await.map_err(store_down)?;
    Ok(Json(super::openapi::LeadDetail::new(lead, deliveries)).into_response())
}

#[derive(Deserialize, Default)]
struct ListParams {
    status: Option<String>,
    owner: Option<String>,
    source: Option<String>,
    pool: Option<String>,
    q: Option<String>,
    updated_since: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

/// The most rows one CSV export holds (a page of 500 may take it past by less than a page).
const MAX_CSV_ROWS: usize = 100_000;

pub async fn list_leads<S: LeadStore, Q: Queue, N: Notifier>(
    State(p): State<AppState<S, Q, N>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response, Problem> {
    use crate::domain::FieldError;
    authorize(&headers, p.secrets.admin_token.expose())?;
    let params: ListParams = serde_urlencoded::from_str(query.as_deref().unwrap_or(""))
        .map_err(|e| Problem::bad_request(format!("the query string is malformed: {e}")))?;
    let mut errors = Vec::new();
    let status = match params.status.as_deref() {
        Some(s) => match LeadStatus::parse(s) {
            Some(st) => Some(st),
            None => {
                errors.push(FieldError::new("status", format!("'{s}' is not a lead status")));
                None
            }
        },
        None => None,
    };
    let limit = match params.limit.as_deref() {
        Some(l) => match l.parse::<usize>() {
            Ok(n) if (1..=MAX_PAGE).contains(&n) => n,
            _ => {
                errors.push(FieldError::new("limit", format!("must be a whole number from 1 to {MAX_PAGE}")));
                DEFAULT_PAGE
            }
        },
        None => DEFAULT_PAGE,
    };
    let cursor = params.cursor.filter(|c| !c.is_empty());
    if let Some(c) = &cursor
        && (c.len() > 128 || !c.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '#'))
    {
        errors.push(FieldError::new("cursor", "is not a cursor this API handed out"));
    }
    let updated_since = match params.updated_since.as_deref() {
        Some(t) => match chrono::DateTime::parse_from_rfc3339(t) {
            Ok(t) => Some(t.with_timezone(&chrono::Utc)),
            Err(_) => {
                errors.push(FieldError::new("updated_since", format!("'{t}' is not an RFC 3339 time")));
                None
            }
        },
        None => None,
    };
    let q = params.q.map(|q| q.trim().to_owned()).filter(|q| !q.is_empty());
    if q.as_ref().is_some_and(|q| q.chars().count() > 200) {
        errors.push(FieldError::new("q", "is at most 200 characters"));
    }
    if !errors.is_empty() {
        return Err(Problem::invalid("the query has invalid parameters", errors));
    }
    let query = LeadQuery {
        status,
        owner: params.owner.filter(|s| !s.is_empty()),
        source: params.source.filter(|s| !s.is_empty()),
        pool: params.pool.filter(|s| !s.is_empty()),
        q,
        updated_since,
        limit,
        cursor,
    };
    if super::csv::wanted(&headers) {
        return super::csv::export(&p, query, MAX_CSV_ROWS).await.map_err(store_down);
    }
    let page = p.store.list(query).await.map_err(store_down)?;
    Ok(Json(super::openapi::LeadList { items: page.items, next_cursor: page.next_cursor }).into_response())
}

pub async fn healthz<S: LeadStore, Q: Queue, N: Notifier>(
    State(p): State<AppState<S, Q, N>>,
) -> Result<Response, Problem> {
    p.store.ping().await.map_err(store_down)?;
    Ok(Json(super::openapi::Health { status: "ok".into() }).into_response())
}

pub(super) fn list_leads_op() -> Op {
    Op::new("listLeads", "admin", "Page through leads, newest first")
        .admin()
        .param("status", ParameterIn::Query, false, LeadStatus::schema().into_schema(), "Only leads in this status.")
        .param("owner", ParameterIn::Query, false, string(), "Only leads owned by this rep id.")
        .param("source", ParameterIn::Query, false, string(), "Only leads from this source.")
        .param("pool", ParameterIn::Query, false, string(), "Only leads in this pool.")
        .param(
            "q",
            ParameterIn::Query,
            false,
            ObjectBuilder::new().schema_type(Type::String).max_length(Some(200)).into(),
            "Matches email, name or company, ignoring case. A search reads for a bounded time per page: a page may hold fewer than limit leads, or none, and still have a next_cursor; follow it until it is null.",
        )
        .param(
            "updated_since",
            ParameterIn::Query,
            false,
            ObjectBuilder::new().schema_type(Type::String).format(Some(utoipa::openapi::SchemaFormat::KnownFormat(utoipa::openapi::KnownFormat::DateTime))).into(),
            "RFC 3339: only leads whose last change (a status, an owner, a touch) is at or after it; for polling clients.",
        )
        .param(
            "limit",
            ParameterIn::Query,
            false,
            ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(1)).maximum(Some(500)).into(),
            "Page size, 1 to 500 (default 50).",
        )
        .param(
            "cursor",
            ParameterIn::Query,
            false,
            ObjectBuilder::new()
                .schema_type(Type::String)
                .max_length(Some(128))
                .pattern(Some("^[0-9A-Za-z#]*$"))
                .into(),
            "next_cursor of the previous page; empty means the first page.",
        )
        .ok_json_or::<super::openapi::LeadList>(
            "200",
            "A page of leads; with Accept: text/csv, every lead matching the filters from cursor on, newest first, as CSV (at most about 100,000 rows).",
            &[("text/csv", string())],
        )
        .problems(&[("400", "Malformed query string."), UNAUTHORIZED, ("422", "Invalid parameters."), STORE_DOWN])
}

pub(super) fn get_lead_op() -> Op {
    Op::new("getLead", "admin", "A lead with its score, routing, history and deliveries")
        .admin()
        .param("id", ParameterIn::Path, true, string(), "The lead id.")
        .ok_json::<super::openapi::LeadDetail>("200", "The lead.")
        .problems(&[UNAUTHORIZED, ("404", "No such lead."), STORE_DOWN])
}

pub(super) fn healthz_op() -> Op {
    Op::new("healthz", "ops", "Whether the store answers")
        .ok_json::<super::openapi::Health>("200", "The store answers.")
        .problems(&[("503", "The store does not answer.")])
}

/// `GET /v1/events`: every lead transition as Server-Sent Events (event `lead`), resuming after
/// `Last-Event-ID` within the recent window. 404 where the runtime keeps no stream (AWS).
///
/// The hub gathers the transitions of each 50 ms into one buffer and every client is sent that
/// buffer in one write: fifty clients cost fifty writes per gather, and no work per transition.
pub async fn events<S: LeadStore, Q: Queue, N: Notifier>(
    State(p): State<AppState<S, Q, N>>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    use axum::body::{Body, Bytes};
    use futures::StreamExt;
    use tokio::sync::broadcast::error::RecvError;
    authorize(&headers, p.secrets.admin_token.expose())?;
    let Some(hub) = &p.events else {
        return Err(Problem::not_found(
            "this runtime keeps no event stream; poll GET /v1/leads?updated_since= instead",
        ));
    };
    let after = headers.get("last-event-id").and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse::<u64>().ok());
    let (backlog, rx) = hub.subscribe(after);
    const KEEP_ALIVE: std::time::Duration = std::time::Duration::from_secs(15);
    let live = futures::stream::unfold(rx, |mut rx| async move {
        match tokio::time::timeout(KEEP_ALIVE, rx.recv()).await {
            Ok(Ok(chunk)) => Some((chunk.frames.clone(), rx)),
            // A client that fell behind the kept window ends here, and resumes by reconnecting.
            Ok(Err(RecvError::Lagged(_) | RecvError::Closed)) => None,
            Err(_) => Some((Bytes::from_static(b":\n\n"), rx)),
        }
    });
    let head = Bytes::from(backlog.iter().flat_map(|e| e.frame.iter().copied()).collect::<Vec<u8>>());
    let stream = futures::stream::iter([head]).chain(live).map(Ok::<_, std::convert::Infallible>);
    let mut r = Body::from_stream(stream).into_response();
    let h = r.headers_mut();
    h.insert(axum::http::header::CONTENT_TYPE, axum::http::HeaderValue::from_static("text/event-stream"));
    h.insert(axum::http::header::CACHE_CONTROL, axum::http::HeaderValue::from_static("no-cache"));
    Ok(r)
}

pub(super) fn events_op() -> Op {
    Op::new("events", "admin", "Every lead transition as it happens (Server-Sent Events)")
        .admin()
        .param(
            "Last-Event-ID",
            ParameterIn::Header,
            false,
            string(),
            "The id of the last event received: the stream resumes after it, within the last 4,096.",
        )
        .ok(
            "200",
            "An endless stream of events named lead, each with an id: line and data {id, status, owner, pool, at}.",
            "text/event-stream",
            string(),
        )
        .problems(&[UNAUTHORIZED, ("404", "This runtime keeps no stream (AWS): poll GET /v1/leads?updated_since=.")])
}
