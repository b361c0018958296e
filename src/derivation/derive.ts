/**
 * Deterministic key derivation without state (`key/derive-with-secret-path`). Each
 * tenant has derivation secrets (32 random bytes each), kept in the tenants file only
 * KMS-wrapped and unwrapped through the tenant's KMS when first needed, then cached and
 * wiped under the lease rules (LeaseManager with the secret purpose).
 *
 * The derivation is fixed forever (docs/derivation.md, vectors in test/derivation):
 *   key = HMAC-H(secret, "keyward:derive:v1\0" ‖ lp(secretType) ‖ lp(secretPath) ‖ lp(derivationPath))
 * where lp(s) = u32be(byte length of s in UTF-8) ‖ s, and H is SHA-512 (64-byte keys) or
 * SHA-256 (32-byte keys) as the request's derivationType says.
 */
import { createHmac, randomFillSync } from 'node:crypto';
import { readFile, writeFile, mkdir, rename, rm } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { Logger } from 'pino';
import { Errors, KeywardError, isKeywardError } from '../errors.js';
import { secretAad } from '../envelope/aad.js';
import { edekEntry, edekToBase64 } from '../envelope/edek.js';
import { auditKms, kmsErrorToKeyward, type AuditRecorder, type RequestMetadata } from '../envelope/keys.js';
import { auditCaller, type AuditRecord } from '../audit/event.js';
import type { KmsDriver } from '../kms/driver.js';
import { KmsError, isKmsError } from '../kms/errors.js';
import type { LeaseManager } from '../leasing/manager.js';
import type { DerivationSecret, KmsConfig, LeasePolicy, TenantDirectory } from '../tenants/directory.js';

export const DERIVATION_TYPES = ['sha512', 'sha256'] as const;
export type DerivationType = (typeof DERIVATION_TYPES)[number];
export const SECRET_TYPES = ['deterministic', 'search', 'vector'] as const;

const LABEL = Buffer.from('keyward:derive:v1\0', 'latin1');
const SECRET_BYTES = 32;

/** How derivation secrets are cached when their KMS config has no leasing policy of its own. */
export const DEFAULT_SECRET_POLICY: LeasePolicy = Object.freeze({
  refreshIntervalMs: 5 * 60_000,
  maxOutageMs: 60 * 60_000,
  rotateAfterMs: 60 * 60_000,
  idleAfterMs: 60 * 60_000,
  maxCachedLeases: 64,
});

function lengthPrefixed(text: string): Buffer {
  const bytes = Buffer.from(text, 'utf8');
  const out = Buffer.alloc(4 + bytes.length);
  out.writeUInt32BE(bytes.length, 0);
  bytes.copy(out, 4);
  return out;
}

/** The derivation itself; the caller wipes the result. */
export function deriveKey(secret: Buffer, type: DerivationType, secretType: string, secretPath: string, derivationPath: string): Buffer {
  return createHmac(type, secret)
    .update(LABEL)
    .update(lengthPrefixed(secretType))
    .update(lengthPrefixed(secretPath))
    .update(lengthPrefixed(derivationPath))
    .digest();
}

/** Makes a new secret and has the config's KMS wrap it; returns the base64 for the tenants file. */
export async function wrapNewSecret(config: KmsConfig, secretId: number, driver: KmsDriver): Promise<string> {
  const secret = randomFillSync(Buffer.alloc(SECRET_BYTES));
  try {
    const blob = await driver.wrap(secret, secretAad(config.tenantId, config.id, secretId));
    return edekToBase64([edekEntry({ encryptedDekData: blob, kmsConfigId: config.id, tenantId: config.tenantId })]);
  } finally {
    secret.fill(0);
  }
}

async function wrappedBytes(secret: DerivationSecret): Promise<Buffer> {
  let text: string;
  if ('inline' in secret.wrapped) text = secret.wrapped.inline;
  else {
    try {
      text = (await readFile(secret.wrapped.file, 'utf8')).trim();
    } catch (err) {
      throw new KmsError('key_unusable', `derivation secret ${secret.id}: its file cannot be read (${(err as NodeJS.ErrnoException).code ?? 'error'})`, { cause: err });
    }
  }
  return Buffer.from(text, 'base64');
}

/**
 * Development only: creates the secrets marked `createIfMissing` (local KMS) whose file
 * does not exist yet, so that `npm start` serves deterministic encryption out of the box.
 */
export async function createMissingDevSecrets(
  directory: TenantDirectory,
  pool: { driverFor(config: KmsConfig): Promise<KmsDriver> },
  logger: Logger,
): Promise<void> {
  for (const config of directory.configs()) {
    const tenant = directory.tenant(config.tenantId);
    for (const secret of tenant?.secrets ?? []) {
      if (secret.kmsConfigId !== config.id || 'inline' in secret.wrapped || !secret.wrapped.create) continue;
      const file = secret.wrapped.file;
      try {
        await readFile(file);
        continue;
      } catch {
        // Missing: create it below.
      }
      const wrapped = await wrapNewSecret(config, secret.id, await pool.driverFor(config));
      await mkdir(dirname(file), { recursive: true, mode: 0o700 });
      const temp = `${file}.${process.pid}.tmp`;
      await writeFile(temp, `${wrapped}\n`, { mode: 0o600 });
      await rename(temp, file).catch(async (err: unknown) => {
        await rm(temp, { force: true });
        throw err;
      });
      logger.warn({ tenantId: config.tenantId, secretId: secret.id, file }, 'development: created a derivation secret (wrapped by the local KMS)');
    }
  }
}

export interface DeriveRequest {
  readonly paths: Readonly<Record<string, readonly string[]>>;
  readonly derivationType: string;
  readonly secretType: string;
}

export interface DerivedKey {
  readonly derivedKey: string;
  readonly tenantSecretId: number;
  readonly current: boolean;
}

export interface DeriveResult {
  readonly hasPrimaryConfig: boolean;
  readonly derivedKeys: Record<string, Record<string, DerivedKey[]>>;
}

export class DerivationService {
  readonly #source: { readonly directory: TenantDirectory };
  readonly #secrets: Pick<LeaseManager, 'leaseFor'>;
  readonly #audit: AuditRecorder;

  constructor(options: { source: { readonly directory: TenantDirectory }; secrets: Pick<LeaseManager, 'leaseFor'>; audit: AuditRecorder }) {
    this.#source = options.source;
    this.#secrets = options.secrets;
    this.#audit = options.audit;
  }

  /**
   * One audit event per request: a failure event when it fails; a success event once the
   * secrets are unwrapped and before anything is derived, so a tenant whose audit policy
   * is `required` gets AUDIT_UNAVAILABLE rather than unaudited keys.
   */
  async derive(tenantId: string, request: DeriveRequest, meta: RequestMetadata): Promise<DeriveResult> {
    const used: { config?: KmsConfig; secretIds: number[] } = { secretIds: [] };
    let audited = false;
    const record = (failure?: KeywardError): AuditRecord => ({
      tenantId,
      operation: 'derive',
      outcome: failure ? 'failure' : 'success',
      ...(failure ? { error: { code: failure.code, name: failure.spec.name, message: failure.message } } : {}),
      ...(used.config ? { kms: auditKms(used.config, 'direct') } : {}),
      derive: {
        secretType: String(request.secretType).slice(0, 64),
        derivationType: String(request.derivationType).slice(0, 64),
        secretIds: used.secretIds,
        derivations: Object.values(request.paths).reduce((n, paths) => n + paths.length, 0),
      },
      caller: auditCaller(meta),
    });
    try {
      return await this.#derive(tenantId, request, used, () => {
        audited = true;
        this.#audit.record([record()], { mustQueue: true });
      });
    } catch (err) {
      if (!audited && isKeywardError(err)) this.#audit.record([record(err)], { mustQueue: false });
      throw err;
    }
  }

  async #derive(tenantId: string, request: DeriveRequest, used: { config?: KmsConfig; secretIds: number[] }, audit: () => void): Promise<DeriveResult> {
    const tenant = this.#source.directory.tenant(tenantId);
    if (!tenant) {
      throw new KeywardError(Errors.UNKNOWN_TENANT_OR_NO_ACTIVE_KMS_CONFIGURATIONS, `No configurations available for the provided tenant ${tenantId}`);
    }
    if (!(DERIVATION_TYPES as readonly string[]).includes(request.derivationType)) {
      throw new KeywardError(Errors.INVALID_REQUEST_BODY, `derivationType ${request.derivationType} is not supported (${DERIVATION_TYPES.join(', ')})`);
    }
    if (!(SECRET_TYPES as readonly string[]).includes(request.secretType)) {
      throw new KeywardError(Errors.INVALID_REQUEST_BODY, `secretType must be one of ${SECRET_TYPES.join(', ')}`);
    }
    const live = tenant.secrets.filter((s) => s.type === request.secretType && s.state !== 'archived');
    if (!live.some((s) => s.state === 'current')) {
      throw new KeywardError(
        Errors.UNKNOWN_TENANT_OR_NO_ACTIVE_KMS_CONFIGURATIONS,
        `tenant ${tenantId} has no current derivation secret of type ${request.secretType}`,
      );
    }
    const unwrapped: Array<{ secret: DerivationSecret; key: Buffer; release: () => void }> = [];
    try {
      for (const secret of live) {
        used.secretIds.push(secret.id);
        if (secret.state === 'current' || !used.config) used.config = tenant.configs.find((c) => c.id === secret.kmsConfigId);
        unwrapped.push({ secret, ...(await this.#secret(tenantId, secret)) });
      }
      audit();
      // Maps built with Object.fromEntries: own properties whatever the path (even "__proto__").
      const derivedKeys: Record<string, Record<string, DerivedKey[]>> = Object.fromEntries(
        Object.entries(request.paths).map(([secretPath, derivationPaths]) => [
          secretPath,
          Object.fromEntries(
            derivationPaths.map((derivationPath) => [
              derivationPath,
              unwrapped.map(({ secret, key }) => {
                const derived = deriveKey(key, request.derivationType as DerivationType, request.secretType, secretPath, derivationPath);
                const out = { derivedKey: derived.toString('base64'), tenantSecretId: secret.id, current: secret.state === 'current' };
                derived.fill(0);
                return out;
              }),
            ]),
          ),
        ]),
      );
      return { hasPrimaryConfig: tenant.primary !== undefined, derivedKeys };
    } finally {
      for (const u of unwrapped) u.release();
    }
  }

  async #secret(tenantId: string, secret: DerivationSecret): Promise<{ key: Buffer; release: () => void }> {
    const config = this.#source.directory.tenant(tenantId)?.configs.find((c) => c.id === secret.kmsConfigId);
    if (!config) throw new KeywardError(Errors.UNKNOWN_TENANT_OR_NO_ACTIVE_KMS_CONFIGURATIONS, `derivation secret ${secret.id} names a missing KMS config`);
    if (config.status === 'disabled') {
      throw new KeywardError(Errors.KMS_CONFIGURATION_DISABLED, `KMS config ${config.id} of tenant ${tenantId}, which wraps derivation secret ${secret.id}, is disabled`);
    }
    try {
      for (let attempt = 0; attempt < 2; attempt++) {
        const lease = await this.#secrets.leaseFor(config, secret.id, await wrappedBytes(secret));
        if (lease.wiped) continue;
        // Copy under the lease's current bytes: a wipe during derivation must not zero a key in use.
        const key = Buffer.from(lease.key);
        if (lease.transient) lease.key.fill(0);
        return { key, release: () => key.fill(0) };
      }
      throw new KmsError('unreachable', 'the derivation secret was wiped while in use; retry');
    } catch (err) {
      if (isKeywardError(err)) throw err;
      // A secret that does not unwrap is a tenants-file problem (wrong key, id or tenant), not a caller's bad EDEK.
      if (isKmsError(err) && err.kind === 'bad_ciphertext') {
        throw new KeywardError(Errors.KMS_CONFIGURATION_INVALID, `derivation secret ${secret.id} of tenant ${tenantId} does not unwrap under KMS config ${config.id}: ${err.message}`, { cause: err });
      }
      if (isKmsError(err)) throw kmsErrorToKeyward(err, config, 'unwrap');
      throw err;
    }
  }
}
