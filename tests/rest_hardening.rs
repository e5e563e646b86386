//! Hardening of the REST edge and of queries, against the real server:
//! bounded `$orderby`, scans that end at the request deadline, page tokens
//! bound to the list they continue (REST and gRPC), Graph's query-string
//! conventions, REST ids, links that a `Host` header cannot redirect, and
//! error details (`$top` named as such, ids echoed on a 504).

mod common;

use common::{http, ParentApi, TestServer, PARENTS};
use futures::StreamExt;
use serde_json::{json, Value};
use statusd::store::Durability;
use statusd::{Config, Server};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const POLICIES: &str = "deviceManagement/deviceCompliancePolicies";
const POLICY_TYPE: &str = "#microsoft.graph.windows10CompliancePolicy";
const API: ParentApi = PARENTS[0];

/// Starts a server on a fresh directory with `adjust` applied to the test configuration.
async fn start_with(adjust: impl FnOnce(&mut Config)) -> TestServer {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = Config::for_data_dir(dir.path());
    adjust(&mut config);
    let server = Server::start(config).await.expect("server starts");
    TestServer {
        server,
        dir,
        database_url: None,
    }
}

async fn create_policy(base: &str, id: &str) {
    let body = json!({"@odata.type": POLICY_TYPE, "id": id, "displayName": id});
    let r = http("POST", &format!("{base}/v1.0/{POLICIES}"), Some(&body.to_string())).await;
    assert_eq!(r.status, 201, "{}", r.text);
}

/// Creates user statuses `u000`, `u001`, … under `policy`, `status` cycling
/// through compliant / error / conflict.
async fn create_statuses(base: &str, policy: &str, n: usize) {
    let url = format!("{base}/v1.0/{POLICIES}/{policy}/userStatuses");
    for i in 0..n {
        let status = ["compliant", "error", "conflict"][i % 3];
        let body = json!({"id": format!("u{i:03}"), "status": status, "userDisplayName": format!("user {i}")});
        let r = http("POST", &url, Some(&body.to_string())).await;
        assert_eq!(r.status, 201, "{}", r.text);
    }
}

fn ids(body: &Value) -> Vec<String> {
    body["value"]
        .as_array()
        .unwrap_or_else(|| panic!("no value: {body}"))
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_owned())
        .collect()
}

/// A raw HTTP/1.1 exchange, for what a URL library would rewrite: a chosen
/// `Host` header, or a path with `%2e%2e` (which URL parsers resolve as `..`).
async fn raw_get(addr: std::net::SocketAddr, path: &str, host: &str) -> common::HttpResponse {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.expect("read");
    let text = String::from_utf8(raw).expect("UTF-8 response");
    let (head, body) = text.split_once("\r\n\r\n").expect("a head and a body");
    let mut lines = head.split("\r\n");
    let status: u16 = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let mut headers = reqwest::header::HeaderMap::new();
    for line in lines {
        let (k, v) = line.split_once(':').unwrap();
        headers.insert(
            reqwest::header::HeaderName::from_bytes(k.trim().as_bytes()).unwrap(),
            v.trim().parse().unwrap(),
        );
    }
    let chunked = headers
        .get("transfer-encoding")
        .is_some_and(|v| v.to_str().unwrap().contains("chunked"));
    let text = if chunked { unchunk(body) } else { body.to_owned() };
    common::HttpResponse { status, headers, text }
}

fn unchunk(mut body: &str) -> String {
    let mut out = String::new();
    loop {
        let (size, rest) = body.split_once("\r\n").expect("chunk size");
        let size = usize::from_str_radix(size.trim(), 16).expect("hex chunk size");
        if size == 0 {
            return out;
        }
        out.push_str(&rest[..size]);
        body = &rest[size + 2..];
    }
}

// ---- A: $orderby is bounded; $count on the first page only -----------------

#[tokio::test]
async fn orderby_beyond_its_bound_is_refused_with_advice() {
    let t = start_with(|c| c.max_orderby_matches = 5).await;
    let base = t.base_url();
    create_policy(&base, "p").await;
    create_statuses(&base, "p", 6).await;
    let coll = format!("{base}/v1.0/{POLICIES}/p/userStatuses");

    let r = http("GET", &format!("{coll}?$orderby=userDisplayName%20desc"), None).await;
    let message = r.graph_error(400, "BadRequest");
    for needle in ["$orderby", "more than 5", "$filter", "id order"] {
        assert!(message.contains(needle), "{needle}: {message}");
    }
    // Narrowed by a filter, or without $orderby, the same collection reads fine.
    let r = http(
        "GET",
        &format!("{coll}?$orderby=userDisplayName%20desc&$filter=status%20ne%20%27error%27"),
        None,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(ids(&r.json()), ["u005", "u003", "u002", "u000"]);
    assert_eq!(
        http("GET", &coll, None).await.json()["value"].as_array().unwrap().len(),
        6
    );
}

#[tokio::test]
async fn count_is_on_the_first_page_only_and_next_links_keep_the_options() {
    let t = TestServer::start().await;
    let base = t.base_url();
    create_policy(&base, "p").await;
    create_statuses(&base, "p", 5).await;
    for extra in ["", "&$orderby=userDisplayName"] {
        let first = http(
            "GET",
            &format!("{base}/v1.0/{POLICIES}/p/userStatuses?$count=true&$top=2{extra}"),
            None,
        )
        .await
        .json();
        assert_eq!(first["@odata.count"], 5, "{first}");
        let next = first["@odata.nextLink"].as_str().unwrap().to_owned();
        assert!(next.contains("$count=true"), "{next}");
        let second = http("GET", &next, None).await.json();
        assert_eq!(ids(&second), ["u002", "u003"], "{second}");
        assert!(second.get("@odata.count").is_none(), "{second}");
    }
}

// ---- B: long scans yield and end at the deadline ------------------------------

/// Fills `dir` with policy `p` and `n` user statuses, using a server of its
/// own on a two-thread runtime (filling is the slow part of the deadline test,
/// and needs no particular scheduling), then shuts it down.
fn fill(dir: &std::path::Path, n: usize) {
    let dir = dir.to_owned();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let mut config = Config::for_data_dir(&dir);
            config.durability = Durability::Relaxed;
            let server = Server::start(config).await.expect("server starts");
            let base = format!("http://{}", server.local_addr());
            create_policy(&base, "p").await;
            let ch = tonic::transport::Channel::from_shared(base)
                .unwrap()
                .connect()
                .await
                .expect("connect");
            futures::stream::iter(0..n)
                .map(|i| {
                    let ch = ch.clone();
                    tokio::spawn(async move {
                        let m = common::UserMsg {
                            id: format!("u{i:05}"),
                            user_display_name: Some(format!("user {i}")),
                            ..Default::default()
                        };
                        API.create_status(&ch, "User", "p", m).await.expect("create")
                    })
                })
                .buffer_unordered(64)
                .for_each(|r| async move {
                    r.expect("create task");
                })
                .await;
            server.shutdown().await.expect("clean shutdown");
        });
    })
    .join()
    .expect("fill thread");
}

/// Sends `k` GETs of `url` at once, each with its own `client-request-id`;
/// `finished` counts the responses read so far.
async fn concurrent_gets(
    client: &reqwest::Client,
    url: &str,
    k: usize,
    finished: &std::sync::atomic::AtomicUsize,
) -> Vec<(usize, common::HttpResponse)> {
    futures::future::join_all((0..k).map(|i| async move {
        let resp = client
            .get(url)
            .header("client-request-id", format!("scan-{i}"))
            .send()
            .await
            .expect("response");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.expect("body");
        finished.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        (i, common::HttpResponse { status, headers, text })
    }))
    .await
}

/// The server runs on this test's single-threaded runtime. A scan that never
/// yielded would run each request to its end in one poll: no request could
/// hit the deadline, and every other request would wait behind it.
///
/// What this shows, over 20 000 statuses (a scan of them is 20 chunks):
/// 1. while three full-collection scans run, a small request on an open
///    connection is answered before any of them has finished (they take
///    turns a chunk at a time);
/// 2. with enough scans at once to make about 2.5 s of work (calibrated by
///    timing one scan first, so it holds on slower and faster machines),
///    scans are cut off at the 1 s deadline with a Graph 504 that echoes each
///    one's `client-request-id` and carries a `request-id`.
#[tokio::test(flavor = "current_thread")]
async fn long_scans_end_at_the_deadline_and_do_not_stall_other_requests() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    const RECORDS: usize = 20_000;
    let dir = tempfile::tempdir().expect("temp dir");
    let started = Instant::now();
    fill(dir.path(), RECORDS);
    eprintln!("created {RECORDS} statuses in {:?}", started.elapsed());
    let mut config = Config::for_data_dir(dir.path());
    config.request_timeout_secs = 1;
    let t = TestServer {
        server: Server::start(config).await.expect("server starts"),
        dir,
        database_url: None,
    };
    let base = t.base_url();
    // A filter that matches nothing reads the whole collection.
    let heavy = format!("{base}/v1.0/{POLICIES}/p/userStatuses?$filter=userDisplayName%20eq%20%27nobody%27");
    let small_url = format!("{base}/v1.0/{POLICIES}/p");
    let small_client = reqwest::Client::new();
    let heavy_client = reqwest::Client::new();
    // Open the small request's connection, and time one scan alone.
    assert_eq!(small_client.get(&small_url).send().await.unwrap().status(), 200);
    let started = Instant::now();
    let alone = http("GET", &heavy, None).await;
    assert_eq!(alone.status, 200, "{}", alone.text);
    let one_scan = started.elapsed();

    // 1. Taking turns.
    let finished = AtomicUsize::new(0);
    let small = async {
        tokio::time::sleep(one_scan / 4).await;
        let started = Instant::now();
        let r = small_client.get(&small_url).send().await.expect("small response");
        let status = r.status().as_u16();
        (status, started.elapsed(), finished.load(Ordering::SeqCst))
    };
    let (scans, (status, small_took, done_by_then)) =
        tokio::join!(concurrent_gets(&heavy_client, &heavy, 3, &finished), small);
    eprintln!("one scan alone: {one_scan:?}; beside three, a small request took {small_took:?}");
    assert_eq!(status, 200);
    assert_eq!(done_by_then, 0, "the small request waited for whole scans");
    assert!(scans.iter().all(|(_, r)| r.status == 200));

    // 2. The deadline. The calibration can be off when other tests share the
    // machine, so the load doubles until scans are cut off (bounded).
    let mut k = (Duration::from_millis(2500).as_secs_f64() / one_scan.as_secs_f64()).ceil() as usize;
    k = k.clamp(3, 300);
    let mut timed_out = 0;
    for _attempt in 0..4 {
        let finished = AtomicUsize::new(0);
        let results = concurrent_gets(&heavy_client, &heavy, k, &finished).await;
        for (i, r) in &results {
            match r.status {
                200 => {}
                504 => {
                    timed_out += 1;
                    r.graph_error(504, "GatewayTimeout");
                    let inner = &r.json()["error"]["innerError"];
                    assert_eq!(inner["client-request-id"], format!("scan-{i}"));
                    assert_eq!(r.headers["client-request-id"], format!("scan-{i}").as_str());
                    assert!(r.headers.contains_key("request-id"));
                }
                other => panic!("{other}: {}", r.text),
            }
        }
        eprintln!("{timed_out} of {k} concurrent scans were cut off at the deadline");
        if timed_out > 0 {
            break;
        }
        k = (k * 2).min(600);
    }
    assert!(timed_out > 0, "no scan hit the 1 s deadline");
    // And the server is well afterwards.
    assert_eq!(small_client.get(&small_url).send().await.unwrap().status(), 200);
}

// ---- C: page tokens continue only their own list ------------------------------

#[tokio::test]
async fn rest_skiptokens_are_bound_to_their_collection_and_query() {
    let t = TestServer::start().await;
    let base = t.base_url();
    for p in ["p", "q"] {
        create_policy(&base, p).await;
        create_statuses(&base, p, 6).await;
    }
    let coll = |p: &str| format!("{base}/v1.0/{POLICIES}/{p}/userStatuses");
    let token_of = |body: &Value| -> String {
        let next = body["@odata.nextLink"].as_str().unwrap_or_else(|| panic!("{body}"));
        let (_, token) = next.split_once("$skiptoken=").unwrap();
        token.to_owned()
    };
    let filter = "$filter=status%20ne%20%27error%27";
    let order = "$orderby=userDisplayName%20desc";
    let plain = token_of(&http("GET", &format!("{}?$top=2", coll("p")), None).await.json());
    let filtered = token_of(
        &http("GET", &format!("{}?$top=2&{filter}", coll("p")), None)
            .await
            .json(),
    );
    let ordered = token_of(&http("GET", &format!("{}?$top=2&{order}", coll("p")), None).await.json());

    // The same list continues, whatever $top, $select or $count now say.
    let r = http(
        "GET",
        &format!(
            "{}?$top=3&$select=id&$count=true&{filter}&$skiptoken={filtered}",
            coll("p")
        ),
        None,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(ids(&r.json()), ["u003", "u005"]);

    let policies = format!("{base}/v1.0/{POLICIES}");
    let beta_devices = format!("{base}/beta/{POLICIES}/p/deviceStatuses");
    let tampered = {
        let mut t = plain.clone();
        let last = t.pop().unwrap();
        t.push(if last == 'A' { 'B' } else { 'A' });
        t
    };
    for url in [
        format!("{}?$skiptoken={plain}", coll("q")),
        format!("{policies}?$skiptoken={plain}"),
        format!("{beta_devices}?$skiptoken={plain}"),
        format!("{}?{filter}&$skiptoken={plain}", coll("p")),
        format!("{}?$skiptoken={filtered}", coll("p")),
        format!("{}?$filter=status%20eq%20%27error%27&$skiptoken={filtered}", coll("p")),
        format!("{}?$skiptoken={ordered}", coll("p")),
        format!("{}?$orderby=userDisplayName&$skiptoken={ordered}", coll("p")),
        format!("{}?$skiptoken={tampered}", coll("p")),
    ] {
        let r = http("GET", &url, None).await;
        let message = r.graph_error(400, "BadRequest");
        assert!(message.contains("$skiptoken"), "{url}: {message}");
    }
}

#[tokio::test]
async fn grpc_page_tokens_are_bound_to_their_collection() {
    let t = TestServer::start().await;
    let base = t.base_url();
    let ch = t.channel().await;
    for p in ["p", "q"] {
        create_policy(&base, p).await;
        create_statuses(&base, p, 4).await;
    }
    PARENTS[1].create(&ch, PARENTS[1].new_parent("p", "p")).await.unwrap();
    let (_, token) = API
        .list_statuses::<common::UserMsg>(&ch, "User", "p", 2, "")
        .await
        .unwrap();
    assert!(!token.is_empty());
    let (page, _) = API
        .list_statuses::<common::UserMsg>(&ch, "User", "p", 2, &token)
        .await
        .unwrap();
    assert_eq!(page[0].id, "u002");
    let wrong = [
        API.list_statuses::<common::UserMsg>(&ch, "User", "q", 2, &token)
            .await
            .err(),
        API.list_statuses::<common::DeviceMsg>(&ch, "Device", "p", 2, &token)
            .await
            .err(),
        API.list(&ch, 2, &token).await.err(),
        PARENTS[1]
            .list_statuses::<common::UserMsg>(&ch, "User", "p", 2, &token)
            .await
            .err(),
    ];
    for status in wrong {
        let status = status.expect("a token of another list is refused");
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
        assert_eq!(common::bad_request_fields(&status), ["page_token"]);
    }
}

#[tokio::test]
async fn a_skip_near_the_largest_integer_is_an_empty_page_not_a_crash() {
    let t = TestServer::start().await;
    let base = t.base_url();
    create_policy(&base, "p").await;
    create_statuses(&base, "p", 3).await;
    for query in ["$skip=18446744073709551615", "$skip=18446744073709551615&$orderby=id"] {
        let r = http("GET", &format!("{base}/v1.0/{POLICIES}/p/userStatuses?{query}"), None).await;
        assert_eq!(r.status, 200, "{query}: {}", r.text);
        assert_eq!(ids(&r.json()), Vec::<String>::new());
    }
    http(
        "GET",
        &format!("{base}/v1.0/{POLICIES}?$skip=18446744073709551616"),
        None,
    )
    .await
    .graph_error(400, "BadRequest");
}

// ---- D: Graph's query-string conventions; strict path decoding -----------------

#[tokio::test]
async fn a_form_encoded_query_decodes_plus_as_space() {
    let t = TestServer::start().await;
    let base = t.base_url();
    create_policy(&base, "p").await;
    create_statuses(&base, "p", 6).await;
    // What Python requests sends for params={"$filter": "status eq 'error'"}.
    let r = http(
        "GET",
        &format!("{base}/v1.0/{POLICIES}/p/userStatuses?%24filter=status+eq+%27error%27"),
        None,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(ids(&r.json()), ["u001", "u004"]);
}

#[tokio::test]
async fn beta_takes_options_without_dollar_and_v1_refuses_them_clearly() {
    let t = TestServer::start().await;
    let base = t.base_url();
    create_policy(&base, "p").await;
    create_statuses(&base, "p", 6).await;
    let query = "filter=status%20ne%20%27error%27&top=2&count=true&orderby=id%20desc&select=id,status";
    let r = http("GET", &format!("{base}/beta/{POLICIES}/p/userStatuses?{query}"), None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let body = r.json();
    assert_eq!(ids(&body), ["u005", "u003"]);
    assert_eq!(body["@odata.count"], 4);
    assert!(body["value"][0].get("userDisplayName").is_none(), "{body}");
    let next = body["@odata.nextLink"].as_str().unwrap();
    let second = http("GET", next, None).await.json();
    assert_eq!(ids(&second), ["u002", "u000"], "{next}");
    let r = http("GET", &format!("{base}/beta/{POLICIES}/p/userStatuses?skip=4"), None).await;
    assert_eq!(ids(&r.json()), ["u004", "u005"]);

    let r = http("GET", &format!("{base}/v1.0/{POLICIES}/p/userStatuses?{query}"), None).await;
    let message = r.graph_error(400, "BadRequest");
    assert!(message.contains("'$filter'"), "{message}");
    // Custom options are still ignored, as Graph does.
    let r = http("GET", &format!("{base}/v1.0/{POLICIES}/p/userStatuses?custom=1"), None).await;
    assert_eq!(r.status, 200, "{}", r.text);
}

#[tokio::test]
async fn a_path_segment_that_is_not_utf8_is_a_400_not_another_record() {
    let t = TestServer::start().await;
    let base = t.base_url();
    // U+FFFD is what a lossy decode made of %FF.
    create_policy(&base, "\u{FFFD}").await;
    for path in ["%FF", "%FE", "%C3", "%FF/userStatuses"] {
        let r = http("GET", &format!("{base}/v1.0/{POLICIES}/{path}"), None).await;
        let message = r.graph_error(400, "BadRequest");
        assert!(message.contains("UTF-8"), "{path}: {message}");
    }
    let r = http("GET", &format!("{base}/v1.0/{POLICIES}/%EF%BF%BD"), None).await;
    assert_eq!(r.status, 200, "{}", r.text);
}

// ---- E: REST ids ---------------------------------------------------------------

#[tokio::test]
async fn an_empty_id_in_a_rest_body_is_a_400() {
    let t = TestServer::start().await;
    let base = t.base_url();
    create_policy(&base, "p").await;
    let cases = [
        (
            format!("{base}/v1.0/{POLICIES}"),
            json!({"@odata.type": POLICY_TYPE, "id": "", "displayName": "x"}),
        ),
        (
            format!("{base}/v1.0/{POLICIES}/p/userStatuses"),
            json!({"id": "", "status": "compliant"}),
        ),
        (
            format!("{base}/v1.0/{POLICIES}/p/deviceStatuses"),
            json!({"id": "", "status": "compliant"}),
        ),
    ];
    for (url, body) in &cases {
        let r = http("POST", url, Some(&body.to_string())).await;
        let message = r.graph_error(400, "BadRequest");
        assert!(message.contains("'id'"), "{url}: {message}");
    }
    // Leaving the id out still has the server generate one.
    let r = http(
        "POST",
        &format!("{base}/v1.0/{POLICIES}/p/userStatuses"),
        Some(&json!({"status": "compliant"}).to_string()),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert!(!r.json()["id"].as_str().unwrap().is_empty());
}

/// Passes once `src/model/id.rs` refuses `.` and `..` as ids (being added on
/// main in parallel): the path decoding here hands `%2e%2e` to the service as
/// `..`, and the id rule must judge it. Sent raw: URL libraries resolve
/// `%2e%2e` as `..` before sending.
#[tokio::test]
async fn a_dot_dot_id_in_a_path_is_a_400() {
    let t = TestServer::start().await;
    let addr = t.server.local_addr();
    for path in [
        "/v1.0/deviceManagement/deviceCompliancePolicies/%2e%2e",
        "/v1.0/deviceManagement/deviceCompliancePolicies/%2E",
    ] {
        let r = raw_get(addr, path, &addr.to_string()).await;
        r.graph_error(400, "BadRequest");
    }
}

// ---- F: links cannot be pointed elsewhere by Host ------------------------------

#[tokio::test]
async fn links_use_a_plain_host_or_else_the_listening_address() {
    let t = TestServer::start().await;
    let base = t.base_url();
    let addr = t.server.local_addr();
    create_policy(&base, "p").await;
    create_statuses(&base, "p", 3).await;
    let path = format!("/v1.0/{POLICIES}/p/userStatuses?$top=1");
    for (host, want) in [
        ("a@attacker.test", format!("http://{addr}/")),
        ("attacker.test/x?", format!("http://{addr}/")),
        ("localhost:1234", "http://localhost:1234/".to_owned()),
        ("[::1]:8080", "http://[::1]:8080/".to_owned()),
    ] {
        let r = raw_get(addr, &path, host).await;
        assert_eq!(r.status, 200, "{host}: {}", r.text);
        let body = r.json();
        for link in ["@odata.context", "@odata.nextLink"] {
            let url = body[link].as_str().unwrap();
            assert!(url.starts_with(&want), "{host}: {link} = {url}");
            assert!(!url.contains("attacker"), "{host}: {link} = {url}");
        }
    }
}

#[tokio::test]
async fn a_public_url_is_the_base_of_every_link() {
    let t = start_with(|c| c.public_url = Some("https://statusd.example.com/graph".into())).await;
    let base = t.base_url();
    let addr = t.server.local_addr();
    create_policy(&base, "p").await;
    create_statuses(&base, "p", 3).await;
    let r = raw_get(
        addr,
        &format!("/v1.0/{POLICIES}/p/userStatuses?$top=1"),
        "a@attacker.test",
    )
    .await;
    let body = r.json();
    assert!(body["@odata.context"]
        .as_str()
        .unwrap()
        .starts_with("https://statusd.example.com/graph/v1.0/$metadata#"));
    let next = body["@odata.nextLink"].as_str().unwrap();
    assert!(
        next.starts_with(&format!(
            "https://statusd.example.com/graph/v1.0/{POLICIES}/p/userStatuses?"
        )),
        "{next}"
    );
}

// ---- G: error details ------------------------------------------------------------

#[tokio::test]
async fn a_page_size_too_large_names_top_on_rest_and_page_size_on_grpc() {
    let t = TestServer::start().await;
    let base = t.base_url();
    let ch = t.channel().await;
    let r = http("GET", &format!("{base}/v1.0/{POLICIES}?$top=1001"), None).await;
    let message = r.graph_error(400, "BadRequest");
    assert!(message.contains("'$top'") && !message.contains("pageSize"), "{message}");
    let status = API.list(&ch, 1001, "").await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert_eq!(common::bad_request_fields(&status), ["page_size"]);
}
