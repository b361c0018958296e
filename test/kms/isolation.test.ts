/**
 * Per-tenant isolation of KMS calls: each KMS config has a concurrency limit and a
 * bounded queue (beyond them a call fails at once as throttled → 209 with Retry-After),
 * and concurrent unwraps of one blob share one KMS call. Unit tests with a scripted
 * driver, then the point of it with real parts: one tenant's AWS KMS (local-kms behind a
 * fault proxy) black-holed under load, while another tenant's latency stays within 2×.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { KmsDriver } from '../../src/kms/driver.js';
import { KmsError, isKmsError } from '../../src/kms/errors.js';
import { ConfigIsolation } from '../../src/kms/isolation.js';
import { createMetrics } from '../../src/metrics.js';
import { json, post, startTestApp, type ErrorJson, type TestApp } from '../helpers/app.js';
import { startFaultProxy, type FaultProxy } from '../helpers/fault-proxy.js';
import { LOCAL_KMS_REGION, TEST_ACCESS_KEY_ID, TEST_SECRET_ACCESS_KEY, startLocalKms, type LocalKms } from '../helpers/local-kms.js';

/** A driver whose calls wait until released, recording what it was asked. */
function gatedDriver() {
  const pending: Array<{ resolve: (b: Buffer) => void; reject: (e: Error) => void; op: string }> = [];
  const returned: Buffer[] = [];
  const call = (op: string) =>
    new Promise<Buffer>((resolve, reject) => {
      pending.push({
        op,
        resolve: (b) => {
          returned.push(b);
          resolve(b);
        },
        reject,
      });
    });
  const driver: KmsDriver = { provider: 'local', wrap: () => call('wrap'), unwrap: () => call('unwrap'), close: () => Promise.resolve() };
  return { driver, pending, returned };
}

const flush = () => new Promise((resolve) => setImmediate(resolve));

describe('KMS config isolation (unit)', () => {
  it('at most `limit` calls in flight, `queue` waiting; beyond that throttled at once with Retry-After, and counted', async () => {
    const metrics = createMetrics({ processMetrics: false });
    const isolation = new ConfigIsolation(7, 'aws', { limit: 2, queue: 3 }, metrics);
    const { driver, pending } = gatedDriver();
    const isolated = isolation.wrapDriver(driver);
    const calls = Array.from({ length: 5 }, () => isolated.wrap(Buffer.alloc(32), Buffer.from('aad')));
    await flush();
    assert.equal(pending.length, 2, 'two in flight');
    assert.deepEqual(isolation.load, { inFlight: 2, waiting: 3 });
    const t0 = Date.now();
    await assert.rejects(isolated.wrap(Buffer.alloc(32), Buffer.from('aad')), (err: unknown) => {
      assert.ok(isKmsError(err));
      assert.equal(err.kind, 'throttled');
      assert.equal(err.retryAfterSeconds, 1);
      assert.match(err.message, /queue for KMS config 7 is full \(2 calls in flight, 3 waiting\)/);
      return true;
    });
    assert.ok(Date.now() - t0 < 50, 'refused at once, not after waiting');
    assert.match(await metrics.registry.metrics(), /keyward_kms_queue_rejections_total\{provider="aws"\} 1/);
    // Releasing one lets exactly one waiter in, in order.
    pending[0]!.resolve(Buffer.alloc(8, 1));
    await flush();
    assert.equal(pending.length, 3);
    for (const p of pending.slice(1)) p.resolve(Buffer.alloc(8, 2));
    await flush();
    for (const p of pending.slice(3)) p.resolve(Buffer.alloc(8, 3));
    await flush();
    pending[5]?.resolve(Buffer.alloc(8, 4));
    await Promise.all(calls);
    assert.deepEqual(isolation.load, { inFlight: 0, waiting: 0 });
  });

  it('a failing call frees its slot', async () => {
    const isolation = new ConfigIsolation(1, 'local', { limit: 1, queue: 0 });
    const failing: KmsDriver = { provider: 'local', wrap: () => Promise.reject(new KmsError('unreachable', 'down')), unwrap: () => Promise.reject(new KmsError('unreachable', 'down')), close: () => Promise.resolve() };
    const isolated = isolation.wrapDriver(failing);
    for (let i = 0; i < 3; i++) await assert.rejects(isolated.wrap(Buffer.alloc(32), Buffer.alloc(1)), (err: unknown) => isKmsError(err) && err.kind === 'unreachable');
    assert.deepEqual(isolation.load, { inFlight: 0, waiting: 0 });
  });

  it('concurrent unwraps of the same blob share one KMS call; each caller gets its own copy; the shared key is wiped', async () => {
    const isolation = new ConfigIsolation(1, 'local', { limit: 8, queue: 8 });
    const { driver, pending, returned } = gatedDriver();
    const isolated = isolation.wrapDriver(driver);
    const blob = Buffer.from('same-blob');
    const aad = Buffer.from('same-aad');
    const results = Array.from({ length: 20 }, () => isolated.unwrap(blob, aad));
    const other = isolated.unwrap(Buffer.from('another-blob'), aad);
    await flush();
    assert.equal(pending.length, 2, 'one call for the 20 identical unwraps, one for the other blob');
    pending[0]!.resolve(Buffer.alloc(32, 9));
    pending[1]!.resolve(Buffer.alloc(32, 5));
    const keys = await Promise.all(results);
    assert.equal(new Set(keys).size, 20, 'twenty distinct buffers');
    for (const key of keys) assert.deepEqual(key, Buffer.alloc(32, 9));
    keys[0]!.fill(0);
    assert.deepEqual(keys[1], Buffer.alloc(32, 9), 'wiping one copy leaves the others');
    assert.ok(returned[0]!.every((b) => b === 0), 'the shared result is wiped');
    assert.deepEqual(await other, Buffer.alloc(32, 5));
    // A failure reaches every waiter; afterwards the same blob is asked again.
    const failing = Array.from({ length: 3 }, () => isolated.unwrap(blob, aad));
    await flush();
    pending[2]!.reject(new KmsError('refused', 'no'));
    for (const f of failing) await assert.rejects(f, (err: unknown) => isKmsError(err) && err.kind === 'refused');
    const again = isolated.unwrap(blob, aad);
    await flush();
    assert.equal(pending.length, 4);
    pending[3]!.resolve(Buffer.alloc(32, 1));
    assert.deepEqual(await again, Buffer.alloc(32, 1));
    // Wraps are never shared.
    const wraps = [isolated.wrap(Buffer.alloc(32), aad), isolated.wrap(Buffer.alloc(32), aad)];
    await flush();
    assert.equal(pending.length, 6);
    pending[4]!.resolve(Buffer.alloc(40));
    pending[5]!.resolve(Buffer.alloc(40));
    await Promise.all(wraps);
  });
});

describe('one tenant KMS black-holed: the other tenants keep their latency (local-kms, real AWS SDK)', () => {
  let kms: LocalKms;
  let proxy: FaultProxy;
  let app: TestApp;

  before(async () => {
    kms = await startLocalKms([{ name: 'healthy' }, { name: 'sick' }]);
    proxy = await startFaultProxy(Number(new URL(kms.endpoint).port));
    const aws = (key: string, endpoint: string) =>
      `{ region: ${LOCAL_KMS_REGION}, keyId: '${key}', endpoint: '${endpoint}', credentials: { type: static, accessKeyId: { env: AK }, secretAccessKey: { env: SK } } }`;
    app = await startTestApp({
      env: { AK: TEST_ACCESS_KEY_ID, SK: TEST_SECRET_ACCESS_KEY },
      tenants: `
version: 1
tenants:
  healthy:
    kmsConfigs:
      - { id: 1, status: primary, provider: aws, timeout: 1s, aws: ${aws(kms.keys.healthy!.arn, kms.endpoint)} }
  sick:
    kmsConfigs:
      - { id: 2, status: primary, provider: aws, timeout: 1s, retries: 0, concurrency: { limit: 4, queue: 8 }, aws: ${aws(kms.keys.sick!.arn, `http://127.0.0.1:${proxy.port}`)} }
`,
    });
  });
  after(async () => {
    await app?.close();
    await proxy?.close();
    await kms?.close();
  });

  /** `workers` concurrent loops of generate + unwrap for `tenantId` during `ms`; per-round-trip latencies. */
  const load = async (tenantId: string, workers: number, ms: number): Promise<number[]> => {
    const latencies: number[] = [];
    const until = Date.now() + ms;
    await Promise.all(
      Array.from({ length: workers }, async () => {
        while (Date.now() < until) {
          const t0 = performance.now();
          const gen = await post(app, '/v1/keys/generate', { tenantId, metadata: { requestingId: 'iso' } });
          assert.equal(gen.statusCode, 200, gen.body);
          const back = await post(app, '/v1/keys/unwrap', { tenantId, edek: json<{ edek: string }>(gen).edek, metadata: { requestingId: 'iso' } });
          assert.equal(back.statusCode, 200, back.body);
          latencies.push(performance.now() - t0);
        }
      }),
    );
    return latencies.sort((a, b) => a - b);
  };
  const percentile = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))]!;

  it('the healthy tenant stays within 2× of its normal latency while the sick one is flooded; the sick one fails fast with 209', async () => {
    await load('healthy', 4, 500); // warm-up: clients, connections, JIT
    const normal = await load('healthy', 4, 2_000);

    await proxy.setMode('blackhole');
    const codes = new Map<number, number>();
    let flooding = true;
    let slowest = 0;
    // The sick tenant's clients keep up their traffic and, like the SDKs, wait out a Retry-After.
    const flood = Promise.all(
      Array.from({ length: 16 }, async () => {
        while (flooding) {
          const t0 = performance.now();
          const res = await post(app, '/v1/keys/generate', { tenantId: 'sick', metadata: { requestingId: 'flood' } });
          slowest = Math.max(slowest, performance.now() - t0);
          const code = json<ErrorJson>(res).code;
          codes.set(code, (codes.get(code) ?? 0) + 1);
          if (code === 209) {
            assert.equal(res.statusCode, 503);
            assert.equal(res.headers['retry-after'], '1');
          }
          if (code === 209) await sleep(Number(res.headers['retry-after']) * 1000);
        }
      }),
    );
    await sleep(300);
    const during = await load('healthy', 4, 2_000);
    flooding = false;
    await flood;
    await proxy.setMode('pass');

    const [n50, n95, d50, d95] = [percentile(normal, 0.5), percentile(normal, 0.95), percentile(during, 0.5), percentile(during, 0.95)];
    const report = `healthy tenant round trip: normal p50 ${n50.toFixed(2)} ms p95 ${n95.toFixed(2)} ms (${normal.length}); during the flood p50 ${d50.toFixed(2)} ms p95 ${d95.toFixed(2)} ms (${during.length}); sick tenant answers ${JSON.stringify(Object.fromEntries(codes))}, slowest ${slowest.toFixed(0)} ms`;
    console.log(report);
    assert.ok(d50 <= 2 * n50, `p50 within 2×: ${report}`);
    assert.ok(d95 <= 2 * n95, `p95 within 2×: ${report}`);
    assert.ok((codes.get(209) ?? 0) > 0, `the full queue refused calls at once: ${report}`);
    assert.ok((codes.get(208) ?? 0) > 0, `the calls it let through timed out as unreachable: ${report}`);
    assert.deepEqual([...codes.keys()].filter((c) => c !== 208 && c !== 209), [], report);
    // A call waits at most for the queue ahead of it (queue / limit rounds of the 1 s timeout) and its own attempt.
    const bound = (8 / 4 + 1) * 1_000;
    assert.ok(slowest < bound + 1_500, `no request hung: the slowest took ${slowest.toFixed(0)} ms (bound ${bound} ms)`);
    assert.ok(json(await post(app, '/v1/keys/generate', { tenantId: 'sick', metadata: { requestingId: 'after' } })).edek, 'the sick tenant recovers with its KMS');
  });
});
