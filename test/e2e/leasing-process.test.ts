/**
 * Key leasing across real Keyward processes (`node --import tsx src/main.ts` on
 * 127.0.0.1, ephemeral ports) sharing one tenants file, as replicas behind a load
 * balancer would: an EDEK sealed under a lease made by one process unwraps in another
 * that has never seen that lease, because the EDEK carries the ELEK and the second
 * process recovers the lease key through the tenant's KMS (once, then from memory).
 * Two KMSs: the `local` software KMS (one key file shared by both processes) and AWS KMS
 * played by nsmithuk/local-kms. Also: SIGTERM wipes every lease (reason shutdown).
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { edekFromBase64 } from '../../src/envelope/edek.js';
import { LOCAL_KMS_REGION, TEST_ACCESS_KEY_ID, TEST_SECRET_ACCESS_KEY, startLocalKms, type LocalKms } from '../helpers/local-kms.js';
import { leasesOf, metric } from '../helpers/leasing.js';
import { startKeyward, stopKeyward, type KeywardProcess } from '../helpers/process.js';

const API_KEY = 'leasing-process-api-key-0123456789';
const META = { requestingId: 'leasing-e2e' };
const KEY_ENV = 'TEST_AWS_ACCESS_KEY_ID';
const SECRET_ENV = 'TEST_AWS_SECRET_ACCESS_KEY';
const LEASING = '{ enabled: true, refreshInterval: 2s, maxOutage: 10s, rotateAfter: 1h, idleAfter: 1h }';

interface Generated {
  dek: string;
  edek: string;
}

async function call(proc: KeywardProcess, path: string, body: unknown): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`${proc.apiUrl}${path}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${API_KEY}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

describe('key leasing across Keyward processes', () => {
  let kms: LocalKms;
  let dir: string;
  let first: KeywardProcess;
  let second: KeywardProcess;

  const cases = [
    { tenantId: 'acme-local', provider: 'local' },
    { tenantId: 'acme-aws', provider: 'aws' },
  ] as const;

  before(async () => {
    kms = await startLocalKms([{ name: 'acme' }]);
    dir = await mkdtemp(join(tmpdir(), 'keyward-leasing-e2e-'));
    const configPath = join(dir, 'tenants.yaml');
    await writeFile(
      configPath,
      `version: 1
tenants:
  acme-local:
    kmsConfigs:
      - id: 1
        status: primary
        provider: local
        leasing: ${LEASING}
        local: { keyFile: keys/acme.key }
  acme-aws:
    kmsConfigs:
      - id: 2
        status: primary
        provider: aws
        timeout: 1s
        retries: 1
        leasing: ${LEASING}
        aws:
          region: ${LOCAL_KMS_REGION}
          keyId: ${kms.keys.acme!.arn}
          endpoint: ${kms.endpoint}
          credentials: { type: static, accessKeyId: { env: ${KEY_ENV} }, secretAccessKey: { env: ${SECRET_ENV} } }
`,
    );
    const env = {
      KEYWARD_CONFIG: configPath,
      KEYWARD_API_KEY: API_KEY,
      [KEY_ENV]: TEST_ACCESS_KEY_ID,
      [SECRET_ENV]: TEST_SECRET_ACCESS_KEY,
      AWS_EC2_METADATA_DISABLED: 'true',
    };
    // One after the other, so that the first creates the shared local key file.
    first = await startKeyward(env);
    second = await startKeyward(env);
  });
  after(async () => {
    for (const proc of [first, second]) if (proc) await stopKeyward(proc);
    await kms?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  for (const { tenantId, provider } of cases) {
    it(`(4) ${provider}: an EDEK leased in one process unwraps in another that never saw the lease`, async () => {
      assert.deepEqual(await leasesOf(second.opsUrl, tenantId), [], 'the second process holds no lease yet');

      const gen = await call(first, '/v1/keys/generate', { tenantId, metadata: META });
      assert.equal(gen.status, 200, JSON.stringify(gen.body));
      const { dek, edek } = gen.body as unknown as Generated;
      const leaseId = edekFromBase64(edek)[0]!.leasedKeyId;
      assert.ok(leaseId > 0, 'a leased EDEK');
      const [made] = await leasesOf(first.opsUrl, tenantId);
      assert.equal(made?.leaseId, leaseId);
      assert.equal(made.current, true);
      assert.deepEqual(await leasesOf(second.opsUrl, tenantId), [], 'a lease made by the first process stays in the first process');

      const labels = (operation: string) => ({ provider, operation });
      const [wrapsBefore, unwrapsBefore] = await Promise.all([
        metric(second.opsUrl, 'keyward_kms_requests_total', labels('wrap')),
        metric(second.opsUrl, 'keyward_kms_requests_total', labels('unwrap')),
      ]);
      for (let i = 0; i < 20; i++) {
        const back = await call(second, '/v1/keys/unwrap', { tenantId, edek, metadata: META });
        assert.equal(back.status, 200, JSON.stringify(back.body));
        assert.deepEqual(back.body, { dek });
      }
      const wraps = (await metric(second.opsUrl, 'keyward_kms_requests_total', labels('wrap'))) - wrapsBefore;
      const unwraps = (await metric(second.opsUrl, 'keyward_kms_requests_total', labels('unwrap'))) - unwrapsBefore;
      console.log(`leasing-process ${provider}: 20 unwraps in the second process cost ${unwraps} KMS unwrap(s), ${wraps} wrap(s)`);
      assert.equal(wraps, 0);
      // One unwrap of the ELEK recovers the lease; the rest are hits (a 2 s refresh may add one).
      assert.ok(unwraps >= 1 && unwraps <= 2, `KMS unwraps in the second process: ${unwraps}`);

      const adopted = await leasesOf(second.opsUrl, tenantId);
      assert.equal(adopted.length, 1, 'the second process now holds exactly that lease');
      assert.equal(adopted[0]!.leaseId, leaseId);
      assert.equal(adopted[0]!.state, 'fresh');
      assert.equal(adopted[0]!.current, false, 'recovered for unwraps; new wraps in the second process use its own lease');

      // The other way round: an EDEK of the second process's own lease unwraps in the first.
      const own = await call(second, '/v1/keys/generate', { tenantId, metadata: META });
      assert.equal(own.status, 200);
      const ownEdek = (own.body as unknown as Generated).edek;
      assert.notEqual(edekFromBase64(ownEdek)[0]!.leasedKeyId, leaseId, 'the second process made its own lease');
      assert.deepEqual((await call(first, '/v1/keys/unwrap', { tenantId, edek: ownEdek, metadata: META })).body, { dek: (own.body as unknown as Generated).dek });
    });
  }

  it('SIGTERM wipes every lease with reason shutdown; the other process keeps serving', async () => {
    const held = await Promise.all(cases.map(({ tenantId }) => leasesOf(first.opsUrl, tenantId)));
    const leaseIds = new Set(held.flat().map((l) => l.leaseId));
    assert.ok(leaseIds.size >= 2, `the first process holds leases of both tenants (${leaseIds.size})`);
    const gen = await call(first, '/v1/keys/generate', { tenantId: 'acme-local', metadata: META });

    await stopKeyward(first);
    assert.equal(await first.exited, 0);
    const wiped = first.lines
      .map((line) => {
        try {
          return JSON.parse(line) as Record<string, unknown>;
        } catch {
          return undefined;
        }
      })
      .filter((e): e is Record<string, unknown> => e?.msg === 'lease wiped');
    assert.ok(wiped.length >= leaseIds.size, `one 'lease wiped' line per lease (${wiped.length})`);
    for (const entry of wiped) assert.equal(entry.reason, 'shutdown');
    assert.deepEqual(new Set(wiped.map((e) => e.leaseId)), leaseIds, 'every lease it held was wiped');
    for (const line of first.lines) assert.ok(!line.includes((gen.body as unknown as Generated).dek), 'no key material in the log');
    const stopped = first.lines.findIndex((l) => l.includes('"msg":"stopped"'));
    const lastWipe = first.lines.findLastIndex((l) => l.includes('"msg":"lease wiped"'));
    assert.ok(stopped > lastWipe, 'leases are wiped before the process reports stopped');

    const back = await call(second, '/v1/keys/unwrap', { tenantId: 'acme-local', edek: (gen.body as unknown as Generated).edek, metadata: META });
    assert.deepEqual(back.body, { dek: (gen.body as unknown as Generated).dek });
  });
});
