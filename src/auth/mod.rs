//! Bearer-token auth: one layer in front of both edges.
//!
//! ```text
//! request ─▶ layer::authorize ─▶ router (gRPC services, REST, fallback)
//!              │ token::Validator   (signature by a JWKS key, exp/nbf, iss, aud)
//!              │ permissions        (method or route → collection, read|write → Graph permission)
//!              └ audit line per mutation (target `statusd::audit`)
//! ```
//! Nothing below the layer knows about tokens: the edges and the store never
//! import this module, so an operation cannot forget a check, and turning
//! auth off (the loopback default) removes the layer and its cost entirely.

pub mod jwks;
pub mod layer;
pub mod permissions;
pub mod token;

pub use permissions::{Access, Permission, Permissions, Requirement, Resource};
pub use token::{Identity, Refusal, Validator};

use crate::config::Config;
use std::sync::Arc;
use std::time::Duration;

/// Least time between two reads of the JWKS: rotation is picked up within a
/// minute of the first token signed by a new key, and unknown key ids cannot
/// make the server hammer the issuer.
pub const JWKS_MIN_REFETCH: Duration = Duration::from_secs(60);

/// The auth state the layer holds.
pub struct Auth {
    validator: Validator,
    permissions: Permissions,
}

impl Auth {
    /// The auth configured by `--auth-*`, or `None` when auth is off. Reads
    /// the JWKS now: an unreadable key set fails start-up with the reason.
    pub async fn from_config(config: &Config) -> Result<Option<Arc<Auth>>, String> {
        let Some(jwks) = config.auth_jwks.as_deref() else {
            if config.auth_issuer.is_some() || !config.auth_audience.is_empty() {
                return Err("--auth-issuer/--auth-audience need --auth-jwks PATH_OR_URL to turn auth on".to_owned());
            }
            return Ok(None);
        };
        let issuer = config
            .auth_issuer
            .clone()
            .filter(|s| !s.is_empty())
            .ok_or("auth needs --auth-issuer (STATUSD_AUTH_ISSUER): the `iss` tokens must carry")?;
        let audiences: Vec<String> = config.auth_audience.iter().filter(|a| !a.is_empty()).cloned().collect();
        if audiences.is_empty() {
            return Err("auth needs --auth-audience (STATUSD_AUTH_AUDIENCE): the `aud` tokens must name".to_owned());
        }
        let jwks = jwks::Jwks::open(jwks::JwksSource::parse(jwks), config.auth_jwks_min_refetch).await?;
        Ok(Some(Arc::new(Auth {
            validator: Validator::new(jwks, issuer, audiences),
            permissions: Permissions::new(),
        })))
    }
}
