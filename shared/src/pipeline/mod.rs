//! The pipeline's stages, each an async fn over the ports. No stage names a database or queue.
//!
//! Every stage is a guarded state transition on the lead in the store, so a message delivered
//! twice, late or out of order is a no-op; a stage that finds its lead already past it forwards
//! the lead to the stage it now waits for, which mends a message lost between two writes.

mod assign;
mod dedup;
mod ingest;
mod notify;
mod score;

pub use ingest::{Accepted, Submission};

use crate::config::{Secret, Settings};
use crate::domain::{Lead, Stage};
use crate::ports::{Clock, LeadStore, Message, Notifier, Queue, QueueError, StoreError};
use std::sync::Arc;

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
}

/// Secrets resolved at start-up.
#[derive(Clone, Debug, Default)]
pub struct Secrets {
    pub admin_token: Secret,
    pub webhook_secret: Secret,
}

/// How notification attempts are spread out.
#[derive(Clone, Copy, Debug)]
pub struct RetryPolicy {
    /// Attempts made inside one handling of a message, before it is handed back to the queue.
    pub inline_attempts: u32,
    pub inline_backoff: std::time::Duration,
    /// After this many attempts in all, a delivery is given up and recorded as dead.
    pub max_attempts: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy { inline_attempts: 3, inline_backoff: std::time::Duration::from_millis(200), max_attempts: 15 }
    }
}

pub struct Pipeline<S, Q, N> {
    pub store: S,
    pub queue: Q,
    pub notifier: N,
    pub clock: Arc<dyn Clock>,
    pub settings: Arc<Settings>,
    pub secrets: Secrets,
    pub retry: RetryPolicy,
}

pub type StageResults = Vec<Result<(), StageError>>;

impl<S: LeadStore, Q: Queue, N: Notifier> Pipeline<S, Q, N> {
    /// Runs one stage over a batch; one result per message, in order.
    pub async fn run(&self, stage: Stage, messages: Vec<Message>) -> StageResults {
        match stage {
            Stage::Dedup => self.dedup(messages).await,
            Stage::Score => self.score(messages).await,
            Stage::Assign => self.assign(messages).await,
            Stage::Notify => self.notify(messages).await,
        }
    }

    /// Sends each lead on to the stage it now waits for, if that is not `current`.
    async fn forward(&self, current: Stage, leads: &[&Lead]) -> Result<(), QueueError> {
        for stage in Stage::ALL {
            if stage == current {
                continue;
            }
            let batch: Vec<Message> = leads
                .iter()
                .filter(|l| l.pending_stage() == Some(stage))
                .map(|l| Message {
                    lead_id: l.id.clone(),
                    kind: if stage == Stage::Notify { l.notify_pending } else { None },
                })
                .collect();
            if !batch.is_empty() {
                self.queue.send(stage, batch).await?;
            }
        }
        Ok(())
    }
}

fn all_failed(n: usize, e: impl std::fmt::Display) -> StageResults {
    let text = e.to_string();
    tracing::warn!(error = %text, batch = n, "stage failed for the whole batch; it will be retried");
    (0..n).map(|_| Err(StageError::NotYet(text.clone()))).collect()
}
