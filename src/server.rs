//! The process: opens the store, builds the gRPC and REST routes on one
//! listener, serves connections within limits, and shuts down gracefully.
//!
//! One port serves both protocols: tonic's routes become an axum router, so
//! `grpcurl -plaintext localhost:8080 list` and `curl localhost:8080/v1.0/...`
//! reach the same service. Connections are served by hyper directly (not
//! `axum::serve`) so that slow or idle clients are bounded: a cap on open
//! connections, a header read timeout, a cap on HTTP/2 streams per
//! connection, a deadline on every request, and idle connections closed (a
//! connection must start a request within the header timeout, and is closed
//! after `--idle-timeout-secs` with none in flight). Shutdown stops accepting,
//! lets in-flight requests finish, then flushes the store.
//!
//! With `--tls-cert`/`--tls-key` the same loop terminates TLS (see
//! [`crate::tls`]) before hyper sees the connection: the handshake must end
//! within the first-request bound, so a client that never finishes one does
//! not hold a slot; a plaintext client fails the handshake and is closed.
//! The plaintext path is unchanged: the connection task is the same,
//! monomorphised over the raw TCP stream.

use crate::config::Config;
use crate::error::{Error, Result};
use crate::grpc::GrpcApi;
use crate::pb;
use crate::service::{QueryLimits, Service};
use crate::store::Store;
use crate::tls::{Tls, TlsFiles};
use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinHandle;
use tower::ServiceExt;

/// How long shutdown waits for in-flight requests before closing anyway.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// A running server.
pub struct Server {
    addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<()>,
    store: Arc<dyn Store>,
    /// The listener's TLS configuration, when it serves TLS.
    tls: Option<Arc<Tls>>,
    /// The hourly reminder that `--insecure-no-auth` is in force.
    insecure_reminder: Option<JoinHandle<()>>,
    /// The `--metrics-listen` server, and its address.
    metrics: Option<(JoinHandle<()>, SocketAddr)>,
}

/// How often `--insecure-no-auth` is logged again while it is in force.
const INSECURE_REMINDER: Duration = Duration::from_secs(3600);

impl Server {
    /// Opens the store and starts serving on `config.listen`.
    ///
    /// With TLS configured, every TLS file is read and checked first (a bad
    /// or missing one fails with a message naming it and its flag, before the
    /// store is opened), and a task reloads them on SIGHUP.
    pub async fn start(config: Config) -> Result<Server> {
        crate::config::check_exposure(
            config.listen,
            config.auth_jwks.is_some(),
            config.tls_enabled(),
            config.insecure_no_auth,
            config.insecure_no_tls,
        )
        .map_err(|m| Error::invalid("configuration", m))?;
        let tls = TlsFiles::from_config(&config)
            .and_then(|files| files.map(Tls::load).transpose())
            .map_err(|e| Error::Unavailable(format!("cannot start TLS: {e}")))?
            .map(Arc::new);
        let auth = crate::auth::Auth::from_config(&config)
            .await
            .map_err(|m| Error::invalid("configuration", m))?;
        let backend = config.backend();
        let store = backend.open().await?;
        let (shutdown, signal) = watch::channel(false);
        let service = Service::new(store.clone())
            .with_query_limits(QueryLimits {
                max_orderby_matches: config.max_orderby_matches,
            })
            .with_shutdown(signal.clone());
        crate::metrics::handle();
        let metrics = match config.metrics_listen {
            Some(at) => {
                let listener = TcpListener::bind(at)
                    .await
                    .map_err(|e| Error::Unavailable(format!("cannot listen on {at} (--metrics-listen): {e}")))?;
                let bound = listener
                    .local_addr()
                    .map_err(|e| Error::Unavailable(format!("cannot read the metrics address: {e}")))?;
                tracing::info!(addr = %bound, "serving /metrics");
                let app = crate::metrics::router(service.clone());
                let task = tokio::spawn(async move {
                    if let Err(e) = axum::serve(listener, app).await {
                        tracing::error!(error = %e, "the metrics listener failed");
                    }
                });
                Some((task, bound))
            }
            None => None,
        };
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|e| Error::Unavailable(format!("cannot listen on {}: {e}", config.listen)))?;
        let addr = listener
            .local_addr()
            .map_err(|e| Error::Unavailable(format!("cannot read the listening address: {e}")))?;
        // Built after binding: REST links fall back to the address actually bound.
        let auth_enabled = auth.is_some();
        let app = router(service, &config, addr, auth)?;
        if let Some(tls) = &tls {
            tokio::spawn(crate::tls::reload_on_sighup(tls.clone(), signal.clone()));
        }
        let task = tokio::spawn(accept_loop(listener, app, tls.clone(), config.clone(), signal));
        tracing::info!(%addr, tls = tls.is_some(), auth = auth_enabled, store = %backend.describe(), "statusd serving gRPC and REST");
        let insecure_reminder = (config.insecure_no_auth && !auth_enabled).then(|| {
            tokio::spawn(async move {
                let mut every = tokio::time::interval(INSECURE_REMINDER);
                loop {
                    every.tick().await;
                    tracing::warn!(%addr, "--insecure-no-auth: no authentication; anyone who reaches this address can read and change every record");
                }
            })
        });
        Ok(Server {
            addr,
            shutdown,
            task,
            store,
            tls,
            insecure_reminder,
            metrics,
        })
    }

    /// Re-reads the TLS certificate, key and client CA (what SIGHUP does):
    /// new connections use them, established ones keep theirs. On error the
    /// previous files stay in force. Without TLS there is nothing to reload.
    pub fn reload_tls(&self) -> Result<()> {
        match &self.tls {
            Some(tls) => tls
                .reload()
                .map_err(|e| Error::Unavailable(format!("TLS reload failed: {e}"))),
            None => Ok(()),
        }
    }

    /// The `--metrics-listen` address actually bound, if any.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().map(|(_, addr)| *addr)
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Runs until `signal` completes, then shuts down gracefully.
    pub async fn run_until(self, signal: impl Future<Output = ()>) -> Result<()> {
        signal.await;
        self.shutdown().await
    }

    /// Stops accepting, drains in-flight requests, flushes the store.
    pub async fn shutdown(self) -> Result<()> {
        let _ = self.shutdown.send(true);
        if let Some(reminder) = &self.insecure_reminder {
            reminder.abort();
        }
        if let Some((metrics, _)) = &self.metrics {
            metrics.abort();
        }
        self.task
            .await
            .map_err(|e| Error::Internal(format!("server task failed: {e}")))?;
        self.store.flush().await?;
        tracing::info!("statusd stopped; storage flushed");
        Ok(())
    }
}

/// Accepts connections until shutdown; each is served by hyper (HTTP/1.1 or
/// HTTP/2, detected per connection) under the configured limits. Shutdown
/// stops accepting, asks every connection to finish its in-flight requests
/// and close, and waits (at most [`DRAIN_TIMEOUT`]) until all have.
async fn accept_loop(
    listener: TcpListener,
    app: axum::Router,
    tls: Option<Arc<Tls>>,
    config: Config,
    mut stop: watch::Receiver<bool>,
) {
    let max_connections = config.max_connections.clamp(1, Semaphore::MAX_PERMITS);
    let permits = Arc::new(Semaphore::new(max_connections));
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(config.header_timeout_secs.max(1)));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(config.max_streams.max(1))
        .keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(20));
    let builder = Arc::new(builder);
    let limits = IdleLimits {
        first_request: Duration::from_secs(config.header_timeout_secs.max(1)),
        idle: Duration::from_secs(config.idle_timeout_secs.max(1)),
    };
    loop {
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            _ = stop.wait_for(|s| *s) => break,
        };
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.wait_for(|s| *s) => break,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // Small responses must not wait for delayed ACKs (Nagle).
        let _ = stream.set_nodelay(true);
        match &tls {
            None => tokio::spawn(serve_connection(
                stream,
                app.clone(),
                builder.clone(),
                limits,
                stop.clone(),
                permit,
            )),
            Some(tls) => tokio::spawn(serve_tls_connection(
                stream,
                tls.acceptor(),
                app.clone(),
                builder.clone(),
                limits,
                stop.clone(),
                permit,
            )),
        };
    }
    drop(listener);
    let all = u32::try_from(max_connections).unwrap_or(u32::MAX);
    if tokio::time::timeout(DRAIN_TIMEOUT, permits.acquire_many(all))
        .await
        .is_err()
    {
        tracing::warn!("in-flight requests did not finish within {DRAIN_TIMEOUT:?}; closing");
    }
}

/// How long a connection may go without a request in flight.
#[derive(Debug, Clone, Copy)]
struct IdleLimits {
    /// Before its first request starts (including the wait for its first
    /// byte, before the protocol is even known).
    first_request: Duration,
    /// After that.
    idle: Duration,
}

/// One connection's requests in flight and when it last had one, so that an
/// idle connection can be closed: a connection slot is only held while the
/// client uses it.
struct Activity {
    born: Instant,
    in_flight: AtomicUsize,
    /// Milliseconds after `born` of the last request start or end.
    last_ms: AtomicU64,
    served: AtomicBool,
}

impl Activity {
    fn new() -> Arc<Self> {
        Arc::new(Activity {
            born: Instant::now(),
            in_flight: AtomicUsize::new(0),
            last_ms: AtomicU64::new(0),
            served: AtomicBool::new(false),
        })
    }

    fn touch(&self) {
        let ms = u64::try_from(self.born.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    /// A request starts; the guard ends it when its response body is done.
    fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.served.store(true, Ordering::Relaxed);
        self.touch();
        InFlight(self.clone())
    }

    /// Whether the connection has been idle past its limit.
    fn idle_past(&self, limits: IdleLimits) -> bool {
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            return false;
        }
        let limit = if self.served.load(Ordering::Relaxed) {
            limits.idle
        } else {
            limits.first_request
        };
        let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        self.born.elapsed().saturating_sub(last) >= limit
    }
}

/// A request in flight on a connection (see [`Activity`]).
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A response body that keeps its request counted as in flight until the
/// body is done (streamed responses included).
struct TrackedBody {
    inner: axum::body::Body,
    _in_flight: InFlight,
}

impl http_body::Body for TrackedBody {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<std::result::Result<http_body::Frame<Self::Data>, Self::Error>>> {
        std::pin::Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Serves one plaintext connection: waits (bounded) for its first byte, then
/// lets hyper serve it (see [`serve_http`]). The connection slot (`_permit`)
/// is returned when this ends.
async fn serve_connection(
    stream: tokio::net::TcpStream,
    app: axum::Router,
    builder: Arc<auto::Builder<TokioExecutor>>,
    limits: IdleLimits,
    stop: watch::Receiver<bool>,
    _permit: tokio::sync::OwnedSemaphorePermit,
) {
    // Protocol detection waits for bytes with no timer of its own: a client
    // that connects and stays silent must not keep its slot.
    let mut first = [0u8; 1];
    match tokio::time::timeout(limits.first_request, stream.peek(&mut first)).await {
        Ok(Ok(n)) if n > 0 => {}
        _ => return,
    }
    serve_http(stream, app, builder, limits, stop).await;
}

/// Serves one TLS connection: the handshake must finish within the
/// first-request bound (a silent or stalled client must not keep its slot,
/// and a plaintext client fails it at once), then hyper serves the decrypted
/// stream (see [`serve_http`]). The connection slot (`_permit`) is returned
/// when this ends.
async fn serve_tls_connection(
    stream: tokio::net::TcpStream,
    acceptor: tokio_rustls::TlsAcceptor,
    app: axum::Router,
    builder: Arc<auto::Builder<TokioExecutor>>,
    limits: IdleLimits,
    stop: watch::Receiver<bool>,
    _permit: tokio::sync::OwnedSemaphorePermit,
) {
    let stream = match tokio::time::timeout(limits.first_request, acceptor.accept(stream)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "TLS handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!("TLS handshake did not finish within the first-request bound");
            return;
        }
    };
    serve_http(stream, app, builder, limits, stop).await;
}

/// Lets hyper serve a connection's requests (HTTP/1.1 or HTTP/2, detected
/// from its first bytes), closing it gracefully when it has been idle too
/// long or the server shuts down. Generic so that plaintext and TLS share it
/// without boxing the stream.
async fn serve_http<IO>(
    io: IO,
    app: axum::Router,
    builder: Arc<auto::Builder<TokioExecutor>>,
    limits: IdleLimits,
    mut stop: watch::Receiver<bool>,
) where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let activity = Activity::new();
    let tracker = activity.clone();
    let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
        let in_flight = tracker.begin();
        let response = app.clone().oneshot(req);
        async move {
            let response = response.await?;
            Ok::<_, std::convert::Infallible>(response.map(|inner| {
                axum::body::Body::new(TrackedBody {
                    inner,
                    _in_flight: in_flight,
                })
            }))
        }
    });
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
    tokio::pin!(conn);
    let tick = (limits.idle.min(limits.first_request) / 4).max(Duration::from_millis(100));
    let mut ticker = tokio::time::interval(tick);
    let mut closing = false;
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                return;
            }
            _ = stop.wait_for(|s| *s), if !closing => {
                conn.as_mut().graceful_shutdown();
                closing = true;
            }
            _ = ticker.tick(), if !closing => {
                if activity.idle_past(limits) {
                    tracing::debug!("closing an idle connection");
                    conn.as_mut().graceful_shutdown();
                    closing = true;
                }
            }
        }
    }
}

/// Builds the router serving gRPC (services, reflection, health) and REST,
/// behind the auth layer when auth is on.
fn router(
    service: Service,
    config: &Config,
    addr: SocketAddr,
    auth: Option<Arc<crate::auth::Auth>>,
) -> Result<axum::Router> {
    let limit = config.max_message_kb.saturating_mul(1024);
    let links = crate::rest::Links::new(config.public_url.clone(), addr).over_tls(config.tls_enabled());
    let rest = crate::rest::router(service.clone(), limit, links);
    let api = GrpcApi::new(service.clone());
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
        health_reporter
            .set_serving::<pb::diagnostics_server::DiagnosticsServer<GrpcApi>>()
            .await;
    });
    // The size limit is enforced by `grpc::limit` (RESOURCE_EXHAUSTED), so
    // tonic's own check (OUT_OF_RANGE) is lifted on every service, health and
    // reflection included.
    let mut routes = tonic::service::Routes::builder();
    routes
        .add_service(
            pb::device_compliance_policies_server::DeviceCompliancePoliciesServer::new(api.clone())
                .max_decoding_message_size(usize::MAX),
        )
        .add_service(
            pb::mobile_app_configurations_server::MobileAppConfigurationsServer::new(api.clone())
                .max_decoding_message_size(usize::MAX),
        )
        .add_service(
            pb::device_configurations_server::DeviceConfigurationsServer::new(api.clone())
                .max_decoding_message_size(usize::MAX),
        )
        .add_service(pb::diagnostics_server::DiagnosticsServer::new(api).max_decoding_message_size(usize::MAX))
        .add_service(health.max_decoding_message_size(usize::MAX))
        .add_service(reflection_v1.max_decoding_message_size(usize::MAX))
        .add_service(reflection_v1alpha.max_decoding_message_size(usize::MAX));
    let grpc = routes
        .routes()
        .into_axum_router()
        .layer(axum::middleware::from_fn_with_state(
            limit,
            crate::grpc::limit::limit_body,
        ));
    let deadline = Duration::from_secs(config.request_timeout_secs.max(1));
    let app = grpc
        .merge(rest)
        .fallback(fallback)
        .layer(axum::middleware::from_fn_with_state(deadline, request_deadline));
    // Nothing runs for a request before it is authorised.
    let auth_layer = auth.clone();
    let app = match auth {
        Some(auth) => app.layer(axum::middleware::from_fn_with_state(
            auth,
            crate::auth::layer::authorize,
        )),
        None => app,
    };
    // Outermost: JSON batching, which sends each request of a batch through
    // everything above (auth, limits, deadline) as a request of its own.
    let batch = crate::rest::batch::Batch {
        app: app.clone(),
        body_limit: limit,
        deadline,
    };
    let app = app.layer(axum::middleware::from_fn_with_state(
        batch,
        crate::rest::batch::intercept,
    ));
    // `/metrics` here unless it has an address of its own; behind auth when
    // auth is on (any valid token: it is outside the permission table).
    let app = match config.metrics_listen {
        Some(_) => app,
        None => {
            let metrics = crate::metrics::router(service.clone());
            let metrics = match &auth_layer {
                Some(auth) => metrics.layer(axum::middleware::from_fn_with_state(
                    auth.clone(),
                    crate::auth::layer::authorize,
                )),
                None => metrics,
            };
            metrics.merge(app)
        }
    };
    // The API documents are open: they describe routes, hold no record.
    let metadata = |version: crate::rest::path::ApiVersion| {
        axum::routing::get(move || async move {
            (
                [
                    (axum::http::header::CONTENT_TYPE, "application/xml;charset=utf-8"),
                    (axum::http::HeaderName::from_static("odata-version"), "4.0"),
                ],
                crate::rest::metadata::document(version),
            )
        })
    };
    use crate::rest::path::ApiVersion;
    let app = axum::Router::new()
        .route(
            "/openapi.json",
            axum::routing::get(|| async { axum::Json(crate::rest::openapi::document().clone()) }),
        )
        .route("/v1.0/$metadata", metadata(ApiVersion::V1))
        .route("/beta/$metadata", metadata(ApiVersion::Beta))
        .route("/localtest/$metadata", metadata(ApiVersion::LocalTest))
        // The dashboard's page and assets: open too; its data calls go through the API.
        .merge(crate::dashboard::router())
        .merge(app);
    // Every request counted and timed; outermost, its id and log span.
    Ok(app
        .layer(axum::middleware::from_fn(crate::metrics::track))
        .layer(axum::middleware::from_fn(request_id)))
}

/// A request's id: the REST `request-id` (Graph's header), the gRPC
/// `x-request-id` (the client's, if it sent a usable one, else fresh).
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// Middleware: gives every request its id, answers it (`x-request-id` on
/// gRPC; REST's `request-id` is set by the Graph layer from the same id),
/// and runs the request inside a `request{id=…}` span, so every log line it
/// causes (audit lines included) names it.
async fn request_id(mut req: Request, next: Next) -> Response {
    use tracing::Instrument;
    let grpc = is_grpc(&req);
    let id = req
        .headers()
        .get("x-request-id")
        .filter(|_| grpc)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_owned);
    req.extensions_mut().insert(RequestId(id.clone()));
    // At ERROR level so that the span is on whenever any log line is (a
    // filter like `warn,statusd::audit=info` would drop an INFO span, and
    // with it the id from the lines it does let through).
    let span = tracing::error_span!("request", id = %id);
    let mut resp = next.run(req).instrument(span).await;
    if grpc {
        if let Ok(v) = axum::http::HeaderValue::from_str(&id) {
            resp.headers_mut().insert("x-request-id", v);
        }
    }
    resp
}

/// Reflection over our protos, health, and google.rpc (so grpcurl can
/// decode the BadRequest details of INVALID_ARGUMENT errors).
fn reflection() -> tonic_reflection::server::Builder<'static> {
    tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
}

/// Whether a request is a gRPC call (by its content type).
pub(crate) fn is_grpc(req: &Request) -> bool {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/grpc"))
}

/// A gRPC response carrying only a status (a "trailers-only" response).
pub(crate) fn grpc_status(code: tonic::Code, message: &str) -> Response {
    // tonic's own encoding of `grpc-status` and `grpc-message`.
    tonic::Status::new(code, message).into_http::<axum::body::Body>()
}

/// Parses gRPC's `grpc-timeout` header (`<up to 8 digits><H|M|S|m|u|n>`).
fn grpc_timeout(req: &Request) -> Option<Duration> {
    let v = req.headers().get("grpc-timeout")?.to_str().ok()?;
    let (digits, unit) = v.split_at(v.len().checked_sub(1)?);
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.saturating_mul(3600)),
        "M" => Duration::from_secs(n.saturating_mul(60)),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// Middleware: every request gets a deadline — the server's, or a shorter
/// `grpc-timeout` — and past it DEADLINE_EXCEEDED (gRPC) or 504 (REST). A
/// write that was already applied when its deadline passed stays applied, as
/// with any RPC whose response is lost. The 504 is a Graph error like any
/// other: it echoes the client's `client-request-id`, so the client can match
/// it to its request, and carries a fresh `request-id`.
async fn request_deadline(State(max): State<Duration>, req: Request, next: Next) -> Response {
    let grpc = is_grpc(&req);
    // Only the header is kept (ids are made only if the deadline passes).
    let client_request_id = req.headers().get("client-request-id").cloned();
    let limit = if grpc {
        grpc_timeout(&req).map_or(max, |t| t.min(max))
    } else {
        max
    };
    let answered = tokio::time::timeout(limit, next.run(req)).await;
    if answered.is_err() {
        crate::metrics::refused("deadline");
    }
    match answered {
        Ok(resp) => resp,
        Err(_) if grpc => grpc_status(tonic::Code::DeadlineExceeded, "the request's deadline passed"),
        Err(_) => {
            let error = crate::rest::error::GraphError {
                status: axum::http::StatusCode::GATEWAY_TIMEOUT,
                code: "GatewayTimeout",
                message: format!("The request did not complete within {limit:?}."),
                allow: None,
            };
            let mut headers = axum::http::HeaderMap::new();
            if let Some(v) = client_request_id {
                headers.insert("client-request-id", v);
            }
            crate::rest::error::RequestIds::new(&headers).finish(error.into_response())
        }
    }
}

/// Unknown paths: gRPC callers get UNIMPLEMENTED, others Graph's 400 body.
async fn fallback(req: Request) -> Response {
    if is_grpc(&req) {
        return grpc_status(tonic::Code::Unimplemented, "unknown service or method");
    }
    let ids = crate::rest::error::RequestIds::new(req.headers());
    let error = crate::rest::error::GraphError::bad_request(format!(
        "Invalid version or path '{}': Graph paths start with /v1.0, /beta or /localtest.",
        req.uri().path()
    ));
    ids.finish(error.into_response())
}
