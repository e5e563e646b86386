//! TLS to the database. A PostgreSQL server of the test's own serves a
//! certificate from a test CA (rcgen); statusd connects with
//! `sslmode=require` and `--database-ca`:
//! - with the right CA every connection statusd opens is encrypted
//!   (`pg_stat_ssl`), and requests work;
//! - with another CA, or none (the Mozilla roots), start-up fails with
//!   UNAVAILABLE naming the certificate problem: never a silent fallback to
//!   plain text;
//! - `sslmode=prefer` (libpq's default) connects without TLS.
//!
//! Skipped (with the reason) where no PostgreSQL server can be started.

mod common;

use common::pg::{query_strings, Cluster};
use common::PARENTS;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose};
use statusd::error::Error;
use statusd::{Config, Server};

fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

fn with_sslmode(url: &str, mode: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}sslmode={mode}")
}

async fn start(url: &str, ca: Option<&std::path::Path>) -> Result<(Server, tempfile::TempDir), Error> {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::for_data_dir(dir.path());
    config.database_url = Some(url.to_owned());
    config.database_ca = ca.map(ToOwned::to_owned);
    Server::start(config).await.map(|s| (s, dir))
}

/// statusd's connections and whether each is encrypted.
async fn statusd_connections(url: &str) -> Vec<String> {
    query_strings(
        url,
        "SELECT s.ssl::text FROM pg_stat_ssl s JOIN pg_stat_activity a ON a.pid = s.pid \
         WHERE a.application_name = 'statusd'",
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_connection_is_verified_tls_when_the_url_requires_it() {
    let cluster = match Cluster::start() {
        Ok(c) => c,
        Err(reason) => return eprintln!("skipped: {reason}"),
    };
    let authority = ca("statusd test database CA");
    let mut params = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
    params.distinguished_name.push(DnType::CommonName, "postgres");
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &authority).unwrap();
    cluster.enable_tls(&cert.pem(), &key.serialize_pem()).await;
    let files = tempfile::tempdir().unwrap();
    let (right, wrong) = (files.path().join("ca.pem"), files.path().join("other-ca.pem"));
    std::fs::write(&right, authority.pem()).unwrap();
    std::fs::write(&wrong, ca("another CA").pem()).unwrap();
    let require = with_sslmode(&cluster.url, "require");

    // The right CA: encrypted, and it works.
    let (server, _dir) = start(&require, Some(&right)).await.expect("starts over verified TLS");
    let ch = common::channel_to(&server).await;
    let api = PARENTS[0];
    api.create(&ch, api.new_parent("p", "over TLS")).await.unwrap();
    assert_eq!(api.get(&ch, "p").await.unwrap().display_name, "over TLS");
    let connections = statusd_connections(&cluster.url).await;
    assert!(!connections.is_empty());
    assert!(connections.iter().all(|ssl| ssl == "true"), "{connections:?}");
    server.shutdown().await.unwrap();

    // Another CA, or the public roots: refused, saying why.
    for ca in [Some(wrong.as_path()), None] {
        let err = start(&require, ca)
            .await
            .err()
            .expect("an unverifiable server is refused");
        assert!(matches!(err, Error::Unavailable(_)), "{err:?}");
        let text = err.to_string().to_lowercase();
        assert!(text.contains("certificate"), "{text}");
    }

    // `prefer` (libpq's default): no TLS from statusd.
    let (server, _dir) = start(&with_sslmode(&cluster.url, "prefer"), None)
        .await
        .expect("starts");
    let ch = common::channel_to(&server).await;
    assert_eq!(api.get(&ch, "p").await.unwrap().display_name, "over TLS");
    let connections = statusd_connections(&cluster.url).await;
    assert!(connections.iter().all(|ssl| ssl == "false"), "{connections:?}");
    server.shutdown().await.unwrap();
}

/// A `--database-ca` that is not a certificate file is a clear start-up
/// error naming the flag.
#[tokio::test]
async fn a_bad_database_ca_is_refused_naming_the_flag() {
    let files = tempfile::tempdir().unwrap();
    let bad = files.path().join("not-a-ca.pem");
    std::fs::write(&bad, "hello").unwrap();
    let err = start("postgres://statusd@127.0.0.1:1/statusd?sslmode=require", Some(&bad))
        .await
        .err()
        .expect("refused");
    assert!(err.to_string().contains("--database-ca"), "{err}");
}
