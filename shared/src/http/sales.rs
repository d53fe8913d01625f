//! What reps do with a lead: accept it (a signed link from the notification, no token) and
//! move it through the sales statuses (`POST /v1/leads/{id}/status`, admin token).

use super::openapi::{Op, STORE_DOWN, TOO_LARGE, UNAUTHORIZED, string};
use super::{AppState, Problem};
use crate::domain::{FieldError, Lead, LeadId, LeadStatus};
use crate::notification;
use crate::ports::{LeadStore, Notifier, Queue, Updated};
use axum::Json;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use utoipa::openapi::path::ParameterIn;

use super::store_down;

pub(super) fn lead_id(id: &str) -> Result<LeadId, Problem> {
    LeadId::parse(id)
        .ok_or_else(|| Problem::not_found(format!("no lead has the id '{}'", id.chars().take(64).collect::<String>())))
}

/// Why a sales change cannot be made to the lead as it is.
fn refusal(lead: &Lead, by: &str, to: LeadStatus) -> Option<Problem> {
    if lead.owner.as_deref() != Some(by) {
        let detail = match &lead.owner {
            Some(o) => format!("lead {} is owned by {o} now, not {by}", lead.id),
            None => format!("lead {} has no owner now (it is {})", lead.id, lead.status),
        };
        return Some(Problem::conflict(detail).with_owner(lead.owner.clone()));
    }
    if !lead.status.can_move_to(to) {
        return Some(
            Problem::conflict(format!("lead {} is {}; it cannot move to {to}", lead.id, lead.status))
                .with_owner(lead.owner.clone()),
        );
    }
    None
}

fn apply(l: &mut Lead, by: &str, to: LeadStatus, note: Option<&str>, via: &str, now: DateTime<Utc>) -> bool {
    if refusal(l, by, to).is_some() {
        return false;
    }
    if l.accepted_at.is_none() {
        l.accepted_at = Some(now);
    }
    l.sla_due_at = None;
    let mut reason = format!("{to} by {by} ({via})");
    if let Some(n) = note.map(str::trim).filter(|n| !n.is_empty()) {
        reason.push_str(&format!(": {}", n.chars().take(500).collect::<String>()));
    }
    l.transition_by(to, reason, by, now);
    true
}

/// Applies a sales change; the lead as written, or the problem that stopped it.
async fn change<S: LeadStore, Q: Queue, N: Notifier>(
    p: &AppState<S, Q, N>,
    id: LeadId,
    by: String,
    to: LeadStatus,
    note: Option<String>,
    via: &'static str,
) -> Result<Lead, Problem> {
    let now = p.clock.now();
    let (b, n) = (by.clone(), note.clone());
    let r = p
        .store
        .update(vec![id.clone()], move |l| apply(l, &b, to, n.as_deref(), via, now))
        .await
        .map_err(store_down)?;
    match r.into_iter().next() {
        Some(Updated::Written(l)) => {
            tracing::info!(lead_id = %l.id, status = %to, rep = %by, "sales status");
            Ok(*l)
        }
        Some(Updated::Unchanged(l)) => {
            Err(refusal(&l, &by, to).unwrap_or_else(|| Problem::conflict("the lead changed meanwhile; try again")))
        }
        _ => Err(Problem::not_found(format!("no lead has the id '{id}'"))),
    }
}

#[derive(Deserialize)]
struct StatusBody {
    status: Option<String>,
    by: Option<String>,
    note: Option<String>,
}

pub async fn post_status<S: LeadStore, Q: Queue, N: Notifier>(
    State(p): State<AppState<S, Q, N>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Body,
) -> Result<Response, Problem> {
    let body: StatusBody = super::admin_json(&p, &headers, body).await?;
    let mut errors = Vec::new();
    let to = match body.status.as_deref() {
        None => {
            errors.push(FieldError::new("status", "is required"));
            None
        }
        Some(s) => match LeadStatus::parse(s).filter(|st| LeadStatus::SALES.contains(st)) {
            Some(st) => Some(st),
            None => {
                errors.push(FieldError::new(
                    "status",
                    format!("'{s}' is not one of accepted, contacted, qualified, won, lost"),
                ));
                None
            }
        },
    };
    let by = body.by.map(|b| b.trim().to_owned()).filter(|b| !b.is_empty());
    if by.is_none() {
        errors.push(FieldError::new("by", "the rep id making the change is required"));
    }
    let (Some(to), Some(by)) = (to, by) else {
        return Err(Problem::invalid("the status change is invalid", errors));
    };
    let id = lead_id(&id)?;
    let lead = change(&p, id, by, to, body.note, "status").await?;
    let deliveries = p.store.deliveries(&lead.id).await.map_err(store_down)?;
    Ok(Json(super::openapi::LeadDetail::new(lead, deliveries)).into_response())
}

#[derive(Deserialize)]
struct AcceptParams {
    rep: Option<String>,
    exp: Option<String>,
    sig: Option<String>,
}

/// Checks the link: signed with the accept key (403 when not) and not past its `exp` (410).
/// The lead id and rep it names.
fn check_link(secret: &str, id: &str, query: Option<&str>, now: DateTime<Utc>) -> Result<(LeadId, String), Problem> {
    let forged = || Problem::forbidden("this accept link is not valid: it was changed or not issued by leadrouter");
    let params: AcceptParams = serde_urlencoded::from_str(query.unwrap_or("")).map_err(|_| forged())?;
    let (Some(rep), Some(exp), Some(sig)) = (
        params.rep.filter(|r| !r.is_empty()),
        params.exp.and_then(|e| e.parse::<i64>().ok()),
        params.sig.filter(|s| !s.is_empty()),
    ) else {
        return Err(forged());
    };
    let Some(id) = LeadId::parse(id) else { return Err(forged()) };
    if !notification::accept_sig_valid(secret, &id, &rep, exp, &sig) {
        return Err(forged());
    }
    if now.timestamp() > exp {
        let when = DateTime::from_timestamp(exp, 0).map(notification::timestamp).unwrap_or_default();
        return Err(Problem::new(
            StatusCode::GONE,
            "link-expired",
            "Link expired",
            format!("this accept link expired at {when}; ask your manager, or accept the lead from the console"),
        ));
    }
    Ok((id, rep))
}

/// A refused link: a page for a browser, a problem for anything else.
fn refused(headers: &HeaderMap, problem: Problem) -> Response {
    if wants_html(headers) {
        let title = match problem.status {
            410 => "This link has expired",
            409 => "This lead is not yours to accept",
            _ => "This link is not valid",
        };
        let status = StatusCode::from_u16(problem.status).unwrap_or(StatusCode::FORBIDDEN);
        return page(status, title, &format!("<p>{}</p>", escape(&problem.detail)));
    }
    problem.into_response()
}

fn wants_html(headers: &HeaderMap) -> bool {
    headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|a| a.contains("text/html"))
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&#39;")
}

fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\">\
         <title>{t}</title><style>body{{font:16px system-ui,sans-serif;max-width:32rem;margin:3rem auto;padding:0 1rem}}\
         button{{font-size:1.1rem;padding:.6rem 1.4rem}}</style></head><body><h1>{t}</h1>{body}</body></html>",
        t = escape(title)
    );
    (status, Html(html)).into_response()
}

fn summary(l: &Lead) -> String {
    let mut lines =
        vec![format!("<strong>{}</strong>", escape(&l.contact.display_name().unwrap_or_else(|| "A lead".into())))];
    for v in [&l.contact.company, &l.contact.job_title].into_iter().flatten() {
        lines.push(escape(v));
    }
    if let Some(e) = &l.contact.email {
        lines.push(escape(&e.to_string()));
    }
    if let Some(ph) = &l.contact.phone {
        lines.push(escape(&ph.to_string()));
    }
    lines.push(format!(
        "source {} · score {} · grade {}",
        escape(&l.source),
        l.score.map(|s| s.to_string()).unwrap_or_else(|| "-".into()),
        escape(l.grade.as_deref().unwrap_or("-"))
    ));
    if let Some(w) = &l.why {
        lines.push(format!("<small>{}</small>", escape(w)));
    }
    format!("<p>{}</p>", lines.join("<br>"))
}

pub async fn accept_page<S: LeadStore, Q: Queue, N: Notifier>(
    State(p): State<AppState<S, Q, N>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, Problem> {
    let (id, rep) = match check_link(&p.secrets.accept_key(), &id, query.as_deref(), p.clock.now()) {
        Ok(link) => link,
        Err(problem) => return Ok(refused(&headers, problem)),
    };
    let Some(lead) = p.store.get(&id).await.map_err(store_down)? else {
        return Err(Problem::not_found(format!("no lead has the id '{id}'")));
    };
    if lead.owner.as_deref() == Some(rep.as_str()) && lead.accepted_at.is_some() {
        return Ok(page(
            StatusCode::OK,
            "Already accepted",
            &format!("{}<p>It is yours ({}).</p>", summary(&lead), lead.status),
        ));
    }
    if let Some(problem) = refusal(&lead, &rep, LeadStatus::Accepted) {
        return Ok(refused(&headers, problem));
    }
    let action = format!("/v1/leads/{}/accept?{}", lead.id, escape(query.as_deref().unwrap_or("")));
    Ok(page(
        StatusCode::OK,
        "Accept this lead?",
        &format!(
            "{}<form method=\"post\" action=\"{action}\"><button type=\"submit\">Accept</button></form>",
            summary(&lead)
        ),
    ))
}

pub async fn accept<S: LeadStore, Q: Queue, N: Notifier>(
    State(p): State<AppState<S, Q, N>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, Problem> {
    let (id, rep) = match check_link(&p.secrets.accept_key(), &id, query.as_deref(), p.clock.now()) {
        Ok(link) => link,
        Err(problem) => return Ok(refused(&headers, problem)),
    };
    let lead = match change(&p, id.clone(), rep.clone(), LeadStatus::Accepted, None, "accept link").await {
        Ok(l) => l,
        Err(problem) if problem.status == 409 => {
            // Accepting twice is not an error: the lead is this rep's either way.
            match p.store.get(&id).await.map_err(store_down)? {
                Some(l) if l.owner.as_deref() == Some(rep.as_str()) && l.accepted_at.is_some() => l,
                _ => return Ok(refused(&headers, problem)),
            }
        }
        Err(problem) => return Err(problem),
    };
    if wants_html(&headers) {
        return Ok(page(StatusCode::OK, "Accepted", &format!("{}<p>The lead is yours.</p>", summary(&lead))));
    }
    Ok(Json(serde_json::json!({ "lead_id": lead.id, "status": lead.status, "owner": lead.owner })).into_response())
}

pub(super) fn post_status_op() -> Op {
    Op::new("postStatus", "sales", "Move a lead through the sales statuses (its owner only)")
        .admin()
        .param("id", ParameterIn::Path, true, string(), "The lead id.")
        .body_json::<super::openapi::StatusChange>("")
        .ok_json::<super::openapi::LeadDetail>("200", "The lead as changed.")
        .problems(&[
            ("400", "Not JSON."),
            UNAUTHORIZED,
            ("404", "No such lead."),
            ("409", "by is not the owner (owner names who is), or the lead cannot move there from its status."),
            TOO_LARGE,
            ("422", "status or by missing or invalid."),
            STORE_DOWN,
        ])
}

/// The accept link's parameters.
fn link(op: Op) -> Op {
    op.param("id", ParameterIn::Path, true, string(), "The lead id.")
        .param("rep", ParameterIn::Query, true, string(), "The rep the link was sent to.")
        .param("exp", ParameterIn::Query, true, string(), "When the link expires, in unix seconds.")
        .param(
            "sig",
            ParameterIn::Query,
            true,
            string(),
            "Hex HMAC-SHA256 of the lead id, rep id and exp, keyed with [server] accept_secret.",
        )
}

pub(super) fn accept_page_op() -> Op {
    link(Op::new("acceptPage", "sales", "The accept link: the lead's summary and a confirm button"))
        .ok("200", "An HTML page.", "text/html", string())
        .problems(&[
            ("403", "The link was tampered with or not issued here; HTML for a browser."),
            ("404", "No such lead."),
            ("409", "The rep does not own the lead now (owner names who does); HTML for a browser."),
            ("410", "The link has expired; HTML for a browser."),
            STORE_DOWN,
        ])
}

pub(super) fn accept_op() -> Op {
    link(Op::new("accept", "sales", "Accept the lead for the link's rep"))
        .ok_json::<super::openapi::AcceptResult>("200", "Accepted (again, harmlessly, if it was); HTML for a browser.")
        .problems(&[
            ("403", "The link was tampered with or not issued here; HTML for a browser."),
            ("404", "No such lead."),
            ("409", "The rep does not own the lead now (owner names who does)."),
            ("410", "The link has expired; HTML for a browser."),
            STORE_DOWN,
        ])
}
