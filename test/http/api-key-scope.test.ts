/**
 * API keys scoped to tenant-id patterns: the environment's keys (KEYWARD_API_KEY_TENANTS)
 * and the tenants file's `apiKeys` (by SHA-256, hot-reloaded). A key used for a tenant
 * outside its patterns gets 403 — code 104 on /v1, 101 on /api/1 (the SDKs' code) — for
 * the tenant of the request and for the target of a rekey; nothing is done for it.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { tenantsFileProblems } from '../helpers/config.js';
import { loadProcessConfig } from '../../src/config/env.js';
import { API_KEY, auditSettled, json, post, startTestApp, type ErrorJson, type TestApp } from '../helpers/app.js';

const BILLING_KEY = 'billing-app-key-0123456789abcdef';
const REPORTS_KEY = 'reports-app-key-0123456789abcdef';
const sha256 = (key: string): string => createHash('sha256').update(key).digest('hex');

const tenants = (apiKeys: string) => `
version: 1
${apiKeys}
tenants:
  acme:
    kmsConfigs:
      - { id: 1, status: primary, provider: local, local: { keyFile: keys/a.key } }
  acme-eu:
    kmsConfigs:
      - { id: 2, status: primary, provider: local, local: { keyFile: keys/a.key } }
  globex:
    kmsConfigs:
      - { id: 3, status: primary, provider: local, local: { keyFile: keys/a.key } }
`;

const BILLING = `apiKeys:
  - { name: billing, sha256: ${sha256(BILLING_KEY)}, tenants: ['acme', 'acme-*'] }`;

describe('API keys scoped to tenants', () => {
  let app: TestApp;
  before(async () => {
    app = await startTestApp({ tenants: tenants(BILLING), apiKeyTenants: ['globex'] });
  });
  after(() => app.close());

  const as = (key: string) => ({ authorization: `Bearer ${key}` });
  const compat = (key: string, endpoint: string, body: unknown) =>
    app.api.inject({ method: 'POST', url: `/api/1/${endpoint}`, headers: { authorization: `cmk ${key}`, 'content-type': 'application/json' }, payload: JSON.stringify(body) });

  it('a tenants-file key acts for its own tenants only: 403 / 104 for another, nothing done, no audit event', async () => {
    assert.equal((await post(app, '/v1/keys/generate', { tenantId: 'acme', metadata: { requestingId: 'b' } }, as(BILLING_KEY))).statusCode, 200);
    assert.equal((await post(app, '/v1/keys/generate', { tenantId: 'acme-eu', metadata: { requestingId: 'b' } }, as(BILLING_KEY))).statusCode, 200);
    await auditSettled(app);
    const events = app.audit.length;
    const refused = await post(app, '/v1/keys/generate', { tenantId: 'globex', metadata: { requestingId: 'b' } }, as(BILLING_KEY));
    assert.equal(refused.statusCode, 403);
    assert.deepEqual(json<ErrorJson>(refused), { code: 104, message: 'this API key (billing) may not act for tenant globex' });
    await auditSettled(app);
    assert.equal(app.audit.length, events, 'the key service never saw it');
    assert.ok(app.logs.some((l) => l.includes('API key used for a tenant outside its scope') && l.includes('"apiKeyName":"billing"')));
    assert.ok(!app.logs.some((l) => l.includes(BILLING_KEY)), 'the key itself is never logged');
  });

  it('the environment keys follow KEYWARD_API_KEY_TENANTS', async () => {
    assert.equal((await post(app, '/v1/keys/generate', { tenantId: 'globex', metadata: { requestingId: 'e' } })).statusCode, 200);
    const refused = await post(app, '/v1/keys/generate', { tenantId: 'acme', metadata: { requestingId: 'e' } });
    assert.equal(refused.statusCode, 403);
    assert.match(json<ErrorJson>(refused).message, /KEYWARD_API_KEY\) may not act for tenant acme/);
  });

  it('every route that names a tenant is checked: unwrap, batches, rekey target, /api/1 (code 101), security events', async () => {
    const edek = json<{ edek: string }>(await post(app, '/v1/keys/generate', { tenantId: 'acme', metadata: { requestingId: 'b' } }, as(BILLING_KEY))).edek;
    const cases = [
      post(app, '/v1/keys/unwrap', { tenantId: 'globex', edek, metadata: { requestingId: 'b' } }, as(BILLING_KEY)),
      post(app, '/v1/keys/batch/unwrap', { tenantId: 'globex', edeks: { x: edek }, metadata: { requestingId: 'b' } }, as(BILLING_KEY)),
      post(app, '/v1/keys/batch/generate', { tenantId: 'globex', ids: ['x'], metadata: { requestingId: 'b' } }, as(BILLING_KEY)),
      post(app, '/v1/keys/rewrap', { tenantId: 'acme', edek, newTenantId: 'globex', metadata: { requestingId: 'b' } }, as(BILLING_KEY)),
    ];
    for (const res of await Promise.all(cases)) {
      assert.equal(res.statusCode, 403, res.body);
      assert.equal(json<ErrorJson>(res).code, 104);
    }
    const sdk = [
      compat(BILLING_KEY, 'document/wrap', { tenantId: 'globex', iclFields: { requestingId: 'b' } }),
      compat(BILLING_KEY, 'document/rekey', { tenantId: 'acme', iclFields: { requestingId: 'b' }, encryptedDocumentKey: edek, newTenantId: 'globex' }),
      compat(BILLING_KEY, 'event/security-event', { tenantId: 'globex', iclFields: { requestingId: 'b', event: 'USER_LOGIN' } }),
    ];
    for (const res of await Promise.all(sdk)) {
      assert.equal(res.statusCode, 403, res.body);
      assert.equal(json<ErrorJson>(res).code, 101, 'the SDKs know 101 and keep the message');
      assert.match(json<ErrorJson>(res).message, /may not act for tenant globex/);
    }
    assert.equal((await post(app, '/v1/keys/rewrap', { tenantId: 'acme', edek, newTenantId: 'acme-eu', metadata: { requestingId: 'b' } }, as(BILLING_KEY))).statusCode, 200);
  });

  it('the tenants file reloads its keys: a key added works at once, a key removed is refused (401)', async () => {
    assert.equal((await post(app, '/v1/keys/generate', { tenantId: 'globex', metadata: { requestingId: 'r' } }, as(REPORTS_KEY))).statusCode, 401);
    await app.rewrite(tenants(`apiKeys:\n  - { name: reports, sha256: ${sha256(REPORTS_KEY)}, tenants: ['*'] }`));
    assert.equal((await post(app, '/v1/keys/generate', { tenantId: 'globex', metadata: { requestingId: 'r' } }, as(REPORTS_KEY))).statusCode, 200);
    assert.equal((await post(app, '/v1/keys/generate', { tenantId: 'acme', metadata: { requestingId: 'b' } }, as(BILLING_KEY))).statusCode, 401);
    assert.equal((await post(app, '/v1/keys/generate', { tenantId: 'globex', metadata: { requestingId: 'e' } }, { authorization: `Bearer ${API_KEY}` })).statusCode, 200);
  });

  it('validation: bad digests, bad patterns, duplicates; KEYWARD_API_KEY_TENANTS syntax', () => {
    const problems = tenantsFileProblems;
    const duplicates = problems(
      tenants(`apiKeys:
  - { name: a, sha256: ${sha256('x')}, tenants: ['acme'] }
  - { name: a, sha256: ${sha256('x')}, tenants: ['acme'] }`),
    );
    const malformed = problems(
      tenants(`apiKeys:
  - { name: b, sha256: NOT-HEX, tenants: ['acme'] }
  - { name: c, sha256: ${sha256('y')}, tenants: ['ac me'] }
  - { name: d, sha256: ${sha256('z')}, tenants: [] }`),
    );
    const found = [...duplicates, ...malformed];
    for (const pattern of [/apiKeys\[1\]\.name: a is used twice/, /apiKeys\[1\]\.sha256: the same key is listed twice/, /apiKeys\[0\]\.sha256/, /apiKeys\[1\]\.tenants\[0\]/, /apiKeys\[2\]\.tenants/]) {
      assert.ok(found.some((p) => pattern.test(p)), `${pattern} in ${found.join('\n')}`);
    }
    const env = { KEYWARD_CONFIG: '/etc/keyward/tenants.yaml', KEYWARD_API_KEY: API_KEY };
    assert.deepEqual(loadProcessConfig({ ...env, KEYWARD_API_KEY_TENANTS: 'acme, acme-*' }, '/').apiKeyTenants, ['acme', 'acme-*']);
    assert.deepEqual(loadProcessConfig(env, '/').apiKeyTenants, ['*']);
    assert.throws(() => loadProcessConfig({ ...env, KEYWARD_API_KEY_TENANTS: 'acme,bad id' }, '/'), /KEYWARD_API_KEY_TENANTS must be/);
  });
});
