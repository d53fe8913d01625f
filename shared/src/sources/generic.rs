//! Generic signed webhooks: `X-Leadrouter-Signature: t=<unix>,v1=<hex>` and a JSON Pointer map.

use super::{Delivery, PayloadError, Refusal, Reply, Source, idempotency_key};
use crate::config::SecretRef;
use crate::domain::{LeadId, normalize};
use crate::pipeline::Submission;
use serde_json::Value;
use std::collections::BTreeMap;

/// `[sources.generic.NAME]`: its secret and its map.
#[derive(Clone, Debug)]
pub struct GenericSource {
    /// NAME: the `source` its leads carry and the path segment it is posted to.
    pub name: String,
    pub secret: Option<SecretRef>,
    /// Lead field → JSON Pointer (RFC 6901) into the posted document.
    pub fields: BTreeMap<String, String>,
}

impl Source for GenericSource {
    fn name(&self) -> &str {
        &self.name
    }

    fn secrets(&self) -> Vec<(String, &SecretRef)> {
        self.secret.iter().map(|s| (format!("generic.{}", self.name), s)).collect()
    }

    fn signing_secret(&self) -> (String, String) {
        (format!("generic.{}", self.name), format!("[sources.generic.{}] secret", self.name))
    }

    fn reply(&self) -> Reply {
        Reply::Stored
    }

    /// One lead, mapped by the pointers; an `Idempotency-Key` makes its id stable.
    fn receive(&self, d: &Delivery<'_>, secret: &str) -> Result<Vec<Submission>, Refusal> {
        verify(secret, d.header("x-leadrouter-signature"), d.body, d.now)
            .map_err(|e| Refusal::Unauthenticated(e.to_string()))?;
        let key = idempotency_key(d.headers)?;
        let Mapped { fields, empty } = map_fields(d.body, &self.fields)?;
        let intake = normalize(fields, d.intake).map_err(|mut errors| {
            for e in errors.iter_mut().filter(|e| e.message.contains("one of email or phone")) {
                let pointer = self.fields.get(&e.field).cloned().unwrap_or_else(|| "(not mapped)".into());
                e.message = format!("one of email or phone is required; the pointer {pointer} found nothing");
            }
            let detail = if empty.is_empty() {
                "the mapped fields are invalid".to_owned()
            } else {
                format!("these pointers found nothing: {}", empty.join(", "))
            };
            Refusal::Fields { detail, errors }
        })?;
        let id = match key {
            Some(k) => LeadId::derived(&format!("generic:{}:{k}", self.name)),
            None => LeadId::new(),
        };
        Ok(vec![Submission::new(id, self.name.clone(), intake)])
    }
}

/// How far a signature's timestamp may be from now, against replay.
pub const TOLERANCE_SECS: i64 = 300;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("X-Leadrouter-Signature is missing")]
    Missing,
    #[error("X-Leadrouter-Signature is not t=<unix>,v1=<hex>")]
    Malformed,
    #[error("the signature's timestamp is more than five minutes from now")]
    Stale,
    #[error("the signature does not match the body")]
    Mismatch,
}

/// Checks the header against `secret` at `now` (unix seconds); any one `v1` may match, so a
/// secret can be rotated.
pub fn verify(secret: &str, header: Option<&str>, body: &[u8], now: i64) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    let mut t = None;
    let mut sigs = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) => t = v.trim().parse::<i64>().ok(),
            Some(("v1", v)) => sigs.push(v.trim()),
            _ => {}
        }
    }
    let (Some(t), false) = (t, sigs.is_empty()) else { return Err(SignatureError::Malformed) };
    if (now - t).abs() > TOLERANCE_SECS {
        return Err(SignatureError::Stale);
    }
    let mut signed = format!("{t}.").into_bytes();
    signed.extend_from_slice(body);
    if !secret.is_empty() && sigs.iter().any(|s| crate::notification::hmac_verify(secret.as_bytes(), &signed, s)) {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

/// What a source's map found in a document.
#[derive(Debug, Clone, PartialEq)]
pub struct Mapped {
    /// Intake fields, by the map's lead field names.
    pub fields: Vec<(String, Value)>,
    /// The pointers that found nothing.
    pub empty: Vec<String>,
}

/// Intake fields by the source's map (lead field → JSON Pointer).
pub fn map_fields(body: &[u8], fields: &BTreeMap<String, String>) -> Result<Mapped, PayloadError> {
    let doc: Value = serde_json::from_slice(body)
        .map_err(|e| PayloadError::Malformed(format!("the body is not valid JSON: {e}")))?;
    if !doc.is_object() && !doc.is_array() {
        return Err(PayloadError::Invalid("the body must be a JSON object".into()));
    }
    let mut out = Vec::new();
    let mut empty = Vec::new();
    for (field, pointer) in fields {
        match doc.pointer(pointer) {
            Some(v) if !v.is_null() && v.as_str().is_none_or(|s| !s.trim().is_empty()) => {
                out.push((field.clone(), v.clone()))
            }
            _ => empty.push(pointer.clone()),
        }
    }
    Ok(Mapped { fields: out, empty })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(secret: &str, t: i64, body: &[u8]) -> String {
        let mut signed = format!("{t}.").into_bytes();
        signed.extend_from_slice(body);
        format!("t={t},v1={}", crate::notification::hmac_hex(secret.as_bytes(), &signed))
    }

    #[test]
    fn signature_checks() {
        let body = br#"{"a":1}"#;
        let now = 1_700_000_000;
        assert_eq!(verify("s", Some(&header("s", now, body)), body, now + 10), Ok(()));
        assert_eq!(verify("s", Some(&header("s", now, body)), body, now + 301), Err(SignatureError::Stale));
        assert_eq!(verify("s", Some(&header("x", now, body)), body, now), Err(SignatureError::Mismatch));
        assert_eq!(verify("s", Some(&header("s", now, body)), b"{}", now), Err(SignatureError::Mismatch));
        assert_eq!(verify("s", None, body, now), Err(SignatureError::Missing));
        assert_eq!(verify("s", Some("v1=ab"), body, now), Err(SignatureError::Malformed));
        let rotated = format!("{},v1=00", header("s", now, body));
        assert_eq!(verify("s", Some(&rotated), body, now), Ok(()));
    }

    #[test]
    fn pointers_map_and_empty_ones_are_named() {
        let body = br#"{"form_response":{"hidden":{"email":"a@b.co","phone":""}}}"#;
        let map = BTreeMap::from([
            ("email".to_string(), "/form_response/hidden/email".to_string()),
            ("phone".to_string(), "/form_response/hidden/phone".to_string()),
            ("company".to_string(), "/nope".to_string()),
        ]);
        let Mapped { fields: f, empty } = map_fields(body, &map).unwrap();
        assert_eq!(f, vec![("email".to_string(), Value::String("a@b.co".into()))]);
        assert_eq!(empty, ["/nope", "/form_response/hidden/phone"], "in the order of the map's fields");
    }
}
