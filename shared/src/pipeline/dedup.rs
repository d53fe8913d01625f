//! Dedup: the first lead to claim an identity key owns it; a later one inside the window
//! becomes a duplicate, a touch on the original, and news for the original's owner.

use super::{Onward, Pipeline, StageError, StageResults};
use crate::domain::identity::{identity_keys, key_kind};
use crate::domain::{LeadStatus, NotificationKind, Stage, Touch};
use crate::ports::{Claim, LeadStore, Message, Notifier, Queue, Updated};
use chrono::Duration;
use futures::future::join_all;

impl<S: LeadStore, Q: Queue, N: Notifier> Pipeline<S, Q, N> {
    pub(super) async fn dedup(&self, messages: Vec<Message>) -> StageResults {
        let outcomes = join_all(messages.into_iter().map(|m| self.dedup_one(m))).await;
        self.forward_batch(Stage::Dedup, outcomes).await
    }

    /// What to send on, if anything.
    async fn dedup_one(&self, message: Message) -> Result<Option<Onward>, StageError> {
        let id = message.lead_id;
        let Some(lead) = self.store.get(&id).await? else {
            tracing::warn!(lead_id = %id, "dedup: no such lead; message dropped");
            return Ok(None);
        };
        if lead.status != LeadStatus::Received {
            return Ok(Some(Onward::Lead(Box::new(lead))));
        }
        let d = &self.settings.dedup;
        let now = self.clock.now();
        // A test lead claims nothing: a real lead must never become a duplicate of a test.
        // Nor does a lead whose erasure waits for it to settle: nothing of it may be kept.
        let keys = if lead.test || lead.erasure_pending { Vec::new() } else { identity_keys(&lead, d.fold_gmail) };
        let stale_before = now - Duration::days(i64::from(d.window_days));
        let window = d.window_days;
        let updated = match self.store.claim(&id, keys, now, stale_before).await? {
            Claim::Unique => {
                // The claims are the finding's record. Scoring is pure: assign writes the
                // finding, the score and the owner in one write (`ScoringRules::found_unique`), which saves a
                // write per lead, and the score stage's queue hop. The score stage stays for
                // leads resumed in `unique`.
                tracing::info!(lead_id = %id, "dedup done: unique");
                let m = Message { unique_at: Some(now), ..Message::lead(id) };
                return Ok(Some(Onward::Message(Stage::Assign, m)));
            }
            Claim::Taken { key, by } => {
                let kind = key_kind(&key).to_owned();
                let touch =
                    Touch { lead_id: id.clone(), source: lead.source.clone(), at: now, matched_on: kind.clone() };
                // The touch first: it is idempotent, and the duplicate's own write is the guard.
                // Whether the owner is told of this one is decided with it, on the original.
                let quiet = Duration::minutes(i64::from(d.re_engaged_every_minutes));
                let original =
                    self.store.update(vec![by.clone()], move |orig| orig.touch(touch.clone(), quiet)).await?;
                let tell = match original.first() {
                    Some(Updated::Written(o) | Updated::Unchanged(o)) => o.re_engaged_by(&id),
                    _ => false,
                };
                let mut reason = format!("duplicate: same {kind} as lead {by} (within {window} days)");
                if !tell {
                    reason.push_str(&format!(
                        "; not notified: its rep heard of this person less than {} minutes ago",
                        d.re_engaged_every_minutes
                    ));
                }
                self.store
                    .update(vec![id.clone()], move |l| {
                        if l.status != LeadStatus::Received {
                            return false;
                        }
                        l.duplicate_of = Some(by.clone());
                        l.notify_pending = tell.then_some(NotificationKind::ReEngaged);
                        l.transition(LeadStatus::Duplicate, reason.clone(), now);
                        true
                    })
                    .await?
            }
        };
        tracing::info!(lead_id = %id, "dedup done");
        match updated.into_iter().next() {
            Some(Updated::Written(l) | Updated::Unchanged(l)) => Ok(Some(Onward::Lead(l))),
            _ => Ok(None),
        }
    }
}
