//! The store contract suite against the embedded SQLite adapter.

use leadrouter::adapters::sqlite::SqliteStore;

async fn fresh() -> SqliteStore {
    // The directory is leaked on purpose: the store's writer thread outlives the test body.
    let dir = tempfile::tempdir().expect("temp dir").keep();
    SqliteStore::open(dir.join("contract.db")).expect("open sqlite")
}

leadrouter_tests::store_contract_tests!(fresh());
