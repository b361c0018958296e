/**
 * The syslog audit sink against a real rsyslogd (Debian's rsyslog, started by the test on
 * 127.0.0.1): RFC 5424 messages in RFC 6587 octet-counted frames over TCP and over TLS,
 * parsed by rsyslog itself; a receiver outage with recovery; the books balanced.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { AuditEvent } from '../../src/audit/event.js';
import { post, startTestApp, type TestApp } from '../helpers/app.js';
import { startRsyslog, type RsyslogServer } from '../helpers/rsyslog.js';
import { auditCounts, balanced } from './counts.js';

function tenants(server: RsyslogServer, extra = ''): string {
  const tls = server.tls ? `tls: { caFile: ${server.caFile}, serverName: ${server.serverName} }` : '';
  return `
version: 1
audit:
  sinks:
    soc:
      type: syslog
      syslog: { host: 127.0.0.1, port: ${server.port}, facility: local4, appName: keyward-test, timeout: 1s, ${tls} }
      queue: { minBackoff: 20ms, maxBackoff: 100ms ${extra} }
  default: { sinks: [soc] }
tenants:
  acme:
    kmsConfigs:
      - { id: 1, status: primary, provider: local, local: { keyFile: keys/a.key } }
`;
}

const generate = (app: TestApp, requestingId: string) => post(app, '/v1/keys/generate', { tenantId: 'acme', metadata: { requestingId } });

async function settled(app: TestApp): Promise<void> {
  for (let i = 0; i < 500 && (app.runtime.audit.depths().get('syslog') ?? 0) > 0; i++) await sleep(10);
  assert.equal(app.runtime.audit.depths().get('syslog') ?? 0, 0, 'the syslog queue drained');
}

describe('syslog audit sink (real rsyslogd)', () => {
  let plain: RsyslogServer;
  let tls: RsyslogServer;
  before(async () => {
    [plain, tls] = await Promise.all([startRsyslog(), startRsyslog({ tls: true })]);
  });
  after(async () => {
    await Promise.all([plain.close(), tls.close()]);
  });

  for (const transport of ['tcp', 'tls'] as const) {
    it(`${transport}: rsyslog parses every RFC 5424 field; MSG is the event JSON`, async () => {
      const server = transport === 'tls' ? tls : plain;
      const app = await startTestApp({ tenants: tenants(server) });
      const start = (await server.messages()).length;
      try {
        for (let i = 0; i < 5; i++) await generate(app, `svc-${i}`);
        await post(app, '/v1/keys/generate', { tenantId: 'nobody', metadata: { requestingId: 'probe' } });
        const got = (await server.waitFor(start + 6)).slice(start);
        const events = got.map((m) => JSON.parse(m.msg) as AuditEvent);
        assert.deepEqual(events.map((e) => e.caller.requestingId), ['svc-0', 'svc-1', 'svc-2', 'svc-3', 'svc-4', 'probe']);
        for (const [i, m] of got.entries()) {
          const event = events[i]!;
          assert.equal(m.version, 1);
          // local4 = 20; info (6) for a success, warning (4) for a failure.
          assert.equal(m.pri, 20 * 8 + (event.outcome === 'success' ? 6 : 4));
          assert.equal(m.hostname, 'test-replica');
          assert.equal(m.appName, 'keyward-test');
          assert.equal(m.procId, '-');
          assert.equal(m.msgId, event.operation);
          assert.equal(m.structuredData, '-');
          assert.equal(Date.parse(m.timestamp), Date.parse(event.time));
        }
        assert.equal(events[5]!.outcome, 'failure');
        assert.equal(events[5]!.error?.code, 201);
        await settled(app);
        const counts = await auditCounts(app.metrics, 'syslog');
        assert.deepEqual(counts, { emitted: 6, delivered: 6, retried: 0, dropped: {} });
      } finally {
        await app.close();
      }
    });
  }

  it('receiver outage: events wait, reconnect after rsyslog restarts, all arrive; emitted = delivered', async () => {
    const app = await startTestApp({ tenants: tenants(plain, ', batchSize: 10') });
    try {
      const before = (await plain.messages()).length;
      await generate(app, 'before');
      await plain.waitFor(before + 1);
      await settled(app);
      await plain.stop();
      // Let the sink see the connection close before the outage traffic.
      await sleep(100);
      const ops = 60;
      for (let i = 0; i < ops; i++) assert.equal((await generate(app, `outage-${i}`)).statusCode, 200);
      await sleep(300);
      assert.equal(app.runtime.audit.depths().get('syslog'), ops, 'every outage event is waiting');
      await plain.start();
      await settled(app);
      // The sink counts an event delivered once it is written to the TCP stream (syslog over TCP has
      // no acknowledgement); rsyslog writes its file a moment later: wait for the lines themselves.
      const received = (await plain.waitFor(before + 1 + ops)).map((m) => JSON.parse(m.msg) as AuditEvent);
      const outage = received.filter((e) => e.caller.requestingId.startsWith('outage-'));
      assert.equal(new Set(outage.map((e) => e.id)).size, ops, 'every outage event arrived');
      assert.deepEqual(outage.map((e) => e.caller.requestingId), Array.from({ length: ops }, (_, i) => `outage-${i}`), 'in order');
      const counts = await auditCounts(app.metrics, 'syslog');
      assert.equal(counts.emitted, ops + 1);
      assert.equal(counts.delivered, ops + 1);
      assert.ok(balanced(counts));
      assert.ok(counts.retried > 0, 'delivery was retried');
      assert.ok(app.logs.some((l) => l.includes('audit sink recovered')));
    } finally {
      await app.close();
    }
  });
});
