"""Interoperability check: the official Microsoft Graph Python SDKs with a token
credential, against statusd with TLS and bearer-token auth on.

Usage: SSL_CERT_FILE=ca.pem STATUSD_TOKEN=... STATUSD_EXPIRED_TOKEN=... \
       python graph_sdk_auth.py https://127.0.0.1:PORT

STATUSD_TOKEN grants DeviceManagementConfiguration.ReadWrite.All only;
STATUSD_EXPIRED_TOKEN is signed by the same key but expired an hour ago.
SSL_CERT_FILE (read by httpx) makes the SDK trust the test CA.

The credential is an azure.core TokenCredential that returns the token it was
given (what a real deployment gets from azure-identity). Two ways to build the
client are exercised: `GraphServiceClient(credentials=..., scopes=...)` with
the adapter's base URL pointed at statusd (msgraph-sdk's default provider
allows every host), and a request adapter built by hand with
`allowed_hosts=["127.0.0.1"]` and an explicit CA (which pins where the token
may go; a host not allowed gets no token). Every step asserts; any failure
raises and the script exits non-zero. On success it prints one line per step
and "OK".
"""

import asyncio
import os
import ssl
import sys
import time

import httpx
from azure.core.credentials import AccessToken
from kiota_authentication_azure.azure_identity_authentication_provider import (
    AzureIdentityAuthenticationProvider,
)
from msgraph_core import GraphClientFactory

BASE = sys.argv[1].rstrip("/")
CA = os.environ["SSL_CERT_FILE"]
TOKEN = os.environ["STATUSD_TOKEN"]
EXPIRED = os.environ["STATUSD_EXPIRED_TOKEN"]
SCOPES = ["api://statusd-test/.default"]


def step(msg):
    print(f"ok: {msg}", flush=True)


class StaticTokenCredential:
    """azure.core.credentials.TokenCredential returning a token minted elsewhere."""

    def __init__(self, token):
        self.token = token
        self.requested = []

    def get_token(self, *scopes, claims=None, tenant_id=None, enable_cae=False, **kwargs):
        self.requested.append(scopes)
        return AccessToken(self.token, int(time.time()) + 3600)


def adapter(adapter_type, credential, version, allowed_hosts=("127.0.0.1",)):
    """A request adapter sending `credential`'s token to `allowed_hosts` only,
    over TLS trusting the test CA."""
    auth = AzureIdentityAuthenticationProvider(credential, scopes=SCOPES, allowed_hosts=list(allowed_hosts))
    http = GraphClientFactory.create_with_default_middleware(
        client=httpx.AsyncClient(verify=ssl.create_default_context(cafile=CA))
    )
    a = adapter_type(auth, client=http)
    a.base_url = f"{BASE}/{version}"
    return a


async def v1():
    from msgraph import GraphRequestAdapter, GraphServiceClient
    from msgraph.generated.models.compliance_status import ComplianceStatus
    from msgraph.generated.models.device_compliance_user_status import DeviceComplianceUserStatus
    from msgraph.generated.models.o_data_errors.o_data_error import ODataError
    from msgraph.generated.models.windows10_compliance_policy import Windows10CompliancePolicy

    credential = StaticTokenCredential(TOKEN)
    client = GraphServiceClient(credentials=credential, scopes=SCOPES)
    client.request_adapter.base_url = f"{BASE}/v1.0"
    policies = client.device_management.device_compliance_policies

    created = await policies.post(Windows10CompliancePolicy(display_name="Over TLS", password_required=True))
    assert isinstance(created, Windows10CompliancePolicy) and created.version == 1, created
    assert credential.requested and credential.requested[0] == tuple(SCOPES), credential.requested
    step(f"v1.0 created policy {created.id} with the credential's token")

    statuses = policies.by_device_compliance_policy_id(created.id).user_statuses
    s = await statuses.post(
        DeviceComplianceUserStatus(
            user_display_name="Adele Vance",
            devices_count=2,
            status=ComplianceStatus.Compliant,
            user_principal_name="adele@contoso.com",
        )
    )
    assert s.id and s.status == ComplianceStatus.Compliant, s
    page = await statuses.get()
    assert [x.id for x in page.value] == [s.id], page.value
    got = await statuses.by_device_compliance_user_status_id(s.id).get()
    assert got.user_display_name == "Adele Vance" and got.devices_count == 2, got
    listed = await policies.get()
    assert created.id in [p.id for p in listed.value], listed.value
    step("v1.0 created, listed and got a user status")

    try:
        await client.device_app_management.mobile_app_configurations.get()
        raise AssertionError("a DeviceManagementConfiguration token listed mobile app configurations")
    except ODataError as e:
        assert e.response_status_code == 403, e.response_status_code
        assert e.error.code == "Authorization_RequestDenied", e.error.code
        assert "DeviceManagementApps.Read.All" in e.error.message, e.error.message
    step("v1.0 403 Authorization_RequestDenied for a collection the scope does not grant")

    for name, bad in [("expired", EXPIRED), ("garbage", "not-a-jwt")]:
        other = GraphServiceClient(request_adapter=adapter(GraphRequestAdapter, StaticTokenCredential(bad), "v1.0"))
        try:
            await other.device_management.device_compliance_policies.get()
            raise AssertionError(f"an {name} token was accepted")
        except ODataError as e:
            assert e.response_status_code == 401, (name, e.response_status_code)
            assert e.error.code == "InvalidAuthenticationToken", (name, e.error.code)
            if name == "expired":
                assert "expired" in e.error.message, e.error.message
    step("v1.0 401 InvalidAuthenticationToken for an expired and a garbage token")

    pinned = StaticTokenCredential(TOKEN)
    client = GraphServiceClient(request_adapter=adapter(GraphRequestAdapter, pinned, "v1.0"))
    page = await client.device_management.device_compliance_policies.get()
    assert created.id in [p.id for p in page.value], page.value
    assert pinned.requested, "the pinned adapter did not ask its credential"
    elsewhere = StaticTokenCredential(TOKEN)
    client = GraphServiceClient(
        request_adapter=adapter(GraphRequestAdapter, elsewhere, "v1.0", allowed_hosts=["graph.microsoft.com"])
    )
    try:
        await client.device_management.device_compliance_policies.get()
        raise AssertionError("a token went to a host not allowed")
    except ODataError as e:
        assert e.response_status_code == 401 and e.error.code == "InvalidAuthenticationToken", e.error.code
        assert "No access token was sent" in e.error.message, e.error.message
    assert elsewhere.requested == [], "the credential was asked for a token for a host not allowed"
    step("v1.0 adapter with allowed_hosts: token sent to 127.0.0.1, none to a host not allowed")

    await policies.by_device_compliance_policy_id(created.id).delete()


async def beta():
    from msgraph_beta import GraphRequestAdapter, GraphServiceClient
    from msgraph_beta.generated.models.o_data_errors.o_data_error import ODataError
    from msgraph_beta.generated.models.windows10_general_configuration import Windows10GeneralConfiguration

    client = GraphServiceClient(request_adapter=adapter(GraphRequestAdapter, StaticTokenCredential(TOKEN), "beta"))
    configs = client.device_management.device_configurations
    created = await configs.post(Windows10GeneralConfiguration(display_name="Beta over TLS"))
    assert isinstance(created, Windows10GeneralConfiguration), created
    page = await configs.get()
    assert created.id in [c.id for c in page.value], page.value
    try:
        await client.device_app_management.mobile_app_configurations.get()
        raise AssertionError("a DeviceManagementConfiguration token listed mobile app configurations")
    except ODataError as e:
        assert e.response_status_code == 403 and e.error.code == "Authorization_RequestDenied", e.error.code
    await configs.by_device_configuration_id(created.id).delete()
    step("beta create, list, 403, delete with the token")


async def main():
    await v1()
    await beta()
    print("OK", flush=True)


asyncio.run(main())
