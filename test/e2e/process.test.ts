import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DEV_API_KEY } from '../../src/config/env.js';
import { spawnKeyward, startKeyward, stopKeyward, type KeywardProcess } from '../helpers/process.js';

const KEY = 'e2e-api-key-0123456789abcdef';
const META = { requestingId: 'e2e' };

async function call(proc: KeywardProcess, path: string, body: unknown, key = KEY): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`${proc.apiUrl}${path}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

const tenants = (extra = '') => `version: 1
tenants:
  acme:
    kmsConfigs:
      - { id: 1, status: primary, provider: local, local: { keyFile: keys/acme.key } }
${extra}`;

describe('keyward process', () => {
  const dirs: string[] = [];
  const procs: KeywardProcess[] = [];
  after(async () => {
    for (const p of procs) await stopKeyward(p);
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });

  async function tenantsFile(text: string): Promise<string> {
    const dir = await mkdtemp(join(tmpdir(), 'keyward-e2e-'));
    dirs.push(dir);
    const path = join(dir, 'tenants.yaml');
    await writeFile(path, text);
    return path;
  }

  it('serves the built-in dev config on loopback with a loud banner', async () => {
    const proc = await startKeyward({});
    procs.push(proc);
    assert.match(proc.stderr(), /DEVELOPMENT MODE - NOT FOR PRODUCTION/);
    assert.match(proc.apiUrl, /^http:\/\/127\.0\.0\.1:/);
    assert.match(proc.opsUrl, /^http:\/\/127\.0\.0\.1:/);
    const gen = await call(proc, '/v1/keys/generate', { tenantId: 'tenant-dev', metadata: META }, DEV_API_KEY);
    assert.equal(gen.status, 200);
    const back = await call(proc, '/v1/keys/unwrap', { tenantId: 'tenant-dev', edek: gen.body.edek, metadata: META }, DEV_API_KEY);
    assert.deepEqual(back.body, { dek: gen.body.dek });
    const other = await call(proc, '/v1/keys/unwrap', { tenantId: 'tenant-dev-2', edek: gen.body.edek, metadata: META }, DEV_API_KEY);
    assert.equal(other.body.code, 203);
    // The leased dev tenant: local wraps under a lease key, visible on the ops port.
    const leased = await call(proc, '/v1/keys/generate', { tenantId: 'tenant-dev-leased', metadata: META }, DEV_API_KEY);
    assert.equal(leased.status, 200);
    const leasedBack = await call(proc, '/v1/keys/unwrap', { tenantId: 'tenant-dev-leased', edek: leased.body.edek, metadata: META }, DEV_API_KEY);
    assert.deepEqual(leasedBack.body, { dek: leased.body.dek });
    const leases = (await (await fetch(`${proc.opsUrl}/leases?tenantId=tenant-dev-leased`)).json()) as { leases: Array<{ state: string; kmsConfigId: number }> };
    assert.equal(leases.leases.length, 1);
    assert.equal(leases.leases[0]!.state, 'fresh');
    assert.equal(leases.leases[0]!.kmsConfigId, 3);
    assert.equal((await fetch(`${proc.opsUrl}/ready`)).status, 200);
    await stopKeyward(proc);
    assert.equal(await proc.exited, 0);
  });

  it('refuses to start outside dev mode without an API key', async () => {
    const proc = spawnKeyward({ KEYWARD_CONFIG: await tenantsFile(tenants()) });
    assert.equal(await proc.exited, 2);
    assert.match(proc.stderr(), /KEYWARD_API_KEY is required/);
  });

  it('refuses to start on an invalid tenants file, listing every problem', async () => {
    const bad = `version: 1
tenants:
  acme:
    kmsConfigs:
      - { id: 0, status: primary, provider: local, local: { keyFile: a.key } }
      - { id: 2, status: sideways, provider: local, local: { keyFile: a.key } }
`;
    const proc = spawnKeyward({ KEYWARD_CONFIG: await tenantsFile(bad), KEYWARD_API_KEY: KEY });
    assert.equal(await proc.exited, 2);
    assert.match(proc.stderr(), /kmsConfigs\[0\]\.id/);
    assert.match(proc.stderr(), /kmsConfigs\[1\]\.status/);
  });

  it('drains in-flight requests on SIGTERM, then exits 0', async () => {
    // debug: Fastify's "incoming request" lines tell when all four have arrived.
    const proc = await startKeyward({ KEYWARD_CONFIG: await tenantsFile(tenants()), KEYWARD_API_KEY: KEY, KEYWARD_LOG_LEVEL: 'debug' });
    procs.push(proc);
    const ids = Array.from({ length: 1000 }, (_, i) => `d${i}`);
    const inFlight = Array.from({ length: 4 }, () => call(proc, '/v1/keys/batch/generate', { tenantId: 'acme', ids, metadata: META }));
    // Wait until the server has received all four, then ask it to stop.
    await proc.waitForLog(() => proc.lines.filter((l) => l.includes('"msg":"incoming request"')).length >= 4);
    proc.child.kill('SIGTERM');
    const results = await Promise.all(inFlight);
    for (const r of results) {
      assert.equal(r.status, 200);
      assert.equal(Object.keys(r.body.keys as object).length, 1000);
    }
    assert.equal(await proc.exited, 0);
    assert.ok(proc.lines.some((l) => l.includes('"msg":"stopped"')));
    await assert.rejects(fetch(`${proc.apiUrl}/v1/keys/generate`, { method: 'POST' }), 'no longer accepting');
  });

  it('reloads the tenants file on SIGHUP, and keeps serving when a reload is invalid', async () => {
    const path = await tenantsFile(tenants());
    const proc = await startKeyward({ KEYWARD_CONFIG: path, KEYWARD_API_KEY: KEY, KEYWARD_CONFIG_POLL: '1h' });
    procs.push(proc);
    assert.equal((await call(proc, '/v1/keys/generate', { tenantId: 'globex', metadata: META })).status, 404);
    await writeFile(path, tenants(`  globex:\n    kmsConfigs:\n      - { id: 2, status: primary, provider: local, local: { keyFile: keys/globex.key } }\n`));
    proc.child.kill('SIGHUP');
    await proc.waitForLog((e) => e.msg === 'tenants file reloaded');
    assert.equal((await call(proc, '/v1/keys/generate', { tenantId: 'globex', metadata: META })).status, 200);
    await writeFile(path, 'version: 1\ntenants: [not, a, map]\n');
    proc.child.kill('SIGHUP');
    await proc.waitForLog((e) => e.msg === 'tenants file reload failed; keeping the previous configuration');
    assert.equal((await call(proc, '/v1/keys/generate', { tenantId: 'globex', metadata: META })).status, 200);
    const metrics = await (await fetch(`${proc.opsUrl}/metrics`)).text();
    assert.match(metrics, /keyward_config_reloads_total\{outcome="failure"\} [1-9]/);
    assert.match(metrics, /keyward_config_reloads_total\{outcome="success"\} [1-9]/);
  });
});
