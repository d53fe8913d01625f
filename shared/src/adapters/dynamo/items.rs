//! How a lead and its records are kept as items: attribute helpers, errors, the lead item
//! with its deflated document and index keys, and the deliveries item.

use super::partitions::{listed_by_status, update_hour};
use super::{Item, SHARDS};
use crate::domain::{Lead, LeadId};
use crate::ports::{Delivery, StoreError};
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;
use sha2::{Digest, Sha256};
use std::collections::HashMap;

pub(super) fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

pub(super) fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

/// Throttling and conflicts are worth a retry; the cause is kept either way.
pub(super) fn sdk_error<E, R>(e: SdkError<E, R>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    let retryable = match &e {
        SdkError::ServiceError(se) => matches!(
            se.err().code(),
            Some(
                "ProvisionedThroughputExceededException"
                    | "ThrottlingException"
                    | "RequestLimitExceeded"
                    | "TransactionConflictException"
                    | "InternalServerError"
                    | "ServiceUnavailable"
            )
        ),
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => true,
        _ => false,
    };
    if retryable { StoreError::Retryable(Box::new(e)) } else { StoreError::Unavailable(Box::new(e)) }
}

pub(super) fn corrupt(id: &str, e: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::Corrupt { id: id.to_owned(), source: Box::new(e) }
}

pub(super) fn shard(id: &LeadId) -> u8 {
    Sha256::digest(id.as_str().as_bytes())[0] % SHARDS
}

pub(super) fn seq(lead: &Lead) -> String {
    format!("{:016}#{}", lead.received_at.timestamp_micros().max(0), lead.id)
}

pub(super) fn lead_key(id: &LeadId) -> Item {
    HashMap::from([("pk".to_owned(), s(format!("LEAD#{id}"))), ("sk".to_owned(), s("A"))])
}

/// The lead an index entry points at (every entry carries the table's keys).
pub(super) fn lead_id_of(item: &Item) -> Option<LeadId> {
    get_s(item, "pk").and_then(|p| p.strip_prefix("LEAD#")).and_then(LeadId::parse)
}

pub(super) fn get_s<'a>(item: &'a Item, k: &str) -> Option<&'a str> {
    item.get(k).and_then(|v| v.as_s().ok()).map(String::as_str)
}

pub(super) fn get_n(item: &Item, k: &str) -> Option<i64> {
    item.get(k).and_then(|v| v.as_n().ok()).and_then(|v| v.parse().ok())
}

/// The sort key of the item holding a lead's delivery records.
pub(super) const DELIVERIES: &str = "DELIVERIES";

pub(super) fn deflated(json: &[u8]) -> AttributeValue {
    AttributeValue::B(Blob::new(miniz_oxide::deflate::compress_to_vec(json, 9)))
}

pub(super) fn inflated(id: &str, doc: &Blob) -> Result<Vec<u8>, StoreError> {
    miniz_oxide::inflate::decompress_to_vec_with_limit(doc.as_ref(), MAX_DOC)
        .map_err(|e| StoreError::Corrupt { id: id.to_owned(), source: format!("doc: {e}").into() })
}

/// A lead's delivery records: one deflated JSON list, so that a notification's deliveries
/// (the rep's and the manager's, every target) cost one write together.
pub(super) fn deliveries_of(lead: &LeadId, item: &Item) -> Result<Vec<Delivery>, StoreError> {
    match item.get("doc") {
        Some(AttributeValue::B(doc)) => {
            serde_json::from_slice(&inflated(lead.as_str(), doc)?).map_err(|e| corrupt(lead.as_str(), e))
        }
        _ => Err(StoreError::Corrupt { id: lead.to_string(), source: "deliveries without doc".into() }),
    }
}

/// Decompressed lead documents larger than this are refused (an item is at most 400 KB).
pub(super) const MAX_DOC: usize = 4 << 20;

/// The lead as an item. Its fields travel as one deflated JSON document, `doc`, which keeps a
/// routed lead under 1 KB, the size of one write unit (a routed lead is about 1.3 KB as
/// attributes, most of it names repeated in its history). Beside it: the keys, `version`,
/// the index keys, what the indexes project (`due`, `owner`), and `status` for a person
/// reading the table.
pub(super) fn lead_item(lead: &Lead, version: i64, delete_after: Option<chrono::Duration>) -> Result<Item, StoreError> {
    let json = serde_json::to_vec(lead).map_err(|e| corrupt(lead.id.as_str(), e))?;
    let sh = shard(&lead.id);
    let mut item = lead_key(&lead.id);
    if let Some(after) = delete_after {
        item.insert("expires_at".into(), n((lead.last_activity() + after).timestamp()));
    }
    item.insert("doc".into(), deflated(&json));
    item.insert("status".into(), s(lead.status.as_str()));
    item.insert("version".into(), n(version));
    item.insert("seq".into(), s(seq(lead)));
    if listed_by_status(lead) {
        item.insert("by_status_pk".into(), s(format!("STATUS#{}#{sh}", lead.status)));
    }
    item.insert("by_source_pk".into(), s(format!("SOURCE#{}#{sh}", lead.source)));
    // Moves only when the lead's last change crosses into another hour.
    item.insert("by_update_pk".into(), s(format!("UPDATED#{}#{sh}", update_hour(lead.last_activity()))));
    // Open leads in a partition of their own: capacity and reassignment read only those.
    if let Some(o) = &lead.owner {
        let open = if lead.is_open() { "OPEN" } else { "OWNER" };
        item.insert("by_owner_pk".into(), s(format!("{open}#{o}")));
    }
    // Constant while the lead moves from stage to stage, so those writes leave the index alone.
    if lead.pending_stage().is_some() {
        item.insert("pending_pk".into(), s(format!("PENDING#{sh}")));
        if let Some(due) = lead.pending_due() {
            item.insert("due".into(), n(due.timestamp_millis()));
        }
    }
    if let (Some(o), Some(domain)) = (&lead.owner, lead.account()) {
        item.insert("by_account_pk".into(), s(format!("ACCOUNT#{domain}")));
        item.insert("owner".into(), s(o));
    }
    Ok(item)
}

pub(super) fn lead_of(item: Item) -> Result<(Lead, i64), StoreError> {
    let id = get_s(&item, "pk").unwrap_or("?").to_owned();
    let version = get_n(&item, "version").unwrap_or(0);
    let lead: Lead = match item.get("doc") {
        Some(AttributeValue::B(doc)) => serde_json::from_slice(&inflated(&id, doc)?).map_err(|e| corrupt(&id, e))?,
        // Written before leads were compressed: the fields are the attributes.
        _ => serde_dynamo::from_item(item).map_err(|e| corrupt(&id, e))?,
    };
    Ok((lead, version))
}
