//! The store conformance suite (`tests/conformance/`) run against sled, one
//! test per check, each on a fresh data directory with the production
//! durability (`Durable`: every acknowledged write is fsynced).
//!
//! A second backend gets a file like this one: implement [`Backend`] and
//! call the same checks.

mod conformance;

use conformance::Backend;
use statusd::store::{Durability, FaultInjection, SledConfig, SledStore, Store};
use std::sync::Arc;

/// sled over a temp directory that lives as long as the backend.
struct Sled {
    dir: tempfile::TempDir,
}

impl Sled {
    fn new() -> Sled {
        Sled {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    /// The concrete store, for the checks only sled can make.
    fn open_sled(&self) -> Arc<SledStore> {
        let config = SledConfig {
            path: self.dir.path().to_owned(),
            cache_capacity: 64 << 20,
            durability: Durability::Durable,
            min_free_bytes: 0,
            watch_history: 1_000_000,
            faults: FaultInjection::default(),
        };
        Arc::new(SledStore::open(&config).expect("sled store opens"))
    }
}

#[async_trait::async_trait]
impl Backend for Sled {
    fn name(&self) -> &str {
        "sled"
    }

    async fn open(&self) -> Arc<dyn Store> {
        self.open_sled()
    }
}

/// A store on a fresh directory (the directory outlives the test's store
/// because the backend is returned alongside it).
async fn fresh() -> (Sled, Arc<dyn Store>) {
    let backend = Sled::new();
    let store = backend.open().await;
    (backend, store)
}

#[tokio::test]
async fn parent_crud() {
    let (_b, store) = fresh().await;
    conformance::parent_crud(store).await;
}

#[tokio::test]
async fn status_crud() {
    let (_b, store) = fresh().await;
    conformance::status_crud(store).await;
}

#[tokio::test]
async fn references() {
    let (_b, store) = fresh().await;
    conformance::references(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn atomic_parent_check_under_race() {
    let backend = Sled::new();
    let store = backend.open_sled();
    conformance::atomic_parent_check_under_race(store.clone(), 20, 16).await;
    // Inside the storage, too: once every cascade ends, no status is left
    // without its parent.
    store.wait_for_cascades();
    let report = store.check_integrity().expect("every record decodes");
    assert_eq!(report.orphans, 0, "{report:?}");
    assert_eq!(report.pending_cascades, 0, "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cascade() {
    let backend = Sled::new();
    let store = backend.open_sled();
    // sled removes up to 2 × 1000 statuses inline and leaves the rest to its
    // cascade thread: 2500 of each shape make the background path run.
    conformance::cascade(store.clone(), 2500).await;
    store.wait_for_cascades();
    let report = store.check_integrity().expect("every record decodes");
    assert_eq!(report.orphans, 0, "{report:?}");
    assert_eq!(report.pending_cascades, 0, "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn compare_and_swap() {
    let (_b, store) = fresh().await;
    conformance::compare_and_swap(store, 16, 20).await;
}

#[tokio::test]
async fn ordered_paging() {
    let (_b, store) = fresh().await;
    conformance::ordered_paging(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn paging_while_changing() {
    let (_b, store) = fresh().await;
    conformance::paging_while_changing(store, 300, 7).await;
}

#[tokio::test]
async fn tallies_follow_every_write() {
    let (_b, store) = fresh().await;
    conformance::tallies_follow_every_write(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tallies_under_concurrent_writers() {
    let (_b, store) = fresh().await;
    conformance::tallies_under_concurrent_writers(store, 8, 50).await;
}

#[tokio::test]
async fn durable_on_return() {
    conformance::durable_on_return(&Sled::new()).await;
}
