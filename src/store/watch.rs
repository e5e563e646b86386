//! Watch: a history of status changes, and the streams that replay it and
//! then follow new changes. The backends differ only in where the history
//! lives ([`History`]) and who publishes: on sled, every status write (and
//! every parent delete) commits an event with its log record; the log stores
//! it in the `history` tree under the record's revision and, once the record
//! is applied, [`Feed::publish`]es it. On PostgreSQL, events are rows written
//! in the change's transaction, and each replica's poller publishes them once
//! they are settled (see `postgres::events`). A watch:
//! 1. subscribes to the channel, then reads the current revision (so every
//!    later change is either past or received: the log publishes after it
//!    advances the revision);
//! 2. with a start revision, replays the history from it, in chunks;
//! 3. follows the channel, skipping what the replay already covered.
//!
//! Writers never wait for watchers: the channel keeps the last
//! [`LIVE_BUFFER`] events, and a watcher that falls further behind is ended
//! with RESOURCE_EXHAUSTED naming the revision to resume from. The history
//! keeps the last `watch_history` revisions (trimmed at checkpoints on sled,
//! by the poller on PostgreSQL), and an older start is OUT_OF_RANGE naming
//! the oldest one kept.

use super::codec;
use crate::error::{Error, Result};
use crate::model::{Change, Event, ParentKind, StatusKind, StatusShape};
use serde::{Deserialize, Serialize};
use std::pin::Pin;
use std::sync::Arc;
use tokio::sync::{broadcast, mpsc, watch};

/// Events the live channel holds for its slowest watcher.
pub const LIVE_BUFFER: usize = 4096;

/// Events read from the history per step of a replay.
pub const REPLAY_CHUNK: usize = 512;

/// Key (in sled's default tree) of the last revision the history no longer
/// holds.
const COMPACTED_KEY: &[u8] = b"history_compacted";

/// A stream of events, ending after a parent delete or with an error.
pub type EventStream = Pin<Box<dyn futures::Stream<Item = Result<Event>> + Send>>;

/// The number an event names a parent collection by (part of both storage
/// formats: sled's tree numbers are the same).
pub fn parent_number(kind: ParentKind) -> u8 {
    kind.tag()
}

/// The number an event names a status collection by.
pub fn status_number(kind: StatusKind) -> u8 {
    kind.parent.tag() * 16
        + match kind.shape {
            StatusShape::User => 0,
            StatusShape::Device => 1,
        }
}

/// What the history holds per revision: the collection and parent a change
/// is under, and the change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Logged {
    /// The collection changed ([`status_number`]), or the parent's
    /// ([`parent_number`]) for [`Change::ParentDeleted`].
    pub tree: u8,
    /// The parent the change is under.
    pub parent_id: String,
    /// The change.
    pub change: Change,
}

impl Logged {
    /// A change under `parent_id` in the status collection `kind`.
    pub fn status(kind: StatusKind, parent_id: &str, change: Change) -> Logged {
        Logged {
            tree: status_number(kind),
            parent_id: parent_id.to_owned(),
            change,
        }
    }

    /// The delete of a parent.
    pub fn parent_deleted(kind: ParentKind, parent_id: &str) -> Logged {
        Logged {
            tree: parent_number(kind),
            parent_id: parent_id.to_owned(),
            change: Change::ParentDeleted,
        }
    }

    /// Encoded for the log or the events table.
    pub fn encode(&self) -> Result<Vec<u8>> {
        codec::encode(self)
    }
}

/// Which events one watch wants.
#[derive(Debug, Clone)]
pub struct Filter {
    /// The status collection watched ([`status_number`]).
    pub status_tree: u8,
    /// Its parent's collection (for the parent's delete).
    pub parent_tree: u8,
    /// The parent.
    pub parent_id: String,
}

impl Filter {
    /// The events under `parent_id` in `kind`, and the parent's delete.
    pub fn new(kind: StatusKind, parent_id: &str) -> Filter {
        Filter {
            status_tree: status_number(kind),
            parent_tree: parent_number(kind.parent),
            parent_id: parent_id.to_owned(),
        }
    }

    /// NOT_FOUND for the watched parent.
    fn parent_missing(&self) -> Error {
        let kind = ParentKind::from_tag(self.parent_tree).map_or_else(|| "parent".to_owned(), |k| k.to_string());
        Error::NotFound(format!("{kind} '{}' does not exist", self.parent_id))
    }

    /// Whether the watch wants this event.
    pub fn wants(&self, logged: &Logged) -> bool {
        logged.parent_id == self.parent_id
            && match logged.change {
                Change::ParentDeleted => logged.tree == self.parent_tree,
                _ => logged.tree == self.status_tree,
            }
    }
}

/// Where a backend keeps its events.
#[async_trait::async_trait]
pub trait History: Send + Sync + 'static {
    /// Up to [`REPLAY_CHUNK`] events `filter` wants, from revision `from`
    /// through `through`, in revision order, with the last revision read
    /// (wanted or not) so the next chunk starts after it; `None` when the
    /// range holds no more.
    async fn chunk(&self, filter: &Filter, from: u64, through: u64) -> Result<Option<(Vec<(u64, Logged)>, u64)>>;
    /// The last revision no longer kept.
    async fn compacted_through(&self) -> Result<u64>;
}

/// The sled history: the `history` tree, and the compaction mark in sled's
/// default tree.
pub struct SledHistory {
    history: sled::Tree,
    meta: sled::Tree,
    keep: u64,
}

impl SledHistory {
    /// Over `history`; `meta` holds the compaction mark; `keep` revisions
    /// are kept. A store without a mark (new, or older than Watch) has kept
    /// nothing before `last_revision`.
    pub fn open(history: sled::Tree, meta: sled::Tree, keep: u64, last_revision: u64) -> Result<SledHistory> {
        if meta.get(COMPACTED_KEY)?.is_none() {
            meta.insert(COMPACTED_KEY, &last_revision.to_be_bytes())?;
        }
        Ok(SledHistory {
            history,
            meta,
            keep: keep.max(1),
        })
    }

    fn compacted(&self) -> Result<u64> {
        Ok(self
            .meta
            .get(COMPACTED_KEY)?
            .map_or(0, |v| u64::from_be_bytes(v.as_ref().try_into().unwrap_or([0; 8]))))
    }

    /// Drops the history older than the last `keep` revisions before
    /// `revision` (at checkpoints). The mark moves first: a watch never
    /// replays a range that is being removed.
    pub fn compact(&self, revision: u64) -> Result<()> {
        let Some(cut) = revision.checked_sub(self.keep) else {
            return Ok(());
        };
        if cut <= self.compacted()? {
            return Ok(());
        }
        self.meta.insert(COMPACTED_KEY, &cut.to_be_bytes())?;
        let end = (cut + 1).to_be_bytes();
        loop {
            let mut batch = sled::Batch::default();
            let mut n = 0;
            for key in self.history.range(..end.as_slice()).keys().take(4096) {
                batch.remove(key?);
                n += 1;
            }
            if n == 0 {
                return Ok(());
            }
            self.history.apply_batch(batch)?;
        }
    }
}

#[async_trait::async_trait]
impl History for SledHistory {
    async fn chunk(&self, filter: &Filter, from: u64, through: u64) -> Result<Option<(Vec<(u64, Logged)>, u64)>> {
        let mut read = None;
        let mut wanted = Vec::new();
        for item in self
            .history
            .range(from.to_be_bytes()..=through.to_be_bytes())
            .take(REPLAY_CHUNK)
        {
            let (k, v) = item?;
            let revision = u64::from_be_bytes(
                k.as_ref()
                    .try_into()
                    .map_err(|_| Error::Internal("a malformed history key".into()))?,
            );
            read = Some(revision);
            let logged: Logged = codec::decode(&v)?;
            if filter.wants(&logged) {
                wanted.push((revision, logged));
            }
        }
        Ok(read.map(|last| (wanted, last)))
    }

    async fn compacted_through(&self) -> Result<u64> {
        self.compacted()
    }
}

/// The history and the live channel.
pub struct Feed {
    live: broadcast::Sender<Arc<(u64, Logged)>>,
    history: Arc<dyn History>,
    keep: u64,
}

impl Feed {
    /// Over `history`, which keeps `keep` revisions (0: none, so a watch
    /// can only start from now).
    pub fn new(history: Arc<dyn History>, keep: u64) -> Feed {
        Feed {
            live: broadcast::channel(LIVE_BUFFER).0,
            history,
            keep,
        }
    }

    /// Hands an encoded, applied event to the live watchers (sled's log
    /// thread calls this; it never blocks, and decodes only when someone
    /// watches).
    pub fn publish(&self, revision: u64, event: &[u8]) {
        if !self.has_watchers() {
            return;
        }
        match codec::decode::<Logged>(event) {
            Ok(logged) => self.publish_logged(revision, logged),
            Err(e) => tracing::error!(revision, error = %e, "an event the log applied does not decode"),
        }
    }

    /// Whether any watch is subscribed.
    pub fn has_watchers(&self) -> bool {
        self.live.receiver_count() > 0
    }

    /// Hands a settled event to the live watchers.
    pub fn publish_logged(&self, revision: u64, logged: Logged) {
        let _ = self.live.send(Arc::new((revision, logged)));
    }

    /// Starts a watch: `subscribed` was taken before `now` (the current
    /// revision) and `exists` (whether the parent exists) were read. `start`
    /// 0 means from the next change on. Ends early with `stop`.
    #[allow(clippy::too_many_arguments)]
    pub async fn watch(
        self: &Arc<Self>,
        subscribed: broadcast::Receiver<Arc<(u64, Logged)>>,
        filter: Filter,
        start: u64,
        now: u64,
        exists: bool,
        stop: watch::Receiver<bool>,
    ) -> Result<EventStream> {
        if start != 0 && self.keep == 0 {
            return Err(Error::OutOfRange(
                "no history is kept (--watch-history 0): a watch can only start from now (start_revision 0)".into(),
            ));
        }
        if start != 0 {
            let compacted = self.history.compacted_through().await?;
            if start <= compacted {
                return Err(Error::OutOfRange(format!(
                    "revision {start} is no longer kept; the oldest revision a watch can start from is {} \
                     (the history keeps {} revisions: --watch-history)",
                    compacted + 1,
                    self.keep
                )));
            }
        }
        if start == 0 && !exists {
            return Err(filter.parent_missing());
        }
        let (tx, rx) = mpsc::channel(64);
        let run = Run {
            feed: self.clone(),
            filter,
            out: tx,
            stop,
            last: if start == 0 { now } else { start - 1 },
        };
        tokio::spawn(run.run(subscribed, start, now, exists));
        Ok(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx)))
    }

    /// The subscription a watch must take first.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<(u64, Logged)>> {
        self.live.subscribe()
    }
}

/// One watch's task.
struct Run {
    feed: Arc<Feed>,
    filter: Filter,
    out: mpsc::Sender<Result<Event>>,
    stop: watch::Receiver<bool>,
    /// Every revision up to this one has been handled (sent or not wanted).
    last: u64,
}

/// Whether a watch goes on after an event.
enum Next {
    More,
    Done,
}

impl Run {
    async fn run(mut self, mut live: broadcast::Receiver<Arc<(u64, Logged)>>, start: u64, now: u64, exists: bool) {
        let _open = Open::new();
        if start != 0 {
            match self.replay(start, now).await {
                Ok(Next::More) => {}
                Ok(Next::Done) => return,
                Err(e) => return self.fail(e).await,
            }
            if !exists {
                let e = self.filter.parent_missing();
                return self.fail(e).await;
            }
        }
        loop {
            let received = tokio::select! {
                r = live.recv() => Some(r),
                _ = self.stop.wait_for(|s| *s) => None,
                () = self.out.closed() => return,
            };
            let Some(received) = received else {
                let e = shutting_down(self.last);
                return self.fail(e).await;
            };
            match received {
                Ok(event) => {
                    let (revision, logged) = &*event;
                    if *revision <= self.last {
                        continue;
                    }
                    if let Next::Done = self.handle(*revision, logged).await {
                        return;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    let e = Error::ResourceExhausted(format!(
                        "this watch fell more than {missed} changes behind the writers and was ended; \
                         resume it from revision {}",
                        self.last + 1
                    ));
                    return self.fail(e).await;
                }
                Err(broadcast::error::RecvError::Closed) => {
                    let e = shutting_down(self.last);
                    return self.fail(e).await;
                }
            }
        }
    }

    /// Sends the history from `start` through `now` (what was settled when
    /// the watch subscribed; later changes arrive live).
    async fn replay(&mut self, start: u64, now: u64) -> Result<Next> {
        let mut from = start;
        while from <= now {
            let Some((chunk, last)) = self.feed.history.chunk(&self.filter, from, now).await? else {
                break;
            };
            // The mark moves before a trim: if it passed `from`, part of
            // this chunk may have been trimmed as it was read.
            let compacted = self.feed.history.compacted_through().await?;
            if compacted >= from {
                return Err(Error::OutOfRange(format!(
                    "the history was trimmed past revision {from} during the replay; the oldest revision a \
                     watch can start from is now {}",
                    compacted + 1
                )));
            }
            for (revision, logged) in &chunk {
                if let Next::Done = self.handle(*revision, logged).await {
                    return Ok(Next::Done);
                }
            }
            from = last + 1;
        }
        self.last = self.last.max(now);
        Ok(Next::More)
    }

    /// Sends one event if the watch wants it.
    async fn handle(&mut self, revision: u64, logged: &Logged) -> Next {
        self.last = revision;
        if !self.filter.wants(logged) {
            return Next::More;
        }
        let done = logged.change == Change::ParentDeleted;
        let event = Event {
            revision,
            change: logged.change.clone(),
        };
        if !self.send(Ok(event)).await || done {
            return Next::Done;
        }
        Next::More
    }

    /// Sends (waiting for a slow client, but not past a shutdown); `false`
    /// once the client is gone or the server stops.
    async fn send(&mut self, item: Result<Event>) -> bool {
        tokio::select! {
            r = self.out.send(item) => r.is_ok(),
            _ = self.stop.wait_for(|s| *s) => {
                let _ = self.out.try_send(Err(shutting_down(self.last)));
                false
            }
        }
    }

    async fn fail(&mut self, e: Error) {
        let _ = self.send(Err(e)).await;
    }
}

/// Counts a watch in [`crate::metrics::WATCHERS`] while it runs.
struct Open;

impl Open {
    fn new() -> Open {
        metrics::gauge!(crate::metrics::WATCHERS).increment(1.0);
        Open
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        metrics::gauge!(crate::metrics::WATCHERS).decrement(1.0);
    }
}

fn shutting_down(last: u64) -> Error {
    Error::Unavailable(format!(
        "statusd is shutting down; resume this watch from revision {}",
        last + 1
    ))
}
