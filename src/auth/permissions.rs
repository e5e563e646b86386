//! The one permission table: which Graph permission each gRPC method and
//! each REST route needs.
//!
//! Microsoft Graph guards the three collections with two permission
//! families: `DeviceManagementConfiguration.*` for device compliance policies
//! and device configurations, `DeviceManagementApps.*` for mobile app
//! configurations. `*.Read.All` reads, `*.ReadWrite.All` reads and writes;
//! a status collection belongs to its parent's family. Every operation is
//! described once as a [`Requirement`] — (collection, read|write) — and the
//! permissions that satisfy it follow from that, so the gRPC and REST edges
//! cannot disagree about what a token allows.

use crate::model::ParentKind;
use crate::rest::path::{self, ApiVersion, Route};
use axum::http::Method;
use std::collections::HashMap;

/// The four Graph permissions statusd honours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Permission {
    /// `DeviceManagementConfiguration.Read.All`.
    ConfigurationRead,
    /// `DeviceManagementConfiguration.ReadWrite.All`.
    ConfigurationReadWrite,
    /// `DeviceManagementApps.Read.All`.
    AppsRead,
    /// `DeviceManagementApps.ReadWrite.All`.
    AppsReadWrite,
}

impl Permission {
    /// All four.
    pub const ALL: [Permission; 4] = [
        Permission::ConfigurationRead,
        Permission::ConfigurationReadWrite,
        Permission::AppsRead,
        Permission::AppsReadWrite,
    ];

    /// Graph's name, as it appears in `scp` and `roles`.
    pub fn name(self) -> &'static str {
        match self {
            Permission::ConfigurationRead => "DeviceManagementConfiguration.Read.All",
            Permission::ConfigurationReadWrite => "DeviceManagementConfiguration.ReadWrite.All",
            Permission::AppsRead => "DeviceManagementApps.Read.All",
            Permission::AppsReadWrite => "DeviceManagementApps.ReadWrite.All",
        }
    }

    /// The permission named `name` (exactly as Graph spells it).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.name() == name)
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// The permissions a token grants (a set of [`Permission`]s).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Grants(u8);

impl Grants {
    /// The permissions named in a delegated token's `scp` (space-separated)
    /// and an application token's `roles`; names statusd does not use are
    /// ignored.
    pub fn from_claims(scp: Option<&str>, roles: &[String]) -> Self {
        let names = scp
            .into_iter()
            .flat_map(str::split_whitespace)
            .chain(roles.iter().map(String::as_str));
        Grants(names.filter_map(Permission::from_name).fold(0, |acc, p| acc | p.bit()))
    }

    /// Whether `p` is granted.
    pub fn has(self, p: Permission) -> bool {
        self.0 & p.bit() != 0
    }

    /// Whether no permission statusd uses is granted.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

/// Whether an operation reads or changes data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Get, List, `$count`.
    Read,
    /// Create, Update, Delete, `$ref` changes.
    Write,
}

/// What an operation touches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    /// A parent collection, its statuses included (the parent decides the family).
    Collection(ParentKind),
    /// Every collection at once (`GET /admin/backup`): needs what reading
    /// each of them needs, both permission families.
    Everything,
    /// `Diagnostics/Ping`: touches no data. It requires any one of the four
    /// permissions, as a read of nothing: liveness without a token is what
    /// `grpc.health.v1` is for, and the benchmark's no-op ceiling must pay
    /// the same token check as the calls it is compared with.
    Diagnostics,
}

/// What an operation needs: (collection, read|write).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Requirement {
    /// What it touches.
    pub resource: Resource,
    /// Read or write.
    pub access: Access,
}

impl Requirement {
    /// The permissions that each satisfy this requirement.
    pub fn satisfied_by(self) -> &'static [Permission] {
        use Permission::*;
        let family = match self.resource {
            Resource::Diagnostics | Resource::Everything => return &Permission::ALL,
            Resource::Collection(kind) => family(kind),
        };
        match (family, self.access) {
            (Family::Configuration, Access::Read) => &[ConfigurationRead, ConfigurationReadWrite],
            (Family::Configuration, Access::Write) => &[ConfigurationReadWrite],
            (Family::Apps, Access::Read) => &[AppsRead, AppsReadWrite],
            (Family::Apps, Access::Write) => &[AppsReadWrite],
        }
    }

    /// Whether `grants` allow the operation.
    pub fn allows(self, grants: Grants) -> bool {
        match self.resource {
            Resource::Everything => self.per_family().iter().all(|r| r.allows(grants)),
            _ => self.satisfied_by().iter().any(|p| grants.has(*p)),
        }
    }

    /// The permission(s) needed, for the 403's message.
    pub fn needed(self) -> String {
        match self.resource {
            Resource::Everything => {
                let each: Vec<String> = self.per_family().iter().map(|r| format!("({})", r.needed())).collect();
                each.join(" and ")
            }
            _ => {
                let names: Vec<&str> = self.satisfied_by().iter().map(|p| p.name()).collect();
                names.join(" or ")
            }
        }
    }

    /// [`Resource::Everything`] as one requirement per permission family.
    fn per_family(self) -> [Requirement; 2] {
        [ParentKind::DeviceConfiguration, ParentKind::MobileAppConfiguration].map(|kind| Requirement {
            resource: Resource::Collection(kind),
            access: self.access,
        })
    }

    /// A short name of what is touched, for the audit line.
    pub fn collection(self) -> &'static str {
        match self.resource {
            Resource::Collection(kind) => kind.collection(),
            Resource::Diagnostics => "diagnostics",
            Resource::Everything => "everything",
        }
    }
}

/// Graph's two permission families.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    /// `DeviceManagementConfiguration.*`.
    Configuration,
    /// `DeviceManagementApps.*`.
    Apps,
}

fn family(kind: ParentKind) -> Family {
    match kind {
        ParentKind::DeviceCompliancePolicy | ParentKind::DeviceConfiguration => Family::Configuration,
        ParentKind::MobileAppConfiguration => Family::Apps,
    }
}

/// The gRPC services of the three collections: (service, collection,
/// parent message name, its plural).
const GRPC_SERVICES: [(&str, ParentKind, &str, &str); 3] = [
    (
        "statusd.v1.DeviceCompliancePolicies",
        ParentKind::DeviceCompliancePolicy,
        "DeviceCompliancePolicy",
        "DeviceCompliancePolicies",
    ),
    (
        "statusd.v1.MobileAppConfigurations",
        ParentKind::MobileAppConfiguration,
        "ManagedDeviceMobileAppConfiguration",
        "ManagedDeviceMobileAppConfigurations",
    ),
    (
        "statusd.v1.DeviceConfigurations",
        ParentKind::DeviceConfiguration,
        "DeviceConfiguration",
        "DeviceConfigurations",
    ),
];

/// gRPC paths that need no token: health checks, and reflection so that
/// `grpcurl list`/`describe` work before a client has a token.
const OPEN_GRPC_SERVICES: [&str; 3] = [
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1.ServerReflection/",
    "/grpc.reflection.v1alpha.ServerReflection/",
];

/// The table: every gRPC method by path, and the rule for REST routes.
#[derive(Debug, Clone)]
pub struct Permissions {
    grpc: HashMap<String, Requirement>,
}

impl Default for Permissions {
    fn default() -> Self {
        Self::new()
    }
}

impl Permissions {
    /// The table of every statusd.v1 method.
    pub fn new() -> Self {
        let mut grpc = HashMap::new();
        for (service, kind, entity, plural) in GRPC_SERVICES {
            let need = |access| Requirement {
                resource: Resource::Collection(kind),
                access,
            };
            let methods = [
                (format!("Create{entity}"), Access::Write),
                (format!("Get{entity}"), Access::Read),
                (format!("List{plural}"), Access::Read),
                (format!("Update{entity}"), Access::Write),
                (format!("Delete{entity}"), Access::Write),
            ];
            let statuses = ["User", "Device"].into_iter().flat_map(|shape| {
                [
                    (format!("Create{shape}Status"), Access::Write),
                    (format!("Get{shape}Status"), Access::Read),
                    (format!("List{shape}Statuses"), Access::Read),
                    (format!("Update{shape}Status"), Access::Write),
                    (format!("Delete{shape}Status"), Access::Write),
                    (format!("Watch{shape}Statuses"), Access::Read),
                ]
            });
            // GetUserStatusOverview, GetDeviceStatusSummary, …: Graph's
            // navigation property, capitalised.
            let overviews = kind.status_kinds().map(|sk| {
                let segment = sk.overview_segment();
                (
                    format!("Get{}{}", segment[..1].to_uppercase(), &segment[1..]),
                    Access::Read,
                )
            });
            for (method, access) in methods.into_iter().chain(statuses).chain(overviews) {
                grpc.insert(format!("/{service}/{method}"), need(access));
            }
        }
        grpc.insert(
            "/statusd.v1.Diagnostics/Ping".to_owned(),
            Requirement {
                resource: Resource::Diagnostics,
                access: Access::Read,
            },
        );
        Permissions { grpc }
    }

    /// Whether `path` is open without a token (health and reflection).
    pub fn is_open(path: &str) -> bool {
        OPEN_GRPC_SERVICES.iter().any(|p| path.starts_with(p))
    }

    /// What the gRPC method at `path` needs (`None`: not a statusd method).
    pub fn grpc(&self, path: &str) -> Option<Requirement> {
        self.grpc.get(path).copied()
    }

    /// Every gRPC method path in the table.
    pub fn grpc_methods(&self) -> impl Iterator<Item = &str> {
        self.grpc.keys().map(String::as_str)
    }

    /// What a statusd (non-Graph) REST path needs: `GET /admin/backup`
    /// reads everything.
    pub fn admin(path: &str) -> Option<Requirement> {
        (path == crate::rest::BACKUP_PATH).then_some(Requirement {
            resource: Resource::Everything,
            access: Access::Read,
        })
    }

    /// What a REST request needs, with the route it names (`None`: not a
    /// Graph path statusd serves; the router answers it with a 400).
    pub fn rest(method: &Method, path: &str) -> Option<(Requirement, Route)> {
        let full = path.trim_start_matches('/');
        let (prefix, rest) = full.split_once('/')?;
        let route = path::parse(ApiVersion::from_segment(prefix)?, rest).ok()?;
        let requirement = Requirement {
            resource: Resource::Collection(route_collection(&route)),
            access: method_access(method),
        };
        Some((requirement, route))
    }
}

/// The collection a route belongs to (the parent kind decides the family,
/// for the parent's statuses and certificate references too). Exhaustive on
/// purpose: a new route kind does not compile until it is placed here.
pub fn route_collection(route: &Route) -> ParentKind {
    match route {
        Route::Parents(kind) | Route::ParentsCount(kind) => *kind,
        Route::Parent(pp) | Route::CertificateRef(pp) => pp.kind,
        Route::Statuses(kind, _)
        | Route::StatusesRef(kind, _)
        | Route::StatusesCount(kind, _)
        | Route::Status(kind, _, _)
        | Route::Overview(kind, _) => kind.parent,
    }
}

/// GET and HEAD read; every other method writes (or is refused by the
/// router), so an unusual method never gets by with a read permission.
pub fn method_access(method: &Method) -> Access {
    if method == Method::GET || method == Method::HEAD {
        Access::Read
    } else {
        Access::Write
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_come_from_scp_and_roles() {
        let g = Grants::from_claims(
            Some("User.Read  DeviceManagementApps.Read.All"),
            &["DeviceManagementConfiguration.ReadWrite.All".to_owned()],
        );
        assert!(g.has(Permission::AppsRead));
        assert!(g.has(Permission::ConfigurationReadWrite));
        assert!(!g.has(Permission::AppsReadWrite));
        assert!(!g.has(Permission::ConfigurationRead));
        assert!(Grants::from_claims(Some("deviceManagementApps.read.all"), &[]).is_empty());
    }

    #[test]
    fn read_write_implies_read_and_families_do_not_mix() {
        let config = |access| Requirement {
            resource: Resource::Collection(ParentKind::DeviceConfiguration),
            access,
        };
        let apps = |access| Requirement {
            resource: Resource::Collection(ParentKind::MobileAppConfiguration),
            access,
        };
        let only = |p: Permission| Grants::from_claims(Some(p.name()), &[]);
        assert!(config(Access::Read).allows(only(Permission::ConfigurationReadWrite)));
        assert!(config(Access::Read).allows(only(Permission::ConfigurationRead)));
        assert!(!config(Access::Write).allows(only(Permission::ConfigurationRead)));
        assert!(!config(Access::Read).allows(only(Permission::AppsReadWrite)));
        assert!(!apps(Access::Read).allows(only(Permission::ConfigurationReadWrite)));
        assert_eq!(apps(Access::Write).needed(), "DeviceManagementApps.ReadWrite.All");
        let everything = Permissions::admin("/admin/backup").unwrap();
        assert!(!everything.allows(only(Permission::ConfigurationReadWrite)));
        assert!(!everything.allows(only(Permission::AppsRead)));
        assert!(everything.allows(Grants::from_claims(
            Some("DeviceManagementConfiguration.Read.All DeviceManagementApps.ReadWrite.All"),
            &[]
        )));
        assert_eq!(
            everything.needed(),
            "(DeviceManagementConfiguration.Read.All or DeviceManagementConfiguration.ReadWrite.All) and \
             (DeviceManagementApps.Read.All or DeviceManagementApps.ReadWrite.All)"
        );
    }

    #[test]
    fn every_rest_route_kind_is_placed() {
        let p = "/v1.0/deviceManagement/deviceCompliancePolicies";
        let c = "/beta/deviceManagement/deviceConfigurations";
        let m = "/localtest/deviceAppManagement/mobileAppConfigurations";
        for (path, kind) in [
            (p.to_owned(), ParentKind::DeviceCompliancePolicy),
            (format!("{p}/$count"), ParentKind::DeviceCompliancePolicy),
            (format!("{m}/x"), ParentKind::MobileAppConfiguration),
            (format!("{c}/x/rootCertificate/$ref"), ParentKind::DeviceConfiguration),
            (format!("{m}/x/userStatuses"), ParentKind::MobileAppConfiguration),
            (format!("{m}/x/deviceStatuses/$ref"), ParentKind::MobileAppConfiguration),
            (
                format!("{c}/x/identityCertificate/userStatuses/$count"),
                ParentKind::DeviceConfiguration,
            ),
            (format!("{p}/x/deviceStatuses/s"), ParentKind::DeviceCompliancePolicy),
        ] {
            let (r, _) = Permissions::rest(&Method::GET, &path).unwrap_or_else(|| panic!("{path}"));
            assert_eq!(r.resource, Resource::Collection(kind), "{path}");
            assert_eq!(r.access, Access::Read);
            let (w, _) = Permissions::rest(&Method::PATCH, &path).unwrap();
            assert_eq!(w.access, Access::Write);
        }
        assert!(Permissions::rest(&Method::GET, "/v1.0/deviceManagement/nope").is_none());
        assert!(Permissions::rest(&Method::GET, "/other").is_none());
    }

    #[test]
    fn health_and_reflection_are_open() {
        assert!(Permissions::is_open("/grpc.health.v1.Health/Check"));
        assert!(Permissions::is_open(
            "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"
        ));
        assert!(!Permissions::is_open("/statusd.v1.Diagnostics/Ping"));
        assert!(!Permissions::is_open("/grpc.health.v1.HealthX/Check"));
    }
}
