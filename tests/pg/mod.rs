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

/// A PostgreSQL server of the test's own (started by
/// `scripts/throwaway-postgres`), for tests that stop, kill and restart the
/// database. Stopped and removed on drop.
pub struct Cluster {
    /// `postgres://statusd@127.0.0.1:PORT/statusd`.
    pub url: String,
    bindir: String,
    dir: String,
    port: String,
}

fn as_postgres(program: &str) -> std::process::Command {
    // SAFETY: getuid has no preconditions.
    if unsafe { libc::getuid() } == 0 {
        let mut c = std::process::Command::new("runuser");
        c.args(["-u", "postgres", "--", program]);
        c
    } else {
        std::process::Command::new(program)
    }
}

impl Cluster {
    /// Starts one, or says why it cannot (no PostgreSQL installed).
    pub fn start() -> Result<Cluster, String> {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/throwaway-postgres");
        let out = std::process::Command::new("bash")
            .arg(script)
            .output()
            .map_err(|e| format!("cannot run {script}: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "no PostgreSQL server could be started here: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let var = |name: &str| {
            text.lines()
                .find_map(|l| {
                    l.strip_prefix(&format!("export {name}='"))?
                        .strip_suffix('\'')
                        .map(str::to_owned)
                })
                .unwrap_or_else(|| panic!("{script} printed no {name}: {text}"))
        };
        Ok(Cluster {
            url: var("STATUSD_TEST_DATABASE_URL"),
            bindir: var("STATUSD_TEST_PG_BINDIR"),
            dir: var("STATUSD_TEST_PG_DIR"),
            port: var("STATUSD_TEST_PG_PORT"),
        })
    }

    fn pg_ctl(&self, args: &[&str]) -> std::process::Output {
        as_postgres(&format!("{}/pg_ctl", self.bindir))
            .args(["-D", &format!("{}/data", self.dir)])
            .args(args)
            .output()
            .expect("run pg_ctl")
    }

    /// Stops the server at once, without a shutdown checkpoint (as a crash
    /// would; the next start recovers from the WAL).
    pub fn stop_immediate(&self) {
        let out = self.pg_ctl(&["-m", "immediate", "-w", "stop"]);
        assert!(
            out.status.success(),
            "pg_ctl stop: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// SIGKILLs the postmaster; its backends notice and exit.
    pub fn kill_postmaster(&self) {
        let pid_file = format!("{}/data/postmaster.pid", self.dir);
        let pid: i32 = std::fs::read_to_string(&pid_file)
            .expect("postmaster.pid")
            .lines()
            .next()
            .and_then(|l| l.trim().parse().ok())
            .expect("a pid in postmaster.pid");
        // SAFETY: kill(2) on a pid we just read; no memory is involved.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0, "kill -9 {pid}");
    }

    /// Starts the server again on the same directory and port (after a
    /// postmaster kill, once its orphaned backends are gone).
    pub fn start_again(&self) {
        // The options scripts/throwaway-postgres started it with.
        let options = std::fs::read_to_string(format!("{}/pg_ctl-options", self.dir)).expect("the server's options");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let log = format!("{}/server.log", self.dir);
            let out = self.pg_ctl(&["-l", &log, "-w", "-t", "60", "-o", &options, "start"]);
            if out.status.success() {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "PostgreSQL did not start again: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.pg_ctl(&["-m", "immediate", "-w", "stop"]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Cluster {
    /// Turns TLS on with `cert_pem`/`key_pem` (PEM; the key readable by the
    /// server's user only, as PostgreSQL demands) and reloads the server.
    pub async fn enable_tls(&self, cert_pem: &str, key_pem: &str) {
        let (cert, key) = (format!("{}/server.crt", self.dir), format!("{}/server.key", self.dir));
        std::fs::write(&cert, cert_pem).unwrap();
        std::fs::write(&key, key_pem).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        // SAFETY: getuid has no preconditions.
        if unsafe { libc::getuid() } == 0 {
            let chown = std::process::Command::new("chown")
                .args(["postgres:", &cert, &key])
                .status()
                .unwrap();
            assert!(chown.success());
        }
        for sql in [
            format!("ALTER SYSTEM SET ssl_cert_file = '{cert}'"),
            format!("ALTER SYSTEM SET ssl_key_file = '{key}'"),
            "ALTER SYSTEM SET ssl = on".to_owned(),
            "SELECT pg_reload_conf()".to_owned(),
        ] {
            query_strings(&self.url, &sql).await;
        }
        // The reload is asynchronous: wait until the server says it is on.
        for _ in 0..100 {
            if query_strings(&self.url, "SHOW ssl").await == ["on"] {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("PostgreSQL did not turn TLS on");
    }
}

impl Cluster {
    /// The server's port.
    pub fn port(&self) -> &str {
        &self.port
    }

    /// Makes the server refuse writes in new transactions (as a standby
    /// does: `target_session_attrs=read-write` passes it by) or accept them
    /// again (as a promoted standby).
    pub async fn set_read_only(&self, read_only: bool) {
        let value = if read_only { "on" } else { "off" };
        query_strings(
            &self.url,
            &format!("ALTER SYSTEM SET default_transaction_read_only = {value}"),
        )
        .await;
        query_strings(&self.url, "SELECT pg_reload_conf()").await;
        for _ in 0..100 {
            if query_strings(&self.url, "SHOW default_transaction_read_only").await == [value] {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("default_transaction_read_only did not become {value}");
    }
}
