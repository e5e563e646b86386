//! `statusd copy`: the real binary copies a real sled store into a fresh
//! PostgreSQL schema; every record read back equals the source's, a re-run
//! copies nothing twice, and a copy killed part-way finishes when run again.
//! Without `STATUSD_TEST_DATABASE_URL` the PostgreSQL tests print
//! `skipped: <reason>` and pass.

mod conformance;
mod pg;

use statusd::model::{Parent, ParentKind, Status, StatusKind};
use statusd::store::{Durability, FaultInjection, PostgresConfig, PostgresStore, SledConfig, SledStore, Store};
use std::io::BufRead;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_statusd");

fn sled_config(dir: &Path) -> SledConfig {
    SledConfig {
        path: dir.to_owned(),
        cache_capacity: 64 << 20,
        // Filling is faster without an fsync per write; dropping the store
        // flushes everything.
        durability: Durability::Relaxed,
        min_free_bytes: 0,
        watch_history: 1_000_000,
        faults: FaultInjection::default(),
    }
}

async fn postgres(url: &str) -> std::sync::Arc<PostgresStore> {
    PostgresStore::connect(&PostgresConfig {
        url: url.to_owned(),
        pool_size: 8,
        ca: None,
        connect_timeout: Duration::from_secs(5),
        watch_history: 1_000_000,
    })
    .await
    .expect("the target opens")
}

/// Parent ids of `kind` in the filled store.
fn parent_ids(kind: ParentKind) -> Vec<String> {
    let prefix = match kind {
        ParentKind::DeviceCompliancePolicy => "policy",
        ParentKind::MobileAppConfiguration => "app",
        ParentKind::DeviceConfiguration => "dc",
    };
    (1..=3).map(|i| format!("{prefix}-{i}")).collect()
}

/// Fills a sled store: three parents per kind; device configurations
/// referencing each other (dc-1 → dc-3 forward in id order, dc-2 → dc-1,
/// dc-3 → itself) and dc-2's rootCertificate dangling (its target deleted,
/// with its statuses); `per_parent` statuses under each parent in each of the
/// six collections.
async fn fill(dir: &Path, per_parent: usize) {
    let store = SledStore::open(&sled_config(dir)).expect("sled opens");
    let dc = ParentKind::DeviceConfiguration;
    for kind in ParentKind::ALL {
        for id in parent_ids(kind) {
            store
                .create_parent(kind, &conformance::parent(kind, &id))
                .await
                .unwrap();
        }
    }
    store
        .create_parent(dc, &conformance::parent(dc, "dc-gone"))
        .await
        .unwrap();
    for sk in dc.status_kinds() {
        for i in 0..10 {
            store
                .create_status(sk, "dc-gone", &conformance::status(sk.shape, &format!("gone-{i}")))
                .await
                .unwrap();
        }
    }
    let set = |id: &str, root: Option<&str>, identity: Option<&str>| {
        let store = &store;
        let (id, root, identity) = (id.to_owned(), root.map(str::to_owned), identity.map(str::to_owned));
        async move {
            let before = store.get_parent(dc, &id).await.unwrap().unwrap();
            let mut after = before.clone();
            after.root_certificate_id = root;
            after.identity_certificate_id = identity;
            assert!(store.replace_parent(dc, &before, &after).await.unwrap());
        }
    };
    set("dc-1", Some("dc-3"), None).await;
    set("dc-2", Some("dc-gone"), Some("dc-1")).await;
    set("dc-3", Some("dc-3"), Some("dc-2")).await;
    assert!(store.delete_parent(dc, "dc-gone").await.unwrap());

    for sk in StatusKind::ALL {
        for parent_id in parent_ids(sk.parent) {
            let ids: Vec<String> = (0..per_parent).map(|i| format!("s-{i:05}")).collect();
            for chunk in ids.chunks(200) {
                futures::future::join_all(chunk.iter().map(|id| {
                    let (store, parent_id) = (&store, &parent_id);
                    async move {
                        store
                            .create_status(sk, parent_id, &conformance::status(sk.shape, id))
                            .await
                            .unwrap()
                    }
                }))
                .await;
            }
        }
    }
    store.flush().await.unwrap();
}

fn copy(dir: &Path, url: &str) -> Output {
    Command::new(BIN)
        .args(["copy", "--data-dir"])
        .arg(dir)
        .args(["--database-url", url])
        .env_remove("STATUSD_DATABASE_URL")
        .env_remove("STATUSD_DATA_DIR")
        .output()
        .expect("statusd runs")
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// A row of the summary table: source, target, copied, already there, conflicts.
fn row(stdout: &str, collection: &str) -> [u64; 5] {
    let line = stdout
        .lines()
        .find(|l| l.split_whitespace().next() == Some(collection))
        .unwrap_or_else(|| panic!("no summary row for {collection} in:\n{stdout}"));
    let n: Vec<u64> = line.split_whitespace().skip(1).map(|c| c.parse().unwrap()).collect();
    n.try_into().unwrap_or_else(|_| panic!("bad row: {line}"))
}

fn collections() -> Vec<String> {
    let mut names = Vec::new();
    for kind in ParentKind::ALL {
        names.push(kind.collection().to_owned());
        for sk in kind.status_kinds() {
            names.push(format!("{}/{}", kind.collection(), sk.segment()));
        }
    }
    names
}

async fn all_parents(store: &dyn Store, kind: ParentKind) -> Vec<Parent> {
    let mut out: Vec<Parent> = Vec::new();
    loop {
        let page = store
            .list_parents(kind, out.last().map(|p| p.id.as_str()), 100)
            .await
            .unwrap();
        if page.is_empty() {
            return out;
        }
        out.extend(page);
    }
}

async fn all_statuses(store: &dyn Store, kind: StatusKind, parent_id: &str) -> Vec<Status> {
    let mut out: Vec<Status> = Vec::new();
    loop {
        let page = store
            .list_statuses(kind, parent_id, out.last().map(|s| s.id.as_str()), 1000)
            .await
            .unwrap();
        if page.is_empty() {
            return out;
        }
        out.extend(page);
    }
}

/// Every record of the target equals the source's (dc-2 without its
/// dangling rootCertificate), and nothing else is there.
async fn assert_same(dir: &Path, url: &str) {
    let source = SledStore::open(&sled_config(dir)).expect("sled opens again after the copy");
    let target = postgres(url).await;
    for kind in ParentKind::ALL {
        let mut expected = all_parents(&source, kind).await;
        for p in &mut expected {
            if p.id == "dc-2" {
                assert_eq!(p.root_certificate_id.as_deref(), Some("dc-gone"));
                p.root_certificate_id = None;
            }
        }
        assert_eq!(all_parents(target.as_ref(), kind).await, expected, "{kind}");
        for p in &expected {
            for sk in kind.status_kinds() {
                let want = all_statuses(&source, sk, &p.id).await;
                assert_eq!(all_statuses(target.as_ref(), sk, &p.id).await, want, "{sk} of {}", p.id);
            }
        }
    }
    let dc = all_parents(target.as_ref(), ParentKind::DeviceConfiguration).await;
    let refs: Vec<_> = dc
        .iter()
        .map(|p| {
            (
                p.id.as_str(),
                p.root_certificate_id.as_deref(),
                p.identity_certificate_id.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        refs,
        [
            ("dc-1", Some("dc-3"), None),
            ("dc-2", None, Some("dc-1")),
            ("dc-3", Some("dc-3"), Some("dc-2"))
        ]
    );
}

#[tokio::test]
async fn copies_sled_into_postgres_and_reruns_cleanly() {
    let base = match pg::database_url() {
        Ok(u) => u,
        Err(reason) => return eprintln!("skipped: {reason}"),
    };
    let url = pg::fresh_schema(&base, "copy").await;
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path(), 100).await;

    let first = copy(dir.path(), &url);
    let (out, err) = text(&first);
    eprintln!("--- first run ---\n{out}{err}");
    assert!(first.status.success(), "{out}\n{err}");
    for name in collections() {
        let n = if name.contains('/') { 300 } else { 3 };
        assert_eq!(row(&out, &name), [n, n, n, 0, 0], "{name}");
    }
    assert_eq!(row(&out, "total"), [1809, 1809, 1809, 0, 0]);
    assert!(
        out.contains("certificate references: 3 set, 0 already there, 0 conflicts, 1 dangling dropped"),
        "{out}"
    );
    assert!(out.contains("verified:"), "{out}");
    assert!(!out.contains("secret") && !err.contains("secret"));
    assert!(
        err.lines().any(|l| l.starts_with("warning:")
            && l.contains("'dc-2'")
            && l.contains("rootCertificate")
            && l.contains("'dc-gone'")),
        "{err}"
    );
    assert_same(dir.path(), &url).await;

    // Again: everything is already there, nothing is duplicated.
    let second = copy(dir.path(), &url);
    let (out, err) = text(&second);
    eprintln!("--- second run ---\n{out}{err}");
    assert!(second.status.success(), "{out}\n{err}");
    for name in collections() {
        let n = if name.contains('/') { 300 } else { 3 };
        assert_eq!(row(&out, &name), [n, n, 0, n, 0], "{name}");
    }
    assert!(
        out.contains("certificate references: 0 set, 3 already there, 0 conflicts, 1 dangling dropped"),
        "{out}"
    );
    assert_same(dir.path(), &url).await;

    // A record that differs in the target is a conflict: left alone, reported,
    // and the exit status says so.
    let target = postgres(&url).await;
    let sk = StatusKind::ALL[0];
    let parent_id = &parent_ids(sk.parent)[0];
    let before = target.get_status(sk, parent_id, "s-00007").await.unwrap().unwrap();
    let mut changed = before.clone();
    changed.body = conformance::status(sk.shape, "something else").body;
    assert!(target.replace_status(sk, parent_id, &before, &changed).await.unwrap());
    drop(target);
    let third = copy(dir.path(), &url);
    let (out, err) = text(&third);
    assert!(!third.status.success(), "{out}\n{err}");
    assert!(
        err.contains("conflict:") && err.contains("'s-00007'") && err.contains("1 records exist in the target"),
        "{err}"
    );
    let name = format!("{}/{}", sk.parent.collection(), sk.segment());
    assert_eq!(row(&out, &name), [300, 300, 0, 299, 1]);
}

#[tokio::test]
async fn an_interrupted_copy_finishes_when_run_again() {
    let base = match pg::database_url() {
        Ok(u) => u,
        Err(reason) => return eprintln!("skipped: {reason}"),
    };
    let url = pg::fresh_schema(&base, "copy_killed").await;
    let dir = tempfile::tempdir().unwrap();
    // 3 parents × 6 collections × 1112 = 20016 statuses.
    fill(dir.path(), 1112).await;

    let mut child = Command::new(BIN)
        .args(["copy", "--data-dir"])
        .arg(dir.path())
        .args(["--database-url", &url])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("statusd runs");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // Kill it once it reports progress into the statuses (the first 10%).
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("the copy reports progress");
        if line.starts_with("copy: ") && line.contains("records (") && line.contains("Statuses") {
            break;
        }
    }
    assert!(
        child.try_wait().unwrap().is_none(),
        "the copy ended before it could be killed"
    );
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    let rerun = copy(dir.path(), &url);
    let (out, err) = text(&rerun);
    eprintln!("--- run after the kill ---\n{out}{err}");
    assert!(rerun.status.success(), "{out}\n{err}");
    let total = row(&out, "total");
    assert_eq!(total[0], 9 + 20016);
    assert_eq!(total[1], total[0], "target count");
    assert_eq!(total[2] + total[3], total[0], "copied + already there");
    assert!(total[3] > 9, "the killed run copied statuses before it died: {out}");
    assert_eq!(total[4], 0);
    assert_same(dir.path(), &url).await;
}

#[test]
fn a_data_dir_in_use_is_refused_with_advice() {
    let dir = tempfile::tempdir().unwrap();
    let _server = SledStore::open(&sled_config(dir.path())).unwrap();
    let o = copy(dir.path(), "postgres://statusd:secret@127.0.0.1:1/statusd");
    let (out, err) = text(&o);
    assert!(!o.status.success());
    assert!(err.contains("Stop the server first"), "{err}");
    assert!(!out.contains("secret") && !err.contains("secret"), "{out}{err}");
    assert!(!err.contains("panicked"), "{err}");

    let missing = dir.path().join("nothing-here");
    let o = copy(&missing, "postgres://statusd@127.0.0.1:1/statusd");
    let (_, err) = text(&o);
    assert!(!o.status.success());
    assert!(err.contains("not a statusd data directory"), "{err}");
    assert!(!missing.exists(), "the copy must not create a data directory");
}
