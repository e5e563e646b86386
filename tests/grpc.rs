//! gRPC behaviour of every collection, table-driven over the three parent
//! kinds and two status shapes: standard methods, paging, errors, integrity.

mod common;

use common::{bad_request_fields, ts, DeviceMsg, ParentMsg, TestServer, UserMsg, PARENTS};
use statusd::pb;
use tonic::Code;

fn user_status(id: &str) -> UserMsg {
    UserMsg {
        id: id.into(),
        user_display_name: Some("User Display Name value".into()),
        devices_count: 12,
        status: pb::ComplianceStatus::NotApplicable as i32,
        last_reported_date_time: ts(1_483_228_874, 997_560_600),
        user_principal_name: Some("user@contoso.com".into()),
    }
}

fn device_status(id: &str) -> DeviceMsg {
    DeviceMsg {
        id: id.into(),
        device_display_name: Some("Device Display Name value".into()),
        user_name: Some("User Name value".into()),
        device_model: Some("Device Model value".into()),
        platform: 8,
        compliance_grace_period_expiration_date_time: ts(1_483_228_864, 579_335_200),
        status: pb::ComplianceStatus::NotAssigned as i32,
        last_reported_date_time: ts(1_483_217_883, 757_189_800),
        user_principal_name: None,
    }
}

#[tokio::test]
async fn every_method_works_on_every_collection() {
    let t = TestServer::start().await;
    let ch = t.channel().await;
    for api in PARENTS {
        // Parent: create with a client id, create with a generated id, get, list, update, delete.
        let created = api.create(&ch, api.new_parent("p-1", "First")).await.unwrap();
        assert_eq!(created.id, "p-1");
        assert_eq!(created.version, 1, "{}", api.service);
        assert!(created.created_date_time.is_some());
        assert_eq!(created.odata_type, api.odata_type);
        let generated = api.create(&ch, api.new_parent("", "Second")).await.unwrap();
        assert_eq!(generated.id.len(), 36, "a UUID is generated: {}", generated.id);
        assert_eq!(api.get(&ch, "p-1").await.unwrap(), created);
        let (all, next) = api.list(&ch, 0, "").await.unwrap();
        assert_eq!(all.len(), 2);
        assert!(next.is_empty());
        let mut change = ParentMsg {
            id: "p-1".into(),
            display_name: "Renamed".into(),
            ..Default::default()
        };
        change.description = None;
        let updated = api.update(&ch, change, &["display_name", "description"]).await.unwrap();
        assert_eq!(updated.display_name, "Renamed");
        assert_eq!(updated.description, None);
        assert_eq!(updated.version, 2);
        assert_eq!(updated.created_date_time, created.created_date_time);
        assert_eq!(api.get(&ch, "p-1").await.unwrap(), updated);

        // User statuses.
        let u = api.create_status(&ch, "User", "p-1", user_status("u-1")).await.unwrap();
        assert_eq!(u, user_status("u-1"));
        let u2 = api.create_status(&ch, "User", "p-1", UserMsg::default()).await.unwrap();
        assert_eq!(u2.status, pb::ComplianceStatus::Unknown as i32);
        assert_eq!(
            u2.last_reported_date_time,
            ts(-62_135_596_800, 0),
            "defaults to 0001-01-01"
        );
        let got: UserMsg = api.get_status(&ch, "User", "p-1", "u-1").await.unwrap();
        assert_eq!(got, u);
        let (listed, _) = api.list_statuses::<UserMsg>(&ch, "User", "p-1", 0, "").await.unwrap();
        assert_eq!(listed.len(), 2);
        let patch = UserMsg {
            id: "u-1".into(),
            status: pb::ComplianceStatus::Compliant as i32,
            ..Default::default()
        };
        let patched = api
            .update_status(&ch, "User", "p-1", patch, Some(&["status"]))
            .await
            .unwrap();
        assert_eq!(patched.status, pb::ComplianceStatus::Compliant as i32);
        assert_eq!(patched.devices_count, 12, "fields outside the mask are kept");
        let patch = UserMsg {
            id: "u-1".into(),
            devices_count: 40,
            ..Default::default()
        };
        let patched = api.update_status(&ch, "User", "p-1", patch, None).await.unwrap();
        assert_eq!(
            (patched.devices_count, patched.status),
            (40, pb::ComplianceStatus::Compliant as i32)
        );
        api.delete_status(&ch, "User", "p-1", "u-1").await.unwrap();
        let err = api.get_status::<UserMsg>(&ch, "User", "p-1", "u-1").await.unwrap_err();
        assert_eq!(err.code(), Code::NotFound);

        // Device statuses.
        let d = api
            .create_status(&ch, "Device", "p-1", device_status("d-1"))
            .await
            .unwrap();
        assert_eq!(d, device_status("d-1"));
        let got: DeviceMsg = api.get_status(&ch, "Device", "p-1", "d-1").await.unwrap();
        assert_eq!(got, d);
        let patch = DeviceMsg {
            id: "d-1".into(),
            device_model: None,
            platform: 3,
            ..Default::default()
        };
        let patched = api
            .update_status(&ch, "Device", "p-1", patch, Some(&["device_model", "platform"]))
            .await
            .unwrap();
        assert_eq!((patched.device_model, patched.platform), (None, 3));
        let (listed, _) = api
            .list_statuses::<DeviceMsg>(&ch, "Device", "p-1", 0, "")
            .await
            .unwrap();
        assert_eq!(listed.len(), 1);
        api.delete_status(&ch, "Device", "p-1", "d-1").await.unwrap();
        let err = api.delete_status(&ch, "Device", "p-1", "d-1").await.unwrap_err();
        assert_eq!(err.code(), Code::NotFound);

        // Delete the parents.
        api.delete(&ch, "p-1").await.unwrap();
        api.delete(&ch, &generated.id).await.unwrap();
        assert_eq!(api.get(&ch, "p-1").await.unwrap_err().code(), Code::NotFound);
        assert_eq!(api.delete(&ch, "p-1").await.unwrap_err().code(), Code::NotFound);
    }
}

#[tokio::test]
async fn statuses_of_one_kind_are_separate_from_the_others() {
    let t = TestServer::start().await;
    let ch = t.channel().await;
    for api in PARENTS {
        api.create(&ch, api.new_parent("shared", "x")).await.unwrap();
    }
    PARENTS[0]
        .create_status(&ch, "User", "shared", user_status("only-here"))
        .await
        .unwrap();
    for (i, api) in PARENTS.iter().enumerate() {
        let (users, _) = api
            .list_statuses::<UserMsg>(&ch, "User", "shared", 0, "")
            .await
            .unwrap();
        let (devices, _) = api
            .list_statuses::<DeviceMsg>(&ch, "Device", "shared", 0, "")
            .await
            .unwrap();
        assert_eq!(users.len(), usize::from(i == 0), "{}", api.service);
        assert!(devices.is_empty());
    }
}

#[tokio::test]
async fn paging_returns_every_item_once_in_id_order() {
    let t = TestServer::start().await;
    let ch = t.channel().await;
    for api in PARENTS {
        api.create(&ch, api.new_parent("p", "paged")).await.unwrap();
        api.create(&ch, api.new_parent("p0", "neighbour")).await.unwrap();
        let mut ids: Vec<String> = (0..23).map(|i| format!("s-{:03}", (i * 7) % 23)).collect();
        for id in &ids {
            api.create_status(&ch, "User", "p", user_status(id)).await.unwrap();
        }
        // A status under a parent whose id extends "p" must not leak into p's pages.
        api.create_status(&ch, "User", "p0", user_status("s-000"))
            .await
            .unwrap();
        ids.sort();

        let mut seen = Vec::new();
        let mut token = String::new();
        let mut pages = 0;
        loop {
            let (items, next) = api.list_statuses::<UserMsg>(&ch, "User", "p", 5, &token).await.unwrap();
            assert!(items.len() <= 5);
            seen.extend(items.into_iter().map(|s| s.id));
            pages += 1;
            if pages == 2 {
                // A status created mid-way, after the current position, shows up later.
                api.create_status(&ch, "User", "p", user_status("s-zzz")).await.unwrap();
                ids.push("s-zzz".into());
            }
            if next.is_empty() {
                break;
            }
            token = next;
        }
        assert_eq!(seen, ids, "{}", api.service);
        assert_eq!(pages, 5);

        let (parents, next) = api.list(&ch, 1, "").await.unwrap();
        assert_eq!(parents[0].id, "p");
        let (parents, last) = api.list(&ch, 1, &next).await.unwrap();
        assert_eq!(parents[0].id, "p0");
        assert!(last.is_empty());
    }
}

#[tokio::test]
async fn create_under_missing_parent_is_not_found() {
    let t = TestServer::start().await;
    let ch = t.channel().await;
    for api in PARENTS {
        let err = api
            .create_status(&ch, "User", "missing", user_status("u"))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::NotFound, "{}", api.service);
        assert!(err.message().contains("'missing'"), "{}", err.message());
        let err = api
            .create_status(&ch, "Device", "missing", device_status("d"))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::NotFound);
        let err = api
            .list_statuses::<UserMsg>(&ch, "User", "missing", 0, "")
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::NotFound);
    }
}

#[tokio::test]
async fn duplicate_ids_are_already_exists() {
    let t = TestServer::start().await;
    let ch = t.channel().await;
    for api in PARENTS {
        api.create(&ch, api.new_parent("dup", "a")).await.unwrap();
        let err = api.create(&ch, api.new_parent("dup", "b")).await.unwrap_err();
        assert_eq!(err.code(), Code::AlreadyExists, "{}", api.service);
        assert_eq!(
            api.get(&ch, "dup").await.unwrap().display_name,
            "a",
            "the original is kept"
        );
        api.create_status(&ch, "Device", "dup", device_status("d"))
            .await
            .unwrap();
        let err = api
            .create_status(&ch, "Device", "dup", device_status("d"))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::AlreadyExists);
    }
}

#[tokio::test]
async fn deleting_a_parent_deletes_its_statuses() {
    let t = TestServer::start().await;
    let ch = t.channel().await;
    for api in PARENTS {
        api.create(&ch, api.new_parent("gone", "x")).await.unwrap();
        api.create(&ch, api.new_parent("kept", "x")).await.unwrap();
        for i in 0..30 {
            api.create_status(&ch, "User", "gone", user_status(&format!("u{i}")))
                .await
                .unwrap();
            api.create_status(&ch, "Device", "gone", device_status(&format!("d{i}")))
                .await
                .unwrap();
        }
        api.create_status(&ch, "User", "kept", user_status("u0")).await.unwrap();
        api.delete(&ch, "gone").await.unwrap();
        // Re-creating the parent shows none of the old statuses.
        api.create(&ch, api.new_parent("gone", "again")).await.unwrap();
        let (users, _) = api.list_statuses::<UserMsg>(&ch, "User", "gone", 0, "").await.unwrap();
        let (devices, _) = api
            .list_statuses::<DeviceMsg>(&ch, "Device", "gone", 0, "")
            .await
            .unwrap();
        assert!(users.is_empty() && devices.is_empty(), "{}", api.service);
        let (kept, _) = api.list_statuses::<UserMsg>(&ch, "User", "kept", 0, "").await.unwrap();
        assert_eq!(kept.len(), 1);
    }
}

/// Every rejection is INVALID_ARGUMENT with the field named in the message and
/// in google.rpc.BadRequest.
#[tokio::test]
async fn invalid_input_is_invalid_argument_naming_the_field() {
    let t = TestServer::start().await;
    let ch = t.channel().await;
    let api = PARENTS[2];
    api.create(&ch, api.new_parent("p", "x")).await.unwrap();

    let long_id = "x".repeat(257);
    let user_cases: Vec<(&str, UserMsg)> = vec![
        (
            "status",
            UserMsg {
                status: 99,
                ..Default::default()
            },
        ),
        (
            "status",
            UserMsg {
                status: -1,
                ..Default::default()
            },
        ),
        (
            "last_reported_date_time",
            UserMsg {
                last_reported_date_time: ts(253_402_300_800, 0),
                ..Default::default()
            },
        ),
        (
            "last_reported_date_time",
            UserMsg {
                last_reported_date_time: ts(-62_135_596_801, 0),
                ..Default::default()
            },
        ),
        (
            "last_reported_date_time",
            UserMsg {
                last_reported_date_time: ts(0, -5),
                ..Default::default()
            },
        ),
        (
            "id",
            UserMsg {
                id: "a/b".into(),
                ..Default::default()
            },
        ),
        (
            "id",
            UserMsg {
                id: "a\nb".into(),
                ..Default::default()
            },
        ),
        (
            "id",
            UserMsg {
                id: long_id.clone(),
                ..Default::default()
            },
        ),
        (
            "user_display_name",
            UserMsg {
                user_display_name: Some("x".repeat(5000)),
                ..Default::default()
            },
        ),
    ];
    for (field, msg) in user_cases {
        let err = api.create_status(&ch, "User", "p", msg).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{field}: {err:?}");
        assert!(
            err.message().contains(field),
            "message names {field}: {}",
            err.message()
        );
        assert_eq!(bad_request_fields(&err), vec![field.to_string()]);
    }
    let err = api
        .create_status(&ch, "User", "a/b", UserMsg::default())
        .await
        .unwrap_err();
    assert_eq!(
        (err.code(), bad_request_fields(&err)),
        (Code::InvalidArgument, vec!["parent_id".to_string()])
    );

    let parent_cases: Vec<(&str, ParentMsg)> = vec![
        (
            "display_name",
            ParentMsg {
                display_name: "".into(),
                ..api.new_parent("", "")
            },
        ),
        (
            "odata_type",
            ParentMsg {
                odata_type: "".into(),
                ..api.new_parent("", "x")
            },
        ),
        (
            "odata_type",
            ParentMsg {
                odata_type: "#microsoft.graph.deviceConfiguration".into(),
                ..api.new_parent("", "x")
            },
        ),
        (
            "odata_type",
            ParentMsg {
                odata_type: "windows10GeneralConfiguration".into(),
                ..api.new_parent("", "x")
            },
        ),
        (
            "root_certificate_id",
            ParentMsg {
                root_certificate_id: Some("missing".into()),
                ..api.new_parent("", "x")
            },
        ),
        ("id", api.new_parent(&long_id, "x")),
    ];
    for (field, msg) in parent_cases {
        let err = api.create(&ch, msg).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{field}: {err:?}");
        assert!(
            err.message().contains(field),
            "message names {field}: {}",
            err.message()
        );
    }
    // A root certificate reference on a compliance policy is not a property of it
    // (field 8 of the compliance policy is additional_properties, so use its own client).
    let mut client = pb::mobile_app_configurations_client::MobileAppConfigurationsClient::new(ch.clone());
    let err = client
        .create_managed_device_mobile_app_configuration(pb::CreateManagedDeviceMobileAppConfigurationRequest {
            managed_device_mobile_app_configuration: None,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().contains("managed_device_mobile_app_configuration"),
        "{}",
        err.message()
    );

    let err = api
        .update(&ch, api.new_parent("p", "y"), &["version"])
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("update_mask"), "{}", err.message());
    let err = api
        .update_status(&ch, "User", "p", UserMsg::default(), Some(&["nope"]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    let err = api
        .list_statuses::<UserMsg>(&ch, "User", "p", -1, "")
        .await
        .unwrap_err();
    assert!(err.message().contains("page_size"), "{}", err.message());
    let err = api
        .list_statuses::<UserMsg>(&ch, "User", "p", 1001, "")
        .await
        .unwrap_err();
    assert!(err.message().contains("page_size"), "{}", err.message());
    let err = api
        .list_statuses::<UserMsg>(&ch, "User", "p", 0, "!!")
        .await
        .unwrap_err();
    assert!(err.message().contains("page_token"), "{}", err.message());

    // Nothing was stored by any of the rejected calls.
    let (users, _) = api.list_statuses::<UserMsg>(&ch, "User", "p", 0, "").await.unwrap();
    assert!(users.is_empty());
    let (parents, _) = api.list(&ch, 0, "").await.unwrap();
    assert_eq!(parents.len(), 1);
}

#[tokio::test]
async fn derived_type_properties_and_certificates_round_trip() {
    let t = TestServer::start().await;
    let ch = t.channel().await;
    let mut policies = pb::device_compliance_policies_client::DeviceCompliancePoliciesClient::new(ch.clone());
    let mut extra = prost_types::Struct::default();
    extra.fields.insert(
        "passwordRequired".into(),
        prost_types::Value {
            kind: Some(prost_types::value::Kind::BoolValue(true)),
        },
    );
    let created = policies
        .create_device_compliance_policy(pb::CreateDeviceCompliancePolicyRequest {
            device_compliance_policy: Some(pb::DeviceCompliancePolicy {
                odata_type: "#microsoft.graph.windows10CompliancePolicy".into(),
                display_name: "w10".into(),
                additional_properties: Some(extra.clone()),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(created.additional_properties, Some(extra));

    let mut configs = pb::device_configurations_client::DeviceConfigurationsClient::new(ch.clone());
    let root = PARENTS[2]
        .create(&ch, PARENTS[2].new_parent("root", "Root CA"))
        .await
        .unwrap();
    let mut leaf = PARENTS[2].new_parent("leaf", "SCEP");
    leaf.root_certificate_id = Some(root.id.clone());
    let leaf = PARENTS[2].create(&ch, leaf).await.unwrap();
    assert_eq!(leaf.root_certificate_id.as_deref(), Some("root"));
    let cleared = configs
        .update_device_configuration(pb::UpdateDeviceConfigurationRequest {
            device_configuration: Some(pb::DeviceConfiguration {
                id: "leaf".into(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["root_certificate_id".into()],
            }),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(cleared.root_certificate_id, None);
}

#[tokio::test]
async fn unknown_methods_are_unimplemented() {
    let t = TestServer::start().await;
    let ch = t.channel().await;
    let err = common::call::<_, ()>(&ch, "/statusd.v1.Nope/Nothing", pb::GetParentRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unimplemented);
}
