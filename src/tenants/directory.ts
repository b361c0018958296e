/**
 * An immutable snapshot of tenants and their KMS configs, as validated from the
 * tenants file. A reload builds a new snapshot; nothing mutates one in place.
 */
import { DEFAULT_QUEUE, DEFAULT_ROUTE, type AuditPlan, type AuditRoute } from '../audit/plan.js';
import type { ConcurrencyPolicy } from '../kms/isolation.js';
import type { AwsSettings, AzureSettings, GcpSettings, KmsConfigStatus, LocalSettings, Pkcs11Settings } from '../config/schema.js';

export interface LeasePolicy {
  readonly refreshIntervalMs: number;
  readonly maxOutageMs: number;
  readonly rotateAfterMs: number;
  readonly idleAfterMs: number;
  readonly maxCachedLeases: number;
}

interface KmsConfigBase {
  readonly id: number;
  readonly tenantId: string;
  readonly status: KmsConfigStatus;
  /** Bound on one KMS call attempt. */
  readonly timeoutMs: number;
  /** Retries of unreachable or throttled calls. */
  readonly retries: number;
  /** Key leasing, when enabled for this config (durations resolved to milliseconds). */
  readonly leasing: LeasePolicy | undefined;
  /** Stable digest of the settings that shape the driver: equal digests may share one. */
  readonly fingerprint: string;
  /** Calls in flight and waiting for this config (isolation from other tenants' KMSs). */
  readonly concurrency: ConcurrencyPolicy;
}

export interface LocalKmsConfig extends KmsConfigBase {
  readonly provider: 'local';
  readonly local: LocalSettings;
}

export interface Pkcs11KmsConfig extends KmsConfigBase {
  readonly provider: 'pkcs11';
  readonly pkcs11: Pkcs11Settings;
}

export interface AwsKmsConfig extends KmsConfigBase {
  readonly provider: 'aws';
  readonly aws: AwsSettings;
}

export interface AzureKmsConfig extends KmsConfigBase {
  readonly provider: 'azure';
  readonly azure: AzureSettings;
}

export interface GcpKmsConfig extends KmsConfigBase {
  readonly provider: 'gcp';
  readonly gcp: GcpSettings;
}

export type KmsConfig = LocalKmsConfig | Pkcs11KmsConfig | AwsKmsConfig | AzureKmsConfig | GcpKmsConfig;

/** A tenant secret for deterministic key derivation, kept only KMS-wrapped. */
export interface DerivationSecret {
  readonly id: number;
  readonly state: 'current' | 'in-rotation' | 'archived';
  readonly type: 'deterministic' | 'search' | 'vector';
  readonly kmsConfigId: number;
  /** Inline base64, or a file (absolute path) holding the base64; `create` only for the dev local KMS. */
  readonly wrapped: { readonly inline: string } | { readonly file: string; readonly create: boolean };
}

export interface Tenant {
  readonly id: string;
  readonly configs: readonly KmsConfig[];
  readonly primary: KmsConfig | undefined;
  readonly secrets: readonly DerivationSecret[];
  /** Where this tenant's audit events go; undefined → the plan's default route. */
  readonly audit?: AuditRoute | undefined;
}

/** Only the built-in stdout sink, to every tenant, best effort: what a file without `audit` means. */
export const DEFAULT_AUDIT_PLAN: AuditPlan = Object.freeze({
  sinks: new Map([['stdout', Object.freeze({ name: 'stdout', type: 'stdout', queue: DEFAULT_QUEUE, fingerprint: 'stdout' } as const)]]),
  default: DEFAULT_ROUTE,
});

/** An API key from the tenants file, known by its digest, scoped to tenant-id patterns. */
export interface ScopedApiKey {
  readonly name: string;
  readonly digest: Buffer;
  readonly tenants: readonly string[];
}

export class TenantDirectory {
  readonly #tenants: ReadonlyMap<string, Tenant>;
  readonly #configs: ReadonlyMap<number, KmsConfig>;
  readonly audit: AuditPlan;
  readonly apiKeys: readonly ScopedApiKey[];

  constructor(tenants: readonly Tenant[], audit: AuditPlan = DEFAULT_AUDIT_PLAN, apiKeys: readonly ScopedApiKey[] = []) {
    this.audit = audit;
    this.apiKeys = apiKeys;
    this.#tenants = new Map(tenants.map((t) => [t.id, t]));
    this.#configs = new Map(tenants.flatMap((t) => t.configs.map((c) => [c.id, c] as const)));
  }

  tenant(id: string): Tenant | undefined {
    return this.#tenants.get(id);
  }

  config(id: number): KmsConfig | undefined {
    return this.#configs.get(id);
  }

  /** The audit route of a tenant; unknown tenants get the default route. */
  auditRoute(tenantId: string): AuditRoute {
    return this.#tenants.get(tenantId)?.audit ?? this.audit.default;
  }

  get tenantCount(): number {
    return this.#tenants.size;
  }

  configs(): IterableIterator<KmsConfig> {
    return this.#configs.values();
  }
}
