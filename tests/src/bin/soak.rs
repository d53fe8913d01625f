//! `make soak`: the real `leadrouter serve` binary offered a fixed rate of web-form leads for
//! minutes on end, with retention short enough to act during the run, sampling every 10 s the
//! database file, its WAL, the server's RSS and the latency from 202 to the rep's notification.
//!
//! `cargo build --release && cargo run --release -p leadrouter-tests --bin soak -- --rate 1000 --seconds 600`

use clap::Parser;
use leadrouter_tests::{Receiver, routing_doc};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Parser)]
struct Args {
    /// Leads offered per second.
    #[arg(long, default_value_t = 1000)]
    rate: u64,
    /// How long to offer them.
    #[arg(long, default_value_t = 600)]
    seconds: u64,
    /// Personal data is erased after this long without activity (minutes).
    #[arg(long, default_value_t = 3.0)]
    erase_after_minutes: f64,
    /// The binary to run (default: target/release/leadrouter beside this one).
    #[arg(long)]
    leadrouter: Option<PathBuf>,
}

fn size(p: &Path) -> u64 {
    std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

/// A field of `/proc/PID/status` in KiB: `VmRSS` (all resident memory), `RssAnon` (the heap:
/// what a leak would grow), `RssFile` and `RssShmem` (the database's mapped pages and WAL
/// index, which the kernel may take back).
fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.strip_prefix(field).is_some_and(|r| r.starts_with(':')))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn rss_kib(pid: u32) -> u64 {
    status_kib(pid, "VmRSS")
}

/// Leads whose personal data retention has erased so far (read-only, through the index).
fn erased(db: &Path) -> u64 {
    let Ok(c) = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY) else { return 0 };
    c.query_row("SELECT count(*) FROM leads WHERE erased = 1", [], |r| r.get::<_, i64>(0))
        .map(|n| n as u64)
        .unwrap_or(0)
}

fn p99(v: &mut [Duration]) -> Duration {
    v.sort();
    v.get(((v.len() as f64 * 0.99).ceil() as usize).saturating_sub(1)).copied().unwrap_or_default()
}

fn mib(b: u64) -> String {
    format!("{:.1} MiB", b as f64 / (1 << 20) as f64)
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let receiver = Receiver::start().await;
    // Only first arrivals are kept: a log of every request would grow this process by
    // gigabytes beside the server it measures.
    receiver.stop_logging();
    let dir = tempfile::tempdir().expect("temp dir");
    let days = args.erase_after_minutes / (24.0 * 60.0);
    let doc = routing_doc(&receiver, 65536)
        .replace("[dedup]\n", &format!("[retention]\npersonal_data_days = {days}\n\n[dedup]\n"));
    let config = dir.path().join("soak.toml");
    std::fs::write(&config, doc).unwrap();
    let db = dir.path().join("soak.db");
    let wal = dir.path().join("soak.db-wal");
    let bin = args
        .leadrouter
        .clone()
        .unwrap_or_else(|| std::env::current_exe().unwrap().parent().unwrap().join("leadrouter"));
    let served = leadrouter_tests::serve_binary(&bin, &config, &db);
    let (mut child, base) = (served.child, served.base);
    let pid = child.id();
    println!(
        "soak: {} leads/s for {} s into {}, personal data erased after {} min idle\n",
        args.rate,
        args.seconds,
        bin.display(),
        args.erase_after_minutes
    );
    println!(
        "| t (s) | leads accepted | erased | db file | WAL | RSS | bytes per lead | p99 202 → notification (last 10 s) |"
    );
    println!("|---|---|---|---|---|---|---|---|");

    let client = reqwest::Client::builder().pool_max_idle_per_host(256).build().unwrap();
    // Leads accepted since the last sample, when their 202 came.
    let accepted: Arc<Mutex<Vec<(String, Instant)>>> = Arc::default();
    let url = format!("{base}/v1/leads");
    let sender = {
        let (client, accepted, rate, secs) = (client.clone(), accepted.clone(), args.rate, args.seconds);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            for i in 0..rate * secs {
                tick.tick().await;
                let (client, url, accepted) = (client.clone(), url.clone(), accepted.clone());
                tokio::spawn(async move {
                    let email = format!("soak{i}@soak{i}-co.com");
                    let form = [
                        ("email", email.as_str()),
                        ("name", "Soak Lead"),
                        ("company", "Soak Co"),
                        ("job_title", "VP Sales"),
                        ("country", "US"),
                        ("company_size", "500"),
                    ];
                    if let Ok(r) = client.post(&url).form(&form).send().await
                        && r.status() == 202
                    {
                        accepted.lock().unwrap().push((email, Instant::now()));
                    }
                });
            }
        })
    };
    let start = Instant::now();
    let mut seen: usize = 0;
    let mut rows = Vec::new();
    let mut max_wal = 0;
    // Accepted and not yet told to their rep. Every sample is incremental (a sample that went
    // through everything so far would stall this process, and so the arrivals it times, longer
    // as the run goes on).
    let mut waiting: Vec<(String, Instant)> = Vec::new();
    loop {
        tokio::time::sleep(Duration::from_secs(10)).await;
        let fresh = std::mem::take(&mut *accepted.lock().unwrap());
        seen += fresh.len();
        waiting.extend(fresh);
        let emails: Vec<String> = waiting.iter().map(|(e, _)| e.clone()).collect();
        let arrived = receiver.rep_arrival_of(&emails);
        let mut window: Vec<Duration> = Vec::new();
        let mut still = Vec::new();
        for ((email, t), a) in waiting.drain(..).zip(arrived) {
            match a {
                Some(a) => window.push(a.saturating_duration_since(t)),
                None => still.push((email, t)),
            }
        }
        waiting = still;
        let erased = {
            let db = db.clone();
            tokio::task::spawn_blocking(move || erased(&db)).await.unwrap_or(0)
        };
        let (d, w, r) = (size(&db), size(&wal), rss_kib(pid));
        max_wal = max_wal.max(w);
        let per_lead = if seen > 0 { d / seen as u64 } else { 0 };
        let t = start.elapsed().as_secs();
        let p = p99(&mut window);
        println!(
            "| {t} | {seen} | {erased} | {} | {} | {} MiB ({} anon, {} shared) | {per_lead} | {:.1} ms |",
            mib(d),
            mib(w),
            r / 1024,
            status_kib(pid, "RssAnon") / 1024,
            status_kib(pid, "RssShmem") / 1024,
            p.as_secs_f64() * 1000.0
        );
        rows.push((t, seen, d, r, p));
        if sender.is_finished() && t >= args.seconds + 10 {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    // Growth over the last minute of offering, per lead added, once retention had acted.
    let last: Vec<_> = rows.iter().filter(|r| r.0 <= args.seconds).collect();
    if last.len() >= 7 {
        let (a, b) = (last[last.len() - 7], last[last.len() - 1]);
        let grown = b.2.saturating_sub(a.2) as f64 / (b.1 - a.1).max(1) as f64;
        println!("\nfile growth over the last minute: {grown:.0} bytes per lead added; WAL at most {}", mib(max_wal));
        let first_minute: Vec<_> = rows.iter().take(6).map(|r| r.4).collect();
        println!(
            "p99 first minute {:?}, last minute {:?}",
            first_minute.iter().max(),
            last.iter().rev().take(6).map(|r| r.4).max()
        );
        println!(
            "RSS after 1 min {} MiB, at the end {} MiB",
            rows.get(5).map(|r| r.3 / 1024).unwrap_or(0),
            last.last().map(|r| r.3 / 1024).unwrap_or(0)
        );
    }
}
