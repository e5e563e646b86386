//! `statusd restore --in FILE --data-dir DIR | --database-url URL`: fills an
//! empty store from a backup ([`crate::backup`]).
//!
//! The whole file is checked first (every line's checksum, every record,
//! the counts and SHA-256 of its closing line): a corrupt or truncated file
//! is refused, saying where it is broken, before anything is written. The
//! records then go in through the [`Store`] trait (as `statusd copy` writes
//! them: parents without their certificate references, the references once
//! every parent is in, then the statuses), and the store is read back and
//! counted against the file. A sled restore is built in `DIR.restoring` and
//! renamed to `DIR` only once it checks out, so a failed restore leaves no
//! half-filled data directory; a PostgreSQL restore must start from an empty
//! database, and one that fails part-way says so.

use super::copy::{self, Ledger, Outcome};
use super::progress::Progress;
use crate::backup::Reader;
use crate::model::{Parent, ParentKind, Status, StatusKind};
use crate::store::postgres::redacted;
use crate::store::snapshot::Item;
use crate::store::{SledStore, Store};
use futures::stream::{self, StreamExt};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// `statusd restore` flags.
#[derive(Debug, clap::Args)]
pub struct RestoreArgs {
    /// The backup file (`statusd backup --out`).
    #[arg(long = "in", value_name = "FILE")]
    pub input: PathBuf,
    /// Restore into a new sled data directory (missing or empty).
    #[arg(long, value_name = "DIR", required_unless_present = "database_url")]
    pub data_dir: Option<PathBuf>,
    /// Restore into an empty PostgreSQL database (the schema is created).
    #[arg(long, value_name = "URL", conflicts_with = "data_dir")]
    pub database_url: Option<String>,
    /// PEM CA certificate(s) for a database reached with `sslmode=require`.
    #[arg(long, value_name = "PATH")]
    pub database_ca: Option<PathBuf>,
    /// Most writes in flight at once.
    #[arg(long, default_value_t = 32, value_parser = copy::concurrency)]
    pub concurrency: usize,
}

/// Records written per round.
const PAGE: usize = 500;

/// Runs the restore; the error is the message to print.
pub async fn run(args: &RestoreArgs) -> Result<(), String> {
    let started = Instant::now();
    let file = args.input.display().to_string();
    // 1. The whole file checks out, or nothing is written.
    let (header, summary) = {
        let mut progress = Progress::new("restore", None);
        progress.start(&format!("checking {file}"));
        let (mut reader, header) = open(&args.input)?;
        while reader
            .next_item()
            .map_err(|e| format!("{file}: {e}. Nothing was restored"))?
            .is_some()
        {
            progress.inc(1);
        }
        progress.finish();
        let summary = reader.summary().cloned().ok_or("the backup has no summary")?;
        (header, summary)
    };
    println!(
        "{file}: backup of revision {} taken {}, {} records, SHA-256 {} — checked",
        header.revision,
        header.taken_at,
        summary.records(),
        summary.file_sha256
    );
    // 2. The target, empty.
    let target = Target::open(args).await?;
    // 3. The records; 4. read back and counted.
    let mut progress = Progress::new("restore", Some(summary.records()));
    let written = write_all(&args.input, &*target.store, args.concurrency, &mut progress).await;
    progress.finish();
    let verified = match written {
        Ok(mut ledger) => ledger.verify(&*target.store, args.concurrency, started).await,
        Err(e) => Err(e),
    };
    // 5. In place, or nothing.
    target.finish(verified)
}

fn open(path: &Path) -> Result<(Reader<std::io::BufReader<std::fs::File>>, crate::backup::Header), String> {
    let f = std::fs::File::open(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    Reader::open(std::io::BufReader::with_capacity(1 << 20, f))
        .map_err(|e| format!("{}: {e}. Nothing was restored", path.display()))
}

/// Where the records go.
struct Target {
    store: Arc<dyn Store>,
    /// sled: (the staging directory, the final one).
    sled: Option<(PathBuf, PathBuf)>,
    described: String,
}

impl Target {
    async fn open(args: &RestoreArgs) -> Result<Target, String> {
        if let Some(dir) = &args.data_dir {
            if dir.exists() {
                let mut entries = std::fs::read_dir(dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
                if entries.next().is_some() {
                    return Err(format!(
                        "{} is not empty: restore fills a new data directory (a missing or empty one)",
                        dir.display()
                    ));
                }
            }
            let staging = staging_path(dir);
            if staging.exists() {
                // Left by a restore that was interrupted: ours to remove.
                std::fs::remove_dir_all(&staging)
                    .map_err(|e| format!("cannot remove the leftover {}: {e}", staging.display()))?;
            }
            std::fs::create_dir_all(&staging).map_err(|e| format!("cannot create {}: {e}", staging.display()))?;
            let config = copy::sled_offline(&staging);
            let opened = tokio::task::spawn_blocking(move || SledStore::open(&config))
                .await
                .map_err(|e| format!("opening {} failed: {e}", staging.display()))?;
            let store = opened.map_err(|e| format!("cannot create a store in {}: {e}", staging.display()))?;
            return Ok(Target {
                store: Arc::new(store),
                described: format!("sled in {}", dir.display()),
                sled: Some((staging_path(dir), dir.clone())),
            });
        }
        let url = args.database_url.clone().ok_or("give --data-dir or --database-url")?;
        let config = copy::postgres_target(&url, args.database_ca.clone(), args.concurrency);
        let store = config
            .open()
            .await
            .map_err(|e| format!("cannot open {}: {e}", redacted(&url)))?;
        let held = store
            .count_records()
            .await
            .map_err(|e| format!("cannot count the records of {}: {e}", redacted(&url)))?
            .total();
        if held > 0 {
            return Err(format!(
                "{} already holds {held} records: restore fills an empty database",
                redacted(&url)
            ));
        }
        Ok(Target {
            store,
            described: config.describe(),
            sled: None,
        })
    }

    /// Puts a verified sled restore in place, or removes a failed one.
    fn finish(self, verified: Result<(), String>) -> Result<(), String> {
        let Target { store, sled, described } = self;
        drop(store);
        match (sled, verified) {
            (None, Ok(())) => {
                println!("restored into {described}");
                Ok(())
            }
            (None, Err(e)) => Err(format!(
                "{e}. The database now holds part of the backup: empty it (or use a new database) before \
                 restoring again"
            )),
            (Some((staging, _)), Err(e)) => {
                let _ = std::fs::remove_dir_all(&staging);
                Err(format!("{e}. Nothing was restored"))
            }
            (Some((staging, dir)), Ok(())) => {
                if dir.exists() {
                    // Empty (checked at the start).
                    std::fs::remove_dir(&dir).map_err(|e| format!("cannot replace {}: {e}", dir.display()))?;
                }
                std::fs::rename(&staging, &dir)
                    .map_err(|e| format!("cannot rename {} to {}: {e}", staging.display(), dir.display()))?;
                super::backup::sync_parent(&dir)?;
                println!("restored into {described}");
                Ok(())
            }
        }
    }
}

/// `DIR.restoring`, beside `DIR`.
fn staging_path(dir: &Path) -> PathBuf {
    let mut name = dir.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".restoring");
    dir.with_file_name(name)
}

/// Writes every record of the (checked) file into `store`.
async fn write_all(
    path: &Path,
    store: &dyn Store,
    concurrency: usize,
    progress: &mut Progress,
) -> Result<Ledger, String> {
    let (mut reader, _) = open(path)?;
    let mut ledger = Ledger::default();
    let mut parents: Vec<(ParentKind, Parent)> = Vec::new();
    let mut statuses: Vec<(StatusKind, String, Status)> = Vec::new();
    // Device configurations: every id, and those with references to set.
    let mut configurations: HashSet<String> = HashSet::new();
    let mut references: Vec<Parent> = Vec::new();
    let mut referenced = false;
    loop {
        let item = reader.next_item().map_err(|e| format!("{}: {e}", path.display()))?;
        let ended = item.is_none();
        match item {
            Some(Item::Parent(kind, p)) => {
                if kind == ParentKind::DeviceConfiguration {
                    configurations.insert(p.id.clone());
                    if p.root_certificate_id.is_some() || p.identity_certificate_id.is_some() {
                        references.push(p.clone());
                    }
                }
                parents.push((kind, p));
            }
            Some(Item::Status(kind, parent_id, s)) => statuses.push((kind, parent_id, s)),
            None => {}
        }
        if parents.len() >= PAGE || (ended || !statuses.is_empty()) && !parents.is_empty() {
            write_parents(store, std::mem::take(&mut parents), concurrency, &mut ledger, progress).await?;
        }
        if !referenced && (ended || !statuses.is_empty()) {
            referenced = true;
            let todo = std::mem::take(&mut references);
            set_references(store, todo, &configurations, concurrency, &mut ledger, progress).await?;
        }
        if statuses.len() >= PAGE || ended && !statuses.is_empty() {
            write_statuses(store, std::mem::take(&mut statuses), concurrency, &mut ledger, progress).await?;
        }
        if ended {
            return Ok(ledger);
        }
    }
}

async fn write_parents(
    store: &dyn Store,
    batch: Vec<(ParentKind, Parent)>,
    concurrency: usize,
    ledger: &mut Ledger,
    progress: &mut Progress,
) -> Result<(), String> {
    if let Some((kind, _)) = batch.first() {
        progress.start(kind.collection());
    }
    let mut writes = stream::iter(batch)
        .map(|(kind, p)| async move { (kind, copy::copy_parent(store, kind, &p).await) })
        .buffer_unordered(concurrency);
    while let Some((kind, outcome)) = writes.next().await {
        let tally = &mut ledger.parents[kind.index()];
        tally.source += 1;
        copy::record(tally, progress, outcome?);
    }
    Ok(())
}

async fn set_references(
    store: &dyn Store,
    todo: Vec<Parent>,
    configurations: &HashSet<String>,
    concurrency: usize,
    ledger: &mut Ledger,
    progress: &mut Progress,
) -> Result<(), String> {
    let mut ready = Vec::with_capacity(todo.len());
    for mut p in todo {
        let id = p.id.clone();
        for (field, reference) in [
            ("rootCertificate", &mut p.root_certificate_id),
            ("identityCertificate", &mut p.identity_certificate_id),
        ] {
            if let Some(target) = reference.as_deref() {
                if !configurations.contains(target) {
                    progress.warn(&format!(
                        "warning: deviceConfiguration '{id}': {field} references deviceConfiguration '{target}', \
                         which is not in the backup; the reference is dropped"
                    ));
                    ledger.references.dangling += 1;
                    *reference = None;
                }
            }
        }
        if p.root_certificate_id.is_some() || p.identity_certificate_id.is_some() {
            ready.push(p);
        }
    }
    let kind = ParentKind::DeviceConfiguration;
    progress.start("certificate references");
    let mut writes = stream::iter(ready)
        .map(|p| async move { copy::set_references(store, kind, &p).await })
        .buffer_unordered(concurrency);
    while let Some(outcome) = writes.next().await {
        match outcome? {
            Outcome::Copied => ledger.references.set += 1,
            Outcome::AlreadyThere => ledger.references.already += 1,
            Outcome::Conflict(m) => {
                ledger.references.conflicts += 1;
                progress.warn(&m);
            }
        }
    }
    Ok(())
}

async fn write_statuses(
    store: &dyn Store,
    batch: Vec<(StatusKind, String, Status)>,
    concurrency: usize,
    ledger: &mut Ledger,
    progress: &mut Progress,
) -> Result<(), String> {
    if let Some((kind, _, _)) = batch.first() {
        progress.start(&crate::backup::status_collection(*kind));
    }
    let mut writes = stream::iter(batch)
        .map(|(kind, parent_id, s)| async move { (kind, copy::copy_status(store, kind, &parent_id, &s).await) })
        .buffer_unordered(concurrency);
    while let Some((kind, outcome)) = writes.next().await {
        let tally = &mut ledger.statuses[kind.index()];
        tally.source += 1;
        copy::record(tally, progress, outcome?);
    }
    Ok(())
}
