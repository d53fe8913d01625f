//! `[crm.*]` and `[stickiness]`, from the document as written to [`crate::crm::CrmSettings`].

use super::checks::secret;
use super::problems::{Checker, Problem};
use super::raw::{RawCrm, RawStickiness};
use super::{KNOWN_FIELDS, Target};
use crate::crm::settings::*;
use crate::domain::LeadStatus;
use std::collections::BTreeMap;
use toml::Spanned;

pub(super) fn build(raw: RawCrm, stickiness: RawStickiness, c: &mut Checker) -> CrmSettings {
    let hubspot = raw.hubspot.map(|h| {
        let api_base_url = url(c, h.api_base_url, "[crm.hubspot] api_base_url", Some("https://api.hubapi.com"));
        let requests_per_10s = match &h.requests_per_10s {
            Some(v) if !(1..=1000).contains(v.get_ref()) => {
                c.at(v, "[crm.hubspot] requests_per_10s must be between 1 and 1000");
                100
            }
            Some(v) => *v.get_ref() as u32,
            None => 100,
        };
        let mut outcomes = default_hubspot_outcomes();
        for (property, table) in &h.outcomes {
            outcomes.insert(property.clone(), statuses(c, table, &format!("[crm.hubspot.outcomes] {property}")));
        }
        HubSpotSettings {
            token: secret(c, &h.token, "[crm.hubspot] token").unwrap_or(crate::config::SecretRef::Env(String::new())),
            webhook_secret: secret(c, &h.webhook_secret, ""),
            api_base_url,
            properties: mapping(c, &HUBSPOT_PROPERTIES, &h.properties, "[crm.hubspot.properties]"),
            id_property: h.id_property.unwrap_or_else(|| "leadrouter_lead_id".into()),
            outcomes,
            requests_per_10s,
        }
    });
    let salesforce = raw.salesforce.map(|s| {
        let instance_url = url(c, s.instance_url, "[crm.salesforce] instance_url", None);
        let external_id_field = checked(c, s.external_id_field, "Leadrouter_Id__c", api_name, |f| {
            format!("[crm.salesforce] external_id_field '{f}' is not a field's API name")
        });
        let api_version = checked(c, s.api_version, "v63.0", valid_version, |v| {
            format!("[crm.salesforce] api_version '{v}' is not like v63.0")
        });
        let mut status_outcomes = default_salesforce_outcomes();
        for (field, table) in &s.outcomes {
            if field != "status" {
                let line = table.values().next().map(|v| c.line(v.span().start)).unwrap_or(1);
                c.problems.push(Problem {
                    line,
                    message: format!("[crm.salesforce.outcomes] maps the Lead's status only, not '{field}'"),
                });
                continue;
            }
            status_outcomes = statuses(c, table, "[crm.salesforce.outcomes] status");
        }
        SalesforceSettings {
            instance_url,
            client_id: secret(c, &s.client_id, "[crm.salesforce] client_id")
                .unwrap_or(crate::config::SecretRef::Env(String::new())),
            client_secret: secret(c, &s.client_secret, "[crm.salesforce] client_secret")
                .unwrap_or(crate::config::SecretRef::Env(String::new())),
            external_id_field,
            api_version,
            fields: mapping(c, &SALESFORCE_FIELDS, &s.fields, "[crm.salesforce.fields]"),
            status_outcomes,
            company_fallback: s.company_fallback.unwrap_or_else(|| "[not provided]".into()),
            last_name_fallback: s.last_name_fallback.unwrap_or_else(|| "[not provided]".into()),
        }
    });
    let mut settings = CrmSettings { hubspot, salesforce, stickiness: None };
    if let Some(name) = stickiness.crm {
        match CrmName::parse(name.get_ref()) {
            Some(crm) if settings.names().contains(&crm) => settings.stickiness = Some(crm),
            Some(crm) => c.at(&name, format!("[stickiness] crm = \"{}\" needs [crm.{}]", crm.as_str(), crm.as_str())),
            None => c.at(&name, format!("[stickiness] crm '{}' is not hubspot or salesforce", name.get_ref())),
        }
    }
    settings
}

fn url(c: &mut Checker, v: Option<Spanned<String>>, what: &str, default: Option<&str>) -> String {
    match (v, default) {
        (Some(u), _) => {
            if Target::parse(&format!("webhook:{}", u.get_ref())).is_err() {
                c.at(&u, format!("{what} '{}' is not an http(s) URL", u.get_ref()));
            }
            u.into_inner().trim_end_matches('/').to_owned()
        }
        (None, Some(d)) => d.to_owned(),
        (None, None) => {
            c.problems.push(Problem { line: 1, message: format!("{what} is required") });
            String::new()
        }
    }
}

/// The defaults with the document's changes laid over them (an empty value removes one).
fn mapping(
    c: &mut Checker,
    defaults: &[(&str, &str)],
    changes: &BTreeMap<String, Spanned<String>>,
    what: &str,
) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = defaults.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    for (crm_field, field) in changes {
        let f = field.get_ref();
        if !f.is_empty() && !KNOWN_FIELDS.contains(&f.as_str()) && !RECORD_FIELDS.contains(&f.as_str()) {
            let known = RECORD_FIELDS.iter().chain(KNOWN_FIELDS.iter()).copied().collect::<Vec<_>>().join(", ");
            c.at(field, format!("{what} {crm_field} = '{f}' names no lead field (one of {known})"));
        }
        out.retain(|(k, _)| k != crm_field);
        if !f.is_empty() {
            out.push((crm_field.clone(), f.clone()));
        }
    }
    out
}

fn statuses(c: &mut Checker, table: &BTreeMap<String, Spanned<String>>, what: &str) -> BTreeMap<String, LeadStatus> {
    let mut out = BTreeMap::new();
    for (value, status) in table {
        match LeadStatus::parse(status.get_ref()).filter(|s| OUTCOME_STATUSES.contains(s)) {
            Some(s) => {
                out.insert(value.clone(), s);
            }
            None => c.at(status, format!("{what}: '{}' is not contacted, qualified, won or lost", status.get_ref())),
        }
    }
    out
}

/// A text setting: the document's value (a problem at its line when `valid` refuses it), else
/// `default`.
fn checked(
    c: &mut Checker,
    v: Option<Spanned<String>>,
    default: &str,
    valid: fn(&str) -> bool,
    problem: impl Fn(&str) -> String,
) -> String {
    match v {
        Some(v) => {
            if !valid(v.get_ref()) {
                c.at(&v, problem(v.get_ref()));
            }
            v.into_inner()
        }
        None => default.to_owned(),
    }
}

fn api_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 80 && s.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
}

fn valid_version(v: &str) -> bool {
    v.strip_prefix('v').and_then(|n| n.split_once('.')).is_some_and(|(a, b)| {
        !a.is_empty() && !b.is_empty() && a.chars().all(|c| c.is_ascii_digit()) && b.chars().all(|c| c.is_ascii_digit())
    })
}

#[cfg(test)]
mod tests {
    use crate::config::Settings;
    use crate::crm::CrmName;
    use crate::domain::LeadStatus;

    const BASE: &str = "[server]\nadmin_token = \"a\"\nwebhook_secret = \"w\"\n[[reps]]\nid = \"ana\"\n\
                        crm_owner = { hubspot = \"41629779\" }\n[[pools]]\nid = \"p\"\nreps = [{ id = \"ana\" }]\n";

    #[test]
    fn crm_sections_parse_with_their_defaults_and_overrides() {
        let doc = format!(
            "{BASE}[crm.hubspot]\ntoken = \"env:HUBSPOT_TOKEN\"\n[crm.hubspot.properties]\njobtitle = \"\"\n\
             hs_persona = \"industry\"\n[crm.hubspot.outcomes]\nlifecyclestage = {{ customer = \"won\", evangelist = \"won\" }}\n\
             [crm.salesforce]\ninstance_url = \"https://x.my.salesforce.com\"\nclient_id = \"env:ID\"\nclient_secret = \"env:S\"\n\
             [stickiness]\ncrm = \"salesforce\"\n"
        );
        let s = Settings::parse(&doc).unwrap_or_else(|p| panic!("{p}"));
        let h = s.crm.hubspot.as_ref().unwrap();
        assert_eq!(h.api_base_url, "https://api.hubapi.com");
        assert!(!h.properties.iter().any(|(p, _)| p == "jobtitle"), "an empty value leaves a default out");
        assert!(h.properties.contains(&("hs_persona".into(), "industry".into())));
        assert_eq!(h.outcomes["lifecyclestage"].get("evangelist"), Some(&LeadStatus::Won));
        assert_eq!(h.outcomes["lifecyclestage"].get("opportunity"), None, "a table replaces its default");
        assert_eq!(h.outcomes["hs_lead_status"].get("CONNECTED"), Some(&LeadStatus::Contacted), "the other stays");
        let sf = s.crm.salesforce.as_ref().unwrap();
        assert_eq!((sf.external_id_field.as_str(), sf.api_version.as_str()), ("Leadrouter_Id__c", "v63.0"));
        assert_eq!(s.crm.stickiness, Some(CrmName::Salesforce));
        assert_eq!(s.reps[0].crm_owner.hubspot.as_deref(), Some("41629779"));
        let names: Vec<String> = s.source_secret_refs().into_iter().map(|(n, _)| n).collect();
        assert!(
            names.contains(&"crm.hubspot.token".to_owned())
                && names.contains(&"crm.salesforce.client_secret".to_owned())
        );
    }

    #[test]
    fn crm_mistakes_are_problems_at_their_lines() {
        let doc = format!(
            "{BASE}[crm.hubspot]\ntoken = \"t\"\n[crm.hubspot.outcomes]\nlifecyclestage = {{ customer = \"bought\" }}\n\
             [crm.hubspot.properties]\nx = \"shoe_size_field\"\n[stickiness]\ncrm = \"salesforce\"\n"
        );
        let p = Settings::parse(&doc).unwrap_err().to_string();
        assert!(
            p.contains(
                "line 13: [crm.hubspot.outcomes] lifecyclestage: 'bought' is not contacted, qualified, won or lost"
            ),
            "{p}"
        );
        assert!(p.contains("x = 'shoe_size_field' names no lead field"), "{p}");
        assert!(p.contains("[stickiness] crm = \"salesforce\" needs [crm.salesforce]"), "{p}");
        let p = Settings::parse(&format!("{BASE}[crm.salesforce]\nclient_id = \"i\"\nclient_secret = \"s\"\n"))
            .unwrap_err();
        assert!(p.to_string().contains("[crm.salesforce] instance_url is required"), "{p}");
        let p = Settings::parse(&format!("{BASE}[[reps]]\nid = \"ben\"\ncrm_owner = {{ pipedrive = \"1\" }}\n"))
            .unwrap_err();
        assert!(p.to_string().contains("pipedrive"), "{p}");
    }
}
