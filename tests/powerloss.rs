//! Power loss: the real binary on a file system that forgets whatever was not
//! fsynced (tests/lazyfs), concurrent writers over gRPC and REST, then SIGKILL,
//! unmount, crash, remount, restart — and every acknowledged write must be
//! there, with the acknowledged content.
//!
//! SIGKILL alone (tests/crash.rs) leaves the kernel's page cache intact and so
//! cannot notice a missing fsync of a file or of a directory; this test can.
//! The writers create parents of the three kinds, including mobile app
//! configurations of several hundred KiB (long `targetedMobileApps`), and
//! user statuses under them. Everything a write stores is derived from its id,
//! so the model is the list of acknowledged ids. A refused write (400/413,
//! INVALID_ARGUMENT/OUT_OF_RANGE/RESOURCE_EXHAUSTED, e.g. a record over the
//! size limit) is simply not acknowledged; a large writer then shrinks its
//! records, so they stay near the largest size accepted.
//!
//! `STATUSD_POWERLOSS_CYCLES` sets the number of power losses (default 3; a
//! long run may use hundreds). Without FUSE (no /dev/fuse, not root, mount
//! refused) the tests print `skipped: <reason>` and pass.

mod common;
mod lazyfs;

use common::{call, try_http, ChildServer, UserMsg, PARENTS};
use futures::StreamExt;
use lazyfs::PowerLossDir;
use statusd::pb;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tonic::transport::Channel;

fn fsync_dir(path: &Path) {
    File::open(path).unwrap().sync_all().unwrap();
}

fn write_file(path: &Path, data: &[u8], sync: bool) {
    let mut f = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(path)
        .unwrap();
    f.write_all(data).unwrap();
    if sync {
        f.sync_all().unwrap();
    }
}

fn read(path: &Path) -> Option<Vec<u8>> {
    match fs::read(path) {
        Ok(data) => Some(data),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => panic!("read {}: {e}", path.display()),
    }
}

/// The file system itself, through the real mount: what was fsynced (data by
/// the file's fsync, names by the directory's) survives a crash, nothing else.
#[test]
fn lazyfs_keeps_only_what_was_fsynced() {
    let mut disk = match PowerLossDir::start() {
        Ok(d) => d,
        Err(reason) => return eprintln!("skipped: {reason}"),
    };
    let root = disk.path().to_owned();
    let big: Vec<u8> = (0..300 * 1024 + 17).map(|i| (i * 7 % 251) as u8).collect();
    for d in ["a", "b", "c", "d", "e"] {
        fs::create_dir(root.join(d)).unwrap();
    }
    fsync_dir(&root);
    // a: a durable file, then written again without fsync; a new file never synced.
    write_file(&root.join("a/f"), b"old contents", true);
    fsync_dir(&root.join("a"));
    OpenOptions::new()
        .append(true)
        .open(root.join("a/f"))
        .unwrap()
        .write_all(b" and more")
        .unwrap();
    write_file(&root.join("a/new"), b"never synced", false);
    // b: a new file fsynced, its directory not.
    write_file(&root.join("b/f"), b"data synced, name not", true);
    // c: file and directory fsynced; a second file whose name is durable but
    // whose data is not; a large file.
    write_file(&root.join("c/f"), b"all synced", true);
    write_file(&root.join("c/empty"), b"name synced, data not", false);
    write_file(&root.join("c/big"), &big, true);
    fsync_dir(&root.join("c"));
    // d: renames over an existing file, without and with the directory's fsync.
    write_file(&root.join("d/x"), b"x", true);
    write_file(&root.join("d/y"), b"y", true);
    write_file(&root.join("d/z"), b"z", true);
    fsync_dir(&root.join("d"));
    fs::rename(root.join("d/x"), root.join("d/y")).unwrap();
    assert_eq!(read(&root.join("d/y")).unwrap(), b"x");
    // e: unlink and truncation without fsync; a directory created and never synced.
    write_file(&root.join("e/gone"), b"unlinked", true);
    write_file(&root.join("e/short"), b"0123456789", true);
    fsync_dir(&root.join("e"));
    fs::remove_file(root.join("e/gone")).unwrap();
    OpenOptions::new()
        .write(true)
        .open(root.join("e/short"))
        .unwrap()
        .set_len(3)
        .unwrap();
    fs::create_dir(root.join("e/sub")).unwrap();
    assert_eq!(fs::read_dir(root.join("e")).unwrap().count(), 2);
    let free = rustix::fs::statvfs(&root).unwrap();
    assert!(
        free.f_bavail * free.f_frsize > 1 << 40,
        "statvfs shows plenty of free space"
    );

    disk.power_loss().unwrap();

    assert_eq!(
        read(&root.join("a/f")).unwrap(),
        b"old contents",
        "unsynced append dropped"
    );
    assert_eq!(read(&root.join("a/new")), None, "unsynced new file gone");
    assert_eq!(
        read(&root.join("b/f")),
        None,
        "a new file's name needs its directory's fsync"
    );
    assert_eq!(read(&root.join("c/f")).unwrap(), b"all synced");
    assert_eq!(
        read(&root.join("c/empty")).unwrap(),
        b"",
        "unsynced data of a durable name"
    );
    assert!(read(&root.join("c/big")).unwrap() == big, "large file intact");
    assert_eq!(
        read(&root.join("d/x")).unwrap(),
        b"x",
        "rename without directory fsync undone"
    );
    assert_eq!(read(&root.join("d/y")).unwrap(), b"y");
    assert_eq!(
        read(&root.join("e/gone")).unwrap(),
        b"unlinked",
        "unlink without fsync undone"
    );
    assert_eq!(read(&root.join("e/short")).unwrap(), b"0123456789", "truncation undone");
    assert!(!root.join("e/sub").exists());

    // A rename made durable by the directory's fsync.
    fs::rename(root.join("d/x"), root.join("d/y")).unwrap();
    fs::rename(root.join("d/z"), root.join("d/w")).unwrap();
    fsync_dir(&root.join("d"));
    // A new directory and a file in it, all synced: both durable.
    fs::create_dir(root.join("e/sub")).unwrap();
    write_file(&root.join("e/sub/f"), b"deep", true);
    fsync_dir(&root.join("e/sub"));
    fsync_dir(&root.join("e"));
    disk.power_loss().unwrap();
    assert_eq!(read(&root.join("d/x")), None);
    assert_eq!(read(&root.join("d/y")).unwrap(), b"x");
    assert_eq!(read(&root.join("d/z")), None);
    assert_eq!(read(&root.join("d/w")).unwrap(), b"z");
    assert_eq!(read(&root.join("e/sub/f")).unwrap(), b"deep");
    let mut names: Vec<_> = fs::read_dir(root.join("d"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["w", "y"]);
    let stats = disk.disk.stats();
    assert_eq!(stats.crashes, 2);
    assert!(stats.inodes_lost >= 4, "{stats:?}");
}

const REST_COLLECTIONS: [&str; 3] = [
    "deviceManagement/deviceCompliancePolicies",
    "deviceAppManagement/mobileAppConfigurations",
    "deviceManagement/deviceConfigurations",
];
/// The kind index of mobile app configurations in [`PARENTS`].
const MOBILE_APPS: usize = 1;
/// The size large records start at: a quarter over the record limit, so the
/// first is refused (and not acknowledged); writers then shrink by a quarter,
/// to just under the limit, the largest records statusd stores.
const LARGE_RECORD_BYTES: usize = statusd::model::limits::MAX_RECORD_BYTES * 5 / 4;
/// Length of one `targetedMobileApps` entry (the limit per entry is 4096).
const APP_ENTRY_BYTES: usize = 2000;

/// The deterministic content of a write, from its id.
fn seed(id: &str) -> u64 {
    id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn devices_count(id: &str) -> i32 {
    (seed(id) % 1_000_000) as i32
}

/// `targetedMobileApps` of a large record of about `bytes` bytes.
fn apps(id: &str, bytes: usize) -> Vec<String> {
    let s = seed(id);
    (0..bytes.div_ceil(APP_ENTRY_BYTES))
        .map(|j| {
            let head = format!("com.example.{id}.{j:04}.");
            let fill = (b'a' + ((s >> (j % 60)) % 26) as u8) as char;
            head.clone() + &fill.to_string().repeat(APP_ENTRY_BYTES - head.len())
        })
        .collect()
}

/// One acknowledged write.
#[derive(Debug, Clone)]
enum Ack {
    /// A parent of kind `PARENTS[kind]`; `large` is the size of its
    /// `targetedMobileApps` (0 for none).
    Parent { kind: usize, id: String, large: usize },
    /// A user status under a parent.
    Status { kind: usize, parent: String, id: String },
}

/// What a request came to.
enum Outcome {
    Acknowledged,
    /// Refused (e.g. too large): not acknowledged, the server is fine.
    Refused,
    /// The server is gone.
    Down,
}

fn grpc_outcome<T>(r: Result<T, tonic::Status>) -> Outcome {
    use tonic::Code;
    match r {
        Ok(_) => Outcome::Acknowledged,
        Err(s)
            if matches!(
                s.code(),
                Code::InvalidArgument | Code::OutOfRange | Code::ResourceExhausted
            ) =>
        {
            Outcome::Refused
        }
        Err(_) => Outcome::Down,
    }
}

fn http_outcome(r: Result<common::HttpResponse, reqwest::Error>) -> Outcome {
    match r {
        Ok(r) if r.status == 201 => Outcome::Acknowledged,
        Ok(r) if r.status == 400 || r.status == 413 => Outcome::Refused,
        _ => Outcome::Down,
    }
}

struct Writer {
    index: usize,
    rest: bool,
    /// Writes large mobile app configurations; else small parents of every kind.
    large: bool,
    /// Current size of this writer's large records.
    large_bytes: usize,
    next_id: u64,
    acks: Vec<Ack>,
    refused: u64,
}

impl Writer {
    async fn create_parent(&self, ch: &Channel, base: &str, kind: usize, id: &str, large: usize) -> Outcome {
        let apps = if large > 0 { apps(id, large) } else { Vec::new() };
        if self.rest {
            let mut body = serde_json::json!({
                "@odata.type": PARENTS[kind].odata_type,
                "id": id,
                "displayName": id,
                "description": format!("{id} description"),
            });
            if large > 0 {
                body["targetedMobileApps"] = serde_json::json!(apps);
            }
            let url = format!("{base}/v1.0/{}", REST_COLLECTIONS[kind]);
            http_outcome(try_http("POST", &url, Some(&body.to_string())).await)
        } else if kind == MOBILE_APPS {
            let req = pb::CreateManagedDeviceMobileAppConfigurationRequest {
                managed_device_mobile_app_configuration: Some(pb::ManagedDeviceMobileAppConfiguration {
                    odata_type: PARENTS[kind].odata_type.into(),
                    id: id.into(),
                    display_name: id.into(),
                    description: Some(format!("{id} description")),
                    targeted_mobile_apps: apps,
                    ..Default::default()
                }),
            };
            let path = "/statusd.v1.MobileAppConfigurations/CreateManagedDeviceMobileAppConfiguration";
            grpc_outcome(call::<_, pb::ManagedDeviceMobileAppConfiguration>(ch, path, req).await)
        } else {
            let api = PARENTS[kind];
            grpc_outcome(api.create(ch, api.new_parent(id, id)).await)
        }
    }

    async fn create_status(&self, ch: &Channel, base: &str, kind: usize, parent: &str, id: &str) -> Outcome {
        let n = devices_count(id);
        if self.rest {
            let url = format!("{base}/beta/{}/{parent}/userStatuses", REST_COLLECTIONS[kind]);
            let body = serde_json::json!({"id": id, "devicesCount": n, "status": "compliant"});
            http_outcome(try_http("POST", &url, Some(&body.to_string())).await)
        } else {
            let msg = UserMsg {
                id: id.into(),
                devices_count: n,
                ..Default::default()
            };
            grpc_outcome(PARENTS[kind].create_status(ch, "User", parent, msg).await)
        }
    }

    /// Writes until the server goes away (or `stop`): a parent, then a few
    /// statuses under it, and again.
    async fn run(mut self, ch: Channel, base: String, stop: Arc<AtomicBool>, cycle: usize) -> Writer {
        'parents: while !stop.load(Ordering::Relaxed) {
            self.next_id += 1;
            let kind = if self.large {
                MOBILE_APPS
            } else {
                (self.next_id as usize + self.index) % 3
            };
            let id = format!("w{}-c{cycle}-p{}", self.index, self.next_id);
            let large = if self.large { self.large_bytes } else { 0 };
            match self.create_parent(&ch, &base, kind, &id, large).await {
                Outcome::Acknowledged => self.acks.push(Ack::Parent {
                    kind,
                    id: id.clone(),
                    large,
                }),
                Outcome::Refused => {
                    self.refused += 1;
                    if self.large {
                        self.large_bytes = (self.large_bytes * 3 / 4).max(APP_ENTRY_BYTES);
                    }
                    continue;
                }
                Outcome::Down => break,
            }
            for s in 0..(if self.large { 3 } else { 8 }) {
                let sid = format!("s{s:03}");
                match self.create_status(&ch, &base, kind, &id, &sid).await {
                    Outcome::Acknowledged => self.acks.push(Ack::Status {
                        kind,
                        parent: id.clone(),
                        id: sid,
                    }),
                    Outcome::Refused => self.refused += 1,
                    Outcome::Down => break 'parents,
                }
            }
        }
        self
    }
}

/// Checks one acknowledged write against the restarted server.
async fn verify(ch: Channel, ack: Ack) -> Result<(), String> {
    match &ack {
        Ack::Parent { kind, id, large } if *kind == MOBILE_APPS => {
            let path = "/statusd.v1.MobileAppConfigurations/GetManagedDeviceMobileAppConfiguration";
            let got: pb::ManagedDeviceMobileAppConfiguration = call(&ch, path, pb::GetParentRequest { id: id.clone() })
                .await
                .map_err(|e| format!("{ack:?}: lost ({:?}: {})", e.code(), e.message()))?;
            let expected = if *large > 0 { apps(id, *large) } else { Vec::new() };
            if got.display_name != *id || got.targeted_mobile_apps != expected {
                return Err(format!(
                    "{ack:?}: content differs (displayName {:?}, {} targetedMobileApps, {} expected)",
                    got.display_name,
                    got.targeted_mobile_apps.len(),
                    expected.len()
                ));
            }
        }
        Ack::Parent { kind, id, .. } => {
            let got = PARENTS[*kind]
                .get(&ch, id)
                .await
                .map_err(|e| format!("{ack:?}: lost ({:?}: {})", e.code(), e.message()))?;
            if got.display_name != *id || got.description.as_deref() != Some(&format!("{id} description")) {
                return Err(format!("{ack:?}: content differs: {got:?}"));
            }
        }
        Ack::Status { kind, parent, id } => {
            let got: UserMsg = PARENTS[*kind]
                .get_status(&ch, "User", parent, id)
                .await
                .map_err(|e| format!("{ack:?}: lost ({:?}: {})", e.code(), e.message()))?;
            if got.devices_count != devices_count(id) {
                return Err(format!("{ack:?}: devicesCount {} stored", got.devices_count));
            }
        }
    }
    Ok(())
}

/// The binary, killed when dropped (a failing test leaves no process behind,
/// and the mount can be unmounted).
struct Statusd(ChildServer);

impl Statusd {
    fn spawn(dir: &Path) -> Statusd {
        Statusd(ChildServer::spawn(dir))
    }

    /// A channel once the server answers; `Err` if it exits instead.
    async fn connect(&mut self) -> Result<Channel, String> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.0.child.try_wait().map_err(|e| e.to_string())? {
                return Err(format!("statusd exited ({status}) instead of serving"));
            }
            match Channel::from_shared(self.0.base.clone()).unwrap().connect().await {
                Ok(ch) => return Ok(ch),
                Err(e) if Instant::now() > deadline => return Err(format!("statusd did not come up: {e}")),
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    }

    fn kill(&mut self) {
        let _ = self.0.child.kill();
        let _ = self.0.child.wait();
    }
}

impl Drop for Statusd {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Restarts statusd and checks every acknowledged write; returns the server.
async fn restart_and_verify(dir: &Path, acks: &[Ack], when: &str) -> Result<(Statusd, Channel), String> {
    let mut server = Statusd::spawn(dir);
    let ch = server
        .connect()
        .await
        .map_err(|e| format!("{when}: {e} ({} acknowledged writes at stake)", acks.len()))?;
    let failures: Vec<String> = futures::stream::iter(acks.iter().cloned())
        .map(|ack| verify(ch.clone(), ack))
        .buffer_unordered(16)
        .filter_map(|r| async move { r.err() })
        .collect()
        .await;
    if !failures.is_empty() {
        let shown: Vec<_> = failures.iter().take(10).collect();
        return Err(format!(
            "{when}: {} of {} acknowledged writes lost or changed; first ones: {shown:#?}",
            failures.len(),
            acks.len()
        ));
    }
    Ok((server, ch))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn power_loss_loses_no_acknowledged_write() {
    let cycles: usize = std::env::var("STATUSD_POWERLOSS_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let mut disk = match PowerLossDir::start() {
        Ok(d) => d,
        Err(reason) => return eprintln!("skipped: {reason}"),
    };
    let data = provision(&disk);
    let started = Instant::now();
    let mut listing = String::from("(none yet)");
    let mut writers: Vec<Writer> = (0..6)
        .map(|i| Writer {
            index: i,
            rest: i % 2 == 1,
            large: i < 2,
            large_bytes: LARGE_RECORD_BYTES,
            next_id: 0,
            acks: Vec::new(),
            refused: 0,
        })
        .collect();
    let all_acks = |writers: &[Writer]| -> Vec<Ack> { writers.iter().flat_map(|w| w.acks.iter().cloned()).collect() };
    for cycle in 0..cycles {
        let acks = all_acks(&writers);
        let when = if cycle == 0 {
            "first start".to_owned()
        } else {
            format!("restart after power loss {cycle}")
        };
        let (mut server, ch) = match restart_and_verify(&data, &acks, &when).await {
            Ok(s) => s,
            Err(e) => fail(&e, &listing, &writers, &disk, started),
        };
        let stop = Arc::new(AtomicBool::new(false));
        let tasks: Vec<_> = writers
            .drain(..)
            .map(|w| tokio::spawn(w.run(ch.clone(), server.0.base.clone(), stop.clone(), cycle)))
            .collect();
        tokio::time::sleep(Duration::from_millis(500 + rand::random::<u64>() % 1000)).await;
        server.kill();
        stop.store(true, Ordering::Relaxed);
        for t in tasks {
            writers.push(t.await.unwrap());
        }
        drop(server);
        disk.power_loss().expect("unmount, crash and mount again");
        listing = list(&data);
    }
    let acks = all_acks(&writers);
    let result = restart_and_verify(&data, &acks, &format!("restart after power loss {cycles}")).await;
    eprintln!("{}", summary(&writers, &disk, started));
    if let Err(e) = result {
        fail(&e, &listing, &writers, &disk, started);
    }
    assert!(
        acks.iter()
            .any(|a| matches!(a, Ack::Parent { large, .. } if *large > 0)),
        "no large record was acknowledged"
    );
}

fn summary(writers: &[Writer], disk: &PowerLossDir, started: Instant) -> String {
    let acks: Vec<&Ack> = writers.iter().flat_map(|w| &w.acks).collect();
    let large = acks
        .iter()
        .filter(|a| matches!(a, Ack::Parent { large, .. } if *large > 0))
        .count();
    let largest = writers
        .iter()
        .filter(|w| w.large)
        .map(|w| w.large_bytes)
        .max()
        .unwrap_or(0);
    let stats = disk.disk.stats();
    format!(
        "power loss: {} crashes in {:.1}s, {} acknowledged writes ({large} large parents, now {} KiB each), \
         {} refused; {} file fsyncs, {} directory fsyncs, {} inodes lost to crashes",
        stats.crashes,
        started.elapsed().as_secs_f64(),
        acks.len(),
        largest / 1024,
        writers.iter().map(|w| w.refused).sum::<u64>(),
        stats.file_syncs,
        stats.dir_syncs,
        stats.inodes_lost,
    )
}

/// The files under `dir`, with their sizes.
fn list(dir: &Path) -> String {
    let mut listing = Vec::new();
    let mut dirs = vec![dir.to_owned()];
    while let Some(d) = dirs.pop() {
        for entry in fs::read_dir(&d).into_iter().flatten().flatten() {
            let meta = entry.metadata().unwrap();
            if meta.is_dir() {
                dirs.push(entry.path());
            }
            let name = entry.path().strip_prefix(dir).unwrap().display().to_string();
            listing.push(format!("{name} ({} bytes)", meta.len()));
        }
    }
    listing.sort();
    format!("{listing:?}")
}

/// Fails with the summary and what the data directory held after the last
/// power loss.
fn fail(error: &str, listing: &str, writers: &[Writer], disk: &PowerLossDir, started: Instant) -> ! {
    panic!(
        "{error}\n{}\ndata directory after the last power loss: {listing}",
        summary(writers, disk, started)
    );
}

/// The data directory, created and made durable beforehand, as one an
/// operator provisions; everything inside it is statusd's (and sled's) to
/// make durable.
fn provision(disk: &PowerLossDir) -> std::path::PathBuf {
    let data = disk.path().join("data");
    fs::create_dir(&data).unwrap();
    fsync_dir(disk.path());
    data
}

/// `--durability relaxed` acknowledges before the fsync, but a graceful stop
/// (SIGTERM) must still make everything durable: the shutdown flush is a real
/// fsync of the log and of the data directory, whatever the mode.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_stop_in_relaxed_mode_survives_a_power_loss() {
    let mut disk = match PowerLossDir::start() {
        Ok(d) => d,
        Err(reason) => return eprintln!("skipped: {reason}"),
    };
    let data = provision(&disk);
    let mut server = Statusd(ChildServer::spawn_with(&data, &["--durability", "relaxed"]));
    let ch = server.connect().await.expect("statusd serves");
    let api = PARENTS[0];
    let mut acks = Vec::new();
    for i in 0..50 {
        let id = format!("relaxed-{i:03}");
        api.create(&ch, api.new_parent(&id, &id)).await.unwrap();
        acks.push(Ack::Parent { kind: 0, id, large: 0 });
    }
    drop(ch);
    // SIGTERM: drain, flush, exit 0.
    let pid = i32::try_from(server.0.child.id()).unwrap();
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let status = server.0.child.wait().unwrap();
    assert!(status.success(), "statusd exited with {status}");
    drop(server);
    disk.power_loss().expect("unmount, crash and mount again");
    let result = restart_and_verify(&data, &acks, "restart after a graceful stop and a power loss").await;
    if let Err(e) = result {
        panic!("{e}\n{}", list(&data));
    }
}
