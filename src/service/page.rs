//! Page requests and page tokens (AIP-158).
//!
//! A page token names the position of the last item of the previous page —
//! its id, and under `$orderby` its sort values — so paging stays correct
//! while the collection changes: an item is never returned twice, items
//! before the token are never revisited, and items created after the token's
//! position appear in later pages.
//!
//! A token is also *bound to the list it continues*: it carries a keyed
//! 64-bit SipHash tag over the collection (kind and parent id), the `$filter`
//! and the `$orderby` (with directions) of the query that issued it, and over
//! the position itself. Presented with any other collection or query, or
//! altered, it is refused (`pageToken` / `$skiptoken`, INVALID_ARGUMENT /
//! 400) instead of silently starting a different list at a meaningless
//! place. Page size, `$select` and `$count` are not bound: AIP-158 lets a
//! client change the page size between pages, and the others do not change
//! which records come next.
//!
//! Layout: base64url(tag as 8 little-endian bytes ‖ JSON `[sort values, id]`).

use super::query::{Filter, OrderKey};
use crate::error::{Error, Result};
use crate::model::{ParentKind, SortKey, StatusKind};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use siphasher::sip::SipHasher24;
use std::hash::Hasher;

/// Page size when the client names none (gRPC).
pub const DEFAULT_PAGE_SIZE: usize = 100;
/// Largest page a client may ask for.
pub const MAX_PAGE_SIZE: usize = 1000;

/// The key of the tag. It is a constant, not a random per-process key, so
/// that tokens survive a restart and are valid on every replica serving the
/// same data. The tag therefore detects a token used with the wrong list, and
/// accidental or naive alteration; it is not a secret against someone who
/// reads this source. That is enough: a token only ever names a position in a
/// collection the caller may read anyway, and a forged one can do no more
/// than a well-formed one (its contents are still decoded and checked).
const TAG_KEY: (u64, u64) = (0x7374_6174_7573_642d, 0x7061_6765_2d74_6f6b);

/// Bytes of the tag at the start of a decoded token.
const TAG_LEN: usize = 8;

/// One page to read.
#[derive(Debug, Clone, Default)]
pub struct PageRequest {
    /// Items wanted; `None` for the default.
    pub size: Option<usize>,
    /// Opaque token from a previous page.
    pub token: Option<String>,
}

impl PageRequest {
    /// The effective page size, checked against the limits.
    ///
    /// The error names `pageSize`; each edge renders it in its own words
    /// (`page_size` on gRPC, `$top` on REST).
    pub fn size(&self, default: usize) -> Result<usize> {
        match self.size {
            None | Some(0) => Ok(default),
            Some(n) if n > MAX_PAGE_SIZE => Err(Error::invalid("pageSize", format!("must be at most {MAX_PAGE_SIZE}"))),
            Some(n) => Ok(n),
        }
    }
}

/// What a token is bound to: the list it continues.
pub struct TokenScope<'a> {
    /// The collection, from [`parents_scope`] or [`statuses_scope`].
    pub collection: &'a str,
    /// The query's filter.
    pub filter: Option<&'a Filter>,
    /// The query's sort keys (empty for id order).
    pub order_by: &'a [OrderKey],
}

/// The collection name a parent kind's tokens are bound to.
pub fn parents_scope(kind: ParentKind) -> String {
    kind.collection().to_owned()
}

/// The collection name a parent's statuses' tokens are bound to.
pub fn statuses_scope(kind: StatusKind, parent_id: &str) -> String {
    format!("{}/{parent_id}/{}", kind.parent.collection(), kind.segment())
}

/// A token that resumes the plain (unfiltered, id-order) list of a parent's
/// statuses after `after_id`, as if a previous page had ended there; for
/// clients such as benchmarks that want to start reading mid-collection.
pub fn status_list_token(kind: StatusKind, parent_id: &str, after_id: &str) -> String {
    let collection = statuses_scope(kind, parent_id);
    let scope = TokenScope {
        collection: &collection,
        filter: None,
        order_by: &[],
    };
    encode_token(&scope, &[], after_id)
}

fn tag(scope: &TokenScope<'_>, body: &[u8]) -> u64 {
    let mut h = SipHasher24::new_with_keys(TAG_KEY.0, TAG_KEY.1);
    // Every part is length-prefixed, so no two scopes hash the same bytes.
    // The query is fingerprinted by its parsed form, so spelling differences
    // that parse alike (extra spaces, parentheses) do not matter.
    let query = format!("{:?}\u{0}{:?}", scope.filter, scope.order_by);
    for part in [scope.collection.as_bytes(), query.as_bytes(), body] {
        h.write(&(part.len() as u64).to_le_bytes());
        h.write(part);
    }
    h.finish()
}

/// The token that resumes `scope`'s list after the record with sort values
/// `keys` (empty in id order) and id `last_id`.
pub fn encode_token(scope: &TokenScope<'_>, keys: &[SortKey], last_id: &str) -> String {
    // Serialising a slice of enums and a string cannot fail.
    let body = serde_json::to_vec(&(keys, last_id)).unwrap_or_default();
    let mut bytes = tag(scope, &body).to_le_bytes().to_vec();
    bytes.extend_from_slice(&body);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The position a token resumes after (`None` for no token), if the token
/// was issued for `scope`.
pub fn decode_token(scope: &TokenScope<'_>, token: Option<&str>) -> Result<Option<(Vec<SortKey>, String)>> {
    let Some(token) = token.filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    let malformed = || Error::invalid("pageToken", "is not a page token this server issued");
    let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| malformed())?;
    if bytes.len() < TAG_LEN {
        return Err(malformed());
    }
    let (given, body) = bytes.split_at(TAG_LEN);
    let mut want = [0u8; TAG_LEN];
    want.copy_from_slice(given);
    if u64::from_le_bytes(want) != tag(scope, body) {
        return Err(Error::invalid(
            "pageToken",
            "does not continue this list: a page token is valid only for the collection, filter and order it \
             was issued with, and unaltered; start again without it, or send the same query options",
        ));
    }
    let position: (Vec<SortKey>, String) = serde_json::from_slice(body).map_err(|_| malformed())?;
    Ok(Some(position))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::query::{CmpOp, Literal};

    fn scope<'a>(collection: &'a str, filter: Option<&'a Filter>, order_by: &'a [OrderKey]) -> TokenScope<'a> {
        TokenScope {
            collection,
            filter,
            order_by,
        }
    }

    #[test]
    fn a_token_round_trips_within_its_scope() {
        let s = scope("deviceCompliancePolicies/p/userStatuses", None, &[]);
        let t = encode_token(&s, &[], "u-7");
        assert_eq!(decode_token(&s, Some(&t)).unwrap(), Some((vec![], "u-7".to_owned())));
        assert_eq!(decode_token(&s, None).unwrap(), None);
        assert_eq!(decode_token(&s, Some("")).unwrap(), None);
    }

    #[test]
    fn a_token_is_refused_by_any_other_list() {
        let filter = Filter::Compare("status".into(), CmpOp::Eq, Literal::Str("error".into()));
        let other_filter = Filter::Compare("status".into(), CmpOp::Eq, Literal::Str("compliant".into()));
        let asc = [OrderKey {
            field: "status".into(),
            descending: false,
        }];
        let desc = [OrderKey {
            field: "status".into(),
            descending: true,
        }];
        let issued = scope("deviceConfigurations/p/userStatuses", Some(&filter), &asc);
        let token = encode_token(&issued, &[SortKey::Int(2)], "u-1");
        assert!(decode_token(&issued, Some(&token)).is_ok());
        for other in [
            scope("deviceConfigurations/q/userStatuses", Some(&filter), &asc),
            scope("deviceConfigurations/p/deviceStatuses", Some(&filter), &asc),
            scope("deviceCompliancePolicies/p/userStatuses", Some(&filter), &asc),
            scope("deviceConfigurations/p/userStatuses", Some(&other_filter), &asc),
            scope("deviceConfigurations/p/userStatuses", None, &asc),
            scope("deviceConfigurations/p/userStatuses", Some(&filter), &desc),
            scope("deviceConfigurations/p/userStatuses", Some(&filter), &[]),
        ] {
            let e = decode_token(&other, Some(&token)).unwrap_err();
            assert!(
                matches!(&e, Error::InvalidArgument { field, .. } if field == "pageToken"),
                "{e:?}"
            );
        }
    }

    #[test]
    fn an_altered_or_foreign_token_is_refused() {
        let s = scope("mobileAppConfigurations", None, &[]);
        let token = encode_token(&s, &[], "a");
        let mut bytes = URL_SAFE_NO_PAD.decode(&token).unwrap();
        let last = bytes.len() - 2;
        bytes[last] ^= 1; // "a" becomes "`": a different position
        let altered = URL_SAFE_NO_PAD.encode(bytes);
        // The token format before tags existed: the bare id.
        let legacy = URL_SAFE_NO_PAD.encode("a");
        for bad in [altered.as_str(), legacy.as_str(), "!!", "AAAA"] {
            assert!(decode_token(&s, Some(bad)).is_err(), "{bad}");
        }
    }
}
