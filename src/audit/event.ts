/**
 * The audit event: one per key operation (per item in a batch) and per application
 * security event. Its JSON form is a public, versioned schema (docs/audit.md). Never key
 * material: only ids, names, outcomes and the caller's metadata.
 */
import type { RequestMetadata } from '../envelope/keys.js';
import type { AUDIT_OPERATIONS } from '../metrics.js';

export const AUDIT_SCHEMA = 'keyward.audit.v1';

export type AuditOperation = (typeof AUDIT_OPERATIONS)[number];

/** Which KMS config served (or failed) the operation, and whether through a lease. */
export interface AuditKms {
  readonly configId: number;
  readonly provider: string;
  readonly mode: 'direct' | 'leased';
  readonly leasedKeyId?: number;
}

export interface AuditCaller {
  readonly requestingId: string;
  readonly dataLabel?: string;
  readonly sourceIp?: string;
  readonly objectId?: string;
  readonly requestId?: string;
  readonly custom?: Readonly<Record<string, string>>;
}

/** What the domain says happened; the AuditLog adds id, time, replica and schema. */
export interface AuditRecord {
  readonly tenantId: string;
  readonly operation: AuditOperation;
  readonly outcome: 'success' | 'failure';
  readonly error?: { readonly code: number; readonly name: string; readonly message: string };
  readonly kms?: AuditKms;
  /** Batch calls: one event per item, naming it; or one event for a batch refused as a whole. */
  readonly batch?: { readonly itemId?: string; readonly size: number };
  /** Rekey/rewrap: one event for the source side (unwrap) and one for the target side (wrap). */
  readonly rekey?: { readonly role: 'source' | 'target'; readonly fromTenantId: string; readonly toTenantId: string };
  readonly derive?: { readonly secretType: string; readonly derivationType: string; readonly secretIds: readonly number[]; readonly derivations: number };
  readonly securityEvent?: { readonly name: string; readonly occurredAt: string };
  readonly caller: AuditCaller;
}

export interface AuditEvent extends AuditRecord {
  readonly schema: typeof AUDIT_SCHEMA;
  /** Unique per event and kept on redelivery: receivers deduplicate on it. */
  readonly id: string;
  readonly time: string;
  readonly replica: string;
}

/** Callers by request metadata: a batch's items share one (frozen) caller instead of building it per item. */
const callers = new WeakMap<RequestMetadata, AuditCaller>();

/** The caller's metadata, without absent fields. */
export function auditCaller(meta: RequestMetadata): AuditCaller {
  let caller = callers.get(meta);
  if (!caller) {
    caller = Object.freeze(buildCaller(meta));
    callers.set(meta, caller);
  }
  return caller;
}

function buildCaller(meta: RequestMetadata): AuditCaller {
  const caller: Record<string, unknown> = { requestingId: meta.requestingId };
  if (meta.dataLabel !== undefined) caller.dataLabel = meta.dataLabel;
  if (meta.sourceIp !== undefined) caller.sourceIp = meta.sourceIp;
  if (meta.objectId !== undefined) caller.objectId = meta.objectId;
  if (meta.requestId !== undefined) caller.requestId = meta.requestId;
  if (meta.custom !== undefined && Object.keys(meta.custom).length > 0) caller.custom = { ...meta.custom };
  return caller as unknown as AuditCaller;
}
