//! The sweep, run on a schedule in both runtimes: SLA deadlines that passed, unassigned leads
//! (oldest first) tried again now that someone may be available, open leads of reps who left
//! the roster or were deactivated, and (on AWS) leads whose message was lost between stages.

use super::{Pipeline, StageError};
use crate::domain::{LeadStatus, Stage};
use crate::ports::{LeadStore, Message, Notifier, Queue};
use std::collections::HashMap;

/// What one pass of the sweep sent on.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Swept {
    /// Leads past their pool's SLA, sent to assign.
    pub sla_due: usize,
    /// Unassigned leads sent to assign, oldest first.
    pub unassigned: usize,
    /// Open leads of reps removed or deactivated, sent to assign.
    pub orphaned: usize,
    /// Leads that waited for a stage longer than `stuck_after`, sent to it again.
    pub stuck: usize,
    /// Leads that waited that long behind a stage whose queue still holds messages: left
    /// there, since their message is most likely among them.
    pub queued: usize,
    /// Notification targets that are down, probed.
    pub probes: usize,
    /// Leads moved by statuses read back from Salesforce.
    pub crm_outcomes: usize,
}

impl<S: LeadStore, Q: Queue, N: Notifier> Pipeline<S, Q, N> {
    /// One pass. `stuck_after`: requeue leads whose last change is older than this (the AWS
    /// runtime, where a message can be lost between a write and a send); None where the
    /// queue cannot lose messages (the embedded runtime, which retries in process).
    pub async fn sweep(&self, stuck_after: Option<chrono::Duration>) -> Result<Swept, StageError> {
        let now = self.clock.now();
        let mut swept = Swept::default();
        let mut backlog: HashMap<Stage, usize> = HashMap::new();
        // A down target's probe first (its first parked notification, tried once): the pass
        // below reads every waiting lead, parked ones too, and must not delay it.
        let probes = self.circuits.due_probes(now);
        swept.probes = probes.len();
        if !probes.is_empty() {
            self.queue.offer(Stage::Notify, probes).await?;
        }
        let mut after = None;
        loop {
            let page = self.store.pending(now, after, 500).await?;
            let mut by_stage: HashMap<Stage, Vec<Message>> = HashMap::new();
            for id in &page.leads {
                let Some(lead) = self.store.get(id).await? else { continue };
                let Some(stage) = lead.pending_stage() else { continue };
                let stage = &stage;
                let stuck = stuck_after.is_some_and(|d| lead.history.last().is_some_and(|h| h.at < now - d));
                let send = match (lead.status, *stage) {
                    (LeadStatus::Unassigned, Stage::Assign) => {
                        swept.unassigned += 1;
                        true
                    }
                    (LeadStatus::Assigned | LeadStatus::Notified, Stage::Assign) => {
                        let due = lead.sla_due_at.is_some_and(|d| d <= now);
                        swept.sla_due += usize::from(due);
                        due
                    }
                    _ if stuck => {
                        let waiting = match backlog.get(stage) {
                            Some(n) => *n,
                            None => {
                                let n = self.queue.backlog(*stage).await?;
                                *backlog.entry(*stage).or_insert(n)
                            }
                        };
                        if waiting > 0 {
                            swept.queued += 1;
                            false
                        } else {
                            swept.stuck += 1;
                            true
                        }
                    }
                    _ => false,
                };
                if send {
                    by_stage.entry(*stage).or_default().push(Message {
                        unique_at: None,
                        lead_id: id.clone(),
                        kind: if *stage == Stage::Notify { lead.notify_pending } else { None },
                    });
                }
            }
            for (stage, messages) in by_stage {
                self.queue.offer(stage, messages).await?;
            }
            match page.next {
                Some(n) => after = Some(n),
                None => break,
            }
        }
        swept.orphaned = self.reassign_orphans().await?;
        // The CRM being down never stops the sweep: its changes are read next time.
        match self.crm_read_back().await {
            Ok(n) => swept.crm_outcomes = n,
            Err(e) => tracing::warn!(error = %e, "CRM read-back failed; tried again next sweep"),
        }
        if swept != Swept::default() {
            tracing::info!(?swept, "sweep sent leads on");
        }
        Ok(swept)
    }

    /// Sends the open leads of every rep removed from the roster or deactivated to assign,
    /// which gives them to someone else; returns how many.
    pub async fn reassign_orphans(&self) -> Result<usize, StageError> {
        let roster = self.roster().await?;
        let mut gone: Vec<String> = self.store.reps().await?.into_iter().filter(|r| r.removed).map(|r| r.id).collect();
        gone.extend(roster.reps().iter().filter(|r| !r.active).map(|r| r.id.clone()));
        let mut total = 0;
        for rep in gone {
            let open = self.store.open_leads(&rep).await?;
            if !open.is_empty() {
                total += open.len();
                self.queue.offer(Stage::Assign, open.into_iter().map(Message::lead).collect()).await?;
            }
        }
        Ok(total)
    }
}
