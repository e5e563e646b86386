//! `statusd export` and `statusd import` (the real binary) between two real
//! servers, through their REST APIs: everything exported from one is
//! imported into the other and exports back the same (server-owned
//! timestamps and versions aside); a re-run creates nothing and changes
//! nothing; every bad line is rejected with its number and reason while the
//! good ones go in; a status before its parent in the input still goes in.

mod common;

use common::{http, statusd, TestServer};
use serde_json::{json, Value};
use std::collections::BTreeSet;

async fn post(base: &str, path: &str, body: Value) {
    let r = http("POST", &format!("{base}/beta/{path}"), Some(&body.to_string())).await;
    assert_eq!(r.status, 201, "{path}: {}", r.text);
}

/// The export's lines without what a server owns or where it listens.
fn comparable(text: &str, base: &str) -> BTreeSet<String> {
    text.lines()
        .map(|l| {
            let mut v: Value = serde_json::from_str(l).unwrap();
            let o = v.as_object_mut().unwrap();
            for k in ["createdDateTime", "lastModifiedDateTime", "version"] {
                o.remove(k);
            }
            v.to_string().replace(base, "BASE")
        })
        .collect()
}

async fn fill(base: &str) -> usize {
    let dm = "deviceManagement";
    // A reference to a configuration that comes later in id order.
    post(base, &format!("{dm}/deviceConfigurations"), json!({"@odata.type": "#microsoft.graph.windows81TrustedRootCertificate", "id": "z-root", "displayName": "Root"})).await;
    post(
        base,
        &format!("{dm}/deviceConfigurations"),
        json!({
        "@odata.type": "#microsoft.graph.windows81SCEPCertificateProfile", "id": "a-scep", "displayName": "SCEP",
        "rootCertificate@odata.bind": format!("{base}/beta/{dm}/deviceConfigurations('z-root')"),
        "identityCertificate@odata.bind": format!("{base}/beta/{dm}/deviceConfigurations/a-scep")}),
    )
    .await;
    post(base, &format!("{dm}/deviceCompliancePolicies"), json!({"@odata.type": "#microsoft.graph.windows10CompliancePolicy", "id": "o'brien policy", "displayName": "Quotes", "passwordRequired": true})).await;
    post(base, "deviceAppManagement/mobileAppConfigurations", json!({"@odata.type": "#microsoft.graph.iosMobileAppConfiguration", "id": "app", "displayName": "App", "targetedMobileApps": ["com.example"]})).await;
    let mut statuses = 0;
    for (parent, collection) in [
        ("a-scep", format!("{dm}/deviceConfigurations")),
        ("o'brien policy", format!("{dm}/deviceCompliancePolicies")),
        ("app", "deviceAppManagement/mobileAppConfigurations".to_owned()),
    ] {
        let encoded = parent.replace(' ', "%20").replace('\'', "%27");
        for i in 0..25 {
            post(base, &format!("{collection}/{encoded}/userStatuses"), json!({"id": format!("u{i:02}"), "userDisplayName": format!("User {i}"), "devicesCount": i, "status": "compliant", "lastReportedDateTime": "2017-01-01T00:00:17.7769392-08:00"})).await;
            post(
                base,
                &format!("{collection}/{encoded}/deviceStatuses"),
                json!({"id": format!("d{i:02}"), "deviceDisplayName": "PC", "platform": 8, "status": "error"}),
            )
            .await;
            statuses += 2;
        }
    }
    4 + statuses
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_imports_into_another_server_and_a_rerun_changes_nothing() {
    let (a, b) = (TestServer::start().await, TestServer::start().await);
    let (base_a, base_b) = (a.base_url(), b.base_url());
    let records = fill(&base_a).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("export.jsonl");
    let file = file.to_str().unwrap();

    let (ok, _, err) = statusd(&["export", "--server", &base_a, "--out", file]);
    assert!(ok, "{err}");
    let exported = std::fs::read_to_string(file).unwrap();
    assert_eq!(exported.lines().count(), records, "{err}");
    assert!(err.contains("export: 4 parents and 150 statuses written"), "{err}");

    let (ok, _, err) = statusd(&["import", file, "--server", &base_b]);
    assert!(ok, "{err}");
    assert!(
        err.contains(&format!("import: {records} created, 0 unchanged, 0 rejected")),
        "{err}"
    );

    let (ok, back, err) = statusd(&["export", "--server", &base_b]);
    assert!(ok, "{err}");
    assert_eq!(comparable(&back, &base_b), comparable(&exported, &base_a));

    let version = |body: Value| body["version"].as_i64().unwrap();
    let scep = format!("{base_b}/beta/deviceManagement/deviceConfigurations/a-scep");
    let before = version(http("GET", &scep, None).await.json());
    let (ok, _, err) = statusd(&["import", file, "--server", &base_b]);
    assert!(ok, "{err}");
    assert!(
        err.contains(&format!("import: 0 created, {records} unchanged, 0 rejected")),
        "{err}"
    );
    assert_eq!(
        version(http("GET", &scep, None).await.json()),
        before,
        "a re-run changed a record"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_lines_are_rejected_with_their_number_and_the_good_ones_go_in() {
    let t = TestServer::start().await;
    let base = t.base_url();
    let ctx = |path: &str| format!("https://graph.microsoft.com/v1.0/$metadata#{path}/$entity");
    let policies = "deviceManagement/deviceCompliancePolicies";
    post(
        &base,
        policies,
        json!({"@odata.type": "#microsoft.graph.windows10CompliancePolicy", "id": "taken", "displayName": "Stored"}),
    )
    .await;
    let lines = [
        // 1: a status before its parent (line 7): deferred, then in.
        json!({"@odata.context": ctx(&format!("{policies}('late')/userStatuses")), "id": "s1", "status": "compliant"}).to_string(),
        // 2: not JSON.
        "{not json".to_owned(),
        // 3: a bad enum value.
        json!({"@odata.context": ctx(&format!("{policies}('late')/userStatuses")), "id": "s2", "status": "sideways"}).to_string(),
        // 4: no @odata.context.
        json!({"id": "x"}).to_string(),
        // 5: a parent that never comes.
        json!({"@odata.context": ctx(&format!("{policies}('never')/userStatuses")), "id": "s3"}).to_string(),
        // 6: an id stored with other content.
        json!({"@odata.context": ctx(policies), "@odata.type": "#microsoft.graph.windows10CompliancePolicy", "id": "taken", "displayName": "Different"}).to_string(),
        // 7: the parent of line 1.
        json!({"@odata.context": ctx(policies), "@odata.type": "#microsoft.graph.windows10CompliancePolicy", "id": "late", "displayName": "Late"}).to_string(),
    ];
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("in.jsonl");
    std::fs::write(&file, lines.join("\n")).unwrap();
    let (ok, _, err) = statusd(&["import", file.to_str().unwrap(), "--server", &base]);
    assert!(!ok, "rejections make the exit status non-zero: {err}");
    for (line, words) in [
        (2, "not JSON"),
        (3, "status"),
        (4, "@odata.context"),
        (5, "parent does not exist"),
        (6, "different record"),
    ] {
        assert!(
            err.lines()
                .any(|l| l.starts_with(&format!("line {line}: rejected")) && l.contains(words)),
            "line {line} ({words}) not reported: {err}"
        );
    }
    assert!(err.contains("import: 2 created, 0 unchanged, 5 rejected"), "{err}");
    let s = http("GET", &format!("{base}/v1.0/{policies}/late/userStatuses/s1"), None).await;
    assert_eq!(s.status, 200, "{}", s.text);
    let taken = http("GET", &format!("{base}/v1.0/{policies}/taken"), None).await.json();
    assert_eq!(taken["displayName"], "Stored", "a rejected line changed nothing");
}
