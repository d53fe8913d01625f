//! The routing document (TOML): read once, checked with line-accurate problems, typed.
//!
//! Here: the typed settings. `raw` is the document as written, `problems` the problems found
//! in it with their lines, `checks` the checking that turns one into the other.

use crate::domain::{Pool, Region, ScoringRules};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use toml::Spanned;

/// The demo document `leadrouter serve` runs when given no `--config`.
pub const DEMO_DOCUMENT: &str = include_str!("../../../examples/leadrouter.toml");

mod checks;
mod crm;
mod problems;
mod raw;

pub(crate) use checks::valid_id;
use checks::*;
use problems::Checker;
pub use problems::{Problem, Problems};
use raw::*;

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
    /// A period as a person writes it: in the largest unit it is a whole number of (days,
    /// hours, minutes, seconds), else in seconds with three decimals.
    pub fn describe(d: chrono::Duration) -> String {
        let ms = d.num_milliseconds();
        for (unit, one) in [("day", 86_400_000), ("hour", 3_600_000), ("minute", 60_000), ("second", 1_000)] {
            if ms >= one && ms % one == 0 {
                let n = ms / one;
                return format!("{n} {unit}{}", if n == 1 { "" } else { "s" });
            }
        }
        format!("{:.3} seconds", ms as f64 / 1000.0)
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

pub use crate::sources::{GenericSource, GoogleSource, MetaSource};

#[derive(Clone, Debug, Default)]
pub struct Sources {
    pub meta: Option<MetaSource>,
    /// Configured when its key is given.
    pub google: Option<GoogleSource>,
    pub generic: BTreeMap<String, GenericSource>,
    /// `monthly_spend` per source name (`web`, `meta`, `google`, a generic source's name).
    pub spend: BTreeMap<String, f64>,
}

impl Sources {
    /// Every webhook source the document configures.
    pub fn webhooks(&self) -> impl Iterator<Item = &dyn crate::sources::Source> {
        let meta = self.meta.iter().map(|m| m as &dyn crate::sources::Source);
        let google = self.google.iter().map(|g| g as &dyn crate::sources::Source);
        meta.chain(google).chain(self.generic.values().map(|g| g as &dyn crate::sources::Source))
    }
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
    /// `[crm.*]` and `[stickiness] crm`.
    pub crm: crate::crm::CrmSettings,
    /// The document as written (the console shows it, secrets masked).
    pub document: String,
    rep_index: HashMap<String, usize>,
}

pub const DEFAULT_LISTEN: &str = "127.0.0.1:3000";
pub const DEFAULT_MAX_BODY: usize = 64 * 1024;
pub(crate) const KNOWN_FIELDS: [&str; 24] = [
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
        let mut settings = build(raw, &mut c);
        settings.document = src.to_owned();
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
            || self.sources.webhooks().any(|s| s.name().eq_ignore_ascii_case(&name))
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
        let mut out: Vec<(String, &SecretRef)> = self.sources.webhooks().flat_map(|s| s.secrets()).collect();
        if let Some(u) = self.email.as_ref().and_then(|e| e.smtp_url.as_ref()) {
            out.push(("email.smtp_url".to_owned(), u));
        }
        out.extend(self.crm.secret_refs());
        out
    }

    pub fn summary(&self) -> String {
        format!(
            "{} reps, {} pools, {} scoring rules, sources: web{}{}{}",
            self.reps.len(),
            self.pools.len(),
            self.scoring.rules.len(),
            if self.sources.meta.is_some() { ", meta" } else { "" },
            if self.sources.google.is_some() { ", google" } else { "" },
            self.sources.generic.keys().map(|k| format!(", generic/{k}")).collect::<String>(),
        )
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
        assert_eq!(RetentionSettings::describe(chrono::Duration::days(1)), "1 day");
        // A fraction of a day, as the soak sets it, reads in its own unit.
        assert_eq!(RetentionSettings::describe(chrono::Duration::seconds(12)), "12 seconds");
        assert_eq!(RetentionSettings::describe(chrono::Duration::minutes(90)), "90 minutes");
        assert_eq!(RetentionSettings::describe(chrono::Duration::hours(36)), "36 hours");
        assert_eq!(RetentionSettings::describe(chrono::Duration::milliseconds(1500)), "1.500 seconds");
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
