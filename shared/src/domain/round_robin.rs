//! Smooth weighted round-robin (nginx's algorithm), as a pure function of a turn counter.
//!
//! The sequence for a set of weights is periodic with period `sum(weights)`, and every period
//! holds each rep exactly `weight` times, spread out rather than bunched. Because the pick for a
//! turn is a function of the turn alone, the store keeps just a counter per pool: a batch of n
//! leads advances it by n in one conditional write.

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WeightedRoundRobin {
    members: Vec<(String, u32)>,
    sequence: Vec<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoundRobinError {
    #[error("a pool needs at least one rep")]
    Empty,
    #[error("weights must be between 1 and {max}", max = MAX_WEIGHT)]
    BadWeight,
}

pub const MAX_WEIGHT: u32 = 1_000;
const MAX_MEMBERS: usize = 1_000;

impl WeightedRoundRobin {
    pub fn new(members: Vec<(String, u32)>) -> Result<Self, RoundRobinError> {
        if members.is_empty() || members.len() > MAX_MEMBERS {
            return Err(RoundRobinError::Empty);
        }
        if members.iter().any(|(_, w)| *w == 0 || *w > MAX_WEIGHT) {
            return Err(RoundRobinError::BadWeight);
        }
        let weights: Vec<i64> = members.iter().map(|(_, w)| i64::from(*w)).collect();
        let total: i64 = weights.iter().sum();
        let mut current = vec![0i64; weights.len()];
        let mut sequence = Vec::with_capacity(total as usize);
        for _ in 0..total {
            let mut best = 0;
            for i in 0..weights.len() {
                current[i] += weights[i];
                if current[i] > current[best] {
                    best = i;
                }
            }
            current[best] -= total;
            sequence.push(best as u32);
        }
        Ok(WeightedRoundRobin { members, sequence })
    }

    pub fn period(&self) -> u64 {
        self.sequence.len() as u64
    }

    /// The rep whose turn `turn` is (turns count from 0).
    pub fn pick(&self, turn: u64) -> &str {
        let i = self.sequence[(turn % self.period()) as usize] as usize;
        &self.members[i].0
    }

    pub fn members(&self) -> &[(String, u32)] {
        &self.members
    }

    /// `ana:2 ben:1`, as written in a routing decision.
    pub fn describe(&self) -> String {
        self.members.iter().map(|(id, w)| format!("{id}:{w}")).collect::<Vec<_>>().join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    fn rr(weights: &[u32]) -> WeightedRoundRobin {
        WeightedRoundRobin::new(weights.iter().enumerate().map(|(i, w)| (format!("r{i}"), *w)).collect()).unwrap()
    }

    #[test]
    fn two_to_one_interleaves() {
        let r = rr(&[2, 1]);
        let picks: Vec<&str> = (0..6).map(|t| r.pick(t)).collect();
        assert_eq!(picks, vec!["r0", "r1", "r0", "r0", "r1", "r0"]);
        assert_eq!(r.describe(), "r0:2 r1:1");
    }

    #[test]
    fn smooth_not_bunched() {
        // nginx's example: weights 5,1,1 give a a b a c a a, never five a's in a row.
        let r = rr(&[5, 1, 1]);
        let picks: String = (0..7).map(|t| r.pick(t).chars().nth(1).unwrap()).collect();
        assert_eq!(picks, "0010200");
    }

    #[test]
    fn rejects_bad_pools() {
        assert_eq!(WeightedRoundRobin::new(vec![]), Err(RoundRobinError::Empty));
        assert_eq!(WeightedRoundRobin::new(vec![("a".into(), 0)]), Err(RoundRobinError::BadWeight));
    }

    proptest! {
        /// Over any window of sum(weights) consecutive turns, each rep gets exactly its weight.
        #[test]
        fn every_window_is_exactly_fair(weights in proptest::collection::vec(1u32..8, 1..6), start in 0u64..1_000_000) {
            let r = rr(&weights);
            let mut counts: HashMap<&str, u32> = HashMap::new();
            for t in start..start + r.period() {
                *counts.entry(r.pick(t)).or_default() += 1;
            }
            for (i, w) in weights.iter().enumerate() {
                prop_assert_eq!(counts.get(format!("r{i}").as_str()).copied().unwrap_or(0), *w);
            }
        }

        /// Smoothness: no rep waits longer than the period between two of its turns.
        #[test]
        fn no_rep_is_starved(weights in proptest::collection::vec(1u32..8, 1..6)) {
            let r = rr(&weights);
            for (i, _) in weights.iter().enumerate() {
                let id = format!("r{i}");
                let turns: Vec<u64> = (0..2 * r.period()).filter(|t| r.pick(*t) == id).collect();
                for pair in turns.windows(2) {
                    prop_assert!(pair[1] - pair[0] <= r.period());
                }
            }
        }
    }
}
