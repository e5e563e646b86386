//! The sled backend's write-ahead log, through the store: a change is
//! visible only once durable, the log replays idempotently over the state it
//! produced (cascades included), a log cut at any byte replays exactly the
//! whole records before the cut, and corruption before the last segment
//! refuses the open with a message saying where.

mod conformance;

use conformance::{parent, status};
use statusd::error::Error;
use statusd::model::{ParentKind, StatusKind};
use statusd::store::wal::frame;
use statusd::store::{Durability, FaultInjection, SledConfig, SledStore, Store};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

const KIND: StatusKind = StatusKind::ALL[0];

fn config(dir: &Path) -> SledConfig {
    SledConfig {
        path: dir.to_owned(),
        cache_capacity: 16 << 20,
        durability: Durability::Durable,
        min_free_bytes: 0,
        watch_history: 1_000_000,
        faults: FaultInjection::default(),
    }
}

fn open(dir: &Path) -> SledStore {
    SledStore::open(&config(dir)).expect("store opens")
}

/// The log's segment files, in order.
fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir.join("wal"))
        .map(|d| d.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    out.sort();
    out
}

/// Everything the store shows: every parent of every kind with its statuses.
async fn snapshot(store: &dyn Store) -> Vec<String> {
    let mut out = Vec::new();
    for kind in ParentKind::ALL {
        for p in store.list_parents(kind, None, 1000).await.unwrap() {
            out.push(format!("{kind} {} {}", p.id, p.display_name));
            for sk in kind.status_kinds() {
                for s in store.list_statuses(sk, &p.id, None, 1000).await.unwrap() {
                    out.push(format!("  {sk} {} {:?}", s.id, s.body));
                }
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_is_invisible_until_its_fsync_has_finished() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.faults.slow_sync = Some(Duration::from_millis(400));
    let store = Arc::new(SledStore::open(&c).unwrap());
    store
        .create_parent(KIND.parent, &parent(KIND.parent, "p"))
        .await
        .unwrap();
    let s = status(KIND.shape, "s");

    // A create held in its fsync is invisible to every reader...
    let create = tokio::spawn({
        let (store, s) = (store.clone(), s.clone());
        async move { store.create_status(KIND, "p", &s).await }
    });
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(store.get_status(KIND, "p", "s").await.unwrap(), None);
    assert!(store.list_statuses(KIND, "p", None, 10).await.unwrap().is_empty());
    // ...and a second create of the key waits for it, so its "already
    // exists" only ever reflects a durable write.
    let started = Instant::now();
    let err = store.create_status(KIND, "p", &s).await.unwrap_err();
    assert!(matches!(err, Error::AlreadyExists(_)), "{err:?}");
    assert!(
        started.elapsed() >= Duration::from_millis(150),
        "{:?}",
        started.elapsed()
    );
    create.await.unwrap().unwrap();
    assert_eq!(store.get_status(KIND, "p", "s").await.unwrap(), Some(s.clone()));

    // A delete held in its fsync: the status stays visible until it is durable.
    let delete = tokio::spawn({
        let store = store.clone();
        async move { store.delete_status(KIND, "p", "s").await }
    });
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(store.get_status(KIND, "p", "s").await.unwrap(), Some(s.clone()));
    assert!(delete.await.unwrap().unwrap());
    assert_eq!(store.get_status(KIND, "p", "s").await.unwrap(), None);

    // A parent delete likewise.
    let delete = tokio::spawn({
        let store = store.clone();
        async move { store.delete_parent(KIND.parent, "p").await }
    });
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert!(store.get_parent(KIND.parent, "p").await.unwrap().is_some());
    assert!(delete.await.unwrap().unwrap());
    assert!(store.get_parent(KIND.parent, "p").await.unwrap().is_none());
}

#[tokio::test]
async fn the_log_replayed_over_the_state_it_produced_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let saved = tempfile::tempdir().unwrap();
    let before = {
        let store = open(dir.path());
        let pk = KIND.parent;
        store.create_parent(pk, &parent(pk, "p")).await.unwrap();
        for i in 0..6 {
            store
                .create_status(KIND, "p", &status(KIND.shape, &format!("s{i}")))
                .await
                .unwrap();
        }
        let old = status(KIND.shape, "s2");
        let mut new = old.clone();
        new.body = status(KIND.shape, "changed").body;
        assert!(store.replace_status(KIND, "p", &old, &new).await.unwrap());
        assert!(store.delete_status(KIND, "p", "s3").await.unwrap());
        // The cascade: its statuses are removed outside the log; replaying
        // the creates above must not bring them back under the new parent.
        assert!(store.delete_parent(pk, "p").await.unwrap());
        store.create_parent(pk, &parent(pk, "p")).await.unwrap();
        store.create_status(KIND, "p", &status(KIND.shape, "s9")).await.unwrap();
        let other = StatusKind::ALL[3];
        store
            .create_parent(other.parent, &parent(other.parent, "q"))
            .await
            .unwrap();
        store
            .create_status(other, "q", &status(other.shape, "t"))
            .await
            .unwrap();
        for path in segments(dir.path()) {
            std::fs::copy(&path, saved.path().join(path.file_name().unwrap())).unwrap();
        }
        snapshot(&store).await
    };
    assert_eq!(before.len(), 4, "{before:#?}");
    assert!(
        segments(dir.path()).is_empty(),
        "a clean close checkpoints and empties the log"
    );
    // Put the whole log back, as if the process had died before any checkpoint.
    for path in segments(saved.path()) {
        std::fs::copy(&path, dir.path().join("wal").join(path.file_name().unwrap())).unwrap();
    }
    let store = open(dir.path());
    assert_eq!(snapshot(&store).await, before);
    assert!(
        segments(dir.path()).len() == 1,
        "replayed, checkpointed, a fresh segment"
    );
    // Revisions go on after the replayed ones.
    let revision = store.revision();
    assert!(revision >= 15, "{revision}");
    store
        .create_status(KIND, "p", &status(KIND.shape, "s10"))
        .await
        .unwrap();
    assert_eq!(store.revision(), revision + 1);
}

/// One session's log: a parent and `statuses` statuses, one record each.
async fn session(dir: &Path, statuses: usize) -> Vec<u8> {
    let store = open(dir);
    store
        .create_parent(KIND.parent, &parent(KIND.parent, "p"))
        .await
        .unwrap();
    for i in 0..statuses {
        store
            .create_status(KIND, "p", &status(KIND.shape, &format!("s{i}")))
            .await
            .unwrap();
    }
    let [segment] = &segments(dir)[..] else {
        panic!("one segment")
    };
    let mut bytes = std::fs::read(segment).unwrap();
    // The segment is preallocated: keep its frames, not its zero tail.
    let mut reader = frame::Reader::new(&bytes);
    reader.by_ref().for_each(drop);
    assert_eq!(reader.stop(), None);
    let end = reader.offset();
    assert!(bytes[end..].iter().all(|&b| b == 0));
    bytes.truncate(end);
    bytes
}

#[tokio::test]
async fn a_log_cut_at_any_byte_replays_exactly_the_whole_records_before_it() {
    let log = session(tempfile::tempdir().unwrap().path(), 3).await;
    let ends: Vec<usize> = {
        let mut reader = frame::Reader::new(&log);
        let mut ends = Vec::new();
        while reader.next().is_some() {
            ends.push(reader.offset());
        }
        ends
    };
    assert_eq!(ends.len(), 4);
    // Every frame boundary and the bytes around it, and a spread of cuts in
    // between (the frame reader's own property test cuts at every byte).
    let mut cuts: Vec<usize> = (0..=log.len()).step_by(7).collect();
    for &end in &ends {
        cuts.extend([end - 1, end, (end + 1).min(log.len())]);
    }
    cuts.extend([1, frame::HEADER, frame::HEADER + 1]);
    cuts.sort_unstable();
    cuts.dedup();
    for cut in cuts {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("wal")).unwrap();
        std::fs::write(dir.path().join("wal/00000000000000000001.wal"), &log[..cut]).unwrap();
        let store = open(dir.path());
        let whole = ends.iter().filter(|&&end| end <= cut).count();
        let has_parent = store.get_parent(KIND.parent, "p").await.unwrap().is_some();
        assert_eq!(has_parent, whole >= 1, "cut at {cut}");
        let statuses = store.list_statuses(KIND, "p", None, 10).await.unwrap();
        assert_eq!(statuses.len(), whole.saturating_sub(1), "cut at {cut}");
        // The torn tail is gone: the store writes on from the last whole record.
        if has_parent {
            store
                .create_status(KIND, "p", &status(KIND.shape, "after"))
                .await
                .unwrap();
            assert_eq!(store.revision(), whole as u64 + 1, "cut at {cut}");
        }
    }
}

#[tokio::test]
async fn corruption_before_the_last_segment_refuses_the_open_and_says_where() {
    let log = session(tempfile::tempdir().unwrap().path(), 4).await;
    let mut reader = frame::Reader::new(&log);
    reader.next();
    reader.next();
    let split = reader.offset();
    let dir = tempfile::tempdir().unwrap();
    let wal = dir.path().join("wal");
    std::fs::create_dir(&wal).unwrap();
    let mut first = log[..split].to_vec();
    std::fs::write(wal.join("00000000000000000002.wal"), &log[split..]).unwrap();

    // A flipped byte inside the second record of the first segment.
    let at = split - 3;
    first[at] ^= 0x40;
    std::fs::write(wal.join("00000000000000000001.wal"), &first).unwrap();
    let err = SledStore::open(&config(dir.path())).err().expect("refused");
    let msg = err.to_string();
    assert!(
        msg.contains("00000000000000000001.wal") && msg.contains("corrupt at byte"),
        "{msg}"
    );
    assert!(msg.contains("checksum"), "{msg}");
    // Nothing was lost by trying: both segments are still there.
    assert_eq!(segments(dir.path()).len(), 2);

    // The same damage in the last segment is a torn write: the records before
    // it are replayed, the rest ignored.
    std::fs::remove_file(wal.join("00000000000000000002.wal")).unwrap();
    let store = open(dir.path());
    assert!(store.get_parent(KIND.parent, "p").await.unwrap().is_some());
    assert!(store.list_statuses(KIND, "p", None, 10).await.unwrap().is_empty());
}
