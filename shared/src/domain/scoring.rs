//! Scoring: rules that add or take points, grades by threshold, disqualification.

use super::email::Email;
use super::lead::{Lead, RulePoints};
use regex::Regex;

/// One test a rule applies to its field's value; a rule with several must pass them all.
#[derive(Clone, Debug)]
pub enum Condition {
    Matches(Regex),
    /// `true`: the address is at a free mail provider; `false`: it is not.
    FreeEmail(bool),
    Gte(f64),
    Lte(f64),
    /// Case-insensitive membership.
    In(Vec<String>),
}

#[derive(Clone, Debug)]
pub struct Rule {
    pub name: String,
    pub field: String,
    pub conditions: Vec<Condition>,
    pub points: i64,
}

#[derive(Clone, Debug, Default)]
pub struct ScoringRules {
    pub rules: Vec<Rule>,
    /// (grade, lowest score), highest threshold first.
    pub grades: Vec<(String, i64)>,
    pub disqualify_below: Option<i64>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scored {
    pub score: i64,
    pub breakdown: Vec<RulePoints>,
    pub grade: String,
    pub disqualified: bool,
}

/// The grade below every threshold.
pub const LOWEST_GRADE: &str = "D";

/// Reads the leading number of a value such as `500`, `1,000+`, `200-500` or `10k`.
pub fn leading_number(s: &str) -> Option<f64> {
    let s = s.trim();
    let end = s
        .char_indices()
        .find(|(_, c)| !(c.is_ascii_digit() || *c == ',' || *c == '.'))
        .map(|(i, _)| i)
        .unwrap_or(s.len());
    let digits: String = s[..end].chars().filter(|c| *c != ',').collect();
    let n: f64 = digits.parse().ok()?;
    let rest = s[end..].trim_start();
    Some(match rest.chars().next() {
        Some('k' | 'K') => n * 1_000.0,
        Some('m' | 'M') => n * 1_000_000.0,
        _ => n,
    })
}

impl Condition {
    fn holds(&self, value: &str) -> bool {
        match self {
            Condition::Matches(re) => re.is_match(value),
            Condition::FreeEmail(want) => Email::parse(value).map(|e| e.is_free() == *want).unwrap_or(false),
            Condition::Gte(min) => leading_number(value).is_some_and(|n| n >= *min),
            Condition::Lte(max) => leading_number(value).is_some_and(|n| n <= *max),
            Condition::In(set) => set.iter().any(|s| s.eq_ignore_ascii_case(value.trim())),
        }
    }
}

impl ScoringRules {
    pub fn score(&self, lead: &Lead) -> Scored {
        let mut score = 0i64;
        let mut breakdown = Vec::new();
        for rule in &self.rules {
            let Some(value) = lead.field(&rule.field) else { continue };
            if rule.conditions.iter().all(|c| c.holds(&value)) {
                score = score.saturating_add(rule.points);
                breakdown.push(RulePoints { rule: rule.name.clone(), points: rule.points });
            }
        }
        Scored {
            score,
            breakdown,
            grade: self.grade(score),
            disqualified: self.disqualify_below.is_some_and(|min| score < min),
        }
    }

    /// Scores a `unique` lead and moves it to `scored` or `disqualified`, the points in its
    /// history.
    pub fn apply(&self, l: &mut Lead, now: chrono::DateTime<chrono::Utc>) {
        let s = self.score(l);
        let parts = s.breakdown.iter().map(|r| format!("{} {:+}", r.rule, r.points)).collect::<Vec<_>>();
        let parts = if parts.is_empty() { "no rule matched".to_owned() } else { parts.join(", ") };
        l.score = Some(s.score);
        l.breakdown = s.breakdown;
        l.grade = Some(s.grade.clone());
        if s.disqualified {
            let floor = self.disqualify_below.unwrap_or_default();
            l.transition(
                crate::domain::LeadStatus::Disqualified,
                format!("score {} ({parts}) is under disqualify_below {floor}", s.score),
                now,
            );
        } else {
            l.transition(
                crate::domain::LeadStatus::Scored,
                format!("score {} ({parts}): grade {}", s.score, s.grade),
                now,
            );
        }
    }

    /// Dedup found `l` unique (no earlier lead within `window_days` shares its identity keys):
    /// it moves to `unique` and is scored at once.
    pub fn found_unique(&self, l: &mut Lead, window_days: u32, at: chrono::DateTime<chrono::Utc>) {
        let reason = if l.test {
            "unique: a test lead is not deduplicated".to_owned()
        } else {
            format!("unique: no earlier lead within {window_days} days shares its identity keys")
        };
        l.transition(crate::domain::LeadStatus::Unique, reason, at);
        self.apply(l, at);
    }

    pub fn grade(&self, score: i64) -> String {
        self.grades
            .iter()
            .find(|(_, min)| score >= *min)
            .map(|(g, _)| g.clone())
            .unwrap_or_else(|| LOWEST_GRADE.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Contact, LeadId};
    use proptest::prelude::*;

    fn rules() -> ScoringRules {
        ScoringRules {
            rules: vec![
                Rule {
                    name: "senior title".into(),
                    field: "job_title".into(),
                    conditions: vec![Condition::Matches(
                        Regex::new(r"(?i)\b(vp|vice president|head of|director|chief|c[etfo]o)\b").unwrap(),
                    )],
                    points: 25,
                },
                Rule {
                    name: "free email domain".into(),
                    field: "email".into(),
                    conditions: vec![Condition::FreeEmail(true)],
                    points: -15,
                },
                Rule {
                    name: "large company".into(),
                    field: "company_size".into(),
                    conditions: vec![Condition::Gte(200.0)],
                    points: 20,
                },
                Rule {
                    name: "target market".into(),
                    field: "country".into(),
                    conditions: vec![Condition::In(vec!["US".into(), "CA".into(), "GB".into(), "DE".into()])],
                    points: 10,
                },
            ],
            grades: vec![("A".into(), 70), ("B".into(), 40), ("C".into(), 15)],
            disqualify_below: Some(-50),
        }
    }

    fn lead(email: &str, title: Option<&str>, size: Option<&str>, country: Option<&str>) -> Lead {
        let c = Contact {
            email: Some(Email::parse(email).unwrap()),
            job_title: title.map(Into::into),
            company_size: size.map(Into::into),
            country: country.map(Into::into),
            ..Contact::default()
        };
        Lead::new(LeadId::new(), "web".into(), c, chrono::Utc::now())
    }

    #[test]
    fn breakdown_names_each_rule() {
        let s = rules().score(&lead("jane@acme.com", Some("VP Sales"), Some("500"), Some("US")));
        assert_eq!(s.score, 55);
        assert_eq!(s.grade, "B");
        assert_eq!(
            s.breakdown.iter().map(|r| (r.rule.as_str(), r.points)).collect::<Vec<_>>(),
            vec![("senior title", 25), ("large company", 20), ("target market", 10)]
        );
        let free = rules().score(&lead("jane@gmail.com", Some("intern"), Some("5"), Some("FR")));
        assert_eq!((free.score, free.grade.as_str(), free.disqualified), (-15, "D", false));
    }

    #[test]
    fn disqualifies_below_threshold() {
        let mut r = rules();
        r.disqualify_below = Some(-10);
        assert!(r.score(&lead("jane@gmail.com", None, None, None)).disqualified);
    }

    #[test]
    fn reads_numbers_as_people_write_them() {
        assert_eq!(leading_number("1,000+"), Some(1000.0));
        assert_eq!(leading_number("200-500"), Some(200.0));
        assert_eq!(leading_number("10k"), Some(10_000.0));
        assert_eq!(leading_number("about 50"), None);
    }

    proptest! {
        #[test]
        fn grade_is_monotonic_in_score(a in -200i64..200, b in -200i64..200) {
            let r = rules();
            let order = |g: &str| ["A", "B", "C", "D"].iter().position(|x| *x == g).unwrap();
            let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
            prop_assert!(order(&r.grade(hi)) <= order(&r.grade(lo)));
        }

        #[test]
        fn score_is_the_sum_of_its_breakdown(title in "\\PC{0,20}", size in "[0-9,k+-]{0,8}", country in "[A-Z]{2}") {
            let s = rules().score(&lead("x@acme.com", Some(&title), Some(&size), Some(&country)));
            prop_assert_eq!(s.score, s.breakdown.iter().map(|r| r.points).sum::<i64>());
        }
    }
}
