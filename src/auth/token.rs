//! Bearer-token validation: who is calling, and with which permissions.
//!
//! A token is accepted only if every check passes: a signature by a key in
//! the JWKS (looked up by the header's `kid`) with one of the accepted
//! algorithms that key allows, `exp` and `nbf` within 60 s of clock skew,
//! the configured `iss`, and an `aud` (a string or an array) naming the
//! configured audience. The cryptography is jsonwebtoken's; this module only
//! chooses what to accept and says, without echoing the token, why a token
//! was refused.

use super::jwks::{Jwks, ACCEPTED};
use super::permissions::Grants;
use base64::Engine;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};

/// Clock skew tolerated on `exp` and `nbf`, in seconds.
pub const LEEWAY_SECS: u64 = 60;

/// Why a request was not authenticated. The messages are what the client
/// reads (Graph's `error.message`, gRPC's status message): they say what was
/// wrong and never contain the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// No `Authorization` header.
    #[error("No access token was sent: send 'Authorization: Bearer <token>'.")]
    Missing,
    /// An `Authorization` header that is not `Bearer <token>`.
    #[error("The Authorization header must be 'Bearer <token>'.")]
    NotBearer,
    /// Not a JWS compact token, or unreadable JSON inside.
    #[error("The access token is malformed: it is not a signed JWT.")]
    Malformed,
    /// An algorithm outside [`ACCEPTED`] (`none` and HMAC included).
    #[error("The access token's algorithm '{0}' is not accepted; accepted: RS256, RS384, RS512, PS256, ES256, ES384.")]
    Algorithm(String),
    /// No `kid` in the header.
    #[error("The access token's header names no signing key (kid).")]
    NoKeyId,
    /// A `kid` the JWKS does not hold.
    #[error("The access token is signed with a key this server does not know (kid '{0}').")]
    UnknownKey(String),
    /// The key exists but may not be used with the token's algorithm.
    #[error("The access token's algorithm does not match its signing key.")]
    KeyMismatch,
    /// The signature does not verify (tampered token, or the wrong key).
    #[error("The access token's signature is invalid.")]
    BadSignature,
    /// `exp` passed.
    #[error("The access token has expired.")]
    Expired,
    /// `nbf` not reached yet.
    #[error("The access token is not valid yet (nbf is in the future).")]
    NotYetValid,
    /// Another issuer.
    #[error("The access token's issuer (iss) is not the one this server trusts.")]
    WrongIssuer,
    /// Another audience.
    #[error("The access token's audience (aud) is not this server's.")]
    WrongAudience,
    /// A required claim is absent or has the wrong type.
    #[error("The access token lacks a valid '{0}' claim.")]
    Claim(String),
}

/// An authenticated caller.
#[derive(Debug, Clone, Default)]
pub struct Identity {
    /// Entra ID's object id of the user or service principal.
    pub oid: Option<String>,
    /// The client application (`appid` in v1 tokens, `azp` in v2).
    pub appid: Option<String>,
    /// The subject.
    pub sub: Option<String>,
    /// The permissions from `scp` and `roles`.
    pub grants: Grants,
}

/// The claims statusd reads beyond those jsonwebtoken validates.
#[derive(serde::Deserialize)]
struct Claims {
    scp: Option<String>,
    #[serde(default)]
    roles: Vec<String>,
    oid: Option<String>,
    appid: Option<String>,
    azp: Option<String>,
    sub: Option<String>,
}

/// Checks tokens against one JWKS, issuer and audience set.
pub struct Validator {
    jwks: Jwks,
    issuer: String,
    audiences: Vec<String>,
}

impl Validator {
    /// A validator for tokens issued by `issuer` for any of `audiences`.
    pub fn new(jwks: Jwks, issuer: String, audiences: Vec<String>) -> Self {
        Validator {
            jwks,
            issuer,
            audiences,
        }
    }

    /// The caller behind an `Authorization` header value (`None`: absent).
    pub async fn authenticate(&self, header: Option<&[u8]>) -> Result<Identity, Refusal> {
        let token = bearer(header.ok_or(Refusal::Missing)?)?;
        self.validate(token).await
    }

    /// Validates a compact JWS token.
    pub async fn validate(&self, token: &str) -> Result<Identity, Refusal> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| header_refusal(token))?;
        if !ACCEPTED.contains(&header.alg) {
            return Err(Refusal::Algorithm(format!("{:?}", header.alg)));
        }
        let kid = header.kid.ok_or(Refusal::NoKeyId)?;
        let key = self
            .jwks
            .key(&kid)
            .await
            .ok_or_else(|| Refusal::UnknownKey(printable(&kid)))?;
        if !key.algorithms.contains(&header.alg) {
            return Err(Refusal::KeyMismatch);
        }
        let mut validation = Validation::new(header.alg);
        validation.leeway = LEEWAY_SECS;
        validation.validate_nbf = true;
        validation.validate_exp = true;
        validation.validate_aud = true;
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&self.audiences);
        let data = jsonwebtoken::decode::<Claims>(token, &key.decoding, &validation).map_err(|e| refusal(e.kind()))?;
        let c = data.claims;
        Ok(Identity {
            grants: Grants::from_claims(c.scp.as_deref(), &c.roles),
            oid: c.oid,
            appid: c.appid.or(c.azp),
            sub: c.sub,
        })
    }
}

/// The token of `Bearer <token>` (the scheme is case-insensitive, RFC 7235).
fn bearer(value: &[u8]) -> Result<&str, Refusal> {
    let value = std::str::from_utf8(value).map_err(|_| Refusal::NotBearer)?;
    let (scheme, token) = value.trim().split_once(' ').ok_or(Refusal::NotBearer)?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Err(Refusal::NotBearer);
    }
    Ok(token)
}

/// Why a header jsonwebtoken cannot read was refused: an algorithm it does
/// not know (`none`, say) gets its own message, anything else is malformed.
fn header_refusal(token: &str) -> Refusal {
    let alg = token
        .split('.')
        .next()
        .and_then(|h| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(h).ok())
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| v.get("alg").and_then(|a| a.as_str()).map(printable));
    match alg {
        Some(alg) if alg.parse::<Algorithm>().is_err() => Refusal::Algorithm(alg),
        _ => Refusal::Malformed,
    }
}

fn refusal(kind: &ErrorKind) -> Refusal {
    match kind {
        ErrorKind::InvalidSignature => Refusal::BadSignature,
        ErrorKind::ExpiredSignature => Refusal::Expired,
        ErrorKind::ImmatureSignature => Refusal::NotYetValid,
        ErrorKind::InvalidIssuer => Refusal::WrongIssuer,
        ErrorKind::InvalidAudience => Refusal::WrongAudience,
        ErrorKind::MissingRequiredClaim(c) | ErrorKind::InvalidClaimFormat(c) => Refusal::Claim(printable(c)),
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidEcdsaKey | ErrorKind::InvalidRsaKey(_) => Refusal::KeyMismatch,
        _ => Refusal::Malformed,
    }
}

/// A client-chosen string made safe to repeat in a message or log: short,
/// printable ASCII only.
fn printable(s: &str) -> String {
    s.chars()
        .take(64)
        .map(|c| if c.is_ascii_graphic() || c == ' ' { c } else { '?' })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_header_forms() {
        assert_eq!(bearer(b"Bearer abc").unwrap(), "abc");
        assert_eq!(bearer(b"bearer  abc ").unwrap(), "abc");
        assert_eq!(bearer(b"Basic abc"), Err(Refusal::NotBearer));
        assert_eq!(bearer(b"Bearer"), Err(Refusal::NotBearer));
        assert_eq!(bearer(b"Bearer "), Err(Refusal::NotBearer));
        assert_eq!(bearer(b"abc"), Err(Refusal::NotBearer));
    }

    #[test]
    fn alg_none_is_named_and_garbage_is_malformed() {
        let none = format!(
            "{}.{}.",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#),
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(br#"{"sub":"x"}"#)
        );
        assert_eq!(header_refusal(&none), Refusal::Algorithm("none".into()));
        assert_eq!(header_refusal("garbage"), Refusal::Malformed);
    }
}
