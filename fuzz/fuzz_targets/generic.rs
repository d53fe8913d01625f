//! Generic webhooks: the signature header and JSON Pointer mapping.
#![no_main]

use leadrouter::sources::generic;
use libfuzzer_sys::fuzz_target;
use std::collections::BTreeMap;

fuzz_target!(|data: &[u8]| {
    let split = data.iter().position(|b| *b == b'\n').unwrap_or(data.len());
    let (header, body) = data.split_at(split);
    let header = std::str::from_utf8(header).ok();
    // Nothing but a correct HMAC under the secret may pass.
    assert!(generic::verify("secret", header, body, 1_700_000_000).is_err() || header.is_some_and(|h| h.contains("v1=")));
    let map = BTreeMap::from([
        ("email".to_string(), "/form_response/hidden/email".to_string()),
        ("phone".to_string(), "/a/0/b".to_string()),
        ("name".to_string(), "/~1x/~0y".to_string()),
    ]);
    if let Ok(m) = generic::map_fields(body, &map) {
        assert_eq!(m.fields.len() + m.empty.len(), map.len());
    }
});
