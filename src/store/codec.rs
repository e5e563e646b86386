//! The record codec: one format-version byte, then bincode 2 (standard
//! configuration) of the serde record.
//!
//! bincode is unmaintained upstream (RUSTSEC-2025-0141) and is pinned to 2.0.x;
//! keeping it behind these two functions means a later format is one new
//! version byte, and an unknown byte is refused rather than misread.

use crate::error::{Error, Result};
use crate::model::limits::MAX_RECORD_BYTES;
use serde::{de::DeserializeOwned, Serialize};

/// The version byte written in front of every record.
pub const RECORD_VERSION: u8 = 1;

/// Most bytes a decode may claim for the strings and lists it allocates. A
/// corrupt length prefix must be an error, not an attempt to allocate
/// exabytes; 16 MiB is far above any record statusd has ever accepted
/// (bounded by the request size limit before, by
/// [`crate::model::limits::MAX_RECORD_BYTES`] now).
const DECODE_LIMIT: usize = 16 << 20;

/// Encodes a record.
pub fn encode<T: Serialize>(record: &T) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(128);
    out.push(RECORD_VERSION);
    bincode::serde::encode_into_std_write(record, &mut out, bincode::config::standard())
        .map_err(|e| Error::Internal(format!("cannot encode record: {e}")))?;
    Ok(out)
}

/// Encodes a record for storage. The model's size checks keep every valid
/// record within [`MAX_RECORD_BYTES`]; this is the backstop (for sled, it
/// keeps a record out of the unsynced blob files whatever happens above).
pub fn encode_record<T: Serialize>(record: &T) -> Result<Vec<u8>> {
    let bytes = encode(record)?;
    if bytes.len() > MAX_RECORD_BYTES {
        return Err(Error::invalid(
            "record",
            format!(
                "the record would take {} bytes stored; at most {MAX_RECORD_BYTES} are allowed",
                bytes.len()
            ),
        ));
    }
    Ok(bytes)
}

/// A status from its id and its stored record (the body).
pub fn decode_status(id: &str, record: &[u8]) -> Result<crate::model::Status> {
    Ok(crate::model::Status {
        id: id.to_owned(),
        body: decode(record)?,
    })
}

/// Decodes a record written by [`encode`]; unknown versions and malformed
/// bytes are `Internal` errors (they mean corruption or a newer writer).
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    match bytes.split_first() {
        Some((&RECORD_VERSION, body)) => {
            let (value, used) =
                bincode::serde::decode_from_slice(body, bincode::config::standard().with_limit::<DECODE_LIMIT>())
                    .map_err(|e| Error::Internal(format!("cannot decode record: {e}")))?;
            if used != body.len() {
                return Err(Error::Internal("record has trailing bytes".into()));
            }
            Ok(value)
        }
        Some((v, _)) => Err(Error::Internal(format!(
            "record format version {v} is unknown to this build (it knows {RECORD_VERSION})"
        ))),
        None => Err(Error::Internal("empty record".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ComplianceStatus, DateTime, Parent, Status, StatusBody, UserStatus};

    #[test]
    fn records_round_trip() {
        let s = Status {
            id: "a".into(),
            body: StatusBody::User(UserStatus {
                user_display_name: Some("x".into()),
                devices_count: -3,
                status: ComplianceStatus::NotAssigned,
                last_reported_date_time: DateTime::now(),
                user_principal_name: None,
            }),
        };
        assert_eq!(decode::<Status>(&encode(&s).unwrap()).unwrap(), s);
        let mut p = Parent::empty();
        p.additional_properties
            .insert("passwordRequired".into(), serde_json::json!(true));
        assert_eq!(decode::<Parent>(&encode(&p).unwrap()).unwrap(), p);
    }

    #[test]
    fn unknown_versions_are_refused() {
        let mut bytes = encode(&Parent::empty()).unwrap();
        bytes[0] = 9;
        assert!(decode::<Parent>(&bytes).is_err());
        assert!(decode::<Parent>(&[]).is_err());
    }
}
