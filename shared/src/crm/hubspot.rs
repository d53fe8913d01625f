//! HubSpot's CRM v3 API, as a private app calls it, and its v3-signed webhooks.
//!
//! Wire facts (`../shared/CRM.md`, with sources):
//! - every call sends `Authorization: Bearer <private-app token>`; base `https://api.hubapi.com`
//!   (developers.hubspot.com/docs/apps/legacy-apps/authentication/intro-to-auth);
//! - `POST /crm/v3/objects/contacts/batch/upsert` takes `{"inputs":[{"idProperty","id",
//!   "properties"}]}`, at most 100 inputs, and answers 200 `{status, results[{id, properties,
//!   new, …}]}` or 207 with `errors[]` besides (HubSpot-public-api-spec-collection,
//!   Contacts v3; hubspot-api-nodejs#412 for the 100);
//! - the owner is `properties.hubspot_owner_id`, an owner's `id` (not its `userId`), found with
//!   `GET /crm/v3/owners?email=` (docs …/crm-crm-owners-v3/guide);
//! - companies by domain: `POST /crm/v3/objects/companies/search` with a `domain EQ` filter,
//!   listing `hubspot_owner_id` in `properties` (only defaults come back otherwise);
//! - a rate limit answers 429 `{"status":"error","errorType":"RATE_LIMIT","policyName",…}`,
//!   with `Retry-After` where present, else the next 10-second window;
//! - webhooks: `X-HubSpot-Signature-v3` = base64(HMAC-SHA256(client secret, method + URI +
//!   body + `X-HubSpot-Request-Timestamp`)), the timestamp in ms and at most 5 minutes old;
//!   the body is a JSON array of events (developers.hubspot.com/docs/apps/developer-platform/
//!   build-apps/authentication/request-validation).

use super::settings::{HubSpotSettings, record_value};
use super::{AccountOwner, BatchUpsert, CrmName, Upsert, Upserted, clip, http_client, retry_after, unreachable};
use crate::ports::DeliveryResult;
use base64::Engine;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use hmac::{Hmac, Mac};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

/// Inputs per batch upsert.
pub const MAX_BATCH: usize = 100;
/// A signed webhook older (or newer) than this is refused.
pub const TOLERANCE_MS: i64 = 5 * 60 * 1000;

#[derive(Clone)]
pub struct HubSpot {
    settings: Arc<HubSpotSettings>,
    token: Arc<str>,
    http: reqwest::Client,
    limiter: Arc<DefaultDirectRateLimiter>,
}

impl HubSpot {
    pub fn new(settings: HubSpotSettings, token: String) -> HubSpot {
        let n = NonZeroU32::new(settings.requests_per_10s.max(1)).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::with_period(Duration::from_millis(10_000 / u64::from(n.get())))
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
            .allow_burst(n);
        HubSpot {
            settings: Arc::new(settings),
            token: token.into(),
            http: http_client(),
            limiter: Arc::new(RateLimiter::direct(quota)),
        }
    }

    pub fn settings(&self) -> &HubSpotSettings {
        &self.settings
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.settings.api_base_url)
    }

    /// Sends one call within this deployment's share of the rate limit; a 2xx (or 207) answer
    /// comes back, anything else as the delivery failure it is.
    async fn send(&self, req: reqwest::RequestBuilder) -> Result<reqwest::Response, DeliveryResult> {
        self.limiter.until_ready().await;
        let r = req.bearer_auth(&*self.token).send().await.map_err(|e| unreachable(CrmName::HubSpot, &e))?;
        let status = r.status().as_u16();
        if r.status().is_success() {
            return Ok(r);
        }
        let after = retry_after(&r);
        let body: Value = r.json().await.unwrap_or(Value::Null);
        let message = body["message"].as_str().unwrap_or("").to_owned();
        Err(match status {
            // Retry-After where present, else the next 10-second window.
            429 => DeliveryResult::Retry {
                error: clip(&format!("HubSpot rate limit ({}): {message}", body["policyName"].as_str().unwrap_or("?"))),
                after: Some(after.unwrap_or(Duration::from_secs(10))),
            },
            401 | 403 => DeliveryResult::Retry {
                error: clip(&format!(
                    "HubSpot refused the token ({status}, check the private app's token and scopes): {message}"
                )),
                after: None,
            },
            400 | 404 | 409 | 422 => {
                DeliveryResult::Dead { error: clip(&format!("HubSpot rejected the record ({status}): {message}")) }
            }
            _ => DeliveryResult::Retry { error: clip(&format!("HubSpot answered {status}: {message}")), after },
        })
    }

    /// The contact's upsert key: its email, else the unique property holding the lead id.
    fn key(&self, u: &Upsert) -> (String, String) {
        match u.lead.contact.email.as_ref() {
            Some(e) => ("email".to_owned(), e.as_str().to_lowercase()),
            None => (self.settings.id_property.clone(), u.lead.id.to_string()),
        }
    }

    fn input(&self, u: &Upsert) -> Value {
        let (id_property, id) = self.key(u);
        let mut properties = serde_json::Map::new();
        for (property, field) in &self.settings.properties {
            if *property == id_property {
                continue;
            }
            if let Some(v) = record_value(&u.lead, field) {
                properties.insert(property.clone(), Value::String(v));
            }
        }
        properties.insert("hubspot_owner_id".into(), Value::String(u.owner.clone()));
        json!({ "idProperty": id_property, "id": id, "properties": properties, "objectWriteTraceId": u.lead.id.to_string() })
    }

    /// One batch upsert of inputs sharing an id property; outcomes in the order given.
    async fn upsert_inputs(&self, inputs: Vec<Value>) -> Vec<Upserted> {
        let n = inputs.len();
        let sent = self
            .send(self.http.post(self.url("/crm/v3/objects/contacts/batch/upsert")).json(&json!({ "inputs": inputs })))
            .await;
        let r = match sent {
            Ok(r) => r,
            // One bad input refuses the whole batch: each is tried alone, so only it dies.
            Err(DeliveryResult::Dead { .. }) if n > 1 => {
                let mut out = Vec::with_capacity(n);
                for input in inputs {
                    out.extend(Box::pin(self.upsert_inputs(vec![input])).await);
                }
                return out;
            }
            Err(e) => return vec![Err(e); n],
        };
        let body: Value = match r.json().await {
            Ok(b) => b,
            Err(_) => {
                let e = DeliveryResult::Retry { error: "HubSpot's answer was not JSON".into(), after: None };
                return vec![Err(e); n];
            }
        };
        let results = body["results"].as_array().cloned().unwrap_or_default();
        let by_key: HashMap<String, String> = results
            .iter()
            .filter_map(|r| {
                let id = r["id"].as_str()?.to_owned();
                let p = &r["properties"];
                let key = p["email"].as_str().or(p[&self.settings.id_property].as_str())?.to_lowercase();
                Some((key, id))
            })
            .collect();
        let errors: Vec<String> = body["errors"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e["message"].as_str().map(str::to_owned))
            .collect();
        inputs
            .iter()
            .enumerate()
            .map(|(i, input)| {
                let key = input["id"].as_str().unwrap_or_default().to_lowercase();
                match by_key.get(&key) {
                    Some(id) => Ok(Some(id.clone())),
                    // A result without the key property: the answer's order is the inputs'.
                    None if results.len() == n && errors.is_empty() => Ok(results[i]["id"].as_str().map(str::to_owned)),
                    None => Err(DeliveryResult::Dead {
                        error: clip(&format!("HubSpot rejected the record: {}", errors.join("; "))),
                    }),
                }
            })
            .collect()
    }

    /// The owner id of the HubSpot user with this email.
    pub async fn owner_by_email(&self, email: &str) -> Result<Option<String>, DeliveryResult> {
        let r =
            self.send(self.http.get(self.url("/crm/v3/owners")).query(&[("email", email), ("limit", "100")])).await?;
        let body: Value = r.json().await.unwrap_or(Value::Null);
        Ok(body["results"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|o| o["email"].as_str().is_some_and(|e| e.eq_ignore_ascii_case(email)) && o["archived"] != true)
            .and_then(|o| o["id"].as_str().map(str::to_owned)))
    }

    /// Companies whose `domain` is `domain` and that have an owner, the most recently modified
    /// first (the tie-break when several match).
    pub async fn company_owners(&self, domain: &str) -> Result<Vec<AccountOwner>, DeliveryResult> {
        let body = json!({
            "filterGroups": [{"filters": [{"propertyName": "domain", "operator": "EQ", "value": domain}]}],
            "properties": ["domain", "name", "hubspot_owner_id", "hs_lastmodifieddate"],
            "sorts": [{"propertyName": "hs_lastmodifieddate", "direction": "DESCENDING"}],
            "limit": 10,
        });
        let r = self.send(self.http.post(self.url("/crm/v3/objects/companies/search")).json(&body)).await?;
        let body: Value = r.json().await.unwrap_or(Value::Null);
        let mut found: Vec<(String, AccountOwner)> = body["results"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| {
                let p = &c["properties"];
                let owner = p["hubspot_owner_id"].as_str().filter(|o| !o.is_empty())?.to_owned();
                let name = p["name"].as_str().or(p["domain"].as_str()).unwrap_or(domain).to_owned();
                let modified = p["hs_lastmodifieddate"].as_str().or(c["updatedAt"].as_str()).unwrap_or("").to_owned();
                Some((modified, AccountOwner { owner, account: name }))
            })
            .collect();
        // RFC 3339 times in one zone sort as text.
        found.sort_by(|a, b| b.0.cmp(&a.0));
        Ok(found.into_iter().map(|(_, a)| a).collect())
    }
}

impl BatchUpsert for HubSpot {
    async fn upsert_batch(&self, records: Vec<Upsert>) -> Vec<Upserted> {
        // One input per contact (the last record of a contact wins), grouped by id property;
        // owned indexes only, so the future holds no borrow across its awaits.
        let (winner, groups) = {
            let keys: Vec<(String, String)> = records.iter().map(|u| self.key(u)).collect();
            let mut latest: HashMap<&(String, String), usize> = HashMap::new();
            for (i, k) in keys.iter().enumerate() {
                latest.insert(k, i);
            }
            let winner: Vec<usize> = keys.iter().map(|k| latest.get(k).copied().unwrap_or_default()).collect();
            let mut groups: HashMap<String, Vec<usize>> = HashMap::new();
            for (i, k) in keys.iter().enumerate() {
                if winner[i] == i {
                    groups.entry(k.0.clone()).or_default().push(i);
                }
            }
            (winner, groups.into_values().collect::<Vec<Vec<usize>>>())
        };
        let mut outcome: HashMap<usize, Upserted> = HashMap::new();
        for idx in groups {
            let inputs = idx.iter().map(|&i| self.input(&records[i])).collect();
            for (i, o) in idx.into_iter().zip(self.upsert_inputs(inputs).await) {
                outcome.insert(i, o);
            }
        }
        winner
            .iter()
            .map(|i| {
                outcome.get(i).cloned().unwrap_or_else(|| {
                    Err(DeliveryResult::Retry { error: "HubSpot's answer left this record out".into(), after: None })
                })
            })
            .collect()
    }
}

/// One webhook event, as HubSpot sends it (fields we read).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    #[serde(default)]
    pub subscription_type: String,
    pub object_id: Value,
    #[serde(default)]
    pub property_name: Option<String>,
    #[serde(default)]
    pub property_value: Option<Value>,
}

impl Event {
    pub fn object(&self) -> String {
        match &self.object_id {
            Value::String(s) => s.clone(),
            v => v.to_string(),
        }
    }
}

/// Checks `X-HubSpot-Signature-v3`: base64 HMAC-SHA256 of method + URI + body + timestamp,
/// keyed with the app's client secret, the timestamp (ms) within five minutes of `now_ms`.
pub fn signature_valid(
    secret: &str,
    method: &str,
    uri: &str,
    body: &[u8],
    timestamp: &str,
    signature: &str,
    now_ms: i64,
) -> bool {
    let Ok(at) = timestamp.trim().parse::<i64>() else { return false };
    if (now_ms - at).abs() > TOLERANCE_MS {
        return false;
    }
    let Ok(sig) = base64::engine::general_purpose::STANDARD.decode(signature.trim()) else { return false };
    let Ok(mut mac) = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()) else { return false };
    mac.update(method.as_bytes());
    mac.update(uri.as_bytes());
    mac.update(body);
    mac.update(timestamp.trim().as_bytes());
    mac.verify_slice(&sig).is_ok()
}

/// The signature HubSpot would send (tests, and anyone checking a setup by hand).
pub fn sign(secret: &str, method: &str, uri: &str, body: &[u8], timestamp: &str) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    mac.update(method.as_bytes());
    mac.update(uri.as_bytes());
    mac.update(body);
    mac.update(timestamp.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// The sales status an event reports, by the outcome tables: a property change of a
/// contact whose property and value are mapped.
pub fn outcome_of(settings: &HubSpotSettings, e: &Event) -> Option<(String, crate::domain::LeadStatus, String)> {
    if !e.subscription_type.starts_with("contact.") {
        return None;
    }
    let property = e.property_name.as_deref()?;
    let value = match e.property_value.as_ref()? {
        Value::String(s) => s.clone(),
        v => v.to_string(),
    };
    let status = settings.outcomes.get(property)?.get(&value).copied()?;
    Some((e.object(), status, format!("{property} = {value}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v3_signatures_verify_within_five_minutes_and_not_when_tampered() {
        let uri = "https://leads.example.com/v1/webhooks/hubspot";
        let body = br#"[{"objectId":1}]"#;
        let ts = "1764979200000";
        let sig = sign("client-secret", "POST", uri, body, ts);
        let now = 1_764_979_200_000;
        assert!(signature_valid("client-secret", "POST", uri, body, ts, &sig, now));
        assert!(signature_valid("client-secret", "POST", uri, body, ts, &sig, now + TOLERANCE_MS));
        assert!(!signature_valid("client-secret", "POST", uri, body, ts, &sig, now + TOLERANCE_MS + 1));
        assert!(!signature_valid("other", "POST", uri, body, ts, &sig, now));
        assert!(!signature_valid("client-secret", "POST", uri, br#"[{"objectId":2}]"#, ts, &sig, now));
        assert!(!signature_valid("client-secret", "POST", &format!("{uri}?x=1"), body, ts, &sig, now));
        assert!(!signature_valid("client-secret", "POST", uri, body, "1764979200001", &sig, now));
        assert!(!signature_valid("client-secret", "POST", uri, body, ts, "not base64!", now));
    }
}
