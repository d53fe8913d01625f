//! Notifiers: signed webhooks, Slack incoming webhooks, and the log. Email is logged locally
//! until an SMTP or SES sender is configured.

use crate::config::{Secret, Target};
use crate::notification::{Notification, signature_header};
use crate::ports::{Clock, DeliveryResult, Notifier};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

pub struct HttpNotifier {
    client: reqwest::Client,
    webhook_secret: Secret,
    clock: Arc<dyn Clock>,
}

impl HttpNotifier {
    pub fn new(webhook_secret: Secret, clock: Arc<dyn Clock>) -> HttpNotifier {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .connect_timeout(Duration::from_secs(5))
            .user_agent(concat!("leadrouter/", env!("CARGO_PKG_VERSION")))
            .pool_max_idle_per_host(64)
            .build()
            .unwrap_or_default();
        HttpNotifier { client, webhook_secret, clock }
    }

    async fn webhook(&self, url: &str, n: &Notification) -> DeliveryResult {
        let body = match serde_json::to_vec(n) {
            Ok(b) => b,
            Err(e) => return DeliveryResult::Dead { error: format!("cannot encode notification: {e}") },
        };
        let sig = signature_header(self.webhook_secret.expose(), self.clock.now(), &body);
        let sent = self
            .client
            .post(url)
            .header("content-type", "application/json")
            .header("x-leadrouter-signature", sig)
            .header("idempotency-key", &n.delivery_id)
            .body(body)
            .send()
            .await;
        match sent {
            Ok(r) if r.status().is_success() => DeliveryResult::Delivered,
            Ok(r) => DeliveryResult::Retry {
                error: format!("webhook answered {}", r.status().as_u16()),
                after: retry_after(&r),
            },
            Err(e) => DeliveryResult::Retry { error: format!("webhook unreachable: {}", without_url(&e)), after: None },
        }
    }

    async fn slack(&self, url: &str, n: &Notification) -> DeliveryResult {
        let sent = self.client.post(url).json(&slack_message(n)).send().await;
        match sent {
            Ok(r) if r.status().is_success() => DeliveryResult::Delivered,
            Ok(r) if matches!(r.status().as_u16(), 400 | 403 | 404 | 410) => DeliveryResult::Dead {
                error: format!("slack answered {}: the channel or payload is refused", r.status().as_u16()),
            },
            Ok(r) => DeliveryResult::Retry {
                error: format!("slack answered {}", r.status().as_u16()),
                after: retry_after(&r),
            },
            Err(e) => DeliveryResult::Retry { error: format!("slack unreachable: {}", without_url(&e)), after: None },
        }
    }
}

fn retry_after(r: &reqwest::Response) -> Option<Duration> {
    r.headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
}

/// reqwest's errors carry the URL, and a webhook URL can carry a token.
fn without_url(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "request failed"
    };
    kind.to_owned()
}

fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max { s.to_owned() } else { s.chars().take(max - 1).collect::<String>() + "…" }
}

/// A Block Kit message: the lead, its score and reasons, why it was routed, an Accept button.
pub fn slack_message(n: &Notification) -> serde_json::Value {
    let l = &n.lead;
    let who = l.name.clone().unwrap_or_else(|| "A new lead".into());
    let headline = match n.kind {
        crate::domain::NotificationKind::ReEngaged => format!("{who} is back (a lead you own)"),
        crate::domain::NotificationKind::SlaReassigned => format!("{who} was reassigned"),
        crate::domain::NotificationKind::SlaBreached => format!("{who} was not accepted in time"),
        crate::domain::NotificationKind::Assigned => format!("New lead for you: {who}"),
        crate::domain::NotificationKind::Unassigned => format!("Nobody could take {who}"),
    };
    let contact = [l.company.as_deref(), l.email.as_deref(), l.phone.as_deref()]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" · ");
    let reasons = l.reasons.iter().map(|r| format!("{} {:+}", r.rule, r.points)).collect::<Vec<_>>().join(", ");
    let score = format!(
        "*Score* {} (grade {}){}",
        l.score.map(|s| s.to_string()).unwrap_or_else(|| "-".into()),
        l.grade.as_deref().unwrap_or("-"),
        if reasons.is_empty() { String::new() } else { format!(": {reasons}") }
    );
    let mut blocks = vec![
        json!({"type": "section", "text": {"type": "mrkdwn", "text": clip(&format!("*{headline}*\n{contact}\nsource: {}", l.source), 3000)}}),
        json!({"type": "section", "text": {"type": "mrkdwn", "text": clip(&score, 3000)}}),
    ];
    if let Some(why) = &n.why {
        blocks.push(json!({"type": "context", "elements": [{"type": "mrkdwn", "text": clip(why, 3000)}]}));
    }
    if let Some(url) = &n.accept_url {
        blocks.push(json!({"type": "actions", "elements": [{
            "type": "button", "text": {"type": "plain_text", "text": "Accept"}, "url": clip(url, 3000), "action_id": "accept", "style": "primary"
        }]}));
    }
    json!({"text": clip(&headline, 3000), "blocks": blocks})
}

impl Notifier for HttpNotifier {
    async fn deliver(&self, target: &str, n: &Notification) -> DeliveryResult {
        match Target::parse(target) {
            Ok(Target::Webhook(url)) => self.webhook(&url, n).await,
            Ok(Target::Slack(url)) => self.slack(&url, n).await,
            Ok(Target::Log) => {
                tracing::info!(lead_id = %n.lead.id, kind = n.kind.as_str(), delivery_id = %n.delivery_id,
                    rep = n.rep.as_ref().map(|r| r.id.as_str()).unwrap_or(""), pool = n.pool.as_deref().unwrap_or(""),
                    "notification");
                DeliveryResult::Delivered
            }
            Ok(Target::Email(_)) => {
                tracing::info!(lead_id = %n.lead.id, kind = n.kind.as_str(), delivery_id = %n.delivery_id,
                    "email notification written to the log (no mail sender configured)");
                DeliveryResult::Delivered
            }
            Err(e) => DeliveryResult::Dead { error: e },
        }
    }
}
