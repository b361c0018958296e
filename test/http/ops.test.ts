import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createLogger } from '../../src/logger.js';
import { Writable } from 'node:stream';
import { API_KEY, API_KEY_2, META, post, startTestApp, type TestApp } from '../helpers/app.js';

describe('ops port, metrics and logs', () => {
  let app: TestApp;
  before(async () => {
    app = await startTestApp();
  });
  after(() => app.close());

  it('answers /live, /ready and /health', async () => {
    assert.equal((await app.ops.inject('/live')).statusCode, 200);
    assert.equal((await app.ops.inject('/ready')).statusCode, 200);
    const health = await app.ops.inject('/health');
    assert.equal(health.statusCode, 200);
    const body = health.json<{ status: string; tenants: number; drivers: { ready: number; failed: number } }>();
    assert.equal(body.status, 'ok');
    assert.equal(body.tenants, 4);
    assert.equal(body.drivers.ready, 2);
    assert.equal(body.drivers.failed, 0);
  });

  it('exposes request and KMS metrics with bounded labels, and process metrics', async () => {
    const { edek } = (await post(app, '/v1/keys/generate', { tenantId: 'tenant-a', metadata: META })).json<{ edek: string }>();
    await post(app, '/v1/keys/unwrap', { tenantId: 'tenant-a', edek, metadata: META });
    await post(app, '/v1/keys/unwrap', { tenantId: 'tenant-b', edek, metadata: META });
    await app.api.inject({ method: 'POST', url: '/v1/unknown/route-with-id-123' });
    const res = await app.ops.inject('/metrics');
    assert.equal(res.statusCode, 200);
    assert.match(res.headers['content-type'] as string, /^text\/plain/);
    const text = res.body;
    assert.match(text, /keyward_http_requests_total\{route="\/v1\/keys\/generate",status="200"\} \d+/);
    assert.match(text, /keyward_http_requests_total\{route="\/v1\/keys\/unwrap",status="400"\} 1/);
    assert.match(text, /keyward_http_requests_total\{route="unmatched",status="404"\} 1/);
    assert.match(text, /keyward_http_request_duration_seconds_bucket\{le="0.005",route="\/v1\/keys\/unwrap",status="200"\}/);
    assert.match(text, /keyward_kms_requests_total\{provider="local",operation="wrap",outcome="ok"\} \d+/);
    assert.match(text, /keyward_kms_request_duration_seconds_count\{provider="local",operation="unwrap",outcome="ok"\} \d+/);
    assert.match(text, /^process_cpu_seconds_total /m);
    assert.ok(!text.includes('tenant-a'), 'no tenant id as a label value');
    assert.ok(!text.includes('route-with-id-123'), 'unmatched URLs do not become labels');
  });

  it('turns /ready and /health to 503 once shutdown begins, while /live stays 200', async () => {
    const local = await startTestApp();
    try {
      local.beginShutdown();
      assert.equal((await local.ops.inject('/ready')).statusCode, 503);
      assert.equal((await local.ops.inject('/health')).statusCode, 503);
      assert.equal((await local.ops.inject('/live')).statusCode, 200);
    } finally {
      await local.close();
    }
  });

  it('never logs API keys, DEKs or PINs', async () => {
    const { dek } = (await post(app, '/v1/keys/generate', { tenantId: 'tenant-a', metadata: META })).json<{ dek: string }>();
    await post(app, '/v1/keys/wrap', { tenantId: 'tenant-a', dek, metadata: META }, { authorization: `cmk ${API_KEY_2}` });
    await post(app, '/v1/keys/wrap', { tenantId: 'nobody', dek, metadata: META });
    const all = app.logs.join('');
    assert.ok(app.logs.length > 0);
    assert.ok(!all.includes(API_KEY) && !all.includes(API_KEY_2), 'API keys are not logged');
    assert.ok(!all.includes(dek), 'DEKs are not logged');

    const lines: string[] = [];
    const logger = createLogger({
      level: 'info',
      destination: new Writable({ write: (chunk: Buffer, _e, cb) => (lines.push(chunk.toString()), cb()) }),
    });
    logger.info({ req: { headers: { authorization: 'Bearer sekret' } }, dek: 'DEKDEK', item: { dek: 'NESTED', pin: '1234' }, pin: '9876', key: 'KEYBYTES' }, 'x');
    const line = lines.join('');
    for (const secret of ['sekret', 'DEKDEK', 'NESTED', '1234', '9876', 'KEYBYTES']) assert.ok(!line.includes(secret), `${secret} is redacted`);
    assert.match(line, /\[REDACTED\]/);
  });

  it('logs Fastify\'s line per request at debug only, none at info', async () => {
    const quiet = await startTestApp({ logLevel: 'info' });
    try {
      assert.equal((await post(quiet, '/v1/keys/generate', { tenantId: 'tenant-a', metadata: META })).statusCode, 200);
      assert.equal((await post(quiet, '/v1/keys/generate', { tenantId: 'nobody', metadata: META })).statusCode, 404);
      const lines = quiet.logs.join('').split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as { msg: string; level: string });
      assert.ok(!lines.some((l) => l.msg === 'incoming request' || l.msg === 'request completed'), 'no per-request lines at info');
    } finally {
      await quiet.close();
    }
    const before = app.logs.length;
    assert.equal((await post(app, '/v1/keys/generate', { tenantId: 'tenant-a', metadata: META })).statusCode, 200);
    const lines = app.logs.slice(before).join('').split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as { msg: string; level: string });
    assert.deepEqual(
      lines.filter((l) => l.msg === 'incoming request' || l.msg === 'request completed').map((l) => [l.msg, l.level]),
      [['incoming request', 'debug'], ['request completed', 'debug']],
    );
  });
});
