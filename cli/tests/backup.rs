//! `leadrouter backup` copies the database of a running `serve` under load, and the copy is a
//! database `serve` restores from with every lead that was stored before the copy began.

use leadrouter_tests::{ADMIN_TOKEN, Receiver, routing_doc, serve_binary};
use serde_json::Value;
use std::path::Path;
use std::process::{Child, Command};

fn serve(config: &Path, db: &Path) -> (Child, String) {
    let s = serve_binary(Path::new(env!("CARGO_BIN_EXE_leadrouter")), config, db);
    (s.child, s.base)
}

fn backup(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_leadrouter")).arg("backup").args(args).output().expect("backup runs")
}

async fn count(client: &reqwest::Client, base: &str) -> usize {
    let (mut n, mut cursor) = (0, None::<String>);
    loop {
        let url = match &cursor {
            Some(c) => format!("{base}/v1/leads?limit=500&cursor={c}"),
            None => format!("{base}/v1/leads?limit=500"),
        };
        let page: Value = client.get(url).bearer_auth(ADMIN_TOKEN).send().await.unwrap().json().await.unwrap();
        n += page["items"].as_array().unwrap().len();
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return n,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_of_a_live_database_restores() {
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("leadrouter.toml");
    std::fs::write(&config, routing_doc(&receiver, 64 * 1024)).unwrap();
    let db = dir.path().join("live.db");
    let (mut live, base) = serve(&config, &db);
    let client = reqwest::Client::new();
    for i in 0..200 {
        let r = client
            .post(format!("{base}/v1/leads"))
            .form(&[("email", format!("b{i}@backup-co.com"))])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
    }
    // Copy while more leads arrive.
    let writer = {
        let (client, base) = (client.clone(), base.clone());
        tokio::spawn(async move {
            for i in 200..600 {
                client
                    .post(format!("{base}/v1/leads"))
                    .form(&[("email", format!("b{i}@backup-co.com"))])
                    .send()
                    .await
                    .unwrap();
            }
        })
    };
    let copy = dir.path().join("copy.db");
    let out = backup(&["--db", db.to_str().unwrap(), copy.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("a consistent copy"));
    writer.await.unwrap();
    // An existing copy is not replaced unless asked.
    let again = backup(&["--db", db.to_str().unwrap(), copy.to_str().unwrap()]);
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("--force"));
    let live_count = count(&client, &base).await;
    assert_eq!(live_count, 600);
    live.kill().ok();
    live.wait().ok();

    // Restore: serve the copy.
    let (mut restored, base) = serve(&config, &copy);
    let n = count(&client, &base).await;
    assert!((200..=600).contains(&n), "the copy holds the leads stored before it began: {n}");
    restored.kill().ok();
    restored.wait().ok();

    // --force replaces; --config reads [store] sqlite.
    let forced = backup(&["--db", db.to_str().unwrap(), "--force", copy.to_str().unwrap()]);
    assert!(forced.status.success(), "{}", String::from_utf8_lossy(&forced.stderr));
    let missing =
        backup(&["--db", dir.path().join("nope.db").to_str().unwrap(), dir.path().join("x.db").to_str().unwrap()]);
    assert_eq!(missing.status.code(), Some(2));
}
