//! The embedded backend: sled, one tree per collection.
//!
//! Trees: `parents/<collection>` (key: parent id), `statuses/<collection>/<segment>`
//! (key: see [`super::keys`]), `cascades` (parent deletes whose statuses are
//! still being removed), and sled's default tree (the storage format version,
//! and the last revision a checkpoint covers). Values are [`super::codec`]
//! records: a parent, or a status body (the status id is the tail of its key).
//! Every change reaches the trees through the write-ahead log in `wal/` (see
//! [`SledStore`]).

use super::cascade::{self, CascadeTrees, Cascader, INLINE_BATCHES};
use super::codec::encode_record;
use super::sled_flush::FlushTarget;
use super::snapshot::{self, Capture, Snapshot};
use super::space::SpaceGuard;
use super::wal::{self, Action, Commit, Durability, Merge, Op, Wal};
// A tree's log number is the number events name its collection by.
use super::watch::{
    parent_number as parent_tree, status_number as status_tree, EventStream, Feed, Filter, Logged, SledHistory,
};
use super::{codec, durable_dir, keys, RecordCounts, Store};
use crate::error::{Error, Result};
use crate::model::id::MAX_ID_LEN;
use crate::model::limits::MAX_RECORD_BYTES;
use crate::model::{Change, Parent, ParentKind, Status, StatusKind, Tally, TallyChange};
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
    /// The group commit with this (1-based) number fails as a failed fsync
    /// would.
    pub fail_flush: Option<u64>,
    /// Every fsync of the write-ahead log takes at least this long (to hold
    /// a change between its check and its durability).
    pub slow_sync: Option<std::time::Duration>,
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
    /// Revisions of history kept for Watch (0: none; watches start from now).
    pub watch_history: u64,
    /// Test hooks (none by default).
    pub faults: FaultInjection,
}

/// Stripes of the parent locks and of the status-key locks (see [`SledStore`]).
const PARENT_LOCK_STRIPES: usize = 1024;
const KEY_LOCK_STRIPES: usize = 4096;

/// Key of the last revision a checkpoint covers, in sled's default tree.
const REVISION_KEY: &[u8] = b"wal_revision";

/// The numbers the write-ahead log names trees by (part of the storage
/// format): the cascade markers, each parent tree by its kind's tag, each
/// status tree by its parent's tag times 16 plus its shape.
const CASCADES_TREE: u8 = 0;
/// Watch's history of changes, by revision.
const HISTORY_TREE: u8 = 255;

/// Every tree, by its log number, and the lock that makes one record's
/// changes visible to tally readers together.
#[derive(Clone)]
struct Trees(
    std::sync::Arc<HashMap<u8, sled::Tree>>,
    std::sync::Arc<std::sync::RwLock<()>>,
);

impl Trees {
    /// A tree the store itself names (every number it uses is opened).
    fn tree(&self, id: u8) -> &sled::Tree {
        &self.0[&id]
    }

    /// A tree a log record names (an unknown number is corruption).
    fn get(&self, id: u8) -> Result<&sled::Tree> {
        self.0
            .get(&id)
            .ok_or_else(|| Error::Internal(format!("the write-ahead log names tree {id}, which does not exist")))
    }

    /// Applies one logged record (after its fsync, and at replay), one
    /// operation at a time, holding the apply lock exclusively: a tally read
    /// (which holds it shared) sees a status and its parent's new tally
    /// together or neither. Not a sled batch: `apply_batch` halves the log
    /// thread's rate (measured: records applied as one batch created at
    /// 0.17–0.19 of the no-op at c64, as single inserts at 0.31–0.38).
    fn apply(&self, ops: &[Op]) -> Result<()> {
        let _visible = self
            .1
            .write()
            .map_err(|_| Error::Internal("the apply lock is poisoned".into()))?;
        for op in ops {
            let tree = self.get(op.tree)?;
            match &op.action {
                Action::Put(value) => drop(tree.insert(op.key.as_slice(), value.as_slice())?),
                Action::Remove => drop(tree.remove(op.key.as_slice())?),
                Action::RemovePrefix => {
                    let mut batch = sled::Batch::default();
                    for key in tree.scan_prefix(&op.key).keys() {
                        batch.remove(key?);
                    }
                    tree.apply_batch(batch)?;
                }
            }
        }
        Ok(())
    }

    /// Runs a read that must not see half a record's changes (a tally read).
    fn whole<T>(&self, read: impl FnOnce() -> Result<T>) -> Result<T> {
        let _visible = self
            .1
            .read()
            .map_err(|_| Error::Internal("the apply lock is poisoned".into()))?;
        read()
    }

    /// A key's current value (to resolve a merge).
    fn read(&self, tree: u8, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.get(tree)?.get(key)?.map(|v| v.to_vec()))
    }
}

/// Resolves a tally merge: the stored tally (or an empty one) with the
/// operand's change applied at `revision`.
fn merge_tally(merge: &Merge, current: Option<&[u8]>, revision: u64) -> Result<Vec<u8>> {
    let mut tally: Tally = current.map(codec::decode).transpose()?.unwrap_or_default();
    let change: TallyChange = codec::decode(&merge.operand)?;
    tally.apply(&change, revision);
    codec::encode(&tally)
}

/// The merge that counts a status write in its parent's tally (kept in the
/// status tree at the parent's bare prefix, a key no status has: status ids
/// are never empty).
fn count(kind: StatusKind, parent_id: &str, removed: Option<&Status>, added: Option<&Status>) -> Result<Merge> {
    let change = TallyChange {
        removed: removed.map(|s| s.body.status()),
        added: added.map(|s| s.body.status()),
        at: crate::model::DateTime::now(),
    };
    Ok(Merge {
        tree: status_tree(kind),
        key: keys::status_prefix(parent_id),
        operand: codec::encode(&change)?,
    })
}

/// The record that ends a parent's cascade: every status left under it (none
/// at run time; those an older logged create brings back at replay) and its
/// marker.
fn cascade_done(kind: ParentKind, parent_id: &str) -> Vec<Op> {
    let prefix = keys::status_prefix(parent_id);
    let mut ops: Vec<Op> = kind
        .status_kinds()
        .into_iter()
        .map(|sk| Op {
            tree: status_tree(sk),
            key: prefix.clone(),
            action: Action::RemovePrefix,
        })
        .collect();
    ops.push(remove(CASCADES_TREE, keys::cascade_key(kind.tag(), parent_id)));
    ops
}

fn put(tree: u8, key: impl Into<Vec<u8>>, value: Vec<u8>) -> Op {
    Op {
        tree,
        key: key.into(),
        action: Action::Put(value),
    }
}

fn remove(tree: u8, key: impl Into<Vec<u8>>) -> Op {
    Op {
        tree,
        key: key.into(),
        action: Action::Remove,
    }
}

/// A parent lock stripe held shared or exclusive.
enum Held<'a> {
    Shared {
        _guard: tokio::sync::RwLockReadGuard<'a, ()>,
    },
    Exclusive {
        _guard: tokio::sync::RwLockWriteGuard<'a, ()>,
    },
}

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
    /// Parents whose tally of a status collection differs from a count of
    /// its statuses (must be 0).
    pub tally_mismatches: u64,
}

/// The sled backend.
///
/// Every change goes through the write-ahead log ([`super::wal`]): a writer
/// takes its locks, checks its change against sled, logs it, and keeps the
/// locks until the log has made it durable and applied it to sled. Readers
/// read sled without locks, so they see a change only once it is durable;
/// a writer of the same key waits for the one before it, so it checks
/// against the latest durable state.
///
/// The locks are striped and in-process (sled allows one process per
/// directory): a parent stripe, shared by status writes under the parent
/// and by writes that reference it, exclusive for writes of the parent
/// itself; then a status-key stripe. Parent stripes are taken in index
/// order before any key stripe, so no two writers wait for each other.
pub struct SledStore {
    parent_locks: Box<[tokio::sync::RwLock<()>]>,
    key_locks: Box<[tokio::sync::Mutex<()>]>,
    trees: Trees,
    cascade_trees: CascadeTrees,
    cascader: Cascader,
    wal: std::sync::Arc<Wal>,
    feed: std::sync::Arc<Feed>,
    capture: std::sync::Arc<Capture>,
    space: SpaceGuard,
}

impl SledStore {
    /// Opens (or creates) the store, checks its format version, replays the
    /// write-ahead log and finishes any cascade delete a crash interrupted.
    pub fn open(config: &SledConfig) -> Result<Self> {
        let opening = std::time::Instant::now();
        let db = sled::Config::new()
            .path(&config.path)
            .cache_capacity(config.cache_capacity)
            .segment_size(SEGMENT_SIZE)
            .mode(sled::Mode::HighThroughput)
            .open()
            .map_err(|e| open_error(&config.path, e))?;
        check_format(&db)?;
        let mut trees = HashMap::new();
        trees.insert(CASCADES_TREE, db.open_tree("cascades")?);
        trees.insert(HISTORY_TREE, db.open_tree("history")?);
        for kind in ParentKind::ALL {
            trees.insert(
                parent_tree(kind),
                db.open_tree(format!("parents/{}", kind.collection()))?,
            );
            for sk in kind.status_kinds() {
                let name = format!("statuses/{}/{}", kind.collection(), sk.segment());
                trees.insert(status_tree(sk), db.open_tree(name)?);
            }
        }
        let trees = Trees(std::sync::Arc::new(trees), std::sync::Arc::default());
        let target = std::sync::Arc::new(FlushTarget::open(db.clone(), &config.path)?);
        // Replay what the log holds (a crash, or a failed write, left it),
        // then make sled hold it and start the log empty.
        let wal_dir = config.path.join("wal");
        let started = std::time::Instant::now();
        let replayed = wal::replay(&wal_dir, &|_, ops| trees.apply(ops))?;
        let checkpointed = match db.get(REVISION_KEY)? {
            Some(v) => u64::from_be_bytes(
                v.as_ref()
                    .try_into()
                    .map_err(|_| Error::Internal("a malformed checkpoint revision".into()))?,
            ),
            None => 0,
        };
        let last_revision = checkpointed.max(replayed.last_revision);
        let history = std::sync::Arc::new(SledHistory::open(
            trees.tree(HISTORY_TREE).clone(),
            (*db).clone(),
            config.watch_history,
            last_revision,
        )?);
        let feed = std::sync::Arc::new(Feed::new(history.clone(), config.watch_history));
        let checkpoint: wal::Checkpoint = {
            let (db, target) = (db.clone(), target.clone());
            std::sync::Arc::new(move |revision: u64| {
                db.insert(REVISION_KEY, &revision.to_be_bytes())?;
                history.compact(revision)?;
                target.flush()
            })
        };
        checkpoint(last_revision)?;
        wal::remove_all(&wal_dir)?;
        if replayed.records > 0 {
            tracing::info!(
                records = replayed.records,
                last_revision,
                seconds = started.elapsed().as_secs_f64(),
                "replayed the write-ahead log"
            );
        }
        // What sled created must be durable, names included, before the
        // first write is acknowledged.
        let syncing = std::time::Instant::now();
        durable_dir::sync_tree(&config.path)?;
        tracing::debug!(
            recovery_and_replay_seconds = (syncing - opening).as_secs_f64(),
            replay_and_checkpoint_seconds = (syncing - started).as_secs_f64(),
            sync_seconds = syncing.elapsed().as_secs_f64(),
            "opened the sled store"
        );
        let capture = std::sync::Arc::new(Capture::new(last_revision));
        let wal = std::sync::Arc::new(Wal::start(
            wal::Options {
                dir: wal_dir,
                durability: config.durability,
                fail_at: config.faults.fail_flush,
                slow_sync: config.faults.slow_sync,
                apply: {
                    let (trees, capture) = (trees.clone(), capture.clone());
                    std::sync::Arc::new(move |revision, ops: &[Op]| {
                        capture.apply(revision, ops, |n| trees.0.get(&n).cloned(), || trees.apply(ops))
                    })
                },
                checkpoint,
                read: {
                    let trees = trees.clone();
                    std::sync::Arc::new(move |tree, key: &[u8]| trees.read(tree, key))
                },
                merge: std::sync::Arc::new(merge_tally),
                history_tree: (config.watch_history > 0).then_some(HISTORY_TREE),
                publish: {
                    let feed = feed.clone();
                    std::sync::Arc::new(move |revision, event: &[u8]| feed.publish(revision, event))
                },
            },
            last_revision + 1,
        )?);
        let cascade_trees = CascadeTrees {
            statuses: StatusKind::ALL
                .iter()
                .map(|&sk| (sk, trees.tree(status_tree(sk)).clone()))
                .collect(),
            cascades: trees.tree(CASCADES_TREE).clone(),
            capture: capture.clone(),
        };
        let finish: cascade::Finish = {
            let wal = wal.clone();
            Box::new(move |kind, id| wal.commit_blocking(cascade_done(kind, id)).map(drop))
        };
        let cascader = Cascader::start(cascade_trees.clone(), finish)?;
        Ok(SledStore {
            parent_locks: (0..PARENT_LOCK_STRIPES).map(|_| tokio::sync::RwLock::new(())).collect(),
            key_locks: (0..KEY_LOCK_STRIPES).map(|_| tokio::sync::Mutex::new(())).collect(),
            trees,
            cascade_trees,
            cascader,
            wal,
            feed,
            capture,
            space: SpaceGuard::start(config.path.clone(), config.min_free_bytes)
                .map_err(|e| Error::Unavailable(format!("cannot start the free-space thread: {e}")))?,
        })
    }

    /// Blocks until every cascade delete queued so far has finished (tests
    /// and operators; requests never wait for cascades).
    pub fn wait_for_cascades(&self) {
        self.cascader.wait_idle();
    }

    /// The last revision committed (durable and visible).
    pub fn revision(&self) -> u64 {
        self.wal.revision()
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
                // Per parent: its stored tally, and a count of its statuses.
                let mut tallies: HashMap<String, (Tally, Tally)> = HashMap::new();
                for item in self.statuses(sk).iter() {
                    let (k, v) = item?;
                    let (parent_id, status_id) =
                        keys::split_status_key(&k).ok_or_else(|| Error::Internal("bad key".into()))?;
                    let (stored, counted) = tallies.entry(parent_id.to_owned()).or_default();
                    if status_id.is_empty() {
                        *stored = codec::decode(&v)?;
                        continue;
                    }
                    let status = decode_status(&k, &v)?;
                    counted.counts[status.body.status() as usize] += 1;
                    report.statuses += 1;
                    if status.body.shape() != sk.shape {
                        return Err(Error::Internal(format!("a status of the wrong shape in {sk}")));
                    }
                    let cascading = self.cascades().contains_key(keys::cascade_key(kind.tag(), parent_id))?;
                    if !cascading && !self.parents(kind).contains_key(keys::parent_key(parent_id))? {
                        report.orphans += 1;
                    }
                }
                report.tally_mismatches += tallies.values().filter(|(s, c)| s.counts != c.counts).count() as u64;
            }
        }
        report.pending_cascades = self.cascades().len();
        Ok(report)
    }

    /// Takes the parent stripes of `exclusive` and `shared` parents, in
    /// stripe order (one stripe wanted both ways is taken exclusive).
    async fn lock_parents(&self, exclusive: &[(ParentKind, &str)], shared: &[(ParentKind, &str)]) -> Vec<Held<'_>> {
        let mut wanted: Vec<(usize, bool)> = exclusive
            .iter()
            .map(|(k, id)| (parent_stripe(*k, id), true))
            .chain(shared.iter().map(|(k, id)| (parent_stripe(*k, id), false)))
            .collect();
        wanted.sort_unstable();
        wanted.dedup_by(|later, kept| {
            let same = later.0 == kept.0;
            if same {
                kept.1 |= later.1;
            }
            same
        });
        let mut held = Vec::with_capacity(wanted.len());
        for (stripe, exclusive) in wanted {
            let lock = &self.parent_locks[stripe];
            held.push(if exclusive {
                Held::Exclusive {
                    _guard: lock.write().await,
                }
            } else {
                Held::Shared {
                    _guard: lock.read().await,
                }
            });
        }
        held
    }

    /// Takes the stripe of the parent a status write is under, shared (the
    /// common case of [`SledStore::lock_parents`], without its vectors).
    async fn lock_parent_shared(&self, kind: ParentKind, id: &str) -> tokio::sync::RwLockReadGuard<'_, ()> {
        self.parent_locks[parent_stripe(kind, id)].read().await
    }

    /// Takes the key stripe of a status (after its parent's stripe).
    async fn lock_key(&self, kind: StatusKind, key: &[u8]) -> tokio::sync::MutexGuard<'_, ()> {
        let h = fnv(status_tree(kind), key);
        self.key_locks[(h % KEY_LOCK_STRIPES as u64) as usize].lock().await
    }

    fn parents(&self, kind: ParentKind) -> &sled::Tree {
        self.trees.tree(parent_tree(kind))
    }

    fn statuses(&self, kind: StatusKind) -> &sled::Tree {
        self.trees.tree(status_tree(kind))
    }

    fn cascades(&self) -> &sled::Tree {
        self.trees.tree(CASCADES_TREE)
    }

    /// `Ok` while writes may be made: the disk has its reserve and no write
    /// has failed. Checked before a write changes anything.
    fn check_writable(&self) -> Result<()> {
        self.space.check()?;
        self.wal.check_writable()
    }

    /// Whether parent `parent_id` of `kind` exists (statuses of a deleted
    /// parent may linger until its cascade ends; they are never visible).
    fn parent_exists(&self, kind: ParentKind, parent_id: &str) -> Result<bool> {
        Ok(self.parents(kind).contains_key(keys::parent_key(parent_id))?)
    }

    /// Every newly set reference names a stored device configuration (the
    /// caller holds the targets' stripes shared).
    fn check_references(&self, references: &[(&str, &str)]) -> Result<()> {
        for (field, target) in references {
            if !self.parent_exists(ParentKind::DeviceConfiguration, target)? {
                return Err(super::reference_missing(field, target));
            }
        }
        Ok(())
    }
}

/// FNV-1a: cheap, and the stripes only need to spread keys.
fn fnv(seed: u8, bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ u64::from(seed);
    for b in bytes {
        h = (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The lock stripe of a parent.
fn parent_stripe(kind: ParentKind, id: &str) -> usize {
    (fnv(kind.tag(), id.as_bytes()) % PARENT_LOCK_STRIPES as u64) as usize
}

/// The references `parent` sets anew, as parents to hold shared.
fn reference_targets<'a>(references: &[(&str, &'a str)]) -> Vec<(ParentKind, &'a str)> {
    references
        .iter()
        .map(|(_, target)| (ParentKind::DeviceConfiguration, *target))
        .collect()
}

impl Drop for SledStore {
    fn drop(&mut self) {
        self.cascader.stop();
        let (groups, writes) = self.wal.stats();
        tracing::info!(
            groups,
            writes,
            per_group = writes as f64 / groups.max(1) as f64,
            "group commit"
        );
        self.wal.close();
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
        let _held = self
            .lock_parents(&[(kind, &parent.id)], &reference_targets(&references))
            .await;
        if self
            .cascades()
            .contains_key(keys::cascade_key(kind.tag(), &parent.id))?
        {
            return Err(Error::Unavailable(format!(
                "a delete of {kind} '{}' is still removing its statuses; retry shortly",
                parent.id
            )));
        }
        if self.parent_exists(kind, &parent.id)? {
            return Err(super::parent_exists(kind, &parent.id));
        }
        self.check_references(&references)?;
        self.wal
            .commit(vec![put(parent_tree(kind), keys::parent_key(&parent.id), value)])
            .await
            .map(drop)
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
        let references = new.new_references(Some(expected));
        let _held = self
            .lock_parents(&[(kind, &new.id)], &reference_targets(&references))
            .await;
        if self.parents(kind).get(keys::parent_key(&new.id))?.as_deref() != Some(old.as_slice()) {
            return Ok(false);
        }
        self.check_references(&references)?;
        self.wal
            .commit(vec![put(parent_tree(kind), keys::parent_key(&new.id), value)])
            .await?;
        Ok(true)
    }

    async fn delete_parent(&self, kind: ParentKind, id: &str) -> Result<bool> {
        self.check_writable()?;
        let _held = self.lock_parents(&[(kind, id)], &[]).await;
        if !self.parent_exists(kind, id)? {
            return Ok(false);
        }
        // The parent goes and its marker comes in one record: from then on
        // its statuses are invisible, and a crash leaves the marker for the
        // next open to finish the cascade.
        self.wal
            .commit_record(Commit {
                ops: vec![
                    remove(parent_tree(kind), keys::parent_key(id)),
                    put(CASCADES_TREE, keys::cascade_key(kind.tag(), id), Vec::new()),
                ],
                merges: Vec::new(),
                event: Some(Logged::parent_deleted(kind, id).encode()?),
            })
            .await?;
        // A small cascade ends here, with the parent's stripe still held (so
        // its id is free again when the delete answers); a large one goes on
        // in the background.
        let stop = std::sync::atomic::AtomicBool::new(false);
        if self.cascade_trees.run(kind, id, &stop, INLINE_BATCHES)? {
            self.wal.commit(cascade_done(kind, id)).await?;
        } else {
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
        let _parent = self.lock_parent_shared(kind.parent, parent_id).await;
        let _key = self.lock_key(kind, &key).await;
        if !self.parent_exists(kind.parent, parent_id)? {
            return Err(super::parent_missing(kind.parent, parent_id));
        }
        if self.statuses(kind).contains_key(&key)? {
            return Err(super::status_exists(kind, parent_id, &status.id));
        }
        let tally = count(kind, parent_id, None, Some(status))?;
        self.wal
            .commit_record(Commit {
                ops: vec![put(status_tree(kind), key, value)],
                merges: vec![tally],
                event: Some(Logged::status(kind, parent_id, Change::Created(status.clone())).encode()?),
            })
            .await
            .map(drop)
    }

    async fn get_status(&self, kind: StatusKind, parent_id: &str, id: &str) -> Result<Option<Status>> {
        if id.is_empty() {
            // The bare prefix holds the parent's tally, not a status.
            return Ok(None);
        }
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
        let _parent = self.lock_parent_shared(kind.parent, parent_id).await;
        let _key = self.lock_key(kind, &key).await;
        if !self.parent_exists(kind.parent, parent_id)?
            || self.statuses(kind).get(&key)?.as_deref() != Some(old.as_slice())
        {
            return Ok(false);
        }
        let tally = count(kind, parent_id, Some(expected), Some(new))?;
        self.wal
            .commit_record(Commit {
                ops: vec![put(status_tree(kind), key, value)],
                merges: vec![tally],
                event: Some(Logged::status(kind, parent_id, Change::Updated(new.clone())).encode()?),
            })
            .await?;
        Ok(true)
    }

    async fn delete_status(&self, kind: StatusKind, parent_id: &str, id: &str) -> Result<bool> {
        self.check_writable()?;
        let key = keys::status_key(parent_id, id);
        let _parent = self.lock_parent_shared(kind.parent, parent_id).await;
        let _key = self.lock_key(kind, &key).await;
        if id.is_empty() || !self.parent_exists(kind.parent, parent_id)? {
            return Ok(false);
        }
        let Some(old) = self.statuses(kind).get(&key)? else {
            return Ok(false);
        };
        let tally = count(kind, parent_id, Some(&decode_status(&key, &old)?), None)?;
        self.wal
            .commit_record(Commit {
                ops: vec![remove(status_tree(kind), key)],
                merges: vec![tally],
                event: Some(Logged::status(kind, parent_id, Change::Deleted(id.to_owned())).encode()?),
            })
            .await?;
        Ok(true)
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
            // The bare prefix is the parent's tally.
            None => Bound::Excluded(prefix.clone()),
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

    async fn get_tally(&self, kind: StatusKind, parent_id: &str) -> Result<Option<Tally>> {
        let tree = self.statuses(kind);
        let tally = self.trees.whole(|| Ok(tree.get(keys::status_prefix(parent_id))?))?;
        // As in `get_status`: checked after the read.
        if !self.parent_exists(kind.parent, parent_id)? {
            return Ok(None);
        }
        Ok(Some(tally.map(|v| codec::decode(&v)).transpose()?.unwrap_or_default()))
    }

    async fn watch(
        &self,
        kind: StatusKind,
        parent_id: &str,
        start_revision: u64,
        stop: tokio::sync::watch::Receiver<bool>,
    ) -> Result<EventStream> {
        // In this order (see `watch`): subscribe, then read where we are.
        let subscribed = self.feed.subscribe();
        let now = self.wal.revision();
        let exists = self.parent_exists(kind.parent, parent_id)?;
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
        self.wal.sync().await
    }

    async fn snapshot(&self) -> Result<Snapshot> {
        let tree = |n: u8| (n, self.trees.tree(n).clone());
        snapshot::sled_snapshot(
            self.capture.clone(),
            snapshot::SledTrees {
                parents: ParentKind::ALL
                    .into_iter()
                    .map(|k| {
                        let (n, t) = tree(parent_tree(k));
                        (k, n, t)
                    })
                    .collect(),
                statuses: StatusKind::ALL
                    .into_iter()
                    .map(|k| {
                        let (n, t) = tree(status_tree(k));
                        (k, n, t)
                    })
                    .collect(),
            },
        )
    }

    async fn count_records(&self) -> Result<RecordCounts> {
        let mut counts = RecordCounts::default();
        // One pass over each parent collection: every parent, and its two
        // tallies (the bare prefix keys of its status trees): O(parents).
        for (i, kind) in ParentKind::ALL.into_iter().enumerate() {
            let tallies = kind.status_kinds().map(|sk| (sk.index(), self.statuses(sk)));
            for parent in self.parents(kind).iter().keys() {
                let parent = parent?;
                counts.parents[i] += 1;
                let id =
                    std::str::from_utf8(&parent).map_err(|_| Error::Internal("a parent key is not UTF-8".into()))?;
                let prefix = keys::status_prefix(id);
                for (slot, tree) in &tallies {
                    if let Some(v) = tree.get(&prefix)? {
                        counts.statuses[*slot] += codec::decode::<Tally>(&v)?.counts.iter().sum::<u64>();
                    }
                }
            }
        }
        Ok(counts)
    }
}
