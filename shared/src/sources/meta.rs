//! Meta Lead Ads: `leadgen` change notifications, their signature, and Graph API lead bodies.

use super::{Delivery, PayloadError, Refusal, Reply, Source, id_string};
use crate::config::SecretRef;
use crate::domain::{Intake, LeadId};
use crate::pipeline::Submission;
use serde_json::Value;
use std::collections::BTreeMap;

/// `[sources.meta]`: the app's secrets and where the Graph API is.
#[derive(Clone, Debug)]
pub struct MetaSource {
    pub verify_token: Option<SecretRef>,
    pub app_secret: Option<SecretRef>,
    pub access_token: Option<SecretRef>,
    pub graph_base_url: String,
    pub fields: BTreeMap<String, String>,
}

impl Source for MetaSource {
    fn name(&self) -> &str {
        "meta"
    }

    fn secrets(&self) -> Vec<(String, &SecretRef)> {
        [
            ("meta.verify_token", &self.verify_token),
            ("meta.app_secret", &self.app_secret),
            ("meta.access_token", &self.access_token),
        ]
        .into_iter()
        .filter_map(|(n, s)| Some((n.to_owned(), s.as_ref()?)))
        .collect()
    }

    fn signing_secret(&self) -> (String, String) {
        ("meta.app_secret".into(), "[sources.meta] app_secret".into())
    }

    fn reply(&self) -> Reply {
        Reply::Listed
    }

    /// Each `leadgen` change is a lead whose fields are fetched from the Graph API later.
    fn receive(&self, d: &Delivery<'_>, app_secret: &str) -> Result<Vec<Submission>, Refusal> {
        if !signature_valid(app_secret, d.header("x-hub-signature-256"), d.body) {
            return Err(Refusal::Unauthenticated("X-Hub-Signature-256 is missing or does not match the body".into()));
        }
        let changes = parse_notification(d.body)?;
        Ok(changes
            .into_iter()
            .map(|c| {
                let attributes = c.context.into_iter().map(|(k, v)| (format!("meta_{k}"), Value::String(v))).collect();
                let intake = Intake { contact: Default::default(), attributes, source: None, honeypot: false };
                let mut sub = Submission::new(LeadId::derived(&format!("meta:{}", c.leadgen_id)), "meta", intake);
                sub.source_ref = Some(c.leadgen_id);
                sub.fetch = true;
                sub
            })
            .collect())
    }
}

/// The most changes one notification may carry (Meta batches up to 1,000).
pub const MAX_CHANGES: usize = 5_000;

/// One `leadgen` change: a lead to fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeadgenChange {
    pub leadgen_id: String,
    /// page_id, form_id, ad_id, adgroup_id, created_time, as given.
    pub context: BTreeMap<String, String>,
}

/// `X-Hub-Signature-256: sha256=<hex>` over the raw body, keyed by the app secret.
pub fn signature_valid(app_secret: &str, header: Option<&str>, body: &[u8]) -> bool {
    let Some(hex_sig) = header.and_then(|h| h.trim().strip_prefix("sha256=")) else { return false };
    !app_secret.is_empty() && crate::notification::hmac_verify(app_secret.as_bytes(), body, hex_sig)
}

/// Reads every `leadgen` change of a notification; other fields are ignored.
pub fn parse_notification(body: &[u8]) -> Result<Vec<LeadgenChange>, PayloadError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| PayloadError::Malformed(format!("the body is not valid JSON: {e}")))?;
    let obj = v.as_object().ok_or_else(|| PayloadError::Malformed("the body is not a JSON object".into()))?;
    let entries = match obj.get("entry") {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(a)) => a,
        Some(_) => return Err(PayloadError::Malformed("'entry' is not a list".into())),
    };
    let mut out = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        let changes = match entry.get("changes") {
            None | Some(Value::Null) => continue,
            Some(Value::Array(c)) => c,
            Some(_) => return Err(PayloadError::Malformed(format!("entry[{i}].changes is not a list"))),
        };
        for (j, change) in changes.iter().enumerate() {
            if change.get("field").and_then(Value::as_str) != Some("leadgen") {
                continue;
            }
            let value = change.get("value").and_then(Value::as_object).ok_or_else(|| {
                PayloadError::Invalid(format!("entry[{i}].changes[{j}] is a leadgen change without a value object"))
            })?;
            let leadgen_id = value.get("leadgen_id").and_then(id_string).ok_or_else(|| {
                PayloadError::Invalid(format!("entry[{i}].changes[{j}].value.leadgen_id is missing or not an id"))
            })?;
            let mut context = BTreeMap::new();
            for key in ["page_id", "form_id", "ad_id", "adgroup_id", "created_time"] {
                if let Some(s) = value.get(key).and_then(id_string) {
                    context.insert(key.to_owned(), s);
                }
            }
            out.push(LeadgenChange { leadgen_id, context });
            if out.len() > MAX_CHANGES {
                return Err(PayloadError::Invalid(format!(
                    "more than {MAX_CHANGES} leadgen changes in one notification"
                )));
            }
        }
    }
    Ok(out)
}

/// The conventional `field_data` names of Meta's form builder, to lead fields.
pub const DEFAULT_FIELD_MAP: [(&str, &str); 14] = [
    ("full_name", "name"),
    ("first_name", "first_name"),
    ("last_name", "last_name"),
    ("email", "email"),
    ("work_email", "email"),
    ("phone_number", "phone"),
    ("work_phone_number", "phone"),
    ("company_name", "company"),
    ("job_title", "job_title"),
    ("city", "city"),
    ("state", "state"),
    ("province", "state"),
    ("country", "country"),
    ("website", "website"),
];

/// A lead as the Graph API returns it, mapped to intake fields; unmapped answers are kept
/// under their own names (they become attributes).
pub fn parse_graph_lead(
    body: &[u8],
    field_map: &BTreeMap<String, String>,
) -> Result<Vec<(String, Value)>, PayloadError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| PayloadError::Malformed(format!("the Graph answer is not JSON: {e}")))?;
    let obj = v.as_object().ok_or_else(|| PayloadError::Malformed("the Graph answer is not an object".into()))?;
    // field_map: lead field -> form field name (from [sources.meta] fields), over the defaults.
    let mut by_form_name: BTreeMap<&str, &str> = DEFAULT_FIELD_MAP.iter().copied().collect();
    for (lead_field, form_name) in field_map {
        by_form_name.insert(form_name.as_str(), lead_field.as_str());
    }
    let mut out: Vec<(String, Value)> = Vec::new();
    if let Some(Value::Array(data)) = obj.get("field_data") {
        for item in data {
            let Some(name) = item.get("name").and_then(Value::as_str) else { continue };
            let value = match item.get("values") {
                Some(Value::Array(vals)) => {
                    let texts: Vec<String> =
                        vals.iter().filter_map(|x| x.as_str().map(str::to_owned).or_else(|| id_string(x))).collect();
                    Value::String(texts.join(", "))
                }
                Some(other) => other.clone(),
                None => continue,
            };
            let field = by_form_name.get(name).map(|f| f.to_string()).unwrap_or_else(|| name.to_owned());
            if !out.iter().any(|(f, _)| *f == field) {
                out.push((field, value));
            }
        }
    }
    for key in [
        "created_time",
        "ad_id",
        "ad_name",
        "adset_id",
        "campaign_id",
        "campaign_name",
        "form_id",
        "is_organic",
        "platform",
    ] {
        if let Some(v) = obj.get(key).filter(|v| !v.is_null()) {
            out.push((format!("meta_{key}"), v.clone()));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"{"object":"page","entry":[{"id":153125381133,"time":1438292065,"changes":[{"field":"leadgen",
        "value":{"leadgen_id":123123123123,"page_id":123123123,"form_id":12312312312,"adgroup_id":12312312312,
        "ad_id":12312312312,"created_time":1440120384}}]}]}"#;

    #[test]
    fn reads_metas_sample_with_numeric_and_string_ids() {
        let c = parse_notification(SAMPLE.as_bytes()).unwrap();
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].leadgen_id, "123123123123");
        assert_eq!(c[0].context["form_id"], "12312312312");
        let s = SAMPLE.replace("123123123123", "\"123123123123\"");
        assert_eq!(parse_notification(s.as_bytes()).unwrap()[0].leadgen_id, "123123123123");
    }

    #[test]
    fn batches_and_other_fields() {
        let body = r#"{"object":"page","entry":[
            {"changes":[{"field":"feed","value":{}},{"field":"leadgen","value":{"leadgen_id":"1"}}]},
            {"changes":[{"field":"leadgen","value":{"leadgen_id":2}},{"field":"leadgen","value":{"leadgen_id":"3"}}]}]}"#;
        let ids: Vec<String> = parse_notification(body.as_bytes()).unwrap().into_iter().map(|c| c.leadgen_id).collect();
        assert_eq!(ids, ["1", "2", "3"]);
        assert!(
            parse_notification(br#"{"object":"page","entry":[{"changes":[{"field":"feed"}]}]}"#).unwrap().is_empty()
        );
        assert!(matches!(parse_notification(b"nope"), Err(PayloadError::Malformed(_))));
        assert!(matches!(
            parse_notification(br#"{"entry":[{"changes":[{"field":"leadgen","value":{"leadgen_id":{}}}]}]}"#),
            Err(PayloadError::Invalid(_))
        ));
    }

    #[test]
    fn signatures_are_over_the_raw_bytes() {
        let sig = format!("sha256={}", crate::notification::hmac_hex(b"app-secret", SAMPLE.as_bytes()));
        assert!(signature_valid("app-secret", Some(&sig), SAMPLE.as_bytes()));
        assert!(!signature_valid("app-secret", Some(&sig), SAMPLE.replace(' ', "").as_bytes()));
        assert!(!signature_valid("other", Some(&sig), SAMPLE.as_bytes()));
        assert!(!signature_valid("app-secret", None, SAMPLE.as_bytes()));
        assert!(!signature_valid("app-secret", Some("sha1=abc"), SAMPLE.as_bytes()));
    }

    #[test]
    fn graph_field_data_is_mapped_and_the_rest_kept() {
        let body = r#"{"created_time":"2015-02-28T08:49:14+0000","id":"1","ad_id":"9","form_id":"7",
            "field_data":[{"name":"full_name","values":["Joe Example"]},{"name":"email","values":["joe@example.com"]},
            {"name":"budget","values":["10k"]},{"name":"work_mail","values":["joe@work.com"]}]}"#;
        let map = BTreeMap::from([("email".to_string(), "work_mail".to_string())]);
        let f = parse_graph_lead(body.as_bytes(), &map).unwrap();
        let get = |k: &str| f.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        assert_eq!(get("name"), Some(Value::String("Joe Example".into())));
        assert_eq!(get("email"), Some(Value::String("joe@example.com".into())), "first email wins");
        assert_eq!(get("budget"), Some(Value::String("10k".into())));
        assert_eq!(get("meta_ad_id"), Some(Value::String("9".into())));
    }
}
