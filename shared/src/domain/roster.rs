//! The roster: who can take leads, in which pools and with what weight, and whether they can
//! take one right now. The routing document seeds it; changes made through `/v1/reps` are
//! kept in the store and laid over it.

use super::availability::{DateRange, WorkingHours};
use super::pool::Pool;
use super::round_robin::{MAX_WEIGHT, WeightedRoundRobin};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fmt;

#[derive(Clone, Debug, PartialEq)]
pub struct Rep {
    pub id: String,
    pub name: String,
    pub email: Option<String>,
    /// Targets as written (`webhook:https://…`), each checked by `config::Target::parse`.
    pub notify: Vec<String>,
    pub timezone: chrono_tz::Tz,
    pub working_hours: Option<WorkingHours>,
    pub out_of_office: Vec<DateRange>,
    pub max_open_leads: Option<u32>,
    pub active: bool,
    /// The rep's user in each CRM; a CRM not named here is matched by the rep's email.
    pub crm_owner: CrmOwner,
}

/// A rep's user id in each CRM (`crm_owner = { hubspot = "41629779", salesforce = "005…" }`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CrmOwner {
    /// HubSpot owner id (`hubspot_owner_id`; not the user id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hubspot: Option<String>,
    /// Salesforce User (or queue) id, `005…`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub salesforce: Option<String>,
}

impl CrmOwner {
    pub fn is_empty(&self) -> bool {
        self.hubspot.is_none() && self.salesforce.is_none()
    }

    pub fn get(&self, crm: &str) -> Option<&str> {
        match crm {
            "hubspot" => self.hubspot.as_deref(),
            "salesforce" => self.salesforce.as_deref(),
            _ => None,
        }
    }
}

/// Why a rep was passed over for a lead.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Unavailable {
    Inactive,
    OffHours {
        hours: String,
        timezone: String,
    },
    OutOfOffice {
        until: String,
    },
    AtCapacity {
        open: u32,
        max: u32,
    },
    /// Already had the lead and let it go past the pool's SLA.
    PreviousOwner,
}

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unavailable::Inactive => write!(f, "inactive"),
            Unavailable::OffHours { hours, timezone } => write!(f, "outside working hours ({hours} {timezone})"),
            Unavailable::OutOfOffice { until } => write!(f, "out of office until {until}"),
            Unavailable::AtCapacity { open, max } => write!(f, "at capacity ({open} of {max} open leads)"),
            Unavailable::PreviousOwner => write!(f, "let it pass the SLA"),
        }
    }
}

impl Rep {
    /// Whether the rep can take a new lead at `now`, holding `open` open leads.
    pub fn availability(&self, now: DateTime<Utc>, open: u32) -> Result<(), Unavailable> {
        if !self.active {
            return Err(Unavailable::Inactive);
        }
        if let Some(r) = self.out_of_office.iter().find(|r| r.contains(now, self.timezone)) {
            return Err(Unavailable::OutOfOffice { until: r.last.to_string() });
        }
        if let Some(h) = &self.working_hours
            && !h.contains(now, self.timezone)
        {
            return Err(Unavailable::OffHours { hours: h.as_str().to_owned(), timezone: self.timezone.to_string() });
        }
        if let Some(max) = self.max_open_leads
            && open >= max
        {
            return Err(Unavailable::AtCapacity { open, max });
        }
        Ok(())
    }
}

/// A rep as `/v1/reps` shows and takes them, and as the store keeps a change to the roster.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RepRecord {
    /// From the path on `PUT`; ignored in the body.
    #[serde(default)]
    pub id: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Notification targets: `webhook:URL`, `slack:URL`, `email:ADDRESS`, `log:`.
    #[serde(default)]
    pub notify: Vec<String>,
    /// The rep's weight in each pool they belong to; absent, the routing document's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<u32>,
    #[serde(default = "yes")]
    pub active: bool,
    /// An IANA zone; UTC when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// `Mon-Fri 08:00-18:00`; absent means any time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_hours: Option<String>,
    /// `YYYY-MM-DD/YYYY-MM-DD` ranges, both days included.
    #[serde(default)]
    pub out_of_office: Vec<String>,
    /// Capacity: assigned leads not yet won or lost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_open_leads: Option<u32>,
    /// The rep's user in each CRM: `{"hubspot": "41629779", "salesforce": "005…"}`.
    #[serde(default, skip_serializing_if = "CrmOwner::is_empty")]
    pub crm_owner: CrmOwner,
    /// The pools the rep takes leads in; absent on `PUT`, the ones the document gives them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pools: Option<Vec<String>>,
    /// Open leads held now (read-only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open_leads: Option<u32>,
    /// Removed with `DELETE` (kept so the document's entry does not come back).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    #[schema(read_only)]
    pub removed: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(read_only)]
    pub updated_at: Option<DateTime<Utc>>,
    /// Who made this change (the console's manager; on `PUT`, optional, who the caller says).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_by: Option<String>,
}

fn yes() -> bool {
    true
}

/// One bad field of a rep, for a 422.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RepFieldError {
    pub field: &'static str,
    pub message: String,
}

impl RepRecord {
    /// Checks every field; `valid_target` checks one notification target.
    pub fn to_rep(
        &self,
        pool_ids: &[&str],
        valid_target: impl Fn(&str) -> Result<(), String>,
    ) -> Result<Rep, Vec<RepFieldError>> {
        let mut errors = Vec::new();
        let mut bad = |field: &'static str, message: String| errors.push(RepFieldError { field, message });
        if self.name.trim().is_empty() {
            bad("name", "a rep needs a name".into());
        }
        if let Some(e) = &self.email
            && super::Email::parse(e).is_err()
        {
            bad("email", format!("'{e}' is not an address"));
        }
        for t in &self.notify {
            if let Err(e) = valid_target(t) {
                bad("notify", e);
            }
        }
        if self.weight.is_some_and(|w| w == 0 || w > MAX_WEIGHT) {
            bad("weight", format!("weight must be between 1 and {MAX_WEIGHT}"));
        }
        let timezone = match &self.timezone {
            Some(tz) => tz.parse::<chrono_tz::Tz>().unwrap_or_else(|_| {
                bad("timezone", format!("'{tz}' is not an IANA zone like America/New_York"));
                chrono_tz::UTC
            }),
            None => chrono_tz::UTC,
        };
        let working_hours = self
            .working_hours
            .as_deref()
            .and_then(|w| WorkingHours::parse(w).map_err(|e| bad("working_hours", e)).ok());
        let out_of_office = self
            .out_of_office
            .iter()
            .filter_map(|o| DateRange::parse(o).map_err(|e| bad("out_of_office", e)).ok())
            .collect();
        for p in self.pools.iter().flatten() {
            if !pool_ids.contains(&p.as_str()) {
                bad("pools", format!("there is no pool '{p}'"));
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Rep {
            id: self.id.clone(),
            name: self.name.trim().to_owned(),
            email: self.email.clone(),
            notify: self.notify.clone(),
            timezone,
            working_hours,
            out_of_office,
            max_open_leads: self.max_open_leads,
            active: self.active,
            crm_owner: self.crm_owner.clone(),
        })
    }
}

/// The roster in force: the document's reps and pools with the stored changes laid over them.
#[derive(Clone, Debug)]
pub struct Roster {
    reps: Vec<Rep>,
    index: HashMap<String, usize>,
    /// Per pool id: members and weights, in the document's order, then reps added later.
    members: HashMap<String, Vec<(String, u32)>>,
    /// Per pool id: its rotation over `members` (absent when nobody is left in it).
    rotations: HashMap<String, WeightedRoundRobin>,
}

impl Roster {
    /// `changes` are the stored records; one that does not parse any more is skipped with a
    /// warning (it was checked when it was written).
    pub fn build(reps: &[Rep], pools: &[Pool], changes: &[RepRecord]) -> Roster {
        let mut out: Vec<Rep> = reps.to_vec();
        let mut members: HashMap<String, Vec<(String, u32)>> =
            pools.iter().map(|p| (p.id.clone(), p.rotation.members().to_vec())).collect();
        let pool_ids: Vec<&str> = pools.iter().map(|p| p.id.as_str()).collect();
        for c in changes {
            let at = out.iter().position(|r| r.id == c.id);
            if c.removed {
                if let Some(i) = at {
                    out.remove(i);
                }
                for m in members.values_mut() {
                    m.retain(|(id, _)| *id != c.id);
                }
                continue;
            }
            let rep = match c.to_rep(&pool_ids, |_| Ok(())) {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(rep = %c.id, problems = ?e, "a stored rep no longer parses; left out");
                    continue;
                }
            };
            for (pool, m) in members.iter_mut() {
                let had = m.iter().position(|(id, _)| *id == c.id);
                let wanted = c.pools.as_ref().map_or(had.is_some(), |ps| ps.iter().any(|p| p == pool));
                match (had, wanted) {
                    (Some(i), true) => m[i].1 = c.weight.unwrap_or(m[i].1),
                    (Some(i), false) => {
                        m.remove(i);
                    }
                    (None, true) => m.push((c.id.clone(), c.weight.unwrap_or(1))),
                    (None, false) => {}
                }
            }
            match at {
                Some(i) => out[i] = rep,
                None => out.push(rep),
            }
        }
        let index = out.iter().enumerate().map(|(i, r)| (r.id.clone(), i)).collect();
        let rotations = members
            .iter()
            .filter_map(|(p, m)| WeightedRoundRobin::new(m.clone()).ok().map(|r| (p.clone(), r)))
            .collect();
        Roster { reps: out, index, members, rotations }
    }

    pub fn rep(&self, id: &str) -> Option<&Rep> {
        self.index.get(id).map(|i| &self.reps[*i])
    }

    pub fn reps(&self) -> &[Rep] {
        &self.reps
    }

    /// The pool's rotation as it stands, or None when nobody is left in it.
    pub fn rotation(&self, pool: &str) -> Option<&WeightedRoundRobin> {
        self.rotations.get(pool)
    }

    /// The pools a rep takes leads in, with their weight there.
    pub fn pools_of(&self, rep: &str) -> Vec<(String, u32)> {
        let mut v: Vec<(String, u32)> = self
            .members
            .iter()
            .filter_map(|(p, m)| m.iter().find(|(id, _)| id == rep).map(|(_, w)| (p.clone(), *w)))
            .collect();
        v.sort();
        v
    }

    /// Whether the rep is on the roster and active (not whether they are in hours now).
    pub fn is_active(&self, rep: &str) -> bool {
        self.rep(rep).is_some_and(|r| r.active)
    }

    /// The record `/v1/reps` shows for a rep.
    pub fn record(&self, rep: &Rep) -> RepRecord {
        let pools = self.pools_of(&rep.id);
        let weights: Vec<u32> = pools.iter().map(|p| p.1).collect();
        RepRecord {
            id: rep.id.clone(),
            name: rep.name.clone(),
            email: rep.email.clone(),
            notify: rep.notify.clone(),
            weight: weights.first().copied().filter(|w| weights.iter().all(|x| x == w)),
            active: rep.active,
            timezone: Some(rep.timezone.to_string()),
            working_hours: rep.working_hours.as_ref().map(|w| w.as_str().to_owned()),
            out_of_office: rep.out_of_office.iter().map(DateRange::text).collect(),
            max_open_leads: rep.max_open_leads,
            crm_owner: rep.crm_owner.clone(),
            pools: Some(pools.into_iter().map(|p| p.0).collect()),
            open_leads: None,
            removed: false,
            updated_at: None,
            updated_by: None,
        }
    }
}

/// The outcome of walking a pool's round-robin for one lead.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pick {
    pub rep: String,
    /// The turn the rep was picked on (counting from 0); the cursor moves past it.
    pub turn: u64,
    /// Reps whose turn came up first and who could not take it, once each, with why.
    pub skipped: Vec<(String, Unavailable)>,
}

/// Walks the rotation from `cursor` for at most one period and gives the lead to the first rep
/// who can take it. Turns of reps who cannot are passed, not owed: someone back from leave
/// takes their next turn, not the ones they missed. Err lists everyone who could not.
pub fn pick(
    rotation: &WeightedRoundRobin,
    cursor: u64,
    can_take: impl Fn(&str) -> Result<(), Unavailable>,
) -> Result<Pick, Vec<(String, Unavailable)>> {
    let mut skipped: Vec<(String, Unavailable)> = Vec::new();
    for turn in cursor..cursor + rotation.period() {
        let rep = rotation.pick(turn);
        if skipped.iter().any(|(r, _)| r == rep) {
            continue;
        }
        match can_take(rep) {
            Ok(()) => return Ok(Pick { rep: rep.to_owned(), turn, skipped }),
            Err(why) => skipped.push((rep.to_owned(), why)),
        }
    }
    Err(skipped)
}

/// `ben (outside working hours (Mon-Fri 08:00-18:00 UTC)), cy (inactive)`.
pub fn describe_skips(skipped: &[(String, Unavailable)]) -> String {
    skipped.iter().map(|(r, why)| format!("{r} ({why})")).collect::<Vec<_>>().join(", ")
}

impl Rep {
    /// A rep always available in UTC, for tests.
    #[cfg(test)]
    pub(crate) fn plain(id: &str) -> Rep {
        Rep {
            id: id.into(),
            name: id.into(),
            email: None,
            notify: vec![],
            timezone: chrono_tz::UTC,
            working_hours: None,
            out_of_office: vec![],
            max_open_leads: None,
            active: true,
            crm_owner: CrmOwner::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use proptest::prelude::*;

    fn rep(id: &str) -> Rep {
        Rep::plain(id)
    }

    fn rr(weights: &[u32]) -> WeightedRoundRobin {
        WeightedRoundRobin::new(weights.iter().enumerate().map(|(i, w)| (format!("r{i}"), *w)).collect()).unwrap()
    }

    #[test]
    fn each_reason_to_skip() {
        let now = Utc.with_ymd_and_hms(2026, 11, 24, 15, 0, 0).unwrap(); // Tue 10:00 in New York
        let mut ana = rep("ana");
        ana.timezone = "America/New_York".parse().unwrap();
        ana.working_hours = Some(WorkingHours::parse("Mon-Fri 08:00-18:00").unwrap());
        assert_eq!(ana.availability(now, 0), Ok(()));
        assert!(matches!(ana.availability(now + chrono::Duration::hours(9), 0), Err(Unavailable::OffHours { .. })));
        ana.out_of_office = vec![DateRange::parse("2026-11-24").unwrap()];
        assert_eq!(ana.availability(now, 0), Err(Unavailable::OutOfOffice { until: "2026-11-24".into() }));
        ana.out_of_office.clear();
        ana.max_open_leads = Some(3);
        assert_eq!(ana.availability(now, 2), Ok(()));
        assert_eq!(ana.availability(now, 3), Err(Unavailable::AtCapacity { open: 3, max: 3 }));
        ana.active = false;
        assert_eq!(ana.availability(now, 0), Err(Unavailable::Inactive));
        assert_eq!(Unavailable::Inactive.to_string(), "inactive");
    }

    #[test]
    fn working_hours_follow_daylight_saving() {
        let mut ana = rep("ana");
        ana.timezone = "America/New_York".parse().unwrap();
        ana.working_hours = Some(WorkingHours::parse("Mon-Fri 08:00-18:00").unwrap());
        // Fri 2026-10-30, EDT (UTC-4): 08:00 local is 12:00 UTC.
        assert!(ana.availability(Utc.with_ymd_and_hms(2026, 10, 30, 12, 0, 0).unwrap(), 0).is_ok());
        assert!(ana.availability(Utc.with_ymd_and_hms(2026, 10, 30, 11, 59, 0).unwrap(), 0).is_err());
        // Mon 2026-11-02, after the switch to EST (UTC-5) on Sunday: 12:00 UTC is 07:00 local.
        assert!(ana.availability(Utc.with_ymd_and_hms(2026, 11, 2, 12, 0, 0).unwrap(), 0).is_err());
        assert!(ana.availability(Utc.with_ymd_and_hms(2026, 11, 2, 13, 0, 0).unwrap(), 0).is_ok());
        // Spring forward, Mon 2027-03-15 (EDT again): 12:30 UTC is 08:30 local.
        assert!(ana.availability(Utc.with_ymd_and_hms(2027, 3, 15, 12, 30, 0).unwrap(), 0).is_ok());
        // Europe switches a different week: Mon 2027-03-22 London is still GMT, 08:00 = 08:00 UTC.
        let mut liz = rep("liz");
        liz.timezone = "Europe/London".parse().unwrap();
        liz.working_hours = Some(WorkingHours::parse("Mon-Fri 08:00-18:00").unwrap());
        assert!(liz.availability(Utc.with_ymd_and_hms(2027, 3, 22, 8, 0, 0).unwrap(), 0).is_ok());
        // Mon 2027-03-29, BST (UTC+1): 07:30 UTC is 08:30 local.
        assert!(liz.availability(Utc.with_ymd_and_hms(2027, 3, 29, 7, 30, 0).unwrap(), 0).is_ok());
        assert!(liz.availability(Utc.with_ymd_and_hms(2027, 3, 29, 17, 0, 0).unwrap(), 0).is_err());
    }

    #[test]
    fn skips_say_who_and_why_and_nobody_is_an_error() {
        let r = rr(&[2, 1]);
        let off = |id: &str| if id == "r0" { Err(Unavailable::Inactive) } else { Ok(()) };
        let p = pick(&r, 0, off).unwrap();
        assert_eq!(p.rep, "r1");
        assert_eq!(p.turn, 1);
        assert_eq!(describe_skips(&p.skipped), "r0 (inactive)");
        let none = pick(&r, 5, |_| Err(Unavailable::Inactive)).unwrap_err();
        assert_eq!(none.len(), 2);
    }

    #[test]
    fn roster_changes_lay_over_the_document() {
        let doc = "[server]\nadmin_token = \"x\"\nwebhook_secret = \"y\"\n[[reps]]\nid = \"ana\"\n[[reps]]\nid = \"ben\"\n\
                   [[pools]]\nid = \"a\"\nreps = [{ id = \"ana\", weight = 2 }, { id = \"ben\" }]\n\
                   [[pools]]\nid = \"b\"\nreps = [{ id = \"ben\" }]\n";
        let s = crate::config::Settings::parse(doc).unwrap();
        let cy = RepRecord {
            id: "cy".into(),
            name: "Cy".into(),
            email: None,
            notify: vec![],
            weight: Some(3),
            active: true,
            timezone: None,
            working_hours: None,
            out_of_office: vec![],
            max_open_leads: None,
            crm_owner: CrmOwner::default(),
            pools: Some(vec!["b".into()]),
            open_leads: None,
            removed: false,
            updated_at: None,
            updated_by: None,
        };
        let gone = RepRecord { id: "ben".into(), removed: true, pools: None, weight: None, ..cy.clone() };
        let roster = Roster::build(&s.reps, &s.pools, &[cy, gone]);
        assert_eq!(roster.rotation("a").unwrap().describe(), "ana:2");
        assert_eq!(roster.rotation("b").unwrap().describe(), "cy:3");
        assert!(roster.rep("ben").is_none());
        assert_eq!(roster.record(roster.rep("ana").unwrap()).weight, Some(2));
    }

    proptest! {
        /// Fairness over the reps who were available: with any set of reps unavailable, any
        /// k × (their total weight) consecutive leads give each available rep exactly k × weight.
        #[test]
        fn fair_over_the_available(
            weights in proptest::collection::vec(1u32..6, 1..6),
            away in proptest::collection::vec(any::<bool>(), 6),
            start in 0u64..10_000,
            k in 1u64..4,
        ) {
            let r = rr(&weights);
            let available: Vec<bool> = (0..weights.len()).map(|i| !away[i]).collect();
            let can = |id: &str| {
                let i: usize = id[1..].parse().unwrap();
                if available[i] { Ok(()) } else { Err(Unavailable::Inactive) }
            };
            let total: u64 = weights.iter().zip(&available).filter(|(_, a)| **a).map(|(w, _)| u64::from(*w)).sum();
            let mut cursor = start;
            let mut counts = vec![0u64; weights.len()];
            for _ in 0..k * total {
                let p = pick(&r, cursor, can).unwrap();
                counts[p.rep[1..].parse::<usize>().unwrap()] += 1;
                cursor = p.turn + 1;
            }
            for i in 0..weights.len() {
                let want = if available[i] { k * u64::from(weights[i]) } else { 0 };
                prop_assert_eq!(counts[i], want);
            }
            if total == 0 {
                prop_assert!(pick(&r, cursor, can).is_err());
            }
        }

        /// No catch-up: a rep back from leave takes no more than their weight in the next period.
        #[test]
        fn a_returning_rep_is_not_flooded(weights in proptest::collection::vec(1u32..6, 2..6), start in 0u64..10_000, away_for in 0u64..50) {
            let r = rr(&weights);
            let mut cursor = start;
            for _ in 0..away_for {
                let p = pick(&r, cursor, |id| if id == "r0" { Err(Unavailable::Inactive) } else { Ok(()) }).unwrap();
                cursor = p.turn + 1;
            }
            let mut r0 = 0;
            for _ in 0..r.period() {
                let p = pick(&r, cursor, |_| Ok(())).unwrap();
                if p.rep == "r0" { r0 += 1; }
                cursor = p.turn + 1;
            }
            prop_assert_eq!(r0, u64::from(weights[0]));
        }
    }
}
