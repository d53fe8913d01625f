//! Funnel metrics over the leads received in a window: per source and per rep, and each rep's
//! share of a pool's leads against their weight. Times are kept in HDR histograms (1 s
//! resolution, 3 significant figures), so a window of millions of leads costs a few KB.

use super::lead::LeadStatus;
use chrono::{DateTime, Utc};
use hdrhistogram::Histogram;
use serde::Serialize;
use std::collections::BTreeMap;

/// What the funnel metrics need of one lead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeadFacts {
    pub source: String,
    pub status: LeadStatus,
    pub grade: Option<String>,
    pub owner: Option<String>,
    pub pool: Option<String>,
    pub received_at: DateTime<Utc>,
    pub first_assigned_at: Option<DateTime<Utc>>,
    pub accepted_at: Option<DateTime<Utc>>,
}

impl LeadFacts {
    pub fn of(l: &super::Lead) -> LeadFacts {
        LeadFacts {
            source: l.source.clone(),
            status: l.status,
            grade: l.grade.clone(),
            owner: l.owner.clone(),
            pool: l.pool.clone(),
            received_at: l.received_at,
            first_assigned_at: l.first_assigned_at,
            accepted_at: l.accepted_at,
        }
    }
}

/// p50 and p90 in seconds; null when nothing was measured.
#[derive(Clone, Debug, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Percentiles {
    pub count: u64,
    pub p50: Option<f64>,
    pub p90: Option<f64>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Funnel {
    /// Leads received (duplicates and rejected included).
    pub leads: u64,
    pub duplicates: u64,
    pub rejected: u64,
    pub disqualified: u64,
    /// Leads per grade (`A`, `B`, …; `none` for leads never scored).
    pub grades: BTreeMap<String, u64>,
    /// Leads ever given to a rep.
    pub assigned: u64,
    pub accepted: u64,
    pub won: u64,
    pub lost: u64,
    /// Won over new leads (leads less duplicates and rejected), 0 when there are none.
    pub conversion_rate: f64,
    /// From receipt to the first assignment.
    pub time_to_assign_seconds: Percentiles,
    /// From receipt to acceptance by a rep.
    pub time_to_accept_seconds: Percentiles,
    /// `monthly_spend` spread over the window (sources with a spend only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spend: Option<f64>,
    /// Spend over new leads.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost_per_lead: Option<f64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct RepShare {
    pub rep: String,
    pub weight: u32,
    /// weight / the pool's total weight.
    pub expected_share: f64,
    pub assigned: u64,
    /// This rep's part of the pool's assigned leads.
    pub share: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct PoolShares {
    pub pool: String,
    pub assigned: u64,
    pub reps: Vec<RepShare>,
}

#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Metrics {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub total: Funnel,
    #[schema(value_type = Object)]
    pub sources: BTreeMap<String, Funnel>,
    #[schema(value_type = Object)]
    pub reps: BTreeMap<String, Funnel>,
    pub pools: Vec<PoolShares>,
    /// Per UTC day of the window's last 92 days, oldest first: leads per source, and time to
    /// assign and to accept of the leads received that day.
    pub days: Vec<Day>,
}

/// One day of the funnel over time.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Day {
    /// `YYYY-MM-DD` (UTC).
    pub date: String,
    /// Leads received that day, per source.
    #[schema(value_type = Object)]
    pub leads: BTreeMap<String, u64>,
    pub time_to_assign_seconds: Percentiles,
    pub time_to_accept_seconds: Percentiles,
}

/// How many days the series over time holds at most (its memory is per day).
pub const SERIES_DAYS: i64 = 92;

struct Acc {
    funnel: Funnel,
    to_assign: Histogram<u64>,
    to_accept: Histogram<u64>,
}

impl Acc {
    fn new() -> Acc {
        Acc { funnel: Funnel::default(), to_assign: histogram(), to_accept: histogram() }
    }

    fn add(&mut self, f: &LeadFacts) {
        let m = &mut self.funnel;
        m.leads += 1;
        match f.status {
            LeadStatus::Duplicate => m.duplicates += 1,
            LeadStatus::Rejected => m.rejected += 1,
            LeadStatus::Disqualified => m.disqualified += 1,
            LeadStatus::Won => m.won += 1,
            LeadStatus::Lost => m.lost += 1,
            _ => {}
        }
        if f.status != LeadStatus::Duplicate && f.status != LeadStatus::Rejected {
            let g = f.grade.as_deref().unwrap_or("none");
            match m.grades.get_mut(g) {
                Some(n) => *n += 1,
                None => {
                    m.grades.insert(g.to_owned(), 1);
                }
            }
        }
        if let Some(t) = f.first_assigned_at {
            m.assigned += 1;
            self.to_assign.saturating_record((t - f.received_at).num_seconds().max(0) as u64);
        }
        if let Some(t) = f.accepted_at {
            m.accepted += 1;
            self.to_accept.saturating_record((t - f.received_at).num_seconds().max(0) as u64);
        }
    }

    fn finish(mut self, spend: Option<f64>) -> Funnel {
        self.funnel.time_to_assign_seconds = percentiles(&self.to_assign);
        self.funnel.time_to_accept_seconds = percentiles(&self.to_accept);
        let new = self.funnel.leads - self.funnel.duplicates - self.funnel.rejected;
        self.funnel.conversion_rate = if new == 0 { 0.0 } else { round4(self.funnel.won as f64 / new as f64) };
        if let Some(s) = spend {
            self.funnel.spend = Some(round2(s));
            self.funnel.cost_per_lead = (new > 0).then(|| round2(s / new as f64));
        }
        self.funnel
    }
}

/// Seconds, to 3 significant figures, however many are recorded.
fn histogram() -> Histogram<u64> {
    Histogram::<u64>::new(3).unwrap_or_else(|_| unreachable!("3 significant figures is valid"))
}

fn percentiles(h: &Histogram<u64>) -> Percentiles {
    Percentiles {
        count: h.len(),
        p50: (!h.is_empty()).then(|| h.value_at_quantile(0.5) as f64),
        p90: (!h.is_empty()).then(|| h.value_at_quantile(0.9) as f64),
    }
}

/// A day of the series being gathered.
struct DayAcc {
    leads: BTreeMap<String, u64>,
    to_assign: Histogram<u64>,
    to_accept: Histogram<u64>,
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

fn round4(v: f64) -> f64 {
    (v * 10_000.0).round() / 10_000.0
}

/// The accumulator for `key`, made on first use (without cloning the key every time).
fn acc<'a>(map: &'a mut BTreeMap<String, Acc>, key: &str) -> &'a mut Acc {
    if !map.contains_key(key) {
        map.insert(key.to_owned(), Acc::new());
    }
    map.get_mut(key).unwrap_or_else(|| unreachable!("inserted above"))
}

/// Gathers facts one at a time; `finish` turns them into [`Metrics`].
pub struct MetricsBuilder {
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    total: Acc,
    sources: BTreeMap<String, Acc>,
    reps: BTreeMap<String, Acc>,
    /// pool → rep → leads whose owner is (or became) that rep in that pool.
    shares: BTreeMap<String, BTreeMap<String, u64>>,
    days: BTreeMap<chrono::NaiveDate, DayAcc>,
}

impl MetricsBuilder {
    pub fn new(from: DateTime<Utc>, to: DateTime<Utc>) -> MetricsBuilder {
        MetricsBuilder {
            from,
            to,
            total: Acc::new(),
            sources: BTreeMap::new(),
            reps: BTreeMap::new(),
            shares: BTreeMap::new(),
            days: BTreeMap::new(),
        }
    }

    pub fn add(&mut self, f: &LeadFacts) {
        self.total.add(f);
        if f.received_at >= self.to - chrono::Duration::days(SERIES_DAYS) {
            let day = self.days.entry(f.received_at.date_naive()).or_insert_with(|| DayAcc {
                leads: BTreeMap::new(),
                to_assign: histogram(),
                to_accept: histogram(),
            });
            match day.leads.get_mut(&f.source) {
                Some(n) => *n += 1,
                None => {
                    day.leads.insert(f.source.clone(), 1);
                }
            }
            if let Some(t) = f.first_assigned_at {
                day.to_assign.saturating_record((t - f.received_at).num_seconds().max(0) as u64);
            }
            if let Some(t) = f.accepted_at {
                day.to_accept.saturating_record((t - f.received_at).num_seconds().max(0) as u64);
            }
        }
        acc(&mut self.sources, &f.source).add(f);
        if let Some(o) = &f.owner {
            acc(&mut self.reps, o).add(f);
            if let Some(p) = &f.pool {
                let by_rep = match self.shares.get_mut(p) {
                    Some(m) => m,
                    None => self.shares.entry(p.clone()).or_default(),
                };
                match by_rep.get_mut(o) {
                    Some(n) => *n += 1,
                    None => {
                        by_rep.insert(o.clone(), 1);
                    }
                }
            }
        }
    }

    /// `spend` is each source's monthly spend; `weights` each pool's members as they stand.
    pub fn finish(self, spend: &BTreeMap<String, f64>, weights: &[(String, Vec<(String, u32)>)]) -> Metrics {
        let months = (self.to - self.from).num_seconds().max(0) as f64 / (30.4375 * 86_400.0);
        let source_spend = |s: &str| spend.get(s).map(|m| m * months);
        let total_spend = (!spend.is_empty()).then(|| spend.values().sum::<f64>() * months);
        let sources = self.sources.into_iter().map(|(s, a)| (s.clone(), a.finish(source_spend(&s)))).collect();
        let reps = self.reps.into_iter().map(|(r, a)| (r, a.finish(None))).collect();
        let mut pools = Vec::new();
        for (pool, members) in weights {
            let got = self.shares.get(pool);
            let assigned: u64 = got.map(|g| g.values().sum()).unwrap_or(0);
            let total_weight: u32 = members.iter().map(|m| m.1).sum();
            let mut reps: Vec<RepShare> = members
                .iter()
                .map(|(rep, w)| {
                    let n = got.and_then(|g| g.get(rep)).copied().unwrap_or(0);
                    RepShare {
                        rep: rep.clone(),
                        weight: *w,
                        expected_share: round4(f64::from(*w) / f64::from(total_weight.max(1))),
                        assigned: n,
                        share: if assigned == 0 { 0.0 } else { round4(n as f64 / assigned as f64) },
                    }
                })
                .collect();
            // Reps who had leads here and are no longer members.
            for (rep, n) in got.into_iter().flatten() {
                if !members.iter().any(|m| m.0 == *rep) {
                    reps.push(RepShare {
                        rep: rep.clone(),
                        weight: 0,
                        expected_share: 0.0,
                        assigned: *n,
                        share: round4(*n as f64 / assigned as f64),
                    });
                }
            }
            pools.push(PoolShares { pool: pool.clone(), assigned, reps });
        }
        let days = self
            .days
            .into_iter()
            .map(|(date, d)| Day {
                date: date.format("%Y-%m-%d").to_string(),
                time_to_assign_seconds: percentiles(&d.to_assign),
                time_to_accept_seconds: percentiles(&d.to_accept),
                leads: d.leads,
            })
            .collect();
        Metrics { from: self.from, to: self.to, total: self.total.finish(total_spend), sources, reps, pools, days }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn fact(
        source: &str,
        status: LeadStatus,
        owner: Option<&str>,
        assign_s: Option<i64>,
        accept_s: Option<i64>,
    ) -> LeadFacts {
        let t0 = Utc.with_ymd_and_hms(2026, 11, 1, 12, 0, 0).unwrap();
        LeadFacts {
            source: source.into(),
            status,
            grade: Some("B".into()),
            owner: owner.map(str::to_owned),
            pool: owner.map(|_| "everyone".to_owned()),
            received_at: t0,
            first_assigned_at: assign_s.map(|s| t0 + chrono::Duration::seconds(s)),
            accepted_at: accept_s.map(|s| t0 + chrono::Duration::seconds(s)),
        }
    }

    /// The series over time: a day per UTC date with leads, per source, and that day's times.
    #[test]
    fn days_count_leads_per_source_and_their_times() {
        let from = Utc.with_ymd_and_hms(2026, 10, 1, 0, 0, 0).unwrap();
        let to = Utc.with_ymd_and_hms(2026, 11, 3, 0, 0, 0).unwrap();
        let mut b = MetricsBuilder::new(from, to);
        b.add(&fact("meta", LeadStatus::Accepted, Some("ana"), Some(4), Some(60)));
        b.add(&fact("web", LeadStatus::Assigned, Some("ben"), Some(8), None));
        let mut next_day = fact("web", LeadStatus::Received, None, None, None);
        next_day.received_at += chrono::Duration::days(1);
        b.add(&next_day);
        let m = b.finish(&BTreeMap::new(), &[]);
        assert_eq!(m.days.iter().map(|d| d.date.as_str()).collect::<Vec<_>>(), ["2026-11-01", "2026-11-02"]);
        assert_eq!(m.days[0].leads, BTreeMap::from([("meta".to_string(), 1), ("web".to_string(), 1)]));
        assert_eq!(m.days[0].time_to_assign_seconds.count, 2);
        assert_eq!(m.days[0].time_to_accept_seconds.p50, Some(60.0));
        assert_eq!(m.days[1].leads, BTreeMap::from([("web".to_string(), 1)]));
        assert_eq!(m.days[1].time_to_assign_seconds.p50, None);
    }

    #[test]
    fn counts_rates_percentiles_and_cost() {
        let from = Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap();
        let to = from + chrono::Duration::seconds((30.4375 * 86_400.0) as i64);
        let mut b = MetricsBuilder::new(from, to);
        for i in 1..=10 {
            b.add(&fact(
                "meta",
                if i <= 2 { LeadStatus::Won } else { LeadStatus::Accepted },
                Some("ana"),
                Some(i),
                Some(60 * i),
            ));
        }
        b.add(&fact("meta", LeadStatus::Duplicate, None, None, None));
        b.add(&fact("web", LeadStatus::Rejected, None, None, None));
        let m = b.finish(
            &BTreeMap::from([("meta".to_owned(), 1000.0)]),
            &[("everyone".into(), vec![("ana".into(), 2), ("ben".into(), 1)])],
        );
        let meta = &m.sources["meta"];
        assert_eq!((meta.leads, meta.duplicates, meta.assigned, meta.accepted, meta.won), (11, 1, 10, 10, 2));
        assert_eq!(meta.conversion_rate, 0.2);
        assert_eq!(meta.time_to_assign_seconds.p50, Some(5.0));
        assert_eq!(meta.time_to_assign_seconds.p90, Some(9.0));
        assert_eq!(meta.time_to_accept_seconds.p90, Some(540.0));
        assert_eq!(meta.spend, Some(1000.0));
        assert_eq!(meta.cost_per_lead, Some(100.0));
        assert_eq!(m.sources["web"].rejected, 1);
        assert_eq!(m.sources["web"].cost_per_lead, None);
        assert_eq!(m.total.leads, 12);
        assert_eq!(m.reps["ana"].won, 2);
        assert_eq!(m.pools[0].reps[0].share, 1.0);
        assert_eq!(m.pools[0].reps[0].expected_share, 0.6667);
        assert_eq!(m.pools[0].reps[1].assigned, 0);
    }
}
