//! Group commit of status creates: concurrent creates of one collection
//! become one `INSERT … SELECT FROM unnest(…)` statement, one change of each
//! parent's tally, and one commit.
//!
//! PostgreSQL flushes its WAL once per commit, and on a small machine the
//! per-statement work of its backends costs as much as the flush: a batch
//! pays both once for all its rows. A collector per collection takes what
//! is queued, sends it as one statement on a pooled connection, and goes on
//! collecting while up to [`IN_FLIGHT`] batches run, so the batch grows with
//! the load and a lone create waits for nobody.
//!
//! Each row keeps the answer it would get alone:
//! - the statement inserts only rows whose parent exists and skips rows
//!   whose key is taken (`ON CONFLICT DO NOTHING`); `RETURNING` names the
//!   rows written, whose values are added to their parents' tallies in the
//!   same transaction (one upsert, parents in id order), and which are
//!   acknowledged once that transaction has committed;
//! - a skipped row is `NotFound` if its parent is missing, else
//!   `AlreadyExists`;
//! - two creates of one key never share a batch (the second waits for the
//!   next), so exactly one of them can succeed;
//! - a parent deleted while the statement runs makes its foreign key fail
//!   the whole statement (23503): the rows are then written one by one, each
//!   with its own answer.

use super::errors::{retrying, violates, DbFailure};
use super::{events, tally};
use super::{parent_missing, status_exists, PostgresStore};
use crate::error::{Error, Result};
use crate::model::{ComplianceStatus, StatusKind};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Weak};
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio_postgres::error::SqlState;

/// Most rows in one statement.
const MAX_BATCH: usize = 512;
/// Most statements of one collection running at once.
pub const IN_FLIGHT: usize = 4;

/// One create waiting for its batch.
pub struct Pending {
    /// The parent it is created under.
    pub parent_id: String,
    /// The status's id.
    pub id: String,
    /// The status's body, encoded.
    pub record: Vec<u8>,
    /// The status's value (what it adds to its parent's tally).
    pub status: ComplianceStatus,
    /// Its Watch event, encoded.
    pub event: Vec<u8>,
    /// Where its answer goes.
    pub reply: oneshot::Sender<Result<()>>,
}

/// The queue of one status collection's creates.
pub type Queue = mpsc::UnboundedSender<Pending>;

/// Starts the collector of `kind`; it ends when the store is dropped.
pub fn start(store: Weak<PostgresStore>, kind: StatusKind) -> Queue {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(collect(store, kind, rx));
    tx
}

async fn collect(store: Weak<PostgresStore>, kind: StatusKind, mut rx: mpsc::UnboundedReceiver<Pending>) {
    let permits = Arc::new(Semaphore::new(IN_FLIGHT));
    let mut deferred: VecDeque<Pending> = VecDeque::new();
    loop {
        if deferred.is_empty() {
            match rx.recv().await {
                Some(p) => deferred.push_back(p),
                None => return,
            }
        }
        // Wait for a free slot before taking the batch: meanwhile more
        // creates queue up and join it.
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        while let Ok(p) = rx.try_recv() {
            deferred.push_back(p);
        }
        let mut keys = HashSet::new();
        let mut batch = Vec::new();
        let mut later = VecDeque::new();
        while let Some(p) = deferred.pop_front() {
            if batch.len() < MAX_BATCH && keys.insert((p.parent_id.clone(), p.id.clone())) {
                batch.push(p);
            } else {
                later.push_back(p);
            }
        }
        deferred = later;
        let Some(store) = store.upgrade() else {
            for p in batch {
                let _ = p.reply.send(Err(Error::Unavailable("statusd is shutting down".into())));
            }
            return;
        };
        tokio::spawn(async move {
            run(&store, kind, batch).await;
            drop(permit);
        });
    }
}

async fn run(store: &PostgresStore, kind: StatusKind, mut batch: Vec<Pending>) {
    metrics::histogram!(crate::metrics::PG_BATCH_ROWS).record(batch.len() as f64);
    // Rows in key order: concurrent batches then take their row locks (and
    // their tally rows', in parent order) in one order, so they never wait
    // for each other in a cycle.
    batch.sort_by(|a, b| (&a.parent_id, &a.id).cmp(&(&b.parent_id, &b.id)));
    let sql = store.status_sql(kind);
    let parents: Vec<&str> = batch.iter().map(|p| p.parent_id.as_str()).collect();
    let ids: Vec<&str> = batch.iter().map(|p| p.id.as_str()).collect();
    let records: Vec<&[u8]> = batch.iter().map(|p| p.record.as_slice()).collect();
    // Keys are distinct within a batch: each names one value.
    let values: HashMap<(&str, &str), (ComplianceStatus, &[u8])> = batch
        .iter()
        .map(|p| ((p.parent_id.as_str(), p.id.as_str()), (p.status, p.event.as_slice())))
        .collect();
    let outcome = retrying("creating statuses", || async {
        let mut client = store.pool.get().await?;
        let tx = client.transaction().await?;
        let statement = tx.prepare_cached(&sql.insert_batch).await?;
        let rows = match tx.query(&statement, &[&parents, &ids, &records]).await {
            Ok(rows) => rows,
            // A parent deleted under the statement: one by one instead.
            Err(e) if violates(&e, &SqlState::FOREIGN_KEY_VIOLATION) => return Ok(None),
            Err(e) => return Err(DbFailure::Db(e)),
        };
        let written: HashSet<(String, String)> = rows
            .iter()
            .map(|r| (r.get::<_, String>(0), r.get::<_, String>(1)))
            .collect();
        // The tallies gain the values of the rows written (not of those
        // skipped), per parent.
        let mut deltas = tally::Deltas::new();
        let mut logged = Vec::with_capacity(written.len());
        for (parent_id, id) in &written {
            let (status, event) = values.get(&(parent_id.as_str(), id.as_str())).copied().ok_or_else(|| {
                Error::Internal(format!(
                    "the database wrote status '{id}' under '{parent_id}', which the batch did not hold"
                ))
            })?;
            tally::accumulate(&mut deltas, parent_id, &tally::delta(None, Some(status)));
            logged.push((parent_id.as_str(), event));
        }
        events::count_and_record(&tx, &sql.tally_add, &deltas, &logged).await?;
        tx.commit().await?;
        Ok(Some(written))
    })
    .await;
    let written = match outcome {
        Ok(Some(written)) => written,
        Ok(None) => {
            for p in batch {
                let answer = store
                    .create_one(kind, &p.parent_id, &p.id, &p.record, p.status, &p.event)
                    .await;
                let _ = p.reply.send(answer);
            }
            return;
        }
        Err(e) => {
            for p in batch {
                let _ = p.reply.send(Err(e.clone()));
            }
            return;
        }
    };
    let is_written: Vec<bool> = batch
        .iter()
        .map(|p| written.contains(&(p.parent_id.clone(), p.id.clone())))
        .collect();
    // The rows not written: a missing parent or a taken key.
    let skipped: Vec<&str> = batch
        .iter()
        .zip(&is_written)
        .filter(|(_, w)| !**w)
        .map(|(p, _)| p.parent_id.as_str())
        .collect();
    let existing = if skipped.is_empty() {
        Ok(HashSet::new())
    } else {
        store.existing_parents(kind, &skipped).await
    };
    for (p, written) in batch.into_iter().zip(is_written) {
        let answer = if written {
            Ok(())
        } else {
            match &existing {
                Ok(found) if found.contains(&p.parent_id) => Err(status_exists(kind, &p.parent_id, &p.id)),
                Ok(_) => Err(parent_missing(kind.parent, &p.parent_id)),
                Err(e) => Err(e.clone()),
            }
        };
        let _ = p.reply.send(answer);
    }
}
