//! The database's shape: the tables, the columns and indexes added to files made before them,
//! and the open-lead counts kept by triggers.

use super::rows::sql_error;
use crate::domain::LeadStatus;
use crate::ports::StoreError;
use rusqlite::Connection;

pub(super) const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS leads (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    id          TEXT NOT NULL UNIQUE,
    status      TEXT NOT NULL,
    source      TEXT NOT NULL,
    owner       TEXT,
    stage       TEXT,
    received_at TEXT NOT NULL,
    doc         TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS reps (
    id  TEXT PRIMARY KEY,
    doc TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS rep_history (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id  TEXT NOT NULL,
    doc TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS leads_by_status ON leads(status, seq);
CREATE INDEX IF NOT EXISTS leads_by_owner ON leads(owner, seq) WHERE owner IS NOT NULL;
CREATE INDEX IF NOT EXISTS leads_by_source ON leads(source, seq);
CREATE TABLE IF NOT EXISTS identities (
    key        TEXT PRIMARY KEY,
    lead_id    TEXT NOT NULL,
    claimed_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS lead_keys (
    key     TEXT NOT NULL,
    lead_id TEXT NOT NULL,
    PRIMARY KEY (key, lead_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS pool_cursors (
    pool TEXT PRIMARY KEY,
    turn INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS kv (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS deliveries (
    lead_id   TEXT NOT NULL,
    recipient TEXT NOT NULL,
    kind      TEXT NOT NULL,
    target    TEXT NOT NULL,
    doc       TEXT NOT NULL,
    PRIMARY KEY (lead_id, recipient, kind, target)
) WITHOUT ROWID;
"#;

/// Columns the funnel metrics and the routing queries read without decoding the lead, added
/// to databases made before them and filled from the stored documents.
pub(super) const FACT_COLUMNS: &str = r#"
ALTER TABLE leads ADD COLUMN grade TEXT;
ALTER TABLE leads ADD COLUMN pool TEXT;
ALTER TABLE leads ADD COLUMN account TEXT;
ALTER TABLE leads ADD COLUMN received_ms INTEGER;
ALTER TABLE leads ADD COLUMN assigned_ms INTEGER;
ALTER TABLE leads ADD COLUMN accepted_ms INTEGER;
UPDATE leads SET
    grade = json_extract(doc, '$.grade'),
    pool = json_extract(doc, '$.pool'),
    received_ms = CAST(unixepoch(json_extract(doc, '$.received_at'), 'subsec') * 1000 AS INTEGER),
    assigned_ms = CAST(unixepoch(json_extract(doc, '$.first_assigned_at'), 'subsec') * 1000 AS INTEGER),
    accepted_ms = CAST(unixepoch(json_extract(doc, '$.accepted_at'), 'subsec') * 1000 AS INTEGER);
"#;
/// When the sweep should look at a waiting lead (`Lead::pending_due`; 0: now), so that leads
/// waiting for acceptance within their SLA are not read until their deadline.
pub(super) const DUE_COLUMN: &str = r#"
ALTER TABLE leads ADD COLUMN due_ms INTEGER NOT NULL DEFAULT 0;
UPDATE leads SET due_ms = COALESCE(CAST(unixepoch(json_extract(doc, '$.sla_due_at'), 'subsec') * 1000 AS INTEGER), 0)
    WHERE stage = 'assign' AND status IN ('assigned', 'notified') AND json_extract(doc, '$.notify_pending') IS NULL;
"#;
/// Retention: when the lead last changed or was touched (`Lead::last_activity`), and whether
/// its personal data is erased (a 0 or 1 costs no bytes in a SQLite record). Filled for
/// databases made before from the times already stored; `lead_keys` from the claims.
pub(super) const ACTIVITY_COLUMNS: &str = r#"
ALTER TABLE leads ADD COLUMN active_ms INTEGER;
ALTER TABLE leads ADD COLUMN erased INTEGER NOT NULL DEFAULT 0;
UPDATE leads SET active_ms = MAX(COALESCE(received_ms, 0), COALESCE(assigned_ms, 0), COALESCE(accepted_ms, 0));
INSERT OR IGNORE INTO lead_keys (key, lead_id) SELECT key, lead_id FROM identities;
"#;
pub(super) const FACT_INDEXES: &str = r#"
DROP INDEX IF EXISTS leads_open;
DROP INDEX IF EXISTS leads_pending;
CREATE INDEX IF NOT EXISTS leads_waiting ON leads(seq, due_ms) WHERE stage IS NOT NULL;
DROP INDEX IF EXISTS leads_facts;
CREATE INDEX IF NOT EXISTS leads_by_received ON leads(received_ms);
CREATE INDEX IF NOT EXISTS leads_by_account ON leads(account, seq) WHERE account IS NOT NULL;
CREATE INDEX IF NOT EXISTS leads_by_activity ON leads(erased, active_ms);
"#;

pub(super) fn migrate(conn: &Connection) -> Result<(), StoreError> {
    for (column, migration) in [("received_ms", FACT_COLUMNS), ("due_ms", DUE_COLUMN), ("active_ms", ACTIVITY_COLUMNS)]
    {
        let present: bool = conn
            .prepare("SELECT 1 FROM pragma_table_info('leads') WHERE name = ?1")
            .and_then(|mut s| s.exists([column]))
            .map_err(sql_error)?;
        if !present {
            conn.execute_batch(&format!("BEGIN; {migration} COMMIT;")).map_err(sql_error)?;
        }
    }
    conn.execute_batch(FACT_INDEXES).map_err(sql_error)?;
    let counted: bool = conn
        .prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'open_per_rep'")
        .and_then(|mut s| s.exists([]))
        .map_err(sql_error)?;
    if !counted {
        conn.execute_batch(&format!("BEGIN; {} COMMIT;", open_counts_sql())).map_err(sql_error)?;
    }
    Ok(())
}

/// Open leads per rep, kept by triggers in the same transaction as every write to `leads`, so
/// that capacity (`max_open_leads`, asked at every assignment) is one row, not a count of a
/// rep's leads; filled from the leads already stored when it is created. Openness is tested
/// with `instr` on a list rather than `IN (…)`, which builds a temporary table per row written,
/// and no column is added: a few bytes more per row made the metrics scan read 11% more pages.
pub(super) fn open_counts_sql() -> String {
    let list: Vec<&str> = LeadStatus::ALL.iter().filter(|s| s.is_open()).map(|s| s.as_str()).collect();
    let list = format!(",{},", list.join(","));
    let is_open = |row: &str| format!("({row}.owner IS NOT NULL AND instr('{list}', ',' || {row}.status || ',') > 0)");
    let (old, new, any) = (is_open("OLD"), is_open("NEW"), is_open("leads"));
    format!(
        "DROP TRIGGER IF EXISTS open_counts_insert;
         DROP TRIGGER IF EXISTS open_counts_update;
         DROP TRIGGER IF EXISTS open_counts_delete;
         DROP TABLE IF EXISTS open_counts;
         CREATE TABLE open_per_rep (rep TEXT PRIMARY KEY, n INTEGER NOT NULL) WITHOUT ROWID;
         INSERT INTO open_per_rep (rep, n) SELECT owner, COUNT(*) FROM leads WHERE {any} GROUP BY owner;
         CREATE TRIGGER open_per_rep_insert AFTER INSERT ON leads WHEN {new}
         BEGIN
             INSERT INTO open_per_rep (rep, n) VALUES (NEW.owner, 1) ON CONFLICT(rep) DO UPDATE SET n = n + 1;
         END;
         CREATE TRIGGER open_per_rep_update AFTER UPDATE OF status, owner ON leads
         WHEN {old} IS NOT {new} OR ({old} AND OLD.owner IS NOT NEW.owner)
         BEGIN
             UPDATE open_per_rep SET n = n - 1 WHERE {old} AND rep = OLD.owner;
             INSERT INTO open_per_rep (rep, n) SELECT NEW.owner, 1 WHERE {new}
                 ON CONFLICT(rep) DO UPDATE SET n = n + 1;
         END;
         CREATE TRIGGER open_per_rep_delete AFTER DELETE ON leads WHEN {old}
         BEGIN
             UPDATE open_per_rep SET n = n - 1 WHERE rep = OLD.owner;
         END;"
    )
}

/// The statuses in which a rep works a lead, as an SQL list (`LeadStatus::is_open`).
pub(super) fn open_statuses() -> String {
    let open: Vec<String> =
        LeadStatus::ALL.iter().filter(|s| s.is_open()).map(|s| format!("'{}'", s.as_str())).collect();
    open.join(",")
}
