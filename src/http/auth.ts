/**
 * API keys on the API port. Accepts `Authorization: Bearer <key>` and the tenant-security
 * clients' `Authorization: cmk <key>`. Both sides are hashed first so the comparison is
 * constant-time whatever the lengths, and every accepted key is compared (no early exit),
 * so timing tells nothing about which key nearly matched.
 *
 * A key may be scoped to tenant-id patterns (`acme`, `acme-*`, `*`): once the body is
 * parsed, a request naming a tenant the key may not act for — as `tenantId`, or as the
 * `newTenantId` of a rekey — is refused with API_KEY_TENANT_FORBIDDEN (403), and on
 * /api/1 with the code the tenant-security SDKs know (101).
 */
import { hash, timingSafeEqual } from 'node:crypto';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { Errors, KeywardError } from '../errors.js';

const SCHEME = /^(?:bearer|cmk)[ \t]+([^ \t]+)[ \t]*$/i;

export interface ApiKey {
  /** Names the key in logs: the environment variable, or the tenants file's `apiKeys[].name`. */
  readonly name: string;
  readonly digest: Buffer;
  /** Tenant-id patterns; `*` matches any run of characters. */
  readonly tenants: readonly string[];
}

/** The key the header presents, if it is one of `keys`; compares against every key. */
export function matchApiKey(header: string | undefined, keys: readonly ApiKey[]): ApiKey | undefined {
  const match = header === undefined ? null : SCHEME.exec(header);
  const presented = hash('sha256', match?.[1] ?? '', 'buffer');
  let found: ApiKey | undefined;
  for (const key of keys) {
    if (timingSafeEqual(presented, key.digest) && found === undefined) found = key;
  }
  return match === null ? undefined : found;
}

const compiled = new Map<string, RegExp>();

/** Whether `tenantId` matches one of the patterns. Tenant ids cannot contain `*`. */
export function tenantAllowed(patterns: readonly string[], tenantId: string): boolean {
  return patterns.some((pattern) => {
    if (pattern === '*') return true;
    if (!pattern.includes('*')) return pattern === tenantId;
    let regex = compiled.get(pattern);
    if (!regex) {
      regex = new RegExp(`^${pattern.split('*').map((part) => part.replace(/[.]/g, '\\.')).join('.*')}$`);
      if (compiled.size < 10_000) compiled.set(pattern, regex);
    }
    return regex.test(tenantId);
  });
}

const principals = new WeakMap<FastifyRequest, ApiKey>();

/** onRequest: the key must be one of `keys()` (read per request: the tenants file's keys reload). */
export function apiKeyHook(keys: () => readonly ApiKey[]) {
  return (request: FastifyRequest, _reply: FastifyReply, done: (err?: Error) => void): void => {
    const key = matchApiKey(request.headers.authorization, keys());
    if (key) {
      principals.set(request, key);
      return done();
    }
    done(
      new KeywardError(
        Errors.UNAUTHORIZED_REQUEST,
        request.headers.authorization === undefined
          ? 'missing Authorization header; send "Authorization: Bearer <api key>"'
          : 'the API key is not valid',
      ),
    );
  };
}

/** preHandler: the request's tenants must be within its key's patterns. */
export function tenantScopeHook() {
  return (request: FastifyRequest, _reply: FastifyReply, done: (err?: Error) => void): void => {
    const key = principals.get(request);
    const body = request.body as { tenantId?: unknown; newTenantId?: unknown } | undefined;
    if (!key || body === null || typeof body !== 'object') return done();
    for (const field of ['tenantId', 'newTenantId'] as const) {
      const tenantId = body[field];
      if (typeof tenantId === 'string' && !tenantAllowed(key.tenants, tenantId)) {
        request.log.warn({ apiKeyName: key.name, tenantId, field }, 'API key used for a tenant outside its scope');
        const spec = request.routeOptions.url?.startsWith('/api/1/') ? Errors.API_KEY_TENANT_FORBIDDEN_SDK : Errors.API_KEY_TENANT_FORBIDDEN;
        return done(new KeywardError(spec, `this API key (${key.name}) may not act for tenant ${tenantId}`));
      }
    }
    done();
  };
}
