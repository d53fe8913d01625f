//! Ingest: a normalized submission becomes a durably stored lead, then goes to dedup.

use super::Pipeline;
use crate::domain::{Intake, Lead, LeadId, LeadStatus, Stage};
use crate::ports::{Inserted, LeadStore, Message, Notifier, Queue, StoreError};

/// A submission from any source, already normalized.
#[derive(Debug, Clone)]
pub struct Submission {
    pub id: LeadId,
    pub source: String,
    /// The source's own id for the lead (Meta's `leadgen_id`, …).
    pub source_ref: Option<String>,
    pub intake: Intake,
    pub test: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    pub lead_id: LeadId,
    /// False when the id was known: a retry, or a reused Idempotency-Key.
    pub created: bool,
}

impl<S: LeadStore, Q: Queue, N: Notifier> Pipeline<S, Q, N> {
    /// Stores the lead (durable on return) and queues it for dedup.
    pub async fn accept(&self, sub: Submission) -> Result<Accepted, StoreError> {
        let now = self.clock.now();
        let source = sub.intake.source.clone().unwrap_or(sub.source);
        let mut lead = Lead::new(sub.id.clone(), source, sub.intake.contact, now);
        lead.attributes = sub.intake.attributes;
        lead.source_ref = sub.source_ref;
        lead.test = sub.test;
        if sub.intake.honeypot {
            lead.transition(LeadStatus::Rejected, "honeypot: the hidden website_url field was filled in", now);
        }
        let span = tracing::info_span!("ingest", lead_id = %lead.id, source = %lead.source);
        let _enter = span.enter();
        let queue_it = lead.status == LeadStatus::Received;
        match self.store.insert(lead).await? {
            Inserted::New => {
                tracing::info!(status = if queue_it { "received" } else { "rejected" }, "lead stored");
                if queue_it && let Err(e) = self.queue.send(Stage::Dedup, vec![Message::lead(sub.id.clone())]).await {
                    // Stored is what counts: the lead is found again on restart or by the sweep.
                    tracing::warn!(error = %e, "lead stored but not queued; it will be resumed");
                }
                Ok(Accepted { lead_id: sub.id, created: true })
            }
            Inserted::Existing(existing) => {
                tracing::info!(status = %existing.status, "lead already known; nothing created");
                Ok(Accepted { lead_id: existing.id, created: false })
            }
        }
    }
}
