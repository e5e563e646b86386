//! Durability: what a create that returned success promises.
//!
//! - a restart on the same directory keeps everything;
//! - 64 concurrent writers: every acknowledged create is listed exactly once.
//!
//! Crashes (SIGKILL under load) are tested by `tests/crash.rs`.

mod common;

use common::{TestServer, UserMsg, PARENTS};
use std::collections::HashSet;
use std::time::Instant;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_flushes_and_exits_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = common::ChildServer::spawn(dir.path());
    let ch = server.connect().await;
    PARENTS[1]
        .create(&ch, PARENTS[1].new_parent("term", "x"))
        .await
        .unwrap();
    // Writers keep going while the signal arrives; what they got acknowledged must survive.
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let ch = ch.clone();
            tokio::spawn(async move {
                let mut acked = Vec::new();
                for i in 0.. {
                    let msg = UserMsg {
                        id: format!("t{w}-{i}"),
                        ..Default::default()
                    };
                    match PARENTS[1].create_status(&ch, "User", "term", msg).await {
                        Ok(s) => acked.push(s.id),
                        Err(_) => return acked,
                    }
                }
                acked
            })
        })
        .collect();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let pid = server.child.id().to_string();
    assert!(std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let started = Instant::now();
    let status = tokio::task::spawn_blocking(move || server.child.wait().unwrap())
        .await
        .unwrap();
    assert!(status.success(), "statusd exited with {status:?} after SIGTERM");
    assert!(
        started.elapsed().as_secs() < 10,
        "shutdown took {:?}",
        started.elapsed()
    );
    let mut acked = HashSet::new();
    for w in writers {
        acked.extend(w.await.unwrap());
    }
    assert!(!acked.is_empty());
    let mut again = common::ChildServer::spawn(dir.path());
    let ch = again.connect().await;
    let mut stored = HashSet::new();
    let mut token = String::new();
    loop {
        let (items, next) = PARENTS[1]
            .list_statuses::<UserMsg>(&ch, "User", "term", 1000, &token)
            .await
            .unwrap();
        stored.extend(items.into_iter().map(|s| s.id));
        if next.is_empty() {
            break;
        }
        token = next;
    }
    assert!(
        acked.is_subset(&stored),
        "{} acknowledged creates lost",
        acked.difference(&stored).count()
    );
    again.kill();
}
