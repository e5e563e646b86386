//! Watch against the real server (sled): events for every change under one
//! parent in commit order, ending after the parent's delete; resuming from a
//! revision without gaps or duplicates, also across a restart; OUT_OF_RANGE
//! for a revision no longer kept; a stalled watcher ended with
//! RESOURCE_EXHAUSTED without holding writers back; and every watch ended at
//! shutdown.

mod common;

use common::{ParentApi, TestServer, UserMsg, PARENTS};
use statusd::pb;
use statusd::pb::device_compliance_policies_client::DeviceCompliancePoliciesClient;
use tonic::transport::Channel;
use tonic::Code;

type Event = pb::DeviceComplianceUserStatusEvent;

const POLICIES: ParentApi = PARENTS[0];

async fn watch(ch: &Channel, parent: &str, start: u64) -> Result<tonic::Streaming<Event>, tonic::Status> {
    DeviceCompliancePoliciesClient::new(ch.clone())
        .watch_user_statuses(pb::WatchStatusesRequest {
            parent_id: parent.into(),
            start_revision: start,
        })
        .await
        .map(|r| r.into_inner())
}

/// The next `n` events, failing the test after 10 s.
async fn take(stream: &mut tonic::Streaming<Event>, n: usize) -> Vec<Event> {
    let mut out = Vec::new();
    while out.len() < n {
        let next = tokio::time::timeout(std::time::Duration::from_secs(10), stream.message())
            .await
            .expect("an event within 10 s")
            .expect("no error");
        out.push(next.expect("the stream goes on"));
    }
    out
}

fn user(id: &str, status: i32) -> UserMsg {
    UserMsg {
        id: id.into(),
        status,
        ..Default::default()
    }
}

/// `(type, status id, status value)` of each event, to compare sequences.
fn summary(events: &[Event]) -> Vec<(i32, String, Option<i32>)> {
    events
        .iter()
        .map(|e| (e.r#type, e.status_id.clone(), e.status.as_ref().map(|s| s.status)))
        .collect()
}

fn assert_increasing(events: &[Event]) {
    for pair in events.windows(2) {
        assert!(pair[0].revision < pair[1].revision, "{events:#?}");
    }
}

#[tokio::test]
async fn a_watch_sees_every_change_under_its_parent_in_order_and_ends_after_the_parent_delete() {
    let server = TestServer::start().await;
    let ch = server.channel().await;
    for p in ["w", "other"] {
        POLICIES.create(&ch, POLICIES.new_parent(p, p)).await.unwrap();
    }
    let e = watch(&ch, "missing", 0).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
    let mut stream = watch(&ch, "w", 0).await.unwrap();

    POLICIES.create_status(&ch, "User", "w", user("s1", 0)).await.unwrap();
    POLICIES
        .update_status(&ch, "User", "w", user("s1", 2), Some(&["status"]))
        .await
        .unwrap();
    // Not this watch's: another parent, the other shape.
    POLICIES
        .create_status(&ch, "User", "other", user("x", 0))
        .await
        .unwrap();
    POLICIES
        .create_status(&ch, "Device", "w", common::DeviceMsg::default())
        .await
        .unwrap();
    POLICIES.create_status(&ch, "User", "w", user("s2", 4)).await.unwrap();
    POLICIES.delete_status(&ch, "User", "w", "s1").await.unwrap();
    POLICIES.delete(&ch, "w").await.unwrap();

    let events = take(&mut stream, 5).await;
    use pb::WatchEventType as T;
    assert_eq!(
        summary(&events),
        vec![
            (T::Created as i32, "s1".into(), Some(0)),
            (T::Updated as i32, "s1".into(), Some(2)),
            (T::Created as i32, "s2".into(), Some(4)),
            (T::Deleted as i32, "s1".into(), None),
            (T::ParentDeleted as i32, String::new(), None),
        ]
    );
    assert_increasing(&events);
    // The parent's delete is the last event: the stream ends.
    let end = tokio::time::timeout(std::time::Duration::from_secs(5), stream.message()).await;
    assert!(matches!(end, Ok(Ok(None))), "{end:?}");
}

#[tokio::test]
async fn a_watch_resumes_from_a_revision_without_gaps_or_duplicates_also_across_a_restart() {
    let server = TestServer::start().await;
    let ch = server.channel().await;
    POLICIES.create(&ch, POLICIES.new_parent("r", "r")).await.unwrap();
    let mut first = watch(&ch, "r", 0).await.unwrap();
    for i in 0..6 {
        POLICIES
            .create_status(&ch, "User", "r", user(&format!("a{i}"), i % 8))
            .await
            .unwrap();
    }
    let seen = take(&mut first, 3).await;
    drop(first); // a disconnect after three events
    for i in 0..4 {
        POLICIES
            .update_status(&ch, "User", "r", user(&format!("a{i}"), 7), Some(&["status"]))
            .await
            .unwrap();
    }
    let mut resumed = watch(&ch, "r", seen[2].revision + 1).await.unwrap();
    let rest = take(&mut resumed, 7).await;
    let mut all = seen.clone();
    all.extend(rest);
    assert_increasing(&all);
    let ids: Vec<&str> = all.iter().map(|e| e.status_id.as_str()).collect();
    assert_eq!(ids, ["a0", "a1", "a2", "a3", "a4", "a5", "a0", "a1", "a2", "a3"]);
    drop(resumed);

    // Across a restart: the history is on disk, revisions go on.
    let server = server.restart().await;
    let ch = server.channel().await;
    POLICIES.delete_status(&ch, "User", "r", "a5").await.unwrap();
    let mut again = watch(&ch, "r", all[0].revision).await.unwrap();
    let replayed = take(&mut again, 11).await;
    assert_eq!(
        summary(&replayed[..10]),
        summary(&all),
        "the same history after a restart"
    );
    assert_eq!(
        replayed[..10].iter().map(|e| e.revision).collect::<Vec<_>>(),
        all.iter().map(|e| e.revision).collect::<Vec<_>>()
    );
    assert_eq!(
        (replayed[10].r#type, replayed[10].status_id.as_str()),
        (pb::WatchEventType::Deleted as i32, "a5")
    );
    assert!(replayed[10].revision > all[9].revision);
}

#[tokio::test]
async fn a_revision_older_than_the_history_kept_is_out_of_range_naming_the_oldest() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = common::test_config(dir.path()).await;
    config.watch_history = 10;
    let server = statusd::Server::start(config.clone()).await.unwrap();
    let ch = common::channel_to(&server).await;
    POLICIES.create(&ch, POLICIES.new_parent("h", "h")).await.unwrap();
    let mut revisions = Vec::new();
    let mut stream = watch(&ch, "h", 0).await.unwrap();
    for i in 0..40 {
        POLICIES
            .create_status(&ch, "User", "h", user(&format!("s{i}"), 0))
            .await
            .unwrap();
    }
    revisions.extend(take(&mut stream, 40).await.iter().map(|e| e.revision));
    drop(stream);
    // History is trimmed at checkpoints on sled (a clean stop and start makes
    // one), and every second by each replica on PostgreSQL.
    server.shutdown().await.unwrap();
    let server = statusd::Server::start(config).await.unwrap();
    let ch = common::channel_to(&server).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let e = loop {
        match watch(&ch, "h", revisions[0]).await {
            Err(e) => break e,
            Ok(_) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await
            }
            Ok(_) => panic!("revision {} is still kept", revisions[0]),
        }
    };
    assert_eq!(e.code(), Code::OutOfRange, "{e:?}");
    let oldest: u64 = e
        .message()
        .split("can start from is ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("the message names the oldest revision: {}", e.message()));
    assert!(
        oldest > revisions[0] && oldest <= revisions[39],
        "{oldest} {revisions:?}"
    );
    // From the oldest kept on, the replay is exactly what remains.
    let mut stream = watch(&ch, "h", oldest).await.unwrap();
    let kept: Vec<u64> = revisions.iter().copied().filter(|r| *r >= oldest).collect();
    let replayed = take(&mut stream, kept.len()).await;
    assert_eq!(replayed.iter().map(|e| e.revision).collect::<Vec<_>>(), kept);
    drop(stream);
    server.shutdown().await.unwrap();
}

/// `n` creates under `parent` from 16 concurrent writers; creates per second.
async fn write_burst(ch: &Channel, parent: &str, prefix: &str, n: usize) -> f64 {
    let started = std::time::Instant::now();
    let tasks: Vec<_> = (0..16)
        .map(|w| {
            let (ch, parent, prefix) = (ch.clone(), parent.to_owned(), prefix.to_owned());
            tokio::spawn(async move {
                for i in (w..n).step_by(16) {
                    POLICIES
                        .create_status(&ch, "User", &parent, user(&format!("{prefix}{i}"), 0))
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    n as f64 / started.elapsed().as_secs_f64()
}

#[tokio::test]
async fn a_stalled_watcher_does_not_hold_writers_back_is_ended_and_can_resume() {
    let server = TestServer::start().await;
    let ch = server.channel().await;
    POLICIES.create(&ch, POLICIES.new_parent("slow", "slow")).await.unwrap();
    let n = 6_000;
    let alone = write_burst(&ch, "slow", "a", n).await;
    // A watcher on its own connection that reads nothing while the same
    // number of writes goes by, and then more. Its HTTP/2 windows are small,
    // so the transport holds few events for it (clients' defaults hold
    // megabytes before the server sees any backlog).
    let watcher_ch = Channel::from_shared(server.base_url())
        .unwrap()
        .initial_stream_window_size(16 * 1024)
        .initial_connection_window_size(64 * 1024)
        .connect()
        .await
        .unwrap();
    let mut stalled = watch(&watcher_ch, "slow", 0).await.unwrap();
    let watched = write_burst(&ch, "slow", "b", n).await;
    write_burst(&ch, "slow", "c", n).await;
    eprintln!(
        "creates/s: {alone:.0} without a watcher, {watched:.0} with a stalled one ({:.2})",
        watched / alone
    );
    assert!(
        watched > alone * 0.5,
        "a stalled watcher slowed writers: {watched:.0}/s vs {alone:.0}/s"
    );
    // Reading now: what was in flight, then RESOURCE_EXHAUSTED naming the
    // revision to resume from.
    let mut received: Vec<Event> = Vec::new();
    let status = loop {
        match tokio::time::timeout(std::time::Duration::from_secs(10), stalled.message())
            .await
            .unwrap_or_else(|_| panic!("no answer within 10 s after {} events", received.len()))
        {
            Ok(Some(e)) => received.push(e),
            Ok(None) => panic!("the stream ended without an error after {} events", received.len()),
            Err(status) => break status,
        }
    };
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(
        received.len() < 2 * n,
        "it was ended early, after {} events",
        received.len()
    );
    let resume: u64 = status
        .message()
        .rsplit("from revision ")
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("the message names a revision: {}", status.message()));
    assert_eq!(
        resume,
        received.last().map_or(0, |e| e.revision) + 1,
        "resume right after the last event"
    );
    // Resuming from there gets the rest: every b and c create, exactly once.
    let mut resumed = watch(&ch, "slow", resume).await.unwrap();
    let rest = take(&mut resumed, 2 * n - received.len()).await;
    received.extend(rest);
    assert_increasing(&received);
    let mut ids: Vec<String> = received.iter().map(|e| e.status_id.clone()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 2 * n);
    assert!(ids.iter().all(|id| id.starts_with('b') || id.starts_with('c')));
}

#[tokio::test]
async fn every_watch_ends_at_shutdown_and_shutdown_does_not_wait_for_it() {
    let (server, _dir) = common::start_with(|_| {}).await;
    let ch = common::channel_to(&server).await;
    POLICIES.create(&ch, POLICIES.new_parent("s", "s")).await.unwrap();
    let mut streams = Vec::new();
    for _ in 0..3 {
        streams.push(watch(&ch, "s", 0).await.unwrap());
    }
    POLICIES.create_status(&ch, "User", "s", user("x", 0)).await.unwrap();
    let mut firsts = Vec::new();
    for s in &mut streams {
        firsts.extend(take(s, 1).await);
    }
    assert!(firsts.iter().all(|e| e.status_id == "x"), "{firsts:?}");
    let started = std::time::Instant::now();
    server.shutdown().await.unwrap();
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "shutdown waited {:?} for the watches",
        started.elapsed()
    );
    for mut s in streams {
        let end = s.message().await;
        match end {
            Err(status) => {
                assert_eq!(status.code(), Code::Unavailable, "{status:?}");
                assert!(status.message().contains("resume"), "{status:?}");
            }
            other => panic!("expected UNAVAILABLE at shutdown, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn without_history_a_watch_starts_from_now_and_a_resume_is_out_of_range() {
    let (server, _dir) = common::start_with(|c| c.watch_history = 0).await;
    let ch = common::channel_to(&server).await;
    POLICIES.create(&ch, POLICIES.new_parent("n", "n")).await.unwrap();
    let mut live = watch(&ch, "n", 0).await.unwrap();
    POLICIES.create_status(&ch, "User", "n", user("x", 0)).await.unwrap();
    let seen = take(&mut live, 1).await;
    assert_eq!(seen[0].status_id, "x");
    let e = watch(&ch, "n", seen[0].revision).await.unwrap_err();
    assert_eq!(e.code(), Code::OutOfRange, "{e:?}");
    assert!(e.message().contains("--watch-history 0"), "{e:?}");
    drop(live);
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn open_watches_are_counted() {
    let (server, _dir) = common::start_with(|_| {}).await;
    let base = format!("http://{}", server.local_addr());
    let ch = common::channel_to(&server).await;
    let api = POLICIES;
    api.create(&ch, api.new_parent("watched", "w")).await.unwrap();
    let watchers = |t: &str| -> f64 {
        t.lines()
            .filter(|l| l.starts_with("statusd_watchers "))
            .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
            .sum()
    };
    let before = watchers(&common::http("GET", &format!("{base}/metrics"), None).await.text);
    let mut streams = Vec::new();
    for _ in 0..2 {
        let stream = DeviceCompliancePoliciesClient::new(ch.clone())
            .watch_user_statuses(statusd::pb::WatchStatusesRequest {
                parent_id: "watched".into(),
                start_revision: 0,
            })
            .await
            .unwrap()
            .into_inner();
        streams.push(stream);
    }
    // The gauge moves when each watch's task starts and ends.
    let settle = |want: f64| {
        let base = base.clone();
        async move {
            for _ in 0..100 {
                let now = watchers(&common::http("GET", &format!("{base}/metrics"), None).await.text);
                if now == want {
                    return;
                }
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            panic!("statusd_watchers never reached {want}");
        }
    };
    settle(before + 2.0).await;
    drop(streams);
    // A watch ends when its client goes (with the next event or its check).
    api.create_status(&ch, "User", "watched", UserMsg::default())
        .await
        .unwrap();
    settle(before).await;
    server.shutdown().await.unwrap();
}
