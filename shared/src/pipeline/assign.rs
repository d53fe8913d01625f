//! Assign: the first matching pool with someone available, and the rep whose round-robin turn
//! it is among those who can take the lead, in one atomic write that advances the pool's
//! cursor by the whole batch. The same stage reassigns: a lead whose owner let the pool's SLA
//! pass, or left the roster, and an unassigned lead once someone can take it.

use super::{Pipeline, StageError, StageResults};
use crate::domain::roster::{Pick, Unavailable, describe_skips, pick};
use crate::domain::{AssignedBy, Lead, LeadId, LeadStatus, NotificationKind, Pool, Roster, Stage};
use crate::ports::{LeadStore, Message, Notifier, Queue, StoreError, Turns, Updated};
use chrono::{DateTime, Utc};
use futures::future::join_all;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

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

/// Everything a routing decision reads, fixed for one batch.
struct Context {
    roster: Roster,
    /// Open leads per rep with a `max_open_leads`, as the batch started.
    open: HashMap<String, u32>,
    now: DateTime<Utc>,
    /// Leads dedup found unique (its finding came on their messages) and when.
    unique: HashMap<LeadId, DateTime<Utc>>,
    settings: Arc<crate::config::Settings>,
}

impl Context {
    /// Writes dedup's finding and the score on a `received` lead that dedup found unique, so
    /// that the lead is routed as `scored` in the same write. True if it changed the lead.
    fn prepare(&self, l: &mut Lead) -> bool {
        match self.unique.get(&l.id) {
            Some(at) if l.status == LeadStatus::Received => {
                super::dedup::mark_unique(&self.settings, l, *at);
                true
            }
            _ => false,
        }
    }

    fn can_take(&self, rep: &str, given: &HashMap<String, u32>, exclude: Option<&str>) -> Result<(), Unavailable> {
        if exclude == Some(rep) {
            return Err(Unavailable::PreviousOwner);
        }
        let Some(r) = self.roster.rep(rep) else { return Err(Unavailable::Inactive) };
        let open = self.open.get(rep).copied().unwrap_or(0) + given.get(rep).copied().unwrap_or(0);
        r.availability(self.now, open)
    }

    fn try_pool(&self, pool: &Pool, cursor: u64, given: &HashMap<String, u32>, exclude: Option<&str>) -> PoolTry {
        match self.roster.rotation(&pool.id) {
            None => PoolTry::Nobody(format!("pool {} has no reps", pool.id)),
            Some(rotation) => match pick(rotation, cursor, |r| self.can_take(r, given, exclude)) {
                Ok(p) => PoolTry::Picked(p, rotation.describe()),
                Err(skips) => PoolTry::Nobody(format!("pool {}: {}", pool.id, describe_skips(&skips))),
            },
        }
    }

    fn matching(&self, lead: &Lead) -> Vec<usize> {
        (0..self.settings.pools.len()).filter(|i| self.settings.pools[*i].rule.matches(lead)).collect()
    }
}

enum PoolTry {
    Picked(Pick, String),
    Nobody(String),
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

impl<S: LeadStore, Q: Queue, N: Notifier> Pipeline<S, Q, N> {
    /// The roster in force: the document's reps with the changes made through the API.
    pub async fn roster(&self) -> Result<Roster, StoreError> {
        let changes = self.store.reps().await?;
        Ok(Roster::build(&self.settings.reps, &self.settings.pools, &changes))
    }

    pub(super) async fn assign(&self, messages: Vec<Message>) -> StageResults {
        let ids: Vec<LeadId> = messages.iter().map(|m| m.lead_id.clone()).collect();
        let unique = messages.iter().filter_map(|m| Some((m.lead_id.clone(), m.unique_at?))).collect();
        let ctx = match self.context(unique).await {
            Ok(c) => Arc::new(c),
            Err(e) => return super::all_failed(ids.len(), e),
        };
        let now = ctx.now;
        let mut outcome: HashMap<LeadId, Result<(), String>> = HashMap::new();
        // A lead twice in one batch (messages for it from two paths) is decided and written
        // once: a transaction may not name one item twice.
        let mut seen = std::collections::HashSet::new();
        let distinct: Vec<&LeadId> = ids.iter().filter(|id| seen.insert(*id)).collect();
        let loaded = join_all(distinct.iter().map(|id| self.store.get(id))).await;
        let mut by_pool: BTreeMap<usize, Vec<LeadId>> = BTreeMap::new();
        let mut singles: Vec<(LeadId, Single)> = Vec::new();
        let mut done: Vec<Lead> = Vec::new();
        // Choosing the pool needs no cursor (who is available does not depend on the turn);
        // capacity used by this batch is counted again inside the write.
        let given: HashMap<String, u32> = HashMap::new();
        let mut leads = Vec::with_capacity(ids.len());
        for (id, l) in distinct.into_iter().zip(loaded) {
            match l {
                Err(e) => {
                    outcome.insert(id.clone(), Err(e.to_string()));
                }
                Ok(None) => tracing::warn!(lead_id = %id, "assign: no such lead; message dropped"),
                Ok(Some(mut lead)) => {
                    let prepared = ctx.prepare(&mut lead);
                    match needs_routing(&lead, &ctx.roster, now) {
                        Some(route) => leads.push((lead, route)),
                        // Disqualified by its score: written as such.
                        None if prepared => singles.push((lead.id.clone(), Single::Settle)),
                        None => done.push(lead),
                    }
                }
            }
        }
        // Owner stickiness: who owns each new lead's company, in one read for the batch.
        let mut domains: Vec<String> = leads
            .iter()
            .filter(|(l, r)| !l.test && matches!(r, Route::New | Route::Retry))
            .filter_map(|(l, _)| l.account().map(str::to_owned))
            .collect();
        domains.sort();
        domains.dedup();
        let since = now - chrono::Duration::days(i64::from(self.settings.dedup.window_days));
        let owners = match self.store.account_owners(domains, since).await {
            Ok(o) => o,
            Err(e) => return super::all_failed(ids.len(), e),
        };
        for (lead, route) in leads {
            let matching = ctx.matching(&lead);
            if lead.test {
                singles.push((lead.id.clone(), Single::Test(matching.first().copied())));
                continue;
            }
            if matches!(route, Route::Sla { again: true, .. }) {
                singles.push((lead.id.clone(), Single::SlaAgain));
                continue;
            }
            if matches!(route, Route::New | Route::Retry)
                && let Some(domain) = lead.account()
                && let Some((other, owner)) = owners.get(domain)
                && *other != lead.id
                && ctx.can_take(owner, &given, None).is_ok()
            {
                let single = Single::Sticky { owner: owner.clone(), other: other.clone(), domain: domain.to_owned() };
                singles.push((lead.id.clone(), single));
                continue;
            }
            // The first matching pool with someone available; the others are said in history.
            let chosen = matching.iter().copied().find(|i| {
                matches!(ctx.try_pool(&ctx.settings.pools[*i], 0, &given, route.exclude()), PoolTry::Picked(..))
            });
            match chosen {
                Some(i) => by_pool.entry(i).or_default().push(lead.id.clone()),
                None => singles.push((lead.id.clone(), Single::Nobody)),
            }
        }
        for (i, pool_ids) in by_pool {
            let ctx = ctx.clone();
            let pool_id = ctx.settings.pools[i].id.clone();
            let change = move |l: &mut Lead, turns: &mut Turns| {
                let prepared = ctx.prepare(l);
                let Some(route) = needs_routing(l, &ctx.roster, ctx.now) else { return prepared };
                let matching = ctx.matching(l);
                let mut passed = Vec::new();
                for j in matching.iter().copied().take_while(|j| *j != i) {
                    if let PoolTry::Nobody(r) = ctx.try_pool(&ctx.settings.pools[j], 0, &turns.given, route.exclude()) {
                        passed.push(r);
                    }
                }
                let pool = &ctx.settings.pools[i];
                match ctx.try_pool(pool, turns.cursor, &turns.given, route.exclude()) {
                    PoolTry::Picked(p, weights) => {
                        turns.cursor = p.turn + 1;
                        *turns.given.entry(p.rep.clone()).or_default() += 1;
                        give(l, &route, pool, &p, &weights, &passed, ctx.now);
                        true
                    }
                    PoolTry::Nobody(r) => {
                        passed.push(r);
                        let first = matching.first().map(|j| ctx.settings.pools[*j].id.as_str());
                        nobody(l, &route, first, &passed.join("; "), ctx.now) || prepared
                    }
                }
            };
            match self.store.assign(&pool_id, pool_ids.clone(), change).await {
                Ok(results) => done.extend(results.into_iter().filter_map(|u| match u {
                    Updated::Written(l) => {
                        tracing::info!(lead_id = %l.id, pool = %pool_id, owner = l.owner.as_deref().unwrap_or(""), status = %l.status, "routed");
                        Some(*l)
                    }
                    Updated::Unchanged(l) => Some(*l),
                    Updated::Missing => None,
                })),
                Err(e) => {
                    for id in pool_ids {
                        outcome.insert(id, Err(e.to_string()));
                    }
                }
            }
        }
        // The leads decided one by one are still written together: one store call (one
        // transaction on SQLite), each lead guarded on its own.
        if !singles.is_empty() {
            let ids: Vec<LeadId> = singles.iter().map(|(id, _)| id.clone()).collect();
            let decided: HashMap<LeadId, Single> = singles.into_iter().collect();
            let ctx = ctx.clone();
            let r = self.store.update(ids.clone(), move |l| decided.get(&l.id).is_some_and(|s| s.apply(l, &ctx))).await;
            match r {
                Ok(u) => done.extend(u.into_iter().filter_map(|u| match u {
                    Updated::Written(l) | Updated::Unchanged(l) => Some(*l),
                    Updated::Missing => None,
                })),
                Err(e) => {
                    for id in ids {
                        outcome.insert(id, Err(e.to_string()));
                    }
                }
            }
        }
        let refs: Vec<&Lead> = done.iter().collect();
        let forwarded = self.forward(Some(Stage::Assign), &refs).await.map_err(|e| e.to_string());
        ids.iter()
            .map(|id| outcome.get(id).cloned().unwrap_or(Ok(())).and(forwarded.clone()).map_err(StageError::NotYet))
            .collect()
    }

    async fn context(&self, unique: HashMap<LeadId, DateTime<Utc>>) -> Result<Context, StoreError> {
        let roster = self.roster().await?;
        let capped: Vec<(String, u32)> =
            roster.reps().iter().filter_map(|r| r.max_open_leads.map(|m| (r.id.clone(), m))).collect();
        let counts = join_all(capped.iter().map(|(r, max)| self.store.open_count(r, *max))).await;
        let mut open = HashMap::new();
        for ((rep, _), c) in capped.into_iter().zip(counts) {
            open.insert(rep, c?);
        }
        Ok(Context { roster, open, now: self.clock.now(), unique, settings: self.settings.clone() })
    }
}

/// A lead decided on its own, outside the pool's round-robin write.
#[derive(Clone)]
enum Single {
    /// A test lead shows where it would go but takes no rep's turn: fairness is for real leads.
    Test(Option<usize>),
    /// The account already has an owner who can take it.
    Sticky { owner: String, other: LeadId, domain: String },
    /// No matching pool has anyone available.
    Nobody,
    /// Past its SLA a second time: it stays, and the manager is told.
    SlaAgain,
    /// Nothing to route: only dedup's finding and the score to write (a disqualified lead).
    Settle,
}

impl Single {
    fn apply(&self, l: &mut Lead, ctx: &Context) -> bool {
        let prepared = ctx.prepare(l);
        self.decide(l, ctx) || prepared
    }

    fn decide(&self, l: &mut Lead, ctx: &Context) -> bool {
        let Some(route) = needs_routing(l, &ctx.roster, ctx.now) else { return false };
        let matching = ctx.matching(l);
        match self {
            Single::Settle => false,
            Single::Test(pool) => {
                let Some(pool) = pool.map(|i| &ctx.settings.pools[i]) else {
                    return nobody(l, &Route::New, None, "no pool matches this test lead", ctx.now);
                };
                let rep = ctx.roster.rotation(&pool.id).map(|r| r.pick(0).to_owned()).unwrap_or_default();
                let why = format!(
                    "test lead: pool {} ({}); given to its first rep {rep} without taking a round-robin turn",
                    pool.id,
                    pool.rule.explain(l)
                );
                l.assign_to(&pool.id, rep, why, ctx.now);
                l.assigned_by(AssignedBy::Test, ctx.now);
                true
            }
            Single::Sticky { owner, other, domain } => {
                if !matches!(route, Route::New | Route::Retry) {
                    return false;
                }
                let pool = matching
                    .iter()
                    .map(|i| &ctx.settings.pools[*i])
                    .find(|p| ctx.roster.rotation(&p.id).is_some_and(|r| r.members().iter().any(|m| m.0 == *owner)))
                    .or_else(|| matching.first().map(|i| &ctx.settings.pools[*i]));
                let pool_id = pool.map(|p| p.id.clone()).unwrap_or_default();
                let why = format!("existing owner: {owner} owns {domain} (lead {other}); no round-robin turn taken");
                l.give_to(&pool_id, owner.clone(), why, NotificationKind::Assigned, ctx.now);
                l.assigned_by(AssignedBy::ExistingOwner, ctx.now);
                l.sla_due_at =
                    pool.and_then(|p| p.sla_minutes).map(|m| ctx.now + chrono::Duration::minutes(i64::from(m)));
                true
            }
            Single::SlaAgain => {
                if !matches!(route, Route::Sla { again: true, .. }) {
                    return false;
                }
                let first = matching.first().map(|i| ctx.settings.pools[*i].id.as_str());
                nobody(l, &route, first, "it was already reassigned once after its SLA; the manager decides", ctx.now)
            }
            Single::Nobody => {
                let reasons: Vec<String> = matching
                    .iter()
                    .filter_map(|i| match ctx.try_pool(&ctx.settings.pools[*i], 0, &HashMap::new(), route.exclude()) {
                        PoolTry::Nobody(r) => Some(r),
                        PoolTry::Picked(..) => None,
                    })
                    .collect();
                if reasons.len() < matching.len() {
                    // Someone became available since the decision: route it on the next pass.
                    return false;
                }
                let reasons = if matching.is_empty() {
                    format!(
                        "no pool matches (grade {}, country {}, source {})",
                        l.grade.as_deref().unwrap_or("-"),
                        l.contact.country.as_deref().unwrap_or("-"),
                        l.source
                    )
                } else {
                    reasons.join("; ")
                };
                let first = matching.first().map(|i| ctx.settings.pools[*i].id.as_str());
                nobody(l, &route, first, &reasons, ctx.now)
            }
        }
    }
}
