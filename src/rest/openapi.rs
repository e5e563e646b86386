//! The OpenAPI 3 document of the REST edge (`GET /openapi.json`), generated
//! from the model's schema (`model::property`, `rest::json`), never written
//! by hand per entity: every route under every version prefix, the entity
//! schemas each version shows (`platform` under beta only), Graph's error
//! body, the query options, and `$batch`.

use super::json::status_properties;
use super::path::ApiVersion;
use crate::model::property::{parent_schema, PropertyType};
use crate::model::{overview, ComplianceStatus, ParentKind, StatusKind};
use serde_json::{json, Map, Value};
use std::sync::OnceLock;

const VERSIONS: [ApiVersion; 3] = [ApiVersion::V1, ApiVersion::Beta, ApiVersion::LocalTest];

/// The document (built once).
pub fn document() -> &'static Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(build)
}

fn schema_of(t: PropertyType) -> Value {
    match t {
        PropertyType::String { nullable } => json!({"type": "string", "nullable": nullable}),
        PropertyType::Int32 => json!({"type": "integer", "format": "int32"}),
        PropertyType::DateTime => json!({"type": "string", "format": "date-time"}),
        PropertyType::ComplianceStatus => json!({"$ref": "#/components/schemas/complianceStatus"}),
        PropertyType::Opaque => json!({"type": "array", "items": {"type": "string"}}),
    }
}

fn reference(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

/// `deviceComplianceUserStatus` under `beta` → `beta.deviceComplianceUserStatus`.
fn status_schema_name(kind: StatusKind, version: ApiVersion) -> String {
    format!("{}.{}", version.segment(), kind.entity_name())
}

fn status_schema(kind: StatusKind, version: ApiVersion) -> Value {
    let types: Vec<(&str, PropertyType)> = crate::model::property::status_schema(kind.shape).to_vec();
    let mut properties = Map::new();
    // A single entity's response names where it lives (`…/$entity`).
    properties.insert("@odata.context".into(), json!({"type": "string", "readOnly": true}));
    properties.insert("@odata.type".into(), json!({"type": "string", "readOnly": true}));
    for name in status_properties(kind.shape, version) {
        let t = types
            .iter()
            .find(|(n, _)| *n == name)
            .map_or(PropertyType::Opaque, |(_, t)| *t);
        properties.insert(name.into(), schema_of(t));
    }
    json!({"type": "object", "properties": properties, "additionalProperties": false})
}

/// `deviceComplianceUserOverview` under `beta` → `beta.deviceComplianceUserOverview`.
fn overview_schema_name(kind: StatusKind, version: ApiVersion) -> String {
    format!("{}.{}", version.segment(), kind.overview_entity_name())
}

fn overview_schema_json(kind: StatusKind, version: ApiVersion) -> Value {
    let mut properties = Map::new();
    properties.insert("@odata.context".into(), json!({"type": "string", "readOnly": true}));
    properties.insert("@odata.type".into(), json!({"type": "string", "readOnly": true}));
    for (name, t) in overview::overview_schema(kind.shape, version.overview_schema()) {
        properties.insert(name.into(), schema_of(t));
    }
    json!({"type": "object", "properties": properties, "additionalProperties": false, "readOnly": true})
}

fn parent_schema_json(kind: ParentKind) -> Value {
    let mut properties = Map::new();
    properties.insert("@odata.type".into(), json!({"type": "string", "description": "the concrete derived type, e.g. #microsoft.graph.windows10CompliancePolicy"}));
    for (name, t) in parent_schema(kind) {
        let mut s = schema_of(t);
        if crate::model::parent::SERVER_OWNED.contains(&name) {
            s["readOnly"] = json!(true);
        }
        properties.insert(name.into(), s);
    }
    // Derived-type properties (e.g. passwordRequired) are kept as given.
    json!({"type": "object", "required": ["@odata.type"], "properties": properties, "additionalProperties": true})
}

fn collection_of(schema: &str) -> Value {
    json!({
        "type": "object",
        "properties": {
            "@odata.context": {"type": "string"},
            "@odata.count": {"type": "integer"},
            "@odata.nextLink": {"type": "string"},
            "value": {"type": "array", "items": reference(schema)}
        }
    })
}

fn json_content(schema: Value) -> Value {
    json!({"application/json": {"schema": schema}})
}

fn errors(codes: &[&str]) -> Map<String, Value> {
    codes
        .iter()
        .map(|c| {
            (
                (*c).to_owned(),
                json!({"$ref": format!("#/components/responses/error{c}")}),
            )
        })
        .collect()
}

fn op(summary: String, mut responses: Map<String, Value>, error_codes: &[&str], extra: Map<String, Value>) -> Value {
    responses.extend(errors(error_codes));
    let mut o = Map::new();
    o.insert("summary".into(), Value::String(summary));
    o.insert("responses".into(), Value::Object(responses));
    o.extend(extra);
    Value::Object(o)
}

fn one(code: &str, description: &str, content: Option<Value>) -> Map<String, Value> {
    let mut r = json!({ "description": description });
    if let Some(c) = content {
        r["content"] = c;
    }
    Map::from_iter([(code.to_owned(), r)])
}

fn body(schema: Value) -> Map<String, Value> {
    Map::from_iter([(
        "requestBody".to_owned(),
        json!({"required": true, "content": json_content(schema)}),
    )])
}

fn list_params() -> Map<String, Value> {
    let names = ["top", "skip", "filter", "select", "orderby", "count", "skiptoken"];
    Map::from_iter([(
        "parameters".to_owned(),
        Value::Array(
            names
                .iter()
                .map(|n| json!({"$ref": format!("#/components/parameters/{n}")}))
                .collect(),
        ),
    )])
}

fn path_param(name: &str) -> Value {
    json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}})
}

fn with_params(params: &[&str], ops: Map<String, Value>) -> Value {
    let mut item = ops;
    if !params.is_empty() {
        item.insert(
            "parameters".into(),
            Value::Array(params.iter().map(|p| path_param(p)).collect()),
        );
    }
    Value::Object(item)
}

/// Read and write error codes.
const READ_ERRORS: [&str; 5] = ["400", "401", "403", "404", "503"];
const WRITE_ERRORS: [&str; 7] = ["400", "401", "403", "404", "409", "413", "503"];

fn ok(code: &str, schema: &str) -> Map<String, Value> {
    one(code, "OK", Some(json_content(reference(schema))))
}

/// GET (a page of) and POST (one more `entity`) on a collection.
fn collection_ops(collection: &str, entity: &str, schema: &str) -> Map<String, Value> {
    Map::from_iter([
        (
            "get".to_owned(),
            op(
                format!("List {collection}"),
                ok("200", &format!("{schema}Collection")),
                &READ_ERRORS,
                list_params(),
            ),
        ),
        (
            "post".to_owned(),
            op(
                format!("Create a {entity}"),
                ok("201", schema),
                &WRITE_ERRORS,
                body(reference(schema)),
            ),
        ),
    ])
}

/// GET, PATCH and DELETE of one `entity`.
fn item_ops(entity: &str, schema: &str, deleting_also: &str) -> Map<String, Value> {
    Map::from_iter([
        (
            "get".to_owned(),
            op(format!("Read a {entity}"), ok("200", schema), &READ_ERRORS, Map::new()),
        ),
        (
            "patch".to_owned(),
            op(
                format!("Update a {entity}"),
                ok("200", schema),
                &WRITE_ERRORS,
                body(reference(schema)),
            ),
        ),
        (
            "delete".to_owned(),
            op(
                format!("Delete a {entity}{deleting_also}"),
                one("204", "deleted", None),
                &READ_ERRORS,
                Map::new(),
            ),
        ),
    ])
}

/// `…/$count` of a collection.
fn count_op(collection: &str) -> Map<String, Value> {
    let text = json!({"text/plain": {"schema": {"type": "integer"}}});
    Map::from_iter([(
        "get".to_owned(),
        op(
            format!("Count {collection}"),
            one("200", "the count", Some(text)),
            &READ_ERRORS,
            Map::new(),
        ),
    )])
}

/// GET, PUT and DELETE of a certificate reference (`nav`).
fn reference_ops(nav: &str) -> Map<String, Value> {
    let link = json!({"type": "object", "required": ["@odata.id"], "properties": {"@odata.id": {"type": "string"}}});
    Map::from_iter([
        (
            "get".to_owned(),
            op(
                format!("The {nav} reference"),
                one("200", "the reference", Some(json_content(link.clone()))),
                &READ_ERRORS,
                Map::new(),
            ),
        ),
        (
            "put".to_owned(),
            op(
                format!("Set the {nav} reference"),
                one("204", "set", None),
                &WRITE_ERRORS,
                body(link),
            ),
        ),
        (
            "delete".to_owned(),
            op(
                format!("Clear the {nav} reference"),
                one("204", "cleared", None),
                &READ_ERRORS,
                Map::new(),
            ),
        ),
    ])
}

fn build() -> Value {
    let mut paths = Map::new();
    let mut schemas = Map::new();
    schemas.insert(
        "complianceStatus".into(),
        json!({"type": "string", "enum": ComplianceStatus::ALL.map(|s| s.graph_name())}),
    );
    schemas.insert(
        "odataError".into(),
        json!({"type": "object", "required": ["error"], "properties": {"error": {
            "type": "object", "required": ["code", "message"], "properties": {
                "code": {"type": "string"}, "message": {"type": "string"},
                "innerError": {"type": "object", "properties": {
                    "date": {"type": "string"}, "request-id": {"type": "string"}, "client-request-id": {"type": "string"}}}}}}}),
    );
    for kind in ParentKind::ALL {
        schemas.insert(kind.entity_name().into(), parent_schema_json(kind));
        schemas.insert(
            format!("{}Collection", kind.entity_name()),
            collection_of(kind.entity_name()),
        );
    }
    for version in VERSIONS {
        let v = version.segment();
        for sk in StatusKind::ALL {
            let name = status_schema_name(sk, version);
            schemas.insert(name.clone(), status_schema(sk, version));
            schemas.insert(format!("{name}Collection"), collection_of(&name));
        }
        for kind in ParentKind::ALL {
            let e = kind.entity_name();
            let base = format!("/{v}/{}/{}", kind.root(), kind.collection());
            paths.insert(base.clone(), with_params(&[], collection_ops(kind.collection(), e, e)));
            paths.insert(format!("{base}/$count"), with_params(&[], count_op(kind.collection())));
            let item = format!("{base}/{{id}}");
            paths.insert(item.clone(), with_params(&["id"], item_ops(e, e, " and its statuses")));
            if kind.has_certificates() && version.is_beta() {
                for nav in ["rootCertificate", "identityCertificate"] {
                    paths.insert(format!("{item}/{nav}/$ref"), with_params(&["id"], reference_ops(nav)));
                }
            }
            for sk in kind.status_kinds() {
                let s = status_schema_name(sk, version);
                let coll = format!("{item}/{}", sk.segment());
                let ops = collection_ops(sk.segment(), sk.entity_name(), &s);
                let mut by_ref = ops.clone();
                by_ref.remove("get");
                paths.insert(coll.clone(), with_params(&["id"], ops));
                paths.insert(format!("{coll}/$ref"), with_params(&["id"], by_ref));
                paths.insert(format!("{coll}/$count"), with_params(&["id"], count_op(sk.segment())));
                paths.insert(
                    format!("{coll}/{{statusId}}"),
                    with_params(&["id", "statusId"], item_ops(sk.entity_name(), &s, "")),
                );
                let o = overview_schema_name(sk, version);
                schemas.insert(o.clone(), overview_schema_json(sk, version));
                let read = op(
                    format!("The counts of the {}, computed with every write", sk.segment()),
                    ok("200", &o),
                    &READ_ERRORS,
                    Map::new(),
                );
                paths.insert(
                    format!("{item}/{}", sk.overview_segment()),
                    with_params(&["id"], Map::from_iter([("get".to_owned(), read)])),
                );
            }
        }
        let batch_request = json!({"type": "object", "required": ["requests"], "properties": {"requests": {"type": "array", "maxItems": 20, "items": {
            "type": "object", "required": ["id", "method", "url"], "properties": {
                "id": {"type": "string"}, "method": {"type": "string"}, "url": {"type": "string"},
                "headers": {"type": "object"}, "body": {}, "dependsOn": {"type": "array", "items": {"type": "string"}}}}}}});
        let batch_response = json!({"type": "object", "properties": {"responses": {"type": "array", "items": {
            "type": "object", "properties": {"id": {"type": "string"}, "status": {"type": "integer"}, "headers": {"type": "object"}, "body": {}}}}}});
        paths.insert(
            format!("/{v}/$batch"),
            with_params(
                &[],
                Map::from_iter([(
                    "post".to_owned(),
                    op(
                        "JSON batching: up to 20 requests".into(),
                        one("200", "the answers", Some(json_content(batch_response))),
                        &["400", "413"],
                        body(batch_request),
                    ),
                )]),
            ),
        );
    }
    let error_response = |d: &str| json!({"description": d, "content": json_content(reference("odataError"))});
    let responses: Map<String, Value> = [
        ("400", "bad request: the message names the property or option"),
        ("401", "no valid bearer token (auth on)"),
        ("403", "the token lacks the permission"),
        ("404", "not found"),
        ("409", "the id is taken"),
        ("413", "the body is too large"),
        ("503", "storage unavailable; retry"),
    ]
    .into_iter()
    .map(|(c, d)| (format!("error{c}"), error_response(d)))
    .collect();
    let param = |name: &str, schema: Value, d: &str| json!({"name": format!("${name}"), "in": "query", "required": false, "schema": schema, "description": d});
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "statusd",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Intune status reports under Microsoft Graph's paths (v1.0, beta, localtest); generated from statusd's model schema."
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "responses": responses,
            "parameters": {
                "top": param("top", json!({"type": "integer", "minimum": 0, "maximum": 1000}), "page size (default 1000)"),
                "skip": param("skip", json!({"type": "integer", "minimum": 0}), "records to skip"),
                "filter": param("filter", json!({"type": "string"}), "eq ne gt ge lt le and or not, startswith"),
                "select": param("select", json!({"type": "string"}), "comma-separated properties"),
                "orderby": param("orderby", json!({"type": "string"}), "comma-separated properties, asc or desc"),
                "count": param("count", json!({"type": "boolean"}), "@odata.count on the first page"),
                "skiptoken": param("skiptoken", json!({"type": "string"}), "from @odata.nextLink")
            },
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}}
        }
    })
}
