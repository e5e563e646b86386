//! TLS on the one listener, against the real server with real certificates.
//!
//! Every certificate is made here with rcgen (a test CA, a server certificate
//! for 127.0.0.1 and localhost, client certificates from a client CA and from
//! an unrelated CA) and written to a temp dir: nothing is checked in, nothing
//! expires between runs.

mod common;
#[path = "common/tools.rs"]
mod tools;

use common::{start_with, PARENTS};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use statusd::Server;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

const POLICIES: &str = "/v1.0/deviceManagement/deviceCompliancePolicies";

/// A certificate authority for tests.
struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        Ca { issuer }
    }

    fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A leaf certificate (with a fresh key) for `names`.
    fn leaf(&self, cn: &str, names: &[&str], usage: ExtendedKeyUsagePurpose) -> Leaf {
        let mut params = CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.extended_key_usages = vec![usage];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().to_vec(),
        }
    }

    fn server_leaf(&self) -> Leaf {
        self.leaf(
            "statusd",
            &["localhost", "127.0.0.1"],
            ExtendedKeyUsagePurpose::ServerAuth,
        )
    }

    fn client_leaf(&self, cn: &str) -> Leaf {
        self.leaf(cn, &[], ExtendedKeyUsagePurpose::ClientAuth)
    }
}

/// A leaf certificate and its key.
struct Leaf {
    cert_pem: String,
    key_pem: String,
    der: Vec<u8>,
}

impl Leaf {
    /// Certificate and key in one PEM (what reqwest's `Identity` reads).
    fn identity_pem(&self) -> String {
        format!("{}{}", self.cert_pem, self.key_pem)
    }
}

/// The files a TLS server is started with.
struct Pki {
    dir: tempfile::TempDir,
    ca: Ca,
    server: Leaf,
    client_ca: Ca,
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::new("statusd test CA");
        let server = ca.server_leaf();
        let client_ca = Ca::new("statusd test client CA");
        let pki = Pki {
            dir,
            ca,
            server,
            client_ca,
        };
        pki.write("ca.pem", &pki.ca.pem());
        pki.write("cert.pem", &pki.server.cert_pem);
        pki.write("key.pem", &pki.server.key_pem);
        pki.write("client-ca.pem", &pki.client_ca.pem());
        pki
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes `name` atomically (a reload never sees half a file).
    fn write(&self, name: &str, text: &str) {
        let tmp = self.path(&format!("{name}.tmp"));
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(tmp, self.path(name)).unwrap();
    }

    /// Starts an in-process server serving TLS (with client certificates
    /// required when `mtls`).
    async fn start(&self, mtls: bool, config: impl FnOnce(&mut statusd::Config)) -> (Server, tempfile::TempDir) {
        start_with(|c| {
            c.tls_cert = Some(self.path("cert.pem"));
            c.tls_key = Some(self.path("key.pem"));
            if mtls {
                c.tls_client_ca = Some(self.path("client-ca.pem"));
            }
            config(c);
        })
        .await
    }

    /// An HTTPS client trusting the test CA, over HTTP/1.1 or (via ALPN) h2.
    fn https(&self, http1: bool, identity: Option<&Leaf>) -> reqwest::Client {
        let mut b = reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(self.ca.pem().as_bytes()).unwrap())
            .timeout(Duration::from_secs(10));
        if http1 {
            b = b.http1_only();
        }
        if let Some(leaf) = identity {
            b = b.identity(reqwest::Identity::from_pem(leaf.identity_pem().as_bytes()).unwrap());
        }
        b.build().unwrap()
    }

    /// A gRPC channel over TLS trusting the test CA.
    async fn grpc(&self, addr: SocketAddr, identity: Option<&Leaf>) -> Result<Channel, tonic::transport::Error> {
        let mut tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(self.ca.pem()))
            .domain_name("localhost");
        if let Some(leaf) = identity {
            tls = tls.identity(Identity::from_pem(&leaf.cert_pem, &leaf.key_pem));
        }
        Channel::from_shared(format!("https://127.0.0.1:{}", addr.port()))
            .unwrap()
            .tls_config(tls)?
            .connect()
            .await
    }

    /// A raw TLS connection (ALPN h2) for inspecting the server's certificate.
    async fn raw_tls(&self, addr: SocketAddr) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca.issuer.der().clone()).unwrap();
        let mut config =
            rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth();
        config.alpn_protocols = vec![b"h2".to_vec()];
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let tcp = TcpStream::connect(addr).await?;
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        connector.connect(name, tcp).await
    }
}

/// The leaf certificate the server presented on `tls`.
fn peer_leaf(tls: &tokio_rustls::client::TlsStream<TcpStream>) -> Vec<u8> {
    tls.get_ref().1.peer_certificates().expect("a server certificate")[0].to_vec()
}

fn https_url(addr: SocketAddr, path: &str) -> String {
    format!("https://127.0.0.1:{}{path}", addr.port())
}

#[tokio::test]
async fn rest_is_served_over_https_with_http1_and_h2() {
    let pki = Pki::new();
    let (s, _dir) = pki.start(false, |_| {}).await;
    let body = r##"{"@odata.type": "#microsoft.graph.windows10CompliancePolicy", "id": "p1", "displayName": "x"}"##;
    let created = pki
        .https(true, None)
        .post(https_url(s.local_addr(), POLICIES))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    assert_eq!(created.version(), reqwest::Version::HTTP_11);
    for (http1, version) in [(true, reqwest::Version::HTTP_11), (false, reqwest::Version::HTTP_2)] {
        let r = pki
            .https(http1, None)
            .get(https_url(s.local_addr(), &format!("{POLICIES}/p1")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.version(), version);
        let json: serde_json::Value = r.json().await.unwrap();
        assert_eq!(json["displayName"], "x");
        let context = json["@odata.context"].as_str().unwrap();
        assert!(
            context.starts_with("https://127.0.0.1:"),
            "links name the TLS scheme: {context}"
        );
    }
}

#[tokio::test]
async fn grpc_is_served_over_tls() {
    let pki = Pki::new();
    let (s, _dir) = pki.start(false, |_| {}).await;
    let ch = pki.grpc(s.local_addr(), None).await.unwrap();
    let api = PARENTS[0];
    api.create(&ch, api.new_parent("p", "over TLS")).await.unwrap();
    assert_eq!(api.get(&ch, "p").await.unwrap().display_name, "over TLS");
    // Both protocols on the one port see the same data.
    let r = pki
        .https(false, None)
        .get(https_url(s.local_addr(), &format!("{POLICIES}/p")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn plaintext_clients_are_not_served_on_the_tls_port() {
    let pki = Pki::new();
    let (s, _dir) = pki.start(false, |_| {}).await;
    let plain = format!("http://{}{POLICIES}", s.local_addr());
    let rest = tokio::time::timeout(Duration::from_secs(10), common::try_http("GET", &plain, None))
        .await
        .expect("a plaintext HTTP client is answered or closed promptly");
    assert!(rest.is_err(), "plaintext HTTP was served: {}", rest.unwrap().status);
    let grpc = tokio::time::timeout(Duration::from_secs(10), async {
        match Channel::from_shared(format!("http://{}", s.local_addr()))
            .unwrap()
            .connect()
            .await
        {
            Ok(ch) => PARENTS[0].get(&ch, "none").await.map(|_| ()),
            Err(e) => Err(tonic::Status::unavailable(e.to_string())),
        }
    })
    .await
    .expect("a plaintext gRPC client fails promptly");
    let err = grpc.expect_err("plaintext gRPC was served");
    assert_ne!(
        err.code(),
        tonic::Code::NotFound,
        "plaintext gRPC reached the service: {err:?}"
    );
}

#[tokio::test]
async fn client_certificates_from_the_client_ca_are_required() {
    let pki = Pki::new();
    let (s, _dir) = pki.start(true, |_| {}).await;
    let url = https_url(s.local_addr(), POLICIES);
    let trusted = pki.client_ca.client_leaf("reporting-service");
    let stranger = Ca::new("some other CA").client_leaf("reporting-service");

    let r = pki.https(false, Some(&trusted)).get(&url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = pki.https(true, Some(&trusted)).get(&url).send().await.unwrap();
    assert_eq!(r.status(), 200);

    assert!(
        pki.https(false, None).get(&url).send().await.is_err(),
        "served without a certificate"
    );
    assert!(
        pki.https(true, None).get(&url).send().await.is_err(),
        "served without a certificate"
    );
    assert!(
        pki.https(false, Some(&stranger)).get(&url).send().await.is_err(),
        "served a certificate from another CA"
    );
    // The server's own CA is not the client CA either.
    let server_ca_client = pki.ca.client_leaf("not-a-client");
    assert!(pki.https(true, Some(&server_ca_client)).get(&url).send().await.is_err());

    // gRPC: the same rule.
    let ch = pki.grpc(s.local_addr(), Some(&trusted)).await.unwrap();
    assert_eq!(
        PARENTS[0].get(&ch, "none").await.unwrap_err().code(),
        tonic::Code::NotFound
    );
    let refused = match pki.grpc(s.local_addr(), None).await {
        Ok(ch) => PARENTS[0].get(&ch, "none").await.unwrap_err(),
        Err(e) => tonic::Status::unavailable(e.to_string()),
    };
    assert_ne!(refused.code(), tonic::Code::NotFound, "{refused:?}");
}

/// How a client that never sends a request holds its socket.
#[derive(Debug, Clone, Copy)]
enum Silence {
    /// Connects and sends nothing.
    NoBytes,
    /// Stops inside its ClientHello.
    MidHandshake,
    /// Completes the handshake, then sends no request.
    AfterHandshake,
}

#[tokio::test]
async fn silent_and_stalled_handshakes_do_not_hold_the_connection_slots() {
    let pki = Pki::new();
    for silence in [Silence::NoBytes, Silence::MidHandshake, Silence::AfterHandshake] {
        let (s, _dir) = pki
            .start(false, |c| {
                c.max_connections = 3;
                c.header_timeout_secs = 1;
            })
            .await;
        // Three such clients take every slot...
        let mut held = Vec::new();
        let mut handshaken = Vec::new();
        for _ in 0..3 {
            match silence {
                Silence::NoBytes => held.push(TcpStream::connect(s.local_addr()).await.unwrap()),
                Silence::MidHandshake => {
                    let mut tcp = TcpStream::connect(s.local_addr()).await.unwrap();
                    tcp.write_all(&[0x16, 0x03, 0x01, 0x00]).await.unwrap();
                    held.push(tcp);
                }
                Silence::AfterHandshake => handshaken.push(pki.raw_tls(s.local_addr()).await.unwrap()),
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        // ...only until the first-request bound passes.
        let started = Instant::now();
        let r = tokio::time::timeout(
            Duration::from_secs(10),
            pki.https(true, None).get(https_url(s.local_addr(), POLICIES)).send(),
        )
        .await
        .unwrap_or_else(|_| panic!("{silence:?}: not served while the silent sockets stay open"))
        .unwrap();
        assert_eq!(r.status(), 200);
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{silence:?}: {:?}",
            started.elapsed()
        );
        drop((held, handshaken));
    }
}

/// Runs the real binary with `flags` and expects it to refuse to start;
/// returns everything it printed.
fn refused_start(flags: &[&std::ffi::OsStr]) -> String {
    let data = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_statusd"))
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data.path())
        .args(flags)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("statusd started with {flags:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success(), "statusd exited 0 with {flags:?}");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn bad_or_missing_tls_files_fail_start_up_naming_the_file() {
    let pki = Pki::new();
    let other = Ca::new("other").server_leaf();
    pki.write("other-key.pem", &other.key_pem);
    pki.write("garbage.pem", "this is not PEM at all\n");
    pki.write("truncated.pem", "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49\n");
    let dir_as_file = pki.path("a-directory");
    std::fs::create_dir(&dir_as_file).unwrap();
    let missing = pki.path("missing-cert.pem");
    let cert = pki.path("cert.pem");
    let key = pki.path("key.pem");
    let flag = |s: &str| std::ffi::OsString::from(s);
    let cases: Vec<(Vec<std::ffi::OsString>, Vec<String>)> = vec![
        (
            vec![
                flag("--tls-cert"),
                missing.clone().into(),
                flag("--tls-key"),
                key.clone().into(),
            ],
            vec![missing.display().to_string(), "--tls-cert".into()],
        ),
        (
            vec![
                flag("--tls-cert"),
                cert.clone().into(),
                flag("--tls-key"),
                pki.path("garbage.pem").into(),
            ],
            vec![pki.path("garbage.pem").display().to_string(), "--tls-key".into()],
        ),
        (
            vec![
                flag("--tls-cert"),
                cert.clone().into(),
                flag("--tls-key"),
                pki.path("truncated.pem").into(),
            ],
            vec![pki.path("truncated.pem").display().to_string(), "--tls-key".into()],
        ),
        (
            vec![
                flag("--tls-cert"),
                cert.clone().into(),
                flag("--tls-key"),
                dir_as_file.clone().into(),
            ],
            vec![dir_as_file.display().to_string(), "--tls-key".into()],
        ),
        (
            vec![
                flag("--tls-cert"),
                pki.path("garbage.pem").into(),
                flag("--tls-key"),
                key.clone().into(),
            ],
            vec![pki.path("garbage.pem").display().to_string(), "--tls-cert".into()],
        ),
        (
            vec![
                flag("--tls-cert"),
                cert.clone().into(),
                flag("--tls-key"),
                pki.path("other-key.pem").into(),
            ],
            vec![pki.path("other-key.pem").display().to_string(), "--tls-key".into()],
        ),
        (
            vec![flag("--tls-cert"), cert.clone().into()],
            vec![cert.display().to_string(), "--tls-key".into()],
        ),
        (
            vec![flag("--tls-key"), key.clone().into()],
            vec![key.display().to_string(), "--tls-cert".into()],
        ),
        (
            vec![flag("--tls-client-ca"), pki.path("client-ca.pem").into()],
            vec!["--tls-client-ca".into(), "--tls-cert".into()],
        ),
        (
            vec![
                flag("--tls-cert"),
                cert.clone().into(),
                flag("--tls-key"),
                key.clone().into(),
                flag("--tls-client-ca"),
                pki.path("garbage.pem").into(),
            ],
            vec![pki.path("garbage.pem").display().to_string(), "--tls-client-ca".into()],
        ),
    ];
    for (flags, expected) in cases {
        let args: Vec<&std::ffi::OsStr> = flags.iter().map(|f| f.as_os_str()).collect();
        let printed = refused_start(&args);
        for e in expected {
            assert!(printed.contains(&e), "{flags:?}: expected {e:?} in:\n{printed}");
        }
    }
}

#[test]
fn tls_files_come_from_the_environment_too() {
    let data = tempfile::tempdir().unwrap();
    let missing = data.path().join("nope.pem");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_statusd"))
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data.path().join("db"))
        .env("STATUSD_TLS_CERT", &missing)
        .env("STATUSD_TLS_KEY", &missing)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(printed.contains(&missing.display().to_string()), "{printed}");
}

/// An h2 connection over `tls`, and one GET on it.
async fn h2_over(
    tls: tokio_rustls::client::TlsStream<TcpStream>,
) -> hyper::client::conn::http2::SendRequest<http_body_util::Empty<hyper::body::Bytes>> {
    let (send, conn) =
        hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), hyper_util::rt::TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    send
}

async fn get_status(
    send: &mut hyper::client::conn::http2::SendRequest<http_body_util::Empty<hyper::body::Bytes>>,
    addr: SocketAddr,
) -> u16 {
    let req = hyper::Request::get(https_url(addr, POLICIES))
        .body(http_body_util::Empty::new())
        .unwrap();
    send.send_request(req).await.unwrap().status().as_u16()
}

#[tokio::test]
async fn sighup_reloads_the_certificate_and_keeps_open_connections() {
    let pki = Pki::new();
    let data = tempfile::tempdir().unwrap();
    let cert = pki.path("cert.pem");
    let key = pki.path("key.pem");
    let mut server = common::ChildServer::spawn_with(
        data.path(),
        &["--tls-cert", cert.to_str().unwrap(), "--tls-key", key.to_str().unwrap()],
    );
    let addr: SocketAddr = server.base.trim_start_matches("http://").parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let first = loop {
        match pki.raw_tls(addr).await {
            Ok(tls) => break tls,
            Err(e) if Instant::now() > deadline => panic!("statusd did not come up: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    };
    assert_eq!(peer_leaf(&first), pki.server.der, "cert A at start");
    let mut old = h2_over(first).await;
    assert_eq!(get_status(&mut old, addr).await, 200);

    // Cert B: a new key and serial from the same CA.
    let b = pki.ca.server_leaf();
    pki.write("cert.pem", &b.cert_pem);
    pki.write("key.pem", &b.key_pem);
    let pid = i32::try_from(server.child.id()).unwrap();
    assert_eq!(unsafe { libc::kill(pid, libc::SIGHUP) }, 0);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let tls = pki.raw_tls(addr).await.unwrap();
        if peer_leaf(&tls) == b.der {
            let mut new = h2_over(tls).await;
            assert_eq!(get_status(&mut new, addr).await, 200);
            break;
        }
        assert_eq!(peer_leaf(&tls), pki.server.der);
        assert!(Instant::now() < deadline, "cert B not served 10 s after SIGHUP");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The connection made before the reload still works.
    assert_eq!(get_status(&mut old, addr).await, 200);

    // A bad file on the next SIGHUP is logged and changes nothing.
    pki.write("key.pem", "garbage\n");
    assert_eq!(unsafe { libc::kill(pid, libc::SIGHUP) }, 0);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        server.child.try_wait().unwrap().is_none(),
        "a bad reload stopped statusd"
    );
    let tls = pki.raw_tls(addr).await.unwrap();
    assert_eq!(
        peer_leaf(&tls),
        b.der,
        "a failed reload keeps the last good certificate"
    );
    assert_eq!(get_status(&mut h2_over(tls).await, addr).await, 200);
    assert_eq!(get_status(&mut old, addr).await, 200);
    server.kill();
}

#[tokio::test]
async fn reload_tls_swaps_the_certificate_for_new_connections_in_process() {
    let pki = Pki::new();
    let (s, _dir) = pki.start(false, |_| {}).await;
    let before = pki.raw_tls(s.local_addr()).await.unwrap();
    assert_eq!(peer_leaf(&before), pki.server.der);
    let b = pki.ca.server_leaf();
    pki.write("cert.pem", &b.cert_pem);
    // Key not yet replaced: the pair does not match, so nothing changes.
    let err = s.reload_tls().unwrap_err().to_string();
    assert!(err.contains(&pki.path("key.pem").display().to_string()), "{err}");
    assert_eq!(peer_leaf(&pki.raw_tls(s.local_addr()).await.unwrap()), pki.server.der);
    pki.write("key.pem", &b.key_pem);
    s.reload_tls().unwrap();
    assert_eq!(peer_leaf(&pki.raw_tls(s.local_addr()).await.unwrap()), b.der);
    let mut old = h2_over(before).await;
    assert_eq!(get_status(&mut old, s.local_addr()).await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpcurl_and_curl_work_as_the_readme_shows() {
    if tools::skip_interop() {
        return;
    }
    let grpcurl = tools::grpcurl();
    let pki = Pki::new();
    let (s, _dir) = pki.start(true, |_| {}).await;
    let client = pki.client_ca.client_leaf("grpcurl");
    pki.write("client.pem", &client.cert_pem);
    pki.write("client-key.pem", &client.key_pem);
    let addr = format!("127.0.0.1:{}", s.local_addr().port());
    let run = |program: &std::path::Path, args: Vec<std::ffi::OsString>| {
        let out = std::process::Command::new(program).args(args).output().unwrap();
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    };
    let os = |s: &str| std::ffi::OsString::from(s);
    let with_cert = vec![
        os("-cacert"),
        pki.path("ca.pem").into(),
        os("-cert"),
        pki.path("client.pem").into(),
        os("-key"),
        pki.path("client-key.pem").into(),
        os(&addr),
        os("list"),
    ];
    let (ok, listed) = tokio::task::spawn_blocking({
        let grpcurl = grpcurl.clone();
        move || run(&grpcurl, with_cert)
    })
    .await
    .unwrap();
    assert!(ok && listed.contains("statusd.v1.DeviceCompliancePolicies"), "{listed}");
    let without_cert = vec![os("-cacert"), pki.path("ca.pem").into(), os(&addr), os("list")];
    let (ok, refused) = tokio::task::spawn_blocking(move || run(&grpcurl, without_cert))
        .await
        .unwrap();
    assert!(!ok, "grpcurl without a client certificate was served: {refused}");
    // curl is optional on a developer's machine; where it exists, it works too.
    let Ok(curl) = which("curl") else { return };
    let args = vec![
        os("-sS"),
        os("--cacert"),
        pki.path("ca.pem").into(),
        os("--cert"),
        pki.path("client.pem").into(),
        os("--key"),
        pki.path("client-key.pem").into(),
        os(&format!("https://{addr}{POLICIES}")),
    ];
    let (ok, body) = tokio::task::spawn_blocking(move || run(&curl, args)).await.unwrap();
    assert!(ok && body.contains("\"value\":[]"), "{body}");
}

/// A program on `PATH`.
fn which(name: &str) -> Result<PathBuf, ()> {
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join(name))
                .find(|p| p.is_file())
        })
        .ok_or(())
}
