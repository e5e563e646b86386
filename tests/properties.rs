//! Property tests: codecs round-trip, parsers never panic on arbitrary input,
//! and the JSON mapping gives back what it was given.

use proptest::prelude::*;
use statusd::model::{
    id, ComplianceStatus, DateTime, DeviceStatus, Parent, Status, StatusBody, StatusKind, UserStatus,
};
use statusd::rest::{json, odata, path};
use statusd::store::{decode, encode, keys};

const MAX_TICKS: i64 = 3_155_378_975_999_999_999;

fn datetime() -> impl Strategy<Value = DateTime> {
    (0..=MAX_TICKS).prop_map(|t| DateTime::from_ticks(t).unwrap())
}

fn compliance() -> impl Strategy<Value = ComplianceStatus> {
    (0usize..8).prop_map(|i| ComplianceStatus::ALL[i])
}

fn text() -> impl Strategy<Value = Option<String>> {
    proptest::option::of("[^\u{0}]{0,40}")
}

fn user() -> impl Strategy<Value = StatusBody> {
    (text(), any::<i32>(), compliance(), datetime(), text()).prop_map(|(a, b, c, d, e)| {
        StatusBody::User(UserStatus {
            user_display_name: a,
            devices_count: b,
            status: c,
            last_reported_date_time: d,
            user_principal_name: e,
        })
    })
}

fn device() -> impl Strategy<Value = StatusBody> {
    (
        text(),
        text(),
        text(),
        any::<i32>(),
        datetime(),
        compliance(),
        datetime(),
        text(),
    )
        .prop_map(|(a, b, c, d, e, f, g, h)| {
            StatusBody::Device(DeviceStatus {
                device_display_name: a,
                user_name: b,
                device_model: c,
                platform: d,
                compliance_grace_period_expiration_date_time: e,
                status: f,
                last_reported_date_time: g,
                user_principal_name: h,
            })
        })
}

fn status_id() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_.~-][A-Za-z0-9_.~ -]{0,60}"
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        proptest::sample::select(vec![
            "id",
            "@odata.type",
            "userDisplayName",
            "devicesCount",
            "status",
            "lastReportedDateTime",
            "userPrincipalName",
            "deviceDisplayName",
            "userName",
            "deviceModel",
            "platform",
            "complianceGracePeriodExpirationDateTime",
            "displayName",
            "description",
            "targetedMobileApps",
            "rootCertificate@odata.bind",
            "identityCertificate",
            "version",
        ])
        .prop_map(String::from),
        "[a-zA-Z@.]{1,12}",
    ]
}

fn value() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::json;
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(|b| json!(b)),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        "\\PC{0,30}".prop_map(|s| json!(s)),
        proptest::sample::select(vec!["compliant", "String", "2017-01-01T00:00:00Z", "Integer", "12"])
            .prop_map(|s| json!(s)),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::Array),
            proptest::collection::btree_map("[a-z]{1,5}", inner, 0..4)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn datetimes_format_and_parse_back(t in datetime()) {
        prop_assert_eq!(DateTime::parse(&t.to_string()).unwrap(), t);
        let (s, n) = t.to_unix();
        prop_assert_eq!(DateTime::from_unix(s, n).unwrap(), t);
    }

    #[test]
    fn datetime_offsets_name_the_same_instant(t in (86_400 * 10_000_000i64..MAX_TICKS - 86_400 * 10_000_000), minutes in -840i64..=840) {
        // Render t in a local offset by hand and check it parses to t.
        let t = DateTime::from_ticks(t).unwrap();
        let shifted = DateTime::from_ticks(t.ticks() + minutes * 60 * 10_000_000).unwrap().to_string();
        let sign = if minutes < 0 { '-' } else { '+' };
        let local = format!("{}{sign}{:02}:{:02}", &shifted[..27], minutes.abs() / 60, minutes.abs() % 60);
        prop_assert_eq!(DateTime::parse(&local).unwrap(), t);
    }

    #[test]
    fn the_datetime_parser_never_panics(s in "\\PC{0,40}", t in "[0-9T:.Z+-]{0,35}") {
        let _ = DateTime::parse(&s);
        let _ = DateTime::parse(&t);
    }

    #[test]
    fn status_records_round_trip(body in prop_oneof![user(), device()]) {
        let bytes = encode(&body).unwrap();
        prop_assert_eq!(decode::<StatusBody>(&bytes).unwrap(), body);
    }

    #[test]
    fn parent_records_round_trip(name in "[^\u{0}]{1,40}", desc in text(), apps in proptest::collection::vec("[a-z.]{1,20}", 0..4), extra in proptest::collection::btree_map("[a-zA-Z]{1,12}", any::<i64>(), 0..5)) {
        let mut p = Parent::empty();
        p.display_name = name;
        p.description = desc;
        p.targeted_mobile_apps = apps;
        for (k, v) in extra {
            p.additional_properties.insert(k, serde_json::json!(v));
        }
        prop_assert_eq!(decode::<Parent>(&encode(&p).unwrap()).unwrap(), p);
    }

    #[test]
    fn the_record_decoder_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = decode::<StatusBody>(&bytes);
        let _ = decode::<Parent>(&bytes);
    }

    #[test]
    fn status_keys_split_back_and_sort_by_status_id(parent in "[^/]{0,40}", a in "[^/]{0,40}", b in "[^/]{0,40}") {
        let ka = keys::status_key(&parent, &a);
        prop_assert_eq!(keys::split_status_key(&ka), Some((parent.as_str(), a.as_str())));
        prop_assert!(ka.starts_with(&keys::status_prefix(&parent)));
        prop_assert_eq!(ka.cmp(&keys::status_key(&parent, &b)), a.as_bytes().cmp(b.as_bytes()));
    }

    #[test]
    fn keys_of_different_parents_never_share_a_prefix(p in "[a-z]{0,10}", q in "[a-z]{0,10}", s in "[a-z]{0,10}") {
        prop_assume!(p != q);
        prop_assert!(!keys::status_key(&q, &s).starts_with(&keys::status_prefix(&p)));
    }

    #[test]
    fn accepted_ids_are_safe(s in "\\PC{0,300}|[\\x00-\\x7f]{0,20}") {
        if id::validate("id", &s).is_ok() {
            prop_assert!(!s.is_empty() && s.len() <= id::MAX_ID_LEN);
            prop_assert!(!s.contains('/') && !s.chars().any(char::is_control));
        }
    }

    #[test]
    fn status_json_round_trips(sid in status_id(), body in prop_oneof![user(), device()], beta in any::<bool>()) {
        let version = if beta { path::ApiVersion::Beta } else { path::ApiVersion::V1 };
        let shape = body.shape();
        let kind = StatusKind { parent: statusd::model::ParentKind::DeviceConfiguration, shape };
        let mut body = body;
        if let (StatusBody::Device(d), false) = (&mut body, beta) {
            d.platform = 0; // v1.0 has no platform
        }
        let status = Status { id: sid, body };
        let out = json::status_to_json(kind, version, &status, None);
        let (back, fields) = json::status_from_json(kind, version, &out).unwrap();
        prop_assert_eq!(&back, &status);
        prop_assert_eq!(fields.len(), StatusBody::fields(shape).len() - usize::from(!beta && shape == statusd::model::StatusShape::Device));
    }

    #[test]
    fn the_json_mapping_never_panics(text in "\\PC{0,200}") {
        if let Ok(serde_json::Value::Object(m)) = serde_json::from_str::<serde_json::Value>(&text) {
            for kind in StatusKind::ALL {
                let _ = json::status_from_json(kind, path::ApiVersion::Beta, &m);
            }
            for kind in statusd::model::ParentKind::ALL {
                let _ = json::parent_from_json(kind, path::ApiVersion::Beta, &m);
            }
        }
        let _ = json::object(text.as_bytes());
    }

    #[test]
    fn arbitrary_property_values_are_accepted_or_refused_cleanly(
        entries in proptest::collection::vec((key(), value()), 0..8)
    ) {
        let m: serde_json::Map<String, serde_json::Value> = entries.into_iter().collect();
        for kind in StatusKind::ALL {
            for version in [path::ApiVersion::V1, path::ApiVersion::Beta] {
                match json::status_from_json(kind, version, &m) {
                    Ok((s, fields)) => {
                        prop_assert_eq!(s.body.shape(), kind.shape);
                        for f in &fields {
                            prop_assert!(StatusBody::fields(kind.shape).contains(&f.as_str()), "{} accepted", f);
                        }
                    }
                    Err(statusd::error::Error::InvalidArgument { field, .. }) => prop_assert!(!field.is_empty()),
                    Err(other) => prop_assert!(false, "unexpected error kind {:?}", other),
                }
            }
        }
        for kind in statusd::model::ParentKind::ALL {
            if let Err(e) = json::parent_from_json(kind, path::ApiVersion::Beta, &m) {
                prop_assert!(matches!(e, statusd::error::Error::InvalidArgument { .. }), "{:?}", e);
            }
        }
    }

    #[test]
    fn query_and_path_parsers_never_panic(q in "\\PC{0,120}", p in "[a-zA-Z$()'/%0-9]{0,120}") {
        let _ = odata::parse(Some(&q), path::ApiVersion::Beta);
        let _ = odata::parse(Some(&q), path::ApiVersion::V1);
        let _ = odata::parse_filter(&q);
        let _ = path::parse(path::ApiVersion::Beta, &p);
        let _ = path::parse(path::ApiVersion::V1, &q);
    }

    #[test]
    fn filters_parse_from_generated_expressions(field in "(status|devicesCount|userName|id)", op in "(eq|ne|gt|ge|lt|le)", v in "[a-z]{0,8}", n in any::<i32>()) {
        let lit = if field == "devicesCount" { n.to_string() } else { format!("'{v}'") };
        let expr = format!("not ({field} {op} {lit}) and ({field} {op} {lit} or startswith(userName,'{v}'))");
        prop_assert!(odata::parse_filter(&expr).is_ok(), "{}", expr);
    }
}
