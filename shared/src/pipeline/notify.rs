//! Notify: every recipient's targets get the notification under one delivery id per
//! (lead, recipient, kind); each attempt is recorded before the message is acknowledged.

use super::{Pipeline, StageError, StageResults};
use crate::config::Target;
use crate::domain::{Lead, LeadStatus, NotificationKind};
use crate::notification::{self, Notification, NotifiedLead, NotifiedRep, NotifiedTouch};
use crate::ports::{Delivery, DeliveryResult, LeadStore, Message, Notifier, Queue};
use futures::future::join_all;
use std::collections::HashMap;

struct Recipient {
    id: String,
    rep: Option<NotifiedRep>,
    targets: Vec<String>,
}

impl<S: LeadStore, Q: Queue, N: Notifier> Pipeline<S, Q, N> {
    pub(super) async fn notify(&self, messages: Vec<Message>) -> StageResults {
        join_all(messages.into_iter().map(|m| self.notify_one(m))).await
    }

    async fn notify_one(&self, message: Message) -> Result<(), StageError> {
        let id = message.lead_id;
        let Some(lead) = self.store.get(&id).await? else {
            tracing::warn!(lead_id = %id, "notify: no such lead; message dropped");
            return Ok(());
        };
        let Some(kind) = lead.notify_pending else { return Ok(()) };
        if message.kind.is_some_and(|k| k != kind) {
            return Ok(());
        }
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
                (orig, vec![self.rep_recipient(&owner)], Some(touch))
            }
            _ => {
                let mut r = Vec::new();
                if let Some(owner) = &lead.owner {
                    r.push(self.rep_recipient(owner));
                }
                if let Some(m) =
                    lead.pool.as_deref().and_then(|p| self.settings.pool(p)).and_then(|p| p.manager.as_ref())
                {
                    r.push(Recipient {
                        id: format!("manager:{}", lead.pool.as_deref().unwrap_or_default()),
                        rep: None,
                        targets: m.notify.clone(),
                    });
                }
                (lead.clone(), r, None)
            }
        };
        if lead.test && !(lead.source == "google" && self.settings.sources.google_notify_test_leads) {
            return self.settle(&lead, kind, "test lead: reps are not notified").await;
        }
        let existing: HashMap<(String, String), Delivery> = self
            .store
            .deliveries(&lead.id)
            .await?
            .into_iter()
            .filter(|d| d.kind == kind)
            .map(|d| ((d.recipient.clone(), d.target.clone()), d))
            .collect();
        let mut jobs = Vec::new();
        for r in &recipients {
            let delivery_id = notification::delivery_id(&lead.id, &r.id, kind);
            let body = self.body(&subject, kind, r, &delivery_id, touch.clone());
            for t in &r.targets {
                let d = existing.get(&(r.id.clone(), t.clone())).cloned().unwrap_or_else(|| Delivery {
                    lead_id: lead.id.clone(),
                    recipient: r.id.clone(),
                    kind,
                    target: t.clone(),
                    delivery_id: delivery_id.clone(),
                    attempts: 0,
                    first_attempt_at: None,
                    delivered_at: None,
                    last_error: None,
                    dead: false,
                });
                if !d.is_settled() {
                    jobs.push(self.deliver(d, body.clone()));
                }
            }
        }
        let results = join_all(jobs).await;
        let mut unsettled = 0;
        let mut dead: Vec<String> = existing.values().filter(|d| d.dead).map(|d| d.recipient.clone()).collect();
        for r in results {
            let d = r?;
            if !d.is_settled() {
                unsettled += 1;
            } else if d.dead {
                dead.push(d.recipient.clone());
            }
        }
        if unsettled > 0 {
            return Err(StageError::NotYet(format!("{unsettled} deliveries still failing")));
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

    fn rep_recipient(&self, rep_id: &str) -> Recipient {
        match self.settings.rep(rep_id) {
            Some(rep) => Recipient {
                id: rep.id.clone(),
                rep: Some(NotifiedRep { id: rep.id.clone(), name: rep.name.clone() }),
                targets: rep.notify.clone(),
            },
            None => Recipient {
                id: rep_id.to_owned(),
                rep: Some(NotifiedRep { id: rep_id.into(), name: rep_id.into() }),
                targets: vec![],
            },
        }
    }

    fn body(
        &self,
        subject: &Lead,
        kind: NotificationKind,
        r: &Recipient,
        delivery_id: &str,
        touch: Option<NotifiedTouch>,
    ) -> Notification {
        let rep = r.rep.clone().or_else(|| subject.owner.as_deref().map(|o| self.rep_recipient(o)).and_then(|x| x.rep));
        let server = &self.settings.server;
        let accept_url =
            rep.as_ref().filter(|_| kind != NotificationKind::ReEngaged || subject.owner.is_some()).map(|rep| {
                notification::accept_url(&server.public_url, self.secrets.webhook_secret.expose(), &subject.id, &rep.id)
            });
        Notification {
            delivery_id: delivery_id.to_owned(),
            kind,
            lead: NotifiedLead::of(subject),
            rep,
            pool: subject.pool.clone(),
            why: subject.why.clone(),
            accept_url,
            sent_at: notification::timestamp(self.clock.now()),
            touch,
        }
    }

    /// Attempts one delivery a few times with backoff, recording every attempt.
    async fn deliver(&self, mut d: Delivery, mut body: Notification) -> Result<Delivery, StageError> {
        let mut backoff = self.retry.inline_backoff;
        for i in 0..self.retry.inline_attempts {
            body.sent_at = notification::timestamp(self.clock.now());
            let result = self.notifier.deliver(&d.target, &body).await;
            let now = self.clock.now();
            d.attempts += 1;
            let first = *d.first_attempt_at.get_or_insert(now);
            let mut wait = None;
            match result {
                DeliveryResult::Delivered => {
                    d.delivered_at = Some(self.clock.now());
                    d.last_error = None;
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
            self.store.put_delivery(d.clone()).await?;
            tracing::info!(
                lead_id = %d.lead_id, recipient = %d.recipient, kind = d.kind.as_str(), target_kind = target_kind(&d.target),
                attempts = d.attempts, delivered = d.delivered_at.is_some(), dead = d.dead, "delivery attempt"
            );
            if d.is_settled() {
                break;
            }
            if let Some(w) = wait
                && i + 1 < self.retry.inline_attempts
            {
                tokio::time::sleep(w).await;
                backoff *= 2;
            }
        }
        Ok(d)
    }

    /// Clears the owed notification and, for an assignment, marks the lead notified.
    async fn settle(&self, lead: &Lead, kind: NotificationKind, reason: &str) -> Result<(), StageError> {
        let now = self.clock.now();
        let reason = reason.to_owned();
        self.store
            .update(vec![lead.id.clone()], move |l| {
                if l.notify_pending != Some(kind) {
                    return false;
                }
                l.notify_pending = None;
                if kind == NotificationKind::Assigned && l.status == LeadStatus::Assigned {
                    l.transition(LeadStatus::Notified, reason.clone(), now);
                } else {
                    let st = l.status;
                    l.transition(st, format!("{}: {reason}", kind.as_str()), now);
                }
                true
            })
            .await?;
        Ok(())
    }
}

/// The kind of target only, for logs: a URL can carry a token.
fn target_kind(target: &str) -> &'static str {
    match Target::parse(target) {
        Ok(Target::Webhook(_)) => "webhook",
        Ok(Target::Slack(_)) => "slack",
        Ok(Target::Email(_)) => "email",
        Ok(Target::Log) => "log",
        Err(_) => "invalid",
    }
}
