//! The AWS `LeadStore`: one DynamoDB table.
//!
//! Key design (`pk`, `sk`):
//!
//! | item | pk | sk | notes |
//! |---|---|---|---|
//! | lead | `LEAD#<id>` | `A` | the lead's fields (serde_dynamo), `version` for optimistic writes, index keys below |
//! | deliveries | `LEAD#<id>` | `DELIVERIES` | every delivery record of the lead, deflated JSON (`doc`), `version` |
//! | identity claim | `ID#<key>` | `A` | `lead_id`, `claimed_at` (ms) |
//! | identity shared | `ID#<key>` | `LEAD#<id>` | a duplicate that matched the key, or a holder whose stale claim a later lead took: with the claim, every lead of a person (erasure) |
//! | pool cursor | `POOL#<pool>` | `CURSOR` | `turn`: the round-robin counter |
//! | routing document | `CONFIG` | `ROUTING` | `toml` (written by `leadrouter config push`) |
//! | roster change | `REPS` | `REP#<id>` | `doc`: the rep's record as `PUT /v1/reps/{id}` stored it |
//! | roster history | `REPHISTORY` | `<updated µs>#<id>#<ulid>` | `doc`: every record `PUT /v1/reps/{id}` stored, for replay |
//! | named value | `KV#<key>` | `KV` | `v`: a CRM record's lead (`crm:hubspot:<id>`), how far a CRM's changes were read back |
//!
//! A lead item holds the lead as one deflated JSON document (`doc`), so that a routed lead stays
//! under 1 KB, one write unit; beside it only keys, `version`, `status`, the index keys and
//! what the indexes project. Leads written before (their fields as attributes) are still read.
//!
//! Global secondary indexes, each sorted by `seq` (`<received µs>#<id>`, newest last), so that
//! no request path scans:
//!
//! | index | partition key | holds | projects |
//! |---|---|---|---|
//! | `by_status` | `STATUS#<status>#<shard>` | every lead not in `pending` on its way to a rep or while its new owner is told; with `pending`, every lead (listing all, replay, metrics) | keys |
//! | `by_owner` | `OPEN#<rep>` while the rep works the lead, `OWNER#<rep>` after | owned leads; capacity and reassignment read the open partition | keys |
//! | `by_source` | `SOURCE#<source>#<shard>` | every lead | keys |
//! | `pending` | `PENDING#<shard>` | leads waiting for a stage; the key does not change from stage to stage | `due`: the SLA deadline of a lead waiting for acceptance (ms), so the sweep reads only leads that are due |
//! | `by_account` | `ACCOUNT#<email domain>` | owned leads from business domains | `owner`: owner stickiness |
//! | `by_update` | `UPDATED#<hour of the last change>#<shard>` | every lead, by when it last changed (`Lead::last_activity`) | keys: `GET /v1/leads?updated_since=` reads the hours since |
//!
//! An index entry is written only when its key or what it projects changes, so each of those
//! choices is a write unit saved per lead (the cost test meters them). Keys that every lead
//! passes through are spread over [`SHARDS`] partitions by a hash of the lead id; a query reads
//! every shard and merges.
//!
//! Here: the store and its queries. `items` holds the item encoding (the lead item, its
//! document and index keys, the deliveries item), `partitions` which index partitions hold which
//! leads, `claims` the identity claims dedup makes, `assign` the transaction that moves a pool's
//! cursor and writes its leads' owners.

use crate::domain::{Lead, LeadId, LeadStatus, RepRecord};
use crate::ports::{
    AssignChange, Claim, Delivery, FactsPage, Inserted, LeadChange, LeadFacts, LeadPage, LeadQuery, LeadStore,
    PendingPage, StoreError, Updated,
};
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{AttributeValue, Put};
use chrono::{DateTime, Utc};
use std::collections::HashMap;

mod assign;
mod claims;
mod items;
mod partitions;

use items::*;
use partitions::*;

type Item = HashMap<String, AttributeValue>;

/// Write shards for the status, source, all and pending indexes.
pub const SHARDS: u8 = 8;
/// Optimistic writes retried this many times on a lost race before giving up (retryable).
const RACE_RETRIES: usize = 8;
/// How many leads one page of `list` reads at most, over all the partitions it reads.
const LIST_READS: usize = 2_000;
/// The pool cursor is the one hot item: racing assigners back off with jitter and try longer.
const CURSOR_RETRIES: u32 = 60;
/// TransactWriteItems takes at most 100 actions; one is the cursor.
const MAX_TX_LEADS: usize = 99;

pub const INDEXES: [(&str, &str); 6] = [
    ("by_status", "by_status_pk"),
    ("by_owner", "by_owner_pk"),
    ("by_source", "by_source_pk"),
    ("pending", "pending_pk"),
    ("by_account", "by_account_pk"),
    ("by_update", "by_update_pk"),
];

/// The attributes an index holds besides the keys (none: `KEYS_ONLY`). The sweep and start-up
/// need only which lead, which stage and from when; owner stickiness only the owner.
pub fn projected(index: &str) -> &'static [&'static str] {
    match index {
        "pending" => &["due"],
        "by_account" => &["owner"],
        _ => &[],
    }
}

#[derive(Clone)]
pub struct DynamoStore {
    client: Client,
    table: String,
    /// `[retention] delete_after_days`: each lead item carries `expires_at` (the table's TTL
    /// attribute, unix seconds) this long after its last activity.
    delete_after: Option<chrono::Duration>,
    /// How many leads one page of `list` reads at most (`LIST_READS`).
    list_reads: usize,
}

impl DynamoStore {
    pub fn new(client: Client, table: impl Into<String>) -> DynamoStore {
        DynamoStore { client, table: table.into(), delete_after: None, list_reads: LIST_READS }
    }

    /// A page of `list` reads at most `reads` leads, other than the default (tests show pages
    /// cut short with a few leads).
    pub fn with_list_reads(mut self, reads: usize) -> DynamoStore {
        self.list_reads = reads.max(1);
        self
    }

    /// Leads are deleted by the table's TTL this long after their last activity (None: never).
    pub fn with_delete_after(mut self, after: Option<chrono::Duration>) -> DynamoStore {
        self.delete_after = after;
        self
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    /// The rep records under one partition, in key order.
    async fn rep_records(&self, pk: &str) -> Result<Vec<RepRecord>, StoreError> {
        let mut out = Vec::new();
        let mut start = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :p")
                .expression_attribute_values(":p", s(pk))
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(sdk_error)?;
            for item in page.items.unwrap_or_default() {
                let id = get_s(&item, "sk").unwrap_or("?").to_owned();
                let doc = get_s(&item, "doc").unwrap_or_default();
                out.push(serde_json::from_str(doc).map_err(|e| corrupt(&id, e))?);
            }
            match page.last_evaluated_key {
                Some(k) => start = Some(k),
                None => return Ok(out),
            }
        }
    }

    /// Creates the table with its indexes (on-demand) and waits until it is active. For local
    /// emulators and tests; on AWS the SAM template creates it.
    pub async fn create_table(&self) -> Result<(), StoreError> {
        use aws_sdk_dynamodb::types::{
            AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
            ProjectionType, ScalarAttributeType,
        };
        let attr = |name: &str| {
            AttributeDefinition::builder().attribute_name(name).attribute_type(ScalarAttributeType::S).build()
        };
        let key = |name: &str, kind: KeyType| KeySchemaElement::builder().attribute_name(name).key_type(kind).build();
        let mut defs = vec![attr("pk"), attr("sk"), attr("seq")];
        let mut gsis = Vec::new();
        for (index, pk) in INDEXES {
            defs.push(attr(pk));
            gsis.push(
                GlobalSecondaryIndex::builder()
                    .index_name(index)
                    .key_schema(key(pk, KeyType::Hash).map_err(|e| StoreError::Unavailable(Box::new(e)))?)
                    .key_schema(key("seq", KeyType::Range).map_err(|e| StoreError::Unavailable(Box::new(e)))?)
                    .projection(match projected(index) {
                        // Listing reads the leads themselves; an index write then costs 1 WRU.
                        [] => Projection::builder().projection_type(ProjectionType::KeysOnly).build(),
                        attrs => Projection::builder()
                            .projection_type(ProjectionType::Include)
                            .set_non_key_attributes(Some(attrs.iter().map(|a| a.to_string()).collect()))
                            .build(),
                    })
                    .build()
                    .map_err(|e| StoreError::Unavailable(Box::new(e)))?,
            );
        }
        let defs: Result<Vec<_>, _> = defs.into_iter().collect();
        self.client
            .create_table()
            .table_name(&self.table)
            .set_attribute_definitions(Some(defs.map_err(|e| StoreError::Unavailable(Box::new(e)))?))
            .key_schema(key("pk", KeyType::Hash).map_err(|e| StoreError::Unavailable(Box::new(e)))?)
            .key_schema(key("sk", KeyType::Range).map_err(|e| StoreError::Unavailable(Box::new(e)))?)
            .set_global_secondary_indexes(Some(gsis))
            .billing_mode(BillingMode::PayPerRequest)
            .send()
            .await
            .map_err(sdk_error)?;
        Ok(())
    }

    async fn get_item(&self, key: Item) -> Result<Option<Item>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key))
            .consistent_read(true)
            .send()
            .await
            .map_err(sdk_error)?;
        Ok(out.item)
    }

    async fn load(&self, id: &LeadId) -> Result<Option<(Lead, i64)>, StoreError> {
        self.get_item(lead_key(id)).await?.map(lead_of).transpose()
    }

    fn put_lead(&self, lead: &Lead, version: i64) -> Result<Put, StoreError> {
        Put::builder()
            .table_name(&self.table)
            .set_item(Some(lead_item(lead, version + 1, self.delete_after)?))
            .condition_expression("version = :v")
            .expression_attribute_values(":v", n(version))
            .build()
            .map_err(|e| StoreError::Unavailable(Box::new(e)))
    }

    /// Writes `lead` if nobody wrote it since `version`; false when someone did.
    async fn save(&self, lead: &Lead, version: i64) -> Result<bool, StoreError> {
        let r = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(lead_item(lead, version + 1, self.delete_after)?))
            .condition_expression("version = :v")
            .expression_attribute_values(":v", n(version))
            .send()
            .await;
        match r {
            Ok(_) => Ok(true),
            Err(e) if e.as_service_error().is_some_and(|se| se.is_conditional_check_failed_exception()) => Ok(false),
            Err(e) => Err(sdk_error(e)),
        }
    }

    /// Queries one index partition from `seq` bounds, newest or oldest first.
    async fn query_index(
        &self,
        index: &str,
        pk_attr: &str,
        pk: String,
        bound: Option<(&str, String)>,
        newest_first: bool,
        limit: usize,
    ) -> Result<Vec<Item>, StoreError> {
        let mut cond = "#p = :p".to_owned();
        let mut q = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(index)
            .expression_attribute_names("#p", pk_attr)
            .expression_attribute_values(":p", s(pk))
            .scan_index_forward(!newest_first)
            .limit(limit.clamp(1, 1000) as i32);
        if let Some((op, value)) = bound {
            cond.push_str(&format!(" AND seq {op} :b"));
            q = q.expression_attribute_values(":b", s(value));
        }
        let out = q.key_condition_expression(cond).send().await.map_err(sdk_error)?;
        Ok(out.items.unwrap_or_default())
    }
}

impl LeadStore for DynamoStore {
    async fn turn(&self, pool: &str) -> Result<u64, StoreError> {
        let key = HashMap::from([("pk".to_owned(), s(format!("POOL#{pool}"))), ("sk".to_owned(), s("CURSOR"))]);
        Ok(self.get_item(key).await?.and_then(|i| get_n(&i, "turn")).unwrap_or(0) as u64)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.get_item(HashMap::from([("pk".to_owned(), s("CONFIG")), ("sk".to_owned(), s("PING"))])).await.map(|_| ())
    }

    async fn insert(&self, lead: Lead) -> Result<Inserted, StoreError> {
        let r = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(lead_item(&lead, 1, self.delete_after)?))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        match r {
            Ok(_) => Ok(Inserted::New),
            Err(e) if e.as_service_error().is_some_and(|se| se.is_conditional_check_failed_exception()) => {
                match self.load(&lead.id).await? {
                    Some((existing, _)) => Ok(Inserted::Existing(Box::new(existing))),
                    None => Err(StoreError::Retryable("the lead vanished during insert".into())),
                }
            }
            Err(e) => Err(sdk_error(e)),
        }
    }

    async fn get(&self, id: &LeadId) -> Result<Option<Lead>, StoreError> {
        Ok(self.load(id).await?.map(|(l, _)| l))
    }

    async fn list(&self, q: LeadQuery) -> Result<LeadPage, StoreError> {
        let limit = q.limit.max(1);
        // The most selective key goes to the index; the rest filter what it returns.
        let partitions: Vec<Partition> = if let Some(p) = q.updated_since.and_then(update_partitions) {
            p
        } else if let Some(o) = &q.owner {
            vec![("by_owner", "by_owner_pk", format!("OPEN#{o}")), ("by_owner", "by_owner_pk", format!("OWNER#{o}"))]
        } else if let Some(src) = &q.source {
            (0..SHARDS).map(|sh| ("by_source", "by_source_pk", format!("SOURCE#{src}#{sh}"))).collect()
        } else if q.status.is_some_and(passing_through) {
            // Every lead in one of these statuses waits for a stage (`Lead::pending_stage`).
            pending_partitions().collect()
        } else if let Some(st) = q.status {
            let mut p: Vec<_> = status_partitions(st).collect();
            if st == LeadStatus::Assigned {
                // A lead whose new owner is being told is in `pending` only (`listed_by_status`).
                p.extend(pending_partitions());
            }
            p
        } else {
            every_partition()
        };
        let keep = |l: &Lead| {
            q.status.is_none_or(|s| l.status == s)
                && q.owner.as_ref().is_none_or(|o| l.owner.as_ref() == Some(o))
                && q.source.as_ref().is_none_or(|s| &l.source == s)
                && q.pool.as_ref().is_none_or(|p| l.pool.as_ref() == Some(p))
                && q.updated_since.is_none_or(|t| l.last_activity() >= t)
                && q.q.as_deref().is_none_or(|t| l.matches_search(t))
        };
        let cursor = q.cursor.clone();
        // Each partition reads at most its share of `LIST_READS` leads (a search matching
        // nothing would otherwise read the whole table); one stopped short says where.
        let share = (self.list_reads / partitions.len().max(1)).max(1);
        let want = (limit + 1).min(share);
        let reads = futures::future::join_all(partitions.into_iter().map(|(index, attr, pk)| {
            let cursor = cursor.clone();
            async move {
                let mut found: Vec<(String, Lead)> = Vec::new();
                let mut bound = cursor.map(|c| ("<", c));
                let mut read = 0;
                // Read the partition until it has more than `limit` matches, runs dry, or has
                // read its share (then its last seq read is where it stopped).
                loop {
                    let keys = self.query_index(index, attr, pk.clone(), bound.clone(), true, want).await?;
                    let exhausted = keys.len() < want;
                    read += keys.len();
                    // The indexes hold keys only: read the leads themselves.
                    let items = futures::future::join_all(keys.iter().map(|k| self.get_item(table_key(k)))).await;
                    for (k, item) in keys.iter().zip(items) {
                        let seq = get_s(k, "seq").unwrap_or_default().to_owned();
                        bound = Some(("<", seq.clone()));
                        let Some(item) = item? else { continue };
                        let (lead, _) = lead_of(item)?;
                        if keep(&lead) {
                            found.push((seq, lead));
                        }
                    }
                    if exhausted || found.len() > limit {
                        return Ok::<_, StoreError>((found, None));
                    }
                    if read >= share {
                        return Ok((found, bound.map(|(_, seq)| seq)));
                    }
                }
            }
        }))
        .await;
        let mut found: Vec<(String, Lead)> = Vec::new();
        // Below the highest seq where a partition stopped, that partition was not read: the
        // page ends there and the next goes on from it.
        let mut floor: Option<String> = None;
        for r in reads {
            let (f, stopped) = r?;
            found.extend(f);
            floor = floor.max(stopped);
        }
        if let Some(floor) = &floor {
            found.retain(|(seq, _)| seq >= floor);
        }
        found.sort_by(|a, b| b.0.cmp(&a.0));
        // A lead both resting and waiting (unassigned, or within its SLA) is in two partitions.
        found.dedup_by(|a, b| a.0 == b.0);
        let more = found.len() > limit;
        found.truncate(limit);
        let next_cursor = if more { found.last().map(|(seq, _)| seq.clone()) } else { floor };
        Ok(LeadPage { items: found.into_iter().map(|(_, l)| l).collect(), next_cursor })
    }

    async fn update<F: LeadChange>(&self, ids: Vec<LeadId>, change: F) -> Result<Vec<Updated>, StoreError> {
        // Each lead is its own conditional write: they go concurrently.
        let change = &change;
        let results = futures::future::join_all(ids.iter().map(|id| async move {
            for _ in 0..RACE_RETRIES {
                let Some((mut lead, version)) = self.load(id).await? else { return Ok(Updated::Missing) };
                if !change(&mut lead) {
                    return Ok(Updated::Unchanged(Box::new(lead)));
                }
                if self.save(&lead, version).await? {
                    return Ok(Updated::Written(Box::new(lead)));
                }
            }
            Err(StoreError::Retryable(format!("lead {id} kept changing under us").into()))
        }))
        .await;
        results.into_iter().collect()
    }

    async fn claim(
        &self,
        lead: &LeadId,
        keys: Vec<String>,
        now: DateTime<Utc>,
        stale_before: DateTime<Utc>,
    ) -> Result<Claim, StoreError> {
        self.claim_keys(lead, &keys, now, stale_before).await
    }

    async fn assign<F: AssignChange>(
        &self,
        pool: &str,
        ids: Vec<LeadId>,
        assign: F,
    ) -> Result<Vec<Updated>, StoreError> {
        self.assign_in_pool(pool, &ids, &assign).await
    }

    async fn deliveries(&self, lead: &LeadId) -> Result<Vec<Delivery>, StoreError> {
        // `DELIVERIES` and the one-record items (`DELIVERY#…`) written before it.
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :p AND begins_with(sk, :d)")
            .expression_attribute_values(":p", s(format!("LEAD#{lead}")))
            .expression_attribute_values(":d", s("DELIVER"))
            .consistent_read(true)
            .send()
            .await
            .map_err(sdk_error)?;
        let mut all = Vec::new();
        for item in out.items.unwrap_or_default() {
            if get_s(&item, "sk") == Some(DELIVERIES) {
                all.extend(deliveries_of(lead, &item)?);
            } else {
                all.push(serde_dynamo::from_item(item).map_err(|e| corrupt(lead.as_str(), e))?);
            }
        }
        Ok(all)
    }

    async fn put_deliveries(&self, deliveries: Vec<Delivery>) -> Result<(), StoreError> {
        let mut by_lead: std::collections::BTreeMap<LeadId, Vec<Delivery>> = std::collections::BTreeMap::new();
        for d in deliveries {
            by_lead.entry(d.lead_id.clone()).or_default().push(d);
        }
        for (lead, new) in by_lead {
            self.merge_deliveries(&lead, new).await?;
        }
        Ok(())
    }

    async fn reps(&self) -> Result<Vec<RepRecord>, StoreError> {
        self.rep_records("REPS").await
    }

    /// The current record (`REPS`, `REP#<id>`) and one in the history (`REPHISTORY`,
    /// `<time>#<id>`, time in microseconds, zero-padded), in one transaction.
    async fn value(&self, key: &str) -> Result<Option<String>, StoreError> {
        let item =
            self.get_item(HashMap::from([("pk".to_owned(), s(format!("KV#{key}"))), ("sk".to_owned(), s("KV"))]));
        Ok(item.await?.and_then(|i| get_s(&i, "v").map(str::to_owned)))
    }

    async fn put_value(&self, key: &str, value: &str) -> Result<(), StoreError> {
        let item = HashMap::from([
            ("pk".to_owned(), s(format!("KV#{key}"))),
            ("sk".to_owned(), s("KV")),
            ("v".to_owned(), s(value)),
        ]);
        self.client.put_item().table_name(&self.table).set_item(Some(item)).send().await.map_err(sdk_error)?;
        Ok(())
    }

    async fn put_rep(&self, rep: RepRecord) -> Result<(), StoreError> {
        use aws_sdk_dynamodb::types::{Put, TransactWriteItem};
        let doc = serde_json::to_string(&rep).map_err(|e| corrupt(&rep.id, e))?;
        let at = rep.updated_at.map_or(0, |t| t.timestamp_micros().max(0));
        let put = |pk: &str, sk: String| {
            let item =
                HashMap::from([("pk".to_owned(), s(pk)), ("sk".to_owned(), s(sk)), ("doc".to_owned(), s(doc.clone()))]);
            Put::builder()
                .table_name(&self.table)
                .set_item(Some(item))
                .build()
                .map(|p| TransactWriteItem::builder().put(p).build())
        };
        let items = vec![
            put("REPS", format!("REP#{}", rep.id)).map_err(|e| corrupt(&rep.id, e))?,
            put("REPHISTORY", format!("{at:020}#{}#{}", rep.id, LeadId::new())).map_err(|e| corrupt(&rep.id, e))?,
        ];
        self.client.transact_write_items().set_transact_items(Some(items)).send().await.map_err(sdk_error)?;
        Ok(())
    }

    async fn rep_history(&self) -> Result<Vec<RepRecord>, StoreError> {
        self.rep_records("REPHISTORY").await
    }

    async fn open_leads(&self, rep: &str) -> Result<Vec<LeadId>, StoreError> {
        let mut out = Vec::new();
        let mut bound = None;
        loop {
            let keys =
                self.query_index("by_owner", "by_owner_pk", format!("OPEN#{rep}"), bound.clone(), false, 1000).await?;
            for k in &keys {
                if let Some(id) = lead_id_of(k) {
                    out.push(id);
                }
                bound = get_s(k, "seq").map(|q| (">", q.to_owned()));
            }
            if keys.len() < 1000 {
                return Ok(out);
            }
        }
    }

    async fn open_count(&self, rep: &str, up_to: u32) -> Result<u32, StoreError> {
        use aws_sdk_dynamodb::types::Select;
        let mut count = 0u32;
        let mut start = None;
        while count < up_to {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .index_name("by_owner")
                .key_condition_expression("by_owner_pk = :p")
                .expression_attribute_values(":p", s(format!("OPEN#{rep}")))
                .select(Select::Count)
                .limit((up_to - count).min(1000) as i32)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(sdk_error)?;
            count += out.count.max(0) as u32;
            start = out.last_evaluated_key;
            if start.is_none() {
                break;
            }
        }
        Ok(count.min(up_to))
    }

    async fn account_owners(
        &self,
        domains: Vec<String>,
        since: DateTime<Utc>,
    ) -> Result<HashMap<String, (LeadId, String)>, StoreError> {
        let from = format!("{:016}", since.timestamp_micros().max(0));
        let found = futures::future::join_all(domains.iter().map(|d| {
            self.query_index("by_account", "by_account_pk", format!("ACCOUNT#{d}"), Some((">=", from.clone())), true, 1)
        }))
        .await;
        let mut out = HashMap::new();
        for (d, items) in domains.into_iter().zip(found) {
            if let Some(owned) = items?.first().and_then(|i| {
                let id = lead_id_of(i)?;
                Some((id, get_s(i, "owner")?.to_owned()))
            }) {
                out.insert(d, owned);
            }
        }
        Ok(out)
    }

    async fn since(&self, since: DateTime<Utc>, after: Option<String>, limit: usize) -> Result<LeadPage, StoreError> {
        let limit = limit.clamp(1, 1000);
        let bound = after.unwrap_or_else(|| format!("{:016}", since.timestamp_micros().max(0)));
        let reads = futures::future::join_all(
            every_partition()
                .into_iter()
                .map(|(index, attr, pk)| self.query_index(index, attr, pk, Some((">", bound.clone())), false, limit)),
        )
        .await;
        let mut keys: Vec<Item> = Vec::new();
        for r in reads {
            keys.extend(r?);
        }
        // Each partition is in order; merged, the first `limit` are the oldest overall.
        keys.sort_by(|a, b| get_s(a, "seq").cmp(&get_s(b, "seq")));
        keys.dedup_by(|a, b| get_s(a, "seq") == get_s(b, "seq"));
        keys.truncate(limit);
        let items = futures::future::join_all(keys.iter().map(|k| self.get_item(table_key(k)))).await;
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            if let Some(item) = item? {
                out.push(lead_of(item)?.0);
            }
        }
        let next_cursor =
            if keys.len() == limit { keys.last().and_then(|k| get_s(k, "seq")).map(str::to_owned) } else { None };
        Ok(LeadPage { items: out, next_cursor })
    }

    async fn facts(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        after: Option<String>,
        limit: usize,
    ) -> Result<FactsPage, StoreError> {
        // `after` is `<partition>:<seq>`: partitions are read one after another, each in seq
        // order. A lead in `pending` that `by_status` also holds is counted there only.
        let partitions = every_partition();
        let (mut at, mut bound) = match after.as_deref().and_then(|a| a.split_once(':')) {
            Some((p, seq)) => (p.parse::<usize>().unwrap_or(partitions.len()), seq.to_owned()),
            None => (0, format!("{:016}", from.timestamp_micros().max(0))),
        };
        let end = format!("{:016}", to.timestamp_micros().max(0));
        let mut facts = Vec::new();
        while at < partitions.len() && facts.len() < limit {
            let (index, attr, pk) = &partitions[at];
            let want = (limit - facts.len()).min(1000);
            let keys = self.query_index(index, attr, pk.clone(), Some((">", bound.clone())), false, want).await?;
            let keys: Vec<Item> =
                keys.into_iter().take_while(|k| get_s(k, "seq").is_some_and(|q| q < end.as_str())).collect();
            let drained = keys.len() < want;
            if let Some(last) = keys.last().and_then(|k| get_s(k, "seq")) {
                bound = last.to_owned();
            }
            for chunk in keys.chunks(100) {
                let leads = self.batch_leads(chunk).await?;
                facts.extend(leads.iter().filter(|l| *index != "pending" || !listed_by_status(l)).map(LeadFacts::of));
            }
            if drained {
                at += 1;
                bound = format!("{:016}", from.timestamp_micros().max(0));
            }
        }
        let next = (at < partitions.len()).then(|| format!("{at}:{bound}"));
        Ok(FactsPage { facts, next })
    }

    async fn person(&self, keys: Vec<String>) -> Result<Vec<LeadId>, StoreError> {
        let mut out = Vec::new();
        for k in keys {
            let mut start: Option<Item> = None;
            loop {
                let r = self
                    .client
                    .query()
                    .table_name(&self.table)
                    .key_condition_expression("pk = :p")
                    .expression_attribute_values(":p", s(format!("ID#{k}")))
                    .consistent_read(true)
                    .set_exclusive_start_key(start.take())
                    .send()
                    .await
                    .map_err(sdk_error)?;
                for item in r.items.unwrap_or_default() {
                    let id = match get_s(&item, "sk") {
                        Some("A") => get_s(&item, "lead_id"),
                        Some(sk) => sk.strip_prefix("LEAD#"),
                        None => None,
                    };
                    out.extend(id.and_then(LeadId::parse));
                }
                match r.last_evaluated_key {
                    Some(k) => start = Some(k),
                    None => break,
                }
            }
        }
        out.sort();
        out.dedup();
        Ok(out)
    }

    async fn forget(&self, lead: &LeadId, keys: Vec<String>) -> Result<(), StoreError> {
        for k in keys {
            let key = |sk: String| HashMap::from([("pk".to_owned(), s(format!("ID#{k}"))), ("sk".to_owned(), s(sk))]);
            self.client
                .delete_item()
                .table_name(&self.table)
                .set_key(Some(key(format!("LEAD#{lead}"))))
                .send()
                .await
                .map_err(sdk_error)?;
            let r = self
                .client
                .delete_item()
                .table_name(&self.table)
                .set_key(Some(key("A".into())))
                .condition_expression("lead_id = :me")
                .expression_attribute_values(":me", s(lead.as_str()))
                .send()
                .await;
            match r {
                Ok(_) => {}
                // Another lead holds it: theirs to keep.
                Err(e) if e.as_service_error().is_some_and(|se| se.is_conditional_check_failed_exception()) => {}
                Err(e) => return Err(sdk_error(e)),
            }
        }
        Ok(())
    }

    async fn idle(
        &self,
        before: DateTime<Utc>,
        after: Option<String>,
        limit: usize,
    ) -> Result<PendingPage, StoreError> {
        // A lead's last activity is no earlier than its arrival: only leads received before
        // `before` are read, partition by partition as `facts` does, and each is judged here.
        let partitions = every_partition();
        let start = || "0".to_owned();
        let (mut at, mut bound) = match after.as_deref().and_then(|a| a.split_once(':')) {
            Some((p, seq)) => (p.parse::<usize>().unwrap_or(partitions.len()), seq.to_owned()),
            None => (0, start()),
        };
        let end = format!("{:016}", before.timestamp_micros().max(0));
        let mut leads = Vec::new();
        let mut read = 0;
        while at < partitions.len() && read < limit {
            let (index, attr, pk) = &partitions[at];
            let want = (limit - read).min(1000);
            let keys = self.query_index(index, attr, pk.clone(), Some((">", bound.clone())), false, want).await?;
            let keys: Vec<Item> =
                keys.into_iter().take_while(|k| get_s(k, "seq").is_some_and(|q| q < end.as_str())).collect();
            let drained = keys.len() < want;
            read += keys.len();
            if let Some(last) = keys.last().and_then(|k| get_s(k, "seq")) {
                bound = last.to_owned();
            }
            for chunk in keys.chunks(100) {
                for l in self.batch_leads(chunk).await? {
                    if l.personal_data_erased_at.is_none() && l.last_activity() < before {
                        leads.push(l.id);
                    }
                }
            }
            if drained {
                at += 1;
                bound = start();
            }
        }
        leads.sort();
        leads.dedup();
        let next = (at < partitions.len()).then(|| format!("{at}:{bound}"));
        Ok(PendingPage { leads, next })
    }

    async fn expire(
        &self,
        _leads_before: Option<DateTime<Utc>>,
        _claims_before: DateTime<Utc>,
        _limit: usize,
    ) -> Result<crate::ports::Expired, StoreError> {
        // The table's TTL deletes leads (`expires_at`); claims go when their leads are erased.
        Ok(crate::ports::Expired::default())
    }

    async fn pending(
        &self,
        due_by: DateTime<Utc>,
        after: Option<String>,
        limit: usize,
    ) -> Result<PendingPage, StoreError> {
        let mut found: Vec<(String, LeadId, i64)> = Vec::new();
        for sh in 0..SHARDS {
            let bound = after.clone().map(|a| (">", a));
            for item in self.query_index("pending", "pending_pk", format!("PENDING#{sh}"), bound, false, limit).await? {
                let seq = get_s(&item, "seq").unwrap_or_default().to_owned();
                let due = get_n(&item, "due").unwrap_or(0);
                if let Some(id) = lead_id_of(&item) {
                    found.push((seq, id, due));
                }
            }
        }
        found.sort_by(|a, b| a.0.cmp(&b.0));
        let more = found.len() > limit;
        found.truncate(limit);
        // The position counts what was read; leads not yet due are left out of the page.
        let next = if more || found.len() == limit { found.last().map(|f| f.0.clone()) } else { None };
        let due_by = due_by.timestamp_millis();
        let leads = found.into_iter().filter(|f| f.2 <= due_by).map(|(_, id, _)| id).collect();
        Ok(PendingPage { leads, next })
    }
}

impl DynamoStore {
    /// Reads up to 100 leads (eventually consistent: metrics, not routing).
    async fn batch_leads(&self, keys: &[Item]) -> Result<Vec<Lead>, StoreError> {
        use aws_sdk_dynamodb::types::KeysAndAttributes;
        let mut pending: Vec<Item> = keys.iter().map(table_key).collect();
        let mut out = Vec::with_capacity(keys.len());
        for attempt in 0..10u32 {
            if pending.is_empty() {
                break;
            }
            if attempt > 0 {
                tokio::time::sleep(std::time::Duration::from_millis(20 << attempt.min(6))).await;
            }
            let ka = KeysAndAttributes::builder()
                .set_keys(Some(std::mem::take(&mut pending)))
                .build()
                .map_err(|e| StoreError::Unavailable(Box::new(e)))?;
            let r = self.client.batch_get_item().request_items(&self.table, ka).send().await.map_err(sdk_error)?;
            for item in r.responses.and_then(|mut m| m.remove(&self.table)).unwrap_or_default() {
                out.push(lead_of(item)?.0);
            }
            if let Some(left) = r.unprocessed_keys.and_then(|mut m| m.remove(&self.table)) {
                pending = left.keys;
            }
        }
        if !pending.is_empty() {
            return Err(StoreError::Retryable("metrics: the table kept throttling reads".into()));
        }
        Ok(out)
    }

    /// The routing document stored by `leadrouter config push`.
    pub async fn load_routing(&self) -> Result<Option<String>, StoreError> {
        let key = HashMap::from([("pk".to_owned(), s("CONFIG")), ("sk".to_owned(), s("ROUTING"))]);
        Ok(self.get_item(key).await?.and_then(|i| get_s(&i, "toml").map(str::to_owned)))
    }

    /// Stores the routing document (checked by the caller) for every function to read.
    pub async fn push_routing(&self, toml: &str, at: DateTime<Utc>) -> Result<(), StoreError> {
        let item = HashMap::from([
            ("pk".to_owned(), s("CONFIG")),
            ("sk".to_owned(), s("ROUTING")),
            ("toml".to_owned(), s(toml)),
            ("pushed_at".to_owned(), s(at.to_rfc3339())),
        ]);
        self.client.put_item().table_name(&self.table).set_item(Some(item)).send().await.map_err(sdk_error)?;
        Ok(())
    }

    /// Replaces or adds `new` in the lead's delivery records, unless someone wrote them since
    /// they were read (then reads again).
    async fn merge_deliveries(&self, lead: &LeadId, new: Vec<Delivery>) -> Result<(), StoreError> {
        let key = HashMap::from([("pk".to_owned(), s(format!("LEAD#{lead}"))), ("sk".to_owned(), s(DELIVERIES))]);
        for _ in 0..RACE_RETRIES {
            let stored = self.get_item(key.clone()).await?;
            let version = stored.as_ref().and_then(|i| get_n(i, "version")).unwrap_or(0);
            let mut all = match &stored {
                Some(item) => deliveries_of(lead, item)?,
                None => Vec::new(),
            };
            for d in &new {
                match all.iter_mut().find(|x| (x.kind, &x.recipient, &x.target) == (d.kind, &d.recipient, &d.target)) {
                    Some(x) => *x = d.clone(),
                    None => all.push(d.clone()),
                }
            }
            let json = serde_json::to_vec(&all).map_err(|e| corrupt(lead.as_str(), e))?;
            let mut item = key.clone();
            item.insert("doc".into(), deflated(&json));
            item.insert("version".into(), n(version + 1));
            let r = self
                .client
                .put_item()
                .table_name(&self.table)
                .set_item(Some(item))
                .condition_expression("attribute_not_exists(pk) OR version = :v")
                .expression_attribute_values(":v", n(version))
                .send()
                .await;
            match r {
                Ok(_) => return Ok(()),
                Err(e) if e.as_service_error().is_some_and(|se| se.is_conditional_check_failed_exception()) => {}
                Err(e) => return Err(sdk_error(e)),
            }
        }
        Err(StoreError::Retryable(format!("lead {lead}: its deliveries kept changing under us").into()))
    }
}
