//! The domain: entity types, the nine collection kinds, and every validation
//! rule. Both edges (gRPC and REST) convert into these types and call the
//! service; neither holds a rule of its own.

mod compliance;
mod datetime;
pub mod event;
pub mod id;
mod kind;
pub mod limits;
pub mod overview;
pub mod parent;
pub mod property;
pub mod status;

pub use compliance::ComplianceStatus;
pub use datetime::{DateTime, DateTimeError};
pub use event::{Change, Event};
pub use kind::{ParentKind, StatusKind, StatusShape};
pub use overview::{Count, Overview, OverviewSchema, Tally, TallyChange};
pub use parent::Parent;
pub use property::{PropertyType, PropertyValue, Queryable, SortKey};
pub use status::{DeviceStatus, Status, StatusBody, UserStatus};

/// Graph camelCase name → proto snake_case name (`devicesCount` → `devices_count`).
pub fn snake_case(camel: &str) -> String {
    let mut out = String::with_capacity(camel.len() + 4);
    for c in camel.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// Proto snake_case name → Graph camelCase name (`devices_count` → `devicesCount`).
pub fn camel_case(snake: &str) -> String {
    let mut out = String::with_capacity(snake.len());
    let mut upper = false;
    for c in snake.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.push(c.to_ascii_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}
