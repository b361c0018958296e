/**
 * Leased mode through the real KeyService (no HTTP): a fake KMS driver, a real
 * LeaseManager with an injected clock, the real EDEK codec and seal.
 */
import type { AuditRecord } from '../../src/audit/event.js';
import assert from 'node:assert/strict';
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { Writable } from 'node:stream';
import { describe, it } from 'node:test';
import protobuf from 'protobufjs';
import { parseTenantsFile } from '../../src/config/tenants-file.js';
import { lekAad } from '../../src/envelope/aad.js';
import { EDEK_PROTO, decodeEdeks, edekFromBase64, edekToBase64 } from '../../src/envelope/edek.js';
import { KeyService, type RequestMetadata } from '../../src/envelope/keys.js';
import { Errors, KeywardError } from '../../src/errors.js';
import type { KmsDriver } from '../../src/kms/driver.js';
import { KmsError } from '../../src/kms/errors.js';
import { LeaseManager } from '../../src/leasing/manager.js';
import { createLogger } from '../../src/logger.js';
import { createMetrics } from '../../src/metrics.js';
import type { TenantDirectory } from '../../src/tenants/directory.js';

const T0 = Date.UTC(2030, 0, 1);

/** AES-256-GCM under a fixed master key; counts calls; can be made to fail. */
class FakeDriver implements KmsDriver {
  readonly provider = 'local' as const;
  readonly #master = randomBytes(32);
  wraps = 0;
  unwraps = 0;
  failWith: KmsError | undefined;

  get calls(): number {
    return this.wraps + this.unwraps;
  }

  async wrap(plaintext: Buffer, aad: Buffer): Promise<Buffer> {
    this.wraps += 1;
    if (this.failWith) throw this.failWith;
    const iv = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', this.#master, iv);
    cipher.setAAD(aad);
    return Buffer.concat([iv, cipher.update(plaintext), cipher.final(), cipher.getAuthTag()]);
  }

  async unwrap(ciphertext: Buffer, aad: Buffer): Promise<Buffer> {
    this.unwraps += 1;
    if (this.failWith) throw this.failWith;
    try {
      const decipher = createDecipheriv('aes-256-gcm', this.#master, ciphertext.subarray(0, 12));
      decipher.setAAD(aad);
      decipher.setAuthTag(ciphertext.subarray(ciphertext.length - 16));
      return Buffer.concat([decipher.update(ciphertext.subarray(12, ciphertext.length - 16)), decipher.final()]);
    } catch {
      throw new KmsError('bad_ciphertext', 'fake: does not decrypt');
    }
  }

  async close(): Promise<void> {}
}

const LEASING = { enabled: true, refreshInterval: '5m', maxOutage: '1h', rotateAfter: '1h', idleAfter: '1h' };

function tenants(): TenantDirectory {
  const local = (id: number): Record<string, unknown> => ({ id, status: 'primary', provider: 'local', local: { keyFile: `k${id}.key` }, leasing: LEASING });
  const file = { version: 1, tenants: { acme: { kmsConfigs: [local(1)] }, globex: { kmsConfigs: [local(2)] } } };
  return parseTenantsFile(JSON.stringify(file), { baseDir: '/tmp', defaultKmsTimeoutMs: 5_000 });
}

interface Setup {
  driver: FakeDriver;
  leases: LeaseManager;
  keys: KeyService;
  records: () => AuditRecord[];
  lines: string[];
  directory: TenantDirectory;
}

function setup(driver = new FakeDriver(), directory = tenants()): Setup {
  const lines: string[] = [];
  const logger = createLogger({
    level: 'info',
    destination: new Writable({
      write: (chunk: Buffer, _encoding, callback) => {
        lines.push(chunk.toString());
        callback();
      },
    }),
  });
  const pool = { driverFor: async () => driver };
  const leases = new LeaseManager({
    pool,
    metrics: createMetrics({ processMetrics: false }),
    logger: createLogger({ level: 'silent' }),
    clock: { now: () => T0 },
    random: () => 0.5,
  });
  leases.sync(directory);
  const audited: AuditRecord[] = [];
  const keys = new KeyService({ source: { directory, pool, leases }, logger, audit: { record: (r) => audited.push(...r) } });
  const records = (): AuditRecord[] => audited;
  return { driver, leases, keys, records, lines, directory };
}

const META: RequestMetadata = { requestingId: 'billing-service', dataLabel: 'pii', objectId: 'invoice-7', requestId: 'req-1', sourceIp: '10.0.0.1' };

async function rejects203(promise: Promise<unknown>): Promise<void> {
  await assert.rejects(promise, (err: unknown) => {
    assert.ok(err instanceof KeywardError, `expected a KeywardError, got ${String(err)}`);
    assert.equal(err.code, 203);
    assert.equal(err.code, Errors.INVALID_PROVIDED_EDEK.code);
    return true;
  });
}

function reencode(edek: string, change: (entry: ReturnType<typeof edekFromBase64>[number]) => void): string {
  const entries = edekFromBase64(edek);
  change(entries[0]!);
  return edekToBase64(entries);
}

describe('KeyService in leased mode', () => {
  it('generate makes a leased EDEK: leasedKeyId, 12-byte IV, 48-byte sealed DEK, and an ELEK with one entry for the config', async () => {
    const { driver, keys } = setup();
    const { dek, edek } = await keys.generate('acme', META);
    assert.equal(dek.length, 32);
    const entries = edekFromBase64(edek);
    assert.equal(entries.length, 1);
    const [entry] = entries;
    assert.ok(entry);
    assert.equal(entry.tenantId, 'acme');
    assert.equal(entry.kmsConfigId, 1);
    assert.ok(entry.leasedKeyId >= 1 && entry.leasedKeyId <= 2 ** 31 - 1);
    assert.equal(entry.leasedKeyIv.length, 12);
    assert.equal(entry.encryptedDekData.length, 48);
    const elek = decodeEdeks(entry.encryptedLeasedKeyData);
    assert.equal(elek.length, 1);
    assert.equal(elek[0]?.kmsConfigId, 1);
    assert.equal(elek[0]?.tenantId, 'acme');
    assert.equal(elek[0]?.leasedKeyId, 0);
    // The ELEK is the KMS wrap of the LEK under the lease AAD.
    const lek = await driver.unwrap(elek[0].encryptedDekData, lekAad('acme', 1, entry.leasedKeyId));
    assert.equal(lek.length, 32);
    assert.deepEqual(await keys.unwrap('acme', edek, META), dek);
  });

  it('1000 unwraps of 100 leased EDEKs cost exactly one KMS call (the wrap) while the lease is cached', async () => {
    const { driver, keys } = setup();
    const made = [];
    for (let i = 0; i < 100; i++) made.push(await keys.generate('acme', META));
    assert.equal(new Set(made.map((m) => edekFromBase64(m.edek)[0]!.leasedKeyId)).size, 1, 'one lease for all');
    for (let round = 0; round < 10; round++) {
      for (const { dek, edek } of made) assert.deepEqual(await keys.unwrap('acme', edek, META), dek);
    }
    assert.equal(driver.wraps, 1);
    assert.equal(driver.unwraps, 0);
  });

  it('another replica (its own LeaseManager) unwraps the same 100 EDEKs with one KMS unwrap', async () => {
    const driver = new FakeDriver();
    const a = setup(driver);
    const b = setup(driver);
    const made = [];
    for (let i = 0; i < 100; i++) made.push(await a.keys.generate('acme', META));
    const batch = await b.keys.batchUnwrap('acme', new Map(made.map((m, i) => [`k${i}`, m.edek])), META);
    assert.equal(batch.failures.size, 0);
    made.forEach((m, i) => assert.deepEqual(batch.keys.get(`k${i}`), m.dek));
    assert.equal(driver.wraps, 1);
    assert.equal(driver.unwraps, 1);
  });

  it('wrap (caller DEK) then unwrap round-trips, and leaves the caller DEK untouched', async () => {
    const { keys } = setup();
    const dek = randomBytes(32);
    const copy = Buffer.from(dek);
    const edek = await keys.wrap('acme', dek, META);
    assert.deepEqual(dek, copy);
    assert.equal(edekFromBase64(edek)[0]!.encryptedDekData.length, 48);
    assert.deepEqual(await keys.unwrap('acme', edek, META), copy);
  });

  it('a tampered leasedKeyIv → 203', async () => {
    const { keys } = setup();
    const { edek } = await keys.generate('acme', META);
    await rejects203(keys.unwrap('acme', reencode(edek, (e) => (e.leasedKeyIv[0] = e.leasedKeyIv[0]! ^ 1)), META));
    await rejects203(keys.unwrap('acme', reencode(edek, (e) => (e.leasedKeyIv = e.leasedKeyIv.subarray(0, 11))), META));
  });

  it('tampered sealed DEK data → 203', async () => {
    const { keys } = setup();
    const { edek } = await keys.generate('acme', META);
    for (const index of [0, 31, 32, 47]) {
      await rejects203(keys.unwrap('acme', reencode(edek, (e) => (e.encryptedDekData[index] = e.encryptedDekData[index]! ^ 0x80)), META));
    }
    await rejects203(keys.unwrap('acme', reencode(edek, (e) => (e.encryptedDekData = e.encryptedDekData.subarray(0, 47))), META));
  });

  it('a leasedKeyId changed to another lease → 203', async () => {
    const { keys } = setup();
    const { edek } = await keys.generate('acme', META);
    await rejects203(keys.unwrap('acme', reencode(edek, (e) => (e.leasedKeyId = e.leasedKeyId === 1 ? 2 : e.leasedKeyId - 1)), META));
  });

  it('an ELEK of another tenant spliced in → 203, without a KMS call', async () => {
    const { driver, keys } = setup();
    const ours = (await keys.generate('acme', META)).edek;
    const theirs = edekFromBase64((await keys.generate('globex', META)).edek)[0]!;
    const calls = driver.calls;
    await rejects203(keys.unwrap('acme', reencode(ours, (e) => (e.encryptedLeasedKeyData = theirs.encryptedLeasedKeyData)), META));
    assert.equal(driver.calls, calls);
  });

  it("another tenant's leased EDEK → 203", async () => {
    const { keys } = setup();
    const { edek } = await keys.generate('acme', META);
    await rejects203(keys.unwrap('globex', edek, META));
    // Even relabelled as globex's, it names a config globex does not have.
    await rejects203(keys.unwrap('globex', reencode(edek, (e) => (e.tenantId = 'globex')), META));
  });

  it('a negative leasedKeyId → 203', async () => {
    const { driver, keys } = setup();
    const { edek } = await keys.generate('acme', META);
    const entry = edekFromBase64(edek)[0]!;
    // encodeEdeks refuses negative ids, so write the message with protobufjs.
    const type = protobuf.parse(EDEK_PROTO).root.lookupType('ironcorelabs.proto.cmk.EncryptedDeks');
    const bytes = type.encode(type.fromObject({ encryptedDeks: [{ ...entry, leasedKeyId: -1 }] })).finish();
    assert.equal(decodeEdeks(bytes)[0]?.leasedKeyId, -1);
    const calls = driver.calls;
    await rejects203(keys.unwrap('acme', Buffer.from(bytes).toString('base64'), META));
    assert.equal(driver.calls, calls);
  });

  it('audit records every leased wrap and unwrap, success and failure, without the DEK', async () => {
    const { keys, records, lines } = setup();
    const { dek, edek } = await keys.generate('acme', META);
    const leasedKeyId = edekFromBase64(edek)[0]!.leasedKeyId;
    await keys.unwrap('acme', edek, { requestingId: 'reader', requestId: 'req-2' });
    await keys.unwrap('acme', reencode(edek, (e) => (e.leasedKeyIv[0] = e.leasedKeyIv[0]! ^ 1)), { requestingId: 'tamperer' }).catch(() => undefined);

    const audit = records();
    assert.equal(audit.length, 3);
    const [wrap, unwrap, failed] = audit;
    assert.deepEqual(
      { operation: wrap?.operation, outcome: wrap?.outcome, tenantId: wrap?.tenantId, kms: wrap?.kms },
      { operation: 'generate', outcome: 'success', tenantId: 'acme', kms: { configId: 1, provider: 'local', mode: 'leased', leasedKeyId } },
    );
    assert.deepEqual(wrap?.caller, { requestingId: 'billing-service', dataLabel: 'pii', objectId: 'invoice-7', requestId: 'req-1', sourceIp: '10.0.0.1' });
    assert.deepEqual(
      { operation: unwrap?.operation, outcome: unwrap?.outcome, kms: unwrap?.kms, caller: unwrap?.caller },
      { operation: 'unwrap', outcome: 'success', kms: { configId: 1, provider: 'local', mode: 'leased', leasedKeyId }, caller: { requestingId: 'reader', requestId: 'req-2' } },
    );
    assert.deepEqual(
      { operation: failed?.operation, outcome: failed?.outcome, code: failed?.error?.code, kms: failed?.kms, requestingId: failed?.caller.requestingId },
      { operation: 'unwrap', outcome: 'failure', code: 203, kms: { configId: 1, provider: 'local', mode: 'leased', leasedKeyId }, requestingId: 'tamperer' },
    );

    const all = lines.join('');
    for (const text of [dek.toString('base64'), dek.toString('hex'), dek.toString('base64url')]) assert.ok(!all.includes(text), 'the DEK is never logged');
    const serialized = JSON.stringify(audit);
    for (const text of [dek.toString('base64'), dek.toString('hex')]) assert.ok(!serialized.includes(text), 'no key material in audit records');
  });

  it('a refused lease wrap is audited as a failure with its code, and no leased key id', async () => {
    const driver = new FakeDriver();
    driver.failWith = new KmsError('refused', 'fake: access denied');
    const { keys, records } = setup(driver);
    await assert.rejects(keys.generate('acme', META), (err: unknown) => err instanceof KeywardError && err.code === Errors.KMS_AUTHORIZATION_FAILED.code);
    const audit = records();
    assert.equal(audit.length, 1);
    assert.equal(audit[0]?.operation, 'generate');
    assert.deepEqual(audit[0]?.kms, { configId: 1, provider: 'local', mode: 'leased' });
    assert.equal(audit[0]?.outcome, 'failure');
    assert.equal(audit[0]?.error?.code, Errors.KMS_AUTHORIZATION_FAILED.code);
    assert.equal(audit[0]?.error?.name, 'KMS_AUTHORIZATION_FAILED');
    assert.equal(audit[0]?.caller.requestingId, 'billing-service');
  });
});
