//! TLS for the one listener: the server certificate and key (and, for
//! service-to-service mTLS, the CA that client certificates must chain to),
//! read from PEM files into a rustls [`ServerConfig`] that the accept loop
//! uses for every new connection.
//!
//! Why it looks like this:
//! - **rustls with the `ring` provider**, named explicitly: no OpenSSL, no
//!   cmake or nasm at build time (aws-lc-rs needs them), and no dependence on
//!   a process-wide default provider that another crate might set differently.
//! - **ALPN offers `h2` and `http/1.1`**: gRPC clients ask for `h2`, browsers and
//!   curl for either; hyper's auto builder then reads the protocol from the
//!   bytes, exactly as on the plaintext listener.
//! - **Reload without dropping connections**: the current config sits behind a
//!   lock that the accept loop reads once per accepted connection; a reload
//!   (SIGHUP) builds a complete new config first and swaps it in only if every
//!   file was good, so a half-written certificate never takes the server down.
//!   Connections already established keep the session they negotiated.
//! - **Errors name the file and its flag**, because the person reading them is
//!   an operator deciding which file to fix.
//!
//! DESIGN §10 places TLS configuration under `src/auth/`; it lives here, beside
//! the listener, while `src/auth/` is being written in parallel (JWT). Moving
//! it there later is a rename.

use crate::config::Config;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

/// The files TLS is configured from (re-read on every reload).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM certificate chain, leaf first (`--tls-cert`).
    pub cert: PathBuf,
    /// PEM private key: PKCS#8, PKCS#1 (RSA) or SEC1 (EC) (`--tls-key`).
    pub key: PathBuf,
    /// PEM CA certificates; when set, clients must present a certificate
    /// that chains to one of them (`--tls-client-ca`).
    pub client_ca: Option<PathBuf>,
}

impl TlsFiles {
    /// The TLS files of `config`: `None` for plaintext; an error when only
    /// half of the certificate/key pair (or a client CA without them) is given,
    /// since serving plaintext then would silently ignore what the operator asked.
    pub fn from_config(config: &Config) -> Result<Option<TlsFiles>, String> {
        match (&config.tls_cert, &config.tls_key) {
            (Some(cert), Some(key)) => Ok(Some(TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
                client_ca: config.tls_client_ca.clone(),
            })),
            (Some(cert), None) => Err(format!(
                "--tls-cert {} is set but --tls-key (STATUSD_TLS_KEY) is not: TLS needs both",
                cert.display()
            )),
            (None, Some(key)) => Err(format!(
                "--tls-key {} is set but --tls-cert (STATUSD_TLS_CERT) is not: TLS needs both",
                key.display()
            )),
            (None, None) => match &config.tls_client_ca {
                Some(ca) => Err(format!(
                    "--tls-client-ca {} needs --tls-cert and --tls-key: client certificates are only checked over TLS",
                    ca.display()
                )),
                None => Ok(None),
            },
        }
    }
}

/// The listener's TLS configuration, replaceable while the server runs.
pub struct Tls {
    files: TlsFiles,
    /// Read once per accepted connection (an `Arc` clone under a read lock),
    /// written only by [`Tls::reload`].
    current: RwLock<Arc<ServerConfig>>,
}

impl Tls {
    /// Reads and checks every file; the error names the one at fault.
    pub fn load(files: TlsFiles) -> Result<Tls, String> {
        let config = server_config(&files)?;
        Ok(Tls {
            files,
            current: RwLock::new(Arc::new(config)),
        })
    }

    /// Re-reads the files and, if they are all good, uses them for new
    /// connections. On error the previous configuration stays in force.
    pub fn reload(&self) -> Result<(), String> {
        let config = Arc::new(server_config(&self.files)?);
        // A poisoned lock still holds a complete config: nothing panics while
        // holding it, and a swap is a single assignment.
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = config;
        Ok(())
    }

    /// The acceptor for one new connection, with the configuration current now.
    pub fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.current.read().unwrap_or_else(|e| e.into_inner()).clone())
    }

    /// The files this configuration is read from.
    pub fn files(&self) -> &TlsFiles {
        &self.files
    }
}

/// Reloads `tls` on every SIGHUP until `stop` turns true. A failed reload is
/// logged and changes nothing. Only started when TLS is configured, so without
/// TLS a SIGHUP keeps its default meaning.
pub async fn reload_on_sighup(tls: Arc<Tls>, mut stop: watch::Receiver<bool>) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hangups = match signal(SignalKind::hangup()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGHUP; TLS files will not be reloaded");
            return;
        }
    };
    loop {
        tokio::select! {
            got = hangups.recv() => if got.is_none() { return },
            _ = stop.wait_for(|s| *s) => return,
        }
        let reloading = tls.clone();
        match tokio::task::spawn_blocking(move || reloading.reload()).await {
            Ok(Ok(())) => tracing::info!(cert = %tls.files.cert.display(), "SIGHUP: TLS certificate and key reloaded"),
            Ok(Err(e)) => tracing::error!(error = %e, "SIGHUP: TLS reload failed; keeping the previous certificate"),
            Err(e) => tracing::error!(error = %e, "SIGHUP: TLS reload task failed; keeping the previous certificate"),
        }
    }
}

/// Builds the rustls configuration from the files.
fn server_config(files: &TlsFiles) -> Result<ServerConfig, String> {
    let certs = read_certs("--tls-cert", &files.cert)?;
    let key = read_key(&files.key)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS protocol versions: {e}"))?;
    let builder = match &files.client_ca {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let mut roots = RootCertStore::empty();
            for cert in read_certs("--tls-client-ca", path)? {
                roots
                    .add(cert)
                    .map_err(|e| format!("--tls-client-ca {}: not a usable CA certificate: {e}", path.display()))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| format!("--tls-client-ca {}: {e}", path.display()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_single_cert(certs, key).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => format!(
            "--tls-key {} is not the private key of the certificate in --tls-cert {}",
            files.key.display(),
            files.cert.display()
        ),
        e => format!(
            "cannot use the certificate in --tls-cert {} with the key in --tls-key {}: {e}",
            files.cert.display(),
            files.key.display()
        ),
    })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// Every certificate in a PEM file (at least one).
pub(crate) fn read_certs(flag: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let shown = path.display();
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("{flag} {shown}: cannot read: {}", pem_error(&e)))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{flag} {shown}: not a PEM certificate file: {}", pem_error(&e)))?;
    if certs.is_empty() {
        return Err(format!(
            "{flag} {shown}: no certificate found (expected PEM \"BEGIN CERTIFICATE\" sections)"
        ));
    }
    Ok(certs)
}

/// The first private key in a PEM file.
fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    let shown = path.display();
    PrivateKeyDer::from_pem_file(path).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => format!(
            "--tls-key {shown}: no private key found (expected PEM \"PRIVATE KEY\", \"RSA PRIVATE KEY\" or \"EC PRIVATE KEY\")"
        ),
        e => format!("--tls-key {shown}: cannot read the private key: {}", pem_error(&e)),
    })
}

/// A PEM error in words (an I/O error without the "I/O error:" prefix).
fn pem_error(e: &rustls::pki_types::pem::Error) -> String {
    match e {
        rustls::pki_types::pem::Error::Io(io) => io.to_string(),
        e => e.to_string(),
    }
}
