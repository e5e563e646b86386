//! Graph paths → routes.
//!
//! Grammar (after the version prefix):
//! ```text
//! deviceManagement/deviceCompliancePolicies[/$count | /{id} …]
//! deviceAppManagement/mobileAppConfigurations[/$count | /{id} …]
//! deviceManagement/deviceConfigurations[/$count | /{id} …]
//! {id} … = {id}[/rootCertificate | /identityCertificate]*   (beta; device configurations)
//!          [ /$ref                                   (only after a certificate segment)
//!          | /userStatuses|deviceStatuses[/$ref | /$count | /{statusId}]
//!          | /userStatusOverview|deviceStatusOverview      (policies, configurations)
//!          | /userStatusSummary|deviceStatusSummary ]      (mobile app configurations)
//! ```
//! Keys may also be written the OData way, `deviceCompliancePolicies('id')`.
//! An unknown segment is Graph's 400 "Resource not found for the segment".

use super::error::GraphError;
use crate::model::{ParentKind, StatusKind, StatusShape};
use percent_encoding::percent_decode_str;

/// The Graph version a request was made under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiVersion {
    /// `/v1.0`.
    V1,
    /// `/beta`.
    Beta,
    /// `/localtest` (seen in seeds 000/001; beta-shaped).
    LocalTest,
}

impl ApiVersion {
    /// From the first path segment.
    pub fn from_segment(s: &str) -> Option<Self> {
        match s {
            "v1.0" => Some(ApiVersion::V1),
            "beta" => Some(ApiVersion::Beta),
            "localtest" => Some(ApiVersion::LocalTest),
            _ => None,
        }
    }

    /// The path segment.
    pub fn segment(self) -> &'static str {
        match self {
            ApiVersion::V1 => "v1.0",
            ApiVersion::Beta => "beta",
            ApiVersion::LocalTest => "localtest",
        }
    }

    /// Whether beta-only properties and paths exist under this prefix.
    pub fn is_beta(self) -> bool {
        self != ApiVersion::V1
    }

    /// The overview properties this prefix shows (v1.0's, or beta's).
    pub fn overview_schema(self) -> crate::model::OverviewSchema {
        if self.is_beta() {
            crate::model::OverviewSchema::Beta
        } else {
            crate::model::OverviewSchema::V1
        }
    }
}

/// A certificate navigation of a device configuration (beta).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Certificate {
    /// `rootCertificate`.
    Root,
    /// `identityCertificate`.
    Identity,
}

impl Certificate {
    /// Graph's navigation property name.
    pub fn name(self) -> &'static str {
        match self {
            Certificate::Root => "rootCertificate",
            Certificate::Identity => "identityCertificate",
        }
    }
}

/// A parent named by id, possibly followed through certificate references.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParentPath {
    /// The parent kind of `id`.
    pub kind: ParentKind,
    /// The id in the path.
    pub id: String,
    /// Certificate references to follow from it, in order.
    pub via: Vec<Certificate>,
}

/// What a path names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// A parent collection.
    Parents(ParentKind),
    /// `…/$count` of a parent collection.
    ParentsCount(ParentKind),
    /// One parent (or the configuration a certificate reference leads to).
    Parent(ParentPath),
    /// `…/rootCertificate/$ref`: the reference itself (`via` is non-empty).
    CertificateRef(ParentPath),
    /// A status collection.
    Statuses(StatusKind, ParentPath),
    /// `…/userStatuses/$ref`.
    StatusesRef(StatusKind, ParentPath),
    /// `…/userStatuses/$count`.
    StatusesCount(StatusKind, ParentPath),
    /// One status.
    Status(StatusKind, ParentPath, String),
    /// The parent's overview of a status collection (`…/deviceStatusOverview`,
    /// `…/userStatusSummary`, …).
    Overview(StatusKind, ParentPath),
}

/// Parses the path after the version prefix (still percent-encoded).
///
/// Each segment is percent-decoded and must then be UTF-8: a lossy decode
/// would map `%FF` and `%FE` alike to U+FFFD, so two different ids in URLs
/// would name one record. Decoded segments (`%2e%2e` is `..`) go to the
/// service as they are, where the id rules judge them.
pub fn parse(version: ApiVersion, path: &str) -> Result<Route, GraphError> {
    let segments: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(decode_segment)
        .collect::<Result<_, _>>()?;
    let mut it = segments.iter().map(String::as_str).peekable();
    let root = it
        .next()
        .ok_or_else(|| GraphError::bad_request("The request names no resource."))?;
    let (collection, key) = split_key(it.next().ok_or_else(|| unknown_segment(root))?)?;
    let kind = ParentKind::ALL
        .into_iter()
        .find(|k| k.root() == root && k.collection() == collection)
        .ok_or_else(|| {
            if ParentKind::ALL.iter().any(|k| k.root() == root) {
                unknown_segment(collection)
            } else {
                unknown_segment(root)
            }
        })?;
    let id = match key {
        Some(k) => k,
        None => match it.next() {
            None => return Ok(Route::Parents(kind)),
            Some("$count") => return end(it, Route::ParentsCount(kind)),
            Some(id) => id.to_owned(),
        },
    };
    let mut parent = ParentPath {
        kind,
        id,
        via: Vec::new(),
    };
    loop {
        let Some(seg) = it.next() else {
            return Ok(Route::Parent(parent));
        };
        let (name, key) = split_key(seg)?;
        let cert = match name {
            "rootCertificate" => Some(Certificate::Root),
            "identityCertificate" => Some(Certificate::Identity),
            _ => None,
        };
        if let Some(cert) = cert {
            if kind != ParentKind::DeviceConfiguration || !version.is_beta() || key.is_some() {
                return Err(unknown_segment(seg));
            }
            if parent.via.len() >= 4 {
                return Err(GraphError::bad_request("Too many certificate navigations in one path."));
            }
            parent.via.push(cert);
            if it.peek() == Some(&"$ref") {
                it.next();
                return end(it, Route::CertificateRef(parent));
            }
            continue;
        }
        if let Some(overview) = kind.status_kinds().into_iter().find(|sk| sk.overview_segment() == name) {
            if key.is_some() {
                return Err(unknown_segment(seg));
            }
            return end(it, Route::Overview(overview, parent));
        }
        let shape = match name {
            "userStatuses" => StatusShape::User,
            "deviceStatuses" => StatusShape::Device,
            _ => return Err(unknown_segment(seg)),
        };
        let status_kind = StatusKind { parent: kind, shape };
        if let Some(k) = key {
            return end(it, Route::Status(status_kind, parent, k));
        }
        return match it.next() {
            None => Ok(Route::Statuses(status_kind, parent)),
            Some("$ref") => end(it, Route::StatusesRef(status_kind, parent)),
            Some("$count") => end(it, Route::StatusesCount(status_kind, parent)),
            Some(id) => {
                let id = id.to_owned();
                end(it, Route::Status(status_kind, parent, id))
            }
        };
    }
}

fn decode_segment(s: &str) -> Result<String, GraphError> {
    percent_decode_str(s)
        .decode_utf8()
        .map(|c| c.into_owned())
        .map_err(|_| GraphError::bad_request(format!("The path segment '{s}' is not UTF-8 once percent-decoded.")))
}

fn end<'a>(mut rest: impl Iterator<Item = &'a str>, route: Route) -> Result<Route, GraphError> {
    match rest.next() {
        None => Ok(route),
        Some(seg) => Err(unknown_segment(seg)),
    }
}

/// `name('key')` → (`name`, Some(`key`)); `name` → (`name`, None).
fn split_key(seg: &str) -> Result<(&str, Option<String>), GraphError> {
    let Some(open) = seg.find('(') else {
        return Ok((seg, None));
    };
    let inner = seg[open + 1..]
        .strip_suffix(')')
        .ok_or_else(|| GraphError::bad_request(format!("The key in segment '{seg}' is not closed.")))?;
    let key = match inner.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')) {
        Some(quoted) => quoted.replace("''", "'"),
        None => inner.to_owned(),
    };
    Ok((&seg[..open], Some(key)))
}

fn unknown_segment(seg: &str) -> GraphError {
    GraphError::bad_request(format!("Resource not found for the segment '{seg}'."))
}

impl Route {
    /// A label for this route with ids left out, e.g.
    /// `deviceManagement/deviceCompliancePolicies/{id}/userStatuses` (for
    /// metrics: bounded, whatever the ids).
    pub fn label(&self) -> String {
        let parent = |pp: &ParentPath| {
            let mut s = format!("{}/{}/{{id}}", pp.kind.root(), pp.kind.collection());
            for c in &pp.via {
                s.push('/');
                s.push_str(c.name());
            }
            s
        };
        match self {
            Route::Parents(k) => format!("{}/{}", k.root(), k.collection()),
            Route::ParentsCount(k) => format!("{}/{}/$count", k.root(), k.collection()),
            Route::Parent(pp) => parent(pp),
            Route::CertificateRef(pp) => format!("{}/$ref", parent(pp)),
            Route::Statuses(k, pp) => format!("{}/{}", parent(pp), k.segment()),
            Route::StatusesRef(k, pp) => format!("{}/{}/$ref", parent(pp), k.segment()),
            Route::StatusesCount(k, pp) => format!("{}/{}/$count", parent(pp), k.segment()),
            Route::Status(k, pp, _) => format!("{}/{}/{{id}}", parent(pp), k.segment()),
            Route::Overview(k, pp) => format!("{}/{}", parent(pp), k.overview_segment()),
        }
    }
}

/// The [`Route::label`] of `path` (after the version prefix); `other` if it
/// is no route.
pub fn route_label(version: ApiVersion, path: &str) -> String {
    parse(version, path).map_or_else(|_| "other".to_owned(), |r| r.label())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(v: ApiVersion, p: &str) -> Route {
        parse(v, p).unwrap()
    }

    #[test]
    fn parses_every_documented_shape() {
        use ApiVersion::*;
        let user = |p| StatusKind {
            parent: p,
            shape: StatusShape::User,
        };
        let pp = |k, id: &str, via: Vec<Certificate>| ParentPath {
            kind: k,
            id: id.into(),
            via,
        };
        let dc = ParentKind::DeviceConfiguration;
        assert_eq!(
            route(V1, "deviceManagement/deviceCompliancePolicies"),
            Route::Parents(ParentKind::DeviceCompliancePolicy)
        );
        assert_eq!(
            route(
                LocalTest,
                "deviceAppManagement/mobileAppConfigurations/a%20b/userStatuses/$ref"
            ),
            Route::StatusesRef(
                user(ParentKind::MobileAppConfiguration),
                pp(ParentKind::MobileAppConfiguration, "a b", vec![])
            )
        );
        assert_eq!(
            route(
                Beta,
                "deviceManagement/deviceConfigurations('x')/identityCertificate/rootCertificate/userStatuses"
            ),
            Route::Statuses(user(dc), pp(dc, "x", vec![Certificate::Identity, Certificate::Root]))
        );
        assert_eq!(
            route(Beta, "deviceManagement/deviceConfigurations/x/rootCertificate/$ref"),
            Route::CertificateRef(pp(dc, "x", vec![Certificate::Root]))
        );
        assert_eq!(
            route(V1, "deviceManagement/deviceConfigurations/x/userStatuses('s')"),
            Route::Status(user(dc), pp(dc, "x", vec![]), "s".into())
        );
    }

    #[test]
    fn refuses_unknown_segments() {
        use ApiVersion::*;
        for (v, p) in [
            (
                V1,
                "deviceManagement/deviceConfigurations/x/rootCertificate/userStatuses",
            ),
            (Beta, "deviceManagement/deviceCompliancePolicies/x/rootCertificate"),
            (V1, "deviceManagement/nope"),
            (V1, "deviceAppManagement/deviceCompliancePolicies"),
            (V1, "deviceManagement/deviceCompliancePolicies/x/userStatuses/s/extra"),
            (V1, ""),
            (V1, "deviceManagement/deviceCompliancePolicies/%FF"),
            (V1, "deviceManagement/deviceCompliancePolicies/p/userStatuses/a%C3"),
        ] {
            assert!(parse(v, p).is_err(), "{p}");
        }
    }

    #[test]
    fn segments_reach_the_service_decoded() {
        let pp = |id: &str| ParentPath {
            kind: ParentKind::DeviceCompliancePolicy,
            id: id.into(),
            via: vec![],
        };
        for (raw, id) in [("%2e%2e", ".."), ("%2E", "."), ("a+b", "a+b"), ("%C3%A9", "é")] {
            assert_eq!(
                parse(
                    ApiVersion::V1,
                    &format!("deviceManagement/deviceCompliancePolicies/{raw}")
                )
                .unwrap(),
                Route::Parent(pp(id)),
                "{raw}"
            );
        }
    }
}
