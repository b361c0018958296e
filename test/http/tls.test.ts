/**
 * TLS on the API port of a real Keyward process, with certificates made at test time:
 * serving HTTPS from KEYWARD_TLS_CERT/KEY, reloading them when the files change (and
 * keeping the old ones when the new ones are broken), requiring client certificates that
 * chain to KEYWARD_TLS_CLIENT_CA, and refusing bad TLS settings at start.
 */
import assert from 'node:assert/strict';
import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TLSSocket } from 'node:tls';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { X509Certificate } from 'node:crypto';
import { spawnKeyward, startKeyward, type KeywardProcess } from '../helpers/process.js';
import { makeThrowawayCa, type ThrowawayCa } from '../helpers/throwaway-ca.js';

const API_KEY = 'tls-test-api-key-0123456789';
const TENANTS = `version: 1
tenants:
  acme:
    kmsConfigs:
      - { id: 1, status: primary, provider: local, local: { keyFile: keys/a.key } }
`;

interface Answer {
  status: number;
  body: string;
  peerFingerprint: string;
}

/** One HTTPS POST to generate, trusting `ca`, presenting `client` if given. */
function generate(port: number, ca: Buffer | string, client?: { key: Buffer; cert: Buffer }): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: '127.0.0.1',
        port,
        path: '/v1/keys/generate',
        method: 'POST',
        ca,
        ...(client ?? {}),
        agent: false,
        headers: { authorization: `Bearer ${API_KEY}`, 'content-type': 'application/json' },
      },
      (res) => {
        let body = '';
        res.setEncoding('utf8').on('data', (c: string) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body, peerFingerprint: (res.socket as TLSSocket).getPeerCertificate().fingerprint256 }));
      },
    );
    req.on('error', reject);
    req.end(JSON.stringify({ tenantId: 'acme', metadata: { requestingId: 'tls-test' } }));
  });
}

const portOf = (proc: KeywardProcess): number => Number(new URL(proc.apiUrl).port);

describe('TLS on the API port (real process)', () => {
  let dir: string;
  let ca: ThrowawayCa;
  let other: ThrowawayCa;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'keyward-tls-'));
    [ca, other] = await Promise.all([makeThrowawayCa(), makeThrowawayCa()]);
    await writeFile(join(dir, 'tenants.yaml'), TENANTS);
  });
  after(async () => {
    await ca.remove();
    await other.remove();
    await rm(dir, { recursive: true, force: true });
  });

  const env = (extra: Record<string, string> = {}) => ({
    KEYWARD_CONFIG: join(dir, 'tenants.yaml'),
    KEYWARD_API_KEY: API_KEY,
    KEYWARD_TLS_CERT: join(dir, 'tls', 'server.pem'),
    KEYWARD_TLS_KEY: join(dir, 'tls', 'server.key'),
    KEYWARD_CONFIG_POLL: '200ms',
    ...extra,
  });
  const install = async (from: ThrowawayCa): Promise<void> => {
    await writeFile(join(dir, 'tls', 'server.pem.tmp'), from.cert);
    await writeFile(join(dir, 'tls', 'server.key.tmp'), from.key);
    await copyFile(join(dir, 'tls', 'server.key.tmp'), join(dir, 'tls', 'server.key'));
    await copyFile(join(dir, 'tls', 'server.pem.tmp'), join(dir, 'tls', 'server.pem'));
  };

  it('serves HTTPS only, and reloads a renewed certificate without a restart; a broken one keeps the old', async () => {
    await rm(join(dir, 'tls'), { recursive: true, force: true });
    await mkdir(join(dir, 'tls'));
    await install(ca);
    const proc = await startKeyward(env());
    try {
      const port = portOf(proc);
      const first = await generate(port, await readFile(ca.caFile));
      assert.equal(first.status, 200, first.body);
      assert.equal(first.peerFingerprint, new X509Certificate(ca.cert).fingerprint256);
      // Plain HTTP on the TLS port gets no answer Keyward would give over HTTP.
      const plain = await fetch(`http://127.0.0.1:${port}/v1/keys/generate`, { method: 'POST' }).then((r) => r.status).catch(() => 'refused');
      assert.notEqual(plain, 200);
      assert.ok(proc.lines.some((l) => l.includes('"tls":"on"')));

      // Renewal: the files are replaced; new connections get the new certificate.
      await install(other);
      const otherCa = await readFile(other.caFile);
      let renewed: Answer | undefined;
      for (let i = 0; i < 50 && renewed === undefined; i++) {
        await sleep(100);
        renewed = await generate(port, otherCa).catch(() => undefined);
      }
      assert.ok(renewed, 'the new certificate is served');
      assert.equal(renewed.status, 200);
      assert.equal(renewed.peerFingerprint, new X509Certificate(other.cert).fingerprint256);
      await proc.waitForLog((e) => e.msg === 'TLS certificate reloaded');

      // A key that does not match the certificate: refused, the current certificate stays.
      const seen = proc.lines.length;
      await writeFile(join(dir, 'tls', 'server.key'), ca.key);
      for (let i = 0; i < 50 && !proc.lines.slice(seen).some((l) => l.includes('TLS certificate reload failed; keeping the current certificate')); i++) await sleep(100);
      assert.ok(proc.lines.slice(seen).some((l) => l.includes('TLS certificate reload failed')), 'the broken pair is reported');
      const still = await generate(port, otherCa);
      assert.equal(still.status, 200);
      assert.equal(still.peerFingerprint, new X509Certificate(other.cert).fingerprint256);
      assert.ok(!proc.lines.some((l) => l.includes('PRIVATE KEY')), 'no key material in the log');
    } finally {
      proc.child.kill('SIGTERM');
      await proc.exited;
    }
  });

  it('with KEYWARD_TLS_CLIENT_CA, only clients with a certificate from that CA get through', async () => {
    await rm(join(dir, 'tls'), { recursive: true, force: true });
    await mkdir(join(dir, 'tls'));
    await install(ca);
    const proc = await startKeyward(env({ KEYWARD_TLS_CLIENT_CA: ca.caFile }));
    try {
      const port = portOf(proc);
      const caPem = await readFile(ca.caFile);
      const good = await ca.client('billing-service');
      const stranger = await other.client('billing-service');
      assert.equal((await generate(port, caPem, good)).status, 200);
      await assert.rejects(generate(port, caPem), 'no client certificate: the handshake is refused');
      await assert.rejects(generate(port, caPem, stranger), 'a certificate from another CA is refused');
      assert.ok(proc.lines.some((l) => l.includes('client certificates required')));
      // The API key is still required on top of the certificate.
      const noKey = await new Promise<number>((resolve, reject) => {
        const req = request({ host: '127.0.0.1', port, path: '/v1/keys/generate', method: 'POST', ca: caPem, ...good, agent: false, headers: { 'content-type': 'application/json' } }, (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        });
        req.on('error', reject);
        req.end('{}');
      });
      assert.equal(noKey, 401);
    } finally {
      proc.child.kill('SIGTERM');
      await proc.exited;
    }
  });

  it('refuses to start with half a TLS setting or unreadable files, naming the variable', async () => {
    const half = spawnKeyward({ KEYWARD_CONFIG: join(dir, 'tenants.yaml'), KEYWARD_API_KEY: API_KEY, KEYWARD_TLS_CERT: join(dir, 'tls', 'server.pem') });
    assert.equal(await half.exited, 2);
    assert.match(half.stderr(), /KEYWARD_TLS_CERT and KEYWARD_TLS_KEY go together/);
    const missing = spawnKeyward({ KEYWARD_CONFIG: join(dir, 'tenants.yaml'), KEYWARD_API_KEY: API_KEY, KEYWARD_TLS_CERT: join(dir, 'nope.pem'), KEYWARD_TLS_KEY: join(dir, 'nope.key') });
    assert.equal(await missing.exited, 2);
    assert.match(missing.stderr(), /cannot read the TLS certificate \(KEYWARD_TLS_CERT\)/);
  });
});
