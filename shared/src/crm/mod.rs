//! The CRM loop: every routed lead upserted into HubSpot or Salesforce with its owner (a
//! delivery like the others, recipient `crm:hubspot` / `crm:salesforce`, kind `crm_upsert`),
//! outcomes read back (HubSpot's webhooks, a Salesforce query in the sweep), and the account
//! owner asked for stickiness. Wire facts and their sources: `hubspot.rs`, `salesforce.rs`.
//!
//! Upserts from concurrent deliveries are gathered for a few milliseconds into one batch
//! request (HubSpot takes 100 inputs, Salesforce's collections 200), so that a burst of leads
//! costs a few requests against the CRM's rate limit rather than one each.

pub mod hubspot;
pub mod salesforce;
pub mod settings;

pub use settings::{CrmName, CrmSettings};

use crate::domain::{Lead, LeadStatus, Rep};
use crate::ports::DeliveryResult;
use crate::secrets::Secrets;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// How long an upsert waits for others to share its request.
const LINGER: Duration = Duration::from_millis(15);
/// How long a name the CRM did not know (a rep's email) is remembered as unknown.
const UNKNOWN_FOR: Duration = Duration::from_secs(600);
/// How long an account's owner is remembered (stickiness).
const ACCOUNT_FOR: Duration = Duration::from_secs(300);

/// One record to upsert: the lead as it is now, and its owner's user id in the CRM.
#[derive(Clone, Debug)]
pub struct Upsert {
    pub lead: Lead,
    pub owner: String,
}

/// An upsert's outcome: the CRM's record id, or how the delivery failed.
pub type Upserted = Result<Option<String>, DeliveryResult>;

/// A company's owner in the CRM, for stickiness.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountOwner {
    /// The CRM user id.
    pub owner: String,
    /// The account or company as the CRM names it, for `why`.
    pub account: String,
}

/// A sales status the CRM reports for one of our leads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub lead: String,
    pub status: LeadStatus,
    /// What the CRM said, for history: `lifecyclestage = customer`.
    pub said: String,
}

/// Answers kept per (CRM, key), with when they were got.
type Remembered<T> = Mutex<HashMap<(CrmName, String), (T, Instant)>>;

/// The configured CRMs' clients.
pub struct Crm {
    hubspot: Option<(hubspot::HubSpot, Batcher)>,
    salesforce: Option<(salesforce::Salesforce, Batcher)>,
    /// (CRM, rep email) → the CRM user, or None (not found, remembered for a while).
    users: Remembered<Option<String>>,
    /// (CRM, domain) → the account owner, or None.
    accounts: Remembered<Option<Vec<AccountOwner>>>,
}

impl Crm {
    /// The CRMs the document configures whose secrets are set; None without any.
    pub fn from_settings(settings: &CrmSettings, secrets: &Secrets) -> Option<std::sync::Arc<Crm>> {
        let hubspot = settings.hubspot.as_ref().and_then(|h| {
            let token = secrets.source("crm.hubspot.token")?;
            let client = hubspot::HubSpot::new(h.clone(), token.to_owned());
            let batcher = Batcher::spawn(CrmName::HubSpot, hubspot::MAX_BATCH, client.clone());
            Some((client, batcher))
        });
        let salesforce = settings.salesforce.as_ref().and_then(|s| {
            let id = secrets.source("crm.salesforce.client_id")?;
            let secret = secrets.source("crm.salesforce.client_secret")?;
            let client = salesforce::Salesforce::new(s.clone(), id.to_owned(), secret.to_owned());
            let batcher = Batcher::spawn(CrmName::Salesforce, salesforce::MAX_BATCH, client.clone());
            Some((client, batcher))
        });
        if hubspot.is_none() && salesforce.is_none() {
            return None;
        }
        Some(std::sync::Arc::new(Crm {
            hubspot,
            salesforce,
            users: Mutex::new(HashMap::new()),
            accounts: Mutex::new(HashMap::new()),
        }))
    }

    /// The CRMs leads are upserted into (those whose secrets are set).
    pub fn names(&self) -> Vec<CrmName> {
        [(CrmName::HubSpot, self.hubspot.is_some()), (CrmName::Salesforce, self.salesforce.is_some())]
            .into_iter()
            .filter_map(|(c, on)| on.then_some(c))
            .collect()
    }

    pub fn hubspot(&self) -> Option<&hubspot::HubSpot> {
        self.hubspot.as_ref().map(|h| &h.0)
    }

    pub fn salesforce(&self) -> Option<&salesforce::Salesforce> {
        self.salesforce.as_ref().map(|s| &s.0)
    }

    /// Upserts the lead with `owner` as its owner; concurrent upserts share a request.
    pub async fn upsert(&self, crm: CrmName, lead: &Lead, owner: &Rep) -> Upserted {
        let user = match self.user(crm, owner).await {
            Ok(Some(u)) => u,
            Ok(None) => {
                return Err(DeliveryResult::Dead {
                    error: format!(
                        "rep {} has no {} user: set crm_owner.{} on the rep (or give them the email of their {} user)",
                        owner.id,
                        crm.label(),
                        crm.as_str(),
                        crm.label()
                    ),
                });
            }
            Err(e) => return Err(e),
        };
        let batcher = match crm {
            CrmName::HubSpot => self.hubspot.as_ref().map(|h| &h.1),
            CrmName::Salesforce => self.salesforce.as_ref().map(|s| &s.1),
        };
        let Some(batcher) = batcher else {
            return Err(DeliveryResult::Retry { error: format!("{} is not configured now", crm.label()), after: None });
        };
        batcher.submit(Upsert { lead: lead.clone(), owner: user }).await
    }

    /// The rep's user in `crm`: `crm_owner`, else the CRM's user with the rep's email.
    pub async fn user(&self, crm: CrmName, rep: &Rep) -> Result<Option<String>, DeliveryResult> {
        if let Some(id) = rep.crm_owner.get(crm.as_str()) {
            return Ok(Some(id.to_owned()));
        }
        let Some(email) = rep.email.as_deref().map(str::to_lowercase) else { return Ok(None) };
        let key = (crm, email.clone());
        if let Some((found, at)) = self.users.lock().ok().and_then(|m| m.get(&key).cloned())
            && (found.is_some() || at.elapsed() < UNKNOWN_FOR)
        {
            return Ok(found);
        }
        let found = match crm {
            CrmName::HubSpot => match self.hubspot() {
                Some(h) => h.owner_by_email(&email).await?,
                None => None,
            },
            CrmName::Salesforce => match self.salesforce() {
                Some(s) => s.user_by_email(&email).await?,
                None => None,
            },
        };
        if let Ok(mut m) = self.users.lock() {
            m.insert(key, (found.clone(), Instant::now()));
        }
        Ok(found)
    }

    /// Reps who match no user in a configured CRM (no `crm_owner` for it, and no CRM user with
    /// their email), each as a problem `config check` reports; and what could not be asked.
    pub async fn unmatched(&self, reps: &[Rep]) -> (Vec<(String, String)>, Vec<String>) {
        let (mut problems, mut unasked) = (Vec::new(), Vec::new());
        for crm in self.names() {
            for rep in reps.iter().filter(|r| r.active) {
                match self.user(crm, rep).await {
                    Ok(Some(_)) => {}
                    Ok(None) => problems.push((
                        rep.id.clone(),
                        format!(
                            "rep '{}' matches no {} user: set crm_owner = {{ {} = \"…\" }}, or give the rep the email of their {} user{}",
                            rep.id,
                            crm.label(),
                            crm.as_str(),
                            crm.label(),
                            rep.email.as_deref().map(|e| format!(" (none has {e})")).unwrap_or_default()
                        ),
                    )),
                    Err(e) => unasked.push(format!(
                        "{} could not be asked about rep '{}': {}",
                        crm.label(),
                        rep.id,
                        e.error().unwrap_or_default()
                    )),
                }
            }
        }
        (problems, unasked)
    }

    /// The owners of the CRM's accounts for `domain`, best first (see each CRM's search),
    /// remembered for a few minutes.
    pub async fn account_owners(&self, crm: CrmName, domain: &str) -> Result<Vec<AccountOwner>, DeliveryResult> {
        let key = (crm, domain.to_lowercase());
        if let Some((Some(found), at)) = self.accounts.lock().ok().and_then(|m| m.get(&key).cloned())
            && at.elapsed() < ACCOUNT_FOR
        {
            return Ok(found);
        }
        let found = match crm {
            CrmName::HubSpot => match self.hubspot() {
                Some(h) => h.company_owners(domain).await?,
                None => Vec::new(),
            },
            CrmName::Salesforce => match self.salesforce() {
                Some(s) => s.account_owners(domain).await?,
                None => Vec::new(),
            },
        };
        if let Ok(mut m) = self.accounts.lock() {
            m.insert(key, (Some(found.clone()), Instant::now()));
        }
        Ok(found)
    }
}

/// A CRM API that takes upserts in batches.
pub trait BatchUpsert: Send + Sync + 'static {
    /// One outcome per record, in order.
    fn upsert_batch(&self, records: Vec<Upsert>) -> impl Future<Output = Vec<Upserted>> + Send;
}

type Job = (Upsert, oneshot::Sender<Upserted>);

/// Gathers concurrent upserts into batches of at most `max`, each sent as one request.
struct Batcher {
    crm: CrmName,
    tx: mpsc::Sender<Job>,
}

impl Batcher {
    fn spawn<B: BatchUpsert>(crm: CrmName, max: usize, api: B) -> Batcher {
        let (tx, mut rx) = mpsc::channel::<Job>(max * 4);
        let api = std::sync::Arc::new(api);
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                let mut jobs = vec![first];
                let deadline = tokio::time::Instant::now() + LINGER;
                while jobs.len() < max {
                    match tokio::time::timeout_at(deadline, rx.recv()).await {
                        Ok(Some(j)) => jobs.push(j),
                        _ => break,
                    }
                }
                let api = api.clone();
                // Batches go out concurrently; the client's rate limiter paces them.
                tokio::spawn(async move {
                    let (records, replies): (Vec<Upsert>, Vec<_>) = jobs.into_iter().unzip();
                    let n = records.len();
                    let mut outcomes = api.upsert_batch(records).await.into_iter();
                    for reply in replies.into_iter().take(n) {
                        let outcome = outcomes.next().unwrap_or_else(|| {
                            Err(DeliveryResult::Retry {
                                error: "the CRM's answer left this record out".into(),
                                after: None,
                            })
                        });
                        let _ = reply.send(outcome);
                    }
                });
            }
        });
        Batcher { crm, tx }
    }

    async fn submit(&self, record: Upsert) -> Upserted {
        let (reply, answer) = oneshot::channel();
        let gone = || DeliveryResult::Retry { error: format!("the {} sender stopped", self.crm.label()), after: None };
        self.tx.send((record, reply)).await.map_err(|_| gone())?;
        answer.await.unwrap_or_else(|_| Err(gone()))
    }
}

/// The HTTP client every CRM call goes through: no redirects, bounded time.
pub(crate) fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(crate::adapters::notifier::ATTEMPT_TIMEOUT)
        .connect_timeout(Duration::from_secs(5))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("leadrouter/", env!("CARGO_PKG_VERSION")))
        .build()
        .unwrap_or_default()
}

/// A failure reaching the CRM at all (retried).
pub(crate) fn unreachable(crm: CrmName, e: &reqwest::Error) -> DeliveryResult {
    let what = crate::adapters::notifier::without_url(e);
    DeliveryResult::Retry { error: format!("{} {what}", crm.label()), after: None }
}

pub(crate) use crate::adapters::notifier::retry_after;

/// Text from a CRM's error body, clipped for the delivery record.
pub(crate) fn clip(s: &str) -> String {
    if s.chars().count() <= 500 { s.to_owned() } else { s.chars().take(499).collect::<String>() + "…" }
}
