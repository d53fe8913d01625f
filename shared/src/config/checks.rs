//! From the document as written to typed settings: every value checked, every problem kept
//! with its line.

use super::raw::*;
use super::*;
use crate::domain::availability::{DateRange, WorkingHours};
use crate::domain::round_robin::MAX_WEIGHT;
use crate::domain::{Condition, Manager, Pool, PoolMatch, Region, Rule, ScoringRules, WeightedRoundRobin};
use std::collections::{BTreeMap, HashMap, HashSet};
use toml::Spanned;

pub(super) fn secret(c: &mut Checker, s: &Option<Spanned<String>>, required: &str) -> Option<SecretRef> {
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

pub(super) fn targets(c: &mut Checker, list: &[Spanned<String>], whose: &str) -> Vec<String> {
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
pub(super) fn bounded(c: &mut Checker, v: &Option<Spanned<i64>>, name: &str, lo: u32, hi: u32, default: u32) -> u32 {
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

pub(super) fn build(raw: RawConfig, c: &mut Checker) -> Settings {
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
    let google = raw.sources.google.and_then(|g| {
        let key = secret(c, &g.key, "[sources.google] key")?;
        Some(GoogleSource { key, notify_test_leads: g.notify_test_leads.unwrap_or(false) })
    });
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
        generic.insert(name.clone(), GenericSource { name, secret, fields });
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
            crm_owner: r.crm_owner.unwrap_or_default(),
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

    let crm = super::crm::build(raw.crm, raw.stickiness, c);

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
        sources: Sources { meta, google, generic, spend },
        scoring,
        reps,
        pools,
        email,
        crm,
        document: String::new(),
        rep_index,
    }
}
