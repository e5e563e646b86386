// Interoperability check: the Microsoft Graph JavaScript client
// (@microsoft/microsoft-graph-client 3.x), unchanged, against statusd with TLS
// and bearer-token auth on.
//
// Usage: STATUSD_TOKEN=... NODE_EXTRA_CA_CERTS=ca.pem \
//        node graph_client.mjs https://127.0.0.1:PORT/ NPM_PREFIX
//
// NPM_PREFIX is where the client was installed (`npm install --prefix`).
// STATUSD_TOKEN grants DeviceManagementConfiguration.ReadWrite.All only. The
// test CA is trusted through NODE_EXTRA_CA_CERTS, which Node's global fetch
// honours. The client sends its token only to https:// URLs on Graph's hosts
// or on `customHosts`, so statusd's host is listed there. Every step asserts;
// on success the script prints one line per step and "OK".

import assert from "node:assert/strict";
import { createRequire } from "node:module";
import path from "node:path";

const [base, prefix] = process.argv.slice(2);
const require = createRequire(path.join(path.resolve(prefix), "package.json"));
const { Client } = require("@microsoft/microsoft-graph-client");
const token = process.env.STATUSD_TOKEN;
const host = new URL(base).hostname;

const step = (msg) => console.log(`ok: ${msg}`);

function client(accessToken, customHosts = new Set([host])) {
  return Client.init({
    authProvider: (done) => done(null, accessToken),
    baseUrl: base,
    defaultVersion: "v1.0",
    ...(customHosts ? { customHosts } : {}),
  });
}

async function refused(request) {
  try {
    await request;
  } catch (err) {
    return err;
  }
  assert.fail("the request succeeded");
}

const graph = client(token);
const policies = "/deviceManagement/deviceCompliancePolicies";

const created = await graph.api(policies).post({
  "@odata.type": "#microsoft.graph.windows10CompliancePolicy",
  displayName: "From the JS client",
  passwordRequired: true,
});
assert.ok(created.id, JSON.stringify(created));
assert.equal(created["@odata.type"], "#microsoft.graph.windows10CompliancePolicy");
assert.equal(created.passwordRequired, true);
step(`created policy ${created.id}`);

const listed = await graph.api(policies).get();
assert.ok(
  listed.value.some((p) => p.id === created.id),
  JSON.stringify(listed),
);
const got = await graph.api(`${policies}/${created.id}`).get();
assert.equal(got.displayName, "From the JS client");
step("listed and got the policy");

const statuses = `${policies}/${created.id}/userStatuses`;
const status = await graph.api(statuses).post({
  "@odata.type": "#microsoft.graph.deviceComplianceUserStatus",
  userDisplayName: "Adele Vance",
  devicesCount: 2,
  status: "compliant",
  lastReportedDateTime: "2017-01-01T00:01:14.9975606+03:00",
  userPrincipalName: "adele@contoso.com",
});
assert.equal(status.status, "compliant");
const page = await graph.api(statuses).top(10).count(true).get();
assert.equal(page["@odata.count"], 1);
assert.deepEqual(
  page.value.map((s) => s.userDisplayName),
  ["Adele Vance"],
);
step("created and listed a user status ($top, $count)");

let err = await refused(graph.api("/deviceAppManagement/mobileAppConfigurations").get());
assert.equal(err.statusCode, 403, String(err));
assert.equal(err.code, "Authorization_RequestDenied", String(err));
assert.match(err.message, /DeviceManagementApps\.Read\.All/);
step("403 Authorization_RequestDenied for a collection the scope does not grant");

err = await refused(client("not-a-jwt").api(policies).get());
assert.equal(err.statusCode, 401, String(err));
assert.equal(err.code, "InvalidAuthenticationToken", String(err));
step("401 InvalidAuthenticationToken for a garbage token");

// Without customHosts the client keeps the token to Graph's own hosts.
err = await refused(client(token, null).api(policies).get());
assert.equal(err.statusCode, 401, String(err));
assert.match(err.message, /No access token was sent/);
step("no token is sent to a host not in customHosts");

const beta = await graph.api("/deviceManagement/deviceConfigurations").version("beta").post({
  "@odata.type": "#microsoft.graph.windows10GeneralConfiguration",
  displayName: "Beta from JS",
});
assert.equal(beta["@odata.type"], "#microsoft.graph.windows10GeneralConfiguration");
await graph.api(`/deviceManagement/deviceConfigurations/${beta.id}`).version("beta").delete();
await graph.api(`${policies}/${created.id}`).delete();
err = await refused(graph.api(`${policies}/${created.id}`).get());
assert.equal(err.statusCode, 404, String(err));
assert.equal(err.code, "ResourceNotFound", String(err));
step("beta create and delete, v1.0 delete then 404 ResourceNotFound");

console.log("OK");
