//! Identity claims: dedup's conditional writes on `ID#<key>` items, first claim wins.

use super::items::*;
use super::{DynamoStore, RACE_RETRIES};
use crate::domain::LeadId;
use crate::ports::{Claim, StoreError};
use chrono::{DateTime, Utc};
use std::collections::HashMap;

impl DynamoStore {
    /// [`crate::ports::LeadStore::claim`]: claims until no other lead's write races ours.
    pub(super) async fn claim_keys(
        &self,
        lead: &LeadId,
        keys: &[String],
        now: DateTime<Utc>,
        stale_before: DateTime<Utc>,
    ) -> Result<Claim, StoreError> {
        for _ in 0..RACE_RETRIES {
            if let Some(claim) = self.claim_once(lead, keys, now, stale_before).await? {
                return Ok(claim);
            }
        }
        Err(StoreError::Retryable(format!("lead {lead}: its identity keys kept changing under us").into()))
    }

    /// Claims each key for `lead` in turn without reading first; a key held by another lead
    /// inside the window fails its condition and the write returns who holds it. Then `lead` is
    /// that lead's duplicate: the keys it took in this call go to the holder, and so do the free
    /// ones left (so the person is recognized by them next time). A new person (the common
    /// case) costs one write per key and no read. None when the answer was unreadable.
    async fn claim_once(
        &self,
        lead: &LeadId,
        keys: &[String],
        now: DateTime<Utc>,
        stale_before: DateTime<Utc>,
    ) -> Result<Option<Claim>, StoreError> {
        let mut mine: Vec<&String> = Vec::new();
        let mut taken: Option<(String, String)> = None;
        for k in keys {
            let holder = taken.as_ref().map_or(lead.as_str(), |(_, by)| by.as_str());
            match self.put_claim(k, holder, holder, now, stale_before).await? {
                None if taken.is_none() => mine.push(k),
                None => {}
                // Held by someone else: if we were claiming for ourselves, they were first.
                Some(by) if taken.is_none() => taken = Some((k.clone(), by)),
                // Claiming for the holder, a key held by a third lead stays theirs.
                Some(_) => {}
            }
        }
        let Some((key, by)) = taken else { return Ok(Some(Claim::Unique)) };
        for k in mine {
            // Ours since a moment ago: it goes to the lead that was first.
            self.put_claim(k, &by, lead.as_str(), now, stale_before).await?;
        }
        // The duplicate is the same person: an erasure by the key must find it too.
        self.put_shared(&key, lead.as_str()).await?;
        Ok(LeadId::parse(&by).map(|by| Claim::Taken { key, by }))
    }

    /// Writes `key` as claimed by `holder` if it is free, stale or held by `allowed`; otherwise
    /// the lead holding it.
    async fn put_claim(
        &self,
        key: &str,
        holder: &str,
        allowed: &str,
        now: DateTime<Utc>,
        stale_before: DateTime<Utc>,
    ) -> Result<Option<String>, StoreError> {
        use aws_sdk_dynamodb::operation::put_item::PutItemError;
        use aws_sdk_dynamodb::types::ReturnValuesOnConditionCheckFailure;
        let item = HashMap::from([
            ("pk".to_owned(), s(format!("ID#{key}"))),
            ("sk".to_owned(), s("A")),
            ("lead_id".to_owned(), s(holder)),
            ("claimed_at".to_owned(), n(now.timestamp_millis())),
        ]);
        let r = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk) OR claimed_at < :stale OR lead_id = :me")
            .expression_attribute_values(":stale", n(stale_before.timestamp_millis()))
            .expression_attribute_values(":me", s(allowed))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllOld)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match r {
            Ok(out) => {
                // A stale claim taken over: its old holder is still that person's lead.
                if let Some(old) = out.attributes.as_ref().and_then(|i| get_s(i, "lead_id"))
                    && old != holder
                    && old != allowed
                {
                    self.put_shared(key, old).await?;
                }
                Ok(None)
            }
            Err(e) => match e.as_service_error() {
                Some(PutItemError::ConditionalCheckFailedException(c)) => {
                    let by = c.item().and_then(|i| get_s(i, "lead_id")).map(str::to_owned);
                    by.map(Some).ok_or_else(|| corrupt(key, std::io::Error::other("a claim without lead_id")))
                }
                _ => Err(sdk_error(e)),
            },
        }
    }

    /// Records that `lead` has `key` though it does not hold the claim.
    async fn put_shared(&self, key: &str, lead: &str) -> Result<(), StoreError> {
        let item =
            HashMap::from([("pk".to_owned(), s(format!("ID#{key}"))), ("sk".to_owned(), s(format!("LEAD#{lead}")))]);
        self.client.put_item().table_name(&self.table).set_item(Some(item)).send().await.map_err(sdk_error)?;
        Ok(())
    }
}
