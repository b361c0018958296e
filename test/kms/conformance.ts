/**
 * The shared KMS-driver conformance suite. Every driver runs it, against a real
 * server where one exists, before its own tests. It checks the contract written on
 * `KmsDriver` in src/kms/driver.ts and nothing provider-specific.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import type { KmsDriver } from '../../src/kms/driver.js';
import { KmsError } from '../../src/kms/errors.js';

export interface ConformanceTarget {
  /** Builds a ready driver for the master key under test. */
  create(): Promise<KmsDriver>;
  /** Builds a ready driver for a *different* master key of the same provider. */
  createOther(): Promise<KmsDriver>;
}

function aad(tenant: string, config = 7): Buffer {
  return Buffer.from(`conformance|${tenant}|${config}`);
}

async function rejectsWithKind(p: Promise<unknown>, kind: KmsError['kind']): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof KmsError, `expected a KmsError, got ${String(err)}`);
    assert.equal(err.kind, kind, `expected kind ${kind}, got ${err.kind}: ${err.message}`);
    return true;
  });
}

export function runDriverConformance(name: string, target: ConformanceTarget): void {
  describe(`KMS driver conformance: ${name}`, () => {
    let driver: KmsDriver;
    let other: KmsDriver;

    before(async () => {
      driver = await target.create();
      other = await target.createOther();
    });
    after(async () => {
      await driver.close();
      await other.close();
    });

    it('round-trips a 32-byte key with its associated data', async () => {
      const dek = randomBytes(32);
      const blob = await driver.wrap(dek, aad('tenant-a'));
      assert.ok(blob.length > 32, 'the wrapped form is longer than the key');
      assert.ok(!blob.includes(dek), 'the wrapped form does not contain the key in clear');
      const back = await driver.unwrap(blob, aad('tenant-a'));
      assert.deepEqual(back, dek);
    });

    it('does not modify its inputs, and returns a buffer the caller owns', async () => {
      const dek = randomBytes(32);
      const copy = Buffer.from(dek);
      const context = aad('tenant-a');
      const blob = await driver.wrap(dek, context);
      assert.deepEqual(dek, copy);
      const blobCopy = Buffer.from(blob);
      const back = await driver.unwrap(blob, context);
      assert.deepEqual(blob, blobCopy);
      back.fill(0);
      const again = await driver.unwrap(blob, context);
      assert.deepEqual(again, copy, 'wiping a returned key does not affect later results');
    });

    it('wraps the same key twice into two blobs that both unwrap', async () => {
      const dek = randomBytes(32);
      const a = await driver.wrap(dek, aad('tenant-a'));
      const b = await driver.wrap(dek, aad('tenant-a'));
      assert.deepEqual(await driver.unwrap(a, aad('tenant-a')), dek);
      assert.deepEqual(await driver.unwrap(b, aad('tenant-a')), dek);
    });

    it('refuses to unwrap under other associated data (another tenant or config)', async () => {
      const dek = randomBytes(32);
      const blob = await driver.wrap(dek, aad('tenant-a', 7));
      await rejectsWithKind(driver.unwrap(blob, aad('tenant-b', 7)), 'bad_ciphertext');
      await rejectsWithKind(driver.unwrap(blob, aad('tenant-a', 8)), 'bad_ciphertext');
    });

    it('refuses a blob made under another master key', async () => {
      const blob = await other.wrap(randomBytes(32), aad('tenant-a'));
      await rejectsWithKind(driver.unwrap(blob, aad('tenant-a')), 'bad_ciphertext');
    });

    it('refuses a tampered blob, a truncated blob and garbage', async () => {
      const blob = await driver.wrap(randomBytes(32), aad('tenant-a'));
      for (const index of [0, Math.floor(blob.length / 2), blob.length - 1]) {
        const tampered = Buffer.from(blob);
        tampered[index] = tampered[index]! ^ 0x01;
        await rejectsWithKind(driver.unwrap(tampered, aad('tenant-a')), 'bad_ciphertext');
      }
      await rejectsWithKind(driver.unwrap(blob.subarray(0, blob.length - 1), aad('tenant-a')), 'bad_ciphertext');
      await rejectsWithKind(driver.unwrap(Buffer.alloc(0), aad('tenant-a')), 'bad_ciphertext');
      await rejectsWithKind(driver.unwrap(randomBytes(blob.length), aad('tenant-a')), 'bad_ciphertext');
    });

    it('serves many concurrent wraps and unwraps correctly', async () => {
      const deks = Array.from({ length: 64 }, () => randomBytes(32));
      const blobs = await Promise.all(deks.map((dek, i) => driver.wrap(dek, aad(`tenant-${i % 5}`))));
      const back = await Promise.all(blobs.map((blob, i) => driver.unwrap(blob, aad(`tenant-${i % 5}`))));
      back.forEach((dek, i) => assert.deepEqual(dek, deks[i]));
    });

    it('keeps working after a bad-ciphertext failure', async () => {
      await rejectsWithKind(driver.unwrap(randomBytes(60), aad('tenant-a')), 'bad_ciphertext');
      const dek = randomBytes(32);
      assert.deepEqual(await driver.unwrap(await driver.wrap(dek, aad('tenant-a')), aad('tenant-a')), dek);
    });

    it('rejects calls after close', async () => {
      const spare = await target.create();
      const blob = await spare.wrap(randomBytes(32), aad('tenant-a'));
      await spare.close();
      await assert.rejects(spare.wrap(randomBytes(32), aad('tenant-a')), KmsError);
      await assert.rejects(spare.unwrap(blob, aad('tenant-a')), KmsError);
    });
  });
}
