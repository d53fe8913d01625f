//! `leadrouter`: run the embedded runtime, or check a routing document.

use anyhow::Context;
use clap::{Parser, Subcommand};
use leadrouter::config::{DEMO_DOCUMENT, Settings};
use leadrouter::pipeline::Secrets;
use leadrouter::runtime::Embedded;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

// glibc's malloc contends across threads under load; mimalloc does not.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Prints a line for the operator; a closed stdout must never stop the server.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

#[derive(Parser)]
#[command(name = "leadrouter", version, about = "Route every inbound lead to the right rep, exactly once")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the embedded runtime: HTTP routes, pipeline and a SQLite file, in one process.
    Serve {
        /// The routing document; without it, the bundled demo runs.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Address to listen on (overrides [server] listen).
        #[arg(long)]
        listen: Option<String>,
        /// SQLite file (overrides [store] sqlite).
        #[arg(long)]
        db: Option<PathBuf>,
    },
    /// Show what a new routing document would change for the leads already stored: leads per
    /// pool and per rep before and after, grade shifts, leads that would go unassigned.
    /// Changes nothing.
    Replay {
        /// The new routing document.
        #[arg(long)]
        config: PathBuf,
        /// Only leads received on or after this date (YYYY-MM-DD or RFC 3339).
        #[arg(long)]
        since: Option<String>,
        #[command(flatten)]
        store: StoreArgs,
        /// `table` for people, `json` for machines.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
        /// Exit 2 when more than PCT percent of the replayed leads would change owner.
        #[arg(long, value_name = "PCT")]
        fail_if_changed: Option<f64>,
    },
    /// Write a consistent copy of the SQLite database while `serve` keeps running. Restore by
    /// stopping `serve`, putting the copy in place of the database file (and removing its
    /// `-wal` and `-shm` files), and starting `serve` again.
    Backup {
        /// The routing document whose [store] sqlite is the database.
        #[arg(long, conflicts_with = "db")]
        config: Option<PathBuf>,
        /// The database file (default: [store] sqlite of the document, or leadrouter.db).
        #[arg(long)]
        db: Option<PathBuf>,
        /// Replace OUT if it exists.
        #[arg(long)]
        force: bool,
        /// Where to write the copy.
        out: PathBuf,
    },
    /// The CRM loop ([crm.hubspot], [crm.salesforce]).
    Crm {
        #[command(subcommand)]
        command: CrmCommand,
    },
    /// Work with routing documents.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
}

#[derive(Subcommand)]
enum CrmCommand {
    /// Send again the CRM upserts that failed (a rep without a CRM user, a validation rule, a
    /// spent API limit), once the cause is fixed: each for the lead's current owner. The
    /// upsert key makes a record already in the CRM an update, never a second record.
    Resync {
        /// The routing document (its [crm.*] and [store] sqlite); secrets from the environment.
        #[arg(long)]
        config: PathBuf,
        /// Only leads received on or after this date (YYYY-MM-DD or RFC 3339); default: all.
        #[arg(long)]
        since: Option<String>,
        #[command(flatten)]
        store: StoreArgs,
    },
}

/// The store a one-off command reads: the SQLite file, or a DynamoDB table.
#[derive(clap::Args)]
struct StoreArgs {
    /// The SQLite file (default: the document's [store] sqlite).
    #[arg(long, conflicts_with = "table")]
    db: Option<PathBuf>,
    /// A DynamoDB table instead (the stack's `LeadsTable` output).
    #[arg(long)]
    table: Option<String>,
}

/// A store opened from [`StoreArgs`], with the name it is shown by.
enum Store {
    Dynamo(leadrouter::adapters::dynamo::DynamoStore, String),
    Sqlite(leadrouter::adapters::sqlite::SqliteStore, String),
}

impl StoreArgs {
    async fn open(self, settings: &Settings) -> anyhow::Result<Store> {
        match self.table {
            Some(t) => {
                let conf = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
                let store = leadrouter::adapters::dynamo::DynamoStore::new(aws_sdk_dynamodb::Client::new(&conf), &t);
                Ok(Store::Dynamo(store, t))
            }
            None => {
                let db = self.db.unwrap_or_else(|| PathBuf::from(&settings.sqlite));
                anyhow::ensure!(db.exists(), "{} does not exist (pass --db with the file `serve` uses)", db.display());
                let store = leadrouter::adapters::sqlite::SqliteStore::open(&db)
                    .with_context(|| format!("cannot open {}", db.display()))?;
                Ok(Store::Sqlite(store, db.display().to_string()))
            }
        }
    }
}

/// A routing document read and checked.
fn read_document(file: &PathBuf) -> anyhow::Result<Settings> {
    let src = std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    Settings::parse(&src).map_err(|p| anyhow::anyhow!("{} has problems:\n{p}", file.display()))
}

/// `--since`: a date or an RFC 3339 time; absent, the beginning.
fn since_arg(since: Option<&str>) -> anyhow::Result<chrono::DateTime<chrono::Utc>> {
    match since {
        None => Ok(chrono::DateTime::<chrono::Utc>::MIN_UTC),
        Some(s) => leadrouter::replay::parse_since(s)
            .ok_or_else(|| anyhow::anyhow!("--since '{s}' is neither a date (YYYY-MM-DD) nor an RFC 3339 time")),
    }
}

/// The async runtime a command runs on, or the exit when it cannot start.
fn runtime(multi_thread: bool) -> Result<tokio::runtime::Runtime, ExitCode> {
    let mut b = if multi_thread {
        tokio::runtime::Builder::new_multi_thread()
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    b.enable_all().build().map_err(|e| {
        eprintln!("error: cannot start the async runtime: {e}");
        ExitCode::FAILURE
    })
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Format {
    Table,
    Json,
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Check a routing document: every problem with its line, or a one-line summary.
    Check { file: PathBuf },
    /// Run routing test cases against a document: each case's lead scored and routed by the
    /// router's own decision from an empty store; exit 1 if any case fails.
    Test {
        file: PathBuf,
        /// The cases file (`[[case]]` tables: name, lead, expect, optional at, open, owners).
        #[arg(long)]
        cases: PathBuf,
    },
    /// Check a routing document, then store it in the DynamoDB table the Lambdas read it from.
    Push {
        file: PathBuf,
        /// The table (the stack's `LeadsTable` output).
        #[arg(long)]
        table: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Config { command: ConfigCommand::Check { file } } => check(&file),
        Command::Config { command: ConfigCommand::Test { file, cases } } => test_cases(&file, &cases),
        Command::Config { command: ConfigCommand::Push { file, table } } => {
            if check(&file) != ExitCode::SUCCESS {
                return ExitCode::FAILURE;
            }
            let rt = match runtime(false) {
                Ok(rt) => rt,
                Err(code) => return code,
            };
            match rt.block_on(push(&file, &table)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Replay { config, since, store, format, fail_if_changed } => {
            let rt = match runtime(true) {
                Ok(rt) => rt,
                Err(code) => return code,
            };
            match rt.block_on(replay(&config, since.as_deref(), store, format)) {
                Ok(r) => match fail_if_changed {
                    Some(pct) if r.changed_more_than(pct) => {
                        eprintln!(
                            "{} of {} leads ({:.2}%) would change owner, more than --fail-if-changed {pct}%",
                            r.owner_changes,
                            r.leads,
                            r.owner_changes as f64 * 100.0 / r.leads as f64
                        );
                        ExitCode::from(2)
                    }
                    _ => ExitCode::SUCCESS,
                },
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Crm { command: CrmCommand::Resync { config, since, store } } => {
            let rt = match runtime(true) {
                Ok(rt) => rt,
                Err(code) => return code,
            };
            match rt.block_on(crm_resync(&config, since.as_deref(), store)) {
                Ok(r) if r.failed.is_empty() => ExitCode::SUCCESS,
                Ok(_) => ExitCode::from(2),
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Backup { config, db, force, out } => match backup(config, db, force, &out) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::from(2)
            }
        },
        Command::Serve { config, listen, db } => {
            init_tracing();
            let rt = match runtime(true) {
                Ok(rt) => rt,
                Err(code) => return code,
            };
            match rt.block_on(serve(config, listen, db)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::from(2)
                }
            }
        }
    }
}

fn backup(config: Option<PathBuf>, db: Option<PathBuf>, force: bool, out: &std::path::Path) -> anyhow::Result<()> {
    let db = match (db, config) {
        (Some(db), _) => db,
        (None, Some(file)) => PathBuf::from(read_document(&file)?.sqlite),
        (None, None) => PathBuf::from("leadrouter.db"),
    };
    anyhow::ensure!(db.exists(), "{} does not exist (pass --db with the file `serve` uses)", db.display());
    if out.exists() {
        anyhow::ensure!(force, "{} exists; pass --force to replace it", out.display());
        std::fs::remove_file(out).with_context(|| format!("cannot replace {}", out.display()))?;
    }
    let bytes = leadrouter::adapters::sqlite::SqliteStore::backup(&db, out)
        .with_context(|| format!("cannot copy {} to {}", db.display(), out.display()))?;
    say!("{}: a consistent copy of {} ({bytes} bytes)", out.display(), db.display());
    Ok(())
}

fn check(file: &PathBuf) -> ExitCode {
    let src = match std::fs::read_to_string(file) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{}: cannot read: {e}", file.display());
            return ExitCode::from(2);
        }
    };
    match Settings::parse(&src) {
        Ok(s) if !s.crm.names().is_empty() => match crm_check(&s, &src) {
            Ok(()) => {
                println!("{}: ok: {}", file.display(), s.summary());
                ExitCode::SUCCESS
            }
            Err(problems) => {
                for (line, p) in &problems {
                    eprintln!("{}:{line}: {p}", file.display());
                }
                eprintln!("{}: {} problem(s)", file.display(), problems.len());
                ExitCode::FAILURE
            }
        },
        Ok(s) => {
            println!("{}: ok: {}", file.display(), s.summary());
            ExitCode::SUCCESS
        }
        Err(problems) => {
            for p in &problems.0 {
                eprintln!("{}:{}: {}", file.display(), p.line, p.message);
            }
            eprintln!("{}: {} problem(s)", file.display(), problems.0.len());
            ExitCode::FAILURE
        }
    }
}

/// With a CRM configured and its secrets in the environment: every active rep of the document
/// matches a CRM user (`crm_owner`, or a user with the rep's email), each that does not a
/// problem at the rep's line. Without the secrets the CRM is not asked, and the check says so.
fn crm_check(settings: &Settings, src: &str) -> Result<(), Vec<(usize, String)>> {
    let secrets = Secrets::crm_only(settings, &|n| std::env::var(n).ok());
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => return Err(vec![(1, format!("cannot start the async runtime: {e}"))]),
    };
    let _in_runtime = rt.enter();
    let Some(crm) = leadrouter::crm::Crm::from_settings(&settings.crm, &secrets) else {
        say!("note: the CRM was not asked whether each rep is one of its users: its secrets are not set here");
        return Ok(());
    };
    let (problems, unasked) = rt.block_on(crm.unmatched(&settings.reps));
    for u in unasked {
        say!("warning: {u}");
    }
    if problems.is_empty() {
        return Ok(());
    }
    let line_of = |rep: &str| {
        src.lines()
            .position(|l| l.trim_start().starts_with("id") && l.contains(&format!("\"{rep}\"")))
            .map_or(1, |i| i + 1)
    };
    Err(problems.into_iter().map(|(rep, p)| (line_of(&rep), p)).collect())
}

fn test_cases(file: &PathBuf, cases: &PathBuf) -> ExitCode {
    let read = |f: &PathBuf| std::fs::read_to_string(f).map_err(|e| eprintln!("{}: cannot read: {e}", f.display()));
    let (Ok(src), Ok(cases_src)) = (read(file), read(cases)) else { return ExitCode::from(2) };
    let settings = match Settings::parse(&src) {
        Ok(s) => s,
        Err(problems) => {
            for p in &problems.0 {
                eprintln!("{}:{}: {}", file.display(), p.line, p.message);
            }
            return ExitCode::from(2);
        }
    };
    let outcomes = match leadrouter::cases::run(&settings, &cases_src, chrono::Utc::now()) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{}: {e}", cases.display());
            return ExitCode::from(2);
        }
    };
    for o in &outcomes {
        say!("{o}");
    }
    let failed = outcomes.iter().filter(|o| !o.held()).count();
    if failed == 0 {
        say!("{} cases: all hold", outcomes.len());
        ExitCode::SUCCESS
    } else {
        say!("{failed} of {} cases failed", outcomes.len());
        ExitCode::FAILURE
    }
}

async fn push(file: &PathBuf, table: &str) -> anyhow::Result<()> {
    let src = std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let conf = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let store = leadrouter::adapters::dynamo::DynamoStore::new(aws_sdk_dynamodb::Client::new(&conf), table);
    store.push_routing(&src, chrono::Utc::now()).await.with_context(|| format!("cannot write to the table {table}"))?;
    say!("{}: pushed to {table}; each function reads it at its next cold start", file.display());
    Ok(())
}

async fn replay(
    file: &PathBuf,
    since: Option<&str>,
    store: StoreArgs,
    format: Format,
) -> anyhow::Result<leadrouter::replay::ReplayReport> {
    let settings = read_document(file)?;
    let since = since_arg(since)?;
    match store.open(&settings).await? {
        Store::Dynamo(store, name) => replay_from(&store, &settings, since, &name, format).await,
        Store::Sqlite(store, name) => replay_from(&store, &settings, since, &name, format).await,
    }
}

async fn crm_resync(
    file: &PathBuf,
    since: Option<&str>,
    store: StoreArgs,
) -> anyhow::Result<leadrouter::pipeline::crm::Resynced> {
    let settings = read_document(file)?;
    anyhow::ensure!(
        !settings.crm.names().is_empty(),
        "{} configures no CRM ([crm.hubspot] or [crm.salesforce])",
        file.display()
    );
    let since = since_arg(since)?;
    // The server's own secrets are not needed here: only the CRMs', from the environment.
    let secrets = Secrets::crm_only(&settings, &|n| std::env::var(n).ok());
    const NO_CRM: &str = "no CRM is usable: its secrets are not set in the environment";
    let r = match store.open(&settings).await? {
        Store::Dynamo(store, _) => {
            let p = leadrouter::runtime::tool_pipeline(store, settings, secrets);
            anyhow::ensure!(p.crm.is_some(), NO_CRM);
            p.crm_resync(since).await?
        }
        Store::Sqlite(store, _) => {
            let p = leadrouter::runtime::tool_pipeline(store, settings, secrets);
            anyhow::ensure!(p.crm.is_some(), NO_CRM);
            p.crm_resync(since).await?
        }
    };
    say!(
        "{} leads read, {} failed CRM upserts sent again: {} delivered, {} still failing",
        r.leads,
        r.tried,
        r.delivered,
        r.failed.len()
    );
    for (lead, error) in &r.failed {
        say!("  {lead}: {error}");
    }
    Ok(r)
}

/// Replays every lead since `since` through the new document, with a progress bar for people,
/// and prints the report.
async fn replay_from<S: leadrouter::ports::LeadStore>(
    store: &S,
    settings: &Settings,
    since: chrono::DateTime<chrono::Utc>,
    name: &str,
    format: Format,
) -> anyhow::Result<leadrouter::replay::ReplayReport> {
    let bar = if format == Format::Table {
        // A first pass over the small facts counts the leads for the bar.
        let now = chrono::Utc::now() + chrono::Duration::days(1);
        let mut total = 0u64;
        let mut after = None;
        loop {
            let page = store.facts(since, now, after, 50_000).await.context("cannot read the store")?;
            total += page.facts.len() as u64;
            match page.next {
                Some(n) => after = Some(n),
                None => break,
            }
        }
        let bar = indicatif::ProgressBar::new(total);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} replaying {bar:40} {pos}/{len} leads ({per_sec}, {eta} left)",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar
    } else {
        indicatif::ProgressBar::hidden()
    };
    let r = leadrouter::replay::replay_store(store, settings, since, |n| bar.inc(n as u64))
        .await
        .context("cannot read the store")?;
    bar.finish_and_clear();
    match format {
        Format::Json => say!("{}", serde_json::to_string_pretty(&r)?),
        Format::Table => {
            say!("{} routed leads in {name} replayed against the new document (nothing was changed)\n", r.leads);
            say!("{}", r.render());
        }
    }
    Ok(r)
}

fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if std::env::var("LEADROUTER_LOG_FORMAT").is_ok_and(|v| v == "json") {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn random_token() -> String {
    use rand::Rng;
    let bytes: [u8; 24] = rand::rng().random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

async fn serve(config: Option<PathBuf>, listen: Option<String>, db: Option<PathBuf>) -> anyhow::Result<()> {
    let demo = config.is_none();
    let src = match &config {
        Some(path) => std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?,
        None => DEMO_DOCUMENT.to_owned(),
    };
    let name = config.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| "the demo document".into());
    let settings = Settings::parse(&src).map_err(|p| anyhow::anyhow!("{name} has problems:\n{p}"))?;
    let resolved =
        Secrets::resolve(&settings, &|n| std::env::var(n).ok(), if demo { Some(&random_token) } else { None })
            .map_err(|e| anyhow::anyhow!(e))?;
    for w in &resolved.warnings {
        say!("warning: {w}");
    }
    let (secrets, generated) = (resolved.secrets, resolved.generated);
    let listen = listen.unwrap_or_else(|| settings.server.listen.clone());
    let db = db.unwrap_or_else(|| PathBuf::from(&settings.sqlite));
    let listener =
        tokio::net::TcpListener::bind(&listen).await.with_context(|| format!("cannot listen on {listen}"))?;
    let addr = listener.local_addr()?;
    let mut settings = settings;
    settings.server.listening_on(addr);
    let mailer = leadrouter::adapters::notifier::mailer_for(&settings, &secrets).map_err(|e| anyhow::anyhow!(e))?;
    let options = leadrouter::runtime::Options { mailer, ..Default::default() };
    let runtime = Embedded::start_with(settings, secrets.clone(), &db, options)
        .await
        .with_context(|| format!("cannot open the store {}", db.display()))?;
    if runtime.resumed > 0 {
        say!("resumed {} leads left mid-pipeline", runtime.resumed);
    }
    say!("leadrouter listening on http://{addr} (store {}, {name})", db.display());
    for (var, value) in &generated {
        if var == "LEADROUTER_ADMIN_TOKEN" {
            say!("{var} was not set: generated one for this run");
        } else {
            say!("{var} was not set: generated for this run: {value}");
        }
    }
    if demo {
        say!("admin token: {}", secrets.admin_token.expose());
        say!("try:");
        say!(
            "  curl -d email=jane@acme.com -d name='Jane Doe' -d job_title='VP Sales' -d company_size=500 -d country=US http://{addr}/v1/leads"
        );
        say!("  curl -H 'Authorization: Bearer {}' http://{addr}/v1/leads", secrets.admin_token.expose());
    }
    runtime.serve(listener, shutdown_signal(), Duration::from_secs(10)).await?;
    say!("leadrouter stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down: no new requests; draining in-flight leads");
}
