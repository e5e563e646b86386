//! Changes to a parent's statuses, as Watch streams them.

use super::Status;
use serde::{Deserialize, Serialize};

/// What one committed change did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Change {
    /// A status was created (as stored).
    Created(Status),
    /// A status was updated (its new value).
    Updated(Status),
    /// The status with this id was deleted.
    Deleted(String),
    /// The parent was deleted, and its statuses with it: the last event of a
    /// watch.
    ParentDeleted,
}

/// A committed change and its store revision.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Store-wide, increasing in commit order.
    pub revision: u64,
    /// The change.
    pub change: Change,
}
