//! The PostgreSQL backend: several statusd replicas on one database.
//!
//! Integrity comes from the database, not from in-process locks, because
//! replicas share it (DESIGN §10): a status's foreign key to its parent (`ON
//! DELETE CASCADE`) makes the parent check and the cascade atomic, primary
//! keys refuse duplicates, compare-and-swap is an `UPDATE … WHERE record =
//! expected`, and a new certificate reference holds its target with `FOR KEY
//! SHARE` until the write commits. Every write is one statement or one short
//! transaction, retried on serialization failures (SQLSTATE 40001/40P01), so
//! the same SQL is correct under SERIALIZABLE engines (CockroachDB,
//! YugabyteDB). Acknowledged means committed: each connection sets
//! `synchronous_commit = on`. Every status write also changes its parent's
//! tally row in the same transaction (see [`tally`]).
//!
//! Connections come from a pool (`deadpool-postgres`); tokio-postgres
//! pipelines the statements of concurrent requests that share one.
//!
//! TLS to the database: `sslmode=require` in the URL connects over TLS
//! (rustls) and verifies the server's certificate and name, against
//! `--database-ca` or the Mozilla roots (libpq's `verify-full`); a failed
//! verification is an error, never a fallback to plain text. `prefer`
//! (libpq's default) and `disable` connect without TLS: statusd does not
//! offer encryption without verification.

mod batch;
mod errors;
mod events;
mod schema;
mod snapshot;
mod tally;

pub use schema::SCHEMA_VERSION;

use super::codec::{self, encode_record};
use super::watch::{Feed, Filter, Logged};
use super::{parent_exists, parent_missing, reference_missing, status_exists, Store};
use crate::error::{Error, Result};
use crate::model::Change;
use crate::model::{ComplianceStatus, Parent, ParentKind, Status, StatusKind, Tally};
use deadpool_postgres::{Hook, HookError, Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use errors::{db_error, retrying, violates, DbFailure};
use schema::{ParentSql, StatusSql};
use std::collections::HashSet;
use std::str::FromStr;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_postgres::config::SslMode;
use tokio_postgres::error::SqlState;
use tokio_postgres_rustls::MakeRustlsConnect;

/// How to reach the database.
#[derive(Debug, Clone)]
pub struct PostgresConfig {
    /// A libpq-style URL or key=value string: host lists and
    /// `target_session_attrs=read-write` fail over to the primary.
    pub url: String,
    /// CA certificates (PEM) for `sslmode=require`; the Mozilla roots without.
    pub ca: Option<std::path::PathBuf>,
    /// Most connections this process opens.
    pub pool_size: usize,
    /// Longest wait for a connection (to open, or to come free).
    pub connect_timeout: Duration,
    /// Revisions of history kept for Watch.
    pub watch_history: u64,
}

/// A store on a PostgreSQL (protocol) database.
pub struct PostgresStore {
    pool: Pool,
    parents: [ParentSql; 3],
    statuses: [StatusSql; 6],
    /// Each status collection's queue of creates (see [`batch`]).
    creates: [batch::Queue; 6],
    /// Watch: the live channel over the events table.
    feed: Arc<Feed>,
    /// The largest revision this replica knows settled (see [`events`]).
    settled: Arc<AtomicU64>,
    /// The task that moves `settled` and publishes.
    poller: tokio::task::JoinHandle<()>,
}

/// The URL without its password, for logs and messages.
pub fn redacted(url: &str) -> String {
    match tokio_postgres::Config::from_str(url) {
        Ok(c) => {
            let hosts: Vec<String> = c
                .get_hosts()
                .iter()
                .zip(c.get_ports().iter().chain(std::iter::repeat(&5432)))
                .map(|(h, p)| match h {
                    tokio_postgres::config::Host::Tcp(h) => format!("{h}:{p}"),
                    #[cfg(unix)]
                    tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
                })
                .collect();
            format!(
                "postgres://{}@{}/{}",
                c.get_user().unwrap_or(""),
                hosts.join(","),
                c.get_dbname().unwrap_or("")
            )
        }
        Err(_) => "(unparsable database URL)".to_owned(),
    }
}

impl PostgresStore {
    /// Connects, migrates the schema to [`SCHEMA_VERSION`] and opens the pool.
    pub async fn connect(config: &PostgresConfig) -> Result<Arc<PostgresStore>> {
        let mut pg = tokio_postgres::Config::from_str(&config.url)
            .map_err(|e| Error::invalid("database-url", format!("not a PostgreSQL URL: {e}")))?;
        if pg.get_connect_timeout().is_none() {
            pg.connect_timeout(config.connect_timeout);
        }
        if pg.get_application_name().is_none() {
            pg.application_name("statusd");
        }
        if pg.get_ssl_mode() != SslMode::Require {
            pg.ssl_mode(SslMode::Disable);
        }
        let tls = tls_connector(config.ca.as_deref())?;
        let where_ = redacted(&config.url);

        // The schema first, on a connection of its own.
        let (mut client, connection) = pg
            .connect(tls.clone())
            .await
            .map_err(|e| db_error(e, &format!("connecting to {where_}")))?;
        let conn_task = tokio::spawn(connection);
        let version = schema::migrate(&mut client).await?;
        schema::check_version(version)?;
        warn_if_not_durable(&client).await;
        drop(client);
        let _ = conn_task.await;

        let manager = Manager::from_config(
            pg,
            tls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(config.pool_size.max(1))
            .runtime(Runtime::Tokio1)
            .create_timeout(Some(config.connect_timeout))
            .wait_timeout(Some(config.connect_timeout))
            .recycle_timeout(Some(config.connect_timeout))
            .post_create(Hook::async_fn(|client, _| {
                Box::pin(async move {
                    // Acknowledged means committed. An engine without the
                    // setting (its commits are synchronous) is fine.
                    match client.batch_execute("SET synchronous_commit = on").await {
                        Ok(()) => Ok(()),
                        Err(e) if violates(&e, &SqlState::UNDEFINED_OBJECT) => Ok(()),
                        Err(e) => Err(HookError::Backend(e)),
                    }
                })
            }))
            .build()
            .map_err(|e| Error::Internal(format!("cannot build the database pool: {e}")))?;
        tracing::info!(database = %where_, schema = version, pool = config.pool_size, "PostgreSQL store open");
        let feed = Arc::new(Feed::new(
            Arc::new(events::PgHistory::new(pool.clone())),
            config.watch_history,
        ));
        let settled = Arc::new(AtomicU64::new(events::settle(&pool).await?));
        let poller = tokio::spawn(events::poll(
            pool.clone(),
            feed.clone(),
            settled.clone(),
            config.watch_history,
        ));
        Ok(Arc::new_cyclic(|me| PostgresStore {
            pool,
            parents: ParentKind::ALL.map(ParentSql::new),
            statuses: StatusKind::ALL.map(StatusSql::new),
            creates: StatusKind::ALL.map(|kind| batch::start(me.clone(), kind)),
            feed,
            settled,
            poller,
        }))
    }

    /// Inserts one status on its own (a transaction of its own), counting
    /// its value `status` in its parent's tally and recording `event`.
    async fn create_one(
        &self,
        kind: StatusKind,
        parent_id: &str,
        id: &str,
        record: &[u8],
        status: ComplianceStatus,
        event: &[u8],
    ) -> Result<()> {
        let sql = self.status_sql(kind);
        let deltas = tally::Deltas::from([(parent_id, tally::delta(None, Some(status)))]);
        retrying("creating a status", || async {
            let mut client = self.pool.get().await?;
            let tx = client.transaction().await?;
            // The foreign key checks the parent atomically with the insert.
            match tx
                .execute(&tx.prepare_cached(&sql.insert).await?, &[&parent_id, &id, &record])
                .await
            {
                Ok(_) => {}
                Err(e) if violates(&e, &SqlState::FOREIGN_KEY_VIOLATION) => {
                    return Err(parent_missing(kind.parent, parent_id).into())
                }
                Err(e) if violates(&e, &SqlState::UNIQUE_VIOLATION) => {
                    return Err(status_exists(kind, parent_id, id).into())
                }
                Err(e) => return Err(e.into()),
            }
            events::count_and_record(&tx, &sql.tally_add, &deltas, &[(parent_id, event)]).await?;
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    /// Which of `ids` exist among the parents of `kind`.
    async fn existing_parents(&self, kind: StatusKind, ids: &[&str]) -> Result<HashSet<String>> {
        let sql = self.parent_sql(kind.parent);
        retrying("reading parents", || async {
            let client = self.pool.get().await?;
            let rows = client
                .query(&client.prepare_cached(&sql.existing).await?, &[&ids])
                .await?;
            Ok(rows.iter().map(|r| r.get::<_, String>(0)).collect())
        })
        .await
    }

    fn parent_sql(&self, kind: ParentKind) -> &ParentSql {
        &self.parents[kind.index()]
    }

    fn status_sql(&self, kind: StatusKind) -> &StatusSql {
        &self.statuses[kind.index()]
    }

    /// Writes a parent (insert, or swap when `expected` is given) while
    /// holding the targets of its new references. `Ok(false)`: the swap
    /// found another record.
    async fn write_parent_with_references(
        &self,
        kind: ParentKind,
        parent: &Parent,
        expected: Option<&[u8]>,
        value: &[u8],
        references: &[(&'static str, &str)],
    ) -> Result<bool, DbFailure> {
        let sql = self.parent_sql(kind);
        let targets = self.parent_sql(ParentKind::DeviceConfiguration);
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let ids: Vec<&str> = references.iter().map(|(_, t)| *t).collect();
        let found = tx
            .query(&tx.prepare_cached(&targets.lock_existing).await?, &[&ids])
            .await?;
        if let Some((field, target)) = references
            .iter()
            .find(|(_, t)| !found.iter().any(|row| row.get::<_, &str>(0) == *t))
        {
            return Err(reference_missing(field, target).into());
        }
        let written = match expected {
            None => match tx
                .execute(&tx.prepare_cached(&sql.insert).await?, &[&parent.id, &value])
                .await
            {
                Ok(n) => n,
                Err(e) if violates(&e, &SqlState::UNIQUE_VIOLATION) => {
                    return Err(parent_exists(kind, &parent.id).into())
                }
                Err(e) => return Err(e.into()),
            },
            Some(old) => {
                tx.execute(&tx.prepare_cached(&sql.swap).await?, &[&parent.id, &old, &value])
                    .await?
            }
        };
        tx.commit().await?;
        Ok(written == 1)
    }
}

/// The TLS connector for `sslmode=require`: rustls (ring), verifying the
/// server against `ca` or the Mozilla roots.
fn tls_connector(ca: Option<&std::path::Path>) -> Result<MakeRustlsConnect> {
    let mut roots = rustls::RootCertStore::empty();
    match ca {
        Some(path) => {
            let certs = crate::tls::read_certs("--database-ca", path).map_err(|m| Error::invalid("database-ca", m))?;
            for cert in certs {
                roots
                    .add(cert)
                    .map_err(|e| Error::invalid("database-ca", format!("{}: {e}", path.display())))?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let config =
        rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Internal(format!("TLS for the database: {e}")))?
            .with_root_certificates(roots)
            .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}

/// Logs a warning when the database would acknowledge commits it may lose.
async fn warn_if_not_durable(client: &tokio_postgres::Client) {
    for setting in ["fsync", "synchronous_commit"] {
        if let Ok(row) = client.query_one(&format!("SHOW {setting}"), &[]).await {
            let value: String = row.get(0);
            if value == "off" {
                tracing::warn!(
                    setting,
                    "the database has {setting} off: a crash of the database can lose acknowledged writes"
                );
            }
        }
    }
}

fn decode_parent(record: &[u8]) -> Result<Parent> {
    codec::decode(record)
}

fn limit_param(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

#[async_trait::async_trait]
impl Store for PostgresStore {
    async fn create_parent(&self, kind: ParentKind, parent: &Parent) -> Result<()> {
        let value = encode_record(parent)?;
        let references = parent.new_references(None);
        let sql = self.parent_sql(kind);
        retrying("creating a parent", || async {
            if !references.is_empty() {
                return self
                    .write_parent_with_references(kind, parent, None, &value, &references)
                    .await
                    .map(drop);
            }
            let client = self.pool.get().await?;
            match client
                .execute(&client.prepare_cached(&sql.insert).await?, &[&parent.id, &value])
                .await
            {
                Ok(_) => Ok(()),
                Err(e) if violates(&e, &SqlState::UNIQUE_VIOLATION) => Err(parent_exists(kind, &parent.id).into()),
                Err(e) => Err(e.into()),
            }
        })
        .await
    }

    async fn get_parent(&self, kind: ParentKind, id: &str) -> Result<Option<Parent>> {
        let sql = self.parent_sql(kind);
        let row = retrying("reading a parent", || async {
            let client = self.pool.get().await?;
            Ok(client
                .query_opt(&client.prepare_cached(&sql.get).await?, &[&id])
                .await?)
        })
        .await?;
        row.map(|r| decode_parent(r.get(0))).transpose()
    }

    async fn replace_parent(&self, kind: ParentKind, expected: &Parent, new: &Parent) -> Result<bool> {
        let old = codec::encode(expected)?;
        let value = encode_record(new)?;
        let references = new.new_references(Some(expected));
        let sql = self.parent_sql(kind);
        retrying("replacing a parent", || async {
            if !references.is_empty() {
                return self
                    .write_parent_with_references(kind, new, Some(&old), &value, &references)
                    .await;
            }
            let client = self.pool.get().await?;
            let n = client
                .execute(&client.prepare_cached(&sql.swap).await?, &[&new.id, &old, &value])
                .await?;
            Ok(n == 1)
        })
        .await
    }

    async fn delete_parent(&self, kind: ParentKind, id: &str) -> Result<bool> {
        let sql = self.parent_sql(kind);
        let event = Logged::parent_deleted(kind, id).encode()?;
        retrying("deleting a parent", || async {
            let mut client = self.pool.get().await?;
            let tx = client.transaction().await?;
            // The foreign keys remove its statuses in the same statement.
            let n = tx.execute(&tx.prepare_cached(&sql.delete).await?, &[&id]).await?;
            if n == 1 {
                events::record(&tx, &[(id, &event)]).await?;
            }
            tx.commit().await?;
            Ok(n == 1)
        })
        .await
    }

    async fn list_parents(&self, kind: ParentKind, after: Option<&str>, limit: usize) -> Result<Vec<Parent>> {
        let sql = self.parent_sql(kind);
        let limit = limit_param(limit);
        let rows = retrying("listing parents", || async {
            let client = self.pool.get().await?;
            Ok(match after {
                None => {
                    client
                        .query(&client.prepare_cached(&sql.list_first).await?, &[&limit])
                        .await?
                }
                Some(a) => {
                    client
                        .query(&client.prepare_cached(&sql.list_after).await?, &[&limit, &a])
                        .await?
                }
            })
        })
        .await?;
        rows.iter().map(|r| decode_parent(r.get(0))).collect()
    }

    async fn create_status(&self, kind: StatusKind, parent_id: &str, status: &Status) -> Result<()> {
        let record = encode_record(&status.body)?;
        let (reply, answer) = tokio::sync::oneshot::channel();
        let pending = batch::Pending {
            parent_id: parent_id.to_owned(),
            id: status.id.clone(),
            record,
            status: status.body.status(),
            event: Logged::status(kind, parent_id, Change::Created(status.clone())).encode()?,
            reply,
        };
        match self.creates[kind.index()].send(pending) {
            Ok(()) => answer
                .await
                .unwrap_or_else(|_| Err(Error::Unavailable("the create was dropped at shutdown".into()))),
            // The collector is gone (the runtime is shutting down): alone.
            Err(mpsc::error::SendError(p)) => {
                self.create_one(kind, parent_id, &p.id, &p.record, p.status, &p.event)
                    .await
            }
        }
    }

    async fn get_status(&self, kind: StatusKind, parent_id: &str, id: &str) -> Result<Option<Status>> {
        let sql = self.status_sql(kind);
        let row = retrying("reading a status", || async {
            let client = self.pool.get().await?;
            Ok(client
                .query_opt(&client.prepare_cached(&sql.get).await?, &[&parent_id, &id])
                .await?)
        })
        .await?;
        row.map(|r| codec::decode_status(id, r.get(0))).transpose()
    }

    async fn replace_status(&self, kind: StatusKind, parent_id: &str, expected: &Status, new: &Status) -> Result<bool> {
        let old = codec::encode(&expected.body)?;
        let value = encode_record(&new.body)?;
        let sql = self.status_sql(kind);
        // When the swap succeeds, the stored value was `expected`'s.
        let deltas = tally::Deltas::from([(
            parent_id,
            tally::delta(Some(expected.body.status()), Some(new.body.status())),
        )]);
        let event = Logged::status(kind, parent_id, Change::Updated(new.clone())).encode()?;
        retrying("replacing a status", || async {
            let mut client = self.pool.get().await?;
            let tx = client.transaction().await?;
            let n = tx
                .execute(
                    &tx.prepare_cached(&sql.swap).await?,
                    &[&parent_id, &new.id, &old, &value],
                )
                .await?;
            if n == 1 {
                events::count_and_record(&tx, &sql.tally_add, &deltas, &[(parent_id, &event)]).await?;
            }
            tx.commit().await?;
            Ok(n == 1)
        })
        .await
    }

    async fn delete_status(&self, kind: StatusKind, parent_id: &str, id: &str) -> Result<bool> {
        let sql = self.status_sql(kind);
        let event = Logged::status(kind, parent_id, Change::Deleted(id.to_owned())).encode()?;
        retrying("deleting a status", || async {
            let mut client = self.pool.get().await?;
            let tx = client.transaction().await?;
            let Some(row) = tx
                .query_opt(&tx.prepare_cached(&sql.delete).await?, &[&parent_id, &id])
                .await?
            else {
                return Ok(false);
            };
            // Its tally loses the value it held.
            let removed = codec::decode_status(id, row.get(0))?.body.status();
            let deltas = tally::Deltas::from([(parent_id, tally::delta(Some(removed), None))]);
            events::count_and_record(&tx, &sql.tally_add, &deltas, &[(parent_id, &event)]).await?;
            tx.commit().await?;
            Ok(true)
        })
        .await
    }

    async fn list_statuses(
        &self,
        kind: StatusKind,
        parent_id: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Status>> {
        let sql = self.status_sql(kind);
        let limit = limit_param(limit);
        let rows = retrying("listing statuses", || async {
            let client = self.pool.get().await?;
            Ok(match after {
                None => {
                    client
                        .query(&client.prepare_cached(&sql.list_first).await?, &[&parent_id, &limit])
                        .await?
                }
                Some(a) => {
                    client
                        .query(
                            &client.prepare_cached(&sql.list_after).await?,
                            &[&parent_id, &limit, &a],
                        )
                        .await?
                }
            })
        })
        .await?;
        rows.iter().map(|r| codec::decode_status(r.get(0), r.get(1))).collect()
    }

    async fn get_tally(&self, kind: StatusKind, parent_id: &str) -> Result<Option<Tally>> {
        let sql = self.status_sql(kind);
        // One statement, so the parent check and the row are one snapshot.
        let row = retrying("reading a status tally", || async {
            let client = self.pool.get().await?;
            Ok(client
                .query_opt(&client.prepare_cached(&sql.tally_get).await?, &[&parent_id])
                .await?)
        })
        .await?;
        row.map(|r| tally::from_row(kind, parent_id, &r)).transpose()
    }

    async fn watch(
        &self,
        kind: StatusKind,
        parent_id: &str,
        start_revision: u64,
        stop: tokio::sync::watch::Receiver<bool>,
    ) -> Result<super::watch::EventStream> {
        // In this order (see `watch`): subscribe, then read where we are.
        let subscribed = self.feed.subscribe();
        if start_revision == 0 {
            // "From now on": now, not when the poller last looked (a change
            // acknowledged before this call is past, not news).
            let settled = events::settle(&self.pool).await?;
            self.settled.fetch_max(settled, std::sync::atomic::Ordering::AcqRel);
        }
        let now = self.settled.load(std::sync::atomic::Ordering::Acquire);
        let exists = self.get_parent(kind.parent, parent_id).await?.is_some();
        self.feed
            .watch(
                subscribed,
                Filter::new(kind, parent_id),
                start_revision,
                now,
                exists,
                stop,
            )
            .await
    }

    async fn flush(&self) -> Result<()> {
        // Every acknowledged write is already committed.
        Ok(())
    }

    async fn snapshot(&self) -> Result<super::snapshot::Snapshot> {
        let client = self
            .pool
            .get()
            .await
            .map_err(|e| errors::failure_error(e.into(), "taking a snapshot"))?;
        let (ready, started) = tokio::sync::oneshot::channel();
        let (tx, chunks) = tokio::sync::mpsc::channel(4);
        tokio::spawn(async move {
            let mut client = client;
            if let Err(e) = snapshot::read(&mut client, ready, &tx).await {
                let _ = tx.send(Err(e)).await;
            }
        });
        let revision = started
            .await
            .map_err(|_| Error::Unavailable("the snapshot ended before it began".into()))??;
        Ok(super::snapshot::Snapshot { revision, chunks })
    }

    async fn count_records(&self) -> Result<super::RecordCounts> {
        let sums = tally::COUNT_COLUMNS.join(" + ");
        let parents = ParentKind::ALL
            .iter()
            .enumerate()
            .map(|(i, &k)| format!("SELECT {i}, count(*) FROM {}", schema::parent_table(k)));
        let statuses = StatusKind::ALL.iter().enumerate().map(|(i, &sk)| {
            format!(
                "SELECT {}, CAST(coalesce(sum({sums}), 0) AS bigint) FROM {}",
                3 + i,
                schema::tally_table(sk)
            )
        });
        let sql = parents.chain(statuses).collect::<Vec<_>>().join(" UNION ALL ") + " ORDER BY 1";
        let rows = retrying("counting records", || async {
            let client = self.pool.get().await?;
            Ok(client.query(&client.prepare_cached(&sql).await?, &[]).await?)
        })
        .await?;
        let mut counts = super::RecordCounts::default();
        for row in rows {
            let (i, n) = (row.get::<_, i32>(0) as usize, row.get::<_, i64>(1).max(0) as u64);
            match i {
                0..=2 => counts.parents[i] = n,
                3..=8 => counts.statuses[i - 3] = n,
                _ => {}
            }
        }
        Ok(counts)
    }
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        self.poller.abort();
        self.pool.close();
    }
}
