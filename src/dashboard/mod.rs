//! The read-only status dashboard at `/`: a page, its stylesheet and script
//! (embedded, no build step, nothing fetched from elsewhere) and the columns
//! it shows (`/dashboard/schema.json`), generated from the one model schema
//! (`model::property`, `model::overview`) like `$metadata` and OpenAPI.
//!
//! The dashboard is a client of the REST API under `/beta`, like any browser:
//! these routes hold no record and are open (as `/openapi.json` is), while
//! every data call goes through the API and its auth layer.

use crate::model::property::{status_schema, PropertyType};
use crate::model::{overview, ComplianceStatus, Count, ParentKind, StatusShape};
use crate::rest::json::{parent_properties, status_properties};
use crate::rest::path::ApiVersion;
use axum::http::header;
use axum::response::IntoResponse;
use serde_json::{json, Value};
use std::sync::OnceLock;

const INDEX_HTML: &str = include_str!("index.html");
const CSS: &str = include_str!("dashboard.css");
const JS: &str = include_str!("dashboard.js");

/// The page's Content-Security-Policy: only its own script, styles and API.
pub const CONTENT_SECURITY_POLICY: &str =
    "default-src 'self'; style-src 'self'; script-src 'self'; connect-src 'self'; img-src 'self' data:";

/// The version prefix the dashboard reads (the one with every count).
const VERSION: ApiVersion = ApiVersion::Beta;

/// `GET /`, `GET /dashboard/dashboard.css`, `GET /dashboard/dashboard.js`
/// and `GET /dashboard/schema.json`.
pub fn router() -> axum::Router {
    use axum::routing::get;
    axum::Router::new()
        .route("/", get(index))
        .route(
            "/dashboard/dashboard.css",
            get(|| async { asset("text/css; charset=utf-8", CSS) }),
        )
        .route(
            "/dashboard/dashboard.js",
            get(|| async { asset("text/javascript; charset=utf-8", JS) }),
        )
        .route(
            "/dashboard/schema.json",
            get(|| async { ([(header::CACHE_CONTROL, "no-cache")], axum::Json(schema().clone())) }),
        )
}

fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
}

async fn index() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        INDEX_HTML,
    )
}

/// The bar segment (and legend entry) a count is drawn in: failures and
/// errors share one, as do both kinds of "not applicable".
fn segment(count: Count) -> &'static str {
    match count {
        Count::Success => "success",
        Count::Failed | Count::Error => "failed",
        Count::Conflict => "conflict",
        Count::Pending => "pending",
        Count::NotApplicable | Count::NotApplicablePlatform => "notApplicable",
    }
}

/// A count's short label under a bar, e.g. `not applicable`.
fn count_label(count: Count) -> &'static str {
    match count {
        Count::Success => "succeeded",
        Count::Failed => "failed",
        Count::Error => "error",
        Count::Conflict => "conflict",
        Count::Pending => "pending",
        Count::NotApplicable => "not applicable",
        Count::NotApplicablePlatform => "not applicable (platform)",
    }
}

fn title(kind: ParentKind) -> &'static str {
    match kind {
        ParentKind::DeviceCompliancePolicy => "Device compliance policies",
        ParentKind::MobileAppConfiguration => "Mobile app configurations",
        ParentKind::DeviceConfiguration => "Device configurations",
    }
}

fn type_name(t: PropertyType) -> &'static str {
    match t {
        PropertyType::String { .. } => "string",
        PropertyType::Int32 => "int32",
        PropertyType::DateTime => "dateTime",
        PropertyType::ComplianceStatus => "status",
        PropertyType::Opaque => "other",
    }
}

/// What the page shows, from the model: the collections, the columns of
/// their status tables, the counts of their overviews, the status values and
/// the bar segment each falls in (as the overviews count them).
pub fn schema() -> &'static Value {
    static SCHEMA: OnceLock<Value> = OnceLock::new();
    SCHEMA.get_or_init(build)
}

fn build() -> Value {
    let overview_schema = VERSION.overview_schema();
    let segments = [
        ("success", "Succeeded"),
        ("failed", "Failed / error"),
        ("conflict", "Conflict"),
        ("pending", "Pending"),
        ("notApplicable", "Not applicable"),
    ];
    let status_values: Vec<Value> = ComplianceStatus::ALL
        .into_iter()
        .map(|s| {
            let count = Count::of(s, true);
            json!({"value": s.graph_name(), "count": count.property(), "segment": segment(count)})
        })
        .collect();
    let collections: Vec<Value> = ParentKind::ALL
        .into_iter()
        .map(|kind| {
            let statuses: Vec<Value> = kind
                .status_kinds()
                .into_iter()
                .map(|sk| {
                    let types = status_schema(sk.shape);
                    let columns: Vec<Value> = status_properties(sk.shape, VERSION)
                        .into_iter()
                        .map(|name| {
                            let t = types
                                .iter()
                                .find(|(n, _)| *n == name)
                                .map_or(PropertyType::Opaque, |(_, t)| *t);
                            json!({"name": name, "type": type_name(t)})
                        })
                        .collect();
                    let counts: Vec<Value> = overview::counts_of(sk.shape, overview_schema)
                        .iter()
                        .map(|&c| json!({"property": c.property(), "label": count_label(c), "segment": segment(c)}))
                        .collect();
                    json!({
                        "segment": sk.segment(),
                        "shape": match sk.shape { StatusShape::User => "user", StatusShape::Device => "device" },
                        "title": match sk.shape { StatusShape::User => "Users", StatusShape::Device => "Devices" },
                        "entity": sk.entity_name(),
                        "overview": sk.overview_segment(),
                        "columns": columns,
                        "counts": counts,
                    })
                })
                .collect();
            json!({
                "collection": kind.collection(),
                "path": format!("{}/{}", kind.root(), kind.collection()),
                "title": title(kind),
                "entity": kind.entity_name(),
                "parentProperties": parent_properties(kind),
                "statuses": statuses,
            })
        })
        .collect();
    json!({
        "prefix": format!("/{}", VERSION.segment()),
        "segments": segments.map(|(key, label)| json!({"key": key, "label": label})),
        "statusValues": status_values,
        "collections": collections,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_count_and_status_value_has_a_segment_of_the_legend() {
        let s = schema();
        let keys: Vec<&str> = s["segments"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["key"].as_str().unwrap())
            .collect();
        for v in s["statusValues"].as_array().unwrap() {
            assert!(keys.contains(&v["segment"].as_str().unwrap()), "{v}");
        }
        for c in s["collections"].as_array().unwrap() {
            for st in c["statuses"].as_array().unwrap() {
                assert!(st["columns"].as_array().unwrap().iter().any(|c| c["name"] == "status"));
                for count in st["counts"].as_array().unwrap() {
                    assert!(keys.contains(&count["segment"].as_str().unwrap()), "{count}");
                }
            }
        }
        assert_eq!(s["collections"].as_array().unwrap().len(), 3);
    }

    #[test]
    fn the_page_has_no_inline_script_or_style() {
        assert!(!INDEX_HTML.contains("<style"));
        assert!(!INDEX_HTML.contains("style="));
        assert!(!INDEX_HTML.contains("<script>"));
        assert!(!JS.contains("innerHTML"));
    }
}
