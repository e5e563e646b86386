//! The test harness: the real server on 127.0.0.1:0 over a real sled
//! directory in a temp dir, and a raw gRPC caller that reaches every
//! collection's methods by path.
//!
//! The three parent messages share fields 1–7 and the status messages of one
//! shape are identical on the wire, so one message type per shape can drive
//! all nine collections: the tests stay table-driven while every request still
//! goes to the real, generated endpoint of its own service.
#![allow(dead_code)]

#[path = "../pg/mod.rs"]
pub mod pg;

use statusd::pb;
use statusd::{Config, Server};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::Channel;

/// `STATUSD_TEST_BACKEND=postgres` runs the servers of the suites built on
/// this harness (gRPC, REST, ...) on PostgreSQL (`STATUSD_TEST_DATABASE_URL`,
/// a fresh schema per server) instead of sled; `.ci/run` runs the gRPC and
/// REST suites both ways.
pub const BACKEND_VAR: &str = "STATUSD_TEST_BACKEND";

/// A database URL (a fresh schema) when the tests run on PostgreSQL.
pub async fn test_database() -> Option<String> {
    match std::env::var(BACKEND_VAR).as_deref() {
        Ok("postgres") => {
            let base = pg::database_url().unwrap_or_else(|reason| panic!("{BACKEND_VAR}=postgres, but {reason}"));
            Some(pg::fresh_schema(&base, "server").await)
        }
        Ok("sled") | Ok("") | Err(_) => None,
        Ok(other) => panic!("{BACKEND_VAR}={other}: expected sled or postgres"),
    }
}

/// The test defaults on `dir`, on PostgreSQL when [`BACKEND_VAR`] asks.
pub async fn test_config(dir: &std::path::Path) -> Config {
    let mut c = Config::for_data_dir(dir);
    c.database_url = test_database().await;
    c
}

/// A running server and its data directory.
pub struct TestServer {
    pub server: Server,
    pub dir: tempfile::TempDir,
    /// The database (schema) it runs on, when on PostgreSQL.
    pub database_url: Option<String>,
}

impl TestServer {
    /// Starts a server on a fresh temp directory (or a fresh schema).
    pub async fn start() -> TestServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let database_url = test_database().await;
        Self::start_on(dir, database_url).await
    }

    /// Starts a server on an existing directory (or database).
    async fn start_on(dir: tempfile::TempDir, database_url: Option<String>) -> TestServer {
        let mut config = Config::for_data_dir(dir.path());
        config.database_url = database_url.clone();
        let server = Server::start(config).await.expect("server starts");
        TestServer {
            server,
            dir,
            database_url,
        }
    }

    /// Shuts down gracefully and starts again on the same storage.
    pub async fn restart(self) -> TestServer {
        let TestServer {
            server,
            dir,
            database_url,
        } = self;
        server.shutdown().await.expect("clean shutdown");
        Self::start_on(dir, database_url).await
    }

    /// `http://127.0.0.1:port`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.server.local_addr())
    }

    /// A gRPC channel to the server.
    pub async fn channel(&self) -> Channel {
        Channel::from_shared(self.base_url())
            .unwrap()
            .connect()
            .await
            .expect("connect")
    }
}

/// Starts a server on a fresh temp directory with `config` applied to the
/// test defaults.
pub async fn start_with(config: impl FnOnce(&mut Config)) -> (Server, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut c = test_config(dir.path()).await;
    config(&mut c);
    (Server::start(c).await.unwrap(), dir)
}

/// A gRPC channel to `server`.
pub async fn channel_to(server: &Server) -> Channel {
    Channel::from_shared(format!("http://{}", server.local_addr()))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

/// Calls `path` (e.g. `/statusd.v1.DeviceConfigurations/CreateUserStatus`).
pub async fn call<Req, Resp>(ch: &Channel, path: &str, req: Req) -> Result<Resp, tonic::Status>
where
    Req: prost::Message + Send + Sync + 'static,
    Resp: prost::Message + Default + Send + Sync + 'static,
{
    call_as(ch, path, req, None).await
}

/// Calls `path` with an optional bearer token in the `authorization` metadata.
pub async fn call_as<Req, Resp>(ch: &Channel, path: &str, req: Req, token: Option<&str>) -> Result<Resp, tonic::Status>
where
    Req: prost::Message + Send + Sync + 'static,
    Resp: prost::Message + Default + Send + Sync + 'static,
{
    let mut grpc = tonic::client::Grpc::new(ch.clone());
    grpc.ready()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let mut request = tonic::Request::new(req);
    if let Some(t) = token {
        let value = format!("Bearer {t}").parse().expect("token as metadata");
        request.metadata_mut().insert("authorization", value);
    }
    let path = PathAndQuery::try_from(path.to_owned()).expect("valid path");
    grpc.unary(request, path, tonic_prost::ProstCodec::default())
        .await
        .map(|r| r.into_inner())
}

/// One parent collection as the tests see it.
#[derive(Debug, Clone, Copy)]
pub struct ParentApi {
    pub service: &'static str,
    pub entity: &'static str,
    pub plural: &'static str,
    pub odata_type: &'static str,
}

pub const PARENTS: [ParentApi; 3] = [
    ParentApi {
        service: "DeviceCompliancePolicies",
        entity: "DeviceCompliancePolicy",
        plural: "DeviceCompliancePolicies",
        odata_type: "#microsoft.graph.windows10CompliancePolicy",
    },
    ParentApi {
        service: "MobileAppConfigurations",
        entity: "ManagedDeviceMobileAppConfiguration",
        plural: "ManagedDeviceMobileAppConfigurations",
        odata_type: "#microsoft.graph.iosMobileAppConfiguration",
    },
    ParentApi {
        service: "DeviceConfigurations",
        entity: "DeviceConfiguration",
        plural: "DeviceConfigurations",
        odata_type: "#microsoft.graph.windows10GeneralConfiguration",
    },
];

/// The wire-compatible parent message used for all three kinds (fields 1–7).
pub type ParentMsg = pb::DeviceConfiguration;
/// The wire-compatible user status message.
pub type UserMsg = pb::DeviceComplianceUserStatus;
/// The wire-compatible overview message (either shape).
pub type OverviewMsg = pb::DeviceComplianceDeviceOverview;
/// The wire-compatible device status message.
pub type DeviceMsg = pb::DeviceComplianceDeviceStatus;

impl ParentApi {
    fn path(&self, method: &str) -> String {
        format!("/statusd.v1.{}/{method}", self.service)
    }

    pub fn new_parent(&self, id: &str, name: &str) -> ParentMsg {
        ParentMsg {
            odata_type: self.odata_type.into(),
            id: id.into(),
            display_name: name.into(),
            description: Some(format!("{name} description")),
            ..Default::default()
        }
    }

    pub async fn create(&self, ch: &Channel, p: ParentMsg) -> Result<ParentMsg, tonic::Status> {
        let req = pb::CreateDeviceConfigurationRequest {
            device_configuration: Some(p),
        };
        call(ch, &self.path(&format!("Create{}", self.entity)), req).await
    }

    pub async fn get(&self, ch: &Channel, id: &str) -> Result<ParentMsg, tonic::Status> {
        call(
            ch,
            &self.path(&format!("Get{}", self.entity)),
            pb::GetParentRequest { id: id.into() },
        )
        .await
    }

    pub async fn list(&self, ch: &Channel, size: i32, token: &str) -> Result<(Vec<ParentMsg>, String), tonic::Status> {
        let req = pb::ListParentsRequest {
            page_size: size,
            page_token: token.into(),
        };
        let r: pb::ListDeviceConfigurationsResponse =
            call(ch, &self.path(&format!("List{}", self.plural)), req).await?;
        Ok((r.device_configurations, r.next_page_token))
    }

    pub async fn update(&self, ch: &Channel, p: ParentMsg, mask: &[&str]) -> Result<ParentMsg, tonic::Status> {
        let req = pb::UpdateDeviceConfigurationRequest {
            device_configuration: Some(p),
            update_mask: Some(prost_types::FieldMask {
                paths: mask.iter().map(|s| s.to_string()).collect(),
            }),
        };
        call(ch, &self.path(&format!("Update{}", self.entity)), req).await
    }

    pub async fn delete(&self, ch: &Channel, id: &str) -> Result<(), tonic::Status> {
        call::<_, ()>(
            ch,
            &self.path(&format!("Delete{}", self.entity)),
            pb::DeleteParentRequest { id: id.into() },
        )
        .await
    }

    /// `User` or `Device` status methods of this service.
    pub async fn create_status<M>(&self, ch: &Channel, shape: &str, parent: &str, m: M) -> Result<M, tonic::Status>
    where
        M: prost::Message + Default + Clone + PartialEq + std::fmt::Debug + Send + Sync + 'static,
    {
        // parent_id = 1, status = 2 in every Create*StatusRequest.
        let req = StatusEnvelope {
            parent_id: parent.into(),
            status: Some(m),
            mask: None,
        };
        call(ch, &self.path(&format!("Create{shape}Status")), req).await
    }

    pub async fn get_status<M>(&self, ch: &Channel, shape: &str, parent: &str, id: &str) -> Result<M, tonic::Status>
    where
        M: prost::Message + Default + Clone + PartialEq + std::fmt::Debug + Send + Sync + 'static,
    {
        let req = pb::GetStatusRequest {
            parent_id: parent.into(),
            id: id.into(),
        };
        call(ch, &self.path(&format!("Get{shape}Status")), req).await
    }

    pub async fn list_statuses<M>(
        &self,
        ch: &Channel,
        shape: &str,
        parent: &str,
        size: i32,
        token: &str,
    ) -> Result<(Vec<M>, String), tonic::Status>
    where
        M: prost::Message + Default + Clone + PartialEq + std::fmt::Debug + Send + Sync + 'static,
    {
        let req = pb::ListStatusesRequest {
            parent_id: parent.into(),
            page_size: size,
            page_token: token.into(),
        };
        let r: ListEnvelope<M> = call(ch, &self.path(&format!("List{shape}Statuses")), req).await?;
        Ok((r.items, r.next_page_token))
    }

    pub async fn update_status<M>(
        &self,
        ch: &Channel,
        shape: &str,
        parent: &str,
        m: M,
        mask: Option<&[&str]>,
    ) -> Result<M, tonic::Status>
    where
        M: prost::Message + Default + Clone + PartialEq + std::fmt::Debug + Send + Sync + 'static,
    {
        let mask = mask.map(|m| prost_types::FieldMask {
            paths: m.iter().map(|s| s.to_string()).collect(),
        });
        let req = StatusEnvelope {
            parent_id: parent.into(),
            status: Some(m),
            mask,
        };
        call(ch, &self.path(&format!("Update{shape}Status")), req).await
    }

    /// `Get{shape}StatusOverview` (`…Summary` on mobile app configurations).
    /// The device overview message is a superset of the user one on the
    /// wire, so it decodes both.
    pub async fn get_overview(&self, ch: &Channel, shape: &str, parent: &str) -> Result<OverviewMsg, tonic::Status> {
        let noun = if self.service == "MobileAppConfigurations" {
            "Summary"
        } else {
            "Overview"
        };
        let req = pb::GetStatusOverviewRequest {
            parent_id: parent.into(),
        };
        call(ch, &self.path(&format!("Get{shape}Status{noun}")), req).await
    }

    pub async fn delete_status(&self, ch: &Channel, shape: &str, parent: &str, id: &str) -> Result<(), tonic::Status> {
        let req = pb::DeleteStatusRequest {
            parent_id: parent.into(),
            id: id.into(),
        };
        call::<_, ()>(ch, &self.path(&format!("Delete{shape}Status")), req).await
    }
}

/// Create/Update status request shape, generic over the status message.
#[derive(Clone, PartialEq, prost::Message)]
pub struct StatusEnvelope<M: prost::Message + Default + Clone + PartialEq + std::fmt::Debug> {
    #[prost(string, tag = "1")]
    pub parent_id: String,
    #[prost(message, optional, tag = "2")]
    pub status: Option<M>,
    #[prost(message, optional, tag = "3")]
    pub mask: Option<prost_types::FieldMask>,
}

/// List*StatusesResponse shape, generic over the status message.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ListEnvelope<M: prost::Message + Default + Clone + PartialEq + std::fmt::Debug> {
    #[prost(message, repeated, tag = "1")]
    pub items: Vec<M>,
    #[prost(string, tag = "2")]
    pub next_page_token: String,
}

/// A timestamp from an RFC 3339 text (test inputs only).
pub fn ts(seconds: i64, nanos: i32) -> Option<prost_types::Timestamp> {
    Some(prost_types::Timestamp { seconds, nanos })
}

/// The google.rpc.BadRequest field names of an INVALID_ARGUMENT status.
pub fn bad_request_fields(status: &tonic::Status) -> Vec<String> {
    use tonic_types::StatusExt;
    status
        .get_details_bad_request()
        .map(|b| b.field_violations.into_iter().map(|v| v.field).collect())
        .unwrap_or_default()
}

/// An HTTP response, read whole.
pub struct HttpResponse {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
}

impl HttpResponse {
    /// The body as JSON (panics with the body when it is not).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }

    /// Asserts a Graph error with this status and code; returns its message.
    pub fn graph_error(&self, status: u16, code: &str) -> String {
        assert_eq!(self.status, status, "{}", self.text);
        let body = self.json();
        assert_eq!(body["error"]["code"], code, "{}", self.text);
        let inner = &body["error"]["innerError"];
        assert!(
            inner["request-id"].is_string() && inner["client-request-id"].is_string(),
            "{}",
            self.text
        );
        assert!(inner["date"].is_string());
        assert_eq!(
            self.headers["request-id"].to_str().unwrap(),
            inner["request-id"].as_str().unwrap()
        );
        assert!(self.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json"));
        body["error"]["message"].as_str().unwrap().to_owned()
    }
}

/// Sends one request; `body` is sent as given (so malformed JSON can be tested).
pub async fn http(method: &str, url: &str, body: Option<&str>) -> HttpResponse {
    try_http(method, url, body).await.expect("HTTP request")
}

/// As [`http`], but a transport failure is an `Err` rather than a panic.
pub async fn try_http(method: &str, url: &str, body: Option<&str>) -> Result<HttpResponse, reqwest::Error> {
    let client = reqwest::Client::new();
    let mut req = client.request(reqwest::Method::from_bytes(method.as_bytes()).unwrap(), url);
    if let Some(b) = body {
        req = req.header("content-type", "application/json").body(b.to_owned());
    }
    let resp = req.send().await?;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().await?;
    Ok(HttpResponse { status, headers, text })
}

/// The real `statusd` binary as a child process on a free loopback port.
pub struct ChildServer {
    pub child: std::process::Child,
    /// `http://127.0.0.1:port`.
    pub base: String,
}

impl ChildServer {
    /// Starts the binary on `dir`.
    pub fn spawn(dir: &std::path::Path) -> ChildServer {
        Self::spawn_with(dir, &[])
    }

    /// Starts the binary on `dir` with extra flags.
    pub fn spawn_with(dir: &std::path::Path, flags: &[&str]) -> ChildServer {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_statusd"))
            .args(["--listen", &format!("127.0.0.1:{port}"), "--data-dir"])
            .arg(dir)
            .args(flags)
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .expect("spawn statusd");
        ChildServer {
            child,
            base: format!("http://127.0.0.1:{port}"),
        }
    }

    /// A channel once the server answers (it may be recovering from a crash).
    pub async fn connect(&self) -> Channel {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            match Channel::from_shared(self.base.clone()).unwrap().connect().await {
                Ok(ch) => return ch,
                Err(e) if std::time::Instant::now() > deadline => panic!("statusd did not come up: {e}"),
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
            }
        }
    }

    /// SIGKILL, and reap.
    pub fn kill(&mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reap");
    }
}

/// Runs the real `statusd` binary with `args` (a subcommand) to its end:
/// (success, stdout, stderr).
pub fn statusd(args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_statusd"))
        .args(args)
        .output()
        .expect("run statusd");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
