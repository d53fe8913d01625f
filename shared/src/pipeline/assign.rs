//! Assign: the first matching pool, and the rep whose round-robin turn it is, in one atomic
//! write that advances the pool's cursor by the whole batch.

use super::{Pipeline, StageError, StageResults};
use crate::domain::pool::first_match;
use crate::domain::{Lead, LeadId, LeadStatus, Stage};
use crate::ports::{LeadStore, Message, Notifier, Queue, Updated};
use futures::future::join_all;
use std::collections::{BTreeMap, HashMap};

impl<S: LeadStore, Q: Queue, N: Notifier> Pipeline<S, Q, N> {
    pub(super) async fn assign(&self, messages: Vec<Message>) -> StageResults {
        let ids: Vec<LeadId> = messages.iter().map(|m| m.lead_id.clone()).collect();
        let mut outcome: HashMap<LeadId, Result<(), String>> = HashMap::new();
        let loaded = join_all(ids.iter().map(|id| self.store.get(id))).await;
        let mut by_pool: BTreeMap<usize, Vec<LeadId>> = BTreeMap::new();
        let mut tests: Vec<(LeadId, usize)> = Vec::new();
        let mut unmatched = Vec::new();
        let mut done: Vec<Lead> = Vec::new();
        for (id, l) in ids.iter().zip(loaded) {
            match l {
                Err(e) => {
                    outcome.insert(id.clone(), Err(e.to_string()));
                }
                Ok(None) => {
                    tracing::warn!(lead_id = %id, "assign: no such lead; message dropped");
                }
                Ok(Some(lead)) if lead.status != LeadStatus::Scored => done.push(lead),
                Ok(Some(lead)) => match first_match(&self.settings.pools, &lead) {
                    Some(pool) => {
                        let i = self.settings.pools.iter().position(|p| p.id == pool.id).unwrap_or_default();
                        if lead.test {
                            tests.push((lead.id.clone(), i));
                        } else {
                            by_pool.entry(i).or_default().push(lead.id.clone());
                        }
                    }
                    None => unmatched.push(lead),
                },
            }
        }
        let now = self.clock.now();
        for (i, pool_ids) in by_pool {
            let settings = self.settings.clone();
            let pool_id = settings.pools[i].id.clone();
            let change = move |l: &mut Lead, turn: u64| {
                if l.status != LeadStatus::Scored {
                    return false;
                }
                let pool = &settings.pools[i];
                let rep = pool.rotation.pick(turn).to_owned();
                let why = format!(
                    "pool {} ({}); round-robin turn {} of weights {}",
                    pool.id,
                    pool.rule.explain(l),
                    turn + 1,
                    pool.rotation.describe()
                );
                l.assign_to(&pool.id, rep, why, now);
                true
            };
            match self.store.assign(&pool_id, pool_ids.clone(), change).await {
                Ok(results) => done.extend(results.into_iter().filter_map(|u| match u {
                    Updated::Written(l) => {
                        tracing::info!(lead_id = %l.id, pool = %pool_id, owner = l.owner.as_deref().unwrap_or(""), "assigned");
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
        // A test lead shows where it would go but takes no rep's turn: fairness is for real leads.
        for (id, i) in tests {
            let settings = self.settings.clone();
            let r = self
                .store
                .update(vec![id.clone()], move |l| {
                    if l.status != LeadStatus::Scored {
                        return false;
                    }
                    let pool = &settings.pools[i];
                    let rep = pool.rotation.members().first().map(|m| m.0.clone()).unwrap_or_default();
                    let why = format!(
                        "test lead: pool {} ({}); given to its first rep {rep} without taking a round-robin turn",
                        pool.id,
                        pool.rule.explain(l)
                    );
                    l.assign_to(&pool.id, rep, why, now);
                    true
                })
                .await;
            match r {
                Ok(u) => done.extend(u.into_iter().filter_map(|u| match u {
                    Updated::Written(l) | Updated::Unchanged(l) => Some(*l),
                    Updated::Missing => None,
                })),
                Err(e) => {
                    outcome.insert(id, Err(e.to_string()));
                }
            }
        }
        for lead in unmatched {
            let reason = format!(
                "unassigned: no pool matches (grade {}, country {}, source {})",
                lead.grade.as_deref().unwrap_or("-"),
                lead.contact.country.as_deref().unwrap_or("-"),
                lead.source
            );
            let r = self
                .store
                .update(vec![lead.id.clone()], move |l| {
                    if l.status != LeadStatus::Scored {
                        return false;
                    }
                    l.transition(LeadStatus::Unassigned, reason.clone(), now);
                    true
                })
                .await;
            if let Err(e) = r {
                outcome.insert(lead.id.clone(), Err(e.to_string()));
            }
        }
        let refs: Vec<&Lead> = done.iter().collect();
        let forwarded = self.forward(Some(Stage::Assign), &refs).await.map_err(|e| e.to_string());
        ids.iter()
            .map(|id| outcome.remove(id).unwrap_or(Ok(())).and(forwarded.clone()).map_err(StageError::NotYet))
            .collect()
    }
}
