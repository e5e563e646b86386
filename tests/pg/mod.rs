//! The PostgreSQL side of the tests: which database to use, and a fresh
//! schema per test so tests that count records never see each other's.
//!
//! Tests read `STATUSD_TEST_DATABASE_URL` (`.ci/run` starts a throwaway
//! server with `scripts/throwaway-postgres` and sets it). Without it the
//! PostgreSQL tests print `skipped: <reason>` and pass.
#![allow(dead_code)]

use std::sync::atomic::{AtomicUsize, Ordering};

/// The variable naming the test database.
pub const URL_VAR: &str = "STATUSD_TEST_DATABASE_URL";

/// The test database's URL, or why the PostgreSQL tests are skipped.
pub fn database_url() -> Result<String, String> {
    match std::env::var(URL_VAR) {
        Ok(url) if !url.trim().is_empty() => Ok(url),
        _ => Err(format!(
            "{URL_VAR} is not set (run `eval \"$(scripts/throwaway-postgres)\"` first, as .ci/run does)"
        )),
    }
}

/// A schema of its own in the test database, created empty; returns a URL
/// whose connections use it (`search_path`), so statusd creates its tables
/// there.
pub async fn fresh_schema(base: &str, label: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let schema = format!(
        "t_{}_{}_{:x}_{}",
        label.replace(|c: char| !c.is_ascii_alphanumeric(), "_"),
        std::process::id(),
        nanos,
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let (client, conn) = tokio_postgres::connect(base, tokio_postgres::NoTls)
        .await
        .expect("the test database accepts connections");
    let task = tokio::spawn(conn);
    client
        .batch_execute(&format!("CREATE SCHEMA {schema}"))
        .await
        .expect("create a test schema");
    drop(client);
    let _ = task.await;
    with_search_path(base, &schema)
}

/// `base` with `options=-c search_path=<schema>` added.
pub fn with_search_path(base: &str, schema: &str) -> String {
    let sep = if base.contains('?') { '&' } else { '?' };
    format!("{base}{sep}options=-c%20search_path%3D{schema}")
}

/// Runs one SQL statement against `url` and returns the first column of
/// every row as text.
pub async fn query_strings(url: &str, sql: &str) -> Vec<String> {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connect to the test database");
    let task = tokio::spawn(conn);
    let rows = client.simple_query(sql).await.expect("query runs");
    drop(client);
    let _ = task.await;
    rows.into_iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => Some(r.get(0).unwrap_or("").to_owned()),
            _ => None,
        })
        .collect()
}
