/**
 * How classified KMS failures reach callers: code, HTTP status and Retry-After, through
 * the real key service and HTTP stack. The driver is an in-process fake, because this
 * tests classification mapping only; real drivers are proven by their own suites.
 */
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { buildApp, type Apps } from '../../src/app.js';
import { digestApiKey } from '../../src/config/env.js';
import { parseTenantsFile } from '../../src/config/tenants-file.js';
import { edekEntry, edekToBase64 } from '../../src/envelope/edek.js';
import type { KmsDriver } from '../../src/kms/driver.js';
import { KmsError, type KmsFailureKind } from '../../src/kms/errors.js';
import { createLogger } from '../../src/logger.js';
import { createMetrics } from '../../src/metrics.js';
import { LeaseManager } from '../../src/leasing/manager.js';
import { API_KEY, META, post, type ErrorJson } from '../helpers/app.js';

const directory = parseTenantsFile(
  `version: 1
tenants:
  tenant-x:
    kmsConfigs:
      - { id: 5, status: primary, provider: local, local: { keyFile: /nonexistent/x.key } }
      - { id: 6, status: active, provider: local, local: { keyFile: /nonexistent/y.key } }
`,
  { baseDir: '/', defaultKmsTimeoutMs: 1000 },
);

function failingApp(failures: Record<number, KmsError | undefined>): Promise<Apps> {
  const driverFor = (config: { id: number }): Promise<KmsDriver> => {
    const failure = failures[config.id];
    const act = (): Promise<Buffer> => (failure ? Promise.reject(failure) : Promise.resolve(Buffer.alloc(32, 7)));
    return Promise.resolve({ provider: 'local', wrap: act, unwrap: act, close: () => Promise.resolve() });
  };
  const pool = { driverFor };
  return buildApp({
    config: { apiKeyDigests: [digestApiKey(API_KEY)], batchLimit: 10, bodyLimit: 65536, dev: false },
    runtime: {
      directory,
      pool,
      leases: new LeaseManager({ pool, metrics: createMetrics({ processMetrics: false }), logger: createLogger({ level: 'silent' }) }),
      secrets: new LeaseManager({ pool, logger: createLogger({ level: 'silent' }) }),
      audit: { record: () => undefined },
      status: () => ({ configPath: 'x', loadedAt: '', tenants: 1, drivers: { ready: 0, failed: 0, starting: 0 }, lastReloadError: undefined }),
    },
    metrics: createMetrics({ processMetrics: false }),
    logger: createLogger({ level: 'silent' }),
  });
}

const entry = (kmsConfigId: number, fill = 1) => edekEntry({ encryptedDekData: Buffer.alloc(61, fill), kmsConfigId, tenantId: 'tenant-x' });
const edek = (kmsConfigId: number) => edekToBase64([entry(kmsConfigId)]);

const expectations: Array<{ kind: KmsFailureKind; retryAfter?: number; wrap: [number, number]; unwrap: [number, number]; header?: string }> = [
  { kind: 'refused', wrap: [403, 206], unwrap: [403, 206] },
  { kind: 'key_unusable', wrap: [502, 207], unwrap: [502, 207] },
  { kind: 'bad_ciphertext', wrap: [502, 204], unwrap: [400, 203] },
  { kind: 'unreachable', wrap: [503, 208], unwrap: [503, 208], header: '5' },
  { kind: 'throttled', retryAfter: 7, wrap: [503, 209], unwrap: [503, 209], header: '7' },
  { kind: 'account_issue', wrap: [502, 210], unwrap: [502, 210] },
  { kind: 'other', wrap: [502, 204], unwrap: [502, 205] },
];

describe('KMS failures reach the caller with the right code', () => {
  const apps: Apps[] = [];
  after(async () => {
    for (const app of apps) await app.api.close();
  });

  for (const e of expectations) {
    it(`${e.kind} → wrap ${e.wrap.join('/')}, unwrap ${e.unwrap.join('/')}`, async () => {
      const err = new KmsError(e.kind, `simulated ${e.kind}`, e.retryAfter === undefined ? {} : { retryAfterSeconds: e.retryAfter });
      const app = await failingApp({ 5: err, 6: err });
      apps.push(app);
      const wrap = await post(app, '/v1/keys/generate', { tenantId: 'tenant-x', metadata: META });
      assert.equal(wrap.statusCode, e.wrap[0]);
      assert.equal(wrap.json<ErrorJson>().code, e.wrap[1]);
      assert.match(wrap.json<ErrorJson>().message, /KMS config 5 \(local\)/);
      const unwrap = await post(app, '/v1/keys/unwrap', { tenantId: 'tenant-x', edek: edek(5), metadata: META });
      assert.equal(unwrap.statusCode, e.unwrap[0]);
      assert.equal(unwrap.json<ErrorJson>().code, e.unwrap[1]);
      assert.equal(wrap.headers['retry-after'], e.header);
      assert.equal(unwrap.headers['retry-after'], e.header);
      const batch = await post(app, '/v1/keys/batch/unwrap', { tenantId: 'tenant-x', edeks: { a: edek(5) }, metadata: META });
      assert.equal(batch.statusCode, 200, 'a per-item KMS failure never fails the batch');
      assert.equal(batch.json<{ failures: Record<string, ErrorJson> }>().failures.a!.code, e.unwrap[1]);
    });
  }

  it('falls back to the next entry of a multi-entry EDEK when one KMS is down', async () => {
    const app = await failingApp({ 5: new KmsError('unreachable', 'down') });
    apps.push(app);
    const two = edekToBase64([entry(5, 1), entry(6, 2)]);
    const res = await post(app, '/v1/keys/unwrap', { tenantId: 'tenant-x', edek: two, metadata: META });
    assert.equal(res.statusCode, 200);
    assert.equal(Buffer.from(res.json<{ dek: string }>().dek, 'base64').length, 32);
  });

  it('an unexpected (unclassified) fault is code 100 and leaks nothing', async () => {
    const app = await buildApp({
      config: { apiKeyDigests: [digestApiKey(API_KEY)], batchLimit: 10, bodyLimit: 65536, dev: false },
      runtime: {
        directory,
        pool: { driverFor: () => Promise.reject(new TypeError('secret internal detail /etc/keys')) },
        leases: new LeaseManager({
          pool: { driverFor: () => Promise.reject(new Error('unused')) },
          metrics: createMetrics({ processMetrics: false }),
          logger: createLogger({ level: 'silent' }),
        }),
        secrets: new LeaseManager({ pool: { driverFor: () => Promise.reject(new Error('unused')) }, logger: createLogger({ level: 'silent' }) }),
        audit: { record: () => undefined },
      status: () => ({ configPath: 'x', loadedAt: '', tenants: 1, drivers: { ready: 0, failed: 0, starting: 0 }, lastReloadError: undefined }),
      },
      metrics: createMetrics({ processMetrics: false }),
      logger: createLogger({ level: 'silent' }),
    });
    apps.push(app);
    const res = await post(app, '/v1/keys/generate', { tenantId: 'tenant-x', metadata: META });
    assert.equal(res.statusCode, 500);
    assert.equal(res.json<ErrorJson>().code, 100);
    assert.ok(!res.body.includes('secret internal detail'));
    assert.ok(!res.body.includes('TypeError'));
  });
});
