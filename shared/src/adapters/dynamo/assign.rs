//! The assign transaction: a pool's cursor and its leads' owners in one TransactWriteItems.

use super::items::*;
use super::{CURSOR_RETRIES, DynamoStore, MAX_TX_LEADS};
use crate::domain::LeadId;
use crate::ports::{AssignChange, StoreError, Turns, Updated};
use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::types::{Put, TransactWriteItem};
use std::collections::HashMap;

impl DynamoStore {
    /// [`crate::ports::LeadStore::assign`]: a transaction per [`MAX_TX_LEADS`] leads.
    pub(super) async fn assign_in_pool<F: AssignChange>(
        &self,
        pool: &str,
        ids: &[LeadId],
        assign: &F,
    ) -> Result<Vec<Updated>, StoreError> {
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(MAX_TX_LEADS) {
            out.extend(self.assign_chunk(pool, chunk, assign).await?);
        }
        Ok(out)
    }

    /// One TransactWriteItems: the cursor moves from what we read to that plus the leads
    /// accepted, and each lead is written only if unchanged since we read it. A lost race
    /// is read again and retried.
    async fn assign_chunk<F: AssignChange>(
        &self,
        pool: &str,
        ids: &[LeadId],
        assign: &F,
    ) -> Result<Vec<Updated>, StoreError> {
        let cursor_key = HashMap::from([("pk".to_owned(), s(format!("POOL#{pool}"))), ("sk".to_owned(), s("CURSOR"))]);
        for attempt in 0..CURSOR_RETRIES {
            if attempt > 0 {
                let cap_ms = 5u64 << attempt.min(5);
                tokio::time::sleep(std::time::Duration::from_millis(rand::random_range(1..=cap_ms))).await;
            }
            let start = self.get_item(cursor_key.clone()).await?.and_then(|i| get_n(&i, "turn")).unwrap_or(0);
            let mut turns = Turns { cursor: start as u64, ..Turns::default() };
            let mut results = Vec::with_capacity(ids.len());
            let mut actions = Vec::new();
            for id in ids {
                let Some((mut lead, version)) = self.load(id).await? else {
                    results.push(Updated::Missing);
                    continue;
                };
                if assign(&mut lead, &mut turns) {
                    actions.push(TransactWriteItem::builder().put(self.put_lead(&lead, version)?).build());
                    results.push(Updated::Written(Box::new(lead)));
                } else {
                    results.push(Updated::Unchanged(Box::new(lead)));
                }
            }
            if actions.is_empty() {
                return Ok(results);
            }
            let mut cursor = cursor_key.clone();
            cursor.insert("turn".into(), n(turns.cursor));
            let cursor_put = Put::builder()
                .table_name(&self.table)
                .set_item(Some(cursor))
                .condition_expression("attribute_not_exists(pk) OR turn = :t")
                .expression_attribute_values(":t", n(start))
                .build()
                .map_err(|e| StoreError::Unavailable(Box::new(e)))?;
            actions.insert(0, TransactWriteItem::builder().put(cursor_put).build());
            let r = self.client.transact_write_items().set_transact_items(Some(actions)).send().await;
            match r {
                Ok(_) => return Ok(results),
                Err(e) => {
                    let lost_race = e.as_service_error().is_some_and(|se| {
                        se.is_transaction_canceled_exception() && se.code() == Some("TransactionCanceledException")
                    });
                    if !lost_race {
                        return Err(sdk_error(e));
                    }
                    // A condition failed (the cursor moved or a lead changed): read again.
                }
            }
        }
        Err(StoreError::Retryable(format!("pool {pool}: the cursor kept moving under us").into()))
    }
}
