//! Cascade deletes in the background: removing a parent's statuses after the
//! parent itself is gone.
//!
//! A parent delete removes the parent and records a marker in the `cascades`
//! tree in one transaction, removes what one batch per status collection
//! holds (so the common small parent is gone whole, and its id free again,
//! when the delete answers), waits until that is durable, and answers; what
//! is left is removed by the named `statusd-cascade` thread, a bounded batch
//! at a time, so deleting a parent with millions of statuses
//! neither holds a request (or a tokio worker) for minutes nor runs past the
//! request's deadline. Until its cascade ends, a deleted parent's statuses are
//! invisible (every status read checks the parent) and its id cannot be
//! reused (a create is refused with UNAVAILABLE, "retry shortly").
//!
//! The statuses are removed from sled directly (they are invisible already,
//! so nothing needs their removal logged); the marker is removed last,
//! through the write-ahead log, by a record that also removes whatever is
//! left under the parent's prefix (see [`SledStore`](super::SledStore)). A
//! crash part-way leaves the marker, and the next open queues the cascade
//! again (removing is idempotent); a replay of the closing record removes the
//! statuses again, so statuses an older logged create brings back at replay
//! never outlive it.

use super::keys;
use crate::error::{Error, Result};
use crate::model::{ParentKind, StatusKind};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::thread::JoinHandle;

/// Status keys removed per batch: large enough to amortise a batch, small
/// enough that a stop request is noticed quickly.
const BATCH: usize = 1000;

/// The background thread rests this many times as long as each batch took:
/// a large cascade uses at most a third of a core, and requests keep the rest.
const REST_PER_BUSY: u32 = 2;

/// How often a cascade waiting for a snapshot to end looks again.
const SNAPSHOT_WAIT: std::time::Duration = std::time::Duration::from_millis(100);

/// Batches a delete removes itself before it hands the rest to the thread:
/// a few milliseconds of work at most.
pub const INLINE_BATCHES: usize = 2;

/// The trees a cascade works on.
#[derive(Clone)]
pub struct CascadeTrees {
    /// Every status tree, by kind.
    pub statuses: HashMap<StatusKind, sled::Tree>,
    /// Pending cascades: key [`keys::cascade_key`], empty value.
    pub cascades: sled::Tree,
    /// Raised while a snapshot is open (see [`super::snapshot`]): statuses
    /// are then removed by no one.
    pub capture: Arc<super::snapshot::Capture>,
}

impl CascadeTrees {
    /// Removes every status of `parent_id` under `kind`; `Ok(false)` if
    /// `stop` was raised, `max_batches` full batches were removed, or a
    /// snapshot is open, before the end (the cascade can be run again). The
    /// caller removes the marker.
    pub fn run(&self, kind: ParentKind, parent_id: &str, stop: &AtomicBool, max_batches: usize) -> Result<bool> {
        self.run_paced(kind, parent_id, stop, max_batches, 0)
    }

    /// As [`CascadeTrees::run`], resting after each batch `rest_per_busy`
    /// times as long as the batch took: background work leaves the cores
    /// to requests. Background work (`rest_per_busy > 0`) waits while a
    /// snapshot is open instead of returning.
    fn run_paced(
        &self,
        kind: ParentKind,
        parent_id: &str,
        stop: &AtomicBool,
        max_batches: usize,
        rest_per_busy: u32,
    ) -> Result<bool> {
        let prefix = keys::status_prefix(parent_id);
        let mut batches = 0;
        for sk in kind.status_kinds() {
            let tree = &self.statuses[&sk];
            loop {
                if stop.load(Ordering::Relaxed) || batches == max_batches {
                    return Ok(false);
                }
                let started = std::time::Instant::now();
                let gate = self
                    .capture
                    .gate
                    .read()
                    .map_err(|_| Error::Internal("the snapshot gate is poisoned".into()))?;
                if *gate {
                    drop(gate);
                    if rest_per_busy == 0 {
                        return Ok(false);
                    }
                    std::thread::sleep(SNAPSHOT_WAIT);
                    continue;
                }
                let mut batch = sled::Batch::default();
                let mut n = 0;
                for key in tree.scan_prefix(&prefix).keys().take(BATCH) {
                    batch.remove(key?);
                    n += 1;
                }
                tree.apply_batch(batch)?;
                drop(gate);
                if n < BATCH {
                    // Nothing is left under this parent in this tree.
                    break;
                }
                batches += 1;
                std::thread::sleep(started.elapsed() * rest_per_busy);
            }
        }
        Ok(true)
    }

    /// The cascades recorded as pending.
    pub fn pending(&self) -> Result<Vec<(ParentKind, String)>> {
        let mut out = Vec::new();
        for key in self.cascades.iter().keys() {
            let key = key?;
            let kind = key.first().copied().and_then(ParentKind::from_tag);
            let id = std::str::from_utf8(&key[1.min(key.len())..]).ok();
            match (kind, id) {
                (Some(kind), Some(id)) => out.push((kind, id.to_owned())),
                _ => return Err(Error::Internal(format!("malformed cascade marker {key:?}"))),
            }
        }
        Ok(out)
    }
}

/// Work not yet finished, and a signal for those waiting for none.
#[derive(Default)]
struct Outstanding {
    count: Mutex<usize>,
    idle: Condvar,
}

/// Records that a parent's cascade has ended (removes its marker).
pub type Finish = Box<dyn Fn(ParentKind, &str) -> Result<()> + Send>;

/// Handle to the cascade thread.
pub struct Cascader {
    queue: Mutex<Option<mpsc::Sender<(ParentKind, String)>>>,
    outstanding: Arc<Outstanding>,
    stop: Arc<AtomicBool>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Cascader {
    /// Starts the thread and queues every cascade recorded as pending (those
    /// a crash or a shutdown interrupted).
    pub fn start(trees: CascadeTrees, finish: Finish) -> Result<Self> {
        let pending = trees.pending()?;
        let (tx, rx) = mpsc::channel::<(ParentKind, String)>();
        let outstanding = Arc::new(Outstanding::default());
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (outstanding, stop) = (outstanding.clone(), stop.clone());
            std::thread::Builder::new()
                .name("statusd-cascade".into())
                .spawn(move || {
                    for (kind, id) in rx {
                        let run = trees.run_paced(kind, &id, &stop, usize::MAX, REST_PER_BUSY);
                        match run.and_then(|done| {
                            if done {
                                finish(kind, &id).map(|()| true)
                            } else {
                                Ok(false)
                            }
                        }) {
                            Ok(true) => tracing::debug!(%kind, parent_id = %id, "cascade delete finished"),
                            Ok(false) => {}
                            Err(e) => tracing::error!(
                                %kind, parent_id = %id, error = %e,
                                "cascade delete failed; it is retried at the next start"
                            ),
                        }
                        let mut n = outstanding.count.lock().unwrap_or_else(|p| p.into_inner());
                        *n -= 1;
                        if *n == 0 {
                            outstanding.idle.notify_all();
                        }
                    }
                })
                .map_err(|e| Error::Unavailable(format!("cannot start the cascade thread: {e}")))?
        };
        let cascader = Cascader {
            queue: Mutex::new(Some(tx)),
            outstanding,
            stop,
            thread: Mutex::new(Some(thread)),
        };
        if !pending.is_empty() {
            tracing::info!(count = pending.len(), "finishing cascade deletes interrupted by a stop");
        }
        for (kind, id) in pending {
            cascader.enqueue(kind, id);
        }
        Ok(cascader)
    }

    /// Queues the cascade of a parent whose marker is recorded.
    pub fn enqueue(&self, kind: ParentKind, parent_id: String) {
        let queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        let Some(queue) = queue.as_ref() else { return };
        *self.outstanding.count.lock().unwrap_or_else(|p| p.into_inner()) += 1;
        if queue.send((kind, parent_id)).is_err() {
            // The thread is gone (stopping): the marker stays for the next open.
            *self.outstanding.count.lock().unwrap_or_else(|p| p.into_inner()) -= 1;
        }
    }

    /// Blocks until every queued cascade has finished.
    pub fn wait_idle(&self) {
        let mut n = self.outstanding.count.lock().unwrap_or_else(|p| p.into_inner());
        while *n > 0 {
            n = self.outstanding.idle.wait(n).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Stops the thread at its next batch; unfinished cascades keep their
    /// markers and resume at the next open.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
        self.queue.lock().unwrap_or_else(|p| p.into_inner()).take();
        let handle = self.thread.lock().ok().and_then(|mut t| t.take());
        if let Some(h) = handle {
            let _ = h.join();
        }
    }
}

impl Drop for Cascader {
    fn drop(&mut self) {
        self.stop();
    }
}
