//! Replay: what a new routing document would do to the leads already stored, without changing
//! anything. Scoring and pool matching are re-run as they are (pure functions of the lead);
//! reps are picked by each pool's weighted round-robin from a fresh cursor, in the order the
//! leads arrived, skipping reps who were not available at the time each lead arrived (working
//! hours, out of office, inactive; capacity is not replayed).

use crate::config::Settings;
use crate::domain::roster::{describe_skips, pick};
use crate::domain::{Lead, LeadStatus, Roster};
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

/// Where a lead goes under one document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placement {
    pub grade: Option<String>,
    pub pool: Option<String>,
    pub rep: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReplayReport {
    pub leads: u64,
    /// Pool (or `(unassigned)`) → (before, after).
    pub pools: BTreeMap<String, (u64, u64)>,
    pub reps: BTreeMap<String, (u64, u64)>,
    /// (before, after) grade → leads, for the leads whose grade changed.
    pub grade_shifts: BTreeMap<(String, String), u64>,
    /// Leads that would go unassigned, with why (the first 50 are kept).
    pub unassigned: Vec<(String, String)>,
    pub unassigned_total: u64,
    /// Leads whose owner would change.
    pub owner_changes: u64,
}

const NOBODY: &str = "(unassigned)";
const KEEP: usize = 50;

pub struct Replayer<'a> {
    settings: &'a Settings,
    roster: Roster,
    cursors: HashMap<String, u64>,
    pub report: ReplayReport,
}

impl<'a> Replayer<'a> {
    /// `roster_changes` are the stored `/v1/reps` changes, laid over the new document's reps.
    pub fn new(settings: &'a Settings, roster_changes: &[crate::domain::RepRecord]) -> Replayer<'a> {
        Replayer {
            settings,
            roster: Roster::build(&settings.reps, &settings.pools, roster_changes),
            cursors: HashMap::new(),
            report: ReplayReport::default(),
        }
    }

    /// Whether replay has anything to say about a lead: it was scored and routed (or tried to
    /// be); duplicates, rejected leads and leads still arriving are left out.
    pub fn concerns(lead: &Lead) -> bool {
        !matches!(
            lead.status,
            LeadStatus::Fetching
                | LeadStatus::Received
                | LeadStatus::Unique
                | LeadStatus::Duplicate
                | LeadStatus::Rejected
        ) && !lead.test
    }

    /// Feeds one lead; leads should come oldest first, as they arrived.
    pub fn add(&mut self, lead: &Lead) {
        if !Self::concerns(lead) {
            return;
        }
        let before = Placement { grade: lead.grade.clone(), pool: lead.pool.clone(), rep: lead.owner.clone() };
        let (after, why) = self.place(lead);
        let r = &mut self.report;
        r.leads += 1;
        let key = |p: &Placement| p.rep.as_ref().and(p.pool.clone()).unwrap_or_else(|| NOBODY.into());
        r.pools.entry(key(&before)).or_default().0 += 1;
        r.pools.entry(key(&after)).or_default().1 += 1;
        r.reps.entry(before.rep.clone().unwrap_or_else(|| NOBODY.into())).or_default().0 += 1;
        r.reps.entry(after.rep.clone().unwrap_or_else(|| NOBODY.into())).or_default().1 += 1;
        let g = |p: &Placement| p.grade.clone().unwrap_or_else(|| "-".into());
        if g(&before) != g(&after) {
            *r.grade_shifts.entry((g(&before), g(&after))).or_default() += 1;
        }
        if before.rep != after.rep {
            r.owner_changes += 1;
        }
        if after.rep.is_none() {
            r.unassigned_total += 1;
            if r.unassigned.len() < KEEP {
                r.unassigned.push((lead.id.to_string(), why));
            }
        }
    }

    /// Scores the lead and picks its pool and rep under the new document.
    fn place(&mut self, lead: &Lead) -> (Placement, String) {
        let s = self.settings.scoring.score(lead);
        let mut scored = lead.clone();
        scored.grade = Some(s.grade.clone());
        let grade = Some(s.grade.clone());
        if s.disqualified {
            return (Placement { grade, pool: None, rep: None }, format!("disqualified (score {})", s.score));
        }
        let at = lead.received_at;
        let mut reasons = Vec::new();
        for pool in self.settings.pools.iter().filter(|p| p.rule.matches(&scored)) {
            let Some(rotation) = self.roster.rotation(&pool.id) else {
                reasons.push(format!("pool {} has no reps", pool.id));
                continue;
            };
            let cursor = self.cursors.get(&pool.id).copied().unwrap_or(0);
            let roster = &self.roster;
            match pick(rotation, cursor, |rep| match roster.rep(rep) {
                Some(r) => r.availability(at, 0),
                None => Err(crate::domain::Unavailable::Inactive),
            }) {
                Ok(p) => {
                    self.cursors.insert(pool.id.clone(), p.turn + 1);
                    return (Placement { grade, pool: Some(pool.id.clone()), rep: Some(p.rep) }, String::new());
                }
                Err(skips) => reasons.push(format!("pool {}: {}", pool.id, describe_skips(&skips))),
            }
        }
        let why = if reasons.is_empty() {
            format!(
                "no pool matches (grade {}, country {}, source {})",
                s.grade,
                lead.contact.country.as_deref().unwrap_or("-"),
                lead.source
            )
        } else {
            format!("nobody available: {}", reasons.join("; "))
        };
        (Placement { grade, pool: None, rep: None }, why)
    }
}

impl ReplayReport {
    /// The report as a sales-ops engineer reads it in a terminal.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let table = |out: &mut String, title: &str, rows: &BTreeMap<String, (u64, u64)>| {
            let _ = writeln!(out, "{title:<24} {:>8} {:>8} {:>8}", "before", "after", "change");
            for (k, (b, a)) in rows {
                let _ = writeln!(out, "{k:<24} {b:>8} {a:>8} {:>+8}", *a as i64 - *b as i64);
            }
            out.push('\n');
        };
        table(&mut out, "pool", &self.pools);
        table(&mut out, "rep", &self.reps);
        if self.grade_shifts.is_empty() {
            out.push_str("no grade changes\n\n");
        } else {
            out.push_str("grade shifts\n");
            for ((b, a), n) in &self.grade_shifts {
                let _ = writeln!(out, "  {b} -> {a}: {n}");
            }
            out.push('\n');
        }
        let _ = writeln!(out, "{} of {} leads would change owner", self.owner_changes, self.leads);
        if self.unassigned_total == 0 {
            out.push_str("no lead would go unassigned\n");
        } else {
            let _ = writeln!(out, "{} leads would go unassigned:", self.unassigned_total);
            for (id, why) in &self.unassigned {
                let _ = writeln!(out, "  {id}: {why}");
            }
            if self.unassigned_total as usize > self.unassigned.len() {
                let _ = writeln!(out, "  … and {} more", self.unassigned_total as usize - self.unassigned.len());
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Contact, LeadId};
    use chrono::TimeZone;

    fn settings(extra_rule: &str, pools: &str) -> Settings {
        let doc = format!(
            "[server]\nadmin_token = \"x\"\nwebhook_secret = \"y\"\n[[scoring.rules]]\nname = \"senior\"\nfield = \"job_title\"\n\
             matches = '(?i)vp'\npoints = 50\n{extra_rule}\n[[reps]]\nid = \"ana\"\n[[reps]]\nid = \"ben\"\n\
             working_hours = \"Mon-Fri 09:00-17:00\"\n{pools}"
        );
        Settings::parse(&doc).unwrap_or_else(|p| panic!("{p}"))
    }

    fn lead(title: &str, country: &str, old: &Settings) -> Lead {
        let at = chrono::Utc.with_ymd_and_hms(2026, 11, 24, 12, 0, 0).unwrap(); // a Tuesday
        let mut l = Lead::new(
            LeadId::new(),
            "web".into(),
            Contact { job_title: Some(title.into()), country: Some(country.into()), ..Contact::default() },
            at,
        );
        let s = old.scoring.score(&l);
        l.grade = Some(s.grade);
        l.transition(LeadStatus::Scored, "scored", at);
        let pool = old.pools.iter().find(|p| p.rule.matches(&l)).unwrap();
        l.assign_to(&pool.id, pool.rotation.pick(0).to_owned(), "old".into(), at);
        l
    }

    #[test]
    fn reports_pools_reps_grades_and_the_unassigned() {
        let old = settings("", "[[pools]]\nid = \"all\"\nreps = [{ id = \"ana\" }]\n");
        let new = settings(
            "[[scoring.rules]]\nname = \"us\"\nfield = \"country\"\nin = [\"US\"]\npoints = 30\n",
            "[[pools]]\nid = \"top\"\nmatch = { grade = [\"A\"] }\nreps = [{ id = \"ben\" }]\n\
             [[pools]]\nid = \"us\"\nmatch = { country = [\"US\"] }\nreps = [{ id = \"ana\" }, { id = \"ben\" }]\n",
        );
        let leads = [lead("VP Sales", "US", &old), lead("Analyst", "US", &old), lead("Analyst", "FR", &old)];
        let mut r = Replayer::new(&new, &[]);
        for l in &leads {
            r.add(l);
        }
        let rep = r.report;
        assert_eq!(rep.leads, 3);
        // VP in the US: 80 points, grade A, to ben (in hours at 12:00 UTC on a Tuesday).
        assert_eq!(rep.pools["top"], (0, 1));
        assert_eq!(rep.pools["us"], (0, 1));
        assert_eq!(rep.pools["all"], (3, 0));
        assert_eq!(rep.pools[NOBODY], (0, 1));
        assert_eq!(rep.reps["ben"], (0, 1));
        assert_eq!(rep.reps["ana"], (3, 1));
        assert_eq!(rep.grade_shifts[&("B".to_owned(), "A".to_owned())], 1, "{:?}", rep.grade_shifts);
        assert_eq!(rep.grade_shifts[&("D".to_owned(), "C".to_owned())], 1);
        assert_eq!(rep.unassigned_total, 1);
        assert!(rep.unassigned[0].1.starts_with("no pool matches (grade D, country FR"), "{:?}", rep.unassigned);
        assert_eq!(rep.owner_changes, 2);
        let text = rep.render();
        assert!(text.contains("1 leads would go unassigned"), "{text}");
        assert!(text.contains("B -> A: 1"), "{text}");
    }
}
