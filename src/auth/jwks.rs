//! The token issuer's public keys (a JWKS), cached and refreshed on demand.
//!
//! Issuers rotate keys by publishing the new key in their JWKS before they
//! sign with it, so a token naming a key id (`kid`) the cache lacks is the
//! signal to read the set again. Reading is rate-limited (at most once per
//! [`JWKS_MIN_REFETCH`](super::JWKS_MIN_REFETCH)), so tokens with made-up key
//! ids cannot turn the server into a load generator against the issuer. A
//! read replaces the whole set: a key removed from the JWKS stops verifying
//! tokens after the next read (or restart).
//!
//! Only keys that can verify an accepted algorithm are kept: RSA (RS256,
//! RS384, RS512, PS256) and EC on P-256 (ES256) or P-384 (ES384). Symmetric
//! (`oct`) keys are dropped, so no token can be checked with an HMAC over a
//! public key's bytes.

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// The algorithms statusd accepts, and no others.
pub const ACCEPTED: [Algorithm; 6] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::ES256,
    Algorithm::ES384,
];

/// Largest JWKS document read (Entra ID's is a few KiB).
const MAX_JWKS_BYTES: usize = 1024 * 1024;

/// How long one JWKS fetch may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the JWKS comes from.
#[derive(Debug, Clone)]
pub enum JwksSource {
    /// A local file.
    File(PathBuf),
    /// An http(s) URL.
    Url(String),
}

impl JwksSource {
    /// `http://…` and `https://…` are URLs; anything else is a path.
    pub fn parse(s: &str) -> Self {
        let lower = s.to_ascii_lowercase();
        if lower.starts_with("http://") || lower.starts_with("https://") {
            JwksSource::Url(s.to_owned())
        } else {
            JwksSource::File(PathBuf::from(s))
        }
    }
}

impl std::fmt::Display for JwksSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JwksSource::File(p) => write!(f, "{}", p.display()),
            JwksSource::Url(u) => f.write_str(u),
        }
    }
}

/// One verification key.
pub struct Key {
    /// The key in jsonwebtoken's form.
    pub decoding: DecodingKey,
    /// The algorithms it may verify: the key type decides them, and a JWK's
    /// `alg`, when present, narrows them to one.
    pub algorithms: Vec<Algorithm>,
}

type KeyMap = HashMap<String, Arc<Key>>;

/// The cached key set.
pub struct Jwks {
    source: JwksSource,
    client: reqwest::Client,
    keys: RwLock<Arc<KeyMap>>,
    /// Bumped whenever the set is replaced, so results derived from the
    /// old set (verified tokens) can tell they are stale.
    generation: AtomicU64,
    /// When the set was last read; held while reading, so concurrent misses
    /// wait for one read instead of starting their own.
    last_read: tokio::sync::Mutex<Instant>,
    min_refetch: Duration,
}

impl Jwks {
    /// Reads the set now; an unreadable or empty set is an error, so a
    /// misconfigured server fails at start rather than refusing every call.
    pub async fn open(source: JwksSource, min_refetch: Duration) -> Result<Jwks, String> {
        let client = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .build()
            .map_err(|e| format!("cannot build the HTTP client for the JWKS: {e}"))?;
        let keys = read(&source, &client).await?;
        tracing::info!(jwks = %source, keys = keys.len(), "auth: JWKS loaded");
        Ok(Jwks {
            source,
            client,
            keys: RwLock::new(Arc::new(keys)),
            generation: AtomicU64::new(0),
            last_read: tokio::sync::Mutex::new(Instant::now()),
            min_refetch,
        })
    }

    /// Which key set is in force (changes on every re-read).
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    fn current(&self) -> Arc<KeyMap> {
        match self.keys.read() {
            Ok(k) => k.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// The key named `kid`, reading the set again (rate-limited) when the
    /// cache lacks it.
    pub async fn key(&self, kid: &str) -> Option<Arc<Key>> {
        if let Some(k) = self.current().get(kid) {
            return Some(k.clone());
        }
        let mut last = self.last_read.lock().await;
        // Another request may have read the set while this one waited.
        if let Some(k) = self.current().get(kid) {
            return Some(k.clone());
        }
        if last.elapsed() < self.min_refetch {
            return None;
        }
        *last = Instant::now();
        match read(&self.source, &self.client).await {
            Ok(keys) => {
                tracing::info!(jwks = %self.source, keys = keys.len(), "auth: JWKS read again for an unknown key id");
                let found = keys.get(kid).cloned();
                let fresh = Arc::new(keys);
                match self.keys.write() {
                    Ok(mut k) => *k = fresh,
                    Err(poisoned) => *poisoned.into_inner() = fresh,
                }
                self.generation.fetch_add(1, Ordering::AcqRel);
                found
            }
            Err(e) => {
                tracing::warn!(jwks = %self.source, error = %e, "auth: cannot read the JWKS again; keeping the cached keys");
                None
            }
        }
    }
}

/// Reads and parses the set.
async fn read(source: &JwksSource, client: &reqwest::Client) -> Result<KeyMap, String> {
    let bytes = match source {
        JwksSource::File(path) => tokio::fs::read(path)
            .await
            .map_err(|e| format!("cannot read the JWKS file {}: {e}", path.display()))?,
        JwksSource::Url(url) => fetch(client, url).await?,
    };
    if bytes.len() > MAX_JWKS_BYTES {
        return Err(format!("the JWKS at {source} is larger than {MAX_JWKS_BYTES} bytes"));
    }
    let keys = parse(&bytes).map_err(|e| format!("the JWKS at {source} {e}"))?;
    if keys.is_empty() {
        return Err(format!(
            "the JWKS at {source} has no usable signing key (RSA, or EC on P-256/P-384, each with a \"kid\")"
        ));
    }
    Ok(keys)
}

async fn fetch(client: &reqwest::Client, url: &str) -> Result<Vec<u8>, String> {
    let resp = client
        .get(url)
        .send()
        .await
        .map_err(|e| format!("cannot fetch the JWKS from {url}: {e}"))?;
    if !resp.status().is_success() {
        return Err(format!("fetching the JWKS from {url} answered {}", resp.status()));
    }
    if resp.content_length().is_some_and(|n| n > MAX_JWKS_BYTES as u64) {
        return Err(format!("the JWKS at {url} is larger than {MAX_JWKS_BYTES} bytes"));
    }
    let body = resp
        .bytes()
        .await
        .map_err(|e| format!("cannot read the JWKS from {url}: {e}"))?;
    Ok(body.to_vec())
}

/// The usable keys of a JWKS document. A key statusd cannot use (another
/// type, no `kid`, an encryption key) is skipped rather than failing the
/// set, since issuers publish such keys alongside their signing keys.
pub fn parse(bytes: &[u8]) -> Result<KeyMap, String> {
    #[derive(serde::Deserialize)]
    struct Set {
        keys: Vec<serde_json::Value>,
    }
    let set: Set = serde_json::from_slice(bytes).map_err(|e| format!("is not a JWKS ({{\"keys\": [...]}}): {e}"))?;
    let mut keys = HashMap::new();
    for value in set.keys {
        let Ok(jwk) = serde_json::from_value::<Jwk>(value) else {
            continue;
        };
        let Some(kid) = jwk.common.key_id.clone() else {
            continue;
        };
        if let Some(key) = usable(&jwk) {
            keys.insert(kid, Arc::new(key));
        }
    }
    Ok(keys)
}

fn usable(jwk: &Jwk) -> Option<Key> {
    if matches!(jwk.common.public_key_use, Some(ref u) if *u != PublicKeyUse::Signature) {
        return None;
    }
    let by_type: Vec<Algorithm> = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => vec![Algorithm::RS256, Algorithm::RS384, Algorithm::RS512, Algorithm::PS256],
        AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
            EllipticCurve::P256 => vec![Algorithm::ES256],
            EllipticCurve::P384 => vec![Algorithm::ES384],
            _ => return None,
        },
        _ => return None,
    };
    let algorithms = match jwk.common.key_algorithm {
        None => by_type,
        Some(named) => {
            let named = Algorithm::try_from(named).ok()?;
            if !by_type.contains(&named) {
                return None;
            }
            vec![named]
        }
    };
    let decoding = DecodingKey::from_jwk(jwk).ok()?;
    Some(Key { decoding, algorithms })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_signing_keys_and_drops_the_rest() {
        let doc = serde_json::json!({"keys": [
            {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"},
            {"kty": "EC", "kid": "p256", "crv": "P-256",
             "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
             "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
            {"kty": "EC", "crv": "P-256", "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
             "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
            {"kty": "EC", "kid": "enc", "use": "enc", "crv": "P-256",
             "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
             "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
            {"kty": "EC", "kid": "wrong-alg", "alg": "RS256", "crv": "P-256",
             "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
             "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
            {"kty": "weird", "kid": "w"}
        ]});
        let keys = parse(doc.to_string().as_bytes()).unwrap();
        assert_eq!(keys.keys().collect::<Vec<_>>(), vec!["p256"]);
        assert_eq!(keys["p256"].algorithms, vec![Algorithm::ES256]);
        assert!(parse(b"[]").is_err());
    }

    #[test]
    fn urls_and_paths() {
        assert!(matches!(JwksSource::parse("HTTPS://x/keys"), JwksSource::Url(_)));
        assert!(matches!(JwksSource::parse("./jwks.json"), JwksSource::File(_)));
    }
}
