//! `leadrouter config test FILE --cases CASES.toml`: routing tests a sales-ops engineer writes
//! before publishing a document. Each case is a lead's fields and what is expected of it; it is
//! scored and routed by the same `decide` the assign stage calls, from an empty store (fresh
//! cursors, no open leads, no company owners) at its `at` time, unless it sets `open` or
//! `owners`.

use crate::config::Settings;
use crate::domain::intake::{HONEYPOT, IntakeOptions, normalize};
use crate::domain::routing::{RoutingView, apply, first_look};
use crate::domain::{LeadId, LeadStatus, Roster};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::fmt;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CasesFile {
    #[serde(rename = "case", default)]
    cases: Vec<Case>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    lead: toml::Table,
    expect: Expect,
    /// The clock for availability (RFC 3339, as a string or a TOML date-time); default now.
    at: Option<toml::Value>,
    /// Open leads per rep as the case starts (against `max_open_leads`).
    #[serde(default)]
    open: BTreeMap<String, u32>,
    /// Each company's existing owner (email domain → rep) as the case starts.
    #[serde(default)]
    owners: BTreeMap<String, String>,
}

/// Any of these; `pool` and `rep` may be "unassigned"; `why` is text the reason must contain.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct Expect {
    grade: Option<String>,
    pool: Option<String>,
    rep: Option<String>,
    why: Option<String>,
}

const UNASSIGNED: &str = "unassigned";

/// What the router decided for one case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decided {
    pub grade: Option<String>,
    pub pool: Option<String>,
    pub rep: Option<String>,
    pub why: String,
}

/// One case's outcome: `failures` empty when every expectation held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub name: String,
    pub failures: Vec<String>,
    pub decided: Option<Decided>,
}

impl Outcome {
    pub fn held(&self) -> bool {
        self.failures.is_empty()
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.held() {
            return write!(f, "ok    {}", self.name);
        }
        write!(f, "FAIL  {}", self.name)?;
        for e in &self.failures {
            write!(f, "\n      {e}")?;
        }
        if let Some(d) = &self.decided {
            let or = |v: &Option<String>| v.clone().unwrap_or_else(|| UNASSIGNED.into());
            write!(
                f,
                "\n      decided: grade {}, pool {}, rep {}\n      why: {}",
                d.grade.as_deref().unwrap_or("-"),
                or(&d.pool),
                or(&d.rep),
                d.why
            )?;
        }
        Ok(())
    }
}

/// Runs every case of `cases` (a cases file's text) against `settings`, at `now` for cases
/// without `at`. Err: the cases file itself is not one.
pub fn run(settings: &Settings, cases: &str, now: DateTime<Utc>) -> Result<Vec<Outcome>, String> {
    let file: CasesFile = toml::from_str(cases).map_err(|e| e.to_string())?;
    if file.cases.is_empty() {
        return Err("the file has no [[case]]".into());
    }
    let roster = Roster::build(&settings.reps, &settings.pools, &[]);
    Ok(file.cases.into_iter().map(|c| run_case(settings, &roster, c, now)).collect())
}

fn run_case(settings: &Settings, roster: &Roster, case: Case, now: DateTime<Utc>) -> Outcome {
    let mut out = Outcome { name: case.name.clone(), failures: Vec::new(), decided: None };
    let mut setup = Vec::new();
    for rep in case.open.keys().chain(case.owners.values()).chain(case.expect.rep.iter()) {
        if rep != UNASSIGNED && roster.rep(rep).is_none() {
            setup.push(format!("no rep {rep} in the document"));
        }
    }
    if let Some(pool) = case.expect.pool.as_ref().filter(|p| *p != UNASSIGNED)
        && !settings.pools.iter().any(|p| p.id == *pool)
    {
        setup.push(format!("no pool {pool} in the document"));
    }
    let at = match &case.at {
        None => Ok(now),
        Some(toml::Value::Datetime(d)) => parse_at(&d.to_string()),
        Some(toml::Value::String(s)) => parse_at(s),
        Some(other) => Err(format!("at = {other} is not a time")),
    };
    let at = at.unwrap_or_else(|e| {
        setup.push(e);
        now
    });
    let fields: Vec<(String, serde_json::Value)> =
        case.lead.iter().map(|(k, v)| (k.clone(), toml_to_json(v))).collect();
    let intake = match normalize(fields, IntakeOptions { default_region: settings.dedup.default_phone_region }) {
        Ok(i) => i,
        Err(errors) => {
            setup.extend(errors.iter().map(|e| format!("lead.{} {}", e.field, e.message)));
            out.failures = setup;
            return out;
        }
    };
    if !setup.is_empty() {
        out.failures = setup;
        return out;
    }
    let decided = decide_case(settings, roster, intake, at, &case.open, &case.owners);
    let e = &case.expect;
    let check = |what: &str, want: &Option<String>, got: &Option<String>, failures: &mut Vec<String>| {
        if let Some(want) = want {
            let got = got.clone().unwrap_or_else(|| UNASSIGNED.into());
            if *want != got {
                failures.push(format!("expected {what} {want}, decided {got}"));
            }
        }
    };
    check("grade", &e.grade, &decided.grade, &mut out.failures);
    check("pool", &e.pool, &decided.pool, &mut out.failures);
    check("rep", &e.rep, &decided.rep, &mut out.failures);
    if let Some(want) = &e.why
        && !decided.why.contains(want.as_str())
    {
        out.failures.push(format!("expected the reason to contain \"{want}\""));
    }
    out.decided = Some(decided);
    out
}

/// Scores and routes one lead from an empty store at `at`.
fn decide_case(
    settings: &Settings,
    roster: &Roster,
    intake: crate::domain::intake::Intake,
    at: DateTime<Utc>,
    open: &BTreeMap<String, u32>,
    owners: &BTreeMap<String, String>,
) -> Decided {
    if intake.honeypot {
        return Decided { grade: None, pool: None, rep: None, why: format!("rejected: {HONEYPOT}") };
    }
    let mut lead = intake.into_lead(at);
    settings.scoring.found_unique(&mut lead, settings.dedup.window_days, at);
    let open: HashMap<String, u32> = open.iter().map(|(k, v)| (k.clone(), *v)).collect();
    let owners: HashMap<String, (LeadId, String)> =
        owners.iter().map(|(d, rep)| (d.to_ascii_lowercase(), (LeadId::new(), rep.clone()))).collect();
    let view = RoutingView { pools: &settings.pools, roster, open: &open, owners: &owners, crm: None, now: at };
    if lead.status == LeadStatus::Scored {
        let decision = first_look(&lead, &view);
        apply(&decision, &mut lead, &view);
    }
    let given = lead.owner.is_some();
    Decided {
        grade: lead.grade.clone(),
        pool: lead.pool.clone().filter(|_| given),
        rep: lead.owner.clone(),
        why: lead.history.last().map(|h| h.reason.clone()).unwrap_or_default(),
    }
}

fn parse_at(s: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(s.trim())
        .map(|t| t.to_utc())
        .map_err(|_| format!("at = \"{s}\" is not an RFC 3339 time (e.g. 2026-12-01T15:00:00Z)"))
}

fn toml_to_json(v: &toml::Value) -> serde_json::Value {
    match v {
        toml::Value::String(s) => serde_json::Value::String(s.clone()),
        toml::Value::Integer(i) => serde_json::Value::from(*i),
        toml::Value::Float(f) => serde_json::Value::from(*f),
        toml::Value::Boolean(b) => serde_json::Value::Bool(*b),
        other => serde_json::Value::String(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn demo() -> Settings {
        Settings::parse(include_str!("../../examples/leadrouter.toml")).unwrap_or_else(|p| panic!("{p}"))
    }

    /// The cases shipped beside the demo document hold (`make test` also runs them through
    /// the command line).
    #[test]
    fn the_demo_cases_hold() {
        let out = run(&demo(), include_str!("../../examples/leadrouter.cases.toml"), Utc::now()).unwrap();
        assert!(out.len() >= 5);
        for o in &out {
            assert!(o.held(), "{o}");
        }
    }

    #[test]
    fn a_failing_case_says_what_it_expected_and_what_was_decided() {
        let cases = r#"
[[case]]
name = "wrong rep"
lead = { email = "vp@acme.com", job_title = "VP Sales", company_size = "500", country = "US" }
expect = { grade = "A", rep = "ben", why = "turn 1" }

[[case]]
name = "ana is full"
lead = { email = "vp@acme.com", job_title = "VP Sales", company_size = "500", country = "US" }
open = { ana = 40 }
expect = { pool = "enterprise-na", rep = "ben", why = "ana (at capacity (40 of 40 open leads))" }

[[case]]
name = "acme is ben's"
lead = { email = "someone@acme.com", country = "FR" }
owners = { "acme.com" = "ben" }
at = 2026-12-01T15:00:00Z
expect = { pool = "everyone", rep = "ben", why = "existing owner" }

[[case]]
name = "nobody by that name"
lead = { email = "x@acme.com" }
expect = { rep = "zed" }

[[case]]
name = "a bad email"
lead = { email = "not an email" }
expect = { rep = "unassigned" }
"#;
        let out = run(&demo(), cases, Utc::now()).unwrap();
        assert_eq!(out.iter().map(Outcome::held).collect::<Vec<_>>(), [false, true, true, false, false]);
        let text = out[0].to_string();
        assert!(text.contains("expected grade A, decided B"), "{text}");
        assert!(text.contains("expected rep ben, decided ana"), "{text}");
        assert!(text.contains("decided: grade B, pool enterprise-na, rep ana"), "{text}");
        assert!(out[3].to_string().contains("no rep zed in the document"), "{}", out[3]);
        assert!(out[4].to_string().contains("lead.email"), "{}", out[4]);
        assert!(run(&demo(), "[[case]]\nname = 1\n", Utc::now()).is_err());
        assert!(run(&demo(), "", Utc::now()).is_err());
        assert!(run(&demo(), "[[case]]\nname = \"x\"\nlead = {}\nexpect = { pol = \"a\" }\n", Utc::now()).is_err());
    }
}
