//! `statusd backup` and `statusd restore` (the real binary) against a real
//! server, on sled and (with `STATUSD_TEST_BACKEND=postgres`) PostgreSQL:
//! - a backup taken while writers run is one moment of the store: records
//!   acknowledged before it began are all in it, a token that writers move
//!   (create the next, then delete the previous) is seen once or twice in
//!   neighbouring generations, never torn; a parent deleted during the
//!   backup is there with all its statuses or not at all;
//! - the restore fills a new store that serves exactly the backup's records,
//!   certificate references and overview counts included;
//! - a damaged, cut or tampered file is refused, naming where, and nothing
//!   is restored; a non-empty target is refused.

mod common;

use common::{http, pg, statusd, TestServer};
use futures::stream::{self, StreamExt};
use serde_json::{json, Value};
use statusd::backup::{collections, Reader};
use statusd::store::snapshot::Item;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

const DM: &str = "deviceManagement";
/// Statuses under the big policy, written before the backup.
const FILLERS: usize = 12_000;
/// Statuses under the configuration deleted during the backup.
const DOOMED: usize = 1_500;

async fn post(base: &str, path: &str, body: Value) {
    let r = http("POST", &format!("{base}/beta/{DM}/{path}"), Some(&body.to_string())).await;
    assert_eq!(r.status, 201, "{path}: {}", r.text);
}

async fn post_many(base: &str, path: &str, bodies: Vec<Value>) {
    stream::iter(bodies)
        .for_each_concurrent(32, |b| async move { post(base, path, b).await })
        .await;
}

fn user_status(id: &str, status: &str) -> Value {
    json!({"id": id, "userDisplayName": format!("user {id}"), "devicesCount": 2, "status": status,
           "lastReportedDateTime": "2026-11-30T08:00:00Z", "userPrincipalName": format!("{id}@example.com")})
}

fn device_status(id: &str, status: &str) -> Value {
    json!({"id": id, "deviceDisplayName": format!("device {id}"), "userName": "u", "complianceGracePeriodExpirationDateTime": "2026-12-01T00:00:00Z",
           "status": status, "lastReportedDateTime": "2026-11-30T08:00:00Z", "userPrincipalName": "u@example.com"})
}

/// The token's id for generation `gen`: spread over the big policy's key
/// range, so successive generations land on different pages of a scan.
fn token_id(gen: u64) -> String {
    format!("{:05}-token-{gen:06}", (gen * 7919) % (FILLERS as u64) * 10)
}

/// The records of a backup file, checked.
fn read_backup(path: &std::path::Path) -> (statusd::backup::Header, Vec<Item>) {
    let f = std::fs::File::open(path).unwrap();
    let (mut reader, header) = Reader::open(std::io::BufReader::new(f)).unwrap();
    let mut items = Vec::new();
    while let Some(item) = reader.next_item().unwrap() {
        items.push(item);
    }
    assert_eq!(reader.summary().unwrap().records(), items.len() as u64);
    (header, items)
}

/// The statuses under `parent` in the backup, by id.
fn statuses_of(items: &[Item], parent: &str) -> BTreeSet<String> {
    items
        .iter()
        .filter_map(|i| match i {
            Item::Status(_, p, s) if p == parent => Some(s.id.clone()),
            _ => None,
        })
        .collect()
}

fn has_parent(items: &[Item], id: &str) -> bool {
    items.iter().any(|i| matches!(i, Item::Parent(_, p) if p.id == id))
}

async fn fill(base: &str) {
    post(base, "deviceCompliancePolicies", json!({"@odata.type": "#microsoft.graph.windows10CompliancePolicy", "id": "big", "displayName": "Big", "passwordRequired": true})).await;
    post(base, "deviceConfigurations", json!({"@odata.type": "#microsoft.graph.windows81TrustedRootCertificate", "id": "z-root", "displayName": "Root"})).await;
    post(
        base,
        "deviceConfigurations",
        json!({"@odata.type": "#microsoft.graph.windows81SCEPCertificateProfile", "id": "a-scep", "displayName": "SCEP",
               "rootCertificate@odata.bind": format!("{base}/beta/{DM}/deviceConfigurations('z-root')")}),
    )
    .await;
    post(base, "deviceConfigurations", json!({"@odata.type": "#microsoft.graph.windows10GeneralConfiguration", "id": "doomed", "displayName": "Doomed"})).await;
    let r = http(
        "POST",
        &format!("{base}/beta/deviceAppManagement/mobileAppConfigurations"),
        Some(&json!({"@odata.type": "#microsoft.graph.iosMobileAppConfiguration", "id": "app", "displayName": "App", "targetedMobileApps": ["com.example"]}).to_string()),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let values = ["compliant", "nonCompliant", "error", "conflict", "unknown"];
    post_many(
        base,
        "deviceCompliancePolicies/big/userStatuses",
        (0..FILLERS)
            .map(|j| user_status(&format!("{:05}", j * 10), values[j % values.len()]))
            .collect(),
    )
    .await;
    post_many(
        base,
        "deviceConfigurations/doomed/deviceStatuses",
        (0..DOOMED)
            .map(|j| device_status(&format!("d{j:05}"), "compliant"))
            .collect(),
    )
    .await;
    for (j, value) in values.iter().enumerate() {
        let r = http(
            "POST",
            &format!("{base}/beta/deviceAppManagement/mobileAppConfigurations/app/deviceStatuses"),
            Some(&device_status(&format!("m{j}"), value).to_string()),
        )
        .await;
        assert_eq!(r.status, 201, "{}", r.text);
    }
}

/// The body of a list, every page, without `@odata.context`.
async fn list_all(url: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut next = Some(format!("{url}?$top=999"));
    while let Some(u) = next.take() {
        let r = http("GET", &u, None).await;
        assert_eq!(r.status, 200, "{u}: {}", r.text);
        let v = r.json();
        out.extend(v["value"].as_array().unwrap().iter().cloned());
        next = v["@odata.nextLink"].as_str().map(str::to_owned);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_backup_taken_during_writes_is_one_moment_and_restores_exactly() {
    let source = TestServer::start().await;
    let base = source.base_url();
    fill(&base).await;
    let work = tempfile::tempdir().unwrap();
    let file = work.path().join("statusd.backup");

    // The token mover: create generation g+1, then delete g, as fast as it can.
    let stop = Arc::new(AtomicBool::new(false));
    let generation = Arc::new(AtomicU64::new(0));
    post(
        &base,
        "deviceCompliancePolicies/big/userStatuses",
        user_status(&token_id(0), "compliant"),
    )
    .await;
    let mover = {
        let (base, stop, generation) = (base.clone(), stop.clone(), generation.clone());
        tokio::spawn(async move {
            let mut g = 0;
            while !stop.load(Ordering::Relaxed) {
                post(
                    &base,
                    "deviceCompliancePolicies/big/userStatuses",
                    user_status(&token_id(g + 1), "compliant"),
                )
                .await;
                let r = http(
                    "DELETE",
                    &format!(
                        "{base}/beta/{DM}/deviceCompliancePolicies/big/userStatuses/{}",
                        token_id(g)
                    ),
                    None,
                )
                .await;
                assert_eq!(r.status, 204, "{}", r.text);
                g += 1;
                generation.store(g, Ordering::Relaxed);
            }
        })
    };
    while generation.load(Ordering::Relaxed) < 3 {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    // Everything acknowledged from here on may or may not be in the backup.
    let before = generation.load(Ordering::Relaxed);
    let backup = {
        let (base, file) = (base.clone(), file.clone());
        tokio::task::spawn_blocking(move || statusd(&["backup", "--server", &base, "--out", file.to_str().unwrap()]))
    };
    // While it runs: a parent with 1,500 statuses goes, another comes.
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let r = http("DELETE", &format!("{base}/beta/{DM}/deviceConfigurations/doomed"), None).await;
    assert_eq!(r.status, 204, "{}", r.text);
    post(
        &base,
        "deviceCompliancePolicies",
        json!({"@odata.type": "#microsoft.graph.windows10CompliancePolicy", "id": "newborn", "displayName": "New"}),
    )
    .await;
    post(
        &base,
        "deviceCompliancePolicies/newborn/deviceStatuses",
        device_status("n1", "error"),
    )
    .await;
    let (ok, out, err) = backup.await.unwrap();
    let during = generation.load(Ordering::Relaxed) - before;
    stop.store(true, Ordering::Relaxed);
    mover.await.unwrap();
    assert!(ok, "backup failed: {out}\n{err}");
    println!("{out}");
    assert!(out.contains("checked"), "{out}");
    // The printed checksum is the file's, as sha256sum prints it.
    let printed = out
        .lines()
        .last()
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    let digest = {
        use sha2::Digest;
        let bytes = std::fs::read(&file).unwrap();
        sha2::Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    assert_eq!(printed, digest);
    assert!(!work.path().join("statusd.backup.partial").exists());
    println!("token generations moved while the backup ran: {during}");
    assert!(
        during > 0,
        "the writer made no change while the backup ran: the test proved nothing"
    );

    let (header, items) = read_backup(&file);
    assert!(header.revision > 0 || source.database_url.is_some());
    let big = statuses_of(&items, "big");
    // Acknowledged before the backup began: every filler.
    for j in 0..FILLERS {
        assert!(big.contains(&format!("{:05}", j * 10)), "filler {j} is missing");
    }
    // One moment: the token once, or in two neighbouring generations.
    let tokens: Vec<u64> = big
        .iter()
        .filter_map(|id| id.split("-token-").nth(1).map(|g| g.parse().unwrap()))
        .collect();
    let mut gens = tokens.clone();
    gens.sort();
    assert!(
        gens.len() == 1 || (gens.len() == 2 && gens[1] == gens[0] + 1),
        "a torn snapshot: token generations {gens:?}"
    );
    assert!(
        gens[0] >= before.saturating_sub(1),
        "generation {} predates the backup ({before})",
        gens[0]
    );
    // The deleted parent: whole, or not at all.
    let doomed = statuses_of(&items, "doomed");
    if has_parent(&items, "doomed") {
        assert_eq!(doomed.len(), DOOMED);
    } else {
        assert!(
            doomed.is_empty(),
            "{} statuses of a parent not in the backup",
            doomed.len()
        );
    }
    if !has_parent(&items, "newborn") {
        assert!(statuses_of(&items, "newborn").is_empty());
    }
    println!(
        "backup: revision {}, {} records, doomed {}, newborn {}, tokens {gens:?}",
        header.revision,
        items.len(),
        has_parent(&items, "doomed"),
        has_parent(&items, "newborn")
    );

    // Restore into a new store and compare it with the file.
    let target_dir = work.path().join("restored");
    let database_url = match &source.database_url {
        Some(_) => {
            let base_url = pg::database_url().unwrap();
            Some(pg::fresh_schema(&base_url, "restore").await)
        }
        None => None,
    };
    let mut args = vec!["restore", "--in", file.to_str().unwrap()];
    match &database_url {
        Some(url) => args.extend(["--database-url", url.as_str()]),
        None => args.extend(["--data-dir", target_dir.to_str().unwrap()]),
    }
    let (ok, out, err) = statusd(&args);
    assert!(ok, "restore failed: {out}\n{err}");
    println!("{out}");
    assert!(out.contains("verified"), "{out}");
    assert!(!work.path().join("restored.restoring").exists());

    let mut config = statusd::config::Config::for_data_dir(&target_dir);
    config.database_url = database_url.clone();
    let restored = statusd::server::Server::start(config).await.unwrap();
    let rbase = format!("http://{}", restored.local_addr());
    let listed: BTreeSet<String> = list_all(&format!("{rbase}/beta/{DM}/deviceCompliancePolicies/big/userStatuses"))
        .await
        .iter()
        .map(|v| v["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(listed, big, "the restored statuses of 'big' differ from the backup's");
    // Whole records come back: compare one with the source's (unchanged since).
    let one = |b: &str| format!("{b}/beta/{DM}/deviceCompliancePolicies/big/userStatuses/00040");
    let (a, b) = (
        http("GET", &one(&base), None).await.json(),
        http("GET", &one(&rbase), None).await.json(),
    );
    assert_eq!(a["userPrincipalName"], b["userPrincipalName"]);
    assert_eq!(a["status"], b["status"]);
    assert_eq!(a["lastReportedDateTime"], b["lastReportedDateTime"]);
    let (pa, pb) = (
        http("GET", &format!("{base}/beta/{DM}/deviceCompliancePolicies/big"), None)
            .await
            .json(),
        http("GET", &format!("{rbase}/beta/{DM}/deviceCompliancePolicies/big"), None)
            .await
            .json(),
    );
    for k in [
        "createdDateTime",
        "lastModifiedDateTime",
        "version",
        "passwordRequired",
        "displayName",
    ] {
        assert_eq!(pa[k], pb[k], "{k}");
    }
    // The certificate reference.
    let r = http(
        "GET",
        &format!("{rbase}/beta/{DM}/deviceConfigurations/a-scep/rootCertificate"),
        None,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["id"], "z-root");
    // Overviews are counted again on the way in, and agree with the lists.
    let overview = http(
        "GET",
        &format!("{rbase}/beta/{DM}/deviceCompliancePolicies/big/userStatusOverview"),
        None,
    )
    .await
    .json();
    let total: u64 = [
        "pendingCount",
        "notApplicableCount",
        "successCount",
        "errorCount",
        "failedCount",
        "conflictCount",
    ]
    .iter()
    .map(|k| overview[k].as_u64().unwrap())
    .sum();
    assert_eq!(total, big.len() as u64, "{overview}");
    assert_eq!(overview["conflictCount"].as_u64().unwrap(), (FILLERS / 5) as u64);
    let doomed_there = http("GET", &format!("{rbase}/beta/{DM}/deviceConfigurations/doomed"), None)
        .await
        .status;
    assert_eq!(doomed_there == 200, has_parent(&items, "doomed"));
    let app = list_all(&format!(
        "{rbase}/beta/deviceAppManagement/mobileAppConfigurations/app/deviceStatuses"
    ))
    .await;
    assert_eq!(app.len(), 5);
    restored.shutdown().await.unwrap();
    source.server.shutdown().await.unwrap();
    for name in collections() {
        assert!(out.contains(&name), "the summary names {name}");
    }
}

// Multi-threaded: `statusd` blocks this test's thread while the in-process
// server answers it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_backups_are_refused_naming_where_and_nothing_is_restored() {
    let source = TestServer::start().await;
    let base = source.base_url();
    post(
        &base,
        "deviceCompliancePolicies",
        json!({"@odata.type": "#microsoft.graph.windows10CompliancePolicy", "id": "p", "displayName": "P"}),
    )
    .await;
    post_many(
        &base,
        "deviceCompliancePolicies/p/deviceStatuses",
        (0..20)
            .map(|j| device_status(&format!("s{j:02}"), "compliant"))
            .collect(),
    )
    .await;
    let work = tempfile::tempdir().unwrap();
    let good = work.path().join("good.backup");
    let (ok, out, err) = statusd(&["backup", "--server", &base, "--out", good.to_str().unwrap()]);
    assert!(ok, "{out}\n{err}");
    let bytes = std::fs::read(&good).unwrap();
    let lines: Vec<&[u8]> = bytes.split_inclusive(|&b| b == b'\n').collect();
    assert_eq!(lines.len(), 1 + 21 + 1, "header, 21 records, closing line");
    let at_line = |n: usize| lines[..n - 1].iter().map(|l| l.len()).sum::<usize>();

    let mut flipped = bytes.clone();
    flipped[at_line(7) + 40] ^= 0x01;
    let mut inside_crc = bytes.clone();
    let crc_at = at_line(8) + lines[7].len() - 3;
    inside_crc[crc_at] = if inside_crc[crc_at] == b'0' { b'1' } else { b'0' };
    let cut = bytes[..at_line(12) + 30].to_vec();
    let no_end = bytes[..at_line(23)].to_vec();
    let dropped: Vec<u8> = lines
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 9)
        .flat_map(|(_, l)| l.to_vec())
        .collect();
    let mut trailing = bytes.clone();
    trailing.extend_from_slice(b"{}\t00000000\n");
    let cases: Vec<(&str, Vec<u8>, &[&str])> = vec![
        ("flipped", flipped, &["line 7 (byte", "fails its checksum"]),
        ("crc", inside_crc, &["line 8 (byte", "checksum"]),
        ("cut", cut, &["truncated", "line 12"]),
        ("no-end", no_end, &["truncated", "without its closing line"]),
        ("dropped", dropped, &["line 22", "corrupt"]),
        ("trailing", trailing, &["data follows the closing line"]),
        ("empty", Vec::new(), &["empty"]),
    ];
    for (name, content, expect) in cases {
        let path = work.path().join(format!("{name}.backup"));
        std::fs::write(&path, &content).unwrap();
        let target = work.path().join(format!("target-{name}"));
        let (ok, out, err) = statusd(&[
            "restore",
            "--in",
            path.to_str().unwrap(),
            "--data-dir",
            target.to_str().unwrap(),
        ]);
        assert!(!ok, "{name}: a broken backup was restored: {out}");
        for e in expect {
            assert!(err.contains(e), "{name}: expected '{e}' in: {err}");
        }
        assert!(err.contains("Nothing was restored"), "{name}: {err}");
        assert!(!target.exists(), "{name}: the target was created");
        assert!(!work.path().join(format!("target-{name}.restoring")).exists());
    }
    // The rate option: a positive whole number, and no other option.
    for (query, field) in [
        ("maxRecordsPerSecond=fast", "maxRecordsPerSecond"),
        ("maxRecordsPerSecond=0", "maxRecordsPerSecond"),
        ("since=5", "since"),
    ] {
        let r = http("GET", &format!("{base}/admin/backup?{query}"), None).await;
        assert_eq!(r.status, 400, "{query}: {}", r.text);
        assert!(r.text.contains(field), "{query}: {}", r.text);
    }
    let paced = work.path().join("paced.backup");
    let (ok, out, err) = statusd(&[
        "backup",
        "--server",
        &base,
        "--out",
        paced.to_str().unwrap(),
        "--max-rate",
        "1000",
    ]);
    assert!(ok, "{out}\n{err}");
    assert_eq!(
        std::fs::read(&paced).unwrap().len(),
        bytes.len(),
        "the same records, paced"
    );
    // The good file restores; a second restore into the same place is refused.
    let target = work.path().join("target-good");
    let (ok, out, err) = statusd(&[
        "restore",
        "--in",
        good.to_str().unwrap(),
        "--data-dir",
        target.to_str().unwrap(),
    ]);
    assert!(ok, "{out}\n{err}");
    let (ok, _, err) = statusd(&[
        "restore",
        "--in",
        good.to_str().unwrap(),
        "--data-dir",
        target.to_str().unwrap(),
    ]);
    assert!(!ok);
    assert!(err.contains("is not empty"), "{err}");
    // A server that is not there: the command fails and leaves no file.
    let missing = work.path().join("missing.backup");
    let (ok, _, err) = statusd(&[
        "backup",
        "--server",
        "http://127.0.0.1:9",
        "--out",
        missing.to_str().unwrap(),
    ]);
    assert!(!ok);
    assert!(err.contains("/admin/backup"), "{err}");
    assert!(!missing.exists() && !work.path().join("missing.backup.partial").exists());
    source.server.shutdown().await.unwrap();
}
