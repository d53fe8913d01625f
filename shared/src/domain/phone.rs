//! Phone numbers, normalized to E.164 with the `phonenumber` crate (libphonenumber's data).

use serde::{Deserialize, Serialize};
use std::fmt;

/// A phone number in E.164 form (`+14155550100`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Phone(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidPhone(pub &'static str);

/// A region for numbers written without a country code (`US`, `GB`, …).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Region(phonenumber::country::Id);

impl Region {
    pub fn parse(code: &str) -> Option<Region> {
        code.trim().to_ascii_uppercase().parse().ok().map(Region)
    }
}

impl Default for Region {
    fn default() -> Self {
        Region(phonenumber::country::Id::US)
    }
}

impl Phone {
    pub fn parse(raw: &str, region: Region) -> Result<Phone, InvalidPhone> {
        let s = raw.trim();
        if s.is_empty() {
            return Err(InvalidPhone("is empty"));
        }
        if s.len() > 40 {
            return Err(InvalidPhone("is longer than 40 characters"));
        }
        if s.chars().filter(|c| c.is_ascii_digit()).count() < 4 {
            return Err(InvalidPhone("has too few digits to be a number"));
        }
        let number =
            phonenumber::parse(Some(region.0), s).map_err(|_| InvalidPhone("cannot be read as a phone number"))?;
        if !phonenumber::is_valid(&number) {
            return Err(InvalidPhone("is not a valid number for its country"));
        }
        Ok(Phone(number.format().mode(phonenumber::Mode::E164).to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Phone {
    type Error = InvalidPhone;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        // Stored values are already E.164; the region is irrelevant for them.
        Phone::parse(&value, Region::default())
    }
}

impl From<Phone> for String {
    fn from(p: Phone) -> String {
        p.0
    }
}

impl fmt::Display for Phone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn national_numbers_take_the_default_region() {
        let us = Region::parse("US").unwrap();
        assert_eq!(Phone::parse("(415) 555-0132", us).unwrap().as_str(), "+14155550132");
        assert_eq!(Phone::parse("+44 20 7946 0958", us).unwrap().as_str(), "+442079460958");
        let gb = Region::parse("gb").unwrap();
        assert_eq!(Phone::parse("020 7946 0958", gb).unwrap().as_str(), "+442079460958");
    }

    #[test]
    fn rejects_what_cannot_be_a_number() {
        let us = Region::default();
        for bad in ["", "abc", "12", "+1 000", "call me maybe", "+999 123456789"] {
            assert!(Phone::parse(bad, us).is_err(), "{bad:?} should be rejected");
        }
    }

    proptest! {
        #[test]
        fn normalization_is_idempotent(area in 201u32..990, exchange in 200u32..999, line in 0u32..9999, style in 0usize..4) {
            let raw = match style {
                0 => format!("({area}) {exchange}-{line:04}"),
                1 => format!("+1 {area} {exchange} {line:04}"),
                2 => format!("{area}.{exchange}.{line:04}"),
                _ => format!("1{area}{exchange}{line:04}"),
            };
            if let Ok(once) = Phone::parse(&raw, Region::default()) {
                let twice = Phone::parse(once.as_str(), Region::parse("DE").unwrap()).expect("E.164 parses in any region");
                prop_assert_eq!(once, twice);
            }
        }

        #[test]
        fn parse_never_panics(s in "\\PC{0,60}") {
            let _ = Phone::parse(&s, Region::default());
        }
    }
}
