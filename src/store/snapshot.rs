//! Consistent snapshots of a whole store: what `statusd backup` streams.
//!
//! A [`Snapshot`] is every parent and status as of one moment, read while
//! writes go on: everything acknowledged before [`Store::snapshot`]
//! returned is in it, nothing committed after is. Items come in a fixed
//! order, so a restore can write them as they come: every parent (by
//! [`ParentKind::ALL`], each collection in id order), then the statuses (by
//! [`StatusKind::ALL`], each collection in (parent id, status id) order), and
//! only statuses whose parent is in the snapshot.
//!
//! PostgreSQL reads one `REPEATABLE READ` transaction. sled has no read
//! snapshots, so the sled store keeps one itself ([`Capture`]): while a
//! snapshot is open, the write-ahead log's apply step saves the value every
//! key had before its first change since the snapshot began (its
//! *pre-image*), unless the snapshot's scan has already passed that key;
//! the scan reads sled page by page and prefers a saved pre-image to what it
//! read. Memory is bounded by the keys changed ahead of the scan. Cascade
//! deletes remove statuses from sled directly, outside the log, so they wait
//! while a snapshot is open ([`Capture::gate`]); their parents are gone
//! already, so nothing visible changes.
//!
//! [`Store::snapshot`]: super::Store::snapshot

use super::keys;
use crate::error::{Error, Result};
use crate::model::{Parent, ParentKind, Status, StatusKind};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::Bound;
use std::sync::{Arc, Mutex, RwLock};
use tokio::sync::mpsc;

/// Items per chunk a snapshot hands over.
pub const CHUNK: usize = 1000;

/// One record of a snapshot.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    /// A parent of a collection.
    Parent(ParentKind, Parent),
    /// A status: its collection, its parent's id, the status.
    Status(StatusKind, String, Status),
}

/// A snapshot being read (see the module docs).
pub struct Snapshot {
    /// The store revision it reflects: the last change in it (0 where the
    /// backend does not know it).
    pub revision: u64,
    /// The items, a chunk at a time; an error ends it. Dropping the receiver
    /// stops the reading and releases what the snapshot holds.
    pub chunks: mpsc::Receiver<Result<Vec<Item>>>,
}

/// A key's value before the snapshot's first change to it (`None`: absent).
type PreImage = Option<sled::IVec>;

/// How far the scan of one tree has gone.
#[derive(Debug, Clone, Default)]
enum Scanned {
    /// Not started: every change is captured.
    #[default]
    Nothing,
    /// Keys up to and including this one are read.
    Through(Vec<u8>),
    /// The whole tree is read.
    All,
}

impl Scanned {
    fn covers(&self, key: &[u8]) -> bool {
        match self {
            Scanned::Nothing => false,
            Scanned::Through(last) => key <= last.as_slice(),
            Scanned::All => true,
        }
    }
}

/// One tree's capture: how far its scan is, and the pre-images ahead of it.
#[derive(Debug, Default)]
struct TreeCapture {
    scanned: Scanned,
    pre_images: BTreeMap<Vec<u8>, PreImage>,
}

/// The sled store's open snapshot, shared by the log's apply step and the
/// scan (see the module docs).
pub struct Capture {
    /// Taken by the apply step around every record.
    state: Mutex<State>,
    /// Raised while a snapshot is open: cascade deletes hold it shared
    /// around each batch and do nothing while it is raised.
    pub gate: RwLock<bool>,
}

/// What [`Capture`]'s lock guards.
struct State {
    /// The trees being captured, by log number; `None` when no snapshot is
    /// open.
    trees: Option<HashMap<u8, TreeCapture>>,
    /// The revision of the last record applied (under the same lock, so a
    /// snapshot's start revision is exact).
    last_applied: u64,
}

impl Capture {
    /// The capture of a store whose last applied record is `revision`.
    pub fn new(revision: u64) -> Self {
        Capture {
            state: Mutex::new(State {
                trees: None,
                last_applied: revision,
            }),
            gate: RwLock::new(false),
        }
    }
}

fn poisoned() -> Error {
    Error::Internal("the snapshot state is poisoned".into())
}

impl Capture {
    /// The apply step: saves the pre-images `ops` would overwrite, then
    /// applies them with `apply`, all under the capture's lock.
    pub fn apply(
        &self,
        revision: u64,
        ops: &[super::wal::Op],
        tree: impl Fn(u8) -> Option<sled::Tree>,
        apply: impl FnOnce() -> Result<()>,
    ) -> Result<()> {
        let mut state = self.state.lock().map_err(|_| poisoned())?;
        if let Some(captured) = state.trees.as_mut() {
            for op in ops {
                let Some(capture) = captured.get_mut(&op.tree) else {
                    continue;
                };
                let Some(tree) = tree(op.tree) else { continue };
                if op.action == super::wal::Action::RemovePrefix {
                    for key in tree.scan_prefix(&op.key).keys() {
                        let key = key?;
                        save(capture, &tree, &key)?;
                    }
                } else {
                    save(capture, &tree, &op.key)?;
                }
            }
        }
        apply()?;
        state.last_applied = revision;
        Ok(())
    }

    /// Opens a snapshot of `trees` (none may be open); returns its revision.
    fn open(&self, trees: &[u8]) -> Result<u64> {
        // Wait for a cascade batch in flight, and stop the next ones.
        {
            let mut gate = self.gate.write().map_err(|_| poisoned())?;
            if *gate {
                return Err(Error::Unavailable(
                    "another backup is being taken; one runs at a time, retry when it has finished".into(),
                ));
            }
            *gate = true;
        }
        let mut state = self.state.lock().map_err(|_| poisoned())?;
        state.trees = Some(trees.iter().map(|&t| (t, TreeCapture::default())).collect());
        Ok(state.last_applied)
    }

    /// Ends the open snapshot, dropping what it captured.
    fn close(&self) {
        if let Ok(mut state) = self.state.lock() {
            state.trees = None;
        }
        if let Ok(mut g) = self.gate.write() {
            *g = false;
        }
    }

    /// Records that the scan of `tree` has read through `last` (`None`: to
    /// its end), and takes the pre-images in `(after, last]`.
    fn advance(&self, tree: u8, after: Option<&[u8]>, last: Option<&[u8]>) -> Result<Vec<(Vec<u8>, PreImage)>> {
        let mut locked = self.state.lock().map_err(|_| poisoned())?;
        let state = locked
            .trees
            .as_mut()
            .and_then(|t| t.get_mut(&tree))
            .ok_or_else(|| Error::Internal("the snapshot is not open".into()))?;
        let lower = after.map_or(Bound::Unbounded, |a| Bound::Excluded(a.to_vec()));
        let upper = last.map_or(Bound::Unbounded, |l| Bound::Included(l.to_vec()));
        let keys: Vec<Vec<u8>> = state.pre_images.range((lower, upper)).map(|(k, _)| k.clone()).collect();
        let taken = keys
            .into_iter()
            .filter_map(|k| state.pre_images.remove_entry(&k))
            .collect();
        state.scanned = match last {
            Some(l) => Scanned::Through(l.to_vec()),
            None => Scanned::All,
        };
        Ok(taken)
    }
}

/// Saves `key`'s current value as its pre-image, unless the scan has passed
/// it or an earlier change saved one.
fn save(state: &mut TreeCapture, tree: &sled::Tree, key: &[u8]) -> Result<()> {
    if state.scanned.covers(key) || state.pre_images.contains_key(key) {
        return Ok(());
    }
    state.pre_images.insert(key.to_vec(), tree.get(key)?);
    Ok(())
}

/// What the sled scan reads: the parent trees and the status trees, by log
/// number, and how to decode them.
pub struct SledTrees {
    /// `(kind, tree)` in [`ParentKind::ALL`] order.
    pub parents: Vec<(ParentKind, u8, sled::Tree)>,
    /// `(kind, tree)` in [`StatusKind::ALL`] order.
    pub statuses: Vec<(StatusKind, u8, sled::Tree)>,
}

/// Opens a snapshot of the sled store's trees and starts the thread that
/// scans it.
pub fn sled_snapshot(capture: Arc<Capture>, trees: SledTrees) -> Result<Snapshot> {
    let numbers: Vec<u8> = trees
        .parents
        .iter()
        .map(|(_, n, _)| *n)
        .chain(trees.statuses.iter().map(|(_, n, _)| *n))
        .collect();
    let revision = capture.open(&numbers)?;
    let (tx, rx) = mpsc::channel(4);
    let spawned = std::thread::Builder::new().name("statusd-snapshot".into()).spawn({
        let capture = capture.clone();
        move || {
            if let Err(e) = scan(&capture, &trees, &tx) {
                let _ = tx.blocking_send(Err(e));
            }
            capture.close();
        }
    });
    if let Err(e) = spawned {
        capture.close();
        return Err(Error::Unavailable(format!("cannot start the snapshot thread: {e}")));
    }
    Ok(Snapshot { revision, chunks: rx })
}

/// The scan: every tree in order, a page at a time, merged with the
/// pre-images; stops quietly when the receiver is gone.
fn scan(capture: &Capture, trees: &SledTrees, tx: &mpsc::Sender<Result<Vec<Item>>>) -> Result<()> {
    let mut parent_ids: HashMap<ParentKind, HashSet<String>> = HashMap::new();
    for (kind, number, tree) in &trees.parents {
        let ids = parent_ids.entry(*kind).or_default();
        let sent = scan_tree(capture, *number, tree, tx, |key, value| {
            let parent: Parent = super::codec::decode(value)?;
            if parent.id.as_bytes() != key {
                return Err(Error::Internal(format!("parent stored under another key: {key:?}")));
            }
            ids.insert(parent.id.clone());
            Ok(Some(Item::Parent(*kind, parent)))
        })?;
        if !sent {
            return Ok(());
        }
    }
    for (kind, number, tree) in &trees.statuses {
        let ids = parent_ids.get(&kind.parent);
        let sent = scan_tree(capture, *number, tree, tx, |key, value| {
            let (parent_id, status_id) =
                keys::split_status_key(key).ok_or_else(|| Error::Internal(format!("malformed status key {key:?}")))?;
            // A tally (the bare prefix), or a status of a parent deleted
            // before the snapshot whose cascade has not finished.
            if status_id.is_empty() || !ids.is_some_and(|ids| ids.contains(parent_id)) {
                return Ok(None);
            }
            let status = super::codec::decode_status(status_id, value)?;
            Ok(Some(Item::Status(*kind, parent_id.to_owned(), status)))
        })?;
        if !sent {
            return Ok(());
        }
    }
    Ok(())
}

/// Scans one tree; `Ok(false)` if the receiver went away.
fn scan_tree(
    capture: &Capture,
    number: u8,
    tree: &sled::Tree,
    tx: &mpsc::Sender<Result<Vec<Item>>>,
    mut item: impl FnMut(&[u8], &[u8]) -> Result<Option<Item>>,
) -> Result<bool> {
    let mut after: Option<Vec<u8>> = None;
    loop {
        let lower = after.clone().map_or(Bound::Unbounded, Bound::Excluded);
        let mut page: BTreeMap<Vec<u8>, PreImage> = BTreeMap::new();
        for entry in tree.range::<Vec<u8>, _>((lower, Bound::Unbounded)).take(CHUNK) {
            let (k, v) = entry?;
            page.insert(k.to_vec(), Some(v));
        }
        let last = (page.len() == CHUNK)
            .then(|| page.keys().next_back().cloned())
            .flatten();
        // A saved pre-image is the value at the snapshot's start; it wins
        // over what the page read (which may be newer, or missing).
        for (k, pre) in capture.advance(number, after.as_deref(), last.as_deref())? {
            page.insert(k, pre);
        }
        let mut items = Vec::with_capacity(page.len());
        for (k, v) in &page {
            if let Some(v) = v {
                if let Some(i) = item(k, v)? {
                    items.push(i);
                }
            }
        }
        if !items.is_empty() && tx.blocking_send(Ok(items)).is_err() {
            return Ok(false);
        }
        match last {
            Some(l) => after = Some(l),
            None => return Ok(true),
        }
    }
}
