"""Interoperability check: python-odata (PyPI `python-odata`, an OData v4
client) reflects statusd's `$metadata` under each version prefix, and what it
finds matches what the server really answers: every entity type with exactly
the properties the live JSON carries, the navigation properties, the
`complianceStatus` members, and the two singletons holding the collections.

Run by tests/openapi.rs with BASE=http://127.0.0.1:PORT.
"""

import json
import os
import urllib.request

from odata import ODataService

BASE = os.environ["BASE"]

PARENTS = [
    ("deviceManagement/deviceCompliancePolicies", "#microsoft.graph.windows10CompliancePolicy", "deviceCompliancePolicy",
     "deviceCompliance", "Overview"),
    ("deviceAppManagement/mobileAppConfigurations", "#microsoft.graph.iosMobileAppConfiguration",
     "managedDeviceMobileAppConfiguration", "managedDeviceMobileAppConfiguration", "Summary"),
    ("deviceManagement/deviceConfigurations", "#microsoft.graph.windows10GeneralConfiguration", "deviceConfiguration",
     "deviceConfiguration", "Overview"),
]


def call(method, url, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req) as resp:
        text = resp.read()
        return json.loads(text) if text else None


def live_properties(obj):
    return {k for k in obj if not k.startswith("@")}


def main():
    for path, odata_type, _, _, _ in PARENTS:
        call("POST", f"{BASE}/v1.0/{path}", {"@odata.type": odata_type, "id": "md", "displayName": "metadata"})
        for shape in ["userStatuses", "deviceStatuses"]:
            call("POST", f"{BASE}/v1.0/{path}/md/{shape}", {"id": "s1", "status": "compliant"})
    for version in ["v1.0", "beta", "localtest"]:
        beta = version != "v1.0"
        service = ODataService(f"{BASE}/{version}/", reflect_entities=True, quiet_progress=True)
        schemas, entity_sets, _, _ = service.metadata.parse_document(service.metadata.load_document())
        types = {e["name"]: e for e in schemas[0]["entities"]}
        enums = {e["name"]: e for e in schemas[0]["enum_types"]}
        members = [m["name"] for m in enums["complianceStatus"]["members"]]
        assert members == ["unknown", "notApplicable", "compliant", "remediated", "nonCompliant", "error", "conflict",
                           "notAssigned"], members
        # The singletons, and the collections they contain.
        assert set(entity_sets) == {"deviceManagement", "deviceAppManagement"}, entity_sets
        assert all(s["singleton"] for s in entity_sets.values()), entity_sets
        held = {(root, n["name"]) for root, s in entity_sets.items() for n in s["schema"]["navigation_properties"]}
        assert held == {("deviceManagement", "deviceCompliancePolicies"), ("deviceManagement", "deviceConfigurations"),
                        ("deviceAppManagement", "mobileAppConfigurations")}, held
        checked = 0
        for path, _, parent_type, prefix, noun in PARENTS:
            parent = types[parent_type]
            live = live_properties(call("GET", f"{BASE}/{version}/{path}/md"))
            declared = {p["name"] for p in parent["properties"]}
            assert declared <= live, (version, parent_type, declared - live)
            navs = {n["name"]: n["type"] for n in parent["navigation_properties"]}
            expected_navs = {"userStatuses", "deviceStatuses", f"userStatus{noun}", f"deviceStatus{noun}"}
            if parent_type == "deviceConfiguration" and beta:
                expected_navs |= {"rootCertificate", "identityCertificate"}
            assert set(navs) == expected_navs, (version, parent_type, navs)
            for shape, short in [("user", "User"), ("device", "Device")]:
                status_type = types[f"{prefix}{short}Status"]
                live = live_properties(call("GET", f"{BASE}/{version}/{path}/md/{shape}Statuses/s1"))
                declared = {p["name"] for p in status_type["properties"]}
                assert declared == live, (version, status_type["name"], declared ^ live)
                assert navs[f"{shape}Statuses"] == f"Collection(microsoft.graph.{prefix}{short}Status)"
                overview_type = types[f"{prefix}{short}{noun}"]
                live = live_properties(call("GET", f"{BASE}/{version}/{path}/md/{shape}Status{noun}"))
                declared = {p["name"] for p in overview_type["properties"]}
                assert declared == live, (version, overview_type["name"], declared ^ live)
                checked += 2
        print(f"ok: {version}: {len(types)} entity types, {checked} status and overview types match the live JSON",
              flush=True)
    print("OK")


main()
