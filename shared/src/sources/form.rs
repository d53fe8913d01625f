//! Web form bodies: JSON objects or urlencoded pairs, by content type.

use super::PayloadError;
use serde_json::Value;

/// Why a form body cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormError {
    #[error("{0}")]
    Unsupported(String),
    #[error(transparent)]
    Payload(#[from] PayloadError),
}

/// The media type of a `Content-Type` header, lowercased, without parameters.
pub fn media_type(content_type: Option<&str>) -> String {
    content_type.unwrap_or("").split(';').next().unwrap_or("").trim().to_ascii_lowercase()
}

/// The raw fields of a form body, in order. A repeated urlencoded field keeps its first value,
/// as most form handlers do.
pub fn parse(content_type: Option<&str>, body: &[u8]) -> Result<Vec<(String, Value)>, FormError> {
    match media_type(content_type).as_str() {
        "application/json" => {
            let v: Value = serde_json::from_slice(body)
                .map_err(|e| PayloadError::Malformed(format!("the body is not valid JSON: {e}")))?;
            match v {
                Value::Object(map) => Ok(map.into_iter().collect()),
                _ => Err(PayloadError::Invalid("the body must be a JSON object of fields".into()).into()),
            }
        }
        "application/x-www-form-urlencoded" => {
            let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(body)
                .map_err(|e| PayloadError::Malformed(format!("the body is not a valid urlencoded form: {e}")))?;
            let mut out: Vec<(String, Value)> = Vec::with_capacity(pairs.len());
            for (k, v) in pairs {
                if !out.iter().any(|(seen, _)| *seen == k) {
                    out.push((k, Value::String(v)));
                }
            }
            Ok(out)
        }
        "" => Err(FormError::Unsupported(
            "a Content-Type of application/json or application/x-www-form-urlencoded is required".into(),
        )),
        other => Err(FormError::Unsupported(format!(
            "'{other}' is not accepted; send application/json or application/x-www-form-urlencoded"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn by_content_type() {
        let f = parse(Some("application/x-www-form-urlencoded; charset=utf-8"), b"email=a%40b.co&email=x&name=J+D")
            .unwrap();
        assert_eq!(
            f,
            vec![("email".into(), Value::String("a@b.co".into())), ("name".into(), Value::String("J D".into()))]
        );
        assert_eq!(parse(Some("Application/JSON"), br#"{"a":1}"#).unwrap(), vec![("a".into(), Value::from(1))]);
        assert!(matches!(parse(Some("application/json"), b"[1]"), Err(FormError::Payload(PayloadError::Invalid(_)))));
        assert!(matches!(parse(Some("application/json"), b"{"), Err(FormError::Payload(PayloadError::Malformed(_)))));
        assert!(matches!(parse(Some("text/plain"), b"a=b"), Err(FormError::Unsupported(_))));
        assert!(matches!(parse(None, b"a=b"), Err(FormError::Unsupported(_))));
    }
}
