//! The embedded `Queue`: one in-process channel per stage, with a count of work in flight so
//! that shutdown can drain. The store stays the source of truth; on start-up every lead left
//! mid-pipeline is queued again from it.

use crate::domain::Stage;
use crate::ports::{Message, Queue, QueueError};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::sync::mpsc;

/// A message and how many times it has been tried.
#[derive(Debug, Clone)]
pub struct Envelope {
    pub message: Message,
    pub attempt: u32,
}

#[derive(Clone)]
pub struct ChannelQueue {
    senders: Arc<[mpsc::UnboundedSender<Envelope>; 5]>,
    in_flight: Arc<AtomicUsize>,
}

pub struct Receivers {
    pub fetch: mpsc::UnboundedReceiver<Envelope>,
    pub dedup: mpsc::UnboundedReceiver<Envelope>,
    pub score: mpsc::UnboundedReceiver<Envelope>,
    pub assign: mpsc::UnboundedReceiver<Envelope>,
    pub notify: mpsc::UnboundedReceiver<Envelope>,
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
    pub fn new() -> (ChannelQueue, Receivers) {
        let (f, fr) = mpsc::unbounded_channel();
        let (d, dr) = mpsc::unbounded_channel();
        let (s, sr) = mpsc::unbounded_channel();
        let (a, ar) = mpsc::unbounded_channel();
        let (n, nr) = mpsc::unbounded_channel();
        (
            ChannelQueue { senders: Arc::new([f, d, s, a, n]), in_flight: Arc::new(AtomicUsize::new(0)) },
            Receivers { fetch: fr, dedup: dr, score: sr, assign: ar, notify: nr },
        )
    }

    /// Puts a message back for another try (its in-flight count is already held).
    pub fn retry(&self, stage: Stage, envelope: Envelope) {
        if self.senders[slot(stage)].send(envelope).is_err() {
            self.done(1);
        }
    }

    /// Messages sent and not yet finished (including those waiting to be retried).
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    pub fn done(&self, n: usize) {
        self.in_flight.fetch_sub(n, Ordering::SeqCst);
    }
}

impl Queue for ChannelQueue {
    async fn send(&self, stage: Stage, messages: Vec<Message>) -> Result<(), QueueError> {
        let tx = &self.senders[slot(stage)];
        for message in messages {
            self.in_flight.fetch_add(1, Ordering::SeqCst);
            if tx.send(Envelope { message, attempt: 0 }).is_err() {
                self.done(1);
                return Err(QueueError("the runtime is shutting down".into()));
            }
        }
        Ok(())
    }
}
