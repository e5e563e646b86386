//! The REST body parser: arbitrary bytes as a POST/PATCH body of every
//! collection, under both schemas. It must never panic, and what it accepts
//! must serialise and parse back to the same status.
#![no_main]

use libfuzzer_sys::fuzz_target;
use statusd::model::{ParentKind, StatusKind};
use statusd::rest::{json, path::ApiVersion};

fuzz_target!(|data: &[u8]| {
    let Ok(obj) = json::object(data) else { return };
    for version in [ApiVersion::V1, ApiVersion::Beta] {
        for kind in StatusKind::ALL {
            if let Ok((mut status, _)) = json::status_from_json(kind, version, &obj) {
                // A stored status always has an id (the server generates one
                // for a body without it), and `"id": ""` is refused on input.
                if status.id.is_empty() {
                    status.id = "generated".into();
                }
                let out = json::status_to_json(kind, version, &status, None);
                let (back, _) = json::status_from_json(kind, version, &out).expect("our own output parses");
                assert_eq!(back, status);
            }
        }
        for kind in ParentKind::ALL {
            if let Ok((parent, _)) = json::parent_from_json(kind, version, &obj) {
                let _ = parent.validate(kind);
                let _ = json::parent_to_json(kind, &parent, None);
            }
        }
    }
});
