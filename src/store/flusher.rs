//! Group commit: one named flusher thread makes writes durable for every
//! writer waiting at that moment.
//!
//! A writer applies its change to sled (in memory, ordered in sled's log),
//! then queues a ticket and waits. The flusher takes every queued ticket, runs
//! one `Db::flush()` — which writes the log up to at least every change made
//! before the tickets were queued — then `fdatasync`s the log file (sled's
//! flush uses `sync_file_range`, which covers neither the file's size nor the
//! disk's write cache), and answers all of them. Under load one fsync serves many
//! writers, so throughput scales with concurrency rather than with the
//! disk's fsync rate.
//!
//! Why a dedicated thread and not `flush_async` per writer: concurrent
//! `flush_async` calls deadlock in sled 0.34.7 (upstream issue #1308,
//! reproduced here at ≥ 8 callers), and a thread that blocks in fsync must not
//! be a tokio worker.

use crate::error::{Error, Result};
use std::fs::File;
use std::sync::atomic::{AtomicU64, Ordering};
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

/// Handle to the flusher thread.
pub struct Flusher {
    mode: Durability,
    queue: mpsc::Sender<Message>,
    thread: Mutex<Option<JoinHandle<()>>>,
    stats: Arc<FlushStats>,
}

impl Flusher {
    /// Starts the flusher for `db`, fsyncing `log` after each flush.
    pub fn start(db: sled::Db, log: Option<File>, mode: Durability) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel::<Message>();
        let stats = Arc::new(FlushStats::default());
        let thread_stats = stats.clone();
        let thread = std::thread::Builder::new()
            .name("statusd-flusher".into())
            .spawn(move || run(db, log, rx, &thread_stats))?;
        Ok(Flusher {
            mode,
            queue: tx,
            thread: Mutex::new(Some(thread)),
            stats,
        })
    }

    /// Waits until every change made before this call is durable.
    pub async fn commit(&self) -> Result<()> {
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

fn run(db: sled::Db, log: Option<File>, queue: mpsc::Receiver<Message>, stats: &FlushStats) {
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
        let result = flush_once(&db, log.as_ref());
        if let Err(e) = &result {
            tracing::error!(error = %e, "flush failed; writes are not being acknowledged");
        }
        stats.flushes.fetch_add(1, Ordering::Relaxed);
        stats.writers.fetch_add(batch.len() as u64, Ordering::Relaxed);
        for ticket in batch {
            let _ = ticket.send(result.clone());
        }
    }
    // Dropping the receiver here makes every later `commit` fail at once.
}

fn flush_once(db: &sled::Db, log: Option<&File>) -> Result<()> {
    db.flush()?;
    if let Some(file) = log {
        file.sync_data()
            .map_err(|e| Error::Unavailable(format!("cannot fsync the storage log: {e}")))?;
    }
    Ok(())
}
