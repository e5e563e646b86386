//! The OpenAPI document (`GET /openapi.json`), generated from the model
//! schema: it names every REST route under every version, each version's
//! properties (`platform` under beta only), and Graph's error body; and
//! `openapi-spec-validator` (PyPI) accepts it. Every response the server
//! sends for a few real requests validates against the document's schema
//! for it (checked here with the schema's own property lists), and
//! `schemathesis` (PyPI), driven by the document against the live server,
//! finds no 5xx and no response off the document. OData `$metadata` (CSDL)
//! under each prefix is read by python-odata (PyPI), whose reflection must
//! find every type with exactly the properties the live JSON carries.

mod common;
#[path = "common/tools.rs"]
mod tools;

use common::{http, TestServer};
use serde_json::Value;
use std::process::Command;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_names_every_route_and_validates() {
    let t = TestServer::start().await;
    let base = t.base_url();
    let r = http("GET", &format!("{base}/openapi.json"), None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let doc = r.json();
    let paths = doc["paths"].as_object().unwrap();
    for v in ["v1.0", "beta", "localtest"] {
        for (root, collection) in [
            ("deviceManagement", "deviceCompliancePolicies"),
            ("deviceAppManagement", "mobileAppConfigurations"),
            ("deviceManagement", "deviceConfigurations"),
        ] {
            let base_path = format!("/{v}/{root}/{collection}");
            for p in [
                base_path.clone(),
                format!("{base_path}/$count"),
                format!("{base_path}/{{id}}"),
                format!("{base_path}/{{id}}/userStatuses"),
                format!("{base_path}/{{id}}/deviceStatuses/$ref"),
                format!("{base_path}/{{id}}/userStatuses/$count"),
                format!("{base_path}/{{id}}/deviceStatuses/{{statusId}}"),
            ] {
                assert!(paths.contains_key(&p), "missing {p}");
            }
        }
        assert!(paths.contains_key(&format!("/{v}/$batch")));
    }
    assert!(paths.contains_key("/beta/deviceManagement/deviceConfigurations/{id}/rootCertificate/$ref"));
    assert!(!paths.contains_key("/v1.0/deviceManagement/deviceConfigurations/{id}/rootCertificate/$ref"));
    let schemas = &doc["components"]["schemas"];
    let props = |name: &str| -> Vec<String> {
        schemas[name]["properties"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect()
    };
    assert!(paths.contains_key("/v1.0/deviceManagement/deviceCompliancePolicies/{id}/deviceStatusOverview"));
    assert!(paths.contains_key("/beta/deviceAppManagement/mobileAppConfigurations/{id}/userStatusSummary"));
    assert!(props("beta.deviceComplianceUserOverview").contains(&"conflictCount".to_owned()));
    assert!(!props("v1.0.deviceComplianceUserOverview").contains(&"conflictCount".to_owned()));
    assert!(props("beta.deviceConfigurationDeviceOverview").contains(&"notApplicablePlatformCount".to_owned()));
    assert!(props("beta.deviceConfigurationDeviceStatus").contains(&"platform".to_owned()));
    assert!(!props("v1.0.deviceConfigurationDeviceStatus").contains(&"platform".to_owned()));
    assert!(schemas["odataError"]["properties"]["error"].is_object());

    // A real response has exactly the properties its schema lists.
    let policies = format!("{base}/v1.0/deviceManagement/deviceCompliancePolicies");
    let p = r##"{"@odata.type":"#microsoft.graph.windows10CompliancePolicy","id":"p","displayName":"p"}"##;
    assert_eq!(http("POST", &policies, Some(p)).await.status, 201);
    let s = http(
        "POST",
        &format!("{policies}/p/userStatuses"),
        Some(r#"{"id":"u","status":"compliant"}"#),
    )
    .await;
    let body: Value = s.json();
    let mut got: Vec<String> = body.as_object().unwrap().keys().cloned().collect();
    let mut want = props("v1.0.deviceComplianceUserStatus");
    got.sort();
    want.sort();
    assert_eq!(got, want);

    if tools::skip_interop() {
        return;
    }
    let venv = tools::pip_install("bin/openapi-spec-validator", &["openapi-spec-validator==0.7.1"]);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("openapi.json");
    std::fs::write(&file, &r.text).unwrap();
    let out = Command::new(venv.join("bin/openapi-spec-validator"))
        .arg(&file)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("OK"), "{stdout}");
}

/// schemathesis generates requests for every operation of the document
/// (valid and invalid bodies, paths, query options; coverage, fuzzing and
/// stateful phases, a bounded number of examples each) against a live
/// server holding a policy with statuses, and checks every response: no 5xx,
/// a status code, content type and body the document declares.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_server_error_and_no_response_off_the_document() {
    if tools::skip_interop() {
        return;
    }
    let t = TestServer::start().await;
    let base = t.base_url();
    let policies = format!("{base}/v1.0/deviceManagement/deviceCompliancePolicies");
    let p = r##"{"@odata.type":"#microsoft.graph.windows10CompliancePolicy","id":"p","displayName":"p"}"##;
    assert_eq!(http("POST", &policies, Some(p)).await.status, 201);
    for s in ["u1", "u2"] {
        let body = format!(r#"{{"id":"{s}","status":"compliant"}}"#);
        assert_eq!(
            http("POST", &format!("{policies}/p/userStatuses"), Some(&body))
                .await
                .status,
            201
        );
    }
    let bin = tools::schemathesis();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(bin)
            .args(["run", &format!("{base}/openapi.json"), "--url", &base])
            .args(["--max-examples", "15", "--seed", "20261130", "--no-color"])
            .args([
                "--checks",
                "not_a_server_error,response_schema_conformance,status_code_conformance,content_type_conformance",
            ])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    // The summary: "N generated, N passed" and every operation tested.
    let summary = stdout
        .lines()
        .find(|l| l.contains("generated,"))
        .unwrap_or_else(|| panic!("no summary in {stdout}"));
    let numbers: Vec<u64> = summary
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse().ok())
        .collect();
    assert!(
        numbers.len() >= 2 && numbers[0] == numbers[1] && numbers[0] > 1000,
        "{summary}"
    );
    let tested = stdout
        .lines()
        .find(|l| l.trim_start().starts_with("Tested:"))
        .unwrap_or("");
    eprintln!("schemathesis: {} ({})", summary.trim(), tested.trim());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_odata_client_reflects_the_metadata_and_it_matches_the_live_json() {
    let t = TestServer::start().await;
    let base = t.base_url();
    let r = http("GET", &format!("{base}/v1.0/$metadata"), None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/xml"));
    assert!(r.text.contains(r#"<Singleton Name="deviceManagement""#), "{}", r.text);
    if tools::skip_interop() {
        return;
    }
    let venv = tools::pip_install(
        "lib/python3.11/site-packages/odata/service.py",
        &["python-odata==0.8.1"],
    );
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/odata_metadata.py");
    let out = tokio::task::spawn_blocking(move || {
        Command::new(venv.join("bin/python"))
            .arg(script)
            .env("BASE", base)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{stdout}");
    assert!(
        out.status.success() && stdout.contains("OK"),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
