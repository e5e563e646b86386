//! Storage: the contract every backend keeps, and the sled backend.
//!
//! The contract (what the service relies on, and what a second backend such
//! as PostgreSQL must also pass):
//! - **Durable on return.** A mutation that returns `Ok` is on stable storage;
//!   a crash of the process right after cannot lose it.
//! - **Visible once durable.** No read (nor the check of another write)
//!   reflects a mutation before it is durable, so a crash never undoes
//!   something a client saw.
//! - **Atomic parent check.** `create_status` inserts only while the parent
//!   exists, atomically with respect to a concurrent `delete_parent`.
//! - **Cascade.** `delete_parent` removes the parent and, by cascade, all its
//!   statuses: from its return on, none of them is visible (reads answer as
//!   for a missing parent), even while a large cascade still runs in the
//!   background; a crash part-way leaves a record of the pending cascade that
//!   the next open resumes, so no orphan is ever visible.
//! - **References checked with the write.** A parent's certificate
//!   references that a create or replace sets anew
//!   ([`Parent::new_references`]) must name existing device configurations,
//!   checked atomically with the write (INVALID_ARGUMENT naming the
//!   property otherwise), so a binding and a delete of its target cannot
//!   interleave into a dangling reference that was never valid.
//! - **Compare-and-swap updates.** `replace_*` writes only if the stored
//!   record still equals `expected`, so concurrent updates never lose one.
//! - **Tallies agree with the statuses.** Every status write changes its
//!   parent's [`Tally`] in the same atomic, durable write, so a tally read
//!   never disagrees with the statuses stored at that moment, also after a
//!   crash.
//! - **Ordered paging.** Lists return records in id (byte) order, starting
//!   strictly after `after`, at most `limit` of them, in O(limit).

mod cascade;
mod codec;
mod durable_dir;
pub mod keys;
pub mod postgres;
mod sled_flush;
mod sled_store;
pub mod snapshot;
mod space;
pub mod wal;
pub mod watch;

pub use codec::{decode, encode, RECORD_VERSION};
pub use postgres::{PostgresConfig, PostgresStore};
pub use sled_store::{FaultInjection, IntegrityReport, SledConfig, SledStore};
pub use wal::Durability;

use crate::error::{Error, Result};
use crate::model::{Parent, ParentKind, Status, StatusKind, Tally};

// The errors every backend answers with, worded once.

/// A create of a parent whose id is taken.
fn parent_exists(kind: ParentKind, id: &str) -> Error {
    Error::AlreadyExists(format!("a {kind} with id '{id}' already exists"))
}

/// A create of a status whose id is taken under its parent.
fn status_exists(kind: StatusKind, parent_id: &str, id: &str) -> Error {
    Error::AlreadyExists(format!(
        "a {kind} with id '{id}' already exists under {} '{parent_id}'",
        kind.parent
    ))
}

/// A status write under a parent that does not exist.
fn parent_missing(kind: ParentKind, id: &str) -> Error {
    Error::NotFound(format!("{kind} '{id}' does not exist"))
}

/// A certificate reference (`field`) to a device configuration that does not exist.
fn reference_missing(field: &str, target: &str) -> Error {
    Error::invalid(field, format!("deviceConfiguration '{target}' does not exist"))
}

/// The backend to open, chosen at start (DESIGN §10: nothing above `store/`
/// names one).
#[derive(Debug, Clone)]
pub enum BackendConfig {
    /// sled in a local data directory (the embedded default).
    Sled(SledConfig),
    /// A PostgreSQL (protocol) database that replicas share.
    Postgres(PostgresConfig),
}

impl BackendConfig {
    /// Opens the backend.
    pub async fn open(&self) -> Result<std::sync::Arc<dyn Store>> {
        Ok(match self {
            BackendConfig::Sled(c) => std::sync::Arc::new(SledStore::open(c)?),
            BackendConfig::Postgres(c) => PostgresStore::connect(c).await?,
        })
    }

    /// Where the data lives, for logs (a database URL without its password).
    pub fn describe(&self) -> String {
        match self {
            BackendConfig::Sled(c) => format!("sled in {} ({:?})", c.path.display(), c.durability),
            BackendConfig::Postgres(c) => format!("PostgreSQL at {}", postgres::redacted(&c.url)),
        }
    }
}

/// A storage backend (see the module docs for the contract).
#[async_trait::async_trait]
pub trait Store: Send + Sync + 'static {
    /// Inserts a new parent; `AlreadyExists` if the id is taken.
    async fn create_parent(&self, kind: ParentKind, parent: &Parent) -> Result<()>;
    /// Reads a parent.
    async fn get_parent(&self, kind: ParentKind, id: &str) -> Result<Option<Parent>>;
    /// Replaces `expected` by `new` (same id); `Ok(false)` if the stored record
    /// is no longer `expected` (changed or deleted meanwhile).
    async fn replace_parent(&self, kind: ParentKind, expected: &Parent, new: &Parent) -> Result<bool>;
    /// Deletes a parent and, by cascade, its statuses; `Ok(false)` if absent.
    async fn delete_parent(&self, kind: ParentKind, id: &str) -> Result<bool>;
    /// Up to `limit` parents in id order, after `after`.
    async fn list_parents(&self, kind: ParentKind, after: Option<&str>, limit: usize) -> Result<Vec<Parent>>;

    /// Inserts a status under an existing parent: `NotFound` if the parent is
    /// missing, `AlreadyExists` if the status id is taken under it.
    async fn create_status(&self, kind: StatusKind, parent_id: &str, status: &Status) -> Result<()>;
    /// Reads a status.
    async fn get_status(&self, kind: StatusKind, parent_id: &str, id: &str) -> Result<Option<Status>>;
    /// Compare-and-swap, as [`Store::replace_parent`]; `Ok(false)` also if
    /// the parent is missing (its statuses are gone, even while a cascade
    /// still removes them).
    async fn replace_status(&self, kind: StatusKind, parent_id: &str, expected: &Status, new: &Status) -> Result<bool>;
    /// Deletes a status; `Ok(false)` if absent.
    async fn delete_status(&self, kind: StatusKind, parent_id: &str, id: &str) -> Result<bool>;
    /// Up to `limit` of a parent's statuses in id order, after `after`;
    /// none if the parent is missing.
    async fn list_statuses(
        &self,
        kind: StatusKind,
        parent_id: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Status>>;

    /// The tally of a parent's statuses of `kind` (O(1): kept with every
    /// status write, never counted); `None` if the parent is missing.
    async fn get_tally(&self, kind: StatusKind, parent_id: &str) -> Result<Option<Tally>>;

    /// The changes to `parent_id`'s statuses of `kind` in commit order, from
    /// `start_revision` on (0: from the next change), ending after the
    /// parent's delete, with an error (OUT_OF_RANGE for a revision no longer
    /// kept, RESOURCE_EXHAUSTED for a watcher too far behind, NOT_FOUND for
    /// a parent that does not exist), or when `stop` turns true.
    async fn watch(
        &self,
        kind: StatusKind,
        parent_id: &str,
        start_revision: u64,
        stop: tokio::sync::watch::Receiver<bool>,
    ) -> Result<watch::EventStream>;

    /// Makes everything written so far durable (used at shutdown).
    async fn flush(&self) -> Result<()>;

    /// A consistent snapshot of every record, read while writes go on (see
    /// [`snapshot`]); one at a time per store (UNAVAILABLE while another is
    /// open).
    async fn snapshot(&self) -> Result<snapshot::Snapshot>;

    /// How many records each collection holds, from the tallies (O(parents),
    /// not O(records)): for metrics, and a backup's expected size.
    async fn count_records(&self) -> Result<RecordCounts>;
}

/// The records of every collection: parents by [`ParentKind::ALL`], statuses
/// by [`StatusKind::ALL`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecordCounts {
    /// Parents per collection.
    pub parents: [u64; 3],
    /// Statuses per collection.
    pub statuses: [u64; 6],
}

impl RecordCounts {
    /// Every record.
    pub fn total(&self) -> u64 {
        self.parents.iter().chain(&self.statuses).sum()
    }
}
