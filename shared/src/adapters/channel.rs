//! The embedded `Queue`: one bounded in-process channel per stage, with a count of work in
//! flight so that shutdown can drain. The store stays the source of truth: every lead waiting
//! for a stage is in its pending index, so a queue never has to hold more than a stage can
//! work through soon. A stage forwarding to a full queue waits for room (the stage behind it
//! sets the pace, so a lead fetched from Meta is routed right after); ingest, the sweep and
//! retries never wait: what finds a queue full is left to the store, and read back from it
//! when there is room again (`runtime::refill`). Memory stays bounded however far routing
//! falls behind, and `POST /v1/leads` keeps answering 202 at full speed.

use crate::domain::{LeadId, Stage};
use crate::ports::{Message, Queue, QueueError};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

/// Messages the queues that ingest, the sweep and the refill offer to (fetch, dedup, notify)
/// hold. Ingest never waits: what finds these full waits in the store, so they are deep
/// enough that a burst rarely needs reading back (smaller ones cost throughput in paired load
/// runs, BENCHMARKS.md).
pub const CAPACITY: usize = 4096;
/// Messages the queues between serial stages (score, assign) hold: two batches, enough for
/// the stage in front to fill the next batch while the one behind works through this one,
/// and little for a lead to wait behind (a Meta lead is routed within a second of its fetch).
pub const INNER_CAPACITY: usize = 512;

/// A message and how many times it has been tried.
#[derive(Debug, Clone)]
pub struct Envelope {
    pub message: Message,
    pub attempt: u32,
}

/// One stage's bookkeeping: each message queued once, and each lead worked on by one worker
/// task at a time. A message for a lead already in the stage's hands (assign forwarding a
/// lead the refill read back a moment before) waits beside it and is queued again when the
/// worker is finished: two notify batches never send the same lead at once.
#[derive(Default)]
struct Book {
    queued: HashSet<Message>,
    /// Per lead: messages queued.
    leads: HashMap<LeadId, u32>,
    /// Leads taken by the worker and not finished (a retry waiting its turn included), with the
    /// messages that came for them meanwhile.
    working: HashMap<LeadId, Vec<Envelope>>,
    /// Leads set aside for good (no retry can help them), with why; until a restart.
    dead: HashMap<LeadId, String>,
}

impl Book {
    /// False when the message is queued already, or its lead was set aside.
    fn add(&mut self, m: &Message) -> bool {
        if self.dead.contains_key(&m.lead_id) || !self.queued.insert(m.clone()) {
            return false;
        }
        *self.leads.entry(m.lead_id.clone()).or_default() += 1;
        true
    }

    fn holds(&self, lead: &LeadId) -> bool {
        self.leads.contains_key(lead) || self.working.contains_key(lead) || self.dead.contains_key(lead)
    }

    /// The message left the queue.
    fn remove(&mut self, m: &Message) {
        if self.queued.remove(m)
            && let Some(n) = self.leads.get_mut(&m.lead_id)
        {
            *n -= 1;
            if *n == 0 {
                self.leads.remove(&m.lead_id);
            }
        }
    }

    /// The worker takes the envelope: true when it may work on it now, false when its lead is
    /// being worked on already (the envelope waits for that to finish).
    fn take(&mut self, e: &Envelope) -> bool {
        self.remove(&e.message);
        match self.working.get_mut(&e.message.lead_id) {
            Some(waiting) => {
                waiting.push(e.clone());
                false
            }
            None => {
                self.working.insert(e.message.lead_id.clone(), Vec::new());
                true
            }
        }
    }

    /// The worker let the lead go: what waited for it.
    fn release(&mut self, lead: &LeadId) -> Vec<Envelope> {
        self.working.remove(lead).unwrap_or_default()
    }
}

#[derive(Clone)]
pub struct ChannelQueue {
    senders: Arc<[mpsc::Sender<Envelope>; 5]>,
    in_flight: Arc<AtomicUsize>,
    books: Arc<Mutex<[Book; 5]>>,
    /// Per stage: how many messages were left to the store for want of room, and how many of
    /// those the last complete refill accounted for (equal: nothing is left behind).
    overflowed: Arc<[AtomicU64; 5]>,
    refilled: Arc<[AtomicU64; 5]>,
    /// Per stage: a retry of an older lead was left to the store, behind where the refill
    /// reads (new leads are always further on, in arrival order).
    rewind: Arc<[std::sync::atomic::AtomicBool; 5]>,
}

pub struct Receivers {
    pub fetch: mpsc::Receiver<Envelope>,
    pub dedup: mpsc::Receiver<Envelope>,
    pub score: mpsc::Receiver<Envelope>,
    pub assign: mpsc::Receiver<Envelope>,
    pub notify: mpsc::Receiver<Envelope>,
}

fn slot(stage: Stage) -> usize {
    match stage {
        Stage::Fetch => 0,
        Stage::Dedup => 1,
        Stage::Score => 2,
        Stage::Assign => 3,
        Stage::Notify => 4,
    }
}

impl ChannelQueue {
    /// Queues of `CAPACITY`, and `INNER_CAPACITY` between the serial stages.
    pub fn new() -> (ChannelQueue, Receivers) {
        Self::with_capacities([CAPACITY, CAPACITY, INNER_CAPACITY, INNER_CAPACITY, CAPACITY])
    }

    /// Every stage's queue holding `capacity` messages.
    pub fn with_capacity(capacity: usize) -> (ChannelQueue, Receivers) {
        Self::with_capacities([capacity; 5])
    }

    /// Per stage, in `Stage::ALL` order.
    fn with_capacities(c: [usize; 5]) -> (ChannelQueue, Receivers) {
        let (f, fr) = mpsc::channel(c[0]);
        let (d, dr) = mpsc::channel(c[1]);
        let (s, sr) = mpsc::channel(c[2]);
        let (a, ar) = mpsc::channel(c[3]);
        let (n, nr) = mpsc::channel(c[4]);
        (
            ChannelQueue {
                senders: Arc::new([f, d, s, a, n]),
                in_flight: Arc::new(AtomicUsize::new(0)),
                books: Arc::new(Mutex::new(Default::default())),
                overflowed: Arc::new(Default::default()),
                refilled: Arc::new(Default::default()),
                rewind: Arc::new(Default::default()),
            },
            Receivers { fetch: fr, dedup: dr, score: sr, assign: ar, notify: nr },
        )
    }

    fn book<T>(&self, stage: Stage, f: impl FnOnce(&mut Book) -> T) -> T {
        let mut books = self.books.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut books[slot(stage)])
    }

    /// The stage's worker took the envelope from the queue: true when it works on it now;
    /// false when the lead is in its hands already (the envelope is queued again once the
    /// worker is `finished` with the lead).
    pub fn take(&self, stage: Stage, e: &Envelope) -> bool {
        self.book(stage, |b| b.take(e))
    }

    /// The worker is done with a lead it took, and did not hand it to `retry`.
    pub fn finished(&self, stage: Stage, m: &Message) {
        let waiting = self.book(stage, |b| b.release(&m.lead_id));
        self.done(1);
        for e in waiting {
            self.requeue(stage, e);
        }
    }

    /// The leads `stage` set aside for good, with why.
    pub fn dead_letters(&self, stage: Stage) -> Vec<(LeadId, String)> {
        self.book(stage, |b| b.dead.iter().map(|(l, r)| (l.clone(), r.clone())).collect())
    }

    /// Whether a message for the lead is queued for `stage` or being worked on there (or was
    /// set aside): the refill and the sweep leave such a lead alone.
    pub fn holds(&self, stage: Stage, lead: &LeadId) -> bool {
        self.book(stage, |b| b.holds(lead))
    }

    /// Puts a message the worker took back for another try (its in-flight count is already
    /// held); a full queue leaves it to the store.
    pub fn retry(&self, stage: Stage, envelope: Envelope) {
        let waiting = self.book(stage, |b| b.release(&envelope.message.lead_id));
        for e in waiting.into_iter().chain([envelope]) {
            self.requeue(stage, e);
        }
    }

    /// Queues an envelope whose in-flight count is held already.
    fn requeue(&self, stage: Stage, envelope: Envelope) {
        let m = envelope.message.clone();
        if !self.book(stage, |b| b.add(&m)) {
            self.done(1);
            return;
        }
        if self.senders[slot(stage)].try_send(envelope).is_err() {
            self.dequeue(stage, &m);
            self.rewind[slot(stage)].store(true, Ordering::SeqCst);
            self.left_to_store(stage);
            self.done(1);
        }
    }

    /// A message that never reached its queue.
    fn dequeue(&self, stage: Stage, m: &Message) {
        self.book(stage, |b| b.remove(m));
    }

    /// Whether the refill must read `stage`'s backlog from the start again (and forget it).
    pub fn take_rewind(&self, stage: Stage) -> bool {
        self.rewind[slot(stage)].swap(false, Ordering::SeqCst)
    }

    /// Offers one message without waiting; false when its queue is full (the message is left
    /// to the store, and counted so that a refill reads it back).
    pub fn try_offer(&self, stage: Stage, message: Message) -> bool {
        if !self.book(stage, |b| b.add(&message)) {
            return true;
        }
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        match self.senders[slot(stage)].try_send(Envelope { message: message.clone(), attempt: 0 }) {
            Ok(()) => true,
            Err(_) => {
                self.dequeue(stage, &message);
                self.done(1);
                self.left_to_store(stage);
                false
            }
        }
    }

    fn left_to_store(&self, stage: Stage) {
        self.overflowed[slot(stage)].fetch_add(1, Ordering::SeqCst);
    }

    /// Whether messages of `stage` were left to the store since the last complete refill,
    /// and the count to hand `refilled` once a refill began after it and found every one.
    pub fn backlogged(&self, stage: Stage) -> Option<u64> {
        let (o, r) =
            (self.overflowed[slot(stage)].load(Ordering::SeqCst), self.refilled[slot(stage)].load(Ordering::SeqCst));
        (o != r).then_some(o)
    }

    /// A refill that began when `seen` messages had been left to the store read every lead
    /// waiting for `stage` back into its queue.
    pub fn refilled(&self, stage: Stage, seen: u64) {
        self.refilled[slot(stage)].fetch_max(seen, Ordering::SeqCst);
    }

    /// Messages a stage's queue holds.
    pub fn capacity(&self, stage: Stage) -> usize {
        self.senders[slot(stage)].max_capacity()
    }

    /// Messages waiting in a stage's queue.
    pub fn len(&self, stage: Stage) -> usize {
        self.capacity(stage) - self.room(stage)
    }

    /// Room left in the stage's queue.
    pub fn room(&self, stage: Stage) -> usize {
        self.senders[slot(stage)].capacity()
    }

    /// Messages sent and not yet finished (including those waiting to be retried), plus one
    /// while any stage has leads waiting in the store for room in its queue.
    pub fn in_flight(&self) -> usize {
        let backlog = Stage::ALL.iter().any(|s| self.backlogged(*s).is_some());
        self.in_flight.load(Ordering::SeqCst) + usize::from(backlog)
    }

    pub fn done(&self, n: usize) {
        self.in_flight.fetch_sub(n, Ordering::SeqCst);
    }
}

impl Queue for ChannelQueue {
    /// Waits for room: the stage behind sets the pace of the stage in front.
    async fn send(&self, stage: Stage, messages: Vec<Message>) -> Result<(), QueueError> {
        let tx = &self.senders[slot(stage)];
        for message in messages {
            if !self.book(stage, |b| b.add(&message)) {
                continue;
            }
            self.in_flight.fetch_add(1, Ordering::SeqCst);
            if tx.send(Envelope { message: message.clone(), attempt: 0 }).await.is_err() {
                self.dequeue(stage, &message);
                self.done(1);
                return Err(QueueError("the runtime is shutting down".into()));
            }
        }
        Ok(())
    }

    /// The embedded runtime has no dead-letter queue: the lead is set aside (never queued for
    /// the stage again until a restart) and the reason logged as an error. The worker then
    /// finishes the message as usual.
    async fn dead_letter(&self, stage: Stage, message: &Message, reason: &str) -> Result<(), QueueError> {
        tracing::error!(stage = stage.as_str(), lead_id = %message.lead_id, reason, "set aside: no retry can help");
        self.book(stage, |b| b.dead.insert(message.lead_id.clone(), reason.to_owned()));
        Ok(())
    }

    /// A lead the stage holds already is not offered again: what ingest offers is new, and
    /// what the sweep or a roster change re-sends may still be in the stage's hands.
    async fn offer(&self, stage: Stage, messages: Vec<Message>) -> Result<(), QueueError> {
        for m in messages {
            if !self.holds(stage, &m.lead_id) {
                self.try_offer(stage, m);
            }
        }
        Ok(())
    }
}
