//! Score: the rules' points, the grade, and disqualification, with the breakdown kept.

use super::{Pipeline, StageResults};
use crate::config::Settings;
use crate::domain::{Lead, LeadStatus, Stage};
use crate::ports::{LeadStore, Message, Notifier, Queue, Updated};
use chrono::{DateTime, Utc};

impl<S: LeadStore, Q: Queue, N: Notifier> Pipeline<S, Q, N> {
    pub(super) async fn score(&self, messages: Vec<Message>) -> StageResults {
        let ids: Vec<_> = messages.iter().map(|m| m.lead_id.clone()).collect();
        let settings = self.settings.clone();
        let now = self.clock.now();
        let change = move |l: &mut Lead| {
            if l.status != LeadStatus::Unique {
                return false;
            }
            apply_score(&settings, l, now);
            true
        };
        let n = messages.len();
        let results = match self.store.update(ids, change).await {
            Ok(r) => r,
            Err(e) => return super::all_failed(n, e),
        };
        let leads: Vec<&Lead> = results
            .iter()
            .filter_map(|u| match u {
                Updated::Written(l) | Updated::Unchanged(l) => Some(l.as_ref()),
                Updated::Missing => None,
            })
            .collect();
        match self.forward(Some(Stage::Score), &leads).await {
            Ok(()) => (0..n).map(|_| Ok(())).collect(),
            Err(e) => super::all_failed(n, e),
        }
    }
}

/// Scores a `unique` lead and moves it to `scored` or `disqualified`, the points in its history.
pub(super) fn apply_score(settings: &Settings, l: &mut Lead, now: DateTime<Utc>) {
    let s = settings.scoring.score(l);
    let parts = s.breakdown.iter().map(|r| format!("{} {:+}", r.rule, r.points)).collect::<Vec<_>>();
    let parts = if parts.is_empty() { "no rule matched".to_owned() } else { parts.join(", ") };
    l.score = Some(s.score);
    l.breakdown = s.breakdown;
    l.grade = Some(s.grade.clone());
    if s.disqualified {
        let floor = settings.scoring.disqualify_below.unwrap_or_default();
        l.transition(
            LeadStatus::Disqualified,
            format!("score {} ({parts}) is under disqualify_below {floor}", s.score),
            now,
        );
    } else {
        l.transition(LeadStatus::Scored, format!("score {} ({parts}): grade {}", s.score, s.grade), now);
    }
}
