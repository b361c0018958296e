/**
 * The AWS KMS driver against a real nsmithuk/local-kms (fresh data directory, 127.0.0.1,
 * free port): first the shared conformance suite, then key references, revocation
 * (DisableKey, ScheduleKeyDeletion, unknown keys) and outages (emulator killed, fault
 * proxy refusing or blackholing) through the same wrappers the pool uses.
 *
 * local-kms has no authentication, so refused credentials, throttling, clock skew and 5xx
 * cannot be shown here: aws-errors.test.ts proves those on the real SDK's error shapes.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { DecryptCommand } from '@aws-sdk/client-kms';
import pino from 'pino';
import type { DriverContext, KmsDriver } from '../../../src/kms/driver.js';
import { KmsError, type KmsFailureKind } from '../../../src/kms/errors.js';
import { withRetry, withTimeout } from '../../../src/kms/wrappers.js';
import { createAwsDriver, encryptionContextFor } from '../../../src/kms/drivers/aws.js';
import type { AwsSettings } from '../../../src/config/providers/aws.js';
import { edekAad } from '../../../src/envelope/aad.js';
import { runDriverConformance } from '../conformance.js';
import { startFaultProxy, type FaultProxy } from '../../helpers/fault-proxy.js';
import {
  LOCAL_KMS_REGION,
  TEST_ACCESS_KEY_ID,
  TEST_SECRET_ACCESS_KEY,
  startLocalKms,
  unknownKeyArn,
  type LocalKms,
} from '../../helpers/local-kms.js';

const logLines: string[] = [];
const ctx: DriverContext = {
  logger: pino({ level: 'debug' }, { write: (line: string) => void logLines.push(line) }),
  env: { AWS_KEY: TEST_ACCESS_KEY_ID, AWS_SECRET: TEST_SECRET_ACCESS_KEY },
};

const kms: LocalKms = await startLocalKms([
  { name: 'main', alias: 'keyward-main' },
  { name: 'other' },
  { name: 'revocable', alias: 'keyward-revocable' },
  { name: 'doomed' },
  { name: 'outage' },
]);

after(async () => {
  await kms.close();
});

function settings(keyId: string, endpoint = kms.endpoint): AwsSettings {
  return {
    region: LOCAL_KMS_REGION,
    keyId,
    endpoint,
    credentials: { type: 'static', accessKeyId: { env: 'AWS_KEY' }, secretAccessKey: { env: 'AWS_SECRET' } },
  };
}

const driverFor = (keyId: string, endpoint?: string): Promise<KmsDriver> => createAwsDriver(settings(keyId, endpoint), ctx);

/** A driver that counts the attempts reaching it, under the wrappers the pool uses. */
function wrapped(raw: KmsDriver, timeoutMs: number, retries: number): { driver: KmsDriver; attempts: () => number } {
  let count = 0;
  const counting: KmsDriver = {
    provider: raw.provider,
    wrap: (p, a, o) => {
      count += 1;
      return raw.wrap(p, a, o);
    },
    unwrap: (b, a, o) => {
      count += 1;
      return raw.unwrap(b, a, o);
    },
    close: () => raw.close(),
  };
  return { driver: withRetry(withTimeout(counting, timeoutMs), { retries, baseDelayMs: 20, maxDelayMs: 100 }), attempts: () => count };
}

async function rejectsWithKind(p: Promise<unknown>, kind: KmsFailureKind): Promise<KmsError> {
  let caught: KmsError | undefined;
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof KmsError, `expected a KmsError, got ${String(err)}`);
    assert.equal(err.kind, kind, `expected kind ${kind}, got ${err.kind}: ${err.message}`);
    assert.ok(!err.message.includes(TEST_SECRET_ACCESS_KEY), 'no secret in the message');
    caught = err;
    return true;
  });
  return caught!;
}

const aad = (tenant: string, config = 1): Buffer => edekAad(tenant, config);

/** A well-formed format-1 blob around arbitrary KMS ciphertext bytes (passes the local check). */
function blobAround(ciphertext: Buffer): Buffer {
  return Buffer.concat([Buffer.of(1), createHash('sha256').update(ciphertext).digest().subarray(0, 8), ciphertext]);
}

runDriverConformance('aws (local-kms)', {
  create: () => driverFor(kms.keys.main!.id),
  createOther: () => driverFor(kms.keys.other!.id),
});

describe('AWS KMS driver against local-kms', () => {
  it('addresses the key by id, key ARN, alias name and alias ARN, interchangeably', async () => {
    const key = kms.keys.main!;
    const drivers = await Promise.all([key.id, key.arn, key.alias!, key.aliasArn!].map((ref) => driverFor(ref)));
    try {
      const dek = randomBytes(32);
      for (const maker of drivers) {
        const blob = await maker.wrap(dek, aad('tenant-a'));
        for (const reader of drivers) assert.deepEqual(await reader.unwrap(blob, aad('tenant-a')), dek);
      }
    } finally {
      await Promise.all(drivers.map((d) => d.close()));
    }
  });

  it('writes format version 1, a check value, then the KMS ciphertext blob', async () => {
    const driver = await driverFor(kms.keys.main!.id);
    try {
      const dek = randomBytes(32);
      const blob = await driver.wrap(dek, aad('tenant-a'));
      assert.equal(blob[0], 0x01);
      assert.deepEqual(blob.subarray(1, 9), createHash('sha256').update(blob.subarray(9)).digest().subarray(0, 8));
      const copy = Buffer.from(blob);
      copy[0] = 0x02;
      await rejectsWithKind(driver.unwrap(copy, aad('tenant-a')), 'bad_ciphertext');
      // local-kms does not authenticate the key ARN it writes into its own blob when KeyId
      // is given (an emulator quirk; AWS authenticates the whole blob): an edit there still
      // decrypts at the emulator, and only the driver's check value catches it.
      const kmsBlob = Buffer.from(blob.subarray(9));
      kmsBlob[10] = kmsBlob[10]! ^ 0x01;
      const quirk = await kms.admin.send(new DecryptCommand({ KeyId: kms.keys.main!.id, CiphertextBlob: kmsBlob, EncryptionContext: encryptionContextFor(aad('tenant-a')) }));
      assert.deepEqual(Buffer.from(quirk.Plaintext!), dek, 'the emulator ignores the edit');
      await rejectsWithKind(driver.unwrap(Buffer.concat([blob.subarray(0, 9), kmsBlob]), aad('tenant-a')), 'bad_ciphertext');
      // An edit that keeps the check value consistent reaches the emulator, which refuses it.
      const body = Buffer.from(blob.subarray(9));
      body[body.length - 1] = body[body.length - 1]! ^ 0x01;
      const err = await rejectsWithKind(driver.unwrap(blobAround(body), aad('tenant-a')), 'bad_ciphertext');
      assert.equal((err.cause as { name?: string }).name, 'InvalidCiphertextException');
    } finally {
      await driver.close();
    }
  });

  it('binds the readable tenant and config into the encryption context, and the emulator enforces all of it', async () => {
    const driver = await driverFor(kms.keys.main!.id);
    try {
      const dek = randomBytes(32);
      const edek = aad('tenant-readable', 42);
      const blob = await driver.wrap(dek, edek);
      const context = encryptionContextFor(edek);
      assert.deepEqual(context, { 'keyward:aad': edek.toString('base64'), 'keyward:tenant': 'tenant-readable', 'keyward:kmsConfigId': '42' });
      // The tenant's own Decrypt (as in CloudTrail) needs exactly this context ...
      const out = await kms.admin.send(new DecryptCommand({ KeyId: kms.keys.main!.id, CiphertextBlob: blob.subarray(9), EncryptionContext: context }));
      assert.deepEqual(Buffer.from(out.Plaintext!), dek);
      // ... and the readable entries are bound, not decoration: without them, or with another tenant, it fails.
      const { 'keyward:aad': onlyAad } = context;
      for (const wrong of [{ 'keyward:aad': onlyAad }, { ...context, 'keyward:tenant': 'tenant-other' }, { ...context, 'keyward:kmsConfigId': '43' }]) {
        await assert.rejects(
          kms.admin.send(new DecryptCommand({ KeyId: kms.keys.main!.id, CiphertextBlob: blob.subarray(9), EncryptionContext: wrong })),
          (err: Error) => err.name === 'InvalidCiphertextException',
        );
      }
      // An aad that is not an EDEK aad gets only the opaque entry.
      assert.deepEqual(Object.keys(encryptionContextFor(Buffer.from('opaque'))), ['keyward:aad']);
    } finally {
      await driver.close();
    }
  });

  it('DisableKey: the next unwrap and wrap are key_unusable after exactly one attempt; EnableKey restores it', async () => {
    const raw = await driverFor(kms.keys.revocable!.alias!);
    const { driver, attempts } = wrapped(raw, 2_000, 3);
    try {
      const dek = randomBytes(32);
      const blob = await driver.wrap(dek, aad('tenant-r'));
      await kms.disable('revocable');
      const before = attempts();
      const unwrapErr = await rejectsWithKind(driver.unwrap(blob, aad('tenant-r')), 'key_unusable');
      assert.equal(attempts() - before, 1, 'withRetry does not retry an unusable key');
      assert.equal((unwrapErr.cause as { name?: string }).name, 'DisabledException');
      assert.equal((unwrapErr.cause as { $metadata?: { attempts?: number } }).$metadata?.attempts, 1, 'the SDK made one attempt (maxAttempts: 1)');
      await rejectsWithKind(driver.wrap(randomBytes(32), aad('tenant-r')), 'key_unusable');
      assert.equal(attempts() - before, 2);

      await kms.enable('revocable');
      assert.deepEqual(await driver.unwrap(blob, aad('tenant-r')), dek);
      assert.deepEqual(await driver.unwrap(await driver.wrap(dek, aad('tenant-r')), aad('tenant-r')), dek);
    } finally {
      await driver.close();
    }
  });

  it('ScheduleKeyDeletion: unwrap and wrap are key_unusable (KMSInvalidStateException)', async () => {
    const driver = await driverFor(kms.keys.doomed!.arn);
    try {
      const blob = await driver.wrap(randomBytes(32), aad('tenant-d'));
      await kms.scheduleDeletion('doomed');
      const err = await rejectsWithKind(driver.unwrap(blob, aad('tenant-d')), 'key_unusable');
      assert.equal((err.cause as { name?: string }).name, 'KMSInvalidStateException');
      await rejectsWithKind(driver.wrap(randomBytes(32), aad('tenant-d')), 'key_unusable');
    } finally {
      await driver.close();
    }
  });

  it('an unknown key id, key ARN or alias is key_unusable', async () => {
    for (const ref of [unknownKeyArn(), unknownKeyArn().split('/')[1]!, 'alias/no-such-alias']) {
      const driver = await driverFor(ref);
      try {
        const err = await rejectsWithKind(driver.wrap(randomBytes(32), aad('tenant-u')), 'key_unusable');
        assert.equal((err.cause as { name?: string }).name, 'NotFoundException');
        await rejectsWithKind(driver.unwrap(blobAround(randomBytes(120)), aad('tenant-u')), 'key_unusable');
      } finally {
        await driver.close();
      }
    }
  });

  it('never logs the credentials', () => {
    const log = logLines.join('');
    assert.ok(log.includes('AWS KMS call failed'), 'failures were logged');
    assert.ok(!log.includes(TEST_SECRET_ACCESS_KEY));
    assert.ok(!log.includes(TEST_ACCESS_KEY_ID));
  });
});

describe('AWS KMS driver: outages', () => {
  const TIMEOUT_MS = 400;
  const RETRIES = 2;
  let proxy: FaultProxy;
  let blob: Buffer;
  const dek = randomBytes(32);

  before(async () => {
    proxy = await startFaultProxy(kms.emulator.port);
    const driver = await driverFor(kms.keys.outage!.id);
    blob = await driver.wrap(dek, aad('tenant-o'));
    await driver.close();
  });
  after(async () => {
    await proxy.close();
  });

  it('emulator killed: unreachable through the real wrappers within the bound, then recovery on restart', async () => {
    const raw = await driverFor(kms.keys.outage!.id);
    const { driver, attempts } = wrapped(raw, TIMEOUT_MS, RETRIES);
    try {
      assert.deepEqual(await driver.unwrap(blob, aad('tenant-o')), dek);
      await kms.emulator.stop();
      const before = attempts();
      const started = Date.now();
      const err = await rejectsWithKind(driver.unwrap(blob, aad('tenant-o')), 'unreachable');
      const elapsed = Date.now() - started;
      assert.equal(attempts() - before, RETRIES + 1, 'an outage is retried');
      assert.ok(elapsed < (RETRIES + 1) * TIMEOUT_MS + 1_000, `gave up in ${elapsed} ms`);
      assert.match(err.message, /could not be reached|did not answer/);
      await rejectsWithKind(driver.wrap(randomBytes(32), aad('tenant-o')), 'unreachable');

      await kms.emulator.start();
      // Same port, same data directory: the key survived, and the same driver recovers by itself.
      assert.deepEqual(await driver.unwrap(blob, aad('tenant-o')), dek);
      assert.deepEqual(await driver.unwrap(await driver.wrap(dek, aad('tenant-o')), aad('tenant-o')), dek);
    } finally {
      await driver.close();
    }
  });

  it('fault proxy refusing connections: unreachable, then recovery', async () => {
    const raw = await driverFor(kms.keys.outage!.id, `http://127.0.0.1:${proxy.port}`);
    const { driver, attempts } = wrapped(raw, TIMEOUT_MS, RETRIES);
    try {
      assert.deepEqual(await driver.unwrap(blob, aad('tenant-o')), dek);
      await proxy.setMode('refuse');
      const before = attempts();
      const err = await rejectsWithKind(driver.unwrap(blob, aad('tenant-o')), 'unreachable');
      assert.equal(attempts() - before, RETRIES + 1);
      assert.equal((err.cause as { code?: string } | undefined)?.code, 'ECONNREFUSED');
      await proxy.setMode('pass');
      assert.deepEqual(await driver.unwrap(blob, aad('tenant-o')), dek);
    } finally {
      await proxy.setMode('pass');
      await driver.close();
    }
  });

  it('fault proxy blackholing: unreachable after the per-attempt timeout × attempts, no hang; then recovery', async () => {
    await proxy.setMode('blackhole');
    // A fresh driver, so no pooled connection (cut by the mode switch) fails an attempt early.
    const raw = await driverFor(kms.keys.outage!.id, `http://127.0.0.1:${proxy.port}`);
    const { driver, attempts } = wrapped(raw, TIMEOUT_MS, RETRIES);
    try {
      const started = Date.now();
      await rejectsWithKind(driver.unwrap(blob, aad('tenant-o')), 'unreachable');
      const elapsed = Date.now() - started;
      assert.equal(attempts(), RETRIES + 1);
      assert.ok(elapsed >= (RETRIES + 1) * TIMEOUT_MS - 50, `each attempt waited for its timeout (${elapsed} ms)`);
      assert.ok(elapsed < (RETRIES + 1) * TIMEOUT_MS + 1_000, `and no longer (${elapsed} ms)`);

      // The raw driver honours the abort signal by itself: the SDK request is cancelled.
      const controller = new AbortController();
      const call = raw.wrap(randomBytes(32), aad('tenant-o'), { signal: controller.signal });
      setTimeout(() => controller.abort(new Error('timeout')), 100);
      const abortErr = await rejectsWithKind(call, 'unreachable');
      assert.equal((abortErr.cause as { name?: string }).name, 'AbortError');

      await proxy.setMode('pass');
      assert.deepEqual(await driver.unwrap(blob, aad('tenant-o')), dek);
    } finally {
      await proxy.setMode('pass');
      await driver.close();
    }
  });
});
