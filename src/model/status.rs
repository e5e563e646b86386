//! Statuses: the per-user and per-device reports stored under a parent.
//!
//! The six Graph status entities come in two shapes. Each shape's properties
//! are listed once here, with their defaults (Graph's SDKs omit unset
//! properties, so a create may leave any non-nullable one out) and their
//! validation.

use super::{limits, ComplianceStatus, DateTime, StatusShape};
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

/// A stored status: its id (unique within its parent) and its properties.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// Key of the entity within its parent.
    pub id: String,
    /// The properties of its shape.
    pub body: StatusBody,
}

/// The properties of a status, by shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum StatusBody {
    /// A `userStatuses` entry.
    User(UserStatus),
    /// A `deviceStatuses` entry.
    Device(DeviceStatus),
}

/// deviceComplianceUserStatus, managedDeviceMobileAppConfigurationUserStatus,
/// deviceConfigurationUserStatus.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct UserStatus {
    /// Nullable.
    pub user_display_name: Option<String>,
    /// Int32, default 0.
    pub devices_count: i32,
    /// Default `unknown`.
    pub status: ComplianceStatus,
    /// Default 0001-01-01T00:00:00Z.
    pub last_reported_date_time: DateTime,
    /// Nullable.
    pub user_principal_name: Option<String>,
}

/// deviceComplianceDeviceStatus, managedDeviceMobileAppConfigurationDeviceStatus,
/// deviceConfigurationDeviceStatus.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct DeviceStatus {
    /// Nullable.
    pub device_display_name: Option<String>,
    /// Nullable.
    pub user_name: Option<String>,
    /// Nullable.
    pub device_model: Option<String>,
    /// Int32, default 0 (Graph beta only).
    pub platform: i32,
    /// Default 0001-01-01T00:00:00Z.
    pub compliance_grace_period_expiration_date_time: DateTime,
    /// Default `unknown`.
    pub status: ComplianceStatus,
    /// Default 0001-01-01T00:00:00Z.
    pub last_reported_date_time: DateTime,
    /// Nullable.
    pub user_principal_name: Option<String>,
}

impl StatusBody {
    /// A body of `shape` with every property at Graph's default.
    pub fn default_for(shape: StatusShape) -> Self {
        match shape {
            StatusShape::User => StatusBody::User(UserStatus::default()),
            StatusShape::Device => StatusBody::Device(DeviceStatus::default()),
        }
    }

    /// The shape of this body.
    pub fn shape(&self) -> StatusShape {
        match self {
            StatusBody::User(_) => StatusShape::User,
            StatusBody::Device(_) => StatusShape::Device,
        }
    }

    /// The `status` property (what overviews count).
    pub fn status(&self) -> ComplianceStatus {
        match self {
            StatusBody::User(u) => u.status,
            StatusBody::Device(d) => d.status,
        }
    }

    /// The Graph property names of `shape`, in Graph's order, without `id`
    /// (read from the one schema in [`super::property`]).
    pub fn fields(shape: StatusShape) -> Vec<&'static str> {
        super::property::status_schema(shape)
            .iter()
            .map(|(name, _)| *name)
            .filter(|name| *name != "id")
            .collect()
    }

    /// Checks every property (types are enforced by construction; this
    /// checks lengths and characters).
    pub fn validate(&self) -> Result<()> {
        let texts: Vec<(&str, &Option<String>)> = match self {
            StatusBody::User(u) => vec![
                ("userDisplayName", &u.user_display_name),
                ("userPrincipalName", &u.user_principal_name),
            ],
            StatusBody::Device(d) => vec![
                ("deviceDisplayName", &d.device_display_name),
                ("userName", &d.user_name),
                ("deviceModel", &d.device_model),
                ("userPrincipalName", &d.user_principal_name),
            ],
        };
        for (field, value) in texts {
            if let Some(v) = value {
                limits::text(field, v)?;
            }
        }
        Ok(())
    }

    /// Copies the property `name` (a Graph name of this shape) from `from`.
    pub fn apply_field(&mut self, from: &StatusBody, name: &str) -> Result<()> {
        match (self, from) {
            (StatusBody::User(to), StatusBody::User(from)) => match name {
                "userDisplayName" => to.user_display_name.clone_from(&from.user_display_name),
                "devicesCount" => to.devices_count = from.devices_count,
                "status" => to.status = from.status,
                "lastReportedDateTime" => to.last_reported_date_time = from.last_reported_date_time,
                "userPrincipalName" => to.user_principal_name.clone_from(&from.user_principal_name),
                other => return Err(unknown_field(other, StatusShape::User)),
            },
            (StatusBody::Device(to), StatusBody::Device(from)) => match name {
                "deviceDisplayName" => to.device_display_name.clone_from(&from.device_display_name),
                "userName" => to.user_name.clone_from(&from.user_name),
                "deviceModel" => to.device_model.clone_from(&from.device_model),
                "platform" => to.platform = from.platform,
                "complianceGracePeriodExpirationDateTime" => {
                    to.compliance_grace_period_expiration_date_time = from.compliance_grace_period_expiration_date_time
                }
                "status" => to.status = from.status,
                "lastReportedDateTime" => to.last_reported_date_time = from.last_reported_date_time,
                "userPrincipalName" => to.user_principal_name.clone_from(&from.user_principal_name),
                other => return Err(unknown_field(other, StatusShape::Device)),
            },
            _ => return Err(Error::Internal("status shapes differ in an update".into())),
        }
        Ok(())
    }
}

fn unknown_field(name: &str, shape: StatusShape) -> Error {
    Error::invalid(
        "updateMask",
        format!(
            "'{name}' is not an updatable field; updatable: {}",
            StatusBody::fields(shape).join(", ")
        ),
    )
}
