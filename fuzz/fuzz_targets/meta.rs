//! Meta leadgen notifications, their signature check, and Graph API lead bodies.
#![no_main]

use leadrouter::sources::meta;
use libfuzzer_sys::fuzz_target;
use std::collections::BTreeMap;

fuzz_target!(|data: &[u8]| {
    if let Ok(changes) = meta::parse_notification(data) {
        assert!(changes.len() <= meta::MAX_CHANGES);
        assert!(changes.iter().all(|c| !c.leadgen_id.is_empty()));
    }
    let map = BTreeMap::from([("email".to_string(), "work_email".to_string())]);
    let _ = meta::parse_graph_lead(data, &map);
    let header = std::str::from_utf8(&data[..data.len().min(80)]).ok();
    assert!(!meta::signature_valid("secret", header, data) || header.is_some_and(|h| h.starts_with("sha256=")));
});
