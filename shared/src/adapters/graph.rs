//! The Graph API `LeadFetcher`: Meta's lead fields, fetched after the webhook is answered.

use crate::config::Secret;
use crate::ports::{FetchFailure, LeadFetcher};
use crate::sources::meta::parse_graph_lead;
use futures::future::BoxFuture;
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;

const FIELDS: &str =
    "id,created_time,field_data,ad_id,ad_name,adset_id,campaign_id,campaign_name,form_id,is_organic,platform";

pub struct GraphFetcher {
    client: reqwest::Client,
    base_url: String,
    access_token: Option<Secret>,
    /// Lead field → Meta form field name, over the conventional names.
    field_map: BTreeMap<String, String>,
}

impl GraphFetcher {
    pub fn new(base_url: String, access_token: Option<Secret>, field_map: BTreeMap<String, String>) -> GraphFetcher {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .user_agent(concat!("leadrouter/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default();
        GraphFetcher { client, base_url, access_token, field_map }
    }

    async fn get(&self, leadgen_id: &str) -> Result<Vec<(String, Value)>, FetchFailure> {
        let fail = |error: String, after| FetchFailure { error, after };
        let Some(token) = &self.access_token else {
            return Err(fail("[sources.meta] access_token is not set".into(), None));
        };
        if !leadgen_id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
            return Err(fail("the leadgen id is not a Graph id".into(), None));
        }
        let url = format!("{}/{leadgen_id}", self.base_url);
        let res =
            self.client.get(url).query(&[("access_token", token.expose()), ("fields", FIELDS)]).send().await.map_err(
                |e| {
                    fail(
                        if e.is_timeout() { "the Graph API timed out" } else { "the Graph API is unreachable" }.into(),
                        None,
                    )
                },
            )?;
        let status = res.status();
        let after = res
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let body = res.bytes().await.map_err(|_| fail("the Graph answer was cut off".into(), None))?;
        if !status.is_success() {
            // Graph errors carry a numeric code (4, 17, 32, 613: rate limits); no personal data.
            let code = serde_json::from_slice::<Value>(&body).ok().and_then(|v| v["error"]["code"].as_i64());
            let code = code.map(|c| format!(", error code {c}")).unwrap_or_default();
            return Err(fail(format!("the Graph API answered {}{code}", status.as_u16()), after));
        }
        parse_graph_lead(&body, &self.field_map).map_err(|e| fail(e.to_string(), None))
    }
}

impl LeadFetcher for GraphFetcher {
    fn fetch<'a>(
        &'a self,
        source: &'a str,
        source_ref: &'a str,
    ) -> BoxFuture<'a, Result<Vec<(String, Value)>, FetchFailure>> {
        Box::pin(async move {
            if source != "meta" {
                return Err(FetchFailure { error: format!("no fetcher for source '{source}'"), after: None });
            }
            self.get(source_ref).await
        })
    }
}
