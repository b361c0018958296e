/**
 * Classification of PKCS#11 failures into the closed set of `KmsError` kinds, as laid
 * down in kms-errors.md (PKCS#11 section). Classification uses the CKR value only
 * (`Pkcs11Error.code` from pkcs11js); the provider's message text is never copied into
 * ours, so nothing a module chooses to echo (a PIN, key bytes) can leak through.
 *
 * This file does not import pkcs11js: it recognises its errors by shape, so it can be
 * loaded (and unit tested) without the native binding.
 */
import { KmsError, type KmsFailureKind } from '../errors.js';

/** The CKR values Keyward names or acts on (PKCS#11 v2.40 / v3.0, pkcs11t.h). */
export const CKR = {
  OK: 0x0,
  GENERAL_ERROR: 0x5,
  FUNCTION_FAILED: 0x6,
  ARGUMENTS_BAD: 0x7,
  ATTRIBUTE_SENSITIVE: 0x11,
  ATTRIBUTE_TYPE_INVALID: 0x12,
  ATTRIBUTE_VALUE_INVALID: 0x13,
  AEAD_DECRYPT_FAILED: 0x35,
  DATA_INVALID: 0x20,
  DATA_LEN_RANGE: 0x21,
  DEVICE_ERROR: 0x30,
  DEVICE_MEMORY: 0x31,
  DEVICE_REMOVED: 0x32,
  ENCRYPTED_DATA_INVALID: 0x40,
  ENCRYPTED_DATA_LEN_RANGE: 0x41,
  FUNCTION_CANCELED: 0x50,
  KEY_HANDLE_INVALID: 0x60,
  KEY_SIZE_RANGE: 0x62,
  KEY_TYPE_INCONSISTENT: 0x63,
  KEY_FUNCTION_NOT_PERMITTED: 0x68,
  KEY_NOT_WRAPPABLE: 0x69,
  KEY_UNEXTRACTABLE: 0x6a,
  MECHANISM_INVALID: 0x70,
  MECHANISM_PARAM_INVALID: 0x71,
  OBJECT_HANDLE_INVALID: 0x82,
  OPERATION_ACTIVE: 0x90,
  OPERATION_NOT_INITIALIZED: 0x91,
  PIN_INCORRECT: 0xa0,
  PIN_INVALID: 0xa1,
  PIN_LEN_RANGE: 0xa2,
  PIN_EXPIRED: 0xa3,
  PIN_LOCKED: 0xa4,
  SESSION_CLOSED: 0xb0,
  SESSION_COUNT: 0xb1,
  SESSION_HANDLE_INVALID: 0xb3,
  SESSION_READ_ONLY: 0xb5,
  TEMPLATE_INCOMPLETE: 0xd0,
  TEMPLATE_INCONSISTENT: 0xd1,
  TOKEN_NOT_PRESENT: 0xe0,
  TOKEN_NOT_RECOGNIZED: 0xe1,
  UNWRAPPING_KEY_HANDLE_INVALID: 0xf0,
  UNWRAPPING_KEY_SIZE_RANGE: 0xf1,
  UNWRAPPING_KEY_TYPE_INCONSISTENT: 0xf2,
  USER_ALREADY_LOGGED_IN: 0x100,
  USER_NOT_LOGGED_IN: 0x101,
  USER_PIN_NOT_INITIALIZED: 0x102,
  USER_TYPE_INVALID: 0x103,
  WRAPPED_KEY_INVALID: 0x110,
  WRAPPED_KEY_LEN_RANGE: 0x112,
  WRAPPING_KEY_HANDLE_INVALID: 0x113,
  WRAPPING_KEY_SIZE_RANGE: 0x114,
  WRAPPING_KEY_TYPE_INCONSISTENT: 0x115,
  RANDOM_NO_RNG: 0x121,
  BUFFER_TOO_SMALL: 0x150,
  CRYPTOKI_NOT_INITIALIZED: 0x190,
  CRYPTOKI_ALREADY_INITIALIZED: 0x191,
  VENDOR_DEFINED: 0x80000000,
} as const;

export type CkrName = keyof typeof CKR;

/** CKR value → `CKR_…` name, for the messages we write. */
export const CKR_NAMES: ReadonlyMap<number, `CKR_${CkrName}`> = new Map(
  (Object.entries(CKR) as [CkrName, number][]).map(([name, code]) => [code, `CKR_${name}` as const]),
);

/** `CKR_PIN_INCORRECT` for 0xa0; `CKR_0x…` for values we do not name (vendor codes included). */
export function ckrName(code: number): string {
  return CKR_NAMES.get(code) ?? `CKR_0x${code.toString(16).toUpperCase()}`;
}

/** Key handles that a token may invalidate under us (logout, object deleted, token reset). */
export const STALE_HANDLE_CODES: ReadonlySet<number> = new Set([
  CKR.KEY_HANDLE_INVALID,
  CKR.OBJECT_HANDLE_INVALID,
  CKR.UNWRAPPING_KEY_HANDLE_INVALID,
  CKR.WRAPPING_KEY_HANDLE_INVALID,
]);

/** Session handles that are gone: the session must be discarded and replaced. */
export const DEAD_SESSION_CODES: ReadonlySet<number> = new Set([CKR.SESSION_HANDLE_INVALID, CKR.SESSION_CLOSED]);

const KIND_BY_CODE: ReadonlyMap<number, KmsFailureKind> = new Map<number, KmsFailureKind>([
  // The token said no to our credentials.
  [CKR.PIN_INCORRECT, 'refused'],
  [CKR.PIN_INVALID, 'refused'],
  [CKR.PIN_LEN_RANGE, 'refused'],
  [CKR.PIN_EXPIRED, 'refused'],
  [CKR.PIN_LOCKED, 'refused'],
  [CKR.USER_PIN_NOT_INITIALIZED, 'refused'],
  // The key exists but may not be used this way, or is not (or no longer) there.
  [CKR.KEY_FUNCTION_NOT_PERMITTED, 'key_unusable'],
  [CKR.KEY_TYPE_INCONSISTENT, 'key_unusable'],
  [CKR.UNWRAPPING_KEY_TYPE_INCONSISTENT, 'key_unusable'],
  // Not in kms-errors.md's list, but the wrap-side twin of 242: SoftHSM answers it when the
  // master key is not an AES key and we wrap with it (aes-key-wrap-pad).
  [CKR.WRAPPING_KEY_TYPE_INCONSISTENT, 'key_unusable'],
  // Stale handles reach the classifier only after the driver's fresh look-up by label failed.
  [CKR.KEY_HANDLE_INVALID, 'key_unusable'],
  [CKR.OBJECT_HANDLE_INVALID, 'key_unusable'],
  [CKR.UNWRAPPING_KEY_HANDLE_INVALID, 'key_unusable'],
  [CKR.WRAPPING_KEY_HANDLE_INVALID, 'key_unusable'],
  // The blob is corrupt or was made under another key or context.
  [CKR.ENCRYPTED_DATA_INVALID, 'bad_ciphertext'],
  [CKR.ENCRYPTED_DATA_LEN_RANGE, 'bad_ciphertext'],
  [CKR.WRAPPED_KEY_INVALID, 'bad_ciphertext'],
  [CKR.WRAPPED_KEY_LEN_RANGE, 'bad_ciphertext'],
  [CKR.AEAD_DECRYPT_FAILED, 'bad_ciphertext'],
  // The device or our connection to it is gone for now.
  [CKR.DEVICE_ERROR, 'unreachable'],
  [CKR.DEVICE_MEMORY, 'unreachable'],
  [CKR.DEVICE_REMOVED, 'unreachable'],
  [CKR.TOKEN_NOT_PRESENT, 'unreachable'],
  [CKR.SESSION_HANDLE_INVALID, 'unreachable'],
  [CKR.SESSION_CLOSED, 'unreachable'],
  [CKR.CRYPTOKI_NOT_INITIALIZED, 'unreachable'],
  // Out of sessions: back off and try again.
  [CKR.SESSION_COUNT, 'throttled'],
]);

export type Pkcs11Operation = 'init' | 'login' | 'find' | 'session' | 'wrap' | 'unwrap' | 'close';

/**
 * What the failing call was doing. Labels and the module path are configuration, not
 * secrets, and may appear in messages. There is deliberately no place for the PIN.
 */
export interface Pkcs11ErrorContext {
  readonly operation: Pkcs11Operation;
  readonly module?: string;
  readonly tokenLabel?: string;
  readonly keyLabel?: string;
}

/** The shape of pkcs11js's `Pkcs11Error` (a CKR value in `code`). */
export interface Pkcs11ErrorLike {
  readonly name: string;
  readonly code: number;
  readonly method?: string;
}

export function isPkcs11Error(err: unknown): err is Pkcs11ErrorLike {
  if (typeof err !== 'object' || err === null) return false;
  const candidate = err as { name?: unknown; code?: unknown };
  return candidate.name === 'Pkcs11Error' && typeof candidate.code === 'number' && Number.isInteger(candidate.code);
}

/**
 * pkcs11js 2.1.7 overrides C_CreateObject, C_CopyObject and C_SetAttributeValue in JS and
 * calls the native method directly, past its error wrapper: their failures arrive as a plain
 * `Error` whose whole message is the native `CKR_NAME:value`. Only that exact form is read.
 */
const NATIVE_MESSAGE = /^CKR_[A-Z0-9_]+:(\d+)$/;

/** The CKR value of a pkcs11js error, or undefined for anything else. */
export function pkcs11Code(err: unknown): number | undefined {
  if (isPkcs11Error(err)) return err.code;
  if (err instanceof Error && err.name === 'Error') {
    const match = NATIVE_MESSAGE.exec(err.message);
    if (match?.[1] !== undefined) return Number(match[1]);
  }
  return undefined;
}

const OPERATION_TEXT: Record<Pkcs11Operation, string> = {
  init: 'initialising the module',
  login: 'logging in',
  find: 'looking up the key',
  session: 'opening a session',
  wrap: 'wrapping',
  unwrap: 'unwrapping',
  close: 'closing',
};

function quoted(value: string | undefined, fallback: string): string {
  return value === undefined ? fallback : `'${value}'`;
}

function messageFor(kind: KmsFailureKind, name: string, context: Pkcs11ErrorContext): string {
  const token = quoted(context.tokenLabel, 'the token');
  const key = quoted(context.keyLabel, 'the key');
  const doing = OPERATION_TEXT[context.operation];
  switch (kind) {
    case 'refused':
      return `PKCS#11 token ${token} refused the PIN (${name})`;
    case 'key_unusable':
      return `PKCS#11 key ${key} on token ${token} cannot be used for ${doing} (${name})`;
    case 'bad_ciphertext':
      return `PKCS#11 token ${token} rejected the wrapped key as corrupt or made under another key (${name})`;
    case 'unreachable':
      return `PKCS#11 token ${token} is unavailable while ${doing} (${name})`;
    case 'throttled':
      return `PKCS#11 token ${token} has no free session while ${doing} (${name})`;
    case 'account_issue':
    case 'other':
      return `PKCS#11 call failed while ${doing} on token ${token} (${name})`;
  }
}

/**
 * Maps any failure from a PKCS#11 call into a `KmsError`. A `KmsError` passes through
 * unchanged; anything that is not a PKCS#11 error (a failed `dlopen`, a TypeError from a
 * bad argument) is `other`. The original error is kept as `cause` for operators; it is
 * never used to build the message.
 */
export function classifyPkcs11Error(err: unknown, context: Pkcs11ErrorContext): KmsError {
  if (err instanceof KmsError) return err;
  const code = pkcs11Code(err);
  if (code === undefined) {
    const what = err instanceof Error ? err.name : typeof err;
    return new KmsError('other', `PKCS#11 ${OPERATION_TEXT[context.operation]} failed (${what})`, { cause: err });
  }
  const kind = KIND_BY_CODE.get(code) ?? 'other';
  const message = messageFor(kind, ckrName(code), context);
  // No token gives a retry hint for SESSION_COUNT; a second is our estimate.
  return kind === 'throttled'
    ? new KmsError(kind, message, { cause: err, retryAfterSeconds: 1 })
    : new KmsError(kind, message, { cause: err });
}
