//! The pipeline's stages, each an async fn over the ports. No stage names a database or queue.
//!
//! Every stage is a guarded state transition on the lead in the store, so a message delivered
//! twice, late or out of order is a no-op; a stage that finds its lead already past it forwards
//! the lead to the stage it now waits for, which mends a message lost between two writes.

mod assign;
pub mod circuit;
pub mod crm;
mod dedup;
mod erasure;
mod fetch;
mod ingest;
mod manage;
mod notify;
mod preview;
mod score;
mod sweep;

pub use assign::{Route, needs_routing};
pub use erasure::{Erasure, Retained};
pub use ingest::{Accepted, Submission};
pub use manage::MoveError;
pub use preview::{Preview, Skipped};
pub use sweep::Swept;

use crate::config::Settings;
use crate::domain::{Lead, Stage};
use crate::ports::{Clock, LeadFetcher, LeadStore, Message, Notifier, Queue, QueueError, StoreError};
pub use crate::secrets::{ResolvedSecrets, Secrets};
use chrono::{DateTime, Utc};
use std::sync::Arc;

tokio::task_local! {
    /// When the invocation handling this batch ends (Lambda's deadline): no delivery attempt
    /// starts that could not finish, and be recorded, before it.
    pub static DEADLINE: DateTime<Utc>;
}

/// Time left before `DEADLINE`, where one is set.
pub fn time_left(now: DateTime<Utc>) -> Option<std::time::Duration> {
    DEADLINE.try_with(|d| (*d - now).to_std().unwrap_or_default()).ok()
}

/// Why a message should come back later. Every variant is worth a retry.
#[derive(Debug, thiserror::Error)]
pub enum StageError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Queue(#[from] QueueError),
    /// The lead cannot move yet (a delivery still failing, an earlier lead not yet assigned).
    #[error("{0}")]
    NotYet(String),
    /// No retry can help (a record that cannot be read back): the message goes to the
    /// dead-letter path at once, with this reason.
    #[error("{0}")]
    Permanent(String),
}

impl StageError {
    /// Throttling, conflicts, an unreachable store or queue, a lead not ready yet: retried
    /// with backoff. A corrupt record is not.
    pub fn is_retryable(&self) -> bool {
        match self {
            StageError::Store(e) => e.is_retryable(),
            StageError::Queue(_) | StageError::NotYet(_) => true,
            StageError::Permanent(_) => false,
        }
    }
}

/// A copy that keeps what matters of an error: its words and whether to retry.
impl Clone for StageError {
    fn clone(&self) -> StageError {
        match self {
            StageError::NotYet(s) => StageError::NotYet(s.clone()),
            StageError::Permanent(s) => StageError::Permanent(s.clone()),
            e if e.is_retryable() => StageError::NotYet(e.to_string()),
            e => StageError::Permanent(e.to_string()),
        }
    }
}

/// How notification attempts are spread out.
#[derive(Clone, Copy, Debug)]
pub struct RetryPolicy {
    /// Attempts made inside one handling of a message, before it is handed back to the queue.
    pub inline_attempts: u32,
    pub inline_backoff: std::time::Duration,
    /// A delivery still failing this long after its first attempt is given up and recorded as
    /// dead; until then the queue brings it back with growing backoff (at most every 5 minutes
    /// in the embedded runtime).
    pub give_up_after: std::time::Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            inline_attempts: 3,
            inline_backoff: std::time::Duration::from_millis(200),
            give_up_after: std::time::Duration::from_secs(24 * 3600),
        }
    }
}

pub struct Pipeline<S, Q, N> {
    pub store: S,
    pub queue: Q,
    pub notifier: N,
    pub fetcher: Arc<dyn LeadFetcher>,
    pub clock: Arc<dyn Clock>,
    pub settings: Arc<Settings>,
    pub secrets: Secrets,
    pub retry: RetryPolicy,
    /// Per notification target: down after consecutive failures, probed, parked behind.
    pub circuits: Arc<circuit::Circuits>,
    /// Every lead transition, for `GET /v1/events`: the embedded runtime's store publishes to
    /// it; none on AWS, where no function holds a connection.
    pub events: Option<Arc<crate::events::Hub>>,
    /// The CRMs routed leads are upserted into (`[crm.*]` with their secrets set).
    pub crm: Option<Arc<crate::crm::Crm>>,
}

pub type StageResults = Vec<Result<(), StageError>>;

/// What a message leaves to send on: a lead, to the stage it waits for, or a message as is.
pub(super) enum Onward {
    Lead(Box<Lead>),
    Message(Stage, Message),
}

impl<S: LeadStore, Q: Queue, N: Notifier> Pipeline<S, Q, N> {
    /// Runs one stage over a batch; one result per message, in order.
    pub async fn run(&self, stage: Stage, messages: Vec<Message>) -> StageResults {
        // A message delivered twice in one batch is handled once; the copy shares its result.
        let mut unique: Vec<Message> = Vec::with_capacity(messages.len());
        let mut index: std::collections::HashMap<Message, usize> = std::collections::HashMap::new();
        let slots: Vec<usize> = messages
            .into_iter()
            .map(|m| {
                *index.entry(m.clone()).or_insert_with(|| {
                    unique.push(m);
                    unique.len() - 1
                })
            })
            .collect();
        let n = unique.len();
        let mut results = self.run_unique(stage, unique).await;
        // A failure no retry can help may be one lead's (an unreadable record) that failed the
        // batch's shared write: each such message (the index kept a copy) is tried again
        // alone, so that only the lead at fault goes to the dead-letter path.
        if n > 1 && results.iter().any(|r| r.as_ref().is_err_and(|e| !e.is_retryable())) {
            for (m, i) in &index {
                if results[*i].as_ref().is_err_and(|e| !e.is_retryable()) {
                    results[*i] = self.run_unique(stage, vec![m.clone()]).await.pop().unwrap_or(Ok(()));
                }
            }
        }
        slots.into_iter().map(|i| results.get(i).cloned().unwrap_or(Ok(()))).collect()
    }

    async fn run_unique(&self, stage: Stage, unique: Vec<Message>) -> StageResults {
        match stage {
            Stage::Fetch => self.fetch(unique).await,
            Stage::Dedup => self.dedup(unique).await,
            Stage::Score => self.score(unique).await,
            Stage::Assign => self.assign(unique).await,
            Stage::Notify => self.notify(unique).await,
        }
    }

    /// Sends on what a batch's messages left (one per message, if any) in one send per stage,
    /// not one per lead; a message whose lead could not be sent on fails, to be retried.
    async fn forward_batch(&self, current: Stage, outcomes: Vec<Result<Option<Onward>, StageError>>) -> StageResults {
        let mut leads: Vec<&Lead> = Vec::new();
        let mut messages: std::collections::HashMap<Stage, Vec<Message>> = std::collections::HashMap::new();
        for o in outcomes.iter().filter_map(|o| o.as_ref().ok().and_then(Option::as_ref)) {
            match o {
                Onward::Lead(l) => leads.push(l),
                Onward::Message(stage, m) => messages.entry(*stage).or_default().push(m.clone()),
            }
        }
        let forwarded = async {
            for (stage, batch) in messages {
                self.queue.send(stage, batch).await?;
            }
            self.forward(Some(current), &leads).await
        }
        .await
        .map_err(|e| e.to_string());
        outcomes
            .into_iter()
            .map(|o| match o? {
                Some(_) => forwarded.clone().map_err(StageError::NotYet),
                None => Ok(()),
            })
            .collect()
    }

    /// Sends each lead on to the stage it now waits for, unless that is `current` (the stage
    /// calling, which would only hand the lead back to itself).
    pub(crate) async fn forward(&self, current: Option<Stage>, leads: &[&Lead]) -> Result<(), QueueError> {
        for stage in Stage::ALL {
            if Some(stage) == current {
                continue;
            }
            let batch: Vec<Message> = leads
                .iter()
                .filter(|l| l.pending_stage() == Some(stage))
                .map(|l| Message {
                    unique_at: None,
                    lead_id: l.id.clone(),
                    kind: if stage == Stage::Notify { l.notify_pending } else { None },
                })
                .collect();
            if batch.is_empty() {
                continue;
            }
            // A stage waits for room downstream; ingest never does (the lead is stored).
            match current {
                Some(_) => self.queue.send(stage, batch).await?,
                None => self.queue.offer(stage, batch).await?,
            }
        }
        Ok(())
    }
}

/// The same failure for every message of a batch.
pub(crate) fn all_failed(n: usize, e: impl Into<StageError>) -> StageResults {
    let e = e.into();
    tracing::warn!(error = %e, batch = n, retryable = e.is_retryable(), "stage failed for the whole batch");
    (0..n).map(|_| Err(e.clone())).collect()
}
