//! The schema: versioned migrations shipped in the binary, applied at start,
//! and the statements each collection is read and written with.
//!
//! Migrations are plain SQL that PostgreSQL and the PostgreSQL-protocol
//! distributed engines run (no PL/pgSQL, triggers or advisory locks), and
//! where SQL cannot do the work (statusd's records are its own codec) a step
//! of statusd's own in the same transaction. Several replicas may start at
//! once: each migration, its step included, commits together with its row in
//! `statusd_schema_migrations`, and a replica that loses the race to another
//! one (a duplicate table or version) reads the version again.

use super::errors::{db_error, failure_error, is_migration_race, DbFailure};
use super::tally::{self, COUNT_COLUMNS};
use crate::error::{Error, Result};
use crate::model::{ParentKind, StatusKind, StatusShape};

/// One migration.
struct Migration {
    /// Its number in `statusd_schema_migrations`.
    version: i32,
    /// What it does, recorded with the number.
    description: &'static str,
    /// Its SQL (`src/store/postgres/NNNN_*.sql`).
    sql: &'static str,
    /// What statusd itself does after the SQL, in the same transaction.
    then: Option<Step>,
}

/// A migration's part that SQL cannot do.
#[derive(Debug, Clone, Copy)]
enum Step {
    /// Counts the statuses already stored into the new tally tables.
    BackfillTallies,
}

/// The migrations, in order.
const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        description: "one table per collection",
        sql: include_str!("0001_initial.sql"),
        then: None,
    },
    Migration {
        version: 2,
        description: "a tally table per status collection",
        sql: include_str!("0002_tallies.sql"),
        then: Some(Step::BackfillTallies),
    },
    Migration {
        version: 3,
        description: "the change feed Watch reads",
        sql: include_str!("0003_watch.sql"),
        then: None,
    },
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: i32 = MIGRATIONS[MIGRATIONS.len() - 1].version;

const CREATE_VERSIONS: &str = "CREATE TABLE IF NOT EXISTS statusd_schema_migrations (
    version integer PRIMARY KEY,
    description text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)";

/// Brings the database's schema up to [`SCHEMA_VERSION`]; refuses a database
/// that a newer statusd has migrated further.
pub async fn migrate(client: &mut tokio_postgres::Client) -> Result<i32> {
    const ATTEMPTS: usize = 10;
    let mut last = None;
    for _ in 0..ATTEMPTS {
        match migrate_once(client).await {
            Ok(version) => return Ok(version),
            Err(DbFailure::Db(e)) if is_migration_race(&e) => {
                // Another replica migrated at the same moment: look again.
                last = Some(e);
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            Err(f) => return Err(failure_error(f, "migrating the database schema")),
        }
    }
    Err(db_error(
        last.expect("at least one attempt failed"),
        "migrating the database schema (still racing other replicas)",
    ))
}

async fn migrate_once(client: &mut tokio_postgres::Client) -> Result<i32, DbFailure> {
    // `IF NOT EXISTS` notices are noise in statusd's log on every start.
    let _ = client.batch_execute("SET client_min_messages TO warning").await;
    client.batch_execute(CREATE_VERSIONS).await?;
    loop {
        let row = client
            .query_one("SELECT COALESCE(MAX(version), 0) FROM statusd_schema_migrations", &[])
            .await?;
        let current: i32 = row.get(0);
        if current > SCHEMA_VERSION {
            // Not retryable: reported as is by the caller's check below.
            return Ok(current);
        }
        let Some(&Migration {
            version,
            description,
            sql,
            then,
        }) = MIGRATIONS.iter().find(|m| m.version > current)
        else {
            return Ok(current);
        };
        let tx = client.transaction().await?;
        tx.batch_execute(sql).await?;
        match then {
            None => {}
            Some(Step::BackfillTallies) => tally::backfill(&tx).await?,
        }
        tx.execute(
            "INSERT INTO statusd_schema_migrations (version, description) VALUES ($1, $2)",
            &[&version, &description],
        )
        .await?;
        tx.commit().await?;
        tracing::info!(version, description, "database schema migrated");
    }
}

/// Refuses a schema newer than this build knows.
pub fn check_version(found: i32) -> Result<()> {
    if found > SCHEMA_VERSION {
        return Err(Error::Internal(format!(
            "the database schema is version {found}, newer than this statusd's {SCHEMA_VERSION}: \
             run a statusd at least as new as the one that migrated it"
        )));
    }
    Ok(())
}

/// The table of a parent collection (as created by the migrations).
pub fn parent_table(kind: ParentKind) -> &'static str {
    match kind {
        ParentKind::DeviceCompliancePolicy => "device_compliance_policies",
        ParentKind::MobileAppConfiguration => "mobile_app_configurations",
        ParentKind::DeviceConfiguration => "device_configurations",
    }
}

/// The table of a status collection (as created by the migrations).
pub fn status_table(kind: StatusKind) -> &'static str {
    use ParentKind::*;
    use StatusShape::*;
    match (kind.parent, kind.shape) {
        (DeviceCompliancePolicy, User) => "device_compliance_policy_user_statuses",
        (DeviceCompliancePolicy, Device) => "device_compliance_policy_device_statuses",
        (MobileAppConfiguration, User) => "mobile_app_configuration_user_statuses",
        (MobileAppConfiguration, Device) => "mobile_app_configuration_device_statuses",
        (DeviceConfiguration, User) => "device_configuration_user_statuses",
        (DeviceConfiguration, Device) => "device_configuration_device_statuses",
    }
}

/// The tally table of a status collection (as created by migration 2):
/// the status table's name with `statuses` made `status_tallies`.
pub fn tally_table(kind: StatusKind) -> String {
    let t = status_table(kind);
    format!("{}status_tallies", t.strip_suffix("statuses").unwrap_or(t))
}

/// The statements of one parent collection.
pub struct ParentSql {
    pub insert: String,
    pub get: String,
    pub swap: String,
    pub delete: String,
    pub list_first: String,
    pub list_after: String,
    /// Locks referenced rows against a delete until the transaction ends.
    pub lock_existing: String,
    /// Which of the ids `$1` exist.
    pub existing: String,
}

impl ParentSql {
    pub fn new(kind: ParentKind) -> ParentSql {
        let t = parent_table(kind);
        ParentSql {
            insert: format!("INSERT INTO {t} (id, record) VALUES ($1, $2)"),
            get: format!("SELECT record FROM {t} WHERE id = $1"),
            swap: format!("UPDATE {t} SET record = $3 WHERE id = $1 AND record = $2"),
            delete: format!("DELETE FROM {t} WHERE id = $1"),
            list_first: format!("SELECT record FROM {t} ORDER BY id LIMIT $1"),
            list_after: format!("SELECT record FROM {t} WHERE id > $2 ORDER BY id LIMIT $1"),
            lock_existing: format!("SELECT id FROM {t} WHERE id = ANY($1) FOR KEY SHARE"),
            existing: format!("SELECT id FROM {t} WHERE id = ANY($1)"),
        }
    }
}

/// The statements of one status collection.
pub struct StatusSql {
    pub insert: String,
    /// Inserts the rows of three arrays (parent ids, ids, records) whose
    /// parent exists and whose key is free; returns the keys written (see
    /// `batch`).
    pub insert_batch: String,
    pub get: String,
    pub swap: String,
    /// Deletes a status and returns its record (what its tally loses).
    pub delete: String,
    pub list_first: String,
    pub list_after: String,
    /// Adds deltas to tally rows (of one shard, the last parameter),
    /// creating missing ones: `$1` parent ids
    /// (distinct), `$2`…`$9` what each adds to each count, in
    /// [`COUNT_COLUMNS`] order, `$10` the write's time (ticks), which
    /// `last_update` moves up to. Rows are locked in ascending (byte) id
    /// order (see `tally`).
    pub tally_add: String,
    /// A parent's tally: one row if the parent `$1` exists (the count
    /// columns and `last_update` summed over its shards, NULL without a
    /// tally row), none if not.
    pub tally_get: String,
}

impl StatusSql {
    pub fn new(kind: StatusKind) -> StatusSql {
        let t = status_table(kind);
        let p = parent_table(kind.parent);
        let tt = tally_table(kind);
        let counts = COUNT_COLUMNS.join(", ");
        let arrays: Vec<String> = (2..2 + COUNT_COLUMNS.len())
            .map(|i| format!("${i}::bigint[]"))
            .collect();
        let added: Vec<String> = COUNT_COLUMNS
            .iter()
            .map(|c| format!("{c} = t.{c} + EXCLUDED.{c}"))
            .collect();
        let read: Vec<String> = COUNT_COLUMNS
            .iter()
            .map(|c| format!("CAST(SUM(t.{c}) AS bigint)"))
            .collect();
        let deltas: Vec<String> = COUNT_COLUMNS.iter().map(|c| format!("d.{c}")).collect();
        let at = 2 + COUNT_COLUMNS.len();
        StatusSql {
            insert: format!("INSERT INTO {t} (parent_id, id, record) VALUES ($1, $2, $3)"),
            insert_batch: format!(
                "INSERT INTO {t} (parent_id, id, record) \
                 SELECT v.parent_id, v.id, v.record \
                 FROM unnest($1::text[], $2::text[], $3::bytea[]) AS v(parent_id, id, record) \
                 WHERE EXISTS (SELECT 1 FROM {p} WHERE {p}.id = v.parent_id) \
                 ON CONFLICT (parent_id, id) DO NOTHING \
                 RETURNING parent_id, id"
            ),
            get: format!("SELECT record FROM {t} WHERE parent_id = $1 AND id = $2"),
            swap: format!("UPDATE {t} SET record = $4 WHERE parent_id = $1 AND id = $2 AND record = $3"),
            delete: format!("DELETE FROM {t} WHERE parent_id = $1 AND id = $2 RETURNING record"),
            list_first: format!("SELECT id, record FROM {t} WHERE parent_id = $1 ORDER BY id LIMIT $2"),
            list_after: format!("SELECT id, record FROM {t} WHERE parent_id = $1 AND id > $3 ORDER BY id LIMIT $2"),
            tally_add: format!(
                "INSERT INTO {tt} AS t (parent_id, shard, {counts}, last_update) \
                 SELECT d.parent_id, ${shard}::smallint, {deltas}, ${at}::bigint \
                 FROM unnest($1::text[], {arrays}) AS d(parent_id, {counts}) \
                 ORDER BY d.parent_id COLLATE \"C\" \
                 ON CONFLICT (parent_id, shard) DO UPDATE SET {added}, \
                 last_update = GREATEST(t.last_update, EXCLUDED.last_update)",
                shard = at + 1,
                arrays = arrays.join(", "),
                deltas = deltas.join(", "),
                added = added.join(", "),
            ),
            tally_get: format!(
                "SELECT {read}, MAX(t.last_update) FROM {p} AS p LEFT JOIN {tt} AS t ON t.parent_id = p.id \
                 WHERE p.id = $1 GROUP BY p.id",
                read = read.join(", "),
            ),
        }
    }
}
