//! What a manager does to routing by hand (admin token): move a lead to a chosen rep, send a
//! rep's open leads back through routing.

use super::openapi::{LeadDetail, Op, STORE_DOWN, TOO_LARGE, UNAUTHORIZED, string};
use super::{AppState, Problem, store_down};
use crate::domain::FieldError;
use crate::domain::routing::{HandMove, MoveRefused};
use crate::pipeline::MoveError;
use crate::ports::{LeadStore, Notifier, Queue};
use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::openapi::path::ParameterIn;

/// `POST /v1/leads/{id}/assign`.
#[derive(Deserialize, Serialize, utoipa::ToSchema)]
pub struct LeadMove {
    /// The rep to give the lead to.
    pub rep: Option<String>,
    /// Who is moving it (the manager's name): history records it.
    pub by: Option<String>,
    pub note: Option<String>,
    /// Move it even when the rep is not available now (away, off hours, at capacity).
    pub force: Option<bool>,
}

fn required(v: Option<String>, field: &str, errors: &mut Vec<FieldError>) -> Option<String> {
    let v = v.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty());
    if v.is_none() {
        errors.push(FieldError::new(field, "is required"));
    }
    v
}

pub async fn post_assign<S: LeadStore, Q: Queue, N: Notifier>(
    State(p): State<AppState<S, Q, N>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Body,
) -> Result<Response, Problem> {
    let body: LeadMove = super::admin_json(&p, &headers, body).await?;
    let mut errors = Vec::new();
    let rep = required(body.rep, "rep", &mut errors);
    let by = required(body.by, "by", &mut errors);
    let (Some(rep), Some(by)) = (rep, by) else { return Err(Problem::invalid("the move is invalid", errors)) };
    let id = super::sales::lead_id(&id)?;
    let m = HandMove { rep: rep.clone(), by, note: body.note, force: body.force.unwrap_or(false) };
    let lead = match p.move_lead(id, m).await {
        Ok(l) => l,
        Err(MoveError::NoLead(id)) => return Err(Problem::not_found(format!("no lead has the id '{id}'"))),
        Err(MoveError::Refused(MoveRefused::UnknownRep, _)) => {
            return Err(Problem::invalid(
                format!("no rep '{rep}' on the roster"),
                vec![FieldError::new("rep", "is not a rep on the roster")],
            ));
        }
        Err(MoveError::Refused(r, lead)) => {
            return Err(Problem::conflict(format!("lead {} cannot go to {rep}: {r}", lead.id)).with_owner(lead.owner));
        }
        Err(MoveError::Store(e)) => return Err(store_down(e)),
    };
    let deliveries = p.store.deliveries(&lead.id).await.map_err(store_down)?;
    Ok(Json(LeadDetail::new(lead, deliveries)).into_response())
}

pub(super) fn assign_op() -> Op {
    Op::new("assignLead", "admin", "Move a lead to a chosen rep (a manager's decision)")
        .admin()
        .param("id", ParameterIn::Path, true, string(), "The lead id.")
        .body_json::<LeadMove>("rep and by are required; force moves it to a rep who is not available now.")
        .ok_json::<LeadDetail>(
            "200",
            "The lead as moved (unchanged if the rep owns it already): the new owner is told assigned, the old one reassigned.",
        )
        .problems(&[
            ("400", "Not JSON."),
            UNAUTHORIZED,
            ("404", "No such lead."),
            (
                "409",
                "The lead is won or lost, not routed yet, or the rep is not available now and force is not set (owner names who has it).",
            ),
            TOO_LARGE,
            ("422", "rep or by missing, or rep is not on the roster."),
            STORE_DOWN,
        ])
}

/// `POST /v1/reps/{id}/reassign`.
#[derive(Deserialize, Serialize, utoipa::ToSchema)]
pub struct RepReassign {
    /// Who is sending them (the manager's name): history records it.
    pub by: Option<String>,
    pub note: Option<String>,
}

/// How many open leads went back through routing.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Reassigned {
    pub reassigned: usize,
}

pub async fn post_rep_reassign<S: LeadStore, Q: Queue, N: Notifier>(
    State(p): State<AppState<S, Q, N>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Body,
) -> Result<Response, Problem> {
    let body: RepReassign = super::admin_json(&p, &headers, body).await?;
    let mut errors = Vec::new();
    let Some(by) = required(body.by, "by", &mut errors) else {
        return Err(Problem::invalid("the reassignment is invalid", errors));
    };
    let roster = p.roster().await.map_err(store_down)?;
    if roster.rep(&id).is_none() {
        return Err(Problem::not_found(format!("no rep '{}' on the roster", id.chars().take(64).collect::<String>())));
    }
    let reassigned = p.reroute_rep(&id, &by, body.note).await.map_err(store_down)?;
    Ok(Json(Reassigned { reassigned }).into_response())
}

pub(super) fn rep_reassign_op() -> Op {
    Op::new("reassignRep", "roster", "Send every open lead of a rep back through routing, that rep excluded")
        .admin()
        .param("id", ParameterIn::Path, true, string(), "The rep id.")
        .body_json::<RepReassign>("by is required.")
        .ok_json::<Reassigned>(
            "200",
            "How many open leads went back through routing; each goes to whoever routing picks next, or waits unassigned.",
        )
        .problems(&[
            ("400", "Not JSON."),
            UNAUTHORIZED,
            ("404", "No such rep on the roster."),
            TOO_LARGE,
            ("422", "by missing."),
            STORE_DOWN,
        ])
}
