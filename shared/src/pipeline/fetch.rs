//! Fetch: a lead announced by its id only (Meta) gets its fields from the platform. Failures
//! are counted on the lead, which waits visibly in `fetching`; it is never dropped.

use super::{Onward, Pipeline, StageError, StageResults};
use crate::domain::{IntakeOptions, Lead, LeadStatus, Stage, normalize_lenient};
use crate::ports::{LeadStore, Message, Notifier, Queue, Updated};
use futures::future::join_all;

impl<S: LeadStore, Q: Queue, N: Notifier> Pipeline<S, Q, N> {
    pub(super) async fn fetch(&self, messages: Vec<Message>) -> StageResults {
        let outcomes = join_all(messages.into_iter().map(|m| self.fetch_one(m))).await;
        self.forward_batch(Stage::Fetch, outcomes).await
    }

    /// The lead to send on, if any.
    async fn fetch_one(&self, message: Message) -> Result<Option<Onward>, StageError> {
        let id = message.lead_id;
        let Some(lead) = self.store.get(&id).await? else { return Ok(None) };
        if lead.status != LeadStatus::Fetching {
            return Ok(Some(Onward::Lead(Box::new(lead))));
        }
        let now = self.clock.now();
        let source_ref = lead.source_ref.clone().unwrap_or_default();
        match self.fetcher.fetch(&lead.source, &source_ref).await {
            Ok(fields) => {
                let opts = IntakeOptions { default_region: self.settings.dedup.default_phone_region };
                let intake = normalize_lenient(fields, opts);
                let source = lead.source.clone();
                let updated = self
                    .store
                    .update(vec![id.clone()], move |l: &mut Lead| {
                        if l.status != LeadStatus::Fetching {
                            return false;
                        }
                        l.fetch_error = None;
                        match &intake {
                            Ok(i) => {
                                l.contact = i.contact.clone();
                                l.attributes.extend(i.attributes.clone());
                                l.transition(LeadStatus::Received, format!("fields fetched from {source}"), now);
                            }
                            Err(errors) => {
                                let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
                                l.transition(
                                    LeadStatus::Rejected,
                                    format!("the {source} lead has no usable email or phone ({})", fields.join(", ")),
                                    now,
                                );
                            }
                        }
                        true
                    })
                    .await?;
                tracing::info!(lead_id = %id, "lead fields fetched");
                match updated.into_iter().next() {
                    Some(Updated::Written(l) | Updated::Unchanged(l)) => Ok(Some(Onward::Lead(l))),
                    _ => Ok(None),
                }
            }
            Err(failure) => {
                let error = failure.error.clone();
                self.store
                    .update(vec![id.clone()], move |l: &mut Lead| {
                        if l.status != LeadStatus::Fetching {
                            return false;
                        }
                        l.fetch_attempts += 1;
                        l.fetch_error = Some(error.clone());
                        true
                    })
                    .await?;
                tracing::warn!(lead_id = %id, error = %failure.error, "lead fetch failed; it waits and is retried");
                Err(StageError::NotYet(failure.error))
            }
        }
    }
}
