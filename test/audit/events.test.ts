/**
 * Audit events of a real in-process Keyward (stdout sink, captured): one event per key
 * operation and per batch item, per security event and per derivation, with every field
 * docs/audit.md promises — and never key material.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { readFile } from 'node:fs/promises';
import type { AuditEvent } from '../../src/audit/event.js';
import { parseTenantsFile } from '../../src/config/tenants-file.js';
import { API_KEY, json, post, startTestApp, type ErrorJson, type TestApp } from '../helpers/app.js';

const TENANTS = `
version: 1
tenants:
  tenant-a:
    kmsConfigs:
      - { id: 11, status: primary, provider: local, local: { keyFile: keys/a.key } }
    derivationSecrets:
      - { id: 5, state: current, kmsConfigId: 11, wrapped: { file: secrets/a5.b64, createIfMissing: true } }
  tenant-b:
    kmsConfigs:
      - { id: 21, status: primary, provider: local, local: { keyFile: keys/a.key } }
  tenant-leased:
    kmsConfigs:
      - { id: 31, status: primary, provider: local, local: { keyFile: keys/a.key }, leasing: { enabled: true } }
`;

const METADATA = { requestingId: 'billing', dataLabel: 'PII', sourceIp: '10.1.2.3', objectId: 'invoice-7', requestId: 'req-1', custom: { region: 'eu' } };
const ICL = { requestingId: 'svc-1', dataLabel: 'PHI', sourceIp: '10.9.9.9', objectId: 'doc-9', requestId: 'req-7' };

describe('audit events of key operations', () => {
  let app: TestApp;
  const secrets: string[] = [];
  before(async () => {
    app = await startTestApp({ tenants: TENANTS });
  });
  after(async () => {
    await app.close();
    // Nothing the callers received as key material appears in any audit event.
    const all = JSON.stringify(app.audit);
    for (const secret of secrets) {
      const bytes = Buffer.from(secret, 'base64');
      for (const form of [secret, bytes.toString('hex'), bytes.toString('base64url')]) assert.ok(!all.includes(form), 'no key material in audit events');
    }
  });

  /** Runs `act` and returns the audit events it produced. */
  const during = async (act: () => Promise<unknown>): Promise<AuditEvent[]> => {
    const before = app.audit.length;
    await act();
    // The stdout sink delivers asynchronously (one tick per batch).
    for (let i = 0; i < 100 && app.runtime.audit.depths().get('stdout'); i++) await new Promise((r) => setTimeout(r, 5));
    return app.audit.slice(before);
  };
  const compat = (endpoint: string, body: unknown) =>
    app.api.inject({ method: 'POST', url: `/api/1/${endpoint}`, headers: { authorization: `cmk ${API_KEY}`, 'content-type': 'application/json' }, payload: JSON.stringify(body) });

  it('generate: one event with every field, stamped with schema, id, time and replica', async () => {
    const events = await during(async () => {
      const res = json<{ dek: string; edek: string }>(await post(app, '/v1/keys/generate', { tenantId: 'tenant-a', metadata: METADATA }));
      secrets.push(res.dek);
    });
    assert.equal(events.length, 1);
    const [event] = events;
    assert.equal(event!.schema, 'keyward.audit.v1');
    assert.match(event!.id, /^[0-9a-f-]{36}$/);
    assert.ok(Math.abs(Date.parse(event!.time) - Date.now()) < 10_000);
    assert.match(event!.time, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    assert.deepEqual(
      { ...event, id: undefined, time: undefined },
      {
        schema: 'keyward.audit.v1',
        id: undefined,
        time: undefined,
        replica: 'test-replica',
        tenantId: 'tenant-a',
        operation: 'generate',
        outcome: 'success',
        kms: { configId: 11, provider: 'local', mode: 'direct' },
        caller: METADATA,
      },
    );
  });

  it('wrap, unwrap and rewrap (rekey: one event per side); failures carry the error code and name', async () => {
    const dek = Buffer.alloc(32, 9).toString('base64');
    secrets.push(dek);
    let edek = '';
    const wrap = await during(async () => {
      edek = json<{ edek: string }>(await post(app, '/v1/keys/wrap', { tenantId: 'tenant-a', dek, metadata: { requestingId: 'w' } })).edek;
    });
    assert.deepEqual(wrap.map((e) => [e.operation, e.outcome, e.kms?.configId]), [['wrap', 'success', 11]]);

    const unwrap = await during(() => post(app, '/v1/keys/unwrap', { tenantId: 'tenant-a', edek, metadata: { requestingId: 'u' } }));
    assert.deepEqual(unwrap.map((e) => [e.operation, e.outcome, e.kms?.configId, e.caller.requestingId]), [['unwrap', 'success', 11, 'u']]);

    const rewrap = await during(() => post(app, '/v1/keys/rewrap', { tenantId: 'tenant-a', edek, newTenantId: 'tenant-b', metadata: { requestingId: 'r' } }));
    assert.deepEqual(
      rewrap.map((e) => [e.tenantId, e.operation, e.outcome, e.kms?.configId, e.rekey]),
      [
        ['tenant-a', 'rekey', 'success', 11, { role: 'source', fromTenantId: 'tenant-a', toTenantId: 'tenant-b' }],
        ['tenant-b', 'rekey', 'success', 21, { role: 'target', fromTenantId: 'tenant-a', toTenantId: 'tenant-b' }],
      ],
    );

    const stolen = await during(() => post(app, '/v1/keys/unwrap', { tenantId: 'tenant-b', edek, metadata: { requestingId: 'thief' } }));
    assert.equal(stolen.length, 1);
    assert.equal(stolen[0]!.tenantId, 'tenant-b');
    assert.equal(stolen[0]!.outcome, 'failure');
    assert.deepEqual({ code: stolen[0]!.error?.code, name: stolen[0]!.error?.name }, { code: 203, name: 'INVALID_PROVIDED_EDEK' });
    assert.equal(stolen[0]!.kms, undefined, 'no config of tenant-b was involved');

    const unknown = await during(() => post(app, '/v1/keys/generate', { tenantId: 'nobody', metadata: { requestingId: 'probe' } }));
    assert.deepEqual(unknown.map((e) => [e.tenantId, e.operation, e.outcome, e.error?.code]), [['nobody', 'generate', 'failure', 201]]);

    const badTarget = await during(() => post(app, '/v1/keys/rewrap', { tenantId: 'tenant-a', edek, newTenantId: 'nobody', metadata: { requestingId: 'r' } }));
    assert.deepEqual(badTarget.map((e) => [e.tenantId, e.operation, e.outcome, e.error?.code, e.rekey?.role]), [['tenant-a', 'rekey', 'failure', 201, 'source']]);
  });

  it('batches: one event per item naming it, failures per item; a batch refused as a whole is one event', async () => {
    let edeks: Record<string, string> = {};
    const gen = await during(async () => {
      const res = json<{ keys: Record<string, { dek: string; edek: string }> }>(await post(app, '/v1/keys/batch/generate', { tenantId: 'tenant-a', ids: ['d1', 'd2', 'd3'], metadata: { requestingId: 'batcher' } }));
      edeks = Object.fromEntries(Object.entries(res.keys).map(([id, k]) => [id, k.edek]));
      secrets.push(...Object.values(res.keys).map((k) => k.dek));
    });
    assert.deepEqual(gen.map((e) => [e.operation, e.outcome, e.batch?.itemId, e.batch?.size]).sort(), [
      ['generate', 'success', 'd1', 3],
      ['generate', 'success', 'd2', 3],
      ['generate', 'success', 'd3', 3],
    ]);
    const unwrap = await during(() => post(app, '/v1/keys/batch/unwrap', { tenantId: 'tenant-a', edeks: { ...edeks, bad: 'AAAA' }, metadata: { requestingId: 'batcher' } }));
    assert.equal(unwrap.length, 4);
    assert.deepEqual(unwrap.filter((e) => e.outcome === 'failure').map((e) => [e.batch?.itemId, e.error?.code]), [['bad', 203]]);
    assert.equal(new Set(unwrap.map((e) => e.id)).size, 4, 'every event has its own id');

    const refused = await during(() => post(app, '/v1/keys/batch/generate', { tenantId: 'nobody', ids: ['x', 'y'], metadata: { requestingId: 'batcher' } }));
    assert.deepEqual(refused.map((e) => [e.operation, e.outcome, e.error?.code, e.batch]), [['generate', 'failure', 201, { size: 2 }]]);

    // The error metric counts the failed item and the refused request by catalogue code.
    const scrape = (await app.ops.inject({ url: '/metrics' })).body;
    assert.match(scrape, /keyward_errors_total\{code="203",scope="item"\} [1-9]/);
    assert.match(scrape, /keyward_errors_total\{code="201",scope="request"\} [1-9]/);
  });

  it('leased operations say so, with the leased key id', async () => {
    let edek = '';
    const gen = await during(async () => {
      const res = json<{ dek: string; edek: string }>(await post(app, '/v1/keys/generate', { tenantId: 'tenant-leased', metadata: { requestingId: 'l' } }));
      edek = res.edek;
      secrets.push(res.dek);
    });
    const leasedKeyId = gen[0]!.kms?.leasedKeyId;
    assert.ok(typeof leasedKeyId === 'number' && leasedKeyId > 0);
    assert.deepEqual(gen[0]!.kms, { configId: 31, provider: 'local', mode: 'leased', leasedKeyId });
    const unwrap = await during(() => post(app, '/v1/keys/unwrap', { tenantId: 'tenant-leased', edek, metadata: { requestingId: 'l' } }));
    assert.deepEqual(unwrap[0]!.kms, { configId: 31, provider: 'local', mode: 'leased', leasedKeyId });
  });

  it('/api/1: wrap, rekey, batch, security events and derivation are audited with the SDK metadata', async () => {
    let edek = '';
    const wrap = await during(async () => {
      const res = json<{ dek: string; edek: string }>(await compat('document/wrap', { tenantId: 'tenant-a', iclFields: ICL, customFields: { org: 'acme' } }));
      edek = res.edek;
      secrets.push(res.dek);
    });
    assert.deepEqual(wrap.map((e) => [e.operation, e.caller]), [['generate', { ...ICL, custom: { org: 'acme' } }]]);

    const rekey = await during(() => compat('document/rekey', { tenantId: 'tenant-a', iclFields: ICL, encryptedDocumentKey: edek, newTenantId: 'tenant-a' }));
    assert.deepEqual(rekey.map((e) => [e.operation, e.rekey?.role]), [['rekey', 'source'], ['rekey', 'target']]);

    const event = await during(() => compat('event/security-event', { tenantId: 'tenant-a', iclFields: { ...ICL, event: 'USER_LOGIN' }, timestampMillis: 1_700_000_000_000 }));
    assert.deepEqual(event.map((e) => [e.operation, e.outcome, e.securityEvent]), [['security_event', 'success', { name: 'USER_LOGIN', occurredAt: '2023-11-14T22:13:20.000Z' }]]);
    const rejected = await during(() => compat('event/security-event', { tenantId: 'tenant-a', iclFields: { ...ICL, event: 'NOT_A_FAMILY' } }));
    assert.deepEqual(rejected.map((e) => [e.operation, e.outcome, e.error?.code]), [['security_event', 'failure', 301]]);

    const derived = await during(async () => {
      const res = await compat('key/derive-with-secret-path', { tenantId: 'tenant-a', iclFields: ICL, paths: { ssn: ['', 'eu'], email: [''] }, derivationType: 'sha512', secretType: 'deterministic' });
      assert.equal(res.statusCode, 200);
      const body = res.json<{ derivedKeys: Record<string, Record<string, Array<{ derivedKey: string }>>> }>();
      for (const paths of Object.values(body.derivedKeys)) for (const keys of Object.values(paths)) secrets.push(...keys.map((k) => k.derivedKey));
    });
    assert.deepEqual(derived.map((e) => [e.operation, e.outcome, e.kms?.configId, e.derive]), [
      ['derive', 'success', 11, { secretType: 'deterministic', derivationType: 'sha512', secretIds: [5], derivations: 3 }],
    ]);
    const noSecret = await during(() => compat('key/derive-with-secret-path', { tenantId: 'tenant-b', iclFields: ICL, paths: { ssn: [''] }, derivationType: 'sha512', secretType: 'deterministic' }));
    assert.deepEqual(noSecret.map((e) => [e.operation, e.outcome, e.error?.code]), [['derive', 'failure', 201]]);
  });

  it('docs/audit.md documents exactly the fields these events carry, and its examples are valid', async () => {
    const doc = await readFile(new URL('../../docs/audit.md', import.meta.url), 'utf8');
    const table = doc.slice(doc.indexOf('| field | always | meaning |'), doc.indexOf('**Never in an event**'));
    const documented = new Set([...table.matchAll(/^\| `(\w+)` \|/gm)].map((m) => m[1]!));
    const seen = new Set(app.audit.flatMap((e) => Object.keys(e)));
    assert.deepEqual([...seen].sort(), [...documented].sort(), 'the field table and the events agree');
    const operations = new Set(app.audit.map((e) => e.operation));
    for (const operation of operations) assert.ok(doc.includes(`\`${operation}\``), `operation ${operation} is documented`);
    for (const block of doc.matchAll(/```json\n([\s\S]*?)```/g)) JSON.parse(block[1]!);
    for (const block of doc.matchAll(/```yaml\n([\s\S]*?)```/g)) parseTenantsFile(block[1]!, { baseDir: '/etc/keyward', defaultKmsTimeoutMs: 1000 });
  });

  it('requests refused before the key service (bad API key, malformed body) are not key operations and make no event', async () => {
    const events = await during(async () => {
      const res = await app.api.inject({ method: 'POST', url: '/v1/keys/generate', headers: { authorization: 'Bearer wrong', 'content-type': 'application/json' }, payload: '{}' });
      assert.equal(res.statusCode, 401);
      assert.equal(json<ErrorJson>(await post(app, '/v1/keys/generate', { tenantId: 'tenant-a' })).code, 102);
    });
    assert.deepEqual(events, []);
  });
});
