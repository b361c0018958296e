/**
 * The native API `/v1`. The route table below is the single description of each
 * route: it registers the route, and scripts/gen-openapi.ts turns it into openapi.yaml.
 * Handlers only translate between JSON and the key service; no crypto lives here.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { TSchema } from '@sinclair/typebox';
import { UNWRAP_ERRORS, WRAP_ERRORS } from './route-errors.js';
import { Errors, KeywardError, type ErrorSpec } from '../errors.js';
import type { ItemFailure, KeyService, RequestMetadata } from '../envelope/keys.js';
import type { Metrics } from '../metrics.js';
import { decodeBase64Strict } from './base64.js';
import {
  BatchGenerateBody,
  BatchGenerateResponse,
  BatchUnwrapBody,
  BatchUnwrapResponse,
  GenerateBody,
  GenerateResponse,
  RewrapBody,
  RewrapResponse,
  UnwrapBody,
  UnwrapResponse,
  WrapBody,
  WrapResponse,
  type Metadata,
} from './schemas.js';

export interface RouteSpec {
  readonly method: 'POST';
  readonly url: string;
  readonly operationId: string;
  readonly summary: string;
  readonly description: string;
  readonly body: TSchema;
  readonly response: TSchema;
  /** Errors this route can answer with, besides 101/102/100 which every route can. */
  readonly errors: readonly ErrorSpec[];
}


export const V1_ROUTES: readonly RouteSpec[] = [
  {
    method: 'POST',
    url: '/v1/keys/generate',
    operationId: 'generateKey',
    summary: 'Generate a data key',
    description: "Creates a random 32-byte DEK and wraps it under the tenant's primary KMS config. Returns both; store the EDEK, use and forget the DEK.",
    body: GenerateBody,
    response: GenerateResponse,
    errors: [...WRAP_ERRORS, Errors.AUDIT_UNAVAILABLE],
  },
  {
    method: 'POST',
    url: '/v1/keys/wrap',
    operationId: 'wrapKey',
    summary: 'Wrap a caller-supplied data key',
    description: "Wraps the given 32-byte DEK under the tenant's primary KMS config.",
    body: WrapBody,
    response: WrapResponse,
    errors: [...WRAP_ERRORS, Errors.AUDIT_UNAVAILABLE],
  },
  {
    method: 'POST',
    url: '/v1/keys/unwrap',
    operationId: 'unwrapKey',
    summary: 'Unwrap a data key',
    description: "Returns the DEK inside one of the tenant's EDEKs. An EDEK of another tenant, or a tampered one, is refused with 203.",
    body: UnwrapBody,
    response: UnwrapResponse,
    errors: [...UNWRAP_ERRORS, Errors.AUDIT_UNAVAILABLE],
  },
  {
    method: 'POST',
    url: '/v1/keys/rewrap',
    operationId: 'rewrapKey',
    summary: 'Rewrap a data key',
    description:
      "Unwraps an EDEK of tenantId and wraps the same DEK under the primary KMS config of newTenantId (or of tenantId, to move data onto the current primary config). The DEK never leaves Keyward.",
    body: RewrapBody,
    response: RewrapResponse,
    errors: [...new Set([...UNWRAP_ERRORS, ...WRAP_ERRORS]), Errors.AUDIT_UNAVAILABLE],
  },
  {
    method: 'POST',
    url: '/v1/keys/batch/generate',
    operationId: 'batchGenerateKeys',
    summary: 'Generate many data keys',
    description:
      'Generates one DEK per id. Failures of single items are listed in `failures` and never fail the request; an unknown tenant or a tenant without a primary config fails the whole request.',
    body: BatchGenerateBody,
    response: BatchGenerateResponse,
    errors: [Errors.BATCH_TOO_LARGE, Errors.UNKNOWN_TENANT_OR_NO_ACTIVE_KMS_CONFIGURATIONS, Errors.NO_PRIMARY_KMS_CONFIGURATION],
  },
  {
    method: 'POST',
    url: '/v1/keys/batch/unwrap',
    operationId: 'batchUnwrapKeys',
    summary: 'Unwrap many data keys',
    description:
      'Unwraps many EDEKs of one tenant. Failures of single items (bad EDEK, disabled config, KMS errors) are listed in `failures` and never fail the request; an unknown tenant fails the whole request.',
    body: BatchUnwrapBody,
    response: BatchUnwrapResponse,
    errors: [Errors.BATCH_TOO_LARGE, Errors.UNKNOWN_TENANT_OR_NO_ACTIVE_KMS_CONFIGURATIONS],
  },
];

export interface V1Options {
  readonly keys: KeyService;
  readonly metrics: Pick<Metrics, 'errors'>;
  readonly batchLimit: number;
}

type Handler = (request: FastifyRequest) => Promise<unknown>;

/** Batch failures as the body's map, each counted in keyward_errors_total{scope="item"}. */
export function countedFailures(failures: ReadonlyMap<string, ItemFailure>, metrics: Pick<Metrics, 'errors'>): Record<string, ItemFailure> {
  for (const failure of failures.values()) metrics.errors.inc({ code: String(failure.code), scope: 'item' });
  return Object.fromEntries(failures);
}

function meta(metadata: Metadata): RequestMetadata {
  return metadata;
}

function decodeDek(text: string): Buffer {
  const dek = decodeBase64Strict(text);
  if (!dek || dek.length !== 32) {
    dek?.fill(0);
    throw new KeywardError(Errors.INVALID_REQUEST_BODY, 'dek must be standard base64 of exactly 32 bytes');
  }
  return dek;
}

/** Sends a DEK as base64 and wipes the buffer: the JSON string is all that remains. */
function dekOut(dek: Buffer): string {
  const text = dek.toString('base64');
  dek.fill(0);
  return text;
}

function checkBatch(count: number, limit: number): void {
  if (count > limit) {
    throw new KeywardError(Errors.BATCH_TOO_LARGE, `a batch holds at most ${limit} items (got ${count})`);
  }
}

function handlers({ keys, metrics, batchLimit }: V1Options): Record<string, Handler> {
  return {
    generateKey: async (request) => {
      const body = request.body as GenerateBody;
      const { dek, edek } = await keys.generate(body.tenantId, meta(body.metadata));
      return { dek: dekOut(dek), edek };
    },
    wrapKey: async (request) => {
      const body = request.body as WrapBody;
      const dek = decodeDek(body.dek);
      try {
        return { edek: await keys.wrap(body.tenantId, dek, meta(body.metadata)) };
      } finally {
        dek.fill(0);
      }
    },
    unwrapKey: async (request) => {
      const body = request.body as UnwrapBody;
      return { dek: dekOut(await keys.unwrap(body.tenantId, body.edek, meta(body.metadata))) };
    },
    rewrapKey: async (request) => {
      const body = request.body as RewrapBody;
      return { edek: await keys.rewrap(body.tenantId, body.edek, body.newTenantId, meta(body.metadata)) };
    },
    batchGenerateKeys: async (request) => {
      const body = request.body as BatchGenerateBody;
      checkBatch(body.ids.length, batchLimit);
      const unique = new Set(body.ids);
      if (unique.size !== body.ids.length) throw new KeywardError(Errors.INVALID_REQUEST_BODY, 'ids must be unique');
      const result = await keys.batchGenerate(body.tenantId, body.ids, meta(body.metadata));
      // Object.fromEntries makes own properties: an id such as "__proto__" is kept, not swallowed by the prototype.
      const out = Object.fromEntries(Array.from(result.keys, ([id, key]) => [id, { dek: dekOut(key.dek), edek: key.edek }]));
      return { keys: out, failures: countedFailures(result.failures, metrics) };
    },
    batchUnwrapKeys: async (request) => {
      const body = request.body as BatchUnwrapBody;
      const entries = Object.entries(body.edeks);
      checkBatch(entries.length, batchLimit);
      const result = await keys.batchUnwrap(body.tenantId, new Map(entries), meta(body.metadata));
      const out = Object.fromEntries(Array.from(result.keys, ([id, dek]) => [id, { dek: dekOut(dek) }]));
      return { keys: out, failures: countedFailures(result.failures, metrics) };
    },
  };
}

/** Registers the /v1 routes behind the API-key check. */
export function registerV1(app: FastifyInstance, options: V1Options): void {
  const table = handlers(options);
  for (const route of V1_ROUTES) {
    const handler = table[route.operationId];
    if (!handler) throw new Error(`no handler for ${route.operationId}`);
    app.route({
      method: route.method,
      url: route.url,
      schema: { body: route.body, response: { 200: route.response } },
      handler,
    });
  }
}
