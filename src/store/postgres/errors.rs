//! What a database error means to a client, and which ones are retried.
//!
//! A client's mistake never reaches the database as an error: the constraint
//! violations a statement can cause (duplicate key, missing parent) are
//! mapped where the statement runs, with the same words as sled's. What is
//! left is the database being unreachable (UNAVAILABLE, retry later), full
//! (INSUFFICIENT_STORAGE), a serialization conflict (retried here, then
//! UNAVAILABLE) or a bug (INTERNAL).

use crate::error::Error;
use deadpool_postgres::PoolError;
use std::future::Future;
use std::time::Duration;
use tokio_postgres::error::SqlState;

/// A failed database operation, before it is given a meaning.
#[derive(Debug)]
pub enum DbFailure {
    /// The database (or the connection to it) failed.
    Db(tokio_postgres::Error),
    /// No connection could be had from the pool.
    Pool(PoolError),
    /// The operation's own answer (a missing parent, a duplicate id).
    Answer(Error),
}

impl From<tokio_postgres::Error> for DbFailure {
    fn from(e: tokio_postgres::Error) -> Self {
        DbFailure::Db(e)
    }
}

impl From<PoolError> for DbFailure {
    fn from(e: PoolError) -> Self {
        DbFailure::Pool(e)
    }
}

impl From<Error> for DbFailure {
    fn from(e: Error) -> Self {
        DbFailure::Answer(e)
    }
}

/// Serialization failures and deadlocks: the transaction did nothing and
/// may simply run again (what SERIALIZABLE engines such as CockroachDB ask
/// of their clients).
fn is_retryable(e: &tokio_postgres::Error) -> bool {
    matches!(
        e.code(),
        Some(c) if *c == SqlState::T_R_SERIALIZATION_FAILURE || *c == SqlState::T_R_DEADLOCK_DETECTED
    )
}

/// A migration that lost a race with another replica's.
pub fn is_migration_race(e: &tokio_postgres::Error) -> bool {
    is_retryable(e)
        || matches!(
            e.code(),
            Some(c) if *c == SqlState::UNIQUE_VIOLATION || *c == SqlState::DUPLICATE_TABLE || *c == SqlState::DUPLICATE_OBJECT
        )
}

/// The constraint a statement violated, if it is `code`.
pub fn violates(e: &tokio_postgres::Error, code: &SqlState) -> bool {
    e.code() == Some(code)
}

/// `e` and its causes, `: `-separated (tokio-postgres's own text is often
/// just "error connecting to server"; the cause says why).
fn with_causes(e: &tokio_postgres::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// The meaning of a database error; `doing` says what statusd was doing.
pub fn db_error(e: tokio_postgres::Error, doing: &str) -> Error {
    let Some(code) = e.code() else {
        // No SQLSTATE: the connection failed or closed, or it never opened.
        let e = with_causes(&e);
        return Error::Unavailable(format!("the database is unavailable ({doing}): {e}"));
    };
    let class = &code.code()[..2];
    let e_text = with_causes(&e);
    if *code == SqlState::DISK_FULL {
        Error::InsufficientStorage(format!("the database's disk is full ({doing}): {e_text}"))
    } else if is_retryable(&e) {
        Error::Unavailable(format!(
            "the database kept reporting conflicts ({doing}); retry: {e_text}"
        ))
    } else if matches!(class, "08" | "53" | "57" | "58") || *code == SqlState::READ_ONLY_SQL_TRANSACTION {
        // Connection exceptions, insufficient resources, operator
        // intervention (shutdown, restart), system errors, and a standby that
        // took the primary's place in the host list for a moment.
        Error::Unavailable(format!("the database is unavailable ({doing}): {e_text}"))
    } else {
        Error::Internal(format!("database error ({doing}): {}", with_causes(&e)))
    }
}

/// The meaning of a failed operation; `doing` says what statusd was doing.
pub fn failure_error(f: DbFailure, doing: &str) -> Error {
    match f {
        DbFailure::Db(e) => db_error(e, doing),
        DbFailure::Pool(PoolError::Backend(e)) => db_error(e, doing),
        DbFailure::Pool(PoolError::Timeout(_)) => {
            Error::Unavailable(format!("no database connection became free in time ({doing})"))
        }
        DbFailure::Pool(e) => Error::Unavailable(format!("the database is unavailable ({doing}): {e}")),
        DbFailure::Answer(e) => e,
    }
}

/// Most runs of one operation that hit serialization failures.
const ATTEMPTS: u32 = 8;

/// Runs `op` until it succeeds, answers, or fails other than by a
/// serialization failure (then up to [`ATTEMPTS`] times, with growing,
/// jittered pauses), and gives the failure its meaning.
pub async fn retrying<T, F, Fut>(doing: &str, mut op: F) -> Result<T, Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, DbFailure>>,
{
    let mut attempt = 0;
    loop {
        attempt += 1;
        match op().await {
            Ok(v) => return Ok(v),
            Err(DbFailure::Db(e)) if attempt < ATTEMPTS && is_retryable(&e) => {
                let base = 2u64 << attempt.min(6);
                let nanos = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.subsec_nanos());
                let jitter = u64::from(nanos) % base;
                tokio::time::sleep(Duration::from_millis(base + jitter)).await;
            }
            Err(f) => return Err(failure_error(f, doing)),
        }
    }
}
