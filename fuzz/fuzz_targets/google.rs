//! Google Ads lead form bodies, including the trailing-comma tolerance.
#![no_main]

use leadrouter::sources::google;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Stripping trailing commas never changes a document that was already valid JSON.
    if let Ok(strict) = serde_json::from_slice::<serde_json::Value>(data) {
        let relaxed: serde_json::Value =
            serde_json::from_slice(&google::strip_trailing_commas(data)).expect("valid JSON stays valid");
        assert_eq!(strict, relaxed);
    }
    let _ = google::parse(data);
});
