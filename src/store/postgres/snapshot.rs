//! A consistent snapshot on PostgreSQL: one `REPEATABLE READ, READ ONLY`
//! transaction, read a page at a time in the order
//! [`crate::store::snapshot`] promises. The foreign keys keep orphans out.

use super::errors::db_error;
use super::schema::{parent_table, status_table};
use crate::error::{Error, Result};
use crate::model::{ParentKind, StatusKind};
use crate::store::codec;
use crate::store::snapshot::{Item, CHUNK};
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::IsolationLevel;

/// Reads the snapshot: answers `ready` with its revision once the
/// transaction's snapshot is taken (its first statement), then sends the
/// chunks; returns when done or when the receiver is gone.
pub async fn read(
    client: &mut tokio_postgres::Client,
    ready: oneshot::Sender<Result<u64>>,
    tx: &mpsc::Sender<Result<Vec<Item>>>,
) -> Result<()> {
    let doing = "taking a snapshot";
    let began = async {
        let t = client
            .build_transaction()
            .isolation_level(IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await
            .map_err(|e| db_error(e, doing))?;
        // The last change in the snapshot, where the history still holds it.
        let row = t
            .query_one(
                "SELECT CAST(coalesce(max(revision), 0) AS bigint) FROM statusd_events",
                &[],
            )
            .await
            .map_err(|e| db_error(e, doing))?;
        Ok::<_, Error>((t, row.get::<_, i64>(0).max(0) as u64))
    };
    let (t, revision) = match began.await {
        Ok(v) => v,
        Err(e) => {
            let _ = ready.send(Err(e));
            return Ok(());
        }
    };
    if ready.send(Ok(revision)).is_err() {
        return Ok(());
    }
    let limit = CHUNK as i64;
    for kind in ParentKind::ALL {
        let sql = format!(
            "SELECT id, record FROM {} WHERE id > $1 ORDER BY id LIMIT $2",
            parent_table(kind)
        );
        let statement = t.prepare(&sql).await.map_err(|e| db_error(e, doing))?;
        let mut after = String::new();
        loop {
            let rows = t
                .query(&statement, &[&after, &limit])
                .await
                .map_err(|e| db_error(e, doing))?;
            let items = rows
                .iter()
                .map(|r| Ok(Item::Parent(kind, codec::decode(r.get(1))?)))
                .collect::<Result<Vec<_>>>()?;
            if let Some(last) = rows.last() {
                after = last.get::<_, String>(0);
            }
            if !items.is_empty() && tx.send(Ok(items)).await.is_err() {
                return Ok(());
            }
            if rows.len() < CHUNK {
                break;
            }
        }
    }
    for kind in StatusKind::ALL {
        let sql = format!(
            "SELECT parent_id, id, record FROM {} WHERE (parent_id, id) > ($1, $2) \
             ORDER BY parent_id, id LIMIT $3",
            status_table(kind)
        );
        let statement = t.prepare(&sql).await.map_err(|e| db_error(e, doing))?;
        let (mut parent, mut after) = (String::new(), String::new());
        loop {
            let rows = t
                .query(&statement, &[&parent, &after, &limit])
                .await
                .map_err(|e| db_error(e, doing))?;
            let items = rows
                .iter()
                .map(|r| {
                    let parent_id: String = r.get(0);
                    Ok(Item::Status(kind, parent_id, codec::decode_status(r.get(1), r.get(2))?))
                })
                .collect::<Result<Vec<_>>>()?;
            if let Some(last) = rows.last() {
                (parent, after) = (last.get(0), last.get(1));
            }
            if !items.is_empty() && tx.send(Ok(items)).await.is_err() {
                return Ok(());
            }
            if rows.len() < CHUNK {
                break;
            }
        }
    }
    t.commit().await.map_err(|e| db_error(e, doing))
}
