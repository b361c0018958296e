/**
 * The Cloud KMS driver against Keyward's Cloud KMS STAND-IN (test/helpers/gcp-kms-standin.ts):
 * a real gRPC server for google.cloud.kms.v1.KeyManagementService built from the client's
 * own .proto files. No independent emulator can be installed here (docs/kms/gcp.md), so
 * these tests prove that the driver speaks the real protocol through the official client
 * (encoding, CRC32C fields, routing header, status details, cancellation, no gax retries),
 * and how it reacts to the failures the real service documents. They do not prove the real
 * service answers that way: the stand-in is our reading of Google's documentation.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import type { KeyManagementServiceClient } from '@google-cloud/kms';
import { GoogleAuth } from 'google-gax';
import pino from 'pino';
import type { DriverContext, KmsDriver } from '../../../src/kms/driver.js';
import { KmsError, type KmsFailureKind } from '../../../src/kms/errors.js';
import { withRetry, withTimeout } from '../../../src/kms/wrappers.js';
import { createGcpDriver } from '../../../src/kms/drivers/gcp.js';
import type { GcpSettings } from '../../../src/config/providers/gcp.js';
import { runDriverConformance } from '../conformance.js';
import { startFaultProxy, type FaultProxy } from '../../helpers/fault-proxy.js';
import {
  Faults,
  createStandInKey,
  standInAdminClient,
  startGcpKmsStandIn,
  type CorruptibleField,
  type GcpKmsStandIn,
} from '../../helpers/gcp-kms-standin.js';

const RING = 'projects/keyward-test/locations/europe-west1/keyRings/driver';
const logLines: string[] = [];
const ctx: DriverContext = {
  logger: pino({ level: 'debug' }, { write: (line: string) => void logLines.push(line) }),
  env: {},
};

const standIn: GcpKmsStandIn = await startGcpKmsStandIn();
const admin: KeyManagementServiceClient = standInAdminClient(standIn);
const KEY_A = await createStandInKey(admin, `${RING}/cryptoKeys/a`);
const KEY_B = await createStandInKey(admin, `${RING}/cryptoKeys/b`);

after(async () => {
  await admin.close();
  await standIn.close();
});

function settings(keyName: string, endpoint = standIn.endpoint): GcpSettings {
  return { keyName, endpoint, tls: false };
}

function aad(tenant: string): Buffer {
  return Buffer.from(`gcp-test|${tenant}|1`);
}

/** As the pool wraps every driver: bounded attempts, retries of unreachable/throttled only. */
function wrapped(driver: KmsDriver, timeoutMs = 2_000, retries = 2): KmsDriver {
  return withRetry(withTimeout(driver, timeoutMs), { retries, baseDelayMs: 20, maxDelayMs: 50 });
}

async function rejectsWithKind(p: Promise<unknown>, kind: KmsFailureKind, message?: RegExp): Promise<KmsError> {
  let caught: KmsError | undefined;
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof KmsError, `expected a KmsError, got ${String(err)}`);
    assert.equal(err.kind, kind, `expected kind ${kind}, got ${err.kind}: ${err.message}`);
    if (message !== undefined) assert.match(err.message, message);
    caught = err;
    return true;
  });
  return caught!;
}

async function setVersionState(versionName: string, state: 'ENABLED' | 'DISABLED'): Promise<void> {
  await admin.updateCryptoKeyVersion({ cryptoKeyVersion: { name: versionName, state }, updateMask: { paths: ['state'] } });
}

/** Retries `fn` until it succeeds or `ms` pass; returns the time it took. */
async function eventually<T>(fn: () => Promise<T>, ms: number): Promise<{ value: T; elapsed: number }> {
  const start = Date.now();
  for (;;) {
    try {
      return { value: await fn(), elapsed: Date.now() - start };
    } catch (err) {
      if (Date.now() - start > ms) throw err;
      await new Promise((r) => setTimeout(r, 200));
    }
  }
}

runDriverConformance('gcp (Cloud KMS stand-in over real gRPC)', {
  create: () => createGcpDriver(settings(KEY_A), ctx),
  createOther: () => createGcpDriver(settings(KEY_B), ctx),
});

describe('gcp driver: protocol and integrity (Cloud KMS stand-in)', () => {
  let driver: KmsDriver;
  before(async () => {
    driver = await createGcpDriver(settings(KEY_A), ctx);
  });
  after(async () => {
    await driver.close();
  });

  it('sends the AAD and the CRC32C fields, the routing header, and no credentials over plaintext gRPC', async (t) => {
    const getClient = t.mock.method(GoogleAuth.prototype, 'getClient');
    const fresh = await createGcpDriver(settings(KEY_A), ctx);
    const before = standIn.seen.length;
    const dek = randomBytes(32);
    const blob = await fresh.wrap(dek, aad('tenant-a'));
    assert.equal(blob[0], 0x01, 'the blob starts with its format version');
    assert.deepEqual(await fresh.unwrap(blob, aad('tenant-a')), dek);
    await fresh.close();
    const [encrypt, decrypt] = standIn.seen.slice(before);
    assert.ok(encrypt && decrypt);
    assert.deepEqual(
      { ...encrypt, routingHeader: undefined },
      { method: 'Encrypt', name: KEY_A, plaintextCrc32c: true, ciphertextCrc32c: false, additionalAuthenticatedDataCrc32c: true, aadBytes: aad('tenant-a').length, routingHeader: undefined, authorization: undefined },
    );
    assert.equal(encrypt.routingHeader, `name=${encodeURIComponent(KEY_A)}`);
    assert.deepEqual(
      { method: decrypt.method, ciphertextCrc32c: decrypt.ciphertextCrc32c, aadCrc32c: decrypt.additionalAuthenticatedDataCrc32c, authorization: decrypt.authorization },
      { method: 'Decrypt', ciphertextCrc32c: true, aadCrc32c: true, authorization: undefined },
    );
    assert.equal(getClient.mock.callCount(), 0, 'with tls: false and no credentials, google-auth-library is never asked for a client');
  });

  it('the service checks those checksums: a request damaged on the way is unreachable, and a retry succeeds', async () => {
    for (const field of ['plaintext', 'additionalAuthenticatedData'] as const) {
      standIn.damageNextRequest(field);
      await rejectsWithKind(driver.wrap(randomBytes(32), aad('tenant-a')), 'unreachable', /damaged in transit/);
    }
    const blob = await driver.wrap(randomBytes(32), aad('tenant-a'));
    standIn.damageNextRequest('ciphertext');
    await rejectsWithKind(driver.unwrap(blob, aad('tenant-a')), 'unreachable', /damaged in transit/);

    standIn.resetCounts();
    standIn.damageNextRequest('ciphertext');
    const dek = await wrapped(driver).unwrap(blob, aad('tenant-a'));
    assert.equal(dek.length, 32);
    assert.equal(standIn.calls('Decrypt'), 2, 'one damaged attempt, one good one');
  });

  const wrapFields: CorruptibleField[] = ['ciphertext', 'ciphertextCrc32c', 'verifiedPlaintextCrc32c', 'verifiedAdditionalAuthenticatedDataCrc32c'];
  for (const field of wrapFields) {
    it(`verifies the encrypt response: a damaged ${field} is unreachable, never a success`, async () => {
      standIn.corruptNext(field);
      await rejectsWithKind(driver.wrap(randomBytes(32), aad('tenant-a')), 'unreachable', /damaged in transit/);
    });
  }

  for (const field of ['plaintext', 'plaintextCrc32c'] as const) {
    it(`verifies the decrypt response: a damaged ${field} is unreachable, never a success`, async () => {
      const dek = randomBytes(32);
      const blob = await driver.wrap(dek, aad('tenant-a'));
      standIn.corruptNext(field);
      await rejectsWithKind(driver.unwrap(blob, aad('tenant-a')), 'unreachable', /damaged in transit/);
      standIn.resetCounts();
      standIn.corruptNext(field);
      assert.deepEqual(await wrapped(driver).unwrap(blob, aad('tenant-a')), dek, 'withRetry recovers with a clean answer');
      assert.equal(standIn.calls('Decrypt'), 2);
    });
  }

  it('checks that the answer came from a version of the configured key', async () => {
    standIn.corruptNext('name');
    standIn.resetCounts();
    await rejectsWithKind(wrapped(driver).wrap(randomBytes(32), aad('tenant-a')), 'other', /version of another key/);
    assert.equal(standIn.calls('Encrypt'), 1, 'not retried');
  });

  it('refuses a blob of an unknown format locally, without calling the service', async () => {
    const blob = await driver.wrap(randomBytes(32), aad('tenant-a'));
    standIn.resetCounts();
    const other = Buffer.from(blob);
    other[0] = 0x02;
    await rejectsWithKind(driver.unwrap(other, aad('tenant-a')), 'bad_ciphertext');
    await rejectsWithKind(driver.unwrap(Buffer.of(0x01), aad('tenant-a')), 'bad_ciphertext');
    assert.equal(standIn.calls('Decrypt'), 0);
  });
});

describe('gcp driver: revocation and key state (Cloud KMS stand-in)', () => {
  it('a disabled key version: key_unusable on wrap and unwrap, one attempt each; usable again once enabled', async () => {
    const key = await createStandInKey(admin, `${RING}/cryptoKeys/disable-me`);
    const raw = await createGcpDriver(settings(key), ctx);
    const driver = wrapped(raw, 2_000, 3);
    try {
      const dek = randomBytes(32);
      const blob = await driver.wrap(dek, aad('t'));
      await setVersionState(`${key}/cryptoKeyVersions/1`, 'DISABLED');
      standIn.resetCounts();
      await rejectsWithKind(driver.wrap(randomBytes(32), aad('t')), 'key_unusable', /is DISABLED \(FAILED_PRECONDITION\)/);
      await rejectsWithKind(driver.unwrap(blob, aad('t')), 'key_unusable', /DISABLED/);
      assert.equal(standIn.calls('Encrypt'), 1, 'no retry loop on a disabled key');
      assert.equal(standIn.calls('Decrypt'), 1, 'no retry loop on a disabled key');
      await setVersionState(`${key}/cryptoKeyVersions/1`, 'ENABLED');
      assert.deepEqual(await driver.unwrap(blob, aad('t')), dek);
    } finally {
      await raw.close();
    }
  });

  it('a destroyed key version: key_unusable while scheduled for destruction and once destroyed', async () => {
    const key = await createStandInKey(admin, `${RING}/cryptoKeys/destroy-me`);
    const raw = await createGcpDriver(settings(key), ctx);
    const driver = wrapped(raw);
    try {
      const blob = await driver.wrap(randomBytes(32), aad('t'));
      const [scheduled] = await admin.destroyCryptoKeyVersion({ name: `${key}/cryptoKeyVersions/1` });
      assert.equal(scheduled.state, 'DESTROY_SCHEDULED');
      standIn.resetCounts();
      await rejectsWithKind(driver.unwrap(blob, aad('t')), 'key_unusable', /DESTROY_SCHEDULED/);
      await rejectsWithKind(driver.wrap(randomBytes(32), aad('t')), 'key_unusable', /DESTROY_SCHEDULED/);
      standIn.completeDestruction(`${key}/cryptoKeyVersions/1`);
      await rejectsWithKind(driver.unwrap(blob, aad('t')), 'key_unusable', /is DESTROYED/);
      assert.equal(standIn.calls('Decrypt') + standIn.calls('Encrypt'), 3, 'one attempt per call');
    } finally {
      await raw.close();
    }
  });

  it('an unknown key: key_unusable (NOT_FOUND), not retried', async () => {
    const raw = await createGcpDriver(settings(`${RING}/cryptoKeys/never-created`), ctx);
    try {
      standIn.resetCounts();
      await rejectsWithKind(wrapped(raw).wrap(randomBytes(32), aad('t')), 'key_unusable', /NOT_FOUND/);
      assert.equal(standIn.calls('Encrypt'), 1);
    } finally {
      await raw.close();
    }
  });

  it('a revoked IAM grant: refused (PERMISSION_DENIED), one attempt; works again once granted', async () => {
    const key = await createStandInKey(admin, `${RING}/cryptoKeys/revoke-me`);
    const raw = await createGcpDriver(settings(key), ctx);
    const driver = wrapped(raw, 2_000, 3);
    try {
      const dek = randomBytes(32);
      const blob = await driver.wrap(dek, aad('t'));
      standIn.revoke(key);
      standIn.resetCounts();
      await rejectsWithKind(driver.wrap(randomBytes(32), aad('t')), 'refused', /PERMISSION_DENIED/);
      await rejectsWithKind(driver.unwrap(blob, aad('t')), 'refused', /PERMISSION_DENIED/);
      assert.equal(standIn.calls('Encrypt'), 1);
      assert.equal(standIn.calls('Decrypt'), 1);
      standIn.grant(key);
      assert.deepEqual(await driver.unwrap(blob, aad('t')), dek);
    } finally {
      await raw.close();
    }
  });

  it('billing or the API disabled: account_issue, not retried', async () => {
    const raw = await createGcpDriver(settings(KEY_A), ctx);
    try {
      for (const fault of [Faults.billingDisabled(), Faults.serviceDisabled()]) {
        standIn.setFault('Encrypt', fault);
        standIn.resetCounts();
        await rejectsWithKind(wrapped(raw).wrap(randomBytes(32), aad('t')), 'account_issue');
        assert.equal(standIn.calls('Encrypt'), 1);
      }
    } finally {
      standIn.setFault('Encrypt', undefined);
      await raw.close();
    }
  });

  it('rotation: a new primary version wraps new keys, and blobs of the old version still unwrap', async () => {
    const key = await createStandInKey(admin, `${RING}/cryptoKeys/rotate-me`);
    const raw = await createGcpDriver(settings(key), ctx);
    try {
      const oldDek = randomBytes(32);
      const oldBlob = await raw.wrap(oldDek, aad('t'));
      const [v2] = await admin.createCryptoKeyVersion({ parent: key, cryptoKeyVersion: {} });
      assert.equal(v2.name, `${key}/cryptoKeyVersions/2`);
      await admin.updateCryptoKeyPrimaryVersion({ name: key, cryptoKeyVersionId: '2' });
      const newDek = randomBytes(32);
      const newBlob = await raw.wrap(newDek, aad('t'));
      assert.deepEqual(await raw.unwrap(oldBlob, aad('t')), oldDek, 'the old version still decrypts');
      assert.deepEqual(await raw.unwrap(newBlob, aad('t')), newDek);
      // Proof that the new blob is under version 2: disabling version 1 stops only the old one.
      await setVersionState(`${key}/cryptoKeyVersions/1`, 'DISABLED');
      assert.deepEqual(await raw.unwrap(newBlob, aad('t')), newDek);
      await rejectsWithKind(raw.unwrap(oldBlob, aad('t')), 'key_unusable', /DISABLED/);
    } finally {
      await raw.close();
    }
  });
});

describe('gcp driver: throttling and outages (Cloud KMS stand-in)', () => {
  let proxy: FaultProxy;
  let raw: KmsDriver;
  before(async () => {
    proxy = await startFaultProxy(standIn.port);
    raw = await createGcpDriver(settings(KEY_A, `127.0.0.1:${proxy.port}`), ctx);
  });
  after(async () => {
    await raw.close();
    await proxy.close();
  });

  it('RESOURCE_EXHAUSTED: throttled, retried by withRetry after the RetryInfo delay', async () => {
    standIn.resetCounts();
    standIn.failNext('Encrypt', Faults.quotaExceeded(0.2), 2);
    const start = Date.now();
    const blob = await wrapped(raw).wrap(randomBytes(32), aad('t'));
    assert.ok(blob.length > 32);
    assert.equal(standIn.calls('Encrypt'), 3, 'two throttled attempts, then success');
    assert.ok(Date.now() - start >= 400, 'the RetryInfo delay was honoured');

    standIn.setFault('Encrypt', Faults.quotaExceeded());
    standIn.resetCounts();
    try {
      const err = await rejectsWithKind(wrapped(raw, 2_000, 1).wrap(randomBytes(32), aad('t')), 'throttled');
      assert.equal(err.retryAfterSeconds, 1);
      assert.equal(standIn.calls('Encrypt'), 2, 'the retry budget, and not one call more');
    } finally {
      standIn.setFault('Encrypt', undefined);
    }
  });

  it('UNAVAILABLE answered by the service: unreachable, retried, no gax retries underneath', async () => {
    standIn.resetCounts();
    standIn.failNext('Encrypt', Faults.unavailable(), 1);
    await rejectsWithKind(raw.wrap(randomBytes(32), aad('t')), 'unreachable', /UNAVAILABLE/);
    assert.equal(standIn.calls('Encrypt'), 1, 'the driver itself made one attempt: gax retry is off');
    standIn.failNext('Encrypt', Faults.unavailable(), 1);
    await wrapped(raw).wrap(randomBytes(32), aad('t'));
    assert.equal(standIn.calls('Encrypt'), 3);
  });

  it('the service down (connections refused): unreachable at once, not after gax’s 600 s; recovers when back', async () => {
    const dek = randomBytes(32);
    const blob = await raw.wrap(dek, aad('t'));
    await proxy.setMode('refuse');
    const start = Date.now();
    await rejectsWithKind(wrapped(raw).unwrap(blob, aad('t')), 'unreachable');
    await rejectsWithKind(wrapped(raw).wrap(randomBytes(32), aad('t')), 'unreachable');
    assert.ok(Date.now() - start < 5_000, `took ${Date.now() - start} ms`);
    await proxy.setMode('pass');
    const { value, elapsed } = await eventually(() => raw.unwrap(blob, aad('t')), 15_000);
    assert.deepEqual(value, dek);
    assert.ok(elapsed < 15_000);
  });

  it('the server process gone and back on the same port: unreachable, then recovery', async () => {
    const dek = randomBytes(32);
    const blob = await raw.wrap(dek, aad('t'));
    await standIn.stop();
    try {
      await rejectsWithKind(wrapped(raw).unwrap(blob, aad('t')), 'unreachable');
    } finally {
      await standIn.start();
    }
    const { value } = await eventually(() => raw.unwrap(blob, aad('t')), 15_000);
    assert.deepEqual(value, dek);
  });

  it('a blackholed service: unreachable after the timeout, no hang; the gRPC call is cancelled through the signal', async () => {
    const blob = await raw.wrap(randomBytes(32), aad('t'));
    await proxy.setMode('blackhole');
    // Let the client see its old connection cut, so the next call meets the blackhole
    // (a call racing the cut fails fast with UNAVAILABLE instead, which is a different test).
    await new Promise((r) => setTimeout(r, 200));
    try {
      const start = Date.now();
      await rejectsWithKind(withTimeout(raw, 500).unwrap(blob, aad('t')), 'unreachable', /within 500 ms/);
      const elapsed = Date.now() - start;
      assert.ok(elapsed >= 450 && elapsed < 2_000, `took ${elapsed} ms`);

      // The raw driver settles only when its gRPC call does (its own deadline is 60 s), so a
      // prompt rejection after abort proves the call was cancelled, not abandoned.
      const controller = new AbortController();
      const pending = raw.wrap(randomBytes(32), aad('t'), { signal: controller.signal });
      setTimeout(() => controller.abort(), 200).unref();
      const abortStart = Date.now();
      await rejectsWithKind(pending, 'unreachable', /CANCELLED/);
      assert.ok(Date.now() - abortStart < 1_500);
    } finally {
      await proxy.setMode('pass');
    }
    await eventually(() => raw.unwrap(blob, aad('t')), 15_000);
  });
});

describe('gcp driver: start-up and credentials', () => {
  const key = KEY_A;

  it('tls: false needs an endpoint and never carries credentials', async () => {
    await rejectsWithKind(createGcpDriver({ keyName: key, tls: false }, ctx), 'key_unusable', /needs an endpoint/);
    await rejectsWithKind(
      createGcpDriver({ keyName: key, endpoint: standIn.endpoint, tls: false, credentials: { type: 'default' } }, ctx),
      'key_unusable',
      /never sent over plaintext/,
    );
  });

  it('a service-account key that is missing, not JSON, incomplete or unusable is key_unusable, and never echoed', async () => {
    const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const pem = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
    const env = {
      NOT_JSON: 'secret-not-json-7f3a',
      NO_KEY: JSON.stringify({ type: 'service_account', client_email: 'kw@p.iam.gserviceaccount.com' }),
      BAD_PEM: JSON.stringify({ type: 'service_account', client_email: 'kw@p.iam.gserviceaccount.com', private_key: 'secret-not-a-pem-9c1d' }),
      GOOD: JSON.stringify({ type: 'service_account', project_id: 'p', client_email: 'kw@p.iam.gserviceaccount.com', private_key: pem }),
    };
    const make = (name: string) =>
      createGcpDriver({ keyName: key, endpoint: standIn.endpoint, credentials: { type: 'serviceAccount', key: { env: name } } }, { ...ctx, env });
    await rejectsWithKind(make('MISSING'), 'key_unusable', /MISSING is not set/);
    const notJson = await rejectsWithKind(make('NOT_JSON'), 'key_unusable', /env:NOT_JSON\) is not JSON/);
    assert.ok(!notJson.message.includes(env.NOT_JSON));
    await rejectsWithKind(make('NO_KEY'), 'key_unusable', /needs client_email and private_key/);
    const badPem = await rejectsWithKind(make('BAD_PEM'), 'key_unusable', /not a PEM private key/);
    assert.ok(!badPem.message.includes('secret-not-a-pem'));
    // A good key starts the driver without touching the network (channels connect on first use).
    const driver = await make('GOOD');
    await driver.close();
    await rejectsWithKind(driver.wrap(randomBytes(32), aad('t')), 'unreachable', /closed/);
    const logs = logLines.join('\n');
    for (const secret of [env.NOT_JSON, 'secret-not-a-pem', 'BEGIN PRIVATE KEY']) assert.ok(!logs.includes(secret), `logged: ${secret}`);
  });

  it('never logs key material', () => {
    assert.ok(logLines.length > 0);
    // Every DEK in this file is random; the log lines carry no base64 runs long enough to hold one.
    for (const line of logLines) assert.ok(!/[A-Za-z0-9+/]{43}=/.test(line), `suspicious log line: ${line.slice(0, 200)}`);
  });
});
