/**
 * Keyward end to end with tenants whose master keys live in a PKCS#11 HSM (SoftHSM2):
 * the same HTTP API, binding, revocation and failure codes as with the local driver.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { edekFromBase64, edekToBase64 } from '../../src/envelope/edek.js';
import { createSoftHsmToken, cleanupSoftHsm, SOFTHSM_MODULE, type SoftHsmToken } from '../helpers/softhsm.js';
import { META, post, startTestApp, type ErrorJson, type TestApp } from '../helpers/app.js';
import { startKeyward, stopKeyward } from '../helpers/process.js';

const PIN_ENV = 'TEST_HSM_PIN';

describe('Keyward over a PKCS#11 HSM (SoftHSM2)', () => {
  let token: SoftHsmToken;
  let app: TestApp;

  const tenants = (tokenLabel: string) => `version: 1
tenants:
  hsm-gcm:
    kmsConfigs:
      - id: 1
        status: primary
        provider: pkcs11
        pkcs11: { module: ${SOFTHSM_MODULE}, tokenLabel: ${tokenLabel}, pin: { env: ${PIN_ENV} }, keyLabel: shared-mk }
  hsm-kwp:
    kmsConfigs:
      - id: 2
        status: primary
        provider: pkcs11
        pkcs11: { module: ${SOFTHSM_MODULE}, tokenLabel: ${tokenLabel}, pin: { env: ${PIN_ENV} }, keyLabel: kwp-mk, mechanism: aes-key-wrap-pad, sessions: 2 }
  hsm-shared:
    kmsConfigs:
      - id: 3
        status: primary
        provider: pkcs11
        pkcs11: { module: ${SOFTHSM_MODULE}, tokenLabel: ${tokenLabel}, pin: { env: ${PIN_ENV} }, keyLabel: shared-mk }
  hsm-revocable:
    kmsConfigs:
      - id: 4
        status: primary
        provider: pkcs11
        pkcs11: { module: ${SOFTHSM_MODULE}, tokenLabel: ${tokenLabel}, pin: { env: ${PIN_ENV} }, keyLabel: revocable-mk }
  hsm-badpin:
    kmsConfigs:
      - id: 5
        status: primary
        provider: pkcs11
        pkcs11: { module: ${SOFTHSM_MODULE}, tokenLabel: ${tokenLabel}, pin: { env: WRONG_PIN }, keyLabel: shared-mk }
  hsm-notoken:
    kmsConfigs:
      - id: 6
        status: primary
        provider: pkcs11
        pkcs11: { module: ${SOFTHSM_MODULE}, tokenLabel: no-such-token, pin: { env: ${PIN_ENV} }, keyLabel: shared-mk }
  local:
    kmsConfigs:
      - { id: 7, status: primary, provider: local, local: { keyFile: keys/local.key } }
`;

  before(async () => {
    token = await createSoftHsmToken({ label: 'keyward-e2e', keys: ['shared-mk', 'kwp-mk', 'revocable-mk'] });
    app = await startTestApp({ tenants: tenants(token.label), env: { [PIN_ENV]: token.pin, WRONG_PIN: `${token.pin}-wrong` } });
  });
  after(async () => {
    await app.close();
    await cleanupSoftHsm();
  });

  for (const tenantId of ['hsm-gcm', 'hsm-kwp']) {
    it(`${tenantId}: generate, wrap, unwrap, rewrap and batches through the HSM`, async () => {
      const gen = (await post(app, '/v1/keys/generate', { tenantId, metadata: META })).json<{ dek: string; edek: string }>();
      assert.equal(Buffer.from(gen.dek, 'base64').length, 32);
      assert.deepEqual((await post(app, '/v1/keys/unwrap', { tenantId, edek: gen.edek, metadata: META })).json(), { dek: gen.dek });
      const rewrapped = (await post(app, '/v1/keys/rewrap', { tenantId, edek: gen.edek, metadata: META })).json<{ edek: string }>().edek;
      assert.deepEqual((await post(app, '/v1/keys/unwrap', { tenantId, edek: rewrapped, metadata: META })).json(), { dek: gen.dek });
      const ids = Array.from({ length: 50 }, (_, i) => `k${i}`);
      const batch = (await post(app, '/v1/keys/batch/generate', { tenantId, ids, metadata: META })).json<{ keys: Record<string, { dek: string; edek: string }> }>();
      const edeks = Object.fromEntries(Object.entries(batch.keys).map(([id, k]) => [id, k.edek]));
      const back = (await post(app, '/v1/keys/batch/unwrap', { tenantId, edeks, metadata: META })).json<{ keys: Record<string, { dek: string }>; failures: object }>();
      assert.deepEqual(back.failures, {});
      for (const id of ids) assert.equal(back.keys[id]!.dek, batch.keys[id]!.dek);
    });
  }

  it('moves a key from the HSM tenant to the local tenant and back', async () => {
    const gen = (await post(app, '/v1/keys/generate', { tenantId: 'hsm-gcm', metadata: META })).json<{ dek: string; edek: string }>();
    const toLocal = (await post(app, '/v1/keys/rewrap', { tenantId: 'hsm-gcm', edek: gen.edek, newTenantId: 'local', metadata: META })).json<{ edek: string }>().edek;
    const back = (await post(app, '/v1/keys/rewrap', { tenantId: 'local', edek: toLocal, newTenantId: 'hsm-kwp', metadata: META })).json<{ edek: string }>().edek;
    assert.deepEqual((await post(app, '/v1/keys/unwrap', { tenantId: 'hsm-kwp', edek: back, metadata: META })).json(), { dek: gen.dek });
  });

  it('binds EDEKs to their tenant even when two tenants share one HSM key', async () => {
    const gen = (await post(app, '/v1/keys/generate', { tenantId: 'hsm-gcm', metadata: META })).json<{ edek: string }>();
    const [entry] = edekFromBase64(gen.edek);
    const forged = edekToBase64([{ ...entry!, tenantId: 'hsm-shared', kmsConfigId: 3 }]);
    const res = await post(app, '/v1/keys/unwrap', { tenantId: 'hsm-shared', edek: forged, metadata: META });
    assert.equal(res.statusCode, 400);
    assert.equal(res.json<ErrorJson>().code, 203);
  });

  it('a wrong PIN is refused with 206, a missing token with 207; other tenants keep working', async () => {
    const badPin = await post(app, '/v1/keys/generate', { tenantId: 'hsm-badpin', metadata: META });
    assert.equal(badPin.statusCode, 403);
    assert.equal(badPin.json<ErrorJson>().code, 206);
    assert.ok(!badPin.body.includes(token.pin), 'the PIN is never echoed');
    const noToken = await post(app, '/v1/keys/generate', { tenantId: 'hsm-notoken', metadata: META });
    assert.equal(noToken.statusCode, 502);
    assert.equal(noToken.json<ErrorJson>().code, 207);
    assert.match(noToken.json<ErrorJson>().message, /no-such-token/);
    const health = (await app.ops.inject('/health')).json<{ drivers: { ready: number; failed: number } }>();
    assert.equal(health.drivers.failed, 2);
    assert.equal((await post(app, '/v1/keys/generate', { tenantId: 'hsm-gcm', metadata: META })).statusCode, 200);
    assert.ok(!app.logs.join('').includes(token.pin), 'the PIN is never logged');
  });

  it('revocation: once the key is deleted from the HSM, wraps and unwraps are refused with 207', async () => {
    const gen = (await post(app, '/v1/keys/generate', { tenantId: 'hsm-revocable', metadata: META })).json<{ edek: string }>();
    assert.equal((await post(app, '/v1/keys/unwrap', { tenantId: 'hsm-revocable', edek: gen.edek, metadata: META })).statusCode, 200);
    assert.equal(await token.deleteKey('revocable-mk'), 1);
    const unwrap = await post(app, '/v1/keys/unwrap', { tenantId: 'hsm-revocable', edek: gen.edek, metadata: META });
    assert.equal(unwrap.statusCode, 502);
    assert.equal(unwrap.json<ErrorJson>().code, 207);
    const wrap = await post(app, '/v1/keys/generate', { tenantId: 'hsm-revocable', metadata: META });
    assert.equal(wrap.json<ErrorJson>().code, 207);
    assert.equal((await post(app, '/v1/keys/generate', { tenantId: 'hsm-gcm', metadata: META })).statusCode, 200);
    const metrics = (await app.ops.inject('/metrics')).body;
    assert.match(metrics, /keyward_kms_requests_total\{provider="pkcs11",operation="unwrap",outcome="key_unusable"\} [1-9]/);
  });

  it('serves HSM tenants from a real keyward process', async () => {
    const configPath = `${app.dir}/process-tenants.yaml`;
    const { writeFile } = await import('node:fs/promises');
    await writeFile(configPath, tenants(token.label));
    const proc = await startKeyward({
      KEYWARD_CONFIG: configPath,
      KEYWARD_API_KEY: 'process-api-key-0123456789',
      SOFTHSM2_CONF: process.env.SOFTHSM2_CONF!,
      [PIN_ENV]: token.pin,
    });
    try {
      const call = async (path: string, body: unknown) =>
        (await fetch(`${proc.apiUrl}${path}`, {
          method: 'POST',
          headers: { authorization: 'cmk process-api-key-0123456789', 'content-type': 'application/json' },
          body: JSON.stringify(body),
        }).then((r) => r.json())) as Record<string, string>;
      const gen = await call('/v1/keys/generate', { tenantId: 'hsm-kwp', metadata: META });
      assert.deepEqual(await call('/v1/keys/unwrap', { tenantId: 'hsm-kwp', edek: gen.edek, metadata: META }), { dek: gen.dek });
    } finally {
      await stopKeyward(proc);
    }
    assert.equal(await proc.exited, 0);
  });
});
