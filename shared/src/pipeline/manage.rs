//! A manager's actions on routing: move a lead to a rep by hand, or send a rep's open leads
//! back through routing. The same calls serve the API and the console.

use super::Pipeline;
use crate::domain::routing::{HandMove, MoveRefused, RoutingView, move_by_hand};
use crate::domain::{Lead, LeadId, Reroute};
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
                let view = RoutingView {
                    pools: &settings.pools,
                    roster: &roster,
                    open: &open,
                    owners: &owners,
                    crm: None,
                    now,
                };
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

    /// Sends every open lead of `rep` back through routing with `rep` excluded: each is marked
    /// (the sweep finds a marked lead whose message was lost) and queued for assign. How many.
    pub async fn reroute_rep(&self, rep: &str, by: &str, note: Option<String>) -> Result<usize, StoreError> {
        let open = self.store.open_leads(rep).await?;
        let (from, who, at) = (rep.to_owned(), by.to_owned(), self.clock.now());
        let written = self
            .store
            .update(open, move |l| {
                if l.owner.as_deref() != Some(from.as_str()) || !l.status.is_open() || l.reroute.is_some() {
                    return false;
                }
                l.reroute = Some(Reroute { from: from.clone(), by: who.clone(), note: note.clone(), at });
                true
            })
            .await?;
        let leads: Vec<Lead> = written
            .into_iter()
            .filter_map(|u| match u {
                Updated::Written(l) => Some(*l),
                _ => None,
            })
            .collect();
        tracing::info!(rep, leads = leads.len(), "rep's open leads sent back through routing");
        if let Err(e) = self.forward(None, &leads.iter().collect::<Vec<_>>()).await {
            tracing::warn!(error = %e, rep, "could not queue the rep's leads; the sweep will");
        }
        Ok(leads.len())
    }
}
