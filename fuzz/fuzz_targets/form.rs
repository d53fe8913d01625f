//! Web form bodies (JSON and urlencoded) through parsing and normalization.
#![no_main]

use leadrouter::domain::{IntakeOptions, Region, normalize, normalize_lenient};
use leadrouter::sources::form;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else { return };
    let ctype = if selector % 2 == 0 { "application/json" } else { "application/x-www-form-urlencoded" };
    let Ok(fields) = form::parse(Some(ctype), body) else { return };
    let opts = IntakeOptions { default_region: Region::default() };
    if let Ok(intake) = normalize(fields.clone(), opts) {
        // Normalizing what normalization produced changes nothing.
        let again: Vec<(String, serde_json::Value)> = ["email", "phone", "name", "company", "country", "job_title"]
            .iter()
            .filter_map(|f| intake.contact.field(f).map(|v| (f.to_string(), serde_json::Value::String(v))))
            .collect();
        if let Ok(second) = normalize(again, opts) {
            assert_eq!(second.contact.email, intake.contact.email);
            assert_eq!(second.contact.phone, intake.contact.phone);
            assert_eq!(second.contact.country, intake.contact.country);
        }
    }
    let _ = normalize_lenient(fields, opts);
});
