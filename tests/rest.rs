//! The Graph REST edge against the real server over real HTTP: every seed's
//! example request at its own path, every path shape, every error class,
//! every query option, and parity with gRPC.

mod common;

use common::{http, TestServer, PARENTS};
use serde_json::{json, Value};

/// (prefix, root/collection, @odata.type) of each parent kind.
const KINDS: [(&str, &str); 3] = [
    (
        "deviceManagement/deviceCompliancePolicies",
        "#microsoft.graph.windows10CompliancePolicy",
    ),
    (
        "deviceAppManagement/mobileAppConfigurations",
        "#microsoft.graph.iosMobileAppConfiguration",
    ),
    (
        "deviceManagement/deviceConfigurations",
        "#microsoft.graph.windows10GeneralConfiguration",
    ),
];

async fn create_parent(base: &str, version: &str, collection: &str, odata_type: &str, id: &str) -> Value {
    let url = format!("{base}/{version}/{collection}");
    let r = http(
        "POST",
        &url,
        Some(&json!({"@odata.type": odata_type, "id": id, "displayName": id}).to_string()),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text);
    r.json()
}

/// Compares a response entity with a seed's response: ids aside, date-times as instants.
fn assert_matches_seed(got: &Value, seed: &Value) {
    for (k, want) in seed.as_object().unwrap() {
        if k == "id" {
            continue;
        }
        let have = &got[k];
        if k.ends_with("DateTime") {
            let a = statusd::model::DateTime::parse(have.as_str().unwrap()).unwrap();
            let b = statusd::model::DateTime::parse(want.as_str().unwrap()).unwrap();
            assert_eq!(a, b, "{k}");
        } else {
            assert_eq!(have, want, "{k}");
        }
    }
    assert!(got["id"].as_str().is_some_and(|id| !id.is_empty()));
}

struct Seed {
    name: &'static str,
    version: &'static str,
    collection: &'static str,
    odata_type: &'static str,
    /// The path after the parent id.
    tail: &'static str,
    request: &'static str,
    /// Placeholder properties and a valid value for each.
    placeholders: &'static [(&'static str, &'static str)],
}

/// The example requests of the five seed pages, verbatim.
const SEEDS: [Seed; 5] = [
    Seed {
        name: "000 deviceComplianceUserStatus (localtest)",
        version: "localtest",
        collection: "deviceManagement/deviceCompliancePolicies",
        odata_type: "#microsoft.graph.windows10CompliancePolicy",
        tail: "userStatuses",
        request: r##"{
  "@odata.type": "#microsoft.graph.deviceComplianceUserStatus",
  "userDisplayName": "User Display Name value",
  "devicesCount": 12,
  "status": "String",
  "lastReportedDateTime": "2017-01-01T00:01:14.9975606+03:00",
  "userPrincipalName": "User Principal Name value"
}"##,
        placeholders: &[("status", "\"compliant\"")],
    },
    Seed {
        name: "001 managedDeviceMobileAppConfigurationUserStatus (localtest)",
        version: "localtest",
        collection: "deviceAppManagement/mobileAppConfigurations",
        odata_type: "#microsoft.graph.iosMobileAppConfiguration",
        tail: "userStatuses",
        request: r##"{
  "@odata.type": "#microsoft.graph.managedDeviceMobileAppConfigurationUserStatus",
  "userDisplayName": "User Display Name value",
  "devicesCount": 12,
  "status": "String",
  "lastReportedDateTime": "2016-12-31T23:57:57.7265241+03:00",
  "userPrincipalName": "User Principal Name value"
}"##,
        placeholders: &[("status", "\"error\"")],
    },
    Seed {
        name: "002 deviceComplianceUserStatus (v1.0)",
        version: "v1.0",
        collection: "deviceManagement/deviceCompliancePolicies",
        odata_type: "#microsoft.graph.windows10CompliancePolicy",
        tail: "userStatuses",
        request: r##"{
  "@odata.type": "#microsoft.graph.deviceComplianceUserStatus",
  "userDisplayName": "User Display Name value",
  "devicesCount": 12,
  "status": "notApplicable",
  "lastReportedDateTime": "2017-01-01T00:00:17.7769392-08:00",
  "userPrincipalName": "User Principal Name value"
}"##,
        placeholders: &[],
    },
    Seed {
        name: "003 deviceConfigurationUserStatus (beta)",
        version: "beta",
        collection: "deviceManagement/deviceConfigurations",
        odata_type: "#microsoft.graph.windows10GeneralConfiguration",
        tail: "userStatuses",
        request: r##"{
  "@odata.type": "#microsoft.graph.deviceConfigurationUserStatus",
  "userDisplayName": "String",
  "devicesCount": "Integer",
  "status": "String",
  "lastReportedDateTime": "String (timestamp)",
  "userPrincipalName": "String"
}"##,
        placeholders: &[
            ("devicesCount", "7"),
            ("status", "\"nonCompliant\""),
            ("lastReportedDateTime", "\"2017-01-01T00:00:00Z\""),
        ],
    },
    Seed {
        name: "004 deviceConfigurationDeviceStatus (beta)",
        version: "beta",
        collection: "deviceManagement/deviceConfigurations",
        odata_type: "#microsoft.graph.windows10GeneralConfiguration",
        tail: "deviceStatuses",
        request: r##"{
  "@odata.type": "#microsoft.graph.deviceConfigurationDeviceStatus",
  "deviceDisplayName": "Device Display Name value",
  "userName": "User Name value",
  "deviceModel": "Device Model value",
  "platform": 8,
  "complianceGracePeriodExpirationDateTime": "2017-01-01T00:01:04.5793352+03:00",
  "status": "String",
  "lastReportedDateTime": "2016-12-31T23:58:03.7571898+03:00",
  "userPrincipalName": "User Principal Name value"
}"##,
        placeholders: &[("status", "\"notAssigned\"")],
    },
];

#[tokio::test]
async fn every_seed_example_replays_at_its_own_path() {
    let t = TestServer::start().await;
    let base = t.base_url();
    for seed in SEEDS {
        create_parent(&base, seed.version, seed.collection, seed.odata_type, "seed-parent").await;
        let mut request: Value = serde_json::from_str(seed.request).unwrap();
        // The seeds document both the collection and its /$ref form.
        for tail in [seed.tail.to_owned(), format!("{}/$ref", seed.tail)] {
            let url = format!("{base}/{}/{}/seed-parent/{tail}", seed.version, seed.collection);
            if !seed.placeholders.is_empty() {
                // As written: 400 naming one of the placeholder properties.
                let r = http("POST", &url, Some(seed.request)).await;
                let msg = r.graph_error(400, "BadRequest");
                assert!(
                    seed.placeholders.iter().any(|(p, _)| msg.contains(&format!("'{p}'"))),
                    "{}: {msg}",
                    seed.name
                );
                // Each placeholder alone is named.
                for (prop, _) in seed.placeholders {
                    let mut one: Value = serde_json::from_str(seed.request).unwrap();
                    for (other, valid) in seed.placeholders {
                        if other != prop {
                            one[other] = serde_json::from_str(valid).unwrap();
                        }
                    }
                    let r = http("POST", &url, Some(&one.to_string())).await;
                    let msg = r.graph_error(400, "BadRequest");
                    assert!(msg.contains(&format!("'{prop}'")), "{}: {msg}", seed.name);
                }
                for (prop, valid) in seed.placeholders {
                    request[prop] = serde_json::from_str(valid).unwrap();
                }
            }
            let r = http("POST", &url, Some(&request.to_string())).await;
            assert_eq!(r.status, 201, "{}: {}", seed.name, r.text);
            let body = r.json();
            assert_matches_seed(&body, &request);
            assert!(body["@odata.context"]
                .as_str()
                .unwrap()
                .contains(&format!("/{}/$entity", seed.tail)));
            // And it reads back the same.
            let id = body["id"].as_str().unwrap();
            let got = http(
                "GET",
                &format!(
                    "{base}/{}/{}/seed-parent/{}/{id}",
                    seed.version, seed.collection, seed.tail
                ),
                None,
            )
            .await;
            assert_eq!(got.status, 200);
            assert_eq!(got.json(), body);
        }
        let r = http(
            "DELETE",
            &format!("{base}/{}/{}/seed-parent", seed.version, seed.collection),
            None,
        )
        .await;
        assert_eq!(r.status, 204);
    }
}

#[tokio::test]
async fn every_collection_supports_every_method_under_every_prefix() {
    let t = TestServer::start().await;
    let base = t.base_url();
    for version in ["v1.0", "beta", "localtest"] {
        for (collection, odata_type) in KINDS {
            let root = format!("{base}/{version}/{collection}");
            let created = create_parent(&base, version, collection, odata_type, "p").await;
            assert_eq!(created["@odata.type"], odata_type);
            assert_eq!(created["version"], 1);
            assert_eq!(
                created["description"],
                Value::Null,
                "unset nullable properties are null"
            );
            assert!(created["createdDateTime"].as_str().unwrap().ends_with('Z'));
            let list = http("GET", &root, None).await;
            assert_eq!(list.status, 200);
            assert_eq!(list.json()["value"].as_array().unwrap().len(), 1);
            assert_eq!(http("GET", &format!("{root}/$count"), None).await.text, "1");
            let patched = http(
                "PATCH",
                &format!("{root}/p"),
                Some(r#"{"description":"d","displayName":"P"}"#),
            )
            .await;
            assert_eq!(patched.status, 200, "{}", patched.text);
            assert_eq!(
                (patched.json()["version"].clone(), patched.json()["description"].clone()),
                (json!(2), json!("d"))
            );
            let by_key = http("GET", &format!("{root}('p')"), None).await;
            assert_eq!(by_key.json()["displayName"], "P");

            for (segment, body) in [
                (
                    "userStatuses",
                    json!({"userDisplayName": "u", "devicesCount": 2, "status": "compliant"}),
                ),
                (
                    "deviceStatuses",
                    json!({"deviceDisplayName": "d", "status": "error", "userPrincipalName": null}),
                ),
            ] {
                let coll = format!("{root}/p/{segment}");
                let r = http("POST", &coll, Some(&body.to_string())).await;
                assert_eq!(r.status, 201, "{version} {coll}: {}", r.text);
                let s = r.json();
                assert_eq!(s["lastReportedDateTime"], "0001-01-01T00:00:00.0000000Z", "defaults");
                assert_eq!(
                    s.get("platform").is_some(),
                    version != "v1.0" && segment == "deviceStatuses"
                );
                let id = s["id"].as_str().unwrap().to_owned();
                let r = http(
                    "POST",
                    &format!("{coll}/$ref"),
                    Some(&json!({"id": "by-ref"}).to_string()),
                )
                .await;
                assert_eq!(r.status, 201, "{}", r.text);
                assert_eq!(http("GET", &format!("{coll}/$count"), None).await.text, "2");
                let item = format!("{coll}/{id}");
                let r = http("PATCH", &item, Some(r#"{"status":"remediated"}"#)).await;
                assert_eq!(
                    (r.status, r.json()["status"].clone()),
                    (200, json!("remediated")),
                    "{}",
                    r.text
                );
                let got = http("GET", &item, None).await.json();
                assert_eq!(got["status"], "remediated");
                assert_eq!(
                    http("GET", &format!("{coll}('{id}')"), None).await.json()["id"],
                    id.as_str()
                );
                assert_eq!(http("DELETE", &item, None).await.status, 204);
                http("GET", &item, None).await.graph_error(404, "ResourceNotFound");
                http("DELETE", &item, None).await.graph_error(404, "ResourceNotFound");
            }
            assert_eq!(http("DELETE", &format!("{root}/p"), None).await.status, 204);
            http("GET", &format!("{root}/p"), None)
                .await
                .graph_error(404, "ResourceNotFound");
            http("GET", &format!("{root}/p/userStatuses"), None)
                .await
                .graph_error(404, "ResourceNotFound");
        }
    }
}

#[tokio::test]
async fn derived_type_properties_are_kept() {
    let t = TestServer::start().await;
    let url = format!("{}/v1.0/deviceManagement/deviceCompliancePolicies", t.base_url());
    let body = json!({"@odata.type": "#microsoft.graph.windows10CompliancePolicy", "displayName": "W10",
        "passwordRequired": true, "osMinimumVersion": "10.0.19045", "validOperatingSystemBuildRanges": []});
    let created = http("POST", &url, Some(&body.to_string())).await.json();
    assert_eq!(created["passwordRequired"], true);
    assert_eq!(created["validOperatingSystemBuildRanges"], json!([]));
    let id = created["id"].as_str().unwrap();
    let r = http("PATCH", &format!("{url}/{id}"), Some(r#"{"osMinimumVersion":"11.0"}"#)).await;
    assert_eq!(r.json()["osMinimumVersion"], "11.0");
    assert_eq!(
        r.json()["passwordRequired"],
        true,
        "other derived properties are untouched"
    );
    let mobile = format!("{}/v1.0/deviceAppManagement/mobileAppConfigurations", t.base_url());
    let body = json!({"@odata.type": "#microsoft.graph.iosMobileAppConfiguration", "displayName": "app",
        "targetedMobileApps": ["com.contoso.app"]});
    let r = http("POST", &mobile, Some(&body.to_string())).await;
    assert_eq!(r.json()["targetedMobileApps"], json!(["com.contoso.app"]));
    // Changing the type of an existing entity is refused.
    let r = http(
        "PATCH",
        &format!("{url}/{id}"),
        Some(r##"{"@odata.type":"#microsoft.graph.iosCompliancePolicy"}"##),
    )
    .await;
    assert!(r.graph_error(400, "BadRequest").contains("@odata.type"));
}

#[tokio::test]
async fn certificate_references_follow_the_seed_paths() {
    let t = TestServer::start().await;
    let base = t.base_url();
    let configs = format!("{base}/beta/deviceManagement/deviceConfigurations");
    let ty = "#microsoft.graph.windows81TrustedRootCertificate";
    for id in ["root", "identity"] {
        create_parent(&base, "beta", "deviceManagement/deviceConfigurations", ty, id).await;
    }
    // identity → root via @odata.bind on POST; leaf → identity via PATCH; leaf → root via PUT $ref.
    let body = json!({"@odata.type": "#microsoft.graph.windows81SCEPCertificateProfile", "id": "identity2",
        "displayName": "SCEP", "rootCertificate@odata.bind": format!("{configs}('root')")});
    assert_eq!(http("POST", &configs, Some(&body.to_string())).await.status, 201);
    create_parent(&base, "beta", "deviceManagement/deviceConfigurations", ty, "leaf").await;
    let bind = json!({"identityCertificate@odata.bind": format!("{configs}/identity2")});
    let r = http("PATCH", &format!("{configs}/leaf"), Some(&bind.to_string())).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = http(
        "PUT",
        &format!("{configs}/leaf/rootCertificate/$ref"),
        Some(&json!({"@odata.id": format!("{configs}('root')")}).to_string()),
    )
    .await;
    assert_eq!(r.status, 204, "{}", r.text);
    let r = http("GET", &format!("{configs}/leaf/rootCertificate/$ref"), None).await;
    assert!(
        r.json()["@odata.id"]
            .as_str()
            .unwrap()
            .ends_with("deviceConfigurations('root')"),
        "{}",
        r.text
    );

    // Statuses created through each documented path land on the referenced configuration.
    for (path, owner) in [
        ("leaf/userStatuses", "leaf"),
        ("leaf/rootCertificate/userStatuses", "root"),
        ("leaf/identityCertificate/userStatuses", "identity2"),
        ("leaf/identityCertificate/rootCertificate/userStatuses", "root"),
        ("leaf/identityCertificate/rootCertificate/deviceStatuses", "root"),
    ] {
        let id = path.replace('/', "_");
        let r = http(
            "POST",
            &format!("{configs}/{path}"),
            Some(&json!({ "id": id }).to_string()),
        )
        .await;
        assert_eq!(r.status, 201, "{path}: {}", r.text);
        let segment = path.rsplit('/').next().unwrap();
        let direct = http("GET", &format!("{configs}/{owner}/{segment}/{id}"), None).await;
        assert_eq!(direct.status, 200, "{path} stored under {owner}: {}", direct.text);
        let via = http("GET", &format!("{configs}/{path}"), None).await.json();
        assert!(via["value"].as_array().unwrap().iter().any(|s| s["id"] == id.as_str()));
    }
    let got = http("GET", &format!("{configs}/leaf/identityCertificate"), None)
        .await
        .json();
    assert_eq!(got["id"], "identity2");

    // Visible over gRPC too.
    let ch = t.channel().await;
    let leaf = PARENTS[2].get(&ch, "leaf").await.unwrap();
    assert_eq!(leaf.root_certificate_id.as_deref(), Some("root"));
    assert_eq!(leaf.identity_certificate_id.as_deref(), Some("identity2"));

    // Unset references are 404; v1.0 has no such path (400).
    assert_eq!(
        http("DELETE", &format!("{configs}/leaf/rootCertificate/$ref"), None)
            .await
            .status,
        204
    );
    http("GET", &format!("{configs}/leaf/rootCertificate/userStatuses"), None)
        .await
        .graph_error(404, "ResourceNotFound");
    http("GET", &format!("{configs}/root/identityCertificate/userStatuses"), None)
        .await
        .graph_error(404, "ResourceNotFound");
    let v1 = format!("{base}/v1.0/deviceManagement/deviceConfigurations/leaf/rootCertificate/userStatuses");
    http("GET", &v1, None).await.graph_error(400, "BadRequest");
    // A reference to a configuration that does not exist is refused.
    let bad = json!({"rootCertificate@odata.bind": format!("{configs}('nope')")});
    let msg = http("PATCH", &format!("{configs}/leaf"), Some(&bad.to_string()))
        .await
        .graph_error(400, "BadRequest");
    assert!(msg.contains("rootCertificate"), "{msg}");
}

#[tokio::test]
async fn errors_are_graph_errors_naming_the_property() {
    let t = TestServer::start().await;
    let base = t.base_url();
    create_parent(&base, "v1.0", "deviceManagement/deviceConfigurations", KINDS[2].1, "p").await;
    let coll = format!("{base}/v1.0/deviceManagement/deviceConfigurations/p/deviceStatuses");
    for (body, property) in [
        (r#"{"nope": 1}"#, "nope"),
        (r#"{"platform": 8}"#, "platform"),
        (r#"{"deviceDisplayName": 5}"#, "deviceDisplayName"),
        (r#"{"status": "String"}"#, "status"),
        (r#"{"status": "Compliant"}"#, "status"),
        (
            r#"{"lastReportedDateTime": "2017-01-01T00:00:00"}"#,
            "lastReportedDateTime",
        ),
        (
            r#"{"complianceGracePeriodExpirationDateTime": "String (timestamp)"}"#,
            "complianceGracePeriodExpirationDateTime",
        ),
        (
            r##"{"@odata.type": "#microsoft.graph.deviceConfigurationUserStatus"}"##,
            "@odata.type",
        ),
        (r#"{"id": "a/b"}"#, "id"),
        (r#"{"id": 5}"#, "id"),
    ] {
        let msg = http("POST", &coll, Some(body)).await.graph_error(400, "BadRequest");
        assert!(msg.contains(&format!("'{property}'")), "{body}: {msg}");
    }
    for body in ["{", "[1]", "", "nul"] {
        http("POST", &coll, Some(body)).await.graph_error(400, "BadRequest");
    }
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    http("POST", &coll, Some(&deep)).await.graph_error(400, "BadRequest");
    let huge = json!({"deviceDisplayName": "x".repeat(2 * 1024 * 1024)}).to_string();
    http("POST", &coll, Some(&huge))
        .await
        .graph_error(413, "RequestEntityTooLarge");
    let r = http(
        "POST",
        &format!("{coll}/$ref"),
        Some(r#"{"@odata.id": "https://graph.microsoft.com/v1.0/x"}"#),
    )
    .await;
    assert!(r.graph_error(400, "BadRequest").contains("cannot be linked"));

    assert_eq!(http("POST", &coll, Some(r#"{"id":"dup"}"#)).await.status, 201);
    http("POST", &coll, Some(r#"{"id":"dup"}"#))
        .await
        .graph_error(409, "Conflict");
    http(
        "POST",
        &format!("{base}/v1.0/deviceManagement/deviceConfigurations/missing/deviceStatuses"),
        Some("{}"),
    )
    .await
    .graph_error(404, "ResourceNotFound");
    let r = http("PUT", &format!("{coll}/dup"), Some("{}")).await;
    r.graph_error(405, "MethodNotAllowed");
    assert!(r.headers["allow"].to_str().unwrap().contains("PATCH"));
    http(
        "GET",
        &format!("{base}/v1.0/deviceManagement/deviceConfigurations/p/nope"),
        None,
    )
    .await
    .graph_error(400, "BadRequest");
    http(
        "GET",
        &format!("{base}/v2.0/deviceManagement/deviceConfigurations"),
        None,
    )
    .await
    .graph_error(400, "BadRequest");
    let r = http("PATCH", &format!("{coll}/dup"), Some(r#"{"id":"other"}"#)).await;
    assert!(r.graph_error(400, "BadRequest").contains("'id'"));

    // Headers: OData-Version, request-id, client-request-id echoed.
    let resp = reqwest::Client::new()
        .get(format!("{coll}/dup"))
        .header("client-request-id", "my-id-1")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["odata-version"], "4.0");
    assert_eq!(resp.headers()["client-request-id"], "my-id-1");
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    assert!(!resp.headers()["request-id"].is_empty());
    // Nothing a rejected request sent was stored.
    assert_eq!(http("GET", &format!("{coll}/$count"), None).await.text, "1");
}

#[tokio::test]
async fn query_options_filter_order_select_count_and_page() {
    let t = TestServer::start().await;
    let base = t.base_url();
    create_parent(&base, "beta", "deviceManagement/deviceConfigurations", KINDS[2].1, "p").await;
    let coll = format!("{base}/beta/deviceManagement/deviceConfigurations/p/deviceStatuses");
    let statuses = [
        "compliant",
        "error",
        "nonCompliant",
        "compliant",
        "notAssigned",
        "error",
        "compliant",
    ];
    for (i, status) in statuses.iter().enumerate() {
        let body = json!({"id": format!("s{i}"), "status": status, "platform": i % 3,
            "deviceDisplayName": if i == 2 { Value::Null } else { json!(format!("dev-{i}")) },
            "lastReportedDateTime": format!("2017-01-0{}T00:00:00+01:00", i + 1)});
        assert_eq!(http("POST", &coll, Some(&body.to_string())).await.status, 201);
    }
    let ids = |r: &common::HttpResponse| -> Vec<String> {
        r.json()["value"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let q = |query: &str| format!("{coll}?{}", query.replace(' ', "%20").replace('+', "%2B"));
    for (query, want) in [
        ("$filter=status eq 'compliant'", vec!["s0", "s3", "s6"]),
        ("$filter=status ne 'compliant' and platform eq 2", vec!["s2", "s5"]),
        (
            "$filter=not (status eq 'compliant') or id eq 's0'",
            vec!["s0", "s1", "s2", "s4", "s5"],
        ),
        (
            "$filter=lastReportedDateTime ge 2017-01-06T00:00:00+01:00",
            vec!["s5", "s6"],
        ),
        ("$filter=lastReportedDateTime lt 2017-01-01T23:00:00Z", vec!["s0"]),
        ("$filter=deviceDisplayName eq null", vec!["s2"]),
        ("$filter=startswith(deviceDisplayName,'dev-1')", vec!["s1"]),
        (
            "$filter=(platform gt 0 and platform le 1) or status eq microsoft.graph.complianceStatus'notAssigned'",
            vec!["s1", "s4"],
        ),
        (
            "$orderby=platform desc,status",
            vec!["s2", "s5", "s1", "s4", "s0", "s3", "s6"],
        ),
        ("$orderby=lastReportedDateTime desc&$top=2", vec!["s6", "s5"]),
        ("$skip=5", vec!["s5", "s6"]),
        ("$filter=status eq 'error'&$orderby=id desc", vec!["s5", "s1"]),
    ] {
        let r = http("GET", &q(query), None).await;
        assert_eq!(r.status, 200, "{query}: {}", r.text);
        assert_eq!(ids(&r), want, "{query}");
    }
    let r = http(
        "GET",
        &q("$select=id,status&$count=true&$filter=status eq 'compliant'"),
        None,
    )
    .await
    .json();
    assert_eq!(r["@odata.count"], 3);
    let first = r["value"][0].as_object().unwrap();
    let keys: Vec<&str> = first.keys().map(String::as_str).collect();
    assert_eq!(keys, ["@odata.type", "id", "status"]);
    assert_eq!(
        http(
            "GET",
            &q("$filter=status eq 'error'").replace("deviceStatuses?", "deviceStatuses/$count?"),
            None
        )
        .await
        .text,
        "2"
    );

    // Paging through nextLink, with and without $orderby, keeps the other options.
    for query in ["$top=2", "$top=2&$orderby=status desc", "$top=2&$filter=platform ne 1"] {
        let mut url = q(query);
        let mut seen = Vec::new();
        let mut pages = 0;
        loop {
            let r = http("GET", &url, None).await;
            assert_eq!(r.status, 200, "{url}: {}", r.text);
            seen.extend(ids(&r));
            pages += 1;
            if pages == 1 {
                // Created after the first page, sorting last in every order used here.
                let body = json!({"id": "zz", "status": "unknown", "platform": 0});
                assert_eq!(http("POST", &coll, Some(&body.to_string())).await.status, 201);
            }
            match r.json()["@odata.nextLink"].as_str() {
                Some(next) => {
                    assert!(
                        next.starts_with("http://") && next.contains("%24top=2") || next.contains("$top=2"),
                        "{next}"
                    );
                    url = next.to_owned();
                }
                None => break,
            }
        }
        let mut unique = seen.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), seen.len(), "{query}: no item twice: {seen:?}");
        assert!(
            seen.contains(&"zz".to_owned()) || query.contains("status desc"),
            "{query}: {seen:?}"
        );
        assert_eq!(http("DELETE", &format!("{coll}/zz"), None).await.status, 204);
    }

    for bad in [
        "$filter=nope eq 1",
        "$filter=status eq 'String'",
        "$filter=platform eq 'x'",
        "$filter=contains(userName,'a')",
        "$filter=status eq",
        "$orderby=nope",
        "$orderby=status sideways",
        "$select=nope",
        "$expand=x",
        "$search=x",
        "$top=x",
        "$top=5000",
        "$skiptoken=!!",
        "$count=maybe",
        "$filter=lastReportedDateTime gt 2017-01-01T00:00:00",
    ] {
        let r = http("GET", &q(bad), None).await;
        r.graph_error(400, "BadRequest");
    }
    // platform does not exist in v1.0.
    let v1 = coll.replace("/beta/", "/v1.0/");
    http("GET", &format!("{v1}?$filter=platform%20eq%201"), None)
        .await
        .graph_error(400, "BadRequest");
}

#[tokio::test]
async fn rest_and_grpc_see_the_same_record() {
    let t = TestServer::start().await;
    let base = t.base_url();
    let ch = t.channel().await;
    for (api, (collection, odata_type)) in PARENTS.iter().zip(KINDS) {
        create_parent(&base, "beta", collection, odata_type, "shared").await;
        let body = json!({"id": "u1", "userDisplayName": "Ann", "devicesCount": 3, "status": "conflict",
            "lastReportedDateTime": "2017-01-01T00:01:14.9975606+03:00", "userPrincipalName": "ann@contoso.com"});
        let rest = http(
            "POST",
            &format!("{base}/beta/{collection}/shared/userStatuses"),
            Some(&body.to_string()),
        )
        .await
        .json();
        let grpc: common::UserMsg = api.get_status(&ch, "User", "shared", "u1").await.unwrap();
        assert_eq!(grpc.user_display_name.as_deref(), Some("Ann"));
        assert_eq!(grpc.devices_count, 3);
        assert_eq!(grpc.status, statusd::pb::ComplianceStatus::Conflict as i32);
        let ts = grpc.last_reported_date_time.unwrap();
        assert_eq!((ts.seconds, ts.nanos), (1_483_218_074, 997_560_600));
        assert_eq!(rest["lastReportedDateTime"], "2016-12-31T21:01:14.9975606Z");
        // A gRPC update is what REST reads.
        let patch = common::UserMsg {
            id: "u1".into(),
            devices_count: 9,
            ..Default::default()
        };
        api.update_status(&ch, "User", "shared", patch, Some(&["devices_count"]))
            .await
            .unwrap();
        let again = http("GET", &format!("{base}/v1.0/{collection}/shared/userStatuses/u1"), None)
            .await
            .json();
        assert_eq!(again["devicesCount"], 9);
        assert_eq!(again["userPrincipalName"], "ann@contoso.com");
        let parent = api.get(&ch, "shared").await.unwrap();
        let rest_parent = http("GET", &format!("{base}/v1.0/{collection}/shared"), None)
            .await
            .json();
        assert_eq!(rest_parent["displayName"], parent.display_name);
        assert_eq!(rest_parent["version"], parent.version);
    }
}
