//! The nine collections, described as data.
//!
//! Three parent kinds, each with two status shapes, make the six status
//! collections. Everything that differs between them — Graph names, tree
//! names, which optional properties exist — is read from these descriptors, so
//! one implementation of each operation serves every collection.

use std::fmt;

/// A parent collection: a Graph policy or configuration type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ParentKind {
    /// `deviceManagement/deviceCompliancePolicies` (microsoft.graph.deviceCompliancePolicy).
    DeviceCompliancePolicy,
    /// `deviceAppManagement/mobileAppConfigurations` (microsoft.graph.managedDeviceMobileAppConfiguration).
    MobileAppConfiguration,
    /// `deviceManagement/deviceConfigurations` (microsoft.graph.deviceConfiguration).
    DeviceConfiguration,
}

/// The two shapes a status report takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StatusShape {
    /// A per-user report (`userStatuses`).
    User,
    /// A per-device report (`deviceStatuses`).
    Device,
}

/// One of the six status collections: a parent kind and a shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StatusKind {
    /// The kind of parent the statuses live under.
    pub parent: ParentKind,
    /// User or device statuses.
    pub shape: StatusShape,
}

impl ParentKind {
    /// Every parent kind, in a fixed order.
    pub const ALL: [ParentKind; 3] = [
        ParentKind::DeviceCompliancePolicy,
        ParentKind::MobileAppConfiguration,
        ParentKind::DeviceConfiguration,
    ];

    /// Its place in [`ParentKind::ALL`] (per-collection arrays are indexed so).
    pub fn index(self) -> usize {
        match self {
            ParentKind::DeviceCompliancePolicy => 0,
            ParentKind::MobileAppConfiguration => 1,
            ParentKind::DeviceConfiguration => 2,
        }
    }

    /// Graph's (abstract) entity type name, e.g. `deviceCompliancePolicy`.
    pub fn entity_name(self) -> &'static str {
        match self {
            ParentKind::DeviceCompliancePolicy => "deviceCompliancePolicy",
            ParentKind::MobileAppConfiguration => "managedDeviceMobileAppConfiguration",
            ParentKind::DeviceConfiguration => "deviceConfiguration",
        }
    }

    /// Graph's collection segment, e.g. `deviceCompliancePolicies`.
    pub fn collection(self) -> &'static str {
        match self {
            ParentKind::DeviceCompliancePolicy => "deviceCompliancePolicies",
            ParentKind::MobileAppConfiguration => "mobileAppConfigurations",
            ParentKind::DeviceConfiguration => "deviceConfigurations",
        }
    }

    /// Graph's singleton the collection hangs off (`deviceManagement` or `deviceAppManagement`).
    pub fn root(self) -> &'static str {
        match self {
            ParentKind::MobileAppConfiguration => "deviceAppManagement",
            _ => "deviceManagement",
        }
    }

    /// Whether the kind has `targetedMobileApps`.
    pub fn has_targeted_mobile_apps(self) -> bool {
        self == ParentKind::MobileAppConfiguration
    }

    /// Whether the kind has the beta `rootCertificate`/`identityCertificate` references.
    pub fn has_certificates(self) -> bool {
        self == ParentKind::DeviceConfiguration
    }

    /// A one-byte tag used in storage keys of our own trees (never reorder).
    pub fn tag(self) -> u8 {
        match self {
            ParentKind::DeviceCompliancePolicy => 1,
            ParentKind::MobileAppConfiguration => 2,
            ParentKind::DeviceConfiguration => 3,
        }
    }

    /// The inverse of [`ParentKind::tag`].
    pub fn from_tag(tag: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.tag() == tag)
    }

    /// The two status collections under this kind.
    pub fn status_kinds(self) -> [StatusKind; 2] {
        [
            StatusKind {
                parent: self,
                shape: StatusShape::User,
            },
            StatusKind {
                parent: self,
                shape: StatusShape::Device,
            },
        ]
    }
}

impl StatusKind {
    /// All six status collections.
    pub const ALL: [StatusKind; 6] = [
        StatusKind {
            parent: ParentKind::DeviceCompliancePolicy,
            shape: StatusShape::User,
        },
        StatusKind {
            parent: ParentKind::DeviceCompliancePolicy,
            shape: StatusShape::Device,
        },
        StatusKind {
            parent: ParentKind::MobileAppConfiguration,
            shape: StatusShape::User,
        },
        StatusKind {
            parent: ParentKind::MobileAppConfiguration,
            shape: StatusShape::Device,
        },
        StatusKind {
            parent: ParentKind::DeviceConfiguration,
            shape: StatusShape::User,
        },
        StatusKind {
            parent: ParentKind::DeviceConfiguration,
            shape: StatusShape::Device,
        },
    ];

    /// Its place in [`StatusKind::ALL`]: its parent's, then user before device.
    pub fn index(self) -> usize {
        self.parent.index() * 2
            + match self.shape {
                StatusShape::User => 0,
                StatusShape::Device => 1,
            }
    }

    /// Graph's entity type name, e.g. `deviceComplianceUserStatus`.
    pub fn entity_name(self) -> &'static str {
        use ParentKind::*;
        use StatusShape::*;
        match (self.parent, self.shape) {
            (DeviceCompliancePolicy, User) => "deviceComplianceUserStatus",
            (DeviceCompliancePolicy, Device) => "deviceComplianceDeviceStatus",
            (MobileAppConfiguration, User) => "managedDeviceMobileAppConfigurationUserStatus",
            (MobileAppConfiguration, Device) => "managedDeviceMobileAppConfigurationDeviceStatus",
            (DeviceConfiguration, User) => "deviceConfigurationUserStatus",
            (DeviceConfiguration, Device) => "deviceConfigurationDeviceStatus",
        }
    }

    /// Graph's navigation segment under the parent: `userStatuses` or `deviceStatuses`.
    pub fn segment(self) -> &'static str {
        match self.shape {
            StatusShape::User => "userStatuses",
            StatusShape::Device => "deviceStatuses",
        }
    }
}

impl fmt::Display for ParentKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.entity_name())
    }
}

impl fmt::Display for StatusKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.entity_name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_sits_at_its_index() {
        for (i, k) in ParentKind::ALL.into_iter().enumerate() {
            assert_eq!(k.index(), i);
        }
        for (i, k) in StatusKind::ALL.into_iter().enumerate() {
            assert_eq!(k.index(), i);
        }
    }
}
