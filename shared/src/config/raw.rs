//! The document as written: what TOML deserializes into, every value with its span for
//! line-accurate problems.

use serde::Deserialize;
use std::collections::BTreeMap;
use toml::Spanned;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    #[serde(default)]
    pub(super) server: RawServer,
    #[serde(default)]
    pub(super) store: RawStore,
    #[serde(default)]
    pub(super) dedup: RawDedup,
    #[serde(default)]
    pub(super) retention: RawRetention,
    #[serde(default)]
    pub(super) sources: RawSources,
    #[serde(default)]
    pub(super) scoring: RawScoring,
    #[serde(default)]
    pub(super) reps: Vec<RawRep>,
    #[serde(default)]
    pub(super) pools: Vec<RawPool>,
    pub(super) email: Option<RawEmail>,
    #[serde(default)]
    pub(super) crm: RawCrm,
    #[serde(default)]
    pub(super) stickiness: RawStickiness,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCrm {
    pub(super) hubspot: Option<RawHubSpot>,
    pub(super) salesforce: Option<RawSalesforce>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHubSpot {
    pub(super) token: Option<Spanned<String>>,
    pub(super) webhook_secret: Option<Spanned<String>>,
    pub(super) api_base_url: Option<Spanned<String>>,
    /// Contact property → lead field, over the defaults; `""` leaves a default property out.
    #[serde(default)]
    pub(super) properties: BTreeMap<String, Spanned<String>>,
    pub(super) id_property: Option<String>,
    /// Property → value → sales status, each table replacing its default.
    #[serde(default)]
    pub(super) outcomes: BTreeMap<String, BTreeMap<String, Spanned<String>>>,
    pub(super) requests_per_10s: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSalesforce {
    pub(super) instance_url: Option<Spanned<String>>,
    pub(super) client_id: Option<Spanned<String>>,
    pub(super) client_secret: Option<Spanned<String>>,
    pub(super) external_id_field: Option<Spanned<String>>,
    pub(super) api_version: Option<Spanned<String>>,
    /// Lead field (API name) → lead field, over the defaults; `""` leaves a default out.
    #[serde(default)]
    pub(super) fields: BTreeMap<String, Spanned<String>>,
    #[serde(default)]
    pub(super) outcomes: BTreeMap<String, BTreeMap<String, Spanned<String>>>,
    pub(super) company_fallback: Option<String>,
    pub(super) last_name_fallback: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStickiness {
    pub(super) crm: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEmail {
    pub(super) from: Spanned<String>,
    pub(super) smtp_url: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawServer {
    pub(super) listen: Option<Spanned<String>>,
    pub(super) admin_token: Option<Spanned<String>>,
    pub(super) webhook_secret: Option<Spanned<String>>,
    pub(super) max_body_bytes: Option<Spanned<i64>>,
    pub(super) public_url: Option<Spanned<String>>,
    pub(super) accept_secret: Option<Spanned<String>>,
    pub(super) accept_link_days: Option<Spanned<i64>>,
    pub(super) allow_private_targets: Option<bool>,
    pub(super) rate_limit_per_minute: Option<Spanned<i64>>,
    pub(super) trusted_proxies: Option<Vec<Spanned<String>>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStore {
    pub(super) sqlite: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDedup {
    pub(super) window_days: Option<Spanned<i64>>,
    pub(super) fold_gmail: Option<bool>,
    pub(super) default_phone_region: Option<Spanned<String>>,
    pub(super) re_engaged_every_minutes: Option<Spanned<i64>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRetention {
    pub(super) personal_data_days: Option<Spanned<f64>>,
    pub(super) delete_after_days: Option<Spanned<f64>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSources {
    pub(super) meta: Option<RawMeta>,
    pub(super) google: Option<RawGoogle>,
    /// Web forms posting to `/v1/leads`: only a spend to set.
    pub(super) web: Option<RawWeb>,
    #[serde(default)]
    pub(super) generic: BTreeMap<String, RawGeneric>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMeta {
    pub(super) verify_token: Option<Spanned<String>>,
    pub(super) app_secret: Option<Spanned<String>>,
    pub(super) access_token: Option<Spanned<String>>,
    pub(super) graph_base_url: Option<Spanned<String>>,
    /// Lead field → the form's field name, over Meta's conventional names.
    #[serde(default)]
    pub(super) fields: BTreeMap<String, String>,
    pub(super) monthly_spend: Option<Spanned<f64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWeb {
    pub(super) monthly_spend: Option<Spanned<f64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawGoogle {
    pub(super) key: Option<Spanned<String>>,
    pub(super) notify_test_leads: Option<bool>,
    pub(super) monthly_spend: Option<Spanned<f64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawGeneric {
    pub(super) secret: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) fields: BTreeMap<String, Spanned<String>>,
    pub(super) monthly_spend: Option<Spanned<f64>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawScoring {
    pub(super) grades: Option<Spanned<BTreeMap<String, i64>>>,
    pub(super) disqualify_below: Option<i64>,
    #[serde(default)]
    pub(super) rules: Vec<RawRule>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRule {
    pub(super) name: Spanned<String>,
    pub(super) field: Spanned<String>,
    pub(super) matches: Option<Spanned<String>>,
    pub(super) free_email: Option<bool>,
    pub(super) gte: Option<f64>,
    pub(super) lte: Option<f64>,
    #[serde(rename = "in")]
    pub(super) one_of: Option<Vec<String>>,
    pub(super) points: i64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRep {
    pub(super) id: Spanned<String>,
    pub(super) name: Option<String>,
    pub(super) email: Option<String>,
    #[serde(default)]
    pub(super) notify: Vec<Spanned<String>>,
    pub(super) timezone: Option<Spanned<String>>,
    pub(super) working_hours: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) out_of_office: Vec<Spanned<String>>,
    pub(super) max_open_leads: Option<u32>,
    pub(super) active: Option<bool>,
    pub(super) crm_owner: Option<crate::domain::CrmOwner>,
}

#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPool {
    pub(super) id: Spanned<String>,
    #[serde(rename = "match", default)]
    pub(super) rule: Option<Spanned<indexmap::IndexMap<String, OneOrMany>>>,
    #[serde(default)]
    pub(super) reps: Vec<RawPoolRep>,
    pub(super) manager: Option<RawManager>,
    pub(super) sla_minutes: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPoolRep {
    pub(super) id: Spanned<String>,
    pub(super) weight: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawManager {
    pub(super) name: String,
    #[serde(default)]
    pub(super) notify: Vec<Spanned<String>>,
}
