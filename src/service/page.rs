//! Page requests and page tokens (AIP-158).
//!
//! A page token is the id of the last item of the previous page, base64url
//! encoded so that it is opaque and safe in a URL. Because a list resumes
//! strictly after that id, paging stays correct while the collection changes:
//! an item is never returned twice, items before the token are never revisited,
//! and items created after the token's position appear in later pages.

use crate::error::{Error, Result};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

/// Page size when the client names none (gRPC).
pub const DEFAULT_PAGE_SIZE: usize = 100;
/// Largest page a client may ask for.
pub const MAX_PAGE_SIZE: usize = 1000;

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
    pub fn size(&self, default: usize) -> Result<usize> {
        match self.size {
            None | Some(0) => Ok(default),
            Some(n) if n > MAX_PAGE_SIZE => Err(Error::invalid("pageSize", format!("must be at most {MAX_PAGE_SIZE}"))),
            Some(n) => Ok(n),
        }
    }

    /// The id to resume after, decoded from the token.
    pub fn after(&self) -> Result<Option<String>> {
        match self.token.as_deref() {
            None | Some("") => Ok(None),
            Some(t) => decode_token(t).map(Some),
        }
    }
}

/// The token that resumes after `last_id`.
pub fn encode_token(last_id: &str) -> String {
    URL_SAFE_NO_PAD.encode(last_id.as_bytes())
}

fn decode_token(token: &str) -> Result<String> {
    let bad = || Error::invalid("pageToken", "is not a token this server issued");
    let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| bad())?;
    String::from_utf8(bytes).map_err(|_| bad())
}
