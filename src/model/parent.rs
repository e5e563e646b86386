//! Parents: compliance policies, mobile app configurations and device
//! configurations, with their validation and update rules.
//!
//! All three share Graph's base properties; the kind decides which optional
//! ones exist (`targetedMobileApps`, the beta certificate references). Graph's
//! parents are abstract types: a create names a concrete `@odata.type`, and
//! the properties of that derived type which statusd does not model are kept
//! verbatim in `additional_properties` and given back unchanged.

use super::{limits, DateTime, ParentKind, StatusKind};
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Prefix of every Graph type name in `@odata.type`.
pub const GRAPH_TYPE_PREFIX: &str = "#microsoft.graph.";

/// A stored parent. The server owns `created_date_time`,
/// `last_modified_date_time` and `version`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Parent {
    /// Key of the entity.
    pub id: String,
    /// The concrete `@odata.type`, e.g. `#microsoft.graph.windows10CompliancePolicy`.
    pub odata_type: String,
    /// Required name.
    pub display_name: String,
    /// Nullable description.
    pub description: Option<String>,
    /// Set once, on create.
    pub created_date_time: DateTime,
    /// Set on create and on every update.
    pub last_modified_date_time: DateTime,
    /// 1 on create, +1 per update.
    pub version: i32,
    /// Mobile app configurations only.
    pub targeted_mobile_apps: Vec<String>,
    /// Device configurations only (beta): id of the `rootCertificate` configuration.
    pub root_certificate_id: Option<String>,
    /// Device configurations only (beta): id of the `identityCertificate` configuration.
    pub identity_certificate_id: Option<String>,
    /// Derived-type properties we keep but do not model (a JSON object).
    #[serde(with = "json_object_text")]
    pub additional_properties: Map<String, Value>,
}

/// Graph property names of the modelled parent properties; no additional
/// property may reuse one of them.
pub const MODELLED: [&str; 10] = [
    "id",
    "displayName",
    "description",
    "createdDateTime",
    "lastModifiedDateTime",
    "version",
    "targetedMobileApps",
    "rootCertificate",
    "identityCertificate",
    "@odata.type",
];

/// Graph parent properties the server owns.
pub const SERVER_OWNED: [&str; 3] = ["createdDateTime", "lastModifiedDateTime", "version"];

/// Fields an update may name (Graph camelCase); `additionalProperties.<name>`
/// names one derived-type property.
pub const UPDATABLE: [&str; 6] = [
    "displayName",
    "description",
    "targetedMobileApps",
    "rootCertificateId",
    "identityCertificateId",
    "additionalProperties",
];

impl Parent {
    /// An empty parent of no particular type: the starting point of conversions.
    pub fn empty() -> Self {
        Parent {
            id: String::new(),
            odata_type: String::new(),
            display_name: String::new(),
            description: None,
            created_date_time: DateTime::MIN,
            last_modified_date_time: DateTime::MIN,
            version: 0,
            targeted_mobile_apps: Vec::new(),
            root_certificate_id: None,
            identity_certificate_id: None,
            additional_properties: Map::new(),
        }
    }

    /// Checks every client-controlled property against the rules of `kind`.
    /// The id is checked separately (it may still be empty here).
    pub fn validate(&self, kind: ParentKind) -> Result<()> {
        validate_odata_type(kind, &self.odata_type)?;
        if self.display_name.trim().is_empty() {
            return Err(Error::invalid("displayName", "is required and must not be empty"));
        }
        limits::text("displayName", &self.display_name)?;
        if let Some(d) = &self.description {
            limits::long_text("description", d)?;
        }
        if !kind.has_targeted_mobile_apps() && !self.targeted_mobile_apps.is_empty() {
            return Err(not_a_property("targetedMobileApps", kind));
        }
        if self.targeted_mobile_apps.len() > limits::MAX_LIST_LEN {
            return Err(Error::invalid(
                "targetedMobileApps",
                format!("at most {} entries are allowed", limits::MAX_LIST_LEN),
            ));
        }
        for app in &self.targeted_mobile_apps {
            limits::text("targetedMobileApps", app)?;
        }
        for (field, value) in [
            ("rootCertificate", &self.root_certificate_id),
            ("identityCertificate", &self.identity_certificate_id),
        ] {
            if let Some(id) = value {
                if !kind.has_certificates() {
                    return Err(not_a_property(field, kind));
                }
                super::id::validate(field, id)?;
            }
        }
        for key in self.additional_properties.keys() {
            validate_additional_key(key)?;
        }
        let additional = serde_json::to_vec(&self.additional_properties)
            .map(|v| v.len())
            .unwrap_or(usize::MAX);
        if additional > limits::MAX_ADDITIONAL_BYTES {
            return Err(Error::invalid(
                "additionalProperties",
                format!(
                    "the derived-type properties take {additional} bytes; at most {} are allowed",
                    limits::MAX_ADDITIONAL_BYTES
                ),
            ));
        }
        self.check_stored_size(kind, additional)
    }

    /// The record must fit [`limits::MAX_RECORD_BYTES`] once stored: an upper
    /// bound of its encoded size is checked (`additional` is the size of the
    /// derived-type properties as JSON text, as they are stored).
    fn check_stored_size(&self, kind: ParentKind, additional: usize) -> Result<()> {
        use limits::stored_len;
        let optional = |s: &Option<String>| s.as_ref().map_or(1, |s| stored_len(s.len()));
        let apps: usize = self
            .targeted_mobile_apps
            .iter()
            .map(|a| stored_len(a.len()))
            .sum::<usize>()
            + 9;
        let description = optional(&self.description);
        let size = limits::RECORD_OVERHEAD
            + stored_len(self.id.len())
            + stored_len(self.odata_type.len())
            + stored_len(self.display_name.len())
            + description
            + apps
            + optional(&self.root_certificate_id)
            + optional(&self.identity_certificate_id)
            + stored_len(additional);
        limits::record(
            kind.entity_name(),
            size,
            &[
                ("displayName", self.display_name.len()),
                ("description", description),
                ("targetedMobileApps", apps),
                ("additionalProperties", additional),
            ],
        )
    }

    /// The certificate references this record sets that `before` (the stored
    /// record it replaces; `None` on create) did not: (Graph property name,
    /// referenced device configuration id). Only these must exist when the
    /// write happens: a reference that a request leaves alone stays as it
    /// is, even if its target was deleted meanwhile (it then reads as 404 on
    /// the navigation, as in Graph). A configuration may reference itself.
    pub fn new_references<'a>(&'a self, before: Option<&Parent>) -> Vec<(&'static str, &'a str)> {
        let pairs = [
            (
                "rootCertificate",
                &self.root_certificate_id,
                before.map(|b| &b.root_certificate_id),
            ),
            (
                "identityCertificate",
                &self.identity_certificate_id,
                before.map(|b| &b.identity_certificate_id),
            ),
        ];
        pairs
            .into_iter()
            .filter_map(|(field, now, was)| {
                let target = now.as_deref()?;
                let unchanged = was.is_some_and(|w| w.as_deref() == Some(target));
                (!unchanged && target != self.id).then_some((field, target))
            })
            .collect()
    }

    /// Copies the field `name` (an entry of [`UPDATABLE`], or
    /// `additionalProperties.<key>`) from `from` into `self`.
    pub fn apply_field(&mut self, from: &Parent, name: &str) -> Result<()> {
        if let Some(key) = name.strip_prefix("additionalProperties.") {
            match from.additional_properties.get(key) {
                Some(v) => self.additional_properties.insert(key.to_owned(), v.clone()),
                None => self.additional_properties.remove(key),
            };
            return Ok(());
        }
        match name {
            "odataType" if from.odata_type != self.odata_type => {
                return Err(Error::invalid(
                    "@odata.type",
                    format!(
                        "the type of an existing entity cannot change (it is {})",
                        self.odata_type
                    ),
                ))
            }
            "odataType" => {}
            "displayName" => self.display_name.clone_from(&from.display_name),
            "description" => self.description.clone_from(&from.description),
            "targetedMobileApps" => self.targeted_mobile_apps.clone_from(&from.targeted_mobile_apps),
            "rootCertificateId" => self.root_certificate_id.clone_from(&from.root_certificate_id),
            "identityCertificateId" => self.identity_certificate_id.clone_from(&from.identity_certificate_id),
            "additionalProperties" => self.additional_properties.clone_from(&from.additional_properties),
            other => return Err(unknown_field(other)),
        }
        Ok(())
    }
}

/// A derived-type property's name, the same rule for both edges: not empty,
/// not an annotation (anything with `@`, which Graph's JSON reserves for
/// `@odata.context`, `x@odata.type` and the like: a stored one would be
/// emitted as a second, spoofed annotation), not a modelled or server-owned
/// property, no control characters.
pub fn validate_additional_key(key: &str) -> Result<()> {
    const FIELD: &str = "additionalProperties";
    let problem = if key.is_empty() {
        "a property name must not be empty".to_owned()
    } else if key.contains('@') {
        format!("'{key}' is an annotation, not a property (names with '@' are reserved by OData)")
    } else if MODELLED.contains(&key) || SERVER_OWNED.contains(&key) {
        format!("'{key}' is a modelled property and cannot be an additional property")
    } else if key.chars().any(char::is_control) {
        "a property name must not contain control characters".to_owned()
    } else if key.len() > limits::MAX_TEXT_LEN {
        format!("a property name must be at most {} bytes long", limits::MAX_TEXT_LEN)
    } else {
        return Ok(());
    };
    Err(Error::invalid(FIELD, problem))
}

fn unknown_field(name: &str) -> Error {
    Error::invalid(
        "updateMask",
        format!(
            "'{name}' is not an updatable field; updatable: {}",
            UPDATABLE.join(", ")
        ),
    )
}

fn not_a_property(field: &str, kind: ParentKind) -> Error {
    Error::invalid(field, format!("is not a property of {}", kind.entity_name()))
}

/// A concrete Graph type name for `kind`: `#microsoft.graph.` and an identifier,
/// and not one of the abstract or status types statusd knows.
pub fn validate_odata_type(kind: ParentKind, odata_type: &str) -> Result<()> {
    const FIELD: &str = "@odata.type";
    if odata_type.is_empty() {
        return Err(Error::invalid(
            FIELD,
            format!(
                "is required: {} is abstract, name a concrete type such as {}",
                kind.entity_name(),
                example_type(kind)
            ),
        ));
    }
    let Some(name) = odata_type.strip_prefix(GRAPH_TYPE_PREFIX) else {
        return Err(Error::invalid(
            FIELD,
            format!("must start with '{GRAPH_TYPE_PREFIX}', e.g. {}", example_type(kind)),
        ));
    };
    if name.is_empty() || name.len() > 128 || !name.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(Error::invalid(
            FIELD,
            format!("'{odata_type}' is not a Graph type name"),
        ));
    }
    if ParentKind::ALL.iter().any(|k| k.entity_name() == name) {
        return Err(Error::invalid(
            FIELD,
            format!(
                "'{odata_type}' is abstract; name a concrete type such as {}",
                example_type(kind)
            ),
        ));
    }
    if StatusKind::ALL.iter().any(|k| k.entity_name() == name) {
        return Err(Error::invalid(
            FIELD,
            format!("'{odata_type}' is a status type, not a {}", kind.entity_name()),
        ));
    }
    Ok(())
}

fn example_type(kind: ParentKind) -> &'static str {
    match kind {
        ParentKind::DeviceCompliancePolicy => "#microsoft.graph.windows10CompliancePolicy",
        ParentKind::MobileAppConfiguration => "#microsoft.graph.iosMobileAppConfiguration",
        ParentKind::DeviceConfiguration => "#microsoft.graph.windows10GeneralConfiguration",
    }
}

/// Stores a JSON object as its text: the record codec (bincode) cannot carry
/// self-describing values.
mod json_object_text {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use serde_json::{Map, Value};

    pub fn serialize<S: Serializer>(map: &Map<String, Value>, s: S) -> Result<S::Ok, S::Error> {
        let text = if map.is_empty() {
            String::new()
        } else {
            Value::Object(map.clone()).to_string()
        };
        text.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Map<String, Value>, D::Error> {
        let text = String::deserialize(d)?;
        if text.is_empty() {
            return Ok(Map::new());
        }
        serde_json::from_str(&text).map_err(serde::de::Error::custom)
    }
}
