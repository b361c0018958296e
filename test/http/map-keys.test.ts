/**
 * Regressions found by the fast-check fuzz tests: JSON maps (batch ids, derivation paths,
 * reported operations) whose keys hold line breaks skipped validation and vanished from
 * answers, and absurd counts overflowed a counter into a 500.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { API_KEY, json, post, startTestApp, type ErrorJson, type TestApp } from '../helpers/app.js';

describe('map keys with line breaks, and bounded counts', () => {
  let app: TestApp;
  before(async () => {
    app = await startTestApp({
      tenants: `version: 1
tenants:
  tenant-a:
    kmsConfigs:
      - { id: 11, status: primary, provider: local, local: { keyFile: keys/a.key } }
    derivationSecrets:
      - { id: 5, state: current, kmsConfigId: 11, wrapped: { file: secrets/a5.b64, createIfMissing: true } }
`,
    });
  });
  after(() => app.close());
  const compat = (endpoint: string, body: unknown) =>
    app.api.inject({ method: 'POST', url: `/api/1/${endpoint}`, headers: { authorization: `cmk ${API_KEY}`, 'content-type': 'application/json' }, payload: JSON.stringify(body) });

  it('batch ids with line breaks are answered, never dropped', async () => {
    const ids = ['\n', ' \n', 'a\r\nb', '\u2028'];
    const generated = json<{ keys: Record<string, { edek: string }>; failures: object }>(await post(app, '/v1/keys/batch/generate', { tenantId: 'tenant-a', ids, metadata: { requestingId: 'x' } }));
    assert.deepEqual(Object.keys(generated.keys).sort(), [...ids].sort());
    const edeks = Object.fromEntries(ids.map((id) => [id, generated.keys[id]!.edek]));
    const unwrapped = json<{ keys: object; failures: Record<string, ErrorJson> }>(await post(app, '/v1/keys/batch/unwrap', { tenantId: 'tenant-a', edeks: { ...edeks, '\nbad': 'AAAA' }, metadata: { requestingId: 'x' } }));
    assert.deepEqual(Object.keys(unwrapped.keys).sort(), [...ids].sort());
    assert.equal(unwrapped.failures['\nbad']?.code, 203);
    const sdk = json<{ keys: object; failures: Record<string, ErrorJson> }>(await compat('document/batch-unwrap', { tenantId: 'tenant-a', iclFields: { requestingId: 'x' }, edeks: { '\n': edeks['\n'], ' \n': 'AAAA' } }));
    assert.deepEqual(Object.keys(sdk.keys), ['\n']);
    assert.equal(sdk.failures[' \n']?.code, 203);
  });

  it('a map value of the wrong type is a 400 whatever its key', async () => {
    const res = await compat('key/derive-with-secret-path', { tenantId: 'tenant-a', iclFields: { requestingId: ' ' }, paths: { '\n': { tenantId: null } }, derivationType: 'sha256', secretType: 'deterministic' });
    assert.equal(res.statusCode, 400);
    assert.equal(json<ErrorJson>(res).code, 102);
    const bad = await post(app, '/v1/keys/batch/unwrap', { tenantId: 'tenant-a', edeks: { '\n': 42 }, metadata: { requestingId: 'x' } });
    assert.equal(bad.statusCode, 400);
    const longKey = await post(app, '/v1/keys/generate', { tenantId: 'tenant-a', metadata: { requestingId: 'x', custom: { ['k'.repeat(129)]: 'v' } } });
    assert.equal(longKey.statusCode, 400, 'custom field names are at most 128 characters');
  });

  it('report-operations: counts are bounded (400), never a 500', async () => {
    const huge = await compat('document/report-operations', { operations: { '': { unwraps: 1e300 }, ' ': { unwraps: 1.7976931348623157e308 } } });
    assert.equal(huge.statusCode, 400);
    assert.equal(json<ErrorJson>(huge).code, 102);
    const fine = await compat('document/report-operations', { operations: { '\n': { wraps: 3, unwraps: 1_000_000_000 } } });
    assert.equal(fine.statusCode, 200);
  });
});
