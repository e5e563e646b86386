//! The embedded backend: sled, one tree per collection.
//!
//! Trees: `parents/<collection>` (key: parent id), `statuses/<collection>/<segment>`
//! (key: see [`super::keys`]), `meta` (the storage format version) and
//! `cascades` (parent deletes whose statuses are still being removed).
//! Values are [`super::codec`] records: a parent, or a status body (the status
//! id is the tail of its key).

use super::flusher::{Durability, Flusher};
use super::space::SpaceGuard;
use super::{codec, keys, Store};
use crate::error::{Error, Result};
use crate::model::{Parent, ParentKind, Status, StatusBody, StatusKind};
use sled::transaction::{ConflictableTransactionError, TransactionError};
use sled::Transactional;
use std::collections::HashMap;
use std::ops::Bound;
use std::path::PathBuf;

/// Version of the storage layout (tree names, key and value formats). A data
/// directory written with another version is refused at open.
pub const STORAGE_FORMAT: u8 = 1;
const FORMAT_KEY: &[u8] = b"storage_format";

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
    /// Statuses whose parent does not exist (must be 0).
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
    db: sled::Db,
    parent_locks: Vec<std::sync::RwLock<()>>,
    parents: HashMap<ParentKind, sled::Tree>,
    statuses: HashMap<StatusKind, sled::Tree>,
    cascades: sled::Tree,
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
            .mode(sled::Mode::HighThroughput)
            .open()
            .map_err(|e| Error::Unavailable(format!("cannot open data directory {}: {e}", config.path.display())))?;
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
        let log = std::fs::OpenOptions::new().read(true).open(config.path.join("db")).ok();
        let flusher = Flusher::start(db.clone(), log, config.durability)
            .map_err(|e| Error::Unavailable(format!("cannot start the flusher thread: {e}")))?;
        let store = SledStore {
            db,
            parent_locks: (0..PARENT_LOCK_STRIPES).map(|_| std::sync::RwLock::new(())).collect(),
            parents,
            statuses,
            cascades,
            flusher,
            space: SpaceGuard::start(config.path.clone(), config.min_free_bytes)
                .map_err(|e| Error::Unavailable(format!("cannot start the free-space thread: {e}")))?,
        };
        store.finish_pending_cascades()?;
        Ok(store)
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
                    if !self.parents(kind).contains_key(keys::parent_key(parent_id))? {
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

    /// Removes every status of `parent_id` under `kind`, then the cascade marker.
    fn cascade(&self, kind: ParentKind, parent_id: &str) -> Result<()> {
        let prefix = keys::status_prefix(parent_id);
        for sk in kind.status_kinds() {
            let tree = self.statuses(sk);
            loop {
                let mut batch = sled::Batch::default();
                let mut n = 0;
                for key in tree.scan_prefix(&prefix).keys().take(1000) {
                    batch.remove(key?);
                    n += 1;
                }
                if n == 0 {
                    break;
                }
                tree.apply_batch(batch)?;
            }
        }
        self.cascades.remove(keys::cascade_key(kind.tag(), parent_id))?;
        Ok(())
    }

    fn finish_pending_cascades(&self) -> Result<()> {
        let pending: Vec<sled::IVec> = self.cascades.iter().keys().collect::<Result<_, _>>()?;
        for key in pending {
            let kind = key.first().copied().and_then(ParentKind::from_tag);
            let id = std::str::from_utf8(&key[1.min(key.len())..]).ok();
            match (kind, id) {
                (Some(kind), Some(id)) => {
                    tracing::info!(%kind, parent_id = id, "finishing a cascade delete interrupted by a crash");
                    self.cascade(kind, id)?;
                }
                _ => return Err(Error::Internal(format!("malformed cascade marker {key:?}"))),
            }
        }
        self.db.flush()?;
        Ok(())
    }
}

impl Drop for SledStore {
    fn drop(&mut self) {
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
        if let Err(e) = self.db.flush() {
            tracing::error!(error = %e, "final flush failed");
        }
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
    Ok(Status {
        id: id.to_owned(),
        body: codec::decode::<StatusBody>(value)?,
    })
}

#[async_trait::async_trait]
impl Store for SledStore {
    async fn create_parent(&self, kind: ParentKind, parent: &Parent) -> Result<()> {
        self.space.check()?;
        let value = codec::encode(parent)?;
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
                return Err(ConflictableTransactionError::Abort(Error::AlreadyExists(format!(
                    "a {kind} with id '{}' already exists",
                    parent.id
                ))));
            }
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
        self.space.check()?;
        let old = codec::encode(expected)?;
        let value = codec::encode(new)?;
        let swapped = self
            .parents(kind)
            .compare_and_swap(keys::parent_key(&new.id), Some(old), Some(value))?
            .is_ok();
        if swapped {
            self.flusher.commit().await?;
        }
        Ok(swapped)
    }

    async fn delete_parent(&self, kind: ParentKind, id: &str) -> Result<bool> {
        self.space.check()?;
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
        if removed {
            self.cascade(kind, id)?;
            self.flusher.commit().await?;
        }
        Ok(removed)
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
        self.space.check()?;
        let key = keys::status_key(parent_id, &status.id);
        let value = codec::encode(&status.body)?;
        {
            let _shared = self
                .parent_lock(kind.parent, parent_id)
                .read()
                .map_err(|_| poisoned())?;
            if !self.parents(kind.parent).contains_key(keys::parent_key(parent_id))? {
                return Err(Error::NotFound(format!("{} '{parent_id}' does not exist", kind.parent)));
            }
            let inserted = self.statuses(kind).compare_and_swap(key, None::<&[u8]>, Some(value))?;
            if inserted.is_err() {
                return Err(Error::AlreadyExists(format!(
                    "a {kind} with id '{}' already exists under {} '{parent_id}'",
                    status.id, kind.parent
                )));
            }
        }
        self.flusher.commit().await
    }

    async fn get_status(&self, kind: StatusKind, parent_id: &str, id: &str) -> Result<Option<Status>> {
        let key = keys::status_key(parent_id, id);
        self.statuses(kind)
            .get(&key)?
            .map(|v| decode_status(&key, &v))
            .transpose()
    }

    async fn replace_status(&self, kind: StatusKind, parent_id: &str, expected: &Status, new: &Status) -> Result<bool> {
        self.space.check()?;
        let key = keys::status_key(parent_id, &new.id);
        let old = codec::encode(&expected.body)?;
        let value = codec::encode(&new.body)?;
        let swapped = self
            .statuses(kind)
            .compare_and_swap(key, Some(old), Some(value))?
            .is_ok();
        if swapped {
            self.flusher.commit().await?;
        }
        Ok(swapped)
    }

    async fn delete_status(&self, kind: StatusKind, parent_id: &str, id: &str) -> Result<bool> {
        self.space.check()?;
        let removed = self.statuses(kind).remove(keys::status_key(parent_id, id))?.is_some();
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
        Ok(out)
    }

    async fn flush(&self) -> Result<()> {
        self.db.flush()?;
        Ok(())
    }
}
