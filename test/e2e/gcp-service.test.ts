/**
 * Keyward end to end with tenants whose master keys live in Google Cloud KMS — here the
 * Cloud KMS STAND-IN (test/helpers/gcp-kms-standin.ts), a real gRPC server written by
 * Keyward from the client's own .proto files, since no independent emulator is
 * installable (docs/kms/gcp.md). The whole app runs: tenants file, driver pool, wrappers,
 * HTTP API. What is proven is Keyward's side (codes, binding, recovery) over the real
 * protocol; the service's own behaviour is our reading of Google's documentation.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import type { KeyManagementServiceClient } from '@google-cloud/kms';
import { edekFromBase64, edekToBase64 } from '../../src/envelope/edek.js';
import { META, post, startTestApp, type ErrorJson, type TestApp } from '../helpers/app.js';
import { startFaultProxy, type FaultProxy } from '../helpers/fault-proxy.js';
import { Faults, createStandInKey, standInAdminClient, startGcpKmsStandIn, type GcpKmsStandIn } from '../helpers/gcp-kms-standin.js';

const RING = 'projects/keyward-e2e/locations/europe-west1/keyRings/tenants';

describe('Keyward over Google Cloud KMS (Cloud KMS stand-in)', () => {
  let standIn: GcpKmsStandIn;
  let admin: KeyManagementServiceClient;
  let proxy: FaultProxy;
  let app: TestApp;
  let sharedKey: string;
  let disableKey: string;
  let revokeKey: string;

  before(async () => {
    standIn = await startGcpKmsStandIn();
    admin = standInAdminClient(standIn);
    proxy = await startFaultProxy(standIn.port);
    sharedKey = await createStandInKey(admin, `${RING}/cryptoKeys/shared`);
    disableKey = await createStandInKey(admin, `${RING}/cryptoKeys/disable-me`);
    revokeKey = await createStandInKey(admin, `${RING}/cryptoKeys/revoke-me`);
    const gcp = (id: number, keyName: string, endpoint = standIn.endpoint) =>
      `      - { id: ${id}, status: primary, provider: gcp, timeout: 2s, retries: 1, gcp: { keyName: ${keyName}, endpoint: '${endpoint}', tls: false } }`;
    app = await startTestApp({
      tenants: `version: 1
tenants:
  gcp-a:
    kmsConfigs:
${gcp(1, sharedKey)}
  gcp-b:
    kmsConfigs:
${gcp(2, sharedKey)}
  gcp-disable:
    kmsConfigs:
${gcp(3, disableKey)}
  gcp-revoke:
    kmsConfigs:
${gcp(4, revokeKey)}
  gcp-outage:
    kmsConfigs:
${gcp(5, sharedKey, `127.0.0.1:${proxy.port}`)}
  local:
    kmsConfigs:
      - { id: 6, status: primary, provider: local, local: { keyFile: keys/local.key } }
`,
    });
  });
  after(async () => {
    await app.close();
    await proxy.close();
    await admin.close();
    await standIn.close();
  });

  it('generate, wrap, unwrap, rewrap and batches through Cloud KMS', async () => {
    const tenantId = 'gcp-a';
    const gen = (await post(app, '/v1/keys/generate', { tenantId, metadata: META })).json<{ dek: string; edek: string }>();
    assert.equal(Buffer.from(gen.dek, 'base64').length, 32);
    assert.deepEqual((await post(app, '/v1/keys/unwrap', { tenantId, edek: gen.edek, metadata: META })).json(), { dek: gen.dek });

    const dek = randomBytes(32).toString('base64');
    const wrap = await post(app, '/v1/keys/wrap', { tenantId, dek, metadata: META });
    assert.equal(wrap.statusCode, 200);
    const wrapped = wrap.json<{ edek: string }>().edek;
    assert.deepEqual((await post(app, '/v1/keys/unwrap', { tenantId, edek: wrapped, metadata: META })).json(), { dek });

    const rewrapped = (await post(app, '/v1/keys/rewrap', { tenantId, edek: gen.edek, metadata: META })).json<{ edek: string }>().edek;
    assert.deepEqual((await post(app, '/v1/keys/unwrap', { tenantId, edek: rewrapped, metadata: META })).json(), { dek: gen.dek });

    // Across providers and back: Cloud KMS → local → Cloud KMS.
    const toLocal = (await post(app, '/v1/keys/rewrap', { tenantId, edek: gen.edek, newTenantId: 'local', metadata: META })).json<{ edek: string }>().edek;
    const back = (await post(app, '/v1/keys/rewrap', { tenantId: 'local', edek: toLocal, newTenantId: 'gcp-b', metadata: META })).json<{ edek: string }>().edek;
    assert.deepEqual((await post(app, '/v1/keys/unwrap', { tenantId: 'gcp-b', edek: back, metadata: META })).json(), { dek: gen.dek });

    const ids = Array.from({ length: 40 }, (_, i) => `k${i}`);
    const batch = (await post(app, '/v1/keys/batch/generate', { tenantId, ids, metadata: META })).json<{ keys: Record<string, { dek: string; edek: string }>; failures: object }>();
    assert.deepEqual(batch.failures, {});
    const edeks = Object.fromEntries(Object.entries(batch.keys).map(([id, k]) => [id, k.edek]));
    const unwrapped = (await post(app, '/v1/keys/batch/unwrap', { tenantId, edeks, metadata: META })).json<{ keys: Record<string, { dek: string }>; failures: object }>();
    assert.deepEqual(unwrapped.failures, {});
    for (const id of ids) assert.equal(unwrapped.keys[id]!.dek, batch.keys[id]!.dek);

    const logs = app.logs.join('');
    assert.ok(!logs.includes(gen.dek) && !logs.includes(dek), 'no DEK is ever logged');
  });

  it('binds EDEKs to their tenant even when two tenants share one Cloud KMS key (203)', async () => {
    const gen = (await post(app, '/v1/keys/generate', { tenantId: 'gcp-a', metadata: META })).json<{ edek: string }>();
    const [entry] = edekFromBase64(gen.edek);
    const forged = edekToBase64([{ ...entry!, tenantId: 'gcp-b', kmsConfigId: 2 }]);
    standIn.resetCounts();
    const res = await post(app, '/v1/keys/unwrap', { tenantId: 'gcp-b', edek: forged, metadata: META });
    assert.equal(res.statusCode, 400);
    assert.equal(res.json<ErrorJson>().code, 203);
    assert.equal(standIn.calls('Decrypt'), 1, 'Cloud KMS itself refused it: the AAD differs');
    const plain = await post(app, '/v1/keys/unwrap', { tenantId: 'gcp-b', edek: gen.edek, metadata: META });
    assert.equal(plain.statusCode, 400, 'an unmodified EDEK of another tenant is refused too');
  });

  it('a disabled key version: 502/207 for single calls and batch items; back to 200 once enabled', async () => {
    const tenantId = 'gcp-disable';
    const gen = (await post(app, '/v1/keys/generate', { tenantId, metadata: META })).json<{ dek: string; edek: string }>();
    const version = `${disableKey}/cryptoKeyVersions/1`;
    await admin.updateCryptoKeyVersion({ cryptoKeyVersion: { name: version, state: 'DISABLED' }, updateMask: { paths: ['state'] } });
    try {
      standIn.resetCounts();
      const unwrap = await post(app, '/v1/keys/unwrap', { tenantId, edek: gen.edek, metadata: META });
      assert.equal(unwrap.statusCode, 502);
      assert.equal(unwrap.json<ErrorJson>().code, 207);
      assert.match(unwrap.json<ErrorJson>().message, /DISABLED/);
      const generate = await post(app, '/v1/keys/generate', { tenantId, metadata: META });
      assert.equal(generate.statusCode, 502);
      assert.equal(generate.json<ErrorJson>().code, 207);
      assert.equal(standIn.calls('Decrypt') + standIn.calls('Encrypt'), 2, 'a disabled key is never retried');
      const batch = (await post(app, '/v1/keys/batch/unwrap', { tenantId, edeks: { one: gen.edek }, metadata: META })).json<{ failures: Record<string, ErrorJson> }>();
      assert.equal(batch.failures.one?.code, 207);
    } finally {
      await admin.updateCryptoKeyVersion({ cryptoKeyVersion: { name: version, state: 'ENABLED' }, updateMask: { paths: ['state'] } });
    }
    assert.deepEqual((await post(app, '/v1/keys/unwrap', { tenantId, edek: gen.edek, metadata: META })).json(), { dek: gen.dek });
  });

  it('a revoked IAM grant: 403/206; throttling: 503/209 with Retry-After', async () => {
    const gen = (await post(app, '/v1/keys/generate', { tenantId: 'gcp-revoke', metadata: META })).json<{ edek: string }>();
    standIn.revoke(revokeKey);
    try {
      const res = await post(app, '/v1/keys/unwrap', { tenantId: 'gcp-revoke', edek: gen.edek, metadata: META });
      assert.equal(res.statusCode, 403);
      assert.equal(res.json<ErrorJson>().code, 206);
    } finally {
      standIn.grant(revokeKey);
    }
    standIn.setFault('Encrypt', Faults.quotaExceeded());
    try {
      const res = await post(app, '/v1/keys/generate', { tenantId: 'gcp-revoke', metadata: META });
      assert.equal(res.statusCode, 503);
      assert.equal(res.json<ErrorJson>().code, 209);
      assert.ok(Number(res.headers['retry-after']) >= 1);
    } finally {
      standIn.setFault('Encrypt', undefined);
    }
  });

  it('Cloud KMS down: 503/208 with Retry-After, in bounded time; other tenants unaffected; recovery when back', async () => {
    const tenantId = 'gcp-outage';
    const gen = (await post(app, '/v1/keys/generate', { tenantId, metadata: META })).json<{ dek: string; edek: string }>();
    await proxy.setMode('refuse');
    try {
      const start = Date.now();
      const unwrap = await post(app, '/v1/keys/unwrap', { tenantId, edek: gen.edek, metadata: META });
      assert.equal(unwrap.statusCode, 503);
      assert.equal(unwrap.json<ErrorJson>().code, 208);
      assert.ok(Number(unwrap.headers['retry-after']) >= 1, 'Retry-After is set');
      const generate = await post(app, '/v1/keys/generate', { tenantId, metadata: META });
      assert.equal(generate.json<ErrorJson>().code, 208);
      assert.ok(Date.now() - start < 5_000, 'no SDK retry loop underneath');
      const batch = (await post(app, '/v1/keys/batch/unwrap', { tenantId, edeks: { one: gen.edek }, metadata: META })).json<{ failures: Record<string, ErrorJson> }>();
      assert.equal(batch.failures.one?.code, 208);
      assert.equal((await post(app, '/v1/keys/generate', { tenantId: 'gcp-a', metadata: META })).statusCode, 200, 'the same key by another route still works');
    } finally {
      await proxy.setMode('pass');
    }
    const deadline = Date.now() + 15_000;
    for (;;) {
      const res = await post(app, '/v1/keys/unwrap', { tenantId, edek: gen.edek, metadata: META });
      if (res.statusCode === 200) {
        assert.deepEqual(res.json(), { dek: gen.dek });
        break;
      }
      assert.ok(Date.now() < deadline, `no recovery: ${res.body}`);
      await new Promise((r) => setTimeout(r, 250));
    }
    const metrics = (await app.ops.inject('/metrics')).body;
    assert.match(metrics, /keyward_kms_requests_total\{provider="gcp",operation="unwrap",outcome="unreachable"\} [1-9]/);
    assert.match(metrics, /keyward_kms_requests_total\{provider="gcp",operation="wrap",outcome="ok"\} [1-9]/);
  });
});
