//! Durability: what a create that returned success promises.
//!
//! - a restart on the same directory keeps everything;
//! - 64 concurrent writers: every acknowledged create is listed exactly once;
//! - a crash (SIGKILL of the real binary while writers run) loses nothing
//!   that was acknowledged, and the store opens cleanly afterwards.

mod common;

use common::{ParentMsg, TestServer, UserMsg, PARENTS};
use std::collections::HashSet;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tonic::transport::Channel;

async fn list_all_user_ids(ch: &Channel, parent: &str) -> Vec<String> {
    let mut ids = Vec::new();
    let mut token = String::new();
    loop {
        let (items, next) = PARENTS[0]
            .list_statuses::<UserMsg>(ch, "User", parent, 1000, &token)
            .await
            .expect("list");
        ids.extend(items.into_iter().map(|s| s.id));
        if next.is_empty() {
            return ids;
        }
        token = next;
    }
}

#[tokio::test]
async fn restart_keeps_everything() {
    let t = TestServer::start().await;
    let ch = t.channel().await;
    let mut expected = Vec::new();
    for api in PARENTS {
        let p = api.create(&ch, api.new_parent("p", "kept")).await.unwrap();
        let s = api
            .create_status(
                &ch,
                "User",
                "p",
                UserMsg {
                    devices_count: 7,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        expected.push((api, p, s));
    }
    let t = t.restart().await;
    let ch = t.channel().await;
    for (api, p, s) in expected {
        assert_eq!(api.get(&ch, "p").await.unwrap(), p);
        let got: UserMsg = api.get_status(&ch, "User", "p", &s.id).await.unwrap();
        assert_eq!(got, s);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_lose_nothing() {
    const WRITERS: usize = 64;
    const PER_WRITER: usize = 100;
    let t = TestServer::start().await;
    let ch = t.channel().await;
    PARENTS[0]
        .create(&ch, PARENTS[0].new_parent("busy", "x"))
        .await
        .unwrap();
    let started = Instant::now();
    let tasks: Vec<_> = (0..WRITERS)
        .map(|w| {
            let ch = ch.clone();
            tokio::spawn(async move {
                let mut acked = Vec::with_capacity(PER_WRITER);
                for i in 0..PER_WRITER {
                    let msg = UserMsg {
                        id: format!("w{w:02}-{i:03}"),
                        devices_count: i as i32,
                        ..Default::default()
                    };
                    let s = PARENTS[0]
                        .create_status(&ch, "User", "busy", msg)
                        .await
                        .expect("create");
                    acked.push(s.id);
                }
                acked
            })
        })
        .collect();
    let mut acked = HashSet::new();
    for t in tasks {
        for id in t.await.unwrap() {
            assert!(acked.insert(id), "an id was acknowledged twice");
        }
    }
    let elapsed = started.elapsed();
    eprintln!(
        "{} durable creates by {WRITERS} writers in {elapsed:?} ({:.0}/s)",
        acked.len(),
        acked.len() as f64 / elapsed.as_secs_f64()
    );
    let listed = list_all_user_ids(&ch, "busy").await;
    assert_eq!(listed.len(), WRITERS * PER_WRITER, "listed exactly once each");
    assert_eq!(listed.iter().cloned().collect::<HashSet<_>>(), acked);
}

/// The real binary as a child process on a free loopback port.
struct ChildServer {
    child: Child,
    addr: String,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn spawn_server(dir: &std::path::Path) -> ChildServer {
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_statusd"))
        .args(["--listen", &format!("127.0.0.1:{port}"), "--data-dir"])
        .arg(dir)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn statusd");
    ChildServer {
        child,
        addr: format!("http://127.0.0.1:{port}"),
    }
}

async fn connect(addr: &str) -> Channel {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match Channel::from_shared(addr.to_owned()).unwrap().connect().await {
            Ok(ch) => return ch,
            Err(e) if Instant::now() > deadline => panic!("server did not come up: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_creates_survive_sigkill() {
    let cycles: usize = std::env::var("STATUSD_CRASH_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let dir = tempfile::tempdir().unwrap();
    let mut acked_total: HashSet<String> = HashSet::new();
    for cycle in 0..cycles {
        let mut server = spawn_server(dir.path());
        let ch = connect(&server.addr).await;
        if cycle == 0 {
            PARENTS[0]
                .create(
                    &ch,
                    ParentMsg {
                        ..PARENTS[0].new_parent("crash", "x")
                    },
                )
                .await
                .unwrap();
        }
        // Everything acknowledged before is still there after the restart.
        let listed: HashSet<String> = list_all_user_ids(&ch, "crash").await.into_iter().collect();
        let missing: Vec<_> = acked_total.difference(&listed).collect();
        assert!(
            missing.is_empty(),
            "cycle {cycle}: acknowledged creates lost: {missing:?}"
        );

        let acked = Arc::new(Mutex::new(Vec::new()));
        let writers: Vec<_> = (0..16)
            .map(|w| {
                let ch = ch.clone();
                let acked = acked.clone();
                tokio::spawn(async move {
                    for i in 0.. {
                        let msg = UserMsg {
                            id: format!("c{cycle}-w{w}-{i}"),
                            ..Default::default()
                        };
                        match PARENTS[0].create_status(&ch, "User", "crash", msg).await {
                            Ok(s) => acked.lock().unwrap().push(s.id),
                            Err(_) => return,
                        }
                    }
                })
            })
            .collect();
        let delay = 150 + rand::random::<u64>() % 400;
        tokio::time::sleep(Duration::from_millis(delay)).await;
        server.child.kill().expect("SIGKILL"); // SIGKILL on Unix
        server.child.wait().unwrap();
        for w in writers {
            let _ = w.await;
        }
        let acked = acked.lock().unwrap().clone();
        assert!(
            !acked.is_empty(),
            "cycle {cycle}: writers made progress before the kill"
        );
        acked_total.extend(acked);
    }
    // Final check on a clean start.
    let mut server = spawn_server(dir.path());
    let ch = connect(&server.addr).await;
    let listed: HashSet<String> = list_all_user_ids(&ch, "crash").await.into_iter().collect();
    let missing: Vec<_> = acked_total.difference(&listed).collect();
    eprintln!(
        "crash test: {cycles} SIGKILL cycles, {} acknowledged creates, {} lost",
        acked_total.len(),
        missing.len()
    );
    assert!(missing.is_empty(), "acknowledged creates lost: {missing:?}");
    server.child.kill().ok();
    server.child.wait().ok();
}
