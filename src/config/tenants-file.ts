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
import { SecretRef, TENANT_ID_PATTERN, TenantsFile, type DerivationSecretEntry, type KmsConfigEntry } from './schema.js';
import { TenantDirectory, type DerivationSecret, type KmsConfig, type LeasePolicy, type Tenant } from '../tenants/directory.js';

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
    tenants.push(Object.freeze({ id: tenantId, configs: Object.freeze(configs), primary: primaries[0], secrets }));
  }
  if (problems.length > 0) throw new ConfigError(`Invalid ${label}`, problems);
  return new TenantDirectory(tenants);
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
  const base = { id: raw.id, tenantId, status: raw.status, timeoutMs, retries: raw.retries ?? DEFAULT_RETRIES, leasing: leasing ?? undefined };
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
