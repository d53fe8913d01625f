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
    limit: Option<String>,
    cursor: Option<String>,
}

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
    if !errors.is_empty() {
        return Err(Problem::invalid("the query has invalid parameters", errors));
    }
    let page = p
        .store
        .list(LeadQuery {
            status,
            owner: params.owner.filter(|s| !s.is_empty()),
            source: params.source.filter(|s| !s.is_empty()),
            limit,
            cursor,
        })
        .await
        .map_err(store_down)?;
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
        .ok_json::<super::openapi::LeadList>("200", "A page of leads.")
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
