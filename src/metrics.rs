//! Prometheus metrics: one recorder per process (`metrics` +
//! `metrics-exporter-prometheus`), fed from three places — the listener's
//! middleware ([`track`]: every request by edge, method, route and code, and
//! its latency), the refusals (size limits, auth, deadlines) and the storage
//! commit paths (group-commit batches and flush latency; PostgreSQL batch
//! sizes) — and rendered in the text exposition format at `GET /metrics`
//! (or on `--metrics-listen`).
//!
//! Route labels never carry ids: REST routes are templates
//! (`deviceManagement/deviceCompliancePolicies/{id}/userStatuses`), gRPC
//! routes are the method path, and anything the server does not serve
//! (unknown paths, UNIMPLEMENTED methods) is `other`, so a client cannot grow
//! the label set.

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Requests answered: `edge` (grpc, rest), `method`, `route`, `code` (the
/// HTTP status for REST, the gRPC status code number for gRPC).
pub const REQUESTS: &str = "statusd_requests_total";
/// Time to the response's headers, by `edge` and `route`.
pub const REQUEST_SECONDS: &str = "statusd_request_duration_seconds";
/// Requests refused before they reached the service, by `reason`.
pub const REFUSED: &str = "statusd_refused_total";
/// sled group commits (one write-ahead log append + fsync each).
pub const COMMITS: &str = "statusd_commit_batches_total";
/// Writers acknowledged per sled group commit.
pub const COMMIT_WRITES: &str = "statusd_commit_batch_writes";
/// Duration of one sled group commit (append, fsync, apply).
pub const COMMIT_SECONDS: &str = "statusd_commit_flush_seconds";
/// Rows per PostgreSQL create statement (see `store::postgres::batch`).
pub const PG_BATCH_ROWS: &str = "statusd_postgres_create_batch_rows";
/// Watch streams open now.
pub const WATCHERS: &str = "statusd_watchers";
/// Gauge: records stored, by collection (counted at every scrape).
pub const RECORDS: &str = "statusd_records";

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process's recorder (installed on first use).
pub fn handle() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let seconds = [
            0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
        ];
        let sizes = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &seconds)
            .and_then(|b| b.set_buckets_for_metric(Matcher::Full(COMMIT_WRITES.into()), &sizes))
            .and_then(|b| b.set_buckets_for_metric(Matcher::Full(PG_BATCH_ROWS.into()), &sizes))
            .expect("bucket lists are not empty")
            .build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("another metrics recorder is installed; /metrics shows only what statusd records there");
        }
        describe();
        // Histograms are drained into their buckets by the upkeep.
        let upkeep = handle.clone();
        std::thread::Builder::new()
            .name("statusd-metrics".into())
            .spawn(move || loop {
                std::thread::sleep(Duration::from_secs(5));
                upkeep.run_upkeep();
            })
            .expect("spawn the metrics upkeep thread");
        handle
    })
}

fn describe() {
    metrics::describe_counter!(REQUESTS, "Requests answered, by edge, method, route and code.");
    metrics::describe_histogram!(
        REQUEST_SECONDS,
        metrics::Unit::Seconds,
        "Time from a request's arrival to its response's headers."
    );
    metrics::describe_counter!(REFUSED, "Requests refused before the service, by reason.");
    metrics::describe_counter!(COMMITS, "sled group commits (write-ahead log append and fsync).");
    metrics::describe_histogram!(COMMIT_WRITES, "Writes acknowledged by one sled group commit.");
    metrics::describe_histogram!(
        COMMIT_SECONDS,
        metrics::Unit::Seconds,
        "Duration of one sled group commit."
    );
    metrics::describe_histogram!(PG_BATCH_ROWS, "Status creates sent to PostgreSQL in one statement.");
    metrics::describe_gauge!(WATCHERS, "Watch streams open now.");
    metrics::describe_gauge!(
        RECORDS,
        "Records stored, by collection (counted at the scrape: parents, and statuses from the tallies)."
    );
}

/// A REST response's route label, set by the REST edge from the route it
/// parsed (errors rebuilt by the Graph layer lose it; then it is derived
/// from the path here).
#[derive(Debug, Clone)]
pub struct RouteLabel(pub String);

/// Counts a refusal (`size`, `unauthenticated`, `forbidden`, `deadline`).
pub fn refused(reason: &'static str) {
    metrics::counter!(REFUSED, "reason" => reason).increment(1);
}

/// Middleware: counts and times every request.
pub async fn track(req: Request, next: Next) -> Response {
    let started = Instant::now();
    let grpc = crate::server::is_grpc(&req);
    let method = req.method().as_str().to_owned();
    let path = req.uri().path().to_owned();
    let resp = next.run(req).await;
    let (edge, code, route) = if grpc {
        let code = resp
            .headers()
            .get("grpc-status")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("0")
            .to_owned();
        // An unknown method is UNIMPLEMENTED: its path is not a label.
        let route = if code == "12" { "other".to_owned() } else { path };
        ("grpc", code, route)
    } else {
        let route = match resp.extensions().get::<RouteLabel>() {
            Some(RouteLabel(label)) => label.clone(),
            None => rest_route(&path),
        };
        ("rest", resp.status().as_str().to_owned(), route)
    };
    metrics::counter!(REQUESTS, "edge" => edge, "method" => method, "route" => route.clone(), "code" => code)
        .increment(1);
    metrics::histogram!(REQUEST_SECONDS, "edge" => edge, "route" => route).record(started.elapsed().as_secs_f64());
    resp
}

/// The label of a REST path: its version and route template.
fn rest_route(path: &str) -> String {
    let full = path.trim_start_matches('/');
    let (prefix, rest) = full.split_once('/').unwrap_or((full, ""));
    match crate::rest::path::ApiVersion::from_segment(prefix) {
        Some(_) if rest == "$batch" || rest.eq_ignore_ascii_case("%24batch") => format!("{prefix}/$batch"),
        Some(version) => match crate::rest::path::route_label(version, rest).as_str() {
            "other" => "other".to_owned(),
            route => format!("{prefix}/{route}"),
        },
        None if path == "/metrics" => "metrics".to_owned(),
        None if path == crate::rest::BACKUP_PATH => "admin/backup".to_owned(),
        None if path == "/" || path.starts_with("/dashboard/") => "dashboard".to_owned(),
        None => "other".to_owned(),
    }
}

/// `GET /metrics`: the text exposition format. The record counts are read
/// now (O(parents), see [`crate::store::Store::count_records`]).
pub async fn render(State(service): State<crate::service::Service>) -> Response {
    match service.count_records().await {
        Ok(counts) => {
            let names = crate::backup::collections();
            for (name, n) in names.into_iter().zip(counts.parents.iter().chain(&counts.statuses)) {
                metrics::gauge!(RECORDS, "collection" => name).set(*n as f64);
            }
        }
        Err(e) => tracing::warn!(error = %e, "cannot count the records for the metrics"),
    }
    let mut resp = handle().render().into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    *resp.status_mut() = StatusCode::OK;
    resp
}

/// A router serving only `GET /metrics`.
pub fn router(service: crate::service::Service) -> axum::Router {
    axum::Router::new()
        .route("/metrics", axum::routing::get(render))
        .with_state(service)
}
