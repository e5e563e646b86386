//! A real grpcurl (1.8.6, which speaks reflection v1alpha only) can list,
//! describe and call every method of every service.

mod common;
#[path = "common/tools.rs"]
mod tools;

use common::TestServer;
use serde_json::{json, Value};
use std::process::Command;

struct Grpcurl {
    bin: std::path::PathBuf,
    addr: String,
}

impl Grpcurl {
    fn run(&self, args: &[&str]) -> (bool, String, String) {
        let out = Command::new(&self.bin)
            .arg("-plaintext")
            .args(args)
            .output()
            .expect("run grpcurl");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn call(&self, method: &str, body: Value) -> Value {
        let body = body.to_string();
        let (ok, stdout, stderr) = self.run(&["-d", &body, &self.addr, method]);
        assert!(ok, "{method} failed: {stderr}");
        if stdout.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{method}: {e}: {stdout}"))
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpcurl_lists_describes_and_calls_every_method() {
    if tools::skip_interop() {
        return;
    }
    let bin = tools::grpcurl();
    let t = TestServer::start().await;
    let g = Grpcurl {
        bin,
        addr: t.server.local_addr().to_string(),
    };
    let addr = g.addr.clone();

    let (ok, listed, err) = g.run(&[&addr, "list"]);
    assert!(ok, "{err}");
    for svc in [
        "statusd.v1.DeviceCompliancePolicies",
        "statusd.v1.MobileAppConfigurations",
        "statusd.v1.DeviceConfigurations",
        "grpc.health.v1.Health",
    ] {
        assert!(listed.contains(svc), "{svc} missing from: {listed}");
    }
    let (ok, described, err) = g.run(&[&addr, "describe", "statusd.v1.DeviceConfigurationDeviceStatus"]);
    assert!(ok, "{err}");
    assert!(
        described.contains("compliance_grace_period_expiration_date_time"),
        "{described}"
    );
    assert!(
        described.contains("The DateTime when the device compliance grace period expires"),
        "comments are served"
    );
    let health = g.call("grpc.health.v1.Health/Check", json!({}));
    assert_eq!(health["status"], "SERVING");
    assert_eq!(g.call("statusd.v1.Diagnostics/Ping", json!({})), json!({}));

    let parents = [
        (
            "DeviceCompliancePolicies",
            "DeviceCompliancePolicy",
            "DeviceCompliancePolicies",
            "deviceCompliancePolicy",
            "#microsoft.graph.windows10CompliancePolicy",
        ),
        (
            "MobileAppConfigurations",
            "ManagedDeviceMobileAppConfiguration",
            "ManagedDeviceMobileAppConfigurations",
            "managedDeviceMobileAppConfiguration",
            "#microsoft.graph.iosMobileAppConfiguration",
        ),
        (
            "DeviceConfigurations",
            "DeviceConfiguration",
            "DeviceConfigurations",
            "deviceConfiguration",
            "#microsoft.graph.windows10GeneralConfiguration",
        ),
    ];
    for (svc, entity, plural, field, odata_type) in parents {
        let m = |name: &str| format!("statusd.v1.{svc}/{name}");
        let created = g.call(
            &m(&format!("Create{entity}")),
            json!({ field: { "odata_type": odata_type, "id": "p1", "display_name": "From grpcurl" } }),
        );
        assert_eq!(created["version"], 1, "{created}");
        let got = g.call(&m(&format!("Get{entity}")), json!({ "id": "p1" }));
        assert_eq!(got["displayName"], "From grpcurl");
        let list = g.call(&m(&format!("List{plural}")), json!({}));
        assert_eq!(
            list.as_object()
                .unwrap()
                .values()
                .next()
                .unwrap()
                .as_array()
                .unwrap()
                .len(),
            1
        );
        let updated = g.call(
            &m(&format!("Update{entity}")),
            json!({ field: { "id": "p1", "display_name": "Renamed" }, "update_mask": { "paths": ["display_name"] } }),
        );
        assert_eq!(updated["version"], 2);

        for (shape, status_field) in [("User", "user_status"), ("Device", "device_status")] {
            let s = g.call(
                &m(&format!("Create{shape}Status")),
                json!({ "parent_id": "p1", status_field: {
                    "id": "s1", "status": "COMPLIANCE_STATUS_COMPLIANT",
                    "last_reported_date_time": "2017-01-01T00:01:14.9975606+03:00" } }),
            );
            assert_eq!(s["status"], "COMPLIANCE_STATUS_COMPLIANT", "{s}");
            assert_eq!(s["lastReportedDateTime"], "2016-12-31T21:01:14.997560600Z");
            let got = g.call(
                &m(&format!("Get{shape}Status")),
                json!({ "parent_id": "p1", "id": "s1" }),
            );
            assert_eq!(got["id"], "s1");
            let page = g.call(
                &m(&format!("List{shape}Statuses")),
                json!({ "parent_id": "p1", "page_size": 10 }),
            );
            assert_eq!(
                page.as_object()
                    .unwrap()
                    .values()
                    .next()
                    .unwrap()
                    .as_array()
                    .unwrap()
                    .len(),
                1
            );
            let upd = g.call(
                &m(&format!("Update{shape}Status")),
                json!({ "parent_id": "p1", status_field: { "id": "s1", "status": "COMPLIANCE_STATUS_ERROR" },
                        "update_mask": { "paths": ["status"] } }),
            );
            assert_eq!(upd["status"], "COMPLIANCE_STATUS_ERROR");
            g.call(
                &m(&format!("Delete{shape}Status")),
                json!({ "parent_id": "p1", "id": "s1" }),
            );
        }
        g.call(&m(&format!("Delete{entity}")), json!({ "id": "p1" }));
        let (ok, _, err) = g.run(&["-d", r#"{"id":"p1"}"#, &addr, &m(&format!("Get{entity}"))]);
        assert!(!ok && err.contains("NotFound"), "{err}");
    }

    // Errors carry google.rpc.BadRequest, which grpcurl can decode via reflection.
    let (ok, _, err) = g.run(&[
        "-d",
        r##"{"device_configuration":{"odata_type":"#microsoft.graph.windows10GeneralConfiguration"}}"##,
        &addr,
        "statusd.v1.DeviceConfigurations/CreateDeviceConfiguration",
    ]);
    assert!(!ok);
    assert!(err.contains("InvalidArgument") && err.contains("display_name"), "{err}");
    assert!(err.contains("fieldViolations"), "BadRequest details decoded: {err}");
}
