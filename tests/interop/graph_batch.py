"""Interoperability check: msgraph-core's batch helpers (BatchRequestContent,
BatchRequestItem, the client's `batch` builder), unchanged, against statusd.

Usage: python graph_batch.py http://127.0.0.1:PORT

Builds the requests with the Graph SDK's own request builders, chains them
with depends_on (msgraph-core writes it in snake case), posts the batch with
`client.batch.post` and reads the answers back through msgraph-core's
BatchResponseContent (status codes and headers; its body accessors cannot
read JSON bodies in msgraph-core 1.5.2, see below). Prints "OK" on success; any failure raises.
"""

import asyncio
import sys

from kiota_abstractions.authentication.anonymous_authentication_provider import (
    AnonymousAuthenticationProvider,
)

BASE = sys.argv[1].rstrip("/")


async def main():
    from msgraph import GraphRequestAdapter, GraphServiceClient
    from msgraph.generated.models.compliance_status import ComplianceStatus
    from msgraph.generated.models.device_compliance_user_status import DeviceComplianceUserStatus
    from msgraph.generated.models.windows10_compliance_policy import Windows10CompliancePolicy
    from msgraph_core.requests.batch_request_content import BatchRequestContent
    from msgraph_core.requests.batch_request_item import BatchRequestItem

    adapter = GraphRequestAdapter(AnonymousAuthenticationProvider())
    adapter.base_url = f"{BASE}/v1.0"
    client = GraphServiceClient(request_adapter=adapter)
    policies = client.device_management.device_compliance_policies

    create_policy = BatchRequestItem(
        request_information=policies.to_post_request_information(
            Windows10CompliancePolicy(id="batch-policy", display_name="Batch policy")
        ),
        id="policy",
    )
    statuses = policies.by_device_compliance_policy_id("batch-policy").user_statuses
    creates = [
        BatchRequestItem(
            request_information=statuses.to_post_request_information(
                DeviceComplianceUserStatus(
                    id=f"u{i}",
                    user_display_name=f"User {i}",
                    devices_count=i,
                    status=ComplianceStatus.Compliant,
                )
            ),
            id=f"status-{i}",
            depends_on=[create_policy],
        )
        for i in range(3)
    ]
    read_back = BatchRequestItem(
        request_information=statuses.by_device_compliance_user_status_id("u2").to_get_request_information(),
        id="read",
        depends_on=[item.id for item in creates],
    )
    overview = BatchRequestItem(
        request_information=policies.by_device_compliance_policy_id("batch-policy")
        .user_status_overview.to_get_request_information(),
        id="overview",
        depends_on=[item.id for item in creates],
    )
    missing = BatchRequestItem(
        request_information=policies.by_device_compliance_policy_id("nope").to_get_request_information(),
        id="missing",
    )
    content = BatchRequestContent()
    for item in [create_policy, *creates, read_back, overview, missing]:
        content.add_request(item.id, item)

    response = await client.batch.post(content)
    codes = response.get_response_status_codes()
    expected = {
        "policy": 201,
        "status-0": 201,
        "status-1": 201,
        "status-2": 201,
        "read": 200,
        "overview": 200,
        "missing": 404,
    }
    assert codes == expected, codes
    print(f"ok: batch status codes {codes}", flush=True)

    # msgraph-core 1.5.2 cannot give the body of a JSON sub-response back:
    # BatchResponseItem reads `body` with get_bytes_value (a base64 string),
    # so Graph's JSON object bodies come back as None, and response_body()
    # hands a BytesIO to a parse node factory that wants bytes. That fails
    # against Graph itself; the answers are read with the SDK's own requests.
    item = response.get_response_by_id("read")
    assert item.headers["content-type"].startswith("application/json"), item.headers
    status = await statuses.by_device_compliance_user_status_id("u2").get()
    assert status.user_display_name == "User 2" and status.devices_count == 2, status
    policy = await policies.by_device_compliance_policy_id("batch-policy").get()
    assert policy.display_name == "Batch policy" and policy.version == 1, policy
    listed = await statuses.get()
    assert sorted(s.id for s in listed.value) == ["u0", "u1", "u2"], listed.value
    print("ok: the batch's writes are there, listed by the SDK", flush=True)
    counts = await policies.by_device_compliance_policy_id("batch-policy").user_status_overview.get()
    assert (counts.success_count, counts.pending_count, counts.failed_count) == (3, 0, 0), counts
    assert counts.configuration_version == 1 and counts.id == "batch-policy", counts
    print(f"ok: the SDK reads the overview the batch counted: {counts.success_count} succeeded", flush=True)
    print("OK")


asyncio.run(main())
