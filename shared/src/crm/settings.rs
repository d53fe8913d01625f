//! `[crm.hubspot]`, `[crm.salesforce]` and `[stickiness] crm`, typed: which lead field goes to
//! which CRM field, and which CRM value moves a lead to which sales status.

use crate::config::SecretRef;
use crate::domain::{Lead, LeadStatus};
use std::collections::BTreeMap;

/// One of the CRMs leadrouter writes to and reads back from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CrmName {
    HubSpot,
    Salesforce,
}

impl CrmName {
    pub const ALL: [CrmName; 2] = [CrmName::HubSpot, CrmName::Salesforce];

    /// As written in the document and in `crm_owner`.
    pub fn as_str(self) -> &'static str {
        match self {
            CrmName::HubSpot => "hubspot",
            CrmName::Salesforce => "salesforce",
        }
    }

    /// As shown to people (`why`, history).
    pub fn label(self) -> &'static str {
        match self {
            CrmName::HubSpot => "HubSpot",
            CrmName::Salesforce => "Salesforce",
        }
    }

    pub fn parse(s: &str) -> Option<CrmName> {
        CrmName::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// The delivery's recipient and target: `crm:hubspot`.
    pub fn recipient(self) -> &'static str {
        match self {
            CrmName::HubSpot => "crm:hubspot",
            CrmName::Salesforce => "crm:salesforce",
        }
    }

    pub fn of_recipient(s: &str) -> Option<CrmName> {
        CrmName::ALL.into_iter().find(|c| c.recipient() == s)
    }
}

/// Every CRM setting of the document.
#[derive(Clone, Debug, Default)]
pub struct CrmSettings {
    pub hubspot: Option<HubSpotSettings>,
    pub salesforce: Option<SalesforceSettings>,
    /// `[stickiness] crm`: the CRM whose account owner a lead of that company goes to.
    pub stickiness: Option<CrmName>,
}

impl CrmSettings {
    /// The CRMs configured, in a fixed order.
    pub fn names(&self) -> Vec<CrmName> {
        [(CrmName::HubSpot, self.hubspot.is_some()), (CrmName::Salesforce, self.salesforce.is_some())]
            .into_iter()
            .filter_map(|(c, on)| on.then_some(c))
            .collect()
    }

    /// Every CRM secret by the name the runtime looks it up under.
    pub fn secret_refs(&self) -> Vec<(String, &SecretRef)> {
        let mut out: Vec<(String, &SecretRef)> = Vec::new();
        if let Some(h) = &self.hubspot {
            out.push(("crm.hubspot.token".into(), &h.token));
            if let Some(w) = &h.webhook_secret {
                out.push(("crm.hubspot.webhook_secret".into(), w));
            }
        }
        if let Some(s) = &self.salesforce {
            out.push(("crm.salesforce.client_id".into(), &s.client_id));
            out.push(("crm.salesforce.client_secret".into(), &s.client_secret));
        }
        out
    }
}

#[derive(Clone, Debug)]
pub struct HubSpotSettings {
    pub token: SecretRef,
    /// The app's client secret, which signs `X-HubSpot-Signature-v3`; without it
    /// `POST /v1/webhooks/hubspot` answers 503.
    pub webhook_secret: Option<SecretRef>,
    pub api_base_url: String,
    /// Contact property ← lead field, in order (the defaults with the document's changes).
    pub properties: Vec<(String, String)>,
    /// The unique contact property holding the lead id: the upsert key of a lead with no email.
    pub id_property: String,
    /// Property (`lifecyclestage`, `hs_lead_status`) → its value → the sales status it means.
    pub outcomes: BTreeMap<String, BTreeMap<String, LeadStatus>>,
    /// Requests per rolling 10 seconds this deployment allows itself (HubSpot's private-app
    /// burst limit is 100 to 250 by plan, shared by every app of the account).
    pub requests_per_10s: u32,
}

#[derive(Clone, Debug)]
pub struct SalesforceSettings {
    /// `https://<MyDomain>.my.salesforce.com`: the API and the OAuth token host.
    pub instance_url: String,
    pub client_id: SecretRef,
    pub client_secret: SecretRef,
    /// The Lead's external id field holding the leadrouter lead id (`Leadrouter_Id__c`).
    pub external_id_field: String,
    pub api_version: String,
    /// Lead field (API name) ← lead field, in order.
    pub fields: Vec<(String, String)>,
    /// The Lead's `Status` → the sales status it means.
    pub status_outcomes: BTreeMap<String, LeadStatus>,
    /// `Company` and `LastName` are required on a Lead: what is sent when the lead has none.
    pub company_fallback: String,
    pub last_name_fallback: String,
}

/// The sales statuses a CRM value may map to.
pub const OUTCOME_STATUSES: [LeadStatus; 4] =
    [LeadStatus::Contacted, LeadStatus::Qualified, LeadStatus::Won, LeadStatus::Lost];

/// HubSpot contact properties ← lead fields, by default. `leadrouter_*` are custom properties
/// the README says to create (`leadrouter_lead_id` unique).
pub const HUBSPOT_PROPERTIES: [(&str, &str); 15] = [
    ("email", "email"),
    ("firstname", "given_name"),
    ("lastname", "family_name"),
    ("phone", "phone"),
    ("company", "company"),
    ("jobtitle", "job_title"),
    ("website", "website"),
    ("country", "country"),
    ("state", "state"),
    ("city", "city"),
    ("leadrouter_lead_id", "lead_id"),
    ("leadrouter_source", "source"),
    ("leadrouter_why", "why"),
    ("leadrouter_grade", "grade"),
    ("leadrouter_score", "score"),
];

/// Salesforce Lead fields ← lead fields, by default (the external id is the lead id, in the
/// path; `OwnerId` is the owner's user).
pub const SALESFORCE_FIELDS: [(&str, &str); 13] = [
    ("FirstName", "given_name"),
    ("LastName", "family_name"),
    ("Email", "email"),
    ("Phone", "phone"),
    ("Company", "company"),
    ("Title", "job_title"),
    ("Website", "website"),
    ("Country", "country"),
    ("State", "state"),
    ("City", "city"),
    ("Industry", "industry"),
    ("LeadSource", "source"),
    ("Description", "why"),
];

pub fn default_hubspot_outcomes() -> BTreeMap<String, BTreeMap<String, LeadStatus>> {
    use LeadStatus::*;
    let table = |pairs: &[(&str, LeadStatus)]| pairs.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect();
    BTreeMap::from([
        (
            "lifecyclestage".to_owned(),
            table(&[("salesqualifiedlead", Qualified), ("opportunity", Qualified), ("customer", Won)]),
        ),
        (
            "hs_lead_status".to_owned(),
            table(&[("ATTEMPTED_TO_CONTACT", Contacted), ("CONNECTED", Contacted), ("UNQUALIFIED", Lost)]),
        ),
    ])
}

pub fn default_salesforce_outcomes() -> BTreeMap<String, LeadStatus> {
    BTreeMap::from([
        ("Working - Contacted".to_owned(), LeadStatus::Contacted),
        ("Closed - Not Converted".to_owned(), LeadStatus::Lost),
    ])
}

/// Lead fields a CRM mapping may name: the lead's own fields, and these.
pub const RECORD_FIELDS: [&str; 10] =
    ["lead_id", "why", "score", "grade", "pool", "owner", "given_name", "family_name", "received_at", "source"];

/// A lead field's value for a CRM record: a contact field, an attribute, or one of
/// [`RECORD_FIELDS`]. `given_name`/`family_name` are the first and last name, else `name` split
/// at its last space.
pub fn record_value(lead: &Lead, field: &str) -> Option<String> {
    let c = &lead.contact;
    let split = || c.name.as_deref().map(|n| n.trim().rsplit_once(' ').unwrap_or(("", n.trim())));
    let v = match field {
        "lead_id" => Some(lead.id.to_string()),
        "why" => lead.why.clone(),
        "score" => lead.score.map(|s| s.to_string()),
        "pool" => lead.pool.clone(),
        "owner" => lead.owner.clone(),
        "received_at" => Some(crate::notification::timestamp(lead.received_at)),
        "given_name" => c.first_name.clone().or_else(|| split().map(|(f, _)| f.trim().to_owned())),
        "family_name" => c.last_name.clone().or_else(|| split().map(|(_, l)| l.trim().to_owned())),
        _ => lead.field(field),
    };
    v.filter(|s| !s.trim().is_empty())
}
