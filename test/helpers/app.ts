/**
 * Builds a real Keyward (runtime, drivers, both Fastify apps) over a temporary tenants
 * file, for `inject()` tests. Logs are captured so tests can check redaction.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import type { LightMyRequestResponse } from 'fastify';
import type { AuditEvent } from '../../src/audit/event.js';
import { buildApp, type Apps } from '../../src/app.js';
import { digestApiKey } from '../../src/config/env.js';
import { createLogger } from '../../src/logger.js';
import { createMetrics, type Metrics } from '../../src/metrics.js';
import { KeywardRuntime } from '../../src/runtime.js';

export const API_KEY = 'test-api-key-0123456789';
export const API_KEY_2 = 'test-api-key-rotated-9876543210';

/** Tenants used by most HTTP tests; a and b share master key A on purpose. */
export const DEFAULT_TENANTS = `
version: 1
tenants:
  tenant-a:
    kmsConfigs:
      - { id: 11, status: primary, provider: local, local: { keyFile: keys/a.key } }
      - { id: 12, status: active, provider: local, local: { keyFile: keys/b.key } }
      - { id: 13, status: disabled, provider: local, local: { keyFile: keys/a.key } }
  tenant-b:
    kmsConfigs:
      - { id: 21, status: primary, provider: local, local: { keyFile: keys/a.key } }
  tenant-noprimary:
    kmsConfigs:
      - { id: 31, status: active, provider: local, local: { keyFile: keys/a.key } }
  tenant-empty:
    kmsConfigs: []
`;

export interface TestApp extends Apps {
  readonly dir: string;
  readonly configPath: string;
  readonly runtime: KeywardRuntime;
  readonly metrics: Metrics;
  readonly logs: string[];
  /** Audit events the stdout sink wrote, parsed, in order. */
  readonly audit: AuditEvent[];
  /** Rewrites the tenants file and reloads it. */
  rewrite(yaml: string): Promise<void>;
  close(): Promise<void>;
}

export async function startTestApp(
  options: { tenants?: string; batchLimit?: number; bodyLimit?: number; env?: Record<string, string>; apiKeyTenants?: readonly string[]; logLevel?: string } = {},
): Promise<TestApp> {
  const dir = await mkdtemp(join(tmpdir(), 'keyward-test-'));
  const configPath = join(dir, 'tenants.yaml');
  await writeFile(configPath, options.tenants ?? DEFAULT_TENANTS);
  const logs: string[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      logs.push(chunk.toString('utf8'));
      callback();
    },
  });
  const logger = createLogger({ level: options.logLevel ?? 'debug', destination });
  const metrics = createMetrics({ processMetrics: true });
  const audit: AuditEvent[] = [];
  const auditStdout = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      for (const line of chunk.toString('utf8').split('\n')) if (line !== '') audit.push(JSON.parse(line) as AuditEvent);
      callback();
    },
  });
  const runtime = await KeywardRuntime.start({ configPath, kmsTimeoutMs: 5_000, env: options.env ?? {}, logger, metrics, retryInitMs: 50, auditStdout, replicaId: 'test-replica' });
  const apps = await buildApp({
    config: {
      apiKeyDigests: [digestApiKey(API_KEY), digestApiKey(API_KEY_2)],
      batchLimit: options.batchLimit ?? 1000,
      bodyLimit: options.bodyLimit ?? 4 * 1024 * 1024,
      dev: false,
      ...(options.apiKeyTenants ? { apiKeyTenants: options.apiKeyTenants } : {}),
    },
    runtime,
    metrics,
    logger,
  });
  return {
    ...apps,
    dir,
    configPath,
    runtime,
    metrics,
    logs,
    audit,
    async rewrite(yaml: string) {
      await writeFile(configPath, yaml);
      const outcome = await runtime.reload();
      if (outcome !== 'applied') throw new Error(`reload was ${outcome}`);
    },
    async close() {
      await apps.api.close();
      await apps.ops.close();
      await runtime.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

export const META = { requestingId: 'test-suite' };

/** POSTs JSON to the API with the test API key. */
export function post(app: Pick<Apps, 'api'>, url: string, body: unknown, headers: Record<string, string> = {}): Promise<LightMyRequestResponse> {
  return app.api.inject({
    method: 'POST',
    url,
    headers: { authorization: `Bearer ${API_KEY}`, 'content-type': 'application/json', ...headers },
    payload: typeof body === 'string' ? body : JSON.stringify(body),
  });
}

export interface ErrorJson {
  code: number;
  message: string;
}

export function json<T = Record<string, unknown>>(response: LightMyRequestResponse): T {
  return response.json<T>();
}

/**
 * Waits until the audit events queued so far have been written (the stdout sink takes its batch at the end of
 * the event-loop turn, so `app.audit` lags a request by a turn or two).
 */
export async function auditSettled(app: TestApp): Promise<void> {
  for (let i = 0; i < 200; i++) {
    await new Promise((resolve) => setImmediate(resolve));
    if (!app.runtime.audit.depths().get('stdout')) return;
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  throw new Error('audit events still queued after 1 s');
}
