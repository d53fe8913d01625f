//! The routing document (TOML): read once, checked with line-accurate problems, typed.

use crate::domain::availability::{DateRange, WorkingHours};
use crate::domain::round_robin::MAX_WEIGHT;
use crate::domain::{Condition, Manager, Pool, PoolMatch, Region, Rule, ScoringRules, WeightedRoundRobin};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use toml::Spanned;

/// The demo document `leadrouter serve` runs when given no `--config`.
pub const DEMO_DOCUMENT: &str = include_str!("../../examples/leadrouter.toml");

// ---- the document as written ----

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    server: RawServer,
    #[serde(default)]
    store: RawStore,
    #[serde(default)]
    dedup: RawDedup,
    #[serde(default)]
    retention: RawRetention,
    #[serde(default)]
    sources: RawSources,
    #[serde(default)]
    scoring: RawScoring,
    #[serde(default)]
    reps: Vec<RawRep>,
    #[serde(default)]
    pools: Vec<RawPool>,
    email: Option<RawEmail>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEmail {
    from: Spanned<String>,
    smtp_url: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawServer {
    listen: Option<Spanned<String>>,
    admin_token: Option<Spanned<String>>,
    webhook_secret: Option<Spanned<String>>,
    max_body_bytes: Option<Spanned<i64>>,
    public_url: Option<Spanned<String>>,
    accept_secret: Option<Spanned<String>>,
    accept_link_days: Option<Spanned<i64>>,
    allow_private_targets: Option<bool>,
    rate_limit_per_minute: Option<Spanned<i64>>,
    trusted_proxies: Option<Vec<Spanned<String>>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawStore {
    sqlite: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDedup {
    window_days: Option<Spanned<i64>>,
    fold_gmail: Option<bool>,
    default_phone_region: Option<Spanned<String>>,
    re_engaged_every_minutes: Option<Spanned<i64>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawRetention {
    personal_data_days: Option<Spanned<f64>>,
    delete_after_days: Option<Spanned<f64>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSources {
    meta: Option<RawMeta>,
    google: Option<RawGoogle>,
    /// Web forms posting to `/v1/leads`: only a spend to set.
    web: Option<RawWeb>,
    #[serde(default)]
    generic: BTreeMap<String, RawGeneric>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMeta {
    verify_token: Option<Spanned<String>>,
    app_secret: Option<Spanned<String>>,
    access_token: Option<Spanned<String>>,
    graph_base_url: Option<Spanned<String>>,
    /// Lead field → the form's field name, over Meta's conventional names.
    #[serde(default)]
    fields: BTreeMap<String, String>,
    monthly_spend: Option<Spanned<f64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWeb {
    monthly_spend: Option<Spanned<f64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGoogle {
    key: Option<Spanned<String>>,
    notify_test_leads: Option<bool>,
    monthly_spend: Option<Spanned<f64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGeneric {
    secret: Option<Spanned<String>>,
    #[serde(default)]
    fields: BTreeMap<String, Spanned<String>>,
    monthly_spend: Option<Spanned<f64>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawScoring {
    grades: Option<Spanned<BTreeMap<String, i64>>>,
    disqualify_below: Option<i64>,
    #[serde(default)]
    rules: Vec<RawRule>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    name: Spanned<String>,
    field: Spanned<String>,
    matches: Option<Spanned<String>>,
    free_email: Option<bool>,
    gte: Option<f64>,
    lte: Option<f64>,
    #[serde(rename = "in")]
    one_of: Option<Vec<String>>,
    points: i64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRep {
    id: Spanned<String>,
    name: Option<String>,
    email: Option<String>,
    #[serde(default)]
    notify: Vec<Spanned<String>>,
    timezone: Option<Spanned<String>>,
    working_hours: Option<Spanned<String>>,
    #[serde(default)]
    out_of_office: Vec<Spanned<String>>,
    max_open_leads: Option<u32>,
    active: Option<bool>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPool {
    id: Spanned<String>,
    #[serde(rename = "match", default)]
    rule: Option<Spanned<indexmap::IndexMap<String, OneOrMany>>>,
    #[serde(default)]
    reps: Vec<RawPoolRep>,
    manager: Option<RawManager>,
    sla_minutes: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPoolRep {
    id: Spanned<String>,
    weight: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManager {
    name: String,
    #[serde(default)]
    notify: Vec<Spanned<String>>,
}

// ---- problems ----

/// One thing wrong with the document, at a line (1-based).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub line: usize,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problems(pub Vec<Problem>);

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "line {}: {}", p.line, p.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for Problems {}

struct Checker<'a> {
    src: &'a str,
    problems: Vec<Problem>,
}

impl Checker<'_> {
    fn line(&self, offset: usize) -> usize {
        self.src[..offset.min(self.src.len())].bytes().filter(|b| *b == b'\n').count() + 1
    }

    fn at<T>(&mut self, spanned: &Spanned<T>, message: impl Into<String>) {
        let line = self.line(spanned.span().start);
        self.problems.push(Problem { line, message: message.into() });
    }
}

// ---- the typed settings ----

/// A secret as written: a literal, or `env:NAME` read from the environment at start-up.
#[derive(Clone, PartialEq, Eq)]
pub enum SecretRef {
    Literal(String),
    Env(String),
}

impl fmt::Debug for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretRef::Literal(_) => f.write_str("Literal(…)"),
            SecretRef::Env(n) => write!(f, "Env({n})"),
        }
    }
}

impl SecretRef {
    fn parse(s: &str) -> Result<SecretRef, String> {
        match s.strip_prefix("env:") {
            Some(name) if !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') => {
                Ok(SecretRef::Env(name.to_owned()))
            }
            Some(_) => Err(format!("'{s}' names no environment variable (env:NAME, letters, digits and _)")),
            None if s.is_empty() => Err("a secret cannot be empty".into()),
            None => Ok(SecretRef::Literal(s.to_owned())),
        }
    }

    /// The value, read from `env` for an `env:` reference.
    pub fn resolve(&self, env: &dyn Fn(&str) -> Option<String>) -> Option<String> {
        match self {
            SecretRef::Literal(v) => Some(v.clone()),
            SecretRef::Env(name) => env(name).filter(|v| !v.is_empty()),
        }
    }
}

/// A resolved secret; never printed.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(…)")
    }
}

/// Where a notification goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    Webhook(String),
    Slack(String),
    Email(String),
    Log,
}

impl Target {
    pub fn parse(s: &str) -> Result<Target, String> {
        let url = |u: &str| -> Result<String, String> {
            if (u.starts_with("http://") || u.starts_with("https://"))
                && u.len() > 8
                && !u.contains(char::is_whitespace)
            {
                Ok(u.to_owned())
            } else {
                Err(format!("'{u}' is not an http(s) URL"))
            }
        };
        match s.split_once(':') {
            Some(("webhook", u)) => url(u).map(Target::Webhook),
            Some(("slack", u)) => url(u).map(Target::Slack),
            Some(("email", a)) => crate::domain::Email::parse(a)
                .map(|e| Target::Email(e.to_string()))
                .map_err(|e| format!("'{a}' is not an email address: it {e}")),
            Some(("log", _)) => Ok(Target::Log),
            _ => Err(format!("'{s}' is not a target (webhook:URL, slack:URL, email:ADDRESS or log:)")),
        }
    }
}

pub use crate::domain::Rep;

/// `[email]`: how `email:` targets are sent. Without it they are written to the log.
#[derive(Clone, Debug)]
pub struct EmailSettings {
    /// The sender, `Name <address>` or an address.
    pub from: String,
    /// `smtp://host:port`, `smtps://user:pass@host` (lettre's URL form); usually `env:NAME`.
    /// Absent on AWS: SES sends from `from`.
    pub smtp_url: Option<SecretRef>,
}

#[derive(Clone, Debug)]
pub struct ServerSettings {
    pub listen: String,
    pub admin_token: SecretRef,
    pub webhook_secret: SecretRef,
    pub max_body_bytes: usize,
    /// Where accept links and signed URIs point. Without `public_url` in the document it is
    /// `http://` + `listen`, and `serve` sets it to the address it really listens on
    /// ([`ServerSettings::listening_on`]).
    pub public_url: String,
    pub public_url_set: bool,
    /// Signs accept links; None: a key derived from the admin token (never the webhook secret).
    pub accept_secret: Option<SecretRef>,
    pub accept_link_days: u32,
    /// Notification targets set through `/v1/reps` may be loopback, private or link-local.
    pub allow_private_targets: bool,
    /// Per client on `POST /v1/leads`; 0 is off.
    pub rate_limit_per_minute: u32,
    /// Proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<ipnet::IpNet>,
}

impl ServerSettings {
    /// Points `public_url` at the address the server listens on, unless the document set it:
    /// the real port when asked for port 0, and 127.0.0.1 for an unspecified address.
    pub fn listening_on(&mut self, addr: std::net::SocketAddr) {
        if self.public_url_set {
            return;
        }
        let ip = match addr.ip() {
            ip if ip.is_unspecified() && ip.is_ipv4() => std::net::IpAddr::from([127, 0, 0, 1]),
            ip if ip.is_unspecified() => std::net::IpAddr::from(std::net::Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        self.public_url = format!("http://{}", std::net::SocketAddr::new(ip, addr.port()));
    }
}

#[derive(Clone, Debug)]
pub struct DedupSettings {
    pub window_days: u32,
    pub fold_gmail: bool,
    pub default_phone_region: Region,
    /// At most one `re_engaged` per original lead and rep in this many minutes.
    pub re_engaged_every_minutes: u32,
}

/// `[retention]`: how long personal data and the anonymous facts are kept. Days may be
/// fractions (0.01 is about 14 minutes), for trying retention out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetentionSettings {
    /// A lead with no activity this long has its personal data erased; None keeps it.
    pub personal_data: Option<chrono::Duration>,
    /// A lead with no activity this long is deleted; None never deletes.
    pub delete_after: Option<chrono::Duration>,
}

impl RetentionSettings {
    /// How it is written in history: "365 days", "0.002 days".
    pub fn describe(d: chrono::Duration) -> String {
        let days = d.num_milliseconds() as f64 / 86_400_000.0;
        if days.fract() == 0.0 { format!("{days:.0} days") } else { format!("{days} days") }
    }
}

/// A retention period in days (0: off), from 0 to 100 years, fractions allowed.
fn retention_days(c: &mut Checker, v: &Option<Spanned<f64>>, name: &str, default: f64) -> Option<chrono::Duration> {
    let days = match v {
        Some(d) if !d.get_ref().is_finite() || *d.get_ref() < 0.0 || *d.get_ref() > 36500.0 => {
            c.at(d, format!("{name} must be a number of days from 0 (off) to 36500"));
            default
        }
        Some(d) => *d.get_ref(),
        None => default,
    };
    (days > 0.0).then(|| chrono::Duration::milliseconds((days * 86_400_000.0).round() as i64))
}

#[derive(Clone, Debug)]
pub struct MetaSource {
    pub verify_token: Option<SecretRef>,
    pub app_secret: Option<SecretRef>,
    pub access_token: Option<SecretRef>,
    pub graph_base_url: String,
    pub fields: BTreeMap<String, String>,
}

#[derive(Clone, Debug)]
pub struct GenericSource {
    pub secret: Option<SecretRef>,
    /// Lead field → JSON Pointer (RFC 6901) into the posted document.
    pub fields: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Default)]
pub struct Sources {
    pub meta: Option<MetaSource>,
    pub google_key: Option<SecretRef>,
    /// Google's `is_test` leads reach reps only when this is set.
    pub google_notify_test_leads: bool,
    pub generic: BTreeMap<String, GenericSource>,
    /// `monthly_spend` per source name (`web`, `meta`, `google`, a generic source's name).
    pub spend: BTreeMap<String, f64>,
}

/// The whole routing document, checked.
#[derive(Clone, Debug)]
pub struct Settings {
    pub server: ServerSettings,
    pub sqlite: String,
    pub dedup: DedupSettings,
    pub retention: RetentionSettings,
    pub sources: Sources,
    pub scoring: ScoringRules,
    pub reps: Vec<Rep>,
    pub pools: Vec<Pool>,
    pub email: Option<EmailSettings>,
    rep_index: HashMap<String, usize>,
}

pub const DEFAULT_LISTEN: &str = "127.0.0.1:3000";
pub const DEFAULT_MAX_BODY: usize = 64 * 1024;
const KNOWN_FIELDS: [&str; 24] = [
    "email",
    "email_domain",
    "phone",
    "first_name",
    "last_name",
    "name",
    "company",
    "job_title",
    "website",
    "country",
    "state",
    "city",
    "company_size",
    "industry",
    "message",
    "consent",
    "utm_source",
    "utm_medium",
    "utm_campaign",
    "utm_term",
    "utm_content",
    "source",
    "grade",
    "test",
];

impl Settings {
    pub fn rep(&self, id: &str) -> Option<&Rep> {
        self.rep_index.get(id).map(|i| &self.reps[*i])
    }

    pub fn pool(&self, id: &str) -> Option<&Pool> {
        self.pools.iter().find(|p| p.id == id)
    }

    /// Reads and checks a document; every problem found is returned, each with its line.
    pub fn parse(src: &str) -> Result<Settings, Problems> {
        let raw: RawConfig = toml::from_str(src).map_err(|e| {
            let line = e.span().map(|s| src[..s.start.min(src.len())].matches('\n').count() + 1).unwrap_or(1);
            Problems(vec![Problem { line, message: e.message().trim().to_owned() }])
        })?;
        let mut c = Checker { src, problems: Vec::new() };
        let settings = build(raw, &mut c);
        if c.problems.is_empty() {
            Ok(settings)
        } else {
            c.problems.sort_by_key(|p| p.line);
            Err(Problems(c.problems))
        }
    }

    /// Whether `name` is a source whose leads arrive signed (Meta, Google, a CRM, a generic
    /// source of this document): a web form may not claim it.
    pub fn is_signed_source(&self, name: &str) -> bool {
        let name = name.trim().to_ascii_lowercase();
        matches!(name.as_str(), "meta" | "google" | "hubspot" | "salesforce" | "web")
            || self.sources.generic.keys().any(|g| g.eq_ignore_ascii_case(&name))
    }

    /// Every notification target the document names (reps and managers): trusted, where
    /// targets set through the API are checked.
    pub fn document_targets(&self) -> HashSet<String> {
        let reps = self.reps.iter().flat_map(|r| r.notify.iter());
        let managers = self.pools.iter().filter_map(|p| p.manager.as_ref()).flat_map(|m| m.notify.iter());
        reps.chain(managers).cloned().collect()
    }

    /// Every source secret by the name the runtime looks it up under.
    pub fn source_secret_refs(&self) -> Vec<(String, &SecretRef)> {
        let mut out: Vec<(String, &SecretRef)> = Vec::new();
        if let Some(m) = &self.sources.meta {
            for (n, s) in [
                ("meta.verify_token", &m.verify_token),
                ("meta.app_secret", &m.app_secret),
                ("meta.access_token", &m.access_token),
            ] {
                if let Some(s) = s {
                    out.push((n.to_owned(), s));
                }
            }
        }
        if let Some(k) = &self.sources.google_key {
            out.push(("google.key".to_owned(), k));
        }
        for (name, g) in &self.sources.generic {
            if let Some(s) = &g.secret {
                out.push((format!("generic.{name}"), s));
            }
        }
        if let Some(u) = self.email.as_ref().and_then(|e| e.smtp_url.as_ref()) {
            out.push(("email.smtp_url".to_owned(), u));
        }
        out
    }

    pub fn summary(&self) -> String {
        format!(
            "{} reps, {} pools, {} scoring rules, sources: web{}{}{}",
            self.reps.len(),
            self.pools.len(),
            self.scoring.rules.len(),
            if self.sources.meta.is_some() { ", meta" } else { "" },
            if self.sources.google_key.is_some() { ", google" } else { "" },
            self.sources.generic.keys().map(|k| format!(", generic/{k}")).collect::<String>(),
        )
    }
}

fn secret(c: &mut Checker, s: &Option<Spanned<String>>, required: &str) -> Option<SecretRef> {
    match s {
        Some(v) => match SecretRef::parse(v.get_ref()) {
            Ok(r) => Some(r),
            Err(e) => {
                c.at(v, e);
                None
            }
        },
        None => {
            if !required.is_empty() {
                c.problems.push(Problem { line: 1, message: format!("{required} is required") });
            }
            None
        }
    }
}

fn targets(c: &mut Checker, list: &[Spanned<String>], whose: &str) -> Vec<String> {
    let mut out = Vec::new();
    for t in list {
        match Target::parse(t.get_ref()) {
            Ok(_) => out.push(t.get_ref().clone()),
            Err(e) => c.at(t, format!("{whose}: {e}")),
        }
    }
    out
}

/// A whole-number setting in `[lo, hi]` (a problem at its line when outside), or `default`.
fn bounded(c: &mut Checker, v: &Option<Spanned<i64>>, name: &str, lo: u32, hi: u32, default: u32) -> u32 {
    match v {
        Some(n) if *n.get_ref() < i64::from(lo) || *n.get_ref() > i64::from(hi) => {
            c.at(n, format!("{name} must be between {lo} and {hi}"));
            default
        }
        Some(n) => *n.get_ref() as u32,
        None => default,
    }
}

pub(crate) fn valid_id(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn build(raw: RawConfig, c: &mut Checker) -> Settings {
    // [server]
    let listen = raw.server.listen.map(|l| {
        if l.get_ref().parse::<std::net::SocketAddr>().is_err() {
            c.at(&l, format!("listen '{}' is not an address like 127.0.0.1:3000", l.get_ref()));
        }
        l.into_inner()
    });
    let admin_token =
        secret(c, &raw.server.admin_token, "[server] admin_token").unwrap_or(SecretRef::Literal(String::new()));
    let webhook_secret =
        secret(c, &raw.server.webhook_secret, "[server] webhook_secret").unwrap_or(SecretRef::Literal(String::new()));
    let max_body_bytes = match &raw.server.max_body_bytes {
        Some(m) if *m.get_ref() < 1024 || *m.get_ref() > 10 * 1024 * 1024 => {
            c.at(m, "max_body_bytes must be between 1024 and 10485760 (API Gateway's 10 MB)");
            DEFAULT_MAX_BODY
        }
        Some(m) => *m.get_ref() as usize,
        None => DEFAULT_MAX_BODY,
    };
    let listen = listen.unwrap_or_else(|| DEFAULT_LISTEN.to_owned());
    let public_url_set = raw.server.public_url.is_some();
    let public_url = match raw.server.public_url {
        Some(u) => {
            if Target::parse(&format!("webhook:{}", u.get_ref())).is_err() {
                c.at(&u, format!("public_url '{}' is not an http(s) URL", u.get_ref()));
            }
            u.into_inner().trim_end_matches('/').to_owned()
        }
        None => format!("http://{listen}"),
    };
    let accept_secret = secret(c, &raw.server.accept_secret, "");
    let accept_link_days = bounded(c, &raw.server.accept_link_days, "accept_link_days", 1, 365, 7);
    let rate_limit_per_minute = bounded(c, &raw.server.rate_limit_per_minute, "rate_limit_per_minute", 0, 1_000_000, 0);
    let mut trusted_proxies = Vec::new();
    for p in raw.server.trusted_proxies.unwrap_or_default() {
        match crate::domain::net::parse_cidr(p.get_ref()) {
            Some(cidr) => trusted_proxies.push(cidr),
            None => c.at(&p, format!("trusted_proxies: '{}' is not an address or CIDR (10.0.0.0/8)", p.get_ref())),
        }
    }

    // [retention]
    let retention = RetentionSettings {
        personal_data: retention_days(c, &raw.retention.personal_data_days, "personal_data_days", 365.0),
        delete_after: retention_days(c, &raw.retention.delete_after_days, "delete_after_days", 0.0),
    };
    if let (Some(keep), Some(delete)) = (retention.personal_data, retention.delete_after)
        && delete < keep
        && let Some(d) = &raw.retention.delete_after_days
    {
        c.at(d, "delete_after_days must be 0 (never) or at least personal_data_days");
    }

    // [dedup]
    let window_days = bounded(c, &raw.dedup.window_days, "window_days", 0, 3650, 90);
    let re_engaged_every_minutes =
        bounded(c, &raw.dedup.re_engaged_every_minutes, "re_engaged_every_minutes", 0, 525_600, 60);
    let default_phone_region = match &raw.dedup.default_phone_region {
        Some(r) => Region::parse(r.get_ref()).unwrap_or_else(|| {
            c.at(r, format!("default_phone_region '{}' is not a two-letter country code", r.get_ref()));
            Region::default()
        }),
        None => Region::default(),
    };

    // [sources]
    let mut spend = BTreeMap::new();
    let mut spent = |c: &mut Checker, name: &str, v: &Option<Spanned<f64>>| {
        if let Some(v) = v {
            if !v.get_ref().is_finite() || *v.get_ref() < 0.0 {
                c.at(v, format!("[sources.{name}] monthly_spend must be a number ≥ 0"));
            } else {
                spend.insert(name.rsplit('.').next().unwrap_or(name).to_owned(), *v.get_ref());
            }
        }
    };
    if let Some(w) = &raw.sources.web {
        spent(c, "web", &w.monthly_spend);
    }
    if let Some(m) = &raw.sources.meta {
        spent(c, "meta", &m.monthly_spend);
    }
    if let Some(g) = &raw.sources.google {
        spent(c, "google", &g.monthly_spend);
    }
    for (name, g) in &raw.sources.generic {
        spent(c, &format!("generic.{name}"), &g.monthly_spend);
    }
    let meta = raw.sources.meta.map(|m| {
        let graph_base_url = match m.graph_base_url {
            Some(u) => {
                if Target::parse(&format!("webhook:{}", u.get_ref())).is_err() {
                    c.at(&u, format!("graph_base_url '{}' is not an http(s) URL", u.get_ref()));
                }
                u.into_inner().trim_end_matches('/').to_owned()
            }
            None => "https://graph.facebook.com/v21.0".to_owned(),
        };
        MetaSource {
            verify_token: secret(c, &m.verify_token, "[sources.meta] verify_token"),
            app_secret: secret(c, &m.app_secret, "[sources.meta] app_secret"),
            access_token: secret(c, &m.access_token, "[sources.meta] access_token"),
            graph_base_url,
            fields: m.fields,
        }
    });
    let google_notify_test_leads = raw.sources.google.as_ref().and_then(|g| g.notify_test_leads).unwrap_or(false);
    let google_key = raw.sources.google.and_then(|g| secret(c, &g.key, "[sources.google] key"));
    let mut generic = BTreeMap::new();
    for (name, g) in raw.sources.generic {
        let secret = secret(c, &g.secret, &format!("[sources.generic.{name}] secret"));
        let mut fields = BTreeMap::new();
        for (field, pointer) in g.fields {
            if !(pointer.get_ref().is_empty() || pointer.get_ref().starts_with('/')) {
                c.at(&pointer, format!("'{}' is not a JSON Pointer (it starts with /)", pointer.get_ref()));
            }
            fields.insert(field, pointer.into_inner());
        }
        if !valid_id(&name) {
            c.problems.push(Problem {
                line: 1,
                message: format!("generic source name '{name}' must be letters, digits, - or _"),
            });
        }
        generic.insert(name, GenericSource { secret, fields });
    }

    // [scoring]
    let mut grades: Vec<(String, i64)> = match &raw.scoring.grades {
        Some(g) => {
            if g.get_ref().keys().any(|k| k.is_empty()) {
                c.at(g, "grade names cannot be empty");
            }
            g.get_ref().iter().map(|(k, v)| (k.clone(), *v)).collect()
        }
        None => vec![("A".into(), 70), ("B".into(), 40), ("C".into(), 15)],
    };
    grades.sort_by_key(|g| std::cmp::Reverse(g.1));
    let mut rules = Vec::new();
    let mut rule_names = HashSet::new();
    for r in raw.scoring.rules {
        if !rule_names.insert(r.name.get_ref().clone()) {
            c.at(&r.name, format!("scoring rule '{}' is defined twice", r.name.get_ref()));
        }
        let mut conditions = Vec::new();
        if let Some(m) = &r.matches {
            match regex::RegexBuilder::new(m.get_ref()).size_limit(1 << 20).build() {
                Ok(re) => conditions.push(Condition::Matches(re)),
                Err(e) => c.at(m, format!("rule '{}': matches is not a valid regex: {e}", r.name.get_ref())),
            }
        }
        if let Some(f) = r.free_email {
            conditions.push(Condition::FreeEmail(f));
        }
        if let Some(v) = r.gte {
            conditions.push(Condition::Gte(v));
        }
        if let Some(v) = r.lte {
            conditions.push(Condition::Lte(v));
        }
        if let Some(set) = r.one_of {
            conditions.push(Condition::In(set));
        }
        if conditions.is_empty() && r.matches.is_none() {
            c.at(&r.name, format!("rule '{}' has no test (matches, free_email, gte, lte or in)", r.name.get_ref()));
        }
        if !KNOWN_FIELDS.contains(&r.field.get_ref().as_str()) && r.field.get_ref().is_empty() {
            c.at(&r.field, "field cannot be empty");
        }
        rules.push(Rule { name: r.name.into_inner(), field: r.field.into_inner(), conditions, points: r.points });
    }
    let scoring = ScoringRules { rules, grades, disqualify_below: raw.scoring.disqualify_below };

    // [[reps]]
    let mut reps = Vec::new();
    let mut rep_index = HashMap::new();
    for r in raw.reps {
        let id = r.id.get_ref().clone();
        if !valid_id(&id) {
            c.at(&r.id, format!("rep id '{id}' must be 1-64 letters, digits, '-', '_' or '.'"));
        }
        if rep_index.contains_key(&id) {
            c.at(&r.id, format!("rep '{id}' is defined twice"));
        }
        let timezone = match &r.timezone {
            Some(tz) => tz.get_ref().parse::<chrono_tz::Tz>().unwrap_or_else(|_| {
                c.at(tz, format!("rep '{id}': timezone '{}' is not an IANA zone like America/New_York", tz.get_ref()));
                chrono_tz::UTC
            }),
            None => chrono_tz::UTC,
        };
        let working_hours = r.working_hours.as_ref().and_then(|w| {
            WorkingHours::parse(w.get_ref()).map_err(|e| c.at(w, format!("rep '{id}': working_hours {e}"))).ok()
        });
        let mut out_of_office = Vec::new();
        for o in &r.out_of_office {
            match DateRange::parse(o.get_ref()) {
                Ok(d) => out_of_office.push(d),
                Err(e) => c.at(o, format!("rep '{id}': out_of_office {e}")),
            }
        }
        let notify = targets(c, &r.notify, &format!("rep '{id}'"));
        if let Some(e) = &r.email
            && crate::domain::Email::parse(e).is_err()
        {
            c.at(&r.id, format!("rep '{id}': email '{e}' is not an address"));
        }
        rep_index.insert(id.clone(), reps.len());
        reps.push(Rep {
            name: r.name.unwrap_or_else(|| id.clone()),
            id,
            email: r.email,
            notify,
            timezone,
            working_hours,
            out_of_office,
            max_open_leads: r.max_open_leads,
            active: r.active.unwrap_or(true),
        });
    }

    // [[pools]]
    let mut pools = Vec::new();
    let mut pool_ids = HashSet::new();
    for p in raw.pools {
        let id = p.id.get_ref().clone();
        if !valid_id(&id) {
            c.at(&p.id, format!("pool id '{id}' must be 1-64 letters, digits, '-', '_' or '.'"));
        }
        if !pool_ids.insert(id.clone()) {
            c.at(&p.id, format!("pool '{id}' is defined twice"));
        }
        let mut conditions = Vec::new();
        if let Some(m) = &p.rule {
            for (field, values) in m.get_ref() {
                let values = match values {
                    OneOrMany::One(v) => vec![v.clone()],
                    OneOrMany::Many(v) => v.clone(),
                };
                if values.is_empty() {
                    c.at(m, format!("pool '{id}': match on '{field}' lists no values, so nothing could match"));
                }
                conditions.push((field.clone(), values));
            }
        }
        let mut members = Vec::new();
        let mut seen = HashSet::new();
        for m in &p.reps {
            let rid = m.id.get_ref();
            if !rep_index.contains_key(rid) {
                c.at(&m.id, format!("pool '{id}' names rep '{rid}', who is not in [[reps]]"));
            }
            if !seen.insert(rid.clone()) {
                c.at(&m.id, format!("pool '{id}' lists rep '{rid}' twice"));
            }
            let weight = match &m.weight {
                Some(w) if *w.get_ref() < 1 || *w.get_ref() > i64::from(MAX_WEIGHT) => {
                    c.at(w, format!("pool '{id}': weight must be between 1 and {MAX_WEIGHT}"));
                    1
                }
                Some(w) => *w.get_ref() as u32,
                None => 1,
            };
            members.push((rid.clone(), weight));
        }
        if members.is_empty() {
            c.at(&p.id, format!("pool '{id}' has no reps"));
            members.push(("-".into(), 1));
        }
        let manager =
            p.manager.map(|m| Manager { notify: targets(c, &m.notify, &format!("pool '{id}' manager")), name: m.name });
        let rotation = WeightedRoundRobin::new(members).unwrap_or_else(|_| {
            c.at(&p.id, format!("pool '{id}' has too many reps"));
            WeightedRoundRobin::new(vec![("-".into(), 1)]).unwrap_or_else(|_| unreachable!())
        });
        pools.push(Pool { id, rule: PoolMatch { conditions }, rotation, manager, sla_minutes: p.sla_minutes });
    }
    if pools.is_empty() {
        c.problems.push(Problem { line: 1, message: "at least one [[pools]] is needed to route leads".into() });
    }

    // [email]
    let email = raw.email.map(|e| {
        if e.from.get_ref().parse::<lettre::message::Mailbox>().is_err() {
            c.at(&e.from, format!("[email] from '{}' is not an address (Name <a@b.c> or a@b.c)", e.from.get_ref()));
        }
        let smtp_url = secret(c, &e.smtp_url, "");
        if let Some(SecretRef::Literal(u)) = &smtp_url
            && !(u.starts_with("smtp://") || u.starts_with("smtps://"))
            && let Some(v) = &e.smtp_url
        {
            c.at(v, "[email] smtp_url must start with smtp:// or smtps:// (or be env:NAME)");
        }
        EmailSettings { from: e.from.into_inner(), smtp_url }
    });

    Settings {
        server: ServerSettings {
            listen,
            admin_token,
            webhook_secret,
            max_body_bytes,
            public_url,
            public_url_set,
            accept_secret,
            accept_link_days,
            allow_private_targets: raw.server.allow_private_targets.unwrap_or(false),
            rate_limit_per_minute,
            trusted_proxies,
        },
        sqlite: raw.store.sqlite.unwrap_or_else(|| "leadrouter.db".into()),
        dedup: DedupSettings {
            window_days,
            fold_gmail: raw.dedup.fold_gmail.unwrap_or(true),
            default_phone_region,
            re_engaged_every_minutes,
        },
        retention,
        sources: Sources { meta, google_key, google_notify_test_leads, generic, spend },
        scoring,
        reps,
        pools,
        email,
        rep_index,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_document_is_valid() {
        let s = Settings::parse(DEMO_DOCUMENT).unwrap_or_else(|p| panic!("{p}"));
        assert_eq!(s.pools[0].id, "enterprise-na");
        assert_eq!(s.pools[0].rotation.describe(), "ana:2 ben:1");
        assert_eq!(s.scoring.rules.len(), 4);
        assert_eq!(s.server.max_body_bytes, 65536);
        assert!(s.rep("ana").is_some());
    }

    #[test]
    fn every_problem_has_its_line() {
        let doc = r#"
[server]
admin_token = "env:"
webhook_secret = "s"

[[scoring.rules]]
name = "bad"
field = "job_title"
matches = "(unclosed"
points = 5

[[reps]]
id = "ana"
timezone = "Mars/Olympus"
notify = ["pager:123"]

[[pools]]
id = "p"
reps = [{ id = "ana" }, { id = "zed", weight = 0 }]
"#;
        let p = Settings::parse(doc).unwrap_err();
        let lines: Vec<usize> = p.0.iter().map(|p| p.line).collect();
        assert_eq!(lines, vec![3, 9, 14, 15, 19, 19], "{p}");
        assert!(p.to_string().contains("line 19: pool 'p' names rep 'zed'"), "{p}");
    }

    #[test]
    fn syntax_errors_point_at_their_line() {
        let p = Settings::parse("[server]\nadmin_token = \"x\"\nwebhook_secret = \n").unwrap_err();
        assert_eq!(p.0[0].line, 3, "{p}");
        let unknown = Settings::parse("[server]\nadmin_tokn = \"x\"\n").unwrap_err();
        assert_eq!(unknown.0[0].line, 2, "{unknown}");
    }

    #[test]
    fn retention_and_the_new_server_keys() {
        let base = "[server]\nadmin_token = \"x\"\nwebhook_secret = \"y\"\n[[reps]]\nid = \"ana\"\n[[pools]]\nid = \"p\"\nreps = [{ id = \"ana\" }]\n";
        let s = Settings::parse(base).unwrap();
        assert_eq!(s.retention.personal_data, Some(chrono::Duration::days(365)), "the default");
        assert_eq!(s.retention.delete_after, None);
        assert_eq!(
            (s.server.accept_link_days, s.server.rate_limit_per_minute, s.dedup.re_engaged_every_minutes),
            (7, 0, 60)
        );
        assert!(!s.server.allow_private_targets && !s.server.public_url_set);
        let doc = base.replace("[[reps]]", "[retention]\npersonal_data_days = 0.5\ndelete_after_days = 30\n[[reps]]");
        let s = Settings::parse(&doc).unwrap();
        assert_eq!(s.retention.personal_data, Some(chrono::Duration::hours(12)));
        assert_eq!(RetentionSettings::describe(chrono::Duration::days(30)), "30 days");
        let bad = base.replace("[[reps]]", "[retention]\npersonal_data_days = 30\ndelete_after_days = 10\n[[reps]]");
        assert!(Settings::parse(&bad).unwrap_err().to_string().contains("at least personal_data_days"));
        let bad = base
            .replace("webhook_secret = \"y\"", "webhook_secret = \"y\"\ntrusted_proxies = [\"10.0.0.0/8\", \"nope\"]");
        assert!(Settings::parse(&bad).unwrap_err().to_string().contains("line 4: trusted_proxies: 'nope'"));
        let mut s = Settings::parse(base).unwrap();
        s.server.listening_on("0.0.0.0:4567".parse().unwrap());
        assert_eq!(s.server.public_url, "http://127.0.0.1:4567");
    }

    #[test]
    fn secrets_resolve_from_the_environment() {
        let r = SecretRef::parse("env:TOKEN").unwrap();
        assert_eq!(r.resolve(&|n| (n == "TOKEN").then(|| "t0k".to_string())), Some("t0k".into()));
        assert_eq!(r.resolve(&|_| None), None);
        assert_eq!(format!("{:?}", Secret::new("hunter2")), "Secret(…)");
    }
}
