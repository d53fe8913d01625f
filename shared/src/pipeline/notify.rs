//! Notify: every recipient's targets get the notification under one delivery id per
//! (lead, recipient, kind); every attempt is recorded before the message is acknowledged: a
//! failed one at once, the settled ones of a notification together in one write.

use super::circuit::{Change, Gate};
use super::{Pipeline, StageError, StageResults};
use crate::config::Target;
use crate::domain::{AssignedBy, Assignment, Lead, LeadStatus, NotificationKind, Roster, Stage};
use crate::notification::{self, Notification, NotifiedLead, NotifiedRep, NotifiedTouch};
use crate::ports::{Delivery, DeliveryResult, LeadStore, Message, Notifier, Queue, Updated};
use futures::future::join_all;
use std::collections::HashMap;

/// Time kept, after an attempt times out, to record its outcome before the invocation ends.
const RECORD_TIME: std::time::Duration = std::time::Duration::from_secs(3);

struct Recipient {
    id: String,
    /// What this recipient is told (a manager hears `sla_breached` of an `sla_reassigned`).
    kind: NotificationKind,
    /// The rep the notification is about: the recipient if a rep, else the lead's owner.
    rep: Option<NotifiedRep>,
    /// Only the owner gets a link to accept.
    owner: bool,
    targets: Vec<String>,
}

impl<S: LeadStore, Q: Queue, N: Notifier> Pipeline<S, Q, N> {
    pub(super) async fn notify(&self, messages: Vec<Message>) -> StageResults {
        let roster = match self.roster().await {
            Ok(r) => r,
            Err(e) => return super::all_failed(messages.len(), e),
        };
        let roster = &roster;
        join_all(messages.into_iter().map(|m| self.notify_one(m, roster))).await
    }

    async fn notify_one(&self, message: Message, roster: &Roster) -> Result<(), StageError> {
        let id = message.lead_id;
        let Some(lead) = self.store.get(&id).await? else {
            tracing::warn!(lead_id = %id, "notify: no such lead; message dropped");
            return Ok(());
        };
        let Some(kind) = lead.notify_pending else { return Ok(()) };
        if message.kind.is_some_and(|k| k != kind) {
            return Ok(());
        }
        let manager = |lead: &Lead, kind: NotificationKind| {
            let pool = lead.pool.as_deref()?;
            let m = self.settings.pool(pool)?.manager.as_ref()?;
            Some(Recipient {
                id: format!("manager:{pool}"),
                kind,
                rep: lead.owner.as_deref().map(|o| rep_of(roster, o)),
                owner: false,
                targets: m.notify.clone(),
            })
        };
        let (subject, recipients, touch) = match kind {
            NotificationKind::ReEngaged => {
                let Some(orig_id) = lead.duplicate_of.clone() else {
                    return self.settle(&lead, kind, "nothing to tell: no original lead").await;
                };
                let Some(orig) = self.store.get(&orig_id).await? else {
                    return self.settle(&lead, kind, "nothing to tell: the original lead is gone").await;
                };
                if matches!(orig.status, LeadStatus::Received | LeadStatus::Unique | LeadStatus::Scored) {
                    return Err(StageError::NotYet(format!("original lead {orig_id} is not routed yet")));
                }
                let Some(owner) = orig.owner.clone() else {
                    return self.settle(&lead, kind, "nothing to tell: the original lead has no owner").await;
                };
                let touch = NotifiedTouch {
                    lead_id: lead.id.clone(),
                    source: lead.source.clone(),
                    matched_on: lead.history.last().map(|h| h.reason.clone()).unwrap_or_default(),
                };
                (orig, vec![rep_recipient(roster, &owner, kind, true)], Some(touch))
            }
            NotificationKind::Assigned | NotificationKind::SlaReassigned => {
                let mut r = Vec::new();
                if let Some(owner) = &lead.owner {
                    r.push(rep_recipient(roster, owner, kind, true));
                }
                let moved_by_hand = matches!(
                    lead.assignment,
                    Some(Assignment { how: AssignedBy::Manual { .. } | AssignedBy::Rerouted { .. }, .. })
                );
                if let Some(prev) = lead.previous_owner.as_deref().filter(|p| Some(*p) != lead.owner.as_deref()) {
                    if kind == NotificationKind::SlaReassigned {
                        r.push(rep_recipient(roster, prev, kind, false));
                    } else if moved_by_hand {
                        r.push(rep_recipient(roster, prev, NotificationKind::Reassigned, false));
                    }
                }
                let manager_kind =
                    if kind == NotificationKind::SlaReassigned { NotificationKind::SlaBreached } else { kind };
                r.extend(manager(&lead, manager_kind));
                // Every owner, first or next, is written into each CRM.
                if let (Some(crm), Some(owner)) = (&self.crm, &lead.owner) {
                    for name in crm.names() {
                        r.push(Recipient {
                            id: name.recipient().to_owned(),
                            kind: NotificationKind::CrmUpsert,
                            rep: Some(rep_of(roster, owner)),
                            owner: false,
                            targets: vec![name.recipient().to_owned()],
                        });
                    }
                }
                (lead.clone(), r, None)
            }
            // Sent with the `assigned` of a lead a manager moved, never owed on its own.
            NotificationKind::Reassigned => (lead.clone(), Vec::new(), None),
            NotificationKind::SlaBreached | NotificationKind::Unassigned => {
                (lead.clone(), manager(&lead, kind).into_iter().collect(), None)
            }
            // Sent when a circuit opens (`target_down`), never owed by a lead; a CRM's upsert
            // goes with the `assigned` of each owner.
            NotificationKind::TargetDown | NotificationKind::CrmUpsert => (lead.clone(), Vec::new(), None),
        };
        let google_test_leads = self.settings.sources.google.as_ref().is_some_and(|g| g.notify_test_leads);
        if lead.test && !(lead.source == "google" && google_test_leads) {
            return self.settle(&lead, kind, "test lead: reps are not notified").await;
        }
        // Deliveries of this lead's other notifications (earlier rounds, other kinds) are not ours.
        let ids: Vec<String> =
            recipients.iter().map(|r| notification::delivery_id(&lead.id, &r.id, r.kind, lead.round)).collect();
        let existing: HashMap<(String, String), Delivery> = self
            .store
            .deliveries(&lead.id)
            .await?
            .into_iter()
            .filter(|d| ids.contains(&d.delivery_id))
            .map(|d| ((d.delivery_id.clone(), d.target.clone()), d))
            .collect();
        let now = self.clock.now();
        let mut jobs = Vec::new();
        let mut parked: Vec<Delivery> = Vec::new();
        for (r, delivery_id) in recipients.iter().zip(&ids) {
            let body = self.body(&subject, r, delivery_id, touch.clone());
            for t in &r.targets {
                let d = existing.get(&(delivery_id.clone(), t.clone())).cloned().unwrap_or_else(|| Delivery {
                    lead_id: lead.id.clone(),
                    recipient: r.id.clone(),
                    kind: r.kind,
                    target: t.clone(),
                    delivery_id: delivery_id.clone(),
                    attempts: 0,
                    first_attempt_at: None,
                    delivered_at: None,
                    last_error: None,
                    dead: false,
                    parked_since: None,
                });
                if d.is_settled() {
                    continue;
                }
                match self.circuits.gate(t, now) {
                    Gate::Parked => parked.push(d),
                    gate => jobs.push(self.deliver(d, body.clone(), gate == Gate::Probe, r.rep.clone(), &lead)),
                }
            }
        }
        let results = join_all(jobs).await;
        let mut settled: Vec<Delivery> =
            results.iter().filter_map(|r| r.as_ref().ok()).filter(|d| d.is_settled()).cloned().collect();
        // A parked delivery is written once, when it is parked.
        let mut newly_parked: Vec<Delivery> = Vec::new();
        for d in results.iter().filter_map(|r| r.as_ref().ok()).filter(|d| !d.is_settled() && d.parked_since.is_some())
        {
            parked.push(d.clone());
        }
        for d in &mut parked {
            if d.parked_since.is_none() {
                d.parked_since = Some(now);
                newly_parked.push(d.clone());
            }
        }
        settled.extend(newly_parked);
        if !settled.is_empty() {
            self.store.put_deliveries(settled).await?;
        }
        let mut unsettled = 0;
        let mut dead: Vec<String> = existing.values().filter(|d| d.dead).map(|d| d.recipient.clone()).collect();
        for r in results {
            let d = r?;
            if !d.is_settled() && d.parked_since.is_none() {
                unsettled += 1;
            } else if d.dead {
                dead.push(d.recipient.clone());
            }
        }
        if unsettled > 0 {
            return Err(StageError::NotYet(format!("{unsettled} deliveries still failing")));
        }
        if !parked.is_empty() {
            if !self.circuits.policy.hold_parked {
                return Err(StageError::NotYet(format!("{} deliveries parked: their target is down", parked.len())));
            }
            // Held by each target's circuit and sent again, in order, when it answers.
            let m = Message { lead_id: lead.id.clone(), kind: Some(kind), unique_at: None };
            for d in &parked {
                self.circuits.park(&d.target, m.clone());
            }
            return Ok(());
        }
        dead.sort();
        dead.dedup();
        let names: Vec<String> = recipients.iter().map(|r| r.id.clone()).filter(|r| !dead.contains(r)).collect();
        let mut reason =
            if names.is_empty() { "nobody to notify".to_owned() } else { format!("notified {}", names.join(", ")) };
        if !dead.is_empty() {
            reason.push_str(&format!("; gave up on {} (see deliveries)", dead.join(", ")));
        }
        self.settle(&lead, kind, &reason).await
    }

    fn body(&self, subject: &Lead, r: &Recipient, delivery_id: &str, touch: Option<NotifiedTouch>) -> Notification {
        let server = &self.settings.server;
        // From the assignment, so that every retry of a delivery carries the same link.
        let issued = subject.assigned_at.unwrap_or_else(|| self.clock.now());
        let exp = (issued + chrono::Duration::days(i64::from(server.accept_link_days))).timestamp();
        let accept_url = r.rep.as_ref().filter(|_| r.owner && subject.owner.is_some()).map(|rep| {
            notification::accept_url(&server.public_url, &self.secrets.accept_key(), &subject.id, &rep.id, exp)
        });
        Notification {
            delivery_id: delivery_id.to_owned(),
            kind: r.kind,
            lead: NotifiedLead::of(subject),
            rep: r.rep.clone(),
            pool: subject.pool.clone(),
            why: match r.kind {
                NotificationKind::SlaBreached | NotificationKind::Unassigned => {
                    subject.history.last().map(|h| h.reason.clone()).or(subject.why.clone())
                }
                _ => subject.why.clone(),
            },
            accept_url,
            sent_at: notification::timestamp(self.clock.now()),
            touch,
        }
    }

    /// Attempts one delivery a few times with backoff (once for a probe), recording each
    /// failed attempt (the caller records the last one once it is settled, with the
    /// notification's others). Each attempt counts on its target's circuit; a delivery whose
    /// target goes down meanwhile stops and is parked.
    async fn deliver(
        &self,
        mut d: Delivery,
        mut body: Notification,
        probe: bool,
        rep: Option<NotifiedRep>,
        lead: &Lead,
    ) -> Result<Delivery, StageError> {
        let mut backoff = self.retry.inline_backoff;
        let attempts = if probe { 1 } else { self.retry.inline_attempts };
        for i in 0..attempts {
            // An attempt that could outlive the invocation is not begun: the message comes
            // back, and nothing is cut off mid-attempt with its outcome unrecorded.
            if super::time_left(self.clock.now())
                .is_some_and(|left| left < crate::adapters::notifier::ATTEMPT_TIMEOUT + RECORD_TIME)
            {
                tracing::info!(lead_id = %d.lead_id, "no time left in this invocation for another attempt");
                break;
            }
            if i > 0 && self.circuits.gate(&d.target, self.clock.now()) != Gate::Go {
                // Its target went down meanwhile: parked, and written so.
                d.parked_since = Some(self.clock.now());
                self.store.put_deliveries(vec![d.clone()]).await?;
                break;
            }
            body.sent_at = notification::timestamp(self.clock.now());
            let result = match crate::crm::CrmName::of_recipient(&d.target) {
                Some(crm) => self.crm_upsert(crm, lead).await,
                None => self.notifier.deliver(&d.target, &body).await,
            };
            let now = self.clock.now();
            d.attempts += 1;
            let first = *d.first_attempt_at.get_or_insert(now);
            let mut wait = None;
            let change = match &result {
                DeliveryResult::Delivered => self.circuits.record(&d.target, true, now),
                DeliveryResult::Retry { .. } => self.circuits.record(&d.target, false, now),
                DeliveryResult::Dead { .. } => Change::None,
            };
            match result {
                DeliveryResult::Delivered => {
                    d.delivered_at = Some(self.clock.now());
                    d.last_error = None;
                    d.parked_since = None;
                }
                DeliveryResult::Dead { error } => {
                    d.dead = true;
                    d.last_error = Some(error);
                }
                DeliveryResult::Retry { error, after } => {
                    d.last_error = Some(error);
                    let trying_for = (now - first).to_std().unwrap_or_default();
                    if trying_for >= self.retry.give_up_after {
                        d.dead = true;
                        d.last_error = Some(format!(
                            "gave up after {} attempts over {} minutes: {}",
                            d.attempts,
                            trying_for.as_secs() / 60,
                            d.last_error.unwrap_or_default()
                        ));
                    }
                    wait = Some(after.unwrap_or(backoff).min(std::time::Duration::from_secs(30)));
                }
            }
            match change {
                Change::None => {}
                Change::Down => self.target_down(&d.target, rep.clone(), lead).await,
                Change::Up(parked) => {
                    tracing::info!(target_kind = target_kind(&d.target), parked = parked.len(), "target answers again");
                    self.queue.offer(Stage::Notify, parked).await?;
                }
            }
            if probe && !d.is_settled() {
                d.parked_since.get_or_insert(now);
            }
            if !d.is_settled() {
                self.store.put_deliveries(vec![d.clone()]).await?;
            }
            tracing::info!(
                lead_id = %d.lead_id, recipient = %d.recipient, kind = d.kind.as_str(), target_kind = target_kind(&d.target),
                attempts = d.attempts, delivered = d.delivered_at.is_some(), dead = d.dead, "delivery attempt"
            );
            if d.is_settled() {
                break;
            }
            if let Some(w) = wait
                && i + 1 < attempts
            {
                tokio::time::sleep(w).await;
                backoff *= 2;
            }
        }
        Ok(d)
    }

    /// Tells the managers of every pool the target's reps are in, once per outage: its
    /// notifications are parked until it answers. A manager whose own target is down is not
    /// told through it.
    async fn target_down(&self, target: &str, rep: Option<NotifiedRep>, lead: &Lead) {
        tracing::warn!(target_kind = target_kind(target), "notification target down; its deliveries are parked");
        let Ok(roster) = self.roster().await else { return };
        let reps: Vec<&str> =
            roster.reps().iter().filter(|r| r.notify.iter().any(|t| t == target)).map(|r| r.id.as_str()).collect();
        let now = self.clock.now();
        let why = format!(
            "{}'s {} target failed {} times in a row; its notifications are parked and go out in order when it \
             answers again (tried every {} s)",
            rep.as_ref().map(|r| r.name.as_str()).or(reps.first().copied()).unwrap_or("a rep"),
            target_kind(target),
            self.circuits.policy.trip_after,
            self.circuits.policy.probe_every.num_seconds()
        );
        let pools: std::collections::BTreeSet<String> =
            reps.iter().flat_map(|r| roster.pools_of(r)).map(|(pool, _)| pool).collect();
        for pool in self.settings.pools.iter().filter(|p| pools.contains(&p.id)) {
            let Some(m) = &pool.manager else { continue };
            let delivery_id = notification::delivery_id(
                &lead.id,
                &format!("manager:{}:{target}", pool.id),
                NotificationKind::TargetDown,
                0,
            );
            let body = Notification {
                delivery_id,
                kind: NotificationKind::TargetDown,
                lead: NotifiedLead::of(lead),
                rep: rep.clone(),
                pool: Some(pool.id.clone()),
                why: Some(why.clone()),
                accept_url: None,
                sent_at: notification::timestamp(now),
                touch: None,
            };
            for t in m.notify.iter().filter(|t| *t != target && self.circuits.gate(t, now) == Gate::Go) {
                let result = self.notifier.deliver(t, &body).await;
                tracing::info!(pool = %pool.id, delivered = matches!(result, DeliveryResult::Delivered), "target_down told");
            }
        }
    }

    /// Clears the owed notification and, for an assignment, marks the lead notified.
    async fn settle(&self, lead: &Lead, kind: NotificationKind, reason: &str) -> Result<(), StageError> {
        let now = self.clock.now();
        let reason = reason.to_owned();
        let settled = self
            .store
            .update(vec![lead.id.clone()], move |l| {
                if l.notify_pending != Some(kind) {
                    return false;
                }
                l.notify_pending = None;
                let assignment = matches!(kind, NotificationKind::Assigned | NotificationKind::SlaReassigned);
                if assignment && l.status == LeadStatus::Assigned {
                    l.transition(LeadStatus::Notified, reason.clone(), now);
                } else {
                    let st = l.status;
                    l.transition(st, format!("{}: {reason}", kind.as_str()), now);
                }
                true
            })
            .await?
            .into_iter()
            .next();
        // A lead whose erasure waited for it to settle is erased by this write: its CRM
        // deliveries, written just before, lose the CRM's words too.
        if let Some(Updated::Written(l)) = settled
            && l.personal_data_erased_at == Some(now)
        {
            self.scrub_crm_errors(&l.id).await?;
        }
        Ok(())
    }
}

fn rep_of(roster: &Roster, id: &str) -> NotifiedRep {
    NotifiedRep { id: id.to_owned(), name: roster.rep(id).map(|r| r.name.clone()).unwrap_or_else(|| id.to_owned()) }
}

/// A rep and their targets; a rep no longer on the roster has none (nothing is sent).
fn rep_recipient(roster: &Roster, id: &str, kind: NotificationKind, owner: bool) -> Recipient {
    Recipient {
        id: id.to_owned(),
        kind,
        rep: Some(rep_of(roster, id)),
        owner,
        targets: roster.rep(id).map(|r| r.notify.clone()).unwrap_or_default(),
    }
}

/// The kind of target only, for logs: a URL can carry a token.
fn target_kind(target: &str) -> &'static str {
    match Target::parse(target) {
        Ok(Target::Webhook(_)) => "webhook",
        Ok(Target::Slack(_)) => "slack",
        Ok(Target::Email(_)) => "email",
        Ok(Target::Log) => "log",
        Err(_) if crate::crm::CrmName::of_recipient(target).is_some() => "crm",
        Err(_) => "invalid",
    }
}
