//! The embedded backend: sled, one tree per collection.
//!
//! Trees: `parents/<collection>` (key: parent id), `statuses/<collection>/<segment>`
//! (key: see [`super::keys`]), `meta` (the storage format version) and
//! `cascades` (parent deletes whose statuses are still being removed).
//! Values are [`super::codec`] records: a parent, or a status body (the status
//! id is the tail of its key).

use super::cascade::{CascadeTrees, Cascader, INLINE_BATCHES};
use super::codec::encode_record;
use super::flusher::{Durability, FlushTarget, Flusher};
use super::space::SpaceGuard;
use super::{codec, durable_dir, keys, Store};
use crate::error::{Error, Result};
use crate::model::id::MAX_ID_LEN;
use crate::model::limits::MAX_RECORD_BYTES;
use crate::model::{Parent, ParentKind, Status, StatusKind};
use sled::transaction::{ConflictableTransactionError, TransactionError};
use sled::Transactional;
use std::collections::HashMap;
use std::ops::Bound;
use std::path::PathBuf;

/// Version of the storage layout (tree names, key and value formats). A data
/// directory written with another version is refused at open.
pub const STORAGE_FORMAT: u8 = 1;
const FORMAT_KEY: &[u8] = b"storage_format";

/// sled's segment size, which is also its I/O buffer size. sled writes a log
/// message larger than a quarter segment (less a header) to a file of its own
/// under `blobs/`; a message is at most one whole tree node. 8 MiB segments
/// put that threshold at ~2 MiB, above the largest leaf statusd can write
/// (checked below), so every record lives in the log that each flush fsyncs.
/// Part of the storage format: sled refuses to reopen a directory with
/// another segment size.
const SEGMENT_SIZE: usize = 8 << 20;
/// sled 0.34's blob threshold for [`SEGMENT_SIZE`] (`segment_size / 4 -
/// SEG_HEADER_LEN`, and the message header counts against it).
const BLOB_THRESHOLD: usize = SEGMENT_SIZE / 4 - 64;
/// Most entries a sled 0.34 leaf holds when it is written whole: it splits as
/// soon as a traversal finds more than 16, and a merge adds a sibling of
/// fewer than 4; the rest is margin.
const LEAF_MAX_ENTRIES: usize = 24;
/// Longest key: a status key (see [`keys`]) of two ids at their longest.
const MAX_KEY_BYTES: usize = 2 + 2 * MAX_ID_LEN;
/// Most entries of an index node (it splits above 256), the same margin.
const INDEX_MAX_ENTRIES: usize = 300;
const _: () = assert!(LEAF_MAX_ENTRIES * (MAX_KEY_BYTES + MAX_RECORD_BYTES + 64) < BLOB_THRESHOLD);
const _: () = assert!(INDEX_MAX_ENTRIES * (MAX_KEY_BYTES + 64) < BLOB_THRESHOLD);

/// Test hooks: faults injected to show how the store reacts. Never set in
/// production; `Default` is no fault.
#[derive(Debug, Clone, Default)]
pub struct FaultInjection {
    /// The group-commit flush with this (1-based) number fails as a failed
    /// fsync would.
    pub fail_flush: Option<u64>,
}

/// How to open the sled store.
#[derive(Debug, Clone)]
pub struct SledConfig {
    /// Data directory (created if missing).
    pub path: PathBuf,
    /// sled's page cache size, in bytes.
    pub cache_capacity: u64,
    /// When mutations are acknowledged.
    pub durability: Durability,
    /// Free bytes the data directory's disk must keep; writes are refused below.
    pub min_free_bytes: u64,
    /// Test hooks (none by default).
    pub faults: FaultInjection,
}

/// Stripes of the parent locks (see [`SledStore::create_status`]).
const PARENT_LOCK_STRIPES: usize = 64;

/// What [`SledStore::check_integrity`] found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct IntegrityReport {
    /// Parents stored.
    pub parents: u64,
    /// Statuses stored.
    pub statuses: u64,
    /// Statuses whose parent does not exist and is not being cascaded (must be 0).
    pub orphans: u64,
    /// Cascade deletes still recorded as pending (0 after a clean open).
    pub pending_cascades: usize,
}

/// The sled backend.
///
/// Atomicity of "insert a status only while its parent exists" against a
/// concurrent parent delete comes from striped in-process locks rather than
/// sled transactions: a status create holds its parent's stripe shared while
/// it checks the parent and inserts (compare-and-swap from empty, so a
/// duplicate id is detected atomically too); a parent delete holds it
/// exclusively while it removes the parent and records the cascade. sled
/// allows one process per directory, so in-process locks cover every writer,
/// and they cost a fraction of a two-tree transaction on the hot path.
pub struct SledStore {
    parent_locks: Vec<std::sync::RwLock<()>>,
    parents: HashMap<ParentKind, sled::Tree>,
    statuses: HashMap<StatusKind, sled::Tree>,
    cascades: sled::Tree,
    cascade_trees: CascadeTrees,
    cascader: Cascader,
    flusher: Flusher,
    space: SpaceGuard,
}

impl SledStore {
    /// Opens (or creates) the store, checks its format version and finishes
    /// any cascade delete a crash interrupted.
    pub fn open(config: &SledConfig) -> Result<Self> {
        let db = sled::Config::new()
            .path(&config.path)
            .cache_capacity(config.cache_capacity)
            .segment_size(SEGMENT_SIZE)
            .mode(sled::Mode::HighThroughput)
            .open()
            .map_err(|e| open_error(&config.path, e))?;
        check_format(&db)?;
        let mut parents = HashMap::new();
        let mut statuses = HashMap::new();
        for kind in ParentKind::ALL {
            parents.insert(kind, db.open_tree(format!("parents/{}", kind.collection()))?);
            for sk in kind.status_kinds() {
                statuses.insert(
                    sk,
                    db.open_tree(format!("statuses/{}/{}", kind.collection(), sk.segment()))?,
                );
            }
        }
        let cascades = db.open_tree("cascades")?;
        let target = FlushTarget::open(db.clone(), &config.path, config.faults.fail_flush)?;
        // What sled created must be durable, names included, before the
        // first write is acknowledged.
        target.flush()?;
        durable_dir::sync_tree(&config.path)?;
        let flusher = Flusher::start(target, config.durability)
            .map_err(|e| Error::Unavailable(format!("cannot start the flusher thread: {e}")))?;
        let cascade_trees = CascadeTrees {
            statuses: statuses.clone(),
            cascades: cascades.clone(),
        };
        let cascader = Cascader::start(cascade_trees.clone())?;
        Ok(SledStore {
            parent_locks: (0..PARENT_LOCK_STRIPES).map(|_| std::sync::RwLock::new(())).collect(),
            parents,
            statuses,
            cascades,
            cascade_trees,
            cascader,
            flusher,
            space: SpaceGuard::start(config.path.clone(), config.min_free_bytes)
                .map_err(|e| Error::Unavailable(format!("cannot start the free-space thread: {e}")))?,
        })
    }

    /// Blocks until every cascade delete queued so far has finished (tests
    /// and operators; requests never wait for cascades).
    pub fn wait_for_cascades(&self) {
        self.cascader.wait_idle();
    }

    /// Checks the whole store: every record decodes, and every status has its
    /// parent (no orphans). Reads everything; meant for tests and operators.
    pub fn check_integrity(&self) -> Result<IntegrityReport> {
        let mut report = IntegrityReport::default();
        for kind in ParentKind::ALL {
            for item in self.parents(kind).iter() {
                let (_, v) = item?;
                codec::decode::<Parent>(&v)?;
                report.parents += 1;
            }
            for sk in kind.status_kinds() {
                for item in self.statuses(sk).iter() {
                    let (k, v) = item?;
                    let status = decode_status(&k, &v)?;
                    let (parent_id, _) = keys::split_status_key(&k).ok_or_else(|| Error::Internal("bad key".into()))?;
                    report.statuses += 1;
                    if status.body.shape() != sk.shape {
                        return Err(Error::Internal(format!("a status of the wrong shape in {sk}")));
                    }
                    let cascading = self.cascades.contains_key(keys::cascade_key(kind.tag(), parent_id))?;
                    if !cascading && !self.parents(kind).contains_key(keys::parent_key(parent_id))? {
                        report.orphans += 1;
                    }
                }
            }
        }
        report.pending_cascades = self.cascades.len();
        Ok(report)
    }

    /// The lock stripe of a parent.
    fn parent_lock(&self, kind: ParentKind, id: &str) -> &std::sync::RwLock<()> {
        // FNV-1a: cheap, and the stripes only need to spread ids.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ u64::from(kind.tag());
        for b in id.bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        &self.parent_locks[(h % PARENT_LOCK_STRIPES as u64) as usize]
    }

    fn parents(&self, kind: ParentKind) -> &sled::Tree {
        &self.parents[&kind]
    }

    fn statuses(&self, kind: StatusKind) -> &sled::Tree {
        &self.statuses[&kind]
    }

    /// `Ok` while writes may be applied: the disk has its reserve and no
    /// flush has failed. Checked before a write changes anything.
    fn check_writable(&self) -> Result<()> {
        self.space.check()?;
        self.flusher.check_writable()
    }

    /// Runs a status write while parent `parent_id` exists, atomically with
    /// respect to a delete of that parent: its lock stripe is held shared
    /// through the check and `write`, as a parent delete holds it exclusive.
    /// `None` if the parent does not exist (a deleted parent's statuses may
    /// linger until its cascade ends; to every write they are gone).
    fn under_parent<T>(
        &self,
        kind: ParentKind,
        parent_id: &str,
        write: impl FnOnce() -> Result<T>,
    ) -> Result<Option<T>> {
        let _shared = self.parent_lock(kind, parent_id).read().map_err(|_| poisoned())?;
        if !self.parent_exists(kind, parent_id)? {
            return Ok(None);
        }
        write().map(Some)
    }

    /// Whether parent `parent_id` of `kind` exists (statuses of a deleted
    /// parent may linger until its cascade ends; they are never visible).
    fn parent_exists(&self, kind: ParentKind, parent_id: &str) -> Result<bool> {
        Ok(self.parents(kind).contains_key(keys::parent_key(parent_id))?)
    }
}

impl Drop for SledStore {
    fn drop(&mut self) {
        self.cascader.stop();
        self.flusher.stop();
        let stats = self.flusher.stats();
        let flushes = stats.flushes.load(std::sync::atomic::Ordering::Relaxed);
        let writers = stats.writers.load(std::sync::atomic::Ordering::Relaxed);
        tracing::info!(
            flushes,
            writers,
            per_flush = writers as f64 / flushes.max(1) as f64,
            "group commit"
        );
        if let Err(e) = self.flusher.flush_now() {
            tracing::error!(error = %e, "final flush failed");
        }
    }
}

/// sled's open errors, said in statusd's terms.
fn open_error(path: &std::path::Path, e: sled::Error) -> Error {
    match e {
        sled::Error::Unsupported(why) if why.contains("io buffer size") => Error::Unavailable(format!(
            "cannot open data directory {}: it was written with another storage layout (sled segment \
             size; this build uses {SEGMENT_SIZE} bytes). Run the statusd version that wrote it, or \
             point --data-dir elsewhere ({why})",
            path.display()
        )),
        other => Error::Unavailable(format!("cannot open data directory {}: {other}", path.display())),
    }
}

fn check_format(db: &sled::Db) -> Result<()> {
    match db.get(FORMAT_KEY)? {
        None => {
            let has_data = db.tree_names().len() > 1 || !db.is_empty();
            if has_data {
                return Err(Error::Internal(
                    "the data directory holds data without a statusd format marker; refusing to use it".into(),
                ));
            }
            db.insert(FORMAT_KEY, &[STORAGE_FORMAT])?;
            db.flush()?;
            Ok(())
        }
        Some(v) if v.as_ref() == [STORAGE_FORMAT] => Ok(()),
        Some(v) => Err(Error::Internal(format!(
            "the data directory uses storage format {v:?}; this build reads format {STORAGE_FORMAT} only. \
             Run the statusd version that wrote it, or point --data-dir elsewhere"
        ))),
    }
}

/// Inside a transaction on the device configurations' tree: every newly set
/// reference names a stored configuration.
fn check_references(
    parents: &sled::transaction::TransactionalTree,
    references: &[(&str, &str)],
) -> Result<(), ConflictableTransactionError<Error>> {
    for (field, target) in references {
        if parents.get(keys::parent_key(target))?.is_none() {
            return Err(ConflictableTransactionError::Abort(super::reference_missing(
                field, target,
            )));
        }
    }
    Ok(())
}

fn poisoned() -> Error {
    Error::Internal("a parent lock was poisoned by a panic".into())
}

/// Converts a transaction's result, keeping our own abort error.
fn tx_result<T>(r: Result<T, TransactionError<Error>>) -> Result<T> {
    match r {
        Ok(v) => Ok(v),
        Err(TransactionError::Abort(e)) => Err(e),
        Err(TransactionError::Storage(e)) => Err(e.into()),
    }
}

fn decode_status(key: &[u8], value: &[u8]) -> Result<Status> {
    let (_, id) = keys::split_status_key(key).ok_or_else(|| Error::Internal("malformed status key".into()))?;
    codec::decode_status(id, value)
}

#[async_trait::async_trait]
impl Store for SledStore {
    async fn create_parent(&self, kind: ParentKind, parent: &Parent) -> Result<()> {
        self.check_writable()?;
        let value = encode_record(parent)?;
        let references = parent.new_references(None);
        let cascade_key = keys::cascade_key(kind.tag(), &parent.id);
        let tree = self.parents(kind);
        let r = (tree, &self.cascades).transaction(|(parents, cascades)| {
            if cascades.get(&cascade_key)?.is_some() {
                return Err(ConflictableTransactionError::Abort(Error::Unavailable(format!(
                    "a delete of {kind} '{}' is still removing its statuses; retry shortly",
                    parent.id
                ))));
            }
            if parents.get(keys::parent_key(&parent.id))?.is_some() {
                return Err(ConflictableTransactionError::Abort(super::parent_exists(
                    kind, &parent.id,
                )));
            }
            check_references(parents, &references)?;
            parents.insert(keys::parent_key(&parent.id), value.as_slice())?;
            Ok(())
        });
        tx_result(r)?;
        self.flusher.commit().await
    }

    async fn get_parent(&self, kind: ParentKind, id: &str) -> Result<Option<Parent>> {
        self.parents(kind)
            .get(keys::parent_key(id))?
            .map(|v| codec::decode(&v))
            .transpose()
    }

    async fn replace_parent(&self, kind: ParentKind, expected: &Parent, new: &Parent) -> Result<bool> {
        self.check_writable()?;
        let old = codec::encode(expected)?;
        let value = encode_record(new)?;
        let key = keys::parent_key(&new.id);
        let references = new.new_references(Some(expected));
        let swapped = if references.is_empty() {
            self.parents(kind)
                .compare_and_swap(key, Some(old), Some(value))?
                .is_ok()
        } else {
            // A new reference: its target's existence and the swap are one
            // transaction, serialised with the target's delete.
            tx_result(self.parents(kind).transaction(|parents| {
                if parents.get(key)?.as_deref() != Some(old.as_slice()) {
                    return Ok(false);
                }
                check_references(parents, &references)?;
                parents.insert(key, value.as_slice())?;
                Ok(true)
            }))?
        };
        if swapped {
            self.flusher.commit().await?;
        }
        Ok(swapped)
    }

    async fn delete_parent(&self, kind: ParentKind, id: &str) -> Result<bool> {
        self.check_writable()?;
        let cascade_key = keys::cascade_key(kind.tag(), id);
        let tree = self.parents(kind);
        let removed = {
            let _exclusive = self.parent_lock(kind, id).write().map_err(|_| poisoned())?;
            tx_result((tree, &self.cascades).transaction(|(parents, cascades)| {
                if parents.remove(keys::parent_key(id))?.is_none() {
                    return Ok(false);
                }
                cascades.insert(cascade_key.as_slice(), &[])?;
                Ok(true)
            }))?
        };
        if !removed {
            return Ok(false);
        }
        // A small cascade ends here; a large one goes on in the background.
        // Either way the marker is recorded first, so a crash at any point
        // leaves it for the next open to finish.
        let stop = std::sync::atomic::AtomicBool::new(false);
        let done = self.cascade_trees.run(kind, id, &stop, INLINE_BATCHES)?;
        self.flusher.commit().await?;
        if !done {
            self.cascader.enqueue(kind, id.to_owned());
        }
        Ok(true)
    }

    async fn list_parents(&self, kind: ParentKind, after: Option<&str>, limit: usize) -> Result<Vec<Parent>> {
        let start = match after {
            Some(a) => Bound::Excluded(a.as_bytes().to_vec()),
            None => Bound::Unbounded,
        };
        self.parents(kind)
            .range::<Vec<u8>, _>((start, Bound::Unbounded))
            .values()
            .take(limit)
            .map(|v| codec::decode(&v?))
            .collect()
    }

    async fn create_status(&self, kind: StatusKind, parent_id: &str, status: &Status) -> Result<()> {
        self.check_writable()?;
        let key = keys::status_key(parent_id, &status.id);
        let value = encode_record(&status.body)?;
        let inserted = self.under_parent(kind.parent, parent_id, || {
            Ok(self
                .statuses(kind)
                .compare_and_swap(key, None::<&[u8]>, Some(value))?
                .is_ok())
        })?;
        match inserted {
            None => return Err(super::parent_missing(kind.parent, parent_id)),
            Some(false) => return Err(super::status_exists(kind, parent_id, &status.id)),
            Some(true) => {}
        }
        self.flusher.commit().await
    }

    async fn get_status(&self, kind: StatusKind, parent_id: &str, id: &str) -> Result<Option<Status>> {
        let key = keys::status_key(parent_id, id);
        match self.statuses(kind).get(&key)? {
            Some(v) if self.parent_exists(kind.parent, parent_id)? => decode_status(&key, &v).map(Some),
            _ => Ok(None),
        }
    }

    async fn replace_status(&self, kind: StatusKind, parent_id: &str, expected: &Status, new: &Status) -> Result<bool> {
        self.check_writable()?;
        let key = keys::status_key(parent_id, &new.id);
        let old = codec::encode(&expected.body)?;
        let value = encode_record(&new.body)?;
        let swapped = self
            .under_parent(kind.parent, parent_id, || {
                Ok(self
                    .statuses(kind)
                    .compare_and_swap(key, Some(old), Some(value))?
                    .is_ok())
            })?
            .unwrap_or(false);
        if swapped {
            self.flusher.commit().await?;
        }
        Ok(swapped)
    }

    async fn delete_status(&self, kind: StatusKind, parent_id: &str, id: &str) -> Result<bool> {
        self.check_writable()?;
        let removed = self
            .under_parent(kind.parent, parent_id, || {
                Ok(self.statuses(kind).remove(keys::status_key(parent_id, id))?.is_some())
            })?
            .unwrap_or(false);
        if removed {
            self.flusher.commit().await?;
        }
        Ok(removed)
    }

    async fn list_statuses(
        &self,
        kind: StatusKind,
        parent_id: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Status>> {
        let prefix = keys::status_prefix(parent_id);
        let start = match after {
            Some(a) => Bound::Excluded(keys::status_key(parent_id, a)),
            None => Bound::Included(prefix.clone()),
        };
        let mut out = Vec::with_capacity(limit.min(1024));
        for item in self.statuses(kind).range::<Vec<u8>, _>((start, Bound::Unbounded)) {
            if out.len() >= limit {
                break;
            }
            let (k, v) = item?;
            if !k.starts_with(&prefix) {
                break;
            }
            out.push(decode_status(&k, &v)?);
        }
        // A deleted parent's statuses may linger until its cascade ends; they
        // are never visible (checked after the read, as in `get_status`).
        if !out.is_empty() && !self.parent_exists(kind.parent, parent_id)? {
            out.clear();
        }
        Ok(out)
    }

    async fn flush(&self) -> Result<()> {
        self.flusher.flush_now()
    }
}
