//! Assign: the first matching pool with someone available, and the rep whose round-robin turn
//! it is among those who can take the lead, in one atomic write that advances the pool's
//! cursor by the whole batch. The same stage reassigns: a lead whose owner let the pool's SLA
//! pass, or left the roster, and an unassigned lead once someone can take it.

use super::{Pipeline, StageError, StageResults};
use crate::domain::routing::{Decision, RoutingView, apply, decide_in_pool, first_look};
use crate::domain::{Lead, LeadId, LeadStatus, Roster, Stage};
use crate::ports::{LeadStore, Message, Notifier, Queue, StoreError, Turns as Cursor, Updated};
use chrono::{DateTime, Utc};
use futures::future::join_all;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

pub use crate::domain::routing::{Route, needs_routing};

/// What routing decisions read from the store, at one time, for some leads.
pub(super) struct Snapshot {
    pub roster: Roster,
    /// Open leads per rep with a `max_open_leads`.
    pub open: HashMap<String, u32>,
    /// Each company's existing owner, for the leads' companies.
    pub owners: HashMap<String, (LeadId, String)>,
    /// `[stickiness] crm`: the companies' owners in the CRM.
    pub crm: Option<crate::domain::routing::CrmAccounts>,
}

impl Snapshot {
    pub(super) fn view<'a>(&'a self, pools: &'a [crate::domain::Pool], now: DateTime<Utc>) -> RoutingView<'a> {
        RoutingView { pools, roster: &self.roster, open: &self.open, owners: &self.owners, crm: self.crm.as_ref(), now }
    }
}

/// Everything a routing decision reads, fixed for one batch.
struct Context {
    /// As the batch started.
    snapshot: Snapshot,
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
                self.settings.scoring.found_unique(l, self.settings.dedup.window_days, *at);
                true
            }
            _ => false,
        }
    }

    fn view(&self) -> RoutingView<'_> {
        self.snapshot.view(&self.settings.pools, self.now)
    }

    fn first_look(&self, l: &Lead) -> Decision {
        first_look(l, &self.view())
    }
}

/// How long routing waits for the CRM's account owners (`[stickiness] crm`) before it decides
/// without them: routing latency never depends on the CRM by more than this.
pub const CRM_BUDGET: std::time::Duration = std::time::Duration::from_millis(400);

impl<S: LeadStore, Q: Queue, N: Notifier> Pipeline<S, Q, N> {
    /// The roster in force: the document's reps with the changes made through the API.
    pub async fn roster(&self) -> Result<Roster, StoreError> {
        let changes = self.store.reps().await?;
        Ok(Roster::build(&self.settings.reps, &self.settings.pools, &changes))
    }

    pub(super) async fn assign(&self, messages: Vec<Message>) -> StageResults {
        let ids: Vec<LeadId> = messages.iter().map(|m| m.lead_id.clone()).collect();
        let unique = messages.iter().filter_map(|m| Some((m.lead_id.clone(), m.unique_at?))).collect();
        let mut outcome: HashMap<LeadId, StageError> = HashMap::new();
        // A lead twice in one batch (messages for it from two paths) is decided and written
        // once: a transaction may not name one item twice.
        let mut seen = std::collections::HashSet::new();
        let distinct: Vec<&LeadId> = ids.iter().filter(|id| seen.insert(*id)).collect();
        let loaded = join_all(distinct.iter().map(|id| self.store.get(id))).await;
        let mut leads: Vec<Lead> = Vec::with_capacity(ids.len());
        for (id, l) in distinct.into_iter().zip(loaded) {
            match l {
                Err(e) => {
                    outcome.insert(id.clone(), e.into());
                }
                Ok(None) => tracing::warn!(lead_id = %id, "assign: no such lead; message dropped"),
                Ok(Some(lead)) => leads.push(lead),
            }
        }
        let ctx = match self.context(unique, &leads).await {
            Ok(c) => Arc::new(c),
            Err(e) => return super::all_failed(ids.len(), e),
        };
        // Each lead goes to the write of the pool whose turn it takes, or is decided on its
        // own (test lead, existing owner, nobody, only dedup's finding to write).
        let mut by_pool: BTreeMap<usize, Vec<LeadId>> = BTreeMap::new();
        let mut singles: Vec<LeadId> = Vec::new();
        let mut done: Vec<Lead> = Vec::new();
        for mut lead in leads {
            let prepared = ctx.prepare(&mut lead);
            match ctx.first_look(&lead) {
                Decision::Turn { pool, .. } => by_pool.entry(pool).or_default().push(lead.id.clone()),
                Decision::Nothing if !prepared => done.push(lead),
                _ => singles.push(lead.id.clone()),
            }
        }
        for (i, pool_ids) in by_pool {
            let ctx = ctx.clone();
            let pool_id = ctx.settings.pools[i].id.clone();
            let change = move |l: &mut Lead, turns: &mut Cursor| {
                let prepared = ctx.prepare(l);
                let view = ctx.view();
                let decision = decide_in_pool(l, &view, i, &mut turns.cursor, &mut turns.given);
                apply(&decision, l, &view) || prepared
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
                    let e = StageError::from(e);
                    for id in pool_ids {
                        outcome.insert(id, e.clone());
                    }
                }
            }
        }
        // The leads decided one by one are still written together: one store call (one
        // transaction on SQLite), each lead decided again on what it is when written.
        if !singles.is_empty() {
            let ctx = ctx.clone();
            let r = self
                .store
                .update(singles.clone(), move |l| {
                    let prepared = ctx.prepare(l);
                    match ctx.first_look(l) {
                        // Someone became available since: it is routed on the next pass.
                        Decision::Turn { .. } => prepared,
                        decision => apply(&decision, l, &ctx.view()) || prepared,
                    }
                })
                .await;
            match r {
                Ok(u) => done.extend(u.into_iter().filter_map(|u| match u {
                    Updated::Written(l) | Updated::Unchanged(l) => Some(*l),
                    Updated::Missing => None,
                })),
                Err(e) => {
                    let e = StageError::from(e);
                    for id in singles {
                        outcome.insert(id, e.clone());
                    }
                }
            }
        }
        let refs: Vec<&Lead> = done.iter().collect();
        let forwarded = self.forward(Some(Stage::Assign), &refs).await.map_err(|e| e.to_string());
        ids.iter()
            .map(|id| match outcome.get(id) {
                Some(e) => Err(e.clone()),
                None => forwarded.clone().map_err(StageError::NotYet),
            })
            .collect()
    }

    async fn context(&self, unique: HashMap<LeadId, DateTime<Utc>>, leads: &[Lead]) -> Result<Context, StoreError> {
        let now = self.clock.now();
        let snapshot = self.snapshot(now, leads).await?;
        Ok(Context { snapshot, now, unique, settings: self.settings.clone() })
    }

    /// What `leads` are decided on at `now`: the roster, open leads of capped reps, and who
    /// owns each new lead's company (owner stickiness), in one read for them all.
    pub(super) async fn snapshot(&self, now: DateTime<Utc>, leads: &[Lead]) -> Result<Snapshot, StoreError> {
        let roster = self.roster().await?;
        let capped: Vec<(String, u32)> =
            roster.reps().iter().filter_map(|r| r.max_open_leads.map(|m| (r.id.clone(), m))).collect();
        let counts = join_all(capped.iter().map(|(r, max)| self.store.open_count(r, *max))).await;
        let mut open = HashMap::new();
        for ((rep, _), c) in capped.into_iter().zip(counts) {
            open.insert(rep, c?);
        }
        let mut domains: Vec<String> = leads
            .iter()
            .filter(|l| {
                !l.test && matches!(l.status, LeadStatus::Received | LeadStatus::Scored | LeadStatus::Unassigned)
            })
            .filter_map(|l| l.account().map(str::to_owned))
            .collect();
        domains.sort();
        domains.dedup();
        let since = now - chrono::Duration::days(i64::from(self.settings.dedup.window_days));
        let crm = self.crm_accounts(&roster, &domains).await;
        let owners = self.store.account_owners(domains, since).await?;
        Ok(Snapshot { roster, open, owners, crm })
    }

    /// With `[stickiness] crm`: each domain's accounts in the CRM whose owner is a rep, asked
    /// concurrently within [`CRM_BUDGET`]; a domain not answered in time is routed without the
    /// CRM (and `why` says so). Answers are cached by the client for a few minutes, so a
    /// burst from one company costs one lookup.
    async fn crm_accounts(&self, roster: &Roster, domains: &[String]) -> Option<crate::domain::routing::CrmAccounts> {
        let name = self.settings.crm.stickiness?;
        let client = self.crm.as_ref()?;
        let mut out = crate::domain::routing::CrmAccounts { crm: name.label().to_owned(), ..Default::default() };
        if domains.is_empty() {
            return Some(out);
        }
        // Each account lookup runs on its own: one that outlasts the budget still finishes and
        // fills the cache, so the company's next lead is decided with its owner.
        let account_lookups: Vec<_> = domains
            .iter()
            .map(|d| {
                let (client, d) = (client.clone(), d.clone());
                tokio::spawn(async move {
                    let found = client.account_owners(name, &d).await;
                    (d, found)
                })
            })
            .collect();
        let lookups = async {
            let users =
                join_all(roster.reps().iter().map(|r| async move { (r.id.clone(), client.user(name, r).await) }));
            let accounts =
                async { join_all(account_lookups).await.into_iter().filter_map(Result::ok).collect::<Vec<_>>() };
            futures::join!(users, accounts)
        };
        match tokio::time::timeout(CRM_BUDGET, lookups).await {
            Ok((users, accounts)) => {
                let rep_of: HashMap<String, String> =
                    users.into_iter().filter_map(|(rep, u)| Some((u.ok()??, rep))).collect();
                for (domain, found) in accounts {
                    match found {
                        Ok(list) => {
                            let reps: Vec<(String, String)> = list
                                .into_iter()
                                .filter_map(|a| Some((a.account, rep_of.get(&a.owner)?.clone())))
                                .collect();
                            out.owners.insert(domain, reps);
                        }
                        Err(e) => {
                            let why = e.error().unwrap_or_default();
                            out.unanswered.insert(
                                domain,
                                format!("{} owner lookup failed ({why}), so round-robin", name.label()),
                            );
                        }
                    }
                }
            }
            Err(_) => {
                for d in domains {
                    out.unanswered.insert(
                        d.clone(),
                        format!("{} did not answer within {} ms, so round-robin", name.label(), CRM_BUDGET.as_millis()),
                    );
                }
            }
        }
        Some(out)
    }
}
