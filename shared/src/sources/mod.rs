//! The platforms' payloads, parsed without I/O: Meta Lead Ads, Google Ads lead forms, and
//! generic signed webhooks mapped by JSON Pointers. Each parser is fuzzed.

pub mod form;
pub mod generic;
pub mod google;
pub mod meta;

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
