/**
 * Keyward end to end with tenants whose master keys live in AWS KMS, played by a real
 * nsmithuk/local-kms on 127.0.0.1: the whole app (tenants file, driver pool, wrappers,
 * HTTP API) with static credentials given as secret references to environment variables.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { edekFromBase64, edekToBase64 } from '../../src/envelope/edek.js';
import { META, post, startTestApp, type ErrorJson, type TestApp } from '../helpers/app.js';
import { LOCAL_KMS_REGION, TEST_ACCESS_KEY_ID, TEST_SECRET_ACCESS_KEY, startLocalKms, type LocalKms } from '../helpers/local-kms.js';

const KEY_ENV = 'TEST_AWS_ACCESS_KEY_ID';
const SECRET_ENV = 'TEST_AWS_SECRET_ACCESS_KEY';

describe('Keyward over AWS KMS (local-kms)', () => {
  let kms: LocalKms;
  let app: TestApp;

  const config = (id: number, keyId: string, extra = '') => `
      - id: ${id}
        status: primary
        provider: aws${extra}
        aws:
          region: ${LOCAL_KMS_REGION}
          keyId: ${keyId}
          endpoint: ${kms.endpoint}
          credentials: { type: static, accessKeyId: { env: ${KEY_ENV} }, secretAccessKey: { env: ${SECRET_ENV} } }`;

  before(async () => {
    kms = await startLocalKms([
      { name: 'shared', alias: 'keyward-shared' },
      { name: 'revocable' },
      { name: 'outage' },
    ]);
    const tenants = `version: 1
tenants:
  aws-a:
    kmsConfigs:${config(1, kms.keys.shared!.alias!)}
  aws-b:
    kmsConfigs:${config(2, kms.keys.shared!.arn)}
  aws-revocable:
    kmsConfigs:${config(3, kms.keys.revocable!.id)}
  aws-outage:
    kmsConfigs:${config(4, kms.keys.outage!.id, '\n        timeout: 500ms\n        retries: 1')}
  local:
    kmsConfigs:
      - { id: 9, status: primary, provider: local, local: { keyFile: keys/local.key } }
`;
    app = await startTestApp({ tenants, env: { [KEY_ENV]: TEST_ACCESS_KEY_ID, [SECRET_ENV]: TEST_SECRET_ACCESS_KEY } });
  });
  after(async () => {
    await app.close();
    await kms.close();
  });

  it('generate, wrap, unwrap and rewrap, single and in batches, through AWS KMS', async () => {
    const tenantId = 'aws-a';
    const gen = await post(app, '/v1/keys/generate', { tenantId, metadata: META });
    assert.equal(gen.statusCode, 200, gen.body);
    const { dek, edek } = gen.json<{ dek: string; edek: string }>();
    assert.equal(Buffer.from(dek, 'base64').length, 32);
    assert.deepEqual((await post(app, '/v1/keys/unwrap', { tenantId, edek, metadata: META })).json(), { dek });

    const own = randomBytes(32).toString('base64');
    const wrapped = (await post(app, '/v1/keys/wrap', { tenantId, dek: own, metadata: META })).json<{ edek: string }>().edek;
    assert.deepEqual((await post(app, '/v1/keys/unwrap', { tenantId, edek: wrapped, metadata: META })).json(), { dek: own });

    const rewrapped = (await post(app, '/v1/keys/rewrap', { tenantId, edek, metadata: META })).json<{ edek: string }>().edek;
    assert.notEqual(rewrapped, edek);
    assert.deepEqual((await post(app, '/v1/keys/unwrap', { tenantId, edek: rewrapped, metadata: META })).json(), { dek });

    // To another tenant on the same AWS key, to a local tenant, and back.
    const toB = (await post(app, '/v1/keys/rewrap', { tenantId, edek, newTenantId: 'aws-b', metadata: META })).json<{ edek: string }>().edek;
    assert.deepEqual((await post(app, '/v1/keys/unwrap', { tenantId: 'aws-b', edek: toB, metadata: META })).json(), { dek });
    const toLocal = (await post(app, '/v1/keys/rewrap', { tenantId: 'aws-b', edek: toB, newTenantId: 'local', metadata: META })).json<{ edek: string }>().edek;
    const back = (await post(app, '/v1/keys/rewrap', { tenantId: 'local', edek: toLocal, newTenantId: tenantId, metadata: META })).json<{ edek: string }>().edek;
    assert.deepEqual((await post(app, '/v1/keys/unwrap', { tenantId, edek: back, metadata: META })).json(), { dek });

    const ids = Array.from({ length: 40 }, (_, i) => `k${i}`);
    const batch = (await post(app, '/v1/keys/batch/generate', { tenantId, ids, metadata: META })).json<{ keys: Record<string, { dek: string; edek: string }>; failures: object }>();
    assert.deepEqual(batch.failures, {});
    const edeks = Object.fromEntries(Object.entries(batch.keys).map(([id, k]) => [id, k.edek]));
    const unwrapped = (await post(app, '/v1/keys/batch/unwrap', { tenantId, edeks, metadata: META })).json<{ keys: Record<string, { dek: string }>; failures: object }>();
    assert.deepEqual(unwrapped.failures, {});
    for (const id of ids) assert.equal(unwrapped.keys[id]!.dek, batch.keys[id]!.dek);
  });

  it("refuses one tenant's EDEK under another tenant that uses the same AWS key (203)", async () => {
    const gen = (await post(app, '/v1/keys/generate', { tenantId: 'aws-a', metadata: META })).json<{ edek: string }>();
    const [entry] = edekFromBase64(gen.edek);
    // The same KMS ciphertext relabelled for tenant b's config on the same key: the
    // encryption context (tenant, config) no longer matches, so KMS refuses it.
    const forged = edekToBase64([{ ...entry!, tenantId: 'aws-b', kmsConfigId: 2 }]);
    const res = await post(app, '/v1/keys/unwrap', { tenantId: 'aws-b', edek: forged, metadata: META });
    assert.equal(res.statusCode, 400);
    assert.equal(res.json<ErrorJson>().code, 203);
    // Presented under its own tenant, the untouched EDEK still works.
    assert.equal((await post(app, '/v1/keys/unwrap', { tenantId: 'aws-a', edek: gen.edek, metadata: META })).statusCode, 200);
  });

  it('a key disabled in KMS: wraps and unwraps fail with 502 / 207; enabled again, they work', async () => {
    const tenantId = 'aws-revocable';
    const gen = (await post(app, '/v1/keys/generate', { tenantId, metadata: META })).json<{ dek: string; edek: string }>();
    await kms.disable('revocable');
    const unwrap = await post(app, '/v1/keys/unwrap', { tenantId, edek: gen.edek, metadata: META });
    assert.equal(unwrap.statusCode, 502);
    assert.equal(unwrap.json<ErrorJson>().code, 207);
    const generate = await post(app, '/v1/keys/generate', { tenantId, metadata: META });
    assert.equal(generate.statusCode, 502);
    assert.equal(generate.json<ErrorJson>().code, 207);
    // Other tenants are unaffected.
    assert.equal((await post(app, '/v1/keys/generate', { tenantId: 'aws-a', metadata: META })).statusCode, 200);
    const metrics = (await app.ops.inject('/metrics')).body;
    assert.match(metrics, /keyward_kms_requests_total\{provider="aws",operation="unwrap",outcome="key_unusable"\} 1\b/);

    await kms.enable('revocable');
    assert.deepEqual((await post(app, '/v1/keys/unwrap', { tenantId, edek: gen.edek, metadata: META })).json(), { dek: gen.dek });
  });

  it('KMS down: 503 / 208 with Retry-After; back up: served again', async () => {
    const tenantId = 'aws-outage';
    const gen = (await post(app, '/v1/keys/generate', { tenantId, metadata: META })).json<{ dek: string; edek: string }>();
    await kms.emulator.stop();
    try {
      const started = Date.now();
      const unwrap = await post(app, '/v1/keys/unwrap', { tenantId, edek: gen.edek, metadata: META });
      assert.equal(unwrap.statusCode, 503);
      assert.equal(unwrap.json<ErrorJson>().code, 208);
      assert.ok(Number(unwrap.headers['retry-after']) >= 1, `Retry-After: ${String(unwrap.headers['retry-after'])}`);
      assert.ok(Date.now() - started < 2 * 500 + 1_000, 'bounded by timeout × attempts');
      const generate = await post(app, '/v1/keys/generate', { tenantId, metadata: META });
      assert.equal(generate.statusCode, 503);
      assert.equal(generate.json<ErrorJson>().code, 208);
      assert.ok(generate.headers['retry-after'] !== undefined);
      const metrics = (await app.ops.inject('/metrics')).body;
      assert.match(metrics, /keyward_kms_retries_total\{provider="aws",operation="unwrap",reason="unreachable"\} [1-9]/, 'an outage is retried');
    } finally {
      await kms.emulator.start();
    }
    assert.deepEqual((await post(app, '/v1/keys/unwrap', { tenantId, edek: gen.edek, metadata: META })).json(), { dek: gen.dek });
    assert.equal((await post(app, '/v1/keys/generate', { tenantId, metadata: META })).statusCode, 200);
  });

  it('never logs the AWS credentials', () => {
    const log = app.logs.join('');
    assert.ok(log.includes('AWS KMS'), 'the AWS driver logged');
    assert.ok(!log.includes(TEST_SECRET_ACCESS_KEY));
    assert.ok(!log.includes(TEST_ACCESS_KEY_ID));
  });
});
