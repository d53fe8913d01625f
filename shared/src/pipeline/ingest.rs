//! Ingest: a normalized submission becomes a durably stored lead, then goes to dedup.

use super::Pipeline;
use crate::domain::{Intake, Lead, LeadId, LeadStatus};
use crate::ports::{Inserted, LeadStore, Notifier, Queue, StoreError};
use futures::future::join_all;

/// A submission from any source, already normalized.
#[derive(Debug, Clone)]
pub struct Submission {
    pub id: LeadId,
    pub source: String,
    /// The source's own id for the lead (Meta's `leadgen_id`, …).
    pub source_ref: Option<String>,
    pub intake: Intake,
    pub test: bool,
    /// Only the id is known: the fields are fetched from the source first.
    pub fetch: bool,
    /// Stored, but refused for routing, with this reason.
    pub reject: Option<String>,
}

impl Submission {
    pub fn new(id: LeadId, source: impl Into<String>, intake: Intake) -> Submission {
        Submission { id, source: source.into(), source_ref: None, intake, test: false, fetch: false, reject: None }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    pub lead_id: LeadId,
    /// False when the id was known: a retry, or a reused Idempotency-Key.
    pub created: bool,
}

impl<S: LeadStore, Q: Queue, N: Notifier> Pipeline<S, Q, N> {
    /// Stores the lead (durable on return) and queues it for its first stage.
    pub async fn accept(&self, sub: Submission) -> Result<Accepted, StoreError> {
        let mut out = self.accept_many(vec![sub]).await?;
        out.pop().ok_or_else(|| StoreError::Unavailable("no result for the lead".into()))
    }

    /// Stores every lead (durable on return; the writes share commits) and queues the new ones.
    pub async fn accept_many(&self, subs: Vec<Submission>) -> Result<Vec<Accepted>, StoreError> {
        let now = self.clock.now();
        let leads: Vec<Lead> = subs.into_iter().map(|s| self.lead_of(s, now)).collect();
        let stored = join_all(leads.iter().map(|l| self.store.insert(l.clone()))).await;
        let mut out = Vec::with_capacity(leads.len());
        let mut queued: Vec<&Lead> = Vec::new();
        for (lead, result) in leads.iter().zip(stored) {
            match result? {
                Inserted::New => {
                    tracing::info!(lead_id = %lead.id, source = %lead.source, status = %lead.status, "lead stored");
                    queued.push(lead);
                    out.push(Accepted { lead_id: lead.id.clone(), created: true });
                }
                Inserted::Existing(existing) => {
                    tracing::info!(lead_id = %existing.id, status = %existing.status, "lead already known; nothing created");
                    out.push(Accepted { lead_id: existing.id, created: false });
                }
            }
        }
        if let Err(e) = self.forward(None, &queued).await {
            // Stored is what counts: the lead is found again on restart or by the sweep.
            tracing::warn!(error = %e, "leads stored but not queued; they will be resumed");
        }
        Ok(out)
    }

    fn lead_of(&self, sub: Submission, now: chrono::DateTime<chrono::Utc>) -> Lead {
        let mut attributes = sub.intake.attributes;
        // A form may name its own source (`landing-page-b`), but never one that is trusted
        // for being signed: that value is kept as an attribute instead.
        let source = match sub.intake.source {
            Some(named) if self.settings.is_signed_source(&named) => {
                attributes.insert("source".into(), serde_json::Value::String(named));
                sub.source
            }
            Some(named) => named,
            None => sub.source,
        };
        let mut lead = Lead::new(sub.id, source, sub.intake.contact, now);
        lead.attributes = attributes;
        lead.source_ref = sub.source_ref;
        lead.test = sub.test;
        if sub.fetch {
            lead.status = LeadStatus::Fetching;
            if let Some(first) = lead.history.first_mut() {
                first.to = LeadStatus::Fetching;
                first.reason = format!("announced by {}; its fields are fetched next", lead.source);
            }
        }
        if sub.intake.honeypot {
            lead.transition(LeadStatus::Rejected, crate::domain::intake::HONEYPOT, now);
        } else if let Some(reason) = sub.reject {
            lead.transition(LeadStatus::Rejected, reason, now);
        }
        lead
    }
}
