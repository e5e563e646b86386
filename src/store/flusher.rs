//! Group commit: one named flusher thread makes writes durable for every
//! writer waiting at that moment.
//!
//! A writer applies its change to sled (in memory, ordered in sled's log),
//! then queues a ticket and waits. The flusher takes every queued ticket, runs
//! one `Db::flush()` — which writes the log up to at least every change made
//! before the tickets were queued — then `fdatasync`s the log file (sled's
//! flush uses `sync_file_range`, which covers neither the file's size nor the
//! disk's write cache), makes any file sled created under `blobs/` durable
//! (see [`super::durable_dir`]), and answers all of them. Under load one fsync
//! serves many writers, so throughput scales with concurrency rather than with
//! the disk's fsync rate.
//!
//! **A failed flush is fatal for writing.** On Linux a failed `fsync` may mark
//! the dirty pages clean, so a later `fsync` can succeed over a log with a
//! hole in it. After the first failure the flusher refuses every later write
//! (UNAVAILABLE: a restart is needed), so nothing is ever acknowledged on top
//! of a hole; reads go on, and a restart replays the log from what is really
//! on disk.
//!
//! Why a dedicated thread and not `flush_async` per writer: concurrent
//! `flush_async` calls deadlock in sled 0.34.7 (upstream issue #1308,
//! reproduced here at ≥ 8 callers), and a thread that blocks in fsync must not
//! be a tokio worker.

use super::durable_dir;
use crate::error::{Error, Result};
use std::collections::HashSet;
use std::ffi::OsString;
use std::fs::File;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use tokio::sync::oneshot;

/// When a mutation is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Durability {
    /// After the change is fsynced (the default).
    Durable,
    /// Immediately; sled writes the log in the background every 500 ms, so a
    /// crash may lose the last half second of acknowledged writes.
    Relaxed,
}

type Ticket = oneshot::Sender<Result<()>>;

/// What the flusher thread receives: a writer waiting for durability, or
/// `Stop` (answer what is queued, then exit).
enum Message {
    Wait(Ticket),
    Stop,
}

/// Counters of the flusher, for benchmarks and logs.
#[derive(Debug, Default)]
pub struct FlushStats {
    /// Flushes run.
    pub flushes: AtomicU64,
    /// Writers answered (sum of batch sizes).
    pub writers: AtomicU64,
}

/// What one flush makes durable: sled's log, and the files of its data
/// directory that the log may point to.
pub struct FlushTarget {
    db: sled::Db,
    log: File,
    blobs: PathBuf,
    /// Blob files already fsynced (with `blobs/` after them).
    synced_blobs: Mutex<HashSet<OsString>>,
    /// Test hook: the group commit with this (1-based) number fails as an
    /// fsync would.
    fail_at: Option<u64>,
    commits: AtomicU64,
}

impl FlushTarget {
    /// The log file `<dir>/db` must open: without it nothing could be fsynced,
    /// so a store that cannot open it must not start.
    pub fn open(db: sled::Db, dir: &std::path::Path, fail_at: Option<u64>) -> Result<Self> {
        let path = dir.join("db");
        let log = File::open(&path).map_err(|e| {
            Error::Unavailable(format!("cannot open the storage log {} for fsync: {e}", path.display()))
        })?;
        Ok(FlushTarget {
            db,
            log,
            blobs: dir.join("blobs"),
            synced_blobs: Mutex::new(HashSet::new()),
            fail_at,
            commits: AtomicU64::new(0),
        })
    }

    /// One flush: sled's log to the OS, the log to the disk, then any blob
    /// file and the `blobs/` directory. Used by the flusher and at shutdown.
    pub fn flush(&self) -> Result<()> {
        self.db.flush()?;
        self.log
            .sync_data()
            .map_err(|e| Error::Unavailable(format!("cannot fsync the storage log: {e}")))?;
        let mut synced = self
            .synced_blobs
            .lock()
            .map_err(|_| Error::Internal("the blob list was poisoned by a panic".into()))?;
        durable_dir::sync_new_files(&self.blobs, &mut synced)
    }
}

impl FlushTarget {
    /// One group commit's flush (where the test hook can inject a failure).
    fn commit(&self) -> Result<()> {
        let n = self.commits.fetch_add(1, Ordering::Relaxed) + 1;
        if self.fail_at == Some(n) {
            self.db.flush()?;
            return Err(Error::Unavailable("injected fsync failure (test hook)".into()));
        }
        self.flush()
    }
}

/// Handle to the flusher thread.
pub struct Flusher {
    mode: Durability,
    queue: mpsc::Sender<Message>,
    thread: Mutex<Option<JoinHandle<()>>>,
    stats: Arc<FlushStats>,
    failed: Arc<AtomicBool>,
    target: Arc<FlushTarget>,
}

impl Flusher {
    /// Starts the flusher thread for `target`.
    pub fn start(target: FlushTarget, mode: Durability) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel::<Message>();
        let stats = Arc::new(FlushStats::default());
        let failed = Arc::new(AtomicBool::new(false));
        let target = Arc::new(target);
        let thread = {
            let (stats, failed, target) = (stats.clone(), failed.clone(), target.clone());
            std::thread::Builder::new()
                .name("statusd-flusher".into())
                .spawn(move || run(&target, rx, &stats, &failed))?
        };
        Ok(Flusher {
            mode,
            queue: tx,
            thread: Mutex::new(Some(thread)),
            stats,
            failed,
            target,
        })
    }

    /// `Ok` while writes may be applied; after a failed flush, UNAVAILABLE.
    /// Writers check this before they change anything, so a write refused
    /// here is not visible to readers either.
    pub fn check_writable(&self) -> Result<()> {
        if self.failed.load(Ordering::Acquire) {
            return Err(flush_failed());
        }
        Ok(())
    }

    /// Waits until every change made before this call is durable.
    pub async fn commit(&self) -> Result<()> {
        self.check_writable()?;
        if self.mode == Durability::Relaxed {
            return Ok(());
        }
        let (tx, rx) = oneshot::channel();
        self.queue
            .send(Message::Wait(tx))
            .map_err(|_| Error::Unavailable("the flusher has stopped".into()))?;
        rx.await
            .map_err(|_| Error::Unavailable("the flusher has stopped".into()))?
    }

    /// Flushes and fsyncs now, whatever the mode (shutdown, and `Store::flush`).
    pub fn flush_now(&self) -> Result<()> {
        self.check_writable()?;
        let result = self.target.flush();
        if let Err(e) = &result {
            mark_failed(&self.failed, e);
        }
        result
    }

    /// The flusher's counters.
    pub fn stats(&self) -> &FlushStats {
        &self.stats
    }

    /// Stops the thread after it has answered every queued writer.
    pub fn stop(&self) {
        let _ = self.queue.send(Message::Stop);
        let handle = self.thread.lock().ok().and_then(|mut t| t.take());
        if let Some(h) = handle {
            let _ = h.join();
        }
    }
}

impl Drop for Flusher {
    fn drop(&mut self) {
        self.stop();
    }
}

fn flush_failed() -> Error {
    Error::Unavailable(
        "storage could not make writes durable (a flush or fsync failed); writes are refused \
         until statusd is restarted, reads go on"
            .into(),
    )
}

fn mark_failed(failed: &AtomicBool, e: &Error) {
    if !failed.swap(true, Ordering::AcqRel) {
        tracing::error!(
            error = %e,
            "a storage flush failed: refusing every write from now on; restart statusd to recover \
             (the log is replayed from what is on disk)"
        );
    }
}

fn run(target: &FlushTarget, queue: mpsc::Receiver<Message>, stats: &FlushStats, failed: &AtomicBool) {
    let mut stopping = false;
    while !stopping {
        let Ok(first) = queue.recv() else { return };
        let mut batch = Vec::new();
        for message in std::iter::once(first).chain(queue.try_iter()) {
            match message {
                Message::Wait(ticket) => batch.push(ticket),
                Message::Stop => stopping = true,
            }
        }
        if batch.is_empty() {
            continue;
        }
        let started = std::time::Instant::now();
        let result = if failed.load(Ordering::Acquire) {
            Err(flush_failed())
        } else {
            target.commit()
        };
        metrics::counter!(crate::metrics::COMMITS).increment(1);
        metrics::histogram!(crate::metrics::COMMIT_SECONDS).record(started.elapsed().as_secs_f64());
        metrics::histogram!(crate::metrics::COMMIT_WRITES).record(batch.len() as f64);
        if let Err(e) = &result {
            mark_failed(failed, e);
        }
        stats.flushes.fetch_add(1, Ordering::Relaxed);
        stats.writers.fetch_add(batch.len() as u64, Ordering::Relaxed);
        let answer = result.map_err(|_| flush_failed());
        for ticket in batch {
            let _ = ticket.send(answer.clone());
        }
    }
    // Dropping the receiver here makes every later `commit` fail at once.
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_that_cannot_be_opened_for_fsync_refuses_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().path(dir.path().join("db-dir")).open().unwrap();
        // A directory without sled's log file: nothing could be fsynced there.
        let elsewhere = tempfile::tempdir().unwrap();
        let err = FlushTarget::open(db.clone(), elsewhere.path(), None)
            .err()
            .expect("refused");
        assert!(
            matches!(&err, Error::Unavailable(m) if m.contains("cannot open the storage log")),
            "{err:?}"
        );
        // Where the log is, it opens and a flush is a real fsync.
        let target = FlushTarget::open(db, &dir.path().join("db-dir"), None).unwrap();
        target.flush().unwrap();
    }

    #[test]
    fn after_an_injected_failure_every_commit_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().path(dir.path()).open().unwrap();
        let target = FlushTarget::open(db.clone(), dir.path(), Some(2)).unwrap();
        let flusher = Flusher::start(target, Durability::Durable).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(async {
            flusher.commit().await.unwrap();
            assert!(flusher.commit().await.is_err(), "the injected failure");
            assert!(flusher.check_writable().is_err());
            assert!(flusher.commit().await.is_err(), "refused from then on");
            assert!(flusher.flush_now().is_err());
        });
    }
}
