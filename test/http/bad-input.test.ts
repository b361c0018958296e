import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { API_KEY, META, post, startTestApp, type ErrorJson, type TestApp } from '../helpers/app.js';

/**
 * Every kind of bad input gets a documented 4xx with its code, and the service keeps
 * serving afterwards.
 */
describe('bad input', () => {
  let app: TestApp;
  before(async () => {
    app = await startTestApp({ bodyLimit: 64 * 1024 });
  });
  after(() => app.close());

  const dek = randomBytes(32).toString('base64');
  const cases: Array<{ name: string; url?: string; method?: 'POST' | 'GET' | 'PUT'; body: string; contentType?: string; status: number; code: number; message?: RegExp }> = [
    { name: 'malformed JSON', body: '{"tenantId": "tenant-a",', status: 400, code: 102, message: /not valid JSON/ },
    { name: 'empty body', body: '', status: 400, code: 102, message: /empty/ },
    { name: 'JSON that is not an object', body: '[1,2,3]', status: 400, code: 102 },
    { name: 'JSON null', body: 'null', status: 400, code: 102 },
    { name: 'prototype poisoning', body: '{"tenantId":"tenant-a","metadata":{"requestingId":"x"},"__proto__":{"admin":true}}', status: 400, code: 102 },
    { name: 'wrong content type', body: 'tenantId=tenant-a', contentType: 'application/x-www-form-urlencoded', status: 415, code: 102 },
    { name: 'text/plain content type', body: '{}', contentType: 'text/plain', status: 415, code: 102 },
    { name: 'missing tenantId', body: JSON.stringify({ metadata: META }), status: 400, code: 102, message: /tenantId/ },
    { name: 'missing metadata', body: JSON.stringify({ tenantId: 'tenant-a' }), status: 400, code: 102, message: /metadata/ },
    { name: 'missing requestingId', body: JSON.stringify({ tenantId: 'tenant-a', metadata: {} }), status: 400, code: 102, message: /requestingId/ },
    { name: 'empty requestingId', body: JSON.stringify({ tenantId: 'tenant-a', metadata: { requestingId: '' } }), status: 400, code: 102 },
    { name: 'empty tenantId', body: JSON.stringify({ tenantId: '', metadata: META }), status: 400, code: 102 },
    { name: 'tenantId of the wrong type', body: JSON.stringify({ tenantId: 42, metadata: META }), status: 400, code: 102, message: /tenantId/ },
    { name: 'unknown field', body: JSON.stringify({ tenantId: 'tenant-a', metadata: META, extra: 1 }), status: 400, code: 102 },
    { name: 'custom field that is not a string', body: JSON.stringify({ tenantId: 'tenant-a', metadata: { requestingId: 'x', custom: { n: 1 } } }), status: 400, code: 102 },
    { name: 'overlong tenantId', body: JSON.stringify({ tenantId: 't'.repeat(300), metadata: META }), status: 400, code: 102 },
    { name: 'oversized body', body: JSON.stringify({ tenantId: 'tenant-a', metadata: { requestingId: 'x'.repeat(100 * 1024) } }), status: 413, code: 102 },
    { name: 'DEK that is not base64', url: '/v1/keys/wrap', body: JSON.stringify({ tenantId: 'tenant-a', dek: 'not*base64', metadata: META }), status: 400, code: 102, message: /32 bytes/ },
    { name: 'DEK of 31 bytes', url: '/v1/keys/wrap', body: JSON.stringify({ tenantId: 'tenant-a', dek: randomBytes(31).toString('base64'), metadata: META }), status: 400, code: 102, message: /32 bytes/ },
    { name: 'DEK of 33 bytes', url: '/v1/keys/wrap', body: JSON.stringify({ tenantId: 'tenant-a', dek: randomBytes(33).toString('base64'), metadata: META }), status: 400, code: 102 },
    { name: 'DEK in base64url', url: '/v1/keys/wrap', body: JSON.stringify({ tenantId: 'tenant-a', dek: dek.replace(/\+/g, '-').replace(/\//g, '_').replace(/=/g, '') + 'A', metadata: META }), status: 400, code: 102 },
    { name: 'missing edek', url: '/v1/keys/unwrap', body: JSON.stringify({ tenantId: 'tenant-a', metadata: META }), status: 400, code: 102 },
    { name: 'edek of the wrong type', url: '/v1/keys/unwrap', body: JSON.stringify({ tenantId: 'tenant-a', edek: 123, metadata: META }), status: 400, code: 102 },
    { name: 'batch ids not an array', url: '/v1/keys/batch/generate', body: JSON.stringify({ tenantId: 'tenant-a', ids: 'a', metadata: META }), status: 400, code: 102 },
    { name: 'batch id empty', url: '/v1/keys/batch/generate', body: JSON.stringify({ tenantId: 'tenant-a', ids: [''], metadata: META }), status: 400, code: 102 },
    { name: 'batch edeks not a map', url: '/v1/keys/batch/unwrap', body: JSON.stringify({ tenantId: 'tenant-a', edeks: ['a'], metadata: META }), status: 400, code: 102 },
    { name: 'unknown route', url: '/v1/keys/nothing', body: '{}', status: 404, code: 103 },
    { name: 'GET on a POST route', url: '/v1/keys/generate', method: 'GET', body: '', status: 404, code: 103 },
    { name: 'PUT on a POST route', url: '/v1/keys/generate', method: 'PUT', body: '{}', status: 404, code: 103 },
  ];

  for (const c of cases) {
    it(`${c.name} → ${c.status} with code ${c.code}`, async () => {
      const method = c.method ?? 'POST';
      const res = await app.api.inject({
        method,
        url: c.url ?? '/v1/keys/generate',
        headers: { authorization: `Bearer ${API_KEY}`, ...(method === 'GET' ? {} : { 'content-type': c.contentType ?? 'application/json' }) },
        payload: method === 'GET' ? undefined : c.body,
      });
      assert.equal(res.statusCode, c.status, res.body);
      assert.match(res.headers['content-type'] as string, /^application\/json/);
      const body = res.json<ErrorJson>();
      assert.equal(body.code, c.code, res.body);
      assert.deepEqual(Object.keys(body).sort(), ['code', 'message']);
      if (c.message) assert.match(body.message, c.message);
      // The service keeps serving.
      const ok = await post(app, '/v1/keys/generate', { tenantId: 'tenant-a', metadata: META });
      assert.equal(ok.statusCode, 200);
    });
  }
});
