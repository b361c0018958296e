#!/usr/bin/env node
/**
 * The `keyward` command line (docs/cli.md). An entry point like main.ts, so it may touch
 * `process` (argv, env, stdin, exit code); nothing else in src/ does.
 *
 *   keyward [serve]                  start the server, exactly as `npm start` (imports main.js)
 *   keyward config check             validate the tenants file; --connect starts every driver
 *   keyward edek inspect <edek|->    decode an EDEK's structure (no KMS call, no key material)
 *   keyward secret create            make a derivation secret, wrapped by a tenant's KMS
 *
 * Exit codes: 0 ok, 1 operational failure (a KMS driver failed), 2 usage or configuration
 * error. Results go to stdout, errors to stderr. Nothing here ever prints key material:
 * the only KMS output shown is ciphertext (the wrapped secret), and driver logs are off.
 */
import { readFile } from 'node:fs/promises';
import { isAbsolute, resolve } from 'node:path';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { DEV_CONFIG_PATH } from './config/env.js';
import { ConfigError } from './config/errors.js';
import { parseDuration } from './config/duration.js';
import { EdekFormatError, decodeEdeks, edekFromBase64, type EncryptedDek } from './envelope/edek.js';
import { isKmsError } from './kms/errors.js';
import { providerMessage } from './kms/redact.js';
import type { DriverPool } from './kms/pool.js';
import type { DerivationSecret, KmsConfig, TenantDirectory } from './tenants/directory.js';

// The tenants-file parser, the driver pool and their dependencies (pino, prom-client, the
// schema library) are imported by the commands that use them, so that --help and
// `edek inspect` start quickly.

/** The largest KMS config or secret id (int32, as in the EDEK; src/config/schema.ts). */
const MAX_ID = 2 ** 31 - 1;

const EXIT_OK = 0;
const EXIT_FAILED = 1;
const EXIT_USAGE = 2;

/** A usage or configuration error: printed to stderr, exit 2. */
class UsageError extends Error {
  override readonly name = 'UsageError';
}

/** A failure of the operation itself (a KMS driver that cannot start or wrap): exit 1. */
class FailedError extends Error {
  override readonly name = 'FailedError';
}

function out(text: string): void {
  process.stdout.write(text.endsWith('\n') ? text : `${text}\n`);
}

function err(text: string): void {
  process.stderr.write(text.endsWith('\n') ? text : `${text}\n`);
}

// ---------------------------------------------------------------------------------------------------------------
// Help texts

const HELP_MAIN = `Usage: keyward [command]

Commands:
  serve                     Start the Keyward server (the default when no command is given)
  config check              Validate the tenants file; --connect also starts every KMS driver
  edek inspect <edek|->     Show the structure of an EDEK (no KMS call)
  secret create             Make a derivation secret wrapped by a tenant's KMS, printed as YAML

Run "keyward <command> --help" for a command's options.
Exit codes: 0 ok, 1 operational failure, 2 usage or configuration error.`;

const HELP_SERVE = `Usage: keyward serve

Starts the Keyward server, exactly like "npm start": settings come from KEYWARD_* environment
variables (docs/configuration.md). Also what "keyward" with no command does.`;

const HELP_CONFIG = `Usage: keyward config check [--config <tenants.yaml>] [--connect]

Validates the tenants file and prints a summary, or every problem found (exit 2).

Options:
  --config <path>   Tenants file (default: KEYWARD_CONFIG, else the built-in development config)
  --connect         Also start every KMS driver (secret references read from this environment)
                    and report each config as ready or failed; exit 1 if any failed
  -h, --help        Show this help`;

const HELP_EDEK = `Usage: keyward edek inspect <edek-base64 | ->

Decodes an EDEK ("-" reads it from stdin) and prints its structure as JSON: for each entry the
tenant, KMS config, mode (direct or leased), lease id and the lengths of its parts. No KMS is
called and nothing is decrypted. Exit 2 if the input is not an EDEK.

Options:
  -h, --help   Show this help`;

const HELP_SECRET = `Usage: keyward secret create --tenant <id> --kms-config <id> [options]

Makes a new 32-byte derivation secret, has the tenant's KMS config wrap it, and prints the YAML
entry to add under the tenant's derivationSecrets. The secret never leaves Keyward unwrapped.

Options:
  --tenant <id>         Tenant id (required)
  --kms-config <id>     Id of one of the tenant's KMS configs, not disabled (required)
  --id <n>              Secret id (default: one more than the tenant's highest secret id)
  --type <type>         deterministic (default), search or vector
  --state <state>       current (default) or in-rotation
  --config <path>       Tenants file (default: KEYWARD_CONFIG, else the built-in development config)
  -h, --help            Show this help`;

// ---------------------------------------------------------------------------------------------------------------
// Shared helpers

type Options = NonNullable<ParseArgsConfig['options']>;

function parse<O extends Options>(args: string[], options: O, allowPositionals: boolean) {
  try {
    return parseArgs({ args, options: { ...options, help: { type: 'boolean', short: 'h' } }, allowPositionals, strict: true });
  } catch (e) {
    throw new UsageError(e instanceof Error ? e.message : String(e));
  }
}

function tenantsPath(option: string | undefined): string {
  const given = option ?? (process.env.KEYWARD_CONFIG?.trim() || undefined);
  if (given === undefined) return DEV_CONFIG_PATH;
  return isAbsolute(given) ? given : resolve(process.cwd(), given);
}

function kmsTimeoutMs(): number {
  const raw = process.env.KEYWARD_KMS_TIMEOUT?.trim() || '2s';
  const ms = parseDuration(raw);
  if (ms === undefined || ms < 10 || ms > 120_000) throw new UsageError(`KEYWARD_KMS_TIMEOUT must be a duration like 500ms or 10s, from 10 ms to 120 s (got "${raw}")`);
  return ms;
}

/** Tenant ids in file order (the directory has no list of its own); the file was validated just before. */
async function tenantNames(path: string): Promise<string[]> {
  const { parse: parseYaml } = await import('yaml');
  const data = parseYaml(await readFile(path, 'utf8')) as { tenants?: Record<string, unknown> } | null;
  return Object.keys(data?.tenants ?? {});
}

async function loadTenants(path: string): Promise<TenantDirectory> {
  const { loadTenantsFile } = await import('./config/tenants-file.js');
  return (await loadTenantsFile(path, kmsTimeoutMs())).directory;
}

function wholeNumber(name: string, value: string | undefined, max = MAX_ID): number | undefined {
  if (value === undefined) return undefined;
  if (!/^[0-9]+$/.test(value) || Number(value) < 1 || Number(value) > max) throw new UsageError(`${name} must be a whole number from 1 to ${max} (got "${value}")`);
  return Number(value);
}

function oneOf<T extends string>(name: string, value: string | undefined, allowed: readonly T[], fallback: T): T {
  if (value === undefined) return fallback;
  if (!(allowed as readonly string[]).includes(value)) throw new UsageError(`${name} must be one of ${allowed.join(', ')} (got "${value}")`);
  return value as T;
}

/** A pool whose drivers log nowhere (the CLI reports failures itself) and never restart on their own. */
async function newPool(): Promise<DriverPool> {
  const [{ DriverPool }, { createLogger }, { createMetrics }] = await Promise.all([import('./kms/pool.js'), import('./logger.js'), import('./metrics.js')]);
  return new DriverPool({
    logger: createLogger({ level: 'silent' }),
    metrics: createMetrics({ processMetrics: false }),
    env: process.env,
    retryInitMs: 60 * 60_000,
  });
}

/** A driver failure in one line: "(class): Keyward's message (the provider's own text, redacted)". */
function describeFailure(e: unknown): string {
  const kind = isKmsError(e) ? e.kind : 'other';
  const message = e instanceof Error ? e.message : String(e);
  const detail = providerMessage(e);
  return oneLine(`(${kind}): ${message}${detail && detail !== message ? ` (${detail})` : ''}`);
}

function describeKms(config: KmsConfig): string {
  switch (config.provider) {
    case 'local':
      return `the local software KMS (key file ${config.local.keyFile}; development only)`;
    case 'pkcs11':
      return `PKCS#11 token '${config.pkcs11.tokenLabel}', key '${config.pkcs11.keyLabel}'`;
    case 'aws':
      return `AWS KMS key ${config.aws.keyId} in ${config.aws.region}`;
    case 'azure':
      return `Azure Key Vault key ${config.azure.keyName} in ${config.azure.vaultUrl}`;
    case 'gcp':
      return `Google Cloud KMS key ${config.gcp.keyName}`;
  }
}

function oneLine(text: string): string {
  return text.replace(/[\r\n]+/g, ' ');
}

function secretSummary(s: DerivationSecret): string {
  return `id ${s.id} ${s.type} ${s.state} (config ${s.kmsConfigId})`;
}

// ---------------------------------------------------------------------------------------------------------------
// keyward config check

async function configCheck(args: string[]): Promise<number> {
  const { values, positionals } = parse(args, { config: { type: 'string' }, connect: { type: 'boolean' } }, true);
  if (values.help) {
    out(HELP_CONFIG);
    return EXIT_OK;
  }
  if (positionals.length > 0) throw new UsageError(`unexpected argument "${positionals[0]}"\n\n${HELP_CONFIG}`);
  const path = tenantsPath(values.config);
  const directory = await loadTenants(path);

  const configs = [...directory.configs()];
  const tenantIds = await tenantNames(path);
  const byProvider = new Map<string, number>();
  for (const c of configs) byProvider.set(c.provider, (byProvider.get(c.provider) ?? 0) + 1);
  const leased = configs.filter((c) => c.leasing !== undefined);
  const disabled = configs.filter((c) => c.status === 'disabled');

  const lines = [`${path}: valid`];
  lines.push(`tenants: ${directory.tenantCount}`);
  lines.push(`KMS configs: ${configs.length}${byProvider.size > 0 ? ` (${[...byProvider].sort(([a], [b]) => a.localeCompare(b)).map(([p, n]) => `${p} ${n}`).join(', ')})` : ''}`);
  lines.push(`leased configs: ${leased.length === 0 ? 'none' : `${leased.length} (ids ${leased.map((c) => c.id).join(', ')})`}`);
  lines.push(`disabled configs: ${disabled.length === 0 ? 'none' : `${disabled.length} (ids ${disabled.map((c) => c.id).join(', ')})`}`);
  lines.push('per tenant:');
  for (const id of tenantIds) {
    const tenant = directory.tenant(id);
    if (!tenant) continue;
    const kms = tenant.configs.length === 0 ? 'no KMS configs' : `KMS configs ${tenant.configs.map((c) => c.id).join(', ')} (${tenant.primary ? `primary ${tenant.primary.id}` : 'no primary'})`;
    const secrets = tenant.secrets.length === 0 ? 'none' : tenant.secrets.map(secretSummary).join('; ');
    lines.push(`  ${id}: ${kms}; derivation secrets: ${secrets}`);
  }
  out(lines.join('\n'));

  if (!values.connect) return EXIT_OK;

  const pool = await newPool();
  let failed = 0;
  try {
    await pool.sync(directory);
    const report = ['drivers:'];
    for (const config of configs) {
      const what = `  config ${config.id} (${config.tenantId}, ${config.provider}${config.status === 'disabled' ? ', disabled' : ''})`;
      try {
        await pool.driverFor(config);
        report.push(`${what}: ready`);
      } catch (e) {
        failed += 1;
        report.push(`${what}: failed ${describeFailure(e)}`);
      }
    }
    const status = pool.status();
    report.push(`drivers ready: ${status.ready}, failed: ${status.failed} (configs with identical settings share one driver)`);
    out(report.join('\n'));
  } finally {
    await pool.close();
  }
  if (failed > 0) {
    err(`keyward: ${failed} KMS config${failed === 1 ? '' : 's'} could not start a driver`);
    return EXIT_FAILED;
  }
  return EXIT_OK;
}

// ---------------------------------------------------------------------------------------------------------------
// keyward edek inspect

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(typeof chunk === 'string' ? Buffer.from(chunk) : (chunk as Buffer));
  return Buffer.concat(chunks).toString('utf8');
}

interface InspectedEntry {
  tenantId: string;
  kmsConfigId: number;
  mode: 'direct' | 'leased';
  leasedKeyId: number;
  ivLength: number;
  encryptedDekDataLength: number;
  elek?: { entries: number; kmsConfigId: number; tenantId: string; wrappedLength: number };
}

function inspectEntry(entry: EncryptedDek, index: number): InspectedEntry {
  const leased = entry.leasedKeyId !== 0 || entry.encryptedLeasedKeyData.length > 0 || entry.leasedKeyIv.length > 0;
  const result: InspectedEntry = {
    tenantId: entry.tenantId,
    kmsConfigId: entry.kmsConfigId,
    mode: leased ? 'leased' : 'direct',
    leasedKeyId: entry.leasedKeyId,
    ivLength: entry.leasedKeyIv.length,
    encryptedDekDataLength: entry.encryptedDekData.length,
  };
  if (leased) {
    let inner: EncryptedDek[];
    try {
      inner = decodeEdeks(entry.encryptedLeasedKeyData);
    } catch (e) {
      if (e instanceof EdekFormatError) throw new UsageError(`entry ${index}: its leased key (ELEK) is not valid: ${e.message}`);
      throw e;
    }
    const first = inner[0];
    if (!first) throw new UsageError(`entry ${index}: it is leased but carries no leased key (ELEK)`);
    result.elek = { entries: inner.length, kmsConfigId: first.kmsConfigId, tenantId: first.tenantId, wrappedLength: first.encryptedDekData.length };
  }
  return result;
}

async function edekInspect(args: string[]): Promise<number> {
  const { values, positionals } = parse(args, {}, true);
  if (values.help) {
    out(HELP_EDEK);
    return EXIT_OK;
  }
  if (positionals.length !== 1) throw new UsageError(`give exactly one EDEK (base64), or - to read it from stdin\n\n${HELP_EDEK}`);
  const text = (positionals[0] === '-' ? await readStdin() : positionals[0]!).trim();
  if (text === '') throw new UsageError('the EDEK is empty');
  let entries: EncryptedDek[];
  try {
    entries = edekFromBase64(text);
  } catch (e) {
    if (e instanceof EdekFormatError) throw new UsageError(e.message);
    throw e;
  }
  out(JSON.stringify({ entries: entries.map(inspectEntry) }, null, 2));
  return EXIT_OK;
}

// ---------------------------------------------------------------------------------------------------------------
// keyward secret create

const SECRET_TYPES = ['deterministic', 'search', 'vector'] as const;
const NEW_SECRET_STATES = ['current', 'in-rotation'] as const;

async function secretCreate(args: string[]): Promise<number> {
  const { values, positionals } = parse(
    args,
    {
      tenant: { type: 'string' },
      'kms-config': { type: 'string' },
      id: { type: 'string' },
      type: { type: 'string' },
      state: { type: 'string' },
      config: { type: 'string' },
    },
    true,
  );
  if (values.help) {
    out(HELP_SECRET);
    return EXIT_OK;
  }
  if (positionals.length > 0) throw new UsageError(`unexpected argument "${positionals[0]}"\n\n${HELP_SECRET}`);
  if (values.tenant === undefined) throw new UsageError(`--tenant is required\n\n${HELP_SECRET}`);
  const configId = wholeNumber('--kms-config', values['kms-config']);
  if (configId === undefined) throw new UsageError(`--kms-config is required\n\n${HELP_SECRET}`);
  const wantedId = wholeNumber('--id', values.id);
  const type = oneOf('--type', values.type, SECRET_TYPES, 'deterministic');
  const state = oneOf('--state', values.state, NEW_SECRET_STATES, 'current');

  const path = tenantsPath(values.config);
  const directory = await loadTenants(path);
  const tenant = directory.tenant(values.tenant);
  if (!tenant) throw new UsageError(`tenant ${values.tenant} is not in ${path}`);
  const config = tenant.configs.find((c) => c.id === configId);
  if (!config) {
    const ids = tenant.configs.map((c) => c.id).join(', ');
    throw new UsageError(`KMS config ${configId} is not a config of tenant ${tenant.id} (its configs: ${ids === '' ? 'none' : ids})`);
  }
  if (config.status === 'disabled') throw new UsageError(`KMS config ${configId} of tenant ${tenant.id} is disabled; wrap secrets with a primary or active config`);
  const highest = Math.max(0, ...tenant.secrets.map((s) => s.id));
  const secretId = wantedId ?? highest + 1;
  if (tenant.secrets.some((s) => s.id === secretId)) throw new UsageError(`secret id ${secretId} is already used by tenant ${tenant.id}; secret ids are never reused`);
  if (secretId > MAX_ID) throw new UsageError(`secret id ${secretId} is over the largest allowed (${MAX_ID})`);

  // Only this config's driver is started: a directory holding just it.
  const pool = await newPool();
  let wrapped: string;
  try {
    const [{ TenantDirectory }, { wrapNewSecret }] = await Promise.all([import('./tenants/directory.js'), import('./derivation/derive.js')]);
    await pool.sync(new TenantDirectory([{ id: tenant.id, configs: [config], primary: undefined, secrets: [] }]));
    try {
      wrapped = await wrapNewSecret(config, secretId, await pool.driverFor(config));
    } catch (e) {
      throw new FailedError(`KMS config ${config.id} could not wrap the new secret ${describeFailure(e)}`);
    }
  } finally {
    await pool.close();
  }

  const lines = [
    `# Derivation secret ${secretId} of tenant ${tenant.id}, wrapped by KMS config ${config.id}: ${oneLine(describeKms(config))}.`,
    '# The secret itself never left Keyward unwrapped; only that KMS can unwrap it.',
    `# Add under tenants.${tenant.id}.derivationSecrets in ${oneLine(path)}:`,
  ];
  const current = tenant.secrets.find((s) => s.state === 'current' && s.type === type);
  if (state === 'current' && current) {
    lines.push(`# Secret ${current.id} is current for type ${type}: change it to in-rotation (or archived) at the same time.`);
  }
  lines.push(`- id: ${secretId}`, `  state: ${state}`, `  type: ${type}`, `  kmsConfigId: ${config.id}`, `  wrapped: ${wrapped}`);
  out(lines.join('\n'));
  return EXIT_OK;
}

// ---------------------------------------------------------------------------------------------------------------
// Dispatch

async function run(argv: string[]): Promise<number | 'serving'> {
  const [command, sub, ...rest] = argv;
  const subcommand = (group: string, name: string, help: string, fn: (args: string[]) => Promise<number>): Promise<number> => {
    if (sub === name) return fn(rest);
    if (sub === '--help' || sub === '-h') {
      out(help);
      return Promise.resolve(EXIT_OK);
    }
    throw new UsageError(`${sub === undefined ? `"keyward ${group}" needs a command` : `unknown command "keyward ${group} ${sub}"`}; try "keyward ${group} ${name}"\n\n${help}`);
  };
  switch (command) {
    case undefined:
    case 'serve': {
      const args = command === undefined ? [] : argv.slice(1);
      const { values, positionals } = parse(args, {}, true);
      if (values.help) {
        out(HELP_SERVE);
        return EXIT_OK;
      }
      if (positionals.length > 0) throw new UsageError(`unexpected argument "${positionals[0]}"\n\n${HELP_SERVE}`);
      await import('./main.js');
      return 'serving';
    }
    case '-h':
    case '--help':
    case 'help':
      out(HELP_MAIN);
      return EXIT_OK;
    case 'config':
      return subcommand('config', 'check', HELP_CONFIG, configCheck);
    case 'edek':
      return subcommand('edek', 'inspect', HELP_EDEK, edekInspect);
    case 'secret':
      return subcommand('secret', 'create', HELP_SECRET, secretCreate);
    default:
      throw new UsageError(`unknown command "${command}"\n\n${HELP_MAIN}`);
  }
}

/** Waits until stdout and stderr have taken everything written, then exits (open KMS sockets must not keep the CLI alive). */
async function exit(code: number): Promise<void> {
  await new Promise<void>((done) => process.stdout.write('', () => done()));
  await new Promise<void>((done) => process.stderr.write('', () => done()));
  process.exit(code);
}

async function main(): Promise<void> {
  let code: number;
  try {
    const result = await run(process.argv.slice(2));
    if (result === 'serving') return;
    code = result;
  } catch (e) {
    if (e instanceof UsageError) {
      err(`keyward: ${e.message}`);
      code = EXIT_USAGE;
    } else if (e instanceof ConfigError) {
      err(`keyward: ${e.message}`);
      code = EXIT_USAGE;
    } else if (e instanceof FailedError) {
      err(`keyward: ${e.message}`);
      code = EXIT_FAILED;
    } else {
      err(`keyward: ${e instanceof Error ? e.message : String(e)}`);
      code = EXIT_FAILED;
    }
  }
  await exit(code);
}

void main();
