//! A manager's actions on routing: move a lead to a rep by hand. The same calls serve the API
//! and the console.

use super::Pipeline;
use crate::domain::routing::{HandMove, MoveRefused, RoutingView, move_by_hand};
use crate::domain::{Lead, LeadId};
use crate::ports::{LeadStore, Notifier, Queue, StoreError, Updated};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Why a move did not happen.
#[derive(Debug, thiserror::Error)]
pub enum MoveError {
    #[error("no lead has the id '{0}'")]
    NoLead(LeadId),
    #[error("{0}")]
    Refused(MoveRefused, Box<Lead>),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl<S: LeadStore, Q: Queue, N: Notifier> Pipeline<S, Q, N> {
    /// Moves the lead to `m.rep` (see [`move_by_hand`]) and sends it to notify: the new owner
    /// hears `assigned`, the old one `reassigned`. The lead as it is after; unchanged when the
    /// rep owns it already.
    pub async fn move_lead(&self, id: LeadId, m: HandMove) -> Result<Lead, MoveError> {
        let roster = Arc::new(self.roster().await?);
        let mut open = HashMap::new();
        if let Some(cap) = roster.rep(&m.rep).and_then(|r| r.max_open_leads) {
            open.insert(m.rep.clone(), self.store.open_count(&m.rep, cap).await?);
        }
        let (settings, now, open) = (self.settings.clone(), self.clock.now(), Arc::new(open));
        // What the last try of the write found, for the answer.
        let outcome: Arc<Mutex<Option<Result<bool, MoveRefused>>>> = Arc::default();
        let (seen, mv) = (outcome.clone(), m.clone());
        let written = self
            .store
            .update(vec![id.clone()], move |l| {
                let owners = HashMap::new();
                let view = RoutingView { pools: &settings.pools, roster: &roster, open: &open, owners: &owners, now };
                let r = move_by_hand(l, &mv, &view);
                let changed = matches!(r, Ok(true));
                *seen.lock().unwrap_or_else(|e| e.into_inner()) = Some(r);
                changed
            })
            .await?;
        let outcome = outcome.lock().unwrap_or_else(|e| e.into_inner()).take();
        match (written.into_iter().next(), outcome) {
            (Some(Updated::Written(l)), _) => {
                tracing::info!(lead_id = %l.id, rep = %m.rep, "lead moved by hand");
                if let Err(e) = self.forward(None, &[&l]).await {
                    tracing::warn!(error = %e, lead_id = %l.id, "could not queue the moved lead's notifications; the sweep will");
                }
                Ok(*l)
            }
            (Some(Updated::Unchanged(l)), Some(Err(refused))) => Err(MoveError::Refused(refused, l)),
            // Already the owner's: nothing to do.
            (Some(Updated::Unchanged(l)), _) => Ok(*l),
            _ => Err(MoveError::NoLead(id)),
        }
    }
}
