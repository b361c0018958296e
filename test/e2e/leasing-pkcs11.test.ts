/**
 * Key leasing end to end against a real PKCS#11 HSM (SoftHSM2, token in a temp dir): a
 * leased tenant whose master key is an AES-256 token key. Leased round trips touch the
 * HSM once to make the lease and then only for the background refreshes; revoking the
 * key (destroying the token object, as a tenant's HSM admin would) is noticed by the next
 * refresh, which wipes the lease, so unwraps fail with 207 within one refresh interval.
 *
 * Times: refreshInterval 300 ms (refreshes land in [270, 330) ms), maxOutage 2 s, sweeper every 60 ms.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { edekFromBase64 } from '../../src/envelope/edek.js';
import { META, post, startTestApp, type ErrorJson, type TestApp } from '../helpers/app.js';
import { cleanupSoftHsm, createSoftHsmToken, SOFTHSM_MODULE, type SoftHsmToken } from '../helpers/softhsm.js';
import { leasesOf, metric, metricsText, metricSum, pollUntil } from '../helpers/leasing.js';

const PIN_ENV = 'TEST_HSM_PIN';
const REFRESH_MS = 300;
const SWEEP_MS = Math.min(1_000, Math.max(20, Math.floor(REFRESH_MS / 5)));
/** Scheduling slack: event-loop delay, the HTTP round trip, one HSM call. */
const MARGIN_MS = 300;
const LEASING = `{ enabled: true, refreshInterval: ${REFRESH_MS}ms, maxOutage: 2s, rotateAfter: 1h, idleAfter: 1h }`;

interface Generated {
  dek: string;
  edek: string;
}

describe('key leasing over a PKCS#11 HSM (SoftHSM2)', () => {
  let token: SoftHsmToken;
  let app: TestApp;

  const hsm = (id: number, keyLabel: string, mechanism = ''): string => `
      - id: ${id}
        status: primary
        provider: pkcs11
        timeout: 1s
        retries: 1
        leasing: ${LEASING}
        pkcs11: { module: ${SOFTHSM_MODULE}, tokenLabel: ${token.label}, pin: { env: ${PIN_ENV} }, keyLabel: ${keyLabel}${mechanism} }`;

  before(async () => {
    token = await createSoftHsmToken({ label: 'keyward-leasing', keys: ['gcm-mk', 'kwp-mk', 'revocable-mk'] });
    const tenants = `version: 1
tenants:
  hsm-gcm:
    kmsConfigs:${hsm(1, 'gcm-mk')}
  hsm-kwp:
    kmsConfigs:${hsm(2, 'kwp-mk', ', mechanism: aes-key-wrap-pad')}
  hsm-revocable:
    kmsConfigs:${hsm(3, 'revocable-mk')}
`;
    app = await startTestApp({ tenants, env: { [PIN_ENV]: token.pin } });
  });
  after(async () => {
    await app?.close();
    await cleanupSoftHsm();
  });

  const unwrap = (tenantId: string, edek: string) => post(app, '/v1/keys/unwrap', { tenantId, edek, metadata: META });

  for (const tenantId of ['hsm-gcm', 'hsm-kwp']) {
    it(`${tenantId}: leased generate, wrap, unwrap, rewrap and batches; the HSM is asked once for the lease`, async () => {
      const before = await metricsText(app.ops);
      const gen = await post(app, '/v1/keys/generate', { tenantId, metadata: META });
      assert.equal(gen.statusCode, 200, gen.body);
      const g = gen.json<Generated>();
      const [entry] = edekFromBase64(g.edek);
      assert.ok(entry!.leasedKeyId > 0 && entry!.encryptedLeasedKeyData.length > 0, 'a leased EDEK carrying its ELEK');
      assert.deepEqual((await unwrap(tenantId, g.edek)).json(), { dek: g.dek });

      const own = Buffer.alloc(32, 7).toString('base64');
      const wrapped = (await post(app, '/v1/keys/wrap', { tenantId, dek: own, metadata: META })).json<{ edek: string }>().edek;
      assert.deepEqual((await unwrap(tenantId, wrapped)).json(), { dek: own });
      const rewrapped = (await post(app, '/v1/keys/rewrap', { tenantId, edek: g.edek, metadata: META })).json<{ edek: string }>().edek;
      assert.notEqual(rewrapped, g.edek);
      assert.deepEqual((await unwrap(tenantId, rewrapped)).json(), { dek: g.dek });

      const ids = Array.from({ length: 200 }, (_, i) => `k${i}`);
      const batch = (await post(app, '/v1/keys/batch/generate', { tenantId, ids, metadata: META })).json<{ keys: Record<string, Generated>; failures: object }>();
      assert.deepEqual(batch.failures, {});
      const edeks = Object.fromEntries(Object.entries(batch.keys).map(([id, k]) => [id, k.edek]));
      const back = (await post(app, '/v1/keys/batch/unwrap', { tenantId, edeks, metadata: META })).json<{ keys: Record<string, { dek: string }>; failures: object }>();
      assert.deepEqual(back.failures, {});
      for (const id of ids) assert.equal(back.keys[id]!.dek, batch.keys[id]!.dek);

      const after = await metricsText(app.ops);
      const delta = (name: string, labels: Record<string, string>): number => metricSum(after, name, labels) - metricSum(before, name, labels);
      const wraps = delta('keyward_kms_requests_total', { provider: 'pkcs11', operation: 'wrap' });
      const unwraps = delta('keyward_kms_requests_total', { provider: 'pkcs11', operation: 'unwrap' });
      const refreshed = delta('keyward_lease_refreshes_total', {});
      console.log(`leasing-pkcs11 ${tenantId}: 406 leased operations cost ${wraps} HSM wrap and ${unwraps} HSM unwraps (${refreshed} refreshes)`);
      assert.equal(wraps, 1, 'one HSM wrap made the lease');
      assert.ok(unwraps <= refreshed + 1, `only refreshes unwrap through the HSM (${unwraps} unwraps, ${refreshed} refreshes)`);
      const [lease] = await leasesOf(app.ops, tenantId);
      assert.equal(lease?.leaseId, entry!.leasedKeyId);
      assert.equal(lease.state, 'fresh');
      assert.equal(lease.current, true);

      // A background refresh re-approves the lease through the HSM (an unwrap of its ELEK).
      const okBefore = await metric(app.ops, 'keyward_lease_refreshes_total', { outcome: 'ok' });
      const { value: refreshed2, elapsedMs } = await pollUntil(
        'a successful refresh',
        async () => {
          const [now] = await leasesOf(app.ops, tenantId);
          return now && Date.parse(now.lastVerified) > Date.parse(lease.lastVerified) ? now : undefined;
        },
        { withinMs: 1.1 * REFRESH_MS + SWEEP_MS + MARGIN_MS + 1_000 },
      );
      assert.equal(refreshed2.state, 'fresh');
      assert.equal(refreshed2.leaseId, lease.leaseId);
      assert.ok((await metric(app.ops, 'keyward_lease_refreshes_total', { outcome: 'ok' })) > okBefore);
      console.log(`leasing-pkcs11 ${tenantId}: lease re-approved by the HSM ${Math.round(elapsedMs)} ms later`);
    });
  }

  it('revocation: the key deleted from the HSM → within one refresh interval unwraps fail with 207 and the lease is wiped (revoked)', async () => {
    const tenantId = 'hsm-revocable';
    const gen = await post(app, '/v1/keys/generate', { tenantId, metadata: META });
    assert.equal(gen.statusCode, 200, gen.body);
    const g = gen.json<Generated>();
    assert.deepEqual((await unwrap(tenantId, g.edek)).json(), { dek: g.dek });
    assert.equal((await leasesOf(app.ops, tenantId)).length, 1);
    const revokedBefore = await metric(app.ops, 'keyward_lease_wipes_total', { reason: 'revoked' });

    // Deleting runs softhsm key tooling in a child process; time from when it returns.
    assert.equal(await token.deleteKey('revocable-mk'), 1);
    const deletedAt = performance.now();
    let served = 0;
    const { value: refused } = await pollUntil(
      'unwrap refused after the key was deleted',
      async () => {
        const res = await unwrap(tenantId, g.edek);
        if (res.statusCode === 200) {
          served += 1;
          return undefined;
        }
        return res;
      },
      { withinMs: 5_000, everyMs: 5 },
    );
    const observedMs = performance.now() - deletedAt;
    const bound = 1.1 * REFRESH_MS + SWEEP_MS + MARGIN_MS;
    console.log(`leasing-pkcs11 revocation: first refusal ${Math.round(observedMs)} ms after the key was deleted (${served} unwraps served before it); bound ${Math.round(bound)} ms`);
    assert.equal(refused.statusCode, 502, refused.body);
    assert.equal(refused.json<ErrorJson>().code, 207);
    assert.ok(observedMs <= bound, `revocation took ${Math.round(observedMs)} ms > ${Math.round(bound)} ms`);
    assert.ok((await metric(app.ops, 'keyward_lease_wipes_total', { reason: 'revoked' })) > revokedBefore, 'wiped with reason revoked');
    assert.ok((await metric(app.ops, 'keyward_lease_refreshes_total', { outcome: 'key_unusable' })) >= 1);
    assert.equal((await leasesOf(app.ops, tenantId)).length, 0);
    const again = await post(app, '/v1/keys/generate', { tenantId, metadata: META });
    assert.equal(again.json<ErrorJson>().code, 207);
    // The other leased tenants on the same token are untouched.
    assert.equal((await post(app, '/v1/keys/generate', { tenantId: 'hsm-gcm', metadata: META })).statusCode, 200);
    assert.equal((await leasesOf(app.ops, 'hsm-gcm'))[0]?.state, 'fresh');
  });
});
