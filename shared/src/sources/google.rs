//! Google Ads lead form webhooks: `user_column_data` by `column_id`, `google_key` in the body.

use super::{Delivery, PayloadError, Refusal, Reply, Source, id_string};
use crate::config::SecretRef;
use crate::domain::{Intake, LeadId, normalize_lenient};
use crate::pipeline::Submission;
use serde_json::Value;

/// `[sources.google]` with its key.
#[derive(Clone, Debug)]
pub struct GoogleSource {
    pub key: SecretRef,
    /// Google's `is_test` leads reach reps only when this is set.
    pub notify_test_leads: bool,
}

impl Source for GoogleSource {
    fn name(&self) -> &str {
        "google"
    }

    fn secrets(&self) -> Vec<(String, &SecretRef)> {
        vec![("google.key".to_owned(), &self.key)]
    }

    fn signing_secret(&self) -> (String, String) {
        ("google.key".into(), "[sources.google] key".into())
    }

    fn reply(&self) -> Reply {
        Reply::Empty
    }

    /// The key travels in the body: the body is read first, and nothing else is looked at
    /// until the key matches.
    fn receive(&self, d: &Delivery<'_>, key: &str) -> Result<Vec<Submission>, Refusal> {
        let lead = parse(d.body)?;
        if !lead.key.as_deref().is_some_and(|k| super::secret_matches(k, key)) {
            return Err(Refusal::Unauthenticated("google_key is missing or wrong".into()));
        }
        let Some(lead_id) = lead.lead_id else {
            return Err(PayloadError::Invalid("lead_id is missing or not an id".into()).into());
        };
        let (intake, reject) = match normalize_lenient(lead.fields, d.intake) {
            Ok(i) => (i, None),
            // A real person filled the form: keep what came, refuse it for routing, say why.
            Err(_) => (
                Intake { contact: Default::default(), attributes: Default::default(), source: None, honeypot: false },
                Some("the google lead has no usable email or phone".to_owned()),
            ),
        };
        let mut sub = Submission::new(LeadId::derived(&format!("google:{lead_id}")), "google", intake);
        sub.source_ref = Some(lead_id);
        sub.test = lead.is_test;
        sub.reject = reject;
        Ok(vec![sub])
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct GoogleLead {
    /// Checked after the key, so that a caller without the key learns nothing.
    pub lead_id: Option<String>,
    /// `google_key`, or Google's capitalised `Google_key`.
    pub key: Option<String>,
    pub is_test: bool,
    /// Intake fields: mapped columns, then unmapped columns and the ad context as attributes.
    pub fields: Vec<(String, Value)>,
}

/// Drops commas that stand right before `}` or `]` outside strings (seen in Google's samples).
pub fn strip_trailing_commas(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len());
    let mut in_string = false;
    let mut escaped = false;
    let mut pending_comma: Option<usize> = None;
    for &b in body {
        if in_string {
            out.push(b);
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => {
                pending_comma = None;
                in_string = true;
                out.push(b);
            }
            b',' => {
                pending_comma = Some(out.len());
                out.push(b);
            }
            b'}' | b']' => {
                if let Some(at) = pending_comma.take() {
                    out.remove(at);
                }
                out.push(b);
            }
            b' ' | b'\t' | b'\n' | b'\r' => out.push(b),
            _ => {
                pending_comma = None;
                out.push(b);
            }
        }
    }
    out
}

fn column_field(column_id: &str) -> Option<&'static str> {
    Some(match column_id {
        "FULL_NAME" => "name",
        "FIRST_NAME" => "first_name",
        "LAST_NAME" => "last_name",
        "EMAIL" | "WORK_EMAIL" => "email",
        "PHONE_NUMBER" | "WORK_PHONE" => "phone",
        "CITY" => "city",
        "REGION" => "state",
        "COUNTRY" => "country",
        "COMPANY_NAME" => "company",
        "JOB_TITLE" => "job_title",
        "COMPANY_SIZE" => "company_size",
        _ => return None,
    })
}

pub fn parse(body: &[u8]) -> Result<GoogleLead, PayloadError> {
    let cleaned = strip_trailing_commas(body);
    let v: Value = serde_json::from_slice(&cleaned)
        .map_err(|e| PayloadError::Malformed(format!("the body is not valid JSON: {e}")))?;
    let obj = v.as_object().ok_or_else(|| PayloadError::Malformed("the body is not a JSON object".into()))?;
    let key = ["google_key", "Google_key", "GOOGLE_KEY"]
        .iter()
        .find_map(|k| obj.get(*k))
        .and_then(|k| k.as_str().map(str::to_owned));
    let lead_id = obj.get("lead_id").and_then(id_string);
    let is_test = matches!(obj.get("is_test"), Some(Value::Bool(true)))
        || matches!(obj.get("is_test"), Some(Value::String(s)) if s.eq_ignore_ascii_case("true"));
    let mut fields: Vec<(String, Value)> = Vec::new();
    let mut extra: Vec<(String, Value)> = Vec::new();
    match obj.get("user_column_data") {
        None | Some(Value::Null) => {}
        Some(Value::Array(cols)) => {
            for col in cols {
                let value = col.get("string_value").cloned().unwrap_or(Value::Null);
                if value.is_null() {
                    continue;
                }
                let id = col.get("column_id").and_then(Value::as_str).unwrap_or("");
                match column_field(id) {
                    Some(f) if !fields.iter().any(|(x, _)| x == f) => fields.push((f.to_owned(), value)),
                    _ => {
                        let name = col
                            .get("column_name")
                            .and_then(Value::as_str)
                            .filter(|n| !n.is_empty())
                            .unwrap_or(if id.is_empty() { "column" } else { id });
                        extra.push((name.to_ascii_lowercase().replace(' ', "_"), value));
                    }
                }
            }
        }
        Some(_) => return Err(PayloadError::Malformed("user_column_data is not a list".into())),
    }
    for k in [
        "api_version",
        "form_id",
        "campaign_id",
        "adgroup_id",
        "creative_id",
        "gcl_id",
        "asset_group_id",
        "lead_stage",
        "lead_submit_time",
    ] {
        if let Some(v) = obj.get(k).filter(|v| !v.is_null()) {
            let v = id_string(v).map(Value::String).unwrap_or_else(|| v.clone());
            extra.push((format!("google_{k}"), v));
        }
    }
    fields.extend(extra);
    Ok(GoogleLead { lead_id, key, is_test, fields })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"{
      "lead_id": "TeSter-123-ABCDEFGHIJKLMNOPQRSTUVWXYZ-abcdefghijklmnopqrstuvwxyz-0123456789-AaBbCcDdEeFfGgHhIiJjKkLl",
      "user_column_data": [
        {"column_name": "Full Name", "string_value": "FirstName LastName", "column_id": "FULL_NAME"},
        {"column_name": "User Phone", "string_value": "+16505550123", "column_id": "PHONE_NUMBER"},
        {"column_name": "User Email", "string_value": "test@example.com", "column_id": "EMAIL"},
        {"column_name": "Budget", "string_value": "5000", "column_id": "BUDGET"},
      ],
      "api_version": "1.0", "form_id": 40000000000, "campaign_id": 20000000000, "Google_key": "secret",
      "is_test": true, "gcl_id": "gcl-1", "adgroup_id": 20000000000, "creative_id": 30000000000,
    }"#;

    #[test]
    fn reads_googles_sample_with_its_quirks() {
        let g = parse(SAMPLE.as_bytes()).unwrap();
        assert!(g.lead_id.as_deref().unwrap().starts_with("TeSter-123"));
        assert_eq!(g.key.as_deref(), Some("secret"));
        assert!(g.is_test);
        let get = |k: &str| g.fields.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        assert_eq!(get("name"), Some(Value::String("FirstName LastName".into())));
        assert_eq!(get("phone"), Some(Value::String("+16505550123".into())));
        assert_eq!(get("budget"), Some(Value::String("5000".into())));
        assert_eq!(get("google_campaign_id"), Some(Value::String("20000000000".into())));
    }

    #[test]
    fn trailing_commas_only_outside_strings() {
        assert_eq!(
            strip_trailing_commas(br#"{"a": ",}", "b": [1, 2, ], }"#),
            br#"{"a": ",}", "b": [1, 2 ] }"#.to_vec()
        );
        assert!(matches!(parse(b"lead_id=1"), Err(PayloadError::Malformed(_))));
        assert_eq!(parse(br#"{"google_key": "k"}"#).unwrap().lead_id, None);
    }
}
