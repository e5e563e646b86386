//! Status tallies on PostgreSQL: one row per parent and status collection
//! (`<collection>_tallies`, created by migration 2) holding a count per
//! status value and the time of the latest status write.
//!
//! Every status write adds its change to its parent's row in the same
//! transaction as the status row ([`add`]), so the row always agrees with
//! the statuses committed with it, and reading a tally is one row
//! ([`from_row`]). Rows are changed by adding deltas (`count = count + Δ`),
//! never by writing a value read before, so concurrent writers under one
//! parent cannot lose each other's changes: each waits for the row lock of
//! the one before it. A transaction that changes several parents' rows (a
//! batch of creates, the backfill) changes them in ascending id order, so
//! two of them never wait for each other in a cycle.
//!
//! The statuses stored before migration 2 are counted once, by
//! [`backfill`], in the migration's own transaction.

use super::errors::DbFailure;
use super::schema::{status_table, StatusSql};
use crate::error::{Error, Result};
use crate::model::{ComplianceStatus, DateTime, StatusBody, StatusKind, Tally};
use std::collections::BTreeMap;
use tokio_postgres::types::ToSql;
use tokio_postgres::Transaction;

/// The count columns of a tally table, in [`ComplianceStatus::ALL`] order
/// (column `i` counts the statuses whose value has number `i`).
pub const COUNT_COLUMNS: [&str; 8] = [
    "unknown",
    "not_applicable",
    "compliant",
    "remediated",
    "non_compliant",
    "error",
    "conflict",
    "not_assigned",
];

/// What writes add to each count of a parent's tally (negative: remove).
pub type Delta = [i64; 8];

/// Per parent id, the [`Delta`] of a set of writes; iterated in ascending
/// (byte) id order, the order the rows are locked in.
pub type Deltas<'a> = BTreeMap<&'a str, Delta>;

/// The delta of one status write: `removed` is the stored value it
/// replaces or deletes, `added` the value it stores.
pub fn delta(removed: Option<ComplianceStatus>, added: Option<ComplianceStatus>) -> Delta {
    let mut d = [0; 8];
    if let Some(s) = removed {
        d[s as usize] -= 1;
    }
    if let Some(s) = added {
        d[s as usize] += 1;
    }
    d
}

/// Adds `delta` to `parent_id`'s entry of `deltas`.
pub fn accumulate<'a>(deltas: &mut Deltas<'a>, parent_id: &'a str, delta: &Delta) {
    let entry = deltas.entry(parent_id).or_insert([0; 8]);
    for (n, d) in entry.iter_mut().zip(delta) {
        *n += d;
    }
}

/// Rows a parent's tally is spread over (see migration 2).
pub const SHARDS: u16 = 16;

/// The shard the next transaction writes: round robin, so concurrent writers
/// under one parent seldom wait for each other's row.
fn next_shard() -> i16 {
    static NEXT: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(0);
    (NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % SHARDS) as i16
}

/// Adds `deltas` to their parents' tally rows (creating missing rows) and
/// moves each row's `last_update` up to `at`, with the collection's
/// [`StatusSql::tally_add`] statement, inside the caller's transaction.
pub async fn add<T>(tx: &Transaction<'_>, statement: &T, deltas: &Deltas<'_>, at: DateTime) -> Result<(), DbFailure>
where
    T: tokio_postgres::ToStatement + ?Sized,
{
    if deltas.is_empty() {
        return Ok(());
    }
    let parents: Vec<&str> = deltas.keys().copied().collect();
    let columns: Vec<Vec<i64>> = (0..COUNT_COLUMNS.len())
        .map(|i| deltas.values().map(|d| d[i]).collect())
        .collect();
    let at = at.ticks();
    let shard = next_shard();
    let mut params: Vec<&(dyn ToSql + Sync)> = Vec::with_capacity(3 + COUNT_COLUMNS.len());
    params.push(&parents);
    params.extend(columns.iter().map(|c| c as &(dyn ToSql + Sync)));
    params.push(&at);
    params.push(&shard);
    tx.execute(statement, &params).await?;
    Ok(())
}

/// The tally of a [`StatusSql::tally_get`] row: its count columns and
/// `last_update`, all NULL where the parent has no tally row yet (an empty
/// tally). PostgreSQL keeps no store revision, so `revision` is 0.
pub fn from_row(kind: StatusKind, parent_id: &str, row: &tokio_postgres::Row) -> Result<Tally> {
    let mut tally = Tally::default();
    for (i, count) in tally.counts.iter_mut().enumerate() {
        let stored: Option<i64> = row.get(i);
        // A count goes below zero only if statuses were written without
        // their tally (an older statusd still writing after the
        // migration); it reads as none, as a sled tally saturates at zero.
        *count = stored.map_or(0, |n| u64::try_from(n).unwrap_or(0));
    }
    if let Some(ticks) = row.get::<_, Option<i64>>(COUNT_COLUMNS.len()) {
        tally.last_update = DateTime::from_ticks(ticks).ok_or_else(|| {
            Error::Internal(format!(
                "the {kind} tally of '{parent_id}' has last_update {ticks}, not a date-time's ticks"
            ))
        })?;
    }
    Ok(tally)
}

/// Rows the backfill reads per statement (records are at most 64 KiB, so a
/// page holds at most 32 MiB).
const BACKFILL_PAGE: i64 = 500;

/// Counts every status stored before the tally tables existed into them:
/// run by migration 2 inside its own transaction, right after it created
/// the (empty) tally tables and before it records the new schema version.
///
/// Why that is safe with several replicas starting at once: the tables,
/// their contents and the version row commit together or not at all. A
/// replica that runs the same migration concurrently blocks on the first
/// one's `CREATE TABLE` until that commits, then fails with a duplicate
/// table (or type) and reads the version again (see `schema::migrate`), so
/// the statuses are counted by exactly one transaction, and a crash part-way
/// leaves version 1 with no tally table, to be migrated again. No replica of
/// this build writes a status before its own migration returns, so every
/// later write finds the backfilled rows. (A replica of an older build that
/// still writes statuses during or after the migration does not count them:
/// stop those before starting this one.)
///
/// The statuses are read in pages in key order (keyset paging, O(page)
/// memory) and each page's counts are added to the tally rows at once; a
/// parent whose statuses span pages is added to twice.
pub async fn backfill(tx: &Transaction<'_>) -> Result<(), DbFailure> {
    let at = DateTime::now();
    for kind in StatusKind::ALL {
        let table = status_table(kind);
        let statements = StatusSql::new(kind);
        let first = format!("SELECT parent_id, id, record FROM {table} ORDER BY parent_id, id LIMIT $1");
        let after = format!(
            "SELECT parent_id, id, record FROM {table} WHERE (parent_id, id) > ($2, $3) \
             ORDER BY parent_id, id LIMIT $1"
        );
        let mut last: Option<(String, String)> = None;
        let mut counted = 0u64;
        loop {
            let rows = match &last {
                None => tx.query(&first, &[&BACKFILL_PAGE]).await?,
                Some((parent_id, id)) => tx.query(&after, &[&BACKFILL_PAGE, parent_id, id]).await?,
            };
            let mut deltas = Deltas::new();
            for row in &rows {
                let (parent_id, id, record): (&str, &str, &[u8]) = (row.get(0), row.get(1), row.get(2));
                let body: StatusBody = super::codec::decode(record).map_err(|e| {
                    let why = match e {
                        Error::Internal(why) => why,
                        other => other.to_string(),
                    };
                    Error::Internal(format!(
                        "counting the statuses stored before the tallies: {table} ('{parent_id}', '{id}'): {why}"
                    ))
                })?;
                accumulate(&mut deltas, parent_id, &delta(None, Some(body.status())));
            }
            // The tally rows' last_update: the statuses were written at some
            // moment before this one, which is the latest the store knows.
            add(tx, &statements.tally_add, &deltas, at).await?;
            counted += rows.len() as u64;
            match rows.last() {
                Some(row) if rows.len() as i64 == BACKFILL_PAGE => last = Some((row.get(0), row.get(1))),
                _ => break,
            }
        }
        if counted > 0 {
            tracing::info!(collection = table, statuses = counted, "status tallies backfilled");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Column `i` is the snake_case of the Graph name of status value `i`.
    #[test]
    fn count_columns_follow_the_status_numbers() {
        for status in ComplianceStatus::ALL {
            let snake: String = status
                .graph_name()
                .chars()
                .flat_map(|c| {
                    let lower = c.to_ascii_lowercase();
                    (c.is_ascii_uppercase().then_some('_').into_iter()).chain([lower])
                })
                .collect();
            assert_eq!(COUNT_COLUMNS[status.number() as usize], snake);
        }
    }

    #[test]
    fn deltas_add_up_per_parent_in_id_order() {
        let mut deltas = Deltas::new();
        accumulate(&mut deltas, "b", &delta(None, Some(ComplianceStatus::Error)));
        accumulate(&mut deltas, "a", &delta(None, Some(ComplianceStatus::Error)));
        accumulate(
            &mut deltas,
            "b",
            &delta(Some(ComplianceStatus::Error), Some(ComplianceStatus::Conflict)),
        );
        assert_eq!(deltas.keys().copied().collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(deltas["b"], [0, 0, 0, 0, 0, 0, 1, 0]);
        assert_eq!(deltas["a"], [0, 0, 0, 0, 0, 1, 0, 0]);
    }
}
