//! The embedded runtime: the pipeline's stages as in-process workers over a SQLite store,
//! behind the same Router as on AWS. `leadrouter serve` is a thin shell around this.

use crate::adapters::channel::{ChannelQueue, Envelope};
use crate::adapters::graph::GraphFetcher;
use crate::adapters::notifier::HttpNotifier;
use crate::adapters::sqlite::SqliteStore;
use crate::config::Settings;
use crate::domain::Stage;
use crate::pipeline::{Pipeline, RetryPolicy, Secrets};
use crate::ports::{Clock, LeadStore, Message, Queue, StoreError, SystemClock};
use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc};

pub type EmbeddedPipeline = Pipeline<SqliteStore, ChannelQueue, HttpNotifier>;

/// Messages one stage takes from its queue at once.
const MAX_BATCH: usize = 256;
/// Notification batches in flight at once (they wait on receivers, not on us).
const NOTIFY_BATCHES: usize = 16;
/// Leads fetched from their platform and not yet taken by dedup, at most: fetch is paced by
/// the stages behind it, so that a lead is routed soon after its fetch however many wait to be
/// fetched (they wait in the store, `fetching`, where they cost no memory).
const FETCHED_AHEAD: usize = 256;

/// Retention rests this many times as long as each of its writes took: it has at most a
/// quarter of the single writer, whatever is due.
const RETENTION_REST: u32 = 3;

/// A stage that works only as far ahead of the stage behind it as `ahead` messages: those in
/// its own hands plus those queued for `behind`.
#[derive(Clone, Copy)]
struct Pace {
    behind: Stage,
    ahead: usize,
}

pub struct Embedded {
    pub pipeline: Arc<EmbeddedPipeline>,
    pub resumed: usize,
}

/// How the embedded runtime runs, beyond the routing document.
pub struct Options {
    pub retry: RetryPolicy,
    pub clock: Arc<dyn Clock>,
    /// How often the sweep looks for SLA deadlines, unassigned leads and reps who left; None
    /// leaves it to the caller (tests call `Pipeline::sweep`).
    pub sweep_every: Option<Duration>,
    /// Sends `email:` targets; None writes them to the log.
    pub mailer: Option<crate::adapters::notifier::Mailer>,
    /// Messages each stage's queue holds (more wait in the store); None for the defaults
    /// (`ChannelQueue::new`).
    pub queue_capacity: Option<usize>,
    /// When a notification target counts as down, and how often it is probed.
    pub circuits: crate::pipeline::circuit::CircuitPolicy,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            retry: RetryPolicy::default(),
            clock: Arc::new(SystemClock),
            sweep_every: Some(Duration::from_secs(30)),
            mailer: None,
            queue_capacity: None,
            circuits: Default::default(),
        }
    }
}

fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(250u64.saturating_mul(1 << attempt.min(10))).min(Duration::from_secs(300))
}

async fn worker(
    stage: Stage,
    mut rx: mpsc::Receiver<Envelope>,
    p: Arc<EmbeddedPipeline>,
    parallel: usize,
    pace: Option<Pace>,
) {
    let slots = Arc::new(Semaphore::new(parallel));
    // Messages in this stage's batches under way.
    let working = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let ahead = |w: &std::sync::atomic::AtomicUsize, pace: Pace| {
        w.load(std::sync::atomic::Ordering::SeqCst) + p.queue.len(pace.behind)
    };
    while let Some(first) = rx.recv().await {
        let mut limit = MAX_BATCH;
        if let Some(pace) = pace {
            while ahead(&working, pace) >= pace.ahead {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            limit = limit.min(pace.ahead - ahead(&working, pace)).max(1);
        }
        let mut batch = vec![first];
        while batch.len() < limit {
            match rx.try_recv() {
                Ok(e) => batch.push(e),
                Err(_) => break,
            }
        }
        // A lead already in this stage's hands waits for it (see `ChannelQueue::take`).
        batch.retain(|e| p.queue.take(stage, e));
        if batch.is_empty() {
            continue;
        }
        let Ok(permit) = slots.clone().acquire_owned().await else { break };
        let p2 = p.clone();
        let taken = batch.len();
        working.fetch_add(taken, std::sync::atomic::Ordering::SeqCst);
        let working = working.clone();
        let task = async move {
            let messages: Vec<Message> = batch.iter().map(|e| e.message.clone()).collect();
            let results = p2.run(stage, messages).await;
            for (envelope, result) in batch.into_iter().zip(results) {
                match result {
                    Ok(()) => p2.queue.finished(stage, &envelope.message),
                    Err(e) if !e.is_retryable() => {
                        let _ = p2.queue.dead_letter(stage, &envelope.message, &e.to_string()).await;
                        p2.queue.finished(stage, &envelope.message);
                    }
                    Err(e) => {
                        let delay = backoff(envelope.attempt);
                        tracing::warn!(stage = stage.as_str(), lead_id = %envelope.message.lead_id, attempt = envelope.attempt,
                            retry_in_ms = delay.as_millis() as u64, error = %e, "will retry");
                        let queue = p2.queue.clone();
                        tokio::spawn(async move {
                            tokio::time::sleep(delay).await;
                            queue.retry(stage, Envelope { message: envelope.message, attempt: envelope.attempt + 1 });
                        });
                    }
                }
            }
            working.fetch_sub(taken, std::sync::atomic::Ordering::SeqCst);
            drop(permit);
        };
        if parallel > 1 {
            tokio::spawn(task);
        } else {
            task.await;
        }
    }
}

impl Embedded {
    /// Opens the store, starts one worker per stage, and queues every lead left mid-pipeline.
    pub async fn start(
        settings: Settings,
        secrets: Secrets,
        db: &Path,
        retry: RetryPolicy,
    ) -> Result<Embedded, StoreError> {
        Self::start_with(settings, secrets, db, Options { retry, ..Options::default() }).await
    }

    pub async fn start_with(
        settings: Settings,
        secrets: Secrets,
        db: &Path,
        options: Options,
    ) -> Result<Embedded, StoreError> {
        let Options { retry, clock, sweep_every, mailer, queue_capacity, circuits } = options;
        let circuits = crate::pipeline::circuit::Circuits::new(circuits);
        // The last 4,096 transitions: how far a client of `GET /v1/events` may fall behind.
        let events = crate::events::Hub::new(4096);
        let store = SqliteStore::open(db)?.with_events(events.clone());
        let (queue, rx) = match queue_capacity {
            Some(n) => ChannelQueue::with_capacity(n),
            None => ChannelQueue::new(),
        };
        let notifier = HttpNotifier::new(secrets.webhook_secret.clone(), clock.clone()).with_mailer(mailer);
        let notifier = if settings.server.allow_private_targets {
            notifier
        } else {
            notifier.guarding(settings.document_targets())
        };
        let fetcher = Arc::new(match &settings.sources.meta {
            Some(m) => GraphFetcher::new(
                m.graph_base_url.clone(),
                secrets.source("meta.access_token").map(crate::config::Secret::new),
                m.fields.clone(),
            ),
            None => GraphFetcher::new(String::new(), None, Default::default()),
        });
        let crm = crate::crm::Crm::from_settings(&settings.crm, &secrets);
        let pipeline = Arc::new(Pipeline {
            store,
            queue,
            notifier,
            fetcher,
            clock,
            settings: Arc::new(settings),
            secrets,
            retry,
            circuits: Arc::new(circuits),
            events: Some(events),
            crm,
        });
        let fetch_pace = Pace { behind: Stage::Dedup, ahead: FETCHED_AHEAD };
        tokio::spawn(worker(Stage::Fetch, rx.fetch, pipeline.clone(), NOTIFY_BATCHES, Some(fetch_pace)));
        tokio::spawn(worker(Stage::Dedup, rx.dedup, pipeline.clone(), 1, None));
        tokio::spawn(worker(Stage::Score, rx.score, pipeline.clone(), 1, None));
        tokio::spawn(worker(Stage::Assign, rx.assign, pipeline.clone(), 1, None));
        tokio::spawn(worker(Stage::Notify, rx.notify, pipeline.clone(), NOTIFY_BATCHES, None));
        let resumed = resume(&pipeline).await?;
        crate::http::console::warm_metrics(pipeline.clone());
        tokio::spawn(refill(pipeline.clone()));
        if let Some(every) = sweep_every {
            let p = pipeline.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(every);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                tick.tick().await;
                loop {
                    tick.tick().await;
                    if let Err(e) = p.sweep(None).await {
                        tracing::warn!(error = %e, "sweep failed; next pass retries");
                    }
                }
            });
            // Apart from the sweep, so that a long pass never holds up an SLA deadline, and
            // paced, so that it never holds up the pipeline's writes for long.
            let p = pipeline.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(every).await;
                    // Indexed by last activity: a pass with nothing due reads one index page.
                    if let Err(e) = p.retention_paced(RETENTION_REST).await {
                        tracing::warn!(error = %e, "retention failed; next pass retries");
                    }
                }
            });
        }
        if resumed > 0 {
            tracing::info!(leads = resumed, "resumed leads left mid-pipeline");
        }
        Ok(Embedded { pipeline, resumed })
    }

    /// Serves HTTP until `shutdown` resolves, then drains in-flight work for up to `drain`.
    pub async fn serve(
        &self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
        drain: Duration,
    ) -> std::io::Result<()> {
        let app = crate::http::router(self.pipeline.clone());
        // The peer's address is the client that `[server] rate_limit_per_minute` counts.
        let app = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
        axum::serve(listener, app).with_graceful_shutdown(shutdown).await?;
        self.drain(drain).await;
        Ok(())
    }

    /// Waits until no message is in flight, or `limit` passes. What is left resumes next start.
    pub async fn drain(&self, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        while self.pipeline.queue.in_flight() > 0 {
            if tokio::time::Instant::now() >= deadline {
                tracing::warn!(
                    in_flight = self.pipeline.queue.in_flight(),
                    "drain timed out; the rest resumes on next start"
                );
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        true
    }
}

/// Reads leads left to the store for want of room back into their stages' queues, oldest
/// first, once there is room, from the store's index of waiting leads (no lead is loaded).
/// Each stage's reading position only moves forward: a lead is left out only after it is
/// stored, and leads are stored in the order of that index, so whatever was left out since is
/// further on; only a retry of an older lead, left out, sends the position back to the start.
/// A pass that reaches the end accounts for what was left out before it began.
async fn refill(p: Arc<EmbeddedPipeline>) {
    let q = &p.queue;
    let mut positions: std::collections::HashMap<Stage, i64> = std::collections::HashMap::new();
    // Per stage: how many had been left out when the pass under way began.
    let mut began: std::collections::HashMap<Stage, u64> = std::collections::HashMap::new();
    loop {
        tokio::time::sleep(Duration::from_millis(20)).await;
        for stage in Stage::ALL {
            if q.take_rewind(stage) {
                positions.insert(stage, 0);
            }
            let Some(seen) = q.backlogged(stage) else {
                began.remove(&stage);
                continue;
            };
            if q.room(stage) * 2 < q.capacity(stage) {
                continue;
            }
            let began_at = *began.entry(stage).or_insert(seen);
            let after = positions.get(&stage).copied().unwrap_or(0);
            match refill_stage(&p, stage, after).await {
                Ok((reached, complete)) => {
                    positions.insert(stage, reached);
                    if complete {
                        q.refilled(stage, began_at);
                        began.remove(&stage);
                    }
                }
                Err(e) => tracing::warn!(error = %e, "could not read the backlog from the store; trying again"),
            }
        }
    }
}

/// Offers the leads waiting for `stage` after position `after` until its queue is full again
/// or none are left (true); the position reached.
async fn refill_stage(p: &EmbeddedPipeline, stage: Stage, mut after: i64) -> Result<(i64, bool), StoreError> {
    loop {
        let waiting = p.store.on_their_way(stage, after, 500).await?;
        if waiting.is_empty() {
            return Ok((after, true));
        }
        for (seq, id, kind) in waiting {
            if !p.queue.holds(stage, &id) && !p.queue.try_offer(stage, Message { kind, ..Message::lead(id) }) {
                return Ok((after, false));
            }
            after = seq;
        }
    }
}

async fn resume(p: &EmbeddedPipeline) -> Result<usize, StoreError> {
    let mut after = None;
    let mut total = 0;
    loop {
        let crate::ports::PendingPage { leads: page, next } = p.store.pending(p.clock.now(), after, 1000).await?;
        total += page.len();
        let mut by_stage: std::collections::HashMap<Stage, Vec<Message>> = std::collections::HashMap::new();
        for id in page {
            if let Some(stage) = p.store.get(&id).await?.and_then(|l| l.pending_stage()) {
                by_stage.entry(stage).or_default().push(Message::lead(id));
            }
        }
        for (stage, batch) in by_stage {
            p.queue.offer(stage, batch).await.map_err(|e| StoreError::Unavailable(Box::new(e)))?;
        }
        match next {
            Some(n) => after = Some(n),
            None => return Ok(total),
        }
    }
}

/// A pipeline over `store` for a one-off command (`leadrouter crm resync`): the document's
/// CRMs and notifier, no workers; what it would send on between stages goes nowhere.
pub fn tool_pipeline<S: crate::ports::LeadStore>(
    store: S,
    settings: Settings,
    secrets: Secrets,
) -> Pipeline<S, ChannelQueue, HttpNotifier> {
    let clock: Arc<dyn crate::ports::Clock> = Arc::new(crate::ports::SystemClock);
    let (queue, _receivers) = ChannelQueue::new();
    let crm = crate::crm::Crm::from_settings(&settings.crm, &secrets);
    Pipeline {
        store,
        queue,
        notifier: HttpNotifier::new(secrets.webhook_secret.clone(), clock.clone()),
        fetcher: Arc::new(GraphFetcher::new(String::new(), None, Default::default())),
        clock,
        settings: Arc::new(settings),
        secrets,
        retry: RetryPolicy::default(),
        circuits: Arc::new(crate::pipeline::circuit::Circuits::new(Default::default())),
        events: None,
        crm,
    }
}
