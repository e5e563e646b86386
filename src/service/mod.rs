//! The operations: create, get, list, update and delete, for parents and for
//! statuses, one generic implementation serving every collection kind.
//!
//! This is the single mutation path of statusd: both edges call it, so ids,
//! server-owned fields, validation, reference checks and update semantics are
//! decided here once. (Metrics, change events and auth hooks belong here too.)

mod page;
pub mod query;

pub use page::{status_list_token, PageRequest, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE};
pub use query::{CmpOp, Filter, Literal, OrderKey, Query, QueryLimits, QueryPage, DEFAULT_MAX_ORDERBY_MATCHES};

use crate::error::{Error, Result};
use crate::model::{
    id, property, DateTime, Overview, OverviewSchema, Parent, ParentKind, Status, StatusBody, StatusKind,
};
use crate::store::Store;
use std::sync::Arc;

/// How often an update retries when a concurrent writer changed the record
/// between its read and its compare-and-swap.
const UPDATE_RETRIES: usize = 32;

/// The service: cheap to clone, shared by both edges.
#[derive(Clone)]
pub struct Service {
    store: Arc<dyn Store>,
    limits: QueryLimits,
    /// Turns true when the server shuts down (ends every watch).
    stopping: tokio::sync::watch::Receiver<bool>,
    /// Keeps `stopping` open while no server drives it.
    _never: Arc<tokio::sync::watch::Sender<bool>>,
}

impl Service {
    /// How many records each collection holds (for the metrics).
    pub async fn count_records(&self) -> Result<crate::store::RecordCounts> {
        self.store.count_records().await
    }

    /// A backup of every record: the lines of a [`crate::backup`] file,
    /// from one consistent snapshot, a chunk at a time; an `Err` chunk means
    /// the snapshot failed part-way (the stream must then be cut, so the
    /// file has no closing line and is refused as truncated). With
    /// `max_rate`, at most that many records a second: the reading waits
    /// (the snapshot's channel is bounded, so it waits too).
    pub async fn backup(
        &self,
        max_rate: Option<u64>,
    ) -> Result<tokio::sync::mpsc::Receiver<std::result::Result<Vec<u8>, String>>> {
        // The expected size first: the snapshot may hold more or fewer.
        let expected = self.store.count_records().await?.total();
        let mut snapshot = self.store.snapshot().await?;
        let (mut writer, header) = crate::backup::Writer::start(&crate::backup::Header {
            revision: snapshot.revision,
            taken_at: DateTime::now().to_string(),
            expected_records: expected,
        });
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tokio::spawn(async move {
            if tx.send(Ok(header)).await.is_err() {
                return;
            }
            let mut records = 0u64;
            let started = tokio::time::Instant::now();
            while let Some(chunk) = snapshot.chunks.recv().await {
                if let Some(rate) = max_rate {
                    let due = std::time::Duration::from_secs_f64(records as f64 / rate as f64);
                    tokio::time::sleep_until(started + due).await;
                }
                let mut out = Vec::new();
                let encoded = chunk
                    .map_err(|e| e.to_string())
                    .and_then(|items| writer.items(&items, &mut out).map(|()| items.len()));
                match encoded {
                    Ok(n) => records += n as u64,
                    Err(e) => {
                        tracing::error!(error = %e, records, "the backup failed part-way");
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                }
                if tx.send(Ok(out)).await.is_err() {
                    tracing::warn!(records, "the backup's client went away");
                    return;
                }
            }
            let _ = tx.send(Ok(writer.finish())).await;
            tracing::info!(records, "backup streamed");
        });
        Ok(rx)
    }

    /// A service over `store`, with the default [`QueryLimits`].
    pub fn new(store: Arc<dyn Store>) -> Self {
        let (never, stopping) = tokio::sync::watch::channel(false);
        Service {
            store,
            limits: QueryLimits::default(),
            stopping,
            _never: Arc::new(never),
        }
    }

    /// The same service, its watches ended when `stopping` turns true.
    pub fn with_shutdown(self, stopping: tokio::sync::watch::Receiver<bool>) -> Self {
        Service { stopping, ..self }
    }

    /// The same service with these query limits (from the configuration).
    pub fn with_query_limits(self, limits: QueryLimits) -> Self {
        Service { limits, ..self }
    }

    /// Creates a parent. The server sets `createdDateTime`,
    /// `lastModifiedDateTime` (now) and `version` (1), and generates the id when
    /// none is given. Returns once the parent is durable.
    pub async fn create_parent(&self, kind: ParentKind, mut parent: Parent) -> Result<Parent> {
        parent.id = id::for_create("id", &parent.id)?;
        parent.validate(kind)?;
        let now = DateTime::now();
        parent.created_date_time = now;
        parent.last_modified_date_time = now;
        parent.version = 1;
        self.store.create_parent(kind, &parent).await?;
        Ok(parent)
    }

    /// Reads a parent; `NotFound` if absent.
    pub async fn get_parent(&self, kind: ParentKind, parent_id: &str) -> Result<Parent> {
        id::validate("id", parent_id)?;
        self.store
            .get_parent(kind, parent_id)
            .await?
            .ok_or_else(|| parent_not_found(kind, parent_id))
    }

    /// One page of parents in id order (the default page is [`DEFAULT_PAGE_SIZE`]).
    pub async fn list_parents(&self, kind: ParentKind, page: &PageRequest) -> Result<QueryPage<Parent>> {
        let query = Query {
            page: page.clone(),
            ..Query::default()
        };
        self.query_parents(kind, &query, DEFAULT_PAGE_SIZE).await
    }

    /// Changes the named fields (Graph names, see [`Parent::apply_field`]) of
    /// parent `parent_id` to their values in `input`. Bumps `version` and
    /// `lastModifiedDateTime`. Concurrent updates are serialised by
    /// compare-and-swap; none is lost.
    pub async fn update_parent(
        &self,
        kind: ParentKind,
        parent_id: &str,
        input: &Parent,
        fields: &[String],
    ) -> Result<Parent> {
        for _ in 0..UPDATE_RETRIES {
            let current = self.get_parent(kind, parent_id).await?;
            let mut next = current.clone();
            for f in fields {
                next.apply_field(input, f)?;
            }
            next.validate(kind)?;
            next.version = current.version.wrapping_add(1);
            next.last_modified_date_time = DateTime::now();
            if self.store.replace_parent(kind, &current, &next).await? {
                return Ok(next);
            }
        }
        Err(contended())
    }

    /// Deletes a parent and all its statuses; `NotFound` if absent.
    pub async fn delete_parent(&self, kind: ParentKind, parent_id: &str) -> Result<()> {
        id::validate("id", parent_id)?;
        if self.store.delete_parent(kind, parent_id).await? {
            Ok(())
        } else {
            Err(parent_not_found(kind, parent_id))
        }
    }

    /// Creates a status under an existing parent; generates the id when none
    /// is given. Returns once the status is durable.
    pub async fn create_status(&self, kind: StatusKind, parent_id: &str, mut status: Status) -> Result<Status> {
        id::validate("parentId", parent_id)?;
        status.id = id::for_create("id", &status.id)?;
        check_shape(kind, &status.body)?;
        status.body.validate()?;
        self.store.create_status(kind, parent_id, &status).await?;
        Ok(status)
    }

    /// Reads a status; `NotFound` names whichever of parent or status is missing.
    pub async fn get_status(&self, kind: StatusKind, parent_id: &str, status_id: &str) -> Result<Status> {
        id::validate("parentId", parent_id)?;
        id::validate("id", status_id)?;
        match self.store.get_status(kind, parent_id, status_id).await? {
            Some(s) => Ok(s),
            None => Err(self.status_not_found(kind, parent_id, status_id).await),
        }
    }

    /// A parent's overview of its statuses of `kind` (their counts by
    /// Graph's mapping, in `schema`), read in O(1); `NotFound` if the parent
    /// is missing.
    pub async fn get_overview(&self, kind: StatusKind, parent_id: &str, schema: OverviewSchema) -> Result<Overview> {
        let parent = self.get_parent(kind.parent, parent_id).await?;
        match self.store.get_tally(kind, parent_id).await? {
            Some(tally) => Ok(Overview::new(kind, &parent, &tally, schema)),
            // Deleted since the parent was read.
            None => Err(Error::NotFound(format!("{} '{parent_id}' does not exist", kind.parent))),
        }
    }

    /// The committed changes to a parent's statuses of `kind` from
    /// `start_revision` on (0: from now), in commit order (see
    /// [`Store::watch`]); every stream ends when the server shuts down.
    pub async fn watch_statuses(
        &self,
        kind: StatusKind,
        parent_id: &str,
        start_revision: u64,
    ) -> Result<crate::store::watch::EventStream> {
        id::validate("parentId", parent_id)?;
        self.store
            .watch(kind, parent_id, start_revision, self.stopping.clone())
            .await
    }

    /// One page of a parent's statuses in id order; `NotFound` if the parent is missing.
    pub async fn list_statuses(
        &self,
        kind: StatusKind,
        parent_id: &str,
        page: &PageRequest,
    ) -> Result<QueryPage<Status>> {
        let query = Query {
            page: page.clone(),
            ..Query::default()
        };
        self.query_statuses(kind, parent_id, &query, DEFAULT_PAGE_SIZE).await
    }

    /// Changes the named fields (Graph names) of a status to their values in `input`.
    pub async fn update_status(
        &self,
        kind: StatusKind,
        parent_id: &str,
        status_id: &str,
        input: &StatusBody,
        fields: &[String],
    ) -> Result<Status> {
        check_shape(kind, input)?;
        for _ in 0..UPDATE_RETRIES {
            let current = self.get_status(kind, parent_id, status_id).await?;
            let mut next = current.clone();
            for f in fields {
                next.body.apply_field(input, f)?;
            }
            next.body.validate()?;
            if self.store.replace_status(kind, parent_id, &current, &next).await? {
                return Ok(next);
            }
        }
        Err(contended())
    }

    /// Deletes a status; `NotFound` if absent.
    pub async fn delete_status(&self, kind: StatusKind, parent_id: &str, status_id: &str) -> Result<()> {
        id::validate("parentId", parent_id)?;
        id::validate("id", status_id)?;
        if self.store.delete_status(kind, parent_id, status_id).await? {
            Ok(())
        } else {
            Err(self.status_not_found(kind, parent_id, status_id).await)
        }
    }

    /// Runs a query (filter, order, skip, page, count) over a parent kind.
    pub async fn query_parents(
        &self,
        kind: ParentKind,
        query: &Query,
        default_size: usize,
    ) -> Result<QueryPage<Parent>> {
        let source = ParentSource {
            store: self.store.as_ref(),
            kind,
        };
        query::run(
            &property::parent_schema(kind),
            query,
            default_size,
            &self.limits,
            &source,
        )
        .await
    }

    /// Runs a query over a parent's statuses; `NotFound` if the parent is missing.
    pub async fn query_statuses(
        &self,
        kind: StatusKind,
        parent_id: &str,
        query: &Query,
        default_size: usize,
    ) -> Result<QueryPage<Status>> {
        self.get_parent(kind.parent, parent_id).await?;
        let source = StatusSource {
            store: self.store.as_ref(),
            kind,
            parent_id,
        };
        query::run(
            property::status_schema(kind.shape),
            query,
            default_size,
            &self.limits,
            &source,
        )
        .await
    }

    /// How many parents of `kind` match `filter`.
    pub async fn count_parents(&self, kind: ParentKind, filter: Option<&Filter>) -> Result<u64> {
        let source = ParentSource {
            store: self.store.as_ref(),
            kind,
        };
        query::count(&property::parent_schema(kind), filter, &source).await
    }

    /// How many of a parent's statuses match `filter`; `NotFound` if the parent is missing.
    pub async fn count_statuses(&self, kind: StatusKind, parent_id: &str, filter: Option<&Filter>) -> Result<u64> {
        self.get_parent(kind.parent, parent_id).await?;
        let source = StatusSource {
            store: self.store.as_ref(),
            kind,
            parent_id,
        };
        query::count(property::status_schema(kind.shape), filter, &source).await
    }

    async fn status_not_found(&self, kind: StatusKind, parent_id: &str, status_id: &str) -> Error {
        match self.store.get_parent(kind.parent, parent_id).await {
            Ok(Some(_)) => Error::NotFound(format!(
                "{kind} '{status_id}' does not exist under {} '{parent_id}'",
                kind.parent
            )),
            Ok(None) => parent_not_found(kind.parent, parent_id),
            Err(e) => e,
        }
    }
}

fn parent_not_found(kind: ParentKind, id: &str) -> Error {
    Error::NotFound(format!("{kind} '{id}' does not exist"))
}

fn contended() -> Error {
    Error::Unavailable("the record is being updated by many writers at once; retry".into())
}

fn check_shape(kind: StatusKind, body: &StatusBody) -> Result<()> {
    if body.shape() == kind.shape {
        Ok(())
    } else {
        Err(Error::Internal(format!("a {:?} body was sent to {kind}", body.shape())))
    }
}

/// A parent collection as a query source.
struct ParentSource<'a> {
    store: &'a dyn Store,
    kind: ParentKind,
}

#[async_trait::async_trait]
impl query::Source<Parent> for ParentSource<'_> {
    async fn fetch(&self, after: Option<String>, limit: usize) -> Result<Vec<Parent>> {
        self.store.list_parents(self.kind, after.as_deref(), limit).await
    }

    fn scope(&self) -> String {
        page::parents_scope(self.kind)
    }
}

/// One parent's statuses as a query source.
struct StatusSource<'a> {
    store: &'a dyn Store,
    kind: StatusKind,
    parent_id: &'a str,
}

#[async_trait::async_trait]
impl query::Source<Status> for StatusSource<'_> {
    async fn fetch(&self, after: Option<String>, limit: usize) -> Result<Vec<Status>> {
        self.store
            .list_statuses(self.kind, self.parent_id, after.as_deref(), limit)
            .await
    }

    fn scope(&self) -> String {
        page::statuses_scope(self.kind, self.parent_id)
    }
}
