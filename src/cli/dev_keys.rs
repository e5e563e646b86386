//! `statusd dev-keys DIR`: a fresh RSA key pair for trying auth without an
//! identity provider: `DIR/private.pem` (PKCS#8, readable by the owner only)
//! for `statusd token`, and `DIR/jwks.json` for `--auth-jwks`. Key
//! generation is the `rsa` crate's; the JWK is derived by jsonwebtoken.

use jsonwebtoken::jwk::{Jwk, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, EncodingKey};
use rsa::pkcs8::{EncodePrivateKey, LineEnding};
use rsa::Generate;
use std::path::{Path, PathBuf};

/// `statusd dev-keys` arguments.
#[derive(Debug, clap::Args)]
pub struct DevKeysArgs {
    /// Directory to write `private.pem` and `jwks.json` into (created if missing).
    pub dir: PathBuf,
}

/// What was written.
#[derive(Debug)]
pub struct DevKeys {
    /// The private key file.
    pub private_key: PathBuf,
    /// The JWKS file.
    pub jwks: PathBuf,
    /// The key id.
    pub kid: String,
}

/// Writes the files and says how to use them.
pub fn run(args: &DevKeysArgs) -> Result<(), String> {
    let keys = write(&args.dir)?;
    println!("kid: {}", keys.kid);
    println!("private key: {}", keys.private_key.display());
    println!("JWKS: {}", keys.jwks.display());
    println!(
        "serve:  statusd --auth-jwks {} --auth-issuer https://statusd.dev --auth-audience api://statusd",
        keys.jwks.display()
    );
    println!(
        "token:  statusd token --key {} --kid {} --issuer https://statusd.dev --audience api://statusd --scope DeviceManagementConfiguration.ReadWrite.All",
        keys.private_key.display(),
        keys.kid
    );
    Ok(())
}

/// Generates an RSA-2048 key pair and writes both files into `dir`.
pub fn write(dir: &Path) -> Result<DevKeys, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let private = rsa::PrivateKey::try_generate().map_err(|e| format!("cannot generate an RSA key: {e}"))?;
    let pem = private
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| format!("cannot encode the private key: {e}"))?;
    let encoding = EncodingKey::from_rsa_pem(pem.as_bytes()).map_err(|e| format!("cannot read back the key: {e}"))?;
    let mut jwk =
        Jwk::from_encoding_key(&encoding, Algorithm::RS256).map_err(|e| format!("cannot build the JWK: {e}"))?;
    let kid = format!("dev-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    jwk.common.key_id = Some(kid.clone());
    jwk.common.public_key_use = Some(PublicKeyUse::Signature);
    let set = JwkSet { keys: vec![jwk] };
    let jwks_text = serde_json::to_string_pretty(&set).map_err(|e| format!("cannot encode the JWKS: {e}"))?;
    let private_key = dir.join("private.pem");
    let jwks = dir.join("jwks.json");
    write_private(&private_key, pem.as_bytes())?;
    std::fs::write(&jwks, jwks_text).map_err(|e| format!("cannot write {}: {e}", jwks.display()))?;
    Ok(DevKeys { private_key, jwks, kid })
}

/// Writes a file only its owner can read (created so, never widened later).
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), String> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    file.write_all(bytes)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}
