//! Pools: which leads a group of reps takes, and who among them is next.

use super::lead::Lead;
use super::round_robin::WeightedRoundRobin;

/// Every listed field must hold one of its values (case-insensitive); no conditions takes all.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PoolMatch {
    pub conditions: Vec<(String, Vec<String>)>,
}

impl PoolMatch {
    pub fn matches(&self, lead: &Lead) -> bool {
        self.conditions.iter().all(|(field, allowed)| {
            lead.field(field).is_some_and(|v| allowed.iter().any(|a| a.eq_ignore_ascii_case(v.trim())))
        })
    }

    /// `grade B, country US`: the values that made this lead match.
    pub fn explain(&self, lead: &Lead) -> String {
        if self.conditions.is_empty() {
            return "takes every lead".into();
        }
        self.conditions
            .iter()
            .map(|(f, _)| format!("{f} {}", lead.field(f).unwrap_or_default()))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[derive(Clone, Debug)]
pub struct Manager {
    pub name: String,
    pub notify: Vec<String>,
}

#[derive(Clone, Debug)]
pub struct Pool {
    pub id: String,
    pub rule: PoolMatch,
    pub rotation: WeightedRoundRobin,
    pub manager: Option<Manager>,
    pub sla_minutes: Option<u32>,
}

/// Pools are tried in order; the first whose rule matches wins.
pub fn first_match<'a>(pools: &'a [Pool], lead: &Lead) -> Option<&'a Pool> {
    pools.iter().find(|p| p.rule.matches(lead))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Contact, LeadId};

    fn pool(id: &str, conditions: Vec<(&str, Vec<&str>)>) -> Pool {
        Pool {
            id: id.into(),
            rule: PoolMatch {
                conditions: conditions
                    .into_iter()
                    .map(|(f, v)| (f.to_string(), v.into_iter().map(String::from).collect()))
                    .collect(),
            },
            rotation: WeightedRoundRobin::new(vec![("ana".into(), 1)]).unwrap(),
            manager: None,
            sla_minutes: None,
        }
    }

    #[test]
    fn first_match_wins_and_empty_takes_all() {
        let pools = vec![
            pool("enterprise-na", vec![("grade", vec!["A", "B"]), ("country", vec!["US", "CA"])]),
            pool("everyone", vec![]),
        ];
        let mut lead = Lead::new(
            LeadId::new(),
            "web".into(),
            Contact { country: Some("us".into()), ..Contact::default() },
            chrono::Utc::now(),
        );
        lead.grade = Some("B".into());
        let p = first_match(&pools, &lead).unwrap();
        assert_eq!(p.id, "enterprise-na");
        assert_eq!(p.rule.explain(&lead), "grade B, country us");
        lead.grade = Some("C".into());
        assert_eq!(first_match(&pools, &lead).unwrap().id, "everyone");
        lead.contact.country = None;
        lead.grade = Some("A".into());
        assert_eq!(first_match(&pools, &lead).unwrap().id, "everyone");
        assert!(first_match(&pools[..1], &lead).is_none());
    }
}
