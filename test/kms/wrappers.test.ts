import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { KmsDriver } from '../../src/kms/driver.js';
import { KmsError } from '../../src/kms/errors.js';
import { withMetrics, withRetry, withTimeout } from '../../src/kms/wrappers.js';
import { createMetrics } from '../../src/metrics.js';

function slowDriver(ms: number, result: Buffer): KmsDriver {
  const later = () => new Promise<Buffer>((resolve) => setTimeout(() => resolve(result), ms));
  return { provider: 'local', wrap: later, unwrap: later, close: () => Promise.resolve() };
}

describe('driver wrappers', () => {
  it('withTimeout turns a call that takes too long into an unreachable KmsError', async () => {
    const late = Buffer.alloc(32, 9);
    const driver = withTimeout(slowDriver(150, late), 20);
    await assert.rejects(driver.unwrap(Buffer.alloc(1), Buffer.alloc(1)), (err: unknown) => err instanceof KmsError && err.kind === 'unreachable' && /20 ms/.test(err.message));
    await new Promise((resolve) => setTimeout(resolve, 200));
    assert.ok(late.every((b) => b === 0), 'a key that arrives after the timeout is wiped');
  });

  it('withTimeout passes through results and errors in time', async () => {
    const result = Buffer.alloc(32, 1);
    assert.equal(await withTimeout(slowDriver(1, result), 1000).wrap(Buffer.alloc(1), Buffer.alloc(1)), result);
    const failing: KmsDriver = { provider: 'local', wrap: () => Promise.reject(new KmsError('refused', 'no')), unwrap: () => Promise.reject(new Error('x')), close: () => Promise.resolve() };
    await assert.rejects(withTimeout(failing, 1000).wrap(Buffer.alloc(1), Buffer.alloc(1)), (e: unknown) => e instanceof KmsError && e.kind === 'refused');
  });

  it('withMetrics counts calls by provider, operation and outcome', async () => {
    const metrics = createMetrics({ processMetrics: false });
    const failing: KmsDriver = {
      provider: 'pkcs11',
      wrap: () => Promise.resolve(Buffer.alloc(2)),
      unwrap: () => Promise.reject(new KmsError('throttled', 'slow down')),
      close: () => Promise.resolve(),
    };
    const driver = withMetrics(failing, metrics);
    await driver.wrap(Buffer.alloc(1), Buffer.alloc(1));
    await assert.rejects(driver.unwrap(Buffer.alloc(1), Buffer.alloc(1)));
    const text = await metrics.registry.metrics();
    assert.match(text, /keyward_kms_requests_total\{provider="pkcs11",operation="wrap",outcome="ok"\} 1/);
    assert.match(text, /keyward_kms_requests_total\{provider="pkcs11",operation="unwrap",outcome="throttled"\} 1/);
    assert.match(text, /keyward_kms_request_duration_seconds_count\{provider="pkcs11",operation="unwrap",outcome="throttled"\} 1/);
  });
});

describe('withRetry', () => {
  function flaky(failures: KmsError[], result = Buffer.alloc(32, 3)) {
    let calls = 0;
    const driver: KmsDriver = {
      provider: 'aws',
      wrap: () => {
        const failure = failures[calls++];
        return failure ? Promise.reject(failure) : Promise.resolve(result);
      },
      unwrap: () => Promise.reject(new Error('unused')),
      close: () => Promise.resolve(),
    };
    return { driver, calls: () => calls };
  }
  const noJitter = { baseDelayMs: 1, maxDelayMs: 4, random: () => 1 };

  it('retries unreachable and throttled answers, then succeeds', async () => {
    const metrics = createMetrics({ processMetrics: false });
    const f = flaky([new KmsError('unreachable', 'down'), new KmsError('throttled', 'slow')]);
    const out = await withRetry(f.driver, { retries: 2, metrics, ...noJitter }).wrap(Buffer.alloc(1), Buffer.alloc(1));
    assert.equal(out.length, 32);
    assert.equal(f.calls(), 3);
    const text = await metrics.registry.metrics();
    assert.match(text, /keyward_kms_retries_total\{provider="aws",operation="wrap",reason="unreachable"\} 1/);
    assert.match(text, /keyward_kms_retries_total\{provider="aws",operation="wrap",reason="throttled"\} 1/);
  });

  for (const kind of ['refused', 'key_unusable', 'bad_ciphertext', 'account_issue', 'other'] as const) {
    it(`never retries ${kind}`, async () => {
      const f = flaky([new KmsError(kind, 'no'), new KmsError(kind, 'no')]);
      await assert.rejects(withRetry(f.driver, { retries: 3, ...noJitter }).wrap(Buffer.alloc(1), Buffer.alloc(1)), (e: unknown) => e instanceof KmsError && e.kind === kind);
      assert.equal(f.calls(), 1);
    });
  }

  it('gives up after the configured retries with the last failure', async () => {
    const f = flaky([new KmsError('unreachable', 'a'), new KmsError('unreachable', 'b'), new KmsError('unreachable', 'c')]);
    await assert.rejects(withRetry(f.driver, { retries: 1, ...noJitter }).wrap(Buffer.alloc(1), Buffer.alloc(1)), /b/);
    assert.equal(f.calls(), 2);
  });

  it('does not retry at all with retries: 0', async () => {
    const f = flaky([new KmsError('unreachable', 'a')]);
    await assert.rejects(withRetry(f.driver, { retries: 0 }).wrap(Buffer.alloc(1), Buffer.alloc(1)));
    assert.equal(f.calls(), 1);
  });

  it("waits out a short Retry-After, and hands a long one back to the caller", async () => {
    const short = flaky([new KmsError('throttled', 'slow', { retryAfterSeconds: 0.05 })]);
    const start = Date.now();
    await withRetry(short.driver, { retries: 1, ...noJitter }).wrap(Buffer.alloc(1), Buffer.alloc(1));
    assert.ok(Date.now() - start >= 45, 'waited for Retry-After');
    const long = flaky([new KmsError('throttled', 'slow', { retryAfterSeconds: 30 })]);
    await assert.rejects(withRetry(long.driver, { retries: 3, ...noJitter }).wrap(Buffer.alloc(1), Buffer.alloc(1)), (e: unknown) => e instanceof KmsError && e.retryAfterSeconds === 30);
    assert.equal(long.calls(), 1);
  });

  it('backs off exponentially with full jitter, capped', async () => {
    const delays: number[] = [];
    const f = flaky([new KmsError('unreachable', 'a'), new KmsError('unreachable', 'b'), new KmsError('unreachable', 'c'), new KmsError('unreachable', 'd')]);
    let last = Date.now();
    const driver: KmsDriver = {
      ...f.driver,
      wrap: (p, a, o) => {
        const now = Date.now();
        delays.push(now - last);
        last = now;
        return f.driver.wrap(p, a, o);
      },
    };
    await withRetry(driver, { retries: 4, baseDelayMs: 20, maxDelayMs: 60, random: () => 1 }).wrap(Buffer.alloc(1), Buffer.alloc(1));
    // Ceilings 20, 40, 60 (capped), 60 with random() = 1.
    const waits = delays.slice(1);
    assert.equal(waits.length, 4);
    [20, 40, 60, 60].forEach((ceiling, i) => assert.ok(waits[i]! >= ceiling - 5 && waits[i]! < ceiling + 50, `wait ${i} was ${waits[i]} ms`));
  });

  it('passes the abort signal through, and stops retrying once it fires', async () => {
    const controller = new AbortController();
    let seen: AbortSignal | undefined;
    let calls = 0;
    const driver: KmsDriver = {
      provider: 'gcp',
      wrap: (_p, _a, o) => {
        seen = o?.signal;
        calls++;
        controller.abort();
        return Promise.reject(new KmsError('unreachable', 'down'));
      },
      unwrap: () => Promise.reject(new Error('unused')),
      close: () => Promise.resolve(),
    };
    await assert.rejects(withRetry(driver, { retries: 3, ...noJitter }).wrap(Buffer.alloc(1), Buffer.alloc(1), { signal: controller.signal }));
    assert.equal(seen, controller.signal);
    assert.equal(calls, 1);
  });
});

describe('withTimeout signal', () => {
  it('aborts the signal it gives the driver when the attempt times out', async () => {
    let signal: AbortSignal | undefined;
    const driver: KmsDriver = {
      provider: 'azure',
      wrap: (_p, _a, o) => {
        signal = o?.signal;
        return new Promise(() => undefined);
      },
      unwrap: () => Promise.reject(new Error('unused')),
      close: () => Promise.resolve(),
    };
    await assert.rejects(withTimeout(driver, 20).wrap(Buffer.alloc(1), Buffer.alloc(1)), (e: unknown) => e instanceof KmsError && e.kind === 'unreachable');
    assert.equal(signal?.aborted, true);
  });
});
