//! Graph's `complianceStatus` enumeration.

use serde::{Deserialize, Serialize};

/// Compliance status of a policy report. Stored by variant index: never
/// reorder, only append.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum ComplianceStatus {
    /// `unknown` (Graph's default).
    #[default]
    Unknown,
    /// `notApplicable`.
    NotApplicable,
    /// `compliant`.
    Compliant,
    /// `remediated`.
    Remediated,
    /// `nonCompliant`.
    NonCompliant,
    /// `error`.
    Error,
    /// `conflict`.
    Conflict,
    /// `notAssigned` (valid in v1.0 too, though older v1.0 docs omit it).
    NotAssigned,
}

impl ComplianceStatus {
    /// Every value, in Graph's (and the proto enum's) order.
    pub const ALL: [ComplianceStatus; 8] = [
        ComplianceStatus::Unknown,
        ComplianceStatus::NotApplicable,
        ComplianceStatus::Compliant,
        ComplianceStatus::Remediated,
        ComplianceStatus::NonCompliant,
        ComplianceStatus::Error,
        ComplianceStatus::Conflict,
        ComplianceStatus::NotAssigned,
    ];

    /// The Graph wire name (case-sensitive).
    pub fn graph_name(self) -> &'static str {
        match self {
            ComplianceStatus::Unknown => "unknown",
            ComplianceStatus::NotApplicable => "notApplicable",
            ComplianceStatus::Compliant => "compliant",
            ComplianceStatus::Remediated => "remediated",
            ComplianceStatus::NonCompliant => "nonCompliant",
            ComplianceStatus::Error => "error",
            ComplianceStatus::Conflict => "conflict",
            ComplianceStatus::NotAssigned => "notAssigned",
        }
    }

    /// Parses a Graph wire name; `None` for anything else (e.g. the seeds' `"String"`).
    pub fn from_graph_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.graph_name() == name)
    }

    /// The proto enum number (the index in [`ComplianceStatus::ALL`]).
    pub fn number(self) -> i32 {
        self as i32
    }

    /// From a proto enum number; `None` for numbers the enum does not define.
    pub fn from_number(n: i32) -> Option<Self> {
        usize::try_from(n).ok().and_then(|i| Self::ALL.get(i).copied())
    }

    /// The list of valid names, for error messages.
    pub fn names() -> String {
        Self::ALL.map(|s| s.graph_name()).join(", ")
    }
}
