//! `POST /v1/route/preview`: where a lead would go and why, decided by the same
//! `domain::routing::decide` as the assign stage, over the same snapshot, without storing
//! anything, moving a cursor or claiming an identity.

use super::Pipeline;
use crate::domain::identity::{identity_keys, key_kind};
use crate::domain::intake::Intake;
use crate::domain::routing::{Decision, Passed, Turns, apply, decide};
use crate::domain::{Lead, LeadId, LeadStatus, RulePoints};
use crate::ports::{LeadStore, Notifier, Queue, StoreError};
use chrono::{DateTime, Duration, Utc};
use std::collections::HashMap;

/// Where a lead would go, and why.
#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct Preview {
    pub grade: Option<String>,
    pub score: Option<i64>,
    pub breakdown: Vec<RulePoints>,
    /// The earlier lead it would be a duplicate of (then it goes to no pool of its own).
    pub duplicate_of: Option<String>,
    /// Null when nobody would take it.
    pub pool: Option<String>,
    pub rep: Option<String>,
    /// The sentence its history would record.
    pub why: String,
    /// Who was passed over on the way, and why.
    pub skipped: Vec<Skipped>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct Skipped {
    pub pool: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rep: Option<String>,
    pub reason: String,
}

impl<S: LeadStore, Q: Queue, N: Notifier> Pipeline<S, Q, N> {
    /// Decides `intake` (its `source` may name any source) as if it arrived at `at`.
    pub async fn preview(&self, intake: Intake, at: Option<DateTime<Utc>>) -> Result<Preview, StoreError> {
        let at = at.unwrap_or_else(|| self.clock.now());
        let honeypot = intake.honeypot;
        let mut lead = intake.into_lead(at);
        let mut out = Preview {
            grade: None,
            score: None,
            breakdown: Vec::new(),
            duplicate_of: None,
            pool: None,
            rep: None,
            why: String::new(),
            skipped: Vec::new(),
        };
        if honeypot {
            out.why = format!("rejected: {}", crate::domain::intake::HONEYPOT);
            return Ok(out);
        }
        // The grade is said even of a duplicate (which the router does not score).
        let scored = self.settings.scoring.score(&lead);
        out.grade = Some(scored.grade);
        out.score = Some(scored.score);
        out.breakdown = scored.breakdown;
        if let Some((by, kind)) = self.earlier_lead(&lead, at).await? {
            out.why = format!("duplicate: same {kind} as lead {by} (within {} days)", self.settings.dedup.window_days);
            out.duplicate_of = Some(by.to_string());
            return Ok(out);
        }
        self.settings.scoring.found_unique(&mut lead, self.settings.dedup.window_days, at);
        if lead.status != LeadStatus::Scored {
            out.why = last_reason(&lead);
            return Ok(out);
        }
        let snapshot = self.snapshot(at, std::slice::from_ref(&lead)).await?;
        let view = snapshot.view(&self.settings.pools, at);
        let mut cursors: HashMap<String, u64> = HashMap::new();
        for i in view.matching(&lead) {
            let id = &self.settings.pools[i].id;
            cursors.insert(id.clone(), self.store.turn(id).await?);
        }
        let cursor = |pool: &str| cursors.get(pool).copied().unwrap_or(0);
        let decision = decide(&lead, &view, &Turns { cursor: &cursor, given: &HashMap::new() });
        let pool_id = |i: usize| self.settings.pools[i].id.clone();
        let passed_over = |passed: &[Passed]| -> Vec<Skipped> {
            passed
                .iter()
                .flat_map(|p| {
                    if p.reps.is_empty() {
                        return vec![Skipped {
                            pool: pool_id(p.pool),
                            rep: None,
                            reason: "the pool has no reps".into(),
                        }];
                    }
                    p.reps
                        .iter()
                        .map(|(rep, why)| Skipped {
                            pool: pool_id(p.pool),
                            rep: Some(rep.clone()),
                            reason: why.to_string(),
                        })
                        .collect()
                })
                .collect()
        };
        out.skipped = match &decision {
            Decision::Turn { pool, pick, passed, .. } => {
                let mut s = passed_over(passed);
                s.extend(pick.skipped.iter().map(|(rep, why)| Skipped {
                    pool: pool_id(*pool),
                    rep: Some(rep.clone()),
                    reason: why.to_string(),
                }));
                s
            }
            Decision::Nobody { passed, .. } => passed_over(passed),
            _ => Vec::new(),
        };
        apply(&decision, &mut lead, &view);
        out.why = last_reason(&lead);
        if lead.status == LeadStatus::Assigned {
            out.pool = lead.pool.clone();
            out.rep = lead.owner.clone();
        }
        Ok(out)
    }

    /// The lead dedup would find this one a duplicate of, and the kind of key they share: the
    /// earliest lead within the window holding one of its identity keys (read, not claimed).
    async fn earlier_lead(&self, lead: &Lead, at: DateTime<Utc>) -> Result<Option<(LeadId, String)>, StoreError> {
        let d = &self.settings.dedup;
        let keys = identity_keys(lead, d.fold_gmail);
        if keys.is_empty() {
            return Ok(None);
        }
        let since = at - Duration::days(i64::from(d.window_days));
        let mut best: Option<(DateTime<Utc>, LeadId, String)> = None;
        for id in self.store.person(keys.clone()).await? {
            let Some(other) = self.store.get(&id).await? else { continue };
            if other.test
                || other.duplicate_of.is_some()
                || other.received_at < since
                || other.received_at > at
                || matches!(other.status, LeadStatus::Rejected | LeadStatus::Fetching)
            {
                continue;
            }
            let theirs = identity_keys(&other, d.fold_gmail);
            let Some(shared) = keys.iter().find(|k| theirs.contains(k)) else { continue };
            if best.as_ref().is_none_or(|(t, _, _)| other.received_at < *t) {
                let kind = key_kind(shared).to_owned();
                best = Some((other.received_at, id, kind));
            }
        }
        Ok(best.map(|(_, id, kind)| (id, kind)))
    }
}

fn last_reason(lead: &Lead) -> String {
    lead.history.last().map(|h| h.reason.clone()).unwrap_or_default()
}
