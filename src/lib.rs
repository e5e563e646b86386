//! statusd: a durable, Graph-faithful store for Microsoft Intune status
//! reports, served over gRPC and Microsoft Graph REST from one process.
//!
//! Layers, outermost first: `server` (process, listener, shutdown; `tls` terminates TLS there) →
//! `grpc` (edge: proto ↔ model) → `service` (the operations, once for all
//! nine collections) → `model` (entities and every validation rule) →
//! `store` (sled trees, keys, codec, the write-ahead log). `auth` is one layer in
//! front of both edges (bearer tokens, Graph permissions, audit); `cli`
//! holds the subcommands besides serving; `dashboard` is the read-only page at
//! `/`, a client of the REST API.

pub mod auth;
pub mod backup;
pub mod cli;
pub mod config;
pub mod dashboard;
pub mod error;
pub mod grpc;
pub mod metrics;
pub mod model;
pub mod rest;
pub mod server;
pub mod service;
pub mod store;
pub mod tls;

pub use config::Config;
pub use server::Server;

/// The generated protobuf and tonic code of `proto/statusd/v1`.
pub mod pb {
    #![allow(missing_docs, clippy::all, clippy::pedantic)]
    tonic::include_proto!("statusd.v1");
    /// Encoded descriptor set of `proto/`, served by reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("statusd_descriptor");
}
