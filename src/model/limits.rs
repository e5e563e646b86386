//! Size limits on stored values: one client cannot fill the disk with a single
//! request, and every record stays small enough that sled keeps it in its log.
//!
//! Why the record limit matters for durability: sled 0.34 writes any log
//! message larger than a quarter of its segment to a file of its own under
//! `blobs/`, outside the log that statusd fsyncs. A message is a whole tree
//! node (a leaf of up to ~20 records), so the store sizes its segments from
//! [`MAX_RECORD_BYTES`] and checks at compile time that a full leaf of the
//! largest records stays below that threshold (`store::sled_store`).

use crate::error::{Error, Result};

/// Longest string property (names, principal names, models), in bytes.
pub const MAX_TEXT_LEN: usize = 4096;
/// Longest `description`, in bytes.
pub const MAX_LONG_TEXT_LEN: usize = 16 * 1024;
/// Most entries in a list property (`targetedMobileApps`).
pub const MAX_LIST_LEN: usize = 1000;
/// Largest serialized set of derived-type properties kept for a parent.
pub const MAX_ADDITIONAL_BYTES: usize = 32 * 1024;
/// Largest stored record (a parent or a status, as encoded), in bytes. Every
/// record a create or update accepts stays within it; a larger one is
/// refused with INVALID_ARGUMENT / 400 naming its largest property.
pub const MAX_RECORD_BYTES: usize = 64 * 1024;

/// Most bytes a string takes in a stored record: its length as a varint (at
/// most 9 bytes), then its bytes.
pub const fn stored_len(len: usize) -> usize {
    len + 9
}

/// Most bytes the fixed-size fields and framing of a record take.
pub const RECORD_OVERHEAD: usize = 64;

/// The largest status: its four nullable texts at [`MAX_TEXT_LEN`], and its
/// fixed fields. Needs no runtime check.
const MAX_STATUS_BYTES: usize = RECORD_OVERHEAD + 4 * stored_len(MAX_TEXT_LEN);
const _: () = assert!(MAX_STATUS_BYTES <= MAX_RECORD_BYTES);

/// Checks a short text property.
pub fn text(field: &str, value: &str) -> Result<()> {
    check(field, value, MAX_TEXT_LEN)
}

/// Checks a long text property (`description`).
pub fn long_text(field: &str, value: &str) -> Result<()> {
    check(field, value, MAX_LONG_TEXT_LEN)
}

/// Checks the stored size of a record, given the sizes of its largest
/// parts (Graph names): the error names the largest of them.
pub fn record(entity: &str, size: usize, parts: &[(&str, usize)]) -> Result<()> {
    if size <= MAX_RECORD_BYTES {
        return Ok(());
    }
    let largest = parts.iter().max_by_key(|(_, n)| *n).map_or("record", |(name, _)| name);
    let detail: Vec<String> = parts.iter().map(|(name, n)| format!("{name} {n}")).collect();
    Err(Error::invalid(
        largest,
        format!(
            "the {entity} would take {size} bytes stored; at most {MAX_RECORD_BYTES} are allowed \
             (bytes by property: {})",
            detail.join(", ")
        ),
    ))
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
