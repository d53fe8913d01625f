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
    Sla {
        from: String,
        again: bool,
    },
    /// Its owner left the roster or was deactivated.
    OwnerGone {
        from: String,
        why: String,
    },
    /// A manager sent it away from its owner (`POST /v1/reps/{id}/reassign`).
    Away {
        from: String,
        by: String,
    },
}

impl Route {
    /// The rep not to give it back to: the one who let the SLA pass (one who left is not
    /// available anyway).
    fn exclude(&self) -> Option<&str> {
        match self {
            Route::Sla { from, .. } | Route::Away { from, .. } => Some(from),
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
    if let Some(r) = lead.reroute.as_ref().filter(|r| r.from == *owner) {
        return Some(Route::Away { from: r.from.clone(), by: r.by.clone() });
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
    /// `[stickiness] crm`: each company's owners in the CRM, asked before the batch.
    pub crm: Option<&'a CrmAccounts>,
    pub now: DateTime<Utc>,
}

/// What the CRM of `[stickiness] crm` said about the batch's companies.
#[derive(Clone, Debug, Default)]
pub struct CrmAccounts {
    /// The CRM, as people name it (`HubSpot`).
    pub crm: String,
    /// By account domain: the CRM's accounts with that domain whose owner is a rep, best first
    /// (most recently modified): (account name, rep id).
    pub owners: HashMap<String, Vec<(String, String)>>,
    /// Domains the CRM did not answer for in time (or at all), with what happened: their leads
    /// are routed without the CRM, and `why` says so.
    pub unanswered: HashMap<String, String>,
}

/// Where the round-robin of each pool stands, and the leads given in this batch so far.
pub struct Turns<'a> {
    pub cursor: &'a dyn Fn(&str) -> u64,
    pub given: &'a HashMap<String, u32>,
}

/// A matching pool in which nobody could take the lead: each rep with why (none: the pool has
/// no reps).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Passed {
    pub pool: usize,
    pub reps: Vec<(String, Unavailable)>,
}

impl Passed {
    fn describe(&self, pools: &[Pool]) -> String {
        let id = &pools[self.pool].id;
        if self.reps.is_empty() {
            format!("pool {id} has no reps")
        } else {
            format!("pool {id}: {}", describe_skips(&self.reps))
        }
    }
}

/// What happens to a lead, and why, typed; the words are rendered by [`apply`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Nothing to route: the lead is not due for a routing decision.
    Nothing,
    /// The rep whose round-robin turn it is in the first matching pool with someone
    /// available; `passed` says why each earlier matching pool could not take it.
    Turn { route: Route, pool: usize, pick: Pick, weights: String, passed: Vec<Passed> },
    /// The company's existing owner, who is available; no turn is taken. `pool`: the first
    /// matching pool that has the owner, else the first matching pool, whose SLA applies. A
    /// lead that matches no pool is not routed by stickiness either.
    ExistingOwner { pool: usize, rep: String, domain: String, other: LeadId },
    /// The company's owner in the CRM of `[stickiness] crm` (the most recently modified of its
    /// accounts whose owner is available), ahead of the owner found in leadrouter's own leads;
    /// no turn is taken, and the pool is chosen as for an existing owner.
    CrmOwner { pool: usize, rep: String, domain: String, crm: String, account: String },
    /// A test lead shows where it would go but takes no rep's turn.
    Test { pool: usize, rep: String },
    /// Nobody can take it: `passed` per matching pool, or `reasons` when that is not why (no
    /// pool matches, a second SLA breach).
    Nobody { route: Route, first_pool: Option<usize>, passed: Vec<Passed>, reasons: Option<String> },
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
        pool: usize,
        cursor: u64,
        given: &HashMap<String, u32>,
        exclude: Option<&str>,
    ) -> Result<(Pick, String), Passed> {
        let Some(rotation) = self.roster.rotation(&self.pools[pool].id) else {
            return Err(Passed { pool, reps: Vec::new() });
        };
        pick(rotation, cursor, |r| self.can_take(r, given, exclude))
            .map(|p| (p, rotation.describe()))
            .map_err(|reps| Passed { pool, reps })
    }

    /// The reasons of the pools passed over, in words.
    pub fn describe(&self, passed: &[Passed]) -> String {
        passed.iter().map(|p| p.describe(self.pools)).collect::<Vec<_>>().join("; ")
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
            None => Decision::Nobody {
                route,
                first_pool,
                passed: Vec::new(),
                reasons: Some("no pool matches this test lead".into()),
            },
        };
    }
    if let Route::Sla { again: true, .. } = route {
        let reasons = Some("it was already reassigned once after its SLA; the manager decides".into());
        return Decision::Nobody { route, first_pool, passed: Vec::new(), reasons };
    }
    let owner_pool = |owner: &str, first: usize| {
        matching
            .iter()
            .copied()
            .find(|i| {
                view.roster.rotation(&view.pools[*i].id).is_some_and(|r| r.members().iter().any(|m| m.0 == owner))
            })
            .unwrap_or(first)
    };
    if route.is_first()
        && let Some(first) = first_pool
        && let Some(domain) = lead.account()
        && let Some(crm) = view.crm
        && let Some((account, owner)) = crm
            .owners
            .get(domain)
            .and_then(|accounts| accounts.iter().find(|(_, rep)| view.can_take(rep, turns.given, None).is_ok()))
    {
        return Decision::CrmOwner {
            pool: owner_pool(owner, first),
            rep: owner.clone(),
            domain: domain.to_owned(),
            crm: crm.crm.clone(),
            account: account.clone(),
        };
    }
    if route.is_first()
        && let Some(first) = first_pool
        && let Some(domain) = lead.account()
        && let Some((other, owner)) = view.owners.get(domain)
        && *other != lead.id
        && view.can_take(owner, turns.given, None).is_ok()
    {
        let pool = owner_pool(owner, first);
        return Decision::ExistingOwner { pool, rep: owner.clone(), domain: domain.to_owned(), other: other.clone() };
    }
    let mut passed = Vec::new();
    for i in matching.iter().copied() {
        match view.try_pool(i, (turns.cursor)(&view.pools[i].id), turns.given, route.exclude()) {
            Ok((pick, weights)) => return Decision::Turn { route, pool: i, pick, weights, passed },
            Err(p) => passed.push(p),
        }
    }
    let reasons = matching.is_empty().then(|| {
        format!(
            "no pool matches (grade {}, country {}, source {})",
            lead.grade.as_deref().unwrap_or("-"),
            lead.contact.country.as_deref().unwrap_or("-"),
            lead.source
        )
    });
    Decision::Nobody { route, first_pool, passed, reasons }
}

/// The decision with no lead of the batch given yet, from each pool's start (who can take a
/// lead does not depend on the turn): which pool's write of a batch the lead belongs to.
pub fn first_look(lead: &Lead, view: &RoutingView) -> Decision {
    decide(lead, view, &Turns { cursor: &|_| 0, given: &HashMap::new() })
}

/// A lead of pool `pool`'s write in a batch, decided from the write's `cursor` with the leads
/// the batch has `given` so far counted; both move when it takes this pool's turn. A turn in
/// another pool (this one filled up with the batch's own leads) is not this write's to take:
/// the lead waits unassigned for the next pass.
pub fn decide_in_pool(
    lead: &Lead,
    view: &RoutingView,
    pool: usize,
    cursor: &mut u64,
    given: &mut HashMap<String, u32>,
) -> Decision {
    let at = *cursor;
    match decide(lead, view, &Turns { cursor: &|_| at, given }) {
        Decision::Turn { pool: p, pick, route, weights, passed } if p == pool => {
            *cursor = pick.turn + 1;
            *given.entry(pick.rep.clone()).or_default() += 1;
            Decision::Turn { pool: p, pick, route, weights, passed }
        }
        Decision::Turn { route, passed, .. } => {
            let first_pool = view.matching(lead).first().copied();
            Decision::Nobody { route, first_pool, passed, reasons: None }
        }
        other => other,
    }
}

/// Writes `decision` on the lead, with its reason in words; false if it changes nothing.
pub fn apply(decision: &Decision, l: &mut Lead, view: &RoutingView) -> bool {
    let now = view.now;
    match decision {
        Decision::Nothing => false,
        Decision::Turn { route, pool, pick, weights, passed } => {
            give(l, route, &view.pools[*pool], pick, weights, &view.describe(passed), now);
            // A company the CRM could not be asked about in time: routed without it, said so.
            if let Some(note) = l.account().and_then(|d| view.crm?.unanswered.get(d)).cloned() {
                let why = format!("{}; {note}", l.why.clone().unwrap_or_default());
                l.why = Some(why.clone());
                if let Some(h) = l.history.last_mut() {
                    h.reason = why;
                }
            }
            true
        }
        Decision::CrmOwner { pool, rep, domain, crm, account } => {
            give_to_owner(l, &view.pools[*pool], rep, &format!("{domain} in {crm} (account {account})"), now);
            true
        }
        Decision::ExistingOwner { pool, rep, domain, other } => {
            give_to_owner(l, &view.pools[*pool], rep, &format!("{domain} (lead {other})"), now);
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
        Decision::Nobody { route, first_pool, passed, reasons } => {
            let reasons = reasons.clone().unwrap_or_else(|| view.describe(passed));
            nobody(l, route, first_pool.map(|i| view.pools[i].id.as_str()), &reasons, now)
        }
    }
}

/// A manager's move of a lead to a rep of their choosing (`POST /v1/leads/{id}/assign`). It is
/// a person's decision, not routing's: no turn is taken, and history says who made it.
#[derive(Clone, Debug)]
pub struct HandMove {
    pub rep: String,
    pub by: String,
    pub note: Option<String>,
    /// Move it even to a rep who is not available now.
    pub force: bool,
}

/// Why a lead cannot be moved by hand as it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MoveRefused {
    /// The rep is not on the roster (or was removed).
    UnknownRep,
    /// Won or lost: final.
    Closed(LeadStatus),
    /// Still on its way to its first routing decision (or a duplicate, rejected or
    /// disqualified lead, which routing never takes).
    NotRoutable(LeadStatus),
    /// The rep cannot take it now, and the move was not forced.
    Unavailable(Unavailable),
}

impl std::fmt::Display for MoveRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MoveRefused::UnknownRep => write!(f, "no such rep on the roster"),
            MoveRefused::Closed(s) => write!(f, "the lead is {s}, which is final"),
            MoveRefused::NotRoutable(s) => write!(f, "the lead is {s}; only a routed lead can be moved"),
            MoveRefused::Unavailable(u) => write!(f, "the rep is {u} (force to move it anyway)"),
        }
    }
}

/// Moves the lead to `m.rep` if it may go there: false when the rep owns it already. The pool
/// stays when the rep is in it; otherwise it is the first matching pool that has the rep, else
/// the rep's first pool. That pool's SLA clock starts again for the new owner.
pub fn move_by_hand(l: &mut Lead, m: &HandMove, view: &RoutingView) -> Result<bool, MoveRefused> {
    if matches!(l.status, LeadStatus::Won | LeadStatus::Lost) {
        return Err(MoveRefused::Closed(l.status));
    }
    let routed = l.status.is_open() || l.status == LeadStatus::Unassigned;
    if !routed {
        return Err(MoveRefused::NotRoutable(l.status));
    }
    if view.roster.rep(&m.rep).is_none() {
        return Err(MoveRefused::UnknownRep);
    }
    if l.owner.as_deref() == Some(m.rep.as_str()) && l.status.is_open() {
        return Ok(false);
    }
    let unavailable = view.can_take(&m.rep, &HashMap::new(), None).err();
    if let Some(u) = &unavailable
        && !m.force
    {
        return Err(MoveRefused::Unavailable(u.clone()));
    }
    let pools: Vec<String> = view.roster.pools_of(&m.rep).into_iter().map(|(p, _)| p).collect();
    let pool = l
        .pool
        .clone()
        .filter(|p| pools.contains(p))
        .or_else(|| view.matching(l).into_iter().map(|i| view.pools[i].id.clone()).find(|p| pools.contains(p)))
        .or_else(|| pools.first().cloned());
    let mut why = match &l.owner {
        Some(old) if l.status.is_open() => format!("moved by {} from {old} to {}", m.by, m.rep),
        _ => format!("assigned by {} to {}", m.by, m.rep),
    };
    if let Some(u) = unavailable {
        why.push_str(&format!(" (forced: {} is {u})", m.rep));
    }
    if let Some(n) = m.note.as_deref().map(str::trim).filter(|n| !n.is_empty()) {
        why.push_str(&format!(": {}", n.chars().take(500).collect::<String>()));
    }
    let now = view.now;
    let kept = l.pool.clone();
    if !l.status.is_open() {
        // An unassigned lead was nobody's: there is nobody to tell that it moved.
        l.owner = None;
        l.previous_owner = None;
    }
    l.give_to(pool.as_deref().unwrap_or_default(), m.rep.clone(), why, NotificationKind::Assigned, now);
    if pool.is_none() {
        l.pool = kept;
    }
    if let Some(h) = l.history.last_mut() {
        h.by = Some(m.by.clone());
    }
    l.assigned_by(AssignedBy::Manual { manager: m.by.clone() }, now);
    l.sla_due_at = pool
        .and_then(|p| view.pools.iter().find(|x| x.id == p))
        .and_then(|p| p.sla_minutes)
        .map(|m| now + chrono::Duration::minutes(i64::from(m)));
    Ok(true)
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
        Route::New | Route::OwnerGone { .. } | Route::Away { .. } => {
            let mut reason = format!("unassigned: nobody could take it: {reasons}");
            let before = match route {
                Route::OwnerGone { from, why } => Some(format!("owner {from} {why}")),
                Route::Away { from, by } => Some(format!("reassigned by {by} away from {from}")),
                _ => None,
            };
            if let Some(before) = before {
                reason = format!("{before}; {reason}");
                l.previous_owner = l.owner.take();
                l.round += 1;
                l.reroute = None;
            }
            l.pool = first_pool.map(str::to_owned);
            l.sla_due_at = None;
            l.notify_pending = first_pool.map(|_| NotificationKind::Unassigned);
            l.transition(LeadStatus::Unassigned, reason, now);
            true
        }
    }
}

/// Gives the lead to its company's existing owner (`owns`: what they own, in words) without a
/// round-robin turn; the pool's SLA applies.
fn give_to_owner(l: &mut Lead, pool: &Pool, rep: &str, owns: &str, now: DateTime<Utc>) {
    let why = format!(
        "existing owner: {rep} owns {owns}; pool {} ({}); no round-robin turn taken",
        pool.id,
        pool.rule.explain(l)
    );
    l.give_to(&pool.id, rep.to_owned(), why, NotificationKind::Assigned, now);
    l.assigned_by(AssignedBy::ExistingOwner, now);
    l.sla_due_at = pool.sla_minutes.map(|m| now + chrono::Duration::minutes(i64::from(m)));
}

/// Gives the lead to the picked rep, saying why in words.
fn give(l: &mut Lead, route: &Route, pool: &Pool, p: &Pick, weights: &str, passed: &str, now: DateTime<Utc>) {
    let mut why =
        format!("pool {} ({}); round-robin turn {} of weights {weights}", pool.id, pool.rule.explain(l), p.turn + 1);
    if !p.skipped.is_empty() {
        why.push_str(&format!("; skipped {}", describe_skips(&p.skipped)));
    }
    if !passed.is_empty() {
        why.push_str(&format!("; passed over {passed}"));
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
        Route::Away { from, by } => {
            why = format!("reassigned by {by} away from {from}; {why}");
            (NotificationKind::Assigned, AssignedBy::Rerouted { from: from.clone(), manager: by.clone(), turn })
        }
        _ => (NotificationKind::Assigned, AssignedBy::Turn { turn }),
    };
    l.give_to(&pool.id, p.rep.clone(), why, kind, now);
    l.assigned_by(how, now);
    l.sla_due_at = pool.sla_minutes.map(|m| now + chrono::Duration::minutes(i64::from(m)));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::pool::PoolMatch;
    use crate::domain::roster::Rep;
    use crate::domain::{Contact, Email, WeightedRoundRobin};
    use chrono::TimeZone;
    use proptest::prelude::*;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 24, 15, 0, 0).unwrap()
    }

    fn rep(id: &str, active: bool, max_open_leads: Option<u32>) -> Rep {
        Rep { active, max_open_leads, ..Rep::plain(id) }
    }

    fn pool(id: &str, members: &[(String, u32)]) -> Pool {
        Pool {
            id: id.into(),
            rule: PoolMatch { conditions: vec![] },
            rotation: WeightedRoundRobin::new(members.to_vec()).unwrap(),
            manager: None,
            sla_minutes: Some(15),
        }
    }

    fn lead(email: &str) -> Lead {
        let contact = Contact { email: Some(Email::parse(email).unwrap()), ..Default::default() };
        let mut l = Lead::new(LeadId::new(), "web".into(), contact, now());
        l.status = LeadStatus::Scored;
        l
    }

    /// Routes `n` new leads one after another as the assign stage does: the cursor moves past
    /// each turn taken and each rep's leads given count against their cap.
    fn route(view: &RoutingView, n: usize) -> Vec<Decision> {
        let (mut cursor, mut given) = (0u64, HashMap::<String, u32>::new());
        (0..n)
            .map(|i| {
                let c = cursor;
                let d = decide(&lead(&format!("p{i}@co{i}.example")), view, &Turns { cursor: &|_| c, given: &given });
                if let Decision::Turn { pick, .. } = &d {
                    cursor = pick.turn + 1;
                    *given.entry(pick.rep.clone()).or_default() += 1;
                }
                d
            })
            .collect()
    }

    /// A manager's move: refused for a closed or unrouted lead, an unknown rep, or a rep at
    /// capacity unless forced; otherwise the rep owns it, in the pool they are in, with the SLA
    /// clock started again, who moved it recorded, and no turn taken.
    #[test]
    fn a_move_by_hand_is_refused_or_written_with_who() {
        let members = vec![("ana".to_string(), 1), ("ben".to_string(), 1)];
        let pools = vec![pool("all", &members)];
        let roster = Roster::build(&[rep("ana", true, None), rep("ben", true, Some(1))], &pools, &[]);
        let (open, owners) = (HashMap::from([("ben".to_string(), 1)]), HashMap::new());
        let view = RoutingView { pools: &pools, roster: &roster, open: &open, owners: &owners, crm: None, now: now() };
        let hand = |rep: &str, force: bool| HandMove { rep: rep.into(), by: "Maria".into(), note: None, force };
        let mut l = lead("a@acme.com");
        assert_eq!(
            move_by_hand(&mut l.clone(), &hand("ana", false), &view),
            Err(MoveRefused::NotRoutable(LeadStatus::Scored))
        );
        l.give_to("all", "ana".into(), "turn".into(), NotificationKind::Assigned, now());
        l.assigned_by(AssignedBy::Turn { turn: 0 }, now());
        let before = l.clone();
        assert_eq!(move_by_hand(&mut l, &hand("ana", false), &view), Ok(false), "already hers");
        assert_eq!(l, before);
        assert_eq!(move_by_hand(&mut l, &hand("zed", true), &view), Err(MoveRefused::UnknownRep));
        assert_eq!(
            move_by_hand(&mut l, &hand("ben", false), &view),
            Err(MoveRefused::Unavailable(Unavailable::AtCapacity { open: 1, max: 1 }))
        );
        assert_eq!(l, before, "a refused move changes nothing");
        assert_eq!(move_by_hand(&mut l, &hand("ben", true), &view), Ok(true));
        assert_eq!(
            (l.owner.as_deref(), l.previous_owner.as_deref(), l.pool.as_deref()),
            (Some("ben"), Some("ana"), Some("all"))
        );
        assert_eq!(l.assignment.as_ref().map(|a| &a.how), Some(&AssignedBy::Manual { manager: "Maria".into() }));
        assert_eq!(l.sla_due_at, Some(now() + chrono::Duration::minutes(15)));
        let h = l.history.last().unwrap();
        assert_eq!((h.by.as_deref(), h.owner.as_deref()), (Some("Maria"), Some("ben")));
        assert!(h.reason.starts_with("moved by Maria from ana to ben (forced: ben is at capacity"), "{}", h.reason);
        l.status = LeadStatus::Won;
        assert_eq!(move_by_hand(&mut l, &hand("ana", true), &view), Err(MoveRefused::Closed(LeadStatus::Won)));
    }

    fn reps_strategy() -> impl Strategy<Value = Vec<(u32, bool, Option<u32>, u32)>> {
        // Per rep: weight, active, cap, open leads already.
        prop::collection::vec((1u32..4, prop::bool::weighted(0.8), prop::option::of(0u32..4), 0u32..4), 1..6)
    }

    proptest! {
        /// Every lead goes to a rep who can take it (active, under their cap counting the leads
        /// of this run), and a lead goes to nobody only when nobody can take it.
        #[test]
        fn never_to_an_unavailable_rep_and_caps_hold(reps in reps_strategy(), n in 1usize..40) {
            let members: Vec<(String, u32)> = reps.iter().enumerate().map(|(i, r)| (format!("r{i}"), r.0)).collect();
            let roster_reps: Vec<Rep> =
                reps.iter().enumerate().map(|(i, r)| rep(&format!("r{i}"), r.1, r.2)).collect();
            let pools = vec![pool("all", &members)];
            let roster = Roster::build(&roster_reps, &pools, &[]);
            let open: HashMap<String, u32> =
                reps.iter().enumerate().filter(|(_, r)| r.2.is_some()).map(|(i, r)| (format!("r{i}"), r.3)).collect();
            let owners = HashMap::new();
            let view = RoutingView { pools: &pools, roster: &roster, open: &open, owners: &owners, crm: None, now: now() };
            let mut given: HashMap<String, u32> = HashMap::new();
            for d in route(&view, n) {
                let room = |id: &str, given: &HashMap<String, u32>| {
                    let i: usize = id[1..].parse().unwrap();
                    let r = &reps[i];
                    r.1 && r.2.is_none_or(|max| open.get(id).copied().unwrap_or(0) + given.get(id).copied().unwrap_or(0) < max)
                };
                match d {
                    Decision::Turn { pick, .. } => {
                        prop_assert!(room(&pick.rep, &given), "{} could not take it", pick.rep);
                        *given.entry(pick.rep).or_default() += 1;
                    }
                    Decision::Nobody { .. } => {
                        prop_assert!(members.iter().all(|(id, _)| !room(id, &given)), "someone could take it");
                    }
                    other => prop_assert!(false, "unexpected {other:?}"),
                }
            }
        }

        /// With everyone available and no caps, each full period of the rotation gives every
        /// rep exactly their weight in leads.
        #[test]
        fn fair_over_available_reps(weights in prop::collection::vec(1u32..5, 1..6), periods in 1usize..4) {
            let members: Vec<(String, u32)> = weights.iter().enumerate().map(|(i, w)| (format!("r{i}"), *w)).collect();
            let roster_reps: Vec<Rep> = members.iter().map(|(id, _)| rep(id, true, None)).collect();
            let pools = vec![pool("all", &members)];
            let roster = Roster::build(&roster_reps, &pools, &[]);
            let (open, owners) = (HashMap::new(), HashMap::new());
            let view = RoutingView { pools: &pools, roster: &roster, open: &open, owners: &owners, crm: None, now: now() };
            let total: u32 = weights.iter().sum();
            let mut count: HashMap<String, u32> = HashMap::new();
            for d in route(&view, total as usize * periods) {
                let Decision::Turn { pick, .. } = d else { panic!("everyone is available") };
                *count.entry(pick.rep).or_default() += 1;
            }
            for (id, w) in &members {
                prop_assert_eq!(count.get(id).copied().unwrap_or(0), w * periods as u32);
            }
        }

        /// The company's existing owner gets its lead exactly when they can take it; otherwise
        /// the lead takes a round-robin turn among those who can.
        #[test]
        fn stickiness_wins_only_when_the_owner_is_available(active in any::<bool>(), cap in prop::option::of(0u32..3), open_now in 0u32..3) {
            let members = vec![("ana".to_owned(), 1), ("ben".to_owned(), 1)];
            let roster_reps = vec![rep("ana", true, None), rep("ben", active, cap)];
            let pools = vec![pool("all", &members)];
            let roster = Roster::build(&roster_reps, &pools, &[]);
            let open: HashMap<String, u32> = cap.map(|_| ("ben".to_owned(), open_now)).into_iter().collect();
            let owners: HashMap<String, (LeadId, String)> =
                [("acme.example".to_owned(), (LeadId::new(), "ben".to_owned()))].into_iter().collect();
            let view = RoutingView { pools: &pools, roster: &roster, open: &open, owners: &owners, crm: None, now: now() };
            let available = active && cap.is_none_or(|c| open_now < c);
            let d = decide(&lead("cto@acme.example"), &view, &Turns { cursor: &|_| 1, given: &HashMap::new() });
            match d {
                Decision::ExistingOwner { rep, pool, .. } => {
                    prop_assert!(available);
                    prop_assert_eq!(rep, "ben");
                    prop_assert_eq!(pool, 0);
                }
                Decision::Turn { pick, .. } => {
                    prop_assert!(!available);
                    prop_assert_eq!(pick.rep, "ana");
                }
                other => prop_assert!(false, "unexpected {other:?}"),
            }
        }
    }

    #[test]
    fn a_lead_of_an_owned_company_that_matches_no_pool_is_not_routed_by_stickiness() {
        let members = vec![("ana".to_owned(), 1)];
        let mut only_us = pool("us", &members);
        only_us.rule = PoolMatch { conditions: vec![("country".into(), vec!["US".into()])] };
        let pools = vec![only_us];
        let roster = Roster::build(&[rep("ana", true, None)], &pools, &[]);
        let open = HashMap::new();
        let owners: HashMap<String, (LeadId, String)> =
            [("nowhere.example".to_owned(), (LeadId::new(), "ana".to_owned()))].into_iter().collect();
        let view = RoutingView { pools: &pools, roster: &roster, open: &open, owners: &owners, crm: None, now: now() };
        let mut l = lead("cfo@nowhere.example");
        let d = decide(&l, &view, &Turns { cursor: &|_| 0, given: &HashMap::new() });
        let Decision::Nobody { first_pool: None, reasons: Some(ref reasons), .. } = d else { panic!("{d:?}") };
        assert!(reasons.starts_with("no pool matches"), "{reasons}");
        assert!(apply(&d, &mut l, &view));
        assert_eq!((l.status, l.pool.as_deref()), (LeadStatus::Unassigned, None));
    }

    #[test]
    fn an_sla_reassigned_lead_is_not_passed_on_twice() {
        let members = vec![("ana".to_owned(), 1), ("ben".to_owned(), 1)];
        let pools = vec![pool("all", &members)];
        let roster = Roster::build(&[rep("ana", true, None), rep("ben", true, None)], &pools, &[]);
        let (open, owners) = (HashMap::new(), HashMap::new());
        let view = RoutingView { pools: &pools, roster: &roster, open: &open, owners: &owners, crm: None, now: now() };
        let mut l = lead("p@co.example");
        let d = decide(&l, &view, &Turns { cursor: &|_| 0, given: &HashMap::new() });
        assert!(apply(&d, &mut l, &view));
        assert_eq!(l.owner.as_deref(), Some("ana"));
        l.sla_due_at = Some(now() - chrono::Duration::minutes(1));
        let d = decide(&l, &view, &Turns { cursor: &|_| 1, given: &HashMap::new() });
        let Decision::Turn { route: Route::Sla { again: false, .. }, ref pick, .. } = d else { panic!("{d:?}") };
        assert_eq!(pick.rep, "ben");
        assert!(apply(&d, &mut l, &view));
        assert!(l.sla_reassigned());
        l.sla_due_at = Some(now() - chrono::Duration::minutes(1));
        let d = decide(&l, &view, &Turns { cursor: &|_| 2, given: &HashMap::new() });
        assert!(matches!(d, Decision::Nobody { route: Route::Sla { again: true, .. }, .. }), "{d:?}");
    }
}
