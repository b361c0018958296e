/**
 * Reads and validates the tenants file (YAML) into a TenantDirectory. Every problem is
 * collected and reported together; relative paths resolve against the file's directory.
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { dirname, isAbsolute, resolve } from 'node:path';
import type { TSchema } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import { parseDocument } from 'yaml';
import { ConfigError } from './errors.js';
import { parseDuration } from './duration.js';
import {
  SecretRef,
  SINK_NAME_PATTERN,
  TENANT_ID_PATTERN,
  TenantsFile,
  type ApiKeyEntry,
  type AuditRouteEntry,
  type DerivationSecretEntry,
  type KmsConfigEntry,
  type SinkEntry,
} from './schema.js';
import { DEFAULT_AUDIT_PLAN, TenantDirectory, type ScopedApiKey, type DerivationSecret, type KmsConfig, type LeasePolicy, type Tenant } from '../tenants/directory.js';
import { DEFAULT_CONCURRENCY } from '../kms/isolation.js';
import { DEFAULT_QUEUE, DEFAULT_ROUTE, type AuditPlan, type AuditRoute, type SinkSpec } from '../audit/plan.js';

const PROVIDER_BLOCKS = ['local', 'pkcs11', 'aws', 'azure', 'gcp'] as const;
const DEFAULT_RETRIES = 2;
const MAX_KMS_TIMEOUT_MS = 120_000;

export interface TenantsFileOptions {
  /** Directory that relative paths in the file resolve against. */
  readonly baseDir: string;
  /** Timeout for KMS calls of configs that set none. */
  readonly defaultKmsTimeoutMs: number;
}

export interface LoadedTenants {
  readonly directory: TenantDirectory;
  /** SHA-256 of the file's bytes: a reload of unchanged bytes is a no-op. */
  readonly digest: string;
}

export async function loadTenantsFile(path: string, defaultKmsTimeoutMs: number): Promise<LoadedTenants> {
  let bytes: Buffer;
  try {
    bytes = await readFile(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'error';
    throw new ConfigError(`Cannot read tenants file ${path}`, [`${code}: the file named by KEYWARD_CONFIG must exist and be readable`]);
  }
  const directory = parseTenantsFile(bytes.toString('utf8'), { baseDir: dirname(path), defaultKmsTimeoutMs }, path);
  return { directory, digest: createHash('sha256').update(bytes).digest('hex') };
}

export function parseTenantsFile(text: string, options: TenantsFileOptions, label = 'tenants file'): TenantDirectory {
  const doc = parseDocument(text, { uniqueKeys: true, prettyErrors: false });
  if (doc.errors.length > 0) {
    throw new ConfigError(
      `Invalid YAML in ${label}`,
      dedupe(doc.errors.map((e) => `line ${text.slice(0, e.pos[0]).split('\n').length}: ${e.message.split('\n')[0]}`)),
    );
  }
  const data: unknown = doc.toJS({ maxAliasCount: 50 });
  const problems: string[] = [];

  if (!Value.Check(TenantsFile, data)) {
    for (const error of Value.Errors(TenantsFile, data)) {
      problems.push(`${pointerToPath(error.path)}: ${error.value === undefined ? error.message : explain(error.schema, error.message)}`);
    }
    throw new ConfigError(`Invalid ${label}`, dedupe(problems));
  }

  const audit = buildAuditPlan(data.audit, options, problems);
  const seenIds = new Map<number, string>();
  const tenants: Tenant[] = [];
  for (const [tenantId, entry] of Object.entries(data.tenants)) {
    if (!new RegExp(TENANT_ID_PATTERN).test(tenantId)) {
      problems.push(`tenants.${tenantId}: tenant ids are 1-256 characters of letters, digits and . _ : @ - (starting with a letter or digit)`);
    }
    const configs: KmsConfig[] = [];
    entry.kmsConfigs.forEach((raw, index) => {
      const where = `tenants.${tenantId}.kmsConfigs[${index}]`;
      const owner = seenIds.get(raw.id);
      if (owner !== undefined) problems.push(`${where}.id: ${raw.id} is already used by tenant ${owner}; KMS config ids are unique across the file`);
      seenIds.set(raw.id, tenantId);
      const config = buildConfig(tenantId, raw, where, options, problems);
      if (config) configs.push(config);
    });
    const primaries = configs.filter((c) => c.status === 'primary');
    if (primaries.length > 1) {
      problems.push(`tenants.${tenantId}: ${primaries.length} KMS configs are primary (ids ${primaries.map((c) => c.id).join(', ')}); at most one may be`);
    }
    const secrets = buildSecrets(tenantId, entry.derivationSecrets ?? [], configs, options, problems);
    const route = entry.audit ? auditRoute(entry.audit, `tenants.${tenantId}.audit`, audit, problems) : undefined;
    tenants.push(Object.freeze({ id: tenantId, configs: Object.freeze(configs), primary: primaries[0], secrets, audit: route }));
  }
  const apiKeys = buildApiKeys(data.apiKeys ?? [], problems);
  if (problems.length > 0) throw new ConfigError(`Invalid ${label}`, problems);
  return new TenantDirectory(tenants, audit, apiKeys);
}

function buildApiKeys(entries: readonly ApiKeyEntry[], problems: string[]): ScopedApiKey[] {
  const names = new Set<string>();
  const digests = new Set<string>();
  return entries.map((entry, index) => {
    if (names.has(entry.name)) problems.push(`apiKeys[${index}].name: ${entry.name} is used twice`);
    if (digests.has(entry.sha256)) problems.push(`apiKeys[${index}].sha256: the same key is listed twice`);
    names.add(entry.name);
    digests.add(entry.sha256);
    return Object.freeze({ name: entry.name, digest: Buffer.from(entry.sha256, 'hex'), tenants: Object.freeze([...entry.tenants]) });
  });
}

const SYSLOG_TIMEOUT_MS = 5_000;
const HTTP_TIMEOUT_MS = 5_000;

/** The sinks and default route of the `audit` block; the built-in stdout sink always exists. */
function buildAuditPlan(raw: TenantsFile['audit'], options: TenantsFileOptions, problems: string[]): AuditPlan {
  if (!raw) return DEFAULT_AUDIT_PLAN;
  const sinks = new Map<string, SinkSpec>(DEFAULT_AUDIT_PLAN.sinks);
  for (const [name, entry] of Object.entries(raw.sinks ?? {})) {
    const spec = buildSink(name, entry, `audit.sinks.${name}`, options, problems);
    if (spec) sinks.set(name, spec);
  }
  const plan = { sinks, default: DEFAULT_ROUTE };
  const route = raw.default ? auditRoute(raw.default, 'audit.default', plan, problems) : DEFAULT_ROUTE;
  return Object.freeze({ sinks, default: route });
}

function auditRoute(raw: AuditRouteEntry, where: string, plan: Pick<AuditPlan, 'sinks'>, problems: string[]): AuditRoute {
  for (const name of raw.sinks) {
    if (!plan.sinks.has(name)) problems.push(`${where}.sinks: "${name}" is not a sink under audit.sinks (nor the built-in stdout)`);
  }
  return Object.freeze({ sinks: Object.freeze([...raw.sinks]), policy: raw.policy ?? 'bestEffort' });
}

function buildSink(name: string, raw: SinkEntry, where: string, options: TenantsFileOptions, problems: string[]): SinkSpec | undefined {
  const before = problems.length;
  if (!new RegExp(SINK_NAME_PATTERN).test(name)) problems.push(`${where}: sink names are 1-63 characters of lowercase letters, digits and -`);
  for (const block of ['http', 'syslog'] as const) {
    if (block !== raw.type && raw[block] !== undefined) problems.push(`${where}.${block}: type is ${raw.type}, so a ${block} block does not belong here`);
  }
  if (name === 'stdout' && raw.type !== 'stdout') problems.push(`${where}.type: the name stdout is reserved for the stdout sink`);
  const ms = (text: string | undefined, fallback: number, field: string, min = 0): number => {
    if (text === undefined) return fallback;
    const value = parseDuration(text);
    if (value === undefined || value < min || value > 3_600_000) {
      problems.push(`${where}.${field}: must be a duration from ${min}ms to 1h (got "${text}")`);
      return fallback;
    }
    return value;
  };
  const q = raw.queue ?? {};
  const queue = Object.freeze({
    size: q.size ?? DEFAULT_QUEUE.size,
    batchSize: q.batchSize ?? DEFAULT_QUEUE.batchSize,
    lingerMs: ms(q.linger, DEFAULT_QUEUE.lingerMs, 'queue.linger'),
    minBackoffMs: ms(q.minBackoff, DEFAULT_QUEUE.minBackoffMs, 'queue.minBackoff', 1),
    maxBackoffMs: ms(q.maxBackoff, DEFAULT_QUEUE.maxBackoffMs, 'queue.maxBackoff', 1),
  });
  if (queue.minBackoffMs > queue.maxBackoffMs) problems.push(`${where}.queue: minBackoff must not be longer than maxBackoff`);
  const path = (p: string): string => (isAbsolute(p) ? p : resolve(options.baseDir, p));
  let spec: SinkSpec | undefined;
  switch (raw.type) {
    case 'stdout':
      spec = { name, type: 'stdout', queue, fingerprint: '' };
      break;
    case 'http': {
      if (!raw.http) {
        problems.push(`${where}.http: required when type is http`);
        return undefined;
      }
      const { timeout, format, caFile, token, url } = raw.http;
      let parsed: URL | undefined;
      try {
        parsed = new URL(url);
      } catch {
        problems.push(`${where}.http.url: not a valid URL`);
      }
      if (parsed && (parsed.username !== '' || parsed.password !== '')) problems.push(`${where}.http.url: must not carry credentials; use token (a secret reference)`);
      if (parsed?.protocol === 'http:' && token !== undefined && !isLoopback(parsed.hostname)) {
        problems.push(`${where}.http.url: a token is only sent over https (plain http is allowed to loopback addresses only)`);
      }
      const http = Object.freeze({
        url,
        format: format ?? 'json',
        timeoutMs: ms(timeout, HTTP_TIMEOUT_MS, 'http.timeout', 10),
        ...(token ? { token: Object.freeze('file' in token ? { file: path(token.file) } : token) } : {}),
        ...(caFile ? { caFile: path(caFile) } : {}),
      });
      spec = { name, type: 'http', queue, http, fingerprint: '' };
      break;
    }
    case 'syslog': {
      if (!raw.syslog) {
        problems.push(`${where}.syslog: required when type is syslog`);
        return undefined;
      }
      const { timeout, facility, appName, tls, ...rest } = raw.syslog;
      const syslog = Object.freeze({
        ...rest,
        facility: facility ?? 'authpriv',
        appName: appName ?? 'keyward',
        timeoutMs: ms(timeout, SYSLOG_TIMEOUT_MS, 'syslog.timeout', 10),
        ...(tls ? { tls: Object.freeze({ ...tls, ...(tls.caFile ? { caFile: path(tls.caFile) } : {}) }) } : {}),
      });
      spec = { name, type: 'syslog', queue, syslog, fingerprint: '' };
      break;
    }
  }
  if (problems.length > before) return undefined;
  return Object.freeze({ ...spec, fingerprint: fingerprint(spec) });
}

function isLoopback(hostname: string): boolean {
  return hostname === 'localhost' || hostname === '[::1]' || /^127\.[0-9]+\.[0-9]+\.[0-9]+$/.test(hostname);
}

function buildSecrets(
  tenantId: string,
  entries: readonly DerivationSecretEntry[],
  configs: readonly KmsConfig[],
  options: TenantsFileOptions,
  problems: string[],
): readonly DerivationSecret[] {
  const out: DerivationSecret[] = [];
  const ids = new Set<number>();
  const currents = new Map<string, number>();
  entries.forEach((raw, index) => {
    const where = `tenants.${tenantId}.derivationSecrets[${index}]`;
    const type = raw.type ?? 'deterministic';
    if (ids.has(raw.id)) problems.push(`${where}.id: ${raw.id} is used twice in this tenant; secret ids are never reused`);
    ids.add(raw.id);
    if (raw.state === 'current') {
      const other = currents.get(type);
      if (other !== undefined) problems.push(`${where}.state: secrets ${other} and ${raw.id} are both current for type ${type}; at most one may be`);
      currents.set(type, raw.id);
    }
    const config = configs.find((c) => c.id === raw.kmsConfigId);
    if (!config) problems.push(`${where}.kmsConfigId: ${raw.kmsConfigId} is not a KMS config of tenant ${tenantId}`);
    let wrapped: DerivationSecret['wrapped'];
    if (typeof raw.wrapped === 'string') {
      if (!/^[A-Za-z0-9+/]+={0,2}$/.test(raw.wrapped) || raw.wrapped.length % 4 !== 0) problems.push(`${where}.wrapped: must be base64 (as printed by \`keyward secret create\`)`);
      wrapped = { inline: raw.wrapped };
    } else {
      if (raw.wrapped.createIfMissing && config && config.provider !== 'local') {
        problems.push(`${where}.wrapped.createIfMissing: only for the development local KMS; make secrets with \`keyward secret create\``);
      }
      const file = isAbsolute(raw.wrapped.file) ? raw.wrapped.file : resolve(options.baseDir, raw.wrapped.file);
      wrapped = { file, create: raw.wrapped.createIfMissing ?? false };
    }
    out.push(Object.freeze({ id: raw.id, state: raw.state, type, kmsConfigId: raw.kmsConfigId, wrapped: Object.freeze(wrapped) }));
  });
  return Object.freeze(out);
}

function buildConfig(
  tenantId: string,
  raw: KmsConfigEntry,
  where: string,
  options: TenantsFileOptions,
  problems: string[],
): KmsConfig | undefined {
  let ok = true;
  for (const block of PROVIDER_BLOCKS) {
    if (block !== raw.provider && raw[block] !== undefined) {
      problems.push(`${where}.${block}: provider is ${raw.provider}, so a ${block} block does not belong here`);
      ok = false;
    }
  }
  let timeoutMs = options.defaultKmsTimeoutMs;
  if (raw.timeout !== undefined) {
    const ms = parseDuration(raw.timeout);
    if (ms === undefined || ms < 10 || ms > MAX_KMS_TIMEOUT_MS) {
      problems.push(`${where}.timeout: must be from 10ms to ${MAX_KMS_TIMEOUT_MS / 1000}s`);
      ok = false;
    } else timeoutMs = ms;
  }
  const leasing = leasePolicy(raw, where, problems);
  if (leasing === null) ok = false;
  const concurrency = Object.freeze({ limit: raw.concurrency?.limit ?? DEFAULT_CONCURRENCY.limit, queue: raw.concurrency?.queue ?? DEFAULT_CONCURRENCY.queue });
  const base = { id: raw.id, tenantId, status: raw.status, timeoutMs, retries: raw.retries ?? DEFAULT_RETRIES, leasing: leasing ?? undefined, concurrency };
  const path = (p: string): string => (isAbsolute(p) ? p : resolve(options.baseDir, p));
  const secret = (ref: SecretRef): SecretRef => ('file' in ref ? { file: path(ref.file) } : ref);

  switch (raw.provider) {
    case 'local': {
      if (!raw.local) {
        problems.push(`${where}.local: required when provider is local`);
        return undefined;
      }
      const local = Object.freeze({ keyFile: path(raw.local.keyFile) });
      return ok ? Object.freeze({ ...base, provider: 'local', local, fingerprint: fingerprint({ provider: 'local', local }) }) : undefined;
    }
    case 'pkcs11': {
      if (!raw.pkcs11) {
        problems.push(`${where}.pkcs11: required when provider is pkcs11`);
        return undefined;
      }
      const pkcs11 = Object.freeze({
        ...raw.pkcs11,
        module: path(raw.pkcs11.module),
        pin: Object.freeze(secret(raw.pkcs11.pin)),
        mechanism: raw.pkcs11.mechanism ?? 'aes-gcm',
        sessions: raw.pkcs11.sessions ?? 4,
      });
      return ok ? Object.freeze({ ...base, provider: 'pkcs11', pkcs11, fingerprint: fingerprint({ provider: 'pkcs11', pkcs11 }) }) : undefined;
    }
    case 'aws':
    case 'azure':
    case 'gcp': {
      const block = raw[raw.provider];
      if (!block) {
        problems.push(`${where}.${raw.provider}: required when provider is ${raw.provider}`);
        return undefined;
      }
      // Cloud settings name files only through secret references: resolve those.
      const settings = deepFreeze(resolveSecretFiles(block, path));
      const config = { ...base, provider: raw.provider, [raw.provider]: settings, fingerprint: fingerprint({ provider: raw.provider, settings }) };
      return ok ? (Object.freeze(config) as KmsConfig) : undefined;
    }
  }
}

const LEASING_DEFAULTS = { refreshInterval: '5m', maxOutage: '1h', rotateAfter: '1h', idleAfter: '1h' } as const;

/** The lease policy of a config: undefined when leasing is off, null when invalid (problems noted). */
function leasePolicy(raw: KmsConfigEntry, where: string, problems: string[]): LeasePolicy | undefined | null {
  const settings = raw.leasing;
  if (!settings?.enabled) return undefined;
  const ms = {} as Record<keyof typeof LEASING_DEFAULTS, number>;
  let valid = true;
  for (const field of Object.keys(LEASING_DEFAULTS) as Array<keyof typeof LEASING_DEFAULTS>) {
    const text = settings[field] ?? LEASING_DEFAULTS[field];
    const value = parseDuration(text);
    if (value === undefined || value <= 0) {
      problems.push(`${where}.leasing.${field}: must be a positive duration (got "${text}")`);
      valid = false;
    } else ms[field] = value;
  }
  if (valid && ms.refreshInterval >= ms.maxOutage) {
    problems.push(`${where}.leasing: refreshInterval (${settings.refreshInterval ?? LEASING_DEFAULTS.refreshInterval}) must be shorter than maxOutage (${settings.maxOutage ?? LEASING_DEFAULTS.maxOutage}), or an outage could never be ridden out`);
    valid = false;
  }
  if (!valid) return null;
  return Object.freeze({
    refreshIntervalMs: ms.refreshInterval,
    maxOutageMs: ms.maxOutage,
    rotateAfterMs: ms.rotateAfter,
    idleAfterMs: ms.idleAfter,
    maxCachedLeases: settings.maxCachedLeases ?? 100,
  });
}

/** Copies `value`, resolving every `{file: path}` secret reference against the tenants file directory. */
function resolveSecretFiles<T>(value: T, path: (p: string) => string): T {
  if (Array.isArray(value)) return value.map((v: unknown) => resolveSecretFiles(v, path)) as T;
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>);
    if (entries.length === 1 && entries[0]![0] === 'file' && typeof entries[0]![1] === 'string') {
      return { file: path(entries[0]![1]) } as T;
    }
    return Object.fromEntries(entries.map(([k, v]) => [k, resolveSecretFiles(v, path)])) as T;
  }
  return value;
}

function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object') {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}

/**
 * TypeBox says only "Expected union value" for a bad enum or secret reference; say
 * what is allowed instead. The rejected value itself is never echoed (it may be a secret).
 */
function explain(schema: TSchema, message: string): string {
  if (schema === SecretRef) return 'must be {env: VARIABLE_NAME} or {file: /path/to/secret}; secrets are never written into the tenants file';
  const options = (schema as { anyOf?: Array<{ const?: unknown }> }).anyOf;
  if (options && options.length > 0 && options.every((o) => o.const !== undefined)) {
    return `must be one of ${options.map((o) => String(o.const)).join(', ')}`;
  }
  return message;
}

function fingerprint(settings: unknown): string {
  return createHash('sha256').update(canonicalJson(settings)).digest('hex');
}

function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
  }
  return JSON.stringify(value);
}

/** `/tenants/acme/kmsConfigs/0/id` → `tenants.acme.kmsConfigs[0].id` */
function pointerToPath(pointer: string): string {
  if (pointer === '') return '(file)';
  return pointer
    .split('/')
    .slice(1)
    .map((part) => part.replace(/~1/g, '/').replace(/~0/g, '~'))
    .reduce((acc, part) => (/^[0-9]+$/.test(part) ? `${acc}[${part}]` : acc === '' ? part : `${acc}.${part}`), '');
}

function dedupe(items: string[]): string[] {
  return [...new Set(items)];
}
