//! The write-ahead log's frame reader on arbitrary bytes: it never panics,
//! never reads past the end, stops cleanly only at the end or at a zero
//! header, and what it accepts is exactly what the encoder
//! writes for the records it returned (so a replay never acts on bytes the
//! encoder could not have produced).
#![no_main]

use libfuzzer_sys::fuzz_target;
use statusd::store::wal::frame;

fuzz_target!(|data: &[u8]| {
    let mut reader = frame::Reader::new(data);
    let records: Vec<frame::Record> = reader.by_ref().collect();
    let valid = reader.offset();
    assert!(valid <= data.len());
    // A clean stop is the end of the bytes or a zero header.
    if reader.stop().is_none() && valid < data.len() {
        assert!(data[valid..].starts_with(&[0; frame::HEADER]));
    }
    let mut again = Vec::new();
    for record in &records {
        frame::encode(record, &mut again);
    }
    assert_eq!(&again[..], &data[..valid]);
});
