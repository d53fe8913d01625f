//! The embedded `LeadStore`: one SQLite file in WAL mode.
//!
//! All writes go through one writer thread that takes every write waiting and commits them
//! as one transaction (group commit), each inside its own savepoint so one failure spoils no
//! other. A group holding an insert commits with `synchronous = FULL`: the new lead has reached
//! the disk when its future resolves, which is what lets ingest answer 202. Other groups (stage
//! transitions) commit with `NORMAL`: safe against a process crash, and after a power loss at
//! worst a transition is redone, since every stage is guarded and resumable. Reads run on a
//! pool of read-only connections.
//!
//! Here: the store and its queries. `schema` holds the tables and their migrations, `writer`
//! the writer thread, `rows` how a lead is kept in a row.

use crate::domain::{Lead, LeadId, LeadStatus, RepRecord, Stage};
use crate::ports::{
    AssignChange, Claim, Delivery, FactsPage, Inserted, LeadChange, LeadFacts, LeadPage, LeadQuery, LeadStore,
    PendingPage, StoreError, Turns, Updated,
};
use chrono::{DateTime, Utc};
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, mpsc};
use tokio::sync::oneshot;

mod rows;
mod schema;
mod writer;

use rows::*;
use schema::*;
use writer::*;

/// Read connections. Reads beyond this wait for one: a connection opened for a single read
/// parses the schema again (the profile showed that churn as a fifth of the CPU under load).
const READERS: usize = 16;
/// Statements kept prepared per connection (more than the store has, so none is prepared twice).
const STATEMENTS: usize = 64;
/// How many leads (by `seq`) a search reads at a time, and for how long it goes on before it
/// answers a page short, with a cursor where it stopped (`list`): about 10 ms a window here.
const SEARCH_WINDOW: i64 = 4_096;
const SEARCH_BUDGET: std::time::Duration = std::time::Duration::from_millis(25);

#[derive(Clone, Copy)]
struct SearchBounds {
    window: i64,
    budget: std::time::Duration,
}

#[derive(Clone)]
pub struct SqliteStore {
    writer: mpsc::Sender<Box<dyn Job>>,
    readers: Arc<Mutex<Vec<Connection>>>,
    /// One permit per read connection.
    reading: Arc<tokio::sync::Semaphore>,
    path: PathBuf,
    /// The roster changes, read on every assign and notify batch: kept until this store
    /// writes one (it is the only writer of its file). The counter tells a read that raced
    /// a write not to keep what it read.
    reps_cache: Arc<Mutex<(u64, Option<Vec<RepRecord>>)>>,
    /// Told of every lead written, once committed (`GET /v1/events`).
    events: Option<Arc<crate::events::Hub>>,
    search: SearchBounds,
}

impl SqliteStore {
    /// A search's window and time budget other than the defaults (tests show the windows with
    /// a few leads).
    pub fn with_search_bounds(mut self, window: i64, budget: std::time::Duration) -> SqliteStore {
        self.search = SearchBounds { window: window.max(1), budget };
        self
    }

    /// Tells `hub` of every lead this store writes, once the write is committed.
    pub fn with_events(mut self, hub: Arc<crate::events::Hub>) -> SqliteStore {
        self.events = Some(hub);
        self
    }

    fn published(&self, out: &[Updated]) {
        if let Some(hub) = &self.events {
            hub.publish(out.iter().filter_map(|u| match u {
                Updated::Written(l) => Some(crate::events::Hub::event_of(l)),
                _ => None,
            }));
        }
    }

    /// Opens (creating if needed) the database file and starts its writer thread.
    pub fn open(path: impl AsRef<Path>) -> Result<SqliteStore, StoreError> {
        let path = path.as_ref().to_path_buf();
        let conn = Connection::open(&path).map_err(sql_error)?;
        // The writer's page cache holds the hot pages of the indexes every insert touches
        // (identity keys land anywhere in theirs): 64 MiB, against SQLite's default 2 MiB.
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA busy_timeout = 5000; PRAGMA cache_size = -65536;",
        )
            .map_err(sql_error)?;
        conn.execute_batch(SCHEMA).map_err(sql_error)?;
        migrate(&conn)?;
        conn.set_prepared_statement_cache_capacity(STATEMENTS);
        let (tx, rx) = mpsc::channel::<Box<dyn Job>>();
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || writer_loop(conn, rx))
            .map_err(|e| StoreError::Unavailable(Box::new(e)))?;
        Ok(SqliteStore {
            writer: tx,
            readers: Arc::new(Mutex::new(Vec::new())),
            reading: Arc::new(tokio::sync::Semaphore::new(READERS)),
            path,
            reps_cache: Arc::new(Mutex::new((0, None))),
            events: None,
            search: SearchBounds { window: SEARCH_WINDOW, budget: SEARCH_BUDGET },
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Leads on their way through `stage` (not those waiting for a rep or for their SLA), in
    /// arrival order after position `after`, with the notification owed where `stage` is
    /// notify: what the embedded runtime reads back into a queue that had no room for them,
    /// from the `stage` and `status` columns, without loading a lead.
    pub async fn on_their_way(
        &self,
        stage: Stage,
        after: i64,
        limit: usize,
    ) -> Result<Vec<(i64, LeadId, Option<crate::domain::NotificationKind>)>, StoreError> {
        // The status each stage's own leads hold (`Lead::pending_stage`); notify: every one.
        let status = match stage {
            Stage::Fetch => Some(LeadStatus::Fetching),
            Stage::Dedup => Some(LeadStatus::Received),
            Stage::Score => Some(LeadStatus::Unique),
            Stage::Assign => Some(LeadStatus::Scored),
            Stage::Notify => None,
        };
        self.read(move |c| {
            let mut stmt = c
                .prepare_cached(
                    "SELECT seq, id, CASE WHEN ?2 = 'notify' THEN json_extract(doc, '$.notify_pending') END
                     FROM leads INDEXED BY leads_waiting
                     WHERE stage IS NOT NULL AND seq > ?1 AND stage = ?2 AND (?3 IS NULL OR status = ?3)
                     ORDER BY seq LIMIT ?4",
                )
                .map_err(sql_error)?;
            let rows = stmt
                .query_map(params![after, stage.as_str(), status.map(LeadStatus::as_str), limit as i64], |r| {
                    Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, Option<String>>(2)?))
                })
                .map_err(sql_error)?;
            let mut out = Vec::new();
            for row in rows {
                let (seq, id, kind) = row.map_err(sql_error)?;
                if let Some(id) = LeadId::parse(&id) {
                    out.push((seq, id, kind.as_deref().and_then(crate::domain::NotificationKind::parse)));
                }
            }
            Ok(out)
        })
        .await
    }

    /// Writes a consistent copy of the database at `db` to `out` while other processes read
    /// and write it (`VACUUM INTO`: one read transaction, so the copy is the database as of
    /// one commit, compacted). `out` must not exist. Returns the copy's size in bytes.
    pub fn backup(db: &Path, out: &Path) -> Result<u64, StoreError> {
        let conn = Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(sql_error)?;
        conn.execute_batch("PRAGMA busy_timeout = 5000;").map_err(sql_error)?;
        let target = out.to_str().ok_or_else(|| StoreError::Unavailable("the backup path is not UTF-8".into()))?;
        conn.execute("VACUUM INTO ?1", [target]).map_err(sql_error)?;
        std::fs::metadata(out).map(|m| m.len()).map_err(|e| StoreError::Unavailable(Box::new(e)))
    }

    async fn write<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> Result<R, StoreError> + Send + 'static,
    {
        self.submit(false, f).await
    }

    /// A write whose caller answers a client on its strength (ingest's 202).
    async fn write_durable<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> Result<R, StoreError> + Send + 'static,
    {
        self.submit(true, f).await
    }

    async fn submit<R, F>(&self, durable: bool, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> Result<R, StoreError> + Send + 'static,
    {
        let (reply, rx) = oneshot::channel();
        self.writer
            .send(Box::new(Task { durable, f: Some(f), out: None, reply }))
            .map_err(|_| StoreError::Unavailable("the writer thread has stopped".into()))?;
        rx.await.map_err(|_| StoreError::Unavailable("the writer thread dropped a write".into()))?
    }

    async fn read<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> Result<R, StoreError> + Send + 'static,
    {
        let readers = self.readers.clone();
        let path = self.path.clone();
        let permit = self.reading.clone().acquire_owned().await.map_err(|e| StoreError::Unavailable(Box::new(e)))?;
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let pooled = readers.lock().map(|mut v| v.pop()).unwrap_or(None);
            let conn = match pooled {
                Some(c) => c,
                None => {
                    let c = Connection::open_with_flags(
                        &path,
                        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                    )
                    .map_err(sql_error)?;
                    c.execute_batch("PRAGMA busy_timeout = 5000;").map_err(sql_error)?;
                    c.set_prepared_statement_cache_capacity(STATEMENTS);
                    c
                }
            };
            let out = f(&conn);
            if let Ok(mut v) = readers.lock()
                && v.len() < READERS
            {
                v.push(conn);
            }
            out
        })
        .await
        .map_err(|e| StoreError::Unavailable(Box::new(e)))?
    }
}

impl LeadStore for SqliteStore {
    async fn turn(&self, pool: &str) -> Result<u64, StoreError> {
        let pool = pool.to_owned();
        self.read(move |c| {
            let turn: Option<i64> = c
                .prepare_cached("SELECT turn FROM pool_cursors WHERE pool = ?1")
                .and_then(|mut s| s.query_row([&pool], |r| r.get(0)).optional())
                .map_err(sql_error)?;
            Ok(turn.unwrap_or(0) as u64)
        })
        .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.read(|c| c.prepare_cached("SELECT 1").and_then(|mut s| s.query_row([], |_| Ok(()))).map_err(sql_error))
            .await
    }

    async fn insert(&self, lead: Lead) -> Result<Inserted, StoreError> {
        let event = self.events.as_ref().map(|_| crate::events::Hub::event_of(&lead));
        let r = self
            .write_durable(move |c| {
                let doc = encode(lead.id.as_str(), &lead)?;
                let n = c
                .prepare_cached(
                    "INSERT INTO leads (id, status, source, owner, stage, received_at, doc, grade, account, received_ms,
                     assigned_ms, accepted_ms, pool, due_ms, active_ms, erased)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)
                     ON CONFLICT(id) DO NOTHING",
                )
                .and_then(|mut s| {
                    s.execute(params![
                        lead.id.as_str(),
                        lead.status.as_str(),
                        lead.source,
                        lead.owner,
                        lead.pending_stage().map(Stage::as_str),
                        lead.received_at.to_rfc3339(),
                        doc,
                        lead.grade,
                        account(&lead),
                        lead.received_at.timestamp_millis(),
                        ms(lead.first_assigned_at),
                        ms(lead.accepted_at),
                        lead.pool,
                        due_ms(&lead),
                        lead.last_activity().timestamp_millis(),
                        lead.personal_data_erased_at.is_some(),
                    ])
                })
                .map_err(sql_error)?;
                if n == 1 {
                    return Ok(Inserted::New);
                }
                match load(c, &lead.id)? {
                    Some(existing) => Ok(Inserted::Existing(Box::new(existing))),
                    None => Err(StoreError::Retryable("the lead vanished during insert".into())),
                }
            })
            .await;
        if let (Ok(Inserted::New), Some(hub), Some(e)) = (&r, &self.events, event) {
            hub.publish([e]);
        }
        r
    }

    async fn get(&self, id: &LeadId) -> Result<Option<Lead>, StoreError> {
        let id = id.clone();
        self.read(move |c| load(c, &id)).await
    }

    async fn list(&self, q: LeadQuery) -> Result<LeadPage, StoreError> {
        let bounds = self.search;
        self.read(move |c| {
            let mut sql = String::from("SELECT seq, id, doc FROM leads WHERE 1 = 1");
            let mut args: Vec<rusqlite::types::Value> = Vec::new();
            if let Some(s) = q.status {
                sql.push_str(" AND status = ?");
                args.push(s.as_str().to_owned().into());
            }
            if let Some(o) = &q.owner {
                sql.push_str(" AND owner = ?");
                args.push(o.clone().into());
            }
            if let Some(s) = &q.source {
                sql.push_str(" AND source = ?");
                args.push(s.clone().into());
            }
            if let Some(pool) = &q.pool {
                sql.push_str(" AND pool = ?");
                args.push(pool.clone().into());
            }
            if let Some(since) = q.updated_since {
                // `active_ms` is `Lead::last_activity`; the retention index serves this range.
                sql.push_str(" AND erased IN (0, 1) AND active_ms >= ?");
                args.push(since.timestamp_millis().into());
            }
            let text = q.q.as_deref().map(str::trim).filter(|t| !t.is_empty());
            if let Some(text) = text {
                // `Lead::search_text`, from the document.
                sql.push_str(
                    " AND instr(lower(coalesce(json_extract(doc, '$.email'), '') || char(10) ||
                      coalesce(json_extract(doc, '$.name'), '') || char(10) ||
                      coalesce(json_extract(doc, '$.first_name'), '') || ' ' ||
                      coalesce(json_extract(doc, '$.last_name'), '') || char(10) ||
                      coalesce(json_extract(doc, '$.company'), '')), lower(?)) > 0",
                );
                args.push(text.to_owned().into());
            }
            let cursor = q.cursor.as_deref().and_then(|c| c.parse::<i64>().ok());
            let limit = q.limit.max(1);
            let mut next_cursor = None;
            // Reads one range of `seq` (below `hi`, from `lo`) for up to `want` more leads; true
            // when it found more than that.
            let read = |hi: Option<i64>, lo: Option<i64>, want: usize, items: &mut Vec<(i64, Lead)>| {
                let mut sql = sql.clone();
                let mut args = args.clone();
                if let Some(hi) = hi {
                    sql.push_str(" AND seq < ?");
                    args.push(hi.into());
                }
                if let Some(lo) = lo {
                    sql.push_str(" AND seq >= ?");
                    args.push(lo.into());
                }
                sql.push_str(" ORDER BY seq DESC LIMIT ?");
                args.push((want as i64 + 1).into());
                let mut stmt = c.prepare_cached(&sql).map_err(sql_error)?;
                let rows = stmt
                    .query_map(rusqlite::params_from_iter(args), |r| {
                        Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?))
                    })
                    .map_err(sql_error)?;
                for (taken, row) in rows.enumerate() {
                    let (seq, id, doc) = row.map_err(sql_error)?;
                    if taken == want {
                        return Ok::<_, StoreError>(true);
                    }
                    items.push((seq, decode::<Lead>(&id, &doc)?));
                }
                Ok(false)
            };
            let mut found = Vec::with_capacity(limit);
            if text.is_some() {
                // A search reads every document it looks at, so it looks at windows of
                // `SEARCH_WINDOW` leads, newest first, until the page is full or `SEARCH_BUDGET`
                // has passed (`with_search_bounds`); a page cut short by the budget ends with a
                // cursor where it stopped. A search matching nothing answers in bounded time
                // however many leads are stored, and its next page goes on from there. (Each
                // bound is its own subquery: SQLite reads one end of the table for each, not all
                // of it.)
                let (first, last): (i64, i64) = c
                    .query_row(
                        "SELECT coalesce((SELECT min(seq) FROM leads), 0), coalesce((SELECT max(seq) FROM leads), 0)",
                        [],
                        |r| Ok((r.get(0)?, r.get(1)?)),
                    )
                    .map_err(sql_error)?;
                let began = std::time::Instant::now();
                let mut hi = cursor.unwrap_or(last + 1).min(last + 1);
                loop {
                    let lo = hi - bounds.window;
                    if read(Some(hi), Some(lo), limit - found.len(), &mut found)? {
                        next_cursor = found.last().map(|(seq, _)| seq.to_string());
                        break;
                    }
                    hi = lo;
                    if hi <= first {
                        break;
                    }
                    if began.elapsed() >= bounds.budget {
                        next_cursor = Some(hi.to_string());
                        break;
                    }
                }
            } else if read(cursor, None, limit, &mut found)? {
                next_cursor = found.last().map(|(seq, _)| seq.to_string());
            }
            Ok(LeadPage { items: found.into_iter().map(|(_, l)| l).collect(), next_cursor })
        })
        .await
    }

    async fn update<F: LeadChange>(&self, ids: Vec<LeadId>, change: F) -> Result<Vec<Updated>, StoreError> {
        self.write(move |c| {
            let mut out = Vec::with_capacity(ids.len());
            for id in &ids {
                let Some(mut lead) = load(c, id)? else {
                    out.push(Updated::Missing);
                    continue;
                };
                if change(&mut lead) {
                    save(c, &lead)?;
                    out.push(Updated::Written(Box::new(lead)));
                } else {
                    out.push(Updated::Unchanged(Box::new(lead)));
                }
            }
            Ok(out)
        })
        .await
        .inspect(|out| self.published(out))
    }

    async fn claim(
        &self,
        lead: &LeadId,
        keys: Vec<String>,
        now: DateTime<Utc>,
        stale_before: DateTime<Utc>,
    ) -> Result<Claim, StoreError> {
        let lead = lead.clone();
        self.write(move |c| {
            let mut live: Vec<Option<String>> = Vec::with_capacity(keys.len());
            let mut taken = None;
            for key in &keys {
                let row: Option<(String, i64)> = c
                    .prepare_cached("SELECT lead_id, claimed_at FROM identities WHERE key = ?1")
                    .and_then(|mut s| s.query_row([key], |r| Ok((r.get(0)?, r.get(1)?))).optional())
                    .map_err(sql_error)?;
                let holder = row.filter(|(_, at)| *at >= stale_before.timestamp_millis()).map(|(h, _)| h);
                if taken.is_none()
                    && let Some(h) = &holder
                    && h != lead.as_str()
                {
                    taken = Some((key.clone(), h.clone()));
                }
                live.push(holder);
            }
            let owner = taken.as_ref().map(|(_, by)| by.clone()).unwrap_or_else(|| lead.to_string());
            // Who shared which key, for erasure by person; kept after the claim goes stale.
            let mut member = c
                .prepare_cached("INSERT OR IGNORE INTO lead_keys (key, lead_id) VALUES (?1, ?2)")
                .map_err(sql_error)?;
            for key in &keys {
                member.execute(params![key, lead.as_str()]).map_err(sql_error)?;
            }
            for (key, holder) in keys.iter().zip(&live) {
                if holder.is_none() {
                    c.prepare_cached(
                        "INSERT OR REPLACE INTO identities (key, lead_id, claimed_at) VALUES (?1, ?2, ?3)",
                    )
                    .and_then(|mut s| s.execute(params![key, owner, now.timestamp_millis()]))
                    .map_err(sql_error)?;
                }
            }
            Ok(match taken {
                None => Claim::Unique,
                Some((key, by)) => Claim::Taken { key, by: LeadId::parse(&by).unwrap_or_else(|| lead.clone()) },
            })
        })
        .await
    }

    async fn assign<F: AssignChange>(
        &self,
        pool: &str,
        ids: Vec<LeadId>,
        assign: F,
    ) -> Result<Vec<Updated>, StoreError> {
        let pool = pool.to_owned();
        self.write(move |c| {
            let start: i64 = c
                .prepare_cached("SELECT turn FROM pool_cursors WHERE pool = ?1")
                .and_then(|mut s| s.query_row([&pool], |r| r.get(0)).optional())
                .map_err(sql_error)?
                .unwrap_or(0);
            let mut turns = Turns { cursor: start as u64, ..Turns::default() };
            let mut out = Vec::with_capacity(ids.len());
            for id in &ids {
                let Some(mut lead) = load(c, id)? else {
                    out.push(Updated::Missing);
                    continue;
                };
                if assign(&mut lead, &mut turns) {
                    save(c, &lead)?;
                    out.push(Updated::Written(Box::new(lead)));
                } else {
                    out.push(Updated::Unchanged(Box::new(lead)));
                }
            }
            let turn = turns.cursor;
            if turn as i64 != start {
                c.prepare_cached(
                    "INSERT INTO pool_cursors (pool, turn) VALUES (?1, ?2) ON CONFLICT(pool) DO UPDATE SET turn = ?2",
                )
                .and_then(|mut s| s.execute(params![pool, turn as i64]))
                .map_err(sql_error)?;
            }
            Ok(out)
        })
        .await
        .inspect(|out| self.published(out))
    }

    async fn deliveries(&self, lead: &LeadId) -> Result<Vec<Delivery>, StoreError> {
        let lead = lead.clone();
        self.read(move |c| {
            let mut stmt = c
                .prepare_cached("SELECT doc FROM deliveries WHERE lead_id = ?1 ORDER BY kind, recipient, target")
                .map_err(sql_error)?;
            let rows = stmt.query_map([lead.as_str()], |r| r.get::<_, String>(0)).map_err(sql_error)?;
            rows.map(|r| r.map_err(sql_error).and_then(|d| decode(lead.as_str(), &d))).collect()
        })
        .await
    }

    async fn put_deliveries(&self, deliveries: Vec<Delivery>) -> Result<(), StoreError> {
        self.write(move |c| {
            let mut stmt = c
                .prepare_cached(
                    "INSERT OR REPLACE INTO deliveries (lead_id, recipient, kind, target, doc) VALUES (?1, ?2, ?3, ?4, ?5)",
                )
                .map_err(sql_error)?;
            for d in &deliveries {
                let doc = encode(d.lead_id.as_str(), d)?;
                stmt.execute(params![d.lead_id.as_str(), d.recipient, d.kind.as_str(), d.target, doc])
                    .map_err(sql_error)?;
            }
            Ok(())
        })
        .await
    }

    async fn reps(&self) -> Result<Vec<RepRecord>, StoreError> {
        let generation = match self.reps_cache.lock() {
            Ok(c) => match &c.1 {
                Some(reps) => return Ok(reps.clone()),
                None => c.0,
            },
            Err(_) => u64::MAX,
        };
        let reps: Vec<RepRecord> = self
            .read(|c| {
                let mut stmt = c.prepare_cached("SELECT id, doc FROM reps ORDER BY id").map_err(sql_error)?;
                let rows =
                    stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))).map_err(sql_error)?;
                rows.map(|r| r.map_err(sql_error).and_then(|(id, d)| decode(&id, &d))).collect()
            })
            .await?;
        if let Ok(mut c) = self.reps_cache.lock()
            && c.0 == generation
        {
            c.1 = Some(reps.clone());
        }
        Ok(reps)
    }

    async fn put_rep(&self, rep: RepRecord) -> Result<(), StoreError> {
        let r = self
            .write(move |c| {
                let doc = encode(&rep.id, &rep)?;
                c.prepare_cached("INSERT OR REPLACE INTO reps (id, doc) VALUES (?1, ?2)")
                    .and_then(|mut s| s.execute(params![rep.id, doc]))
                    .map_err(sql_error)?;
                c.prepare_cached("INSERT INTO rep_history (id, doc) VALUES (?1, ?2)")
                    .and_then(|mut s| s.execute(params![rep.id, doc]))
                    .map_err(sql_error)?;
                Ok(())
            })
            .await;
        if let Ok(mut c) = self.reps_cache.lock() {
            c.0 += 1;
            c.1 = None;
        }
        r
    }

    async fn value(&self, key: &str) -> Result<Option<String>, StoreError> {
        let key = key.to_owned();
        self.read(move |c| {
            c.prepare_cached("SELECT value FROM kv WHERE key = ?1")
                .and_then(|mut s| s.query_row([&key], |r| r.get(0)).optional())
                .map_err(sql_error)
        })
        .await
    }

    async fn put_value(&self, key: &str, value: &str) -> Result<(), StoreError> {
        let (key, value) = (key.to_owned(), value.to_owned());
        self.write_durable(move |c| {
            c.prepare_cached("INSERT OR REPLACE INTO kv (key, value) VALUES (?1, ?2)")
                .and_then(|mut s| s.execute(params![key, value]))
                .map_err(sql_error)?;
            Ok(())
        })
        .await
    }

    async fn rep_history(&self) -> Result<Vec<RepRecord>, StoreError> {
        self.read(|c| {
            let mut stmt = c.prepare_cached("SELECT id, doc FROM rep_history ORDER BY seq").map_err(sql_error)?;
            let rows =
                stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))).map_err(sql_error)?;
            rows.map(|r| r.map_err(sql_error).and_then(|(id, d)| decode(&id, &d))).collect()
        })
        .await
    }

    async fn open_leads(&self, rep: &str) -> Result<Vec<LeadId>, StoreError> {
        let rep = rep.to_owned();
        self.read(move |c| {
            let sql = format!(
                "SELECT id FROM leads WHERE owner = ?1 AND owner IS NOT NULL AND status IN ({}) ORDER BY seq",
                open_statuses()
            );
            let mut stmt = c.prepare_cached(&sql).map_err(sql_error)?;
            let rows = stmt.query_map([&rep], |r| r.get::<_, String>(0)).map_err(sql_error)?;
            Ok(rows.filter_map(|r| r.ok().and_then(|id| LeadId::parse(&id))).collect())
        })
        .await
    }

    async fn open_count(&self, rep: &str, up_to: u32) -> Result<u32, StoreError> {
        let rep = rep.to_owned();
        self.read(move |c| {
            let n: Option<i64> = c
                .prepare_cached("SELECT n FROM open_per_rep WHERE rep = ?1")
                .and_then(|mut s| s.query_row([rep], |r| r.get(0)).optional())
                .map_err(sql_error)?;
            Ok(n.unwrap_or(0).clamp(0, i64::from(up_to)) as u32)
        })
        .await
    }

    async fn account_owners(
        &self,
        domains: Vec<String>,
        since: DateTime<Utc>,
    ) -> Result<std::collections::HashMap<String, (LeadId, String)>, StoreError> {
        if domains.is_empty() {
            return Ok(Default::default());
        }
        self.read(move |c| {
            let mut stmt = c
                .prepare_cached(
                    "SELECT id, owner FROM leads WHERE account = ?1 AND received_ms >= ?2 ORDER BY seq DESC LIMIT 1",
                )
                .map_err(sql_error)?;
            let mut out = std::collections::HashMap::new();
            for d in domains {
                let row: Option<(String, String)> = stmt
                    .query_row(params![d, since.timestamp_millis()], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()
                    .map_err(sql_error)?;
                if let Some((id, owner)) = row
                    && let Some(id) = LeadId::parse(&id)
                {
                    out.insert(d, (id, owner));
                }
            }
            Ok(out)
        })
        .await
    }

    async fn since(&self, since: DateTime<Utc>, after: Option<String>, limit: usize) -> Result<LeadPage, StoreError> {
        self.read(move |c| {
            let after: i64 = after.and_then(|a| a.parse().ok()).unwrap_or(-1);
            let mut stmt = c
                .prepare_cached(
                    "SELECT seq, id, doc FROM leads WHERE received_ms >= ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
                )
                .map_err(sql_error)?;
            let rows = stmt
                .query_map(params![since.timestamp_millis(), after, limit as i64], |r| {
                    Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?))
                })
                .map_err(sql_error)?;
            let mut items = Vec::new();
            let mut last = None;
            for row in rows {
                let (seq, id, doc) = row.map_err(sql_error)?;
                items.push(decode::<Lead>(&id, &doc)?);
                last = Some(seq);
            }
            let next_cursor = if items.len() == limit { last.map(|s| s.to_string()) } else { None };
            Ok(LeadPage { items, next_cursor })
        })
        .await
    }

    async fn facts(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        after: Option<String>,
        limit: usize,
    ) -> Result<FactsPage, StoreError> {
        self.read(move |c| {
            // Keyset paging in arrival order (the rowid); the fact columns are read, never the
            // lead documents. The scan reads pages in place (mmap) rather than copying them;
            // only here, since a mapping of a file that keeps growing costs the pipeline's reads.
            c.execute_batch("PRAGMA mmap_size = 4294967296;").map_err(sql_error)?;
            let after: i64 = after.and_then(|a| a.parse().ok()).unwrap_or(-1);
            let mut stmt = c
                .prepare_cached(
                    "SELECT seq, source, status, grade, owner, received_ms, assigned_ms, accepted_ms, pool FROM leads
                     WHERE seq > ?1 AND received_ms >= ?2 AND received_ms < ?3 ORDER BY seq LIMIT ?4",
                )
                .map_err(sql_error)?;
            let rows = stmt
                .query_map(params![after, from.timestamp_millis(), to.timestamp_millis(), limit as i64], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        LeadFacts {
                            source: r.get(1)?,
                            status: LeadStatus::parse(r.get_ref(2)?.as_str().unwrap_or_default())
                                .unwrap_or(LeadStatus::Received),
                            grade: r.get(3)?,
                            owner: r.get(4)?,
                            received_at: from_ms(r.get(5)?).unwrap_or_default(),
                            first_assigned_at: from_ms(r.get(6)?),
                            accepted_at: from_ms(r.get(7)?),
                            pool: r.get(8)?,
                        },
                    ))
                })
                .map_err(sql_error)?;
            let mut facts = Vec::with_capacity(limit.min(100_000));
            let mut last = None;
            for row in rows {
                let (seq, f) = row.map_err(sql_error)?;
                last = Some(seq);
                facts.push(f);
            }
            drop(stmt);
            c.execute_batch("PRAGMA mmap_size = 0;").map_err(sql_error)?;
            let next = if facts.len() == limit { last.map(|seq| seq.to_string()) } else { None };
            Ok(FactsPage { facts, next })
        })
        .await
    }

    async fn person(&self, keys: Vec<String>) -> Result<Vec<LeadId>, StoreError> {
        self.read(move |c| {
            let mut stmt = c.prepare_cached("SELECT lead_id FROM lead_keys WHERE key = ?1").map_err(sql_error)?;
            let mut out = Vec::new();
            for k in &keys {
                let rows = stmt.query_map([k], |r| r.get::<_, String>(0)).map_err(sql_error)?;
                for id in rows {
                    out.extend(LeadId::parse(&id.map_err(sql_error)?));
                }
            }
            out.sort();
            out.dedup();
            Ok(out)
        })
        .await
    }

    async fn forget(&self, lead: &LeadId, keys: Vec<String>) -> Result<(), StoreError> {
        let lead = lead.clone();
        self.write(move |c| {
            for k in &keys {
                for sql in [
                    "DELETE FROM identities WHERE key = ?1 AND lead_id = ?2",
                    "DELETE FROM lead_keys WHERE key = ?1 AND lead_id = ?2",
                ] {
                    c.prepare_cached(sql).and_then(|mut s| s.execute([k, lead.as_str()])).map_err(sql_error)?;
                }
            }
            Ok(())
        })
        .await
    }

    async fn idle(
        &self,
        before: DateTime<Utc>,
        after: Option<String>,
        limit: usize,
    ) -> Result<PendingPage, StoreError> {
        self.read(move |c| {
            // Ordered by (active_ms, seq); the position is both.
            let (after_ms, after_seq) = after
                .as_deref()
                .and_then(|a| a.split_once(':'))
                .and_then(|(m, q)| Some((m.parse::<i64>().ok()?, q.parse::<i64>().ok()?)))
                .unwrap_or((i64::MIN, -1));
            let mut stmt = c
                .prepare_cached(
                    "SELECT active_ms, seq, id FROM leads INDEXED BY leads_by_activity
                     WHERE erased = 0 AND active_ms < ?1 AND (active_ms, seq) > (?2, ?3)
                     ORDER BY active_ms, seq LIMIT ?4",
                )
                .map_err(sql_error)?;
            let rows = stmt
                .query_map(params![before.timestamp_millis(), after_ms, after_seq, limit as i64], |r| {
                    Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get::<_, String>(2)?))
                })
                .map_err(sql_error)?;
            let (mut leads, mut last, mut n) = (Vec::new(), None, 0);
            for row in rows {
                let (ms, seq, id) = row.map_err(sql_error)?;
                last = Some(format!("{ms}:{seq}"));
                n += 1;
                leads.extend(LeadId::parse(&id));
            }
            Ok(PendingPage { leads, next: if n == limit { last } else { None } })
        })
        .await
    }

    async fn expire(
        &self,
        leads_before: Option<DateTime<Utc>>,
        claims_before: DateTime<Utc>,
        limit: usize,
    ) -> Result<crate::ports::Expired, StoreError> {
        self.write(move |c| {
            let mut done = crate::ports::Expired::default();
            if let Some(before) = leads_before {
                let ids: Vec<String> = {
                    let mut stmt = c
                        .prepare_cached(
                            "SELECT id FROM leads INDEXED BY leads_by_activity
                             WHERE erased = 1 AND active_ms < ?1 LIMIT ?2",
                        )
                        .map_err(sql_error)?;
                    let rows = stmt
                        .query_map(params![before.timestamp_millis(), limit as i64], |r| r.get::<_, String>(0))
                        .map_err(sql_error)?;
                    rows.collect::<Result<_, _>>().map_err(sql_error)?
                };
                for id in &ids {
                    // Its keys went when it was erased.
                    for sql in ["DELETE FROM deliveries WHERE lead_id = ?1", "DELETE FROM leads WHERE id = ?1"] {
                        c.prepare_cached(sql).and_then(|mut s| s.execute([id])).map_err(sql_error)?;
                    }
                }
                done.leads = ids.len();
            }
            done.claims = c
                .prepare_cached(
                    "DELETE FROM identities WHERE key IN
                     (SELECT key FROM identities WHERE claimed_at < ?1 LIMIT ?2)",
                )
                .and_then(|mut s| s.execute(params![claims_before.timestamp_millis(), limit as i64]))
                .map_err(sql_error)?;
            Ok(done)
        })
        .await
    }

    async fn pending(
        &self,
        due_by: DateTime<Utc>,
        after: Option<String>,
        limit: usize,
    ) -> Result<PendingPage, StoreError> {
        self.read(move |c| {
            let after: i64 = after.and_then(|a| a.parse().ok()).unwrap_or(0);
            let mut stmt = c
                .prepare_cached(
                    "SELECT seq, id FROM leads INDEXED BY leads_waiting
                     WHERE stage IS NOT NULL AND seq > ?1 AND due_ms <= ?3 ORDER BY seq LIMIT ?2",
                )
                .map_err(sql_error)?;
            let rows = stmt
                .query_map(params![after, limit as i64, due_by.timestamp_millis()], |r| {
                    Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
                })
                .map_err(sql_error)?;
            let mut out = Vec::new();
            let mut last = None;
            let mut n = 0;
            for row in rows {
                let (seq, id) = row.map_err(sql_error)?;
                last = Some(seq);
                n += 1;
                out.extend(LeadId::parse(&id));
            }
            let next = if n == limit { last.map(|s| s.to_string()) } else { None };
            Ok(PendingPage { leads: out, next })
        })
        .await
    }
}
