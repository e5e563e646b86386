//! Bearer-token auth against the real server with real tokens: keys are
//! generated here (RSA and EC, never checked in), tokens are signed here with
//! jsonwebtoken, and every call goes over the wire (gRPC with `authorization`
//! metadata, REST with `Authorization: Bearer`).

mod common;
#[path = "common/tools.rs"]
mod tools;

use common::{call_as, DeviceMsg, HttpResponse, ListEnvelope, ParentMsg, StatusEnvelope, UserMsg, PARENTS};
use jsonwebtoken::jwk::{Jwk, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use statusd::auth::{Access, Permission, Permissions};
use statusd::{pb, Config, Server};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::Channel;
use tonic::Code;

const ISSUER: &str = "https://login.example.test/tenant/v2.0";
const AUDIENCE: &str = "api://statusd-test";

/// Graph paths of the three parent collections, in the order of `PARENTS`.
const REST_COLLECTIONS: [&str; 3] = [
    "deviceManagement/deviceCompliancePolicies",
    "deviceAppManagement/mobileAppConfigurations",
    "deviceManagement/deviceConfigurations",
];

/// A signing key and its public JWK.
#[derive(Clone)]
struct SigningKey {
    kid: String,
    alg: Algorithm,
    encoding: EncodingKey,
    jwk: Jwk,
    /// The public key as PEM (for the HMAC key-confusion attempt).
    public_pem: String,
}

impl SigningKey {
    fn rsa(kid: &str) -> SigningKey {
        use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
        use rsa::Generate;
        let private = rsa::PrivateKey::try_generate().unwrap();
        let pem = private.to_pkcs8_pem(LineEnding::LF).unwrap();
        let public_pem = private.to_public_key().to_public_key_pem(LineEnding::LF).unwrap();
        Self::from_pem(
            kid,
            Algorithm::RS256,
            EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap(),
            public_pem,
        )
    }

    fn ec(kid: &str) -> SigningKey {
        use p256::elliptic_curve::Generate;
        use p256::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
        let secret = p256::SecretKey::try_generate().unwrap();
        let pem = secret.to_pkcs8_pem(LineEnding::LF).unwrap();
        let public_pem = secret.public_key().to_public_key_pem(LineEnding::LF).unwrap();
        Self::from_pem(
            kid,
            Algorithm::ES256,
            EncodingKey::from_ec_pem(pem.as_bytes()).unwrap(),
            public_pem,
        )
    }

    fn from_pem(kid: &str, alg: Algorithm, encoding: EncodingKey, public_pem: String) -> SigningKey {
        let mut jwk = Jwk::from_encoding_key(&encoding, alg).unwrap();
        jwk.common.key_id = Some(kid.to_owned());
        jwk.common.public_key_use = Some(PublicKeyUse::Signature);
        SigningKey {
            kid: kid.to_owned(),
            alg,
            encoding,
            jwk,
            public_pem,
        }
    }

    /// A token over `claims` with this key's algorithm and kid.
    fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(self.alg);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding).unwrap()
    }
}

/// The RSA key is made once per test binary (generation is slow in debug builds).
fn rsa_key() -> &'static SigningKey {
    static KEY: OnceLock<SigningKey> = OnceLock::new();
    KEY.get_or_init(|| SigningKey::rsa("rsa-1"))
}

fn ec_key() -> &'static SigningKey {
    static KEY: OnceLock<SigningKey> = OnceLock::new();
    KEY.get_or_init(|| SigningKey::ec("ec-1"))
}

fn jwks(keys: &[&SigningKey]) -> String {
    serde_json::to_string(&JwkSet {
        keys: keys.iter().map(|k| k.jwk.clone()).collect(),
    })
    .unwrap()
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// Valid claims; `scp` for a delegated token, `roles` for an application token.
fn claims(scp: Option<&str>, roles: &[&str]) -> Value {
    let mut c = json!({
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "subject-1",
        "oid": "00000000-0000-0000-0000-00000000000a",
        "exp": now() + 600,
        "nbf": now() - 10,
        "iat": now() - 10,
    });
    if let Some(s) = scp {
        c["scp"] = s.into();
    }
    if !roles.is_empty() {
        c["roles"] = json!(roles);
    }
    c
}

/// A token granting every permission.
fn admin_token() -> String {
    rsa_key().sign(&claims(
        Some("DeviceManagementConfiguration.ReadWrite.All DeviceManagementApps.ReadWrite.All"),
        &[],
    ))
}

/// The test configuration with auth reading `jwks` (a path or URL).
fn auth_config(dir: &std::path::Path, jwks: &str) -> Config {
    let mut c = Config::for_data_dir(dir.join("data"));
    c.auth_jwks = Some(jwks.to_owned());
    c.auth_issuer = Some(ISSUER.to_owned());
    c.auth_audience = vec![AUDIENCE.to_owned()];
    c
}

/// A server with auth over a JWKS file holding `keys`.
async fn start_with_keys(keys: &[&SigningKey]) -> (Server, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jwks.json");
    std::fs::write(&path, jwks(keys)).unwrap();
    let server = Server::start(auth_config(dir.path(), path.to_str().unwrap()))
        .await
        .expect("server starts");
    (server, dir)
}

async fn channel(server: &Server) -> Channel {
    common::channel_to(server).await
}

/// One REST request with an optional `Authorization` header value.
async fn rest(method: &str, url: &str, body: Option<&Value>, authorization: Option<&str>) -> HttpResponse {
    let client = reqwest::Client::new();
    let mut req = client.request(reqwest::Method::from_bytes(method.as_bytes()).unwrap(), url);
    if let Some(b) = body {
        req = req.header("content-type", "application/json").body(b.to_string());
    }
    if let Some(a) = authorization {
        req = req.header("authorization", a);
    }
    let resp = req.send().await.expect("HTTP request");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().await.unwrap();
    HttpResponse { status, headers, text }
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// The family of collection `i` of `PARENTS`.
fn family_of(i: usize) -> &'static str {
    if i == 1 {
        "DeviceManagementApps"
    } else {
        "DeviceManagementConfiguration"
    }
}

/// Whether `permission` allows `access` on collection `i`.
fn allows(permission: Permission, i: usize, access: Access) -> bool {
    let name = permission.name();
    name.starts_with(&format!("{}.", family_of(i))) && (access == Access::Read || name.contains("ReadWrite"))
}

/// The nine collections: (parent index, `None` for the parent collection or
/// `Some("User" | "Device")` for a status collection).
fn collections() -> Vec<(usize, Option<&'static str>)> {
    (0..3)
        .flat_map(|i| [(i, None), (i, Some("User")), (i, Some("Device"))])
        .collect()
}

/// A read (list) or write (create) on a collection over gRPC.
async fn grpc_op(
    ch: &Channel,
    i: usize,
    shape: Option<&str>,
    access: Access,
    id: &str,
    token: &str,
) -> Result<(), tonic::Status> {
    let api = PARENTS[i];
    let path = |m: String| format!("/statusd.v1.{}/{m}", api.service);
    let token = Some(token);
    match (shape, access) {
        (None, Access::Read) => {
            let req = pb::ListParentsRequest {
                page_size: 1,
                page_token: String::new(),
            };
            call_as::<_, pb::ListDeviceConfigurationsResponse>(ch, &path(format!("List{}", api.plural)), req, token)
                .await
                .map(drop)
        }
        (None, Access::Write) => {
            let req = pb::CreateDeviceConfigurationRequest {
                device_configuration: Some(api.new_parent(id, "x")),
            };
            call_as::<_, ParentMsg>(ch, &path(format!("Create{}", api.entity)), req, token)
                .await
                .map(drop)
        }
        (Some(shape), Access::Read) => {
            let req = pb::ListStatusesRequest {
                parent_id: "p".into(),
                page_size: 1,
                page_token: String::new(),
            };
            let path = path(format!("List{shape}Statuses"));
            if shape == "User" {
                call_as::<_, ListEnvelope<UserMsg>>(ch, &path, req, token)
                    .await
                    .map(drop)
            } else {
                call_as::<_, ListEnvelope<DeviceMsg>>(ch, &path, req, token)
                    .await
                    .map(drop)
            }
        }
        (Some("User"), Access::Write) => {
            let req = StatusEnvelope {
                parent_id: "p".into(),
                status: Some(UserMsg {
                    id: id.into(),
                    ..Default::default()
                }),
                mask: None,
            };
            call_as::<_, UserMsg>(ch, &path("CreateUserStatus".into()), req, token)
                .await
                .map(drop)
        }
        (Some(_), Access::Write) => {
            let req = StatusEnvelope {
                parent_id: "p".into(),
                status: Some(DeviceMsg {
                    id: id.into(),
                    ..Default::default()
                }),
                mask: None,
            };
            call_as::<_, DeviceMsg>(ch, &path("CreateDeviceStatus".into()), req, token)
                .await
                .map(drop)
        }
    }
}

/// The same read or write over REST; returns the response.
async fn rest_op(base: &str, i: usize, shape: Option<&str>, access: Access, id: &str, token: &str) -> HttpResponse {
    let mut url = format!("{base}/v1.0/{}", REST_COLLECTIONS[i]);
    if let Some(shape) = shape {
        url.push_str(&format!("/p/{}Statuses", shape.to_lowercase()));
    }
    let body = match shape {
        None => json!({"@odata.type": PARENTS[i].odata_type, "id": id, "displayName": "x"}),
        Some(_) => json!({"id": id}),
    };
    match access {
        Access::Read => rest("GET", &url, None, Some(&bearer(token))).await,
        Access::Write => rest("POST", &url, Some(&body), Some(&bearer(token))).await,
    }
}

#[tokio::test]
async fn every_collection_read_and_write_by_each_permission_delegated_and_application() {
    let (server, _dir) = start_with_keys(&[rsa_key(), ec_key()]).await;
    let ch = channel(&server).await;
    let base = format!("http://{}", server.local_addr());
    // The parent "p" of every status collection.
    for i in 0..3 {
        grpc_op(&ch, i, None, Access::Write, "p", &admin_token()).await.unwrap();
    }
    let mut n = 0;
    for permission in Permission::ALL {
        // Delegated (scp, RSA-signed) and application (roles, EC-signed) tokens.
        let tokens = [
            rsa_key().sign(&claims(Some(&format!("User.Read {}", permission.name())), &[])),
            ec_key().sign(&claims(None, &[permission.name()])),
        ];
        for token in &tokens {
            for (i, shape) in collections() {
                for access in [Access::Read, Access::Write] {
                    n += 1;
                    let id = format!("id-{n}");
                    let what = format!(
                        "{} {:?} {:?} with {}",
                        PARENTS[i].service,
                        shape,
                        access,
                        permission.name()
                    );
                    let allowed = allows(permission, i, access);
                    let g = grpc_op(&ch, i, shape, access, &format!("g{id}"), token).await;
                    let r = rest_op(&base, i, shape, access, &format!("r{id}"), token).await;
                    if allowed {
                        assert!(g.is_ok(), "gRPC {what}: {g:?}");
                        let expected = if access == Access::Read { 200 } else { 201 };
                        assert_eq!(r.status, expected, "REST {what}: {}", r.text);
                    } else {
                        let status = g.expect_err(&what);
                        assert_eq!(status.code(), Code::PermissionDenied, "gRPC {what}");
                        let needed = format!("{}.ReadWrite.All", family_of(i));
                        assert!(status.message().contains(&needed), "gRPC {what}: {}", status.message());
                        let message = r.graph_error(403, "Authorization_RequestDenied");
                        assert!(message.contains(&needed), "REST {what}: {message}");
                    }
                }
            }
        }
    }
    // A token with no statusd permission is denied everything, reads included.
    let none = rsa_key().sign(&claims(Some("User.Read"), &[]));
    let status = grpc_op(&ch, 0, None, Access::Read, "x", &none).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    assert!(
        status.message().contains("DeviceManagementConfiguration.Read.All"),
        "{}",
        status.message()
    );
    server.shutdown().await.unwrap();
}

/// Asserts a 401 (REST) and UNAUTHENTICATED (gRPC) whose message contains
/// `expect` and never the token.
async fn assert_refused(server: &Server, authorization: Option<&str>, expect: &str) {
    let ch = channel(server).await;
    let url = format!("http://{}/v1.0/{}", server.local_addr(), REST_COLLECTIONS[0]);
    let r = rest("GET", &url, None, authorization).await;
    let message = r.graph_error(401, "InvalidAuthenticationToken");
    let challenge = r.headers["www-authenticate"].to_str().unwrap();
    assert!(challenge.starts_with("Bearer"), "{challenge}");
    assert!(message.contains(expect), "{authorization:?}: {message}");
    let token = authorization.and_then(|a| a.split_whitespace().nth(1)).unwrap_or("");
    if token.len() > 8 {
        assert!(!r.text.contains(token), "the token is echoed: {}", r.text);
        for part in token.split('.').filter(|p| p.len() > 8) {
            assert!(!r.text.contains(part), "a token part is echoed: {}", r.text);
        }
    }
    let mut grpc = tonic::client::Grpc::new(ch);
    grpc.ready().await.unwrap();
    let mut request = tonic::Request::new(pb::ListParentsRequest::default());
    if let Some(a) = authorization {
        request.metadata_mut().insert("authorization", a.parse().unwrap());
    }
    let status = grpc
        .unary::<_, pb::ListDeviceCompliancePoliciesResponse, _>(
            request,
            PathAndQuery::from_static("/statusd.v1.DeviceCompliancePolicies/ListDeviceCompliancePolicies"),
            tonic_prost::ProstCodec::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{authorization:?}");
    assert!(
        status.message().contains(expect),
        "{authorization:?}: {}",
        status.message()
    );
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[tokio::test]
async fn refused_tokens_each_say_why() {
    let (server, dir) = start_with_keys(&[rsa_key(), ec_key()]).await;
    let read = "DeviceManagementConfiguration.Read.All";
    let key = rsa_key();

    assert_refused(&server, None, "No access token was sent").await;
    assert_refused(&server, Some("Basic dXNlcjpwYXNz"), "must be 'Bearer <token>'").await;
    assert_refused(&server, Some("Bearer"), "must be 'Bearer <token>'").await;
    assert_refused(&server, Some("Bearer not-a-jwt"), "malformed").await;

    let mut expired = claims(Some(read), &[]);
    expired["exp"] = json!(now() - 120);
    assert_refused(&server, Some(&bearer(&key.sign(&expired))), "expired").await;

    let mut early = claims(Some(read), &[]);
    early["nbf"] = json!(now() + 120);
    assert_refused(&server, Some(&bearer(&key.sign(&early))), "not valid yet").await;

    let mut issuer = claims(Some(read), &[]);
    issuer["iss"] = json!("https://evil.example.test/");
    assert_refused(&server, Some(&bearer(&key.sign(&issuer))), "issuer").await;

    let mut audience = claims(Some(read), &[]);
    audience["aud"] = json!("api://someone-else");
    assert_refused(&server, Some(&bearer(&key.sign(&audience))), "audience").await;
    audience["aud"] = json!(["api://someone-else", "api://another"]);
    assert_refused(&server, Some(&bearer(&key.sign(&audience))), "audience").await;

    let mut no_exp = claims(Some(read), &[]);
    no_exp.as_object_mut().unwrap().remove("exp");
    assert_refused(&server, Some(&bearer(&key.sign(&no_exp))), "'exp'").await;

    let stranger = SigningKey::ec("not-in-the-jwks");
    assert_refused(
        &server,
        Some(&bearer(&stranger.sign(&claims(Some(read), &[])))),
        "does not know (kid 'not-in-the-jwks')",
    )
    .await;

    // Tampered payload: a read token's claims raised to write, old signature.
    let token = key.sign(&claims(Some(read), &[]));
    let parts: Vec<&str> = token.split('.').collect();
    let raised = claims(Some("DeviceManagementConfiguration.ReadWrite.All"), &[]);
    let tampered = format!("{}.{}.{}", parts[0], b64(raised.to_string().as_bytes()), parts[2]);
    assert_refused(&server, Some(&bearer(&tampered)), "signature is invalid").await;

    // Bad signature: another key claiming the RSA key's kid.
    let mut impostor = SigningKey::rsa("rsa-1");
    impostor.kid = key.kid.clone();
    assert_refused(
        &server,
        Some(&bearer(&impostor.sign(&claims(Some(read), &[])))),
        "signature is invalid",
    )
    .await;

    // alg none, unsigned.
    let header = json!({"alg": "none", "typ": "JWT", "kid": key.kid});
    let none = format!(
        "{}.{}.",
        b64(header.to_string().as_bytes()),
        b64(claims(Some(read), &[]).to_string().as_bytes())
    );
    assert_refused(&server, Some(&bearer(&none)), "algorithm 'none' is not accepted").await;

    // Key confusion: HS256 with the RSA public key's bytes as the secret.
    let mut hs = Header::new(Algorithm::HS256);
    hs.kid = Some(key.kid.clone());
    let secret = EncodingKey::from_secret(key.public_pem.as_bytes()).unwrap();
    let confused = jsonwebtoken::encode(&hs, &claims(Some(read), &[]), &secret).unwrap();
    assert_refused(&server, Some(&bearer(&confused)), "algorithm 'HS256' is not accepted").await;

    // The EC key with an RSA algorithm in the header.
    let mut mismatch = Header::new(Algorithm::RS256);
    mismatch.kid = Some(ec_key().kid.clone());
    let wrong = jsonwebtoken::encode(&mismatch, &claims(Some(read), &[]), &key.encoding).unwrap();
    assert_refused(&server, Some(&bearer(&wrong)), "does not match its signing key").await;

    // Within the 60 s of clock skew: accepted; an audience array naming ours: accepted.
    let mut skewed = claims(Some(read), &[]);
    skewed["exp"] = json!(now() - 20);
    skewed["nbf"] = json!(now() + 20);
    skewed["aud"] = json!(["api://someone-else", AUDIENCE]);
    let url = format!("http://{}/v1.0/{}", server.local_addr(), REST_COLLECTIONS[0]);
    let ok = rest("GET", &url, None, Some(&bearer(&key.sign(&skewed)))).await;
    assert_eq!(ok.status, 200, "{}", ok.text);

    // A key removed from the JWKS file stops verifying once the server restarts.
    let valid = bearer(&key.sign(&claims(Some(read), &[])));
    assert_eq!(rest("GET", &url, None, Some(&valid)).await.status, 200);
    server.shutdown().await.unwrap();
    let path = dir.path().join("jwks.json");
    std::fs::write(&path, jwks(&[ec_key()])).unwrap();
    let server = Server::start(auth_config(dir.path(), path.to_str().unwrap()))
        .await
        .unwrap();
    assert_refused(&server, Some(&valid), "does not know (kid 'rsa-1')").await;
    let url = format!("http://{}/v1.0/{}", server.local_addr(), REST_COLLECTIONS[0]);
    let ec = bearer(&ec_key().sign(&claims(Some(read), &[])));
    assert_eq!(rest("GET", &url, None, Some(&ec)).await.status, 200);
    server.shutdown().await.unwrap();
}

/// A JWKS endpoint for the tests: serves `body`, counts requests.
struct KeyServer {
    url: String,
    body: Arc<Mutex<String>>,
    hits: Arc<AtomicUsize>,
}

async fn key_server(initial: String) -> KeyServer {
    let body = Arc::new(Mutex::new(initial));
    let hits = Arc::new(AtomicUsize::new(0));
    let (b, h) = (body.clone(), hits.clone());
    let app = axum::Router::new().route(
        "/discovery/keys",
        axum::routing::get(move || {
            let (b, h) = (b.clone(), h.clone());
            async move {
                h.fetch_add(1, Ordering::SeqCst);
                let text = b.lock().unwrap().clone();
                ([("content-type", "application/json")], text)
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/discovery/keys", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    KeyServer { url, body, hits }
}

#[tokio::test]
async fn jwks_by_url_follows_key_rotation_at_a_bounded_rate() {
    let keys = key_server(jwks(&[rsa_key()])).await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = auth_config(dir.path(), &keys.url);
    let interval = Duration::from_millis(500);
    config.auth_jwks_min_refetch = interval;
    let server = Server::start(config).await.expect("server starts");
    assert_eq!(keys.hits.load(Ordering::SeqCst), 1, "fetched at start");
    let url = format!("http://{}/v1.0/{}", server.local_addr(), REST_COLLECTIONS[0]);
    let read = Some("DeviceManagementConfiguration.Read.All");
    let old = bearer(&rsa_key().sign(&claims(read, &[])));
    assert_eq!(rest("GET", &url, None, Some(&old)).await.status, 200);

    let rotated = SigningKey::ec("rotated");
    let new = bearer(&rotated.sign(&claims(read, &[])));
    tokio::time::sleep(interval).await;
    // The issuer does not publish the key yet: one read, still unknown.
    assert_refused(&server, Some(&new), "does not know (kid 'rotated')").await;
    let after_miss = keys.hits.load(Ordering::SeqCst);
    assert_eq!(after_miss, 2, "an unknown kid reads the set again");
    // Unknown key ids within the interval do not read it again.
    for _ in 0..5 {
        let r = rest("GET", &url, None, Some(&new)).await;
        assert_eq!(r.status, 401);
    }
    assert_eq!(keys.hits.load(Ordering::SeqCst), after_miss, "rate-limited");
    // The issuer publishes the new key: accepted after the interval.
    *keys.body.lock().unwrap() = jwks(&[rsa_key(), &rotated]);
    tokio::time::sleep(interval).await;
    let r = rest("GET", &url, None, Some(&new)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(keys.hits.load(Ordering::SeqCst), after_miss + 1);
    // Cached from now on.
    assert_eq!(rest("GET", &url, None, Some(&new)).await.status, 200);
    assert_eq!(rest("GET", &url, None, Some(&old)).await.status, 200);
    assert_eq!(keys.hits.load(Ordering::SeqCst), after_miss + 1);
    // The issuer retires the old key: once the set is read again (another
    // unknown kid), the old key's tokens, verified before, are refused.
    *keys.body.lock().unwrap() = jwks(&[&rotated]);
    tokio::time::sleep(interval).await;
    let other = bearer(&SigningKey::ec("other").sign(&claims(read, &[])));
    assert_eq!(rest("GET", &url, None, Some(&other)).await.status, 401);
    assert_eq!(keys.hits.load(Ordering::SeqCst), after_miss + 2);
    assert_refused(&server, Some(&old), "does not know (kid 'rsa-1')").await;
    assert_eq!(rest("GET", &url, None, Some(&new)).await.status, 200);
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn start_up_refuses_unsafe_or_incomplete_configurations() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("jwks.json");
    std::fs::write(&keys, jwks(&[ec_key()])).unwrap();
    let keys = keys.to_str().unwrap();
    let start = |c: Config| async move { Server::start(c).await.err().map(|e| e.to_string()) };

    let mut open = Config::for_data_dir(dir.path().join("a"));
    open.listen = "0.0.0.0:0".parse().unwrap();
    let e = start(open.clone()).await.expect("refused");
    assert!(e.contains("without authentication") && e.contains("--auth-jwks"), "{e}");
    assert!(e.contains("--insecure-no-auth"), "{e}");

    let mut no_issuer = auth_config(dir.path(), keys);
    no_issuer.auth_issuer = None;
    let e = start(no_issuer).await.expect("refused");
    assert!(e.contains("--auth-issuer"), "{e}");
    let mut no_audience = auth_config(dir.path(), keys);
    no_audience.auth_audience = Vec::new();
    let e = start(no_audience).await.expect("refused");
    assert!(e.contains("--auth-audience"), "{e}");
    let mut stray = Config::for_data_dir(dir.path().join("a"));
    stray.auth_issuer = Some(ISSUER.into());
    let e = start(stray).await.expect("refused");
    assert!(e.contains("--auth-jwks"), "{e}");
    let e = start(auth_config(dir.path(), "/nonexistent/jwks.json"))
        .await
        .expect("refused");
    assert!(e.contains("cannot read the JWKS file /nonexistent/jwks.json"), "{e}");
    let e = start(auth_config(dir.path(), "http://127.0.0.1:9/keys"))
        .await
        .expect("refused");
    assert!(e.contains("cannot fetch the JWKS from http://127.0.0.1:9/keys"), "{e}");

    // Auth on a non-loopback address over plain HTTP needs --insecure-no-tls.
    let mut plain = auth_config(dir.path(), keys);
    plain.listen = "0.0.0.0:0".parse().unwrap();
    let e = start(plain.clone()).await.expect("refused");
    assert!(e.contains("plain HTTP") && e.contains("--insecure-no-tls"), "{e}");
    plain.insecure_no_tls = true;
    let s = Server::start(plain).await.expect("starts with --insecure-no-tls");
    s.shutdown().await.unwrap();
    open.insecure_no_auth = true;
    let s = Server::start(open).await.expect("starts with --insecure-no-auth");
    s.shutdown().await.unwrap();

    // The binary says the same and exits non-zero.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_statusd"))
        .args(["--listen", "0.0.0.0:0", "--data-dir"])
        .arg(dir.path().join("b"))
        .env("RUST_LOG", "error")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("--auth-jwks"), "{text}");
}

#[tokio::test]
async fn health_and_reflection_are_open_everything_else_needs_a_token() {
    let (server, _dir) = start_with_keys(&[ec_key()]).await;
    let ch = channel(&server).await;
    let health: tonic_health::pb::HealthCheckResponse = call_as(
        &ch,
        "/grpc.health.v1.Health/Check",
        tonic_health::pb::HealthCheckRequest {
            service: "statusd.v1.DeviceConfigurations".into(),
        },
        None,
    )
    .await
    .expect("health needs no token");
    assert_eq!(health.status, 1, "SERVING");

    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    let mut reflection = ServerReflectionClient::new(ch.clone());
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = reflection
        .server_reflection_info(tokio_stream::once(request))
        .await
        .expect("reflection needs no token")
        .into_inner();
    let reply = stream.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = reply.message_response else {
        panic!("{reply:?}")
    };
    assert!(list.service.iter().any(|s| s.name == "statusd.v1.DeviceConfigurations"));
    {
        use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient as Alpha;
        use tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest as AlphaRequest;
        let mut alpha = Alpha::new(ch.clone());
        let request = tonic_reflection::pb::v1alpha::ServerReflectionRequest {
            host: String::new(),
            message_request: Some(AlphaRequest::ListServices(String::new())),
        };
        let mut stream = alpha
            .server_reflection_info(tokio_stream::once(request))
            .await
            .expect("v1alpha reflection needs no token")
            .into_inner();
        assert!(stream.message().await.unwrap().is_some());
    }

    // Ping, every method and unknown paths: a token first.
    let ping = call_as::<_, ()>(&ch, "/statusd.v1.Diagnostics/Ping", (), None)
        .await
        .unwrap_err();
    assert_eq!(ping.code(), Code::Unauthenticated);
    let unknown = call_as::<_, ()>(&ch, "/statusd.v1.Nope/Nothing", (), None)
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::Unauthenticated);
    let table = Permissions::new();
    for method in table.grpc_methods() {
        let status = call_as::<_, ()>(&ch, method, (), None).await.unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated, "{method}");
    }
    let base = format!("http://{}", server.local_addr());
    for (method, path) in [
        (
            "GET",
            "/v1.0/deviceManagement/deviceConfigurations/x/userStatuses/$count",
        ),
        (
            "DELETE",
            "/beta/deviceManagement/deviceConfigurations/x/rootCertificate/$ref",
        ),
        ("GET", "/v1.0/nothing/here"),
        ("GET", "/nothing"),
        ("GET", "/dashboard/nothing"),
    ] {
        let r = rest(method, &format!("{base}{path}"), None, None).await;
        r.graph_error(401, "InvalidAuthenticationToken");
    }
    // The dashboard's page and assets hold no record: open (its data calls
    // go through the API above).
    for path in [
        "/",
        "/dashboard/dashboard.js",
        "/dashboard/dashboard.css",
        "/dashboard/schema.json",
    ] {
        let r = rest("GET", &format!("{base}{path}"), None, None).await;
        assert_eq!(r.status, 200, "{path}: {}", r.text);
    }

    // With a token: Ping works with any statusd permission; unknown paths
    // reach the router's own answers.
    let reader = ec_key().sign(&claims(None, &["DeviceManagementApps.Read.All"]));
    call_as::<_, ()>(&ch, "/statusd.v1.Diagnostics/Ping", (), Some(&reader))
        .await
        .expect("ping with a token");
    let unknown = call_as::<_, ()>(&ch, "/statusd.v1.Nope/Nothing", (), Some(&reader))
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::Unimplemented);
    let r = rest(
        "GET",
        &format!("{base}/v1.0/nothing/here"),
        None,
        Some(&bearer(&reader)),
    )
    .await;
    r.graph_error(400, "BadRequest");
    let nothing = ec_key().sign(&claims(Some("User.Read"), &[]));
    // A REST path dressed as gRPC is still judged by its path.
    let disguised = reqwest::Client::new()
        .get(format!("{base}/v1.0/{}", REST_COLLECTIONS[0]))
        .header("content-type", "application/grpc")
        .header("authorization", bearer(&nothing))
        .send()
        .await
        .unwrap();
    assert_eq!(disguised.headers()["grpc-status"], "7", "PERMISSION_DENIED");
    assert!(!disguised.text().await.unwrap().contains("@odata.context"));
    let ping = call_as::<_, ()>(&ch, "/statusd.v1.Diagnostics/Ping", (), Some(&nothing))
        .await
        .unwrap_err();
    assert_eq!(ping.code(), Code::PermissionDenied);
    server.shutdown().await.unwrap();
}

#[test]
fn every_grpc_method_and_rest_route_kind_is_in_the_table() {
    use prost::Message;
    use statusd::rest::path::Route;
    let table = Permissions::new();
    let set = prost_types::FileDescriptorSet::decode(pb::FILE_DESCRIPTOR_SET).unwrap();
    let mut described = Vec::new();
    for file in set.file.iter().filter(|f| f.package() == "statusd.v1") {
        for service in &file.service {
            for method in &service.method {
                let path = format!("/statusd.v1.{}/{}", service.name(), method.name());
                let requirement = table
                    .grpc(&path)
                    .unwrap_or_else(|| panic!("{path} is not in the table"));
                let writes = ["Create", "Update", "Delete"]
                    .iter()
                    .any(|p| method.name().starts_with(p));
                let expected = if writes { Access::Write } else { Access::Read };
                assert_eq!(requirement.access, expected, "{path}");
                described.push(path);
            }
        }
    }
    assert_eq!(described.len(), 58, "{described:?}");
    for path in table.grpc_methods() {
        assert!(
            described.iter().any(|d| d == path),
            "{path} is in the table but not in the protos"
        );
    }

    // REST: one path of every route kind, under each parent kind where it exists.
    fn kind(route: &Route) -> usize {
        match route {
            Route::Parents(_) => 0,
            Route::ParentsCount(_) => 1,
            Route::Parent(_) => 2,
            Route::CertificateRef(_) => 3,
            Route::Statuses(..) => 4,
            Route::StatusesRef(..) => 5,
            Route::StatusesCount(..) => 6,
            Route::Status(..) => 7,
            Route::Overview(..) => 8,
        }
    }
    let mut seen = [false; 9];
    for (i, collection) in REST_COLLECTIONS.iter().enumerate() {
        let mut paths = vec![
            format!("/beta/{collection}"),
            format!("/beta/{collection}/$count"),
            format!("/beta/{collection}/p"),
            format!("/beta/{collection}/p/userStatuses"),
            format!("/beta/{collection}/p/deviceStatuses/$ref"),
            format!("/beta/{collection}/p/userStatuses/$count"),
            format!("/beta/{collection}/p/deviceStatuses/s"),
            if collection.contains("mobileAppConfigurations") {
                format!("/beta/{collection}/p/userStatusSummary")
            } else {
                format!("/beta/{collection}/p/deviceStatusOverview")
            },
        ];
        if i == 2 {
            paths.push(format!("/beta/{collection}/p/rootCertificate/$ref"));
            paths.push(format!("/beta/{collection}/p/identityCertificate/userStatuses/s"));
        }
        for path in paths {
            for (method, access) in [
                ("GET", Access::Read),
                ("HEAD", Access::Read),
                ("POST", Access::Write),
                ("PATCH", Access::Write),
                ("PUT", Access::Write),
                ("DELETE", Access::Write),
            ] {
                let m = axum::http::Method::from_bytes(method.as_bytes()).unwrap();
                let (requirement, route) =
                    Permissions::rest(&m, &path).unwrap_or_else(|| panic!("{path} is not in the table"));
                assert_eq!(requirement.access, access, "{method} {path}");
                let needed = requirement.needed();
                assert!(needed.starts_with(family_of(i)), "{path}: {needed}");
                seen[kind(&route)] = true;
            }
        }
    }
    assert!(seen.iter().all(|s| *s), "route kinds without a case: {seen:?}");
}

#[tokio::test]
async fn dev_keys_and_token_commands_make_a_token_the_server_accepts_and_mutations_are_audited() {
    let dir = tempfile::tempdir().unwrap();
    let bin = env!("CARGO_BIN_EXE_statusd");
    let keys = dir.path().join("keys");
    let out = std::process::Command::new(bin)
        .arg("dev-keys")
        .arg(&keys)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let printed = String::from_utf8(out.stdout).unwrap();
    let kid = printed
        .lines()
        .find_map(|l| l.strip_prefix("kid: "))
        .expect("the kid is printed")
        .to_owned();
    let jwks_path = keys.join("jwks.json");
    let set: Value = serde_json::from_slice(&std::fs::read(&jwks_path).unwrap()).unwrap();
    assert_eq!(set["keys"][0]["kid"], kid.as_str());
    assert!(set["keys"][0].get("d").is_none(), "the JWKS holds no private part");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(keys.join("private.pem"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "the private key is readable by its owner only");
    }
    let mint = |extra: &[&str]| {
        let out = std::process::Command::new(bin)
            .arg("token")
            .arg("--key")
            .arg(keys.join("private.pem"))
            .args([
                "--kid",
                &kid,
                "--issuer",
                ISSUER,
                "--audience",
                AUDIENCE,
                "--ttl",
                "10m",
            ])
            .args(extra)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };
    let writer = mint(&["--scope", "DeviceManagementConfiguration.ReadWrite.All"]);
    let app_reader = mint(&["--role", "DeviceManagementApps.Read.All"]);

    // The real binary, with auth from the files dev-keys wrote.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = std::process::Command::new(bin)
        .args(["--listen", &format!("127.0.0.1:{port}"), "--data-dir"])
        .arg(dir.path().join("data"))
        .arg("--auth-jwks")
        .arg(&jwks_path)
        .args(["--auth-issuer", ISSUER, "--auth-audience", AUDIENCE])
        .env("RUST_LOG", "warn,statusd::audit=info")
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let url = format!("{base}/v1.0/{}", REST_COLLECTIONS[0]);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while reqwest::get(&url).await.is_err() {
        assert!(std::time::Instant::now() < deadline, "statusd did not come up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let body = json!({"@odata.type": PARENTS[0].odata_type, "id": "audited", "displayName": "x"});
    let r = rest("POST", &url, Some(&body), Some(&bearer(&writer))).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let create_request_id = r.headers["request-id"].to_str().unwrap().to_owned();
    let r = rest("GET", &format!("{url}/audited"), None, Some(&bearer(&writer))).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = rest("DELETE", &format!("{url}/audited"), None, Some(&bearer(&app_reader))).await;
    r.graph_error(403, "Authorization_RequestDenied");
    let apps = format!("{base}/v1.0/{}", REST_COLLECTIONS[1]);
    assert_eq!(rest("GET", &apps, None, Some(&bearer(&app_reader))).await.status, 200);
    child.kill().unwrap();
    let out = child.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = log.lines().filter(|l| l.contains("statusd::audit")).collect();
    assert_eq!(lines.len(), 2, "one line per mutation, reads not audited: {log}");
    assert!(
        lines[0].contains(&format!("request{{id={create_request_id}}}")),
        "the audit line names the request's id ({create_request_id}): {}",
        lines[0]
    );
    assert!(
        lines[0].contains("oid=statusd-dev")
            && lines[0].contains("method=POST")
            && lines[0].contains("outcome=\"201\""),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].contains("method=DELETE") && lines[1].contains("parent_id=\"audited\"") && lines[1].contains("denied"),
        "{}",
        lines[1]
    );
    for token in [&writer, &app_reader] {
        for part in token.split('.') {
            assert!(!log.contains(part), "the log holds a token part: {log}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpcurl_lists_and_describes_without_a_token_and_calls_with_one() {
    if tools::skip_interop() {
        return;
    }
    let bin = tools::grpcurl();
    let (server, _dir) = start_with_keys(&[rsa_key()]).await;
    let addr = server.local_addr().to_string();
    let run = |args: Vec<String>| {
        let bin = bin.clone();
        async move {
            let out = tokio::task::spawn_blocking(move || {
                std::process::Command::new(bin)
                    .arg("-plaintext")
                    .args(args)
                    .output()
                    .unwrap()
            })
            .await
            .unwrap();
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            (out.status.success(), text)
        }
    };
    let (ok, text) = run(vec![addr.clone(), "list".into()]).await;
    assert!(ok && text.contains("statusd.v1.DeviceCompliancePolicies"), "{text}");
    let (ok, text) = run(vec![addr.clone(), "describe".into(), "statusd.v1.Diagnostics".into()]).await;
    assert!(ok && text.contains("rpc Ping"), "{text}");
    let ping = "statusd.v1.Diagnostics/Ping".to_owned();
    let (ok, text) = run(vec![addr.clone(), ping.clone()]).await;
    assert!(!ok && text.contains("Unauthenticated"), "{text}");
    let token = admin_token();
    let header = format!("authorization: Bearer {token}");
    let (ok, text) = run(vec!["-H".into(), header.clone(), addr.clone(), ping]).await;
    assert!(ok, "{text}");
    let body = json!({"device_compliance_policy": {"odata_type": PARENTS[0].odata_type, "id": "p1", "display_name": "From grpcurl"}});
    let (ok, text) = run(vec![
        "-H".into(),
        header,
        "-d".into(),
        body.to_string(),
        addr,
        "statusd.v1.DeviceCompliancePolicies/CreateDeviceCompliancePolicy".into(),
    ])
    .await;
    assert!(ok && text.contains("From grpcurl"), "{text}");
    server.shutdown().await.unwrap();
}

/// A `$batch` passes each of its requests through auth as a request of its
/// own, with the batch's token: none → every request 401; a read-only token
/// → reads succeed, writes 403; a token with write → the writes succeed.
#[tokio::test]
async fn each_request_of_a_batch_is_authorised_with_the_batch_token() {
    let (server, _dir) = start_with_keys(&[rsa_key()]).await;
    let base = format!("http://{}", server.local_addr());
    let url = format!("{base}/v1.0/$batch");
    let policies = "/deviceManagement/deviceCompliancePolicies";
    let body = json!({"requests": [
        {"id": "read", "method": "GET", "url": policies},
        {"id": "write", "method": "POST", "url": policies,
         "body": {"@odata.type": "#microsoft.graph.windows10CompliancePolicy", "id": "p", "displayName": "p"}},
    ]});
    let statuses = |r: HttpResponse| {
        assert_eq!(r.status, 200, "{}", r.text);
        let json: Value = serde_json::from_str(&r.text).unwrap();
        json["responses"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| (s["id"].as_str().unwrap().to_owned(), s["status"].as_u64().unwrap()))
            .collect::<Vec<_>>()
    };
    let none = statuses(rest("POST", &url, Some(&body), None).await);
    assert_eq!(none, [("read".to_owned(), 401), ("write".to_owned(), 401)]);
    let reader = rsa_key().sign(&claims(Some("DeviceManagementConfiguration.Read.All"), &[]));
    let read_only = statuses(rest("POST", &url, Some(&body), Some(&bearer(&reader))).await);
    assert_eq!(read_only, [("read".to_owned(), 200), ("write".to_owned(), 403)]);
    let admin = statuses(rest("POST", &url, Some(&body), Some(&bearer(&admin_token()))).await);
    assert_eq!(admin, [("read".to_owned(), 200), ("write".to_owned(), 201)]);
}

/// With auth on, `/metrics` on the main listener needs a valid token (any
/// permission: it reaches no record).
#[tokio::test]
async fn metrics_need_a_valid_token_when_auth_is_on() {
    let (server, _dir) = start_with_keys(&[rsa_key()]).await;
    let url = format!("http://{}/metrics", server.local_addr());
    assert_eq!(rest("GET", &url, None, None).await.status, 401);
    let reader = rsa_key().sign(&claims(Some("DeviceManagementConfiguration.Read.All"), &[]));
    let r = rest("GET", &url, None, Some(&bearer(&reader))).await;
    assert_eq!(r.status, 200, "{}", r.text);
}

/// `GET /admin/backup` reads every collection: a token needs read in both
/// permission families; one family alone is refused with a 403 naming both.
#[tokio::test]
async fn a_backup_needs_read_in_both_permission_families() {
    let (server, _dir) = start_with_keys(&[rsa_key()]).await;
    let url = format!("http://{}/admin/backup", server.local_addr());
    let none = rest("GET", &url, None, None).await;
    assert_eq!(none.status, 401, "{}", none.text);
    for scp in [
        "DeviceManagementConfiguration.ReadWrite.All",
        "DeviceManagementApps.Read.All",
    ] {
        let token = rsa_key().sign(&claims(Some(scp), &[]));
        let r = rest("GET", &url, None, Some(&bearer(&token))).await;
        assert_eq!(r.status, 403, "{scp}: {}", r.text);
        assert!(
            r.text.contains("DeviceManagementConfiguration.Read.All")
                && r.text.contains("DeviceManagementApps.Read.All"),
            "{}",
            r.text
        );
    }
    let both = rsa_key().sign(&claims(
        Some("DeviceManagementConfiguration.Read.All DeviceManagementApps.Read.All"),
        &[],
    ));
    let r = rest("GET", &url, None, Some(&bearer(&both))).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.text.starts_with("{\"statusdBackup\":1"), "{}", r.text);
    assert!(r.text.contains("{\"end\":{\"records\":0"), "{}", r.text);
    server.shutdown().await.unwrap();
}
