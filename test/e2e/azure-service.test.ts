/**
 * Keyward end to end with tenants whose master keys live in Azure Key Vault, played by the
 * Key Vault STAND-IN (test/helpers/azure-keyvault-standin.ts, our own implementation of the
 * documented REST protocol — no independent emulator can be installed here) with the token
 * stand-in as the Microsoft Entra authority: the whole app (tenants file, driver pool,
 * wrappers, HTTP API), the client secret given as a secret reference to an environment variable.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { edekFromBase64, edekToBase64 } from '../../src/envelope/edek.js';
import { META, post, startTestApp, type ErrorJson, type TestApp } from '../helpers/app.js';
import { startFaultProxy, type FaultProxy } from '../helpers/fault-proxy.js';
import { startKeyVaultStandin, type KeyVaultStandin } from '../helpers/azure-keyvault-standin.js';
import { startTokenStandin, type TokenStandin } from '../helpers/azure-token-standin.js';

const TENANT = '5e2a9c41-3b7d-4f08-a6c2-9d1e4b7f0a35';
const CLIENT_ID = 'keyward-e2e';
const SECRET_ENV = 'TEST_AZURE_CLIENT_SECRET';
const CLIENT_SECRET = `e2e-secret-${randomBytes(16).toString('hex')}`;

describe('Keyward over Azure Key Vault (stand-in)', () => {
  let tokens: TokenStandin;
  let vault: KeyVaultStandin;
  let proxy: FaultProxy;
  let app: TestApp;

  const config = (id: number, keyName: string, options: { vaultUrl?: string; algorithm?: string; extra?: string } = {}) => `
      - id: ${id}
        status: primary
        provider: azure${options.extra ?? ''}
        azure:
          vaultUrl: ${options.vaultUrl ?? vault.vaultUrl}
          keyName: ${keyName}${options.algorithm ? `\n          algorithm: ${options.algorithm}` : ''}
          disableChallengeResourceVerification: true
          credentials:
            type: clientSecret
            tenantId: ${TENANT}
            clientId: ${CLIENT_ID}
            clientSecret: { env: ${SECRET_ENV} }
            authorityHost: ${tokens.authorityHost}
            disableInstanceDiscovery: true`;

  before(async () => {
    tokens = await startTokenStandin();
    tokens.registerClient(TENANT, CLIENT_ID, { secret: CLIENT_SECRET });
    vault = await startKeyVaultStandin({ tokens, tenantId: TENANT });
    for (const name of ['shared', 'revocable', 'outage']) vault.createKey(name);
    vault.createKey('hsm', 'oct-HSM');
    proxy = await startFaultProxy(vault.port);
    const tenants = `version: 1
tenants:
  az-a:
    kmsConfigs:${config(1, 'shared')}
  az-b:
    kmsConfigs:${config(2, 'shared')}
  az-hsm:
    kmsConfigs:${config(3, 'hsm', { algorithm: 'A256KW' })}
  az-revocable:
    kmsConfigs:${config(4, 'revocable')}
  az-outage:
    kmsConfigs:${config(5, 'outage', { vaultUrl: `https://127.0.0.1:${proxy.port}`, extra: '\n        timeout: 500ms\n        retries: 1' })}
  local:
    kmsConfigs:
      - { id: 9, status: primary, provider: local, local: { keyFile: keys/local.key } }
`;
    app = await startTestApp({ tenants, env: { [SECRET_ENV]: CLIENT_SECRET } });
  });
  after(async () => {
    await app.close();
    await proxy.close();
    await vault.close();
    await tokens.close();
  });

  for (const tenantId of ['az-a', 'az-hsm']) {
    it(`${tenantId}: generate, wrap, unwrap and rewrap, single and in batches, through Key Vault`, async () => {
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

      // To a local tenant and back.
      const toLocal = (await post(app, '/v1/keys/rewrap', { tenantId, edek, newTenantId: 'local', metadata: META })).json<{ edek: string }>().edek;
      const back = (await post(app, '/v1/keys/rewrap', { tenantId: 'local', edek: toLocal, newTenantId: tenantId, metadata: META })).json<{ edek: string }>().edek;
      assert.deepEqual((await post(app, '/v1/keys/unwrap', { tenantId, edek: back, metadata: META })).json(), { dek });

      const ids = Array.from({ length: 30 }, (_, i) => `k${i}`);
      const batch = (await post(app, '/v1/keys/batch/generate', { tenantId, ids, metadata: META })).json<{ keys: Record<string, { dek: string; edek: string }>; failures: object }>();
      assert.deepEqual(batch.failures, {});
      const edeks = Object.fromEntries(Object.entries(batch.keys).map(([id, k]) => [id, k.edek]));
      const unwrapped = (await post(app, '/v1/keys/batch/unwrap', { tenantId, edeks, metadata: META })).json<{ keys: Record<string, { dek: string }>; failures: object }>();
      assert.deepEqual(unwrapped.failures, {});
      for (const id of ids) assert.equal(unwrapped.keys[id]!.dek, batch.keys[id]!.dek);
    });
  }

  it("refuses one tenant's EDEK under another tenant that uses the same Azure key (203)", async () => {
    const gen = (await post(app, '/v1/keys/generate', { tenantId: 'az-a', metadata: META })).json<{ edek: string }>();
    const [entry] = edekFromBase64(gen.edek);
    // The vault unwraps the relabelled blob (same key), but the tenant binding inside it no longer matches.
    const forged = edekToBase64([{ ...entry!, tenantId: 'az-b', kmsConfigId: 2 }]);
    const res = await post(app, '/v1/keys/unwrap', { tenantId: 'az-b', edek: forged, metadata: META });
    assert.equal(res.statusCode, 400);
    assert.equal(res.json<ErrorJson>().code, 203);
    assert.equal((await post(app, '/v1/keys/unwrap', { tenantId: 'az-a', edek: gen.edek, metadata: META })).statusCode, 200);
  });

  it('a key disabled in the vault: wraps and unwraps fail with 502 / 207; enabled again, they work', async () => {
    const tenantId = 'az-revocable';
    const gen = (await post(app, '/v1/keys/generate', { tenantId, metadata: META })).json<{ dek: string; edek: string }>();
    const version = vault.currentVersion('revocable');
    vault.setEnabled('revocable', version, false);
    const unwrap = await post(app, '/v1/keys/unwrap', { tenantId, edek: gen.edek, metadata: META });
    assert.equal(unwrap.statusCode, 502);
    assert.equal(unwrap.json<ErrorJson>().code, 207);
    const generate = await post(app, '/v1/keys/generate', { tenantId, metadata: META });
    assert.equal(generate.statusCode, 502);
    assert.equal(generate.json<ErrorJson>().code, 207);
    assert.equal((await post(app, '/v1/keys/generate', { tenantId: 'az-a', metadata: META })).statusCode, 200, 'other tenants are unaffected');
    const metrics = (await app.ops.inject('/metrics')).body;
    assert.match(metrics, /keyward_kms_requests_total\{provider="azure",operation="unwrap",outcome="key_unusable"\} 1\b/);

    vault.setEnabled('revocable', version, true);
    assert.deepEqual((await post(app, '/v1/keys/unwrap', { tenantId, edek: gen.edek, metadata: META })).json(), { dek: gen.dek });
  });

  it('vault down: 503 / 208 with Retry-After; back up: served again', async () => {
    const tenantId = 'az-outage';
    const gen = (await post(app, '/v1/keys/generate', { tenantId, metadata: META })).json<{ dek: string; edek: string }>();
    await proxy.setMode('refuse');
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
      assert.match(metrics, /keyward_kms_retries_total\{provider="azure",operation="unwrap",reason="unreachable"\} [1-9]/, 'an outage is retried');
    } finally {
      await proxy.setMode('pass');
    }
    assert.deepEqual((await post(app, '/v1/keys/unwrap', { tenantId, edek: gen.edek, metadata: META })).json(), { dek: gen.dek });
    assert.equal((await post(app, '/v1/keys/generate', { tenantId, metadata: META })).statusCode, 200);
  });

  it('never logs the client secret or an access token', () => {
    const log = app.logs.join('');
    assert.ok(log.includes('Azure Key Vault driver ready'), 'the Azure driver logged');
    assert.ok(!log.includes(CLIENT_SECRET));
    assert.ok(!/standin\.[A-Za-z0-9_-]{20,}/.test(log));
  });
});
