/**
 * The /api/1 tenant-security wire contract (../shared/ironcore-compat.md), field by field
 * and quirk by quirk. The published Node SDK runs against a real process in test/interop.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { API_KEY, META, json, startTestApp, type ErrorJson, type TestApp } from '../helpers/app.js';

const ICL = { requestingId: 'svc-1', dataLabel: 'PII', sourceIp: '10.1.2.3', objectId: 'doc-9', requestId: 'req-7' };

describe('tenant-security API /api/1', () => {
  let app: TestApp;
  before(async () => {
    app = await startTestApp();
  });
  after(() => app.close());

  const call = (endpoint: string, body: unknown, scheme = `cmk ${API_KEY}`) =>
    app.api.inject({
      method: 'POST',
      url: `/api/1/${endpoint}`,
      headers: { authorization: scheme, 'content-type': 'application/json', 'x-icl-tsc-language': 'node', 'x-icl-tsc-version': '4.1.3' },
      payload: JSON.stringify(body),
    });
  const wrap = async (tenantId = 'tenant-a') => json<{ dek: string; edek: string }>(await call('document/wrap', { tenantId, iclFields: ICL, customFields: {} }));

  it('document/wrap and document/unwrap round trip', async () => {
    const res = await call('document/wrap', { tenantId: 'tenant-a', iclFields: ICL, customFields: { org: 'acme' } });
    assert.equal(res.statusCode, 200);
    const { dek, edek } = json<{ dek: string; edek: string }>(res);
    assert.equal(Buffer.from(dek, 'base64').length, 32);
    const back = await call('document/unwrap', { tenantId: 'tenant-a', iclFields: ICL, customFields: {}, encryptedDocumentKey: edek });
    assert.deepEqual(json(back), { dek });
  });

  it('serves a client configured with a trailing slash (//api/1/...)', async () => {
    const res = await app.api.inject({
      method: 'POST',
      url: '//api/1/document/wrap',
      headers: { authorization: `cmk ${API_KEY}`, 'content-type': 'application/json' },
      payload: JSON.stringify({ tenantId: 'tenant-a', iclFields: ICL }),
    });
    assert.equal(res.statusCode, 200, res.body);
  });

  it('tolerates null optional fields, customFields: null, timestampMillis and unknown extras', async () => {
    const res = await call('document/wrap', {
      tenantId: 'tenant-a',
      iclFields: { requestingId: 'svc', dataLabel: null, sourceIp: null, objectId: null, requestId: null },
      customFields: null,
      timestampMillis: Date.now(),
      somethingNewer: { ignored: true },
    });
    assert.equal(res.statusCode, 200, res.body);
    const bare = await call('document/wrap', { tenantId: 'tenant-a', iclFields: { requestingId: 'svc' } });
    assert.equal(bare.statusCode, 200, bare.body);
  });

  it('requires tenantId and iclFields.requestingId (102)', async () => {
    for (const body of [{ iclFields: ICL }, { tenantId: 'tenant-a' }, { tenantId: 'tenant-a', iclFields: { requestingId: '' } }, { tenantId: '', iclFields: ICL }]) {
      const res = await call('document/wrap', body);
      assert.equal(res.statusCode, 400);
      assert.equal(json<ErrorJson>(res).code, 102);
    }
  });

  it('answers a wrong or missing key with HTTP 401 and code 101', async () => {
    for (const scheme of ['cmk wrong-key-000000000000', '']) {
      const res = await call('document/wrap', { tenantId: 'tenant-a', iclFields: ICL }, scheme);
      assert.equal(res.statusCode, 401);
      assert.equal(json<ErrorJson>(res).code, 101);
    }
  });

  it('unknown tenant → 201 with the contract message; no primary → 200', async () => {
    const unknown = await call('document/wrap', { tenantId: 'nobody', iclFields: ICL });
    assert.equal(json<ErrorJson>(unknown).code, 201);
    assert.match(json<ErrorJson>(unknown).message, /No configurations available for the provided tenant/);
    assert.equal(json<ErrorJson>(await call('document/wrap', { tenantId: 'tenant-noprimary', iclFields: ICL })).code, 200);
    assert.equal(json<ErrorJson>(await call('document/batch-wrap', { tenantId: 'tenant-noprimary', iclFields: ICL, documentIds: ['a'] })).code, 200);
  });

  it('batch-wrap and batch-unwrap always answer both maps, with per-item failures', async () => {
    const res = await call('document/batch-wrap', { tenantId: 'tenant-a', iclFields: ICL, customFields: null, documentIds: ['d1', 'd2'] });
    assert.equal(res.statusCode, 200);
    const batch = json<{ keys: Record<string, { dek: string; edek: string }>; failures: object }>(res);
    assert.deepEqual(Object.keys(batch.keys).sort(), ['d1', 'd2']);
    assert.deepEqual(batch.failures, {});
    const foreign = await wrap('tenant-b');
    const unwrap = await call('document/batch-unwrap', {
      tenantId: 'tenant-a',
      iclFields: ICL,
      edeks: { d1: batch.keys.d1!.edek, d2: batch.keys.d2!.edek, other: foreign.edek, junk: 'AAAA' },
    });
    const out = json<{ keys: Record<string, { dek: string }>; failures: Record<string, ErrorJson> }>(unwrap);
    assert.deepEqual(out.keys, { d1: { dek: batch.keys.d1!.dek }, d2: { dek: batch.keys.d2!.dek } });
    assert.deepEqual(Object.keys(out.failures).sort(), ['junk', 'other']);
    assert.equal(out.failures.other!.code, 203);
    assert.match(out.failures.other!.message, /is not assigned to tenant/);
    const empty = json<{ keys: object; failures: object }>(await call('document/batch-unwrap', { tenantId: 'tenant-a', iclFields: ICL, edeks: {} }));
    assert.deepEqual(empty, { keys: {}, failures: {} });
  });

  it('rekey answers dek and edek, to another tenant and to the same one; the old tenant is refused', async () => {
    const original = await wrap('tenant-a');
    const moved = json<{ dek: string; edek: string }>(
      await call('document/rekey', { tenantId: 'tenant-a', iclFields: ICL, encryptedDocumentKey: original.edek, newTenantId: 'tenant-b' }),
    );
    assert.equal(moved.dek, original.dek);
    assert.ok(moved.edek);
    const refused = await call('document/unwrap', { tenantId: 'tenant-a', iclFields: ICL, encryptedDocumentKey: moved.edek });
    assert.equal(json<ErrorJson>(refused).code, 203);
    assert.match(json<ErrorJson>(refused).message, /is not assigned to tenant/);
    const same = json<{ dek: string; edek: string }>(
      await call('document/rekey', { tenantId: 'tenant-b', iclFields: ICL, encryptedDocumentKey: moved.edek, newTenantId: 'tenant-b' }),
    );
    assert.equal(same.dek, original.dek);
    assert.notEqual(same.edek, moved.edek);
  });

  it('EDEKs are shared between the two faces', async () => {
    const v1 = json<{ dek: string; edek: string }>(
      await app.api.inject({ method: 'POST', url: '/v1/keys/generate', headers: { authorization: `Bearer ${API_KEY}`, 'content-type': 'application/json' }, payload: JSON.stringify({ tenantId: 'tenant-a', metadata: META }) }),
    );
    assert.deepEqual(json(await call('document/unwrap', { tenantId: 'tenant-a', iclFields: ICL, encryptedDocumentKey: v1.edek })), { dek: v1.dek });
  });

  it('security events: the literal body null, event in iclFields or at the top level, unknown tenants accepted', async () => {
    const cases = [
      { tenantId: 'tenant-a', iclFields: { ...ICL, event: 'USER_LOGIN' }, customFields: { via: 'sso' }, timestampMillis: 1_700_000_000_000 },
      { tenantId: 'tenant-a', iclFields: ICL, event: 'DATA_EXPORT', timestampMillis: 1_700_000_000_000 },
      { tenantId: 'not-configured', iclFields: { ...ICL, event: 'CUSTOM_THING_HAPPENED' }, customFields: null },
      { tenantId: 'tenant-a', iclFields: { ...ICL, event: 'ENFORCE_RETENTION_POLICY' } },
      { tenantId: 'tenant-a', iclFields: { ...ICL, event: 'PERIODIC_CREATE_BACKUP' } },
    ];
    for (const body of cases) {
      const res = await call('event/security-event', body);
      assert.equal(res.statusCode, 200, res.body);
      assert.equal(res.body, 'null');
      assert.match(res.headers['content-type'] as string, /^application\/json/);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
    const audit = app.audit.filter((e) => e.operation === 'security_event').map((e) => JSON.stringify(e)).join('\n');
    assert.match(audit, /"name":"USER_LOGIN"/);
    assert.match(audit, /"name":"DATA_EXPORT"/);
    assert.match(audit, /"tenantId":"not-configured"/);
    assert.match(audit, /"requestingId":"svc-1".*"dataLabel":"PII".*"sourceIp":"10.1.2.3".*"objectId":"doc-9".*"requestId":"req-7"/);
    assert.match(audit, /"custom":\{"via":"sso"\}/);
    assert.match(audit, /"occurredAt":"2023-11-14T22:13:20.000Z"/);
  });

  it('rejects security events outside the contract families with 301', async () => {
    for (const event of ['LOGIN', 'user_login', 'CUSTOM_', 'SOMETHING_ELSE']) {
      const res = await call('event/security-event', { tenantId: 'tenant-a', iclFields: { ...ICL, event } });
      assert.equal(res.statusCode, 400);
      assert.equal(json<ErrorJson>(res).code, 301);
      assert.notEqual(res.body, 'null', 'an error never looks like a success');
    }
    const unnamed = await call('event/security-event', { tenantId: 'tenant-a', iclFields: ICL });
    assert.equal(json<ErrorJson>(unnamed).code, 301);
  });

  it('report-operations is accepted and counted', async () => {
    const res = await call('document/report-operations', {
      tenantId: 'tenant-a',
      iclFields: ICL,
      operations: { edekA: { wraps: 3, unwraps: 5 }, edekB: { unwraps: 2 } },
    });
    assert.equal(res.statusCode, 200);
    const metrics = (await app.ops.inject('/metrics')).body;
    assert.match(metrics, /keyward_reported_operations_total\{kind="wraps"\} 3/);
    assert.match(metrics, /keyward_reported_operations_total\{kind="unwraps"\} 7/);
    assert.match(metrics, /keyward_security_events_total\{outcome="accepted"\}/);
    assert.match(metrics, /keyward_client_sdk_requests_total\{language="node"\} [1-9]/);
  });
});
