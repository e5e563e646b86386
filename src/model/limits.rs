//! Size limits on stored values: records stay small (sled is happiest well
//! below its 128 KiB blob threshold), and one client cannot fill the disk with
//! a single request.

use crate::error::{Error, Result};

/// Longest string property (names, principal names, models), in bytes.
pub const MAX_TEXT_LEN: usize = 4096;
/// Longest `description`, in bytes.
pub const MAX_LONG_TEXT_LEN: usize = 16 * 1024;
/// Most entries in a list property (`targetedMobileApps`).
pub const MAX_LIST_LEN: usize = 1000;
/// Largest serialized set of derived-type properties kept for a parent.
pub const MAX_ADDITIONAL_BYTES: usize = 32 * 1024;

/// Checks a short text property.
pub fn text(field: &str, value: &str) -> Result<()> {
    check(field, value, MAX_TEXT_LEN)
}

/// Checks a long text property (`description`).
pub fn long_text(field: &str, value: &str) -> Result<()> {
    check(field, value, MAX_LONG_TEXT_LEN)
}

fn check(field: &str, value: &str, max: usize) -> Result<()> {
    if value.len() > max {
        return Err(Error::invalid(
            field,
            format!("is {} bytes long; at most {max} are allowed", value.len()),
        ));
    }
    if value.chars().any(|c| c == '\0') {
        return Err(Error::invalid(field, "must not contain NUL characters"));
    }
    Ok(())
}
