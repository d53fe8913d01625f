//! The ports: what the pipeline needs from the world, and nothing about how it is provided.
//!
//! Each has an embedded adapter (SQLite, in-process channels) and an AWS one (DynamoDB, SQS);
//! one contract suite runs against both.

use crate::domain::{Lead, LeadId, LeadStatus, NotificationKind, RepRecord, Stage};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::time::Duration;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Throttling, a conflicting transaction, a busy database: try again later.
    #[error("the store is busy, try again: {0}")]
    Retryable(#[source] BoxError),
    /// The store cannot be reached or answered with a fault.
    #[error("the store failed: {0}")]
    Unavailable(#[source] BoxError),
    /// A record we cannot read back (a bug or a foreign writer); retrying will not help.
    #[error("record {id} is unreadable: {source}")]
    Corrupt {
        id: String,
        #[source]
        source: BoxError,
    },
}

impl StoreError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, StoreError::Retryable(_) | StoreError::Unavailable(_))
    }
}

/// The result of inserting a lead whose id may already exist.
#[derive(Debug, Clone, PartialEq)]
pub enum Inserted {
    New,
    /// A lead with this id was stored before (a retried webhook, a reused Idempotency-Key).
    Existing(Box<Lead>),
}

/// The result of a guarded change to one lead.
#[derive(Debug, Clone, PartialEq)]
pub enum Updated {
    Written(Box<Lead>),
    /// The change declined (its guard did not hold); the lead as it is.
    Unchanged(Box<Lead>),
    Missing,
}

/// The outcome of claiming a lead's identity keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// Every key is this lead's now (or already was).
    Unique,
    /// `key` belongs to an earlier lead inside the window. The keys nobody held were
    /// claimed for that earlier lead, so the person is recognized by them next time.
    Taken { key: String, by: LeadId },
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeadQuery {
    pub status: Option<LeadStatus>,
    pub owner: Option<String>,
    pub source: Option<String>,
    pub pool: Option<String>,
    /// Matches email, name or company, case-insensitively ([`Lead::matches_search`]).
    pub q: Option<String>,
    /// Only leads whose last change ([`Lead::last_activity`]) is at or after this.
    pub updated_since: Option<DateTime<Utc>>,
    pub limit: usize,
    /// Opaque, from a previous page's `next_cursor`.
    pub cursor: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LeadPage {
    pub items: Vec<Lead>,
    pub next_cursor: Option<String>,
}

/// Leads waiting for a stage, and where the next page starts. Which stage is the lead's own
/// word (`Lead::pending_stage`): the index holds no more than whether and from when, so that
/// a lead moving from stage to stage does not rewrite it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingPage {
    pub leads: Vec<LeadId>,
    pub next: Option<String>,
}

/// One notification to one recipient through one of their targets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Delivery {
    #[schema(value_type = String)]
    pub lead_id: LeadId,
    /// A rep id, or `manager:<pool>`.
    pub recipient: String,
    pub kind: NotificationKind,
    pub target: String,
    pub delivery_id: String,
    pub attempts: u32,
    #[serde(default)]
    pub first_attempt_at: Option<DateTime<Utc>>,
    pub delivered_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    /// The target refused for good; no more attempts.
    pub dead: bool,
    /// Since when the delivery waits for its target, which is down, to answer again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parked_since: Option<DateTime<Utc>>,
}

impl Delivery {
    pub fn is_settled(&self) -> bool {
        self.delivered_at.is_some() || self.dead
    }

    pub fn state(&self) -> DeliveryState {
        match self {
            d if d.delivered_at.is_some() => DeliveryState::Delivered,
            d if d.dead => DeliveryState::Dead,
            d if d.parked_since.is_some() => DeliveryState::Parked,
            d if d.attempts > 0 => DeliveryState::Failing,
            _ => DeliveryState::Pending,
        }
    }
}

/// Where a delivery stands: not tried yet, delivered, failing (retried with backoff), parked
/// (waiting for its target to answer again), or dead (given up, with the reason).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    Pending,
    Delivered,
    Failing,
    Parked,
    Dead,
}

/// Called inside the store's guarded write: change the lead and return true, or return false
/// to leave it as it is. It may be called more than once (optimistic stores retry).
pub trait LeadChange: Fn(&mut Lead) -> bool + Send + Sync + 'static {}
impl<F: Fn(&mut Lead) -> bool + Send + Sync + 'static> LeadChange for F {}

/// One attempt at an assignment batch: the pool's round-robin cursor, and what the batch has
/// given each rep so far (for capacity). The store starts each attempt afresh.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Turns {
    pub cursor: u64,
    pub given: std::collections::HashMap<String, u32>,
}

/// Called once per lead in an assignment batch; it moves `turns.cursor` past the turns it
/// used and returns true to write the lead, or false to leave it (its guard failed).
pub trait AssignChange: Fn(&mut Lead, &mut Turns) -> bool + Send + Sync + 'static {}
impl<F: Fn(&mut Lead, &mut Turns) -> bool + Send + Sync + 'static> AssignChange for F {}

pub use crate::domain::metrics::LeadFacts;

/// What one `expire` call removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Expired {
    pub leads: usize,
    pub claims: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FactsPage {
    pub facts: Vec<LeadFacts>,
    pub next: Option<String>,
}

pub trait LeadStore: Send + Sync + 'static {
    fn ping(&self) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Stores a new lead unless its id exists. Durable when it returns.
    fn insert(&self, lead: Lead) -> impl Future<Output = Result<Inserted, StoreError>> + Send;

    fn get(&self, id: &LeadId) -> impl Future<Output = Result<Option<Lead>, StoreError>> + Send;

    /// Newest first.
    fn list(&self, query: LeadQuery) -> impl Future<Output = Result<LeadPage, StoreError>> + Send;

    /// Applies `change` to each lead atomically per lead; results in the order of `ids`.
    fn update<F: LeadChange>(
        &self,
        ids: Vec<LeadId>,
        change: F,
    ) -> impl Future<Output = Result<Vec<Updated>, StoreError>> + Send;

    /// Claims `keys` for `lead`. A claim made before `stale_before` no longer counts.
    fn claim(
        &self,
        lead: &LeadId,
        keys: Vec<String>,
        now: DateTime<Utc>,
        stale_before: DateTime<Utc>,
    ) -> impl Future<Output = Result<Claim, StoreError>> + Send;

    /// Gives each lead the next turn of `pool`'s round-robin in one atomic step: the cursor
    /// advances by the number of leads that `assign` accepted, and their owners are written
    /// with it, or nothing is written. Results in the order of `ids`.
    fn assign<F: AssignChange>(
        &self,
        pool: &str,
        ids: Vec<LeadId>,
        assign: F,
    ) -> impl Future<Output = Result<Vec<Updated>, StoreError>> + Send;

    /// Where `pool`'s round-robin stands (0 before its first turn), read without moving it.
    fn turn(&self, pool: &str) -> impl Future<Output = Result<u64, StoreError>> + Send;

    fn deliveries(&self, lead: &LeadId) -> impl Future<Output = Result<Vec<Delivery>, StoreError>> + Send;

    /// Inserts or replaces the records of these deliveries of one lead (each known by its
    /// recipient, kind and target), all in one write where the store can: the notify stage
    /// records a notification's deliveries together once they are settled.
    fn put_deliveries(&self, deliveries: Vec<Delivery>) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The roster changes made through the API (the routing document holds the rest).
    fn reps(&self) -> impl Future<Output = Result<Vec<RepRecord>, StoreError>> + Send;

    /// Inserts or replaces a rep's record (a removal is a record with `removed`), and keeps
    /// it in the roster's history.
    fn put_rep(&self, rep: RepRecord) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Every record `put_rep` was given, in the order given (each with its `updated_at`):
    /// replay rebuilds the roster in force when each lead was decided.
    fn rep_history(&self) -> impl Future<Output = Result<Vec<RepRecord>, StoreError>> + Send;

    /// Leads `rep` owns that are open (assigned, not yet won or lost).
    fn open_leads(&self, rep: &str) -> impl Future<Output = Result<Vec<LeadId>, StoreError>> + Send;

    /// How many leads `rep` has open, counted no further than `up_to` (their cap): what
    /// every assignment batch asks, so it reads an index and never the leads.
    fn open_count(&self, rep: &str, up_to: u32) -> impl Future<Output = Result<u32, StoreError>> + Send;

    /// For each account (email domain), the newest owned lead from it received at or after
    /// `since` and its owner; accounts nobody owns are absent.
    fn account_owners(
        &self,
        domains: Vec<String>,
        since: DateTime<Utc>,
    ) -> impl Future<Output = Result<std::collections::HashMap<String, (LeadId, String)>, StoreError>> + Send;

    /// Leads received at or after `since`, oldest first, a page at a time (`after` is the
    /// page's `next_cursor`).
    fn since(
        &self,
        since: DateTime<Utc>,
        after: Option<String>,
        limit: usize,
    ) -> impl Future<Output = Result<LeadPage, StoreError>> + Send;

    /// The funnel facts of leads received in `[from, to)`, a page at a time.
    fn facts(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        after: Option<String>,
        limit: usize,
    ) -> impl Future<Output = Result<FactsPage, StoreError>> + Send;

    /// Every lead that claimed or matched one of `keys` (dedup's record of who is who, kept
    /// for as long as the lead keeps its personal data): an erasure finds a person's leads here.
    fn person(&self, keys: Vec<String>) -> impl Future<Output = Result<Vec<LeadId>, StoreError>> + Send;

    /// Forgets that `lead` had `keys`: its record of sharing them, and the claims it holds on
    /// them, so that a later lead with them is a new lead. For erasure (the lead's own keys;
    /// other leads of the same person keep theirs until they are erased too).
    fn forget(&self, lead: &LeadId, keys: Vec<String>) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Leads whose personal data is still kept and whose last activity may be before `before`
    /// (the caller reads each and decides), a page at a time after `after`.
    fn idle(
        &self,
        before: DateTime<Utc>,
        after: Option<String>,
        limit: usize,
    ) -> impl Future<Output = Result<PendingPage, StoreError>> + Send;

    /// Retention's housekeeping, at most `limit` rows of each: deletes erased leads with no
    /// activity since `leads_before` (None: never), with their deliveries, and identity claims made
    /// before `claims_before` (past the dedup window they no longer count). On DynamoDB the
    /// table's TTL deletes leads (`expires_at`, see `DynamoStore::with_delete_after`) and
    /// claims go with their leads' erasure, so it reports nothing done.
    fn expire(
        &self,
        leads_before: Option<DateTime<Utc>>,
        claims_before: DateTime<Utc>,
        limit: usize,
    ) -> impl Future<Output = Result<Expired, StoreError>> + Send;

    /// A small value the deployment keeps by name: the lead a CRM record belongs to
    /// (`crm:hubspot:<contact id>`), how far a CRM's changes have been read back.
    fn value(&self, key: &str) -> impl Future<Output = Result<Option<String>, StoreError>> + Send;

    /// Sets (replaces) a value kept by name; durable when it returns.
    fn put_value(&self, key: &str, value: &str) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Leads waiting for a stage whose wait is over by `due_by` (see `Lead::pending_due`: a
    /// lead waiting for acceptance is due at its SLA deadline, every other one at once), oldest
    /// first, after `after` (an opaque position).
    fn pending(
        &self,
        due_by: DateTime<Utc>,
        after: Option<String>,
        limit: usize,
    ) -> impl Future<Output = Result<PendingPage, StoreError>> + Send;
}

/// What travels on a queue: the lead to work on (the store holds everything else).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Message {
    pub lead_id: LeadId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<NotificationKind>,
    /// Dedup found this `received` lead unique at this time (its identity keys are claimed):
    /// assign writes that, the score and the assignment in one write, saving one per lead.
    /// A lost finding costs nothing: the lead is still `received`, and dedup finds it again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unique_at: Option<DateTime<Utc>>,
}

impl Message {
    pub fn lead(lead_id: LeadId) -> Message {
        Message { lead_id, kind: None, unique_at: None }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("the queue did not take the message: {0}")]
pub struct QueueError(#[source] pub BoxError);

pub trait Queue: Send + Sync + 'static {
    /// Sends, waiting for room where a queue is bounded: a stage forwarding a lead it just
    /// finished is held back until the stage behind can take it.
    fn send(&self, stage: Stage, messages: Vec<Message>) -> impl Future<Output = Result<(), QueueError>> + Send;

    /// Sends without ever waiting for room (ingest, the sweep, start-up): where a bounded
    /// queue is full the message is left out, and the lead, waiting in the store's pending
    /// index, is read back when there is room. Unbounded queues (SQS) just send.
    fn offer(&self, stage: Stage, messages: Vec<Message>) -> impl Future<Output = Result<(), QueueError>> + Send {
        self.send(stage, messages)
    }

    /// About how many messages wait in `stage`'s queue or are being handled: the sweep sends a
    /// lead that looks stuck again only when its stage's queue is empty, so that leads merely
    /// queued behind a slow stage are not queued again (and again). 0 where a queue cannot
    /// lose a message (the embedded runtime's sweep sends nothing again).
    fn backlog(&self, _stage: Stage) -> impl Future<Output = Result<usize, QueueError>> + Send {
        async { Ok(0) }
    }

    /// Takes a message no retry can help (an unreadable record) off `stage`'s queue at once,
    /// with why: into the stage's dead-letter queue where there is one (SQS, found from the
    /// queue's redrive policy), else set aside and logged.
    fn dead_letter(
        &self,
        stage: Stage,
        message: &Message,
        reason: &str,
    ) -> impl Future<Output = Result<(), QueueError>> + Send;
}

/// How one delivery attempt went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryResult {
    Delivered,
    /// Worth another try, no sooner than `after` when the receiver said so.
    Retry {
        error: String,
        after: Option<Duration>,
    },
    /// The target will never take it (a dead channel, a bad address).
    Dead {
        error: String,
    },
}

impl DeliveryResult {
    /// Why it failed; None when delivered.
    pub fn error(&self) -> Option<&str> {
        match self {
            DeliveryResult::Delivered => None,
            DeliveryResult::Retry { error, .. } | DeliveryResult::Dead { error } => Some(error),
        }
    }
}

pub trait Notifier: Send + Sync + 'static {
    fn deliver(
        &self,
        target: &str,
        notification: &crate::notification::Notification,
    ) -> impl Future<Output = DeliveryResult> + Send;
}

/// Why a platform's lead could not be fetched this time. Always retried: the lead waits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchFailure {
    pub error: String,
    /// The platform's own word on when to come back (429 `Retry-After`).
    pub after: Option<Duration>,
}

/// Fetches a lead's fields from the platform that announced it (Meta's Graph API).
pub trait LeadFetcher: Send + Sync + 'static {
    /// Intake fields for the lead the source knows as `source_ref`.
    fn fetch<'a>(
        &'a self,
        source: &'a str,
        source_ref: &'a str,
    ) -> futures::future::BoxFuture<'a, Result<Vec<(String, serde_json::Value)>, FetchFailure>>;
}

pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> DateTime<Utc>;
}

#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}
