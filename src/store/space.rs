//! The free-space guard: writes are refused while the data directory's file
//! system has less free space than a reserve, before sled runs out of it.
//!
//! Why before: sled 0.34 treats an I/O error as fatal for the open database —
//! once a write fails with ENOSPC, every later read and write returns that
//! error until the process restarts. Refusing writes while the reserve is
//! short keeps sled healthy, so reads keep working and writes resume by
//! themselves once space is freed. A named thread samples `statvfs` a few
//! times a second; the check on the write path is one atomic load.

use crate::error::{Error, Result};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How often free space is sampled.
const SAMPLE_EVERY: Duration = Duration::from_millis(100);

struct Shared {
    available: AtomicU64,
    stop: AtomicBool,
}

/// Guards writes by the free space of one directory's file system.
pub struct SpaceGuard {
    shared: Arc<Shared>,
    reserve: u64,
    thread: Option<std::thread::JoinHandle<()>>,
}

fn available(path: &std::path::Path) -> u64 {
    match rustix::fs::statvfs(path) {
        Ok(s) => s.f_bavail.saturating_mul(s.f_frsize),
        // If the file system cannot be asked, do not block writes on it.
        Err(_) => u64::MAX,
    }
}

impl SpaceGuard {
    /// Starts sampling `path`; writes need `reserve` bytes free.
    pub fn start(path: PathBuf, reserve: u64) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            available: AtomicU64::new(available(&path)),
            stop: AtomicBool::new(false),
        });
        let sampler = shared.clone();
        let thread = std::thread::Builder::new()
            .name("statusd-space".into())
            .spawn(move || {
                while !sampler.stop.load(Ordering::Relaxed) {
                    std::thread::sleep(SAMPLE_EVERY);
                    sampler.available.store(available(&path), Ordering::Relaxed);
                }
            })?;
        Ok(SpaceGuard {
            shared,
            reserve,
            thread: Some(thread),
        })
    }

    /// `Ok` while the reserve is free; else `InsufficientStorage`.
    pub fn check(&self) -> Result<()> {
        let free = self.shared.available.load(Ordering::Relaxed);
        if free >= self.reserve {
            return Ok(());
        }
        Err(Error::InsufficientStorage(format!(
            "the data directory's disk has {} KiB free, below the {} KiB reserve (--min-free-mb); \
             writes resume once space is freed",
            free / 1024,
            self.reserve / 1024
        )))
    }
}

impl Drop for SpaceGuard {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
