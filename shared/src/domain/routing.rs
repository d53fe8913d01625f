//! The routing decision: where a lead goes and why, as a pure function of the lead and a
//! snapshot of what routing reads ([`RoutingView`]). The assign stage writes what [`decide`]
//! returns with [`apply`]; nothing here does I/O.

use super::roster::{Pick, Unavailable, describe_skips, pick};
use super::{AssignedBy, Lead, LeadId, LeadStatus, NotificationKind, Pool, Roster};
use chrono::{DateTime, Utc};
use std::collections::HashMap;

/// Why a lead is routed now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    New,
    /// Nobody could take it before.
    Retry,
    /// Its owner did not accept it within the pool's SLA. `again`: they got it from an
    /// earlier SLA reassignment, so it is not passed on a second time (the manager decides).
    Sla { from: String, again: bool },
    /// Its owner left the roster or was deactivated.
    OwnerGone { from: String, why: String },
}

impl Route {
    /// The rep not to give it back to: the one who let the SLA pass (one who left is not
    /// available anyway).
    fn exclude(&self) -> Option<&str> {
        match self {
            Route::Sla { from, .. } => Some(from),
            _ => None,
        }
    }

    fn is_first(&self) -> bool {
        matches!(self, Route::New | Route::Retry)
    }
}

/// Whether `lead` should be (re)assigned at `now`, and why.
pub fn needs_routing(lead: &Lead, roster: &Roster, now: DateTime<Utc>) -> Option<Route> {
    match lead.status {
        LeadStatus::Scored => return Some(Route::New),
        LeadStatus::Unassigned => return Some(Route::Retry),
        _ => {}
    }
    let owner = lead.owner.as_ref().filter(|_| lead.status.is_open())?;
    match roster.rep(owner) {
        None => return Some(Route::OwnerGone { from: owner.clone(), why: "was removed from the roster".into() }),
        Some(r) if !r.active => return Some(Route::OwnerGone { from: owner.clone(), why: "is inactive".into() }),
        _ => {}
    }
    let waiting = matches!(lead.status, LeadStatus::Assigned | LeadStatus::Notified);
    (waiting && lead.sla_breached_at.is_none() && lead.sla_due_at.is_some_and(|d| d <= now))
        .then(|| Route::Sla { from: owner.clone(), again: lead.sla_reassigned() })
}

/// Everything a decision reads, fixed for one batch of leads.
pub struct RoutingView<'a> {
    /// The routing document's pools, in order.
    pub pools: &'a [Pool],
    /// The reps in force, their availability inputs and each pool's rotation.
    pub roster: &'a Roster,
    /// Open leads per rep with a `max_open_leads`, as the batch started.
    pub open: &'a HashMap<String, u32>,
    /// Each company's existing owner, by account domain: one of its leads and that lead's rep.
    pub owners: &'a HashMap<String, (LeadId, String)>,
    pub now: DateTime<Utc>,
}

/// Where the round-robin of each pool stands, and the leads given in this batch so far.
pub struct Turns<'a> {
    pub cursor: &'a dyn Fn(&str) -> u64,
    pub given: &'a HashMap<String, u32>,
}

/// What happens to a lead, and why, typed; the words are rendered by [`apply`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Nothing to route: the lead is not due for a routing decision.
    Nothing,
    /// The rep whose round-robin turn it is in the first matching pool with someone
    /// available; `passed` says why each earlier matching pool could not take it.
    Turn { route: Route, pool: usize, pick: Pick, weights: String, passed: Vec<String> },
    /// The company's existing owner, who is available; no turn is taken. `pool`: the first
    /// matching pool that has the owner, else the first matching pool.
    ExistingOwner { pool: Option<usize>, rep: String, domain: String, other: LeadId },
    /// A test lead shows where it would go but takes no rep's turn.
    Test { pool: usize, rep: String },
    /// Nobody can take it, with why (per pool, or that no pool matches).
    Nobody { route: Route, first_pool: Option<usize>, reasons: String },
}

impl RoutingView<'_> {
    fn can_take(&self, rep: &str, given: &HashMap<String, u32>, exclude: Option<&str>) -> Result<(), Unavailable> {
        if exclude == Some(rep) {
            return Err(Unavailable::PreviousOwner);
        }
        let Some(r) = self.roster.rep(rep) else { return Err(Unavailable::Inactive) };
        let open = self.open.get(rep).copied().unwrap_or(0) + given.get(rep).copied().unwrap_or(0);
        r.availability(self.now, open)
    }

    /// The indexes of the pools whose rule matches the lead, in order.
    pub fn matching(&self, lead: &Lead) -> Vec<usize> {
        (0..self.pools.len()).filter(|i| self.pools[*i].rule.matches(lead)).collect()
    }

    /// The rep of the pool's turn from `cursor`, or why nobody in it can take the lead.
    fn try_pool(
        &self,
        pool: &Pool,
        cursor: u64,
        given: &HashMap<String, u32>,
        exclude: Option<&str>,
    ) -> Result<(Pick, String), String> {
        let Some(rotation) = self.roster.rotation(&pool.id) else { return Err(format!("pool {} has no reps", pool.id)) };
        pick(rotation, cursor, |r| self.can_take(r, given, exclude))
            .map(|p| (p, rotation.describe()))
            .map_err(|skips| format!("pool {}: {}", pool.id, describe_skips(&skips)))
    }
}

/// Where `lead` goes now and why.
pub fn decide(lead: &Lead, view: &RoutingView, turns: &Turns) -> Decision {
    let Some(route) = needs_routing(lead, view.roster, view.now) else { return Decision::Nothing };
    let matching = view.matching(lead);
    let first_pool = matching.first().copied();
    if lead.test {
        return match first_pool {
            Some(i) => Decision::Test {
                pool: i,
                rep: view.roster.rotation(&view.pools[i].id).map(|r| r.pick(0).to_owned()).unwrap_or_default(),
            },
            None => Decision::Nobody { route, first_pool, reasons: "no pool matches this test lead".into() },
        };
    }
    if let Route::Sla { again: true, .. } = route {
        let reasons = "it was already reassigned once after its SLA; the manager decides".into();
        return Decision::Nobody { route, first_pool, reasons };
    }
    if route.is_first()
        && let Some(domain) = lead.account()
        && let Some((other, owner)) = view.owners.get(domain)
        && *other != lead.id
        && view.can_take(owner, turns.given, None).is_ok()
    {
        let pool = matching
            .iter()
            .copied()
            .find(|i| {
                view.roster.rotation(&view.pools[*i].id).is_some_and(|r| r.members().iter().any(|m| m.0 == *owner))
            })
            .or(first_pool);
        return Decision::ExistingOwner { pool, rep: owner.clone(), domain: domain.to_owned(), other: other.clone() };
    }
    let mut passed = Vec::new();
    for i in matching.iter().copied() {
        let pool = &view.pools[i];
        match view.try_pool(pool, (turns.cursor)(&pool.id), turns.given, route.exclude()) {
            Ok((pick, weights)) => return Decision::Turn { route, pool: i, pick, weights, passed },
            Err(why) => passed.push(why),
        }
    }
    let reasons = if matching.is_empty() {
        format!(
            "no pool matches (grade {}, country {}, source {})",
            lead.grade.as_deref().unwrap_or("-"),
            lead.contact.country.as_deref().unwrap_or("-"),
            lead.source
        )
    } else {
        passed.join("; ")
    };
    Decision::Nobody { route, first_pool, reasons }
}

/// Writes `decision` on the lead, with its reason in words; false if it changes nothing.
pub fn apply(decision: &Decision, l: &mut Lead, view: &RoutingView) -> bool {
    let now = view.now;
    match decision {
        Decision::Nothing => false,
        Decision::Turn { route, pool, pick, weights, passed } => {
            give(l, route, &view.pools[*pool], pick, weights, passed, now);
            true
        }
        Decision::ExistingOwner { pool, rep, domain, other } => {
            let pool = pool.map(|i| &view.pools[i]);
            let why = format!("existing owner: {rep} owns {domain} (lead {other}); no round-robin turn taken");
            l.give_to(pool.map(|p| p.id.as_str()).unwrap_or_default(), rep.clone(), why, NotificationKind::Assigned, now);
            l.assigned_by(AssignedBy::ExistingOwner, now);
            l.sla_due_at = pool.and_then(|p| p.sla_minutes).map(|m| now + chrono::Duration::minutes(i64::from(m)));
            true
        }
        Decision::Test { pool, rep } => {
            let pool = &view.pools[*pool];
            let why = format!(
                "test lead: pool {} ({}); given to its first rep {rep} without taking a round-robin turn",
                pool.id,
                pool.rule.explain(l)
            );
            l.assign_to(&pool.id, rep.clone(), why, now);
            l.assigned_by(AssignedBy::Test, now);
            true
        }
        Decision::Nobody { route, first_pool, reasons } => {
            nobody(l, route, first_pool.map(|i| view.pools[i].id.as_str()), reasons, now)
        }
    }
}

/// Nobody can take the lead: it stays with an owner past the SLA (the manager hears of it),
/// or waits unassigned (the first matching pool's manager hears of it) until someone can.
fn nobody(l: &mut Lead, route: &Route, first_pool: Option<&str>, reasons: &str, now: DateTime<Utc>) -> bool {
    match route {
        Route::Retry => false,
        Route::Sla { .. } => {
            l.sla_breached_at = Some(now);
            l.sla_due_at = None;
            // A new breach is news to the manager: a new round of delivery ids.
            l.round += 1;
            l.notify_pending = Some(NotificationKind::SlaBreached);
            let st = l.status;
            l.transition(
                st,
                format!("sla breached: not accepted in time, and nobody else could take it: {reasons}"),
                now,
            );
            true
        }
        Route::New | Route::OwnerGone { .. } => {
            let mut reason = format!("unassigned: nobody could take it: {reasons}");
            if let Route::OwnerGone { from, why } = route {
                reason = format!("owner {from} {why}; {reason}");
                l.previous_owner = l.owner.take();
                l.round += 1;
            }
            l.pool = first_pool.map(str::to_owned);
            l.sla_due_at = None;
            l.notify_pending = first_pool.map(|_| NotificationKind::Unassigned);
            l.transition(LeadStatus::Unassigned, reason, now);
            true
        }
    }
}

/// Gives the lead to the picked rep, saying why in words.
fn give(l: &mut Lead, route: &Route, pool: &Pool, p: &Pick, weights: &str, passed: &[String], now: DateTime<Utc>) {
    let mut why =
        format!("pool {} ({}); round-robin turn {} of weights {weights}", pool.id, pool.rule.explain(l), p.turn + 1);
    if !p.skipped.is_empty() {
        why.push_str(&format!("; skipped {}", describe_skips(&p.skipped)));
    }
    if !passed.is_empty() {
        why.push_str(&format!("; passed over {}", passed.join("; ")));
    }
    let turn = p.turn;
    let (kind, how) = match route {
        Route::Sla { from, .. } => {
            why = format!("sla: {from} did not accept within {} minutes; {why}", pool.sla_minutes.unwrap_or(0));
            (NotificationKind::SlaReassigned, AssignedBy::SlaReassignment { from: from.clone(), turn })
        }
        Route::OwnerGone { from, why: gone } => {
            why = format!("owner {from} {gone}; {why}");
            (NotificationKind::Assigned, AssignedBy::Turn { turn })
        }
        _ => (NotificationKind::Assigned, AssignedBy::Turn { turn }),
    };
    l.give_to(&pool.id, p.rep.clone(), why, kind, now);
    l.assigned_by(how, now);
    l.sla_due_at = pool.sla_minutes.map(|m| now + chrono::Duration::minutes(i64::from(m)));
}
