/**
 * A real Keyward process on SIGTERM: queued audit events are delivered before it exits;
 * with the SIEM down, it gives up at KEYWARD_AUDIT_FLUSH_TIMEOUT, says how many events it
 * could not deliver, and still exits 0 within KEYWARD_SHUTDOWN_TIMEOUT. Stdout audit lines
 * are real JSON lines, told apart from log lines by their schema field.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startAuditCollector, type AuditCollector } from '../helpers/audit-collector.js';
import { startKeyward } from '../helpers/process.js';

const API_KEY = 'shutdown-test-api-key-0123456789';
const TOKEN = 'shutdown-collector-token';

describe('audit flush at shutdown (real process)', () => {
  let dir: string;
  let collector: AuditCollector;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'keyward-audit-shutdown-'));
    collector = await startAuditCollector({ token: TOKEN });
    await writeFile(
      join(dir, 'tenants.yaml'),
      `version: 1
audit:
  sinks:
    siem:
      type: http
      http: { url: '${collector.url}/events', token: { env: SIEM_TOKEN } }
      queue: { minBackoff: 50ms, maxBackoff: 200ms }
tenants:
  acme:
    audit: { sinks: [siem, stdout] }
    kmsConfigs:
      - { id: 1, status: primary, provider: local, local: { keyFile: keys/a.key } }
`,
    );
  });
  after(async () => {
    await collector.close();
    await rm(dir, { recursive: true, force: true });
  });

  const start = () =>
    startKeyward({ KEYWARD_CONFIG: join(dir, 'tenants.yaml'), KEYWARD_API_KEY: API_KEY, SIEM_TOKEN: TOKEN, KEYWARD_AUDIT_FLUSH_TIMEOUT: '1s', KEYWARD_SHUTDOWN_TIMEOUT: '5s', KEYWARD_REPLICA_ID: 'keyward-0' });
  const generate = (apiUrl: string, requestingId: string) =>
    fetch(`${apiUrl}/v1/keys/generate`, {
      method: 'POST',
      headers: { authorization: `Bearer ${API_KEY}`, 'content-type': 'application/json' },
      body: JSON.stringify({ tenantId: 'acme', metadata: { requestingId } }),
    });

  it('SIEM up: every event is delivered before the process exits 0; stdout carries the same events as JSON lines', async () => {
    const proc = await start();
    const before = collector.received.length;
    collector.hang(true);
    for (let i = 0; i < 5; i++) assert.equal((await generate(proc.apiUrl, `up-${i}`)).status, 200);
    setTimeout(() => collector.hang(false), 200).unref();
    proc.child.kill('SIGTERM');
    assert.equal(await proc.exited, 0);
    const delivered = collector.received.slice(before).map((r) => r.event);
    assert.deepEqual(new Set(delivered.map((e) => (e.caller as { requestingId: string }).requestingId)), new Set(['up-0', 'up-1', 'up-2', 'up-3', 'up-4']));
    const stdoutEvents = proc.lines.map((l) => JSON.parse(l) as Record<string, unknown>).filter((e) => e.schema === 'keyward.audit.v1');
    assert.deepEqual(new Set(stdoutEvents.map((e) => e.id)), new Set(delivered.map((e) => e.id)), 'one event, the same id, in both sinks');
    assert.ok(stdoutEvents.every((e) => e.replica === 'keyward-0' && !('level' in e)));
    assert.ok(proc.lines.some((l) => l.includes('audit sink flushed and closed') && l.includes('"sink":"siem"')));
  });

  it('SIEM down: shutdown waits KEYWARD_AUDIT_FLUSH_TIMEOUT, reports the undelivered events, exits 0', async () => {
    const proc = await start();
    await collector.stop();
    try {
      for (let i = 0; i < 4; i++) assert.equal((await generate(proc.apiUrl, `down-${i}`)).status, 200);
      const t0 = Date.now();
      proc.child.kill('SIGTERM');
      assert.equal(await proc.exited, 0);
      const took = Date.now() - t0;
      assert.ok(took >= 900 && took < 4_500, `shutdown took ${took} ms with a 1s flush timeout`);
      const report = proc.lines.map((l) => JSON.parse(l) as Record<string, unknown>).find((e) => e.msg === 'audit sink closed with events it could not deliver (counted as dropped, reason shutdown)');
      assert.ok(report, proc.lines.join('\n'));
      assert.equal(report.sink, 'siem');
      assert.equal(report.undelivered, 4);
    } finally {
      await collector.start();
    }
  });
});
