//! The Graph path router: arbitrary paths under every prefix. It must never
//! panic; a path it accepts must name a real collection.
#![no_main]

use libfuzzer_sys::fuzz_target;
use statusd::rest::path::{parse, ApiVersion};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    for version in [ApiVersion::V1, ApiVersion::Beta, ApiVersion::LocalTest] {
        let _ = parse(version, text);
    }
});
