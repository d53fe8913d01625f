//! How a lead is kept in a row: its document, and the columns the queries read without decoding it.

use crate::domain::{Lead, LeadId, Stage};
use crate::ports::StoreError;
use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};

pub(super) fn sql_error(e: rusqlite::Error) -> StoreError {
    match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) => {
            StoreError::Retryable(Box::new(e))
        }
        _ => StoreError::Unavailable(Box::new(e)),
    }
}

pub(super) fn decode<T: serde::de::DeserializeOwned>(id: &str, doc: &str) -> Result<T, StoreError> {
    serde_json::from_str(doc).map_err(|e| StoreError::Corrupt { id: id.to_owned(), source: Box::new(e) })
}

pub(super) fn encode<T: serde::Serialize>(id: &str, v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| StoreError::Corrupt { id: id.to_owned(), source: Box::new(e) })
}

pub(super) fn load(conn: &Connection, id: &LeadId) -> Result<Option<Lead>, StoreError> {
    let doc: Option<String> = conn
        .prepare_cached("SELECT doc FROM leads WHERE id = ?1")
        .and_then(|mut s| s.query_row([id.as_str()], |r| r.get(0)).optional())
        .map_err(sql_error)?;
    doc.map(|d| decode(id.as_str(), &d)).transpose()
}

pub(super) fn ms(t: Option<DateTime<Utc>>) -> Option<i64> {
    t.map(|t| t.timestamp_millis())
}

pub(super) fn from_ms(v: Option<i64>) -> Option<DateTime<Utc>> {
    v.and_then(DateTime::from_timestamp_millis)
}

/// The owned lead's account, indexed for owner stickiness.
pub(super) fn account(lead: &Lead) -> Option<&str> {
    lead.owner.as_ref().and(lead.account())
}

pub(super) fn due_ms(lead: &Lead) -> i64 {
    lead.pending_due().map_or(0, |d| d.timestamp_millis())
}

pub(super) fn save(conn: &Connection, lead: &Lead) -> Result<(), StoreError> {
    let doc = encode(lead.id.as_str(), lead)?;
    conn.prepare_cached(
        "UPDATE leads SET status = ?2, owner = ?3, stage = ?4, doc = ?5, grade = ?6, account = ?7, assigned_ms = ?8,
         accepted_ms = ?9, pool = ?10, due_ms = ?11, active_ms = ?12, erased = ?13 WHERE id = ?1",
    )
    .and_then(|mut s| {
        s.execute(params![
            lead.id.as_str(),
            lead.status.as_str(),
            lead.owner,
            lead.pending_stage().map(Stage::as_str),
            doc,
            lead.grade,
            account(lead),
            ms(lead.first_assigned_at),
            ms(lead.accepted_at),
            lead.pool,
            due_ms(lead),
            lead.last_activity().timestamp_millis(),
            lead.personal_data_erased_at.is_some(),
        ])
    })
    .map_err(sql_error)?;
    Ok(())
}
