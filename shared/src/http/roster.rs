//! The reps roster (`/v1/reps`) and the funnel metrics (`/v1/metrics`), admin token.

use super::openapi::{Op, STORE_DOWN, TOO_LARGE, UNAUTHORIZED, string};
use super::{AppState, Problem, authorize};
use crate::config::Target;
use crate::domain::metrics::{Metrics, MetricsBuilder};
use crate::domain::{FieldError, RepRecord, Roster, Stage};
use crate::ports::{LeadStore, Message, Notifier, Queue, StoreError};
use axum::Json;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use utoipa::openapi::path::ParameterIn;

use super::store_down;

#[derive(Serialize, utoipa::ToSchema)]
pub struct RepList {
    pub items: Vec<RepRecord>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct RepRemoved {
    pub id: String,
    pub removed: bool,
    /// Open leads sent to be given to someone else.
    pub reassigning: usize,
}

async fn record<S: LeadStore, Q: Queue, N: Notifier>(
    p: &AppState<S, Q, N>,
    roster: &Roster,
    id: &str,
) -> Result<Option<RepRecord>, Problem> {
    let Some(rep) = roster.rep(id) else { return Ok(None) };
    let mut r = roster.record(rep);
    r.open_leads = Some(p.store.open_leads(id).await.map_err(store_down)?.len() as u32);
    Ok(Some(r))
}

pub async fn list_reps<S: LeadStore, Q: Queue, N: Notifier>(
    State(p): State<AppState<S, Q, N>>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    authorize(&headers, p.secrets.admin_token.expose())?;
    let roster = p.roster().await.map_err(store_down)?;
    let mut items = Vec::new();
    for rep in roster.reps() {
        items.extend(record(&p, &roster, &rep.id).await?);
    }
    Ok(Json(RepList { items }).into_response())
}

fn no_rep(id: &str) -> Problem {
    Problem::not_found(format!("no rep has the id '{}'", id.chars().take(64).collect::<String>()))
}

pub async fn get_rep<S: LeadStore, Q: Queue, N: Notifier>(
    State(p): State<AppState<S, Q, N>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    authorize(&headers, p.secrets.admin_token.expose())?;
    let roster = p.roster().await.map_err(store_down)?;
    let r = record(&p, &roster, &id).await?.ok_or_else(|| no_rep(&id))?;
    Ok(Json(r).into_response())
}

/// Sends a rep's open leads to assign, which gives them to someone who can take them.
async fn reassign<S: LeadStore, Q: Queue, N: Notifier>(p: &AppState<S, Q, N>, rep: &str) -> Result<usize, Problem> {
    let open = p.store.open_leads(rep).await.map_err(store_down)?;
    let n = open.len();
    if n > 0 {
        // The sweep sends them again if this send is lost.
        if let Err(e) = p.queue.offer(Stage::Assign, open.into_iter().map(Message::lead).collect()).await {
            tracing::warn!(error = %e, rep, "could not queue the rep's open leads; the sweep will");
        }
    }
    Ok(n)
}

pub async fn put_rep<S: LeadStore, Q: Queue, N: Notifier>(
    State(p): State<AppState<S, Q, N>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Body,
) -> Result<Response, Problem> {
    authorize(&headers, p.secrets.admin_token.expose())?;
    let bytes = super::read_body(&headers, body, p.settings.server.max_body_bytes).await?;
    let mut rec: RepRecord = serde_json::from_slice(&bytes)
        .map_err(|e| Problem::bad_request(format!("the body is not a rep this route takes: {e}")))?;
    let mut errors = Vec::new();
    if !crate::config::valid_id(&id) {
        errors.push(FieldError::new("id", "a rep id is 1-64 letters, digits, '-', '_' or '.'"));
    }
    if !rec.id.is_empty() && rec.id != id {
        errors.push(FieldError::new("id", format!("the body names '{}' but the path '{id}'", rec.id)));
    }
    rec.id = id.clone();
    rec.removed = false;
    rec.open_leads = None;
    let pool_ids: Vec<&str> = p.settings.pools.iter().map(|p| p.id.as_str()).collect();
    if let Err(bad) = rec.to_rep(&pool_ids, |t| Target::parse(t).map(|_| ())) {
        errors.extend(bad.into_iter().map(|e| FieldError::new(e.field, e.message)));
    }
    if !p.settings.server.allow_private_targets {
        let trusted = p.settings.document_targets();
        for t in rec.notify.iter().filter(|t| !trusted.contains(*t)) {
            if let Some(refused) = crate::adapters::notifier::refuse_internal(t).await {
                errors.push(FieldError::new("notify", refused));
            }
        }
    }
    if !errors.is_empty() {
        return Err(Problem::invalid("the rep is invalid", errors));
    }
    rec.updated_at = Some(p.clock.now());
    rec.updated_by = by_name(rec.updated_by.take());
    let active = rec.active;
    p.store.put_rep(rec).await.map_err(store_down)?;
    if !active {
        reassign(&p, &id).await?;
    }
    let roster = p.roster().await.map_err(store_down)?;
    let r = record(&p, &roster, &id).await?.ok_or_else(|| no_rep(&id))?;
    tracing::info!(rep = %id, active, "rep updated");
    Ok(Json(r).into_response())
}

/// Who made a roster change, as given: trimmed, at most 200 characters, absent when empty.
fn by_name(by: Option<String>) -> Option<String> {
    by.map(|b| b.trim().chars().take(200).collect::<String>()).filter(|b| !b.is_empty())
}

pub async fn delete_rep<S: LeadStore, Q: Queue, N: Notifier>(
    State(p): State<AppState<S, Q, N>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, Problem> {
    authorize(&headers, p.secrets.admin_token.expose())?;
    let roster = p.roster().await.map_err(store_down)?;
    let Some(rep) = roster.rep(&id) else { return Err(no_rep(&id)) };
    let mut tombstone = roster.record(rep);
    tombstone.removed = true;
    tombstone.updated_at = Some(p.clock.now());
    let params: std::collections::BTreeMap<String, String> = serde_urlencoded::from_str(query.as_deref().unwrap_or(""))
        .map_err(|e| Problem::bad_request(format!("the query string is malformed: {e}")))?;
    tombstone.updated_by = by_name(params.get("by").cloned());
    p.store.put_rep(tombstone).await.map_err(store_down)?;
    let reassigning = reassign(&p, &id).await?;
    tracing::info!(rep = %id, reassigning, "rep removed");
    Ok(Json(RepRemoved { id, removed: true, reassigning }).into_response())
}

#[derive(Deserialize)]
struct Window {
    from: Option<String>,
    to: Option<String>,
}

/// RFC 3339, or a date (its midnight UTC).
fn instant(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s).map(|t| t.to_utc()).ok().or_else(|| {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").ok().and_then(|d| d.and_hms_opt(0, 0, 0)).map(|t| t.and_utc())
    })
}

/// Metrics over the leads received in `[from, to)`, read a page at a time; `roster` gives
/// each pool's members and weights as they stand.
pub async fn compute<S: LeadStore>(
    store: &S,
    settings: &crate::config::Settings,
    roster: &Roster,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Metrics, StoreError> {
    let mut b = MetricsBuilder::new(from, to);
    const PAGE: usize = 50_000;
    let mut page = store.facts(from, to, None, PAGE).await?;
    loop {
        // The next page is read (on the store's threads) while this one is counted.
        let next = page.next.clone();
        let fetch = async {
            match next {
                Some(n) => Some(store.facts(from, to, Some(n), PAGE).await),
                None => None,
            }
        };
        let count = async {
            for f in &page.facts {
                b.add(f);
            }
        };
        let (next, ()) = futures::join!(fetch, count);
        match next {
            Some(p) => page = p?,
            None => break,
        }
    }
    let weights: Vec<(String, Vec<(String, u32)>)> = settings
        .pools
        .iter()
        .map(|pool| (pool.id.clone(), roster.rotation(&pool.id).map(|r| r.members().to_vec()).unwrap_or_default()))
        .collect();
    Ok(b.finish(&settings.sources.spend, &weights))
}

pub async fn metrics<S: LeadStore, Q: Queue, N: Notifier>(
    State(p): State<AppState<S, Q, N>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response, Problem> {
    authorize(&headers, p.secrets.admin_token.expose())?;
    let w: Window = serde_urlencoded::from_str(query.as_deref().unwrap_or(""))
        .map_err(|e| Problem::bad_request(format!("the query string is malformed: {e}")))?;
    let mut errors = Vec::new();
    let mut parse = |name: &'static str, v: Option<String>| match v.filter(|v| !v.is_empty()) {
        None => None,
        Some(v) => instant(&v).or_else(|| {
            errors.push(FieldError::new(name, format!("'{v}' is neither an RFC 3339 time nor a date (YYYY-MM-DD)")));
            None
        }),
    };
    let to = parse("to", w.to);
    let from = parse("from", w.from);
    let to = to.unwrap_or_else(|| p.clock.now());
    let from = from.unwrap_or(to - chrono::Duration::days(30));
    if errors.is_empty() && from >= to {
        errors.push(FieldError::new("from", "must be before to"));
    }
    if !errors.is_empty() {
        return Err(Problem::invalid("the window is invalid", errors));
    }
    let roster = p.roster().await.map_err(store_down)?;
    let m = compute(&p.store, &p.settings, &roster, from, to).await.map_err(store_down)?;
    Ok(Json(m).into_response())
}

pub(super) fn list_reps_op() -> Op {
    Op::new("listReps", "roster", "The roster: the routing document's reps with the changes made here")
        .admin()
        .ok_json::<RepList>("200", "Every rep.")
        .problems(&[UNAUTHORIZED, STORE_DOWN])
}

fn rep_id(op: Op) -> Op {
    op.param("id", ParameterIn::Path, true, string(), "The rep id.")
}

pub(super) fn get_rep_op() -> Op {
    rep_id(Op::new("getRep", "roster", "One rep")).admin().ok_json::<RepRecord>("200", "The rep.").problems(&[
        UNAUTHORIZED,
        ("404", "No such rep."),
        STORE_DOWN,
    ])
}

pub(super) fn put_rep_op() -> Op {
    rep_id(Op::new("putRep", "roster", "Add or replace a rep; inactive reps' open leads are reassigned"))
        .admin()
        .body_json::<RepRecord>("")
        .ok_json::<RepRecord>("200", "The rep as the roster has them now.")
        .problems(&[
            ("400", "Not JSON, or an unknown field."),
            UNAUTHORIZED,
            TOO_LARGE,
            ("422", "Every invalid field listed."),
            STORE_DOWN,
        ])
}

pub(super) fn delete_rep_op() -> Op {
    rep_id(Op::new("deleteRep", "roster", "Remove a rep: nothing new for them, open leads reassigned"))
        .admin()
        .param("by", ParameterIn::Query, false, string(), "Who removes the rep, kept with the change.")
        .ok_json::<RepRemoved>("200", "Removed.")
        .problems(&[("400", "Malformed query string."), UNAUTHORIZED, ("404", "No such rep."), STORE_DOWN])
}

pub(super) fn metrics_op() -> Op {
    Op::new("metrics", "metrics", "Funnel metrics per source, rep and pool over leads received in a window")
        .admin()
        .param("from", ParameterIn::Query, false, string(), "RFC 3339 or YYYY-MM-DD; default 30 days before to.")
        .param("to", ParameterIn::Query, false, string(), "RFC 3339 or YYYY-MM-DD (exclusive); default now.")
        .ok_json::<Metrics>("200", "The metrics.")
        .problems(&[
            ("400", "Malformed query string."),
            UNAUTHORIZED,
            ("422", "from or to invalid, or from ≥ to."),
            STORE_DOWN,
        ])
}
