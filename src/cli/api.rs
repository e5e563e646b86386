//! The REST client the data commands (`export`, `import`) use: they talk to
//! a running server through its Graph API, so they never fight sled's
//! directory lock and every record goes through the same rules as any
//! client's (DESIGN §10).

use crate::model::{ParentKind, StatusKind};
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use serde_json::Value;
use std::path::PathBuf;

/// How to reach the server.
#[derive(Debug, Clone, clap::Args)]
pub struct ApiArgs {
    /// The server's base URL.
    #[arg(long, env = "STATUSD_SERVER", default_value = "http://127.0.0.1:8080")]
    pub server: String,
    /// A bearer token, when the server has auth on.
    #[arg(long, env = "STATUSD_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// PEM CA certificate(s) for an https server with a private CA.
    #[arg(long, value_name = "PATH")]
    pub ca: Option<PathBuf>,
}

/// A client of one server.
pub struct Api {
    http: reqwest::Client,
    /// Base URL without a trailing slash.
    pub base: String,
    token: Option<String>,
}

/// A response: status and JSON body (`Null` when empty or not JSON).
pub struct Answer {
    pub status: u16,
    pub body: Value,
}

impl Answer {
    /// Graph's error message, or the status.
    pub fn error_message(&self) -> String {
        self.body["error"]["message"].as_str().map_or_else(
            || format!("HTTP {}", self.status),
            |m| format!("{} ({})", m, self.status),
        )
    }
}

impl Api {
    /// A client for `args`.
    pub fn new(args: &ApiArgs) -> Result<Api, String> {
        let mut builder = reqwest::Client::builder().timeout(std::time::Duration::from_secs(60));
        if let Some(path) = &args.ca {
            let pem = std::fs::read(path).map_err(|e| format!("--ca {}: {e}", path.display()))?;
            for cert in
                reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| format!("--ca {}: {e}", path.display()))?
            {
                builder = builder.add_root_certificate(cert);
            }
        }
        Ok(Api {
            http: builder
                .build()
                .map_err(|e| format!("cannot build the HTTP client: {e}"))?,
            base: args.server.trim_end_matches('/').to_owned(),
            token: args.token.clone(),
        })
    }

    /// Sends a request; transport failures are errors, any HTTP status is an answer.
    pub async fn send(&self, method: reqwest::Method, url: &str, body: Option<&Value>) -> Result<Answer, String> {
        let mut req = self.http.request(method.clone(), url);
        if let Some(token) = &self.token {
            req = req.bearer_auth(token);
        }
        if let Some(body) = body {
            req = req.header("content-type", "application/json").body(body.to_string());
        }
        let resp = req.send().await.map_err(|e| format!("{method} {url}: {e}"))?;
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.map_err(|e| format!("{method} {url}: {e}"))?;
        Ok(Answer {
            status,
            body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        })
    }

    /// A GET whose body is read as it comes (no overall time limit: a
    /// backup of millions of records takes minutes); errors are messages.
    pub async fn get_streamed(&self, url: &str) -> Result<reqwest::Response, String> {
        let mut req = self
            .http
            .get(url)
            .timeout(std::time::Duration::from_secs(7 * 24 * 3600));
        if let Some(token) = &self.token {
            req = req.bearer_auth(token);
        }
        let resp = req.send().await.map_err(|e| format!("GET {url}: {e}"))?;
        if !resp.status().is_success() {
            let status = resp.status().as_u16();
            let body = resp.bytes().await.unwrap_or_default();
            let answer = Answer {
                status,
                body: serde_json::from_slice(&body).unwrap_or(Value::Null),
            };
            return Err(format!("GET {url}: {}", answer.error_message()));
        }
        Ok(resp)
    }

    /// GET that must succeed.
    pub async fn get_ok(&self, url: &str) -> Result<Value, String> {
        let a = self.send(reqwest::Method::GET, url, None).await?;
        if a.status != 200 {
            return Err(format!("GET {url}: {}", a.error_message()));
        }
        Ok(a.body)
    }

    /// The URL of a parent collection under `version`.
    pub fn parents_url(&self, version: &str, kind: ParentKind) -> String {
        format!("{}/{version}/{}/{}", self.base, kind.root(), kind.collection())
    }

    /// The URL of one parent.
    pub fn parent_url(&self, version: &str, kind: ParentKind, id: &str) -> String {
        format!("{}/{}", self.parents_url(version, kind), segment(id))
    }

    /// The URL of a status collection under a parent.
    pub fn statuses_url(&self, version: &str, kind: StatusKind, parent_id: &str) -> String {
        format!(
            "{}/{}",
            self.parent_url(version, kind.parent, parent_id),
            kind.segment()
        )
    }
}

/// An id as one path segment.
pub fn segment(id: &str) -> String {
    utf8_percent_encode(id, NON_ALPHANUMERIC).to_string()
}
