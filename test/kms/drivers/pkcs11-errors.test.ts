/**
 * Unit tests of the PKCS#11 classification table in kms-errors.md, on errors shaped
 * exactly as pkcs11js 2.1.x throws them (`Pkcs11Error` with the CKR value in `code`).
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import pkcs11js from 'pkcs11js';
import { KmsError, type KmsFailureKind } from '../../../src/kms/errors.js';
import {
  CKR,
  ckrName,
  classifyPkcs11Error,
  isPkcs11Error,
  pkcs11Code,
  type Pkcs11ErrorContext,
} from '../../../src/kms/drivers/pkcs11-errors.js';

const context: Pkcs11ErrorContext = {
  operation: 'unwrap',
  module: '/usr/lib/softhsm/libsofthsm2.so',
  tokenLabel: 'tenant-token',
  keyLabel: 'tenant-master',
};

/** kms-errors.md, PKCS#11 section, code by code. */
const TABLE: readonly (readonly [code: number, name: string, kind: KmsFailureKind])[] = [
  [160, 'CKR_PIN_INCORRECT', 'refused'],
  [164, 'CKR_PIN_LOCKED', 'refused'],
  [163, 'CKR_PIN_EXPIRED', 'refused'],
  [161, 'CKR_PIN_INVALID', 'refused'],
  [162, 'CKR_PIN_LEN_RANGE', 'refused'],
  [258, 'CKR_USER_PIN_NOT_INITIALIZED', 'refused'],
  [104, 'CKR_KEY_FUNCTION_NOT_PERMITTED', 'key_unusable'],
  [99, 'CKR_KEY_TYPE_INCONSISTENT', 'key_unusable'],
  [242, 'CKR_UNWRAPPING_KEY_TYPE_INCONSISTENT', 'key_unusable'],
  [277, 'CKR_WRAPPING_KEY_TYPE_INCONSISTENT', 'key_unusable'],
  // Stale handles, as the driver passes them on once a fresh look-up by label failed too.
  [96, 'CKR_KEY_HANDLE_INVALID', 'key_unusable'],
  [130, 'CKR_OBJECT_HANDLE_INVALID', 'key_unusable'],
  [240, 'CKR_UNWRAPPING_KEY_HANDLE_INVALID', 'key_unusable'],
  [275, 'CKR_WRAPPING_KEY_HANDLE_INVALID', 'key_unusable'],
  [64, 'CKR_ENCRYPTED_DATA_INVALID', 'bad_ciphertext'],
  [65, 'CKR_ENCRYPTED_DATA_LEN_RANGE', 'bad_ciphertext'],
  [272, 'CKR_WRAPPED_KEY_INVALID', 'bad_ciphertext'],
  [274, 'CKR_WRAPPED_KEY_LEN_RANGE', 'bad_ciphertext'],
  [53, 'CKR_AEAD_DECRYPT_FAILED', 'bad_ciphertext'],
  [48, 'CKR_DEVICE_ERROR', 'unreachable'],
  [49, 'CKR_DEVICE_MEMORY', 'unreachable'],
  [50, 'CKR_DEVICE_REMOVED', 'unreachable'],
  [224, 'CKR_TOKEN_NOT_PRESENT', 'unreachable'],
  [179, 'CKR_SESSION_HANDLE_INVALID', 'unreachable'],
  [176, 'CKR_SESSION_CLOSED', 'unreachable'],
  [400, 'CKR_CRYPTOKI_NOT_INITIALIZED', 'unreachable'],
  [177, 'CKR_SESSION_COUNT', 'throttled'],
  // Not in the lists: "anything else: other". GENERAL_ERROR's bad_ciphertext reading needs a
  // known-answer check, which only the driver can make; FUNCTION_FAILED and USER_NOT_LOGGED_IN
  // are retried by the driver and only reach the classifier when the retry failed too.
  [5, 'CKR_GENERAL_ERROR', 'other'],
  [6, 'CKR_FUNCTION_FAILED', 'other'],
  [257, 'CKR_USER_NOT_LOGGED_IN', 'other'],
  [112, 'CKR_MECHANISM_INVALID', 'other'],
  [7, 'CKR_ARGUMENTS_BAD', 'other'],
];

/** The error pkcs11js raises for a failing call: message `CKR_NAME:code`, parsed by its constructor. */
function nativeShaped(name: string, code: number): InstanceType<typeof pkcs11js.Pkcs11Error> {
  return new pkcs11js.Pkcs11Error(`${name}:${code}`, code, 'C_Decrypt');
}

describe('classifyPkcs11Error', () => {
  for (const [code, name, kind] of TABLE) {
    it(`classifies ${name} (${code}) as ${kind}`, () => {
      const err = nativeShaped(name, code);
      assert.equal(err.code, code, 'pkcs11js keeps the CKR value in code');
      const classified = classifyPkcs11Error(err, context);
      assert.ok(classified instanceof KmsError);
      assert.equal(classified.kind, kind);
      assert.equal(classified.cause, err, 'the original error is kept as cause');
      assert.ok(classified.message.includes(name), `message names ${name}: ${classified.message}`);
      assert.ok(classified.message.startsWith('PKCS#11'), classified.message);
    });
  }

  it('classifies on the code, not on the message pkcs11js carries', () => {
    const err = new pkcs11js.Pkcs11Error('something unhelpful', CKR.PIN_INCORRECT, 'C_Login');
    assert.equal(classifyPkcs11Error(err, { operation: 'login' }).kind, 'refused');
  });

  it('accepts a plain object with the shape of a Pkcs11Error', () => {
    const shaped = { name: 'Pkcs11Error', message: 'CKR_SESSION_COUNT', code: 177, method: 'C_OpenSession' };
    const classified = classifyPkcs11Error(shaped, { operation: 'session', tokenLabel: 'tenant-token' });
    assert.equal(classified.kind, 'throttled');
    assert.equal(classified.retryAfterSeconds, 1);
    assert.match(classified.message, /'tenant-token' has no free session/);
  });

  it('reads the CKR value of the plain Error that pkcs11js throws from C_CreateObject', () => {
    // pkcs11js 2.1.7 overrides C_CreateObject in JS and skips its own Pkcs11Error wrapping.
    const raw = new Error('CKR_USER_NOT_LOGGED_IN:257');
    assert.equal(pkcs11Code(raw), 257);
    assert.equal(classifyPkcs11Error(new Error('CKR_PIN_INCORRECT:160'), context).kind, 'refused');
    // Only that exact form: a message merely mentioning a CKR name is not a PKCS#11 error.
    assert.equal(pkcs11Code(new Error('failed after CKR_PIN_INCORRECT:160 earlier')), undefined);
    assert.equal(pkcs11Code(new TypeError('CKR_PIN_INCORRECT:160')), undefined);
  });

  it('names codes it has no name for, vendor-defined ones included', () => {
    assert.equal(ckrName(0x8000_0123), 'CKR_0x80000123');
    const classified = classifyPkcs11Error(nativeShaped('CKR_VENDOR_DEFINED', 0x8000_0123), context);
    assert.equal(classified.kind, 'other');
    assert.match(classified.message, /CKR_0x80000123/);
  });

  it('writes its own messages: the refused one names the token and the CKR value', () => {
    const classified = classifyPkcs11Error(nativeShaped('CKR_PIN_INCORRECT', 160), { operation: 'login', tokenLabel: 'tok' });
    assert.equal(classified.message, "PKCS#11 token 'tok' refused the PIN (CKR_PIN_INCORRECT)");
  });

  it('classifies anything that is not a PKCS#11 error as other', () => {
    const cases: readonly (readonly [label: string, err: unknown])[] = [
      ['Error', new Error('dlopen failed')],
      ['TypeError', new TypeError('Parameter 1 MUST be Buffer')],
      ['NativeError', new pkcs11js.NativeError('Cannot load library')],
      ['system error', { code: 'ECONNREFUSED' }],
      ['string', 'a string'],
      ['undefined', undefined],
    ];
    for (const [label, err] of cases) {
      const classified = classifyPkcs11Error(err, context);
      assert.equal(classified.kind, 'other', label);
      assert.equal(classified.cause, err);
    }
  });

  it('passes a KmsError through unchanged', () => {
    const original = new KmsError('key_unusable', "key 'k' not found on token 't'");
    assert.equal(classifyPkcs11Error(original, context), original);
  });

  it('recognises pkcs11js errors by shape', () => {
    assert.ok(isPkcs11Error(nativeShaped('CKR_DEVICE_ERROR', 48)));
    assert.ok(!isPkcs11Error(new pkcs11js.NativeError('x')));
    assert.ok(!isPkcs11Error({ name: 'Pkcs11Error', code: '48' }));
    assert.ok(!isPkcs11Error(null));
  });

  it('never puts the PIN or key bytes into a message, whatever the module or caller hands it', () => {
    const pin = 'S3cret-PIN-4711';
    const keyHex = 'a1b2c3d4e5f60718293a4b5c6d7e8f90';
    // A careless caller spreading its options (PIN included) into the context...
    const careless = { ...context, pin, keyBytes: keyHex };
    for (const [code, name] of TABLE) {
      // ...and a module that echoes the PIN and key bytes in its own message.
      const err = new pkcs11js.Pkcs11Error(`${name} pin=${pin} key=${keyHex}`, code, 'C_Login');
      for (const operation of ['init', 'login', 'find', 'session', 'wrap', 'unwrap', 'close'] as const) {
        const { message } = classifyPkcs11Error(err, { ...careless, operation });
        assert.ok(!message.includes(pin), `message for ${name} leaks the PIN: ${message}`);
        assert.ok(!message.includes(keyHex), `message for ${name} leaks key bytes: ${message}`);
      }
    }
    const plain = classifyPkcs11Error(new Error(`login with ${pin} failed`), careless);
    assert.ok(!plain.message.includes(pin), plain.message);
  });
});
