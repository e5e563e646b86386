//! Real clients against a server with TLS and bearer-token auth both on, set
//! up as the README's "Running it on a network" shows: keys from `statusd
//! dev-keys`, tokens from `statusd token`, a server certificate from a test CA
//! (made here with rcgen). The clients: the official Microsoft Graph Python
//! SDKs with a token credential (`tests/interop/graph_sdk_auth.py`), grpcurl
//! with `-H authorization`, and the Microsoft Graph JavaScript client
//! (`tests/interop/graph_client.mjs`). Each installs on first use (see
//! `common/tools.rs`); `STATUSD_SKIP_INTEROP=1` skips them.

mod common;
#[path = "common/tools.rs"]
mod tools;

use common::start_with;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use statusd::Server;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{SystemTime, UNIX_EPOCH};

const ISSUER: &str = "https://statusd.dev";
const AUDIENCE: &str = "api://statusd";
const STATUSD: &str = env!("CARGO_BIN_EXE_statusd");

/// A running server with TLS (a test CA's certificate) and auth (a JWKS from
/// `statusd dev-keys`), and the files a client needs: `ca.pem`, `keys/`.
struct Secured {
    server: Server,
    _data: tempfile::TempDir,
    dir: tempfile::TempDir,
    kid: String,
}

impl Secured {
    async fn start() -> Secured {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new(STATUSD)
            .arg("dev-keys")
            .arg(dir.path().join("keys"))
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let kid = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("kid: "))
            .expect("dev-keys prints the kid")
            .to_owned();
        write_certificates(dir.path());
        let jwks = dir.path().join("keys/jwks.json");
        let (server, data) = start_with(|c| {
            c.tls_cert = Some(dir.path().join("cert.pem"));
            c.tls_key = Some(dir.path().join("key.pem"));
            c.auth_jwks = Some(jwks.to_str().unwrap().to_owned());
            c.auth_issuer = Some(ISSUER.to_owned());
            c.auth_audience = vec![AUDIENCE.to_owned()];
        })
        .await;
        Secured {
            server,
            _data: data,
            dir,
            kid,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `127.0.0.1:PORT`, a name the server certificate carries.
    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.server.local_addr().port())
    }

    fn base_url(&self) -> String {
        format!("https://{}", self.addr())
    }

    /// A token from `statusd token` for a delegated `scope`.
    fn token(&self, scope: &str) -> String {
        let out = Command::new(STATUSD)
            .arg("token")
            .arg("--key")
            .arg(self.path("keys/private.pem"))
            .args(["--kid", &self.kid, "--issuer", ISSUER, "--audience", AUDIENCE])
            .args(["--scope", scope, "--ttl", "1h"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }

    /// A token signed by the same key that expired an hour ago (`statusd
    /// token` makes only live ones).
    fn expired_token(&self, scope: &str) -> String {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
        let claims = serde_json::json!({
            "iss": ISSUER, "aud": AUDIENCE, "sub": "expired", "scp": scope,
            "iat": now - 7200, "nbf": now - 7200, "exp": now - 3600,
        });
        let pem = std::fs::read(self.path("keys/private.pem")).unwrap();
        let key = jsonwebtoken::EncodingKey::from_rsa_pem(&pem).unwrap();
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, &claims, &key).unwrap()
    }
}

/// Writes `ca.pem` (a fresh test CA) and `cert.pem`/`key.pem` (a server
/// certificate it issued for 127.0.0.1 and localhost) into `dir`.
fn write_certificates(dir: &Path) {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(DnType::CommonName, "statusd interop test CA");
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
    let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
    let mut params = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
    params.distinguished_name.push(DnType::CommonName, "statusd");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &ca).unwrap();
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    std::fs::write(dir.join("cert.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), key.serialize_pem()).unwrap();
}

/// Runs `command` off the async runtime; returns its output with stdout and
/// stderr echoed for the test log.
async fn run(mut command: Command) -> Output {
    let out = tokio::task::spawn_blocking(move || command.output().expect("run the client"))
        .await
        .unwrap();
    eprintln!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Asserts a client script succeeded and printed its final `OK`.
fn assert_script_ok(out: &Output) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the script failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.lines().any(|l| l == "OK"), "{stdout}");
}

const CONFIGURATION: &str = "DeviceManagementConfiguration.ReadWrite.All";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_graph_python_sdks_work_with_a_token_over_tls() {
    if tools::skip_interop() {
        return;
    }
    let venv = tools::graph_sdks();
    let s = Secured::start().await;
    let mut python = Command::new(venv.join("bin/python"));
    python
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/graph_sdk_auth.py"))
        .arg(s.base_url())
        .env("SSL_CERT_FILE", s.path("ca.pem"))
        .env("STATUSD_TOKEN", s.token(CONFIGURATION))
        .env("STATUSD_EXPIRED_TOKEN", s.expired_token(CONFIGURATION));
    assert_script_ok(&run(python).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpcurl_sends_a_bearer_token_over_tls() {
    if tools::skip_interop() {
        return;
    }
    let grpcurl = tools::grpcurl();
    let s = Secured::start().await;
    let token = s.token(CONFIGURATION);
    // grpcurl [flags] ADDRESS [SYMBOL]
    let call = |flags: &[String], args: &[&str]| {
        let mut c = Command::new(&grpcurl);
        c.arg("-cacert")
            .arg(s.path("ca.pem"))
            .args(flags)
            .arg(s.addr())
            .args(args);
        c
    };
    let text = |out: &Output| {
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    };
    let header = ["-H".to_owned(), format!("authorization: Bearer {token}")];
    let ping = "statusd.v1.Diagnostics/Ping";

    let out = run(call(&header, &[ping])).await;
    assert!(out.status.success(), "{}", text(&out));
    let out = run(call(&[], &[ping])).await;
    assert!(
        !out.status.success() && text(&out).contains("Unauthenticated"),
        "{}",
        text(&out)
    );
    let garbage = ["-H".to_owned(), "authorization: Bearer not-a-jwt".to_owned()];
    let out = run(call(&garbage, &[ping])).await;
    assert!(
        !out.status.success() && text(&out).contains("Unauthenticated"),
        "{}",
        text(&out)
    );
    // Reflection needs no token, over TLS as in plaintext.
    let out = run(call(&[], &["list"])).await;
    assert!(
        out.status.success() && text(&out).contains("statusd.v1.DeviceCompliancePolicies"),
        "{}",
        text(&out)
    );
    let body = r##"{"device_compliance_policy": {"odata_type": "#microsoft.graph.windows10CompliancePolicy", "id": "policy-1", "display_name": "Over TLS with a token"}}"##;
    let create = "statusd.v1.DeviceCompliancePolicies/CreateDeviceCompliancePolicy";
    let with_body = |flags: &[String]| [flags, &["-d".to_owned(), body.to_owned()]].concat();
    let out = run(call(&with_body(&header), &[create])).await;
    assert!(
        out.status.success() && text(&out).contains("Over TLS with a token"),
        "{}",
        text(&out)
    );
    // A token for the other permission family is PermissionDenied.
    let apps = s.token("DeviceManagementApps.Read.All");
    let apps = ["-H".to_owned(), format!("authorization: Bearer {apps}")];
    let out = run(call(&with_body(&apps), &[create])).await;
    assert!(
        !out.status.success() && text(&out).contains("PermissionDenied"),
        "{}",
        text(&out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graph_javascript_client_works_with_a_token_over_tls() {
    if tools::skip_interop() {
        return;
    }
    let Some(prefix) = tools::graph_js_client() else {
        return;
    };
    let s = Secured::start().await;
    let mut node = Command::new("node");
    node.arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/graph_client.mjs"))
        .arg(format!("{}/", s.base_url()))
        .arg(prefix)
        .env("NODE_EXTRA_CA_CERTS", s.path("ca.pem"))
        .env("STATUSD_TOKEN", s.token(CONFIGURATION));
    assert_script_ok(&run(node).await);
}
