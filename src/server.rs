//! The process: opens the store, builds the gRPC (and REST) routes on one
//! listener, and shuts down gracefully.
//!
//! One port serves both protocols: tonic's routes become an axum router, so
//! `grpcurl -plaintext localhost:8080 list` and `curl localhost:8080/v1.0/...`
//! reach the same service. Shutdown stops accepting, lets in-flight requests
//! finish, then flushes the store.

use crate::config::Config;
use crate::error::{Error, Result};
use crate::grpc::GrpcApi;
use crate::pb;
use crate::service::Service;
use crate::store::{SledConfig, SledStore, Store};
use axum::http::{header, HeaderValue, Request};
use axum::response::{IntoResponse, Response};
use axum::serve::ListenerExt;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A running server.
pub struct Server {
    addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<Result<()>>,
    store: Arc<SledStore>,
}

impl Server {
    /// Opens the store and starts serving on `config.listen`.
    pub async fn start(config: Config) -> Result<Server> {
        let store = Arc::new(SledStore::open(&SledConfig {
            path: config.data_dir.clone(),
            cache_capacity: config.cache_mb.saturating_mul(1024 * 1024),
            durability: config.durability,
        })?);
        let service = Service::new(store.clone() as Arc<dyn Store>);
        let app = router(service, &config)?;
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|e| Error::Unavailable(format!("cannot listen on {}: {e}", config.listen)))?;
        let addr = listener
            .local_addr()
            .map_err(|e| Error::Unavailable(format!("cannot read the listening address: {e}")))?;
        let (shutdown, mut signal) = watch::channel(false);
        // Small responses must not wait for delayed ACKs (Nagle): set TCP_NODELAY.
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = signal.wait_for(|stop| *stop).await;
                })
                .await
                .map_err(|e| Error::Unavailable(format!("server error: {e}")))
        });
        tracing::info!(%addr, data_dir = %config.data_dir.display(), durability = ?config.durability, "statusd serving gRPC and REST");
        Ok(Server {
            addr,
            shutdown,
            task,
            store,
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The store, for statistics.
    pub fn store(&self) -> &Arc<SledStore> {
        &self.store
    }

    /// Runs until `signal` completes, then shuts down gracefully.
    pub async fn run_until(self, signal: impl Future<Output = ()>) -> Result<()> {
        signal.await;
        self.shutdown().await
    }

    /// Stops accepting, drains in-flight requests, flushes the store.
    pub async fn shutdown(self) -> Result<()> {
        let _ = self.shutdown.send(true);
        let served = self
            .task
            .await
            .map_err(|e| Error::Internal(format!("server task failed: {e}")))?;
        self.store.flush().await?;
        tracing::info!("statusd stopped; storage flushed");
        served
    }
}

/// Builds the router serving gRPC (services, reflection, health) and REST.
fn router(service: Service, config: &Config) -> Result<axum::Router> {
    let limit = config.max_message_kb.saturating_mul(1024);
    let rest = crate::rest::router(service.clone(), limit);
    let api = GrpcApi::new(service);
    let reflection_v1 = reflection()
        .build_v1()
        .map_err(|e| Error::Internal(format!("reflection: {e}")))?;
    let reflection_v1alpha = reflection()
        .build_v1alpha()
        .map_err(|e| Error::Internal(format!("reflection: {e}")))?;
    let (health_reporter, health) = tonic_health::server::health_reporter();
    tokio::spawn(async move {
        use pb::device_compliance_policies_server::DeviceCompliancePoliciesServer as A;
        use pb::device_configurations_server::DeviceConfigurationsServer as C;
        use pb::mobile_app_configurations_server::MobileAppConfigurationsServer as B;
        health_reporter.set_serving::<A<GrpcApi>>().await;
        health_reporter.set_serving::<B<GrpcApi>>().await;
        health_reporter.set_serving::<C<GrpcApi>>().await;
    });
    let mut routes = tonic::service::Routes::builder();
    routes
        .add_service(
            pb::device_compliance_policies_server::DeviceCompliancePoliciesServer::new(api.clone())
                .max_decoding_message_size(limit),
        )
        .add_service(
            pb::mobile_app_configurations_server::MobileAppConfigurationsServer::new(api.clone())
                .max_decoding_message_size(limit),
        )
        .add_service(
            pb::device_configurations_server::DeviceConfigurationsServer::new(api.clone())
                .max_decoding_message_size(limit),
        )
        .add_service(pb::diagnostics_server::DiagnosticsServer::new(api))
        .add_service(health)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha);
    let grpc = routes.routes().into_axum_router();
    Ok(grpc.merge(rest).fallback(fallback))
}

/// Reflection over our protos, health, and google.rpc (so grpcurl can
/// decode the BadRequest details of INVALID_ARGUMENT errors).
fn reflection() -> tonic_reflection::server::Builder<'static> {
    tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
}

/// Unknown paths: gRPC callers get UNIMPLEMENTED, others Graph's 404 body.
async fn fallback(req: Request<axum::body::Body>) -> Response {
    let is_grpc = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/grpc"));
    if is_grpc {
        let mut resp = Response::new(axum::body::Body::empty());
        let headers = resp.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
        headers.insert("grpc-status", HeaderValue::from_static("12"));
        headers.insert(
            "grpc-message",
            HeaderValue::from_static("unknown%20service%20or%20method"),
        );
        return resp;
    }
    let ids = crate::rest::error::RequestIds::new(req.headers());
    let error = crate::rest::error::GraphError::bad_request(format!(
        "Invalid version or path '{}': Graph paths start with /v1.0, /beta or /localtest.",
        req.uri().path()
    ));
    ids.finish(error.into_response())
}
