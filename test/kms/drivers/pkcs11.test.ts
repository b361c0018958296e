/**
 * The PKCS#11 driver against a real SoftHSM2 token made for this test process: first the
 * shared conformance suite for both mechanisms, then what only this driver does.
 *
 * SoftHSM2 shows a wrong PIN (CKR_PIN_INCORRECT), a deleted key (not found) and a changed
 * PIN; it has no lockout and no device removal (kms-errors.md, test-server table), so those
 * are proven only by the classification unit tests.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import pino from 'pino';
import pkcs11js from 'pkcs11js';
import type { DriverContext, KmsDriver } from '../../../src/kms/driver.js';
import { KmsError, type KmsFailureKind } from '../../../src/kms/errors.js';
import { createPkcs11Driver, type Pkcs11DriverOptions } from '../../../src/kms/drivers/pkcs11.js';
import { runDriverConformance } from '../conformance.js';
import { SOFTHSM_MODULE, cleanupSoftHsm, createSoftHsmToken } from '../../helpers/softhsm.js';

const MECHANISMS = ['aes-gcm', 'aes-key-wrap-pad'] as const;

// Every log line of every driver in this file, to check that no secret is ever logged.
const logLines: string[] = [];
const ctx: DriverContext = {
  logger: pino({ level: 'debug' }, { write: (line: string) => void logLines.push(line) }),
  env: {},
};

const main = await createSoftHsmToken({
  label: 'keyward-main',
  soPin: 'so-pin-1029',
  pin: 'user-pin-5566',
  keys: [
    'master-a',
    'master-b',
    'revocable-aes-gcm',
    'revocable-aes-key-wrap-pad',
    'replaceable',
    'queue',
    'recover-aes-gcm',
    'recover-aes-key-wrap-pad',
  ],
});
await main.createKey('no-use', { encrypt: false, decrypt: false, wrap: false, unwrap: false });
// The PIN tests get a token of their own: the login state of a token is shared by every
// driver of the process, so they must control who is logged in.
const pinToken = await createSoftHsmToken({ label: 'keyward-pin', soPin: 'so-pin-3344', pin: 'pin-old-7788', keys: ['pin-key'] });
const secrets = [main.pin, main.soPin, pinToken.pin, pinToken.soPin];

after(async () => {
  await cleanupSoftHsm();
});

function options(overrides: Partial<Pkcs11DriverOptions> = {}): Pkcs11DriverOptions {
  return {
    module: SOFTHSM_MODULE,
    tokenLabel: main.label,
    pin: main.pin,
    keyLabel: 'master-a',
    mechanism: 'aes-gcm',
    sessions: 4,
    ...overrides,
  };
}

function aad(tenant: string): Buffer {
  return Buffer.from(`pkcs11-test|${tenant}|1`);
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
  assert.ok(caught !== undefined);
  for (const secret of secrets) assert.ok(!caught.message.includes(secret), `message leaks a PIN: ${caught.message}`);
  return caught;
}

async function roundTrip(driver: KmsDriver, tenant = 'tenant-a'): Promise<void> {
  const dek = randomBytes(32);
  const blob = await driver.wrap(dek, aad(tenant));
  assert.deepEqual(await driver.unwrap(blob, aad(tenant)), dek);
}

/** Acts on the token from inside this process, as a token reset or another application would. */
function withTokenFromOutside(tokenLabel: string, act: (lib: pkcs11js.PKCS11, slot: Buffer) => void): void {
  // The module is already initialised by the drivers (dlopen hands back the same library),
  // so this instance must neither C_Initialize nor C_Finalize it.
  const lib = new pkcs11js.PKCS11();
  lib.load(SOFTHSM_MODULE);
  try {
    const slot = lib.C_GetSlotList(true).find((s) => lib.C_GetTokenInfo(s).label.trim() === tokenLabel);
    assert.ok(slot !== undefined, `token ${tokenLabel} is present`);
    act(lib, slot);
  } finally {
    lib.close();
  }
}

for (const mechanism of MECHANISMS) {
  runDriverConformance(`pkcs11 (SoftHSM2, ${mechanism})`, {
    create: () => createPkcs11Driver(options({ mechanism }), ctx),
    createOther: () => createPkcs11Driver(options({ mechanism, keyLabel: 'master-b' }), ctx),
  });
}

describe('PKCS#11 driver: token, PIN and key look-up (SoftHSM2)', () => {
  it('refuses a wrong PIN with refused (CKR_PIN_INCORRECT)', async () => {
    const err = await rejectsWithKind(
      createPkcs11Driver(options({ tokenLabel: pinToken.label, pin: 'not-the-pin', keyLabel: 'pin-key' }), ctx),
      'refused',
      /CKR_PIN_INCORRECT/,
    );
    assert.ok(!err.message.includes('not-the-pin'));
  });

  it('refuses a wrong PIN even while another driver holds the token login', async () => {
    const good = await createPkcs11Driver(options({ tokenLabel: pinToken.label, pin: pinToken.pin, keyLabel: 'pin-key' }), ctx);
    try {
      // C_Login answers CKR_USER_ALREADY_LOGGED_IN to any PIN here; the driver must not take that as success.
      await rejectsWithKind(
        createPkcs11Driver(options({ tokenLabel: pinToken.label, pin: 'not-the-pin', keyLabel: 'pin-key' }), ctx),
        'refused',
      );
      await roundTrip(good);
    } finally {
      await good.close();
    }
  });

  it('refuses the old PIN once the user PIN has changed, and accepts the new one', async () => {
    const oldPin = pinToken.pin;
    await pinToken.changePin('pin-new-9900');
    secrets.push(pinToken.pin);
    await rejectsWithKind(
      createPkcs11Driver(options({ tokenLabel: pinToken.label, pin: oldPin, keyLabel: 'pin-key' }), ctx),
      'refused',
      /CKR_PIN_INCORRECT/,
    );
    const driver = await createPkcs11Driver(options({ tokenLabel: pinToken.label, pin: pinToken.pin, keyLabel: 'pin-key' }), ctx);
    try {
      await roundTrip(driver);
    } finally {
      await driver.close();
    }
  });

  it('reports a missing token as key_unusable, naming the label and the module', async () => {
    const err = await rejectsWithKind(
      createPkcs11Driver(options({ tokenLabel: 'no-such-token' }), ctx),
      'key_unusable',
      /no-such-token/,
    );
    assert.ok(err.message.includes(SOFTHSM_MODULE), err.message);
  });

  it('reports a missing key as key_unusable', async () => {
    await rejectsWithKind(
      createPkcs11Driver(options({ keyLabel: 'no-such-key' }), ctx),
      'key_unusable',
      /key 'no-such-key' not found on token 'keyward-main'/,
    );
  });

  it('reports an unloadable module as a configuration problem (key_unusable → 207)', async () => {
    await rejectsWithKind(createPkcs11Driver(options({ module: '/nonexistent/libpkcs11.so' }), ctx), 'key_unusable', /nonexistent/);
  });

  it('refuses an invalid session count', async () => {
    await assert.rejects(createPkcs11Driver(options({ sessions: 0 }), ctx), RangeError);
  });
});

describe('PKCS#11 driver: keys that change under it (SoftHSM2)', () => {
  for (const mechanism of MECHANISMS) {
    it(`${mechanism}: a key deleted while the driver runs (revocation) fails the next calls with key_unusable`, async () => {
      const keyLabel = `revocable-${mechanism}`;
      const driver = await createPkcs11Driver(options({ mechanism, keyLabel }), ctx);
      try {
        const blob = await driver.wrap(randomBytes(32), aad('tenant-a'));
        assert.equal(await main.deleteKey(keyLabel), 1);
        await rejectsWithKind(driver.wrap(randomBytes(32), aad('tenant-a')), 'key_unusable', /not found on token/);
        await rejectsWithKind(driver.unwrap(blob, aad('tenant-a')), 'key_unusable', /not found on token/);
        // And it stays that way, call after call.
        await rejectsWithKind(driver.wrap(randomBytes(32), aad('tenant-a')), 'key_unusable');
      } finally {
        await driver.close();
      }
    });
  }

  it('finds a key replaced under the same label again, and refuses blobs of the old key', async () => {
    const driver = await createPkcs11Driver(options({ keyLabel: 'replaceable' }), ctx);
    try {
      const oldBlob = await driver.wrap(randomBytes(32), aad('tenant-a'));
      await main.deleteKey('replaceable');
      await main.createKey('replaceable');
      await roundTrip(driver);
      await rejectsWithKind(driver.unwrap(oldBlob, aad('tenant-a')), 'bad_ciphertext');
    } finally {
      await driver.close();
    }
  });

  it('aes-gcm with a key that may not encrypt or decrypt fails with key_unusable', async () => {
    const driver = await createPkcs11Driver(options({ keyLabel: 'no-use' }), ctx);
    const good = await createPkcs11Driver(options(), ctx);
    try {
      await rejectsWithKind(driver.wrap(randomBytes(32), aad('tenant-a')), 'key_unusable', /CKR_KEY_FUNCTION_NOT_PERMITTED/);
      // Same blob format and length as the key's own would have: it reaches C_DecryptInit.
      const blob = await good.wrap(randomBytes(32), aad('tenant-a'));
      await rejectsWithKind(driver.unwrap(blob, aad('tenant-a')), 'key_unusable', /CKR_KEY_FUNCTION_NOT_PERMITTED/);
    } finally {
      await driver.close();
      await good.close();
    }
  });

  it('aes-key-wrap-pad with a key that may not wrap or unwrap fails with key_unusable', async () => {
    const driver = await createPkcs11Driver(options({ keyLabel: 'no-use', mechanism: 'aes-key-wrap-pad' }), ctx);
    try {
      await rejectsWithKind(driver.wrap(randomBytes(32), aad('tenant-a')), 'key_unusable', /CKR_KEY_FUNCTION_NOT_PERMITTED/);
    } finally {
      await driver.close();
    }
  });
});

describe('PKCS#11 driver: mechanisms (SoftHSM2)', () => {
  it('aes-key-wrap-pad rejects a blob whose associated-data suffix differs, after the token unwrapped it', async () => {
    const driver = await createPkcs11Driver(options({ mechanism: 'aes-key-wrap-pad' }), ctx);
    try {
      const blob = await driver.wrap(randomBytes(32), aad('tenant-a'));
      // The token's KWP check passes (same key); only the bound SHA-256(aad) prefix differs.
      await rejectsWithKind(driver.unwrap(blob, aad('tenant-b')), 'bad_ciphertext', /other associated data/);
      await roundTrip(driver);
    } finally {
      await driver.close();
    }
  });

  it('aes-key-wrap-pad output is RFC 5649 sized: format byte, then 8 bytes more than the padded input', async () => {
    const driver = await createPkcs11Driver(options({ mechanism: 'aes-key-wrap-pad' }), ctx);
    try {
      const blob = await driver.wrap(randomBytes(32), aad('tenant-a'));
      assert.equal(blob[0], 0x02);
      assert.equal(blob.length, 1 + 48 + 8); // 32-byte key + 16-byte aad suffix
    } finally {
      await driver.close();
    }
  });

  it('aes-gcm blobs are format byte, 12-byte IV, ciphertext and 16-byte tag', async () => {
    const driver = await createPkcs11Driver(options(), ctx);
    try {
      const blob = await driver.wrap(randomBytes(32), aad('tenant-a'));
      assert.equal(blob[0], 0x01);
      assert.equal(blob.length, 1 + 12 + 32 + 16);
    } finally {
      await driver.close();
    }
  });

  it('treats a blob of the other mechanism as bad_ciphertext, without asking the token', async () => {
    const gcm = await createPkcs11Driver(options(), ctx);
    const kwp = await createPkcs11Driver(options({ mechanism: 'aes-key-wrap-pad' }), ctx);
    try {
      const gcmBlob = await gcm.wrap(randomBytes(32), aad('tenant-a'));
      const kwpBlob = await kwp.wrap(randomBytes(32), aad('tenant-a'));
      await rejectsWithKind(gcm.unwrap(kwpBlob, aad('tenant-a')), 'bad_ciphertext', /malformed/);
      await rejectsWithKind(kwp.unwrap(gcmBlob, aad('tenant-a')), 'bad_ciphertext', /malformed/);
    } finally {
      await gcm.close();
      await kwp.close();
    }
  });

  it('refuses to wrap an empty key', async () => {
    const driver = await createPkcs11Driver(options(), ctx);
    try {
      await rejectsWithKind(driver.wrap(Buffer.alloc(0), aad('tenant-a')), 'other', /empty/);
    } finally {
      await driver.close();
    }
  });
});

describe('PKCS#11 driver: sharing, sessions and shutdown (SoftHSM2)', () => {
  it('two drivers on one module and token both work, and closing one leaves the other working', async () => {
    const first = await createPkcs11Driver(options(), ctx);
    const second = await createPkcs11Driver(options({ keyLabel: 'master-b', mechanism: 'aes-key-wrap-pad' }), ctx);
    const third = await createPkcs11Driver(options(), ctx);
    try {
      await Promise.all([roundTrip(first), roundTrip(second), roundTrip(third)]);
      const blob = await first.wrap(randomBytes(32), aad('tenant-a'));
      await first.close();
      await rejectsWithKind(first.wrap(randomBytes(32), aad('tenant-a')), 'unreachable', /closed/);
      await roundTrip(second);
      // Same key, other driver: blobs are interchangeable.
      assert.equal((await third.unwrap(blob, aad('tenant-a'))).length, 32);
      await third.close();
      await roundTrip(second);
    } finally {
      await first.close();
      await second.close();
      await third.close();
    }
    // The module was finalised with its last driver; a new driver loads it again.
    const again = await createPkcs11Driver(options(), ctx);
    try {
      await roundTrip(again);
    } finally {
      await again.close();
    }
  });

  it('with one session, 50 concurrent operations all succeed, served first come first served', async () => {
    const driver = await createPkcs11Driver(options({ keyLabel: 'queue', sessions: 1 }), ctx);
    try {
      const deks = Array.from({ length: 50 }, () => randomBytes(32));
      const finished: number[] = [];
      const blobs = await Promise.all(
        deks.map(async (dek, i) => {
          const blob = await driver.wrap(dek, aad(`tenant-${i % 3}`));
          finished.push(i);
          return blob;
        }),
      );
      assert.deepEqual(finished, deks.map((_, i) => i), 'FIFO: operations finish in the order they queued');
      const mixed = await Promise.all(
        deks.map(async (dek, i) => {
          const blob = blobs[i]!;
          if (i % 2 === 0) return driver.unwrap(blob, aad(`tenant-${i % 3}`));
          const again = await driver.wrap(dek, aad('other'));
          return driver.unwrap(again, aad('other'));
        }),
      );
      mixed.forEach((dek, i) => assert.deepEqual(dek, deks[i]));
    } finally {
      await driver.close();
    }
  });

  it('close waits for operations in flight, then rejects new calls with a KmsError', async () => {
    const driver = await createPkcs11Driver(options({ sessions: 2 }), ctx);
    const deks = Array.from({ length: 20 }, () => randomBytes(32));
    const inFlight = deks.map((dek) => driver.wrap(dek, aad('tenant-a')));
    const closed = driver.close();
    const blobs = await Promise.all(inFlight);
    await closed;
    assert.equal(blobs.length, 20);
    await rejectsWithKind(driver.wrap(randomBytes(32), aad('tenant-a')), 'unreachable', /closed/);
    await rejectsWithKind(driver.unwrap(blobs[0]!, aad('tenant-a')), 'unreachable', /closed/);
    await driver.close(); // idempotent
  });

  for (const mechanism of MECHANISMS) {
    it(`${mechanism}: recovers when the token drops every session of the process (and with them the login)`, async () => {
      const driver = await createPkcs11Driver(options({ mechanism, keyLabel: `recover-${mechanism}`, sessions: 2 }), ctx);
      try {
        const dek = randomBytes(32);
        const blob = await driver.wrap(dek, aad('tenant-a'));
        // Session handles become invalid, the login ends and SoftHSM invalidates the key handle.
        withTokenFromOutside(main.label, (lib, slot) => lib.C_CloseAllSessions(slot));
        assert.deepEqual(await driver.unwrap(blob, aad('tenant-a')), dek);
        await Promise.all([roundTrip(driver), roundTrip(driver), roundTrip(driver)]);
      } finally {
        await driver.close();
      }
    });

    it(`${mechanism}: logs in again when the token logs the process out`, async () => {
      const driver = await createPkcs11Driver(options({ mechanism, keyLabel: `recover-${mechanism}` }), ctx);
      try {
        const dek = randomBytes(32);
        const blob = await driver.wrap(dek, aad('tenant-a'));
        withTokenFromOutside(main.label, (lib, slot) => {
          const session = lib.C_OpenSession(slot, pkcs11js.CKF_SERIAL_SESSION);
          lib.C_Logout(session);
          lib.C_CloseSession(session);
        });
        await roundTrip(driver);
        assert.deepEqual(await driver.unwrap(blob, aad('tenant-a')), dek);
      } finally {
        await driver.close();
      }
    });
  }
});

describe('PKCS#11 driver: logging', () => {
  before(async () => {
    // Leave a few notable events in the log: a stale handle and a refused PIN.
    const driver = await createPkcs11Driver(options({ keyLabel: 'master-b' }), ctx);
    withTokenFromOutside(main.label, (lib, slot) => lib.C_CloseAllSessions(slot));
    await roundTrip(driver);
    await driver.close();
  });

  it('logs notable events and never a PIN', () => {
    assert.ok(logLines.length > 0, 'the drivers logged something');
    assert.ok(logLines.some((line) => line.includes('replacing it')), 'session replacement was logged');
    for (const line of logLines) {
      for (const secret of [...secrets, 'not-the-pin']) assert.ok(!line.includes(secret), `log line leaks a PIN: ${line}`);
    }
  });
});
