//! Every lead transition as it is written, for `GET /v1/events` (Server-Sent Events) on the
//! embedded runtime. The store publishes each lead it wrote once its write is committed; each
//! event is serialized once, however many clients listen. A recent window is kept so that a
//! client reconnecting with `Last-Event-ID` misses nothing inside it.

use crate::domain::{Lead, LeadId, LeadStatus};
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use tokio::sync::broadcast;

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

/// One event, numbered, as the Server-Sent Events frame that carries it, built once for every
/// client.
#[derive(Debug)]
pub struct Published {
    /// Increasing from 1: the SSE `id:` a client resumes from.
    pub seq: u64,
    /// `event: lead`, `id:`, `data:` (the event's JSON) and the blank line.
    pub frame: axum::body::Bytes,
}

struct Recent {
    next: u64,
    events: VecDeque<Arc<Published>>,
}

/// Events a listening client may be behind before its stream ends (it resumes by reconnecting).
const LIVE_ROOM: usize = 16_384;

pub struct Hub {
    tx: broadcast::Sender<Arc<Published>>,
    recent: Mutex<Recent>,
    keep: usize,
}

impl Hub {
    /// `keep`: how many recent events a reconnecting client can resume over; also how far a
    /// slow client may fall behind before its stream ends (it reconnects and resumes).
    pub fn new(keep: usize) -> Arc<Hub> {
        // Room for what a busy pipeline writes while each client gathers its next write
        // (about 55,000 transitions a second at saturation here, for 50 ms), beyond the window
        // kept for resuming.
        let (tx, _) = broadcast::channel(keep.max(16).max(LIVE_ROOM));
        Arc::new(Hub { tx, recent: Mutex::new(Recent { next: 1, events: VecDeque::new() }), keep: keep.max(16) })
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

    /// Publishes each event in order.
    pub fn publish(&self, events: impl IntoIterator<Item = LeadEvent>) {
        let json: Vec<String> = events.into_iter().filter_map(|e| serde_json::to_string(&e).ok()).collect();
        if json.is_empty() {
            return;
        }
        let mut r = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        for json in json {
            let frame = format!("event: lead\nid: {}\ndata: {json}\n\n", r.next).into();
            let e = Arc::new(Published { seq: r.next, frame });
            r.next += 1;
            if r.events.len() == self.keep {
                r.events.pop_front();
            }
            r.events.push_back(e.clone());
            // No listener is not an error.
            let _ = self.tx.send(e);
        }
    }

    /// The events after `after` still kept (none without it), and every event from then on.
    pub fn subscribe(&self, after: Option<u64>) -> (Vec<Arc<Published>>, broadcast::Receiver<Arc<Published>>) {
        let r = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        let rx = self.tx.subscribe();
        let backlog = match after {
            Some(a) => r.events.iter().filter(|e| e.seq > a).cloned().collect(),
            None => Vec::new(),
        };
        (backlog, rx)
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
    async fn a_listener_gets_what_follows_and_a_returning_one_what_it_missed() {
        let hub = Hub::new(16);
        hub.publish([event(1)]);
        let (backlog, mut rx) = hub.subscribe(None);
        assert!(backlog.is_empty(), "a new listener starts now");
        hub.publish([event(2), event(3)]);
        assert_eq!(rx.recv().await.unwrap().seq, 2);
        assert_eq!(rx.recv().await.unwrap().seq, 3);
        let (missed, _) = hub.subscribe(Some(1));
        assert_eq!(missed.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![2, 3]);
        let frame = String::from_utf8_lossy(&missed[0].frame);
        assert!(frame.contains("\"status\":\"received\""), "{frame}");
        // Only the most recent are kept.
        hub.publish((4..40).map(event));
        let (missed, _) = hub.subscribe(Some(1));
        assert_eq!(missed.len(), 16);
        assert_eq!(missed.first().unwrap().seq, 24);
    }
}
