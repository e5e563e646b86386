//! Watch on PostgreSQL: the events table every replica writes, and the
//! poller that publishes what is settled to this replica's watchers.
//!
//! A writer records its change's event in the change's own transaction
//! ([`record`]): it takes the `statusd_watch` row FOR SHARE (writers do not
//! wait for each other), then inserts the event with `nextval` of
//! `statusd_revisions`. Revisions are drawn in order but may commit out of
//! order, so a reader cannot just follow the largest revision it has seen:
//! an earlier one may still commit. Each replica's poller, when the table
//! holds events past what it has published, takes the row FOR UPDATE (a
//! fence): that waits for every transaction holding it FOR SHARE, that is,
//! for every writer that has drawn a revision and not yet ended. Under the
//! fence, the largest committed revision `M` is read: every revision up to
//! `M` is now committed or gone for good (a later writer draws a larger
//! one). The poller publishes the events up to `M` in revision order and
//! moves on. So watchers on every replica see the changes made through
//! every replica, in one order, exactly once, after a delay of at most one
//! poll interval ([`POLL`]) plus the fence's wait (the commits in flight).

use super::errors::{retrying, DbFailure};
use crate::error::{Error, Result};
use crate::store::codec;
use crate::store::watch::{Feed, Filter, History, Logged, REPLAY_CHUNK};
use deadpool_postgres::{Pool, Transaction};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How often a replica looks for new events.
pub const POLL: Duration = Duration::from_millis(50);

/// How often a replica trims the history.
const COMPACT_EVERY: Duration = Duration::from_secs(1);

/// Events the poller reads per statement.
const PAGE: i64 = 1000;

const SHARE: &str = "SELECT compacted FROM statusd_watch WHERE id = 0 FOR SHARE";
const INSERT: &str = "INSERT INTO statusd_events (revision, parent_id, record) \
     SELECT nextval('statusd_revisions'), e.parent_id, e.record \
     FROM unnest($1::text[], $2::bytea[]) AS e(parent_id, record)";
const FENCE: &str = "SELECT compacted FROM statusd_watch WHERE id = 0 FOR UPDATE";
const NEWEST: &str = "SELECT COALESCE(MAX(revision), 0) FROM statusd_events";
const SETTLED: &str = "SELECT revision, record FROM statusd_events \
     WHERE revision > $1 AND revision <= $2 ORDER BY revision LIMIT $3";
const CHUNK: &str = "SELECT revision, record FROM statusd_events \
     WHERE parent_id = $1 AND revision >= $2 AND revision <= $3 ORDER BY revision LIMIT $4";
const COMPACTED: &str = "SELECT compacted FROM statusd_watch WHERE id = 0";
const MARK: &str = "UPDATE statusd_watch SET compacted = GREATEST(compacted, $1) WHERE id = 0";
const TRIM: &str = "DELETE FROM statusd_events WHERE revision <= $1";

/// Records `events` (parent id, encoded [`Logged`]) in the caller's
/// transaction, after its changes (see also [`count_and_record`]).
pub async fn record(tx: &Transaction<'_>, events: &[(&str, &[u8])]) -> Result<(), DbFailure> {
    if events.is_empty() {
        return Ok(());
    }
    let (share, insert) = (tx.prepare_cached(SHARE).await?, tx.prepare_cached(INSERT).await?);
    let parents: Vec<&str> = events.iter().map(|(p, _)| *p).collect();
    let records: Vec<&[u8]> = events.iter().map(|(_, r)| *r).collect();
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 2] = [&parents, &records];
    // Pipelined (one round trip); the server runs them in this order.
    futures::try_join!(tx.query_one(&share, &[]), tx.execute(&insert, &params))?;
    Ok(())
}

/// After a status write in `tx`: adds `deltas` to the tallies (with the
/// collection's `tally_add`) and records `events`, pipelined into one round
/// trip (the server still runs the statements in order).
pub async fn count_and_record(
    tx: &Transaction<'_>,
    tally_add: &str,
    deltas: &super::tally::Deltas<'_>,
    events: &[(&str, &[u8])],
) -> Result<(), DbFailure> {
    let tally_add = tx.prepare_cached(tally_add).await?;
    futures::try_join!(
        super::tally::add(tx, &tally_add, deltas, crate::model::DateTime::now()),
        record(tx, events)
    )?;
    Ok(())
}

/// The events table as a Watch history.
pub struct PgHistory {
    pool: Pool,
}

impl PgHistory {
    /// Over `pool`'s database.
    pub fn new(pool: Pool) -> PgHistory {
        PgHistory { pool }
    }
}

fn revision(n: i64) -> Result<u64> {
    u64::try_from(n).map_err(|_| Error::Internal(format!("a negative revision {n} in statusd_events")))
}

fn param(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[async_trait::async_trait]
impl History for PgHistory {
    async fn chunk(&self, filter: &Filter, from: u64, through: u64) -> Result<Option<(Vec<(u64, Logged)>, u64)>> {
        let rows = retrying("reading the change history", || async {
            let client = self.pool.get().await?;
            Ok(client
                .query(
                    &client.prepare_cached(CHUNK).await?,
                    &[&filter.parent_id, &param(from), &param(through), &(REPLAY_CHUNK as i64)],
                )
                .await?)
        })
        .await?;
        let mut last = None;
        let mut wanted = Vec::with_capacity(rows.len());
        for row in &rows {
            let r = revision(row.get(0))?;
            last = Some(r);
            let logged: Logged = codec::decode(row.get(1))?;
            if filter.wants(&logged) {
                wanted.push((r, logged));
            }
        }
        Ok(last.map(|l| (wanted, l)))
    }

    async fn compacted_through(&self) -> Result<u64> {
        let n: i64 = retrying("reading the change history's start", || async {
            let client = self.pool.get().await?;
            Ok(client
                .query_one(&client.prepare_cached(COMPACTED).await?, &[])
                .await?
                .get(0))
        })
        .await?;
        revision(n)
    }
}

/// The largest revision settled now (read under a fence).
pub async fn settle(pool: &Pool) -> Result<u64> {
    let n: i64 = retrying("settling the change feed", || async {
        let mut client = pool.get().await?;
        let tx = client.transaction().await?;
        tx.query_one(&tx.prepare_cached(FENCE).await?, &[]).await?;
        let newest: i64 = tx.query_one(&tx.prepare_cached(NEWEST).await?, &[]).await?.get(0);
        tx.commit().await?;
        Ok(newest)
    })
    .await?;
    revision(n)
}

/// The poller: moves `settled` (the largest revision known settled) and
/// publishes the settled events to `feed`; trims the history to `keep`
/// revisions. Runs until aborted.
pub async fn poll(pool: Pool, feed: Arc<Feed>, settled: Arc<AtomicU64>, keep: u64) {
    let mut last_compaction = tokio::time::Instant::now();
    // Every settled event up to here has been published (or nobody watched).
    let mut published = settled.load(Ordering::Acquire);
    loop {
        tokio::time::sleep(POLL).await;
        if let Err(e) = poll_once(&pool, &feed, &settled, &mut published).await {
            // What is not published yet stays so, and is published by a
            // later poll: watchers see it late, never out of order or not.
            tracing::warn!(error = %e, "the change feed could not be read; retrying");
            continue;
        }
        if last_compaction.elapsed() >= COMPACT_EVERY {
            last_compaction = tokio::time::Instant::now();
            if let Err(e) = compact(&pool, published, keep).await {
                tracing::warn!(error = %e, "the change history could not be trimmed");
            }
        }
    }
}

async fn poll_once(pool: &Pool, feed: &Feed, settled: &AtomicU64, published: &mut u64) -> Result<()> {
    let newest: i64 = retrying("reading the change feed", || async {
        let client = pool.get().await?;
        Ok(client
            .query_one(&client.prepare_cached(NEWEST).await?, &[])
            .await?
            .get(0))
    })
    .await?;
    if revision(newest)? > settled.load(Ordering::Acquire) {
        let through = settle(pool).await?;
        // The mark before the events: a watch that subscribed before it
        // moved receives them; one that reads it later replays them from
        // the table.
        settled.fetch_max(through, Ordering::AcqRel);
    }
    let target = settled.load(Ordering::Acquire);
    if *published >= target {
        return Ok(());
    }
    if !feed.has_watchers() {
        // Whoever subscribes from now on reads `settled` as `target`.
        *published = target;
        return Ok(());
    }
    loop {
        let after = *published;
        let rows = retrying("reading the change feed", || async {
            let client = pool.get().await?;
            Ok(client
                .query(
                    &client.prepare_cached(SETTLED).await?,
                    &[&param(after), &param(target), &PAGE],
                )
                .await?)
        })
        .await?;
        for row in &rows {
            let r = revision(row.get(0))?;
            feed.publish_logged(r, codec::decode::<Logged>(row.get(1))?);
            *published = r;
        }
        if (rows.len() as i64) < PAGE {
            *published = target;
            return Ok(());
        }
    }
}

/// Drops the events older than the last `keep` revisions before `settled`:
/// the mark first, so a replay that overlaps the trim notices it.
async fn compact(pool: &Pool, settled: u64, keep: u64) -> Result<()> {
    let Some(cut) = settled.checked_sub(keep.max(1)) else {
        return Ok(());
    };
    retrying("trimming the change history", || async {
        let client = pool.get().await?;
        client
            .execute(&client.prepare_cached(MARK).await?, &[&param(cut)])
            .await?;
        client
            .execute(&client.prepare_cached(TRIM).await?, &[&param(cut)])
            .await?;
        Ok(())
    })
    .await
}
