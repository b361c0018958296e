/**
 * The delivery loop of one sink, against an in-process transport whose answers the test
 * scripts: batching, retry with backoff, rejected batches, a full queue, the shutdown
 * deadline — and the accounting that must always hold: emitted = delivered + dropped
 * once the queue is empty. Real receivers are in http-sink.test.ts and syslog-sink.test.ts.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { AuditEvent } from '../../src/audit/event.js';
import { DeliveryError, SinkQueue, type Transport } from '../../src/audit/queue.js';
import { stdoutTransport } from '../../src/audit/sinks/stdout.js';
import { PassThrough } from 'node:stream';
import { createLogger } from '../../src/logger.js';
import { createMetrics, type Metrics } from '../../src/metrics.js';
import { auditCounts } from './counts.js';

function event(n: number): AuditEvent {
  return {
    schema: 'keyward.audit.v1',
    id: `event-${n}`,
    time: new Date(0).toISOString(),
    replica: 'r1',
    tenantId: 't',
    operation: 'unwrap',
    outcome: 'success',
    caller: { requestingId: 'test' },
  };
}

class ScriptedTransport implements Transport {
  readonly batches: string[][] = [];
  readonly delivered: string[] = [];
  /** Answers for the next sends, in order; empty → success. */
  readonly script: Array<DeliveryError | 'hang'> = [];
  closed = false;

  async send(batch: readonly AuditEvent[], signal: AbortSignal): Promise<void> {
    this.batches.push(batch.map((e) => e.id));
    const next = this.script.shift();
    if (next === 'hang') {
      await new Promise((_resolve, reject) => signal.addEventListener('abort', () => reject(new Error('aborted')), { once: true }));
    } else if (next) {
      throw next;
    }
    await sleep(1);
    this.delivered.push(...batch.map((e) => e.id));
  }

  async close(): Promise<void> {
    this.closed = true;
  }
}

function queue(transport: Transport, metrics: Metrics, policy: Partial<{ size: number; batchSize: number; lingerMs: number; minBackoffMs: number; maxBackoffMs: number }> = {}): SinkQueue {
  return new SinkQueue({
    name: 'siem',
    type: 'http',
    policy: { size: 100, batchSize: 10, lingerMs: 0, minBackoffMs: 5, maxBackoffMs: 20, ...policy },
    transport,
    metrics,
    logger: createLogger({ level: 'silent' }),
    random: () => 0.5,
  });
}

async function until(check: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 500; i++) {
    if (check()) return;
    await sleep(5);
  }
  assert.fail(`timed out waiting for ${what}`);
}

describe('audit sink queue', () => {
  it('batches what arrives while a batch is in flight, up to batchSize, in order', async () => {
    const metrics = createMetrics({ processMetrics: false });
    const transport = new ScriptedTransport();
    const q = queue(transport, metrics, { batchSize: 10 });
    for (let i = 0; i < 35; i++) assert.equal(q.offer(event(i)), true);
    await until(() => transport.delivered.length === 35, '35 deliveries');
    assert.deepEqual(transport.delivered, Array.from({ length: 35 }, (_, i) => `event-${i}`));
    assert.deepEqual(transport.batches.map((b) => b.length), [10, 10, 10, 5], 'events offered in one event-loop turn go together, in full batches');
    const counts = await auditCounts(metrics, 'http');
    assert.deepEqual(counts, { emitted: 35, delivered: 35, retried: 0, dropped: {} });
    assert.equal(await q.close(1000), 0);
    assert.equal(transport.closed, true);
  });

  it('an event offered just as the delivery loop finishes is not stranded (found by the HTTP fuzz tests)', async () => {
    const metrics = createMetrics({ processMetrics: false });
    const transport: Transport = { send: async () => undefined, close: async () => undefined };
    const q = queue(transport, metrics, { size: 100_000 });
    // Offers at every microtask distance from the loop's end: one of them lands between the
    // loop's last look at the queue and the moment it counts as stopped.
    for (let i = 0; i < 400; i++) {
      q.offer(event(i));
      for (let k = 0; k < i % 12; k++) await Promise.resolve();
    }
    await sleep(50);
    assert.equal(q.depth, 0, 'nothing left waiting');
    assert.equal((await auditCounts(metrics, 'http')).delivered, 400);
    await q.close(1000);
  });

  it('linger holds a batch until it fills or the linger ends', async () => {
    const metrics = createMetrics({ processMetrics: false });
    const transport = new ScriptedTransport();
    const q = queue(transport, metrics, { batchSize: 5, lingerMs: 200 });
    for (let i = 0; i < 7; i++) q.offer(event(i));
    await until(() => transport.delivered.length === 7, '7 deliveries');
    assert.deepEqual(transport.batches.map((b) => b.length), [5, 2]);
    await q.close(1000);
  });

  it('retries a retryable failure with the same events, counts each resend, and recovers', async () => {
    const metrics = createMetrics({ processMetrics: false });
    const transport = new ScriptedTransport();
    transport.script.push(new DeliveryError('503', { retryable: true }), new DeliveryError('503', { retryable: true }));
    const q = queue(transport, metrics, { batchSize: 10 });
    q.offer(event(0));
    await until(() => transport.batches.length >= 1, 'the first attempt');
    for (let i = 1; i < 3; i++) q.offer(event(i));
    await until(() => transport.delivered.length === 3, '3 deliveries');
    // Batch [0] failed twice then went; [1, 2] queued meanwhile and went next.
    assert.deepEqual(transport.batches, [['event-0'], ['event-0'], ['event-0'], ['event-1', 'event-2']]);
    assert.deepEqual(await auditCounts(metrics, 'http'), { emitted: 3, delivered: 3, retried: 2, dropped: {} });
    await q.close(1000);
  });

  it('honours Retry-After, bounded by maxBackoff', async () => {
    const metrics = createMetrics({ processMetrics: false });
    const transport = new ScriptedTransport();
    transport.script.push(new DeliveryError('429', { retryable: true, retryAfterMs: 150 }));
    const q = queue(transport, metrics, { minBackoffMs: 1, maxBackoffMs: 1000 });
    const started = Date.now();
    q.offer(event(1));
    await until(() => transport.delivered.length === 1, 'the delivery');
    assert.ok(Date.now() - started >= 140, `waited ${Date.now() - started} ms, Retry-After said 150`);
    await q.close(1000);
  });

  it('drops a batch the receiver rejects (not retryable) and goes on with the next', async () => {
    const metrics = createMetrics({ processMetrics: false });
    const transport = new ScriptedTransport();
    transport.script.push(new DeliveryError('400 invalid', { retryable: false }));
    const q = queue(transport, metrics, { batchSize: 2 });
    q.offer(event(0));
    await until(() => transport.batches.length >= 1, 'the first attempt');
    for (let i = 1; i < 3; i++) q.offer(event(i));
    await until(() => transport.delivered.length === 2, 'two deliveries');
    assert.deepEqual(transport.batches, [['event-0'], ['event-1', 'event-2']], 'the rejected batch is not sent again');
    assert.deepEqual(transport.delivered, ['event-1', 'event-2']);
    assert.deepEqual(await auditCounts(metrics, 'http'), { emitted: 3, delivered: 2, retried: 0, dropped: { rejected: 1 } });
    await q.close(1000);
  });

  it('an event that cannot be serialized is dropped as rejected, not retried for ever, and the next ones are delivered', async () => {
    const metrics = createMetrics({ processMetrics: false });
    const out = new PassThrough();
    let written = '';
    out.on('data', (chunk: Buffer) => (written += chunk.toString('utf8')));
    const q = queue(stdoutTransport(out), metrics, { batchSize: 1 });
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    q.offer({ ...event(0), caller: { requestingId: 'test', custom: cyclic as never } });
    q.offer(event(1));
    await until(() => written.includes('event-1'), 'the next event written');
    assert.ok(!written.includes('event-0'), 'nothing of the unserializable event is written');
    assert.deepEqual(await auditCounts(metrics, 'http'), { emitted: 2, delivered: 1, retried: 0, dropped: { rejected: 1 } });
    await q.close(1000);
  });

  it('a full queue refuses the offer and counts it dropped (queue_full); room() tells beforehand', async () => {
    const metrics = createMetrics({ processMetrics: false });
    const transport = new ScriptedTransport();
    transport.script.push('hang');
    const q = queue(transport, metrics, { size: 5, batchSize: 2 });
    for (let i = 0; i < 5; i++) assert.equal(q.offer(event(i)), true);
    assert.equal(q.depth, 5, 'the in-flight event counts against the bound');
    assert.equal(q.room(), 0);
    assert.equal(q.offer(event(5)), false);
    assert.equal(q.offer(event(6)), false);
    const lost = await q.close(50);
    assert.equal(lost, 5, 'the in-flight event and the four queued ones are lost at the deadline');
    assert.deepEqual(await auditCounts(metrics, 'http'), { emitted: 7, delivered: 0, retried: 0, dropped: { queue_full: 2, shutdown: 5 } });
  });

  it('close() delivers what is queued within the deadline, then refuses new events', async () => {
    const metrics = createMetrics({ processMetrics: false });
    const transport = new ScriptedTransport();
    const q = queue(transport, metrics, { batchSize: 10 });
    for (let i = 0; i < 50; i++) q.offer(event(i));
    assert.equal(await q.close(5000), 0);
    assert.equal(transport.delivered.length, 50);
    assert.equal(q.offer(event(99)), false);
    assert.deepEqual(await auditCounts(metrics, 'http'), { emitted: 51, delivered: 50, retried: 0, dropped: { shutdown: 1 } });
  });

  it('close() during an outage stops retrying at the deadline and reports every undelivered event', async () => {
    const metrics = createMetrics({ processMetrics: false });
    const transport = new ScriptedTransport();
    for (let i = 0; i < 1000; i++) transport.script.push(new DeliveryError('unreachable', { retryable: true }));
    const q = queue(transport, metrics, { batchSize: 4, minBackoffMs: 10, maxBackoffMs: 10 });
    for (let i = 0; i < 10; i++) q.offer(event(i));
    const started = Date.now();
    const lost = await q.close(200);
    const took = Date.now() - started;
    assert.ok(took >= 190 && took < 1500, `close took ${took} ms for a 200 ms deadline`);
    assert.equal(lost, 10, 'the in-flight batch and the queued events are all reported');
    const counts = await auditCounts(metrics, 'http');
    assert.equal(counts.emitted, 10);
    assert.equal(counts.delivered, 0);
    assert.deepEqual(counts.dropped, { shutdown: 10 });
    assert.ok(counts.retried > 0);
  });
});
