//! The backup file: what `GET /admin/backup` streams, `statusd backup`
//! saves and `statusd restore` reads.
//!
//! Lines of JSON, each followed by a tab and the CRC-32 of the JSON text
//! (8 hex digits), so a damaged line is found and named, not just "somewhere
//! in the file"; `cut -f1 FILE | jq` reads it. In order:
//! 1. the header: `{"statusdBackup":1,"revision":…,"takenAt":…,"expectedRecords":…}`;
//! 2. one line per record, in [`crate::store::snapshot`]'s order:
//!    `{"parent":"deviceConfigurations","record":{…}}` and
//!    `{"status":"deviceConfigurations/userStatuses","parentId":"…","record":{…}}`,
//!    the record being statusd's own model (every property, lossless);
//! 3. the trailer: `{"end":{"records":N,"counts":{collection: n, …},"sha256":"…"}}`,
//!    the SHA-256 of every byte before the trailer line.
//!
//! A file without its trailer is truncated; a file whose trailer disagrees
//! with what precedes it is corrupt. [`Reader`] checks all of it and says
//! where (line and byte) the file is broken.

use crate::model::{Parent, ParentKind, Status, StatusKind};
use crate::store::snapshot::Item;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use std::io::BufRead;

/// The format's version, in the header.
pub const VERSION: u64 = 1;

/// The longest line a reader accepts: a record is at most
/// [`crate::model::limits::MAX_RECORD_BYTES`] stored, and JSON with escapes
/// is at most a few times that. A longer "line" is damage (a lost newline).
const MAX_LINE: usize = 1 << 20;

/// The collection name a status collection has in the file.
pub fn status_collection(kind: StatusKind) -> String {
    format!("{}/{}", kind.parent.collection(), kind.segment())
}

/// Every collection's name in the file, with its place in a counts array
/// (parents by [`ParentKind::ALL`], then statuses by [`StatusKind::ALL`]).
pub fn collections() -> Vec<String> {
    ParentKind::ALL
        .iter()
        .map(|k| k.collection().to_owned())
        .chain(StatusKind::ALL.iter().map(|&k| status_collection(k)))
        .collect()
}

fn slot(item: &Item) -> usize {
    match item {
        Item::Parent(kind, _) => kind.index(),
        Item::Status(kind, _, _) => ParentKind::ALL.len() + kind.index(),
    }
}

fn frame(value: &Value, out: &mut Vec<u8>) {
    let text = value.to_string();
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(format!("\t{:08x}\n", crc32fast::hash(text.as_bytes())).as_bytes());
}

/// Writes a backup, line by line.
pub struct Writer {
    hash: Sha256,
    counts: [u64; 9],
}

/// The header's facts.
#[derive(Debug, Clone, PartialEq)]
pub struct Header {
    /// The store revision the snapshot reflects (0: unknown).
    pub revision: u64,
    /// When it was taken (RFC 3339).
    pub taken_at: String,
    /// How many records the store held by its tallies when the backup began
    /// (for progress; the trailer has the exact count).
    pub expected_records: u64,
}

impl Writer {
    /// A writer and the header line.
    pub fn start(header: &Header) -> (Writer, Vec<u8>) {
        let mut w = Writer {
            hash: Sha256::new(),
            counts: [0; 9],
        };
        let mut out = Vec::new();
        frame(
            &json!({
                "statusdBackup": VERSION,
                "revision": header.revision,
                "takenAt": header.taken_at,
                "expectedRecords": header.expected_records,
            }),
            &mut out,
        );
        w.hash.update(&out);
        (w, out)
    }

    /// The lines of some records, appended to `out`.
    pub fn items(&mut self, items: &[Item], out: &mut Vec<u8>) -> Result<(), String> {
        let start = out.len();
        for item in items {
            let value = match item {
                Item::Parent(kind, p) => json!({
                    "parent": kind.collection(),
                    "record": serde_json::to_value(p).map_err(|e| format!("cannot encode a parent: {e}"))?,
                }),
                Item::Status(kind, parent_id, s) => json!({
                    "status": status_collection(*kind),
                    "parentId": parent_id,
                    "record": serde_json::to_value(s).map_err(|e| format!("cannot encode a status: {e}"))?,
                }),
            };
            frame(&value, out);
            self.counts[slot(item)] += 1;
        }
        self.hash.update(&out[start..]);
        Ok(())
    }

    /// The trailer line.
    pub fn finish(self) -> Vec<u8> {
        let counts: Map<String, Value> = collections()
            .into_iter()
            .zip(self.counts)
            .map(|(name, n)| (name, Value::from(n)))
            .collect();
        let mut out = Vec::new();
        frame(
            &json!({"end": {
                "records": self.counts.iter().sum::<u64>(),
                "counts": counts,
                "sha256": hex(&self.hash.finalize()),
            }}),
            &mut out,
        );
        out
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What [`Reader`] found at the end.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// Records per collection, in [`collections`] order.
    pub counts: [u64; 9],
    /// The SHA-256 the trailer names (and the records matched).
    pub sha256: String,
    /// The SHA-256 of the whole file, closing line included (what
    /// `statusd backup` and `sha256sum` print).
    pub file_sha256: String,
}

impl Summary {
    /// Every record.
    pub fn records(&self) -> u64 {
        self.counts.iter().sum()
    }
}

/// Reads and checks a backup, record by record.
pub struct Reader<R> {
    input: R,
    hash: Sha256,
    file_hash: Sha256,
    counts: [u64; 9],
    line: u64,
    /// Where the current line starts, and its length.
    offset: u64,
    line_len: u64,
    buf: Vec<u8>,
    done: Option<Summary>,
}

impl<R: BufRead> Reader<R> {
    /// Reads the header.
    pub fn open(input: R) -> Result<(Reader<R>, Header), String> {
        let mut r = Reader {
            input,
            hash: Sha256::new(),
            file_hash: Sha256::new(),
            counts: [0; 9],
            line: 0,
            offset: 0,
            line_len: 0,
            buf: Vec::new(),
            done: None,
        };
        let Some(value) = r.next_line()? else {
            return Err("the file is empty: it is not a statusd backup".into());
        };
        if value.get("statusdBackup").and_then(Value::as_u64) != Some(VERSION) {
            return Err(match value.get("statusdBackup") {
                Some(v) => format!("backup format version {v} is unknown to this build (it reads {VERSION})"),
                None => "line 1 is not a statusd backup header".into(),
            });
        }
        let header = Header {
            revision: value["revision"].as_u64().unwrap_or(0),
            taken_at: value["takenAt"].as_str().unwrap_or("").to_owned(),
            expected_records: value["expectedRecords"].as_u64().unwrap_or(0),
        };
        Ok((r, header))
    }

    /// Where the reader is: `line N (byte B)`, for messages.
    fn at(&self) -> String {
        format!("line {} (byte {})", self.line, self.offset)
    }

    /// The next line's JSON, its checksum verified; `None` at the end of the
    /// input. Hashes the line.
    fn next_line(&mut self) -> Result<Option<Value>, String> {
        self.buf.clear();
        self.offset += self.line_len;
        let n = <&mut R as std::io::Read>::take(&mut self.input, MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut self.buf)
            .map_err(|e| format!("cannot read the backup after byte {}: {e}", self.offset))?;
        if n == 0 {
            return Ok(None);
        }
        self.line += 1;
        self.line_len = n as u64;
        if self.buf.last() != Some(&b'\n') {
            return Err(if n > MAX_LINE {
                format!(
                    "{}: longer than {MAX_LINE} bytes without a line end: the file is damaged",
                    self.at()
                )
            } else {
                format!(
                    "truncated: {} stops after {n} bytes, in the middle of a line",
                    self.at()
                )
            });
        }
        let line = &self.buf[..n - 1];
        let (text, crc) = match line.iter().rposition(|&b| b == b'\t') {
            Some(tab) => (&line[..tab], &line[tab + 1..]),
            None => {
                return Err(format!(
                    "{}: no checksum at the end of the line: the file is damaged",
                    self.at()
                ))
            }
        };
        let crc = std::str::from_utf8(crc)
            .ok()
            .filter(|c| c.len() == 8)
            .and_then(|c| u32::from_str_radix(c, 16).ok())
            .ok_or_else(|| format!("{}: the line's checksum is unreadable: the file is damaged", self.at()))?;
        if crc32fast::hash(text) != crc {
            return Err(format!(
                "{}: the line fails its checksum (CRC-32 {:08x}, recorded {crc:08x}): the file is damaged there",
                self.at(),
                crc32fast::hash(text)
            ));
        }
        let value: Value = serde_json::from_slice(text)
            .map_err(|e| format!("{}: the line passes its checksum but is not JSON ({e})", self.at()))?;
        if value.get("end").is_none() {
            self.hash.update(&self.buf);
        }
        self.file_hash.update(&self.buf);
        Ok(Some(value))
    }

    /// The next record; `Ok(None)` after the trailer, once everything checked
    /// out ([`Reader::summary`] then holds the counts).
    pub fn next_item(&mut self) -> Result<Option<Item>, String> {
        if self.done.is_some() {
            return Ok(None);
        }
        let Some(value) = self.next_line()? else {
            return Err(format!(
                "truncated: the file ends after line {} (byte {}) without its closing line; \
                 the backup did not finish or the file was cut",
                self.line,
                self.offset + self.line_len
            ));
        };
        if let Some(end) = value.get("end") {
            self.check_end(end)?;
            return Ok(None);
        }
        let item = self.item(&value)?;
        self.counts[slot(&item)] += 1;
        Ok(Some(item))
    }

    fn item(&self, value: &Value) -> Result<Item, String> {
        let bad = |what: &str| format!("{}: {what}", self.at());
        let record = value
            .get("record")
            .cloned()
            .ok_or_else(|| bad("a record line without \"record\""))?;
        if let Some(name) = value.get("parent").and_then(Value::as_str) {
            let kind = ParentKind::ALL
                .into_iter()
                .find(|k| k.collection() == name)
                .ok_or_else(|| bad(&format!("unknown parent collection '{name}'")))?;
            let p: Parent =
                serde_json::from_value(record).map_err(|e| bad(&format!("the parent record is not valid: {e}")))?;
            return Ok(Item::Parent(kind, p));
        }
        if let Some(name) = value.get("status").and_then(Value::as_str) {
            let kind = StatusKind::ALL
                .into_iter()
                .find(|&k| status_collection(k) == name)
                .ok_or_else(|| bad(&format!("unknown status collection '{name}'")))?;
            let parent_id = value
                .get("parentId")
                .and_then(Value::as_str)
                .ok_or_else(|| bad("a status line without \"parentId\""))?;
            let s: Status =
                serde_json::from_value(record).map_err(|e| bad(&format!("the status record is not valid: {e}")))?;
            if s.body.shape() != kind.shape {
                return Err(bad(&format!("a status of the wrong shape for {name}")));
            }
            return Ok(Item::Status(kind, parent_id.to_owned(), s));
        }
        Err(bad("neither a parent nor a status line"))
    }

    fn check_end(&mut self, end: &Value) -> Result<(), String> {
        let at = self.at();
        let sha256 = hex(&std::mem::take(&mut self.hash).finalize());
        if end["sha256"].as_str() != Some(sha256.as_str()) {
            return Err(format!(
                "{at}: the file's SHA-256 is {sha256}, its closing line records {}: the file is corrupt",
                end["sha256"]
            ));
        }
        for (i, name) in collections().iter().enumerate() {
            let recorded = end["counts"][name].as_u64();
            if recorded != Some(self.counts[i]) {
                return Err(format!(
                    "{at}: the file holds {} records of {name}, its closing line records {}: the file is corrupt",
                    self.counts[i],
                    recorded.map_or_else(|| "none".to_owned(), |n| n.to_string())
                ));
            }
        }
        // Nothing may follow the closing line.
        let mut rest = [0u8; 1];
        let more = std::io::Read::read(&mut self.input, &mut rest)
            .map_err(|e| format!("cannot read the backup after its closing line: {e}"))?;
        if more > 0 {
            return Err(format!("{at}: data follows the closing line: the file is damaged"));
        }
        self.done = Some(Summary {
            counts: self.counts,
            sha256,
            file_sha256: hex(&std::mem::take(&mut self.file_hash).finalize()),
        });
        Ok(())
    }

    /// The checked counts, once [`Reader::next_item`] has returned `None`.
    pub fn summary(&self) -> Option<&Summary> {
        self.done.as_ref()
    }
}
