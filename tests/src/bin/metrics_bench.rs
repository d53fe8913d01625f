//! How long `GET /v1/metrics` takes over a store of N leads (BENCHMARKS.md):
//!
//! `cargo run --release -p leadrouter-tests --bin metrics_bench -- --leads 1000000`
//!
//! Fills a SQLite file with N leads in their final states (sources, grades, owners, accepted,
//! won, lost, duplicates, rejected, spread over 30 days), then computes the metrics over all of
//! them several times and prints the times. The file is kept (`--db`) and reused when it
//! already holds N leads.
//!
//! `--console N`: then starts the embedded runtime on that file and times each console page N
//! times, logged in, through the same Router `serve` runs (no socket): the first load and the
//! median and worst of the rest.

use chrono::{Duration, TimeZone, Utc};
use clap::Parser;
use leadrouter::adapters::sqlite::SqliteStore;
use leadrouter::config::{DEMO_DOCUMENT, Settings};
use leadrouter::domain::{Contact, Email, Lead, LeadId, LeadStatus, NotificationKind, Roster};
use leadrouter::ports::LeadStore;
use std::path::PathBuf;
use std::time::Instant;

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 1_000_000)]
    leads: usize,
    #[arg(long, default_value = "target/metrics-bench.db")]
    db: PathBuf,
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Loads of each console page to time (0: none).
    #[arg(long, default_value_t = 0)]
    console: usize,
}

fn lead(i: usize) -> Lead {
    let start = Utc.with_ymd_and_hms(2026, 10, 1, 0, 0, 0).unwrap();
    let at = start + Duration::seconds((i as i64 * 2_592_000) / 1_000_000 % 2_592_000);
    let email = Email::parse(&format!("p{i}@company{}.com", i % 5000)).expect("email");
    let contact = Contact { email: Some(email), country: Some("US".into()), ..Contact::default() };
    let source = ["web", "meta", "google", "typeform"][i % 4];
    let mut l = Lead::new(LeadId::new(), source.into(), contact, at);
    match i % 20 {
        0 => {
            l.transition(LeadStatus::Duplicate, "dup", at);
            return l;
        }
        1 => {
            l.transition(LeadStatus::Rejected, "spam", at);
            return l;
        }
        _ => {}
    }
    l.grade = Some(["A", "B", "B", "C", "D"][i % 5].into());
    l.score = Some(40);
    l.transition(LeadStatus::Scored, "scored", at);
    let reps = ["ana", "ben", "cy", "dee", "eve", "fay", "gus", "hal"];
    l.give_to(
        if i.is_multiple_of(3) { "enterprise-na" } else { "everyone" },
        reps[i % reps.len()].into(),
        "bench".into(),
        NotificationKind::Assigned,
        at + Duration::seconds((i % 90) as i64),
    );
    l.notify_pending = None;
    let accepted = at + Duration::seconds(60 + (i % 3600) as i64);
    match i % 10 {
        0..=3 => {}
        4..=6 => {
            l.accepted_at = Some(accepted);
            l.transition(LeadStatus::Accepted, "accepted", accepted);
        }
        7 => {
            l.accepted_at = Some(accepted);
            l.transition(LeadStatus::Won, "won", accepted);
        }
        _ => {
            l.accepted_at = Some(accepted);
            l.transition(LeadStatus::Lost, "lost", accepted);
        }
    }
    l
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let store = SqliteStore::open(&args.db)?;
    let all = (Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(), Utc.with_ymd_and_hms(2027, 1, 1, 0, 0, 0).unwrap());
    let settings = Settings::parse(DEMO_DOCUMENT).map_err(|p| anyhow::anyhow!("{p}"))?;
    let roster = Roster::build(&settings.reps, &settings.pools, &[]);
    let have = leadrouter::http::roster::compute(&store, &settings, &roster, all.0, all.1).await?.total.leads as usize;
    if have != args.leads {
        anyhow::ensure!(have == 0, "{} holds {have} leads, not {}: remove it first", args.db.display(), args.leads);
        let t = Instant::now();
        let mut batch = Vec::new();
        for i in 0..args.leads {
            batch.push(store.insert(lead(i)));
            if batch.len() == 2000 {
                for r in futures::future::join_all(batch.drain(..)).await {
                    r?;
                }
            }
        }
        for r in futures::future::join_all(batch).await {
            r?;
        }
        println!("filled {} with {} leads in {:.1} s", args.db.display(), args.leads, t.elapsed().as_secs_f64());
    }
    let mut times = Vec::new();
    let mut last = None;
    for _ in 0..args.runs {
        let t = Instant::now();
        let m = leadrouter::http::roster::compute(&store, &settings, &roster, all.0, all.1).await?;
        times.push(t.elapsed());
        last = Some(m);
    }
    times.sort();
    let m = last.expect("at least one run");
    println!(
        "metrics over {} leads ({} sources, {} reps): best {:.0} ms, median {:.0} ms, worst {:.0} ms of {} runs",
        m.total.leads,
        m.sources.len(),
        m.reps.len(),
        times[0].as_secs_f64() * 1e3,
        times[times.len() / 2].as_secs_f64() * 1e3,
        times[times.len() - 1].as_secs_f64() * 1e3,
        times.len()
    );
    println!(
        "check: won {} of {} new leads, conversion {}, time to accept p50 {:?} s p90 {:?} s",
        m.total.won,
        m.total.leads - m.total.duplicates - m.total.rejected,
        m.total.conversion_rate,
        m.total.time_to_accept_seconds.p50,
        m.total.time_to_accept_seconds.p90
    );
    if args.console > 0 {
        drop(store);
        console_pages(&args.db, args.console).await?;
    }
    Ok(())
}

/// Times each console page over the filled file, logged in, `n` loads each.
async fn console_pages(db: &std::path::Path, n: usize) -> anyhow::Result<()> {
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;
    const TOKEN: &str = "console-bench-token";
    let settings = Settings::parse(DEMO_DOCUMENT).map_err(|p| anyhow::anyhow!("{p}"))?;
    let env = |name: &str| if name == "LEADROUTER_ADMIN_TOKEN" { Some(TOKEN.to_owned()) } else { None };
    let make = || "bench-secret".to_owned();
    let secrets =
        leadrouter::pipeline::Secrets::resolve(&settings, &env, Some(&make)).map_err(|e| anyhow::anyhow!(e))?;
    let options = leadrouter::runtime::Options { sweep_every: None, ..Default::default() };
    let rt = leadrouter::runtime::Embedded::start_with(settings, secrets.secrets, db, options).await?;
    let router = leadrouter::http::router(rt.pipeline.clone());
    // `serve` computes the console's 30-day metrics at start-up: give it the time it takes.
    tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    let login = Request::post("/login")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from(format!("name=Bench&token={TOKEN}")))?;
    let answer = router.clone().oneshot(login).await?;
    let cookie = answer
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .ok_or_else(|| anyhow::anyhow!("no session cookie"))?
        .to_owned();
    let page = leadrouter::ports::LeadQuery { limit: 1, ..Default::default() };
    let some_lead = rt.pipeline.store.list(page).await?.items.first().map(|l| l.id.to_string()).unwrap_or_default();
    println!("\nconsole pages over the file ({n} loads each, through the Router, logged in):\n");
    println!("| page | first load | median | worst of the rest | bytes |");
    println!("|---|---|---|---|---|");
    for path in [
        "/console/live".to_owned(),
        "/console/live?q=company42".to_owned(),
        "/console/live?q=nobody-by-this-name".to_owned(),
        "/console/rows".to_owned(),
        format!("/console/leads/{some_lead}"),
        "/console/reps".to_owned(),
        "/console/reps?days=120".to_owned(),
        "/console/sla".to_owned(),
        "/console/funnel".to_owned(),
        "/console/funnel?days=120".to_owned(),
        "/console/routing".to_owned(),
    ] {
        let mut times = Vec::new();
        let mut bytes = 0;
        for _ in 0..n {
            let req = Request::get(path.as_str()).header("cookie", cookie.as_str()).body(Body::empty())?;
            let t = Instant::now();
            let r = router.clone().oneshot(req).await?;
            anyhow::ensure!(r.status().is_success(), "{path}: {}", r.status());
            bytes = axum::body::to_bytes(r.into_body(), 1 << 26).await?.len();
            times.push(t.elapsed());
        }
        let first = times[0];
        let mut rest = times[1..].to_vec();
        rest.sort();
        let ms = |d: std::time::Duration| format!("{:.1} ms", d.as_secs_f64() * 1e3);
        let (median, worst) = match rest.len() {
            0 => ("-".to_owned(), "-".to_owned()),
            k => (ms(rest[k / 2]), ms(rest[k - 1])),
        };
        println!("| `{path}` | {} | {median} | {worst} | {bytes} |", ms(first));
    }
    Ok(())
}
