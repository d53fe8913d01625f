//! `leadrouter config check` with a CRM configured: a rep who matches no CRM user (no
//! `crm_owner`, no CRM user with their email) is a problem at the rep's line, asked of a local
//! server playing HubSpot's owners API; without the token in the environment the CRM is not
//! asked, and the check says so.

use leadrouter_tests::crm::FakeHubSpot;
use std::process::Command;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rep_who_matches_no_crm_user_is_a_problem_config_check_reports() {
    let hs = FakeHubSpot::start("pat-check").await;
    hs.add_owner("41629779", "ana@example.com");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("leadrouter.toml");
    let doc = format!(
        "[server]\nadmin_token = \"x\"\nwebhook_secret = \"y\"\n\n[[reps]]\nid = \"ana\"\nemail = \"ana@example.com\"\n\n\
         [[reps]]\nid = \"ben\"\nemail = \"ben@example.com\"\n\n[[reps]]\nid = \"cy\"\ncrm_owner = {{ hubspot = \"7\" }}\n\n\
         [[pools]]\nid = \"everyone\"\nreps = [{{ id = \"ana\" }}, {{ id = \"ben\" }}, {{ id = \"cy\" }}]\n\n\
         [crm.hubspot]\ntoken = \"env:CHECK_HUBSPOT_TOKEN\"\napi_base_url = \"{}\"\n",
        hs.url
    );
    std::fs::write(&file, doc).unwrap();
    let run = move |token: Option<&str>| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_leadrouter"));
        c.args(["config", "check"]).arg(&file).env_remove("CHECK_HUBSPOT_TOKEN");
        if let Some(t) = token {
            c.env("CHECK_HUBSPOT_TOKEN", t);
        }
        c.output().unwrap()
    };
    let out = tokio::task::spawn_blocking(move || (run(Some("pat-check")), run(None))).await.unwrap();
    let (asked, unasked) = out;
    let stderr = String::from_utf8_lossy(&asked.stderr);
    assert!(!asked.status.success(), "{stderr}");
    assert!(stderr.contains("leadrouter.toml:10: rep 'ben' matches no HubSpot user"), "{stderr}");
    assert!(!stderr.contains("'ana'") && !stderr.contains("'cy'"), "ana is found by email, cy is named: {stderr}");
    assert!(hs.requests("/crm/v3/owners").iter().any(|r| r.query.contains("ben%40example.com")));

    assert!(unasked.status.success(), "{}", String::from_utf8_lossy(&unasked.stderr));
    assert!(String::from_utf8_lossy(&unasked.stdout).contains("the CRM was not asked"));
}

/// `leadrouter crm resync` reads only the CRM's secrets from the environment: without them it
/// says no CRM is usable (exit 1); with them it goes over the stored leads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crm_resync_needs_the_crms_secrets_and_reads_the_store() {
    let hs = FakeHubSpot::start("pat-resync").await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("leads.db");
    std::fs::write(&db, b"").unwrap();
    let file = dir.path().join("leadrouter.toml");
    let doc = format!(
        "[server]\nadmin_token = \"env:UNSET_ADMIN\"\nwebhook_secret = \"env:UNSET_WEBHOOK\"\n[[reps]]\nid = \"ana\"\n\
         [[pools]]\nid = \"p\"\nreps = [{{ id = \"ana\" }}]\n[crm.hubspot]\ntoken = \"env:RESYNC_HUBSPOT_TOKEN\"\n\
         api_base_url = \"{}\"\n",
        hs.url
    );
    std::fs::write(&file, doc).unwrap();
    let run = move |token: Option<&str>| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_leadrouter"));
        c.args(["crm", "resync", "--config"]).arg(&file).arg("--db").arg(&db).env_remove("RESYNC_HUBSPOT_TOKEN");
        if let Some(t) = token {
            c.env("RESYNC_HUBSPOT_TOKEN", t);
        }
        c.output().unwrap()
    };
    let (without, with) = tokio::task::spawn_blocking(move || (run(None), run(Some("pat-resync")))).await.unwrap();
    assert_eq!(without.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&without.stderr).contains("no CRM is usable"), "{without:?}");
    assert!(with.status.success(), "{with:?}");
    assert!(
        String::from_utf8_lossy(&with.stdout).contains("0 leads read, 0 failed CRM upserts sent again"),
        "{with:?}"
    );
}
