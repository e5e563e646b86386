//! Graph JSON ↔ model.
//!
//! Input is checked property by property, as Graph does: an unknown property,
//! a wrong JSON type, a bad enum name (the seeds' `"status": "String"`), an
//! Int32 out of range or a date-time without an offset is a 400 that names the
//! property. Output is Graph's: camelCase names in Graph's order, `null` for
//! unset nullable properties, `@odata.type` on every entity, date-times in
//! UTC with seven fractional digits. `platform` exists only under beta-shaped
//! prefixes, as in Graph's v1.0 schema.

use super::path::ApiVersion;
use crate::error::{Error, Result};
use crate::model::parent::GRAPH_TYPE_PREFIX;
use crate::model::{
    ComplianceStatus, DateTime, Overview, Parent, ParentKind, Status, StatusBody, StatusKind, StatusShape,
};
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::{Map, Value};

/// Parses a request body into a JSON object.
pub fn object(body: &[u8]) -> Result<Map<String, Value>> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(Error::invalid("body", "a JSON object is required"));
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(Error::invalid("body", "must be a JSON object")),
        Err(e) => Err(Error::invalid("body", format!("is not valid JSON: {e}"))),
    }
}

fn type_error(field: &str, expected: &str, got: &Value) -> Error {
    let got = match got {
        Value::Null => "null".to_owned(),
        Value::String(s) => format!("the string \"{}\"", truncate(s)),
        other => truncate(&other.to_string()).to_owned(),
    };
    Error::invalid(field, format!("expected {expected}, got {got}"))
}

fn truncate(s: &str) -> &str {
    match s.char_indices().nth(64) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

fn nullable_string(field: &str, v: &Value) -> Result<Option<String>> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s.clone())),
        other => Err(type_error(field, "a string or null", other)),
    }
}

/// The `id` of a REST body: absent or `null` means none (a create generates
/// one), but `""` is refused. Unlike proto3, JSON can tell an empty string
/// from an absent one, so an empty id is a client's mistake, not a request
/// for a generated id. (The service still reads an empty id as "generate",
/// which is what gRPC needs.)
fn rest_id(v: &Value) -> Result<String> {
    match nullable_string("id", v)? {
        Some(id) if id.is_empty() => Err(Error::invalid(
            "id",
            "must not be empty; leave it out (or null) to have the server generate one",
        )),
        id => Ok(id.unwrap_or_default()),
    }
}

fn string(field: &str, v: &Value) -> Result<String> {
    match v {
        Value::String(s) => Ok(s.clone()),
        other => Err(type_error(field, "a string", other)),
    }
}

fn int32(field: &str, v: &Value) -> Result<i32> {
    v.as_i64()
        .and_then(|i| i32::try_from(i).ok())
        .ok_or_else(|| type_error(field, "an Int32 (a whole number from -2147483648 to 2147483647)", v))
}

fn datetime(field: &str, v: &Value) -> Result<DateTime> {
    match v {
        Value::String(s) => DateTime::parse(s).map_err(|e| Error::invalid(field, format!("\"{}\": {e}", truncate(s)))),
        other => Err(type_error(
            field,
            "a date-time string such as 2017-01-01T00:00:00Z",
            other,
        )),
    }
}

fn compliance(field: &str, v: &Value) -> Result<ComplianceStatus> {
    let bad = || {
        Error::invalid(
            field,
            format!(
                "expected one of {}, got {}",
                ComplianceStatus::names(),
                truncate(&v.to_string())
            ),
        )
    };
    v.as_str().and_then(ComplianceStatus::from_graph_name).ok_or_else(bad)
}

/// Checks an `@odata.type` given for an entity whose type is `expected`.
fn check_type(v: &Value, expected: &str) -> Result<()> {
    let given = string("@odata.type", v)?;
    let name = given.strip_prefix('#').unwrap_or(&given);
    if name.strip_prefix("microsoft.graph.") == Some(expected) {
        Ok(())
    } else {
        Err(Error::invalid(
            "@odata.type",
            format!("'{given}' is not #microsoft.graph.{expected}"),
        ))
    }
}

/// Whether a key is an instance or property annotation we accept and ignore
/// (`@odata.context`, `@odata.etag`, `x@odata.type`, …).
fn is_annotation(key: &str) -> bool {
    key.contains('@')
}

fn unknown_property(key: &str, entity: &str) -> Error {
    Error::invalid(
        key,
        format!("the property does not exist on type 'microsoft.graph.{entity}'"),
    )
}

/// A status from a POST or PATCH body: the status, and the Graph names of the
/// properties the body sets (a PATCH changes exactly those).
pub fn status_from_json(
    kind: StatusKind,
    version: ApiVersion,
    obj: &Map<String, Value>,
) -> Result<(Status, Vec<String>)> {
    let entity = kind.entity_name();
    let mut body = StatusBody::default_for(kind.shape);
    let mut id = String::new();
    let mut fields = Vec::with_capacity(obj.len());
    for (key, v) in obj {
        match key.as_str() {
            "@odata.type" => check_type(v, entity)?,
            "id" => id = rest_id(v)?,
            k if is_annotation(k) => {}
            k => {
                set_status_field(&mut body, k, v, version).map_err(|e| match e {
                    None => unknown_property(k, entity),
                    Some(e) => e,
                })?;
                fields.push(k.to_owned());
            }
        }
    }
    Ok((Status { id, body }, fields))
}

/// Sets one property; `Err(None)` when the shape has no such property.
fn set_status_field(body: &mut StatusBody, key: &str, v: &Value, version: ApiVersion) -> Result<(), Option<Error>> {
    match body {
        StatusBody::User(u) => match key {
            "userDisplayName" => u.user_display_name = nullable_string(key, v)?,
            "devicesCount" => u.devices_count = int32(key, v)?,
            "status" => u.status = compliance(key, v)?,
            "lastReportedDateTime" => u.last_reported_date_time = datetime(key, v)?,
            "userPrincipalName" => u.user_principal_name = nullable_string(key, v)?,
            _ => return Err(None),
        },
        StatusBody::Device(d) => match key {
            "deviceDisplayName" => d.device_display_name = nullable_string(key, v)?,
            "userName" => d.user_name = nullable_string(key, v)?,
            "deviceModel" => d.device_model = nullable_string(key, v)?,
            "platform" if version.is_beta() => d.platform = int32(key, v)?,
            "complianceGracePeriodExpirationDateTime" => {
                d.compliance_grace_period_expiration_date_time = datetime(key, v)?
            }
            "status" => d.status = compliance(key, v)?,
            "lastReportedDateTime" => d.last_reported_date_time = datetime(key, v)?,
            "userPrincipalName" => d.user_principal_name = nullable_string(key, v)?,
            _ => return Err(None),
        },
    }
    Ok(())
}

/// The Graph properties of a status shape visible under `version`.
pub fn status_properties(shape: StatusShape, version: ApiVersion) -> Vec<&'static str> {
    crate::model::property::status_schema(shape)
        .iter()
        .map(|(name, _)| *name)
        .filter(|name| version.is_beta() || *name != "platform")
        .collect()
}

/// A status as Graph JSON, serialised straight from the record (no
/// intermediate JSON tree): `@odata.context` when given, `@odata.type`, then
/// the properties in Graph's order; with `select`, only those.
pub struct StatusView<'a> {
    /// The collection the status belongs to.
    pub kind: StatusKind,
    /// The API version (decides whether `platform` exists).
    pub version: ApiVersion,
    /// The record.
    pub status: &'a Status,
    /// `$select`, if any.
    pub select: Option<&'a [String]>,
    /// `@odata.context`, on single-entity responses.
    pub context: Option<&'a str>,
}

/// A date-time written in Graph's form without an intermediate string.
struct Iso(DateTime);

impl Serialize for Iso {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

/// `#microsoft.graph.{name}` without an intermediate string.
struct GraphType(&'static str);

impl Serialize for GraphType {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(&format_args!("{GRAPH_TYPE_PREFIX}{}", self.0))
    }
}

impl Serialize for StatusView<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        if let Some(c) = self.context {
            m.serialize_entry("@odata.context", c)?;
        }
        m.serialize_entry("@odata.type", &GraphType(self.kind.entity_name()))?;
        let want = |name: &str| self.select.is_none_or(|sel| sel.iter().any(|s| s == name));
        if want("id") {
            m.serialize_entry("id", &self.status.id)?;
        }
        macro_rules! put {
            ($name:literal, $value:expr) => {
                if want($name) {
                    m.serialize_entry($name, &$value)?;
                }
            };
        }
        match &self.status.body {
            StatusBody::User(u) => {
                put!("userDisplayName", u.user_display_name);
                put!("devicesCount", u.devices_count);
                put!("status", u.status.graph_name());
                put!("lastReportedDateTime", Iso(u.last_reported_date_time));
                put!("userPrincipalName", u.user_principal_name);
            }
            StatusBody::Device(d) => {
                put!("deviceDisplayName", d.device_display_name);
                put!("userName", d.user_name);
                put!("deviceModel", d.device_model);
                if self.version.is_beta() {
                    put!("platform", d.platform);
                }
                put!(
                    "complianceGracePeriodExpirationDateTime",
                    Iso(d.compliance_grace_period_expiration_date_time)
                );
                put!("status", d.status.graph_name());
                put!("lastReportedDateTime", Iso(d.last_reported_date_time));
                put!("userPrincipalName", d.user_principal_name);
            }
        }
        m.end()
    }
}

/// An overview as Graph's JSON, properties in Graph's order.
pub struct OverviewView<'a> {
    /// The overview (its counts already those of the version's schema).
    pub overview: &'a Overview,
    /// `$select`, if any.
    pub select: Option<&'a [String]>,
    /// `@odata.context`.
    pub context: &'a str,
}

impl Serialize for OverviewView<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let o = self.overview;
        let want = |name: &str| self.select.is_none_or(|sel| sel.iter().any(|s| s == name));
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("@odata.context", self.context)?;
        m.serialize_entry("@odata.type", &GraphType(o.kind.overview_entity_name()))?;
        if want("id") {
            m.serialize_entry("id", &o.id)?;
        }
        for (count, n) in &o.counts {
            if want(count.property()) {
                m.serialize_entry(count.property(), n)?;
            }
        }
        if want("lastUpdateDateTime") {
            m.serialize_entry("lastUpdateDateTime", &Iso(o.last_update))?;
        }
        if want("configurationVersion") {
            m.serialize_entry("configurationVersion", &o.configuration_version)?;
        }
        m.end()
    }
}

/// A status as a Graph JSON object (see [`StatusView`]).
pub fn status_to_json(
    kind: StatusKind,
    version: ApiVersion,
    s: &Status,
    select: Option<&[String]>,
) -> Map<String, Value> {
    let view = StatusView {
        kind,
        version,
        status: s,
        select,
        context: None,
    };
    match serde_json::to_value(view) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    }
}

/// Graph parent properties the server owns: accepted on input and ignored,
/// as Graph ignores read-only properties a client echoes back.
use crate::model::parent::SERVER_OWNED;

/// A parent from a POST or PATCH body, and the update field names it sets.
/// Properties statusd does not model are derived-type properties: kept.
pub fn parent_from_json(
    kind: ParentKind,
    version: ApiVersion,
    obj: &Map<String, Value>,
) -> Result<(Parent, Vec<String>)> {
    let mut p = Parent::empty();
    let mut fields = Vec::with_capacity(obj.len());
    for (key, v) in obj {
        let field = match key.as_str() {
            "@odata.type" => {
                p.odata_type = string("@odata.type", v)?;
                "odataType".to_owned()
            }
            "id" => {
                p.id = rest_id(v)?;
                continue;
            }
            "displayName" => {
                p.display_name = string("displayName", v)?;
                "displayName".to_owned()
            }
            "description" => {
                p.description = nullable_string("description", v)?;
                "description".to_owned()
            }
            "targetedMobileApps" => {
                p.targeted_mobile_apps = string_list("targetedMobileApps", v)?;
                "targetedMobileApps".to_owned()
            }
            k @ ("rootCertificate@odata.bind" | "identityCertificate@odata.bind") => {
                let nav = &k[..k.len() - "@odata.bind".len()];
                if !version.is_beta() || kind != ParentKind::DeviceConfiguration {
                    return Err(unknown_property(nav, kind.entity_name()));
                }
                let target = match v {
                    Value::Null => None,
                    other => Some(bound_id(k, &string(k, other)?)?),
                };
                if nav == "rootCertificate" {
                    p.root_certificate_id = target;
                    "rootCertificateId".to_owned()
                } else {
                    p.identity_certificate_id = target;
                    "identityCertificateId".to_owned()
                }
            }
            k @ ("rootCertificate" | "identityCertificate") if kind == ParentKind::DeviceConfiguration => {
                return Err(Error::invalid(
                    k,
                    format!("set a reference with \"{k}@odata.bind\": \".../deviceConfigurations('{{id}}')\""),
                ));
            }
            k if SERVER_OWNED.contains(&k) || is_annotation(k) => continue,
            k => {
                p.additional_properties.insert(k.to_owned(), v.clone());
                format!("additionalProperties.{k}")
            }
        };
        fields.push(field);
    }
    Ok((p, fields))
}

fn string_list(field: &str, v: &Value) -> Result<Vec<String>> {
    match v {
        Value::Null => Ok(Vec::new()),
        Value::Array(items) => items.iter().map(|i| string(field, i)).collect(),
        other => Err(type_error(field, "an array of strings", other)),
    }
}

/// The id named by an `@odata.bind` / `@odata.id` URL to a device
/// configuration: `…/deviceConfigurations('{id}')` or `…/deviceConfigurations/{id}`.
pub fn bound_id(field: &str, url: &str) -> Result<String> {
    let bad = || {
        Error::invalid(
            field,
            format!(
                "'{}' does not name a device configuration (…/deviceConfigurations('{{id}}'))",
                truncate(url)
            ),
        )
    };
    let path = url.split(['?', '#']).next().unwrap_or_default();
    let at = path.rfind("deviceConfigurations").ok_or_else(bad)?;
    let rest = &path[at + "deviceConfigurations".len()..];
    let raw = if let Some(inner) = rest.strip_prefix('(').and_then(|r| r.strip_suffix(')')) {
        let inner = inner
            .strip_prefix('\'')
            .and_then(|s| s.strip_suffix('\''))
            .unwrap_or(inner);
        inner.replace("''", "'")
    } else if let Some(id) = rest.strip_prefix('/') {
        id.trim_end_matches('/').to_owned()
    } else {
        return Err(bad());
    };
    let id = percent_encoding::percent_decode_str(&raw)
        .decode_utf8_lossy()
        .into_owned();
    if id.is_empty() || id.contains('/') {
        return Err(bad());
    }
    Ok(id)
}

/// The Graph properties of a parent kind (for `$select`).
pub fn parent_properties(kind: ParentKind) -> Vec<&'static str> {
    crate::model::property::parent_schema(kind)
        .into_iter()
        .map(|(name, _)| name)
        .collect()
}

/// A parent as Graph JSON: the modelled properties, then the derived-type
/// ones (those only without `$select`).
pub struct ParentView<'a> {
    /// The parent's kind.
    pub kind: ParentKind,
    /// The record.
    pub parent: &'a Parent,
    /// `$select`, if any.
    pub select: Option<&'a [String]>,
    /// `@odata.context`, on single-entity responses.
    pub context: Option<&'a str>,
}

impl Serialize for ParentView<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let p = self.parent;
        let mut m = s.serialize_map(None)?;
        if let Some(c) = self.context {
            m.serialize_entry("@odata.context", c)?;
        }
        m.serialize_entry("@odata.type", &p.odata_type)?;
        let want = |name: &str| self.select.is_none_or(|sel| sel.iter().any(|s| s == name));
        macro_rules! put {
            ($name:literal, $value:expr) => {
                if want($name) {
                    m.serialize_entry($name, &$value)?;
                }
            };
        }
        put!("id", p.id);
        put!("displayName", p.display_name);
        put!("description", p.description);
        put!("createdDateTime", Iso(p.created_date_time));
        put!("lastModifiedDateTime", Iso(p.last_modified_date_time));
        put!("version", p.version);
        if self.kind.has_targeted_mobile_apps() {
            put!("targetedMobileApps", p.targeted_mobile_apps);
        }
        if self.select.is_none() {
            for (k, v) in &p.additional_properties {
                m.serialize_entry(k, v)?;
            }
        }
        m.end()
    }
}

/// A parent as a Graph JSON object (see [`ParentView`]).
pub fn parent_to_json(kind: ParentKind, p: &Parent, select: Option<&[String]>) -> Map<String, Value> {
    match serde_json::to_value(ParentView {
        kind,
        parent: p,
        select,
        context: None,
    }) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn seed_placeholders_are_refused_naming_the_property() {
        let kind = StatusKind {
            parent: ParentKind::DeviceConfiguration,
            shape: StatusShape::User,
        };
        for (field, value) in [
            ("status", json!("String")),
            ("devicesCount", json!("Integer")),
            ("lastReportedDateTime", json!("String (timestamp)")),
            ("devicesCount", json!(2147483648i64)),
            ("devicesCount", json!(1.5)),
            ("userDisplayName", json!(5)),
            ("status", json!(null)),
            ("lastReportedDateTime", json!("2017-01-01T00:00:00")),
        ] {
            let err = status_from_json(kind, ApiVersion::Beta, &obj(json!({ field: value }))).unwrap_err();
            match err {
                Error::InvalidArgument { field: f, .. } => assert_eq!(f, field),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn platform_exists_only_in_beta() {
        let kind = StatusKind {
            parent: ParentKind::DeviceConfiguration,
            shape: StatusShape::Device,
        };
        let body = obj(json!({ "platform": 8 }));
        assert!(status_from_json(kind, ApiVersion::V1, &body).is_err());
        let (s, fields) = status_from_json(kind, ApiVersion::LocalTest, &body).unwrap();
        assert_eq!(fields, vec!["platform"]);
        assert!(status_to_json(kind, ApiVersion::Beta, &s, None).contains_key("platform"));
        assert!(!status_to_json(kind, ApiVersion::V1, &s, None).contains_key("platform"));
    }

    #[test]
    fn an_empty_id_is_refused_and_an_absent_one_left_to_the_server() {
        let kind = StatusKind {
            parent: ParentKind::DeviceCompliancePolicy,
            shape: StatusShape::User,
        };
        let e = status_from_json(kind, ApiVersion::V1, &obj(json!({ "id": "" }))).unwrap_err();
        assert!(
            matches!(&e, Error::InvalidArgument { field, .. } if field == "id"),
            "{e:?}"
        );
        let e = parent_from_json(
            ParentKind::DeviceConfiguration,
            ApiVersion::V1,
            &obj(json!({ "id": "" })),
        )
        .unwrap_err();
        assert!(
            matches!(&e, Error::InvalidArgument { field, .. } if field == "id"),
            "{e:?}"
        );
        for body in [json!({}), json!({ "id": null })] {
            let (s, _) = status_from_json(kind, ApiVersion::V1, &obj(body.clone())).unwrap();
            assert_eq!(s.id, "");
            let (p, _) = parent_from_json(ParentKind::DeviceConfiguration, ApiVersion::V1, &obj(body)).unwrap();
            assert_eq!(p.id, "");
        }
    }

    #[test]
    fn bind_urls_name_the_configuration() {
        for url in [
            "https://graph.microsoft.com/beta/deviceManagement/deviceConfigurations('abc')",
            "http://127.0.0.1:8080/beta/deviceManagement/deviceConfigurations/abc",
            "deviceConfigurations('abc')",
        ] {
            assert_eq!(bound_id("x", url).unwrap(), "abc", "{url}");
        }
        assert!(bound_id("x", "https://graph.microsoft.com/beta/users('abc')").is_err());
    }
}
