/**
 * The `local` software KMS: AES-256-GCM under a master key kept in a plain file.
 * For development and the built-in dev config only — the key sits on disk beside the
 * service, so it gives none of the guarantees of a tenant-controlled KMS.
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { link, mkdir, open, readFile, rm, stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { DriverContext, KmsDriver } from '../driver.js';
import { KmsError } from '../errors.js';

const FORMAT_V1 = 0x01;
const IV_BYTES = 12;
const TAG_BYTES = 16;
const KEY_BYTES = 32;

export interface LocalDriverOptions {
  /** Absolute path of the 32-byte master key file; created (mode 0600) when missing. */
  readonly keyFile: string;
}

export async function createLocalDriver(options: LocalDriverOptions, ctx: DriverContext): Promise<KmsDriver> {
  const key = await loadOrCreateKey(options.keyFile, ctx);
  ctx.logger.warn(
    { provider: 'local', keyFile: options.keyFile },
    'local KMS driver in use: the master key is a plain file on this machine. For development only, never production.',
  );
  return new LocalDriver(key);
}

class LocalDriver implements KmsDriver {
  readonly provider = 'local' as const;
  #key: Buffer | undefined;

  constructor(key: Buffer) {
    this.#key = key;
  }

  async wrap(plaintext: Buffer, aad: Buffer): Promise<Buffer> {
    const key = this.#live();
    const iv = randomBytes(IV_BYTES);
    const cipher = createCipheriv('aes-256-gcm', key, iv, { authTagLength: TAG_BYTES });
    cipher.setAAD(aad);
    const body = Buffer.concat([cipher.update(plaintext), cipher.final()]);
    return Buffer.concat([Buffer.of(FORMAT_V1), iv, body, cipher.getAuthTag()]);
  }

  async unwrap(blob: Buffer, aad: Buffer): Promise<Buffer> {
    const key = this.#live();
    if (blob.length < 1 + IV_BYTES + TAG_BYTES + 1 || blob[0] !== FORMAT_V1) {
      throw new KmsError('bad_ciphertext', 'the wrapped key is not a local KMS ciphertext');
    }
    const iv = blob.subarray(1, 1 + IV_BYTES);
    const tag = blob.subarray(blob.length - TAG_BYTES);
    const body = blob.subarray(1 + IV_BYTES, blob.length - TAG_BYTES);
    const decipher = createDecipheriv('aes-256-gcm', key, iv, { authTagLength: TAG_BYTES });
    decipher.setAAD(aad);
    decipher.setAuthTag(tag);
    const head = decipher.update(body);
    try {
      const tail = decipher.final();
      const plain = Buffer.concat([head, tail]);
      head.fill(0);
      return plain;
    } catch (err) {
      head.fill(0);
      throw new KmsError('bad_ciphertext', 'the wrapped key does not authenticate under this master key and tenant', { cause: err });
    }
  }

  async close(): Promise<void> {
    this.#key?.fill(0);
    this.#key = undefined;
  }

  #live(): Buffer {
    if (!this.#key) throw new KmsError('unreachable', 'the local KMS driver is closed');
    return this.#key;
  }
}

/**
 * Writes a new key to a private temporary file and `link`s it into place: link fails
 * if the name exists, so two processes starting together agree on one key and neither
 * ever reads a half-written file. Refuses a key file that others can read, like ssh.
 */
async function loadOrCreateKey(keyFile: string, ctx: DriverContext): Promise<Buffer> {
  const fail = (what: string, err: unknown): KmsError =>
    new KmsError('key_unusable', `local KMS key file ${keyFile} ${what} (${(err as NodeJS.ErrnoException).code ?? 'error'})`, { cause: err });
  try {
    await stat(keyFile);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw fail('cannot be read', err);
    const temp = `${keyFile}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`;
    const key = randomBytes(KEY_BYTES);
    try {
      await mkdir(dirname(keyFile), { recursive: true, mode: 0o700 });
      const handle = await open(temp, 'wx', 0o600);
      try {
        await handle.writeFile(key);
        await handle.sync();
      } finally {
        await handle.close();
      }
      await link(temp, keyFile);
      ctx.logger.warn({ provider: 'local', keyFile }, 'local KMS driver: created a new master key file');
      return key;
    } catch (createErr) {
      key.fill(0);
      if ((createErr as NodeJS.ErrnoException).code !== 'EEXIST') throw fail('cannot be created', createErr);
    } finally {
      await rm(temp, { force: true });
    }
  }
  let key: Buffer;
  try {
    const info = await stat(keyFile);
    if ((info.mode & 0o077) !== 0) {
      throw new KmsError('key_unusable', `local KMS key file ${keyFile} is readable by group or others; chmod 600 it`);
    }
    key = await readFile(keyFile);
  } catch (err) {
    if (err instanceof KmsError) throw err;
    throw fail('cannot be read', err);
  }
  if (key.length !== KEY_BYTES) {
    key.fill(0);
    throw new KmsError('key_unusable', `local KMS key file ${keyFile} does not hold a ${KEY_BYTES}-byte key`);
  }
  return key;
}
