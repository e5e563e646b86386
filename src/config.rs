//! Configuration: command-line flags, each with a `STATUSD_*` environment
//! fallback, and defaults that run locally with no setup.

use crate::store::{Durability, FaultInjection};
use clap::Parser;
use std::net::SocketAddr;
use std::path::PathBuf;

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

    /// sled page cache size in MiB (bounds the memory used for cached data).
    #[arg(long, env = "STATUSD_CACHE_MB", default_value_t = 256)]
    pub cache_mb: u64,

    /// When writes are acknowledged: `durable` (after fsync; the default) or
    /// `relaxed` (at once; a crash may lose the last ~500 ms of writes).
    #[arg(long, env = "STATUSD_DURABILITY", value_enum, default_value = "durable")]
    pub durability: Durability,

    /// Free space (MiB) the data directory's disk must keep: below it writes
    /// are refused (UNAVAILABLE / 507) and reads go on; they resume once space
    /// is freed.
    #[arg(long, env = "STATUSD_MIN_FREE_MB", default_value_t = 64)]
    pub min_free_mb: u64,

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

    /// Test hooks (faults injected into storage); not settable from the command line.
    #[arg(skip)]
    pub faults: FaultInjection,
}

impl Config {
    /// A configuration for tests and embedding: the defaults, with `data_dir`
    /// and an ephemeral port on loopback.
    pub fn for_data_dir(data_dir: impl Into<PathBuf>) -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            data_dir: data_dir.into(),
            cache_mb: 64,
            durability: Durability::Durable,
            max_message_kb: 1024,
            min_free_mb: 1,
            max_connections: 1024,
            max_streams: 256,
            header_timeout_secs: 10,
            request_timeout_secs: 30,
            idle_timeout_secs: 300,
            faults: FaultInjection::default(),
        }
    }
}
