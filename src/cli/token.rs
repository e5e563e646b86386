//! `statusd token`: a signed JWT for development, shaped like Entra ID's
//! (`iss`, `aud`, `exp`/`nbf`/`iat`, `scp` for delegated permissions,
//! `roles` for application permissions), signed with a key made by
//! `statusd dev-keys`. Signing is jsonwebtoken's.

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// `statusd token` flags.
#[derive(Debug, clap::Args)]
pub struct TokenArgs {
    /// The private key (PEM: PKCS#8 or PKCS#1 RSA, PKCS#8 or SEC1 EC).
    #[arg(long)]
    pub key: PathBuf,
    /// The key id the JWKS lists the public key under.
    #[arg(long)]
    pub kid: String,
    /// The `iss` claim (the server's `--auth-issuer`).
    #[arg(long)]
    pub issuer: String,
    /// The `aud` claim (the server's `--auth-audience`).
    #[arg(long)]
    pub audience: String,
    /// Delegated permissions, space-separated (the `scp` claim), e.g.
    /// "DeviceManagementConfiguration.ReadWrite.All".
    #[arg(long)]
    pub scope: Option<String>,
    /// An application permission (the `roles` claim); may be repeated.
    #[arg(long = "role")]
    pub roles: Vec<String>,
    /// How long the token is valid: `90s`, `30m`, `1h`, `2d`, or seconds.
    #[arg(long, default_value = "1h", value_parser = parse_ttl)]
    pub ttl: Duration,
    /// The `sub` (and `oid`) claim.
    #[arg(long, default_value = "statusd-dev")]
    pub subject: String,
    /// The signing algorithm; by default RS256 for an RSA key, ES256 for an
    /// EC key (use ES384 for a P-384 key, PS256 for RSA-PSS).
    #[arg(long, value_parser = parse_alg)]
    pub alg: Option<Algorithm>,
}

/// Prints the token on stdout.
pub fn run(args: &TokenArgs) -> Result<(), String> {
    println!("{}", mint(args)?);
    Ok(())
}

/// The signed token.
pub fn mint(args: &TokenArgs) -> Result<String, String> {
    let pem = std::fs::read(&args.key).map_err(|e| format!("cannot read {}: {e}", args.key.display()))?;
    let (key, default_alg) = match EncodingKey::from_rsa_pem(&pem) {
        Ok(k) => (k, Algorithm::RS256),
        Err(_) => {
            let k = EncodingKey::from_ec_pem(&pem)
                .map_err(|e| format!("{} is not an RSA or EC private key in PEM: {e}", args.key.display()))?;
            (k, Algorithm::ES256)
        }
    };
    let alg = args.alg.unwrap_or(default_alg);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|e| format!("the clock is before 1970: {e}"))?
        .as_secs();
    let mut claims = serde_json::json!({
        "iss": args.issuer,
        "aud": args.audience,
        "sub": args.subject,
        "oid": args.subject,
        "iat": now,
        "nbf": now,
        "exp": now.saturating_add(args.ttl.as_secs()),
    });
    if let Some(scope) = &args.scope {
        claims["scp"] = scope.clone().into();
    }
    if !args.roles.is_empty() {
        claims["roles"] = args.roles.clone().into();
    }
    let mut header = Header::new(alg);
    header.kid = Some(args.kid.clone());
    jsonwebtoken::encode(&header, &claims, &key).map_err(|e| format!("cannot sign with {alg:?}: {e}"))
}

/// `90s`, `30m`, `1h`, `2d` or plain seconds.
pub fn parse_ttl(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (digits, unit) = match s.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&s[..i], c),
        _ => (s, 's'),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("'{s}' is not a duration like 90s, 30m, 1h or 2d"))?;
    let secs = match unit {
        's' => n,
        'm' => n.saturating_mul(60),
        'h' => n.saturating_mul(3600),
        'd' => n.saturating_mul(86400),
        _ => return Err(format!("'{s}': the unit must be s, m, h or d")),
    };
    Ok(Duration::from_secs(secs))
}

fn parse_alg(s: &str) -> Result<Algorithm, String> {
    let alg: Algorithm = s.parse().map_err(|_| format!("unknown algorithm '{s}'"))?;
    if !crate::auth::jwks::ACCEPTED.contains(&alg) {
        return Err(format!(
            "statusd does not accept {s}; use RS256, RS384, RS512, PS256, ES256 or ES384"
        ));
    }
    Ok(alg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls() {
        assert_eq!(parse_ttl("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_ttl("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_ttl("30m").unwrap(), Duration::from_secs(1800));
        assert!(parse_ttl("1y").is_err());
        assert!(parse_ttl("h").is_err());
        assert!(parse_alg("HS256").is_err());
        assert_eq!(parse_alg("ES384").unwrap(), Algorithm::ES384);
    }
}
