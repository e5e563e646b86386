//! statusd's write-ahead log: the commit path of the sled backend.
//!
//! A writer checks its change against the store (holding the locks that make
//! the check valid), hands the change's operations to [`Wal::commit`] and
//! waits. The named `statusd-wal` thread takes every change queued at that
//! moment, appends them as one group of checksummed frames ([`frame`]) to the
//! current segment file, `fdatasync`s it once, then applies the group to sled
//! in memory, in revision order, and answers the writers. So:
//! - **durable on return**: a change is answered only after its frame is on
//!   disk; one fsync serves every writer of the group;
//! - **visible only once durable**: sled (what readers read) receives a change
//!   only after its fsync, so no reader sees a write a crash could undo;
//! - **one sequence**: every change gets a store-wide increasing revision, in
//!   the order it is logged and applied.
//!
//! sled's own log is no longer on the commit path: when a segment passes
//! [`SEGMENT_BYTES`] the thread starts a new one, and the `statusd-checkpoint`
//! thread flushes sled (making everything applied so far durable there) and
//! then deletes the segments that flush covers. At open, [`replay`] applies
//! every remaining segment again (every operation states its result, so
//! applying one twice is harmless), the store checkpoints, and the log starts
//! empty. A frame cut short or failing its checksum ends the log: nothing
//! after it was acknowledged. A bad frame in a segment that is not the last
//! one is corruption of acknowledged data, and the store refuses to open.
//!
//! **Merges** change a value from its current one (an overview's counts): a
//! writer cannot read-modify-write it, since writers of different statuses
//! under one parent run concurrently. It hands the log a [`Merge`] operand
//! instead; the single `statusd-wal` thread resolves it, in revision order,
//! into a plain `Put` of the new value before the record is encoded. So the
//! log only ever holds idempotent operations, and a merged value is applied
//! in the same record (the same atomic write) as the change it reflects.
//!
//! **Events**: a record may carry an event (what Watch streams). The writer
//! stores it under the record's revision in the history tree, in the same
//! record, and hands it to the store's [`Publish`] callback once the record
//! is applied, in revision order: only durable, visible changes are ever
//! published.
//!
//! **A failed write or fsync is fatal for writing** (a failed `fsync` may mark
//! dirty pages clean, so a later one can succeed over a hole): every later
//! write is refused (UNAVAILABLE) until a restart replays what is really on
//! disk; reads go on.

pub mod frame;

use super::durable_dir::{self, io_error};
use crate::error::{Error, Result};
pub use frame::{Action, Op, Record};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// When a change is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Durability {
    /// After the change is fsynced (the default).
    Durable,
    /// Once the change is written to the operating system: it survives a
    /// crash of statusd, and the log is fsynced at most 500 ms later, so a
    /// power loss may lose the last half second of acknowledged writes.
    Relaxed,
}

/// A segment this large is closed and checkpointed: it bounds both the disk
/// the log takes and the work a restart replays.
pub const SEGMENT_BYTES: u64 = 64 << 20;

/// In `relaxed` durability the log is fsynced at most this long after a write.
const RELAXED_SYNC: Duration = Duration::from_millis(500);

/// Applies one record's operations to the store (after its fsync, and at replay).
pub type Apply = Arc<dyn Fn(u64, &[Op]) -> Result<()> + Send + Sync>;

/// Reads a key's current value from the store (to resolve a [`Merge`]).
pub type Read = Arc<dyn Fn(u8, &[u8]) -> Result<Option<Vec<u8>>> + Send + Sync>;

/// The new value of a merged key: from the merge, the key's current value
/// (if any) and the revision of the record the merge is in.
pub type MergeFn = Arc<dyn Fn(&Merge, Option<&[u8]>, u64) -> Result<Vec<u8>> + Send + Sync>;

/// Receives each applied record's event, in revision order, right after the
/// record is visible.
pub type Publish = Arc<dyn Fn(u64, &[u8]) + Send + Sync>;

/// What one writer commits as one record.
#[derive(Debug, Default)]
pub struct Commit {
    /// Applied in order.
    pub ops: Vec<Op>,
    /// Resolved into `Put`s after `ops` (see [`Merge`]).
    pub merges: Vec<Merge>,
    /// The record's event, if any (see the module docs).
    pub event: Option<Vec<u8>>,
}

/// A change to a key computed from its current value when it is logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Merge {
    /// Which tree.
    pub tree: u8,
    /// The key.
    pub key: Vec<u8>,
    /// What the store's [`MergeFn`] combines with the current value.
    pub operand: Vec<u8>,
}

/// Makes everything applied so far durable in the store itself, recording
/// `revision` as the last one covered; afterwards the log before it may go.
pub type Checkpoint = Arc<dyn Fn(u64) -> Result<()> + Send + Sync>;

/// The answer a writer waits for: its revision, once durable and applied.
type Answer = oneshot::Sender<Result<u64>>;

/// A change waiting for the next group; no operations and revision 0 is a
/// barrier that forces an fsync whatever the durability mode.
struct Entry {
    revision: u64,
    ops: Vec<Op>,
    /// Resolved into `Put`s appended to `ops` just before encoding.
    merges: Vec<Merge>,
    /// Stored in the history tree with the record, published once applied.
    event: Option<Vec<u8>>,
    answer: Answer,
}

struct Queue {
    entries: Vec<Entry>,
    next_revision: u64,
    stopping: bool,
    /// The writer thread sleeps on `ready` (so an enqueue must wake it).
    writer_waiting: bool,
}

struct Shared {
    queue: Mutex<Queue>,
    ready: Condvar,
    failed: AtomicBool,
    /// The last revision applied to the store.
    applied: AtomicU64,
    groups: AtomicU64,
    writes: AtomicU64,
}

/// How a log opens: where, how durable, and the store's two callbacks.
pub struct Options {
    /// The log's directory (created if missing).
    pub dir: PathBuf,
    /// When writers are answered.
    pub durability: Durability,
    /// Test hook: the group with this (1-based) number fails as an fsync would.
    pub fail_at: Option<u64>,
    /// Test hook: every fsync takes at least this long.
    pub slow_sync: Option<Duration>,
    /// Applies a durable record to the store.
    pub apply: Apply,
    /// Flushes the store (see [`Checkpoint`]).
    pub checkpoint: Checkpoint,
    /// Reads a merged key's current value.
    pub read: Read,
    /// Resolves a merge.
    pub merge: MergeFn,
    /// The tree events are stored in, keyed by revision (big-endian); none
    /// keeps no history (events are only published).
    pub history_tree: Option<u8>,
    /// Receives applied events.
    pub publish: Publish,
}

/// The file names of the log's segments, in order.
fn segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_error("read the log directory", dir, e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| io_error("read the log directory", dir, e))?.path();
        let seq = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".wal"))
            .and_then(|n| n.parse::<u64>().ok());
        match seq {
            Some(seq) => out.push((seq, path)),
            None => {
                return Err(Error::Unavailable(format!(
                    "unexpected file {} in the write-ahead log directory; move it away",
                    path.display()
                )))
            }
        }
    }
    out.sort();
    Ok(out)
}

fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{seq:020}.wal"))
}

/// What [`replay`] found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Replayed {
    /// Records applied.
    pub records: u64,
    /// The highest revision among them (0 if none).
    pub last_revision: u64,
    /// Bytes after the last good frame of the last segment (a torn write).
    pub torn_bytes: u64,
}

/// Applies every record of the log in `dir` to the store, in order. A bad
/// frame in the last segment ends the log (what follows was never
/// acknowledged); in an earlier segment it is an error naming the file and
/// the offset.
pub fn replay(dir: &Path, apply: &dyn Fn(u64, &[Op]) -> Result<()>) -> Result<Replayed> {
    let segments = segments(dir)?;
    let mut out = Replayed::default();
    for (i, (_, path)) in segments.iter().enumerate() {
        let bytes = std::fs::read(path).map_err(|e| io_error("read", path, e))?;
        let mut reader = frame::Reader::new(&bytes);
        for record in reader.by_ref() {
            if record.revision <= out.last_revision {
                return Err(Error::Unavailable(format!(
                    "the write-ahead log {} goes back from revision {} to {}; refusing to replay it",
                    path.display(),
                    out.last_revision,
                    record.revision
                )));
            }
            apply(record.revision, &record.ops)?;
            out.records += 1;
            out.last_revision = record.revision;
        }
        if let Some(stop) = reader.stop() {
            if i + 1 < segments.len() {
                return Err(Error::Unavailable(format!(
                    "the write-ahead log {} is corrupt at byte {} ({stop}) and later segments exist: \
                     acknowledged writes after that point would be lost. Restore a backup, or move \
                     the later segments away to accept the loss",
                    path.display(),
                    reader.offset()
                )));
            }
            out.torn_bytes = (bytes.len() - reader.offset()) as u64;
            tracing::warn!(
                file = %path.display(),
                offset = reader.offset(),
                ignored_bytes = out.torn_bytes,
                reason = %stop,
                "the write-ahead log ends in a torn write (never acknowledged); ignoring it"
            );
        }
    }
    Ok(out)
}

/// Deletes every segment in `dir` (after a checkpoint covered them all).
pub fn remove_all(dir: &Path) -> Result<()> {
    let all = segments(dir)?;
    remove_segments(dir, all.iter().map(|(_, p)| p.clone()))
}

fn remove_segments(dir: &Path, paths: impl Iterator<Item = PathBuf>) -> Result<()> {
    let mut removed = false;
    for path in paths {
        std::fs::remove_file(&path).map_err(|e| io_error("remove", &path, e))?;
        removed = true;
    }
    if removed {
        durable_dir::sync_dir(dir)?;
    }
    Ok(())
}

/// The open segment the writer thread appends to.
struct Segment {
    seq: u64,
    file: File,
    /// Where the next frame goes (the file itself may be longer: see
    /// [`Segment::create`]).
    len: u64,
}

impl Segment {
    /// Creates segment `seq`, its name durable before anything in it is.
    ///
    /// The file is preallocated to [`SEGMENT_BYTES`] (zeros, as far as a
    /// reader can tell) where the file system can: an `fdatasync` after a
    /// write inside the file then has no file size to update, which made it
    /// ~20 % faster here than after an append. A frame header of zeros ends
    /// the log ([`frame::Reader`]).
    fn create(dir: &Path, seq: u64) -> Result<Segment> {
        let path = segment_path(dir, seq);
        let file = std::fs::OpenOptions::new()
            .create_new(true)
            .write(true)
            .open(&path)
            .map_err(|e| io_error("create", &path, e))?;
        match rustix::fs::fallocate(&file, rustix::fs::FallocateFlags::empty(), 0, SEGMENT_BYTES) {
            Ok(()) => file.sync_all().map_err(|e| io_error("fsync", &path, e))?,
            // Not every file system preallocates (some FUSE ones do not):
            // the segment then grows with its writes.
            Err(e) => tracing::debug!(error = %e, "cannot preallocate the write-ahead log segment"),
        }
        durable_dir::sync_dir(dir)?;
        Ok(Segment { seq, file, len: 0 })
    }

    fn append(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        use std::os::unix::fs::FileExt;
        self.file.write_all_at(bytes, self.len)?;
        self.len += bytes.len() as u64;
        Ok(())
    }
}

/// A closed segment, to delete once a checkpoint covers `last_revision`.
struct CheckpointJob {
    path: PathBuf,
    last_revision: u64,
}

/// Handle to the log's two threads.
pub struct Wal {
    shared: Arc<Shared>,
    dir: PathBuf,
    checkpoint: Checkpoint,
    writer: Mutex<Option<JoinHandle<()>>>,
    checkpointer: Mutex<Option<JoinHandle<()>>>,
    closed: AtomicBool,
}

impl Wal {
    /// Starts the log in `options.dir` (which must hold no segment: replay
    /// and checkpoint first), numbering revisions from `next_revision`.
    pub fn start(options: Options, next_revision: u64) -> Result<Wal> {
        std::fs::create_dir_all(&options.dir).map_err(|e| io_error("create", &options.dir, e))?;
        if let Some(parent) = options.dir.parent() {
            durable_dir::sync_dir(parent)?;
        }
        let seq = segments(&options.dir)?.last().map_or(1, |(seq, _)| seq + 1);
        let segment = Segment::create(&options.dir, seq)?;
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue {
                entries: Vec::new(),
                next_revision,
                stopping: false,
                writer_waiting: false,
            }),
            ready: Condvar::new(),
            failed: AtomicBool::new(false),
            applied: AtomicU64::new(next_revision - 1),
            groups: AtomicU64::new(0),
            writes: AtomicU64::new(0),
        });
        let (jobs, job_queue) = mpsc::channel::<CheckpointJob>();
        let checkpointer = {
            let (shared, dir, checkpoint) = (shared.clone(), options.dir.clone(), options.checkpoint.clone());
            std::thread::Builder::new()
                .name("statusd-checkpoint".into())
                .spawn(move || run_checkpoints(&shared, &dir, &*checkpoint, job_queue))
                .map_err(|e| Error::Unavailable(format!("cannot start the checkpoint thread: {e}")))?
        };
        let writer = {
            let shared = shared.clone();
            let mut writer = Writer {
                dir: options.dir.clone(),
                segment,
                durability: options.durability,
                fail_at: options.fail_at,
                slow_sync: options.slow_sync,
                apply: options.apply,
                read: options.read,
                merge: options.merge,
                history_tree: options.history_tree,
                publish: options.publish,
                jobs,
                buf: Vec::with_capacity(1 << 20),
            };
            std::thread::Builder::new()
                .name("statusd-wal".into())
                .spawn(move || writer.run(&shared))
                .map_err(|e| Error::Unavailable(format!("cannot start the write-ahead log thread: {e}")))?
        };
        Ok(Wal {
            shared,
            dir: options.dir,
            checkpoint: options.checkpoint,
            writer: Mutex::new(Some(writer)),
            checkpointer: Mutex::new(Some(checkpointer)),
            closed: AtomicBool::new(false),
        })
    }

    /// `Ok` while writes may be made; after a failed write, fsync or
    /// checkpoint, UNAVAILABLE. Checked before a writer changes anything.
    pub fn check_writable(&self) -> Result<()> {
        if self.shared.failed.load(Ordering::Acquire) {
            return Err(failed());
        }
        Ok(())
    }

    /// The last revision applied (durable and visible).
    pub fn revision(&self) -> u64 {
        self.shared.applied.load(Ordering::Acquire)
    }

    /// (groups written, changes written): how much one fsync served.
    pub fn stats(&self) -> (u64, u64) {
        (
            self.shared.groups.load(Ordering::Relaxed),
            self.shared.writes.load(Ordering::Relaxed),
        )
    }

    fn enqueue(&self, commit: Commit) -> Result<oneshot::Receiver<Result<u64>>> {
        let Commit { ops, merges, event } = commit;
        self.check_writable()?;
        let (answer, rx) = oneshot::channel();
        let mut q = self.shared.queue.lock().map_err(|_| poisoned())?;
        if q.stopping {
            return Err(stopped());
        }
        let revision = if ops.is_empty() {
            0
        } else {
            q.next_revision += 1;
            q.next_revision - 1
        };
        q.entries.push(Entry {
            revision,
            ops,
            merges,
            event,
            answer,
        });
        if q.writer_waiting {
            q.writer_waiting = false;
            self.shared.ready.notify_one();
        }
        Ok(rx)
    }

    /// Logs `ops` as one record and waits until it is durable and applied;
    /// returns its revision.
    pub async fn commit(&self, ops: Vec<Op>) -> Result<u64> {
        self.commit_record(Commit {
            ops,
            ..Commit::default()
        })
        .await
    }

    /// [`Wal::commit`] of a whole record: operations, merges (resolved after
    /// every record before it) and an event.
    pub async fn commit_record(&self, commit: Commit) -> Result<u64> {
        debug_assert!(!commit.ops.is_empty());
        self.enqueue(commit)?.await.map_err(|_| stopped())?
    }

    /// [`Wal::commit`] for a thread outside the async runtime.
    pub fn commit_blocking(&self, ops: Vec<Op>) -> Result<u64> {
        debug_assert!(!ops.is_empty());
        self.enqueue(Commit {
            ops,
            ..Commit::default()
        })?
        .blocking_recv()
        .map_err(|_| stopped())?
    }

    /// Waits until everything logged so far is fsynced, whatever the mode.
    pub async fn sync(&self) -> Result<()> {
        self.enqueue(Commit::default())?.await.map_err(|_| stopped())?.map(drop)
    }

    /// Stops both threads after every queued change is answered, then (unless
    /// writing failed) checkpoints the store and empties the log, so the next
    /// open replays nothing.
    pub fn close(&self) {
        if self.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        if let Ok(mut q) = self.shared.queue.lock() {
            q.stopping = true;
            self.shared.ready.notify_one();
        }
        if let Some(writer) = self.writer.lock().ok().and_then(|mut w| w.take()) {
            let _ = writer.join();
        }
        // The writer held the job sender; once it has ended, the
        // checkpointer finishes what is queued and ends too.
        if let Some(checkpointer) = self.checkpointer.lock().ok().and_then(|mut c| c.take()) {
            let _ = checkpointer.join();
        }
        if self.shared.failed.load(Ordering::Acquire) {
            tracing::warn!("writes had failed: the write-ahead log is kept for the next start to replay");
            return;
        }
        let last = self.revision();
        match (self.checkpoint)(last).and_then(|()| remove_all(&self.dir)) {
            Ok(()) => {}
            Err(e) => tracing::error!(error = %e, "final checkpoint failed; the next start replays the log"),
        }
    }
}

impl Drop for Wal {
    fn drop(&mut self) {
        self.close();
    }
}

/// The `statusd-wal` thread's state.
struct Writer {
    dir: PathBuf,
    segment: Segment,
    durability: Durability,
    fail_at: Option<u64>,
    slow_sync: Option<Duration>,
    apply: Apply,
    read: Read,
    merge: MergeFn,
    history_tree: Option<u8>,
    publish: Publish,
    jobs: mpsc::Sender<CheckpointJob>,
    buf: Vec<u8>,
}

impl Writer {
    fn run(&mut self, shared: &Shared) {
        let mut group = Vec::new();
        let mut unsynced = false;
        let mut last_revision = shared.applied.load(Ordering::Acquire);
        loop {
            {
                let Ok(mut q) = shared.queue.lock() else { return };
                while q.entries.is_empty() && !q.stopping {
                    q.writer_waiting = true;
                    if unsynced {
                        let Ok((guard, timeout)) = shared.ready.wait_timeout(q, RELAXED_SYNC) else {
                            return;
                        };
                        q = guard;
                        if timeout.timed_out() {
                            break;
                        }
                    } else {
                        let Ok(guard) = shared.ready.wait(q) else { return };
                        q = guard;
                    }
                }
                q.writer_waiting = false;
                if q.entries.is_empty() && q.stopping {
                    break;
                }
                std::mem::swap(&mut group, &mut q.entries);
            }
            if group.is_empty() {
                // Relaxed mode's timed fsync.
                if let Err(e) = self.sync() {
                    mark_failed(shared, &e);
                }
                unsynced = false;
                continue;
            }
            let started = Instant::now();
            let result = self.write(shared, &mut group, &mut unsynced);
            metrics::counter!(crate::metrics::COMMITS).increment(1);
            metrics::histogram!(crate::metrics::COMMIT_SECONDS).record(started.elapsed().as_secs_f64());
            metrics::histogram!(crate::metrics::COMMIT_WRITES).record(group.len() as f64);
            if let Err(e) = &result {
                mark_failed(shared, e);
            }
            let n = group.len() as u64;
            for entry in group.drain(..) {
                let answer = match &result {
                    Ok(()) => {
                        last_revision = last_revision.max(entry.revision);
                        Ok(entry.revision)
                    }
                    Err(_) => Err(failed()),
                };
                let _ = entry.answer.send(answer);
            }
            shared.groups.fetch_add(1, Ordering::Relaxed);
            shared.writes.fetch_add(n, Ordering::Relaxed);
            if result.is_ok() && self.segment.len >= SEGMENT_BYTES {
                if let Err(e) = self.rotate(last_revision) {
                    mark_failed(shared, &e);
                }
                unsynced = false;
            }
        }
        if unsynced {
            if let Err(e) = self.sync() {
                mark_failed(shared, &e);
            }
        }
    }

    /// One group: append its frames, fsync (always when durable, or when a
    /// barrier asks), apply to the store in order.
    fn write(&mut self, shared: &Shared, group: &mut [Entry], unsynced: &mut bool) -> Result<()> {
        if shared.failed.load(Ordering::Acquire) {
            return Err(failed());
        }
        self.resolve_merges(group)?;
        self.buf.clear();
        let mut barrier = false;
        for entry in group.iter() {
            if entry.ops.is_empty() {
                barrier = true;
            } else {
                frame::encode_parts(entry.revision, &entry.ops, &mut self.buf);
            }
        }
        self.segment.append(&self.buf).map_err(|e| {
            io_error(
                "append to the write-ahead log",
                &segment_path(&self.dir, self.segment.seq),
                e,
            )
        })?;
        let group_number = shared.groups.load(Ordering::Relaxed) + 1;
        if self.fail_at == Some(group_number) {
            return Err(Error::Unavailable("injected fsync failure (test hook)".into()));
        }
        if self.durability == Durability::Durable || barrier {
            self.sync()?;
            *unsynced = false;
        } else {
            *unsynced = true;
        }
        for entry in group.iter().filter(|e| !e.ops.is_empty()) {
            (self.apply)(entry.revision, &entry.ops)?;
            shared.applied.store(entry.revision, Ordering::Release);
            // After `applied`: a watcher that subscribed and then read
            // `applied` either sees this revision as past or receives it.
            if let Some(event) = &entry.event {
                (self.publish)(entry.revision, event);
            }
        }
        Ok(())
    }

    /// Turns every merge of the group into a `Put` of its new value (a key
    /// merged twice in one group starts the second time from the first
    /// result: the store only sees the group once it is applied), and every
    /// event into a `Put` in the history tree under its record's revision.
    fn resolve_merges(&self, group: &mut [Entry]) -> Result<()> {
        let mut current: std::collections::HashMap<(u8, Vec<u8>), Vec<u8>> = std::collections::HashMap::new();
        for entry in group.iter_mut() {
            if let (Some(event), Some(tree)) = (&entry.event, self.history_tree) {
                entry.ops.push(Op {
                    tree,
                    key: entry.revision.to_be_bytes().to_vec(),
                    action: Action::Put(event.clone()),
                });
            }
            for m in std::mem::take(&mut entry.merges) {
                let slot = (m.tree, m.key.clone());
                let base = match current.get(&slot) {
                    Some(v) => Some(v.clone()),
                    None => (self.read)(m.tree, &m.key)?,
                };
                let value = (self.merge)(&m, base.as_deref(), entry.revision)?;
                current.insert(slot, value.clone());
                entry.ops.push(Op {
                    tree: m.tree,
                    key: m.key,
                    action: Action::Put(value),
                });
            }
        }
        Ok(())
    }

    fn sync(&self) -> Result<()> {
        if let Some(pause) = self.slow_sync {
            std::thread::sleep(pause);
        }
        self.segment.file.sync_data().map_err(|e| {
            io_error(
                "fsync the write-ahead log",
                &segment_path(&self.dir, self.segment.seq),
                e,
            )
        })
    }

    /// Closes the full segment (fsynced), opens the next, and hands the old
    /// one to the checkpointer.
    fn rotate(&mut self, last_revision: u64) -> Result<()> {
        self.sync()?;
        let next = Segment::create(&self.dir, self.segment.seq + 1)?;
        let old = std::mem::replace(&mut self.segment, next);
        let _ = self.jobs.send(CheckpointJob {
            path: segment_path(&self.dir, old.seq),
            last_revision,
        });
        Ok(())
    }
}

/// The `statusd-checkpoint` thread: for each closed segment, flush the store
/// (which then holds everything the segment did), then delete the segment.
fn run_checkpoints(
    shared: &Shared,
    dir: &Path,
    checkpoint: &dyn Fn(u64) -> Result<()>,
    jobs: mpsc::Receiver<CheckpointJob>,
) {
    for job in jobs {
        if shared.failed.load(Ordering::Acquire) {
            continue;
        }
        let started = Instant::now();
        let result = checkpoint(job.last_revision).and_then(|()| remove_segments(dir, std::iter::once(job.path)));
        match result {
            Ok(()) => tracing::debug!(
                revision = job.last_revision,
                seconds = started.elapsed().as_secs_f64(),
                "checkpoint"
            ),
            Err(e) => mark_failed(shared, &e),
        }
    }
}

fn failed() -> Error {
    Error::Unavailable(
        "storage could not make writes durable (a write, fsync or checkpoint failed); writes are \
         refused until statusd is restarted, reads go on"
            .into(),
    )
}

fn stopped() -> Error {
    Error::Unavailable("the store is shutting down".into())
}

fn poisoned() -> Error {
    Error::Internal("the write-ahead log's queue was poisoned by a panic".into())
}

fn mark_failed(shared: &Shared, e: &Error) {
    if !shared.failed.swap(true, Ordering::AcqRel) {
        tracing::error!(
            error = %e,
            "storage failed to make a write durable: refusing every write from now on; restart \
             statusd to recover (the log is replayed from what is on disk)"
        );
    }
}
