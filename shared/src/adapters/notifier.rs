//! Notifiers: signed webhooks, Slack incoming webhooks, email (SMTP through `lettre` when
//! `[email]` names a server; on AWS without one, SES through `aws-sdk-sesv2`), and the log.

use crate::config::{Secret, Target};
use crate::domain::NotificationKind;
use crate::notification::{Notification, signature_header};
use crate::ports::{Clock, DeliveryResult, Notifier};
use lettre::message::header::ContentType;
use lettre::message::{Mailbox, Message};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

pub struct HttpNotifier {
    client: reqwest::Client,
    /// For targets that did not come from the routing document, when private targets are not
    /// allowed: its resolver refuses a name that resolves inward at the moment of connecting.
    guarded: Option<(reqwest::Client, std::collections::HashSet<String>)>,
    webhook_secret: Secret,
    clock: Arc<dyn Clock>,
    mailer: Option<Mailer>,
}

/// Sends `email:` targets from `[email] from`.
pub struct Mailer {
    from: Mailbox,
    via: Via,
}

enum Via {
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    /// Amazon SES (API v2), sending the same MIME message as SMTP would.
    Ses(aws_sdk_sesv2::Client),
}

impl Mailer {
    /// `url` in lettre's form: `smtp://host:port` (plain, for a local relay), `smtps://…`
    /// (TLS) or `smtp://…?tls=required` (STARTTLS), with `user:pass@` when the server asks.
    pub fn smtp(url: &str, from: &str) -> Result<Mailer, String> {
        let from: Mailbox = from.parse().map_err(|e| format!("[email] from is not an address: {e}"))?;
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
            .map_err(|e| format!("[email] smtp_url is not usable: {e}"))?
            .timeout(Some(Duration::from_secs(10)))
            .build();
        Ok(Mailer { from, via: Via::Smtp(transport) })
    }

    /// SES from `[email] from`, which must be a verified identity in the account.
    pub fn ses(client: aws_sdk_sesv2::Client, from: &str) -> Result<Mailer, String> {
        let from: Mailbox = from.parse().map_err(|e| format!("[email] from is not an address: {e}"))?;
        Ok(Mailer { from, via: Via::Ses(client) })
    }

    async fn send(&self, to: &str, n: &Notification) -> DeliveryResult {
        let from = &self.from;
        let to: Mailbox = match to.parse() {
            Ok(m) => m,
            Err(e) => return DeliveryResult::Dead { error: format!("email: the address is not usable: {e}") },
        };
        let (subject, text) = email_text(n);
        // A header is one line: a lead's name cannot add headers or end them.
        let subject: String = subject.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
        let message = Message::builder()
            .from(from.clone())
            .to(to.clone())
            .subject(subject)
            // Mail clients collapse a retried message with the same id.
            .message_id(Some(format!("<{}@leadrouter>", n.delivery_id)))
            .header(ContentType::TEXT_PLAIN)
            .body(text);
        let message = match message {
            Ok(m) => m,
            Err(e) => return DeliveryResult::Dead { error: format!("email: cannot build the message: {e}") },
        };
        let transport = match &self.via {
            Via::Smtp(transport) => transport,
            Via::Ses(client) => return ses_send(client, from, &to, &message.formatted()).await,
        };
        match transport.send(message).await {
            Ok(_) => DeliveryResult::Delivered,
            Err(e) if e.is_permanent() => DeliveryResult::Dead {
                error: format!("email refused for good: {}", e.status().map(|c| c.to_string()).unwrap_or_default()),
            },
            Err(e) => DeliveryResult::Retry {
                error: format!(
                    "email not sent: {}",
                    e.status().map(|c| c.to_string()).unwrap_or_else(|| "the server could not be reached".into())
                ),
                after: None,
            },
        }
    }
}

/// Sends one raw MIME message through SES. Refusals that a retry cannot change (an
/// unverified sender, a suspended or paused account, a bad request) are final.
async fn ses_send(client: &aws_sdk_sesv2::Client, from: &Mailbox, to: &Mailbox, raw: &[u8]) -> DeliveryResult {
    use aws_sdk_sesv2::operation::send_email::SendEmailError as E;
    use aws_sdk_sesv2::types::{Destination, EmailContent, RawMessage};
    let raw = match RawMessage::builder().data(aws_sdk_sesv2::primitives::Blob::new(raw)).build() {
        Ok(r) => r,
        Err(e) => return DeliveryResult::Dead { error: format!("email: cannot build the message: {e}") },
    };
    let sent = client
        .send_email()
        .from_email_address(from.to_string())
        .destination(Destination::builder().to_addresses(to.email.to_string()).build())
        .content(EmailContent::builder().raw(raw).build())
        .send()
        .await;
    match sent {
        Ok(_) => DeliveryResult::Delivered,
        Err(e) => {
            let text = aws_sdk_sesv2::error::DisplayErrorContext(&e).to_string();
            match e.as_service_error() {
                Some(
                    E::MessageRejected(_)
                    | E::MailFromDomainNotVerifiedException(_)
                    | E::AccountSuspendedException(_)
                    | E::SendingPausedException(_)
                    | E::BadRequestException(_)
                    | E::NotFoundException(_),
                ) => DeliveryResult::Dead { error: format!("email refused for good by SES: {text}") },
                _ => DeliveryResult::Retry { error: format!("email not sent through SES: {text}"), after: None },
            }
        }
    }
}

/// The mailer `[email]` asks for: SMTP when `smtp_url` resolves; None without `[email]` (the
/// log), or when the URL's variable is unset (with the warning `Secrets::resolve` gave).
/// The AWS runtime uses SES where this gives None and `[email]` is set.
pub fn mailer_for(
    settings: &crate::config::Settings,
    secrets: &crate::secrets::Secrets,
) -> Result<Option<Mailer>, String> {
    match (&settings.email, secrets.source("email.smtp_url")) {
        (Some(e), Some(url)) => Mailer::smtp(url, &e.from).map(Some),
        _ => Ok(None),
    }
}

/// The subject and plain-text body of an email notification.
pub fn email_text(n: &Notification) -> (String, String) {
    let l = &n.lead;
    let headline = headline(n);
    let mut body = vec![headline.clone(), String::new()];
    let contact = [l.name.as_deref(), l.company.as_deref(), l.email.as_deref(), l.phone.as_deref()]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" · ");
    body.push(contact);
    body.push(format!("Source: {}", l.source));
    body.push(score_line(n));
    if let Some(why) = &n.why {
        body.push(format!("Why: {why}"));
    }
    if let Some(url) = &n.accept_url {
        body.push(String::new());
        body.push(format!("Accept: {url}"));
    }
    body.push(String::new());
    body.push(format!("lead {} · delivery {}", l.id, n.delivery_id));
    (headline, body.join("\n"))
}

fn score_line(n: &Notification) -> String {
    let l = &n.lead;
    let reasons = l.reasons.iter().map(|r| format!("{} {:+}", r.rule, r.points)).collect::<Vec<_>>().join(", ");
    format!(
        "Score {} (grade {}){}",
        l.score.map(|s| s.to_string()).unwrap_or_else(|| "-".into()),
        l.grade.as_deref().unwrap_or("-"),
        if reasons.is_empty() { String::new() } else { format!(": {reasons}") }
    )
}

fn headline(n: &Notification) -> String {
    let who = n.lead.name.clone().unwrap_or_else(|| "A new lead".into());
    match n.kind {
        NotificationKind::ReEngaged => format!("{who} is back (a lead you own)"),
        NotificationKind::SlaReassigned => format!("{who} was reassigned"),
        NotificationKind::Reassigned => format!("{who} was given to someone else"),
        NotificationKind::SlaBreached => format!("{who} was not accepted in time"),
        NotificationKind::Assigned => format!("New lead for you: {who}"),
        NotificationKind::Unassigned => format!("Nobody could take {who}"),
        NotificationKind::CrmUpsert => format!("{who} was sent to the CRM"),
        NotificationKind::TargetDown => {
            let rep = n.rep.as_ref().map(|r| r.name.as_str()).unwrap_or("a rep");
            format!("Notifications to {rep} are not getting through")
        }
    }
}

/// Why a target was not connected to: it resolved only to internal addresses.
#[derive(Debug, thiserror::Error)]
#[error("the target's name resolves to an internal address, which targets set through the API may not use")]
pub struct InternalTarget;

/// Resolves names as the system does, keeping only public addresses (`domain::net`).
struct PublicOnly;

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let public: Vec<std::net::SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|a| !crate::domain::net::is_internal(a.ip()))
                .collect();
            if public.is_empty() {
                return Err(Box::new(InternalTarget) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(public.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// The longest one HTTP delivery attempt takes (connect, send, answer).
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// Redirects are not followed: a target answers itself or not at all (a redirect could lead
/// a signed notification anywhere, an internal address included).
fn client(public_only: bool) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .timeout(ATTEMPT_TIMEOUT)
        .connect_timeout(Duration::from_secs(5))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("leadrouter/", env!("CARGO_PKG_VERSION")))
        .pool_max_idle_per_host(64);
    if public_only {
        b = b.dns_resolver(Arc::new(PublicOnly));
    }
    b.build().unwrap_or_default()
}

/// Whether an IP literal in `url` is internal (a name is checked when connecting).
pub fn internal_literal(url: &str) -> bool {
    reqwest::Url::parse(url).ok().and_then(|u| match u.host() {
        Some(url::Host::Ipv4(ip)) => Some(crate::domain::net::is_internal(ip.into())),
        Some(url::Host::Ipv6(ip)) => Some(crate::domain::net::is_internal(ip.into())),
        _ => None,
    }) == Some(true)
}

/// Why a target set through the API is refused when private targets are not allowed: an
/// internal address, or a name that resolves to one now. A name that does not resolve now
/// is let through; it is checked again whenever a notification connects.
pub async fn refuse_internal(target: &str) -> Option<String> {
    let url = match Target::parse(target) {
        Ok(Target::Webhook(u) | Target::Slack(u)) => u,
        _ => return None,
    };
    let parsed = reqwest::Url::parse(&url).ok()?;
    let refused = || {
        Some(format!(
            "'{target}' points at a loopback, private or link-local address ([server] allow_private_targets is off)"
        ))
    };
    if internal_literal(&url) {
        return refused();
    }
    let host = parsed.host_str()?.to_owned();
    let port = parsed.port_or_known_default().unwrap_or(443);
    let addrs = tokio::time::timeout(Duration::from_secs(3), tokio::net::lookup_host((host.as_str(), port))).await;
    match addrs {
        Ok(Ok(addrs)) => addrs.into_iter().any(|a| crate::domain::net::is_internal(a.ip())).then(refused).flatten(),
        _ => None,
    }
}

impl HttpNotifier {
    pub fn new(webhook_secret: Secret, clock: Arc<dyn Clock>) -> HttpNotifier {
        HttpNotifier { client: client(false), guarded: None, webhook_secret, clock, mailer: None }
    }

    /// Targets other than `trusted` (the routing document's) connect only to public
    /// addresses, and an IP literal among them that is internal is refused outright.
    pub fn guarding(mut self, trusted: std::collections::HashSet<String>) -> HttpNotifier {
        self.guarded = Some((client(true), trusted));
        self
    }

    /// The client for `target`, or why it may not be reached.
    fn client_for(&self, target: &str, url: &str) -> Result<&reqwest::Client, DeliveryResult> {
        match &self.guarded {
            Some((guarded, trusted)) if !trusted.contains(target) => {
                if internal_literal(url) {
                    return Err(DeliveryResult::Dead { error: InternalTarget.to_string() });
                }
                Ok(guarded)
            }
            _ => Ok(&self.client),
        }
    }

    pub fn with_mailer(mut self, mailer: Option<Mailer>) -> HttpNotifier {
        self.mailer = mailer;
        self
    }

    async fn webhook(&self, target: &str, url: &str, n: &Notification) -> DeliveryResult {
        let client = match self.client_for(target, url) {
            Ok(c) => c,
            Err(refused) => return refused,
        };
        let body = match serde_json::to_vec(n) {
            Ok(b) => b,
            Err(e) => return DeliveryResult::Dead { error: format!("cannot encode notification: {e}") },
        };
        let sig = signature_header(self.webhook_secret.expose(), self.clock.now(), &body);
        let sent = client
            .post(url)
            .header("content-type", "application/json")
            .header("x-leadrouter-signature", sig)
            .header("idempotency-key", &n.delivery_id)
            .body(body)
            .send()
            .await;
        match sent {
            Ok(r) if r.status().is_success() => DeliveryResult::Delivered,
            Ok(r) if r.status().is_redirection() => redirected("webhook", &r),
            Ok(r) => DeliveryResult::Retry {
                error: format!("webhook answered {}", r.status().as_u16()),
                after: retry_after(&r),
            },
            Err(e) => unreachable("webhook", &e),
        }
    }

    async fn slack(&self, target: &str, url: &str, n: &Notification) -> DeliveryResult {
        let client = match self.client_for(target, url) {
            Ok(c) => c,
            Err(refused) => return refused,
        };
        let sent = client.post(url).json(&slack_message(n)).send().await;
        match sent {
            Ok(r) if r.status().is_success() => DeliveryResult::Delivered,
            Ok(r) if r.status().is_redirection() => redirected("slack", &r),
            Ok(r) if matches!(r.status().as_u16(), 400 | 403 | 404 | 410) => DeliveryResult::Dead {
                error: format!("slack answered {}: the channel or payload is refused", r.status().as_u16()),
            },
            Ok(r) => DeliveryResult::Retry {
                error: format!("slack answered {}", r.status().as_u16()),
                after: retry_after(&r),
            },
            Err(e) => unreachable("slack", &e),
        }
    }
}

/// A redirect is not followed, and retrying will not change it.
fn redirected(what: &str, r: &reqwest::Response) -> DeliveryResult {
    DeliveryResult::Dead {
        error: format!(
            "{what} answered {} (a redirect, which is not followed): fix the target's URL",
            r.status().as_u16()
        ),
    }
}

fn unreachable(what: &str, e: &reqwest::Error) -> DeliveryResult {
    let mut source: Option<&dyn std::error::Error> = Some(e);
    while let Some(s) = source {
        if s.is::<InternalTarget>() {
            return DeliveryResult::Dead { error: format!("{what} refused: {InternalTarget}") };
        }
        source = s.source();
    }
    DeliveryResult::Retry { error: format!("{what} unreachable: {}", without_url(e)), after: None }
}

/// `Retry-After` in seconds, when the answer has one.
pub(crate) fn retry_after(r: &reqwest::Response) -> Option<Duration> {
    r.headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
}

/// reqwest's errors carry the URL, and a webhook URL can carry a token.
pub(crate) fn without_url(e: &reqwest::Error) -> String {
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

/// Text for Slack's mrkdwn (and the message's fallback `text`, which Slack reads the same
/// way): `&`, `<` and `>` as the entities Slack documents, so that what a lead typed is shown
/// and never read as a mention (`<!channel>`) or a link (`<https://x|y>`). Line breaks are
/// folded to spaces so a lead cannot forge lines of the message.
/// <https://api.slack.com/reference/surfaces/formatting#escaping>
pub fn slack_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// A Block Kit message: the lead, its score and reasons, why it was routed, an Accept button.
/// Every text that came from a lead is escaped; the message's own bold markers are not.
pub fn slack_message(n: &Notification) -> serde_json::Value {
    let l = &n.lead;
    let headline = slack_escape(&headline(n));
    let contact = [l.company.as_deref(), l.email.as_deref(), l.phone.as_deref()]
        .into_iter()
        .flatten()
        .map(slack_escape)
        .collect::<Vec<_>>()
        .join(" · ");
    let score = format!("*{}", slack_escape(&score_line(n)).replacen(' ', "* ", 1));
    let mut blocks = vec![
        json!({"type": "section", "text": {"type": "mrkdwn", "text": clip(&format!("*{headline}*\n{contact}\nsource: {}", slack_escape(&l.source)), 3000)}}),
        json!({"type": "section", "text": {"type": "mrkdwn", "text": clip(&score, 3000)}}),
    ];
    if let Some(why) = &n.why {
        blocks
            .push(json!({"type": "context", "elements": [{"type": "mrkdwn", "text": clip(&slack_escape(why), 3000)}]}));
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
            Ok(Target::Webhook(url)) => self.webhook(target, &url, n).await,
            Ok(Target::Slack(url)) => self.slack(target, &url, n).await,
            Ok(Target::Log) => {
                tracing::info!(lead_id = %n.lead.id, kind = n.kind.as_str(), delivery_id = %n.delivery_id,
                    rep = n.rep.as_ref().map(|r| r.id.as_str()).unwrap_or(""), pool = n.pool.as_deref().unwrap_or(""),
                    "notification");
                DeliveryResult::Delivered
            }
            Ok(Target::Email(address)) => match &self.mailer {
                Some(m) => m.send(&address, n).await,
                None => {
                    tracing::info!(lead_id = %n.lead.id, kind = n.kind.as_str(), delivery_id = %n.delivery_id,
                        "email notification written to the log (no [email] sender configured)");
                    DeliveryResult::Delivered
                }
            },
            Err(e) => DeliveryResult::Dead { error: e },
        }
    }
}
