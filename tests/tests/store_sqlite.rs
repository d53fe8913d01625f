//! The store contract suite against the embedded SQLite adapter.

use leadrouter::adapters::sqlite::SqliteStore;

async fn fresh() -> SqliteStore {
    // The directory is leaked on purpose: the store's writer thread outlives the test body.
    let dir = tempfile::tempdir().expect("temp dir").keep();
    SqliteStore::open(dir.join("contract.db")).expect("open sqlite")
}

leadrouter_tests::store_contract_tests!(fresh());

/// A file written before the fact and due columns existed opens, and its leads waiting for
/// acceptance within their SLA are found from their deadline on, not before.
#[tokio::test]
async fn a_file_from_before_the_due_column_is_migrated() {
    use chrono::{Duration, Utc};
    use leadrouter::domain::{Contact, Lead, LeadId, LeadStatus, NotificationKind, Stage};
    use leadrouter::ports::LeadStore;

    let dir = tempfile::tempdir().expect("temp dir").keep();
    let path = dir.join("old.db");
    let now = Utc::now();
    let waiting = {
        let mut l = Lead::new(LeadId::new(), "web".into(), Contact::default(), now);
        l.give_to("everyone", "ana".into(), "test".into(), NotificationKind::Assigned, now);
        l.notify_pending = None;
        l.sla_due_at = Some(now + Duration::minutes(15));
        l
    };
    let fresh = Lead::new(LeadId::new(), "web".into(), Contact::default(), now);
    assert_eq!(waiting.status, LeadStatus::Assigned);
    {
        // The schema as the first release wrote it.
        let c = rusqlite::Connection::open(&path).unwrap();
        c.execute_batch(
            "CREATE TABLE leads (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE,
             status TEXT NOT NULL, source TEXT NOT NULL, owner TEXT, stage TEXT, received_at TEXT NOT NULL,
             doc TEXT NOT NULL);
             CREATE INDEX leads_pending ON leads(seq) WHERE stage IS NOT NULL;",
        )
        .unwrap();
        for l in [&waiting, &fresh] {
            c.execute(
                "INSERT INTO leads (id, status, source, owner, stage, received_at, doc) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                rusqlite::params![
                    l.id.as_str(),
                    l.status.as_str(),
                    l.source,
                    l.owner,
                    l.pending_stage().map(Stage::as_str),
                    l.received_at.to_rfc3339(),
                    serde_json::to_string(l).unwrap()
                ],
            )
            .unwrap();
        }
    }
    let store = SqliteStore::open(&path).expect("open a file from before the migration");
    let now_page = store.pending(now, None, 10).await.unwrap();
    assert_eq!(now_page.leads, vec![fresh.id.clone()], "the waiting lead is not due yet");
    let later = store.pending(now + Duration::minutes(16), None, 10).await.unwrap();
    assert_eq!(later.leads.len(), 2, "past the deadline both are due: {later:?}");
    assert_eq!(store.open_count("ana", 10).await.unwrap(), 1, "the assigned lead is open");
    assert_eq!(store.get(&waiting.id).await.unwrap().map(|l| l.owner), Some(Some("ana".into())));
}

/// A search reads a window of leads at a time, newest first, and stops when its time is up
/// (here windows of 3 and no time: each page reads one window).
#[tokio::test]
async fn a_search_reads_a_window_at_a_time_and_says_where_it_stopped() {
    let store = fresh().await.with_search_bounds(3, std::time::Duration::ZERO);
    let (pages, short) = leadrouter_tests::contract::a_bounded_search_pages_to_every_match(store).await;
    // Seq 8-10 (a match), 5-7 and 2-4 (none: empty, with a cursor), 1 (the other match).
    assert_eq!((pages, short), (4, 2));
}
