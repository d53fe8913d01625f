//! Turning a submission's raw fields (form, JSON, mapped webhook) into a normalized contact.

use super::email::Email;
use super::lead::Contact;
use super::phone::{Phone, Region};
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;

/// The field whose non-empty value marks a bot: answered like a success, stored as rejected.
pub const HONEYPOT_FIELD: &str = "website_url";
const MAX_TEXT: usize = 1_000;
const MAX_MESSAGE: usize = 10_000;
const MAX_ATTRIBUTES: usize = 200;
const MAX_KEY: usize = 128;

/// A problem with one field of a submission.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> FieldError {
        FieldError { field: field.into(), message: message.into() }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Intake {
    pub contact: Contact,
    pub attributes: BTreeMap<String, Value>,
    /// The `source` the form named, if any.
    pub source: Option<String>,
    pub honeypot: bool,
}

/// Why a form that filled in the honeypot is rejected.
pub const HONEYPOT: &str = "honeypot: the hidden website_url field was filled in";

impl Intake {
    /// The lead these fields make, arriving at `at` from the `source` the form named (else
    /// `web`): what the preview and routing tests decide on without storing anything.
    pub fn into_lead(self, at: chrono::DateTime<chrono::Utc>) -> super::Lead {
        let source = self.source.unwrap_or_else(|| "web".into());
        let mut lead = super::Lead::new(super::LeadId::new(), source, self.contact, at);
        lead.attributes = self.attributes;
        lead
    }
}

#[derive(Clone, Copy, Debug)]
pub struct IntakeOptions {
    pub default_region: Region,
}

fn collapse(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn as_text(field: &str, v: &Value, errors: &mut Vec<FieldError>) -> Option<String> {
    let s = match v {
        Value::Null => return None,
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Array(_) | Value::Object(_) => {
            errors.push(FieldError::new(field, "must be a string, not a list or an object"));
            return None;
        }
    };
    let limit = if field == "message" { MAX_MESSAGE } else { MAX_TEXT };
    if s.chars().count() > limit {
        errors.push(FieldError::new(field, format!("is longer than {limit} characters")));
        return None;
    }
    let s = if field == "message" { s.trim().to_owned() } else { collapse(&s) };
    (!s.is_empty()).then_some(s)
}

/// Country names people type, to ISO 3166-1 alpha-2; two-letter codes are uppercased.
fn normalize_country(s: String) -> String {
    if s.len() == 2 && s.chars().all(|c| c.is_ascii_alphabetic()) {
        return s.to_ascii_uppercase();
    }
    let known = match s.to_lowercase().trim_end_matches('.') {
        "usa" | "u.s.a" | "u.s" | "united states" | "united states of america" | "america" => "US",
        "canada" => "CA",
        "uk" | "u.k" | "united kingdom" | "great britain" | "england" | "scotland" | "wales" => "GB",
        "germany" | "deutschland" => "DE",
        "france" => "FR",
        "spain" | "españa" => "ES",
        "italy" | "italia" => "IT",
        "netherlands" | "the netherlands" | "holland" => "NL",
        "australia" => "AU",
        "ireland" => "IE",
        "india" => "IN",
        "brazil" | "brasil" => "BR",
        "mexico" | "méxico" => "MX",
        "japan" => "JP",
        _ => return s,
    };
    known.to_owned()
}

fn as_bool(field: &str, v: &Value, errors: &mut Vec<FieldError>) -> Option<bool> {
    match v {
        Value::Null => None,
        Value::Bool(b) => Some(*b),
        Value::Number(n) => Some(n.as_f64().is_some_and(|x| x != 0.0)),
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "" => None,
            "true" | "yes" | "y" | "on" | "1" | "checked" | "agreed" => Some(true),
            "false" | "no" | "n" | "off" | "0" => Some(false),
            _ => {
                errors.push(FieldError::new(field, "must be yes/no, true/false, on/off or 1/0"));
                None
            }
        },
        _ => {
            errors.push(FieldError::new(field, "must be a boolean"));
            None
        }
    }
}

/// Normalizes a submission. Every problem is reported, not just the first.
pub fn normalize(fields: Vec<(String, Value)>, opts: IntakeOptions) -> Result<Intake, Vec<FieldError>> {
    let mut c = Contact::default();
    let mut attributes = BTreeMap::new();
    let mut errors = Vec::new();
    let mut source = None;
    let mut honeypot = false;
    let mut raw_email = None;
    let mut raw_phone = None;
    for (key, value) in fields {
        let key = key.trim().to_owned();
        let slot: &mut Option<String> = match key.as_str() {
            "email" => {
                raw_email = as_text("email", &value, &mut errors);
                continue;
            }
            "phone" => {
                raw_phone = as_text("phone", &value, &mut errors);
                continue;
            }
            "consent" => {
                c.consent = as_bool("consent", &value, &mut errors);
                continue;
            }
            HONEYPOT_FIELD => {
                honeypot |= match &value {
                    Value::Null => false,
                    Value::String(s) => !s.trim().is_empty(),
                    _ => true,
                };
                continue;
            }
            "source" => &mut source,
            "first_name" => &mut c.first_name,
            "last_name" => &mut c.last_name,
            "name" => &mut c.name,
            "company" => &mut c.company,
            "job_title" => &mut c.job_title,
            "website" => &mut c.website,
            "country" => &mut c.country,
            "state" => &mut c.state,
            "city" => &mut c.city,
            "company_size" => &mut c.company_size,
            "industry" => &mut c.industry,
            "message" => &mut c.message,
            "utm_source" => &mut c.utm_source,
            "utm_medium" => &mut c.utm_medium,
            "utm_campaign" => &mut c.utm_campaign,
            "utm_term" => &mut c.utm_term,
            "utm_content" => &mut c.utm_content,
            _ => {
                if key.is_empty() || value.is_null() {
                    continue;
                }
                if key.chars().count() > MAX_KEY {
                    errors.push(FieldError::new(
                        key.chars().take(32).collect::<String>(),
                        format!("field names are at most {MAX_KEY} characters"),
                    ));
                } else if attributes.len() >= MAX_ATTRIBUTES {
                    errors.push(FieldError::new(key, format!("at most {MAX_ATTRIBUTES} extra fields are kept")));
                } else {
                    attributes.insert(key, value);
                }
                continue;
            }
        };
        *slot = as_text(&key, &value, &mut errors);
    }
    c.country = c.country.map(normalize_country);
    if let Some(raw) = raw_email {
        match Email::parse(&raw) {
            Ok(e) => c.email = Some(e),
            Err(e) => errors.push(FieldError::new("email", format!("is not an email address: it {e}"))),
        }
    }
    if let Some(raw) = raw_phone {
        match Phone::parse(&raw, opts.default_region) {
            Ok(p) => c.phone = Some(p),
            Err(e) => errors.push(FieldError::new("phone", format!("is not a phone number: it {e}"))),
        }
    }
    let had_contact_error = errors.iter().any(|e| e.field == "email" || e.field == "phone");
    if c.email.is_none() && c.phone.is_none() && !had_contact_error {
        errors.push(FieldError::new("email", "one of email or phone is required"));
        errors.push(FieldError::new("phone", "one of email or phone is required"));
    }
    if errors.is_empty() { Ok(Intake { contact: c, attributes, source, honeypot }) } else { Err(errors) }
}

/// For platform leads, which are real people whatever a field holds: a field that fails to
/// normalize is kept raw as the attribute `invalid_<field>`, and only a lead left with neither
/// email nor phone is refused.
pub fn normalize_lenient(fields: Vec<(String, Value)>, opts: IntakeOptions) -> Result<Intake, Vec<FieldError>> {
    let errors = match normalize(fields.clone(), opts) {
        Ok(i) => return Ok(i),
        Err(e) => e,
    };
    let bad: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
    let mut kept = Vec::with_capacity(fields.len());
    let mut invalid = Vec::new();
    for (k, v) in fields {
        if bad.contains(&k.trim()) {
            invalid.push((format!("invalid_{}", k.trim()), v));
        } else {
            kept.push((k, v));
        }
    }
    let mut intake = normalize(kept, opts)?;
    intake.attributes.extend(invalid);
    Ok(intake)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn opts() -> IntakeOptions {
        IntakeOptions { default_region: Region::default() }
    }

    fn kv(pairs: &[(&str, Value)]) -> Vec<(String, Value)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()
    }

    #[test]
    fn normalizes_known_fields_and_keeps_the_rest() {
        let i = normalize(
            kv(&[
                ("email", json!(" Jane@ACME.com ")),
                ("name", json!("  Jane   Doe ")),
                ("company_size", json!(500)),
                ("country", json!("united states")),
                ("consent", json!("on")),
                ("favourite_color", json!("teal")),
                ("website_url", json!("")),
            ]),
            opts(),
        )
        .unwrap();
        assert_eq!(i.contact.email.unwrap().as_str(), "Jane@acme.com");
        assert_eq!(i.contact.name.as_deref(), Some("Jane Doe"));
        assert_eq!(i.contact.company_size.as_deref(), Some("500"));
        assert_eq!(i.contact.country.as_deref(), Some("US"));
        assert_eq!(i.contact.consent, Some(true));
        assert_eq!(i.attributes.get("favourite_color"), Some(&json!("teal")));
        assert!(!i.honeypot);
    }

    #[test]
    fn honeypot_is_flagged_not_kept() {
        let i = normalize(kv(&[("phone", json!("+1 415 555 0132")), ("website_url", json!("http://spam"))]), opts())
            .unwrap();
        assert!(i.honeypot);
        assert!(i.attributes.is_empty());
    }

    #[test]
    fn every_problem_is_reported() {
        let errs =
            normalize(kv(&[("email", json!("nope")), ("phone", json!("12")), ("consent", json!("maybe"))]), opts())
                .unwrap_err();
        let fields: Vec<_> = errs.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, vec!["consent", "email", "phone"]);
        let none = normalize(kv(&[("name", json!("x"))]), opts()).unwrap_err();
        assert_eq!(none.len(), 2);
        assert!(none[0].message.contains("one of email or phone"));
    }

    #[test]
    fn lenient_keeps_bad_fields_raw() {
        let i = normalize_lenient(kv(&[("email", json!("a@b.co")), ("phone", json!("12"))]), opts()).unwrap();
        assert_eq!(i.contact.email.unwrap().as_str(), "a@b.co");
        assert_eq!(i.attributes.get("invalid_phone"), Some(&json!("12")));
        assert!(normalize_lenient(kv(&[("email", json!("nope"))]), opts()).is_err());
    }

    proptest! {
        #[test]
        fn never_panics(pairs in proptest::collection::vec(("[a-z_]{0,12}", "\\PC{0,40}"), 0..12)) {
            let fields = pairs.into_iter().map(|(k, v)| (k, Value::String(v))).collect();
            let _ = normalize(fields, opts());
        }

        #[test]
        fn normalizing_normalized_output_changes_nothing(name in "[A-Za-z ]{0,20}", company in "[A-Za-z0-9 ]{0,20}", country in "[A-Za-z]{2}") {
            let first = normalize(kv(&[("email", json!("a@b.co")), ("name", json!(name)), ("company", json!(company)), ("country", json!(country))]), opts()).unwrap();
            let again: Vec<(String, Value)> = ["email", "name", "company", "country"].iter()
                .filter_map(|f| first.contact.field(f).map(|v| (f.to_string(), json!(v)))).collect();
            let second = normalize(again, opts()).unwrap();
            prop_assert_eq!(first.contact, second.contact);
        }
    }
}
