/**
 * Shared pieces of the property-based (fast-check) fuzz tests in test/fuzz: the route
 * tables of both faces, the error catalogue as an oracle, reproducible seeds, timed
 * requests and the checks every response must pass.
 */
import assert from 'node:assert/strict';
import type { LightMyRequestResponse } from 'fastify';
import { Errors, type ErrorSpec } from '../../src/errors.js';
import { COMPAT_ROUTES } from '../../src/http/compat.js';
import { V1_ROUTES, type RouteSpec } from '../../src/http/v1.js';
import { API_KEY } from '../helpers/app.js';
import type { TestApp } from '../helpers/app.js';

/** Every route of both faces, straight from the route tables: a new route is fuzzed without touching these tests. */
export const ROUTES: readonly RouteSpec[] = [...V1_ROUTES, ...COMPAT_ROUTES];

/** No response may take longer than this (the local KMS answers in microseconds). */
export const LATENCY_BUDGET_MS = 1_000;

export const CATALOGUE: readonly ErrorSpec[] = Object.values(Errors);

/**
 * What every route can answer besides its own list (v1.ts: "besides 101/102/100 which every route can", and the
 * scoped-key refusal openapi.ts adds to every route); 100 is a 5xx and never allowed here.
 */
export const ANY_ROUTE_ERRORS: readonly ErrorSpec[] = [
  Errors.UNAUTHORIZED_REQUEST,
  Errors.API_KEY_TENANT_FORBIDDEN,
  Errors.API_KEY_TENANT_FORBIDDEN_SDK,
  Errors.INVALID_REQUEST_BODY,
  Errors.MALFORMED_JSON,
  Errors.UNSUPPORTED_MEDIA_TYPE,
  Errors.BODY_TOO_LARGE,
];

/**
 * A fixed seed per property, from its name: reproducible in CI, and adding a route or a property does not shift the
 * seeds of the others (FNV-1a, 32 bits, made a positive int for fast-check).
 */
export function seedFor(name: string): number {
  let h = 0x811c9dc5;
  for (const ch of Buffer.from(name, 'utf8')) {
    h ^= ch;
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h & 0x7fffffff;
}

export type Method = 'GET' | 'POST' | 'PUT' | 'DELETE' | 'PATCH' | 'OPTIONS' | 'HEAD';

export interface RawRequest {
  readonly method?: Method;
  readonly url: string;
  readonly headers?: Record<string, string>;
  readonly payload?: string | Buffer;
}

export interface Timed {
  readonly res: LightMyRequestResponse;
  readonly ms: number;
}

export const AUTH = { authorization: `Bearer ${API_KEY}` } as const;
export const JSON_AUTH = { ...AUTH, 'content-type': 'application/json' } as const;

/** One request through the real app (inject), with its wall-clock time. */
export async function send(app: Pick<TestApp, 'api'>, request: RawRequest): Promise<Timed> {
  const started = performance.now();
  const res = await app.api.inject({
    method: request.method ?? 'POST',
    url: request.url,
    headers: request.headers ?? JSON_AUTH,
    ...(request.payload === undefined ? {} : { payload: request.payload }),
  });
  return { res, ms: performance.now() - started };
}

export function postJson(app: Pick<TestApp, 'api'>, url: string, body: unknown): Promise<Timed> {
  return send(app, { url, payload: typeof body === 'string' ? body : JSON.stringify(body) });
}

export function describeRequest(request: RawRequest): string {
  const payload = request.payload === undefined ? '' : String(request.payload);
  const shown = payload.length > 900 ? `${payload.slice(0, 600)} … ${payload.slice(-300)} (${payload.length} chars)` : payload;
  return `${request.method ?? 'POST'} ${request.url} ${JSON.stringify(request.headers ?? JSON_AUTH)} ${shown}`;
}

/**
 * The checks every answer must pass, whatever was sent:
 * - never a 5xx (the local KMS cannot be unavailable, so no documented 5xx applies);
 * - within LATENCY_BUDGET_MS;
 * - a non-2xx is JSON `{code, message}` and nothing else, (code, status) an entry of the catalogue and, when
 *   `documented` is given, one the route documents (plus those every route can answer).
 * Returns the parsed error body for non-2xx answers.
 */
export function checkAnswer(
  { res, ms }: Timed,
  context: string,
  documented?: readonly ErrorSpec[],
): { code: number; message: string } | undefined {
  const where = `${context}\n→ ${res.statusCode} ${res.body.slice(0, 400)}`;
  assert.ok(res.statusCode < 500, `5xx answer: ${where}`);
  assert.ok(ms < LATENCY_BUDGET_MS, `answer took ${Math.round(ms)} ms (budget ${LATENCY_BUDGET_MS} ms): ${where}`);
  if (res.statusCode >= 200 && res.statusCode < 300) return undefined;
  assert.match(String(res.headers['content-type']), /^application\/json/, `error without JSON content type: ${where}`);
  let body: unknown;
  try {
    body = JSON.parse(res.body);
  } catch {
    assert.fail(`error body is not JSON: ${where}`);
  }
  assert.ok(typeof body === 'object' && body !== null && !Array.isArray(body), `error body is not an object: ${where}`);
  assert.deepEqual(Object.keys(body).sort(), ['code', 'message'], `error body is not exactly {code, message}: ${where}`);
  const { code, message } = body as { code: unknown; message: unknown };
  assert.ok(Number.isInteger(code), `error code is not an integer: ${where}`);
  assert.equal(typeof message, 'string', `error message is not a string: ${where}`);
  const specs = CATALOGUE.filter((s) => s.code === code && s.status === res.statusCode);
  assert.ok(specs.length > 0, `(code ${String(code)}, status ${res.statusCode}) is not in the catalogue: ${where}`);
  if (documented) {
    const allowed = [...documented, ...ANY_ROUTE_ERRORS];
    assert.ok(
      specs.some((s) => allowed.includes(s)),
      `(code ${String(code)}, status ${res.statusCode}) is not documented for this route: ${where}`,
    );
  }
  return { code: code as number, message: message as string };
}

/** Strict standard base64 of exactly 32 bytes: what every `dek` in a 2xx answer must be. */
export function isDek(value: unknown): boolean {
  return typeof value === 'string' && /^[A-Za-z0-9+/]{43}=$/.test(value) && Buffer.from(value, 'base64').length === 32;
}

/** The number samples of a Prometheus text exposition, with their lines. */
export function metricSamples(text: string): Array<{ line: string; value: number }> {
  return text
    .split('\n')
    .filter((line) => line !== '' && !line.startsWith('#'))
    .map((line) => ({ line, value: Number(line.slice(line.lastIndexOf(' ') + 1)) }));
}

/** Byte-level mutations shared by the EDEK fuzzers; `at` is reduced modulo the input length (+1). */
export type BasicByteMutation =
  | { k: 'flip'; at: number; bit: number }
  | { k: 'set'; at: number; value: number }
  | { k: 'truncate'; at: number }
  | { k: 'insert'; at: number; bytes: Uint8Array }
  | { k: 'delete'; at: number; length: number }
  | { k: 'duplicate'; at: number; length: number };

/** A copy of `input` with the mutation applied (the input is never changed). */
export function mutateBytes(input: Buffer, m: BasicByteMutation): Buffer {
  const bytes = Buffer.from(input);
  const at = m.at % (bytes.length + 1);
  switch (m.k) {
    case 'flip':
      if (bytes.length > 0) bytes[at % bytes.length] = bytes[at % bytes.length]! ^ (1 << m.bit);
      return bytes;
    case 'set':
      if (bytes.length > 0) bytes[at % bytes.length] = m.value;
      return bytes;
    case 'truncate':
      return bytes.subarray(0, at);
    case 'insert':
      return Buffer.concat([bytes.subarray(0, at), m.bytes, bytes.subarray(at)]);
    case 'delete':
      return Buffer.concat([bytes.subarray(0, at), bytes.subarray(at + m.length)]);
    case 'duplicate':
      return Buffer.concat([bytes.subarray(0, at + m.length), bytes.subarray(at, at + m.length), bytes.subarray(at + m.length)]);
  }
}
