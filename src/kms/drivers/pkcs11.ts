/**
 * PKCS#11 driver: wraps data keys under an AES master key held in the tenant's HSM,
 * through pkcs11js. Proven against SoftHSM2 2.6.1 (test/kms/drivers/pkcs11.test.ts).
 *
 * Blob formats (the first byte says which):
 * - 0x01 aes-gcm:          0x01 ‖ IV (12) ‖ ciphertext ‖ tag (16); the caller's aad is GCM's AAD.
 * - 0x02 aes-key-wrap-pad: 0x02 ‖ KWP(plaintext ‖ SHA-256(aad)[0..16]) (RFC 5649).
 *
 * Failures are classified by `classifyPkcs11Error` (pkcs11-errors.ts, per kms-errors.md);
 * the recoveries the PKCS#11 spec allows (log in again, replace a dead session, look a
 * stale key handle up again by label) are each tried at most once per call.
 */
import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { realpathSync } from 'node:fs';
import pkcs11js from 'pkcs11js';
import type { GcmParams, Mechanism, PKCS11, Template } from 'pkcs11js';
import type { Logger } from 'pino';
import type { DriverContext, KmsDriver } from '../driver.js';
import { KmsError } from '../errors.js';
import {
  CKR,
  DEAD_SESSION_CODES,
  STALE_HANDLE_CODES,
  ckrName,
  classifyPkcs11Error,
  pkcs11Code,
  type Pkcs11ErrorContext,
  type Pkcs11Operation,
} from './pkcs11-errors.js';

export interface Pkcs11DriverOptions {
  /** Path of the PKCS#11 module (.so). */
  readonly module: string;
  readonly tokenLabel: string;
  /** The user PIN, already resolved from its secret reference by the caller. */
  readonly pin: string;
  readonly keyLabel: string;
  readonly mechanism: 'aes-gcm' | 'aes-key-wrap-pad';
  /** Sessions kept open; each operation holds one exclusively. */
  readonly sessions: number;
}

/** For log fields: the CKR name of a PKCS#11 failure, undefined for anything else. */
function ckrOf(err: unknown): string | undefined {
  const code = pkcs11Code(err);
  return code === undefined ? undefined : ckrName(code);
}

/** pkcs11js handles (slots, sessions, objects) are little-endian CK_ULONGs in a Buffer. */
type Handle = Buffer;

// Session states from pkcs11t.h (pkcs11js does not export them).
const CKS_RO_USER_FUNCTIONS = 1;
const CKS_RW_USER_FUNCTIONS = 3;

// ---------------------------------------------------------------------------------------
// Per-process registry of loaded modules.
//
// Cryptoki state is per process and per library: C_Initialize/C_Finalize are global, and
// C_Login is per application and token (PKCS#11 v2.40 base, C_Login and C_CloseSession:
// all sessions of an application share one login, which ends with its last session).
// So every driver using a module shares one entry, counted by reference.
// ---------------------------------------------------------------------------------------

interface TokenState {
  /** Sessions this process has open with the token, across all drivers. */
  openSessions: number;
  /** HMAC of the PIN this process logged in with, while that login lasts. */
  pinDigest: Buffer | undefined;
}

interface ModuleEntry {
  readonly key: string;
  readonly lib: PKCS11;
  /** False if someone else in the process had initialised it: then we never finalise it. */
  readonly initializedHere: boolean;
  refs: number;
  readonly tokens: Map<string, TokenState>;
}

const modules = new Map<string, ModuleEntry>();

/** Keys the PIN digests; lives and dies with the process, so a digest is useless elsewhere. */
const PIN_DIGEST_KEY = randomBytes(32);

function pinDigest(pin: string): Buffer {
  return createHmac('sha256', PIN_DIGEST_KEY).update(pin, 'utf8').digest();
}

function acquireModule(modulePath: string, logger: Logger): ModuleEntry {
  let key: string;
  try {
    // Two spellings of one library (symlink, relative path) share one Cryptoki state.
    key = realpathSync(modulePath);
  } catch {
    key = modulePath;
  }
  const existing = modules.get(key);
  if (existing !== undefined) {
    existing.refs += 1;
    return existing;
  }
  const lib = new pkcs11js.PKCS11();
  try {
    lib.load(key);
  } catch (err) {
    // A module that is not there or not a PKCS#11 library is a configuration problem (207).
    throw new KmsError('key_unusable', `cannot load PKCS#11 module '${modulePath}'`, { cause: err });
  }
  let initializedHere = true;
  try {
    // The *Async calls run on libuv's thread pool, so the module must lock for itself.
    lib.C_Initialize({ flags: pkcs11js.CKF_OS_LOCKING_OK });
  } catch (err) {
    if (pkcs11Code(err) !== CKR.CRYPTOKI_ALREADY_INITIALIZED) {
      closeLibrary(lib);
      throw classifyPkcs11Error(err, { operation: 'init', module: modulePath });
    }
    initializedHere = false;
  }
  const entry: ModuleEntry = { key, lib, initializedHere, refs: 1, tokens: new Map() };
  modules.set(key, entry);
  logger.debug({ module: modulePath }, 'PKCS#11 module loaded');
  return entry;
}

function releaseModule(entry: ModuleEntry, logger: Logger): void {
  entry.refs -= 1;
  if (entry.refs > 0) return;
  modules.delete(entry.key);
  if (entry.initializedHere) {
    try {
      entry.lib.C_Finalize();
    } catch (err) {
      logger.warn({ ckr: ckrOf(err) }, 'PKCS#11 C_Finalize failed');
    }
  }
  closeLibrary(entry.lib);
  logger.debug('PKCS#11 module finalised');
}

function closeLibrary(lib: PKCS11): void {
  try {
    lib.close();
  } catch {
    // Nothing useful to do: the library stays mapped until the process exits.
  }
}

function tokenState(entry: ModuleEntry, slot: Handle): TokenState {
  const id = slot.toString('hex');
  let state = entry.tokens.get(id);
  if (state === undefined) {
    state = { openSessions: 0, pinDigest: undefined };
    entry.tokens.set(id, state);
  }
  return state;
}

// ---------------------------------------------------------------------------------------
// Session pool: each operation holds a session exclusively (C_EncryptInit + C_EncryptAsync
// is one operation, and another JS call could run between the two); FIFO queue of waiters.
// ---------------------------------------------------------------------------------------

interface Waiter {
  resolve(session: Handle): void;
  reject(err: unknown): void;
}

class SessionPool {
  readonly #max: number;
  readonly #open: () => Handle;
  readonly #close: (session: Handle) => void;
  readonly #idle: Handle[] = [];
  readonly #waiters: Waiter[] = [];
  #count = 0;

  constructor(max: number, open: () => Handle, close: (session: Handle) => void) {
    this.#max = max;
    this.#open = open;
    this.#close = close;
  }

  /** Adds an already open session (the one the driver logged in with). */
  seed(session: Handle): void {
    this.#count += 1;
    this.release(session);
  }

  acquire(): Promise<Handle> {
    const idle = this.#idle.pop();
    if (idle !== undefined) return Promise.resolve(idle);
    if (this.#count < this.#max) {
      // A throwing executor rejects the promise: open failures reach the caller as rejections.
      return new Promise<Handle>((resolve) => {
        resolve(this.#openCounted());
      });
    }
    return new Promise<Handle>((resolve, reject) => {
      this.#waiters.push({ resolve, reject });
    });
  }

  release(session: Handle): void {
    const waiter = this.#waiters.shift();
    if (waiter !== undefined) waiter.resolve(session);
    else this.#idle.push(session);
  }

  /**
   * Swaps a session for a fresh one, opening the new one first so the process never
   * drops to zero sessions with the token (which would log it out). Throws if no new
   * session can be opened; the old one is closed either way.
   */
  replace(session: Handle): Handle {
    let fresh: Handle;
    try {
      fresh = this.#open();
    } catch (err) {
      this.#close(session);
      this.#count -= 1;
      this.#serveWaiter();
      throw err;
    }
    this.#close(session);
    return fresh;
  }

  /** Closes the idle sessions. Called once nothing is in flight. */
  closeAll(): void {
    for (const session of this.#idle.splice(0)) this.#close(session);
    this.#count = 0;
  }

  #openCounted(): Handle {
    this.#count += 1;
    try {
      return this.#open();
    } catch (err) {
      this.#count -= 1;
      throw err;
    }
  }

  #serveWaiter(): void {
    if (this.#count >= this.#max) return;
    const waiter = this.#waiters.shift();
    if (waiter === undefined) return;
    try {
      waiter.resolve(this.#openCounted());
    } catch (err) {
      waiter.reject(err);
    }
  }
}

// ---------------------------------------------------------------------------------------
// Mechanisms.
// ---------------------------------------------------------------------------------------

interface CallState {
  readonly lib: PKCS11;
  /** Set when a call leaves the session in a state we do not trust (it is then replaced). */
  dirty: boolean;
}

interface BlobMechanism {
  seal(m: CallState, session: Handle, key: Handle, plaintext: Buffer, aad: Buffer): Promise<Buffer>;
  /** Throws KmsError('bad_ciphertext') before calling the token if the blob is malformed. */
  open(m: CallState, session: Handle, key: Handle, blob: Buffer, aad: Buffer): Promise<Buffer>;
}

function malformed(what: string): KmsError {
  return new KmsError('bad_ciphertext', `wrapped key is malformed: ${what}`);
}

/** A copy in its own memory (not Node's shared pool slab), so the caller can wipe it for good. */
function ownedCopy(bytes: Buffer): Buffer {
  const copy = Buffer.alloc(bytes.length);
  bytes.copy(copy);
  return copy;
}

const GCM_FORMAT = 0x01;
const GCM_IV_BYTES = 12;
const GCM_TAG_BYTES = 16;

function gcmMechanism(iv: Buffer, aad: Buffer): Mechanism {
  const parameter: GcmParams = {
    type: pkcs11js.CK_PARAMS_AES_GCM,
    iv,
    aad,
    ivBits: GCM_IV_BYTES * 8,
    tagBits: GCM_TAG_BYTES * 8,
  };
  return { mechanism: pkcs11js.CKM_AES_GCM, parameter };
}

/**
 * AES-GCM through C_EncryptInit/C_EncryptAsync. Random 96-bit IVs: NIST SP 800-38D §8.3
 * allows 2^32 encryptions per key this way, far beyond a master key's life of DEK wraps.
 */
const aesGcm: BlobMechanism = {
  async seal({ lib }, session, key, plaintext, aad) {
    const iv = randomBytes(GCM_IV_BYTES);
    lib.C_EncryptInit(session, gcmMechanism(iv, aad), key);
    const sealed = await lib.C_EncryptAsync(session, plaintext, Buffer.alloc(plaintext.length + GCM_TAG_BYTES));
    if (sealed.length !== plaintext.length + GCM_TAG_BYTES) {
      throw new KmsError('other', `PKCS#11 AES-GCM returned ${sealed.length} bytes, expected ${plaintext.length + GCM_TAG_BYTES}`);
    }
    const blob = Buffer.alloc(1 + GCM_IV_BYTES + sealed.length);
    blob[0] = GCM_FORMAT;
    iv.copy(blob, 1);
    sealed.copy(blob, 1 + GCM_IV_BYTES);
    return blob;
  },

  async open({ lib }, session, key, blob, aad) {
    if (blob.length < 1 + GCM_IV_BYTES + GCM_TAG_BYTES + 1) throw malformed(`${blob.length} bytes is too short for aes-gcm`);
    if (blob[0] !== GCM_FORMAT) throw malformed('not an aes-gcm blob');
    const iv = Buffer.from(blob.subarray(1, 1 + GCM_IV_BYTES));
    const sealed = blob.subarray(1 + GCM_IV_BYTES);
    lib.C_DecryptInit(session, gcmMechanism(iv, aad), key);
    // Some tokens (SoftHSM among them) want room for the tag in the output as well.
    const out = Buffer.alloc(sealed.length);
    try {
      const plaintext = await lib.C_DecryptAsync(session, sealed, out);
      if (plaintext.length !== sealed.length - GCM_TAG_BYTES) {
        throw new KmsError('bad_ciphertext', 'PKCS#11 AES-GCM returned a plaintext of unexpected length');
      }
      return ownedCopy(plaintext);
    } finally {
      out.fill(0);
    }
  },
};

/*
 * AES key wrap with padding (RFC 5649), through C_WrapKey/C_UnwrapKey.
 *
 * SoftHSM 2.6.1 offers CKM_AES_KEY_WRAP_PAD only as a wrapping mechanism: C_EncryptInit
 * and C_DecryptInit with it answer CKR_MECHANISM_INVALID (observed with 2.6.1; C_WrapKey
 * and C_UnwrapKey accept it). So the bytes to wrap become a short-lived session object
 * (CKK_GENERIC_SECRET, extractable, not
 * sensitive, private, CKA_TOKEN false), wrapped, and destroyed; unwrapping creates such an
 * object, reads its CKA_VALUE and destroys it. Session objects never outlive their session,
 * and a session whose clean-up failed is replaced.
 *
 * KWP has no associated data, so the aad is bound by wrapping plaintext ‖ SHA-256(aad)[0..16].
 * KWP's integrity check covers the suffix, so it cannot be changed without the master key.
 */
const KWP_FORMAT = 0x02;
const AAD_TAG_BYTES = 16;
const KWP_MECHANISM: Mechanism = { mechanism: pkcs11js.CKM_AES_KEY_WRAP_PAD };
const KWP_MIN_WRAPPED = 32; // 1 plaintext byte + 16 suffix bytes = 17 → padded 24 → + 8

function aadTag(aad: Buffer): Buffer {
  return createHash('sha256').update(aad).digest().subarray(0, AAD_TAG_BYTES);
}

function kwpWrappedLength(n: number): number {
  return n <= 8 ? 16 : Math.ceil(n / 8) * 8 + 8;
}

function transientSecretTemplate(value?: Buffer): Template {
  const template: Template = [
    { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_SECRET_KEY },
    { type: pkcs11js.CKA_KEY_TYPE, value: pkcs11js.CKK_GENERIC_SECRET },
    { type: pkcs11js.CKA_TOKEN, value: false },
    { type: pkcs11js.CKA_PRIVATE, value: true },
    { type: pkcs11js.CKA_SENSITIVE, value: false },
    { type: pkcs11js.CKA_EXTRACTABLE, value: true },
  ];
  if (value !== undefined) template.push({ type: pkcs11js.CKA_VALUE, value });
  return template;
}

function destroyTransient(m: CallState, session: Handle, object: Handle): void {
  try {
    m.lib.C_DestroyObject(session, object);
  } catch {
    m.dirty = true;
  }
}

const aesKeyWrapPad: BlobMechanism = {
  async seal(m, session, key, plaintext, aad) {
    const material = Buffer.alloc(plaintext.length + AAD_TAG_BYTES);
    let transient: Handle | undefined;
    try {
      plaintext.copy(material);
      aadTag(aad).copy(material, plaintext.length);
      transient = m.lib.C_CreateObject(session, transientSecretTemplate(material));
      material.fill(0);
      const wrapped = await m.lib.C_WrapKeyAsync(
        session,
        KWP_MECHANISM,
        key,
        transient,
        Buffer.alloc(kwpWrappedLength(material.length)),
      );
      const blob = Buffer.alloc(1 + wrapped.length);
      blob[0] = KWP_FORMAT;
      wrapped.copy(blob, 1);
      return blob;
    } finally {
      material.fill(0);
      if (transient !== undefined) destroyTransient(m, session, transient);
    }
  },

  async open(m, session, key, blob, aad) {
    const wrappedLength = blob.length - 1;
    if (wrappedLength < KWP_MIN_WRAPPED) throw malformed(`${blob.length} bytes is too short for aes-key-wrap-pad`);
    if (wrappedLength % 8 !== 0) throw malformed('aes-key-wrap-pad output is a multiple of 8 bytes');
    if (blob[0] !== KWP_FORMAT) throw malformed('not an aes-key-wrap-pad blob');
    let transient: Handle | undefined;
    try {
      transient = await m.lib.C_UnwrapKeyAsync(session, KWP_MECHANISM, key, blob.subarray(1), transientSecretTemplate());
      const value = m.lib.C_GetAttributeValue(session, transient, [{ type: pkcs11js.CKA_VALUE }])[0]?.value;
      if (value === undefined) throw new KmsError('other', 'PKCS#11 token returned no value for the unwrapped key');
      try {
        if (value.length <= AAD_TAG_BYTES) throw malformed('unwrapped value is too short');
        const keyLength = value.length - AAD_TAG_BYTES;
        if (!timingSafeEqual(value.subarray(keyLength), aadTag(aad))) {
          throw new KmsError('bad_ciphertext', 'wrapped key is bound to other associated data');
        }
        return ownedCopy(value.subarray(0, keyLength));
      } finally {
        value.fill(0);
      }
    } finally {
      if (transient !== undefined) destroyTransient(m, session, transient);
    }
  },
};

const MECHANISMS: Record<Pkcs11DriverOptions['mechanism'], BlobMechanism> = {
  'aes-gcm': aesGcm,
  'aes-key-wrap-pad': aesKeyWrapPad,
};

/** Fixed probe for the known-answer check; it is not a secret. */
const PROBE_KEY = Buffer.alloc(32, 0x5a);
const PROBE_AAD = Buffer.from('keyward|pkcs11|known-answer-probe');

// ---------------------------------------------------------------------------------------
// The driver.
// ---------------------------------------------------------------------------------------

type Recovery = 'session' | 'login' | 'key' | 'again';

/** The session an operation holds; undefined once it is lost and could not be replaced. */
interface Held {
  session: Handle | undefined;
}

/** The recoveries the spec allows for a failed call (kms-errors.md, PKCS#11). */
function recoveryFor(code: number): Recovery | undefined {
  // OPERATION_ACTIVE: a previous call left an operation open on this session.
  if (DEAD_SESSION_CODES.has(code) || code === CKR.OPERATION_ACTIVE) return 'session';
  if (code === CKR.USER_NOT_LOGGED_IN) return 'login';
  if (STALE_HANDLE_CODES.has(code)) return 'key';
  if (code === CKR.FUNCTION_FAILED) return 'again';
  return undefined;
}

interface DriverState {
  readonly options: Pkcs11DriverOptions;
  readonly entry: ModuleEntry;
  readonly slot: Handle;
  readonly token: TokenState;
  readonly logger: Logger;
}

class Pkcs11Driver implements KmsDriver {
  readonly provider = 'pkcs11' as const;

  readonly #options: Pkcs11DriverOptions;
  readonly #entry: ModuleEntry;
  readonly #lib: PKCS11;
  readonly #slot: Handle;
  readonly #token: TokenState;
  readonly #logger: Logger;
  readonly #mechanism: BlobMechanism;
  readonly #pool: SessionPool;
  #key: Handle | undefined;
  #closed = false;
  #closing: Promise<void> | undefined;
  #inFlight = 0;
  #drained: (() => void) | undefined;

  constructor(state: DriverState) {
    this.#options = state.options;
    this.#entry = state.entry;
    this.#lib = state.entry.lib;
    this.#slot = state.slot;
    this.#token = state.token;
    this.#logger = state.logger;
    this.#mechanism = MECHANISMS[state.options.mechanism];
    this.#pool = new SessionPool(
      state.options.sessions,
      () => this.#openSession(),
      (session) => this.#closeSession(session),
    );
  }

  /** Opens the first session, logs in (verifying the PIN) and finds the key. */
  start(): void {
    const session = this.#openSessionRaw();
    try {
      this.#login(session);
      this.#key = this.#lookUpKey(session, undefined);
    } catch (err) {
      this.#closeSession(session);
      throw err instanceof KmsError ? err : this.#classify(err, 'find');
    }
    this.#pool.seed(session);
  }

  wrap(plaintext: Buffer, aad: Buffer): Promise<Buffer> {
    if (plaintext.length === 0) return Promise.reject(new KmsError('other', 'refusing to wrap an empty key'));
    return this.#run('wrap', (m, session, key) => this.#mechanism.seal(m, session, key, plaintext, aad));
  }

  unwrap(ciphertext: Buffer, aad: Buffer): Promise<Buffer> {
    return this.#run('unwrap', (m, session, key) => this.#mechanism.open(m, session, key, ciphertext, aad));
  }

  close(): Promise<void> {
    this.#closing ??= this.#shutdown();
    return this.#closing;
  }

  async #shutdown(): Promise<void> {
    this.#closed = true;
    if (this.#inFlight > 0) {
      await new Promise<void>((resolve) => {
        this.#drained = resolve;
      });
    }
    this.#pool.closeAll();
    this.#key = undefined;
    releaseModule(this.#entry, this.#logger);
    this.#logger.debug('PKCS#11 driver closed');
  }

  async #run(
    operation: 'wrap' | 'unwrap',
    body: (m: CallState, session: Handle, key: Handle) => Promise<Buffer>,
  ): Promise<Buffer> {
    if (this.#closed) throw new KmsError('unreachable', 'PKCS#11 driver is closed');
    this.#inFlight += 1;
    try {
      let session: Handle;
      try {
        session = await this.#pool.acquire();
      } catch (err) {
        throw this.#classify(err, operation);
      }
      const m: CallState = { lib: this.#lib, dirty: false };
      const held: Held = { session };
      try {
        return await this.#attempt(operation, m, held, body);
      } finally {
        // Undefined when a lost session could not be replaced: the pool has forgotten it.
        if (held.session !== undefined) {
          if (m.dirty) {
            this.#logger.warn({ operation }, 'PKCS#11 session left in an unknown state; replacing it');
            this.#replaceAndRelease(held.session);
          } else {
            this.#pool.release(held.session);
          }
        }
      }
    } finally {
      this.#inFlight -= 1;
      if (this.#inFlight === 0 && this.#drained !== undefined) this.#drained();
    }
  }

  /** One operation with the spec's recoveries, each at most once. */
  async #attempt(
    operation: 'wrap' | 'unwrap',
    m: CallState,
    held: Held,
    body: (m: CallState, session: Handle, key: Handle) => Promise<Buffer>,
  ): Promise<Buffer> {
    const tried = new Set<Recovery>();
    let lastError: unknown;
    let session = held.session as Handle;
    for (;;) {
      let key: Handle | undefined;
      try {
        key = this.#key ?? (this.#key = this.#lookUpKey(session, lastError));
        return await body(m, session, key);
      } catch (err) {
        if (err instanceof KmsError) throw err;
        const code = pkcs11Code(err);
        if (code === undefined) {
          m.dirty = true;
          throw this.#classify(err, operation);
        }
        lastError = err;
        const recovery = recoveryFor(code);
        if (recovery !== undefined && !tried.has(recovery)) {
          tried.add(recovery);
          session = this.#recover(recovery, held, key, code);
          continue;
        }
        if (code === CKR.GENERAL_ERROR && operation === 'unwrap' && key !== undefined) {
          throw await this.#judgeGeneralError(m, session, key, err);
        }
        if (code === CKR.OPERATION_ACTIVE || code === CKR.BUFFER_TOO_SMALL) m.dirty = true;
        throw this.#classify(err, operation);
      }
    }
  }

  /** Applies a recovery and returns the session to continue on. */
  #recover(recovery: Recovery, held: Held, key: Handle | undefined, code: number): Handle {
    const ckr = ckrName(code);
    const session = held.session as Handle;
    switch (recovery) {
      case 'session':
        this.#logger.warn({ ckr }, 'PKCS#11 session lost; replacing it');
        held.session = undefined;
        try {
          held.session = this.#pool.replace(session);
        } catch (err) {
          // The pool has closed and forgotten the old session: nothing to give back.
          throw err instanceof KmsError ? err : this.#classify(err, 'session');
        }
        return held.session;
      case 'login':
        this.#logger.warn({ ckr }, 'PKCS#11 token logged out; logging in again');
        this.#token.pinDigest = undefined;
        this.#login(session);
        return session;
      case 'key':
        // Another call may already have found the key again; only drop the handle we used.
        if (key !== undefined && this.#key === key) {
          this.#logger.warn({ ckr }, 'PKCS#11 key handle went stale; looking the key up again');
          this.#key = undefined;
        }
        return session;
      case 'again':
        this.#logger.warn({ ckr }, 'PKCS#11 call failed; retrying once');
        return session;
    }
  }

  /**
   * SoftHSM answers a wrong AES-GCM tag or AAD, and a corrupt AES-KWP blob, with
   * CKR_GENERAL_ERROR rather than CKR_ENCRYPTED_DATA_INVALID / CKR_WRAPPED_KEY_INVALID
   * (kms-errors.md, PKCS#11; https://github.com/softhsm/SoftHSMv2/issues/689, fixed by
   * PR #690 only after 2.6.1). The spec gives that code to "some horrible, unrecoverable
   * error", so it is bad_ciphertext only if the key still round-trips a fixed probe on
   * this session; otherwise the token is treated as unreachable.
   */
  async #judgeGeneralError(m: CallState, session: Handle, key: Handle, err: unknown): Promise<KmsError> {
    const { tokenLabel, keyLabel } = this.#options;
    try {
      const blob = await this.#mechanism.seal(m, session, key, PROBE_KEY, PROBE_AAD);
      const back = await this.#mechanism.open(m, session, key, blob, PROBE_AAD);
      const same = back.equals(PROBE_KEY);
      back.fill(0);
      if (!same) throw new Error('known-answer probe returned other bytes');
    } catch (probeError) {
      this.#logger.error(
        { ckr: ckrOf(probeError) },
        'PKCS#11 key failed a known-answer check after CKR_GENERAL_ERROR',
      );
      return new KmsError(
        'unreachable',
        `PKCS#11 token '${tokenLabel}' failed while unwrapping and key '${keyLabel}' fails a known-answer check (CKR_GENERAL_ERROR)`,
        { cause: err },
      );
    }
    return new KmsError(
      'bad_ciphertext',
      `PKCS#11 token '${tokenLabel}' could not unwrap with key '${keyLabel}': corrupt or made under another key or associated data (CKR_GENERAL_ERROR)`,
      { cause: err },
    );
  }

  #replaceAndRelease(session: Handle): void {
    let fresh: Handle;
    try {
      fresh = this.#pool.replace(session);
    } catch (err) {
      this.#logger.warn({ ckr: ckrOf(err) }, 'PKCS#11 could not open a replacement session');
      return;
    }
    this.#pool.release(fresh);
  }

  #lookUpKey(session: Handle, cause: unknown): Handle {
    const { tokenLabel, keyLabel } = this.#options;
    // Private objects are invisible while logged out: make sure "not found" means not there.
    this.#ensureLoggedIn(session);
    const lib = this.#lib;
    lib.C_FindObjectsInit(session, [
      { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_SECRET_KEY },
      { type: pkcs11js.CKA_LABEL, value: keyLabel },
    ]);
    let found: Handle[];
    try {
      found = lib.C_FindObjects(session, 2);
    } finally {
      try {
        lib.C_FindObjectsFinal(session);
      } catch {
        // The search ends with the session anyway.
      }
    }
    const [handle] = found;
    if (handle === undefined) {
      this.#logger.warn('PKCS#11 key not found on the token');
      throw new KmsError('key_unusable', `key '${keyLabel}' not found on token '${tokenLabel}'`, { cause });
    }
    if (found.length > 1) {
      throw new KmsError(
        'key_unusable',
        `key label '${keyLabel}' is ambiguous on token '${tokenLabel}': more than one secret key carries it`,
        { cause },
      );
    }
    return handle;
  }

  /** C_Login; CKR_USER_ALREADY_LOGGED_IN is success, but only with the PIN that logged in. */
  #login(session: Handle): void {
    const digest = pinDigest(this.#options.pin);
    try {
      this.#lib.C_Login(session, pkcs11js.CKU_USER, this.#options.pin);
    } catch (err) {
      if (pkcs11Code(err) !== CKR.USER_ALREADY_LOGGED_IN) throw this.#classify(err, 'login');
      // Login is shared by every session of the process, so a second driver with a wrong
      // PIN would get in on the first one's login. Refuse it if we know which PIN that was
      // (a PIN changed on the token since that login is refused too: the safe side).
      const known = this.#token.pinDigest;
      if (known !== undefined && !timingSafeEqual(known, digest)) {
        throw new KmsError(
          'refused',
          `PKCS#11 token '${this.#options.tokenLabel}' is logged in with another PIN; this PIN was not accepted (CKR_USER_ALREADY_LOGGED_IN)`,
          { cause: err },
        );
      }
      return;
    }
    // Only a PIN the token itself accepted becomes the reference.
    this.#token.pinDigest = digest;
  }

  #ensureLoggedIn(session: Handle): void {
    const { state } = this.#lib.C_GetSessionInfo(session);
    if (state === CKS_RW_USER_FUNCTIONS || state === CKS_RO_USER_FUNCTIONS) return;
    this.#token.pinDigest = undefined;
    this.#login(session);
  }

  #openSessionRaw(): Handle {
    let session: Handle;
    try {
      session = this.#lib.C_OpenSession(this.#slot, pkcs11js.CKF_SERIAL_SESSION | pkcs11js.CKF_RW_SESSION);
    } catch (err) {
      throw this.#classify(err, 'session');
    }
    this.#token.openSessions += 1;
    return session;
  }

  /** A new pool session, logged in (the login may have ended with the last session). */
  #openSession(): Handle {
    const session = this.#openSessionRaw();
    try {
      this.#ensureLoggedIn(session);
    } catch (err) {
      this.#closeSession(session);
      throw err instanceof KmsError ? err : this.#classify(err, 'login');
    }
    return session;
  }

  #closeSession(session: Handle): void {
    try {
      this.#lib.C_CloseSession(session);
    } catch {
      // Already closed by the token or by C_CloseAllSessions: nothing left to release.
    }
    this.#token.openSessions -= 1;
    if (this.#token.openSessions <= 0) {
      // The token logs the application out with its last session.
      this.#token.openSessions = 0;
      this.#token.pinDigest = undefined;
    }
  }

  #classify(err: unknown, operation: Pkcs11Operation): KmsError {
    const context: Pkcs11ErrorContext = {
      operation,
      module: this.#options.module,
      tokenLabel: this.#options.tokenLabel,
      keyLabel: this.#options.keyLabel,
    };
    return classifyPkcs11Error(err, context);
  }
}

function findSlot(lib: PKCS11, options: Pkcs11DriverOptions): Handle {
  const wanted = options.tokenLabel.trim();
  let slots: Handle[];
  try {
    slots = lib.C_GetSlotList(true);
  } catch (err) {
    throw classifyPkcs11Error(err, { operation: 'init', module: options.module, tokenLabel: options.tokenLabel });
  }
  const matches: Handle[] = [];
  let unavailable: KmsError | undefined;
  for (const slot of slots) {
    try {
      // Token labels are blank-padded to 32 bytes.
      if (lib.C_GetTokenInfo(slot).label.trim() === wanted) matches.push(slot);
    } catch (err) {
      const classified = classifyPkcs11Error(err, { operation: 'init', module: options.module });
      if (classified.kind === 'unreachable') unavailable ??= classified;
    }
  }
  const [slot] = matches;
  if (slot === undefined) {
    // A slot we could not read might hold the token: never call it missing then (rule 3).
    if (unavailable !== undefined) throw unavailable;
    throw new KmsError('key_unusable', `PKCS#11 token '${wanted}' not found in module '${options.module}'`);
  }
  if (matches.length > 1) {
    throw new KmsError(
      'key_unusable',
      `PKCS#11 token label '${wanted}' is ambiguous in module '${options.module}': ${matches.length} tokens carry it`,
    );
  }
  return slot;
}

/**
 * Loads the module (once per process), finds the token, logs in and finds the key.
 * Rejects with a KmsError: 'key_unusable' for a missing token or key, 'refused' for a
 * wrong PIN. The PKCS#11 calls made here are synchronous: pkcs11js has no async variant
 * of C_OpenSession, C_Login or C_FindObjects.
 */
export function createPkcs11Driver(options: Pkcs11DriverOptions, ctx: DriverContext): Promise<KmsDriver> {
  return new Promise<KmsDriver>((resolve) => {
    resolve(startDriver(options, ctx));
  });
}

function startDriver(options: Pkcs11DriverOptions, ctx: DriverContext): KmsDriver {
  if (!Number.isInteger(options.sessions) || options.sessions < 1) {
    throw new RangeError(`PKCS#11 sessions must be a positive integer, got ${options.sessions}`);
  }
  if (!Object.hasOwn(MECHANISMS, options.mechanism)) {
    throw new RangeError(`unknown PKCS#11 mechanism '${String(options.mechanism)}'`);
  }
  const logger = ctx.logger.child({
    provider: 'pkcs11',
    token: options.tokenLabel,
    key: options.keyLabel,
    mechanism: options.mechanism,
  });
  const entry = acquireModule(options.module, logger);
  try {
    const slot = findSlot(entry.lib, options);
    const driver = new Pkcs11Driver({ options, entry, slot, token: tokenState(entry, slot), logger });
    driver.start();
    logger.debug('PKCS#11 driver ready');
    return driver;
  } catch (err) {
    releaseModule(entry, logger);
    throw err;
  }
}
