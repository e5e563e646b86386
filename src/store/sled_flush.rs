//! What a checkpoint makes durable in sled: its log, and the files of its
//! data directory that the log may point to.
//!
//! sled's `Db::flush()` writes its log up to at least every change made
//! before the call, but uses `sync_file_range`, which covers neither the
//! file's size nor the disk's write cache; so the flush is followed by an
//! `fdatasync` of the log file, and by making any file sled created under
//! `blobs/` durable (see [`super::durable_dir`]). Since the write-ahead log
//! ([`super::wal`]) carries every commit, this runs only at checkpoints: when
//! a log segment is full, at open after a replay, and at shutdown.

use super::durable_dir;
use crate::error::{Error, Result};
use std::collections::HashSet;
use std::ffi::OsString;
use std::fs::File;
use std::path::PathBuf;
use std::sync::Mutex;

/// sled's log and blob directory, ready to be flushed.
pub struct FlushTarget {
    db: sled::Db,
    log: File,
    blobs: PathBuf,
    /// Blob files already fsynced (with `blobs/` after them).
    synced_blobs: Mutex<HashSet<OsString>>,
}

impl FlushTarget {
    /// The log file `<dir>/db` must open: without it nothing could be fsynced,
    /// so a store that cannot open it must not start.
    pub fn open(db: sled::Db, dir: &std::path::Path) -> Result<Self> {
        let path = dir.join("db");
        let log = File::open(&path).map_err(|e| {
            Error::Unavailable(format!("cannot open the storage log {} for fsync: {e}", path.display()))
        })?;
        Ok(FlushTarget {
            db,
            log,
            blobs: dir.join("blobs"),
            synced_blobs: Mutex::new(HashSet::new()),
        })
    }

    /// One flush: sled's log to the OS, the log to the disk, then any blob
    /// file and the `blobs/` directory.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_that_cannot_be_opened_for_fsync_refuses_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().path(dir.path().join("db-dir")).open().unwrap();
        // A directory without sled's log file: nothing could be fsynced there.
        let elsewhere = tempfile::tempdir().unwrap();
        let err = FlushTarget::open(db.clone(), elsewhere.path()).err().expect("refused");
        assert!(
            matches!(&err, Error::Unavailable(m) if m.contains("cannot open the storage log")),
            "{err:?}"
        );
        // Where the log is, it opens and a flush is a real fsync.
        let target = FlushTarget::open(db, &dir.path().join("db-dir")).unwrap();
        target.flush().unwrap();
    }
}
