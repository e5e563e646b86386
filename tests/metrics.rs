//! Prometheus metrics at `GET /metrics`, scraped from the real server after
//! real gRPC and REST requests: requests by edge, method, route (templates,
//! never ids) and code, latency histograms, group commits, refusals by
//! reason; `--metrics-listen` moves them to an address of their own; with
//! auth on, `/metrics` needs a valid token; `--log-format json` writes one
//! JSON object per line. The recorder is per process, so every check reads
//! a difference or a label only its own requests make.

mod common;

use common::{http, start_with, UserMsg, PARENTS};

/// The value of the sample `name{labels}` whose labels include every one
/// of `labels` (0 when absent).
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (metric, rest) = series.split_once('{').unwrap_or((series, ""));
            (metric == name && labels.iter().all(|(k, v)| rest.contains(&format!("{k}=\"{v}\""))))
                .then(|| value.parse::<f64>().ok())?
        })
        .sum()
}

async fn scrape(url: &str) -> String {
    let r = http("GET", url, None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(
        r.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4"),
        "{:?}",
        r.headers
    );
    r.text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_commits_and_refusals_are_counted_without_ids_in_labels() {
    let (server, _dir) = start_with(|c| c.max_message_kb = 64).await;
    let base = format!("http://{}", server.local_addr());
    let ch = common::channel_to(&server).await;
    let api = PARENTS[0];
    let before = scrape(&format!("{base}/metrics")).await;
    let create_route = "/statusd.v1.DeviceCompliancePolicies/CreateUserStatus";
    let grpc_ok = |t: &str| {
        sample(
            t,
            "statusd_requests_total",
            &[("edge", "grpc"), ("route", create_route), ("code", "0")],
        )
    };
    let grpc_not_found = |t: &str| {
        sample(
            t,
            "statusd_requests_total",
            &[("edge", "grpc"), ("route", create_route), ("code", "5")],
        )
    };
    let rest_route = "v1.0/deviceManagement/deviceCompliancePolicies/{id}/userStatuses/{id}";
    let rest_gets = |t: &str| {
        sample(
            t,
            "statusd_requests_total",
            &[
                ("edge", "rest"),
                ("method", "GET"),
                ("route", rest_route),
                ("code", "200"),
            ],
        )
    };
    let rest_404 = |t: &str| {
        sample(
            t,
            "statusd_requests_total",
            &[
                ("edge", "rest"),
                ("method", "GET"),
                ("route", rest_route),
                ("code", "404"),
            ],
        )
    };
    let commits = |t: &str| sample(t, "statusd_commit_batches_total", &[]);
    let size = |t: &str| sample(t, "statusd_refused_total", &[("reason", "size")]);

    api.create(&ch, api.new_parent("metrics-p", "m")).await.unwrap();
    for i in 0..3 {
        let msg = UserMsg {
            id: format!("u{i}"),
            ..Default::default()
        };
        api.create_status(&ch, "User", "metrics-p", msg).await.unwrap();
    }
    let missing = UserMsg {
        id: "x".into(),
        ..Default::default()
    };
    assert!(api.create_status(&ch, "User", "no-such-parent", missing).await.is_err());
    for id in ["u0", "u1", "nope"] {
        http(
            "GET",
            &format!("{base}/v1.0/deviceManagement/deviceCompliancePolicies/metrics-p/userStatuses/{id}"),
            None,
        )
        .await;
    }
    let big = "x".repeat(100 * 1024);
    let r = http(
        "POST",
        &format!("{base}/v1.0/deviceManagement/deviceCompliancePolicies"),
        Some(&big),
    )
    .await;
    assert_eq!(r.status, 413);

    let after = scrape(&format!("{base}/metrics")).await;
    // Records by collection, counted at the scrape (this server's store:
    // the scrape sets them just before it renders).
    let records = |t: &str, c: &str| sample(t, "statusd_records", &[("collection", c)]);
    assert_eq!(records(&after, "deviceCompliancePolicies"), 1.0, "{after}");
    assert_eq!(records(&after, "deviceCompliancePolicies/userStatuses"), 3.0, "{after}");
    assert_eq!(records(&after, "deviceConfigurations/deviceStatuses"), 0.0, "{after}");
    assert!(after.contains("# HELP statusd_records"), "{after}");
    assert_eq!(grpc_ok(&after) - grpc_ok(&before), 3.0, "{after}");
    assert_eq!(grpc_not_found(&after) - grpc_not_found(&before), 1.0);
    assert_eq!(rest_gets(&after) - rest_gets(&before), 2.0);
    assert_eq!(rest_404(&after) - rest_404(&before), 1.0);
    assert!(commits(&after) - commits(&before) >= 1.0, "group commits counted");
    assert!(size(&after) - size(&before) >= 1.0, "the 413 counted as a refusal");
    // Latency histograms with buckets, and no id in any label.
    assert!(after.contains("statusd_request_duration_seconds_bucket{"), "{after}");
    assert!(after.contains("statusd_commit_flush_seconds_bucket"), "{after}");
    assert!(after.contains("# HELP statusd_requests_total"), "{after}");
    for id in ["metrics-p", "u0", "nope", "no-such-parent"] {
        assert!(!after.contains(id), "an id ({id}) became a label");
    }
    // Unknown paths and methods are `other`, not labels of their own.
    http("GET", &format!("{base}/v1.0/deviceManagement/unknownThing-12345"), None).await;
    let r = common::call::<(), ()>(&ch, "/statusd.v1.DeviceCompliancePolicies/NoSuchMethod12345", ()).await;
    assert_eq!(r.unwrap_err().code(), tonic::Code::Unimplemented);
    let text = scrape(&format!("{base}/metrics")).await;
    assert!(!text.contains("12345"), "{text}");
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_listen_serves_them_on_their_own_address_only() {
    let (server, _dir) = start_with(|c| c.metrics_listen = Some("127.0.0.1:0".parse().unwrap())).await;
    let own = server.metrics_addr().expect("a metrics address");
    let base = format!("http://{}", server.local_addr());
    http(
        "GET",
        &format!("{base}/v1.0/deviceManagement/deviceCompliancePolicies"),
        None,
    )
    .await;
    let text = scrape(&format!("http://{own}/metrics")).await;
    assert!(
        text.contains("route=\"v1.0/deviceManagement/deviceCompliancePolicies\""),
        "{text}"
    );
    let main = http("GET", &format!("http://{}/metrics", server.local_addr()), None).await;
    assert_eq!(main.status, 400, "not served there: {}", main.text);
    assert!(!main.text.contains("statusd_requests_total"));
    server.shutdown().await.unwrap();
}

#[test]
fn log_format_json_writes_one_object_per_line() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_statusd"))
        .args(["--listen", "127.0.0.1:0", "--log-format", "json", "--data-dir"])
        .arg(dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut stdout, &mut line).unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    let json: serde_json::Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
    assert!(
        json["level"].is_string() && json["fields"]["message"].is_string(),
        "{json}"
    );
    assert!(!line.contains('\u{1b}'), "no colour escapes: {line}");
}

/// Every request has an id: gRPC answers the client's `x-request-id` (or a
/// fresh one) in `x-request-id`; REST's `request-id` is the same kind of id.
#[tokio::test]
async fn grpc_calls_answer_their_request_id() {
    let (server, _dir) = start_with(|_| {}).await;
    let ch = common::channel_to(&server).await;
    let call = |id: Option<&'static str>| {
        let ch = ch.clone();
        async move {
            let mut grpc = tonic::client::Grpc::new(ch);
            grpc.ready().await.unwrap();
            let mut req = tonic::Request::new(());
            if let Some(id) = id {
                req.metadata_mut().insert("x-request-id", id.parse().unwrap());
            }
            let path = tonic::codegen::http::uri::PathAndQuery::from_static("/statusd.v1.Diagnostics/Ping");
            let resp = grpc
                .unary::<(), (), _>(req, path, tonic_prost::ProstCodec::default())
                .await
                .unwrap();
            resp.metadata()
                .get("x-request-id")
                .unwrap()
                .to_str()
                .unwrap()
                .to_owned()
        }
    };
    assert_eq!(call(Some("trace-42")).await, "trace-42");
    let fresh = call(None).await;
    assert_eq!(fresh.len(), 36, "a uuid: {fresh}");
    let rest = http(
        "GET",
        &format!(
            "http://{}/v1.0/deviceManagement/deviceCompliancePolicies",
            server.local_addr()
        ),
        None,
    )
    .await;
    assert_eq!(rest.headers["request-id"].to_str().unwrap().len(), 36);
    server.shutdown().await.unwrap();
}
