//! A circuit per notification target, so that a dead receiver costs a few requests a minute,
//! not one per lead per backoff step. After `trip_after` consecutive failed attempts the
//! target is down: its deliveries are not attempted but wait as `parked`, one probe goes out
//! every `probe_every` (the first parked notification, tried once), and when a probe is
//! answered the target is up again and the parked notifications go out in the order they
//! were parked. The pool managers of the reps who use the target are told once per outage
//! (`target_down`).
//!
//! In the embedded runtime the parked messages wait here, in memory (a message is a lead id
//! and a kind; the leads themselves wait in the store, `notify_pending`, and a restart reads
//! them back from there). On AWS each function instance keeps its own circuits and parked
//! messages go back to SQS, whose visibility timeout spaces their returns.

use crate::ports::Message;
use chrono::{DateTime, Duration, Utc};
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

#[derive(Clone, Copy, Debug)]
pub struct CircuitPolicy {
    /// Consecutive failed attempts that take a target down.
    pub trip_after: u32,
    /// How often a down target is probed.
    pub probe_every: Duration,
    /// Whether parked messages wait here (embedded) or go back to the queue (AWS).
    pub hold_parked: bool,
}

impl Default for CircuitPolicy {
    fn default() -> Self {
        CircuitPolicy { trip_after: 5, probe_every: Duration::seconds(30), hold_parked: true }
    }
}

#[derive(Default)]
struct Circuit {
    failures: u32,
    down_since: Option<DateTime<Utc>>,
    probe_due: Option<DateTime<Utc>>,
    probing: bool,
    parked: VecDeque<Message>,
}

/// Whether a delivery to a target may be attempted now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    Go,
    /// The target is down and this delivery is its probe: one attempt.
    Probe,
    /// The target is down: park the delivery.
    Parked,
}

/// What an attempt's outcome did to its target's circuit.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    None,
    /// The target just went down (tell the managers).
    Down,
    /// The target answered again: these parked messages go out now, in order.
    Up(Vec<Message>),
}

#[derive(Default)]
pub struct Circuits {
    pub policy: CircuitPolicy,
    targets: Mutex<HashMap<String, Circuit>>,
}

impl Circuits {
    pub fn new(policy: CircuitPolicy) -> Circuits {
        Circuits { policy, targets: Mutex::default() }
    }

    fn with<R>(&self, target: &str, f: impl FnOnce(&mut Circuit) -> R) -> R {
        let mut map = self.targets.lock().unwrap_or_else(|p| p.into_inner());
        // Asked on every delivery: a target already known costs no allocation.
        if let Some(c) = map.get_mut(target) {
            return f(c);
        }
        f(map.entry(target.to_owned()).or_default())
    }

    pub fn gate(&self, target: &str, now: DateTime<Utc>) -> Gate {
        self.with(target, |c| match c.down_since {
            None => Gate::Go,
            Some(_) if !c.probing && c.probe_due.is_none_or(|due| now >= due) => {
                c.probing = true;
                Gate::Probe
            }
            Some(_) => Gate::Parked,
        })
    }

    /// Records an attempt: answered (`ok`) or failed in a way worth retrying.
    pub fn record(&self, target: &str, ok: bool, now: DateTime<Utc>) -> Change {
        let policy = self.policy;
        self.with(target, |c| {
            if ok {
                c.failures = 0;
                c.probing = false;
                c.probe_due = None;
                if c.down_since.take().is_some() {
                    return Change::Up(c.parked.drain(..).collect());
                }
                return Change::None;
            }
            c.failures += 1;
            if c.probing {
                c.probing = false;
                c.probe_due = Some(now + policy.probe_every);
            }
            if c.down_since.is_none() && c.failures >= policy.trip_after {
                c.down_since = Some(now);
                c.probe_due = Some(now + policy.probe_every);
                return Change::Down;
            }
            Change::None
        })
    }

    /// Keeps a message for when the target is up (once; in arrival order).
    pub fn park(&self, target: &str, m: Message) {
        self.with(target, |c| {
            if !c.parked.contains(&m) {
                c.parked.push_back(m);
            }
        })
    }

    /// For each down target whose probe is due, the first message parked on it, to send as
    /// the probe (the sweep sends it; it stays parked, in its place, until the target is up).
    pub fn due_probes(&self, now: DateTime<Utc>) -> Vec<Message> {
        let map = self.targets.lock().unwrap_or_else(|p| p.into_inner());
        map.values()
            .filter(|c| c.down_since.is_some() && !c.probing && c.probe_due.is_none_or(|d| now >= d))
            .filter_map(|c| c.parked.front().cloned())
            .collect()
    }

    /// Targets down now.
    pub fn down(&self) -> Vec<String> {
        let map = self.targets.lock().unwrap_or_else(|p| p.into_inner());
        map.iter().filter(|(_, c)| c.down_since.is_some()).map(|(t, _)| t.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::LeadId;

    #[test]
    fn trips_probes_and_releases_in_order() {
        let c = Circuits::new(CircuitPolicy::default());
        let t0 = Utc::now();
        for i in 0..4 {
            assert_eq!(c.gate("t", t0), Gate::Go);
            assert_eq!(c.record("t", false, t0), Change::None, "attempt {i}");
        }
        assert_eq!(c.record("t", false, t0), Change::Down);
        assert_eq!(c.gate("t", t0), Gate::Parked);
        let (a, b) = (Message::lead(LeadId::new()), Message::lead(LeadId::new()));
        c.park("t", a.clone());
        c.park("t", b.clone());
        c.park("t", a.clone());
        assert!(c.due_probes(t0).is_empty(), "not before probe_every");
        let later = t0 + Duration::seconds(31);
        assert_eq!(c.due_probes(later), vec![a.clone()], "the first parked goes out as the probe");
        assert_eq!(c.gate("t", later), Gate::Probe);
        assert_eq!(c.gate("t", later), Gate::Parked, "one probe at a time");
        assert_eq!(c.record("t", false, later), Change::None);
        assert_eq!(c.gate("t", later), Gate::Parked, "the next probe waits probe_every");
        let much_later = later + Duration::seconds(31);
        assert_eq!(c.gate("t", much_later), Gate::Probe);
        assert_eq!(c.record("t", true, much_later), Change::Up(vec![a, b]), "in the order parked");
        assert_eq!(c.gate("t", much_later), Gate::Go);
        assert!(c.down().is_empty());
        assert_eq!(c.gate("other", t0), Gate::Go, "circuits are per target");
    }
}
