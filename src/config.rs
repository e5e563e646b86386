//! Configuration: command-line flags, each with a `STATUSD_*` environment
//! fallback, and defaults that run locally with no setup.

use crate::store::{Durability, FaultInjection};
use clap::Parser;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// statusd: a durable, Graph-faithful store for Intune status reports,
/// served over gRPC and Microsoft Graph REST on one port.
#[derive(Debug, Clone, Parser)]
#[command(name = "statusd", version, about)]
pub struct Config {
    /// Address to listen on, for gRPC (HTTP/2) and REST (HTTP/1.1 and HTTP/2).
    #[arg(long, env = "STATUSD_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Directory of the sled database (created if missing).
    #[arg(long, env = "STATUSD_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,

    /// Run on PostgreSQL (or a PostgreSQL-protocol engine) instead of sled,
    /// e.g. `postgres://statusd@127.0.0.1:5432/statusd`; several statusd
    /// replicas may share the database. Host lists
    /// (`postgres://h1:5432,h2:5432/statusd?target_session_attrs=read-write`)
    /// fail over to whichever host is the primary. `--data-dir` is then unused.
    #[arg(long, env = "STATUSD_DATABASE_URL", value_name = "URL", hide_env_values = true)]
    pub database_url: Option<String>,

    /// PEM CA certificate(s) the PostgreSQL server's certificate must chain to,
    /// when the URL says `sslmode=require` (without it: the Mozilla roots).
    #[arg(long, env = "STATUSD_DATABASE_CA", value_name = "PATH")]
    pub database_ca: Option<PathBuf>,

    /// Most PostgreSQL connections this process opens (concurrent requests
    /// beyond it share them, pipelined).
    #[arg(long, env = "STATUSD_DATABASE_POOL_SIZE", default_value_t = 32)]
    pub database_pool_size: usize,

    /// Seconds to wait for a PostgreSQL connection (to open, or to come free)
    /// before a request is answered UNAVAILABLE / 503.
    #[arg(long, env = "STATUSD_DATABASE_TIMEOUT_SECS", default_value_t = 5)]
    pub database_timeout_secs: u64,

    /// sled page cache size in MiB (bounds the memory used for cached data).
    #[arg(long, env = "STATUSD_CACHE_MB", default_value_t = 256)]
    pub cache_mb: u64,

    /// When writes are acknowledged: `durable` (after the write-ahead log's
    /// fsync; the default) or `relaxed` (once the log is written to the OS:
    /// survives a crash of statusd, a power loss may lose the last ~500 ms).
    #[arg(long, env = "STATUSD_DURABILITY", value_enum, default_value = "durable")]
    pub durability: Durability,

    /// Free space (MiB) the data directory's disk must keep: below it writes
    /// are refused (UNAVAILABLE / 507) and reads go on; they resume once space
    /// is freed.
    #[arg(long, env = "STATUSD_MIN_FREE_MB", default_value_t = 64)]
    pub min_free_mb: u64,

    /// How many revisions of history Watch keeps for resuming (sled): a
    /// watch may start from any revision within the last this many; older
    /// ones are OUT_OF_RANGE. Each kept status change takes about the size
    /// of the status on disk.
    #[arg(long, env = "STATUSD_WATCH_HISTORY", default_value_t = 1_000_000)]
    pub watch_history: u64,

    /// Largest accepted gRPC message or REST request body, in KiB.
    #[arg(long, env = "STATUSD_MAX_MESSAGE_KB", default_value_t = 1024)]
    pub max_message_kb: usize,

    /// Most client connections served at once; further clients wait in the
    /// listen backlog until one closes.
    #[arg(long, env = "STATUSD_MAX_CONNECTIONS", default_value_t = 1024)]
    pub max_connections: usize,

    /// Most concurrent HTTP/2 streams (gRPC calls) per connection.
    #[arg(long, env = "STATUSD_MAX_STREAMS", default_value_t = 256)]
    pub max_streams: u32,

    /// Seconds a client may take to send a request's headers; an idle HTTP/1
    /// connection is closed after this long.
    #[arg(long, env = "STATUSD_HEADER_TIMEOUT_SECS", default_value_t = 10)]
    pub header_timeout_secs: u64,

    /// Longest a request may run, in seconds (a gRPC `grpc-timeout` may ask
    /// for less): then DEADLINE_EXCEEDED / 504.
    #[arg(long, env = "STATUSD_REQUEST_TIMEOUT_SECS", default_value_t = 30)]
    pub request_timeout_secs: u64,

    /// Seconds a connection may stay without a request in flight before it
    /// is closed (HTTP/2 gets a GOAWAY; clients reconnect on their next call).
    /// Also bounds the wait for a new connection's first bytes.
    #[arg(long, env = "STATUSD_IDLE_TIMEOUT_SECS", default_value_t = 300)]
    pub idle_timeout_secs: u64,

    /// Serve `GET /metrics` (Prometheus text format) on this address instead
    /// of on `--listen` (plain HTTP, no auth: keep it on a private network).
    #[arg(long, env = "STATUSD_METRICS_LISTEN", value_name = "ADDR")]
    pub metrics_listen: Option<SocketAddr>,

    /// Log lines as `text` (colour only on a terminal) or `json` (one object
    /// per line, for log shippers).
    #[arg(long, env = "STATUSD_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,

    /// Test hooks (faults injected into storage); not settable from the command line.
    #[arg(skip)]
    pub faults: FaultInjection,

    /// Most records a query with `$orderby` may match: sorting needs them all
    /// in memory on every page, so beyond this the query is refused (400)
    /// with advice to filter more narrowly or page in id order.
    #[arg(long, env = "STATUSD_MAX_ORDERBY_MATCHES", default_value_t = crate::service::DEFAULT_MAX_ORDERBY_MATCHES)]
    pub max_orderby_matches: usize,

    /// The URL clients reach this server at (e.g. `https://statusd.example.com`,
    /// behind a proxy), used for `@odata.context` and `@odata.nextLink`.
    /// Without it those links use the request's `Host` when it is a plain
    /// `host[:port]`, else the listening address: a client-chosen `Host` must
    /// not turn the server's links into links to another site.
    #[arg(long, env = "STATUSD_PUBLIC_URL", value_parser = public_url)]
    pub public_url: Option<String>,

    /// PEM certificate chain (leaf first) to serve TLS with; needs `--tls-key`.
    /// With it the listener speaks only TLS (gRPC over h2 via ALPN, REST over
    /// HTTP/1.1 or h2); plaintext clients are refused. Re-read on SIGHUP.
    #[arg(long, env = "STATUSD_TLS_CERT", value_name = "PATH")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of `--tls-cert`. Re-read on SIGHUP.
    #[arg(long, env = "STATUSD_TLS_KEY", value_name = "PATH")]
    pub tls_key: Option<PathBuf>,

    /// PEM CA certificate(s): clients must present a certificate issued by one
    /// of them (mutual TLS between services). Re-read on SIGHUP.
    #[arg(long, env = "STATUSD_TLS_CLIENT_CA", value_name = "PATH")]
    pub tls_client_ca: Option<PathBuf>,

    /// Turns bearer-token auth on: the JWKS holding the token issuer's public
    /// keys, as a file or an http(s) URL (e.g. Entra ID's
    /// `https://login.microsoftonline.com/{tenant}/discovery/v2.0/keys`).
    /// Read at start (a failure stops start-up) and again, at most once a
    /// minute, when a token names a key id the cached set lacks.
    #[arg(long, env = "STATUSD_AUTH_JWKS", value_name = "PATH_OR_URL")]
    pub auth_jwks: Option<String>,

    /// The `iss` every token must carry (required with `--auth-jwks`), e.g.
    /// `https://login.microsoftonline.com/{tenant}/v2.0`.
    #[arg(long, env = "STATUSD_AUTH_ISSUER")]
    pub auth_issuer: Option<String>,

    /// The audience a token's `aud` must name (required with `--auth-jwks`);
    /// several may be given, comma-separated (Entra ID issues both the
    /// application ID URI and the client id as audiences).
    #[arg(long, env = "STATUSD_AUTH_AUDIENCE", value_delimiter = ',')]
    pub auth_audience: Vec<String>,

    /// Allows auth over plain HTTP on a non-loopback address (tokens then
    /// cross the network in clear: only behind a TLS-terminating proxy).
    #[arg(long, env = "STATUSD_INSECURE_NO_TLS")]
    pub insecure_no_tls: bool,

    /// Allows a non-loopback `--listen` without `--auth-jwks`: anyone who can
    /// reach the port can read and change everything. Logged at start and
    /// every hour.
    #[arg(long, env = "STATUSD_INSECURE_NO_AUTH")]
    pub insecure_no_auth: bool,

    /// Least time between two reads of the JWKS (test hook; one minute).
    #[arg(skip = crate::auth::JWKS_MIN_REFETCH)]
    pub auth_jwks_min_refetch: Duration,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines (colour only when stdout is a terminal).
    Text,
    /// One JSON object per line.
    Json,
}

/// Why a configuration may not start: the exposure rule of the listener.
///
/// A server on loopback is reachable only from this machine, so it may run
/// without auth or TLS (the local default). Anywhere else, a server without
/// auth gives the whole store to anyone who reaches the port, and bearer
/// tokens over plain HTTP can be read and replayed by anyone on the path:
/// both need an explicit, named opt-out.
pub fn check_exposure(
    listen: SocketAddr,
    auth_enabled: bool,
    tls_enabled: bool,
    insecure_no_auth: bool,
    insecure_no_tls: bool,
) -> Result<(), String> {
    let loopback = match listen.ip() {
        std::net::IpAddr::V6(v6) => v6.to_canonical().is_loopback(),
        v4 => v4.is_loopback(),
    };
    if loopback {
        return Ok(());
    }
    if !auth_enabled && !insecure_no_auth {
        return Err(format!(
            "refusing to listen on {listen} without authentication: enable bearer-token auth with \
             --auth-jwks PATH_OR_URL --auth-issuer ISSUER --auth-audience AUDIENCE (STATUSD_AUTH_JWKS, \
             STATUSD_AUTH_ISSUER, STATUSD_AUTH_AUDIENCE; `statusd dev-keys DIR` makes a key pair to try it), \
             listen on a loopback address such as 127.0.0.1, or pass --insecure-no-auth to accept the risk"
        ));
    }
    if auth_enabled && !tls_enabled && !insecure_no_tls {
        return Err(format!(
            "refusing to accept bearer tokens over plain HTTP on {listen}: tokens would cross the network \
             in clear; enable TLS, listen on a loopback address, or pass --insecure-no-tls when a \
             TLS-terminating proxy sits in front"
        ));
    }
    Ok(())
}

/// Checks `--public-url`: an absolute http(s) URL with a host and no query,
/// fragment or user info; a trailing slash is dropped so paths can be appended.
pub fn public_url(s: &str) -> Result<String, String> {
    let (scheme, rest) = s
        .split_once("://")
        .ok_or_else(|| format!("'{s}' is not an absolute URL (expected e.g. https://statusd.example.com)"))?;
    if !matches!(scheme.to_ascii_lowercase().as_str(), "http" | "https") {
        return Err(format!("'{s}': the scheme must be http or https"));
    }
    if rest.contains(['?', '#']) {
        return Err(format!("'{s}' must not have a query or fragment"));
    }
    if rest.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("'{s}' must not contain spaces or control characters"));
    }
    let authority = rest.split('/').next().unwrap_or_default();
    if authority.contains('@') {
        return Err(format!("'{s}' must not carry user info"));
    }
    if !crate::rest::is_plain_authority(authority) {
        return Err(format!("'{s}' must name a host (and optional port) after the scheme"));
    }
    Ok(s.trim_end_matches('/').to_owned())
}

impl Config {
    /// The storage backend these flags select.
    pub fn backend(&self) -> crate::store::BackendConfig {
        use crate::store::{BackendConfig, PostgresConfig, SledConfig};
        match &self.database_url {
            Some(url) => BackendConfig::Postgres(PostgresConfig {
                url: url.clone(),
                ca: self.database_ca.clone(),
                pool_size: self.database_pool_size,
                connect_timeout: Duration::from_secs(self.database_timeout_secs.max(1)),
                watch_history: self.watch_history,
            }),
            None => BackendConfig::Sled(SledConfig {
                path: self.data_dir.clone(),
                cache_capacity: self.cache_mb.saturating_mul(1024 * 1024),
                durability: self.durability,
                min_free_bytes: self.min_free_mb.saturating_mul(1024 * 1024),
                watch_history: self.watch_history,
                faults: self.faults.clone(),
            }),
        }
    }

    /// A configuration for tests and embedding: the defaults, with `data_dir`
    /// and an ephemeral port on loopback.
    pub fn for_data_dir(data_dir: impl Into<PathBuf>) -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            data_dir: data_dir.into(),
            database_url: None,
            database_ca: None,
            database_pool_size: 32,
            database_timeout_secs: 5,
            cache_mb: 64,
            durability: Durability::Durable,
            max_message_kb: 1024,
            min_free_mb: 1,
            watch_history: 1_000_000,
            max_connections: 1024,
            max_streams: 256,
            header_timeout_secs: 10,
            request_timeout_secs: 30,
            idle_timeout_secs: 300,
            faults: FaultInjection::default(),
            metrics_listen: None,
            log_format: LogFormat::Text,
            max_orderby_matches: crate::service::DEFAULT_MAX_ORDERBY_MATCHES,
            public_url: None,
            tls_cert: None,
            tls_key: None,
            tls_client_ca: None,
            auth_jwks: None,
            auth_issuer: None,
            auth_audience: Vec::new(),
            insecure_no_tls: false,
            insecure_no_auth: false,
            auth_jwks_min_refetch: crate::auth::JWKS_MIN_REFETCH,
        }
    }

    /// Whether the listener serves TLS (both `--tls-cert` and `--tls-key` set;
    /// a half-configured pair refuses to start, see [`crate::tls::TlsFiles`]).
    pub fn tls_enabled(&self) -> bool {
        self.tls_cert.is_some() && self.tls_key.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_url_is_checked_and_trimmed() {
        assert_eq!(
            public_url("https://statusd.example.com/").unwrap(),
            "https://statusd.example.com"
        );
        assert_eq!(
            public_url("http://10.0.0.1:8443/graph").unwrap(),
            "http://10.0.0.1:8443/graph"
        );
        assert_eq!(public_url("http://[::1]:8080").unwrap(), "http://[::1]:8080");
        for bad in [
            "statusd.example.com",
            "ftp://statusd.example.com",
            "https://statusd.example.com/?a=b",
            "https://statusd.example.com/#x",
            "https://user@statusd.example.com",
            "https://",
            "https://exa mple.com",
            "https://example.com:port",
        ] {
            assert!(public_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn exposure_rule() {
        let lo: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let lo6: SocketAddr = "[::1]:8080".parse().unwrap();
        let any: SocketAddr = "0.0.0.0:8080".parse().unwrap();
        // (listen, auth, tls, insecure_no_auth, insecure_no_tls) -> starts?
        for (addr, auth, tls, no_auth, no_tls, ok) in [
            (lo, false, false, false, false, true),
            (lo6, false, false, false, false, true),
            (lo, true, false, false, false, true),
            (any, false, false, false, false, false),
            (any, false, true, false, false, false),
            (any, false, false, true, false, true),
            (any, true, false, false, false, false),
            (any, true, false, false, true, true),
            (any, true, true, false, false, true),
        ] {
            assert_eq!(
                check_exposure(addr, auth, tls, no_auth, no_tls).is_ok(),
                ok,
                "{addr} auth={auth} tls={tls} no_auth={no_auth} no_tls={no_tls}"
            );
        }
        let e = check_exposure(any, false, false, false, false).unwrap_err();
        assert!(e.contains("--auth-jwks") && e.contains("--insecure-no-auth"), "{e}");
    }

    #[test]
    fn flags_and_environment_reach_the_new_fields() {
        let c = Config::try_parse_from([
            "statusd",
            "--max-orderby-matches",
            "7",
            "--public-url",
            "https://statusd.example.com/",
        ])
        .unwrap();
        assert_eq!(c.max_orderby_matches, 7);
        assert_eq!(c.public_url.as_deref(), Some("https://statusd.example.com"));
        assert!(Config::try_parse_from(["statusd", "--public-url", "https://a.test?x"]).is_err());
        let d = Config::try_parse_from(["statusd"]).unwrap();
        assert_eq!(d.max_orderby_matches, crate::service::DEFAULT_MAX_ORDERBY_MATCHES);
        assert_eq!(d.public_url, None);
        assert!(!d.tls_enabled());
    }

    #[test]
    fn tls_flags_reach_the_config() {
        let c = Config::try_parse_from([
            "statusd",
            "--tls-cert",
            "/etc/statusd/cert.pem",
            "--tls-key",
            "/etc/statusd/key.pem",
            "--tls-client-ca",
            "/etc/statusd/clients.pem",
        ])
        .unwrap();
        assert!(c.tls_enabled());
        assert_eq!(c.tls_cert, Some(PathBuf::from("/etc/statusd/cert.pem")));
        assert_eq!(c.tls_key, Some(PathBuf::from("/etc/statusd/key.pem")));
        assert_eq!(c.tls_client_ca, Some(PathBuf::from("/etc/statusd/clients.pem")));
        let half = Config::try_parse_from(["statusd", "--tls-cert", "c.pem"]).unwrap();
        assert!(!half.tls_enabled());
        assert!(!Config::for_data_dir("d").tls_enabled());
    }
}
