//! Load benchmark: leadrouter (embedded runtime, SQLite file) on 127.0.0.1, a real webhook
//! receiver, and a load generator, all on this machine. Prints a Markdown table for
//! BENCHMARKS.md.
//!
//! `cargo run --release -p leadrouter-tests --bin load -- --rate 500 --seconds 10`

use clap::Parser;
use futures::StreamExt;
use leadrouter::notification::hmac_hex;
use leadrouter_tests::{GOOGLE_KEY, META_APP_SECRET, Receiver, TestApp, TestClock, routing_doc_with_graph};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[derive(Parser)]
struct Args {
    /// Offered rate for the latency run, leads per second.
    #[arg(long, default_value_t = 500)]
    rate: u64,
    /// Length of each run, seconds.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Concurrent connections for the throughput runs.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Route without availability and SLA checks (no working hours, capacity or SLA, no sweep).
    #[arg(long)]
    plain_routing: bool,
    /// Instead of the runs above: this many leads with one rep's webhook dead (answering 503),
    /// then a minute of the target staying dead, counting the requests it gets.
    #[arg(long)]
    dead_target: Option<u64>,
    /// Clients connected to `GET /v1/events` through every run, each reading every event (as
    /// the console's Live page does).
    #[arg(long, default_value_t = 0)]
    event_clients: usize,
}

/// `n` clients reading `/v1/events` until the process ends; the bytes they read, together.
fn event_clients(app: &TestApp, n: usize) -> Arc<AtomicU64> {
    let read = Arc::new(AtomicU64::new(0));
    for _ in 0..n {
        let (url, read) = (app.url("/v1/events"), read.clone());
        tokio::spawn(async move {
            let client = reqwest::Client::new();
            let Ok(mut r) = client.get(url).bearer_auth(leadrouter_tests::ADMIN_TOKEN).send().await else { return };
            while let Ok(Some(chunk)) = r.chunk().await {
                read.fetch_add(chunk.len() as u64, Ordering::Relaxed);
            }
        });
    }
    read
}

/// The test document with every routing check on, as a sales team runs it: each rep has a
/// timezone, working hours (all week, so that the figures do not depend on the hour the
/// benchmark runs), a cap on open leads, both pools an SLA, and the sweep runs every 30 s.
fn full_routing(r: &Receiver, graph: &str) -> String {
    let doc = routing_doc_with_graph(r, 64 * 1024, graph);
    let hours = "timezone = \"America/New_York\"\nworking_hours = \"Mon-Sun 00:00-24:00\"\nmax_open_leads = 1000000\n";
    let doc = doc
        .replace("name = \"Ana Ortiz\"\n", &format!("name = \"Ana Ortiz\"\n{hours}"))
        .replace("name = \"Ben Okafor\"\n", &format!("name = \"Ben Okafor\"\n{hours}"))
        .replace("[[pools]]\n", "[[pools]]\nsla_minutes = 15\n");
    assert_eq!(doc.matches("sla_minutes").count(), 2, "the benchmark's routing document changed shape");
    assert_eq!(doc.matches("max_open_leads").count(), 2, "the benchmark's routing document changed shape");
    doc
}

fn form(i: u64, run: &str) -> Vec<(&'static str, String)> {
    vec![
        ("email", format!("load{i}@{run}-company{i}.com")),
        ("name", format!("Lead {i}")),
        ("job_title", if i.is_multiple_of(3) { "VP Sales".into() } else { "Analyst".into() }),
        ("company_size", if i.is_multiple_of(2) { "500".into() } else { "20".into() }),
        ("country", if i.is_multiple_of(4) { "DE".into() } else { "US".into() }),
    ]
}

/// Closed loop: `concurrency` clients sending back to back for `secs`. Returns requests/s.
async fn closed_loop(
    client: &reqwest::Client,
    concurrency: usize,
    secs: u64,
    make: impl Fn(u64) -> reqwest::RequestBuilder + Sync,
) -> (f64, u64) {
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let counter = AtomicU64::new(0);
    let start = Instant::now();
    let deadline = start + Duration::from_secs(secs);
    let _ = client;
    futures::stream::iter(0..concurrency)
        .for_each_concurrent(concurrency, |_| {
            let (stop, ok, counter, make) = (stop.clone(), ok.clone(), &counter, &make);
            async move {
                while !stop.load(Ordering::Relaxed) {
                    let i = counter.fetch_add(1, Ordering::Relaxed);
                    if let Ok(r) = make(i).send().await
                        && r.status().is_success()
                    {
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    if Instant::now() >= deadline {
                        stop.store(true, Ordering::Relaxed);
                    }
                }
            }
        })
        .await;
    let n = ok.load(Ordering::Relaxed);
    (n as f64 / start.elapsed().as_secs_f64(), n)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

/// Waits until the receiver has a rep notification for `n` leads whose emails carry `run`.
async fn wait_notified(receiver: &Receiver, run: &str, n: usize, limit: Duration) -> HashMap<String, Instant> {
    let deadline = Instant::now() + limit;
    let mut seen = 0;
    loop {
        let count = receiver.rep_arrival_count();
        if count - seen.min(count) == 0 || Instant::now() >= deadline || count >= n {
            let arrivals: HashMap<String, Instant> =
                receiver.rep_arrivals().into_iter().filter(|(email, _)| email.contains(run)).collect();
            if arrivals.len() >= n || Instant::now() >= deadline {
                return arrivals;
            }
        }
        seen = count;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() {
    let args = Args::parse();
    if let Some(n) = args.dead_target {
        return dead_target(n, args.concurrency).await;
    }
    // Quiet unless RUST_LOG asks (`RUST_LOG=leadrouter=warn` shows retries).
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .try_init();
    let app = if args.plain_routing {
        TestApp::spawn().await
    } else {
        TestApp::spawn_sweeping(full_routing, Arc::new(TestClock::default()), Some(Duration::from_secs(30))).await
    };
    let client = reqwest::Client::builder().pool_max_idle_per_host(args.concurrency * 2).build().unwrap();
    let events_read = event_clients(&app, args.event_clients);
    println!(
        "leadrouter load benchmark: embedded runtime, SQLite (WAL, synchronous=FULL), webhook receiver on loopback"
    );
    if args.event_clients > 0 {
        println!("{} clients reading GET /v1/events throughout", args.event_clients);
    }
    println!(
        "{} cores; runs of {} s; {} connections for the throughput runs; routing: {}\n",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        args.seconds,
        args.concurrency,
        if args.plain_routing {
            "plain"
        } else {
            "working hours, max_open_leads, sla_minutes = 15, owner stickiness, sweep every 30 s"
        }
    );

    // 1. /healthz and POST /v1/leads, back to back in the same process and run.
    let health_url = app.url("/healthz");
    let (health_rps, _) = closed_loop(&client, args.concurrency, args.seconds, |_| client.get(&health_url)).await;
    let leads_url = app.url("/v1/leads");
    let started = Instant::now();
    let (ingest_rps, sent) =
        closed_loop(&client, args.concurrency, args.seconds, |i| client.post(&leads_url).form(&form(i, "sat"))).await;
    let arrivals = wait_notified(&app.receiver, "sat", sent as usize, Duration::from_secs(120)).await;
    let last = arrivals.values().max().copied().unwrap_or(started);
    let e2e_rate = arrivals.len() as f64 / (last - started).as_secs_f64();

    // 2. Webhook ingest, same run: Meta notifications of 100 changes each, and Google leads.
    let meta_url = app.url("/v1/webhooks/meta");
    let (meta_rps, _) = closed_loop(&client, args.concurrency, args.seconds, |i| {
        let changes: Vec<serde_json::Value> = (0..100)
            .map(|j| serde_json::json!({"field": "leadgen", "value": {"leadgen_id": format!("{}", i * 100 + j), "form_id": "1"}}))
            .collect();
        let body = serde_json::json!({"object": "page", "entry": [{"id": "1", "time": 1, "changes": changes}]}).to_string();
        let sig = format!("sha256={}", hmac_hex(META_APP_SECRET.as_bytes(), body.as_bytes()));
        client.post(&meta_url).header("x-hub-signature-256", sig).header("content-type", "application/json").body(body)
    })
    .await;
    let meta_started = Instant::now() - Duration::from_secs(args.seconds);
    app.runtime.drain(Duration::from_secs(600)).await;
    let meta_routed = meta_rps * 100.0 * args.seconds as f64 / meta_started.elapsed().as_secs_f64();
    let meta_lag = fetch_to_routed(&app).await;
    let google_url = app.url("/v1/webhooks/google");
    let (google_rps, _) = closed_loop(&client, args.concurrency, args.seconds, |i| {
        let body = serde_json::json!({
            "lead_id": format!("load-{i}"), "google_key": GOOGLE_KEY, "api_version": "1.0", "form_id": 1, "campaign_id": 2,
            "user_column_data": [
                {"column_id": "EMAIL", "string_value": format!("g{i}@google-buyer{i}.com")},
                {"column_id": "FULL_NAME", "string_value": "Google Lead"}
            ]
        })
        .to_string();
        client.post(&google_url).header("content-type", "application/json").body(body)
    })
    .await;
    app.runtime.drain(Duration::from_secs(300)).await;

    // 3. A fixed offered rate, open loop: latency from the 202 to the rep's notification.
    let total = args.rate * args.seconds;
    let accepted_at: Arc<std::sync::Mutex<HashMap<String, Instant>>> = Arc::default();
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / args.rate as f64));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut tasks = Vec::with_capacity(total as usize);
    let open_start = Instant::now();
    for i in 0..total {
        tick.tick().await;
        let (client, url, accepted_at) = (client.clone(), leads_url.clone(), accepted_at.clone());
        tasks.push(tokio::spawn(async move {
            let f = form(i, "rate");
            let email = f[0].1.clone();
            if let Ok(r) = client.post(&url).form(&f).send().await
                && r.status() == 202
            {
                accepted_at.lock().unwrap().insert(email, Instant::now());
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let offered_secs = open_start.elapsed().as_secs_f64();
    let accepted_at = accepted_at.lock().unwrap().clone();
    let arrivals = wait_notified(&app.receiver, "rate", accepted_at.len(), Duration::from_secs(120)).await;
    let mut lat: Vec<Duration> = accepted_at
        .iter()
        .filter_map(|(email, t202)| {
            arrivals.get(&email.to_lowercase()).or(arrivals.get(email)).map(|a| a.saturating_duration_since(*t202))
        })
        .collect();
    lat.sort();
    let lost = accepted_at.len() - lat.len();

    println!("| measure | value |");
    println!("|---|---|");
    println!("| `GET /healthz` requests/s ({} conns) | {:.0} |", args.concurrency, health_rps);
    println!(
        "| `POST /v1/leads` requests/s ({} conns) | {:.0} ({:.0}% of /healthz) |",
        args.concurrency,
        ingest_rps,
        100.0 * ingest_rps / health_rps
    );
    println!(
        "| `POST /v1/webhooks/meta` requests/s, 100 changes each ({} conns) | {:.0} ({:.0} changes/s) |",
        args.concurrency,
        meta_rps,
        meta_rps * 100.0
    );
    println!("| Meta leads fetched and routed per second (the run and its drain) | {meta_routed:.0} |");
    println!(
        "| Meta lead: fields fetched → assigned, p50 / p99 / max | {} / {} / {} |",
        ms(percentile(&meta_lag, 0.50)),
        ms(percentile(&meta_lag, 0.99)),
        ms(meta_lag.last().copied().unwrap_or_default())
    );
    println!("| `POST /v1/webhooks/google` requests/s ({} conns) | {:.0} |", args.concurrency, google_rps);
    println!(
        "| leads routed end to end per second (202 → rep's webhook), saturated | {:.0} ({} leads) |",
        e2e_rate,
        arrivals_len(&app.receiver, "sat")
    );
    println!("| offered rate | {} leads/s for {:.1} s ({} accepted) |", args.rate, offered_secs, accepted_at.len());
    println!("| latency 202 → notification p50 | {} |", ms(percentile(&lat, 0.50)));
    println!("| latency 202 → notification p90 | {} |", ms(percentile(&lat, 0.90)));
    println!("| latency 202 → notification p99 | {} |", ms(percentile(&lat, 0.99)));
    println!("| latency max | {} |", ms(lat.last().copied().unwrap_or_default()));
    println!("| accepted but not notified within 120 s | {lost} |");
    if args.event_clients > 0 {
        println!(
            "| bytes of events read by the {} event clients | {} |",
            args.event_clients,
            events_read.load(Ordering::Relaxed)
        );
    }
}

/// `--dead-target N`: N leads, half of them to a rep whose webhook answers 503 to everything.
async fn dead_target(n: u64, concurrency: usize) {
    use std::sync::atomic::AtomicUsize;
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let dead = axum::Router::new().fallback(move || {
        counter.fetch_add(1, Ordering::SeqCst);
        async { axum::http::StatusCode::SERVICE_UNAVAILABLE }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead_url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, dead).await.ok() });
    let app = TestApp::spawn_sweeping(
        move |r, g| routing_doc_with_graph(r, 64 * 1024, g).replace(&r.hook("ana"), &dead_url),
        Arc::new(TestClock::default()),
        Some(Duration::from_secs(30)),
    )
    .await;
    let client = reqwest::Client::builder().pool_max_idle_per_host(concurrency * 2).build().unwrap();
    let url = app.url("/v1/leads");
    let started = Instant::now();
    futures::stream::iter(0..n)
        .for_each_concurrent(concurrency, |i| {
            let (client, url) = (client.clone(), url.clone());
            async move {
                let _ = client.post(&url).form(&[("email", format!("dead{i}@dead{i}-co.com"))]).send().await;
            }
        })
        .await;
    app.runtime.drain(Duration::from_secs(600)).await;
    let routed_in = started.elapsed();
    let during = hits.load(Ordering::SeqCst);
    let parked = app.runtime.pipeline.circuits.down().len();
    let before = hits.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(60)).await;
    let minute = hits.load(Ordering::SeqCst) - before;
    println!("| measure | value |");
    println!("|---|---|");
    println!(
        "| leads posted and routed (half to the rep whose webhook is dead) | {n} in {:.1} s |",
        routed_in.as_secs_f64()
    );
    println!("| requests to the dead target while they were routed | {during} |");
    println!("| targets down | {parked} |");
    println!("| requests to the dead target in the next 60 s | {minute} |");
}

/// For every Meta lead, from its history: the time from its Graph fetch succeeding to its
/// assignment, sorted.
async fn fetch_to_routed(app: &TestApp) -> Vec<Duration> {
    use leadrouter::ports::LeadStore;
    let store = &app.runtime.pipeline.store;
    let mut out = Vec::new();
    let mut after = None;
    loop {
        let page = store.since(chrono::DateTime::<chrono::Utc>::MIN_UTC, after, 1000).await.expect("read leads");
        for l in page.items.iter().filter(|l| l.source == "meta") {
            let at = |pred: &dyn Fn(&leadrouter::domain::HistoryEntry) -> bool| {
                l.history.iter().find(|h| pred(h)).map(|h| h.at)
            };
            if let (Some(fetched), Some(assigned)) = (
                at(&|h| h.reason.starts_with("fields fetched")),
                at(&|h| h.to == leadrouter::domain::LeadStatus::Assigned),
            ) {
                out.push((assigned - fetched).to_std().unwrap_or_default());
            }
        }
        match page.next_cursor {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    out.sort();
    out
}

fn arrivals_len(receiver: &Receiver, run: &str) -> usize {
    receiver.rep_arrivals().keys().filter(|e| e.contains(run)).count()
}
