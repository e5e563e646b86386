//! The store conformance suite (`tests/conformance/`) run unchanged against
//! PostgreSQL: the same checks, one test each, as `store_conformance.rs`
//! runs them against sled. Each test gets an empty schema of its own in the
//! database named by `STATUSD_TEST_DATABASE_URL`; without it every test
//! prints `skipped: <reason>` and passes. Also here: what only this backend
//! has (schema migrations raced by replicas, a newer schema refused, an
//! unreachable database answered UNAVAILABLE).

mod conformance;
mod pg;

use conformance::Backend;
use statusd::error::Error;
use statusd::store::{PostgresConfig, PostgresStore, Store};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One schema of the test database.
struct Postgres {
    url: String,
}

impl Postgres {
    /// A fresh schema, or why the test is skipped.
    async fn new(label: &str) -> Result<Postgres, String> {
        let base = pg::database_url()?;
        Ok(Postgres {
            url: pg::fresh_schema(&base, label).await,
        })
    }

    fn config(&self) -> PostgresConfig {
        PostgresConfig {
            url: self.url.clone(),
            ca: None,
            pool_size: 16,
            connect_timeout: Duration::from_secs(5),
        }
    }

    /// Checks that no status of the compliance policies (the collection the
    /// race and cascade checks use) is left without its parent.
    async fn assert_no_orphans(&self) {
        for shape in ["user", "device"] {
            let table = format!("device_compliance_policy_{shape}_statuses");
            assert_eq!(self.orphans(&table, "device_compliance_policies").await, 0, "{table}");
        }
    }

    /// Rows of `table` whose parent is missing (the foreign keys should make
    /// this impossible; the check looks anyway).
    async fn orphans(&self, status_table: &str, parent_table: &str) -> i64 {
        let sql = format!(
            "SELECT count(*) FROM {status_table} s WHERE NOT EXISTS \
             (SELECT 1 FROM {parent_table} p WHERE p.id = s.parent_id)"
        );
        pg::query_strings(&self.url, &sql).await[0].parse().unwrap()
    }
}

#[async_trait::async_trait]
impl Backend for Postgres {
    fn name(&self) -> &str {
        "postgres"
    }

    async fn open(&self) -> Arc<dyn Store> {
        PostgresStore::connect(&self.config())
            .await
            .expect("PostgreSQL store opens")
    }
}

/// Opens a store on a fresh schema, or prints why the test is skipped.
macro_rules! fresh {
    ($label:expr) => {
        match Postgres::new($label).await {
            Ok(backend) => {
                let store = backend.open().await;
                (backend, store)
            }
            Err(reason) => return eprintln!("skipped: {reason}"),
        }
    };
}

#[tokio::test]
async fn parent_crud() {
    let (_b, store) = fresh!("parent_crud");
    conformance::parent_crud(store).await;
}

#[tokio::test]
async fn status_crud() {
    let (_b, store) = fresh!("status_crud");
    conformance::status_crud(store).await;
}

#[tokio::test]
async fn references() {
    let (_b, store) = fresh!("references");
    conformance::references(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn atomic_parent_check_under_race() {
    let (backend, store) = fresh!("race");
    conformance::atomic_parent_check_under_race(store, 20, 16).await;
    backend.assert_no_orphans().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cascade() {
    let (backend, store) = fresh!("cascade");
    conformance::cascade(store, 2500).await;
    backend.assert_no_orphans().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn compare_and_swap() {
    let (_b, store) = fresh!("cas");
    conformance::compare_and_swap(store, 16, 20).await;
}

#[tokio::test]
async fn ordered_paging() {
    let (_b, store) = fresh!("ordered_paging");
    conformance::ordered_paging(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn paging_while_changing() {
    let (_b, store) = fresh!("paging_changing");
    conformance::paging_while_changing(store, 300, 7).await;
}

#[tokio::test]
async fn durable_on_return() {
    let backend = match Postgres::new("durable").await {
        Ok(b) => b,
        Err(reason) => return eprintln!("skipped: {reason}"),
    };
    conformance::durable_on_return(&backend).await;
}

/// Replicas starting together on an empty database race to migrate it: all
/// of them open, the schema is migrated once, and they share the data.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_starting_together_migrate_once() {
    let backend = match Postgres::new("migrate_race").await {
        Ok(b) => b,
        Err(reason) => return eprintln!("skipped: {reason}"),
    };
    let opens = (0..6).map(|_| {
        let config = backend.config();
        tokio::spawn(async move { PostgresStore::connect(&config).await })
    });
    let stores: Vec<Arc<PostgresStore>> = futures::future::join_all(opens)
        .await
        .into_iter()
        .map(|r| r.unwrap().expect("every replica opens"))
        .collect();
    let versions = pg::query_strings(
        &backend.url,
        "SELECT version FROM statusd_schema_migrations ORDER BY version",
    )
    .await;
    let expected: Vec<String> = (1..=statusd::store::postgres::SCHEMA_VERSION)
        .map(|v| v.to_string())
        .collect();
    assert_eq!(versions, expected, "each migration recorded once");
    let kind = statusd::model::ParentKind::DeviceConfiguration;
    let p = conformance::parent(kind, "shared");
    stores[0].create_parent(kind, &p).await.unwrap();
    assert_eq!(stores[5].get_parent(kind, "shared").await.unwrap(), Some(p));
}

/// A database migrated by a newer statusd is refused with a message that
/// says so; nothing is changed.
#[tokio::test]
async fn a_newer_schema_is_refused() {
    let backend = match Postgres::new("newer").await {
        Ok(b) => b,
        Err(reason) => return eprintln!("skipped: {reason}"),
    };
    drop(backend.open().await);
    pg::query_strings(
        &backend.url,
        "INSERT INTO statusd_schema_migrations (version, description) VALUES (999, 'from the future')",
    )
    .await;
    let err = PostgresStore::connect(&backend.config())
        .await
        .err()
        .expect("a newer schema is refused");
    assert!(err.to_string().contains("version 999"), "{err}");
}

/// Nothing listening: opening fails fast and says the database is
/// unavailable, naming where it looked (without a password).
#[tokio::test]
async fn an_unreachable_database_is_unavailable() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let started = Instant::now();
    let err = PostgresStore::connect(&PostgresConfig {
        url: format!("postgres://statusd:secret@127.0.0.1:{port}/statusd"),
        ca: None,
        pool_size: 2,
        connect_timeout: Duration::from_secs(2),
    })
    .await
    .err()
    .expect("no database there");
    assert!(matches!(err, Error::Unavailable(_)), "{err:?}");
    assert!(err.to_string().contains(&format!("127.0.0.1:{port}")), "{err}");
    assert!(!err.to_string().contains("secret"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5));
}
