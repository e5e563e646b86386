//! The write-ahead log's on-disk format: checksummed, length-prefixed frames,
//! each holding one record (a revision and the operations committed with it).
//!
//! ```text
//! frame   := len:u32 crc:u32 payload[len]      crc = CRC-32 (IEEE) of payload
//! payload := revision:u64 count:u32 op{count}
//! op      := tree:u8 action:u8 klen:u32 key[klen] [vlen:u32 value[vlen]]   (value for Put only)
//! ```
//!
//! Integers are little-endian. A header of zeros ends the log (segments are
//! preallocated, so their unwritten tail reads as zeros). A reader stops at
//! the first frame that is cut short, fails its checksum or does not parse:
//! frames are appended in
//! revision order and fsynced as groups, so whatever follows a bad frame was
//! never acknowledged (a torn group write may reach the disk in any page
//! order; none of its frames were answered before the fsync finished).

use std::fmt;

/// Bytes in front of every payload: its length and its checksum.
pub const HEADER: usize = 8;

/// The largest payload a frame may declare. A record holds at most a few
/// operations of at most [`crate::model::limits::MAX_RECORD_BYTES`] each; a
/// larger length can only be corruption, and must not make a reader allocate it.
pub const MAX_PAYLOAD: usize = 4 << 20;

/// What an operation does to its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Sets the key to this value.
    Put(Vec<u8>),
    /// Removes the key.
    Remove,
    /// Removes every key that starts with this key.
    RemovePrefix,
}

impl Action {
    fn tag(&self) -> u8 {
        match self {
            Action::Put(_) => 0,
            Action::Remove => 1,
            Action::RemovePrefix => 2,
        }
    }
}

/// One change to one tree. Every action is idempotent (it states the result,
/// not a difference), so replaying a log over a store that already holds some
/// of it ends in the same state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Op {
    /// Which tree (the store assigns the numbers; they are part of the format).
    pub tree: u8,
    /// The key.
    pub key: Vec<u8>,
    /// The change.
    pub action: Action,
}

/// The operations committed together under one revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The store-wide revision; records are logged in increasing order.
    pub revision: u64,
    /// Applied in order.
    pub ops: Vec<Op>,
}

/// Why reading stopped before the end of the bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stop {
    /// The bytes end inside a frame's header or payload.
    Truncated,
    /// A frame declares a payload larger than [`MAX_PAYLOAD`].
    TooLong(usize),
    /// The payload's checksum does not match.
    Checksum,
    /// The checksum matches but the payload does not parse.
    Malformed(&'static str),
}

impl fmt::Display for Stop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Stop::Truncated => write!(f, "the last frame is cut short"),
            Stop::TooLong(n) => write!(f, "a frame declares {n} bytes, more than any record"),
            Stop::Checksum => write!(f, "a frame's checksum does not match"),
            Stop::Malformed(why) => write!(f, "a frame does not parse: {why}"),
        }
    }
}

/// Appends `record` as one frame to `out`.
pub fn encode(record: &Record, out: &mut Vec<u8>) {
    encode_parts(record.revision, &record.ops, out);
}

/// Appends the record of `revision` and `ops` as one frame to `out`.
pub fn encode_parts(revision: u64, ops: &[Op], out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0; HEADER]);
    out.extend_from_slice(&revision.to_le_bytes());
    out.extend_from_slice(&(ops.len() as u32).to_le_bytes());
    for op in ops {
        out.push(op.tree);
        out.push(op.action.tag());
        out.extend_from_slice(&(op.key.len() as u32).to_le_bytes());
        out.extend_from_slice(&op.key);
        if let Action::Put(value) = &op.action {
            out.extend_from_slice(&(value.len() as u32).to_le_bytes());
            out.extend_from_slice(value);
        }
    }
    let payload = &out[start + HEADER..];
    let len = payload.len() as u32;
    let crc = crc32fast::hash(payload);
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// Reads frames from the front of `bytes`: each record, with the offset just
/// after its frame. Stops at the end of the bytes (`None`) or at the first
/// bad frame (`Some(why)`, at the offset of the last record returned, or 0).
pub struct Reader<'a> {
    bytes: &'a [u8],
    offset: usize,
    stop: Option<Stop>,
}

impl<'a> Reader<'a> {
    /// A reader of `bytes` from offset 0.
    pub fn new(bytes: &'a [u8]) -> Self {
        Reader {
            bytes,
            offset: 0,
            stop: None,
        }
    }

    /// Where the valid frames end (after the last record returned).
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// Why reading stopped early; `None` after a clean end: the end of the
    /// bytes or a zero header (or before the end).
    pub fn stop(&self) -> Option<&Stop> {
        self.stop.as_ref()
    }

    fn frame(&self) -> Result<(Record, usize), Stop> {
        let rest = &self.bytes[self.offset..];
        let header = rest.get(..HEADER).ok_or(Stop::Truncated)?;
        let len = u32::from_le_bytes(header[..4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_le_bytes(header[4..].try_into().expect("4 bytes"));
        if len > MAX_PAYLOAD {
            return Err(Stop::TooLong(len));
        }
        let payload = rest.get(HEADER..HEADER + len).ok_or(Stop::Truncated)?;
        if crc32fast::hash(payload) != crc {
            return Err(Stop::Checksum);
        }
        Ok((parse(payload).map_err(Stop::Malformed)?, HEADER + len))
    }
}

impl Iterator for Reader<'_> {
    type Item = Record;

    fn next(&mut self) -> Option<Record> {
        if self.stop.is_some() || self.offset == self.bytes.len() {
            return None;
        }
        if self.bytes[self.offset..].starts_with(&[0; HEADER]) {
            // The unwritten, preallocated tail of a segment.
            return None;
        }
        match self.frame() {
            Ok((record, len)) => {
                self.offset += len;
                Some(record)
            }
            Err(stop) => {
                self.stop = Some(stop);
                None
            }
        }
    }
}

/// A cursor over a payload whose every read is bounds-checked.
struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], &'static str> {
        if n > self.0.len() {
            return Err("a field runs past the end of the frame");
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, &'static str> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, &'static str> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }

    fn u64(&mut self) -> Result<u64, &'static str> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }

    fn bytes(&mut self) -> Result<Vec<u8>, &'static str> {
        let n = self.u32()? as usize;
        Ok(self.take(n)?.to_vec())
    }
}

fn parse(payload: &[u8]) -> Result<Record, &'static str> {
    let mut c = Cursor(payload);
    let revision = c.u64()?;
    let count = c.u32()? as usize;
    // Each op takes at least 6 bytes: a count beyond that is corruption.
    if count > c.0.len() / 6 {
        return Err("more operations than the frame can hold");
    }
    let mut ops = Vec::with_capacity(count);
    for _ in 0..count {
        let tree = c.u8()?;
        let tag = c.u8()?;
        let key = c.bytes()?;
        let action = match tag {
            0 => Action::Put(c.bytes()?),
            1 => Action::Remove,
            2 => Action::RemovePrefix,
            _ => return Err("an unknown operation"),
        };
        ops.push(Op { tree, key, action });
    }
    if !c.0.is_empty() {
        return Err("bytes after the last operation");
    }
    Ok(Record { revision, ops })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn action() -> impl Strategy<Value = Action> {
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..40).prop_map(Action::Put),
            Just(Action::Remove),
            Just(Action::RemovePrefix),
        ]
    }

    fn records() -> impl Strategy<Value = Vec<Record>> {
        let op = (any::<u8>(), proptest::collection::vec(any::<u8>(), 0..20), action())
            .prop_map(|(tree, key, action)| Op { tree, key, action });
        proptest::collection::vec(proptest::collection::vec(op, 0..4), 1..6).prop_map(|groups| {
            groups
                .into_iter()
                .enumerate()
                .map(|(i, ops)| Record {
                    revision: i as u64 + 1,
                    ops,
                })
                .collect()
        })
    }

    fn log(records: &[Record]) -> (Vec<u8>, Vec<usize>) {
        let mut bytes = Vec::new();
        let mut ends = Vec::new();
        for r in records {
            encode(r, &mut bytes);
            ends.push(bytes.len());
        }
        (bytes, ends)
    }

    proptest! {
        #[test]
        fn a_log_cut_at_every_offset_gives_back_exactly_the_whole_frames_before_the_cut(records in records()) {
            let (bytes, ends) = log(&records);
            for cut in 0..=bytes.len() {
                let mut reader = Reader::new(&bytes[..cut]);
                let read: Vec<Record> = reader.by_ref().collect();
                let whole = ends.iter().filter(|&&end| end <= cut).count();
                prop_assert_eq!(&read[..], &records[..whole]);
                let valid = if whole == 0 { 0 } else { ends[whole - 1] };
                prop_assert_eq!(reader.offset(), valid);
                if cut == valid {
                    prop_assert_eq!(reader.stop(), None);
                } else {
                    prop_assert_eq!(reader.stop(), Some(&Stop::Truncated));
                }
            }
        }

        #[test]
        fn a_corrupted_byte_ends_the_log_at_the_frame_it_hits(records in records(), at in any::<prop::sample::Index>(), flip in 1..=255u8) {
            let (mut bytes, ends) = log(&records);
            let at = at.index(bytes.len());
            bytes[at] ^= flip;
            let mut reader = Reader::new(&bytes);
            let read: Vec<Record> = reader.by_ref().collect();
            // The frame holding the byte, and every frame after it, is lost;
            // every frame before it is read back whole.
            let hit = ends.iter().position(|&end| at < end).unwrap();
            prop_assert_eq!(&read[..], &records[..hit]);
            prop_assert!(reader.stop().is_some());
        }

        #[test]
        fn a_preallocated_tail_of_zeros_ends_the_log_cleanly(records in records(), zeros in 8..64usize) {
            let (mut bytes, ends) = log(&records);
            bytes.resize(bytes.len() + zeros, 0);
            let mut reader = Reader::new(&bytes);
            let read: Vec<Record> = reader.by_ref().collect();
            prop_assert_eq!(&read[..], &records[..]);
            prop_assert_eq!(reader.offset(), *ends.last().unwrap());
            prop_assert_eq!(reader.stop(), None);
        }

        #[test]
        fn garbage_never_panics_and_never_reads_past_its_end(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let mut reader = Reader::new(&bytes);
            let _ = reader.by_ref().count();
            prop_assert!(reader.offset() <= bytes.len());
        }
    }

    #[test]
    fn a_length_beyond_any_record_is_refused_without_allocating_it() {
        let mut bytes = vec![0xff, 0xff, 0xff, 0x7f, 0, 0, 0, 0];
        bytes.extend_from_slice(&[0; 16]);
        let mut reader = Reader::new(&bytes);
        assert_eq!(reader.next(), None);
        assert_eq!(reader.stop(), Some(&Stop::TooLong(0x7fff_ffff)));
    }
}
