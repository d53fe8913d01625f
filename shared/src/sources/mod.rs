//! The lead sources that deliver by webhook, without I/O: Meta Lead Ads, Google Ads lead forms,
//! and generic signed webhooks mapped by JSON Pointers. Each is a [`Source`]: its settings, how
//! a delivery is verified, and how it is read into leads, in one module. The HTTP layer reads
//! the body, hands it to the source, and stores what comes back. Each parser is fuzzed.

pub mod form;
pub mod generic;
pub mod google;
pub mod meta;

pub use generic::GenericSource;
pub use google::GoogleSource;
pub use meta::MetaSource;

use crate::config::SecretRef;
use crate::domain::{FieldError, IntakeOptions};
use crate::pipeline::Submission;
use axum::http::HeaderMap;

/// A webhook delivery as it came: nothing in it is trusted yet.
pub struct Delivery<'a> {
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
    /// Unix seconds, for signatures that carry their time.
    pub now: i64,
    pub intake: IntakeOptions,
}

impl Delivery<'_> {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// How a source answers a delivery it took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// `202` with the lead's id, as `POST /v1/leads` answers.
    Stored,
    /// `200` with how many leads came and their ids (Meta's batches).
    Listed,
    /// `200 {}`: the platform wants nothing back (Google).
    Empty,
}

/// Why a delivery is refused. Nothing of it is stored.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Refusal {
    /// The signature or key is missing or wrong (401).
    #[error("{0}")]
    Unauthenticated(String),
    /// Not the source's shape (400), or a required value missing (422).
    #[error(transparent)]
    Payload(#[from] PayloadError),
    /// Read, but its fields are invalid (422, each listed).
    #[error("{detail}")]
    Fields { detail: String, errors: Vec<FieldError> },
}

/// A lead source that delivers by webhook. A new source is a module implementing this, its
/// entry in `config::Sources`, and its route.
pub trait Source: Send + Sync {
    /// The `source` its leads carry; a web form may not claim it.
    fn name(&self) -> &str;
    /// Its secrets, each by the name the runtime looks it up under.
    fn secrets(&self) -> Vec<(String, &SecretRef)>;
    /// The secret deliveries are checked with: its lookup name, and where the document sets it.
    fn signing_secret(&self) -> (String, String);
    /// What a delivery it took is answered with.
    fn reply(&self) -> Reply;
    /// Verifies `delivery` with `secret` and reads the leads it carries.
    fn receive(&self, delivery: &Delivery<'_>, secret: &str) -> Result<Vec<Submission>, Refusal>;
}

/// Whether `given` is the secret `expected`, in constant time; an empty secret matches nothing.
pub fn secret_matches(given: &str, expected: &str) -> bool {
    use subtle::ConstantTimeEq;
    !expected.is_empty() && bool::from(given.as_bytes().ct_eq(expected.as_bytes()))
}

const MAX_IDEMPOTENCY_KEY: usize = 255;

/// The `Idempotency-Key` header, if present and sane.
pub fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, PayloadError> {
    let Some(v) = headers.get("idempotency-key") else { return Ok(None) };
    let key = v.to_str().map_err(|_| PayloadError::Malformed("Idempotency-Key must be printable ASCII".into()))?.trim();
    if key.is_empty() || key.len() > MAX_IDEMPOTENCY_KEY {
        return Err(PayloadError::Malformed(format!("Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} characters")));
    }
    Ok(Some(key.to_owned()))
}

/// Why a payload cannot be read; answered as 400 or 422 by the HTTP layer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    /// Not JSON, or not the shape at all.
    #[error("{0}")]
    Malformed(String),
    /// Well-formed, but a required value is missing or wrong.
    #[error("{0}")]
    Invalid(String),
}

/// A JSON id that platforms send as a number or as a string.
pub(crate) fn id_string(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) if !s.trim().is_empty() && s.len() <= 128 => Some(s.trim().to_owned()),
        serde_json::Value::Number(n) if n.is_u64() || n.is_i64() => Some(n.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::LeadId;
    use axum::http::HeaderValue;

    fn delivery<'a>(headers: &'a HeaderMap, body: &'a [u8]) -> Delivery<'a> {
        Delivery { headers, body, now: 1_700_000_000, intake: IntakeOptions { default_region: Default::default() } }
    }

    fn literal(s: &str) -> SecretRef {
        SecretRef::Literal(s.into())
    }

    /// Each source through the seam alone: verified with its secret, read into leads with their
    /// ids and source, and refused (nothing returned) when the signature or key is wrong.
    #[test]
    fn each_source_verifies_and_reads_through_the_seam() {
        let meta = MetaSource {
            verify_token: None,
            app_secret: Some(literal("app")),
            access_token: None,
            graph_base_url: String::new(),
            fields: Default::default(),
        };
        let body = br#"{"entry":[{"changes":[{"field":"leadgen","value":{"leadgen_id":"44","form_id":"7"}}]}]}"#;
        let mut h = HeaderMap::new();
        let sig = format!("sha256={}", crate::notification::hmac_hex(b"app", body));
        h.insert("x-hub-signature-256", HeaderValue::from_str(&sig).unwrap());
        let subs = (&meta as &dyn Source).receive(&delivery(&h, body), "app").unwrap();
        assert_eq!(subs.len(), 1);
        assert_eq!(
            (subs[0].id.clone(), subs[0].source.as_str(), subs[0].fetch),
            (LeadId::derived("meta:44"), "meta", true)
        );
        assert!(matches!(meta.receive(&delivery(&h, body), "other"), Err(Refusal::Unauthenticated(_))));
        assert_eq!(meta.secrets().len(), 1, "only the secrets the document sets");

        let google = GoogleSource { key: literal("k"), notify_test_leads: false };
        let body = br#"{"lead_id":"g1","google_key":"k","is_test":true,"user_column_data":[{"column_id":"EMAIL","string_value":"a@b.co"}]}"#;
        let none = HeaderMap::new();
        let subs = google.receive(&delivery(&none, body), "k").unwrap();
        assert_eq!((subs[0].id.clone(), subs[0].test), (LeadId::derived("google:g1"), true));
        assert!(matches!(google.receive(&delivery(&none, body), "x"), Err(Refusal::Unauthenticated(_))));
        let no_id = br#"{"google_key":"k"}"#;
        assert!(matches!(
            google.receive(&delivery(&none, no_id), "k"),
            Err(Refusal::Payload(PayloadError::Invalid(_)))
        ));

        let typeform = GenericSource {
            name: "typeform".into(),
            secret: Some(literal("s")),
            fields: [("email".to_string(), "/a/email".to_string())].into(),
        };
        let body = br#"{"a":{"email":"x@y.co"}}"#;
        let mut signed = b"1700000000.".to_vec();
        signed.extend_from_slice(body);
        let mut h = HeaderMap::new();
        let sig = format!("t=1700000000,v1={}", crate::notification::hmac_hex(b"s", &signed));
        h.insert("x-leadrouter-signature", HeaderValue::from_str(&sig).unwrap());
        h.insert("idempotency-key", HeaderValue::from_static("k-1"));
        let subs = typeform.receive(&delivery(&h, body), "s").unwrap();
        assert_eq!(
            (subs[0].id.clone(), subs[0].source.as_str()),
            (LeadId::derived("generic:typeform:k-1"), "typeform")
        );
        assert!(matches!(typeform.receive(&delivery(&h, body), "t"), Err(Refusal::Unauthenticated(_))));
        let empty = br#"{"a":{}}"#;
        let mut signed = b"1700000000.".to_vec();
        signed.extend_from_slice(empty);
        let sig = format!("t=1700000000,v1={}", crate::notification::hmac_hex(b"s", &signed));
        h.insert("x-leadrouter-signature", HeaderValue::from_str(&sig).unwrap());
        match typeform.receive(&delivery(&h, empty), "s") {
            Err(Refusal::Fields { detail, .. }) => assert!(detail.contains("/a/email"), "{detail}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(typeform.signing_secret().0, "generic.typeform");
    }
}
