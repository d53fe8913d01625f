//! The lead: what arrived, what we made of it, and every transition with its reason.

use super::email::Email;
use super::phone::Phone;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fmt;

/// A lead id: a ULID, or for a lead that came with a source id, a ULID-shaped hash of it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct LeadId(String);

impl LeadId {
    pub fn new() -> LeadId {
        LeadId(ulid::Ulid::new().to_string())
    }

    /// The same source reference always gives the same id, so a retried webhook is the same lead.
    pub fn derived(reference: &str) -> LeadId {
        let digest = Sha256::digest(reference.as_bytes());
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&digest[..16]);
        LeadId(ulid::Ulid::from_bytes(bytes).to_string())
    }

    /// Accepts only the 26-character Crockford base32 form we hand out.
    pub fn parse(s: &str) -> Option<LeadId> {
        ulid::Ulid::from_string(s).ok().map(|u| LeadId(u.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for LeadId {
    fn default() -> Self {
        LeadId::new()
    }
}

impl fmt::Display for LeadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LeadStatus {
    /// Known by its source id only; its fields are being fetched from the platform.
    Fetching,
    Received,
    Unique,
    Duplicate,
    Rejected,
    Scored,
    Disqualified,
    Assigned,
    Unassigned,
    Notified,
    Accepted,
    Contacted,
    Qualified,
    Won,
    Lost,
}

impl LeadStatus {
    pub const ALL: [LeadStatus; 15] = [
        LeadStatus::Fetching,
        LeadStatus::Received,
        LeadStatus::Unique,
        LeadStatus::Duplicate,
        LeadStatus::Rejected,
        LeadStatus::Scored,
        LeadStatus::Disqualified,
        LeadStatus::Assigned,
        LeadStatus::Unassigned,
        LeadStatus::Notified,
        LeadStatus::Accepted,
        LeadStatus::Contacted,
        LeadStatus::Qualified,
        LeadStatus::Won,
        LeadStatus::Lost,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            LeadStatus::Fetching => "fetching",
            LeadStatus::Received => "received",
            LeadStatus::Unique => "unique",
            LeadStatus::Duplicate => "duplicate",
            LeadStatus::Rejected => "rejected",
            LeadStatus::Scored => "scored",
            LeadStatus::Disqualified => "disqualified",
            LeadStatus::Assigned => "assigned",
            LeadStatus::Unassigned => "unassigned",
            LeadStatus::Notified => "notified",
            LeadStatus::Accepted => "accepted",
            LeadStatus::Contacted => "contacted",
            LeadStatus::Qualified => "qualified",
            LeadStatus::Won => "won",
            LeadStatus::Lost => "lost",
        }
    }

    pub fn parse(s: &str) -> Option<LeadStatus> {
        LeadStatus::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// Assigned to a rep and not yet won or lost.
    pub fn is_open(self) -> bool {
        matches!(
            self,
            LeadStatus::Assigned
                | LeadStatus::Notified
                | LeadStatus::Accepted
                | LeadStatus::Contacted
                | LeadStatus::Qualified
        )
    }

    /// Statuses the owner moves a lead to through `POST /v1/leads/{id}/status`.
    pub const SALES: [LeadStatus; 5] =
        [LeadStatus::Accepted, LeadStatus::Contacted, LeadStatus::Qualified, LeadStatus::Won, LeadStatus::Lost];

    /// Whether the sales process may move a lead from `self` to `to`: forwards only, any step
    /// may be skipped, and won or lost is final.
    pub fn can_move_to(self, to: LeadStatus) -> bool {
        let rank = |s: LeadStatus| match s {
            LeadStatus::Assigned | LeadStatus::Notified => Some(0),
            LeadStatus::Accepted => Some(1),
            LeadStatus::Contacted => Some(2),
            LeadStatus::Qualified => Some(3),
            LeadStatus::Won | LeadStatus::Lost => Some(4),
            _ => None,
        };
        match (rank(self), rank(to)) {
            (Some(a), Some(b)) => LeadStatus::SALES.contains(&to) && a < b,
            _ => false,
        }
    }
}

impl fmt::Display for LeadStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the notification is about; part of a delivery's identity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum NotificationKind {
    Assigned,
    ReEngaged,
    SlaReassigned,
    SlaBreached,
    /// To a lead's previous owner: a manager gave it to someone else.
    Reassigned,
    /// To a pool's manager: nobody could take the lead.
    Unassigned,
    /// To the managers of a rep's pools: a notification target stopped answering; the
    /// notifications to it are parked until it answers again.
    TargetDown,
    /// To a CRM (`crm:hubspot`, `crm:salesforce`): the lead upserted with its owner.
    CrmUpsert,
}

impl NotificationKind {
    pub fn as_str(self) -> &'static str {
        match self {
            NotificationKind::Assigned => "assigned",
            NotificationKind::ReEngaged => "re_engaged",
            NotificationKind::SlaReassigned => "sla_reassigned",
            NotificationKind::SlaBreached => "sla_breached",
            NotificationKind::Reassigned => "reassigned",
            NotificationKind::Unassigned => "unassigned",
            NotificationKind::TargetDown => "target_down",
            NotificationKind::CrmUpsert => "crm_upsert",
        }
    }

    pub fn parse(s: &str) -> Option<NotificationKind> {
        [
            NotificationKind::Assigned,
            NotificationKind::ReEngaged,
            NotificationKind::SlaReassigned,
            NotificationKind::SlaBreached,
            NotificationKind::Reassigned,
            NotificationKind::Unassigned,
            NotificationKind::TargetDown,
            NotificationKind::CrmUpsert,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

/// The contact fields every source is mapped onto, already normalized.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Contact {
    /// Trimmed, domain lowercased.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    #[schema(value_type = Option<String>)]
    pub email: Option<Email>,
    /// E.164, e.g. `+14155550132`.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    #[schema(value_type = Option<String>)]
    pub phone: Option<Phone>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub first_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub last_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub company: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub job_title: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub website: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub country: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub state: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub city: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub company_size: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub industry: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub message: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub consent: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub utm_source: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub utm_medium: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub utm_campaign: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub utm_term: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub utm_content: Option<String>,
}

impl Contact {
    /// A field by the name used in forms, scoring rules and pool matches.
    pub fn field(&self, name: &str) -> Option<String> {
        let text = |v: &Option<String>| v.clone();
        match name {
            "email" => self.email.as_ref().map(|e| e.as_str().to_owned()),
            "email_domain" => self.email.as_ref().map(|e| e.domain().to_owned()),
            "phone" => self.phone.as_ref().map(|p| p.as_str().to_owned()),
            "first_name" => text(&self.first_name),
            "last_name" => text(&self.last_name),
            "name" => text(&self.name),
            "company" => text(&self.company),
            "job_title" => text(&self.job_title),
            "website" => text(&self.website),
            "country" => text(&self.country),
            "state" => text(&self.state),
            "city" => text(&self.city),
            "company_size" => text(&self.company_size),
            "industry" => text(&self.industry),
            "message" => text(&self.message),
            "consent" => self.consent.map(|c| c.to_string()),
            "utm_source" => text(&self.utm_source),
            "utm_medium" => text(&self.utm_medium),
            "utm_campaign" => text(&self.utm_campaign),
            "utm_term" => text(&self.utm_term),
            "utm_content" => text(&self.utm_content),
            _ => None,
        }
    }

    /// The name to greet the lead by: `name`, else first and last joined.
    pub fn display_name(&self) -> Option<String> {
        if let Some(n) = &self.name {
            return Some(n.clone());
        }
        match (&self.first_name, &self.last_name) {
            (Some(f), Some(l)) => Some(format!("{f} {l}")),
            (Some(f), None) => Some(f.clone()),
            (None, Some(l)) => Some(l.clone()),
            (None, None) => None,
        }
    }
}

/// One scoring rule's contribution.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RulePoints {
    pub rule: String,
    pub points: i64,
}

/// A later lead that turned out to be this one again.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Touch {
    #[schema(value_type = String)]
    pub lead_id: LeadId,
    pub source: String,
    pub at: DateTime<Utc>,
    pub matched_on: String,
}

/// The last `re_engaged` notification a rep got about a lead (the throttle's memory).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ReEngaged {
    pub at: DateTime<Utc>,
    /// The duplicate that carried it.
    #[schema(value_type = String)]
    pub lead_id: LeadId,
}

/// How many touches a lead keeps (the most recent); `touch_count` counts them all.
pub const MAX_TOUCHES: usize = 20;

/// One change of state, with why.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HistoryEntry {
    pub at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub from: Option<LeadStatus>,
    pub to: LeadStatus,
    pub reason: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub owner: Option<String>,
    /// Who did it, for a person's action (a rep's status change, a manager's move).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub by: Option<String>,
    /// For a change of owner: how the new owner got the lead, typed (replay reads it).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub how: Option<AssignedBy>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Lead {
    #[schema(value_type = String)]
    pub id: LeadId,
    pub source: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub source_ref: Option<String>,
    pub status: LeadStatus,
    pub received_at: DateTime<Utc>,
    #[serde(flatten)]
    pub contact: Contact,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub attributes: BTreeMap<String, serde_json::Value>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub test: bool,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub score: Option<i64>,
    #[serde(default)]
    pub breakdown: Vec<RulePoints>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub grade: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub pool: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub owner: Option<String>,
    /// The routing decision in words, as sent to the rep.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub why: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    #[schema(value_type = Option<String>)]
    pub duplicate_of: Option<LeadId>,
    /// The most recent touches (at most [`MAX_TOUCHES`]).
    #[serde(default)]
    pub touches: Vec<Touch>,
    /// Every touch so far, kept or not.
    #[serde(default)]
    pub touch_count: u32,
    /// Per rep (`""` before the lead has an owner), the last `re_engaged` they were sent.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schema(value_type = Object)]
    pub re_engaged: BTreeMap<String, ReEngaged>,
    /// A notification still owed for this lead; cleared once every recipient has it.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub notify_pending: Option<NotificationKind>,
    /// Attempts to fetch the lead's fields from its platform, and the last failure.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub fetch_attempts: u32,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub fetch_error: Option<String>,
    /// When the current owner got the lead (the SLA clock starts here).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub assigned_at: Option<DateTime<Utc>>,
    /// When the lead was first given to a rep.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub first_assigned_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub accepted_at: Option<DateTime<Utc>>,
    /// The owner before the last change of owner.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub previous_owner: Option<String>,
    /// Changes of owner (and SLA breaches) so far; notifications of a later round get new
    /// delivery ids.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub round: u32,
    /// When the pool's SLA runs out if the owner has not accepted the lead.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub sla_due_at: Option<DateTime<Utc>>,
    /// The current owner let the SLA pass and nobody else could take the lead.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub sla_breached_at: Option<DateTime<Utc>>,
    /// How the current owner got the lead (absent on leads assigned before it was recorded).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub assignment: Option<Assignment>,
    /// How the lead's first owner got it (replay reproduces first decisions).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub first_assignment: Option<Assignment>,
    /// When the lead's personal data was erased (by request or by retention).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub personal_data_erased_at: Option<DateTime<Utc>>,
    /// An erasure was asked for while the lead was still being routed: it is erased as soon
    /// as it settles.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub erasure_pending: bool,
    /// A manager sent the lead back through routing away from its owner; cleared by the
    /// decision that follows.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub reroute: Option<Reroute>,
    /// The lead's record in each CRM it was upserted into (`{"hubspot": "<contact id>"}`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub crm: BTreeMap<String, String>,
    #[serde(default)]
    pub history: Vec<HistoryEntry>,
}

/// `POST /v1/reps/{id}/reassign`: the lead goes back through routing, `from` excluded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Reroute {
    pub from: String,
    pub by: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub note: Option<String>,
    pub at: DateTime<Utc>,
}

/// How the current owner got the lead, typed on the lead so that a later decision never reads
/// it back out of a reason: when it was decided, and how.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Assignment {
    pub at: DateTime<Utc>,
    pub how: AssignedBy,
    /// The pool it was given in (absent on assignments recorded before the pool was).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub pool: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "by", rename_all = "snake_case")]
pub enum AssignedBy {
    /// The pool's round-robin turn (counted from 0).
    Turn { turn: u64 },
    /// A round-robin turn after `from` let the pool's SLA pass.
    SlaReassignment { from: String, turn: u64 },
    /// The company's existing owner; no turn taken.
    ExistingOwner,
    /// A test lead, given to the pool's first rep without taking a turn.
    Test,
    /// A manager moved it (`POST /v1/leads/{id}/assign`); no turn taken.
    Manual { manager: String },
    /// A round-robin turn after a manager sent it away from `from` (`POST
    /// /v1/reps/{id}/reassign`).
    Rerouted { from: String, manager: String, turn: u64 },
}

/// How every erasure's history entry begins: it is not activity (see [`Lead::last_activity`]).
pub const ERASED: &str = "personal data erased";

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl Lead {
    pub fn new(id: LeadId, source: String, contact: Contact, now: DateTime<Utc>) -> Lead {
        Lead {
            id,
            source,
            source_ref: None,
            status: LeadStatus::Received,
            received_at: now,
            contact,
            attributes: BTreeMap::new(),
            test: false,
            score: None,
            breakdown: Vec::new(),
            grade: None,
            pool: None,
            owner: None,
            why: None,
            duplicate_of: None,
            touches: Vec::new(),
            touch_count: 0,
            re_engaged: BTreeMap::new(),
            notify_pending: None,
            fetch_attempts: 0,
            fetch_error: None,
            assigned_at: None,
            first_assigned_at: None,
            accepted_at: None,
            previous_owner: None,
            round: 0,
            sla_due_at: None,
            sla_breached_at: None,
            assignment: None,
            first_assignment: None,
            personal_data_erased_at: None,
            erasure_pending: false,
            reroute: None,
            crm: BTreeMap::new(),
            history: vec![HistoryEntry {
                at: now,
                from: None,
                to: LeadStatus::Received,
                reason: "received".into(),
                owner: None,
                by: None,
                how: None,
            }],
        }
    }

    /// Moves to `to`, writing the reason into history. A lead whose erasure waited for it to
    /// settle is erased by the move that settles it.
    pub fn transition(&mut self, to: LeadStatus, reason: impl Into<String>, now: DateTime<Utc>) {
        let from = self.status;
        self.status = to;
        self.history.push(HistoryEntry {
            at: now,
            from: Some(from),
            to,
            reason: reason.into(),
            owner: self.owner.clone(),
            by: None,
            how: None,
        });
        if self.erasure_pending && !self.in_flight() {
            self.erase_personal_data("request", now);
        }
    }

    /// [`Lead::transition`] for a person's action: history says who.
    pub fn transition_by(&mut self, to: LeadStatus, reason: impl Into<String>, by: &str, now: DateTime<Utc>) {
        self.transition(to, reason, now);
        if let Some(h) = self.history.last_mut() {
            h.by = Some(by.to_owned());
        }
    }

    /// Gives the lead to `rep` in `pool`, with the routing decision in words, and owes the rep
    /// (and the pool's manager) a notification.
    pub fn assign_to(&mut self, pool: &str, rep: String, why: String, now: DateTime<Utc>) {
        self.give_to(pool, rep, why, NotificationKind::Assigned, now);
    }

    /// Gives the lead to `rep`, as a first assignment or a change of owner; the notification
    /// owed is `kind` (`assigned`, or `sla_reassigned` when the SLA moved it).
    pub fn give_to(&mut self, pool: &str, rep: String, why: String, kind: NotificationKind, now: DateTime<Utc>) {
        if self.owner.is_some() || self.first_assigned_at.is_some() {
            self.round += 1;
        }
        if let Some(old) = self.owner.take() {
            self.previous_owner = Some(old);
        }
        self.pool = Some(pool.to_owned());
        self.owner = Some(rep);
        // The caller says how, once it is given (`Lead::assigned_by`).
        self.assignment = None;
        self.why = Some(why.clone());
        self.notify_pending = Some(kind);
        self.assigned_at = Some(now);
        self.first_assigned_at.get_or_insert(now);
        self.accepted_at = None;
        self.sla_due_at = None;
        self.sla_breached_at = None;
        self.reroute = None;
        self.transition(LeadStatus::Assigned, why, now);
    }

    /// Records how the owner just given the lead got it.
    pub fn assigned_by(&mut self, how: AssignedBy, now: DateTime<Utc>) {
        if let Some(h) = self.history.last_mut().filter(|h| h.to == LeadStatus::Assigned) {
            h.how = Some(how.clone());
        }
        let a = Assignment { at: now, how, pool: self.pool.clone() };
        self.first_assignment.get_or_insert_with(|| a.clone());
        self.assignment = Some(a);
    }

    /// Whether the current owner got the lead because the one before let the SLA pass.
    pub fn sla_reassigned(&self) -> bool {
        matches!(self.assignment, Some(Assignment { how: AssignedBy::SlaReassignment { .. }, .. }))
    }

    /// Records that `touch` turned out to be this lead again, keeping the most recent
    /// [`MAX_TOUCHES`] and counting the rest; false if it was recorded already. When its owner
    /// (or, before it has one, anybody) has not been told of a touch for `quiet`, this touch
    /// is the one to tell them of: [`Lead::re_engaged_by`] then names it.
    pub fn touch(&mut self, touch: Touch, quiet: chrono::Duration) -> bool {
        if self.touches.iter().any(|t| t.lead_id == touch.lead_id) {
            return false;
        }
        let (at, lead_id) = (touch.at, touch.lead_id.clone());
        self.touch_count = self.touch_count.max(self.touches.len() as u32) + 1;
        self.touches.push(touch);
        if self.touches.len() > MAX_TOUCHES {
            let extra = self.touches.len() - MAX_TOUCHES;
            self.touches.drain(..extra);
        }
        // A notice sent before the lead had an owner reached whoever came to own it.
        let rep = self.owner.clone().unwrap_or_default();
        let last = [self.re_engaged.get(&rep), self.re_engaged.get("")].into_iter().flatten().map(|r| r.at).max();
        if last.is_none_or(|last| at - last >= quiet) {
            self.re_engaged.insert(rep, ReEngaged { at, lead_id });
        }
        true
    }

    /// Whether the touch by `duplicate` is the one its rep is told of (see [`Lead::touch`]).
    pub fn re_engaged_by(&self, duplicate: &LeadId) -> bool {
        self.re_engaged.values().any(|r| &r.lead_id == duplicate)
    }

    /// When the lead last changed status or was touched; retention counts from here. An
    /// erasure's own history entry does not count.
    pub fn last_activity(&self) -> DateTime<Utc> {
        let changed = self.history.iter().rev().find(|h| !h.reason.starts_with(ERASED)).map(|h| h.at);
        let touched = self.touches.last().map(|t| t.at);
        changed.into_iter().chain(touched).max().unwrap_or(self.received_at)
    }

    /// Whether `q` is part of the lead's email, name or company, ignoring case: what the
    /// console's search box and `GET /v1/leads?q=` match. Stores that search in their own query
    /// language search the same text ([`Lead::search_text`]).
    pub fn matches_search(&self, q: &str) -> bool {
        self.search_text().contains(&q.trim().to_lowercase())
    }

    /// Email, name (as given, and first and last), and company, lowercased, one per line.
    pub fn search_text(&self) -> String {
        let c = &self.contact;
        let full = match (&c.first_name, &c.last_name) {
            (Some(f), Some(l)) => Some(format!("{f} {l}")),
            (f, l) => f.clone().or_else(|| l.clone()),
        };
        [c.email.as_ref().map(|e| e.to_string()), c.name.clone(), full, c.company.clone()]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join("\n")
            .to_lowercase()
    }

    /// Still on its way: being fetched, deduplicated, scored, assigned, or its rep being told.
    /// Its personal data is needed until then; an erasure waits for it.
    pub fn in_flight(&self) -> bool {
        matches!(self.status, LeadStatus::Fetching | LeadStatus::Received | LeadStatus::Unique | LeadStatus::Scored)
            || self.notify_pending.is_some()
    }

    /// Erases what identifies the person (email, phone, names, company, title, website, city,
    /// state, the message, every attribute, notes written on status changes) and keeps the
    /// anonymous facts the funnel reads (source, statuses and their times, grade, score,
    /// pool, owner, country, company size, industry, UTM tags). `why` is recorded in history
    /// as "personal data erased (why)". False if it was erased already.
    pub fn erase_personal_data(&mut self, why: &str, now: DateTime<Utc>) -> bool {
        self.erasure_pending = false;
        if self.personal_data_erased_at.is_some() {
            return false;
        }
        let c = &mut self.contact;
        c.email = None;
        c.phone = None;
        c.first_name = None;
        c.last_name = None;
        c.name = None;
        c.company = None;
        c.job_title = None;
        c.website = None;
        c.city = None;
        c.state = None;
        c.message = None;
        self.attributes.clear();
        for h in &mut self.history {
            // "accepted by ana (status): <note>": the note is a person's free text.
            if LeadStatus::SALES.contains(&h.to)
                && let Some(end) = h.reason.find("): ")
            {
                h.reason.truncate(end + 1);
            }
        }
        self.personal_data_erased_at = Some(now);
        let status = self.status;
        self.transition(status, format!("{ERASED} ({why})"), now);
        true
    }

    /// A sales status the lead's CRM reports (`said` is what the CRM said): forwards only, and
    /// only for a lead with an owner; a rep working the lead in the CRM stops its SLA clock as
    /// an accept does. False when it changes nothing.
    pub fn crm_outcome(&mut self, crm: &str, to: LeadStatus, said: &str, now: DateTime<Utc>) -> bool {
        if self.owner.is_none() || !self.status.can_move_to(to) {
            return false;
        }
        if self.accepted_at.is_none() {
            self.accepted_at = Some(now);
        }
        self.sla_due_at = None;
        let by = format!("crm:{}", crm.to_lowercase());
        self.transition_by(to, format!("{to} in {crm} ({said})"), &by, now);
        true
    }

    /// The company behind a business email address (its domain); None for free mail.
    pub fn account(&self) -> Option<&str> {
        self.contact.email.as_ref().filter(|e| !e.is_free()).map(|e| e.domain())
    }

    /// Whether a rep is working the lead (it counts against their `max_open_leads`).
    pub fn is_open(&self) -> bool {
        self.owner.is_some() && self.status.is_open()
    }

    /// The pipeline stage this lead still waits for, if any. The store indexes it so that
    /// leads left mid-pipeline by a crash or a lost message are found again.
    pub fn pending_stage(&self) -> Option<Stage> {
        match self.status {
            LeadStatus::Fetching => Some(Stage::Fetch),
            LeadStatus::Received => Some(Stage::Dedup),
            LeadStatus::Unique => Some(Stage::Score),
            LeadStatus::Scored => Some(Stage::Assign),
            _ if self.notify_pending.is_some() => Some(Stage::Notify),
            LeadStatus::Unassigned => Some(Stage::Assign),
            _ if self.reroute.is_some() && self.is_open() => Some(Stage::Assign),
            LeadStatus::Assigned | LeadStatus::Notified if self.sla_due_at.is_some() => Some(Stage::Assign),
            _ => None,
        }
    }

    /// When the sweep should next look at a lead waiting for a stage: its SLA deadline while it
    /// waits for the owner to accept, None when it is due now (mid-pipeline or unassigned).
    /// The store keeps it in the pending index so that a sweep reads only what is due.
    pub fn pending_due(&self) -> Option<DateTime<Utc>> {
        match self.status {
            LeadStatus::Assigned | LeadStatus::Notified if self.notify_pending.is_none() && self.reroute.is_none() => {
                self.sla_due_at
            }
            _ => None,
        }
    }

    /// Field value by name for rules and matches, including the lead's own `source` and `grade`.
    pub fn field(&self, name: &str) -> Option<String> {
        match name {
            "source" => Some(self.source.clone()),
            "grade" => self.grade.clone(),
            _ => self.contact.field(name).or_else(|| {
                self.attributes.get(name).and_then(|v| match v {
                    serde_json::Value::String(s) => Some(s.clone()),
                    serde_json::Value::Number(n) => Some(n.to_string()),
                    serde_json::Value::Bool(b) => Some(b.to_string()),
                    _ => None,
                })
            }),
        }
    }
}

/// The pipeline's stages, each fed by one queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    Fetch,
    Dedup,
    Score,
    Assign,
    Notify,
}

impl Stage {
    pub const ALL: [Stage; 5] = [Stage::Fetch, Stage::Dedup, Stage::Score, Stage::Assign, Stage::Notify];

    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Fetch => "fetch",
            Stage::Dedup => "dedup",
            Stage::Score => "score",
            Stage::Assign => "assign",
            Stage::Notify => "notify",
        }
    }

    pub fn parse(s: &str) -> Option<Stage> {
        Stage::ALL.into_iter().find(|st| st.as_str() == s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_ids_are_stable_and_distinct() {
        let a = LeadId::derived("meta:123");
        assert_eq!(a, LeadId::derived("meta:123"));
        assert_ne!(a, LeadId::derived("meta:124"));
        assert_eq!(LeadId::parse(a.as_str()), Some(a.clone()));
        assert_eq!(a.as_str().len(), 26);
    }

    #[test]
    fn statuses_round_trip() {
        for s in LeadStatus::ALL {
            assert_eq!(LeadStatus::parse(s.as_str()), Some(s));
            assert_eq!(serde_json::to_value(s).unwrap(), serde_json::json!(s.as_str()));
        }
    }

    #[test]
    fn erasure_keeps_the_anonymous_facts() {
        let t0 = Utc::now();
        let contact = Contact {
            email: Some(Email::parse("jane@acme.com").unwrap()),
            name: Some("Jane".into()),
            country: Some("US".into()),
            message: Some("call me".into()),
            ..Contact::default()
        };
        let mut l = Lead::new(LeadId::new(), "web".into(), contact, t0);
        l.attributes.insert("utm_whatever".into(), "x".into());
        l.grade = Some("B".into());
        l.assign_to("p", "ana".into(), "rr".into(), t0);
        l.transition(LeadStatus::Accepted, "accepted by ana (status): spoke to Jane", t0);
        assert_eq!(l.last_activity(), t0);
        let later = t0 + chrono::Duration::days(400);
        assert!(l.erase_personal_data("retention", later));
        assert!(!l.erase_personal_data("request", later), "once");
        assert_eq!((l.contact.email.as_ref(), l.contact.name.as_ref(), l.contact.message.as_ref()), (None, None, None));
        assert!(l.attributes.is_empty());
        assert_eq!(l.contact.country.as_deref(), Some("US"));
        assert_eq!((l.grade.as_deref(), l.owner.as_deref(), l.status), (Some("B"), Some("ana"), LeadStatus::Accepted));
        assert!(l.history.iter().all(|h| !h.reason.contains("Jane")));
        assert_eq!(l.history.last().unwrap().reason, "personal data erased (retention)");
        assert_eq!(l.last_activity(), t0, "erasing is not activity");
    }

    #[test]
    fn touches_are_bounded_and_re_engaged_is_throttled() {
        let t0 = Utc::now();
        let mut l = Lead::new(LeadId::new(), "web".into(), Contact::default(), t0);
        l.owner = Some("ana".into());
        let touch = |i: i64| Touch {
            lead_id: LeadId::derived(&format!("dup{i}")),
            source: "web".into(),
            at: t0 + chrono::Duration::minutes(i),
            matched_on: "email".into(),
        };
        let quiet = chrono::Duration::minutes(60);
        let mut told = Vec::new();
        for i in 0..1000 {
            assert!(l.touch(touch(i), quiet));
            if l.re_engaged_by(&touch(i).lead_id) {
                told.push(i);
            }
        }
        assert!(!l.touch(touch(999), quiet), "recorded once");
        assert_eq!(l.touches.len(), MAX_TOUCHES);
        assert_eq!(l.touch_count, 1000);
        assert_eq!(l.touches.last().unwrap().lead_id, touch(999).lead_id, "the most recent are kept");
        // One a minute for 1,000 minutes: told at 0, 60, 120, …
        assert_eq!(told, (0..1000).step_by(60).collect::<Vec<_>>());
        // A new owner hears of the next touch at once.
        l.owner = Some("ben".into());
        assert!(l.touch(touch(1000), quiet));
        assert!(l.re_engaged_by(&touch(1000).lead_id));
    }

    #[test]
    fn pending_stage_follows_status() {
        let mut l = Lead::new(LeadId::new(), "web".into(), Contact::default(), Utc::now());
        assert_eq!(l.pending_stage(), Some(Stage::Dedup));
        l.transition(LeadStatus::Unique, "first", Utc::now());
        assert_eq!(l.pending_stage(), Some(Stage::Score));
        l.transition(LeadStatus::Scored, "scored", Utc::now());
        assert_eq!(l.pending_stage(), Some(Stage::Assign));
        l.transition(LeadStatus::Assigned, "rr", Utc::now());
        l.notify_pending = Some(NotificationKind::Assigned);
        assert_eq!(l.pending_stage(), Some(Stage::Notify));
        l.notify_pending = None;
        assert_eq!(l.pending_stage(), None);
        assert_eq!(l.history.len(), 4);
        // Waiting for acceptance within an SLA: the assign stage checks the deadline.
        let due = Utc::now() + chrono::Duration::minutes(15);
        l.sla_due_at = Some(due);
        assert_eq!(l.pending_stage(), Some(Stage::Assign));
        assert_eq!(l.pending_due(), Some(due), "not before its deadline");
        l.notify_pending = Some(NotificationKind::Assigned);
        assert_eq!(l.pending_due(), None, "the notification is due now");
        l.notify_pending = None;
        // Unassigned: the manager is told first, then it waits for a rep.
        l.transition(LeadStatus::Unassigned, "nobody", Utc::now());
        l.notify_pending = Some(NotificationKind::Unassigned);
        assert_eq!(l.pending_stage(), Some(Stage::Notify));
        l.notify_pending = None;
        assert_eq!(l.pending_stage(), Some(Stage::Assign));
        assert_eq!(l.pending_due(), None, "an unassigned lead is tried at every sweep");
    }
}
