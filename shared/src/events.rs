//! Every lead transition as it is written, for `GET /v1/events` (Server-Sent Events) on the
//! embedded runtime. The store publishes each lead it wrote once its write is committed; each
//! event is serialized once, however many clients listen. A recent window is kept so that a
//! client reconnecting with `Last-Event-ID` misses nothing inside it.

use crate::domain::{Lead, LeadId, LeadStatus};
use axum::body::Bytes;
use bytes::BytesMut;
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, broadcast};

/// What an event says of a lead.
#[derive(Serialize, utoipa::ToSchema)]
pub struct LeadEvent {
    #[schema(value_type = String)]
    pub id: LeadId,
    pub status: LeadStatus,
    pub owner: Option<String>,
    pub pool: Option<String>,
    /// When the transition happened.
    pub at: DateTime<Utc>,
}

/// One event, numbered, as the Server-Sent Events frame that carries it.
#[derive(Debug, Clone)]
pub struct Published {
    /// Increasing from 1: the SSE `id:` a client resumes from.
    pub seq: u64,
    /// `event: lead`, `id:`, `data:` (the event's JSON) and the blank line.
    pub frame: Bytes,
}

/// The events published during one gather, as one buffer: every client is sent the same
/// bytes in one write, with no work per client per event.
#[derive(Debug)]
pub struct Chunk {
    /// The seq of its last event.
    pub last: u64,
    /// Its events' frames, one after another.
    pub frames: Bytes,
}

struct Recent {
    next: u64,
    /// Published and not yet sent: the frames and each one's (seq, end offset).
    gathering: BytesMut,
    ends: Vec<(u64, usize)>,
    /// Sent, for clients resuming with `Last-Event-ID`.
    events: VecDeque<Published>,
}

/// After an event, the ones that follow within this go out with it in one chunk: a client
/// costs the server one wake-up and one write per gather however busy the pipeline (a person
/// watching the console does not see 50 ms).
pub const GATHER: Duration = Duration::from_millis(50);

/// Chunks a listening client may be behind before its stream ends (it resumes by reconnecting):
/// at least `LIVE_ROOM` × `GATHER` of falling behind.
const LIVE_ROOM: usize = 64;

pub struct Hub {
    tx: broadcast::Sender<Arc<Chunk>>,
    recent: Mutex<Recent>,
    keep: usize,
    /// Wakes the gatherer when a first event waits.
    waiting: Arc<Notify>,
}

impl Hub {
    /// `keep`: how many recent events a reconnecting client can resume over. Starts the task
    /// that sends each gather's chunk (it ends with the hub); call within a Tokio runtime.
    pub fn new(keep: usize) -> Arc<Hub> {
        let (tx, _) = broadcast::channel(LIVE_ROOM);
        let waiting = Arc::new(Notify::new());
        let hub = Arc::new(Hub {
            tx,
            recent: Mutex::new(Recent {
                next: 1,
                gathering: BytesMut::new(),
                ends: Vec::new(),
                events: VecDeque::new(),
            }),
            keep: keep.max(16),
            waiting: waiting.clone(),
        });
        let weak = Arc::downgrade(&hub);
        tokio::spawn(async move {
            loop {
                waiting.notified().await;
                tokio::time::sleep(GATHER).await;
                match weak.upgrade() {
                    Some(hub) => hub.send_gathered(),
                    None => return,
                }
            }
        });
        hub
    }

    pub fn event_of(lead: &Lead) -> LeadEvent {
        LeadEvent {
            id: lead.id.clone(),
            status: lead.status,
            owner: lead.owner.clone(),
            pool: lead.pool.clone(),
            at: lead.history.last().map(|h| h.at).unwrap_or(lead.received_at),
        }
    }

    /// Publishes each event in order; they go out with the others of this gather.
    pub fn publish(&self, events: impl IntoIterator<Item = LeadEvent>) {
        let json: Vec<String> = events.into_iter().filter_map(|e| serde_json::to_string(&e).ok()).collect();
        if json.is_empty() {
            return;
        }
        let mut r = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        let first = r.ends.is_empty();
        for json in json {
            let seq = r.next;
            r.next += 1;
            let _ = write!(r.gathering, "event: lead\nid: {seq}\ndata: {json}\n\n");
            let end = r.gathering.len();
            r.ends.push((seq, end));
        }
        drop(r);
        if first {
            self.waiting.notify_one();
        }
    }

    /// Sends what was gathered as one chunk, and keeps its events for resuming clients. Under
    /// the same lock as `subscribe`, so a client gets each event once: in its backlog or live.
    fn send_gathered(&self) {
        let mut r = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        let Some(&(last, _)) = r.ends.last() else { return };
        let frames = std::mem::take(&mut r.gathering).freeze();
        let ends = std::mem::take(&mut r.ends);
        let mut start = 0;
        for (seq, end) in ends {
            if r.events.len() == self.keep {
                r.events.pop_front();
            }
            r.events.push_back(Published { seq, frame: frames.slice(start..end) });
            start = end;
        }
        // No listener is not an error.
        let _ = self.tx.send(Arc::new(Chunk { last, frames }));
    }

    /// The events after `after` still kept (none without it), and every chunk from then on.
    pub fn subscribe(&self, after: Option<u64>) -> (Vec<Published>, broadcast::Receiver<Arc<Chunk>>) {
        let r = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        let rx = self.tx.subscribe();
        let backlog = match after {
            Some(a) => r.events.iter().filter(|e| e.seq > a).cloned().collect(),
            None => Vec::new(),
        };
        (backlog, rx)
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        // The gatherer wakes, finds the hub gone and ends.
        self.waiting.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Contact;

    fn event(n: usize) -> LeadEvent {
        let l = Lead::new(LeadId::derived(&format!("e{n}")), "web".into(), Contact::default(), Utc::now());
        Hub::event_of(&l)
    }

    #[tokio::test]
    async fn a_listener_gets_what_follows_in_one_chunk_and_a_returning_one_what_it_missed() {
        let hub = Hub::new(16);
        hub.publish([event(1)]);
        let (backlog, mut rx) = hub.subscribe(None);
        assert!(backlog.is_empty(), "a new listener starts now");
        // Event 1 was still gathering when the listener came: it is in the first chunk.
        hub.publish([event(2)]);
        hub.publish([event(3)]);
        let chunk = rx.recv().await.unwrap();
        assert_eq!(chunk.last, 3);
        let text = String::from_utf8_lossy(&chunk.frames).into_owned();
        assert_eq!(text.matches("event: lead\n").count(), 3, "{text}");
        assert!(text.find("id: 1\n") < text.find("id: 2\n") && text.find("id: 2\n") < text.find("id: 3\n"));
        let (missed, _) = hub.subscribe(Some(1));
        assert_eq!(missed.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![2, 3]);
        let frame = String::from_utf8_lossy(&missed[0].frame);
        assert!(frame.starts_with("event: lead\nid: 2\ndata: {"), "{frame}");
        assert!(frame.ends_with("}\n\n") && frame.contains("\"status\":\"received\""), "{frame}");
        // Only the most recent are kept.
        hub.publish((4..40).map(event));
        let chunk = rx.recv().await.unwrap();
        assert_eq!(chunk.last, 39);
        let (missed, _) = hub.subscribe(Some(1));
        assert_eq!(missed.len(), 16);
        assert_eq!(missed.first().unwrap().seq, 24);
        // The gatherer ends with the hub.
        drop(hub);
    }
}
