//! N replicas, one truth: two `statusd` processes on one PostgreSQL database
//! (a fresh schema of `STATUSD_TEST_DATABASE_URL`; skipped without it).
//! - a write through one is read through the other at once, over gRPC and
//!   REST, including updates and deletes;
//! - a page token (a REST `@odata.nextLink`, a gRPC `next_page_token`)
//!   issued by one continues on the other;
//! - concurrent creates under one parent through both lose nothing;
//! - a parent delete through one while the other creates statuses leaves
//!   no orphan, and nothing a create acknowledged survives the delete.

mod common;

use common::{http, ChildServer, UserMsg, PARENTS};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tonic::transport::Channel;

const POLICIES: &str = "deviceManagement/deviceCompliancePolicies";

/// Two replicas on one fresh schema.
struct Replicas {
    a: ChildServer,
    b: ChildServer,
    url: String,
    _dirs: (tempfile::TempDir, tempfile::TempDir),
}

impl Replicas {
    async fn start(label: &str) -> Result<Replicas, String> {
        let base = common::pg::database_url()?;
        let url = common::pg::fresh_schema(&base, label).await;
        let dirs = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let a = ChildServer::spawn_with(dirs.0.path(), &["--database-url", &url]);
        let b = ChildServer::spawn_with(dirs.1.path(), &["--database-url", &url]);
        Ok(Replicas { a, b, url, _dirs: dirs })
    }

    async fn channels(&self) -> (Channel, Channel) {
        (self.a.connect().await, self.b.connect().await)
    }
}

impl Drop for Replicas {
    fn drop(&mut self) {
        self.a.kill();
        self.b.kill();
    }
}

macro_rules! replicas {
    ($label:expr) => {
        match Replicas::start($label).await {
            Ok(r) => r,
            Err(reason) => return eprintln!("skipped: {reason}"),
        }
    };
}

async fn user_ids(ch: &Channel, parent: &str) -> Vec<String> {
    let mut ids = Vec::new();
    let mut token = String::new();
    loop {
        let (page, next): (Vec<UserMsg>, String) = PARENTS[0]
            .list_statuses(ch, "User", parent, 1000, &token)
            .await
            .expect("list");
        ids.extend(page.into_iter().map(|m| m.id));
        if next.is_empty() {
            return ids;
        }
        token = next;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_through_one_replica_is_read_through_the_other_at_once() {
    let r = replicas!("read_your_writes");
    let (a, b) = r.channels().await;
    let api = PARENTS[0];
    for i in 0..20 {
        let pid = format!("p{i}");
        // gRPC on A, REST on B.
        api.create(&a, api.new_parent(&pid, "replicated")).await.unwrap();
        let got = http("GET", &format!("{}/v1.0/{POLICIES}/{pid}", r.b.base), None).await;
        assert_eq!(got.status, 200, "{}", got.text);
        // REST on B, gRPC on A.
        let body = serde_json::json!({"id": "u1", "devicesCount": i, "status": "compliant"}).to_string();
        let created = http(
            "POST",
            &format!("{}/beta/{POLICIES}/{pid}/userStatuses", r.b.base),
            Some(&body),
        )
        .await;
        assert_eq!(created.status, 201, "{}", created.text);
        let s: UserMsg = api.get_status(&a, "User", &pid, "u1").await.unwrap();
        assert_eq!(s.devices_count, i);
        // An update on A is what B reads next.
        let patch = http(
            "PATCH",
            &format!("{}/v1.0/{POLICIES}/{pid}/userStatuses/u1", r.a.base),
            Some(&format!(r#"{{"devicesCount":{}}}"#, i + 100)),
        )
        .await;
        assert_eq!(patch.status, 200, "{}", patch.text);
        let s: UserMsg = api.get_status(&b, "User", &pid, "u1").await.unwrap();
        assert_eq!(s.devices_count, i + 100);
        // A delete on B is a 404 on A.
        api.delete(&b, &pid).await.unwrap();
        let gone = http(
            "GET",
            &format!("{}/v1.0/{POLICIES}/{pid}/userStatuses/u1", r.a.base),
            None,
        )
        .await;
        assert_eq!(gone.status, 404, "{}", gone.text);
        assert_eq!(api.get(&a, &pid).await.unwrap_err().code(), tonic::Code::NotFound);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_token_from_one_replica_continues_on_the_other() {
    let r = replicas!("page_tokens");
    let (a, b) = r.channels().await;
    let api = PARENTS[0];
    api.create(&a, api.new_parent("p", "paged")).await.unwrap();
    let expected: Vec<String> = (0..57).map(|i| format!("s{i:03}")).collect();
    for id in &expected {
        let msg = UserMsg {
            id: id.clone(),
            ..Default::default()
        };
        api.create_status(&a, "User", "p", msg).await.unwrap();
    }
    // REST: every nextLink is followed on the other replica.
    let mut seen = Vec::new();
    let mut url = format!("{}/v1.0/{POLICIES}/p/userStatuses?$top=10", r.a.base);
    for hop in 0.. {
        let page = http("GET", &url, None).await;
        assert_eq!(page.status, 200, "{}", page.text);
        let json = page.json();
        seen.extend(
            json["value"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v["id"].as_str().unwrap().to_owned()),
        );
        let Some(next) = json["@odata.nextLink"].as_str() else {
            break;
        };
        let (from, to) = if hop % 2 == 0 {
            (&r.a.base, &r.b.base)
        } else {
            (&r.b.base, &r.a.base)
        };
        assert!(next.starts_with(from.as_str()), "{next}");
        url = next.replacen(from.as_str(), to, 1);
    }
    assert_eq!(seen, expected, "REST pages across replicas");
    // gRPC: tokens alternate between the two.
    let mut seen = Vec::new();
    let mut token = String::new();
    for hop in 0.. {
        let ch = if hop % 2 == 0 { &a } else { &b };
        let (page, next): (Vec<UserMsg>, String) = api.list_statuses(ch, "User", "p", 10, &token).await.unwrap();
        seen.extend(page.into_iter().map(|m| m.id));
        if next.is_empty() {
            break;
        }
        token = next;
    }
    assert_eq!(seen, expected, "gRPC pages across replicas");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_creates_under_one_parent_through_both_replicas_lose_nothing() {
    let r = replicas!("concurrent_creates");
    let (a, b) = r.channels().await;
    let api = PARENTS[0];
    api.create(&a, api.new_parent("p", "busy")).await.unwrap();
    let tasks: Vec<_> = (0..16)
        .map(|t| {
            let ch = if t % 2 == 0 { a.clone() } else { b.clone() };
            tokio::spawn(async move {
                let mut acknowledged = Vec::new();
                for i in 0..50 {
                    let msg = UserMsg {
                        id: format!("t{t:02}-{i:03}"),
                        ..Default::default()
                    };
                    api.create_status(&ch, "User", "p", msg.clone()).await.unwrap();
                    acknowledged.push(msg.id);
                }
                acknowledged
            })
        })
        .collect();
    let mut acknowledged = BTreeSet::new();
    for t in tasks {
        acknowledged.extend(t.await.unwrap());
    }
    assert_eq!(acknowledged.len(), 800);
    for ch in [&a, &b] {
        let listed: BTreeSet<String> = user_ids(ch, "p").await.into_iter().collect();
        assert_eq!(listed, acknowledged);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parent_delete_through_one_replica_while_the_other_creates_leaves_no_orphan() {
    let r = replicas!("delete_race");
    let (a, b) = r.channels().await;
    let api = PARENTS[0];
    for round in 0..5 {
        let pid = format!("p{round}");
        api.create(&a, api.new_parent(&pid, "doomed")).await.unwrap();
        let deleted = Arc::new(AtomicBool::new(false));
        let writers: Vec<_> = (0..8)
            .map(|w| {
                let (ch, pid, deleted) = (b.clone(), pid.clone(), deleted.clone());
                tokio::spawn(async move {
                    let mut acknowledged = Vec::new();
                    for i in 0.. {
                        let msg = UserMsg {
                            id: format!("w{w}-{i:05}"),
                            ..Default::default()
                        };
                        match api.create_status(&ch, "User", &pid, msg.clone()).await {
                            Ok(_) => acknowledged.push(msg.id),
                            Err(s) if s.code() == tonic::Code::NotFound => {
                                assert!(deleted.load(Ordering::SeqCst), "NotFound before the delete: {s:?}");
                                return acknowledged;
                            }
                            Err(s) => panic!("create while racing a delete: {s:?}"),
                        }
                    }
                    unreachable!()
                })
            })
            .collect();
        tokio::time::sleep(std::time::Duration::from_millis(150)).await;
        deleted.store(true, Ordering::SeqCst);
        api.delete(&a, &pid).await.unwrap();
        let mut acknowledged = 0;
        for w in writers {
            acknowledged += w.await.unwrap().len();
        }
        assert!(acknowledged > 0, "round {round}: the writers did not run");
        // The same id again, through the writers' replica: nothing of before.
        api.create(&b, api.new_parent(&pid, "again")).await.unwrap();
        assert_eq!(user_ids(&a, &pid).await, Vec::<String>::new(), "round {round}");
    }
    let orphans = common::pg::query_strings(
        &r.url,
        "SELECT count(*) FROM device_compliance_policy_user_statuses s \
         WHERE NOT EXISTS (SELECT 1 FROM device_compliance_policies p WHERE p.id = s.parent_id)",
    )
    .await;
    assert_eq!(orphans, vec!["0".to_owned()]);
}

/// Events until the parent's delete ends the stream.
async fn all_events(
    mut stream: tonic::Streaming<statusd::pb::DeviceComplianceUserStatusEvent>,
) -> Vec<(statusd::pb::DeviceComplianceUserStatusEvent, std::time::Instant)> {
    let mut out = Vec::new();
    loop {
        match tokio::time::timeout(std::time::Duration::from_secs(20), stream.message()).await {
            Ok(Ok(Some(e))) => out.push((e, std::time::Instant::now())),
            Ok(Ok(None)) => return out,
            other => panic!("the watch ended badly after {} events: {other:?}", out.len()),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watchers_on_every_replica_see_every_replicas_changes_once_in_one_order() {
    use statusd::pb::device_compliance_policies_client::DeviceCompliancePoliciesClient;
    let r = replicas!("watch");
    let (a, b) = r.channels().await;
    let api = PARENTS[0];
    api.create(&a, api.new_parent("wp", "watched")).await.unwrap();
    let start = |ch: Channel| async move {
        DeviceCompliancePoliciesClient::new(ch)
            .watch_user_statuses(statusd::pb::WatchStatusesRequest {
                parent_id: "wp".into(),
                start_revision: 0,
            })
            .await
            .unwrap()
            .into_inner()
    };
    let on_a = tokio::spawn(all_events(start(a.clone()).await));
    let on_b = tokio::spawn(all_events(start(b.clone()).await));
    // 8 writers, half through each replica: creates, updates, deletes.
    let acked = Arc::new(std::sync::Mutex::new(Vec::new()));
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let ch = if w % 2 == 0 { a.clone() } else { b.clone() };
            let acked = acked.clone();
            tokio::spawn(async move {
                for i in 0..40 {
                    let id = format!("w{w}-{i}");
                    let msg = UserMsg {
                        id: id.clone(),
                        ..Default::default()
                    };
                    api.create_status(&ch, "User", "wp", msg.clone()).await.unwrap();
                    acked.lock().unwrap().push((id.clone(), std::time::Instant::now()));
                    if i % 4 == 0 {
                        let changed = UserMsg { status: 2, ..msg };
                        api.update_status(&ch, "User", "wp", changed, Some(&["status"]))
                            .await
                            .unwrap();
                    }
                    if i % 8 == 0 {
                        api.delete_status(&ch, "User", "wp", &id).await.unwrap();
                    }
                }
            })
        })
        .collect();
    for w in writers {
        w.await.unwrap();
    }
    api.delete(&b, "wp").await.unwrap();
    let (seen_a, seen_b) = (on_a.await.unwrap(), on_b.await.unwrap());
    // 320 creates, 80 updates, 40 deletes, the parent's delete.
    assert_eq!(seen_a.len(), 441, "replica A's watcher");
    let order = |seen: &[(statusd::pb::DeviceComplianceUserStatusEvent, std::time::Instant)]| {
        seen.iter()
            .map(|(e, _)| (e.revision, e.r#type, e.status_id.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        order(&seen_a),
        order(&seen_b),
        "both replicas' watchers see one history"
    );
    let revisions: Vec<u64> = seen_a.iter().map(|(e, _)| e.revision).collect();
    assert!(revisions.windows(2).all(|w| w[0] < w[1]), "in revision order");
    // How long after its acknowledgement a create reached each watcher.
    let acked = acked.lock().unwrap().clone();
    let mut delays: Vec<f64> = Vec::new();
    for seen in [&seen_a, &seen_b] {
        for (id, at) in &acked {
            let (_, got) = seen
                .iter()
                .find(|(e, _)| e.status_id == *id && e.r#type == statusd::pb::WatchEventType::Created as i32)
                .unwrap_or_else(|| panic!("the create of {id} was never seen"));
            delays.push(got.saturating_duration_since(*at).as_secs_f64() * 1000.0);
        }
    }
    delays.sort_by(|x, y| x.partial_cmp(y).unwrap());
    eprintln!(
        "watch delay from acknowledgement, across replicas: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        delays[delays.len() / 2],
        delays[delays.len() * 99 / 100],
        delays[delays.len() - 1]
    );
}
