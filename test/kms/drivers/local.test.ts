import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { chmod, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createLocalDriver } from '../../../src/kms/drivers/local.js';
import { KmsError } from '../../../src/kms/errors.js';
import { createLogger } from '../../../src/logger.js';
import { runDriverConformance } from '../conformance.js';

const ctx = { logger: createLogger({ level: 'silent' }), env: {} };
const AAD = Buffer.from('local-test|tenant-a|1');

let root: string;
before(async () => {
  root = await mkdtemp(join(tmpdir(), 'keyward-local-'));
});
after(async () => {
  await rm(root, { recursive: true, force: true });
});

runDriverConformance('local', {
  create: () => createLocalDriver({ keyFile: join(root, 'conformance', 'main.key') }, ctx),
  createOther: () => createLocalDriver({ keyFile: join(root, 'conformance', 'other.key') }, ctx),
});

async function rejectsWithKind(p: Promise<unknown>, kind: KmsError['kind'], message?: RegExp): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof KmsError, `expected a KmsError, got ${String(err)}`);
    assert.equal(err.kind, kind, err.message);
    if (message) assert.match(err.message, message);
    return true;
  });
}

/** The driver contract: failures are rejected promises, never synchronous throws. */
async function rejectsNotThrows(what: string, call: () => Promise<unknown>): Promise<void> {
  let result: Promise<unknown>;
  try {
    result = call();
  } catch (err) {
    assert.fail(`${what}() threw synchronously instead of returning a rejected promise: ${String(err)}`);
  }
  await assert.rejects(result, KmsError);
}

describe('local KMS driver', () => {
  it('creates a missing key file with mode 0600 in a new directory with mode 0700', async () => {
    const dir = join(root, 'fresh', 'nested');
    const keyFile = join(dir, 'master.key');
    const driver = await createLocalDriver({ keyFile }, ctx);
    try {
      const file = await stat(keyFile);
      assert.ok(file.isFile());
      assert.equal(file.mode & 0o777, 0o600);
      assert.equal(file.size, 32);
      assert.equal((await stat(dir)).mode & 0o777, 0o700);
      assert.deepEqual(await readdir(dir), ['master.key'], 'no temporary file is left behind');
    } finally {
      await driver.close();
    }
  });

  it('reuses an existing key file: a second driver unwraps what the first wrapped', async () => {
    const keyFile = join(root, 'reuse', 'master.key');
    const first = await createLocalDriver({ keyFile }, ctx);
    const original = await readFile(keyFile);
    const dek = randomBytes(32);
    const blob = await first.wrap(dek, AAD);
    await first.close();
    const second = await createLocalDriver({ keyFile }, ctx);
    try {
      assert.deepEqual(await second.unwrap(blob, AAD), dek);
      assert.deepEqual(await readFile(keyFile), original, 'the key file is not rewritten');
    } finally {
      await second.close();
    }
  });

  it('refuses a key file readable by group or others, and says to chmod 600 it', async () => {
    const keyFile = join(root, 'open.key');
    await writeFile(keyFile, randomBytes(32), { mode: 0o600 });
    for (const mode of [0o644, 0o640, 0o604]) {
      await chmod(keyFile, mode);
      await rejectsWithKind(createLocalDriver({ keyFile }, ctx), 'key_unusable', /readable by group or others; chmod 600/);
    }
    await chmod(keyFile, 0o600);
    const driver = await createLocalDriver({ keyFile }, ctx);
    await driver.close();
  });

  it('refuses a key file of the wrong length', async () => {
    for (const length of [0, 16, 31, 33, 64]) {
      const keyFile = join(root, `short-${length}.key`);
      await writeFile(keyFile, randomBytes(length), { mode: 0o600 });
      await rejectsWithKind(createLocalDriver({ keyFile }, ctx), 'key_unusable', /does not hold a 32-byte key/);
    }
  });

  it('refuses a key file path it cannot use (parent is a file)', async () => {
    const blocker = join(root, 'blocker');
    await writeFile(blocker, 'not a directory');
    await rejectsWithKind(createLocalDriver({ keyFile: join(blocker, 'master.key') }, ctx), 'key_unusable', /blocker\/master\.key/);
  });

  it('agrees on one key when two drivers race to create the same file', async () => {
    for (let round = 0; round < 5; round += 1) {
      const keyFile = join(root, 'race', `round-${round}.key`);
      const [a, b] = await Promise.all([createLocalDriver({ keyFile }, ctx), createLocalDriver({ keyFile }, ctx)]);
      try {
        const dek = randomBytes(32);
        assert.deepEqual(await b.unwrap(await a.wrap(dek, AAD), AAD), dek, 'b unwraps what a wrapped');
        assert.deepEqual(await a.unwrap(await b.wrap(dek, AAD), AAD), dek, 'a unwraps what b wrapped');
        assert.equal((await stat(keyFile)).mode & 0o777, 0o600);
      } finally {
        await a.close();
        await b.close();
      }
    }
  });

  it('zero-fills its key on close, after which calls reject with a KmsError', async (t) => {
    const keyFile = join(root, 'wipe.key');
    const driver = await createLocalDriver({ keyFile }, ctx);
    const key = await readFile(keyFile);
    const blob = await driver.wrap(randomBytes(32), AAD);

    // Watch every Buffer#fill during close(): the 32-byte master key must be among the buffers wiped.
    const wiped: Buffer[] = [];
    const proto = Buffer.prototype as Buffer;
    const originalFill = Reflect.get(proto, 'fill') as (this: Buffer, ...args: Parameters<Buffer['fill']>) => Buffer;
    t.mock.method(proto, 'fill', function (this: Buffer, ...args: Parameters<Buffer['fill']>) {
      if (args[0] === 0) wiped.push(Buffer.from(this));
      return originalFill.apply(this, args);
    });
    await driver.close();
    t.mock.restoreAll();

    assert.ok(
      wiped.some((copy) => copy.equals(key)),
      'close() called fill(0) on the buffer holding the master key',
    );
    await rejectsNotThrows('wrap', () => driver.wrap(randomBytes(32), AAD));
    await rejectsNotThrows('unwrap', () => driver.unwrap(blob, AAD));
    await driver.close();
  });
});
