/**
 * The key operations both HTTP faces call: generate, wrap, unwrap, rewrap, and their
 * batch forms. Owns the rules of DESIGN.md: wraps go to the tenant's primary config;
 * unwraps accept only the tenant's own entries, refuse disabled configs, and try the
 * remaining entries in order (primary first) so one KMS outage need not fail a read.
 */
import { randomFillSync } from 'node:crypto';
import type { Logger } from 'pino';
import { Errors, KeywardError, isKeywardError } from '../errors.js';
import type { KmsDriver } from '../kms/driver.js';
import { KmsError, isKmsError } from '../kms/errors.js';
import { providerMessage } from '../kms/redact.js';
import type { KmsConfig, Tenant, TenantDirectory } from '../tenants/directory.js';
import { isLeased, type Lease, type LeaseManager } from '../leasing/manager.js';
import { openDek, sealDek } from '../leasing/seal.js';
import { edekAad, leasedDekAad } from './aad.js';
import { mapLimit } from './concurrency.js';
import { auditCaller, type AuditKms, type AuditOperation, type AuditRecord } from '../audit/event.js';
import { EdekFormatError, edekEntry, edekFromBase64, edekToBase64, type EncryptedDek } from './edek.js';

export const DEK_BYTES = 32;
const BATCH_CONCURRENCY = 8;

/** Who asks, and why: carried into logs now and audit events later. */
export interface RequestMetadata {
  readonly requestingId: string;
  readonly dataLabel?: string | undefined;
  readonly sourceIp?: string | undefined;
  readonly objectId?: string | undefined;
  readonly requestId?: string | undefined;
  readonly custom?: Readonly<Record<string, string>> | undefined;
}

/** What the key service needs of the runtime: the current tenants, their drivers and leases. */
export interface KeySource {
  readonly directory: TenantDirectory;
  readonly pool: { driverFor(config: KmsConfig): Promise<KmsDriver> };
  readonly leases: Pick<LeaseManager, 'currentLease' | 'leaseFor'>;
}

export interface GeneratedKey {
  /** The plaintext DEK: the caller sends it and then wipes it. */
  readonly dek: Buffer;
  readonly edek: string;
}

/** Where audit records go (the AuditLog); `mustQueue` may refuse the operation (AUDIT_UNAVAILABLE). */
export interface AuditRecorder {
  record(records: readonly AuditRecord[], options: { mustQueue: boolean }): void;
}

/** What an operation touched, noted as it runs, for its audit record. */
interface Trace {
  config?: KmsConfig;
  mode?: 'direct' | 'leased';
  leasedKeyId?: number;
}

type AuditExtras = Pick<AuditRecord, 'batch' | 'rekey'>;

export interface ItemFailure {
  readonly code: number;
  readonly message: string;
}

export interface BatchResult<T> {
  readonly keys: Map<string, T>;
  readonly failures: Map<string, ItemFailure>;
}

export class KeyService {
  readonly #source: KeySource;
  readonly #logger: Logger;
  /** Every operation is audited here; for leased ones this is the tenant's only record. */
  readonly #audit: AuditRecorder;

  constructor(options: { source: KeySource; logger: Logger; audit: AuditRecorder }) {
    this.#source = options.source;
    this.#logger = options.logger;
    this.#audit = options.audit;
  }

  async generate(tenantId: string, meta: RequestMetadata): Promise<GeneratedKey> {
    return this.#audited('generate', tenantId, meta, {}, wipeGenerated, (trace) => {
      const { tenant, primary } = this.#primaryOf(tenantId);
      return this.#generateUnder(tenant, primary, meta, trace);
    });
  }

  /** Wraps a caller-supplied DEK. The caller keeps ownership of `dek`. */
  async wrap(tenantId: string, dek: Buffer, meta: RequestMetadata): Promise<string> {
    return this.#audited('wrap', tenantId, meta, {}, noWipe, (trace) => {
      requireDek(dek);
      const { tenant, primary } = this.#primaryOf(tenantId);
      return this.#wrapUnder(tenant, primary, dek, meta, trace);
    });
  }

  /** Unwraps an EDEK of `tenantId`; the returned DEK is the caller's to wipe. */
  async unwrap(tenantId: string, edek: string, meta: RequestMetadata): Promise<Buffer> {
    return this.#audited('unwrap', tenantId, meta, {}, wipeBuffer, (trace) => this.#unwrapOne(tenantId, edek, meta, trace));
  }

  async #unwrapOne(tenantId: string, edek: string, meta: RequestMetadata, trace: Trace): Promise<Buffer> {
    const tenant = this.#tenant(tenantId);
    return this.#unwrapEntries(tenant, parseEdek(edek), meta, trace);
  }

  /**
   * Runs one operation and records its audit event: a failure event when it throws; a
   * success event otherwise, which — for a tenant whose policy is `required` — must be
   * queued or the result is wiped and the operation refused.
   */
  async #audited<T>(
    operation: AuditOperation,
    tenantId: string,
    meta: RequestMetadata,
    extras: AuditExtras,
    wipe: (value: T) => void,
    run: (trace: Trace) => Promise<T>,
    options: { successEvent?: boolean } = {},
  ): Promise<T> {
    const trace: Trace = {};
    let value: T;
    try {
      value = await run(trace);
    } catch (err) {
      const failure = isKeywardError(err) ? err : this.#unexpected(err);
      this.#audit.record([this.#record(operation, tenantId, meta, extras, trace, failure)], { mustQueue: false });
      throw failure;
    }
    if (options.successEvent === false) return value;
    try {
      this.#audit.record([this.#record(operation, tenantId, meta, extras, trace)], { mustQueue: true });
    } catch (err) {
      wipe(value);
      throw err;
    }
    return value;
  }

  #record(operation: AuditOperation, tenantId: string, meta: RequestMetadata, extras: AuditExtras, trace: Trace, failure?: KeywardError): AuditRecord {
    return {
      tenantId,
      operation,
      outcome: failure ? 'failure' : 'success',
      ...(failure ? { error: { code: failure.code, name: failure.spec.name, message: failure.message } } : {}),
      ...(trace.config ? { kms: auditKms(trace.config, trace.mode ?? 'direct', trace.leasedKeyId) } : {}),
      ...extras,
      caller: auditCaller(meta),
    };
  }

  /** Unwraps under `tenantId`, wraps under the primary config of `newTenantId` (or the same tenant). */
  async rewrap(tenantId: string, edek: string, newTenantId: string | undefined, meta: RequestMetadata): Promise<string> {
    const { dek, edek: moved } = await this.rekey(tenantId, edek, newTenantId ?? tenantId, meta);
    dek.fill(0);
    return moved;
  }

  /**
   * Unwraps under `tenantId` and wraps the same DEK under the primary config of
   * `newTenantId`; returns both (the tenant-security `document/rekey` answers both).
   * The DEK is the caller's to wipe.
   */
  async rekey(tenantId: string, edek: string, newTenantId: string, meta: RequestMetadata): Promise<GeneratedKey> {
    const rekey = { fromTenantId: tenantId, toTenantId: newTenantId };
    let target: { tenant: Tenant; primary: KmsConfig } | undefined;
    const dek = await this.#audited('rekey', tenantId, meta, { rekey: { role: 'source', ...rekey } }, wipeBuffer, (trace) => {
      target = this.#primaryOf(newTenantId);
      return this.#unwrapOne(tenantId, edek, meta, trace);
    });
    const { tenant, primary } = target!;
    try {
      const moved = await this.#audited('rekey', newTenantId, meta, { rekey: { role: 'target', ...rekey } }, noWipe, (trace) =>
        this.#wrapUnder(tenant, primary, dek, meta, trace),
      );
      return { dek, edek: moved };
    } catch (err) {
      dek.fill(0);
      throw err;
    }
  }

  /** Whole-request errors (unknown tenant, no primary) throw; per-item failures are collected. */
  async batchGenerate(tenantId: string, ids: readonly string[], meta: RequestMetadata): Promise<BatchResult<GeneratedKey>> {
    const size = ids.length;
    const { tenant, primary } = await this.#audited('generate', tenantId, meta, { batch: { size } }, noWipe, async () => this.#primaryOf(tenantId), { successEvent: false });
    return this.#batch(ids, (itemId) =>
      this.#audited('generate', tenantId, meta, { batch: { itemId, size } }, wipeGenerated, (trace) => this.#generateUnder(tenant, primary, meta, trace)),
    );
  }

  async batchUnwrap(tenantId: string, edeks: ReadonlyMap<string, string>, meta: RequestMetadata): Promise<BatchResult<Buffer>> {
    const size = edeks.size;
    const tenant = await this.#audited('unwrap', tenantId, meta, { batch: { size } }, noWipe, async () => this.#tenant(tenantId), { successEvent: false });
    return this.#batch([...edeks.keys()], (itemId) =>
      this.#audited('unwrap', tenantId, meta, { batch: { itemId, size } }, wipeBuffer, (trace) => this.#unwrapEntries(tenant, parseEdek(edeks.get(itemId)!), meta, trace)),
    );
  }

  async #batch<T>(ids: readonly string[], run: (id: string) => Promise<T>): Promise<BatchResult<T>> {
    const keys = new Map<string, T>();
    const failures = new Map<string, ItemFailure>();
    await mapLimit(ids, BATCH_CONCURRENCY, async (id) => {
      try {
        keys.set(id, await run(id));
      } catch (err) {
        const error = isKeywardError(err) ? err : this.#unexpected(err);
        failures.set(id, error.toBody());
      }
    });
    return { keys, failures };
  }

  async #generateUnder(tenant: Tenant, config: KmsConfig, meta: RequestMetadata, trace: Trace): Promise<GeneratedKey> {
    const dek = randomFillSync(Buffer.alloc(DEK_BYTES));
    try {
      return { dek, edek: await this.#wrapUnder(tenant, config, dek, meta, trace) };
    } catch (err) {
      dek.fill(0);
      throw err;
    }
  }

  async #wrapUnder(tenant: Tenant, config: KmsConfig, dek: Buffer, meta: RequestMetadata, trace: Trace): Promise<string> {
    trace.config = config;
    trace.mode = isLeased(config) ? 'leased' : 'direct';
    trace.leasedKeyId = undefined;
    if (isLeased(config)) return this.#wrapLeased(tenant, config, dek, meta, trace);
    let blob: Buffer;
    try {
      const driver = await this.#source.pool.driverFor(config);
      blob = await driver.wrap(dek, edekAad(tenant.id, config.id));
    } catch (err) {
      throw this.#kmsFailure(err, config, 'wrap', meta);
    }
    return edekToBase64([edekEntry({ encryptedDekData: blob, kmsConfigId: config.id, tenantId: tenant.id })]);
  }

  /** Seals the DEK locally under the config's current lease; the EDEK carries the lease's ELEK. */
  async #wrapLeased(tenant: Tenant, config: KmsConfig & { leasing: NonNullable<KmsConfig['leasing']> }, dek: Buffer, meta: RequestMetadata, trace: Trace): Promise<string> {
    for (let attempt = 0; attempt < 2; attempt++) {
      let lease: Lease;
      try {
        lease = await this.#source.leases.currentLease(config);
      } catch (err) {
        throw this.#kmsFailure(err, config, 'wrap', meta);
      }
      // A reload or the sweeper may have wiped the lease between its look-up and now.
      if (lease.wiped) continue;
      const sealed = sealDek(lease.key, dek, leasedDekAad(tenant.id, config.id, lease.leaseId));
      trace.leasedKeyId = lease.leaseId;
      return edekToBase64([
        edekEntry({
          encryptedDekData: sealed.data,
          kmsConfigId: config.id,
          leasedKeyId: lease.leaseId,
          leasedKeyIv: sealed.iv,
          encryptedLeasedKeyData: lease.elek,
          tenantId: tenant.id,
        }),
      ]);
    }
    throw this.#kmsFailure(new KmsError('unreachable', 'the lease key was wiped while in use; retry'), config, 'wrap', meta);
  }

  /** Opens a leased entry under its lease (from memory, or recovered through the KMS). */
  async #unwrapLeased(tenant: Tenant, config: KmsConfig, entry: EncryptedDek): Promise<Buffer> {
    for (let attempt = 0; attempt < 2; attempt++) {
      const lease = await this.#source.leases.leaseFor(config, entry.leasedKeyId, entry.encryptedLeasedKeyData);
      if (lease.wiped) continue;
      const dek = openDek(lease.key, entry.leasedKeyIv, entry.encryptedDekData, leasedDekAad(tenant.id, config.id, entry.leasedKeyId));
      if (lease.transient) lease.key.fill(0);
      if (!dek) throw new KmsError('bad_ciphertext', 'the leased EDEK does not authenticate under its lease key');
      return dek;
    }
    throw new KmsError('unreachable', 'the lease key was wiped while in use; retry');
  }

  async #unwrapEntries(tenant: Tenant, entries: readonly EncryptedDek[], meta: RequestMetadata, trace: Trace): Promise<Buffer> {
    const own = entries.filter((entry) => entry.tenantId === tenant.id);
    if (own.length === 0) {
      throw new KeywardError(Errors.INVALID_PROVIDED_EDEK, `the EDEK is not assigned to tenant ${tenant.id}`);
    }
    if (tenant.configs.length === 0) {
      throw new KeywardError(Errors.UNKNOWN_TENANT_OR_NO_ACTIVE_KMS_CONFIGURATIONS, `tenant ${tenant.id} has no KMS configurations`);
    }
    const usable: Array<{ entry: EncryptedDek; config: KmsConfig }> = [];
    let refusal: KeywardError | undefined;
    for (const entry of own) {
      const config = tenant.configs.find((c) => c.id === entry.kmsConfigId);
      if (!config) {
        refusal ??= new KeywardError(Errors.INVALID_PROVIDED_EDEK, `the EDEK names KMS config ${entry.kmsConfigId}, which tenant ${tenant.id} does not have`);
      } else if (config.status === 'disabled') {
        refusal = new KeywardError(Errors.KMS_CONFIGURATION_DISABLED, `KMS config ${config.id} of tenant ${tenant.id} is disabled`);
      } else if (entry.leasedKeyId < 0) {
        refusal ??= new KeywardError(Errors.INVALID_PROVIDED_EDEK, 'the EDEK names an invalid leased key id');
      } else {
        usable.push({ entry, config });
      }
    }
    usable.sort((a, b) => Number(b.config.status === 'primary') - Number(a.config.status === 'primary'));
    let firstFailure: { failure: KeywardError; trace: Trace } | undefined;
    for (const { entry, config } of usable) {
      trace.config = config;
      trace.mode = entry.leasedKeyId === 0 ? 'direct' : 'leased';
      trace.leasedKeyId = entry.leasedKeyId;
      try {
        if (entry.leasedKeyId !== 0) return await this.#unwrapLeased(tenant, config, entry);
        const driver = await this.#source.pool.driverFor(config);
        return await driver.unwrap(entry.encryptedDekData, edekAad(tenant.id, config.id));
      } catch (err) {
        firstFailure ??= { failure: this.#kmsFailure(err, config, 'unwrap', meta), trace: { ...trace } };
      }
    }
    if (firstFailure) {
      // The record names the config whose failure is reported.
      Object.assign(trace, firstFailure.trace);
      throw firstFailure.failure;
    }
    throw refusal ?? new KeywardError(Errors.INVALID_PROVIDED_EDEK, 'the EDEK holds no usable key');
  }

  #tenant(tenantId: string): Tenant {
    const tenant = this.#source.directory.tenant(tenantId);
    if (!tenant) {
      throw new KeywardError(
        Errors.UNKNOWN_TENANT_OR_NO_ACTIVE_KMS_CONFIGURATIONS,
        `No configurations available for the provided tenant ${tenantId}`,
      );
    }
    return tenant;
  }

  #primaryOf(tenantId: string): { tenant: Tenant; primary: KmsConfig } {
    const tenant = this.#tenant(tenantId);
    if (!tenant.primary) {
      throw new KeywardError(Errors.NO_PRIMARY_KMS_CONFIGURATION, `tenant ${tenantId} has no primary KMS configuration`);
    }
    return { tenant, primary: tenant.primary };
  }

  #kmsFailure(err: unknown, config: KmsConfig, operation: 'wrap' | 'unwrap', meta: RequestMetadata): KeywardError {
    if (!isKmsError(err)) return this.#unexpected(err);
    this.#logger.warn(
      {
        tenantId: config.tenantId,
        kmsConfigId: config.id,
        provider: config.provider,
        operation,
        kind: err.kind,
        reason: err.message,
        providerMessage: providerMessage(err),
        requestingId: meta.requestingId,
        requestId: meta.requestId,
      },
      'KMS operation failed',
    );
    return kmsErrorToKeyward(err, config, operation);
  }

  #unexpected(err: unknown): KeywardError {
    this.#logger.error({ err }, 'unexpected failure in a key operation');
    return new KeywardError(Errors.UNKNOWN_ERROR, 'unexpected error; the Keyward log has the details', { cause: err });
  }
}

/** The audit view of a config; a leased key id only once a lease served (a failed lease request has none). */
export function auditKms(config: Pick<KmsConfig, 'id' | 'provider'>, mode: 'direct' | 'leased', leasedKeyId?: number): AuditKms {
  return { configId: config.id, provider: config.provider, mode, ...(leasedKeyId ? { leasedKeyId } : {}) };
}

const noWipe = (): void => undefined;
const wipeBuffer = (dek: Buffer): void => {
  dek.fill(0);
};
const wipeGenerated = (key: GeneratedKey): void => {
  key.dek.fill(0);
};

/** The failure class decides the code; the driver's own message (safe by construction) explains. */
export function kmsErrorToKeyward(err: KmsError, config: Pick<KmsConfig, 'id' | 'provider'>, operation: 'wrap' | 'unwrap'): KeywardError {
  const where = `KMS config ${config.id} (${config.provider})`;
  const options = { cause: err, retryAfterSeconds: err.retryAfterSeconds };
  switch (err.kind) {
    case 'refused':
      return new KeywardError(Errors.KMS_AUTHORIZATION_FAILED, `${where} refused access: ${err.message}`, options);
    case 'key_unusable':
      return new KeywardError(Errors.KMS_CONFIGURATION_INVALID, `${where} cannot use its key: ${err.message}`, options);
    case 'bad_ciphertext':
      return operation === 'unwrap'
        ? new KeywardError(Errors.INVALID_PROVIDED_EDEK, `the EDEK does not decrypt under ${where} for this tenant`, options)
        : new KeywardError(Errors.KMS_WRAP_FAILED, `${where} rejected the wrap: ${err.message}`, options);
    case 'unreachable':
      return new KeywardError(Errors.KMS_UNREACHABLE, `${where} is unreachable: ${err.message}`, options);
    case 'throttled':
      return new KeywardError(Errors.KMS_THROTTLED, `${where} throttled the request: ${err.message}`, options);
    case 'account_issue':
      return new KeywardError(Errors.KMS_ACCOUNT_ISSUE, `${where} reports an account problem: ${err.message}`, options);
    case 'other':
      return new KeywardError(operation === 'wrap' ? Errors.KMS_WRAP_FAILED : Errors.KMS_UNWRAP_FAILED, `${where} failed the ${operation}: ${err.message}`, options);
  }
}

function parseEdek(edek: string): EncryptedDek[] {
  try {
    return edekFromBase64(edek);
  } catch (err) {
    if (err instanceof EdekFormatError) throw new KeywardError(Errors.INVALID_PROVIDED_EDEK, err.message, { cause: err });
    throw err;
  }
}

function requireDek(dek: Buffer): void {
  if (dek.length !== DEK_BYTES) {
    throw new KeywardError(Errors.INVALID_REQUEST_BODY, `dek must be exactly ${DEK_BYTES} bytes (got ${dek.length})`);
  }
}
