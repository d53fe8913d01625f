//! Score: the rules' points, the grade, and disqualification, with the breakdown kept.

use super::{Pipeline, StageResults};
use crate::domain::{Lead, LeadStatus, Stage};
use crate::ports::{LeadStore, Message, Notifier, Queue, Updated};

impl<S: LeadStore, Q: Queue, N: Notifier> Pipeline<S, Q, N> {
    pub(super) async fn score(&self, messages: Vec<Message>) -> StageResults {
        let ids: Vec<_> = messages.iter().map(|m| m.lead_id.clone()).collect();
        let settings = self.settings.clone();
        let now = self.clock.now();
        let change = move |l: &mut Lead| {
            if l.status != LeadStatus::Unique {
                return false;
            }
            settings.scoring.apply(l, now);
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
