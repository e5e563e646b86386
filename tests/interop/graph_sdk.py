"""Interoperability check: the official Microsoft Graph Python SDKs, unchanged,
against statusd.

Usage: python graph_sdk.py http://127.0.0.1:PORT

msgraph-sdk drives /v1.0, msgraph-beta-sdk drives /beta, each with Kiota's
anonymous authentication provider and the request adapter's base URL pointed
at statusd. Every step asserts what Graph would return; any failure raises and
the script exits non-zero. On success it prints one line per step and "OK".
"""

import asyncio
import datetime as dt
import sys

from kiota_abstractions.authentication.anonymous_authentication_provider import (
    AnonymousAuthenticationProvider,
)

BASE = sys.argv[1].rstrip("/")
WHEN = dt.datetime(2017, 1, 1, 0, 1, 14, 997560, tzinfo=dt.timezone(dt.timedelta(hours=3)))


def step(msg):
    print(f"ok: {msg}", flush=True)


async def v1():
    from msgraph import GraphRequestAdapter, GraphServiceClient
    from msgraph.generated.device_management.device_compliance_policies.item.user_statuses.user_statuses_request_builder import (
        UserStatusesRequestBuilder,
    )
    from msgraph.generated.models.compliance_status import ComplianceStatus
    from msgraph.generated.models.device_compliance_user_status import DeviceComplianceUserStatus
    from msgraph.generated.models.o_data_errors.o_data_error import ODataError
    from msgraph.generated.models.windows10_compliance_policy import Windows10CompliancePolicy
    from kiota_abstractions.base_request_configuration import RequestConfiguration

    adapter = GraphRequestAdapter(AnonymousAuthenticationProvider())
    adapter.base_url = f"{BASE}/v1.0"
    client = GraphServiceClient(request_adapter=adapter)
    policies = client.device_management.device_compliance_policies

    created = await policies.post(Windows10CompliancePolicy(display_name="SDK policy", password_required=True))
    assert created.id and created.version == 1, created
    assert isinstance(created, Windows10CompliancePolicy), type(created)
    assert created.password_required is True, "derived-type property kept"
    step(f"v1.0 created policy {created.id}")

    statuses = policies.by_device_compliance_policy_id(created.id).user_statuses
    ids = []
    for i in range(5):
        s = await statuses.post(
            DeviceComplianceUserStatus(
                user_display_name=f"User {i}",
                devices_count=i,
                status=ComplianceStatus.Compliant,
                last_reported_date_time=WHEN,
                user_principal_name=f"user{i}@contoso.com",
            )
        )
        assert s.status == ComplianceStatus.Compliant and s.devices_count == i, s
        assert s.last_reported_date_time == WHEN, s.last_reported_date_time
        ids.append(s.id)
    step("v1.0 created 5 user statuses")

    config = RequestConfiguration(
        query_parameters=UserStatusesRequestBuilder.UserStatusesRequestBuilderGetQueryParameters(top=2, count=True)
    )
    page = await statuses.get(request_configuration=config)
    seen = [s.id for s in page.value]
    assert page.odata_count == 5, page.odata_count
    pages = 1
    while page.odata_next_link:
        page = await statuses.with_url(page.odata_next_link).get()
        seen.extend(s.id for s in page.value)
        pages += 1
    assert sorted(seen) == sorted(ids) and len(seen) == 5, (seen, ids)
    assert pages == 3, pages
    step("v1.0 listed 5 statuses over 3 pages with @odata.nextLink")

    config = RequestConfiguration(
        query_parameters=UserStatusesRequestBuilder.UserStatusesRequestBuilderGetQueryParameters(
            filter="devicesCount ge 3", orderby=["devicesCount desc"]
        )
    )
    page = await statuses.get(request_configuration=config)
    assert [s.devices_count for s in page.value] == [4, 3], [s.devices_count for s in page.value]
    step("v1.0 $filter and $orderby")

    item = statuses.by_device_compliance_user_status_id(ids[0])
    got = await item.get()
    assert got.user_display_name == "User 0", got
    patched = await item.patch(DeviceComplianceUserStatus(status=ComplianceStatus.Error))
    assert patched.status == ComplianceStatus.Error and patched.devices_count == 0, patched
    got = await item.get()
    assert got.status == ComplianceStatus.Error, got
    step("v1.0 get and patch")

    await item.delete()
    try:
        await item.get()
        raise AssertionError("a deleted status was still found")
    except ODataError as e:
        assert e.response_status_code == 404, e.response_status_code
        assert e.error.code == "ResourceNotFound", e.error.code
        assert ids[0] in e.error.message, e.error.message
    step("v1.0 delete, then ODataError 404 ResourceNotFound")

    try:
        await policies.by_device_compliance_policy_id("missing").user_statuses.post(DeviceComplianceUserStatus())
        raise AssertionError("create under a missing parent succeeded")
    except ODataError as e:
        assert e.response_status_code == 404 and "missing" in e.error.message, e.error.message

    try:
        await statuses.post(DeviceComplianceUserStatus(id=ids[1]))
        raise AssertionError("a duplicate id was accepted")
    except ODataError as e:
        assert e.response_status_code == 409 and e.error.code == "Conflict", (e.response_status_code, e.error.code)
    step("v1.0 errors carry our code and message (404, 409)")

    await policies.by_device_compliance_policy_id(created.id).delete()
    try:
        await statuses.get()
        raise AssertionError("statuses of a deleted policy were listed")
    except ODataError as e:
        assert e.response_status_code == 404
    step("v1.0 policy delete cascades")


async def beta():
    from msgraph_beta import GraphRequestAdapter, GraphServiceClient
    from msgraph_beta.generated.models.compliance_status import ComplianceStatus
    from msgraph_beta.generated.models.device_configuration_device_status import DeviceConfigurationDeviceStatus
    from msgraph_beta.generated.models.o_data_errors.o_data_error import ODataError
    from msgraph_beta.generated.models.windows10_general_configuration import Windows10GeneralConfiguration

    adapter = GraphRequestAdapter(AnonymousAuthenticationProvider())
    adapter.base_url = f"{BASE}/beta"
    client = GraphServiceClient(request_adapter=adapter)
    configs = client.device_management.device_configurations

    created = await configs.post(Windows10GeneralConfiguration(display_name="SDK config"))
    assert isinstance(created, Windows10GeneralConfiguration) and created.version == 1, created
    step(f"beta created configuration {created.id}")

    statuses = configs.by_device_configuration_id(created.id).device_statuses
    s = await statuses.post(
        DeviceConfigurationDeviceStatus(
            id="device1_config_user1",
            device_display_name="Device Display Name value",
            user_name="User Name value",
            device_model="Device Model value",
            platform=8,
            compliance_grace_period_expiration_date_time=WHEN,
            status=ComplianceStatus.NotAssigned,
            last_reported_date_time=WHEN,
        )
    )
    assert s.id == "device1_config_user1" and s.platform == 8 and s.status == ComplianceStatus.NotAssigned, s
    step("beta created a device status with platform")

    page = await statuses.get()
    assert [x.id for x in page.value] == ["device1_config_user1"], page.value
    item = statuses.by_device_configuration_device_status_id(s.id)
    patched = await item.patch(DeviceConfigurationDeviceStatus(platform=3, device_model=None))
    assert patched.platform == 3 and patched.device_display_name == "Device Display Name value", patched
    await item.delete()
    try:
        await item.get()
        raise AssertionError("deleted device status found")
    except ODataError as e:
        assert e.response_status_code == 404 and e.error.code == "ResourceNotFound"
    renamed = await configs.by_device_configuration_id(created.id).patch(
        Windows10GeneralConfiguration(display_name="Renamed")
    )
    assert renamed.display_name == "Renamed" and renamed.version == 2, renamed
    await configs.by_device_configuration_id(created.id).delete()
    step("beta list, patch, delete")


async def main():
    await v1()
    await beta()
    print("OK", flush=True)


asyncio.run(main())
