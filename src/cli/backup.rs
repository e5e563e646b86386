//! `statusd backup --server URL --out FILE`: a consistent backup of a
//! running server (`GET /admin/backup`, see [`crate::backup`]), written to
//! `FILE.partial`, checked line by line and against its closing line, made
//! durable, and only then renamed to `FILE`: a backup that did not finish,
//! or does not check out, never takes the name of a good one.

use super::api::{Api, ApiArgs};
use super::progress::Progress;
use crate::backup::{collections, Reader};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// `statusd backup` flags.
#[derive(Debug, clap::Args)]
pub struct BackupArgs {
    #[command(flatten)]
    pub api: ApiArgs,
    /// The file to write (replaced only once the new backup is complete
    /// and checked).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// Read at most this many records a second (default: as fast as the
    /// server can), leaving more of its cores to the writers meanwhile.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_rate: Option<u64>,
}

/// Runs the backup; the error is the message to print.
pub async fn run(args: &BackupArgs) -> Result<(), String> {
    let started = Instant::now();
    let api = Api::new(&args.api)?;
    let partial = partial_path(&args.out);
    let result = download(&api, &partial, args.max_rate).await;
    let checked = result.and_then(|(sha256, bytes)| check(&partial).map(|summary| (summary, sha256, bytes)));
    let (summary, sha256, bytes) = match checked {
        Ok(v) => v,
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            return Err(e);
        }
    };
    std::fs::rename(&partial, &args.out).map_err(|e| {
        let _ = std::fs::remove_file(&partial);
        format!("cannot rename {} to {}: {e}", partial.display(), args.out.display())
    })?;
    sync_parent(&args.out)?;
    let (header, counts) = summary;
    for (name, n) in collections().iter().zip(counts.counts) {
        println!("{name:<40} {n:>10}");
    }
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "backup of revision {} ({} records, {:.1} MB) written to {} in {seconds:.1}s, checked",
        header.revision,
        counts.records(),
        bytes as f64 / 1e6,
        args.out.display(),
    );
    // The same line as `sha256sum FILE`.
    println!("{sha256}  {}", args.out.display());
    Ok(())
}

/// `FILE.partial`, beside `FILE`.
fn partial_path(out: &Path) -> PathBuf {
    let mut name = out.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".partial");
    out.with_file_name(name)
}

/// Streams the backup into `path`, fsyncs it; returns the file's SHA-256
/// and size.
async fn download(api: &Api, path: &Path, max_rate: Option<u64>) -> Result<(String, u64), String> {
    let mut url = format!("{}{}", api.base, crate::rest::BACKUP_PATH);
    if let Some(rate) = max_rate {
        url += &format!("?maxRecordsPerSecond={rate}");
    }
    let mut resp = api.get_streamed(&url).await?;
    let file = std::fs::File::create(path).map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
    let mut hash = Sha256::new();
    let mut bytes = 0u64;
    let mut progress: Option<Progress> = None;
    let mut first_line = Vec::new();
    // Lines received, and records shown: every line but the header and
    // the last one received (which may be the closing line).
    let (mut lines, mut shown) = (0u64, 0u64);
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| format!("the backup stream broke after {bytes} bytes: {e}; nothing was kept"))?
    {
        out.write_all(&chunk)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        hash.update(&chunk);
        bytes += chunk.len() as u64;
        lines += chunk.iter().filter(|&&b| b == b'\n').count() as u64;
        if progress.is_none() {
            // The header is the first line: it says how many records to expect.
            first_line.extend_from_slice(&chunk);
            if let Some(end) = first_line.iter().position(|&b| b == b'\n') {
                let total = Reader::open(&first_line[..=end])
                    .ok()
                    .map(|(_, header)| header.expected_records);
                let mut p = Progress::new("backup", total);
                p.start(&url);
                progress = Some(p);
                first_line = Vec::new();
            }
        }
        if let Some(p) = progress.as_mut() {
            let records = lines.saturating_sub(2);
            p.inc(records - shown);
            shown = records;
        }
    }
    if let Some(p) = &progress {
        p.finish();
    }
    let file = out
        .into_inner()
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    file.sync_all()
        .map_err(|e| format!("cannot fsync {}: {e}", path.display()))?;
    let sha256 = hash.finalize().iter().map(|b| format!("{b:02x}")).collect();
    Ok((sha256, bytes))
}

/// Reads the downloaded file through the checking reader.
fn check(path: &Path) -> Result<(crate::backup::Header, crate::backup::Summary), String> {
    let file = std::fs::File::open(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let (mut reader, header) = Reader::open(std::io::BufReader::with_capacity(1 << 20, file))
        .map_err(|e| format!("the server sent a broken backup: {e}; nothing was kept"))?;
    while reader
        .next_item()
        .map_err(|e| format!("the server sent a broken backup: {e}; nothing was kept"))?
        .is_some()
    {}
    let summary = reader
        .summary()
        .cloned()
        .ok_or_else(|| "the backup ended without its summary".to_owned())?;
    Ok((header, summary))
}

/// Makes a rename into `path`'s directory durable.
pub(super) fn sync_parent(path: &Path) -> Result<(), String> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| format!("cannot fsync {}: {e}", dir.display()))
}
