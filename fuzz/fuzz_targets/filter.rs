//! The OData query options and `$filter` parser: arbitrary query strings and
//! expressions. They must never panic (nor recurse without bound).
#![no_main]

use libfuzzer_sys::fuzz_target;
use statusd::rest::odata;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = odata::parse_filter(text);
    let _ = odata::parse(Some(text), statusd::rest::path::ApiVersion::Beta);
});
