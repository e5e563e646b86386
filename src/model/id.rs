//! Entity ids: opaque strings, server-generated when absent.
//!
//! Real Intune ids are GUIDs or compound strings such as
//! `{deviceId}_{policyId}_{userId}`, so any text is accepted within bounds:
//! not longer than [`MAX_ID_LEN`] bytes, no control characters (they break
//! logs and headers), and nothing that would stop a client from addressing
//! the entity by a plain Graph path: no `/`, `\`, `?`, `#` or `%` (path,
//! query and fragment delimiters, and percent-escapes that clients decode
//! differently), not `.` or `..` (URL normalisation removes them), and no
//! leading `$` (`$count`, `$ref` and the like are Graph's own segments).

use crate::error::{Error, Result};

/// Longest id accepted, in bytes.
pub const MAX_ID_LEN: usize = 256;

/// Characters an id may not contain: they delimit or escape parts of a URL.
const RESERVED: [char; 5] = ['/', '\\', '?', '#', '%'];

/// A fresh id: a UUID v4 in Graph's lowercase hyphenated form.
pub fn generate() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Checks a client-given id; `field` names it in the error.
pub fn validate(field: &str, id: &str) -> Result<()> {
    if id.is_empty() {
        return Err(Error::invalid(field, "must not be empty"));
    }
    if id.len() > MAX_ID_LEN {
        return Err(Error::invalid(
            field,
            format!("must be at most {MAX_ID_LEN} bytes long"),
        ));
    }
    if id.chars().any(|c| c.is_control()) {
        return Err(Error::invalid(field, "must not contain control characters"));
    }
    if let Some(c) = id.chars().find(|c| RESERVED.contains(c)) {
        return Err(Error::invalid(
            field,
            format!("must not contain '{c}' (none of / \\ ? # % may appear in an id)"),
        ));
    }
    if id == "." || id == ".." {
        return Err(Error::invalid(field, "must not be '.' or '..'"));
    }
    if id.starts_with('$') {
        return Err(Error::invalid(
            field,
            "must not start with '$' (Graph path segments such as $count and $ref do)",
        ));
    }
    Ok(())
}

/// The id a create will use: the client's (validated) or a generated one.
pub fn for_create(field: &str, given: &str) -> Result<String> {
    if given.is_empty() {
        return Ok(generate());
    }
    validate(field, given)?;
    Ok(given.to_owned())
}
