//! JSON batching (`POST /{version}/$batch`) against the real server:
//! dependsOn chains, each sub-response equal to the same request sent
//! alone, 424 after a failed dependency while independent requests still
//! run, every malformed batch a 400 (nothing runs), the limits applied to
//! each request, and what real clients send (`depends_on`, absolute URLs).

mod common;

use common::{http, TestServer};
use serde_json::{json, Value};

const POLICIES: &str = "/deviceManagement/deviceCompliancePolicies";

async fn batch(base: &str, version: &str, body: &Value) -> common::HttpResponse {
    http("POST", &format!("{base}/{version}/$batch"), Some(&body.to_string())).await
}

fn responses(r: &common::HttpResponse) -> Vec<Value> {
    assert_eq!(r.status, 200, "{}", r.text);
    r.json()["responses"].as_array().expect("responses").clone()
}

fn by_id<'a>(responses: &'a [Value], id: &str) -> &'a Value {
    responses
        .iter()
        .find(|r| r["id"] == id)
        .unwrap_or_else(|| panic!("no response {id}"))
}

fn policy(id: &str) -> Value {
    json!({"@odata.type": "#microsoft.graph.windows10CompliancePolicy", "id": id, "displayName": id})
}

#[tokio::test]
async fn a_dependency_chain_runs_in_order_and_each_answer_is_what_the_request_alone_gets() {
    let t = TestServer::start().await;
    let base = t.base_url();
    for version in ["v1.0", "beta", "localtest"] {
        let p = format!("p-{version}");
        let body = json!({"requests": [
            {"id": "1", "method": "POST", "url": POLICIES, "headers": {"Content-Type": "application/json"}, "body": policy(&p)},
            {"id": "2", "method": "POST", "url": format!("{POLICIES}/{p}/userStatuses"), "dependsOn": ["1"],
             "headers": {"Content-Type": "application/json"},
             "body": {"id": "u1", "userDisplayName": "Ada", "devicesCount": 2, "status": "compliant"}},
            {"id": "3", "method": "PATCH", "url": format!("{POLICIES}/{p}/userStatuses/u1"), "dependsOn": ["2"],
             "body": {"devicesCount": 5}},
            {"id": "4", "method": "GET", "url": format!("{POLICIES}/{p}/userStatuses/u1"), "dependsOn": ["3"]},
            {"id": "5", "method": "GET", "url": format!("{POLICIES}/{p}/userStatuses?$select=id,devicesCount"), "dependsOn": ["4"]},
        ]});
        let rs = responses(&batch(&base, version, &body).await);
        let statuses: Vec<u64> = ["1", "2", "3", "4", "5"]
            .iter()
            .map(|id| by_id(&rs, id)["status"].as_u64().unwrap())
            .collect();
        assert_eq!(statuses, [201, 201, 200, 200, 200], "{version}: {rs:#?}");
        assert_eq!(by_id(&rs, "4")["body"]["devicesCount"], 5, "{version}");
        // Alone, the same GETs answer the same bodies (links included).
        for (id, url) in [
            ("4", format!("{POLICIES}/{p}/userStatuses/u1")),
            ("5", format!("{POLICIES}/{p}/userStatuses?$select=id,devicesCount")),
        ] {
            let alone = http("GET", &format!("{base}/{version}{url}"), None).await;
            assert_eq!(alone.json(), by_id(&rs, id)["body"], "{version} {id}");
            let ct = alone.headers["content-type"].to_str().unwrap();
            assert_eq!(by_id(&rs, id)["headers"]["content-type"], ct);
        }
        // An error, too: a duplicate create in a batch and alone.
        let dup = json!({"requests": [{"id": "d", "method": "POST", "url": POLICIES, "body": policy(&p)}]});
        let in_batch = by_id(&responses(&batch(&base, version, &dup).await), "d").clone();
        let alone = http(
            "POST",
            &format!("{base}/{version}{POLICIES}"),
            Some(&policy(&p).to_string()),
        )
        .await;
        assert_eq!(in_batch["status"], alone.status);
        assert_eq!(in_batch["body"]["error"]["code"], alone.json()["error"]["code"]);
        assert_eq!(in_batch["body"]["error"]["message"], alone.json()["error"]["message"]);
    }
}

#[tokio::test]
async fn a_failed_dependency_gives_424_and_independent_requests_still_run() {
    let t = TestServer::start().await;
    let base = t.base_url();
    let body = json!({"requests": [
        {"id": "a", "method": "POST", "url": format!("{POLICIES}/missing/userStatuses"), "body": {"id": "u"}},
        {"id": "b", "method": "GET", "url": format!("{POLICIES}/missing/userStatuses/u"), "dependsOn": ["a"]},
        {"id": "c", "method": "GET", "url": POLICIES, "dependsOn": ["b"]},
        {"id": "d", "method": "POST", "url": POLICIES, "body": policy("independent")},
    ]});
    let rs = responses(&batch(&base, "v1.0", &body).await);
    assert_eq!(by_id(&rs, "a")["status"], 404);
    for id in ["b", "c"] {
        assert_eq!(by_id(&rs, id)["status"], 424, "{id}");
        assert_eq!(by_id(&rs, id)["body"]["error"]["code"], "FailedDependency");
    }
    assert_eq!(by_id(&rs, "d")["status"], 201);
    // Only what ran changed anything.
    let listed = http("GET", &format!("{base}/v1.0{POLICIES}"), None).await.json();
    let ids: Vec<&str> = listed["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["independent"]);
}

#[tokio::test]
async fn independent_requests_all_run_and_answer_in_request_order() {
    let t = TestServer::start().await;
    let base = t.base_url();
    let requests: Vec<Value> = (0..20)
        .map(|i| json!({"id": format!("r{i}"), "method": "POST", "url": POLICIES, "body": policy(&format!("p{i:02}"))}))
        .collect();
    let rs = responses(&batch(&base, "v1.0", &json!({ "requests": requests })).await);
    let ids: Vec<&str> = rs.iter().map(|r| r["id"].as_str().unwrap()).collect();
    let expected: Vec<String> = (0..20).map(|i| format!("r{i}")).collect();
    assert_eq!(ids, expected);
    assert!(rs.iter().all(|r| r["status"] == 201), "{rs:#?}");
    let listed = http("GET", &format!("{base}/v1.0{POLICIES}?$count=true"), None)
        .await
        .json();
    assert_eq!(listed["@odata.count"], 20);
}

#[tokio::test]
async fn a_malformed_batch_is_a_400_and_nothing_runs() {
    let t = TestServer::start().await;
    let base = t.base_url();
    let create = |id: &str, p: &str| json!({"id": id, "method": "POST", "url": POLICIES, "body": policy(p)});
    let too_many: Vec<Value> = (0..21).map(|i| create(&format!("r{i}"), &format!("many{i}"))).collect();
    let cases: Vec<(&str, String)> = vec![
        ("not JSON", "{".to_owned()),
        ("no requests", json!({}).to_string()),
        ("empty", json!({"requests": []}).to_string()),
        ("21 requests", json!({ "requests": too_many }).to_string()),
        ("duplicate ids", json!({"requests": [create("1", "dup-a"), create("1", "dup-b")]}).to_string()),
        ("unknown dependsOn", {
            let mut r = create("1", "unknown-dep");
            r["dependsOn"] = json!(["9"]);
            json!({ "requests": [r] }).to_string()
        }),
        ("a cycle", {
            let mut a = create("a", "cycle-a");
            a["dependsOn"] = json!(["b"]);
            let mut b = create("b", "cycle-b");
            b["dependsOn"] = json!(["a"]);
            json!({ "requests": [create("ok", "cycle-ok"), a, b] }).to_string()
        }),
        ("itself", {
            let mut a = create("a", "self");
            a["dependsOn"] = json!(["a"]);
            json!({ "requests": [a] }).to_string()
        }),
        ("nested $batch", json!({"requests": [create("ok", "nested-ok"), {"id": "n", "method": "POST", "url": "/$batch", "body": {"requests": []}}]}).to_string()),
        ("a bad method", json!({"requests": [create("ok", "method-ok"), {"id": "m", "method": "TRACE", "url": POLICIES}]}).to_string()),
        ("no url", json!({"requests": [{"id": "u", "method": "GET"}]}).to_string()),
        ("no id", json!({"requests": [{"method": "GET", "url": POLICIES}]}).to_string()),
    ];
    for (what, body) in cases {
        let r = http("POST", &format!("{base}/v1.0/$batch"), Some(&body)).await;
        assert_eq!(r.status, 400, "{what}: {}", r.text);
        assert_eq!(r.json()["error"]["code"], "BadRequest", "{what}");
        assert!(r.headers.contains_key("request-id"), "{what}");
    }
    let listed = http("GET", &format!("{base}/v1.0{POLICIES}"), None).await.json();
    assert_eq!(listed["value"], json!([]), "a refused batch ran something");
}

#[tokio::test]
async fn each_request_passes_the_same_validation_and_limits_and_the_batch_its_size_limit() {
    let (server, _dir) = common::start_with(|c| c.max_message_kb = 64).await;
    let base = format!("http://{}", server.local_addr());
    let body = json!({"requests": [
        {"id": "bad-id", "method": "POST", "url": POLICIES, "body": policy("a/b")},
        {"id": "bad-status", "method": "POST", "url": POLICIES, "body": {"@odata.type": "#microsoft.graph.windows10CompliancePolicy", "id": "x", "displayName": 5}},
        {"id": "not-allowed", "method": "PUT", "url": POLICIES},
        {"id": "unknown", "method": "GET", "url": "/deviceManagement/somethingElse"},
    ]});
    let rs = responses(&batch(&base, "v1.0", &body).await);
    for (id, status) in [
        ("bad-id", 400),
        ("bad-status", 400),
        ("not-allowed", 405),
        ("unknown", 400),
    ] {
        let r = by_id(&rs, id);
        assert_eq!(r["status"], status, "{id}: {r}");
        assert!(r["body"]["error"]["message"].is_string(), "{id}");
    }
    let huge = "x".repeat(70 * 1024);
    let r = http(
        "POST",
        &format!("{base}/v1.0/$batch"),
        Some(
            &json!({"requests": [{"id": "1", "method": "GET", "url": POLICIES, "headers": {"x-pad": huge}}]})
                .to_string(),
        ),
    )
    .await;
    assert_eq!(r.status, 413, "{}", r.text);
    assert!(r.json()["error"]["code"].is_string());
}

#[tokio::test]
async fn what_real_clients_send_is_accepted() {
    let t = TestServer::start().await;
    let base = t.base_url();
    // msgraph-core (Python) writes depends_on; some clients send absolute
    // URLs or repeat the version; ids may be numbers.
    let body = json!({"requests": [
        {"id": 1, "method": "post", "url": format!("https://graph.microsoft.com/beta{POLICIES}"), "body": policy("abs")},
        {"id": "2", "method": "GET", "url": format!("beta{POLICIES}/abs"), "depends_on": ["1"]},
    ]});
    let rs = responses(&batch(&base, "beta", &body).await);
    assert_eq!(by_id(&rs, "1")["status"], 201);
    assert_eq!(by_id(&rs, "2")["status"], 200);
    assert_eq!(by_id(&rs, "2")["body"]["id"], "abs");
}
