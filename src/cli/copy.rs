//! `statusd copy`: copies a sled data directory into a PostgreSQL database.
//!
//! The copy goes through the [`Store`] trait only (pages read from sled,
//! creates into the target, a bounded number in flight), so the target could
//! be any backend. It is idempotent: a record the target already holds
//! (`AlreadyExists`) is read back and counted as "already there" when it
//! equals the source's, or reported as a conflict (and left as it is) when it
//! differs, so an interrupted copy is finished by running it again.
//!
//! Certificate references between device configurations are set in a second
//! pass, once every parent exists: parents are first created without them (a
//! reference may name a configuration later in id order), then each one is
//! swapped from that stripped copy to the full record. A reference whose
//! target is not in the source (sled keeps references to deleted
//! configurations) cannot be written through the trait: it is dropped, with
//! a warning naming it.
//!
//! At the end the target is read back (paged like any client would) and its
//! counts compared with the source's, collection by collection.

use super::progress::Progress;
use crate::backup::status_collection;
use crate::error::Error;
use crate::model::{Parent, ParentKind, Status, StatusKind};
use crate::store::postgres::redacted;
use crate::store::{BackendConfig, Durability, FaultInjection, PostgresConfig, SledConfig, SledStore, Store};
use futures::stream::{self, StreamExt};
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Records read from the source (and listed from the target) per page.
const PAGE: usize = 500;
/// Attempts of one write that the target answers UNAVAILABLE.
const ATTEMPTS: u32 = 5;

/// `statusd copy` flags.
#[derive(Debug, clap::Args)]
pub struct CopyArgs {
    /// The sled data directory to copy from. The server using it must be
    /// stopped: sled allows one process per directory.
    #[arg(long, env = "STATUSD_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    /// The PostgreSQL database to copy into (empty, or partially copied by
    /// an earlier run), e.g. `postgres://statusd@127.0.0.1:5432/statusd`.
    #[arg(long, env = "STATUSD_DATABASE_URL", value_name = "URL", hide_env_values = true)]
    pub database_url: String,
    /// PEM CA certificate(s) for a database reached with `sslmode=require`
    /// (as the server's `--database-ca`).
    #[arg(long, env = "STATUSD_DATABASE_CA", value_name = "PATH")]
    pub database_ca: Option<PathBuf>,
    /// Most writes in flight at once (also the number of database connections).
    #[arg(long, default_value_t = 32, value_parser = concurrency)]
    pub concurrency: usize,
}

pub(super) fn concurrency(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if (1..=1024).contains(&n) => Ok(n),
        _ => Err(format!("'{s}' is not a number from 1 to 1024")),
    }
}

/// What became of one record.
pub(super) enum Outcome {
    /// Written to the target.
    Copied,
    /// The target already held an equal record.
    AlreadyThere,
    /// The target holds another record under that id (the message says which).
    Conflict(String),
}

/// The counts of one collection.
#[derive(Debug, Default, Clone)]
pub(super) struct Tally {
    pub source: u64,
    pub target: u64,
    pub copied: u64,
    pub already: u64,
    pub conflicts: u64,
}

impl Tally {
    /// The progress line at the end of a collection.
    fn line(&self, name: &str) -> String {
        format!(
            "copy: {name}: {} read, {} copied, {} already there, {} conflicts",
            self.source, self.copied, self.already, self.conflicts
        )
    }
}

/// A parent collection of the source, page by page in id order.
struct ParentPages {
    kind: ParentKind,
    after: Option<String>,
    done: bool,
}

impl ParentPages {
    fn new(kind: ParentKind) -> ParentPages {
        ParentPages {
            kind,
            after: None,
            done: false,
        }
    }

    /// The next page, or `None` after the last.
    async fn next(&mut self, source: &dyn Store) -> Result<Option<Vec<Parent>>, Error> {
        if self.done {
            return Ok(None);
        }
        let page = source.list_parents(self.kind, self.after.as_deref(), PAGE).await?;
        self.done = page.len() < PAGE;
        self.after = page.last().map(|p| p.id.clone());
        Ok((!page.is_empty()).then_some(page))
    }
}

/// The counts of the certificate-reference pass.
#[derive(Debug, Default)]
pub(super) struct References {
    pub set: u64,
    pub already: u64,
    pub conflicts: u64,
    pub dangling: u64,
}

/// What a copy (or a restore) did, collection by collection.
#[derive(Debug, Default)]
pub(super) struct Ledger {
    /// Per [`ParentKind::ALL`].
    pub parents: [Tally; 3],
    /// Per [`StatusKind::ALL`].
    pub statuses: [Tally; 6],
    pub references: References,
}

/// Runs the copy; the error is the message to print.
pub async fn run(args: &CopyArgs) -> Result<(), String> {
    let started = Instant::now();
    let source = open_source(&args.data_dir).await?;
    let integrity = {
        let source = source.clone();
        tokio::task::spawn_blocking(move || {
            // No orphan is copied: deletes still removing statuses finish first.
            source.wait_for_cascades();
            source.check_integrity()
        })
        .await
        .map_err(|e| format!("the integrity check failed: {e}"))?
        .map_err(|e| format!("cannot read {}: {e}", args.data_dir.display()))?
    };
    let target_config = postgres_target(&args.database_url, args.database_ca.clone(), args.concurrency);
    let target = target_config
        .open()
        .await
        .map_err(|e| format!("cannot open the target {}: {e}", redacted(&args.database_url)))?;
    println!(
        "copying sled in {} ({} parents, {} statuses) into {}",
        args.data_dir.display(),
        integrity.parents,
        integrity.statuses - integrity.orphans,
        target_config.describe()
    );
    let progress = Progress::new("copy", Some(integrity.parents + integrity.statuses - integrity.orphans));
    if integrity.orphans > 0 {
        progress.warn(&format!(
            "warning: the source holds {} statuses without a parent; they are not copied",
            integrity.orphans
        ));
    }

    let mut copy = Copier {
        source: source.clone(),
        target: target.clone(),
        concurrency: args.concurrency,
        progress,
        ledger: Ledger::default(),
    };
    let copied = copy.all().await;
    copy.progress.finish();
    copied?;

    copy.ledger.verify(&*target, args.concurrency, started).await
}

/// A PostgreSQL store that a command writes into, with `concurrency`
/// connections.
pub(super) fn postgres_target(url: &str, ca: Option<PathBuf>, concurrency: usize) -> BackendConfig {
    BackendConfig::Postgres(PostgresConfig {
        url: url.to_owned(),
        ca,
        pool_size: concurrency,
        connect_timeout: Duration::from_secs(10),
        watch_history: 1_000_000,
    })
}

/// A sled store a command opens offline (the server's defaults, durable).
pub(super) fn sled_offline(dir: &std::path::Path) -> SledConfig {
    SledConfig {
        path: dir.to_owned(),
        cache_capacity: 256 << 20,
        durability: Durability::Durable,
        min_free_bytes: 0,
        watch_history: 1_000_000,
        faults: FaultInjection::default(),
    }
}

/// Opens the sled store offline, or says why not.
async fn open_source(dir: &std::path::Path) -> Result<Arc<SledStore>, String> {
    // sled would create an empty store in a missing directory: copying that
    // would succeed at copying nothing.
    if !dir.join("db").is_file() {
        return Err(format!(
            "{} is not a statusd data directory (no sled database in it); check --data-dir",
            dir.display()
        ));
    }
    let config = sled_offline(dir);
    let dir_ = dir.to_owned();
    tokio::task::spawn_blocking(move || SledStore::open(&config))
        .await
        .map_err(|e| format!("opening {} failed: {e}", dir_.display()))?
        .map(Arc::new)
        .map_err(|e| {
            let text = e.to_string();
            if text.contains("could not acquire lock") {
                format!(
                    "cannot open {}: another process holds its lock (is a statusd server running on it?). \
                     Stop the server first, then run the copy again",
                    dir.display()
                )
            } else {
                format!("cannot open {}: {text}", dir.display())
            }
        })
}

/// One copy in progress.
struct Copier {
    source: Arc<SledStore>,
    target: Arc<dyn Store>,
    concurrency: usize,
    progress: Progress,
    ledger: Ledger,
}

impl Copier {
    async fn all(&mut self) -> Result<(), String> {
        for (i, kind) in ParentKind::ALL.into_iter().enumerate() {
            self.progress.start(kind.collection());
            self.parents(kind, i).await?;
            self.progress.println(&self.ledger.parents[i].line(kind.collection()));
        }
        self.references().await?;
        for kind in ParentKind::ALL {
            for sk in kind.status_kinds() {
                let name = status_collection(sk);
                self.progress.start(&name);
                self.statuses(sk).await?;
                self.progress.println(&self.ledger.statuses[sk.index()].line(&name));
            }
        }
        Ok(())
    }

    /// Copies the parents of `kind`, without their certificate references.
    async fn parents(&mut self, kind: ParentKind, i: usize) -> Result<(), String> {
        let read_error = |e: Error| format!("cannot read the {}: {e}", kind.collection());
        let mut pages = ParentPages::new(kind);
        while let Some(page) = pages.next(&*self.source).await.map_err(read_error)? {
            self.ledger.parents[i].source += page.len() as u64;
            let target = &self.target;
            let mut writes = stream::iter(page)
                .map(|p| async move { copy_parent(&**target, kind, &p).await })
                .buffer_unordered(self.concurrency);
            while let Some(outcome) = writes.next().await {
                record(&mut self.ledger.parents[i], &mut self.progress, outcome?);
            }
        }
        Ok(())
    }

    /// Sets the certificate references of the device configurations, every
    /// parent now being in the target.
    async fn references(&mut self) -> Result<(), String> {
        let kind = ParentKind::DeviceConfiguration;
        let read_error = |e: Error| format!("cannot read the {}: {e}", kind.collection());
        let mut pages = ParentPages::new(kind);
        while let Some(page) = pages.next(&*self.source).await.map_err(read_error)? {
            let mut todo = Vec::new();
            for mut p in page {
                if p.root_certificate_id.is_none() && p.identity_certificate_id.is_none() {
                    continue;
                }
                self.drop_dangling(&mut p).await?;
                if p.root_certificate_id.is_some() || p.identity_certificate_id.is_some() {
                    todo.push(p);
                }
            }
            let target = &self.target;
            let mut writes = stream::iter(todo)
                .map(|p| async move { set_references(&**target, kind, &p).await })
                .buffer_unordered(self.concurrency);
            while let Some(outcome) = writes.next().await {
                match outcome? {
                    Outcome::Copied => self.ledger.references.set += 1,
                    Outcome::AlreadyThere => self.ledger.references.already += 1,
                    Outcome::Conflict(m) => {
                        self.ledger.references.conflicts += 1;
                        self.progress.warn(&m);
                    }
                }
            }
        }
        Ok(())
    }

    /// Removes from `p` the references to configurations the source does not
    /// hold, with a warning for each.
    async fn drop_dangling(&mut self, p: &mut Parent) -> Result<(), String> {
        let id = p.id.clone();
        for (field, reference) in [
            ("rootCertificate", &mut p.root_certificate_id),
            ("identityCertificate", &mut p.identity_certificate_id),
        ] {
            let Some(target) = reference.as_deref() else { continue };
            if target == id {
                continue;
            }
            let exists = self
                .source
                .get_parent(ParentKind::DeviceConfiguration, target)
                .await
                .map_err(|e| format!("cannot read deviceConfiguration '{target}': {e}"))?
                .is_some();
            if !exists {
                self.progress.warn(&format!(
                    "warning: deviceConfiguration '{id}': {field} references deviceConfiguration '{target}', \
                     which does not exist; the reference is dropped"
                ));
                self.ledger.references.dangling += 1;
                *reference = None;
            }
        }
        Ok(())
    }

    /// Copies the statuses of collection `sk`, parent by parent, writing
    /// batches of about a page across parents.
    async fn statuses(&mut self, sk: StatusKind) -> Result<(), String> {
        let read_error = |e: Error| format!("cannot read the {}: {e}", status_collection(sk));
        let mut batch: Vec<(String, Status)> = Vec::new();
        let mut pages = ParentPages::new(sk.parent);
        while let Some(parents) = pages.next(&*self.source).await.map_err(read_error)? {
            for p in &parents {
                let mut after: Option<String> = None;
                loop {
                    let page = self
                        .source
                        .list_statuses(sk, &p.id, after.as_deref(), PAGE)
                        .await
                        .map_err(read_error)?;
                    let n = page.len();
                    after = page.last().map(|s| s.id.clone());
                    self.ledger.statuses[sk.index()].source += n as u64;
                    batch.extend(page.into_iter().map(|s| (p.id.clone(), s)));
                    if batch.len() >= PAGE {
                        self.write_statuses(sk, std::mem::take(&mut batch)).await?;
                    }
                    if n < PAGE {
                        break;
                    }
                }
            }
        }
        self.write_statuses(sk, batch).await
    }

    async fn write_statuses(&mut self, sk: StatusKind, batch: Vec<(String, Status)>) -> Result<(), String> {
        let target = &self.target;
        let tally = &mut self.ledger.statuses[sk.index()];
        let mut writes = stream::iter(batch)
            .map(|(parent_id, s)| async move { copy_status(&**target, sk, &parent_id, &s).await })
            .buffer_unordered(self.concurrency);
        while let Some(outcome) = writes.next().await {
            record(tally, &mut self.progress, outcome?);
        }
        Ok(())
    }
}

impl Ledger {
    /// Reads the target back, as a client would, compares its counts with
    /// the source's, and prints the summary; the error says what differs.
    pub async fn verify(&mut self, target: &dyn Store, concurrency: usize, started: Instant) -> Result<(), String> {
        for (i, kind) in ParentKind::ALL.into_iter().enumerate() {
            let (parents, statuses) = count(target, kind, concurrency)
                .await
                .map_err(|e| format!("cannot count the {} in the target: {e}", kind.collection()))?;
            self.parents[i].target = parents;
            for (sk, n) in kind.status_kinds().into_iter().zip(statuses) {
                self.statuses[sk.index()].target = n;
            }
        }
        println!("{}", self.summary());
        let r = &self.references;
        println!(
            "certificate references: {} set, {} already there, {} conflicts, {} dangling dropped",
            r.set, r.already, r.conflicts, r.dangling
        );
        let differ: Vec<String> = self
            .rows()
            .into_iter()
            .filter(|(_, t)| t.source != t.target)
            .map(|(name, t)| format!("{name} (source {}, target {})", t.source, t.target))
            .collect();
        let conflicts: u64 = self.rows().iter().map(|(_, t)| t.conflicts).sum::<u64>() + r.conflicts;
        let seconds = started.elapsed().as_secs_f64();
        match (differ.is_empty(), conflicts) {
            (true, 0) => {
                println!("verified: the target holds as many records as the source in every collection ({seconds:.1}s)");
                Ok(())
            }
            (true, n) => Err(format!(
                "{n} records exist in the target with other content and were left as they are (see the conflict lines above)"
            )),
            (false, n) => Err(format!(
                "verification failed: the target's counts differ from the source's in {}{}",
                differ.join(", "),
                if n > 0 { format!("; and {n} conflicts") } else { String::new() }
            )),
        }
    }

    /// The collections in display order, with their counts.
    fn rows(&self) -> Vec<(String, Tally)> {
        let mut rows = Vec::new();
        for (i, kind) in ParentKind::ALL.into_iter().enumerate() {
            rows.push((kind.collection().to_owned(), self.parents[i].clone()));
            for sk in kind.status_kinds() {
                rows.push((status_collection(sk), self.statuses[sk.index()].clone()));
            }
        }
        rows
    }

    /// The summary table.
    fn summary(&self) -> String {
        let rows = self.rows();
        let width = rows.iter().map(|(n, _)| n.len()).max().unwrap_or(10);
        let mut out = format!(
            "{:<width$}  {:>9}  {:>9}  {:>9}  {:>13}  {:>9}\n",
            "collection", "source", "target", "copied", "already there", "conflicts"
        );
        let mut total = Tally::default();
        for (name, t) in &rows {
            out += &format!(
                "{name:<width$}  {:>9}  {:>9}  {:>9}  {:>13}  {:>9}\n",
                t.source, t.target, t.copied, t.already, t.conflicts
            );
            total.source += t.source;
            total.target += t.target;
            total.copied += t.copied;
            total.already += t.already;
            total.conflicts += t.conflicts;
        }
        out += &format!(
            "{:<width$}  {:>9}  {:>9}  {:>9}  {:>13}  {:>9}",
            "total", total.source, total.target, total.copied, total.already, total.conflicts
        );
        out
    }
}

pub(super) fn record(tally: &mut Tally, progress: &mut Progress, outcome: Outcome) {
    match outcome {
        Outcome::Copied => tally.copied += 1,
        Outcome::AlreadyThere => tally.already += 1,
        Outcome::Conflict(m) => {
            tally.conflicts += 1;
            progress.warn(&m);
        }
    }
    progress.inc(1);
}

/// `p` without its certificate references.
fn stripped(p: &Parent) -> Parent {
    Parent {
        root_certificate_id: None,
        identity_certificate_id: None,
        ..p.clone()
    }
}

/// Runs `write`, retrying while the target answers UNAVAILABLE (a write
/// whose acknowledgement was lost then answers ALREADY_EXISTS, which the
/// callers compare).
async fn retrying<T, F, Fut>(mut write: F) -> Result<T, Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Error>>,
{
    let mut attempt = 1;
    loop {
        match write().await {
            Err(Error::Unavailable(_)) if attempt < ATTEMPTS => {
                tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// Creates `p` (without references) in the target.
pub(super) async fn copy_parent(target: &dyn Store, kind: ParentKind, p: &Parent) -> Result<Outcome, String> {
    let bare = stripped(p);
    match retrying(|| target.create_parent(kind, &bare)).await {
        Ok(()) => Ok(Outcome::Copied),
        Err(Error::AlreadyExists(_)) => {
            let there = retrying(|| target.get_parent(kind, &p.id))
                .await
                .map_err(|e| format!("cannot read {kind} '{}' from the target: {e}", p.id))?;
            // A re-run may find it with its references set already (all or
            // only those that were not dangling).
            let same = there.as_ref().is_some_and(|t| {
                stripped(t) == bare
                    && [
                        (&t.root_certificate_id, &p.root_certificate_id),
                        (&t.identity_certificate_id, &p.identity_certificate_id),
                    ]
                    .iter()
                    .all(|(t, s)| t.is_none() || t == s)
            });
            Ok(if same {
                Outcome::AlreadyThere
            } else {
                Outcome::Conflict(format!(
                    "conflict: {kind} '{}' exists in the target with other content; left as it is",
                    p.id
                ))
            })
        }
        Err(e) => Err(format!("cannot copy {kind} '{}': {e}", p.id)),
    }
}

/// Sets the references of `p` (its dangling ones already dropped) on the
/// stripped copy in the target.
pub(super) async fn set_references(target: &dyn Store, kind: ParentKind, p: &Parent) -> Result<Outcome, String> {
    let bare = stripped(p);
    let swapped = retrying(|| target.replace_parent(kind, &bare, p))
        .await
        .map_err(|e| format!("cannot set the certificate references of {kind} '{}': {e}", p.id))?;
    if swapped {
        return Ok(Outcome::Copied);
    }
    let there = retrying(|| target.get_parent(kind, &p.id))
        .await
        .map_err(|e| format!("cannot read {kind} '{}' from the target: {e}", p.id))?;
    Ok(if there.as_ref() == Some(p) {
        Outcome::AlreadyThere
    } else {
        Outcome::Conflict(format!(
            "conflict: the certificate references of {kind} '{}' cannot be set: the target holds another \
             record; left as it is",
            p.id
        ))
    })
}

pub(super) async fn copy_status(
    target: &dyn Store,
    sk: StatusKind,
    parent_id: &str,
    s: &Status,
) -> Result<Outcome, String> {
    let what = || format!("{sk} '{}' of {} '{parent_id}'", s.id, sk.parent);
    match retrying(|| target.create_status(sk, parent_id, s)).await {
        Ok(()) => Ok(Outcome::Copied),
        Err(Error::AlreadyExists(_)) => {
            let there = retrying(|| target.get_status(sk, parent_id, &s.id))
                .await
                .map_err(|e| format!("cannot read {} from the target: {e}", what()))?;
            Ok(if there.as_ref() == Some(s) {
                Outcome::AlreadyThere
            } else {
                Outcome::Conflict(format!(
                    "conflict: {} exists in the target with other content; left as it is",
                    what()
                ))
            })
        }
        Err(e) => Err(format!("cannot copy {}: {e}", what())),
    }
}

/// The parents of `kind` in `store` and the statuses of its two collections,
/// paging through the store.
async fn count(store: &dyn Store, kind: ParentKind, concurrency: usize) -> Result<(u64, [u64; 2]), Error> {
    let mut parents = 0;
    let mut statuses = [0u64; 2];
    let mut pages = ParentPages::new(kind);
    while let Some(page) = pages.next(store).await? {
        parents += page.len() as u64;
        let mut counts = stream::iter(&page)
            .map(|p| async move {
                let mut n = [0u64; 2];
                for (i, sk) in kind.status_kinds().into_iter().enumerate() {
                    let mut after: Option<String> = None;
                    loop {
                        let page = store.list_statuses(sk, &p.id, after.as_deref(), PAGE).await?;
                        n[i] += page.len() as u64;
                        if page.len() < PAGE {
                            break;
                        }
                        after = page.last().map(|s| s.id.clone());
                    }
                }
                Ok::<_, Error>(n)
            })
            .buffer_unordered(concurrency);
        while let Some(n) = counts.next().await {
            let n = n?;
            statuses[0] += n[0];
            statuses[1] += n[1];
        }
    }
    Ok((parents, statuses))
}
