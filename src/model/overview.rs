//! Status overviews: Graph's per-parent counts of its statuses.
//!
//! The store keeps a [`Tally`] per parent and shape — how many statuses hold
//! each `complianceStatus` value — changed in the same atomic write as the
//! status it counts. Graph's six overview types (`deviceStatusOverview`,
//! `userStatusSummary`, …) are views of a tally through one table,
//! [`Count::of`]; this module is the only place that knows it.

use super::{ComplianceStatus, DateTime, Parent, ParentKind, PropertyType, StatusKind, StatusShape};
use serde::{Deserialize, Serialize};

/// How many statuses of one shape under one parent hold each status value,
/// when the latest of them changed, and the store revision of that change.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tally {
    /// Indexed by [`ComplianceStatus::number`].
    pub counts: [u64; 8],
    /// When the latest status change under the parent was committed
    /// ([`DateTime::MIN`] before the first).
    pub last_update: DateTime,
    /// The store revision of that change (0 where the backend has none).
    pub revision: u64,
}

/// One status write, as it changes a tally: the value it removes (an update
/// or delete), the value it adds (a create or update), and when.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TallyChange {
    /// The stored status's value before the write, if there was one.
    pub removed: Option<ComplianceStatus>,
    /// The status's value after the write, unless it was deleted.
    pub added: Option<ComplianceStatus>,
    /// When the write was made.
    pub at: DateTime,
}

impl Tally {
    /// Applies one change made at `revision`.
    pub fn apply(&mut self, change: &TallyChange, revision: u64) {
        if let Some(s) = change.removed {
            let n = &mut self.counts[s as usize];
            *n = n.saturating_sub(1);
        }
        if let Some(s) = change.added {
            self.counts[s as usize] += 1;
        }
        self.last_update = self.last_update.max(change.at);
        self.revision = self.revision.max(revision);
    }

    /// The number of statuses counted.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// How many statuses hold `status`.
    pub fn count(&self, status: ComplianceStatus) -> u64 {
        self.counts[status as usize]
    }
}

/// The counts Graph's overview types report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Count {
    /// `pendingCount`.
    Pending,
    /// `notApplicableCount`.
    NotApplicable,
    /// `notApplicablePlatformCount` (device overviews, beta).
    NotApplicablePlatform,
    /// `successCount`.
    Success,
    /// `errorCount`.
    Error,
    /// `failedCount`.
    Failed,
    /// `conflictCount` (beta).
    Conflict,
}

impl Count {
    /// **The mapping** from a status value to the count it adds to. Where a
    /// type has no `conflictCount` (v1.0), conflicts are errors, so the
    /// counts of every type add up to the number of statuses.
    /// `notApplicablePlatformCount` has no status value of its own and stays 0.
    pub fn of(status: ComplianceStatus, has_conflict_count: bool) -> Count {
        match status {
            ComplianceStatus::Unknown => Count::Pending,
            ComplianceStatus::NotApplicable | ComplianceStatus::NotAssigned => Count::NotApplicable,
            ComplianceStatus::Compliant | ComplianceStatus::Remediated => Count::Success,
            ComplianceStatus::NonCompliant => Count::Failed,
            ComplianceStatus::Error => Count::Error,
            ComplianceStatus::Conflict if has_conflict_count => Count::Conflict,
            ComplianceStatus::Conflict => Count::Error,
        }
    }

    /// The Graph property name.
    pub fn property(self) -> &'static str {
        match self {
            Count::Pending => "pendingCount",
            Count::NotApplicable => "notApplicableCount",
            Count::NotApplicablePlatform => "notApplicablePlatformCount",
            Count::Success => "successCount",
            Count::Error => "errorCount",
            Count::Failed => "failedCount",
            Count::Conflict => "conflictCount",
        }
    }
}

/// Which Graph schema an overview is shaped for: v1.0's, or beta's (which
/// adds `conflictCount`, and `notApplicablePlatformCount` on device
/// overviews). gRPC messages carry beta's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverviewSchema {
    /// Graph v1.0.
    V1,
    /// Graph beta (and gRPC).
    Beta,
}

/// A parent's overview of one status collection, as Graph shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Overview {
    /// The collection it counts.
    pub kind: StatusKind,
    /// The entity's key: the parent's id.
    pub id: String,
    /// The counts the schema has, in Graph's order, with their values.
    pub counts: Vec<(Count, i32)>,
    /// `lastUpdateDateTime`.
    pub last_update: DateTime,
    /// `configurationVersion`: the parent's version.
    pub configuration_version: i32,
    /// The store revision of the latest change counted (not a Graph property).
    pub revision: u64,
}

impl Overview {
    /// The overview of `parent`'s statuses of `kind` from their tally.
    /// Counts above Int32's range are reported as its maximum.
    pub fn new(kind: StatusKind, parent: &Parent, tally: &Tally, schema: OverviewSchema) -> Overview {
        let counts = counts_of(kind.shape, schema)
            .iter()
            .map(|&count| {
                let n: u64 = ComplianceStatus::ALL
                    .into_iter()
                    .filter(|&s| Count::of(s, has_conflict_count(schema)) == count)
                    .map(|s| tally.count(s))
                    .sum();
                (count, i32::try_from(n).unwrap_or(i32::MAX))
            })
            .collect();
        Overview {
            kind,
            id: parent.id.clone(),
            counts,
            last_update: tally.last_update,
            configuration_version: parent.version,
            revision: tally.revision,
        }
    }

    /// The value of one count (0 if the schema does not have it).
    pub fn count(&self, count: Count) -> i32 {
        self.counts.iter().find(|(c, _)| *c == count).map_or(0, |(_, n)| *n)
    }
}

fn has_conflict_count(schema: OverviewSchema) -> bool {
    schema == OverviewSchema::Beta
}

/// The counts an overview of `shape` has in `schema`, in Graph's order.
pub fn counts_of(shape: StatusShape, schema: OverviewSchema) -> &'static [Count] {
    use Count::*;
    match (shape, schema) {
        (_, OverviewSchema::V1) => &[Pending, NotApplicable, Success, Error, Failed],
        (StatusShape::User, OverviewSchema::Beta) => &[Pending, NotApplicable, Success, Error, Failed, Conflict],
        (StatusShape::Device, OverviewSchema::Beta) => &[
            Pending,
            NotApplicable,
            NotApplicablePlatform,
            Success,
            Error,
            Failed,
            Conflict,
        ],
    }
}

/// The properties of an overview of `shape` in `schema`, in Graph's order.
pub fn overview_schema(shape: StatusShape, schema: OverviewSchema) -> Vec<(&'static str, PropertyType)> {
    let mut props = vec![("id", PropertyType::String { nullable: false })];
    props.extend(
        counts_of(shape, schema)
            .iter()
            .map(|c| (c.property(), PropertyType::Int32)),
    );
    props.push(("lastUpdateDateTime", PropertyType::DateTime));
    props.push(("configurationVersion", PropertyType::Int32));
    props
}

impl StatusKind {
    /// Graph's overview entity type of this collection, e.g.
    /// `deviceComplianceUserOverview`.
    pub fn overview_entity_name(self) -> &'static str {
        use ParentKind::*;
        use StatusShape::*;
        match (self.parent, self.shape) {
            (DeviceCompliancePolicy, User) => "deviceComplianceUserOverview",
            (DeviceCompliancePolicy, Device) => "deviceComplianceDeviceOverview",
            (MobileAppConfiguration, User) => "managedDeviceMobileAppConfigurationUserSummary",
            (MobileAppConfiguration, Device) => "managedDeviceMobileAppConfigurationDeviceSummary",
            (DeviceConfiguration, User) => "deviceConfigurationUserOverview",
            (DeviceConfiguration, Device) => "deviceConfigurationDeviceOverview",
        }
    }

    /// Graph's navigation property from the parent to the overview, e.g.
    /// `userStatusOverview` or `deviceStatusSummary`.
    pub fn overview_segment(self) -> &'static str {
        match (self.parent, self.shape) {
            (ParentKind::MobileAppConfiguration, StatusShape::User) => "userStatusSummary",
            (ParentKind::MobileAppConfiguration, StatusShape::Device) => "deviceStatusSummary",
            (_, StatusShape::User) => "userStatusOverview",
            (_, StatusShape::Device) => "deviceStatusOverview",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_value_counts_once_in_every_schema() {
        for shape in [StatusShape::User, StatusShape::Device] {
            for schema in [OverviewSchema::V1, OverviewSchema::Beta] {
                for status in ComplianceStatus::ALL {
                    let mut tally = Tally::default();
                    tally.apply(
                        &TallyChange {
                            removed: None,
                            added: Some(status),
                            at: DateTime::MIN,
                        },
                        1,
                    );
                    let kind = StatusKind {
                        parent: ParentKind::DeviceConfiguration,
                        shape,
                    };
                    let o = Overview::new(kind, &Parent::empty(), &tally, schema);
                    let total: i32 = o.counts.iter().map(|(_, n)| n).sum();
                    assert_eq!(total, 1, "{status:?} in {schema:?} {shape:?}");
                }
            }
        }
    }

    #[test]
    fn an_update_moves_a_status_between_counts() {
        let mut tally = Tally::default();
        let t1 = DateTime::from_ticks(10).unwrap();
        let t2 = DateTime::from_ticks(20).unwrap();
        tally.apply(
            &TallyChange {
                removed: None,
                added: Some(ComplianceStatus::Unknown),
                at: t2,
            },
            4,
        );
        tally.apply(
            &TallyChange {
                removed: Some(ComplianceStatus::Unknown),
                added: Some(ComplianceStatus::Conflict),
                at: t1,
            },
            5,
        );
        assert_eq!(tally.count(ComplianceStatus::Unknown), 0);
        assert_eq!(tally.count(ComplianceStatus::Conflict), 1);
        // The latest change time never goes back, even if a clock did.
        assert_eq!((tally.last_update, tally.revision), (t2, 5));
    }
}
