//! `leadrouter replay`: a new routing document run over stored leads, reported and not applied.

use chrono::{TimeZone, Utc};
use leadrouter::adapters::sqlite::SqliteStore;
use leadrouter::config::Settings;
use leadrouter::domain::{AssignedBy, Contact, Lead, LeadId, LeadStatus};
use leadrouter::ports::LeadStore;
use std::process::Command;

const OLD: &str = r#"
[server]
admin_token = "x"
webhook_secret = "y"
[[scoring.rules]]
name = "senior"
field = "job_title"
matches = '(?i)\bvp\b'
points = 50
[[reps]]
id = "ana"
[[reps]]
id = "ben"
[[pools]]
id = "all"
reps = [{ id = "ana" }, { id = "ben" }]
"#;

const NEW: &str = r#"
[server]
admin_token = "x"
webhook_secret = "y"
[[scoring.rules]]
name = "senior"
field = "job_title"
matches = '(?i)\bvp\b'
points = 50
[[scoring.rules]]
name = "target market"
field = "country"
in = ["US"]
points = 30
[[reps]]
id = "ana"
[[reps]]
id = "ben"
[[reps]]
id = "cy"
[[pools]]
id = "top"
match = { grade = ["A"] }
reps = [{ id = "cy" }]
[[pools]]
id = "us"
match = { country = ["US"] }
reps = [{ id = "ana" }, { id = "ben" }]
"#;

fn routed(title: &str, country: &str, day: u32, owner: &str, old: &Settings) -> Lead {
    let at = Utc.with_ymd_and_hms(2026, 11, day, 12, 0, 0).unwrap();
    let contact = Contact { job_title: Some(title.into()), country: Some(country.into()), ..Contact::default() };
    let mut l = Lead::new(LeadId::new(), "web".into(), contact, at);
    l.grade = Some(old.scoring.score(&l).grade);
    l.transition(LeadStatus::Scored, "scored", at);
    l.assign_to("all", owner.into(), "turn".into(), at);
    l.assigned_by(AssignedBy::Turn { turn: 0 }, at);
    l
}

fn replay(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_leadrouter")).arg("replay").args(args).output().expect("run replay");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[tokio::test]
async fn replay_reports_what_would_change_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("leads.db");
    let old = Settings::parse(OLD).unwrap();
    let store = SqliteStore::open(&db).unwrap();
    let leads = vec![
        routed("VP Sales", "US", 2, "ana", &old),  // B → A: top, cy
        routed("Analyst", "US", 3, "ben", &old),   // D → C: us, ana
        routed("Analyst", "FR", 20, "ana", &old),  // D: no pool
        routed("VP Sales", "FR", 21, "ben", &old), // B: no pool
    ];
    for l in &leads {
        store.insert(l.clone()).await.unwrap();
    }
    let new = dir.path().join("new.toml");
    std::fs::write(&new, NEW).unwrap();
    let (code, out, err) = replay(&["--config", new.to_str().unwrap(), "--db", db.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("4 routed leads in"), "{out}");
    for line in ["all", "top", "us", "(unassigned)"] {
        assert!(out.lines().any(|l| l.starts_with(line)), "no {line} row in\n{out}");
    }
    let row = |name: &str| -> Vec<String> {
        out.lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap()
            .split_whitespace()
            .map(String::from)
            .collect()
    };
    assert_eq!(row("all")[1..], ["4", "0", "-4"]);
    assert_eq!(row("top")[1..], ["0", "1", "+1"]);
    assert_eq!(row("(unassigned)")[1..], ["0", "2", "+2"]);
    assert!(out.contains("B -> A: 1") && out.contains("D -> C: 1"), "{out}");
    assert!(out.contains("2 leads would go unassigned:"), "{out}");
    assert!(
        out.contains(&format!(
            "{}: unassigned: nobody could take it: no pool matches (grade D, country FR",
            leads[2].id
        )),
        "{out}"
    );

    // --since leaves out the older leads.
    let (code, out, _) =
        replay(&["--config", new.to_str().unwrap(), "--db", db.to_str().unwrap(), "--since", "2026-11-15"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("2 routed leads"), "{out}");

    // Nothing was written.
    for l in &leads {
        assert_eq!(store.get(&l.id).await.unwrap().as_ref(), Some(l));
    }

    let (code, _, err) = replay(&["--config", new.to_str().unwrap(), "--db", db.to_str().unwrap(), "--since", "soon"]);
    assert_eq!(code, 1, "an error exits 1 (2 is --fail-if-changed's)");
    assert!(err.contains("--since 'soon'"), "{err}");
    let (code, _, err) =
        replay(&["--config", new.to_str().unwrap(), "--db", dir.path().join("none.db").to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("does not exist"), "{err}");
}
