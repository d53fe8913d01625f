//! Identity keys: the values that say two leads are the same person.

use super::lead::Lead;

/// Keys a lead claims in dedup, strongest first: the source's own id, email, phone.
pub fn identity_keys(lead: &Lead, fold_gmail: bool) -> Vec<String> {
    let mut keys = Vec::with_capacity(3);
    if let Some(r) = &lead.source_ref {
        keys.push(format!("source:{}:{r}", lead.source));
    }
    if let Some(e) = &lead.contact.email {
        keys.push(format!("email:{}", e.identity(fold_gmail)));
    }
    if let Some(p) = &lead.contact.phone {
        keys.push(format!("phone:{}", p.as_str()));
    }
    keys
}

/// What a key is, without the value (for history lines free of personal data).
pub fn key_kind(key: &str) -> &str {
    key.split(':').next().unwrap_or("key")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Contact, Email, LeadId, Phone, Region};

    #[test]
    fn keys_fold_and_order() {
        let contact = Contact {
            email: Some(Email::parse("J.Doe+x@gmail.com").unwrap()),
            phone: Some(Phone::parse("415 555 0132", Region::default()).unwrap()),
            ..Contact::default()
        };
        let mut lead = Lead::new(LeadId::new(), "meta".into(), contact, chrono::Utc::now());
        lead.source_ref = Some("123".into());
        assert_eq!(identity_keys(&lead, true), vec!["source:meta:123", "email:jdoe@gmail.com", "phone:+14155550132"]);
        assert_eq!(key_kind("email:jdoe@gmail.com"), "email");
    }
}
