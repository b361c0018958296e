/**
 * The tenant-security wire API `/api/1` (../shared/ironcore-compat.md), so applications
 * using the published tenant-security client SDKs can point them at Keyward unchanged.
 * Served by the same key service as `/v1`: no crypto or KMS logic here, only the
 * contract's shapes and quirks —
 * - tolerate what the SDKs send: optional fields absent or null, `customFields: null`,
 *   extra fields such as `timestampMillis`, the security event inside `iclFields` (Java,
 *   Node, Go, PHP) or at the top level (Rust);
 * - answer what they require: both maps in batch answers, `dek` and `edek` on rekey, the
 *   literal body `null` for a security event, `{code, message}` for every error.
 */
import { Type, type TSchema } from '@sinclair/typebox';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { SecurityEvents } from '../audit/security-events.js';
import type { DerivationService } from '../derivation/derive.js';
import { KMS_ERRORS, UNWRAP_ERRORS, WRAP_ERRORS } from './route-errors.js';
import { Errors, KeywardError, isKeywardError } from '../errors.js';
import type { ItemFailure, KeyService, RequestMetadata } from '../envelope/keys.js';
import type { Metrics } from '../metrics.js';
import { Edek, StringMap, TenantId } from './schemas.js';
import { countedFailures, type RouteSpec } from './v1.js';

const MAX_ID = 256;
const Nullable = <T extends TSchema>(schema: T) => Type.Union([schema, Type.Null()]);
const OptionalText = (maxLength: number, description: string) => Type.Optional(Nullable(Type.String({ maxLength, description })));

const IclFields = Type.Object(
  {
    requestingId: Type.String({ minLength: 1, maxLength: MAX_ID, description: 'Who asks: a user or service id. Required.' }),
    dataLabel: OptionalText(MAX_ID, 'Classification of the data.'),
    sourceIp: OptionalText(64, 'IP address of the end user.'),
    objectId: OptionalText(MAX_ID, 'Id of the object the key protects.'),
    requestId: OptionalText(MAX_ID, 'Caller request id.'),
    event: OptionalText(MAX_ID, 'Security event name (security-event only; Java, Node, Go and PHP clients send it here).'),
  },
  { additionalProperties: true, description: 'Request metadata of the tenant-security clients.' },
);

const CustomFields = Type.Optional(
  Nullable(
    StringMap(Type.String({ maxLength: 1024 }), {
      keyMaxLength: 128,
      maxProperties: 64,
      description: 'Free-form string fields; null is accepted.',
    }),
  ),
);

const metadata = {
  tenantId: TenantId,
  iclFields: IclFields,
  customFields: CustomFields,
  timestampMillis: Type.Optional(Nullable(Type.Number({ description: 'Sent by some clients; ignored except on security events.' }))),
};

const body = <T extends Record<string, TSchema>>(properties: T, description: string) =>
  Type.Object({ ...metadata, ...properties }, { additionalProperties: true, description });

const DocumentWrapBody = body({}, 'Generate a DEK for a document.');
const DocumentBatchWrapBody = body(
  { documentIds: Type.Array(Type.String({ minLength: 1, maxLength: MAX_ID }), { description: 'Ids of the documents; unique.' }) },
  'Generate one DEK per document id.',
);
const DocumentUnwrapBody = body({ encryptedDocumentKey: Edek }, 'Unwrap a document key.');
const DocumentBatchUnwrapBody = body(
  { edeks: StringMap(Edek, { keyMinLength: 1, keyMaxLength: MAX_ID, description: 'EDEKs by document id.' }) },
  'Unwrap many document keys.',
);
const DocumentRekeyBody = body(
  { encryptedDocumentKey: Edek, newTenantId: TenantId },
  'Unwrap an EDEK of tenantId (the current owner) and wrap the same DEK for newTenantId, which may be the same tenant.',
);
const SecurityEventBody = body(
  { event: OptionalText(MAX_ID, 'Security event name at the top level (Rust client).') },
  'Record an application security event; accepted for unknown tenants too.',
);
const DeriveBody = body(
  {
    paths: StringMap(Type.Array(Type.String({ maxLength: 1024 }), { maxItems: 1000 }), {
      keyMaxLength: 1024,
      maxProperties: 1000,
      description: 'Derivation paths by secret path.',
    }),
    derivationType: Type.String({ maxLength: 32, description: 'sha512 (64-byte keys) or sha256 (32-byte keys); argon2 is not supported.' }),
    secretType: Type.String({ maxLength: 32, description: 'deterministic, search or vector: which of the tenant\'s secrets to use.' }),
  },
  "Derive keys from the tenant's current and in-rotation secrets.",
);
const DerivedKeyItem = Type.Object({ derivedKey: Type.String({ contentEncoding: 'base64' }), tenantSecretId: Type.Integer(), current: Type.Boolean() });
const DeriveResponse = Type.Object({
  hasPrimaryConfig: Type.Boolean(),
  derivedKeys: StringMap(StringMap(Type.Array(DerivedKeyItem))),
});

const ReportOperationsBody = Type.Object(
  {
    tenantId: Type.Optional(TenantId),
    iclFields: Type.Optional(IclFields),
    customFields: CustomFields,
    timestampMillis: Type.Optional(Nullable(Type.Number())),
    operations: StringMap(
      Type.Object(
        // Bounded: the totals go into counters, and a sum must stay a finite number.
        { wraps: Type.Optional(Type.Integer({ minimum: 0, maximum: 1e9 })), unwraps: Type.Optional(Type.Integer({ minimum: 0, maximum: 1e9 })) },
        { additionalProperties: true },
      ),
      { keyMaxLength: 100_000, maxProperties: 100_000, description: 'Per EDEK, how many wraps and unwraps the client did with its cached key.' },
    ),
  },
  { additionalProperties: true, description: 'Operations a client did with cached keys; counted.' },
);

const Dek = Type.String({ contentEncoding: 'base64', description: 'The 32-byte DEK, base64.' });
const EdekOut = Type.String({ contentEncoding: 'base64', description: 'The EDEK, base64.' });
const ErrorItem = Type.Object({ code: Type.Integer(), message: Type.String() });
const WrapResponse = Type.Object({ dek: Dek, edek: EdekOut });
const UnwrapResponse = Type.Object({ dek: Dek });
const BatchWrapResponse = Type.Object({ keys: StringMap(WrapResponse), failures: StringMap(ErrorItem) });
const BatchUnwrapResponse = Type.Object({ keys: StringMap(UnwrapResponse), failures: StringMap(ErrorItem) });


export const COMPAT_ROUTES: readonly RouteSpec[] = [
  {
    method: 'POST',
    url: '/api/1/document/wrap',
    operationId: 'compatDocumentWrap',
    summary: 'Generate a document key (tenant-security API)',
    description: "Creates a DEK and wraps it under the tenant's primary KMS config. Same as POST /v1/keys/generate.",
    body: DocumentWrapBody,
    response: WrapResponse,
    errors: [...WRAP_ERRORS, Errors.AUDIT_UNAVAILABLE_SDK],
  },
  {
    method: 'POST',
    url: '/api/1/document/batch-wrap',
    operationId: 'compatDocumentBatchWrap',
    summary: 'Generate document keys in a batch (tenant-security API)',
    description: 'One DEK per document id; per-document failures in `failures`. Both maps are always present.',
    body: DocumentBatchWrapBody,
    response: BatchWrapResponse,
    errors: [Errors.BATCH_TOO_LARGE, Errors.UNKNOWN_TENANT_OR_NO_ACTIVE_KMS_CONFIGURATIONS, Errors.NO_PRIMARY_KMS_CONFIGURATION],
  },
  {
    method: 'POST',
    url: '/api/1/document/unwrap',
    operationId: 'compatDocumentUnwrap',
    summary: 'Unwrap a document key (tenant-security API)',
    description: 'Same as POST /v1/keys/unwrap.',
    body: DocumentUnwrapBody,
    response: UnwrapResponse,
    errors: [...UNWRAP_ERRORS, Errors.AUDIT_UNAVAILABLE_SDK],
  },
  {
    method: 'POST',
    url: '/api/1/document/batch-unwrap',
    operationId: 'compatDocumentBatchUnwrap',
    summary: 'Unwrap document keys in a batch (tenant-security API)',
    description: 'Per-document failures in `failures`. Both maps are always present.',
    body: DocumentBatchUnwrapBody,
    response: BatchUnwrapResponse,
    errors: [Errors.BATCH_TOO_LARGE, Errors.UNKNOWN_TENANT_OR_NO_ACTIVE_KMS_CONFIGURATIONS],
  },
  {
    method: 'POST',
    url: '/api/1/document/rekey',
    operationId: 'compatDocumentRekey',
    summary: 'Rekey a document key (tenant-security API)',
    description: 'Unwraps under tenantId and wraps the same DEK under the primary config of newTenantId (may be the same tenant). Answers both `dek` and `edek`.',
    body: DocumentRekeyBody,
    response: WrapResponse,
    errors: [...new Set([...UNWRAP_ERRORS, ...WRAP_ERRORS]), Errors.AUDIT_UNAVAILABLE_SDK],
  },
  {
    method: 'POST',
    url: '/api/1/key/derive-with-secret-path',
    operationId: 'compatDeriveWithSecretPath',
    summary: 'Derive keys for deterministic encryption (tenant-security API)',
    description:
      "One key per secret path, derivation path and live secret (current and in-rotation, exactly one current), from the tenant's derivation secrets (docs/derivation.md). Succeeds without a primary config, with hasPrimaryConfig false.",
    body: DeriveBody,
    response: DeriveResponse,
    errors: [Errors.UNKNOWN_TENANT_OR_NO_ACTIVE_KMS_CONFIGURATIONS, Errors.KMS_CONFIGURATION_DISABLED, ...KMS_ERRORS, Errors.AUDIT_UNAVAILABLE_SDK],
  },
  {
    method: 'POST',
    url: '/api/1/event/security-event',
    operationId: 'compatSecurityEvent',
    summary: 'Record a security event (tenant-security API)',
    description: 'Validated by name family (ADMIN_, USER_, DATA_, PERIODIC_, CUSTOM_), accepted for unknown tenants, written to the audit stream. Answers the literal body `null`.',
    body: SecurityEventBody,
    response: Type.Null({ description: 'The literal JSON `null`.' }),
    errors: [Errors.SECURITY_EVENT_REJECTED, Errors.AUDIT_UNAVAILABLE_SDK],
  },
  {
    method: 'POST',
    url: '/api/1/document/report-operations',
    operationId: 'compatReportOperations',
    summary: 'Report operations done with cached keys (tenant-security API)',
    description: 'Accepted and counted in keyward_reported_operations_total.',
    body: ReportOperationsBody,
    response: Type.Object({}, { description: 'Empty object; clients ignore the body.' }),
    errors: [],
  },
];

interface CompatMetadata {
  tenantId: string;
  iclFields: {
    requestingId: string;
    dataLabel?: string | null;
    sourceIp?: string | null;
    objectId?: string | null;
    requestId?: string | null;
    event?: string | null;
  };
  customFields?: Record<string, string> | null;
  timestampMillis?: number | null;
}

function meta(body: CompatMetadata): RequestMetadata {
  const f = body.iclFields;
  return {
    requestingId: f.requestingId,
    dataLabel: f.dataLabel ?? undefined,
    sourceIp: f.sourceIp ?? undefined,
    objectId: f.objectId ?? undefined,
    requestId: f.requestId ?? undefined,
    custom: body.customFields ?? undefined,
  };
}

function dekOut(dek: Buffer): string {
  const text = dek.toString('base64');
  dek.fill(0);
  return text;
}

function checkBatch(count: number, limit: number): void {
  if (count > limit) throw new KeywardError(Errors.BATCH_TOO_LARGE, `a batch holds at most ${limit} items (got ${count})`);
}

export interface CompatOptions {
  readonly keys: KeyService;
  readonly derivation: DerivationService;
  readonly events: SecurityEvents;
  readonly metrics: Metrics;
  readonly batchLimit: number;
}

type Handler = (request: FastifyRequest) => Promise<unknown>;

function handlers({ keys, derivation, events, metrics, batchLimit }: CompatOptions): Record<string, Handler> {
  return {
    compatDeriveWithSecretPath: async (request) => {
      const body = request.body as CompatMetadata & { paths: Record<string, string[]>; derivationType: string; secretType: string };
      // Every derivation path is one derivation (per live secret): the batch limit bounds their total, so one
      // request cannot hold the event loop for seconds.
      let total = 0;
      for (const list of Object.values(body.paths)) total += list.length;
      if (total > batchLimit) {
        throw new KeywardError(Errors.BATCH_TOO_LARGE, `a derivation request holds at most ${batchLimit} derivation paths in all (got ${total})`);
      }
      return derivation.derive(body.tenantId, body, meta(body));
    },
    compatDocumentWrap: async (request) => {
      const body = request.body as CompatMetadata;
      const { dek, edek } = await keys.generate(body.tenantId, meta(body));
      return { dek: dekOut(dek), edek };
    },
    compatDocumentBatchWrap: async (request) => {
      const body = request.body as CompatMetadata & { documentIds: string[] };
      checkBatch(body.documentIds.length, batchLimit);
      if (new Set(body.documentIds).size !== body.documentIds.length) {
        throw new KeywardError(Errors.INVALID_REQUEST_BODY, 'documentIds must be unique');
      }
      const result = await keys.batchGenerate(body.tenantId, body.documentIds, meta(body));
      // Own properties whatever the id (even "__proto__").
      const out = Object.fromEntries(Array.from(result.keys, ([id, key]) => [id, { dek: dekOut(key.dek), edek: key.edek }]));
      return { keys: out, failures: countedFailures(sdkFailures(result.failures), metrics) };
    },
    compatDocumentUnwrap: async (request) => {
      const body = request.body as CompatMetadata & { encryptedDocumentKey: string };
      return { dek: dekOut(await keys.unwrap(body.tenantId, body.encryptedDocumentKey, meta(body))) };
    },
    compatDocumentBatchUnwrap: async (request) => {
      const body = request.body as CompatMetadata & { edeks: Record<string, string> };
      const entries = Object.entries(body.edeks);
      checkBatch(entries.length, batchLimit);
      const result = await keys.batchUnwrap(body.tenantId, new Map(entries), meta(body));
      const out = Object.fromEntries(Array.from(result.keys, ([id, dek]) => [id, { dek: dekOut(dek) }]));
      return { keys: out, failures: countedFailures(sdkFailures(result.failures), metrics) };
    },
    compatDocumentRekey: async (request) => {
      const body = request.body as CompatMetadata & { encryptedDocumentKey: string; newTenantId: string };
      const { dek, edek } = await keys.rekey(body.tenantId, body.encryptedDocumentKey, body.newTenantId, meta(body));
      return { dek: dekOut(dek), edek };
    },
    compatSecurityEvent: (request) => {
      const body = request.body as CompatMetadata & { event?: string | null };
      const name = body.iclFields.event ?? body.event;
      if (!name) throw new KeywardError(Errors.SECURITY_EVENT_REJECTED, 'the security event has no name (iclFields.event or event)');
      events.record({ tenantId: body.tenantId, name, timestampMillis: body.timestampMillis ?? undefined, meta: meta(body) });
      return Promise.resolve(null);
    },
    compatReportOperations: (request) => {
      const body = request.body as { operations: Record<string, { wraps?: number; unwraps?: number }> };
      let wraps = 0;
      let unwraps = 0;
      for (const counts of Object.values(body.operations)) {
        wraps += counts.wraps ?? 0;
        unwraps += counts.unwraps ?? 0;
      }
      metrics.reportedOperations.inc({ kind: 'wraps' }, wraps);
      metrics.reportedOperations.inc({ kind: 'unwraps' }, unwraps);
      return Promise.resolve({});
    },
  };
}

/** Codes the published SDKs cannot represent, as they can: see AUDIT_UNAVAILABLE_SDK. */
function sdkError(error: KeywardError): KeywardError {
  return error.spec === Errors.AUDIT_UNAVAILABLE ? new KeywardError(Errors.AUDIT_UNAVAILABLE_SDK, error.message, { cause: error }) : error;
}

function sdkFailures(failures: ReadonlyMap<string, ItemFailure>): Map<string, ItemFailure> {
  const out = new Map<string, ItemFailure>();
  for (const [id, failure] of failures) out.set(id, failure.code === Errors.AUDIT_UNAVAILABLE.code ? { ...failure, code: Errors.AUDIT_UNAVAILABLE_SDK.code } : failure);
  return out;
}

/** Registers the /api/1 routes; the caller's scope supplies the API-key check. */
export function registerCompat(app: FastifyInstance, options: CompatOptions): void {
  const table = handlers(options);
  for (const route of COMPAT_ROUTES) {
    const handler = table[route.operationId];
    if (!handler) throw new Error(`no handler for ${route.operationId}`);
    const translated: Handler = async (request) => {
      try {
        return await handler(request);
      } catch (err) {
        throw isKeywardError(err) ? sdkError(err) : err;
      }
    };
    app.route({ method: route.method, url: route.url, schema: { body: route.body, response: { 200: route.response } }, handler: translated });
  }
}
