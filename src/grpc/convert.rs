//! proto <-> model conversions. The only rules here are the shape of the
//! protobuf messages (optional fields, timestamps, enum numbers); every domain
//! rule is in `model`.

use crate::error::{Error, Result};
use crate::model::{
    camel_case, Change, ComplianceStatus, Count, DateTime, DeviceStatus, Event, Overview, Parent, ParentKind, Status,
    StatusBody, StatusShape, UserStatus,
};
use crate::pb;
use prost_types::{value::Kind, ListValue, Struct, Timestamp, Value};
use serde_json::{Map, Number, Value as Json};

/// A proto status message (six of them, two shapes).
pub trait StatusMessage: Sized + Send + 'static {
    /// The shape every message of this type has.
    const SHAPE: StatusShape;
    /// Into the model, checking what the proto types leave open.
    fn into_model(self) -> Result<Status>;
    /// From the model.
    fn from_model(s: Status) -> Self;
    /// Graph names of the fields that are set (non-default), for an update
    /// without a field mask (AIP-134).
    fn populated(&self) -> Vec<String>;
}

/// A proto parent message (three of them).
pub trait ParentMessage: Sized + Send + 'static {
    /// The kind every message of this type has.
    const KIND: ParentKind;
    /// The id field.
    fn id(&self) -> &str;
    /// Into the model.
    fn into_model(self) -> Result<Parent>;
    /// From the model.
    fn from_model(p: Parent) -> Self;
    /// Graph names of the fields that are set, for an update without a mask.
    fn populated(&self) -> Vec<String>;
}

/// A timestamp field: absent means Graph's default, 0001-01-01T00:00:00Z.
pub fn datetime(field: &str, ts: Option<Timestamp>) -> Result<DateTime> {
    let Some(ts) = ts else { return Ok(DateTime::MIN) };
    let nanos = u32::try_from(ts.nanos).map_err(|_| Error::invalid(field, "nanos must not be negative"))?;
    DateTime::from_unix(ts.seconds, nanos).map_err(|e| Error::invalid(field, e.to_string()))
}

/// A model date-time as a timestamp.
pub fn timestamp(t: DateTime) -> Option<Timestamp> {
    let (seconds, nanos) = t.to_unix();
    Some(Timestamp {
        seconds,
        nanos: nanos as i32,
    })
}

fn compliance(n: i32) -> Result<ComplianceStatus> {
    ComplianceStatus::from_number(n)
        .ok_or_else(|| Error::invalid("status", format!("{n} is not a ComplianceStatus value (0..=7)")))
}

/// A field mask path (snake_case) as the model's Graph field name; the part
/// after `additional_properties.` is a property name and kept as is.
pub fn mask_path(path: &str) -> String {
    match path.split_once('.') {
        Some((head, rest)) => format!("{}.{rest}", camel_case(head)),
        None => camel_case(path),
    }
}

macro_rules! user_status_message {
    ($($msg:ty),+) => {$(
        impl StatusMessage for $msg {
            const SHAPE: StatusShape = StatusShape::User;
            fn into_model(self) -> Result<Status> {
                Ok(Status {
                    id: self.id,
                    body: StatusBody::User(UserStatus {
                        user_display_name: self.user_display_name,
                        devices_count: self.devices_count,
                        status: compliance(self.status)?,
                        last_reported_date_time: datetime("lastReportedDateTime", self.last_reported_date_time)?,
                        user_principal_name: self.user_principal_name,
                    }),
                })
            }
            fn from_model(s: Status) -> Self {
                let StatusBody::User(u) = s.body else {
                    return Self { id: s.id, ..Default::default() };
                };
                Self {
                    id: s.id,
                    user_display_name: u.user_display_name,
                    devices_count: u.devices_count,
                    status: u.status.number(),
                    last_reported_date_time: timestamp(u.last_reported_date_time),
                    user_principal_name: u.user_principal_name,
                }
            }
            fn populated(&self) -> Vec<String> {
                let set = [
                    ("userDisplayName", self.user_display_name.is_some()),
                    ("devicesCount", self.devices_count != 0),
                    ("status", self.status != 0),
                    ("lastReportedDateTime", self.last_reported_date_time.is_some()),
                    ("userPrincipalName", self.user_principal_name.is_some()),
                ];
                set.into_iter().filter(|(_, s)| *s).map(|(n, _)| n.to_owned()).collect()
            }
        }
    )+};
}

macro_rules! device_status_message {
    ($($msg:ty),+) => {$(
        impl StatusMessage for $msg {
            const SHAPE: StatusShape = StatusShape::Device;
            fn into_model(self) -> Result<Status> {
                Ok(Status {
                    id: self.id,
                    body: StatusBody::Device(DeviceStatus {
                        device_display_name: self.device_display_name,
                        user_name: self.user_name,
                        device_model: self.device_model,
                        platform: self.platform,
                        compliance_grace_period_expiration_date_time: datetime(
                            "complianceGracePeriodExpirationDateTime",
                            self.compliance_grace_period_expiration_date_time,
                        )?,
                        status: compliance(self.status)?,
                        last_reported_date_time: datetime("lastReportedDateTime", self.last_reported_date_time)?,
                        user_principal_name: self.user_principal_name,
                    }),
                })
            }
            fn from_model(s: Status) -> Self {
                let StatusBody::Device(d) = s.body else {
                    return Self { id: s.id, ..Default::default() };
                };
                Self {
                    id: s.id,
                    device_display_name: d.device_display_name,
                    user_name: d.user_name,
                    device_model: d.device_model,
                    platform: d.platform,
                    compliance_grace_period_expiration_date_time: timestamp(
                        d.compliance_grace_period_expiration_date_time,
                    ),
                    status: d.status.number(),
                    last_reported_date_time: timestamp(d.last_reported_date_time),
                    user_principal_name: d.user_principal_name,
                }
            }
            fn populated(&self) -> Vec<String> {
                let set = [
                    ("deviceDisplayName", self.device_display_name.is_some()),
                    ("userName", self.user_name.is_some()),
                    ("deviceModel", self.device_model.is_some()),
                    ("platform", self.platform != 0),
                    (
                        "complianceGracePeriodExpirationDateTime",
                        self.compliance_grace_period_expiration_date_time.is_some(),
                    ),
                    ("status", self.status != 0),
                    ("lastReportedDateTime", self.last_reported_date_time.is_some()),
                    ("userPrincipalName", self.user_principal_name.is_some()),
                ];
                set.into_iter().filter(|(_, s)| *s).map(|(n, _)| n.to_owned()).collect()
            }
        }
    )+};
}

user_status_message!(
    pb::DeviceComplianceUserStatus,
    pb::ManagedDeviceMobileAppConfigurationUserStatus,
    pb::DeviceConfigurationUserStatus
);
device_status_message!(
    pb::DeviceComplianceDeviceStatus,
    pb::ManagedDeviceMobileAppConfigurationDeviceStatus,
    pb::DeviceConfigurationDeviceStatus
);

/// A proto overview (summary) message: six of them, two shapes.
pub trait OverviewMessage: Sized + Send + 'static {
    /// The shape of the statuses it counts.
    const SHAPE: StatusShape;
    /// From the model (beta's schema, which has every count).
    fn from_model(o: Overview) -> Self;
}

/// The messages of one shape; device overviews also have the fields listed
/// in brackets (`notApplicablePlatformCount`).
macro_rules! overview_message {
    ($shape:ident $extras:tt => $($msg:ty),+) => {
        $(overview_message!(@one $shape $extras $msg);)+
    };
    (@one $shape:ident [$($extra:ident: $count:ident),*] $msg:ty) => {
        impl OverviewMessage for $msg {
            const SHAPE: StatusShape = StatusShape::$shape;
            fn from_model(o: Overview) -> Self {
                Self {
                    pending_count: o.count(Count::Pending),
                    not_applicable_count: o.count(Count::NotApplicable),
                    $($extra: o.count(Count::$count),)*
                    success_count: o.count(Count::Success),
                    error_count: o.count(Count::Error),
                    failed_count: o.count(Count::Failed),
                    conflict_count: o.count(Count::Conflict),
                    last_update_date_time: timestamp(o.last_update),
                    configuration_version: o.configuration_version,
                    revision: o.revision,
                    id: o.id,
                }
            }
        }
    };
}

overview_message!(User [] =>
    pb::DeviceComplianceUserOverview,
    pb::ManagedDeviceMobileAppConfigurationUserSummary,
    pb::DeviceConfigurationUserOverview
);
overview_message!(Device [not_applicable_platform_count: NotApplicablePlatform] =>
    pb::DeviceComplianceDeviceOverview,
    pb::ManagedDeviceMobileAppConfigurationDeviceSummary,
    pb::DeviceConfigurationDeviceOverview
);

/// A proto watch event message (six of them, one per status message).
pub trait EventMessage: Sized + Send + 'static {
    /// The status message it carries.
    type Status: StatusMessage;
    /// From the model.
    fn from_event(e: Event) -> Self;
}

macro_rules! event_message {
    ($($event:ty => $status:ty),+) => {$(
        impl EventMessage for $event {
            type Status = $status;
            fn from_event(e: Event) -> Self {
                let (kind, status_id, status) = match e.change {
                    Change::Created(s) => (pb::WatchEventType::Created, s.id.clone(), Some(<$status>::from_model(s))),
                    Change::Updated(s) => (pb::WatchEventType::Updated, s.id.clone(), Some(<$status>::from_model(s))),
                    Change::Deleted(id) => (pb::WatchEventType::Deleted, id, None),
                    Change::ParentDeleted => (pb::WatchEventType::ParentDeleted, String::new(), None),
                };
                Self {
                    revision: e.revision,
                    r#type: kind as i32,
                    status_id,
                    status,
                }
            }
        }
    )+};
}

event_message!(
    pb::DeviceComplianceUserStatusEvent => pb::DeviceComplianceUserStatus,
    pb::DeviceComplianceDeviceStatusEvent => pb::DeviceComplianceDeviceStatus,
    pb::ManagedDeviceMobileAppConfigurationUserStatusEvent => pb::ManagedDeviceMobileAppConfigurationUserStatus,
    pb::ManagedDeviceMobileAppConfigurationDeviceStatusEvent => pb::ManagedDeviceMobileAppConfigurationDeviceStatus,
    pb::DeviceConfigurationUserStatusEvent => pb::DeviceConfigurationUserStatus,
    pb::DeviceConfigurationDeviceStatusEvent => pb::DeviceConfigurationDeviceStatus
);

/// Parent fields common to the three messages, set on a new model parent.
fn base_parent(
    odata_type: String,
    id: String,
    display_name: String,
    description: Option<String>,
    additional: Option<Struct>,
) -> Result<Parent> {
    Ok(Parent {
        odata_type,
        id,
        display_name,
        description,
        additional_properties: additional.map(struct_to_json).transpose()?.unwrap_or_default(),
        ..Parent::empty()
    })
}

fn base_populated(display_name: &str, description: bool, additional: &Option<Struct>) -> Vec<String> {
    let mut out = Vec::new();
    if !display_name.is_empty() {
        out.push("displayName".to_owned());
    }
    if description {
        out.push("description".to_owned());
    }
    if additional.as_ref().is_some_and(|s| !s.fields.is_empty()) {
        out.push("additionalProperties".to_owned());
    }
    out
}

fn additional(p: &Parent) -> Option<Struct> {
    (!p.additional_properties.is_empty()).then(|| json_to_struct(&p.additional_properties))
}

/// Whether an optional proto field is set (for an update without a mask).
trait IsSet {
    fn is_set(&self) -> bool;
}

impl IsSet for Option<String> {
    fn is_set(&self) -> bool {
        self.is_some()
    }
}

impl IsSet for Vec<String> {
    fn is_set(&self) -> bool {
        !self.is_empty()
    }
}

/// Implements [`ParentMessage`] for one parent message: the shared fields,
/// plus the kind's own fields (same name in proto and model) and their Graph
/// update names.
macro_rules! parent_message {
    ($msg:ty, $kind:expr $(, $field:ident => $graph:literal)*) => {
        impl ParentMessage for $msg {
            const KIND: ParentKind = $kind;
            fn id(&self) -> &str {
                &self.id
            }
            fn into_model(self) -> Result<Parent> {
                #[allow(unused_mut)]
                let mut p =
                    base_parent(self.odata_type, self.id, self.display_name, self.description, self.additional_properties)?;
                $(p.$field = self.$field;)*
                Ok(p)
            }
            fn from_model(p: Parent) -> Self {
                Self {
                    additional_properties: additional(&p),
                    created_date_time: timestamp(p.created_date_time),
                    last_modified_date_time: timestamp(p.last_modified_date_time),
                    version: p.version,
                    $($field: p.$field,)*
                    odata_type: p.odata_type,
                    id: p.id,
                    display_name: p.display_name,
                    description: p.description,
                }
            }
            fn populated(&self) -> Vec<String> {
                #[allow(unused_mut)]
                let mut out = base_populated(&self.display_name, self.description.is_some(), &self.additional_properties);
                $(if self.$field.is_set() {
                    out.push($graph.to_owned());
                })*
                out
            }
        }
    };
}

parent_message!(pb::DeviceCompliancePolicy, ParentKind::DeviceCompliancePolicy);
parent_message!(
    pb::ManagedDeviceMobileAppConfiguration,
    ParentKind::MobileAppConfiguration,
    targeted_mobile_apps => "targetedMobileApps"
);
parent_message!(
    pb::DeviceConfiguration,
    ParentKind::DeviceConfiguration,
    root_certificate_id => "rootCertificateId",
    identity_certificate_id => "identityCertificateId"
);

/// google.protobuf.Struct → JSON object. Non-finite numbers are refused.
pub fn struct_to_json(s: Struct) -> Result<Map<String, Json>> {
    s.fields.into_iter().map(|(k, v)| Ok((k, value_to_json(v)?))).collect()
}

fn value_to_json(v: Value) -> Result<Json> {
    Ok(match v.kind {
        None | Some(Kind::NullValue(_)) => Json::Null,
        Some(Kind::BoolValue(b)) => Json::Bool(b),
        Some(Kind::NumberValue(n)) => Json::Number(
            Number::from_f64(n).ok_or_else(|| Error::invalid("additionalProperties", "numbers must be finite"))?,
        ),
        Some(Kind::StringValue(s)) => Json::String(s),
        Some(Kind::ListValue(l)) => Json::Array(l.values.into_iter().map(value_to_json).collect::<Result<_>>()?),
        Some(Kind::StructValue(s)) => Json::Object(struct_to_json(s)?),
    })
}

/// JSON object → google.protobuf.Struct (numbers become doubles, as Struct requires).
pub fn json_to_struct(m: &Map<String, Json>) -> Struct {
    Struct {
        fields: m.iter().map(|(k, v)| (k.clone(), json_to_value(v))).collect(),
    }
}

fn json_to_value(v: &Json) -> Value {
    let kind = match v {
        Json::Null => Kind::NullValue(0),
        Json::Bool(b) => Kind::BoolValue(*b),
        Json::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or(0.0)),
        Json::String(s) => Kind::StringValue(s.clone()),
        Json::Array(a) => Kind::ListValue(ListValue {
            values: a.iter().map(json_to_value).collect(),
        }),
        Json::Object(o) => Kind::StructValue(json_to_struct(o)),
    };
    Value { kind: Some(kind) }
}
