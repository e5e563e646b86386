//! The database fails under load. statusd runs on a PostgreSQL server of
//! this test's own (`scripts/throwaway-postgres`) while gRPC and REST
//! writers create statuses; the database is stopped at once (`pg_ctl -m
//! immediate`: no shutdown checkpoint, recovery from the WAL at the next
//! start) or its postmaster is SIGKILLed, then started again. Checked:
//! - while it is down every write is answered UNAVAILABLE (gRPC) or 503 with
//!   Graph's error body (REST), well inside the request deadline;
//! - statusd reconnects by itself once it is back;
//! - every acknowledged write is there afterwards.
//!
//! Skipped (with the reason) where no PostgreSQL server can be started.

mod common;

use common::pg::Cluster;
use common::{try_http, UserMsg, PARENTS};
use statusd::{Config, Server};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tonic::transport::Channel;

const POLICIES: &str = "deviceManagement/deviceCompliancePolicies";
/// The request deadline the server runs with here.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// What the writers saw.
#[derive(Default)]
struct Seen {
    acknowledged: Vec<String>,
    /// Failures: (what, answered after).
    failures: Vec<(String, Duration)>,
    slowest: Duration,
    /// Successes after the database came back.
    recovered: usize,
}

async fn writer(
    w: usize,
    ch: Channel,
    base: String,
    stop: Arc<AtomicBool>,
    back: Arc<AtomicBool>,
    seen: Arc<Mutex<Seen>>,
) {
    let rest = w % 2 == 1;
    for i in 0.. {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let id = format!("w{w}-{i:06}");
        let started = Instant::now();
        let outcome: Result<(), String> = if rest {
            let url = format!("{base}/v1.0/{POLICIES}/p/userStatuses");
            let body = serde_json::json!({"id": id, "devicesCount": i, "status": "compliant"}).to_string();
            match try_http("POST", &url, Some(&body)).await {
                Ok(r) if r.status == 201 => Ok(()),
                Ok(r) => {
                    let json = r.json();
                    let graph_body = json["error"]["code"].is_string() && json["error"]["message"].is_string();
                    Err(format!("REST {} graph_body={graph_body} {}", r.status, r.text))
                }
                Err(e) => Err(format!("REST transport error {e}")),
            }
        } else {
            let msg = UserMsg {
                id: id.clone(),
                devices_count: i,
                ..Default::default()
            };
            match PARENTS[0].create_status(&ch, "User", "p", msg).await {
                Ok(_) => Ok(()),
                Err(s) => Err(format!("gRPC {:?} {}", s.code(), s.message())),
            }
        };
        let took = started.elapsed();
        let failed = {
            let mut seen = seen.lock().unwrap();
            seen.slowest = seen.slowest.max(took);
            match outcome {
                Ok(()) => {
                    seen.acknowledged.push(id);
                    if back.load(Ordering::Relaxed) {
                        seen.recovered += 1;
                    }
                    false
                }
                Err(what) => {
                    seen.failures.push((what, took));
                    true
                }
            }
        };
        if failed {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn outage(label: &str, take_down: impl FnOnce(&Cluster)) {
    let cluster = match Cluster::start() {
        Ok(c) => c,
        Err(reason) => return eprintln!("skipped: {reason}"),
    };
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::for_data_dir(dir.path());
    config.database_url = Some(cluster.url.clone());
    config.database_timeout_secs = 2;
    config.request_timeout_secs = REQUEST_TIMEOUT.as_secs();
    let server = Server::start(config).await.expect("statusd starts on PostgreSQL");
    let base = format!("http://{}", server.local_addr());
    let ch = common::channel_to(&server).await;
    PARENTS[0]
        .create(&ch, PARENTS[0].new_parent("p", "outage"))
        .await
        .unwrap();

    let (stop, back) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
    let seen = Arc::new(Mutex::new(Seen::default()));
    let tasks: Vec<_> = (0..8)
        .map(|w| {
            tokio::spawn(writer(
                w,
                ch.clone(),
                base.clone(),
                stop.clone(),
                back.clone(),
                seen.clone(),
            ))
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(800)).await;
    let before = seen.lock().unwrap().acknowledged.len();
    assert!(before > 0, "{label}: nothing was written before the outage");

    take_down(&cluster);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let during: Vec<(String, Duration)> = seen.lock().unwrap().failures.clone();
    let down_started = Instant::now();
    let cluster = tokio::task::spawn_blocking(move || {
        cluster.start_again();
        cluster
    })
    .await
    .unwrap();
    back.store(true, Ordering::Relaxed);
    let deadline = Instant::now() + Duration::from_secs(30);
    while seen.lock().unwrap().recovered < 50 {
        assert!(
            Instant::now() < deadline,
            "{label}: statusd did not recover within 30 s of the database's restart"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let recovery = down_started.elapsed();
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }

    let seen = std::mem::take(&mut *seen.lock().unwrap());
    assert!(
        !during.is_empty(),
        "{label}: no write failed while the database was down"
    );
    for (what, took) in &seen.failures {
        let unavailable = what.starts_with("gRPC Unavailable") || what.starts_with("REST 503 graph_body=true");
        assert!(
            unavailable,
            "{label}: a write failed other than UNAVAILABLE/503: {what}"
        );
        assert!(*took < REQUEST_TIMEOUT, "{label}: a failure took {took:?}: {what}");
    }
    assert!(
        seen.slowest < REQUEST_TIMEOUT,
        "{label}: a request took {:?}",
        seen.slowest
    );

    // Every acknowledged write is there (listed through the API).
    let mut stored = std::collections::BTreeSet::new();
    let mut token = String::new();
    loop {
        let (page, next): (Vec<UserMsg>, String) = PARENTS[0]
            .list_statuses(&ch, "User", "p", 1000, &token)
            .await
            .expect("list after the outage");
        stored.extend(page.into_iter().map(|m| m.id));
        if next.is_empty() {
            break;
        }
        token = next;
    }
    let lost: Vec<&String> = seen.acknowledged.iter().filter(|id| !stored.contains(*id)).collect();
    assert!(lost.is_empty(), "{label}: acknowledged writes lost: {lost:?}");
    eprintln!(
        "{label}: {} acknowledged ({before} before the outage), {} failures while down (all UNAVAILABLE/503, slowest request {:?}), \
         recovered {:?} after the restart began, none lost",
        seen.acknowledged.len(),
        seen.failures.len(),
        seen.slowest,
        recovery
    );
    server.shutdown().await.unwrap();
    drop(cluster);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_stopped_under_load_is_unavailable_then_recovers() {
    outage("pg_ctl stop -m immediate", Cluster::stop_immediate).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigkilled_postmaster_is_unavailable_then_recovers() {
    outage("SIGKILL of the postmaster", Cluster::kill_postmaster).await;
}

/// A host list with `target_session_attrs=read-write` follows the primary:
/// with a "standby" (a server refusing writes) first in the list statusd
/// writes to the primary; when the primary dies and the standby is
/// promoted (made writable), statusd answers UNAVAILABLE meanwhile and then
/// writes to the new primary, with no restart. (Two independent servers
/// stand in for a replicated pair: this checks statusd's side, the
/// connection routing, not PostgreSQL's replication.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_list_follows_the_primary() {
    let (standby, primary) = match (Cluster::start(), Cluster::start()) {
        (Ok(s), Ok(p)) => (s, p),
        (Err(reason), _) | (_, Err(reason)) => return eprintln!("skipped: {reason}"),
    };
    // A replicated standby would have the primary's schema: give it one.
    drop(
        statusd::store::PostgresStore::connect(&statusd::store::PostgresConfig {
            url: standby.url.clone(),
            ca: None,
            pool_size: 1,
            connect_timeout: Duration::from_secs(5),
            watch_history: 1_000_000,
        })
        .await
        .expect("schema on the standby"),
    );
    standby.set_read_only(true).await;
    let url = format!(
        "postgres://statusd@127.0.0.1:{},127.0.0.1:{}/statusd?target_session_attrs=read-write",
        standby.port(),
        primary.port()
    );
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::for_data_dir(dir.path());
    config.database_url = Some(url);
    config.database_timeout_secs = 2;
    let server = Server::start(config).await.expect("statusd finds the primary");
    let ch = common::channel_to(&server).await;
    let api = PARENTS[0];
    api.create(&ch, api.new_parent("on-primary", "first")).await.unwrap();
    let on_primary = common::pg::query_strings(&primary.url, "SELECT id FROM device_compliance_policies").await;
    assert_eq!(on_primary, ["on-primary"]);

    // The primary dies; the standby is promoted.
    primary.stop_immediate();
    let started = Instant::now();
    let err = api.create(&ch, api.new_parent("during", "x")).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable, "{err:?}");
    standby.set_read_only(false).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match api.create(&ch, api.new_parent("after-failover", "x")).await {
            Ok(_) => break,
            Err(e) if e.code() == tonic::Code::Unavailable && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Err(e) => panic!("no failover: {e:?}"),
        }
    }
    let on_new_primary = common::pg::query_strings(&standby.url, "SELECT id FROM device_compliance_policies").await;
    assert_eq!(on_new_primary, ["after-failover"]);
    eprintln!(
        "failover: writes went to the promoted server {:?} after the primary stopped",
        started.elapsed()
    );
    server.shutdown().await.unwrap();
}
