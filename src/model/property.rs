//! Properties by Graph name: the schema (name → type) of every entity, and
//! typed access to a record's values. Queries (`$filter`, `$orderby`,
//! `$select`) are checked against the schema and evaluated through the
//! accessors, so they work the same for every collection.

use super::{ComplianceStatus, DateTime, Parent, ParentKind, Status, StatusBody, StatusShape};
use serde::{Deserialize, Serialize};
use std::cmp::Ordering;

/// The type of a property, as far as queries care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PropertyType {
    /// Edm.String; `nullable` tells whether `null` is a value it can have.
    String { nullable: bool },
    /// Edm.Int32.
    Int32,
    /// Edm.DateTimeOffset.
    DateTime,
    /// microsoft.graph.complianceStatus.
    ComplianceStatus,
    /// A collection or other value that cannot be filtered or ordered.
    Opaque,
}

/// A property's value, borrowed from a record.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PropertyValue<'a> {
    /// `null`.
    Null,
    /// A string.
    Str(&'a str),
    /// An integer.
    Int(i64),
    /// A date-time.
    DateTime(DateTime),
    /// A compliance status.
    Status(ComplianceStatus),
}

/// A value in sort order: `null` first, then numbers (integers, date-time
/// ticks, enum numbers) or strings (ordinal). Serialisable, so a page token
/// can carry the sort position of the last item.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum SortKey {
    /// `null`.
    Null,
    /// Integers, date-times (ticks) and enums (their number).
    Int(i64),
    /// Strings, compared byte-wise.
    Str(String),
}

impl PropertyValue<'_> {
    /// The sort key of this value.
    pub fn sort_key(&self) -> SortKey {
        match *self {
            PropertyValue::Null => SortKey::Null,
            PropertyValue::Str(s) => SortKey::Str(s.to_owned()),
            PropertyValue::Int(i) => SortKey::Int(i),
            PropertyValue::DateTime(t) => SortKey::Int(t.ticks()),
            PropertyValue::Status(s) => SortKey::Int(i64::from(s.number())),
        }
    }

    /// Compares two values of the same property; `None` when either is null
    /// or the types differ (such comparisons are false in OData).
    pub fn compare(&self, other: &PropertyValue<'_>) -> Option<Ordering> {
        use PropertyValue::*;
        match (self, other) {
            (Str(a), Str(b)) => Some(a.cmp(b)),
            (Int(a), Int(b)) => Some(a.cmp(b)),
            (DateTime(a), DateTime(b)) => Some(a.cmp(b)),
            (Status(a), Status(b)) => Some(a.number().cmp(&b.number())),
            _ => None,
        }
    }
}

/// A record that queries can read.
pub trait Queryable {
    /// The record's id.
    fn id(&self) -> &str;
    /// The value of the property `name` (a Graph name); `None` if the entity
    /// has no such property.
    fn property(&self, name: &str) -> Option<PropertyValue<'_>>;
}

const USER_SCHEMA: [(&str, PropertyType); 6] = [
    ("id", PropertyType::String { nullable: false }),
    ("userDisplayName", PropertyType::String { nullable: true }),
    ("devicesCount", PropertyType::Int32),
    ("status", PropertyType::ComplianceStatus),
    ("lastReportedDateTime", PropertyType::DateTime),
    ("userPrincipalName", PropertyType::String { nullable: true }),
];

const DEVICE_SCHEMA: [(&str, PropertyType); 9] = [
    ("id", PropertyType::String { nullable: false }),
    ("deviceDisplayName", PropertyType::String { nullable: true }),
    ("userName", PropertyType::String { nullable: true }),
    ("deviceModel", PropertyType::String { nullable: true }),
    ("platform", PropertyType::Int32),
    ("complianceGracePeriodExpirationDateTime", PropertyType::DateTime),
    ("status", PropertyType::ComplianceStatus),
    ("lastReportedDateTime", PropertyType::DateTime),
    ("userPrincipalName", PropertyType::String { nullable: true }),
];

const PARENT_SCHEMA: [(&str, PropertyType); 6] = [
    ("id", PropertyType::String { nullable: false }),
    ("displayName", PropertyType::String { nullable: false }),
    ("description", PropertyType::String { nullable: true }),
    ("createdDateTime", PropertyType::DateTime),
    ("lastModifiedDateTime", PropertyType::DateTime),
    ("version", PropertyType::Int32),
];

/// The queryable properties of a status shape.
pub fn status_schema(shape: StatusShape) -> &'static [(&'static str, PropertyType)] {
    match shape {
        StatusShape::User => &USER_SCHEMA,
        StatusShape::Device => &DEVICE_SCHEMA,
    }
}

/// The queryable properties of a parent kind (derived-type properties are
/// not queryable; `targetedMobileApps` is a collection).
pub fn parent_schema(kind: ParentKind) -> Vec<(&'static str, PropertyType)> {
    let mut schema = PARENT_SCHEMA.to_vec();
    if kind.has_targeted_mobile_apps() {
        schema.push(("targetedMobileApps", PropertyType::Opaque));
    }
    schema
}

fn opt(s: &Option<String>) -> PropertyValue<'_> {
    s.as_deref().map_or(PropertyValue::Null, PropertyValue::Str)
}

impl Queryable for Status {
    fn id(&self) -> &str {
        &self.id
    }

    fn property(&self, name: &str) -> Option<PropertyValue<'_>> {
        use PropertyValue::*;
        if name == "id" {
            return Some(Str(&self.id));
        }
        Some(match (&self.body, name) {
            (StatusBody::User(u), "userDisplayName") => opt(&u.user_display_name),
            (StatusBody::User(u), "devicesCount") => Int(i64::from(u.devices_count)),
            (StatusBody::User(u), "status") => Status(u.status),
            (StatusBody::User(u), "lastReportedDateTime") => DateTime(u.last_reported_date_time),
            (StatusBody::User(u), "userPrincipalName") => opt(&u.user_principal_name),
            (StatusBody::Device(d), "deviceDisplayName") => opt(&d.device_display_name),
            (StatusBody::Device(d), "userName") => opt(&d.user_name),
            (StatusBody::Device(d), "deviceModel") => opt(&d.device_model),
            (StatusBody::Device(d), "platform") => Int(i64::from(d.platform)),
            (StatusBody::Device(d), "complianceGracePeriodExpirationDateTime") => {
                DateTime(d.compliance_grace_period_expiration_date_time)
            }
            (StatusBody::Device(d), "status") => Status(d.status),
            (StatusBody::Device(d), "lastReportedDateTime") => DateTime(d.last_reported_date_time),
            (StatusBody::Device(d), "userPrincipalName") => opt(&d.user_principal_name),
            _ => return None,
        })
    }
}

impl Queryable for Parent {
    fn id(&self) -> &str {
        &self.id
    }

    fn property(&self, name: &str) -> Option<PropertyValue<'_>> {
        use PropertyValue::*;
        Some(match name {
            "id" => Str(&self.id),
            "displayName" => Str(&self.display_name),
            "description" => opt(&self.description),
            "createdDateTime" => DateTime(self.created_date_time),
            "lastModifiedDateTime" => DateTime(self.last_modified_date_time),
            "version" => Int(i64::from(self.version)),
            _ => return None,
        })
    }
}
