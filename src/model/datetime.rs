//! Graph's `Edm.DateTimeOffset`, kept as an instant at 100 ns precision.
//!
//! Graph accepts ISO 8601 date-times with 0–7 fractional digits and an explicit
//! offset (`Z` or `±hh:mm`), and writes UTC with exactly seven fractional
//! digits (`2017-01-01T00:01:14.9975606Z`). A date-time without an offset is
//! ambiguous and refused. The instant is stored as .NET-style ticks (100 ns
//! units since 0001-01-01T00:00:00Z), so the whole range Graph can express,
//! 0001-01-01 to 9999-12-31, fits and sorts as an integer.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Ticks per second (one tick is 100 ns).
const TICKS_PER_SECOND: i64 = 10_000_000;
/// Ticks between 0001-01-01T00:00:00Z and the Unix epoch.
const UNIX_EPOCH_TICKS: i64 = 621_355_968_000_000_000;
/// Ticks of 9999-12-31T23:59:59.9999999Z, the last representable instant.
const MAX_TICKS: i64 = 3_155_378_975_999_999_999;

/// An instant between 0001-01-01 and 9999-12-31 (UTC), at 100 ns precision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default)]
pub struct DateTime(i64);

/// Why a date-time text or timestamp was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DateTimeError(pub &'static str);

impl fmt::Display for DateTimeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

const SHAPE: &str =
    "expected an ISO 8601 date-time with an offset, like 2017-01-01T00:01:14.9975606+03:00 or 2017-01-01T00:00:00Z";

impl DateTime {
    /// 0001-01-01T00:00:00Z: Graph's value for a date-time that was never set.
    pub const MIN: DateTime = DateTime(0);

    /// The current time, truncated to 100 ns.
    pub fn now() -> Self {
        let d = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        // Saturates only after the year 9999.
        Self::from_unix(d.as_secs() as i64, d.subsec_nanos()).unwrap_or(DateTime(MAX_TICKS))
    }

    /// Ticks (100 ns) since 0001-01-01T00:00:00Z.
    pub fn ticks(self) -> i64 {
        self.0
    }

    /// From ticks; `None` outside 0001-01-01..=9999-12-31.
    pub fn from_ticks(ticks: i64) -> Option<Self> {
        (0..=MAX_TICKS).contains(&ticks).then_some(DateTime(ticks))
    }

    /// From Unix seconds and nanoseconds (as in `google.protobuf.Timestamp`).
    /// Nanoseconds below 100 ns are truncated; out-of-range instants are refused.
    pub fn from_unix(seconds: i64, nanos: u32) -> Result<Self, DateTimeError> {
        if nanos >= 1_000_000_000 {
            return Err(DateTimeError("nanos must be below 1000000000"));
        }
        seconds
            .checked_mul(TICKS_PER_SECOND)
            .and_then(|t| t.checked_add(UNIX_EPOCH_TICKS))
            .and_then(|t| t.checked_add(i64::from(nanos / 100)))
            .and_then(Self::from_ticks)
            .ok_or(DateTimeError(
                "outside 0001-01-01T00:00:00Z..9999-12-31T23:59:59.9999999Z",
            ))
    }

    /// Unix seconds and nanoseconds of this instant.
    pub fn to_unix(self) -> (i64, u32) {
        let rel = self.0 - UNIX_EPOCH_TICKS;
        let secs = rel.div_euclid(TICKS_PER_SECOND);
        let ticks = rel.rem_euclid(TICKS_PER_SECOND);
        (secs, (ticks * 100) as u32)
    }

    /// Parses Graph's input form: `YYYY-MM-DDThh:mm:ss[.f{1,7}](Z|±hh:mm)`.
    pub fn parse(text: &str) -> Result<Self, DateTimeError> {
        let b = text.as_bytes();
        if b.len() < 20 {
            return Err(DateTimeError(SHAPE));
        }
        let year = digits(b, 0, 4)?;
        let month = digits(b, 5, 2)?;
        let day = digits(b, 8, 2)?;
        let hour = digits(b, 11, 2)?;
        let minute = digits(b, 14, 2)?;
        let second = digits(b, 17, 2)?;
        if b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't') || b[13] != b':' || b[16] != b':' {
            return Err(DateTimeError(SHAPE));
        }
        if year == 0 || !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
            return Err(DateTimeError("the date does not exist"));
        }
        if hour > 23 || minute > 59 || second > 59 {
            return Err(DateTimeError("the time of day is out of range"));
        }
        let mut pos = 19;
        let mut fraction: i64 = 0;
        if b.get(pos) == Some(&b'.') {
            pos += 1;
            let start = pos;
            while pos < b.len() && b[pos].is_ascii_digit() {
                pos += 1;
            }
            let n = pos - start;
            if n == 0 || n > 7 {
                return Err(DateTimeError("between 1 and 7 fractional digits are allowed"));
            }
            for &c in &b[start..pos] {
                fraction = fraction * 10 + i64::from(c - b'0');
            }
            fraction *= 10_i64.pow(7 - n as u32);
        }
        let offset_seconds: i64 = match &b[pos..] {
            [b'Z' | b'z'] => 0,
            [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
                let oh = digits(b, pos + 1, 2)?;
                let om = digits(b, pos + 4, 2)?;
                if oh > 14 || om > 59 || (oh == 14 && om > 0) {
                    return Err(DateTimeError("the offset must be within ±14:00"));
                }
                let s = i64::from(oh * 3600 + om * 60);
                if *sign == b'-' {
                    -s
                } else {
                    s
                }
            }
            [] => return Err(DateTimeError("a time zone offset (Z or ±hh:mm) is required")),
            _ => return Err(DateTimeError(SHAPE)),
        };
        let days = days_from_civil(i64::from(year), month, day);
        let local = days * 86_400 + i64::from(hour * 3600 + minute * 60 + second);
        let utc = local - offset_seconds;
        let ticks = utc
            .checked_mul(TICKS_PER_SECOND)
            .and_then(|t| t.checked_add(UNIX_EPOCH_TICKS + fraction));
        ticks.and_then(Self::from_ticks).ok_or(DateTimeError(
            "outside 0001-01-01T00:00:00Z..9999-12-31T23:59:59.9999999Z",
        ))
    }
}

/// Graph's output form: UTC, seven fractional digits, `Z`.
impl fmt::Display for DateTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rel = self.0 - UNIX_EPOCH_TICKS;
        let secs = rel.div_euclid(TICKS_PER_SECOND);
        let frac = rel.rem_euclid(TICKS_PER_SECOND);
        let days = secs.div_euclid(86_400);
        let sod = secs.rem_euclid(86_400);
        let (y, m, d) = civil_from_days(days);
        write!(
            f,
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{frac:07}Z",
            sod / 3600,
            (sod / 60) % 60,
            sod % 60
        )
    }
}

fn digits(b: &[u8], at: usize, n: usize) -> Result<u32, DateTimeError> {
    let slice = b.get(at..at + n).ok_or(DateTimeError(SHAPE))?;
    slice.iter().try_fold(0u32, |acc, &c| {
        if c.is_ascii_digit() {
            Ok(acc * 10 + u32::from(c - b'0'))
        } else {
            Err(DateTimeError(SHAPE))
        }
    })
}

fn is_leap(y: u32) -> bool {
    (y.is_multiple_of(4) && !y.is_multiple_of(100)) || y.is_multiple_of(400)
}

fn days_in_month(y: u32, m: u32) -> u32 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The inverse of [`days_from_civil`].
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_graph_examples_to_utc() {
        let t = DateTime::parse("2017-01-01T00:01:14.9975606+03:00").unwrap();
        assert_eq!(t.to_string(), "2016-12-31T21:01:14.9975606Z");
        let t = DateTime::parse("2017-01-01T00:00:17.7769392-08:00").unwrap();
        assert_eq!(t.to_string(), "2017-01-01T08:00:17.7769392Z");
        assert_eq!(
            DateTime::parse("2020-02-29T10:00:00Z").unwrap().to_string(),
            "2020-02-29T10:00:00.0000000Z"
        );
        assert_eq!(
            DateTime::parse("2020-02-29T10:00:00.5Z").unwrap().to_string(),
            "2020-02-29T10:00:00.5000000Z"
        );
    }

    #[test]
    fn min_and_max_round_trip() {
        assert_eq!(DateTime::MIN.to_string(), "0001-01-01T00:00:00.0000000Z");
        assert_eq!(DateTime::parse("0001-01-01T00:00:00Z").unwrap(), DateTime::MIN);
        let max = DateTime::parse("9999-12-31T23:59:59.9999999Z").unwrap();
        assert_eq!(max.ticks(), MAX_TICKS);
        let (s, n) = max.to_unix();
        assert_eq!(DateTime::from_unix(s, n).unwrap(), max);
        let (s, n) = DateTime::MIN.to_unix();
        assert_eq!(DateTime::from_unix(s, n).unwrap(), DateTime::MIN);
    }

    #[test]
    fn refuses_bad_forms() {
        for bad in [
            "String (timestamp)",
            "2017-01-01T00:00:00",
            "2017-01-01T00:00:00.12345678Z",
            "2017-02-29T00:00:00Z",
            "2017-01-01T24:00:00Z",
            "2017-01-01T00:00:00+15:00",
            "2017-01-01 00:00:00Z",
            "2017-01-01T00:00:00.Z",
            "0001-01-01T00:00:00+01:00",
            "",
        ] {
            assert!(DateTime::parse(bad).is_err(), "{bad} should be refused");
        }
    }
}
