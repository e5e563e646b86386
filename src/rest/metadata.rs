//! OData `$metadata` (CSDL XML, OData 4.0) of each version prefix, generated
//! from the model's schema (`model::property`, `model::overview`) like the
//! OpenAPI document, never written per entity: the `complianceStatus`
//! enumeration, the three (abstract) parent types with their status
//! collections, overviews and (beta) certificate references as navigation
//! properties, the six status and six overview types with the properties
//! the version has, and Graph's two singletons, `deviceManagement` and
//! `deviceAppManagement`, that contain the parent collections.

use super::json::status_properties;
use super::path::ApiVersion;
use crate::model::property::{parent_schema, status_schema, PropertyType};
use crate::model::{overview, ComplianceStatus, ParentKind, StatusKind};
use std::fmt::Write;
use std::sync::OnceLock;

const NAMESPACE: &str = "microsoft.graph";

/// The document of `version` (built once per version).
pub fn document(version: ApiVersion) -> &'static str {
    static DOCS: [OnceLock<String>; 3] = [OnceLock::new(), OnceLock::new(), OnceLock::new()];
    let slot = match version {
        ApiVersion::V1 => 0,
        ApiVersion::Beta => 1,
        ApiVersion::LocalTest => 2,
    };
    DOCS[slot].get_or_init(|| build(version))
}

/// An Edm type and whether it can be null.
fn edm(t: PropertyType) -> (&'static str, bool) {
    match t {
        PropertyType::String { nullable } => ("Edm.String", nullable),
        PropertyType::Int32 => ("Edm.Int32", false),
        PropertyType::DateTime => ("Edm.DateTimeOffset", false),
        PropertyType::ComplianceStatus => ("microsoft.graph.complianceStatus", false),
        // The one opaque property is `targetedMobileApps`.
        PropertyType::Opaque => ("Collection(Edm.String)", false),
    }
}

fn property(out: &mut String, name: &str, t: PropertyType) {
    let (ty, nullable) = edm(t);
    let _ = writeln!(
        out,
        r#"        <Property Name="{name}" Type="{ty}" Nullable="{nullable}"/>"#
    );
}

/// A navigation property: contained (the entity lives under its parent's
/// path) unless it is a reference.
fn navigation(out: &mut String, name: &str, target: &str, collection: bool, contained: bool) {
    let ty = if collection {
        format!("Collection({NAMESPACE}.{target})")
    } else {
        format!("{NAMESPACE}.{target}")
    };
    let contains = if contained { r#" ContainsTarget="true""# } else { "" };
    let _ = writeln!(
        out,
        r#"        <NavigationProperty Name="{name}" Type="{ty}"{contains}/>"#
    );
}

/// `<EntityType>` with `id` as key (every statusd entity has one).
fn entity(out: &mut String, name: &str, is_abstract: bool, body: impl FnOnce(&mut String)) {
    let abstract_attr = if is_abstract { r#" Abstract="true""# } else { "" };
    let _ = writeln!(out, r#"      <EntityType Name="{name}"{abstract_attr}>"#);
    out.push_str("        <Key><PropertyRef Name=\"id\"/></Key>\n");
    property(out, "id", PropertyType::String { nullable: false });
    body(out);
    out.push_str("      </EntityType>\n");
}

fn build(version: ApiVersion) -> String {
    let mut out = String::with_capacity(16 << 10);
    out.push_str("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n");
    out.push_str(
        "<edmx:Edmx Version=\"4.0\" xmlns:edmx=\"http://docs.oasis-open.org/odata/ns/edmx\">\n  <edmx:DataServices>\n",
    );
    let _ = writeln!(
        out,
        r#"    <Schema Namespace="{NAMESPACE}" xmlns="http://docs.oasis-open.org/odata/ns/edm">"#
    );
    out.push_str("      <EnumType Name=\"complianceStatus\" UnderlyingType=\"Edm.Int32\">\n");
    for s in ComplianceStatus::ALL {
        let _ = writeln!(
            out,
            r#"        <Member Name="{}" Value="{}"/>"#,
            s.graph_name(),
            s.number()
        );
    }
    out.push_str("      </EnumType>\n");
    for kind in ParentKind::ALL {
        entity(&mut out, kind.entity_name(), true, |out| {
            for (name, t) in parent_schema(kind).into_iter().filter(|(n, _)| *n != "id") {
                property(out, name, t);
            }
            for sk in kind.status_kinds() {
                navigation(out, sk.segment(), sk.entity_name(), true, true);
                navigation(out, sk.overview_segment(), sk.overview_entity_name(), false, true);
            }
            if kind.has_certificates() && version.is_beta() {
                for nav in ["rootCertificate", "identityCertificate"] {
                    navigation(out, nav, kind.entity_name(), false, false);
                }
            }
        });
    }
    let schema = version.overview_schema();
    for sk in StatusKind::ALL {
        let types = status_schema(sk.shape);
        entity(&mut out, sk.entity_name(), false, |out| {
            for name in status_properties(sk.shape, version).into_iter().filter(|n| *n != "id") {
                let t = types
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map_or(PropertyType::Opaque, |(_, t)| *t);
                property(out, name, t);
            }
        });
        entity(&mut out, sk.overview_entity_name(), false, |out| {
            for (name, t) in overview::overview_schema(sk.shape, schema)
                .into_iter()
                .filter(|(n, _)| *n != "id")
            {
                property(out, name, t);
            }
        });
    }
    for root in ["deviceManagement", "deviceAppManagement"] {
        entity(&mut out, root, false, |out| {
            for kind in ParentKind::ALL.into_iter().filter(|k| k.root() == root) {
                navigation(out, kind.collection(), kind.entity_name(), true, true);
            }
        });
    }
    out.push_str("      <EntityContainer Name=\"GraphService\">\n");
    for root in ["deviceManagement", "deviceAppManagement"] {
        let _ = writeln!(out, r#"        <Singleton Name="{root}" Type="{NAMESPACE}.{root}"/>"#);
    }
    out.push_str("      </EntityContainer>\n    </Schema>\n  </edmx:DataServices>\n</edmx:Edmx>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_version_has_its_own_properties() {
        let v1 = document(ApiVersion::V1);
        let beta = document(ApiVersion::Beta);
        assert!(beta.contains(r#"<Property Name="platform""#) && !v1.contains(r#"<Property Name="platform""#));
        assert!(beta.contains(r#"Name="conflictCount""#) && !v1.contains(r#"Name="conflictCount""#));
        assert!(beta.contains(r#"Name="rootCertificate""#) && !v1.contains(r#"Name="rootCertificate""#));
        assert_eq!(v1.matches("<EntityType ").count(), 3 + 6 + 6 + 2);
    }
}
