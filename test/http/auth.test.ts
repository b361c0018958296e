import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { apiKeyMatches } from '../../src/http/auth.js';
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

  it('apiKeyMatches compares against every key', () => {
    const digests = [digestApiKey('first-key-aaaaaaaaaaa'), digestApiKey('second-key-bbbbbbbbbb')];
    assert.equal(apiKeyMatches('Bearer first-key-aaaaaaaaaaa', digests), true);
    assert.equal(apiKeyMatches('Bearer second-key-bbbbbbbbbb', digests), true);
    assert.equal(apiKeyMatches('Bearer third', digests), false);
    assert.equal(apiKeyMatches(undefined, digests), false);
    assert.equal(apiKeyMatches('Bearer ', []), false);
  });
});
