import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { KmsDriver } from '../../src/kms/driver.js';
import { KmsError } from '../../src/kms/errors.js';
import { withMetrics, withTimeout } from '../../src/kms/wrappers.js';
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
