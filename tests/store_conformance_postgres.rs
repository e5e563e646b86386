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
use statusd::model::{ComplianceStatus, DateTime, ParentKind, StatusKind, StatusShape, Tally};
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
            watch_history: 1_000_000,
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
async fn tallies_follow_every_write() {
    let (_b, store) = fresh!("tallies");
    conformance::tallies_follow_every_write(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tallies_under_concurrent_writers() {
    let (_b, store) = fresh!("tally_race");
    conformance::tallies_under_concurrent_writers(store, 8, 50).await;
}

#[tokio::test]
async fn durable_on_return() {
    let backend = match Postgres::new("durable").await {
        Ok(b) => b,
        Err(reason) => return eprintln!("skipped: {reason}"),
    };
    conformance::durable_on_return(&backend).await;
}

/// `n` replicas opened at once on `backend` (they race to migrate it), and
/// the schema versions recorded afterwards.
async fn open_together(backend: &Postgres, n: usize) -> (Vec<Arc<PostgresStore>>, Vec<String>) {
    let opens = (0..n).map(|_| {
        let config = backend.config();
        tokio::spawn(async move { PostgresStore::connect(&config).await })
    });
    let stores = futures::future::join_all(opens)
        .await
        .into_iter()
        .map(|r| r.unwrap().expect("every replica opens"))
        .collect();
    let versions = pg::query_strings(
        &backend.url,
        "SELECT version FROM statusd_schema_migrations ORDER BY version",
    )
    .await;
    (stores, versions)
}

/// Replicas starting together on an empty database race to migrate it: all
/// of them open, the schema is migrated once, and they share the data.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_starting_together_migrate_once() {
    let backend = match Postgres::new("migrate_race").await {
        Ok(b) => b,
        Err(reason) => return eprintln!("skipped: {reason}"),
    };
    let (stores, versions) = open_together(&backend, 6).await;
    let expected: Vec<String> = (1..=statusd::store::postgres::SCHEMA_VERSION)
        .map(|v| v.to_string())
        .collect();
    assert_eq!(versions, expected, "each migration recorded once");
    let kind = ParentKind::DeviceConfiguration;
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
        watch_history: 1_000_000,
    })
    .await
    .err()
    .expect("no database there");
    assert!(matches!(err, Error::Unavailable(_)), "{err:?}");
    assert!(err.to_string().contains(&format!("127.0.0.1:{port}")), "{err}");
    assert!(!err.to_string().contains("secret"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

/// The statuses a database at schema version 1 holds, per collection table
/// and parent: (table, parent id, statuses).
type Version1Statuses<'a> = [(&'a str, &'a str, Vec<statusd::model::Status>)];

/// Makes the fresh schema of `backend` what a statusd before tallies left:
/// schema version 1 (its migration table and `0001_initial.sql`), holding
/// `parents` (table, id) and `statuses` (records are statusd's codec, as
/// that statusd wrote them).
async fn at_version_1(
    backend: &Postgres,
    parents: &[(&str, ParentKind)],
    ids: &[&str],
    statuses: &Version1Statuses<'_>,
) {
    let (client, conn) = tokio_postgres::connect(&backend.url, tokio_postgres::NoTls)
        .await
        .expect("connect to the test database");
    let task = tokio::spawn(conn);
    client
        .batch_execute(
            "CREATE TABLE statusd_schema_migrations (
                version integer PRIMARY KEY,
                description text NOT NULL,
                applied_at timestamptz NOT NULL DEFAULT now()
            )",
        )
        .await
        .unwrap();
    client
        .batch_execute(include_str!("../src/store/postgres/0001_initial.sql"))
        .await
        .unwrap();
    client
        .execute(
            "INSERT INTO statusd_schema_migrations (version, description) VALUES (1, 'one table per collection')",
            &[],
        )
        .await
        .unwrap();
    for (table, kind) in parents {
        for id in ids {
            let record = statusd::store::encode(&conformance::parent(*kind, id)).unwrap();
            client
                .execute(
                    &format!("INSERT INTO {table} (id, record) VALUES ($1, $2)"),
                    &[id, &record],
                )
                .await
                .unwrap();
        }
    }
    for (table, parent_id, list) in statuses {
        let ids: Vec<&str> = list.iter().map(|s| s.id.as_str()).collect();
        let records: Vec<Vec<u8>> = list.iter().map(|s| statusd::store::encode(&s.body).unwrap()).collect();
        client
            .execute(
                &format!(
                    "INSERT INTO {table} (parent_id, id, record) \
                     SELECT $1, v.id, v.record FROM unnest($2::text[], $3::bytea[]) AS v(id, record)"
                ),
                &[parent_id, &ids, &records],
            )
            .await
            .unwrap();
    }
    drop(client);
    let _ = task.await;
}

/// Statuses named `<prefix><n>` holding `values` in turn.
fn valued(shape: StatusShape, prefix: &str, values: &[ComplianceStatus]) -> Vec<statusd::model::Status> {
    values
        .iter()
        .enumerate()
        .map(|(i, v)| conformance::status_valued(shape, &format!("{prefix}{i:05}"), *v))
        .collect()
}

/// Counts of `statuses` by value.
fn counts_of(statuses: &[statusd::model::Status]) -> [u64; 8] {
    let mut counts = [0; 8];
    for s in statuses {
        counts[s.body.status() as usize] += 1;
    }
    counts
}

/// Migration 2 counts the statuses a version-1 database already holds into
/// the new tally tables, once, even with several replicas migrating
/// together: parents whose statuses span the backfill's pages, a parent
/// without statuses (an empty tally), several collections. Writes after the
/// migration change the backfilled tallies.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn migration_2_counts_the_statuses_already_stored() {
    let backend = match Postgres::new("backfill").await {
        Ok(b) => b,
        Err(reason) => return eprintln!("skipped: {reason}"),
    };
    let kind = ParentKind::DeviceCompliancePolicy;
    let [user, device] = kind.status_kinds();
    let all = ComplianceStatus::ALL;
    // 1234 statuses: more than two backfill pages of 500.
    let big: Vec<ComplianceStatus> = (0..1234).map(|i| all[(i * 7 + i / 100) % 8]).collect();
    let cases: Vec<(StatusKind, &str, Vec<statusd::model::Status>)> = vec![
        (user, "big", valued(user.shape, "u", &big)),
        (
            user,
            "small",
            valued(
                user.shape,
                "u",
                &[
                    ComplianceStatus::Error,
                    ComplianceStatus::Error,
                    ComplianceStatus::Compliant,
                ],
            ),
        ),
        (device, "big", valued(device.shape, "d", &all[2..7])),
    ];
    let statuses: Vec<(&str, &str, Vec<statusd::model::Status>)> = cases
        .iter()
        .map(|(sk, pid, list)| {
            let table = match sk.shape {
                StatusShape::User => "device_compliance_policy_user_statuses",
                StatusShape::Device => "device_compliance_policy_device_statuses",
            };
            (table, *pid, list.clone())
        })
        .collect();
    at_version_1(
        &backend,
        &[("device_compliance_policies", kind)],
        &["big", "small", "empty"],
        &statuses,
    )
    .await;

    // Four replicas of this build start at once on it.
    let (stores, versions) = open_together(&backend, 4).await;
    assert_eq!(versions, ["1", "2", "3"], "each migration recorded once");

    for (sk, pid, list) in &cases {
        for store in &stores {
            let tally = store.get_tally(*sk, pid).await.unwrap().expect("the parent exists");
            assert_eq!(tally.counts, counts_of(list), "{sk} '{pid}': backfilled once");
            assert!(
                tally.last_update > DateTime::MIN,
                "{sk} '{pid}': a backfilled tally has a time"
            );
        }
    }
    assert_eq!(
        stores[0].get_tally(user, "empty").await.unwrap(),
        Some(Tally::default())
    );
    assert_eq!(
        stores[0].get_tally(device, "small").await.unwrap(),
        Some(Tally::default())
    );
    assert_eq!(stores[0].get_tally(user, "none").await.unwrap(), None);

    // Writes go on from the backfilled counts.
    let (_, _, small) = &cases[1];
    stores[1]
        .create_status(
            user,
            "small",
            &conformance::status_valued(user.shape, "new", ComplianceStatus::Conflict),
        )
        .await
        .unwrap();
    assert!(stores[2].delete_status(user, "small", &small[0].id).await.unwrap());
    let mut expected = counts_of(small);
    expected[ComplianceStatus::Conflict as usize] += 1;
    expected[ComplianceStatus::Error as usize] -= 1;
    assert_eq!(
        stores[3].get_tally(user, "small").await.unwrap().unwrap().counts,
        expected
    );
}

/// A backfill that cannot read a record (here: an unknown record format)
/// fails the start with an error naming the record, and leaves the database
/// at version 1 without tally tables; once the record is gone, the next
/// start migrates.
#[tokio::test]
async fn a_failed_backfill_leaves_version_1() {
    let backend = match Postgres::new("backfill_fails").await {
        Ok(b) => b,
        Err(reason) => return eprintln!("skipped: {reason}"),
    };
    let kind = ParentKind::DeviceCompliancePolicy;
    let user = kind.status_kinds()[0];
    let good = valued(user.shape, "u", &[ComplianceStatus::Remediated]);
    at_version_1(
        &backend,
        &[("device_compliance_policies", kind)],
        &["p"],
        &[("device_compliance_policy_user_statuses", "p", good.clone())],
    )
    .await;
    pg::query_strings(
        &backend.url,
        "INSERT INTO device_compliance_policy_user_statuses (parent_id, id, record) VALUES ('p', 'bad', '\\x09')",
    )
    .await;
    let err = PostgresStore::connect(&backend.config())
        .await
        .err()
        .expect("an unreadable record fails the backfill");
    let text = err.to_string();
    assert!(
        text.contains("device_compliance_policy_user_statuses") && text.contains("'bad'"),
        "{text}"
    );
    assert_eq!(
        pg::query_strings(&backend.url, "SELECT max(version) FROM statusd_schema_migrations").await,
        ["1"]
    );
    assert_eq!(
        pg::query_strings(
            &backend.url,
            "SELECT count(*) FROM information_schema.tables \
             WHERE table_schema = current_schema() AND table_name LIKE '%_tallies'"
        )
        .await,
        ["0"],
        "the tally tables were rolled back with the backfill"
    );

    pg::query_strings(
        &backend.url,
        "DELETE FROM device_compliance_policy_user_statuses WHERE id = 'bad'",
    )
    .await;
    let store = backend.open().await;
    assert_eq!(
        store.get_tally(user, "p").await.unwrap().unwrap().counts,
        counts_of(&good)
    );
}
