//! Status overviews (Graph's `deviceStatusOverview`, `userStatusSummary`, …)
//! against the real server: every status value lands in its documented count
//! under every prefix and over gRPC; the JSON has exactly Graph's properties
//! per version; and under concurrent writers, after them, and after a SIGKILL,
//! an overview equals a count over a full list of the statuses.

mod common;

use common::{http, ChildServer, DeviceMsg, OverviewMsg, ParentApi, TestServer, PARENTS};
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// The README's mapping, stated again independently of the code: each
/// status value and the count it adds to in beta; v1.0 has no
/// `conflictCount`, and counts conflicts as errors.
const MAPPING: [(&str, &str); 8] = [
    ("unknown", "pendingCount"),
    ("notApplicable", "notApplicableCount"),
    ("compliant", "successCount"),
    ("remediated", "successCount"),
    ("nonCompliant", "failedCount"),
    ("error", "errorCount"),
    ("conflict", "conflictCount"),
    ("notAssigned", "notApplicableCount"),
];

fn count_for(status: &str, beta: bool) -> &'static str {
    let (_, count) = MAPPING
        .iter()
        .find(|(s, _)| *s == status)
        .expect("a Graph status value");
    if *count == "conflictCount" && !beta {
        "errorCount"
    } else {
        count
    }
}

/// The REST path of one parent collection.
fn collection_path(api: &ParentApi) -> &'static str {
    match api.service {
        "DeviceCompliancePolicies" => "deviceManagement/deviceCompliancePolicies",
        "MobileAppConfigurations" => "deviceAppManagement/mobileAppConfigurations",
        _ => "deviceManagement/deviceConfigurations",
    }
}

/// `(statuses segment, overview segment, overview type, gRPC shape)` of each
/// shape under `api`.
fn shapes(api: &ParentApi) -> [(&'static str, &'static str, String, &'static str); 2] {
    let (prefix, noun) = match api.service {
        "DeviceCompliancePolicies" => ("deviceCompliance", "Overview"),
        "MobileAppConfigurations" => ("managedDeviceMobileAppConfiguration", "Summary"),
        _ => ("deviceConfiguration", "Overview"),
    };
    let segment = |shape: &str| -> &'static str {
        match (shape, noun) {
            ("user", "Overview") => "userStatusOverview",
            ("device", "Overview") => "deviceStatusOverview",
            ("user", _) => "userStatusSummary",
            _ => "deviceStatusSummary",
        }
    };
    [
        ("userStatuses", segment("user"), format!("{prefix}User{noun}"), "User"),
        (
            "deviceStatuses",
            segment("device"),
            format!("{prefix}Device{noun}"),
            "Device",
        ),
    ]
}

/// Graph's properties of an overview, in order, per version.
fn expected_keys(device: bool, beta: bool) -> Vec<&'static str> {
    let mut keys = vec![
        "@odata.context",
        "@odata.type",
        "id",
        "pendingCount",
        "notApplicableCount",
    ];
    if device && beta {
        keys.push("notApplicablePlatformCount");
    }
    keys.extend(["successCount", "errorCount", "failedCount"]);
    if beta {
        keys.push("conflictCount");
    }
    keys.extend(["lastUpdateDateTime", "configurationVersion"]);
    keys
}

/// The counts a set of status values should give in one version.
fn expected_counts(values: &[&str], device: bool, beta: bool) -> BTreeMap<String, i64> {
    let mut counts: BTreeMap<String, i64> = expected_keys(device, beta)
        .into_iter()
        .filter(|k| k.ends_with("Count"))
        .map(|k| (k.to_owned(), 0))
        .collect();
    for v in values {
        *counts.get_mut(count_for(v, beta)).expect("a count of this version") += 1;
    }
    counts
}

fn counts_of(body: &Value) -> BTreeMap<String, i64> {
    body.as_object()
        .expect("an object")
        .iter()
        .filter(|(k, _)| k.ends_with("Count"))
        .map(|(k, v)| (k.clone(), v.as_i64().expect("an integer count")))
        .collect()
}

fn grpc_counts(o: &OverviewMsg, device: bool) -> BTreeMap<String, i64> {
    let mut m = BTreeMap::from([
        ("pendingCount".to_owned(), i64::from(o.pending_count)),
        ("notApplicableCount".to_owned(), i64::from(o.not_applicable_count)),
        ("successCount".to_owned(), i64::from(o.success_count)),
        ("errorCount".to_owned(), i64::from(o.error_count)),
        ("failedCount".to_owned(), i64::from(o.failed_count)),
        ("conflictCount".to_owned(), i64::from(o.conflict_count)),
    ]);
    if device {
        m.insert(
            "notApplicablePlatformCount".to_owned(),
            i64::from(o.not_applicable_platform_count),
        );
    }
    m
}

async fn create_parent(base: &str, api: &ParentApi, id: &str) {
    let body = json!({"@odata.type": api.odata_type, "id": id, "displayName": format!("overview {id}")});
    let r = http(
        "POST",
        &format!("{base}/beta/{}", collection_path(api)),
        Some(&body.to_string()),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text);
}

#[tokio::test]
async fn every_status_value_lands_in_its_count_under_every_prefix_and_over_grpc() {
    let server = TestServer::start().await;
    let base = server.base_url();
    let ch = server.channel().await;
    let values: Vec<&str> = MAPPING.iter().map(|(s, _)| *s).collect();
    for api in &PARENTS {
        for (statuses, segment, entity, grpc_shape) in shapes(api) {
            let device = grpc_shape == "Device";
            let parent = format!("p-{}-{statuses}", api.service);
            create_parent(&base, api, &parent).await;
            let parent_url = |version: &str| format!("{base}/{version}/{}/{parent}", collection_path(api));
            // Empty: every count 0, at every prefix.
            for version in ["v1.0", "beta", "localtest"] {
                let beta = version != "v1.0";
                let r = http("GET", &format!("{}/{segment}", parent_url(version)), None).await;
                assert_eq!(r.status, 200, "{}", r.text);
                let body = r.json();
                assert_eq!(
                    counts_of(&body),
                    expected_counts(&[], device, beta),
                    "{version} {segment}"
                );
                let keys: Vec<&str> = body.as_object().unwrap().keys().map(String::as_str).collect();
                assert_eq!(
                    keys,
                    expected_keys(device, beta),
                    "{version} {segment}: Graph's properties in order"
                );
                assert_eq!(body["@odata.type"], format!("#microsoft.graph.{entity}"));
                assert_eq!(body["id"], parent.as_str());
                assert_eq!(body["configurationVersion"], 1);
                assert_eq!(body["lastUpdateDateTime"], "0001-01-01T00:00:00.0000000Z");
                assert!(
                    body["@odata.context"].as_str().unwrap().ends_with(&format!(
                        "/{version}/$metadata#{}('{parent}')/{segment}/$entity",
                        collection_path(api)
                    )),
                    "{body}"
                );
            }
            // One status per value.
            for v in &values {
                let r = http(
                    "POST",
                    &format!("{}/{statuses}", parent_url("beta")),
                    Some(&json!({"id": format!("s-{v}"), "status": v}).to_string()),
                )
                .await;
                assert_eq!(r.status, 201, "{}", r.text);
            }
            for (version, beta) in [("v1.0", false), ("beta", true), ("localtest", true)] {
                let body = http("GET", &format!("{}/{segment}", parent_url(version)), None)
                    .await
                    .json();
                assert_eq!(
                    counts_of(&body),
                    expected_counts(&values, device, beta),
                    "{version} {segment}"
                );
            }
            let o = api.get_overview(&ch, grpc_shape, &parent).await.expect("gRPC overview");
            assert_eq!(grpc_counts(&o, device), expected_counts(&values, device, true));
            assert_eq!((o.id.as_str(), o.configuration_version), (parent.as_str(), 1));
            assert!(
                o.revision > 0 || server.database_url.is_some(),
                "sled reports revisions"
            );
            // Move the `unknown` status through every value: one count at a time.
            let mut current: Vec<&str> = values.clone();
            for v in &values {
                let r = http(
                    "PATCH",
                    &format!("{}/{statuses}/s-unknown", parent_url("beta")),
                    Some(&json!({ "status": v }).to_string()),
                )
                .await;
                assert_eq!(r.status, 200, "{}", r.text);
                current[0] = v;
                for (version, beta) in [("v1.0", false), ("beta", true)] {
                    let body = http("GET", &format!("{}/{segment}", parent_url(version)), None)
                        .await
                        .json();
                    assert_eq!(
                        counts_of(&body),
                        expected_counts(&current, device, beta),
                        "{version} {segment} after s-unknown became {v}"
                    );
                }
            }
            // Deletes count down.
            let r = http("DELETE", &format!("{}/{statuses}/s-error", parent_url("v1.0")), None).await;
            assert_eq!(r.status, 204);
            let o = api.get_overview(&ch, grpc_shape, &parent).await.unwrap();
            // `current` is in MAPPING's order: index 5 is s-error.
            let left: Vec<&str> = current
                .iter()
                .enumerate()
                .filter(|(i, v)| !(**v == "error" && *i == 5))
                .map(|(_, v)| *v)
                .collect();
            assert_eq!(grpc_counts(&o, device), expected_counts(&left, device, true));
        }
    }
}

#[tokio::test]
async fn overviews_are_read_only_follow_their_parent_and_refuse_what_graph_refuses() {
    let server = TestServer::start().await;
    let base = server.base_url();
    let ch = server.channel().await;
    let api = &PARENTS[0];
    let url = format!("{base}/v1.0/deviceManagement/deviceCompliancePolicies");
    create_parent(&base, api, "ro").await;

    // Computed: PATCH and DELETE are 405 with Graph's body and an Allow header.
    for method in ["PATCH", "DELETE", "POST", "PUT"] {
        let r = http(
            method,
            &format!("{url}/ro/deviceStatusOverview"),
            Some(r#"{"pendingCount": 3}"#),
        )
        .await;
        let message = r.graph_error(405, "MethodNotAllowed");
        assert!(message.contains("computed"), "{message}");
        assert_eq!(r.headers["allow"], "GET");
    }
    // The OData key form names the same overview; $select narrows it.
    let r = http(
        "GET",
        &format!("{url}('ro')/userStatusOverview?$select=successCount,configurationVersion"),
        None,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let keys: Vec<String> = r.json().as_object().unwrap().keys().cloned().collect();
    assert_eq!(
        keys,
        ["@odata.context", "@odata.type", "successCount", "configurationVersion"]
    );
    // conflictCount is beta's: a 400 under v1.0, fine under beta.
    let r = http(
        "GET",
        &format!("{url}/ro/userStatusOverview?$select=conflictCount"),
        None,
    )
    .await;
    assert!(r.graph_error(400, "BadRequest").contains("conflictCount"));
    let r = http(
        "GET",
        &format!("{base}/beta/deviceManagement/deviceCompliancePolicies/ro/userStatusOverview?$select=conflictCount"),
        None,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    // A mobile app configuration's is a summary; the names do not cross.
    let r = http("GET", &format!("{url}/ro/userStatusSummary"), None).await;
    assert!(r.graph_error(400, "BadRequest").contains("userStatusSummary"));

    // configurationVersion is the parent's version.
    let r = http("PATCH", &format!("{url}/ro"), Some(r#"{"displayName": "renamed"}"#)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let body = http("GET", &format!("{url}/ro/deviceStatusOverview"), None)
        .await
        .json();
    assert_eq!(body["configurationVersion"], 2);

    // lastUpdateDateTime is the latest status change.
    let before = chrono_free_now();
    let r = http(
        "POST",
        &format!("{url}/ro/deviceStatuses"),
        Some(r#"{"id": "d1", "status": "compliant"}"#),
    )
    .await;
    assert_eq!(r.status, 201);
    let body = http("GET", &format!("{url}/ro/deviceStatusOverview"), None)
        .await
        .json();
    let last = body["lastUpdateDateTime"].as_str().unwrap().to_owned();
    assert!(last >= before, "{last} should not be before {before}");
    // The user overview did not change: only device statuses were written.
    let user = http("GET", &format!("{url}/ro/userStatusOverview"), None).await.json();
    assert_eq!(user["lastUpdateDateTime"], "0001-01-01T00:00:00.0000000Z");

    // A missing parent: 404 and NOT_FOUND; after a delete too, and a
    // re-created parent starts from zero.
    let r = http("GET", &format!("{url}/nope/deviceStatusOverview"), None).await;
    r.graph_error(404, "ResourceNotFound");
    let e = api.get_overview(&ch, "Device", "nope").await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound, "{e:?}");
    assert_eq!(http("DELETE", &format!("{url}/ro"), None).await.status, 204);
    http("GET", &format!("{url}/ro/deviceStatusOverview"), None)
        .await
        .graph_error(404, "ResourceNotFound");
    create_parent(&base, api, "ro").await;
    let o = api.get_overview(&ch, "Device", "ro").await.unwrap();
    assert_eq!(grpc_counts(&o, true).values().sum::<i64>(), 0, "{o:?}");
}

/// Now, as Graph writes it, for comparing with `lastUpdateDateTime` as text
/// (both are UTC with the same fixed layout up to the seconds).
fn chrono_free_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let ts = prost_types::Timestamp {
        seconds: secs,
        nanos: 0,
    };
    // prost's Display is RFC 3339 in UTC: 2026-11-30T06:00:00Z.
    ts.to_string().trim_end_matches('Z').to_owned()
}

/// What a full list of a parent's device statuses counts, in the beta
/// counts a gRPC overview carries.
async fn listed_counts(api: &ParentApi, ch: &tonic::transport::Channel, parent: &str) -> BTreeMap<String, i64> {
    let mut values = Vec::new();
    let mut token = String::new();
    loop {
        let (page, next): (Vec<DeviceMsg>, String) = api
            .list_statuses(ch, "Device", parent, 1000, &token)
            .await
            .expect("list");
        values.extend(page.into_iter().map(|s| MAPPING[s.status as usize].0));
        if next.is_empty() {
            break;
        }
        token = next;
    }
    expected_counts(&values, true, true)
}

/// One writer: random creates, status-changing updates and deletes over a
/// small id space under one parent (so they collide), in bursts.
async fn writer(base: String, seed: u64, ops: usize, stop: std::sync::Arc<std::sync::atomic::AtomicBool>) -> usize {
    let ch = tonic::transport::Channel::from_shared(base)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let api = &PARENTS[0];
    let mut rng = seed;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut acknowledged = 0;
    for i in 0..ops {
        if stop.load(std::sync::atomic::Ordering::Relaxed) {
            break;
        }
        let id = format!("s{}", next() % 40);
        let status = (next() % 8) as i32;
        let msg = DeviceMsg {
            id: id.clone(),
            status,
            ..Default::default()
        };
        let result = match next() % 3 {
            0 => api.create_status(&ch, "Device", "busy", msg).await.map(drop),
            1 => api
                .update_status(&ch, "Device", "busy", msg, Some(&["status"]))
                .await
                .map(drop),
            _ => api.delete_status(&ch, "Device", "busy", &id).await,
        };
        match result {
            Ok(()) => acknowledged += 1,
            Err(e) if matches!(e.code(), tonic::Code::AlreadyExists | tonic::Code::NotFound) => {}
            // The server was killed under us.
            Err(_) if stop.load(std::sync::atomic::Ordering::Relaxed) => break,
            Err(e) => panic!("unexpected failure: {e:?}"),
        }
        if i % 25 == 24 {
            // A quiet moment, so readers can see the parent at rest.
            tokio::time::sleep(std::time::Duration::from_millis(15)).await;
        }
    }
    acknowledged
}

#[tokio::test]
async fn under_concurrent_writers_after_them_and_after_a_sigkill_an_overview_equals_a_full_count() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = ChildServer::spawn(dir.path());
    let ch = child.connect().await;
    let api = &PARENTS[0];
    api.create(&ch, api.new_parent("busy", "busy")).await.unwrap();

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writers: Vec<_> = (1..=8u64)
        .map(|w| tokio::spawn(writer(child.base.clone(), w * 7919, 200, stop.clone())))
        .collect();
    // During: whenever the overview's revision is the same before and after a
    // full list, nothing changed in between, so the list must match it
    // exactly; when it moved, the list is not a snapshot and is not judged.
    let mut at_rest = 0;
    let mut reads = 0;
    while !writers.iter().all(|w| w.is_finished()) {
        let before = api.get_overview(&ch, "Device", "busy").await.unwrap();
        let listed = listed_counts(api, &ch, "busy").await;
        let after = api.get_overview(&ch, "Device", "busy").await.unwrap();
        reads += 1;
        if before.revision == after.revision {
            at_rest += 1;
            assert_eq!(
                grpc_counts(&before, true),
                listed,
                "overview at revision {}",
                before.revision
            );
        }
    }
    let mut acknowledged = 0;
    for w in writers {
        acknowledged += w.await.unwrap();
    }
    assert!(acknowledged > 300, "only {acknowledged} writes succeeded");
    assert!(at_rest > 0, "no read found the parent at rest in {reads} tries");
    let o = api.get_overview(&ch, "Device", "busy").await.unwrap();
    assert_eq!(
        grpc_counts(&o, true),
        listed_counts(api, &ch, "busy").await,
        "after the writers"
    );
    eprintln!("{acknowledged} writes; {reads} overview reads during them, {at_rest} at rest and equal to a full count");

    // SIGKILL in the middle of a write storm, then restart: the recovered
    // overview equals the recovered statuses.
    let writers: Vec<_> = (1..=8u64)
        .map(|w| tokio::spawn(writer(child.base.clone(), w * 104_729, 10_000, stop.clone())))
        .collect();
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    child.kill();
    for w in writers {
        w.await.unwrap();
    }
    let child = ChildServer::spawn(dir.path());
    let ch = child.connect().await;
    let o = api.get_overview(&ch, "Device", "busy").await.unwrap();
    let listed = listed_counts(api, &ch, "busy").await;
    assert_eq!(grpc_counts(&o, true), listed, "after a SIGKILL and restart");
    eprintln!(
        "after the SIGKILL: {} statuses, counts {listed:?}",
        listed.values().sum::<i64>()
    );
    let mut child = child;
    child.kill();
}
