/**
 * The HTTP audit sink against a real collector started by the test (node:http/https):
 * generic JSON and Splunk HEC framing, the token from a secret file, TLS verified against
 * the sink's caFile, answers that are retried or dropped, a collector outage with
 * recovery, the required policy refusing operations while events cannot be queued, and
 * the shutdown flush. Every scenario ends with the books balanced:
 * emitted = delivered + dropped.
 */
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { AuditEvent } from '../../src/audit/event.js';
import { startAuditCollector, type AuditCollector } from '../helpers/audit-collector.js';
import { json, post, startTestApp, type ErrorJson, type TestApp } from '../helpers/app.js';
import { makeThrowawayCa, type ThrowawayCa } from '../helpers/throwaway-ca.js';
import { auditCounts, balanced } from './counts.js';

const TOKEN = 'collector-token-5b1e';

function tenants(options: { url: string; format?: string; caFile?: string; queue?: string; policy?: string; tokenFile?: string }): string {
  return `
version: 1
audit:
  sinks:
    siem:
      type: http
      http:
        url: ${options.url}
        format: ${options.format ?? 'json'}
        token: { file: ${options.tokenFile ?? 'siem-token'} }
        timeout: 1s
        ${options.caFile ? `caFile: ${options.caFile}` : ''}
      queue: ${options.queue ?? '{ minBackoff: 20ms, maxBackoff: 200ms }'}
tenants:
  acme:
    audit: { sinks: [siem], policy: ${options.policy ?? 'bestEffort'} }
    kmsConfigs:
      - { id: 1, status: primary, provider: local, local: { keyFile: keys/a.key } }
  globex:
    audit: { sinks: [siem] }
    kmsConfigs:
      - { id: 2, status: primary, provider: local, local: { keyFile: keys/a.key } }
  plain:
    kmsConfigs:
      - { id: 3, status: primary, provider: local, local: { keyFile: keys/a.key } }
`;
}

async function withApp(yaml: string): Promise<TestApp> {
  const app = await startTestApp({ tenants: 'version: 1\ntenants: {}\n' });
  await writeFile(join(app.dir, 'siem-token'), `${TOKEN}\n`);
  await app.rewrite(yaml);
  return app;
}

const generate = (app: TestApp, tenantId = 'acme', requestingId = 'svc') => post(app, '/v1/keys/generate', { tenantId, metadata: { requestingId } });

async function settled(app: TestApp): Promise<void> {
  for (let i = 0; i < 400 && (app.runtime.audit.depths().get('http') ?? 0) > 0; i++) await sleep(10);
  assert.equal(app.runtime.audit.depths().get('http') ?? 0, 0, 'the http queue drained');
}

describe('HTTP audit sink (real collector)', () => {
  let collector: AuditCollector;
  let tlsCollector: AuditCollector;
  let ca: ThrowawayCa;
  before(async () => {
    collector = await startAuditCollector({ token: TOKEN });
    ca = await makeThrowawayCa();
    tlsCollector = await startAuditCollector({ token: TOKEN, tls: { key: ca.key, cert: ca.cert } });
  });
  after(async () => {
    await collector.close();
    await tlsCollector.close();
    await ca.remove();
  });

  it('json: batches reach the collector with the bearer token from the secret file; the events are those of the operations', async () => {
    const app = await withApp(tenants({ url: `${collector.url}/events` }));
    const start = collector.received.length;
    try {
      for (let i = 0; i < 20; i++) assert.equal((await generate(app, i % 2 ? 'acme' : 'globex', `svc-${i}`)).statusCode, 200);
      assert.equal((await generate(app, 'plain')).statusCode, 200);
      await collector.waitFor(start + 20);
      await settled(app);
      const got = collector.received.slice(start).map((r) => r.event as unknown as AuditEvent);
      assert.equal(got.length, 20, 'tenant plain routes to the default (stdout), not to the collector');
      assert.deepEqual(new Set(got.map((e) => e.caller.requestingId)), new Set(Array.from({ length: 20 }, (_, i) => `svc-${i}`)));
      assert.ok(got.every((e) => e.schema === 'keyward.audit.v1' && e.operation === 'generate' && e.outcome === 'success'));
      assert.equal(app.audit.filter((e) => e.tenantId === 'plain').length, 1, 'the default route wrote the plain tenant event to stdout');
      const counts = await auditCounts(app.metrics, 'http');
      assert.deepEqual(counts, { emitted: 20, delivered: 20, retried: 0, dropped: {} });
    } finally {
      await app.close();
    }
  });

  it('splunk-hec: one HEC envelope per event, Splunk token, time in epoch seconds, host = replica', async () => {
    const app = await withApp(tenants({ url: `${collector.url}/services/collector/event`, format: 'splunk-hec' }));
    const start = collector.received.length;
    try {
      for (let i = 0; i < 5; i++) await generate(app);
      await collector.waitFor(start + 5);
      const got = collector.received.slice(start);
      assert.ok(got.every((r) => r.format === 'hec'));
      for (const { envelope, event } of got) {
        assert.equal(envelope?.source, 'keyward');
        assert.equal(envelope?.sourcetype, 'keyward:audit');
        assert.equal(envelope?.host, 'test-replica');
        assert.equal(envelope?.time, Date.parse(String(event.time)) / 1000);
      }
    } finally {
      await app.close();
    }
  });

  it('https: verified against the sink caFile; without it the certificate is refused and events wait, then go once it is set', async () => {
    const url = `https://127.0.0.1:${tlsCollector.port}/events`;
    const app = await withApp(tenants({ url }));
    const start = tlsCollector.received.length;
    try {
      await generate(app);
      await sleep(300);
      assert.equal(tlsCollector.received.length, start, 'an unknown CA is never trusted');
      assert.equal(app.runtime.audit.depths().get('http'), 1, 'the event waits in the queue');
      assert.ok(app.logs.some((l) => l.includes('audit delivery failed; retrying') && /certificate/i.test(l)), 'the log says why');
      // The fix is a reload: the changed sink drains its queue (still failing) within the flush timeout, and the new one takes over.
      await app.rewrite(tenants({ url, caFile: ca.caFile }));
      await generate(app);
      await tlsCollector.waitFor(start + 1);
      const counts = await auditCounts(app.metrics, 'http');
      assert.ok(counts.retried >= 1);
    } finally {
      await app.close();
    }
    const counts = await auditCounts(app.metrics, 'http');
    assert.ok(balanced(counts), JSON.stringify(counts));
    assert.equal(counts.delivered, 1);
    assert.deepEqual(counts.dropped, { shutdown: 1 }, 'the event of the retired sink could never be delivered; it is counted, not lost silently');
  });

  it('503 and 429 are retried (Retry-After honoured), 401 is retried until the token is right, 400 drops the batch', async () => {
    const app = await withApp(tenants({ url: `${collector.url}/events`, queue: '{ batchSize: 1, minBackoff: 10ms, maxBackoff: 2s }' }));
    const start = collector.received.length;
    try {
      collector.failNext(2, 503);
      await generate(app, 'acme', 'after-503');
      await collector.waitFor(start + 1);
      collector.failNext(1, 429, 1);
      const t0 = Date.now();
      await generate(app, 'acme', 'after-429');
      await collector.waitFor(start + 2);
      assert.ok(Date.now() - t0 >= 900, 'waited for Retry-After: 1');
      collector.failNext(1, 400);
      await generate(app, 'acme', 'rejected');
      await sleep(100);
      await generate(app, 'acme', 'after-400');
      await collector.waitFor(start + 3);
      await writeFile(join(app.dir, 'siem-token'), 'wrong-token');
      await generate(app, 'acme', 'after-401');
      await sleep(200);
      assert.equal(collector.received.length, start + 3, 'a wrong token delivers nothing');
      await writeFile(join(app.dir, 'siem-token'), TOKEN);
      await collector.waitFor(start + 4);
      await settled(app);
      assert.deepEqual(collector.received.slice(start).map((r) => (r.event.caller as { requestingId: string }).requestingId), ['after-503', 'after-429', 'after-400', 'after-401']);
      const counts = await auditCounts(app.metrics, 'http');
      assert.equal(counts.emitted, 5);
      assert.equal(counts.delivered, 4);
      assert.deepEqual(counts.dropped, { rejected: 1 });
      assert.ok(counts.retried >= 4, `retried ${counts.retried}`);
      assert.ok(app.logs.some((l) => l.includes('check the sink') && l.includes('401')));
      assert.ok(!app.logs.some((l) => l.includes(TOKEN)), 'the token is never logged');
    } finally {
      await app.close();
    }
  });

  it('collector outage: events queue, nothing is lost, everything arrives after recovery (at least once, deduplicable by id)', async () => {
    const app = await withApp(tenants({ url: `${collector.url}/events`, queue: '{ batchSize: 25, minBackoff: 20ms, maxBackoff: 100ms }' }));
    try {
      await collector.stop();
      const ops = 120;
      for (let i = 0; i < ops; i++) assert.equal((await generate(app, 'acme', `outage-${i}`)).statusCode, 200, 'bestEffort: operations go on');
      await sleep(200);
      assert.equal(app.runtime.audit.depths().get('http'), ops, 'all waiting');
      const metrics = await app.ops.inject({ url: '/metrics' });
      assert.match(metrics.body, new RegExp(`keyward_audit_queue_events\\{sink_type="http"\\} ${ops}`));
      const start = collector.received.length;
      await collector.start();
      await settled(app);
      const got = collector.received.slice(start).map((r) => r.event as unknown as AuditEvent);
      const ids = new Set(got.map((e) => e.id));
      assert.equal(ids.size, ops, 'every event arrived');
      assert.deepEqual(new Set(got.map((e) => e.caller.requestingId)), new Set(Array.from({ length: ops }, (_, i) => `outage-${i}`)));
      const counts = await auditCounts(app.metrics, 'http');
      assert.equal(counts.emitted, ops);
      assert.equal(counts.delivered, ops);
      assert.deepEqual(counts.dropped, {});
      assert.ok(counts.retried > 0);
      // Redelivery happens only for a batch whose answer was lost; this outage refused connections, so none was.
      assert.equal(got.length, ops);
    } finally {
      await collector.start().catch(() => undefined);
      await app.close();
    }
  });

  it('a lost answer: the batch is sent again with the same event ids, so deduplicating by id gives every event once', async () => {
    const app = await withApp(tenants({ url: `${collector.url}/events`, queue: '{ batchSize: 50, minBackoff: 20ms, maxBackoff: 50ms }' }));
    const start = collector.received.length;
    try {
      // The collector stores the first two batches but the connection breaks before its answer.
      collector.loseAnswers(2);
      for (let i = 0; i < 5; i++) await generate(app, 'acme', `dup-${i}`);
      await settled(app);
      await sleep(100);
      const got = collector.received.slice(start).map((r) => r.event as unknown as AuditEvent);
      const ids = new Set(got.map((e) => e.id));
      assert.equal(ids.size, 5, 'every event, once by id');
      assert.ok(got.length > 5, `the unanswered batch was redelivered (${got.length} received)`);
      for (const id of ids) {
        const copies = got.filter((e) => e.id === id);
        for (const copy of copies) assert.deepEqual(copy, copies[0], 'a redelivered event is identical');
      }
      const counts = await auditCounts(app.metrics, 'http');
      assert.equal(counts.delivered, 5, 'delivered counts each event once, when acknowledged');
      assert.ok(counts.retried >= 1);
      assert.ok(balanced(counts));
    } finally {
      collector.loseAnswers(0);
      await app.close();
    }
  });

  it('a full queue: bestEffort tenants go on and count drops; required tenants get 503 / 302 and no key, until the SIEM is back', async () => {
    const app = await withApp(tenants({ url: `${collector.url}/events`, queue: '{ size: 3, minBackoff: 20ms, maxBackoff: 50ms }', policy: 'required' }));
    try {
      await collector.stop();
      for (let i = 0; i < 3; i++) assert.equal((await generate(app, 'acme')).statusCode, 200);
      const refused = await generate(app, 'acme');
      assert.equal(refused.statusCode, 503);
      assert.equal(json<ErrorJson>(refused).code, 302);
      assert.equal(refused.headers['retry-after'], '1');
      assert.ok(!('dek' in json(refused)));
      assert.match(json<ErrorJson>(refused).message, /requires every operation to be audited/);
      const batch = json<{ keys: object; failures: Record<string, ErrorJson> }>(await post(app, '/v1/keys/batch/generate', { tenantId: 'acme', ids: ['x', 'y'], metadata: { requestingId: 'b' } }));
      assert.deepEqual(Object.keys(batch.keys), []);
      assert.deepEqual(Object.values(batch.failures).map((f) => f.code), [302, 302]);
      const event = await app.api.inject({
        method: 'POST',
        url: '/api/1/event/security-event',
        headers: { authorization: `cmk test-api-key-0123456789`, 'content-type': 'application/json' },
        payload: JSON.stringify({ tenantId: 'acme', iclFields: { requestingId: 'x', event: 'USER_LOGIN' } }),
      });
      // /api/1 speaks the SDKs' vocabulary: 301 (their security-event class), still 503 with the message.
      assert.equal(event.statusCode, 503);
      assert.equal(json<ErrorJson>(event).code, 301);
      assert.match(json<ErrorJson>(event).message, /requires every operation to be audited/);
      const sdkWrap = await app.api.inject({
        method: 'POST',
        url: '/api/1/document/batch-wrap',
        headers: { authorization: `cmk test-api-key-0123456789`, 'content-type': 'application/json' },
        payload: JSON.stringify({ tenantId: 'acme', iclFields: { requestingId: 'x' }, documentIds: ['d1'] }),
      });
      assert.deepEqual(json<{ failures: Record<string, ErrorJson> }>(sdkWrap).failures.d1?.code, 301);
      // globex shares the sink but is bestEffort: served, its event dropped and counted.
      assert.equal((await generate(app, 'globex')).statusCode, 200);
      const metrics = (await app.ops.inject({ url: '/metrics' })).body;
      assert.match(metrics, /keyward_audit_refused_operations_total\{operation="generate"\} 4/);
      assert.match(metrics, /keyward_audit_refused_operations_total\{operation="security_event"\} 1/);
      assert.match(metrics, /keyward_audit_events_dropped_total\{sink_type="http",reason="queue_full"\} [1-9]/);

      await collector.start();
      await settled(app);
      assert.equal((await generate(app, 'acme')).statusCode, 200, 'served again once the queue drains');
      await settled(app);
      const counts = await auditCounts(app.metrics, 'http');
      assert.ok(balanced(counts), JSON.stringify(counts));
      assert.equal(counts.delivered, 4, 'three queued during the outage, one after');
    } finally {
      await collector.start().catch(() => undefined);
      await app.close();
    }
  });

  it('a reload keeps an unchanged sink and its queue; route changes apply at once', async () => {
    const yaml = tenants({ url: `${collector.url}/events` });
    const app = await withApp(yaml);
    try {
      await collector.stop();
      for (let i = 0; i < 3; i++) await generate(app, 'acme', `kept-${i}`);
      await sleep(100);
      assert.equal(app.runtime.audit.depths().get('http'), 3);
      // plain now routes to the sink too; the sink itself is unchanged.
      await app.rewrite(yaml.replace('  plain:\n', '  plain:\n    audit: { sinks: [siem] }\n'));
      assert.equal(app.runtime.audit.depths().get('http'), 3, 'the queue survived the reload');
      await generate(app, 'plain', 'rerouted');
      const start = collector.received.length;
      await collector.start();
      await settled(app);
      assert.deepEqual(collector.received.slice(start).map((r) => (r.event.caller as { requestingId: string }).requestingId).sort(), ['kept-0', 'kept-1', 'kept-2', 'rerouted']);
      const counts = await auditCounts(app.metrics, 'http');
      assert.deepEqual(counts.dropped, {}, 'nothing was dropped by the reload');
    } finally {
      await collector.start().catch(() => undefined);
      await app.close();
    }
  });

  it('shutdown flushes the queue; what the deadline leaves undelivered is counted and reported', async () => {
    const app = await withApp(tenants({ url: `${collector.url}/events`, queue: '{ minBackoff: 20ms, maxBackoff: 50ms }' }));
    const start = collector.received.length;
    collector.hang(true);
    for (let i = 0; i < 10; i++) await generate(app);
    collector.hang(false);
    await app.close();
    assert.equal(collector.received.length - start >= 10, true, 'close() waited for delivery');
    const counts = await auditCounts(app.metrics, 'http');
    assert.equal(counts.delivered, 10);

    const down = await withApp(tenants({ url: `${collector.url}/events`, queue: '{ minBackoff: 20ms, maxBackoff: 50ms }' }));
    await collector.stop();
    try {
      for (let i = 0; i < 7; i++) await generate(down);
      const started = Date.now();
      await down.close();
      assert.ok(Date.now() - started < 8_000, 'the flush timeout bounds shutdown');
      const lost = await auditCounts(down.metrics, 'http');
      assert.deepEqual(lost.dropped, { shutdown: 7 });
      assert.ok(balanced(lost));
      const report = down.logs.find((l) => l.includes('audit sink closed with events it could not deliver'));
      assert.ok(report, 'shutdown reports what it could not deliver');
      assert.match(report, /"undelivered":7/);
    } finally {
      await collector.start();
    }
  });
});
