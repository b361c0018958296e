/**
 * Builds the OpenAPI 3.1 document from the route table and the error catalogue.
 * `npm run openapi` writes it to openapi.yaml; test/http/openapi.test.ts fails when the
 * file, the table and the routes Fastify actually registered disagree.
 */
import { Errors, type ErrorSpec } from '../errors.js';
import { ErrorBody } from './schemas.js';
import { V1_ROUTES } from './v1.js';
import { COMPAT_ROUTES } from './compat.js';

type Json = Record<string, unknown>;

/** TypeBox schemas carry symbol keys; a JSON round trip leaves plain JSON Schema. */
export function plainSchema(schema: unknown): Json {
  return JSON.parse(JSON.stringify(schema)) as Json;
}

const COMMON_ERRORS: readonly ErrorSpec[] = [
  Errors.UNAUTHORIZED_REQUEST,
  Errors.INVALID_REQUEST_BODY,
  Errors.MALFORMED_JSON,
  Errors.UNSUPPORTED_MEDIA_TYPE,
  Errors.BODY_TOO_LARGE,
  Errors.UNKNOWN_ERROR,
];

function errorResponses(specs: readonly ErrorSpec[]): Json {
  const byStatus = new Map<number, ErrorSpec[]>();
  for (const spec of [...COMMON_ERRORS, ...specs]) {
    const list = byStatus.get(spec.status) ?? [];
    if (!list.includes(spec)) list.push(spec);
    byStatus.set(spec.status, list);
  }
  const out: Json = {};
  for (const status of [...byStatus.keys()].sort((a, b) => a - b)) {
    const list = byStatus.get(status)!;
    const retry = list.some((s) => s.retryAfterSeconds !== undefined);
    out[String(status)] = {
      description: list.map((s) => `${s.code} ${s.name}: ${s.description}`).join('\n\n'),
      ...(retry ? { headers: { 'Retry-After': { description: 'Seconds to wait before retrying.', schema: { type: 'integer' } } } } : {}),
      content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } },
    };
  }
  return out;
}

function opsPath(summary: string, description: string, content: Json): Json {
  return {
    get: {
      operationId: summary.replace(/[^a-z]/gi, ''),
      summary,
      description,
      tags: ['ops'],
      security: [],
      servers: [{ url: 'http://localhost:9000', description: 'ops port (KEYWARD_OPS_PORT)' }],
      responses: content,
    },
  };
}

export function buildOpenApi(version: string): Json {
  const paths: Json = {};
  const tagged = [...V1_ROUTES.map((route) => ({ route, tag: 'keys' })), ...COMPAT_ROUTES.map((route) => ({ route, tag: 'compat' }))];
  for (const { route, tag } of tagged) {
    paths[route.url] = {
      [route.method.toLowerCase()]: {
        operationId: route.operationId,
        summary: route.summary,
        description: route.description,
        tags: [tag],
        requestBody: { required: true, content: { 'application/json': { schema: plainSchema(route.body) } } },
        responses: {
          '200': { description: 'Success.', content: { 'application/json': { schema: plainSchema(route.response) } } },
          // A tenant outside the API key's scope: code 104 on /v1, 101 (the SDKs' code) on /api/1.
          ...errorResponses([tag === 'compat' ? Errors.API_KEY_TENANT_FORBIDDEN_SDK : Errors.API_KEY_TENANT_FORBIDDEN, ...route.errors]),
        },
      },
    };
  }
  const statusBody = { 'application/json': { schema: { type: 'object', additionalProperties: true } } };
  paths['/live'] = opsPath('Liveness', 'Always 200 while the process runs (also during a graceful shutdown).', {
    '200': { description: 'Alive.', content: statusBody },
  });
  paths['/ready'] = opsPath('Readiness', '200 once the tenants file is loaded and drivers have started; 503 while starting or shutting down.', {
    '200': { description: 'Ready.', content: statusBody },
    '503': { description: 'Starting or shutting down.', content: statusBody },
  });
  paths['/health'] = opsPath('Health', 'Readiness with detail: mode, tenants file, load time, driver states, last reload error. Never calls a KMS.', {
    '200': { description: 'Healthy.', content: statusBody },
    '503': { description: 'Starting or shutting down.', content: statusBody },
  });
  paths['/leases'] = {
    get: {
      ...(opsPath('Leases', 'Key-leasing status per lease: tenant, KMS config, lease id, state (fresh/stale), whether it serves new wraps, creation and last successful refresh times, seconds left before an outage wipe, last error class. Never key material. Filter with ?tenantId=.', {
        '200': {
          description: 'Leases.',
          content: {
            'application/json': {
              schema: {
                type: 'object',
                required: ['leases'],
                properties: {
                  leases: {
                    type: 'array',
                    items: {
                      type: 'object',
                      properties: {
                        tenantId: { type: 'string' },
                        kmsConfigId: { type: 'integer' },
                        leaseId: { type: 'integer' },
                        state: { type: 'string', enum: ['fresh', 'stale'] },
                        current: { type: 'boolean' },
                        createdAt: { type: 'string', format: 'date-time' },
                        lastVerified: { type: 'string', format: 'date-time' },
                        wipeInSeconds: { type: 'integer' },
                        lastError: { type: 'string' },
                      },
                    },
                  },
                },
              },
            },
          },
        },
      }).get as Json),
      parameters: [{ name: 'tenantId', in: 'query', required: false, schema: { type: 'string' }, description: 'Only this tenant.' }],
    },
  };
  paths['/metrics'] = opsPath('Metrics', 'Prometheus text exposition (docs/metrics.md).', {
    '200': { description: 'Metrics.', content: { 'text/plain': { schema: { type: 'string' } } } },
  });

  return {
    openapi: '3.1.0',
    info: {
      title: 'Keyward',
      version,
      summary: 'Tenant security proxy: data keys wrapped by each tenant\'s own KMS or HSM.',
      description:
        'The native API of Keyward. Key bytes are standard base64. Every error is `{code, message}` with the HTTP status documented in docs/errors.md. This file is generated from the route table (`npm run openapi`); a test keeps it in step with the server.',
      license: { name: 'Apache-2.0', identifier: 'Apache-2.0' },
    },
    servers: [{ url: 'http://localhost:7777', description: 'API port (KEYWARD_PORT)' }],
    security: [{ bearer: [] }, { cmk: [] }],
    tags: [
      { name: 'keys', description: 'Data-key operations, on the API port.' },
      { name: 'compat', description: 'The tenant-security wire API (`/api/1`) for the published client SDKs (docs/compatibility.md).' },
      { name: 'ops', description: 'Probes and metrics, on the ops port; no authentication.' },
    ],
    paths,
    components: {
      securitySchemes: {
        bearer: { type: 'http', scheme: 'bearer', description: 'Authorization: Bearer <KEYWARD_API_KEY>' },
        cmk: { type: 'apiKey', in: 'header', name: 'Authorization', description: 'Authorization: cmk <KEYWARD_API_KEY> (tenant-security client SDKs)' },
      },
      schemas: { Error: plainSchema(ErrorBody) },
    },
  };
}
