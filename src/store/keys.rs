//! Storage keys.
//!
//! A parent's key is its id. A status's key is its parent id, length-prefixed,
//! then its own id: `u16 big-endian len(parent) ‖ parent ‖ status`. The length
//! prefix makes one parent's statuses a contiguous key range that no other
//! parent's keys can fall into (parent `a` never shares a prefix with parent
//! `ab`), so listing is a prefix scan in status-id order and a page resumes
//! from the last key seen — O(page), never O(collection).

use crate::model::id::MAX_ID_LEN;

/// Key of a parent.
pub fn parent_key(id: &str) -> &[u8] {
    id.as_bytes()
}

/// The prefix every status key of `parent_id` starts with.
pub fn status_prefix(parent_id: &str) -> Vec<u8> {
    debug_assert!(parent_id.len() <= MAX_ID_LEN);
    let mut key = Vec::with_capacity(2 + parent_id.len() + 40);
    key.extend_from_slice(&(parent_id.len() as u16).to_be_bytes());
    key.extend_from_slice(parent_id.as_bytes());
    key
}

/// Key of a status.
pub fn status_key(parent_id: &str, status_id: &str) -> Vec<u8> {
    let mut key = status_prefix(parent_id);
    key.extend_from_slice(status_id.as_bytes());
    key
}

/// Splits a status key into (parent id, status id); `None` if it is malformed.
pub fn split_status_key(key: &[u8]) -> Option<(&str, &str)> {
    let len = usize::from(u16::from_be_bytes([*key.first()?, *key.get(1)?]));
    let parent = key.get(2..2 + len)?;
    let status = key.get(2 + len..)?;
    Some((std::str::from_utf8(parent).ok()?, std::str::from_utf8(status).ok()?))
}

/// Key of a pending cascade delete: the parent kind's tag, then the parent id.
pub fn cascade_key(kind_tag: u8, parent_id: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(1 + parent_id.len());
    key.push(kind_tag);
    key.extend_from_slice(parent_id.as_bytes());
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_keys_round_trip_and_group_by_parent() {
        let k = status_key("p1", "s/1_x");
        assert_eq!(split_status_key(&k), Some(("p1", "s/1_x")));
        assert!(k.starts_with(&status_prefix("p1")));
        assert!(!status_key("p12", "a").starts_with(&status_prefix("p1")));
        assert!(status_key("p", "a") < status_key("p", "b"));
    }
}
