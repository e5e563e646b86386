//! Bearer-token validation: who is calling, and with which permissions.
//!
//! A token is accepted only if every check passes: a signature by a key in
//! the JWKS (looked up by the header's `kid`) with one of the accepted
//! algorithms that key allows, `exp` and `nbf` within 60 s of clock skew,
//! the configured `iss`, and an `aud` (a string or an array) naming the
//! configured audience. The cryptography is jsonwebtoken's; this module only
//! chooses what to accept and says, without echoing the token, why a token
//! was refused.
//!
//! Clients reuse a token for its whole life (an hour, typically), so a
//! verified token is remembered ([`Verified`]): later requests with the same
//! token skip the signature check (tens of microseconds of RSA or ECDSA,
//! comparable to a whole no-op call) and only re-check `exp` and `nbf`. The
//! cache is keyed by the exact token bytes, bounded, and dropped whenever
//! the key set changes, so a key removed from the JWKS stops working as
//! soon as the server has read the set again.

use super::jwks::{Jwks, ACCEPTED};
use super::permissions::Grants;
use base64::Engine;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

/// Most verified tokens remembered (a few MiB at most).
const VERIFIED_CAPACITY: usize = 4096;

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
    /// NumericDate, which may carry a fraction.
    exp: Option<f64>,
    nbf: Option<f64>,
}

/// A token whose signature, issuer and audience were verified.
struct VerifiedToken {
    identity: Arc<Identity>,
    exp: f64,
    nbf: Option<f64>,
    /// The key set it was verified against ([`Jwks::generation`]).
    generation: u64,
}

/// The verified tokens (see the module docs).
#[derive(Default)]
struct Verified(RwLock<HashMap<String, VerifiedToken>>);

impl Verified {
    fn get(&self, token: &str, generation: u64) -> Option<Result<Arc<Identity>, Refusal>> {
        let map = self.0.read().ok()?;
        let v = map.get(token).filter(|v| v.generation == generation)?;
        let now = unix_now();
        let leeway = LEEWAY_SECS as f64;
        Some(if now > v.exp + leeway {
            Err(Refusal::Expired)
        } else if v.nbf.is_some_and(|nbf| now < nbf - leeway) {
            Err(Refusal::NotYetValid)
        } else {
            Ok(v.identity.clone())
        })
    }

    fn insert(&self, token: &str, verified: VerifiedToken) {
        let Ok(mut map) = self.0.write() else {
            return;
        };
        // Stale entries (another key set) and a full map are simply dropped:
        // a miss only costs one signature check.
        if map.len() >= VERIFIED_CAPACITY || map.values().next().is_some_and(|v| v.generation != verified.generation) {
            map.clear();
        }
        map.insert(token.to_owned(), verified);
    }
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Checks tokens against one JWKS, issuer and audience set.
pub struct Validator {
    jwks: Jwks,
    issuer: String,
    audiences: Vec<String>,
    verified: Verified,
}

impl Validator {
    /// A validator for tokens issued by `issuer` for any of `audiences`.
    pub fn new(jwks: Jwks, issuer: String, audiences: Vec<String>) -> Self {
        Validator {
            jwks,
            issuer,
            audiences,
            verified: Verified::default(),
        }
    }

    /// The caller behind an `Authorization` header value (`None`: absent).
    pub async fn authenticate(&self, header: Option<&[u8]>) -> Result<Arc<Identity>, Refusal> {
        let token = bearer(header.ok_or(Refusal::Missing)?)?;
        self.validate(token).await
    }

    /// Validates a compact JWS token (remembering it once verified).
    pub async fn validate(&self, token: &str) -> Result<Arc<Identity>, Refusal> {
        let generation = self.jwks.generation();
        if let Some(known) = self.verified.get(token, generation) {
            return known;
        }
        let (identity, exp, nbf) = self.verify(token).await?;
        let identity = Arc::new(identity);
        // Filed under the set in force *before* verifying: if the set was
        // re-read meanwhile, the entry is stale at once and the next request
        // verifies against the new set (never the reverse).
        self.verified.insert(
            token,
            VerifiedToken {
                identity: identity.clone(),
                exp,
                nbf,
                generation,
            },
        );
        Ok(identity)
    }

    /// The full check: signature, then claims.
    async fn verify(&self, token: &str) -> Result<(Identity, f64, Option<f64>), Refusal> {
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
        let exp = c.exp.ok_or_else(|| Refusal::Claim("exp".to_owned()))?;
        let identity = Identity {
            grants: Grants::from_claims(c.scp.as_deref(), &c.roles),
            oid: c.oid,
            appid: c.appid.or(c.azp),
            sub: c.sub,
        };
        Ok((identity, exp, c.nbf))
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
    fn remembered_tokens_still_expire_and_belong_to_one_key_set() {
        let cache = Verified::default();
        let now = unix_now();
        let entry = |exp: f64, nbf: Option<f64>| VerifiedToken {
            identity: Arc::new(Identity::default()),
            exp,
            nbf,
            generation: 1,
        };
        cache.insert("live", entry(now + 600.0, Some(now - 1.0)));
        assert!(matches!(cache.get("live", 1), Some(Ok(_))));
        assert!(cache.get("live", 2).is_none(), "another key set: verify again");
        assert!(cache.get("other", 1).is_none());
        cache.insert("skewed", entry(now - 30.0, Some(now + 30.0)));
        assert!(matches!(cache.get("skewed", 1), Some(Ok(_))), "within the leeway");
        cache.insert("expired", entry(now - 61.0, None));
        assert_eq!(cache.get("expired", 1).unwrap().unwrap_err(), Refusal::Expired);
        cache.insert("early", entry(now + 600.0, Some(now + 61.0)));
        assert_eq!(cache.get("early", 1).unwrap().unwrap_err(), Refusal::NotYetValid);
        let newer = VerifiedToken {
            generation: 2,
            ..entry(now + 600.0, None)
        };
        cache.insert("newer", newer);
        assert!(cache.get("live", 1).is_none(), "a new key set drops the old entries");
    }

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
