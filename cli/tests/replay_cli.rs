//! `leadrouter replay` and `leadrouter config test` as scripts and CI jobs call them: the live
//! document replayed over a running `serve`'s file moves no owner (`--format json`), a change
//! that moves more than `--fail-if-changed PCT` exits 2, and a failing routing case exits 1.

use leadrouter_tests::{ADMIN_TOKEN, Receiver, routing_doc, serve_binary};
use serde_json::Value;
use std::path::Path;
use std::process::Command;

fn leadrouter(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_leadrouter")).args(args).output().expect("leadrouter runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_gates_a_routing_change() {
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let live = routing_doc(&receiver, 64 * 1024);
    let config = dir.path().join("leadrouter.toml");
    std::fs::write(&config, &live).unwrap();
    let db = dir.path().join("live.db");
    let mut serve = serve_binary(Path::new(env!("CARGO_BIN_EXE_leadrouter")), &config, &db);
    let client = reqwest::Client::new();
    let mut ids = Vec::new();
    for i in 0..40 {
        let title = if i % 2 == 0 { "VP Sales" } else { "Analyst" };
        let r = client
            .post(format!("{}/v1/leads", serve.base))
            .form(&[
                ("email", format!("r{i}@co{}.example", i % 7)),
                ("job_title", title.into()),
                ("country", "US".into()),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
        ids.push(r.json::<Value>().await.unwrap()["lead_id"].as_str().unwrap().to_owned());
    }
    for id in &ids {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let l: Value = client
                .get(format!("{}/v1/leads/{id}", serve.base))
                .bearer_auth(ADMIN_TOKEN)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if l["owner"].is_string() {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "lead {id} not routed: {l}");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
    let db_arg = db.to_str().unwrap();
    // The live document, while `serve` runs: nobody moves.
    let out = leadrouter(&[
        "replay",
        "--config",
        config.to_str().unwrap(),
        "--db",
        db_arg,
        "--format",
        "json",
        "--fail-if-changed",
        "0",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).expect("--format json prints one JSON object");
    assert_eq!(report["leads"], 40, "{report}");
    assert_eq!(report["owner_changes"], 0, "{report}");
    assert_eq!(report["unassigned_total"], 0);
    assert_eq!(report["excluded"]["count"], 0);
    assert!(report["reps"]["ana"]["before"].as_u64().unwrap() > 0, "{report}");
    // Ben leaves every pool: his leads move, and the gate closes.
    let ben_hook = receiver.hook("ben");
    let without_ben = live
        .replace(r#", { id = "ben", weight = 1 }"#, "")
        .replace(r#"reps = [{ id = "ana" }, { id = "ben" }]"#, r#"reps = [{ id = "ana" }]"#);
    assert_ne!(without_ben, live, "{ben_hook}");
    let changed = dir.path().join("without-ben.toml");
    std::fs::write(&changed, without_ben).unwrap();
    let out = leadrouter(&["replay", "--config", changed.to_str().unwrap(), "--db", db_arg, "--fail-if-changed", "1"]);
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stdout));
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("of 40 leads would change owner"), "{table}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("more than --fail-if-changed 1%"));
    let out =
        leadrouter(&["replay", "--config", changed.to_str().unwrap(), "--db", db_arg, "--fail-if-changed", "100"]);
    assert!(out.status.success());
    serve.child.kill().ok();
    serve.child.wait().ok();
}

#[test]
fn config_test_exits_1_on_a_failing_case_and_names_it() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let demo = root.join("examples/leadrouter.toml");
    let shipped = root.join("examples/leadrouter.cases.toml");
    let out = leadrouter(&["config", "test", demo.to_str().unwrap(), "--cases", shipped.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    assert!(String::from_utf8_lossy(&out.stdout).contains("cases: all hold"));
    let dir = tempfile::tempdir().unwrap();
    let cases = dir.path().join("cases.toml");
    std::fs::write(
        &cases,
        "[[case]]\nname = \"a student goes to ben\"\nlead = { email = \"kid@school.example\", job_title = \"Student\" }\nexpect = { rep = \"ben\" }\n",
    )
    .unwrap();
    let out = leadrouter(&["config", "test", demo.to_str().unwrap(), "--cases", cases.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("FAIL  a student goes to ben"), "{text}");
    assert!(text.contains("expected rep ben, decided ana"), "{text}");
    assert!(text.contains("1 of 1 cases failed"), "{text}");
    std::fs::write(&cases, "[[case]]\nname = \"no expect\"\n").unwrap();
    let out = leadrouter(&["config", "test", demo.to_str().unwrap(), "--cases", cases.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "a cases file that is not one");
}
