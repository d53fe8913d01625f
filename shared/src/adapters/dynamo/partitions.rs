//! Which index partitions hold which leads.

use super::{Item, SHARDS};
use crate::domain::{Lead, LeadStatus};
use chrono::{DateTime, Timelike, Utc};

/// One index partition: index, key attribute, key.
pub(super) type Partition = (&'static str, &'static str, String);

pub(super) fn pending_partitions() -> impl Iterator<Item = Partition> {
    (0..SHARDS).map(|sh| ("pending", "pending_pk", format!("PENDING#{sh}")))
}

pub(super) fn status_partitions(st: LeadStatus) -> impl Iterator<Item = Partition> {
    (0..SHARDS).map(move |sh| ("by_status", "by_status_pk", format!("STATUS#{st}#{sh}")))
}

/// Every lead is in `by_status` or in `pending` (`listed_by_status`), so these partitions
/// together hold every lead: listing all leads, replay and the metrics read them, and no
/// index of every lead has to be written.
pub(super) fn every_partition() -> Vec<Partition> {
    let mut p: Vec<Partition> =
        LeadStatus::ALL.into_iter().filter(|s| !passing_through(*s)).flat_map(status_partitions).collect();
    p.extend(pending_partitions());
    p
}

/// The table key of an index entry (every entry carries it).
pub(super) fn table_key(k: &Item) -> Item {
    ["pk", "sk"].iter().filter_map(|a| k.get(*a).map(|v| (a.to_string(), v.clone()))).collect()
}

/// Statuses a lead holds only on its way to a rep (each always waiting for a stage): not kept
/// in `by_status`, to save the index writes of every lead's first steps.
pub(super) fn passing_through(status: LeadStatus) -> bool {
    matches!(status, LeadStatus::Fetching | LeadStatus::Received | LeadStatus::Unique | LeadStatus::Scored)
}

/// Whether `by_status` holds the lead: unless it waits in `pending` on its way to a rep or
/// while a new owner is being told (assigned, a notification owed: it becomes `notified`
/// within a second). Those leads are listed from `pending`, and each status skipped saves an
/// index delete and put. Every lead is in one of the two.
pub(super) fn listed_by_status(lead: &Lead) -> bool {
    let being_told = lead.status == LeadStatus::Assigned && lead.notify_pending.is_some();
    !(lead.pending_stage().is_some() && (passing_through(lead.status) || being_told))
}

/// The hour a lead's last change falls in, as `by_update` partitions it.
pub(super) fn update_hour(at: DateTime<Utc>) -> String {
    at.format("%Y%m%d%H").to_string()
}

/// The `by_update` partitions of every hour from `since` to an hour past now: none when that
/// is over two days of hours (listing then reads every lead and keeps the changed ones).
pub(super) fn update_partitions(since: DateTime<Utc>) -> Option<Vec<Partition>> {
    const MAX_HOURS: i64 = 48;
    let until = Utc::now().max(since) + chrono::Duration::hours(1);
    let hours = (until - since).num_hours() + 1;
    if hours > MAX_HOURS {
        return None;
    }
    let start = since.with_minute(0)?.with_second(0)?.with_nanosecond(0)?;
    Some(
        (0..=hours)
            .map(|h| update_hour(start + chrono::Duration::hours(h)))
            .flat_map(|hour| (0..SHARDS).map(move |sh| ("by_update", "by_update_pk", format!("UPDATED#{hour}#{sh}"))))
            .collect(),
    )
}
