import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { matchApiKey, tenantAllowed } from '../../src/http/auth.js';
import { digestApiKey } from '../../src/config/env.js';
import { API_KEY, API_KEY_2, META, startTestApp, type ErrorJson, type TestApp } from '../helpers/app.js';

describe('API key authentication', () => {
  let app: TestApp;
  before(async () => {
    app = await startTestApp();
  });
  after(() => app.close());

  const call = (authorization?: string) =>
    app.api.inject({
      method: 'POST',
      url: '/v1/keys/generate',
      headers: { 'content-type': 'application/json', ...(authorization === undefined ? {} : { authorization }) },
      payload: JSON.stringify({ tenantId: 'tenant-a', metadata: META }),
    });

  for (const header of [`Bearer ${API_KEY}`, `cmk ${API_KEY}`, `bearer ${API_KEY}`, `CMK ${API_KEY}`, `Bearer ${API_KEY_2}`, `cmk   ${API_KEY_2}`]) {
    it(`accepts "${header.split(' ')[0]} <key>" (${header.includes(API_KEY_2) ? 'rotation key' : 'current key'})`, async () => {
      assert.equal((await call(header)).statusCode, 200);
    });
  }

  for (const [name, header] of [
    ['no header', undefined],
    ['empty header', ''],
    ['wrong key', 'Bearer not-the-key-at-all-000000'],
    ['key with a suffix', `Bearer ${API_KEY}x`],
    ['key prefix only', `Bearer ${API_KEY.slice(0, -1)}`],
    ['Basic scheme', `Basic ${Buffer.from(`u:${API_KEY}`).toString('base64')}`],
    ['bare key without scheme', API_KEY],
    ['scheme without key', 'Bearer'],
    ['two keys', `Bearer ${API_KEY} ${API_KEY_2}`],
  ] as const) {
    it(`refuses ${name} with 401 / code 101`, async () => {
      const res = await call(header);
      assert.equal(res.statusCode, 401);
      const body = res.json<ErrorJson>();
      assert.equal(body.code, 101);
      assert.ok(!res.body.includes(API_KEY), 'the error never echoes a key');
    });
  }

  it('checks the key before reading the body', async () => {
    const res = await app.api.inject({ method: 'POST', url: '/v1/keys/generate', headers: { 'content-type': 'application/json' }, payload: '{not json' });
    assert.equal(res.statusCode, 401);
  });

  it('matchApiKey compares against every key and names the one presented', () => {
    const keys = [
      { name: 'first', digest: digestApiKey('first-key-aaaaaaaaaaa'), tenants: ['*'] },
      { name: 'second', digest: digestApiKey('second-key-bbbbbbbbbb'), tenants: ['acme'] },
    ];
    assert.equal(matchApiKey('Bearer first-key-aaaaaaaaaaa', keys)?.name, 'first');
    assert.equal(matchApiKey('cmk second-key-bbbbbbbbbb', keys)?.name, 'second');
    assert.equal(matchApiKey('Bearer third', keys), undefined);
    assert.equal(matchApiKey(undefined, keys), undefined);
    assert.equal(matchApiKey('Bearer ', []), undefined);
  });

  it('tenant patterns: exact ids, * for any run of characters, dots literal', () => {
    assert.equal(tenantAllowed(['*'], 'anything'), true);
    assert.equal(tenantAllowed(['acme'], 'acme'), true);
    assert.equal(tenantAllowed(['acme'], 'acme-eu'), false);
    assert.equal(tenantAllowed(['acme-*'], 'acme-eu'), true);
    assert.equal(tenantAllowed(['acme-*'], 'acme'), false);
    assert.equal(tenantAllowed(['*.example'], 'a.example'), true);
    assert.equal(tenantAllowed(['a.b'], 'aXb'), false, 'a dot is a dot');
    assert.equal(tenantAllowed(['eu:*:prod'], 'eu:acme:prod'), true);
    assert.equal(tenantAllowed(['globex', 'acme-*'], 'globex'), true);
    assert.equal(tenantAllowed([], 'acme'), false);
  });
});
