//! Salesforce's REST API, called with the OAuth 2.0 client-credentials flow of a connected app.
//!
//! Wire facts (`../shared/CRM.md`, with sources):
//! - token: `POST <My Domain>/services/oauth2/token`, form `grant_type=client_credentials&
//!   client_id&client_secret` → `{access_token, instance_url, token_type: "Bearer", …}`; an
//!   expired token answers 401 `[{"message":"Session expired or invalid","errorCode":
//!   "INVALID_SESSION_ID"}]` (developer.salesforce.com … quickstart_connecting, errorcodes);
//! - collections upsert: `PATCH /services/data/vNN.0/composite/sobjects/Lead/<ExternalIdField>`
//!   with `{"allOrNone":false,"records":[{"attributes":{"type":"Lead"},…}]}`, at most 200
//!   records, answered 200 with one `{id, success, errors[{statusCode, message, fields}],
//!   created}` per record in request order (resources-composite-sobjects-collections-upsert);
//! - `Sforce-Auto-Assign: FALSE` keeps the `OwnerId` sent; absent, the org's assignment rules
//!   may replace it (headers-autoassign);
//! - `LastName` and `Company` are required; `Description` holds 32,000 characters (Lead object
//!   reference);
//! - an exceeded API limit is 403 `REQUEST_LIMIT_EXCEEDED`, not 429; errors are arrays of
//!   `{message, errorCode, fields}` (errorcodes);
//! - queries: `GET /services/data/vNN.0/query?q=` → `{totalSize, done, nextRecordsUrl?,
//!   records[{attributes, …}]}`, pages followed by `nextRecordsUrl`; DateTime literals are
//!   unquoted (resources-query, soql select dateformats).

use super::settings::{SalesforceSettings, record_value};
use super::{AccountOwner, BatchUpsert, CrmName, Outcome, Upsert, Upserted, clip, http_client, unreachable};
use crate::domain::LeadStatus;
use crate::ports::DeliveryResult;
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;

/// Records per collections request.
pub const MAX_BATCH: usize = 200;

#[derive(Clone)]
pub struct Salesforce {
    settings: Arc<SalesforceSettings>,
    client_id: Arc<str>,
    client_secret: Arc<str>,
    http: reqwest::Client,
    token: Arc<tokio::sync::Mutex<Option<String>>>,
}

impl Salesforce {
    pub fn new(settings: SalesforceSettings, client_id: String, client_secret: String) -> Salesforce {
        Salesforce {
            settings: Arc::new(settings),
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            http: http_client(),
            token: Arc::new(tokio::sync::Mutex::new(None)),
        }
    }

    pub fn settings(&self) -> &SalesforceSettings {
        &self.settings
    }

    fn data(&self, path: &str) -> String {
        format!("{}/services/data/{}{path}", self.settings.instance_url, self.settings.api_version)
    }

    /// A token: the one held, or a new one from the token endpoint.
    async fn token(&self, renew: bool) -> Result<String, DeliveryResult> {
        let mut held = self.token.lock().await;
        if let Some(t) = held.as_ref().filter(|_| !renew) {
            return Ok(t.clone());
        }
        let r = self
            .http
            .post(format!("{}/services/oauth2/token", self.settings.instance_url))
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", &*self.client_id),
                ("client_secret", &*self.client_secret),
            ])
            .send()
            .await
            .map_err(|e| unreachable(CrmName::Salesforce, &e))?;
        let status = r.status().as_u16();
        let body: Value = r.json().await.unwrap_or(Value::Null);
        match body["access_token"].as_str() {
            Some(t) if status == 200 => {
                *held = Some(t.to_owned());
                Ok(t.to_owned())
            }
            _ => Err(DeliveryResult::Retry {
                error: clip(&format!(
                    "Salesforce gave no token ({status}, check the connected app's client credentials flow): {}",
                    body["error_description"].as_str().or(body["error"].as_str()).unwrap_or("")
                )),
                after: None,
            }),
        }
    }

    /// Sends a call with the token, fetching a new one once when it has expired.
    async fn send(&self, build: impl Fn(&str) -> reqwest::RequestBuilder) -> Result<(u16, Value), DeliveryResult> {
        let mut renew = false;
        loop {
            let token = self.token(renew).await?;
            let r = build(&token).bearer_auth(&token).send().await.map_err(|e| unreachable(CrmName::Salesforce, &e))?;
            let status = r.status().as_u16();
            let body: Value = if status == 204 { Value::Null } else { r.json().await.unwrap_or(Value::Null) };
            if status == 401 && !renew {
                renew = true;
                continue;
            }
            if (200..300).contains(&status) {
                return Ok((status, body));
            }
            let first = body.as_array().and_then(|a| a.first()).cloned().unwrap_or(Value::Null);
            let code = first["errorCode"].as_str().unwrap_or("").to_owned();
            let message = first["message"].as_str().unwrap_or("").to_owned();
            return Err(match (status, code.as_str()) {
                // No Retry-After: the delivery's own backoff spaces the retries.
                (403, "REQUEST_LIMIT_EXCEEDED") => DeliveryResult::Retry {
                    error: clip(&format!("Salesforce API limit reached (REQUEST_LIMIT_EXCEEDED): {message}")),
                    after: None,
                },
                (401 | 403, _) => DeliveryResult::Retry {
                    error: clip(&format!("Salesforce refused the call ({status} {code}): {message}")),
                    after: None,
                },
                (300 | 400 | 404, _) => DeliveryResult::Dead {
                    error: clip(&format!("Salesforce rejected it ({status} {code}): {message}")),
                },
                _ => DeliveryResult::Retry {
                    error: clip(&format!("Salesforce answered {status} {code}: {message}")),
                    after: None,
                },
            });
        }
    }

    /// The Lead record for an upsert: the mapped fields, the required ones filled, the owner.
    fn record(&self, u: &Upsert) -> Value {
        let s = &self.settings;
        let mut r = serde_json::Map::new();
        r.insert("attributes".into(), json!({"type": "Lead"}));
        r.insert(s.external_id_field.clone(), Value::String(u.lead.id.to_string()));
        for (field, from) in &s.fields {
            if let Some(v) = record_value(&u.lead, from) {
                r.insert(field.clone(), Value::String(v));
            }
        }
        let filled = |r: &serde_json::Map<String, Value>, k: &str| r.get(k).and_then(Value::as_str).is_some();
        if !filled(&r, "Company") {
            let company = u.lead.account().map(str::to_owned).unwrap_or_else(|| s.company_fallback.clone());
            r.insert("Company".into(), Value::String(company));
        }
        if !filled(&r, "LastName") {
            r.insert("LastName".into(), Value::String(s.last_name_fallback.clone()));
        }
        for (k, max) in [("LastName", 80), ("FirstName", 40), ("Company", 255), ("Description", 32_000)] {
            if let Some(Value::String(v)) = r.get_mut(k)
                && v.chars().count() > max
            {
                *v = v.chars().take(max).collect();
            }
        }
        r.insert("OwnerId".into(), Value::String(u.owner.clone()));
        Value::Object(r)
    }

    /// Rows of a SOQL query, every page.
    pub async fn query(&self, soql: &str) -> Result<Vec<Value>, DeliveryResult> {
        let mut rows = Vec::new();
        let first = self.data("/query");
        let (_, mut page) = self.send(|_| self.http.get(&first).query(&[("q", soql)])).await?;
        loop {
            rows.extend(page["records"].as_array().cloned().unwrap_or_default());
            match page["nextRecordsUrl"].as_str().filter(|_| page["done"] == false) {
                Some(next) => {
                    let url = format!("{}{next}", self.settings.instance_url);
                    page = self.send(|_| self.http.get(&url)).await?.1;
                }
                None => return Ok(rows),
            }
        }
    }

    /// The active user with this email.
    pub async fn user_by_email(&self, email: &str) -> Result<Option<String>, DeliveryResult> {
        let q = format!("SELECT Id FROM User WHERE Email = '{}' AND IsActive = true LIMIT 1", soql_text(email));
        Ok(self.query(&q).await?.first().and_then(|u| u["Id"].as_str().map(str::to_owned)))
    }

    /// Accounts whose `Website` is on `domain` (or a subdomain of it), the most recently
    /// modified first (the tie-break when several match).
    pub async fn account_owners(&self, domain: &str) -> Result<Vec<AccountOwner>, DeliveryResult> {
        let q = format!(
            "SELECT Id, Name, OwnerId, Website, LastModifiedDate FROM Account WHERE Website LIKE '%{}%' \
             ORDER BY LastModifiedDate DESC LIMIT 20",
            soql_like(domain)
        );
        let rows = self.query(&q).await?;
        Ok(rows
            .iter()
            .filter(|a| a["Website"].as_str().is_some_and(|w| website_domain(w).is_some_and(|d| on_domain(&d, domain))))
            .filter_map(|a| {
                Some(AccountOwner {
                    owner: a["OwnerId"].as_str()?.to_owned(),
                    account: a["Name"].as_str().unwrap_or(domain).to_owned(),
                })
            })
            .collect())
    }

    /// Leads of ours changed since `since` (their `Status`, or for a converted lead its
    /// opportunity), and the time of the latest change read (the next pass's `since`).
    pub async fn changes(&self, since: DateTime<Utc>) -> Result<(Vec<Outcome>, DateTime<Utc>), DeliveryResult> {
        let ext = &self.settings.external_id_field;
        let at = since.to_rfc3339_opts(SecondsFormat::Secs, true);
        let fields = format!(
            "Id, {ext}, Status, IsConverted, ConvertedOpportunity.IsClosed, ConvertedOpportunity.IsWon, \
             ConvertedOpportunity.LastModifiedDate, LastModifiedDate"
        );
        // A lead's own changes, and the later changes of the opportunities converted leads became.
        let queries = [
            format!(
                "SELECT {fields} FROM Lead WHERE {ext} != null AND LastModifiedDate > {at} ORDER BY LastModifiedDate"
            ),
            format!(
                "SELECT {fields} FROM Lead WHERE {ext} != null AND IsConverted = true AND \
                 ConvertedOpportunity.LastModifiedDate > {at} ORDER BY LastModifiedDate"
            ),
        ];
        let mut latest = since;
        let mut seen: HashMap<String, Outcome> = HashMap::new();
        for q in queries {
            for row in self.query(&q).await? {
                let modified =
                    [row["LastModifiedDate"].as_str(), row["ConvertedOpportunity"]["LastModifiedDate"].as_str()];
                for t in modified.into_iter().flatten().filter_map(parse_time) {
                    latest = latest.max(t);
                }
                let Some(lead) = row[ext.as_str()].as_str() else { continue };
                if let Some((status, said)) = self.outcome_of(&row) {
                    seen.insert(lead.to_owned(), Outcome { lead: lead.to_owned(), status, said });
                }
            }
        }
        Ok((seen.into_values().collect(), latest))
    }

    /// The sales status a Lead row means: a converted lead is qualified, its opportunity
    /// closed won or lost decides; else the status table.
    fn outcome_of(&self, row: &Value) -> Option<(LeadStatus, String)> {
        if row["IsConverted"] == true {
            let opp = &row["ConvertedOpportunity"];
            return Some(match (opp["IsClosed"] == true, opp["IsWon"] == true) {
                (true, true) => (LeadStatus::Won, "converted; opportunity closed won".into()),
                (true, false) => (LeadStatus::Lost, "converted; opportunity closed lost".into()),
                _ => (LeadStatus::Qualified, "converted".into()),
            });
        }
        let status = row["Status"].as_str()?;
        let to = self.settings.status_outcomes.get(status).copied()?;
        Some((to, format!("Status = {status}")))
    }
}

impl BatchUpsert for Salesforce {
    async fn upsert_batch(&self, records: Vec<Upsert>) -> Vec<Upserted> {
        // One record per lead: the last one given wins.
        let mut latest: HashMap<String, usize> = HashMap::new();
        for (i, u) in records.iter().enumerate() {
            latest.insert(u.lead.id.to_string(), i);
        }
        let sent: Vec<usize> =
            (0..records.len()).filter(|i| latest.get(records[*i].lead.id.as_str()) == Some(i)).collect();
        let body = json!({ "allOrNone": false, "records": sent.iter().map(|&i| self.record(&records[i])).collect::<Vec<_>>() });
        let url = self.data(&format!("/composite/sobjects/Lead/{}", self.settings.external_id_field));
        let answer = self.send(|_| self.http.patch(&url).header("Sforce-Auto-Assign", "FALSE").json(&body)).await;
        let results: Vec<Upserted> = match answer {
            Ok((_, Value::Array(items))) => items
                .iter()
                .map(|r| {
                    if r["success"] == true {
                        return Ok(r["id"].as_str().map(str::to_owned));
                    }
                    let errors: Vec<String> = r["errors"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|e| {
                            format!(
                                "{}: {}",
                                e["statusCode"].as_str().unwrap_or("?"),
                                e["message"].as_str().unwrap_or("")
                            )
                        })
                        .collect();
                    Err(DeliveryResult::Dead {
                        error: clip(&format!("Salesforce rejected the Lead: {}", errors.join("; "))),
                    })
                })
                .collect(),
            Ok(_) => vec![
                Err(DeliveryResult::Retry { error: "Salesforce's answer was not a list".into(), after: None });
                sent.len()
            ],
            Err(e) => vec![Err(e); sent.len()],
        };
        let by_slot: HashMap<usize, Upserted> = sent.into_iter().zip(results).collect();
        records
            .iter()
            .map(|u| {
                let i = latest.get(u.lead.id.as_str()).copied().unwrap_or_default();
                by_slot.get(&i).cloned().unwrap_or_else(|| {
                    Err(DeliveryResult::Retry { error: "Salesforce's answer left this record out".into(), after: None })
                })
            })
            .collect()
    }
}

/// Salesforce's DateTime (`2026-12-02T10:00:00.000+0000`) or RFC 3339.
pub fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .or_else(|_| DateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f%z"))
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// A string literal's content in SOQL: quotes and backslashes escaped.
fn soql_text(s: &str) -> String {
    s.replace('\\', "\\\\").replace('\'', "\\'")
}

/// A LIKE pattern's literal part: wildcards escaped as well.
fn soql_like(s: &str) -> String {
    soql_text(s).replace('%', "\\%").replace('_', "\\_")
}

/// The host of a `Website` value (`https://www.acme.com/x`, `acme.com`), without `www.`.
fn website_domain(w: &str) -> Option<String> {
    let w = w.trim();
    let with_scheme = if w.contains("://") { w.to_owned() } else { format!("https://{w}") };
    let host = url::Url::parse(&with_scheme).ok()?.host_str()?.to_lowercase();
    Some(host.strip_prefix("www.").map(str::to_owned).unwrap_or(host))
}

fn on_domain(host: &str, domain: &str) -> bool {
    let domain = domain.to_lowercase();
    host == domain || host.ends_with(&format!(".{domain}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn websites_match_their_domain_only() {
        assert_eq!(website_domain("https://www.Acme.com/about").as_deref(), Some("acme.com"));
        assert_eq!(website_domain("acme.com").as_deref(), Some("acme.com"));
        assert!(on_domain("eu.acme.com", "acme.com"));
        assert!(!on_domain("notacme.com", "acme.com"));
        assert_eq!(soql_text("o'brien@x.com"), "o\\'brien@x.com");
        assert_eq!(soql_like("a_b%"), "a\\_b\\%");
    }

    #[test]
    fn salesforce_times_parse() {
        let t = parse_time("2026-12-02T10:00:00.000+0000").unwrap();
        assert_eq!(t, parse_time("2026-12-02T10:00:00Z").unwrap());
    }
}
