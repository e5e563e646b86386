//! Directory durability: the names of sled's files survive a power loss.
//!
//! `fsync` of a file makes its contents durable, not its name: a file created
//! (or renamed) in a directory that is never fsynced can vanish at a power
//! loss, contents and all. sled fsyncs neither its data directory nor
//! `blobs/`, so statusd does it: at open, every file sled has created and the
//! directories holding them (up to the data directory's parent, in case the
//! data directory itself is new); and after every flush, any file that has
//! appeared under `blobs/` since the last look.
//!
//! statusd keeps its records small enough that sled never writes a blob (see
//! [`crate::model::limits::MAX_RECORD_BYTES`]), so the per-flush look is one
//! `readdir` of an empty directory; it is there so that a blob, should one
//! ever be written, is durable before the write that needed it is
//! acknowledged.

use crate::error::{Error, Result};
use std::collections::HashSet;
use std::ffi::OsString;
use std::fs::File;
use std::path::Path;

/// An I/O failure on `path`, said as what could not be done.
pub(super) fn io_error(what: &str, path: &Path, e: std::io::Error) -> Error {
    Error::Unavailable(format!("cannot {what} {}: {e}", path.display()))
}

/// fsyncs one directory (its entries: names, creations, renames, removals).
pub fn sync_dir(path: &Path) -> Result<()> {
    File::open(path)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_error("fsync the directory", path, e))
}

/// Makes a data directory and everything in it durable: every file's
/// contents, then every directory's entries, deepest first, then the data
/// directory's own entry in its parent.
pub fn sync_tree(root: &Path) -> Result<()> {
    sync_contents(root)?;
    if let Some(parent) = root.parent().filter(|p| !p.as_os_str().is_empty()) {
        sync_dir(parent)?;
    }
    Ok(())
}

/// fsyncs one file's contents.
fn sync_file(path: &Path) -> Result<()> {
    File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(|e| io_error("fsync", path, e))
}

fn sync_contents(dir: &Path) -> Result<()> {
    let entries = std::fs::read_dir(dir).map_err(|e| io_error("read the directory", dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| io_error("read the directory", dir, e))?;
        let path = entry.path();
        let kind = entry.file_type().map_err(|e| io_error("stat", &path, e))?;
        if kind.is_dir() {
            sync_contents(&path)?;
        } else if kind.is_file() {
            sync_file(&path)?;
        }
    }
    sync_dir(dir)
}

/// fsyncs each file of `dir` not in `synced` (then records it there), and
/// then `dir` if there was any. A missing directory holds nothing. Cheap when
/// nothing is new: one `readdir`.
pub fn sync_new_files(dir: &Path, synced: &mut HashSet<OsString>) -> Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_error("read the directory", dir, e)),
    };
    let mut present = HashSet::new();
    let mut new = false;
    for entry in entries {
        let entry = entry.map_err(|e| io_error("read the directory", dir, e))?;
        let name = entry.file_name();
        if !synced.contains(&name) {
            sync_file(&entry.path())?;
            new = true;
        }
        present.insert(name);
    }
    if new {
        sync_dir(dir)?;
    }
    *synced = present;
    Ok(())
}
