//! Load benchmark: drives a statusd server over real connections with a
//! closed loop at a given concurrency and prints throughput and latency
//! percentiles per scenario, plus each scenario's ratio to the no-op gRPC
//! method served by the same process (the gRPC stack's ceiling here).
//!
//! ```text
//! cargo bench --bench load -- [--addr HOST:PORT] [--concurrency 1,64] [--seconds 5]
//!                             [--stored N] [--scenarios grpc-noop,grpc-create,...]
//!                             [--interference N] [--auth] [--backup] [--backup-rate N]
//! Scenarios: grpc-noop, etcd-put, grpc-create, grpc-create-watched (creates
//! while one client watches the policy), grpc-create-backup (creates while
//! backups of the whole store run back to back; `--backup-rate N` asks them
//! for at most N records a second), grpc-get, grpc-list,
//! grpc-overview, rest-create, rest-list, rest-overview.
//! `--backup` times one `statusd backup` of the (preloaded) store, with the
//! server's RSS, and its `statusd restore` into a new data directory.
//! cargo bench --bench load -- --postgres [--database-url URL] [--rounds 3] [--concurrency 1,64]
//! ```
//! `--postgres` compares sled with PostgreSQL through one replica and through
//! two replicas sharing the database (a throwaway server from
//! `scripts/throwaway-postgres` unless `--database-url`), in interleaved
//! rounds, each row with its ratio to sled's in the same round.
//! `--auth` serves with bearer-token auth (development keys) and sends a token
//! with every request, to measure what auth costs.
//! `--interference N` adds rows for heavy requests next to light ones: it
//! loads N statuses under a second policy and measures gRPC create at c16
//! before and while one client deletes that policy (a cascade of N) and
//! while one client runs full-collection `$count` + `$filter` scans.
//! Without `--addr` it starts the release `statusd` binary on a temp directory
//! (and reports its RSS, disk use and start-up time). `--stored N` first loads
//! N statuses under the benchmark's policy, to measure at scale.

#[path = "../tests/pg/mod.rs"]
mod pg;

use statusd::pb;
use statusd::pb::device_compliance_policies_client::DeviceCompliancePoliciesClient as Policies;
use statusd::pb::diagnostics_client::DiagnosticsClient;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tonic::transport::Channel;

const PARENT: &str = "bench-policy";
/// The status collection the list scenarios read (`PARENT`'s user statuses).
const PARENT_KIND: statusd::model::StatusKind = statusd::model::StatusKind {
    parent: statusd::model::ParentKind::DeviceCompliancePolicy,
    shape: statusd::model::StatusShape::User,
};
const ALL: [&str; 8] = [
    "grpc-noop",
    "etcd-put",
    "grpc-create",
    "grpc-get",
    "grpc-list",
    "rest-create",
    "rest-list",
    "grpc-noop",
];

struct Args {
    addr: Option<String>,
    concurrency: Vec<usize>,
    seconds: f64,
    stored: u64,
    scenarios: Vec<String>,
    /// Extra flags for the spawned server, e.g. "--cache-mb 64".
    server_args: Vec<String>,
    /// Statuses of the heavy requests' policy (0: no interference rows).
    interference: u64,
    /// Serve with bearer-token auth and send a token with every request.
    auth: bool,
    /// Compare sled with PostgreSQL (one and two replicas) instead.
    postgres: bool,
    /// The database for `--postgres` (else a throwaway server is started).
    database_url: Option<String>,
    /// Interleaved rounds (main table: 1, `--postgres`: 3, unless given).
    rounds: Option<usize>,
    /// Time one backup of the preloaded store and its restore.
    backup: bool,
    /// `maxRecordsPerSecond` of the backups `grpc-create-backup` runs.
    backup_rate: Option<u64>,
}

fn parse_args() -> Args {
    let mut a = Args {
        addr: None,
        concurrency: vec![1, 64],
        seconds: 5.0,
        stored: 0,
        scenarios: ALL.map(String::from).to_vec(),
        server_args: Vec::new(),
        interference: 0,
        auth: false,
        postgres: false,
        database_url: None,
        rounds: None,
        backup: false,
        backup_rate: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--addr" => a.addr = Some(value()),
            "--concurrency" => a.concurrency = value().split(',').map(|c| c.parse().expect("concurrency")).collect(),
            "--seconds" => a.seconds = value().parse().expect("seconds"),
            "--stored" => a.stored = value().parse().expect("stored"),
            "--scenarios" => a.scenarios = value().split(',').map(String::from).collect(),
            "--server-args" => a.server_args = value().split_whitespace().map(String::from).collect(),
            "--interference" => a.interference = value().parse().expect("interference"),
            "--auth" => a.auth = true,
            "--postgres" => a.postgres = true,
            "--database-url" => a.database_url = Some(value()),
            "--rounds" => a.rounds = Some(value().parse().expect("rounds")),
            "--backup" => a.backup = true,
            "--backup-rate" => a.backup_rate = Some(value().parse().expect("backup rate")),
            "--bench" => {}
            other => panic!("unknown flag {other}"),
        }
    }
    a
}

/// The server under test when the benchmark starts its own.
struct Spawned {
    child: std::process::Child,
    dir: tempfile::TempDir,
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

fn dir_mib(path: &std::path::Path) -> f64 {
    fn walk(p: &std::path::Path) -> u64 {
        std::fs::read_dir(p)
            .map(|rd| {
                rd.flatten()
                    .map(|e| match e.metadata() {
                        Ok(m) if m.is_dir() => walk(&e.path()),
                        Ok(m) => m.len(),
                        Err(_) => 0,
                    })
                    .sum()
            })
            .unwrap_or(0)
    }
    walk(path) as f64 / (1024.0 * 1024.0)
}

async fn spawn_server(dir: tempfile::TempDir) -> (Spawned, String, Duration) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    spawn_server_at(dir, &format!("127.0.0.1:{port}")).await
}

async fn spawn_server_at(dir: tempfile::TempDir, addr: &str) -> (Spawned, String, Duration) {
    spawn_server_with(dir, addr, SERVER_ARGS.get().map_or(&[][..], Vec::as_slice)).await
}

async fn spawn_server_with(dir: tempfile::TempDir, addr: &str, extra: &[String]) -> (Spawned, String, Duration) {
    let addr = addr.to_owned();
    let started = Instant::now();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_statusd"))
        .args(["--listen", &addr, "--data-dir"])
        .arg(dir.path())
        .args(extra)
        .env("RUST_LOG", "warn")
        .spawn()
        .expect("start statusd");
    let spawned = Spawned { child, dir };
    loop {
        if let Ok(ch) = Channel::from_shared(format!("http://{addr}")).unwrap().connect().await {
            if DiagnosticsClient::new(ch).ping(authed(())).await.is_ok() {
                break;
            }
        }
        assert!(started.elapsed() < Duration::from_secs(120), "statusd did not start");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    (spawned, addr, started.elapsed())
}

async fn channels(addr: &str, n: usize) -> Vec<Channel> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(
            Channel::from_shared(format!("http://{addr}"))
                .unwrap()
                .connect()
                .await
                .expect("connect"),
        );
    }
    out
}

fn user_status(id: String) -> pb::DeviceComplianceUserStatus {
    pb::DeviceComplianceUserStatus {
        id,
        user_display_name: Some("Bench User".into()),
        devices_count: 3,
        status: pb::ComplianceStatus::Compliant as i32,
        last_reported_date_time: Some(prost_types::Timestamp {
            seconds: 1_700_000_000,
            nanos: 0,
        }),
        user_principal_name: Some("bench@contoso.com".into()),
    }
}

static SEQ: AtomicU64 = AtomicU64::new(0);
static SERVER_ARGS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
/// The bearer token every request carries (`--auth`).
static TOKEN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
/// Channels to the etcd the benchmark started, when it could.
static ETCD: std::sync::OnceLock<Vec<Channel>> = std::sync::OnceLock::new();

/// etcd (Debian's `etcd-server`), started on 127.0.0.1 for the `etcd-put`
/// row: the durable key-value store behind gRPC a user would otherwise pick.
/// Default durability (every put fsynced to its WAL before it is answered).
struct Etcd {
    child: std::process::Child,
    _dir: tempfile::TempDir,
    addr: String,
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Etcd {
    /// Starts etcd, or says why not.
    async fn start() -> Result<Etcd, String> {
        let bin = ["/usr/bin/etcd", "/usr/local/bin/etcd"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .ok_or("etcd is not installed (apt-get install etcd-server)")?;
        let (addr, peer) = (free_addr(), free_addr());
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let child = std::process::Command::new(bin)
            .args(["--name", "bench", "--data-dir"])
            .arg(dir.path())
            .args(["--listen-client-urls", &format!("http://{addr}")])
            .args(["--advertise-client-urls", &format!("http://{addr}")])
            .args(["--listen-peer-urls", &format!("http://{peer}")])
            .args(["--initial-advertise-peer-urls", &format!("http://{peer}")])
            .args(["--initial-cluster", &format!("bench=http://{peer}")])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start {bin}: {e}"))?;
        let etcd = Etcd { child, _dir: dir, addr };
        let started = Instant::now();
        loop {
            if let Ok(ch) = Channel::from_shared(format!("http://{}", etcd.addr))
                .unwrap()
                .connect()
                .await
            {
                if etcd_put(&ch, b"bench-ready".to_vec()).await {
                    return Ok(etcd);
                }
            }
            if started.elapsed() > Duration::from_secs(30) {
                return Err("etcd did not answer within 30 s".into());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// etcd's `PutRequest` (etcdserverpb, rpc.proto): the two fields we send.
#[derive(Clone, PartialEq, prost::Message)]
struct EtcdPutRequest {
    #[prost(bytes = "vec", tag = "1")]
    key: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    value: Vec<u8>,
}

/// etcd's `PutResponse`; its fields are not needed.
#[derive(Clone, PartialEq, prost::Message)]
struct EtcdPutResponse {}

/// One `etcdserverpb.KV/Put` of a 300-byte value (about a status record's
/// size) under `key`.
async fn etcd_put(ch: &Channel, key: Vec<u8>) -> bool {
    let mut grpc = tonic::client::Grpc::new(ch.clone());
    if grpc.ready().await.is_err() {
        return false;
    }
    let request = EtcdPutRequest {
        key,
        value: vec![b'x'; 300],
    };
    let path = tonic::codegen::http::uri::PathAndQuery::from_static("/etcdserverpb.KV/Put");
    grpc.unary::<_, EtcdPutResponse, _>(tonic::Request::new(request), path, tonic_prost::ProstCodec::default())
        .await
        .is_ok()
}

/// A gRPC request carrying the bearer token, when there is one.
fn authed<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Some(token) = TOKEN.get() {
        let value = format!("Bearer {token}").parse().expect("token as metadata");
        request.metadata_mut().insert("authorization", value);
    }
    request
}

/// A REST request carrying the bearer token, when there is one.
fn with_token(request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
    match TOKEN.get() {
        Some(token) => request.bearer_auth(token),
        None => request,
    }
}

/// `--auth`: development keys, the server flags that turn auth on with them,
/// and a token with the permission the scenarios need (`statusd dev-keys` and
/// `statusd token`, as the README shows).
fn enable_auth(dir: &std::path::Path) -> (Vec<String>, String) {
    let bin = env!("CARGO_BIN_EXE_statusd");
    let keys = dir.join("keys");
    let out = std::process::Command::new(bin)
        .arg("dev-keys")
        .arg(&keys)
        .output()
        .expect("dev-keys");
    let text = String::from_utf8_lossy(&out.stdout);
    let kid = text
        .lines()
        .find_map(|l| l.strip_prefix("kid: "))
        .expect("dev-keys prints the kid")
        .trim()
        .to_owned();
    let (issuer, audience) = ("https://bench.statusd", "api://statusd-bench");
    let out = std::process::Command::new(bin)
        .args(["token", "--kid", &kid, "--issuer", issuer, "--audience", audience])
        .args([
            "--scope",
            "DeviceManagementConfiguration.ReadWrite.All",
            "--ttl",
            "2h",
            "--key",
        ])
        .arg(keys.join("private.pem"))
        .output()
        .expect("token");
    let token = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(token.split('.').count() == 3, "statusd token printed no JWT");
    let flags = vec![
        "--auth-jwks".to_owned(),
        keys.join("jwks.json").display().to_string(),
        "--auth-issuer".to_owned(),
        issuer.to_owned(),
        "--auth-audience".to_owned(),
        audience.to_owned(),
    ];
    (flags, token)
}

/// A fresh id: `prefix`, this run's start time (so runs against one
/// `--addr` never collide) and a sequence number.
fn next_id(prefix: &str) -> String {
    static RUN: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let run = RUN.get_or_init(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    });
    format!("{prefix}-{run:x}-{:012}", SEQ.fetch_add(1, Ordering::Relaxed))
}

/// "min / median / max" of same-round ratios (at least one).
fn spread(mut v: Vec<f64>) -> String {
    v.sort_by(f64::total_cmp);
    format!("{:.2} / {:.2} / {:.2}", v[0], v[v.len() / 2], v[v.len() - 1])
}

/// One operation of a scenario.
async fn op(scenario: &str, ch: &Channel, http: &reqwest::Client, addr: &str, known: &[String]) -> bool {
    match scenario {
        "grpc-noop" => DiagnosticsClient::new(ch.clone()).ping(authed(())).await.is_ok(),
        "etcd-put" => etcd_put(ch, next_id("e").into_bytes()).await,
        "grpc-create" | "grpc-create-watched" | "grpc-create-backup" => Policies::new(ch.clone())
            .create_user_status(authed(pb::CreateDeviceComplianceUserStatusRequest {
                parent_id: PARENT.into(),
                user_status: Some(user_status(next_id("g"))),
            }))
            .await
            .is_ok(),
        "grpc-overview" => Policies::new(ch.clone())
            .get_user_status_overview(authed(pb::GetStatusOverviewRequest {
                parent_id: PARENT.into(),
            }))
            .await
            .is_ok(),
        "rest-overview" => {
            let url =
                format!("http://{addr}/v1.0/deviceManagement/deviceCompliancePolicies/{PARENT}/userStatusOverview");
            read_ok(with_token(http.get(url)).send().await, 200).await
        }
        "grpc-get" => {
            let id = &known[rand::random::<u64>() as usize % known.len()];
            Policies::new(ch.clone())
                .get_user_status(authed(pb::GetStatusRequest {
                    parent_id: PARENT.into(),
                    id: id.clone(),
                }))
                .await
                .is_ok()
        }
        "grpc-list" => {
            let after = &known[rand::random::<u64>() as usize % known.len()];
            let token = base64_id(after);
            Policies::new(ch.clone())
                .list_user_statuses(authed(pb::ListStatusesRequest {
                    parent_id: PARENT.into(),
                    page_size: 100,
                    page_token: token,
                }))
                .await
                .is_ok()
        }
        "rest-create" => {
            let body = format!(
                r#"{{"id":"{}","userDisplayName":"Bench User","devicesCount":3,"status":"compliant","lastReportedDateTime":"2023-11-14T22:13:20Z","userPrincipalName":"bench@contoso.com"}}"#,
                next_id("r")
            );
            let url = format!("http://{addr}/v1.0/deviceManagement/deviceCompliancePolicies/{PARENT}/userStatuses");
            let resp = with_token(http.post(url))
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await;
            read_ok(resp, 201).await
        }
        "rest-list" => {
            let after = &known[rand::random::<u64>() as usize % known.len()];
            let url = format!(
                "http://{addr}/v1.0/deviceManagement/deviceCompliancePolicies/{PARENT}/userStatuses?$top=100&$skiptoken={}",
                base64_id(after)
            );
            read_ok(with_token(http.get(url)).send().await, 200).await
        }
        other => panic!("unknown scenario {other}"),
    }
}

async fn read_ok(resp: reqwest::Result<reqwest::Response>, want: u16) -> bool {
    match resp {
        Ok(r) => r.status().as_u16() == want && r.bytes().await.is_ok(),
        Err(_) => false,
    }
}

fn base64_id(id: &str) -> String {
    statusd::service::status_list_token(PARENT_KIND, PARENT, id)
}

struct Outcome {
    ops: usize,
    errors: usize,
    secs: f64,
    lat_us: Vec<u32>,
}

async fn run(
    scenario: &str,
    conc: usize,
    secs: f64,
    addr: &str,
    chans: &[Channel],
    known: Arc<Vec<String>>,
) -> Outcome {
    let http = reqwest::Client::builder().pool_max_idle_per_host(conc).build().unwrap();
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let start = Instant::now();
    let tasks: Vec<_> = (0..conc)
        .map(|w| {
            let ch = chans[w % chans.len()].clone();
            let http = http.clone();
            let (scenario, addr, known) = (scenario.to_owned(), addr.to_owned(), known.clone());
            tokio::spawn(async move {
                let mut lat = Vec::with_capacity(1 << 14);
                let mut errors = 0;
                while Instant::now() < deadline {
                    let t = Instant::now();
                    let ok = op(&scenario, &ch, &http, &addr, &known).await;
                    lat.push(t.elapsed().as_micros().min(u32::MAX as u128) as u32);
                    if !ok {
                        errors += 1;
                    }
                }
                (lat, errors)
            })
        })
        .collect();
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (lat, e) = t.await.unwrap();
        all.extend(lat);
        errors += e;
    }
    let secs = start.elapsed().as_secs_f64();
    all.sort_unstable();
    Outcome {
        ops: all.len(),
        errors,
        secs,
        lat_us: all,
    }
}

fn pct(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    f64::from(sorted[i]) / 1000.0
}

async fn preload(chans: &[Channel], n: u64) -> Vec<String> {
    preload_under(chans, PARENT, n).await
}

async fn preload_under(chans: &[Channel], parent: &str, n: u64) -> Vec<String> {
    let per = 64;
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..per)
        .map(|w| {
            let mut client = Policies::new(chans[w % chans.len()].clone());
            let next = next.clone();
            let parent = parent.to_owned();
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        return;
                    }
                    // Already there: an earlier run against the same `--addr`.
                    if let Err(e) = client
                        .create_user_status(authed(pb::CreateDeviceComplianceUserStatusRequest {
                            parent_id: parent.clone(),
                            user_status: Some(user_status(format!("pre-{i:012}"))),
                        }))
                        .await
                    {
                        assert_eq!(e.code(), tonic::Code::AlreadyExists, "preload create: {e:?}");
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    if n > 0 {
        println!(
            "preloaded {n} statuses in {:.1}s ({:.0}/s)",
            started.elapsed().as_secs_f64(),
            n as f64 / started.elapsed().as_secs_f64()
        );
    }
    // Up to 100k known ids, spread evenly over what was loaded.
    let step = (n / 100_000).max(1);
    (0..n.min(100_000)).map(|i| format!("pre-{:012}", i * step)).collect()
}

fn main() {
    let args = parse_args();
    let keys_dir = tempfile::tempdir().unwrap();
    let mut server_args = args.server_args.clone();
    if args.auth {
        let (flags, token) = enable_auth(keys_dir.path());
        server_args.extend(flags);
        let _ = TOKEN.set(token);
        println!("auth on: every request carries a bearer token (RS256)");
    }
    let _ = SERVER_ARGS.set(server_args);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    if args.postgres {
        rt.block_on(compare_postgres(&args));
        return;
    }
    rt.block_on(async move {
        let (spawned, addr) = match &args.addr {
            Some(a) => (None, a.clone()),
            None => {
                let (s, addr, startup) = spawn_server(tempfile::tempdir().unwrap()).await;
                println!(
                    "started release statusd on {addr} in {:.0} ms (empty store)",
                    startup.as_secs_f64() * 1000.0
                );
                (Some(s), addr)
            }
        };
        let chans = channels(&addr, 4).await;
        let mut policies = Policies::new(chans[0].clone());
        let _ = policies
            .create_device_compliance_policy(authed(pb::CreateDeviceCompliancePolicyRequest {
                device_compliance_policy: Some(pb::DeviceCompliancePolicy {
                    odata_type: "#microsoft.graph.windows10CompliancePolicy".into(),
                    id: PARENT.into(),
                    display_name: "bench".into(),
                    ..Default::default()
                }),
            }))
            .await;
        let mut known = preload(&chans, args.stored).await;
        if known.is_empty() {
            known = preload_small(&chans).await;
        }
        // Start-up time on the loaded store: stop gracefully, start again.
        let (spawned, chans) = match spawned {
            Some(mut s) if args.stored > 0 => {
                println!(
                    "server RSS {:.1} MiB, data dir {:.1} MiB (after the preload)",
                    rss_mib(s.child.id()).unwrap_or(0.0),
                    dir_mib(s.dir.path())
                );
                let _ = std::process::Command::new("kill")
                    .arg("-INT")
                    .arg(s.child.id().to_string())
                    .status();
                let _ = s.child.wait();
                let dir = std::mem::replace(&mut s.dir, tempfile::tempdir().unwrap());
                drop(s);
                let (s, new_addr, startup) = spawn_server_at(dir, &addr).await;
                println!(
                    "restart with {} statuses: {:.0} ms to the first answered call",
                    args.stored,
                    startup.as_secs_f64() * 1000.0
                );
                assert_eq!(new_addr, addr);
                (Some(s), channels(&addr, 4).await)
            }
            other => (other, chans),
        };
        if args.backup {
            let pid = spawned.as_ref().map(|s| s.child.id());
            backup_and_restore(&addr, pid).await;
        }
        let known = Arc::new(known);
        let etcd = if args.scenarios.iter().any(|s| s == "etcd-put") {
            match Etcd::start().await {
                Ok(etcd) => {
                    let _ = ETCD.set(channels(&etcd.addr, 4).await);
                    println!(
                        "etcd {} on {} (default durability) for the etcd-put row",
                        etcd_version(),
                        etcd.addr
                    );
                    Some(etcd)
                }
                Err(reason) => {
                    println!("etcd-put skipped: {reason}");
                    None
                }
            }
        } else {
            None
        };
        if let Some(s) = &spawned {
            let pid = s.child.id();
            println!(
                "server RSS {:.1} MiB, data dir {:.1} MiB",
                rss_mib(pid).unwrap_or(0.0),
                dir_mib(s.dir.path())
            );
        }
        println!(
            "{:<12} {:>5} {:>9} {:>10} {:>9} {:>9} {:>9} {:>7} {:>8} {:>7}",
            "scenario", "conc", "ops", "ops/s", "p50 ms", "p99 ms", "p999 ms", "errors", "/noop", "/etcd"
        );
        let rounds = args.rounds.unwrap_or(1);
        let mut rates: std::collections::BTreeMap<(usize, usize, String), f64> = Default::default();
        for round in 1..=rounds {
            if rounds > 1 {
                println!("round {round}");
            }
            for &conc in &args.concurrency {
                let mut noop_rate = None;
                let mut etcd_rate = None;
                for scenario in &args.scenarios {
                    let target = match scenario.as_str() {
                        "etcd-put" => match ETCD.get() {
                            Some(etcd) => etcd.as_slice(),
                            None => continue,
                        },
                        _ => chans.as_slice(),
                    };
                    // `grpc-create-watched`: the same creates while a client
                    // watches the policy and reads every event.
                    let watcher = match scenario.as_str() {
                        "grpc-create-watched" => Some(watch_all(channels(&addr, 1).await.remove(0)).await),
                        _ => None,
                    };
                    // `grpc-create-backup`: the same creates while backups
                    // of the whole store are taken one after the other.
                    let backups = match scenario.as_str() {
                        "grpc-create-backup" => Some(backup_loop(&addr, args.backup_rate)),
                        _ => None,
                    };
                    let r = run(scenario, conc, args.seconds, &addr, target, known.clone()).await;
                    if let Some((task, done, bytes)) = backups {
                        task.abort();
                        println!(
                            "  ({} backups finished while it ran, {:.1} MB read in all)",
                            done.load(Ordering::Relaxed),
                            bytes.load(Ordering::Relaxed) as f64 / 1e6
                        );
                    }
                    if let Some((task, seen)) = watcher {
                        // Let it drain what is in flight.
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        task.abort();
                        println!(
                            "  (the watcher received {} events for {} creates)",
                            seen.load(Ordering::Relaxed),
                            r.ops
                        );
                    }
                    let rate = r.ops as f64 / r.secs;
                    rates.entry((round, conc, scenario.clone())).or_insert(rate);
                    if scenario == "grpc-noop" {
                        noop_rate = Some(rate);
                    }
                    let ratio = noop_rate.map_or(String::from("-"), |n| format!("{:.2}", rate / n));
                    let vs_etcd = match (scenario.as_str(), etcd_rate) {
                        ("etcd-put", _) => {
                            etcd_rate = Some(rate);
                            String::from("1.00")
                        }
                        (s, Some(e)) if s.ends_with("-create") => format!("{:.2}", rate / e),
                        _ => String::from("-"),
                    };
                    println!(
                        "{:<12} {:>5} {:>9} {:>10.0} {:>9.2} {:>9.2} {:>9.2} {:>7} {:>8} {:>7}",
                        scenario,
                        conc,
                        r.ops,
                        rate,
                        pct(&r.lat_us, 0.5),
                        pct(&r.lat_us, 0.99),
                        pct(&r.lat_us, 0.999),
                        r.errors,
                        ratio,
                        vs_etcd
                    );
                }
            }
        }
        if rounds > 1 {
            same_round_ratios(&rates, rounds, &args.concurrency);
        }
        drop(etcd);
        if args.interference > 0 {
            interference(&addr, &chans, args.interference, args.seconds, known.clone()).await;
        }
        if let Some(s) = spawned {
            let pid = s.child.id();
            println!(
                "server RSS {:.1} MiB, data dir {:.1} MiB (after the run)",
                rss_mib(pid).unwrap_or(0.0),
                dir_mib(s.dir.path())
            );
            drop(s);
        }
    });
}

/// A watcher on the benchmark's policy that reads every event it is sent;
/// returns its task and the count of events it received.
/// Streams `GET /admin/backup` once to the end: (bytes, lines).
async fn one_backup(http: &reqwest::Client, addr: &str, rate: Option<u64>, bytes: &AtomicU64) -> (u64, u64) {
    let query = rate.map_or(String::new(), |r| format!("?maxRecordsPerSecond={r}"));
    let mut resp = with_token(http.get(format!("http://{addr}/admin/backup{query}")))
        .send()
        .await
        .expect("backup");
    assert!(resp.status().is_success(), "backup: {}", resp.status());
    let (mut n, mut lines) = (0u64, 0u64);
    while let Some(chunk) = resp.chunk().await.expect("backup stream") {
        n += chunk.len() as u64;
        lines += chunk.iter().filter(|&&b| b == b'\n').count() as u64;
        bytes.fetch_add(chunk.len() as u64, Ordering::Relaxed);
    }
    (n, lines)
}

/// Backups one after the other until aborted: (task, finished, bytes).
fn backup_loop(addr: &str, rate: Option<u64>) -> (tokio::task::JoinHandle<()>, Arc<AtomicU64>, Arc<AtomicU64>) {
    let (done, bytes) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let task = {
        let (addr, done, bytes) = (addr.to_owned(), done.clone(), bytes.clone());
        tokio::spawn(async move {
            let http = reqwest::Client::new();
            loop {
                one_backup(&http, &addr, rate, &bytes).await;
                done.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    (task, done, bytes)
}

/// `--backup`: one backup of the whole store with `statusd backup` (time,
/// size, the server's RSS before and at its peak while it ran), then its
/// restore into a new data directory with `statusd restore`.
async fn backup_and_restore(addr: &str, pid: Option<u32>) {
    let bin = env!("CARGO_BIN_EXE_statusd");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bench.backup");
    let before = pid.and_then(rss_mib).unwrap_or(0.0);
    let peak = Arc::new(std::sync::Mutex::new(before));
    let sampler = pid.map(|pid| {
        let peak = peak.clone();
        tokio::spawn(async move {
            loop {
                if let Some(r) = rss_mib(pid) {
                    let mut p = peak.lock().unwrap();
                    *p = p.max(r);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    });
    let started = Instant::now();
    let mut cmd = std::process::Command::new(bin);
    cmd.args(["backup", "--server", &format!("http://{addr}"), "--out"])
        .arg(&file);
    if let Some(token) = TOKEN.get() {
        cmd.args(["--token", token]);
    }
    let out = tokio::task::spawn_blocking(move || cmd.output().expect("statusd backup"))
        .await
        .unwrap();
    let secs = started.elapsed().as_secs_f64();
    if let Some(s) = sampler {
        s.abort();
    }
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let size = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
    let records = std::fs::read(&file)
        .map(|b| b.iter().filter(|&&c| c == b'\n').count().saturating_sub(2))
        .unwrap_or(0);
    println!(
        "backup: {records} records, {:.1} MB in {secs:.2}s ({:.0} records/s, {:.1} MB/s); server RSS {before:.1} MiB before, {:.1} MiB at most while it ran",
        size as f64 / 1e6,
        records as f64 / secs,
        size as f64 / 1e6 / secs,
        *peak.lock().unwrap()
    );
    let target = dir.path().join("restored");
    let started = Instant::now();
    let out = std::process::Command::new(bin)
        .args(["restore", "--in"])
        .arg(&file)
        .arg("--data-dir")
        .arg(&target)
        .output()
        .expect("statusd restore");
    let secs = started.elapsed().as_secs_f64();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    println!(
        "restore: {records} records into a new data directory in {secs:.2}s ({:.0} records/s, checks and read-back included); data dir {:.1} MiB",
        records as f64 / secs,
        dir_mib(&target)
    );
}

async fn watch_all(ch: Channel) -> (tokio::task::JoinHandle<()>, Arc<AtomicU64>) {
    let seen = Arc::new(AtomicU64::new(0));
    let mut stream = Policies::new(ch)
        .watch_user_statuses(authed(pb::WatchStatusesRequest {
            parent_id: PARENT.into(),
            start_revision: 0,
        }))
        .await
        .expect("watch")
        .into_inner();
    let count = seen.clone();
    let task = tokio::spawn(async move {
        while let Ok(Some(_)) = stream.message().await {
            count.fetch_add(1, Ordering::Relaxed);
        }
    });
    (task, seen)
}

/// Some statuses for get/list when nothing was preloaded.
async fn preload_small(chans: &[Channel]) -> Vec<String> {
    preload(chans, 2000).await
}

/// Light requests (gRPC create, c16) before and while heavy ones run: one
/// client deleting a policy with `n` statuses, then one client running
/// full-collection scans (`$count` with a `$filter` that matches nothing).
async fn interference(addr: &str, chans: &[Channel], n: u64, secs: f64, known: Arc<Vec<String>>) {
    const BIG: &str = "bench-big";
    const CONC: usize = 16;
    let mut policies = Policies::new(chans[0].clone());
    policies
        .create_device_compliance_policy(authed(pb::CreateDeviceCompliancePolicyRequest {
            device_compliance_policy: Some(pb::DeviceCompliancePolicy {
                odata_type: "#microsoft.graph.windows10CompliancePolicy".into(),
                id: BIG.into(),
                display_name: "bench big".into(),
                ..Default::default()
            }),
        }))
        .await
        .expect("create the big policy");
    preload_under(chans, BIG, n).await;
    let row = |label: &str, r: &Outcome| {
        println!(
            "{:<34} {:>9.0} {:>9.2} {:>9.2} {:>9.2} {:>7}",
            label,
            r.ops as f64 / r.secs,
            pct(&r.lat_us, 0.5),
            pct(&r.lat_us, 0.99),
            pct(&r.lat_us, 0.999),
            r.errors
        );
    };
    println!(
        "{:<34} {:>9} {:>9} {:>9} {:>9} {:>7}",
        "grpc-create c16", "ops/s", "p50 ms", "p99 ms", "p999 ms", "errors"
    );
    let before = run("grpc-create", CONC, secs, addr, chans, known.clone()).await;
    row("before", &before);

    let delete = {
        let mut client = Policies::new(chans[1].clone());
        tokio::spawn(async move {
            let t = Instant::now();
            let r = client
                .delete_device_compliance_policy(authed(pb::DeleteParentRequest { id: BIG.into() }))
                .await;
            (t.elapsed(), r.is_ok())
        })
    };
    let during = run("grpc-create", CONC, secs, addr, chans, known.clone()).await;
    let (took, ok) = delete.await.unwrap();
    row(&format!("during a delete of {n} statuses"), &during);
    println!(
        "  the delete answered in {:.1} ms (ok: {ok}); its cascade runs in the background",
        took.as_secs_f64() * 1000.0
    );

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let scans = {
        let (stop, addr) = (stop.clone(), addr.to_owned());
        tokio::spawn(async move {
            let http = reqwest::Client::new();
            let url = format!(
                "http://{addr}/v1.0/deviceManagement/deviceCompliancePolicies/{PARENT}/userStatuses\
                 ?$count=true&$filter=devicesCount%20eq%20-1&$top=1"
            );
            let url_count =
                format!("http://{addr}/v1.0/deviceManagement/deviceCompliancePolicies/{PARENT}/userStatuses/$count");
            let mut lat = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                let _ = read_ok(with_token(http.get(&url)).send().await, 200).await;
                lat.push(t.elapsed());
            }
            let stored = match with_token(http.get(&url_count)).send().await {
                Ok(r) => r
                    .text()
                    .await
                    .ok()
                    .and_then(|t| t.trim().parse::<u64>().ok())
                    .unwrap_or(0),
                Err(_) => 0,
            };
            (lat, stored)
        })
    };
    let during = run("grpc-create", CONC, secs, addr, chans, known).await;
    stop.store(true, Ordering::Relaxed);
    let (lat, stored) = scans.await.unwrap();
    row("during full scans", &during);
    let mean = lat.iter().sum::<Duration>().as_secs_f64() / lat.len().max(1) as f64;
    println!(
        "  {} scans (two passes each: $count, then the page) of the {} statuses now stored, {:.1} ms each on average",
        lat.len(),
        stored,
        mean * 1000.0
    );
}

/// The ratios a comparison needs, each taken within one round, as min /
/// median / max over the rounds.
fn same_round_ratios(
    rates: &std::collections::BTreeMap<(usize, usize, String), f64>,
    rounds: usize,
    concurrency: &[usize],
) {
    println!("same-round ratios (min / median / max over {rounds} rounds):");
    for &conc in concurrency {
        for (a, b) in [
            ("grpc-create", "grpc-noop"),
            ("grpc-create", "etcd-put"),
            ("rest-create", "grpc-noop"),
            ("rest-create", "etcd-put"),
            ("rest-create", "grpc-create"),
            ("rest-list", "grpc-list"),
            ("grpc-get", "grpc-noop"),
        ] {
            let v: Vec<f64> = (1..=rounds)
                .filter_map(|r| Some(rates.get(&(r, conc, a.to_owned()))? / rates.get(&(r, conc, b.to_owned()))?))
                .collect();
            if v.is_empty() {
                continue;
            }
            println!("  c{conc:<3} {a:>12} / {b:<12} {}", spread(v));
        }
    }
}

/// etcd's version line, for the record.
fn etcd_version() -> String {
    std::process::Command::new("etcd")
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|v| v.lines().next().map(str::to_owned))
        .unwrap_or_else(|| "(version unknown)".into())
}

/// A free loopback address.
fn free_addr() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    format!("127.0.0.1:{port}")
}

/// The database of `--postgres`: `--database-url`, else a throwaway server
/// (stopped when the returned cluster is dropped).
fn bench_database(args: &Args) -> (String, Option<pg::Cluster>) {
    match &args.database_url {
        Some(url) => (url.clone(), None),
        None => {
            let cluster = pg::Cluster::start().unwrap_or_else(|reason| panic!("--postgres: {reason}"));
            (cluster.url.clone(), Some(cluster))
        }
    }
}

/// Creates the benchmark's policy and some statuses for the list rows.
async fn prepare(chans: &[Channel]) -> Arc<Vec<String>> {
    let _ = Policies::new(chans[0].clone())
        .create_device_compliance_policy(authed(pb::CreateDeviceCompliancePolicyRequest {
            device_compliance_policy: Some(pb::DeviceCompliancePolicy {
                odata_type: "#microsoft.graph.windows10CompliancePolicy".into(),
                id: PARENT.into(),
                display_name: "bench".into(),
                ..Default::default()
            }),
        }))
        .await;
    Arc::new(preload_small(chans).await)
}

/// A row's server: (name, address, channels, ids for gets and lists).
type Backend<'a> = (&'a str, &'a str, &'a [Channel], &'a Arc<Vec<String>>);

/// `--postgres`: durable create and list pages on sled, on PostgreSQL
/// through one replica, and through two replicas sharing the database,
/// in interleaved rounds, each row with its ratio to the no-op and to sled
/// measured in the same round.
async fn compare_postgres(args: &Args) {
    let (base_url, cluster) = bench_database(args);
    let url = pg::fresh_schema(&base_url, "bench").await;
    let extra: Vec<String> = args.server_args.clone();
    let mut pg_args = extra.clone();
    pg_args.extend(["--database-url".to_owned(), url.clone()]);
    let (sled, sled_addr, _) = spawn_server_with(tempfile::tempdir().unwrap(), &free_addr(), &extra).await;
    let (pg_a, a_addr, _) = spawn_server_with(tempfile::tempdir().unwrap(), &free_addr(), &pg_args).await;
    let (pg_b, b_addr, _) = spawn_server_with(tempfile::tempdir().unwrap(), &free_addr(), &pg_args).await;
    let sled_chans = channels(&sled_addr, 4).await;
    let a_chans = channels(&a_addr, 4).await;
    let mut both_chans = channels(&a_addr, 2).await;
    both_chans.extend(channels(&b_addr, 2).await);
    let sled_known = prepare(&sled_chans).await;
    let pg_known = prepare(&a_chans).await;
    println!(
        "sled vs PostgreSQL ({}), {} rounds of {} s per row",
        statusd::store::postgres::redacted(&base_url),
        args.rounds.unwrap_or(3),
        args.seconds
    );
    println!(
        "{:<5} {:<16} {:<12} {:>5} {:>10} {:>9} {:>9} {:>7} {:>7} {:>7}",
        "round", "backend", "scenario", "conc", "ops/s", "p50 ms", "p99 ms", "errors", "/noop", "/sled"
    );
    let backends: [Backend<'_>; 3] = [
        ("sled", &sled_addr, &sled_chans, &sled_known),
        ("postgres", &a_addr, &a_chans, &pg_known),
        ("postgres x2", &a_addr, &both_chans, &pg_known),
    ];
    let mut ratios: std::collections::BTreeMap<String, Vec<f64>> = Default::default();
    for round in 1..=args.rounds.unwrap_or(3) {
        for &conc in &args.concurrency {
            let noop = run(
                "grpc-noop",
                conc,
                args.seconds,
                &sled_addr,
                &sled_chans,
                sled_known.clone(),
            )
            .await;
            let noop_rate = noop.ops as f64 / noop.secs;
            for scenario in ["grpc-create", "grpc-list", "rest-create"] {
                let mut sled_rate = None;
                for (name, addr, chans, known) in backends {
                    if name == "postgres x2" && scenario == "rest-create" {
                        continue;
                    }
                    let r = run(scenario, conc, args.seconds, addr, chans, (*known).clone()).await;
                    let rate = r.ops as f64 / r.secs;
                    let vs_sled = sled_rate.map_or(String::from("-"), |s: f64| format!("{:.2}", rate / s));
                    if name == "sled" {
                        sled_rate = Some(rate);
                    } else if let Some(s) = sled_rate {
                        ratios
                            .entry(format!("{name} {scenario} c{conc} / sled"))
                            .or_default()
                            .push(rate / s);
                    }
                    println!(
                        "{:<5} {:<16} {:<12} {:>5} {:>10.0} {:>9.2} {:>9.2} {:>7} {:>7.2} {:>7}",
                        round,
                        name,
                        scenario,
                        conc,
                        rate,
                        pct(&r.lat_us, 0.5),
                        pct(&r.lat_us, 0.99),
                        r.errors,
                        rate / noop_rate,
                        vs_sled
                    );
                }
            }
        }
    }
    println!(
        "same-round ratios (min / median / max over {} rounds):",
        args.rounds.unwrap_or(3)
    );
    for (what, v) in ratios {
        println!("  {what:<40} {}", spread(v));
    }
    drop((sled, pg_a, pg_b, cluster));
}
