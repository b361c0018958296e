/**
 * Process settings from `KEYWARD_*` environment variables, validated once, every problem
 * reported together, frozen. Only main.ts passes `process.env` in.
 */
import { hostname } from 'node:os';
import { createHash } from 'node:crypto';
import { isAbsolute, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ConfigError } from './errors.js';
import { parseDuration } from './duration.js';

export const DEV_API_KEY = 'keyward-dev-api-key';
export const DEV_CONFIG_PATH = fileURLToPath(new URL('../../config/dev.yaml', import.meta.url));
const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
type LogLevel = (typeof LOG_LEVELS)[number];
const MIN_API_KEY_LENGTH = 16;

export interface Listen {
  readonly host: string;
  readonly port: number;
}

export interface ProcessConfig {
  /** True when no KEYWARD_CONFIG is given: the built-in development config is served. */
  readonly dev: boolean;
  readonly configPath: string;
  /** SHA-256 digests of the accepted API keys (one, or two during rotation). */
  readonly apiKeyDigests: readonly Buffer[];
  readonly api: Listen;
  readonly ops: Listen;
  readonly logLevel: LogLevel;
  readonly batchLimit: number;
  readonly bodyLimit: number;
  readonly shutdownTimeoutMs: number;
  readonly configPollMs: number;
  readonly kmsTimeoutMs: number;
  /** Names this process in audit events (KEYWARD_REPLICA_ID; default the host name, which is the pod name on Kubernetes). */
  readonly replicaId: string;
  /** How long shutdown keeps delivering queued audit events. */
  readonly auditFlushTimeoutMs: number;
  /** Tenant-id patterns the environment's API keys may act for (KEYWARD_API_KEY_TENANTS; default every tenant). */
  readonly apiKeyTenants: readonly string[];
  /** TLS on the API port, when KEYWARD_TLS_CERT and KEYWARD_TLS_KEY are set (absolute paths). */
  readonly tls: TlsFiles | undefined;
}

export interface TlsFiles {
  readonly certFile: string;
  readonly keyFile: string;
  /** CA bundle that client certificates must chain to; set → clients must present one (mTLS). */
  readonly clientCaFile: string | undefined;
}

/** A tenant-id pattern: the tenant-id characters, with `*` matching any run of them. */
export const TENANT_PATTERN = /^[A-Za-z0-9._:@*-]{1,256}$/;

type Env = Readonly<Record<string, string | undefined>>;

export function digestApiKey(key: string): Buffer {
  return createHash('sha256').update(key, 'utf8').digest();
}

const LOOPBACK = new Set(['127.0.0.1', 'localhost', '::1']);

export function loadProcessConfig(env: Env, cwd: string): ProcessConfig {
  const problems: string[] = [];
  const text = (name: string): string | undefined => {
    const value = env[name];
    return value === undefined || value.trim() === '' ? undefined : value.trim();
  };
  const integer = (name: string, fallback: number, min: number, max: number): number => {
    const raw = text(name);
    if (raw === undefined) return fallback;
    if (!/^[0-9]+$/.test(raw) || Number(raw) < min || Number(raw) > max) {
      problems.push(`${name} must be a whole number from ${min} to ${max} (got "${raw}")`);
      return fallback;
    }
    return Number(raw);
  };
  const duration = (name: string, fallback: string, minMs: number, maxMs: number): number => {
    const raw = text(name) ?? fallback;
    const ms = parseDuration(raw);
    if (ms === undefined || ms < minMs || ms > maxMs) {
      problems.push(`${name} must be a duration like 500ms, 10s or 5m, from ${minMs} ms to ${maxMs} ms (got "${raw}")`);
      return parseDuration(fallback)!;
    }
    return ms;
  };

  const configFile = text('KEYWARD_CONFIG');
  const dev = configFile === undefined;
  const configPath = dev ? DEV_CONFIG_PATH : isAbsolute(configFile) ? configFile : resolve(cwd, configFile);

  const keys = [text('KEYWARD_API_KEY'), text('KEYWARD_API_KEY_2')].filter((k): k is string => k !== undefined);
  if (keys.length === 0) {
    if (dev) keys.push(DEV_API_KEY);
    else problems.push('KEYWARD_API_KEY is required outside development mode (KEYWARD_CONFIG is set)');
  }
  if (!dev) {
    for (const [i, key] of keys.entries()) {
      if (key.length < MIN_API_KEY_LENGTH) {
        problems.push(`${i === 0 && text('KEYWARD_API_KEY') !== undefined ? 'KEYWARD_API_KEY' : 'KEYWARD_API_KEY_2'} must be at least ${MIN_API_KEY_LENGTH} characters`);
      }
    }
  }
  if (text('KEYWARD_API_KEY') === undefined && text('KEYWARD_API_KEY_2') !== undefined) {
    problems.push('KEYWARD_API_KEY_2 is set without KEYWARD_API_KEY (set the current key first)');
  }

  const host = (name: string): string => {
    const raw = text(name);
    if (dev) {
      if (raw !== undefined && !LOOPBACK.has(raw)) {
        problems.push(`${name}=${raw}: development mode listens on 127.0.0.1 only; set KEYWARD_CONFIG to serve other addresses`);
      }
      return '127.0.0.1';
    }
    return raw ?? '0.0.0.0';
  };

  function tenantPatterns(): string[] {
    const raw = text('KEYWARD_API_KEY_TENANTS');
    if (raw === undefined) return ['*'];
    const patterns = raw.split(',').map((p) => p.trim()).filter((p) => p !== '');
    const bad = patterns.filter((p) => !TENANT_PATTERN.test(p));
    if (patterns.length === 0 || bad.length > 0) {
      problems.push(`KEYWARD_API_KEY_TENANTS must be a comma-separated list of tenant ids, * matching any characters (got "${raw.slice(0, 100)}")`);
      return [];
    }
    return patterns;
  }

  function tlsFiles(): TlsFiles | undefined {
    const path = (name: string): string | undefined => {
      const raw = text(name);
      return raw === undefined ? undefined : isAbsolute(raw) ? raw : resolve(cwd, raw);
    };
    const certFile = path('KEYWARD_TLS_CERT');
    const keyFile = path('KEYWARD_TLS_KEY');
    const clientCaFile = path('KEYWARD_TLS_CLIENT_CA');
    if (certFile === undefined && keyFile === undefined) {
      if (clientCaFile !== undefined) problems.push('KEYWARD_TLS_CLIENT_CA needs TLS: set KEYWARD_TLS_CERT and KEYWARD_TLS_KEY too');
      return undefined;
    }
    if (certFile === undefined || keyFile === undefined) {
      problems.push('KEYWARD_TLS_CERT and KEYWARD_TLS_KEY go together: set both for TLS on the API port, or neither');
      return undefined;
    }
    return Object.freeze({ certFile, keyFile, clientCaFile });
  }

  const logLevel = (text('KEYWARD_LOG_LEVEL') ?? 'info') as LogLevel;
  if (!LOG_LEVELS.includes(logLevel)) {
    problems.push(`KEYWARD_LOG_LEVEL must be one of ${LOG_LEVELS.join(', ')} (got "${logLevel}")`);
  }

  const config: ProcessConfig = {
    dev,
    configPath,
    apiKeyDigests: Object.freeze(keys.map(digestApiKey)),
    api: Object.freeze({ host: host('KEYWARD_HOST'), port: integer('KEYWARD_PORT', 7777, 0, 65535) }),
    ops: Object.freeze({ host: host('KEYWARD_OPS_HOST'), port: integer('KEYWARD_OPS_PORT', 9000, 0, 65535) }),
    logLevel: LOG_LEVELS.includes(logLevel) ? logLevel : 'info',
    batchLimit: integer('KEYWARD_BATCH_LIMIT', 1000, 1, 100_000),
    bodyLimit: integer('KEYWARD_BODY_LIMIT', 4 * 1024 * 1024, 1024, 64 * 1024 * 1024),
    shutdownTimeoutMs: duration('KEYWARD_SHUTDOWN_TIMEOUT', '10s', 100, 600_000),
    configPollMs: duration('KEYWARD_CONFIG_POLL', '10s', 100, 3_600_000),
    kmsTimeoutMs: duration('KEYWARD_KMS_TIMEOUT', '2s', 10, 120_000),
    replicaId: text('KEYWARD_REPLICA_ID') ?? hostname(),
    auditFlushTimeoutMs: duration('KEYWARD_AUDIT_FLUSH_TIMEOUT', '5s', 0, 600_000),
    apiKeyTenants: Object.freeze(tenantPatterns()),
    tls: tlsFiles(),
  };
  if (config.replicaId.length > 255 || !/^[!-~]+$/.test(config.replicaId)) {
    problems.push('KEYWARD_REPLICA_ID must be 1-255 printable ASCII characters without spaces');
  }
  if (config.auditFlushTimeoutMs >= config.shutdownTimeoutMs) {
    problems.push('KEYWARD_AUDIT_FLUSH_TIMEOUT must be shorter than KEYWARD_SHUTDOWN_TIMEOUT, or shutdown could end before the audit flush');
  }
  const wildcard = (host: string): boolean => host === '0.0.0.0' || host === '::';
  const overlap = config.api.host === config.ops.host || wildcard(config.api.host) || wildcard(config.ops.host);
  if (config.api.port !== 0 && config.api.port === config.ops.port && overlap) {
    problems.push('KEYWARD_PORT and KEYWARD_OPS_PORT must differ');
  }
  if (problems.length > 0) throw new ConfigError('Invalid environment', problems);
  return Object.freeze(config);
}
