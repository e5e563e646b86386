//! A power-loss test file system, after Jepsen's LazyFS: an in-memory FUSE
//! file system that keeps everything not yet fsynced "in the page cache" and
//! loses it at a simulated crash.
//!
//! SIGKILL leaves the kernel's page cache intact, so a crash test that only
//! kills the process cannot notice a missing fsync. Here every inode has two
//! states, `current` (what processes see) and `durable` (what survives a power
//! loss):
//!
//! - **File data and size.** Writes and truncations change `current`. `fsync`
//!   or `fdatasync` of the file copies its whole `current` contents, size
//!   included, to `durable`. (`sync_file_range` is handled by the kernel alone
//!   and never reaches the file system, so it makes nothing durable — as on a
//!   real disk, where it does not flush the drive's cache either.)
//! - **Directory entries.** Creating, unlinking and renaming change the
//!   directory's `current` name → inode map. `fsync` of the directory (FUSE
//!   `fsyncdir`) copies its `current` map to `durable`. A file's own fsync does
//!   not make its name durable: a new file whose directory was never fsynced
//!   disappears at a crash even if its data was fsynced (POSIX; ext4 and xfs
//!   happen to be kinder, other file systems are not).
//! - **Renames** change two directories (or one twice); each side becomes
//!   durable with an fsync of its directory. Before either, a crash gives the
//!   old name back; with only the target directory fsynced, the file may come
//!   back under both names (a directory reachable twice keeps only its first
//!   name).
//! - **New inodes.** A file's durable contents start empty, a directory's
//!   durable entries start empty: a newly created file named by a durable
//!   directory entry but never fsynced itself comes back empty.
//!
//! [`Disk::crash`] sets `current := durable` everywhere and forgets every
//! inode no longer reachable from the root through durable entries. To keep
//! the kernel's caches out of the picture, a crash is only possible while the
//! file system is unmounted: mount, run, kill the processes using it,
//! unmount, crash, mount again ([`PowerLossDir::power_loss`]). Attributes and
//! entries are given to the kernel with a zero TTL and files are opened with
//! `direct_io`, so the kernel caches nothing between requests either.
//!
//! Mounting needs `/dev/fuse` and root: fuser, built without its `libfuse`
//! feature, calls mount(2) directly (no `fusermount`, no libfuse).
//! [`PowerLossDir::start`] returns the reason as an `Err` when that is not
//! possible, for tests to skip.
#![allow(dead_code)]

use fuser::{
    AccessFlags, BackgroundSession, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo,
    LockOwner, MountOption, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty,
    ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, Request, TimeOrNow, WriteFlags,
};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

/// File contents are kept in chunks shared between `current` and `durable`
/// (copy on write), so an fsync of a large file copies pointers, not bytes.
const CHUNK: usize = 64 * 1024;
/// Nothing is cached by the kernel between requests.
const TTL: Duration = Duration::ZERO;
const ROOT: u64 = 1;

/// Contents of a file: `size` bytes; a missing chunk reads as zeros, and the
/// bytes of a chunk past `size` are always zero.
#[derive(Clone, Default)]
struct Content {
    size: u64,
    chunks: Vec<Option<Arc<Vec<u8>>>>,
}

impl Content {
    fn chunk_count(size: u64) -> usize {
        size.div_ceil(CHUNK as u64) as usize
    }

    fn read(&self, offset: u64, len: usize) -> Vec<u8> {
        if offset >= self.size {
            return Vec::new();
        }
        let end = self.size.min(offset + len as u64);
        let mut out = vec![0u8; (end - offset) as usize];
        let mut pos = offset;
        while pos < end {
            let index = (pos / CHUNK as u64) as usize;
            let within = (pos % CHUNK as u64) as usize;
            let n = ((CHUNK - within) as u64).min(end - pos) as usize;
            if let Some(Some(chunk)) = self.chunks.get(index) {
                let at = (pos - offset) as usize;
                out[at..at + n].copy_from_slice(&chunk[within..within + n]);
            }
            pos += n as u64;
        }
        out
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let end = offset + data.len() as u64;
        let needed = Self::chunk_count(end);
        if self.chunks.len() < needed {
            self.chunks.resize(needed, None);
        }
        let mut pos = offset;
        while pos < end {
            let index = (pos / CHUNK as u64) as usize;
            let within = (pos % CHUNK as u64) as usize;
            let n = ((CHUNK - within) as u64).min(end - pos) as usize;
            let chunk = self.chunks[index].get_or_insert_with(|| Arc::new(vec![0; CHUNK]));
            let from = (pos - offset) as usize;
            Arc::make_mut(chunk)[within..within + n].copy_from_slice(&data[from..from + n]);
            pos += n as u64;
        }
        self.size = self.size.max(end);
    }

    fn set_len(&mut self, size: u64) {
        if size < self.size {
            self.chunks.truncate(Self::chunk_count(size));
            let within = (size % CHUNK as u64) as usize;
            if within != 0 {
                if let Some(Some(chunk)) = self.chunks.get_mut((size / CHUNK as u64) as usize) {
                    Arc::make_mut(chunk)[within..].fill(0);
                }
            }
        }
        self.size = size;
    }
}

enum Body {
    File {
        current: Content,
        durable: Content,
    },
    Dir {
        current: BTreeMap<OsString, u64>,
        durable: BTreeMap<OsString, u64>,
    },
}

struct Node {
    body: Body,
    perm: u16,
    uid: u32,
    gid: u32,
    mtime: SystemTime,
    ctime: SystemTime,
}

impl Node {
    fn new(body: Body, perm: u16, uid: u32, gid: u32) -> Node {
        let now = SystemTime::now();
        Node {
            body,
            perm,
            uid,
            gid,
            mtime: now,
            ctime: now,
        }
    }

    fn kind(&self) -> FileType {
        match self.body {
            Body::File { .. } => FileType::RegularFile,
            Body::Dir { .. } => FileType::Directory,
        }
    }

    fn attr(&self, ino: u64) -> FileAttr {
        let (size, nlink) = match &self.body {
            Body::File { current, .. } => (current.size, 1),
            Body::Dir { current, .. } => (current.len() as u64, 2),
        };
        FileAttr {
            ino: INodeNo(ino),
            size,
            blocks: size.div_ceil(512),
            atime: self.mtime,
            mtime: self.mtime,
            ctime: self.ctime,
            crtime: self.ctime,
            kind: self.kind(),
            perm: self.perm,
            nlink,
            uid: self.uid,
            gid: self.gid,
            rdev: 0,
            blksize: 4096,
            flags: 0,
        }
    }
}

/// Counters, for tests to show what the file system saw.
#[derive(Debug, Default, Clone, Copy)]
pub struct Stats {
    /// `fsync`/`fdatasync` of files.
    pub file_syncs: u64,
    /// `fsync` of directories.
    pub dir_syncs: u64,
    /// Simulated power losses.
    pub crashes: u64,
    /// Inodes forgotten by crashes (unreachable from durable entries).
    pub inodes_lost: u64,
}

struct State {
    nodes: HashMap<u64, Node>,
    next_ino: u64,
    next_fh: u64,
    /// Open directory handles: a snapshot of the entries taken at opendir.
    dir_handles: HashMap<u64, Vec<(u64, FileType, OsString)>>,
    mounted: bool,
    stats: Stats,
}

impl State {
    fn node(&self, ino: INodeNo) -> Result<&Node, Errno> {
        self.nodes.get(&ino.0).ok_or(Errno::ENOENT)
    }

    fn node_mut(&mut self, ino: INodeNo) -> Result<&mut Node, Errno> {
        self.nodes.get_mut(&ino.0).ok_or(Errno::ENOENT)
    }

    fn entries(&self, dir: INodeNo) -> Result<&BTreeMap<OsString, u64>, Errno> {
        match &self.node(dir)?.body {
            Body::Dir { current, .. } => Ok(current),
            Body::File { .. } => Err(Errno::ENOTDIR),
        }
    }

    fn entries_mut(&mut self, dir: INodeNo) -> Result<&mut BTreeMap<OsString, u64>, Errno> {
        let node = self.node_mut(dir)?;
        node.mtime = SystemTime::now();
        node.ctime = node.mtime;
        match &mut node.body {
            Body::Dir { current, .. } => Ok(current),
            Body::File { .. } => Err(Errno::ENOTDIR),
        }
    }

    fn lookup(&self, dir: INodeNo, name: &OsStr) -> Result<u64, Errno> {
        self.entries(dir)?.get(name).copied().ok_or(Errno::ENOENT)
    }

    /// Links a new inode as `dir/name`.
    fn create(&mut self, dir: INodeNo, name: &OsStr, node: Node) -> Result<FileAttr, Errno> {
        if self.entries(dir)?.contains_key(name) {
            return Err(Errno::EEXIST);
        }
        let ino = self.next_ino;
        self.next_ino += 1;
        let attr = node.attr(ino);
        self.nodes.insert(ino, node);
        self.entries_mut(dir)?.insert(name.to_owned(), ino);
        Ok(attr)
    }

    fn file_mut(&mut self, ino: INodeNo) -> Result<&mut Content, Errno> {
        let node = self.node_mut(ino)?;
        node.mtime = SystemTime::now();
        node.ctime = node.mtime;
        match &mut node.body {
            Body::File { current, .. } => Ok(current),
            Body::Dir { .. } => Err(Errno::EISDIR),
        }
    }

    fn is_empty_dir(&self, ino: u64) -> bool {
        matches!(&self.nodes[&ino].body, Body::Dir { current, .. } if current.is_empty())
    }

    fn rename(
        &mut self,
        parent: INodeNo,
        name: &OsStr,
        new_parent: INodeNo,
        new_name: &OsStr,
        flags: RenameFlags,
    ) -> Result<(), Errno> {
        if flags.contains(RenameFlags::RENAME_EXCHANGE) || flags.contains(RenameFlags::RENAME_WHITEOUT) {
            return Err(Errno::EINVAL);
        }
        let source = self.lookup(parent, name)?;
        self.entries(new_parent)?;
        if let Ok(target) = self.lookup(new_parent, new_name) {
            if flags.contains(RenameFlags::RENAME_NOREPLACE) {
                return Err(Errno::EEXIST);
            }
            if target == source {
                return Ok(());
            }
            let (source_dir, target_dir) = (
                self.nodes[&source].kind() == FileType::Directory,
                self.nodes[&target].kind() == FileType::Directory,
            );
            match (source_dir, target_dir) {
                (false, true) => return Err(Errno::EISDIR),
                (true, false) => return Err(Errno::ENOTDIR),
                (true, true) if !self.is_empty_dir(target) => return Err(Errno::ENOTEMPTY),
                _ => {}
            }
        }
        self.entries_mut(parent)?.remove(name);
        self.entries_mut(new_parent)?.insert(new_name.to_owned(), source);
        Ok(())
    }

    fn remove(&mut self, parent: INodeNo, name: &OsStr, dir: bool) -> Result<(), Errno> {
        let ino = self.lookup(parent, name)?;
        match (dir, self.nodes[&ino].kind() == FileType::Directory) {
            (false, true) => return Err(Errno::EISDIR),
            (true, false) => return Err(Errno::ENOTDIR),
            (true, true) if !self.is_empty_dir(ino) => return Err(Errno::ENOTEMPTY),
            _ => {}
        }
        // The inode itself stays until the next crash: it may still be open,
        // and a durable entry may still name it.
        self.entries_mut(parent)?.remove(name);
        Ok(())
    }

    fn sync(&mut self, ino: INodeNo) -> Result<(), Errno> {
        let node = self.node_mut(ino)?;
        match &mut node.body {
            Body::File { current, durable } => {
                *durable = current.clone();
                self.stats.file_syncs += 1;
            }
            Body::Dir { current, durable } => {
                *durable = current.clone();
                self.stats.dir_syncs += 1;
            }
        }
        Ok(())
    }

    fn crash(&mut self) {
        assert!(!self.mounted, "a crash is simulated only while unmounted");
        for node in self.nodes.values_mut() {
            match &mut node.body {
                Body::File { current, durable } => *current = durable.clone(),
                Body::Dir { current, durable } => *current = durable.clone(),
            }
        }
        let mut reachable = HashSet::from([ROOT]);
        let mut queue = vec![ROOT];
        while let Some(dir) = queue.pop() {
            let Body::Dir { current, .. } = &self.nodes[&dir].body else {
                continue;
            };
            let mut second_names = Vec::new();
            for (name, &child) in current {
                let is_dir = self.nodes[&child].kind() == FileType::Directory;
                if reachable.insert(child) {
                    if is_dir {
                        queue.push(child);
                    }
                } else if is_dir {
                    second_names.push(name.clone());
                }
            }
            if let Some(Node {
                body: Body::Dir { current, durable },
                ..
            }) = self.nodes.get_mut(&dir)
            {
                for name in second_names {
                    current.remove(&name);
                    durable.remove(&name);
                }
            }
        }
        let before = self.nodes.len();
        self.nodes.retain(|ino, _| reachable.contains(ino));
        self.stats.inodes_lost += (before - self.nodes.len()) as u64;
        self.stats.crashes += 1;
        self.dir_handles.clear();
    }
}

/// The disk: the whole state of the file system, shared by every mount of it.
#[derive(Clone)]
pub struct Disk(Arc<Mutex<State>>);

impl Default for Disk {
    fn default() -> Self {
        Self::new()
    }
}

impl Disk {
    /// An empty file system (its root directory is durable).
    pub fn new() -> Disk {
        let root = Node::new(
            Body::Dir {
                current: BTreeMap::new(),
                durable: BTreeMap::new(),
            },
            0o755,
            unsafe { libc::geteuid() },
            unsafe { libc::getegid() },
        );
        Disk(Arc::new(Mutex::new(State {
            nodes: HashMap::from([(ROOT, root)]),
            next_ino: ROOT + 1,
            next_fh: 1,
            dir_handles: HashMap::new(),
            mounted: false,
            stats: Stats::default(),
        })))
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Simulates a power loss: drops everything not made durable. Panics if
    /// the disk is mounted.
    pub fn crash(&self) {
        self.state().crash();
    }

    /// The counters so far.
    pub fn stats(&self) -> Stats {
        self.state().stats
    }

    /// Mounts the disk at `at` (an existing, empty directory).
    pub fn mount(&self, at: &Path) -> io::Result<Mount> {
        let path = at.canonicalize()?;
        {
            let mut state = self.state();
            if state.mounted {
                return Err(io::Error::other("the disk is already mounted"));
            }
            state.mounted = true;
        }
        let mut config = fuser::Config::default();
        config.mount_options = vec![
            MountOption::FSName("lazyfs".into()),
            MountOption::Subtype("lazyfs".into()),
        ];
        config.n_threads = Some(2);
        match fuser::spawn_mount(LazyFs { disk: self.clone() }, &path, &config) {
            Ok(session) => Ok(Mount {
                session: Some(session),
                path,
                disk: self.clone(),
            }),
            Err(e) => {
                self.state().mounted = false;
                Err(e)
            }
        }
    }
}

/// A mounted [`Disk`]; unmounted on drop.
pub struct Mount {
    session: Option<BackgroundSession>,
    path: PathBuf,
    disk: Disk,
}

impl Mount {
    /// The mount point.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Unmounts (waiting for files still being closed) and stops the server.
    pub fn unmount(mut self) -> io::Result<()> {
        self.unmount_inner(false)
    }

    fn unmount_inner(&mut self, lazy_fallback: bool) -> io::Result<()> {
        let Some(session) = self.session.take() else {
            return Ok(());
        };
        let path = CString::new(self.path.as_os_str().as_bytes()).map_err(io::Error::other)?;
        // A killed process's files are released asynchronously: retry EBUSY.
        let deadline = Instant::now() + Duration::from_secs(10);
        let result = loop {
            if unsafe { libc::umount2(path.as_ptr(), 0) } == 0 {
                break Ok(());
            }
            let err = io::Error::last_os_error();
            match err.raw_os_error() {
                Some(libc::EBUSY) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
                _ => break Err(err),
            }
        };
        match result {
            Ok(()) => {
                // The session's threads end once the kernel closes the connection.
                let joined = session.join();
                self.disk.state().mounted = false;
                joined
            }
            Err(e) => {
                if lazy_fallback {
                    unsafe { libc::umount2(path.as_ptr(), libc::MNT_DETACH) };
                    // The server threads may still be needed by a process that
                    // holds a file open: leave them running, detached.
                    drop(session);
                    self.disk.state().mounted = false;
                } else {
                    self.session = Some(session);
                }
                Err(io::Error::new(
                    e.kind(),
                    format!("unmount {}: {e}", self.path.display()),
                ))
            }
        }
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if let Err(e) = self.unmount_inner(true) {
            eprintln!("lazyfs: {e}");
        }
    }
}

/// Whether FUSE can be mounted here; `Err(reason)` if not.
pub fn check_available() -> Result<(), String> {
    if !Path::new("/dev/fuse").exists() {
        return Err("/dev/fuse does not exist".into());
    }
    if unsafe { libc::geteuid() } != 0 {
        return Err("mounting FUSE without fusermount needs root".into());
    }
    Ok(())
}

/// A temporary directory with a [`Disk`] mounted on it, that can lose power.
pub struct PowerLossDir {
    pub disk: Disk,
    mount: Option<Mount>,
    dir: tempfile::TempDir,
}

impl PowerLossDir {
    /// Mounts a new disk on a temporary directory; `Err(reason)` when FUSE
    /// cannot be used here (tests skip then).
    pub fn start() -> Result<PowerLossDir, String> {
        check_available()?;
        let dir = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
        let disk = Disk::new();
        let mount = disk
            .mount(dir.path())
            .map_err(|e| format!("cannot mount FUSE on {}: {e}", dir.path().display()))?;
        Ok(PowerLossDir {
            disk,
            mount: Some(mount),
            dir,
        })
    }

    /// The mount point.
    pub fn path(&self) -> &Path {
        self.mount.as_ref().map_or(self.dir.path(), |m| m.path())
    }

    /// Unmounts, crashes the disk and mounts it again. Every process using the
    /// mount must have been killed (else the unmount fails with EBUSY).
    pub fn power_loss(&mut self) -> io::Result<()> {
        if let Some(mount) = self.mount.take() {
            mount.unmount()?;
        }
        self.disk.crash();
        self.mount = Some(self.disk.mount(self.dir.path())?);
        Ok(())
    }
}

impl Drop for PowerLossDir {
    fn drop(&mut self) {
        // Unmount before the temporary directory is removed.
        self.mount.take();
    }
}

/// The FUSE server of one mount.
struct LazyFs {
    disk: Disk,
}

fn reply_entry(result: Result<FileAttr, Errno>, reply: ReplyEntry) {
    match result {
        Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
        Err(e) => reply.error(e),
    }
}

fn reply_attr(result: Result<FileAttr, Errno>, reply: ReplyAttr) {
    match result {
        Ok(attr) => reply.attr(&TTL, &attr),
        Err(e) => reply.error(e),
    }
}

fn reply_empty(result: Result<(), Errno>, reply: ReplyEmpty) {
    match result {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(e),
    }
}

fn file_node(req: &Request, mode: u32, umask: u32) -> Node {
    Node::new(
        Body::File {
            current: Content::default(),
            durable: Content::default(),
        },
        (mode & !umask & 0o7777) as u16,
        req.uid(),
        req.gid(),
    )
}

impl Filesystem for LazyFs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let state = self.disk.state();
        reply_entry(state.lookup(parent, name).map(|ino| state.nodes[&ino].attr(ino)), reply);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        reply_attr(self.disk.state().node(ino).map(|n| n.attr(ino.0)), reply);
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let mut state = self.disk.state();
        let result = (|| {
            if let Some(size) = size {
                state.file_mut(ino)?.set_len(size);
            }
            let node = state.node_mut(ino)?;
            if let Some(mode) = mode {
                node.perm = (mode & 0o7777) as u16;
            }
            if let Some(uid) = uid {
                node.uid = uid;
            }
            if let Some(gid) = gid {
                node.gid = gid;
            }
            match mtime {
                Some(TimeOrNow::SpecificTime(t)) => node.mtime = t,
                Some(TimeOrNow::Now) => node.mtime = SystemTime::now(),
                None => {}
            }
            Ok(node.attr(ino.0))
        })();
        reply_attr(result, reply);
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        if mode & libc::S_IFMT != libc::S_IFREG {
            return reply.error(Errno::EPERM);
        }
        reply_entry(
            self.disk.state().create(parent, name, file_node(req, mode, umask)),
            reply,
        );
    }

    fn mkdir(&self, req: &Request, parent: INodeNo, name: &OsStr, mode: u32, umask: u32, reply: ReplyEntry) {
        let node = Node::new(
            Body::Dir {
                current: BTreeMap::new(),
                durable: BTreeMap::new(),
            },
            (mode & !umask & 0o7777) as u16,
            req.uid(),
            req.gid(),
        );
        reply_entry(self.disk.state().create(parent, name, node), reply);
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        reply_empty(self.disk.state().remove(parent, name, false), reply);
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        reply_empty(self.disk.state().remove(parent, name, true), reply);
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        reply_empty(self.disk.state().rename(parent, name, newparent, newname, flags), reply);
    }

    fn open(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.disk.state().node(ino).map(Node::kind) {
            Ok(FileType::RegularFile) => reply.opened(FileHandle(0), FopenFlags::FOPEN_DIRECT_IO),
            Ok(_) => reply.error(Errno::EISDIR),
            Err(e) => reply.error(e),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let state = self.disk.state();
        match state.node(ino).map(|n| &n.body) {
            Ok(Body::File { current, .. }) => reply.data(&current.read(offset, size as usize)),
            Ok(Body::Dir { .. }) => reply.error(Errno::EISDIR),
            Err(e) => reply.error(e),
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        match self.disk.state().file_mut(ino) {
            Ok(content) => {
                content.write(offset, data);
                reply.written(data.len() as u32);
            }
            Err(e) => reply.error(e),
        }
    }

    fn flush(&self, _req: &Request, _ino: INodeNo, _fh: FileHandle, _lock_owner: LockOwner, reply: ReplyEmpty) {
        // close() is not a sync.
        reply.ok();
    }

    fn fsync(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        reply_empty(self.disk.state().sync(ino), reply);
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let mut state = self.disk.state();
        let listing = match state.entries(ino) {
            Ok(entries) => entries
                .iter()
                .map(|(name, &child)| (child, state.nodes[&child].kind(), name.clone()))
                .collect(),
            Err(e) => return reply.error(e),
        };
        let fh = state.next_fh;
        state.next_fh += 1;
        state.dir_handles.insert(fh, listing);
        reply.opened(FileHandle(fh), FopenFlags::empty());
    }

    fn readdir(&self, _req: &Request, ino: INodeNo, fh: FileHandle, offset: u64, mut reply: ReplyDirectory) {
        let state = self.disk.state();
        let Some(listing) = state.dir_handles.get(&fh.0) else {
            return reply.error(Errno::EBADF);
        };
        let dots = [
            (ino.0, FileType::Directory, OsString::from(".")),
            (ino.0, FileType::Directory, "..".into()),
        ];
        for (i, (child, kind, name)) in dots.iter().chain(listing).enumerate().skip(offset as usize) {
            if reply.add(INodeNo(*child), i as u64 + 1, *kind, name) {
                break;
            }
        }
        reply.ok();
    }

    fn releasedir(&self, _req: &Request, _ino: INodeNo, fh: FileHandle, _flags: OpenFlags, reply: ReplyEmpty) {
        self.disk.state().dir_handles.remove(&fh.0);
        reply.ok();
    }

    fn fsyncdir(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        reply_empty(self.disk.state().sync(ino), reply);
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        // 4 TiB, all free: statusd refuses writes when statvfs shows little space.
        let blocks = 1u64 << 30;
        reply.statfs(blocks, blocks, blocks, 1 << 20, 1 << 20, 4096, 255, 4096);
    }

    fn access(&self, _req: &Request, ino: INodeNo, _mask: AccessFlags, reply: ReplyEmpty) {
        reply_empty(self.disk.state().node(ino).map(|_| ()), reply);
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        if mode & libc::S_IFMT != libc::S_IFREG && mode & libc::S_IFMT != 0 {
            return reply.error(Errno::EPERM);
        }
        match self.disk.state().create(parent, name, file_node(req, mode, umask)) {
            Ok(attr) => reply.created(&TTL, &attr, Generation(0), FileHandle(0), FopenFlags::FOPEN_DIRECT_IO),
            Err(e) => reply.error(e),
        }
    }

    fn fallocate(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        if mode != 0 {
            return reply.error(Errno::EOPNOTSUPP);
        }
        let result = self.disk.state().file_mut(ino).map(|content| {
            if offset + length > content.size {
                content.set_len(offset + length);
            }
        });
        reply_empty(result, reply);
    }
}
