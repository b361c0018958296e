/**
 * The `keyward` CLI (src/cli.ts, docs/cli.md), run as a child process against temporary
 * tenants files: exit codes, output on the right stream, and no key material printed.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { parseTenantsFile } from '../src/config/tenants-file.js';
import { API_KEY, META, json, post, startTestApp, type TestApp } from './helpers/app.js';
import { REPO } from './helpers/process.js';

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `node --import tsx src/cli.ts ...args` from the repository root, with a minimal environment. */
function cli(args: string[], options: { env?: Record<string, string>; input?: string } = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli.ts', ...args], {
      cwd: REPO,
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...options.env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
    child.stdin.end(options.input ?? '');
  });
}

const show = (run: Run): string => `exit ${run.code}\nstdout:\n${run.stdout}\nstderr:\n${run.stderr}`;

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'keyward-cli-'));
});
after(() => rm(dir, { recursive: true, force: true }));

async function tenantsFile(name: string, text: string): Promise<string> {
  const path = join(dir, name);
  await writeFile(path, text);
  return path;
}

describe('keyward (usage)', { concurrency: true }, () => {
  it('--help lists the commands, exit 0', async () => {
    const run = await cli(['--help']);
    assert.equal(run.code, 0, show(run));
    for (const command of ['serve', 'config check', 'edek inspect', 'secret create']) assert.ok(run.stdout.includes(command), command);
    assert.equal(run.stderr, '');
  });

  it('every command has --help, exit 0', async () => {
    const commands = [['config', 'check', '--help'], ['edek', 'inspect', '--help'], ['secret', 'create', '--help'], ['serve', '--help']];
    for (const run of await Promise.all(commands.map((args) => cli(args)))) {
      assert.equal(run.code, 0, show(run));
      assert.match(run.stdout, /^Usage: keyward /);
    }
  });

  it('an unknown command or option is a usage error on stderr, exit 2', async () => {
    const commands = [['frobnicate'], ['config'], ['config', 'fix'], ['config', 'check', '--bogus'], ['secret', 'create', '--tenant'], ['serve', 'now']];
    for (const run of await Promise.all(commands.map((args) => cli(args)))) {
      assert.equal(run.code, 2, show(run));
      assert.equal(run.stdout, '', show(run));
      assert.match(run.stderr, /^keyward: /);
    }
  });
});

describe('keyward config check', { concurrency: true }, () => {
  const VALID = `version: 1
tenants:
  acme:
    kmsConfigs:
      - { id: 1, status: primary, provider: local, local: { keyFile: keys/a.key } }
      - { id: 2, status: active, provider: local, local: { keyFile: keys/a.key }, leasing: { enabled: true } }
      - { id: 3, status: disabled, provider: pkcs11, pkcs11: { module: /nonexistent/module.so, tokenLabel: t, keyLabel: k, pin: { env: KW_PIN } } }
    derivationSecrets:
      - { id: 1, state: archived, kmsConfigId: 1, wrapped: AAAA }
      - { id: 2, state: current, kmsConfigId: 1, wrapped: AAAA }
      - { id: 3, state: current, type: search, kmsConfigId: 2, wrapped: { file: s/3.b64 } }
  globex:
    kmsConfigs:
      - { id: 9, status: primary, provider: local, local: { keyFile: keys/g.key } }
  initech:
    kmsConfigs: []
`;

  it('prints a summary of a valid file: tenants, configs per provider, leased configs, secrets and states', async () => {
    const path = await tenantsFile('valid.yaml', VALID);
    const run = await cli(['config', 'check', '--config', path]);
    assert.equal(run.code, 0, show(run));
    assert.equal(run.stderr, '');
    const lines = run.stdout.split('\n');
    for (const line of [
      `${path}: valid`,
      'tenants: 3',
      'KMS configs: 4 (local 3, pkcs11 1)',
      'leased configs: 1 (ids 2)',
      'disabled configs: 1 (ids 3)',
      '  acme: KMS configs 1, 2, 3 (primary 1); derivation secrets: id 1 deterministic archived (config 1); id 2 deterministic current (config 1); id 3 search current (config 2)',
      '  globex: KMS configs 9 (primary 9); derivation secrets: none',
      '  initech: no KMS configs; derivation secrets: none',
    ]) {
      assert.ok(lines.includes(line), `missing line "${line}"\n${show(run)}`);
    }
    assert.ok(!run.stdout.includes('drivers:'), 'no driver is started without --connect');
  });

  it('takes the file from KEYWARD_CONFIG, relative to the working directory', async () => {
    const path = await tenantsFile('from-env.yaml', VALID);
    const run = await cli(['config', 'check'], { env: { KEYWARD_CONFIG: path } });
    assert.equal(run.code, 0, show(run));
    assert.ok(run.stdout.startsWith(`${path}: valid\n`), show(run));
  });

  it('lists every problem of an invalid file on stderr, exit 2', async () => {
    const path = await tenantsFile(
      'invalid.yaml',
      `version: 1
tenants:
  acme:
    kmsConfigs:
      - { id: 1, status: primary, provider: local, local: { keyFile: a.key } }
      - { id: 2, status: primary, provider: local, local: { keyFile: b.key }, timeout: 9h }
    derivationSecrets:
      - { id: 1, state: current, kmsConfigId: 7, wrapped: AAAA }
      - { id: 1, state: archived, kmsConfigId: 1, wrapped: "not base64!" }
  globex:
    kmsConfigs:
      - { id: 1, status: primary, provider: local, local: { keyFile: c.key } }
`,
    );
    const run = await cli(['config', 'check', '--config', path]);
    assert.equal(run.code, 2, show(run));
    assert.equal(run.stdout, '');
    for (const problem of [
      /kmsConfigs\[1\]\.timeout: must be from 10ms/,
      /derivationSecrets\[0\]\.kmsConfigId: 7 is not a KMS config of tenant acme/,
      /derivationSecrets\[1\]\.id: 1 is used twice/,
      /derivationSecrets\[1\]\.wrapped: must be base64/,
      /tenants\.globex\.kmsConfigs\[0\]\.id: 1 is already used by tenant acme/,
    ]) {
      assert.match(run.stderr, problem, show(run));
    }
    assert.ok(run.stderr.split('\n').filter((l) => l.startsWith('  - ')).length >= 5, show(run));
  });

  it('a missing file or a schema error is exit 2', async () => {
    const missing = await cli(['config', 'check', '--config', join(dir, 'nope.yaml')]);
    assert.equal(missing.code, 2, show(missing));
    assert.match(missing.stderr, /Cannot read tenants file .*nope\.yaml/);
    const schema = await cli(['config', 'check', '--config', await tenantsFile('schema.yaml', 'version: 2\ntenants: {}\n')]);
    assert.equal(schema.code, 2, show(schema));
    assert.match(schema.stderr, /version/);
  });

  it('--connect starts every driver and reports each config ready', async () => {
    const path = await tenantsFile(
      'connect-ok.yaml',
      `version: 1
tenants:
  acme:
    kmsConfigs:
      - { id: 1, status: primary, provider: local, local: { keyFile: keys/c.key } }
      - { id: 2, status: active, provider: local, local: { keyFile: keys/c.key }, leasing: { enabled: true } }
`,
    );
    const run = await cli(['config', 'check', '--connect', '--config', path]);
    assert.equal(run.code, 0, show(run));
    assert.ok(run.stdout.includes('\ndrivers:\n  config 1 (acme, local): ready\n  config 2 (acme, local): ready\n'), show(run));
    const key = await readFile(join(dir, 'keys/c.key'));
    assert.ok(!run.stdout.includes(key.toString('base64')) && !run.stdout.includes(key.toString('hex')), 'the master key is never printed');
  });

  it('--connect reports a driver that cannot start with its failure class and message, exit 1', async () => {
    const path = await tenantsFile(
      'connect-bad.yaml',
      `version: 1
tenants:
  acme:
    kmsConfigs:
      - { id: 1, status: primary, provider: local, local: { keyFile: keys/d.key } }
      - { id: 2, status: active, provider: pkcs11, pkcs11: { module: /nonexistent/libnothing.so, tokenLabel: t, keyLabel: k, pin: { env: KW_TEST_PIN } } }
`,
    );
    const run = await cli(['config', 'check', '--connect', '--config', path], { env: { KW_TEST_PIN: 'pin-value-4321' } });
    assert.equal(run.code, 1, show(run));
    assert.ok(run.stdout.includes('  config 1 (acme, local): ready\n'), show(run));
    assert.match(run.stdout, /\n {2}config 2 \(acme, pkcs11\): failed \(key_unusable\): cannot load PKCS#11 module '\/nonexistent\/libnothing\.so'/);
    assert.match(run.stderr, /1 KMS config could not start a driver/);
    assert.ok(!`${run.stdout}${run.stderr}`.includes('pin-value-4321'), 'the PIN is never printed');
  });
});

describe('keyward edek inspect', () => {
  let direct: TestApp;
  let leased: TestApp;
  before(async () => {
    direct = await startTestApp();
    leased = await startTestApp({
      tenants: `version: 1
tenants:
  tenant-l:
    kmsConfigs:
      - { id: 41, status: primary, provider: local, local: { keyFile: keys/l.key }, leasing: { enabled: true } }
`,
    });
  });
  after(async () => {
    await direct.close();
    await leased.close();
  });

  const generate = async (app: TestApp, tenantId: string): Promise<{ dek: string; edek: string }> => {
    const res = await post(app, '/v1/keys/generate', { tenantId, metadata: META });
    assert.equal(res.statusCode, 200, res.body);
    return json<{ dek: string; edek: string }>(res);
  };

  it('decodes a direct EDEK', async () => {
    const { dek, edek } = await generate(direct, 'tenant-a');
    const run = await cli(['edek', 'inspect', edek]);
    assert.equal(run.code, 0, show(run));
    const { entries } = JSON.parse(run.stdout) as { entries: Array<Record<string, unknown>> };
    assert.equal(entries.length, 1);
    assert.deepEqual(Object.keys(entries[0]!).sort(), ['encryptedDekDataLength', 'ivLength', 'kmsConfigId', 'leasedKeyId', 'mode', 'tenantId']);
    assert.deepEqual({ ...entries[0], encryptedDekDataLength: undefined }, {
      tenantId: 'tenant-a',
      kmsConfigId: 11,
      mode: 'direct',
      leasedKeyId: 0,
      ivLength: 0,
      encryptedDekDataLength: undefined,
    });
    assert.ok((entries[0]!.encryptedDekDataLength as number) > 32);
    assert.ok(!run.stdout.includes(dek));
  });

  it('decodes a leased EDEK read from stdin, with a summary of its ELEK', async () => {
    const { dek, edek } = await generate(leased, 'tenant-l');
    const run = await cli(['edek', 'inspect', '-'], { input: `${edek}\n` });
    assert.equal(run.code, 0, show(run));
    const { entries } = JSON.parse(run.stdout) as { entries: Array<Record<string, unknown> & { elek: Record<string, unknown> }> };
    assert.equal(entries.length, 1);
    const entry = entries[0]!;
    assert.equal(entry.tenantId, 'tenant-l');
    assert.equal(entry.kmsConfigId, 41);
    assert.equal(entry.mode, 'leased');
    assert.ok((entry.leasedKeyId as number) > 0);
    assert.equal(entry.ivLength, 12);
    assert.equal(entry.encryptedDekDataLength, 48);
    assert.equal(entry.elek.entries, 1);
    assert.equal(entry.elek.kmsConfigId, 41);
    assert.equal(entry.elek.tenantId, 'tenant-l');
    assert.ok((entry.elek.wrappedLength as number) > 32);
    assert.ok(!run.stdout.includes(dek));
  });

  it('refuses what is not an EDEK with a clear message, exit 2', async () => {
    const cases = [
      [['not base64!'], '', /EDEK is not valid base64/],
      [['AAAA'], '', /EDEK is not a valid EncryptedDeks message: field number 0/],
      [['-'], 'garbage\n', /EDEK is not valid base64/],
      [['-'], '', /the EDEK is empty/],
      [[], '', /give exactly one EDEK/],
    ] as const;
    await Promise.all(
      cases.map(async ([args, input, message]) => {
        const run = await cli(['edek', 'inspect', ...args], { input });
        assert.equal(run.code, 2, show(run));
        assert.equal(run.stdout, '');
        assert.match(run.stderr, message);
      }),
    );
  });
});

describe('keyward secret create', () => {
  let keyFile: string;
  let base: string;
  let path: string;
  const derivationSecrets = (stanza: string): string => `${base}    derivationSecrets:\n${stanza.replace(/^/gm, '      ')}\n`;

  before(async () => {
    keyFile = join(dir, 'secret-keys', 'master.key');
    // Absolute key path: startTestApp copies the tenants text into a directory of its own.
    base = `version: 1
tenants:
  other:
    kmsConfigs:
      - { id: 5, status: primary, provider: local, local: { keyFile: ${keyFile} } }
  acme:
    kmsConfigs:
      - { id: 1, status: primary, provider: local, local: { keyFile: ${keyFile} } }
      - { id: 2, status: disabled, provider: local, local: { keyFile: ${keyFile} } }
`;
    path = await tenantsFile('secrets.yaml', base);
  });

  it('prints a YAML entry that the tenants file accepts and Keyward derives with', async () => {
    const run = await cli(['secret', 'create', '--config', path, '--tenant', 'acme', '--kms-config', '1']);
    assert.equal(run.code, 0, show(run));
    assert.equal(run.stderr, '');
    assert.match(run.stdout, /^# .*wrapped by KMS config 1: the local software KMS/m);
    assert.match(run.stdout, /^# The secret itself never left Keyward unwrapped/m);
    const parsed = parseYaml(run.stdout) as Array<Record<string, unknown>>;
    assert.equal(parsed.length, 1);
    const entry = parsed[0]!;
    assert.deepEqual({ ...entry, wrapped: undefined }, { id: 1, state: 'current', type: 'deterministic', kmsConfigId: 1, wrapped: undefined });
    assert.match(entry.wrapped as string, /^[A-Za-z0-9+/]+={0,2}$/);

    const pasted = derivationSecrets(run.stdout);
    const directory = parseTenantsFile(pasted, { baseDir: dir, defaultKmsTimeoutMs: 2000 });
    assert.deepEqual(directory.tenant('acme')!.secrets.map((s) => [s.id, s.state, s.type]), [[1, 'current', 'deterministic']]);

    const app = await startTestApp({ tenants: pasted });
    try {
      const res = await app.api.inject({
        method: 'POST',
        url: '/api/1/key/derive-with-secret-path',
        headers: { authorization: `cmk ${API_KEY}`, 'content-type': 'application/json' },
        payload: JSON.stringify({ tenantId: 'acme', iclFields: { requestingId: 't' }, paths: { p: [''] }, derivationType: 'sha512', secretType: 'deterministic' }),
      });
      assert.equal(res.statusCode, 200, res.body);
      const keys = json<{ derivedKeys: Record<string, Record<string, Array<{ derivedKey: string; tenantSecretId: number; current: boolean }>>> }>(res).derivedKeys.p!['']!;
      assert.equal(keys.length, 1);
      assert.equal(keys[0]!.tenantSecretId, 1);
      assert.equal(keys[0]!.current, true);
      assert.equal(Buffer.from(keys[0]!.derivedKey, 'base64').length, 64);
      assert.ok(!run.stdout.includes(keys[0]!.derivedKey), 'the derived key is not in the output');
    } finally {
      await app.close();
    }
    const master = await readFile(keyFile);
    assert.ok(!run.stdout.includes(master.toString('base64')) && !run.stdout.includes(master.toString('hex')), 'the master key is never printed');

    // Next: the id after the highest, with a note about the secret that is current now.
    await writeFile(path, pasted);
    const next = await cli(['secret', 'create', '--config', path, '--tenant', 'acme', '--kms-config', '1', '--type', 'deterministic']);
    assert.equal(next.code, 0, show(next));
    assert.match(next.stdout, /^# Secret 1 is current for type deterministic: change it to in-rotation/m);
    assert.equal((parseYaml(next.stdout) as Array<{ id: number }>)[0]!.id, 2);
    const search = await cli(['secret', 'create', '--config', path, '--tenant', 'acme', '--kms-config', '1', '--id', '10', '--type', 'search', '--state', 'in-rotation']);
    assert.equal(search.code, 0, show(search));
    assert.deepEqual({ ...(parseYaml(search.stdout) as Array<Record<string, unknown>>)[0], wrapped: undefined }, { id: 10, state: 'in-rotation', type: 'search', kmsConfigId: 1, wrapped: undefined });
    assert.ok(!search.stdout.includes('is current for type'), show(search));
  });

  it('refuses an unknown tenant, a config of another tenant or none, a disabled config, a used id and bad options, exit 2', async () => {
    await writeFile(path, derivationSecrets('- { id: 3, state: current, kmsConfigId: 1, wrapped: AAAA }'));
    const cases: Array<[string[], RegExp]> = [
      [['--tenant', 'nobody', '--kms-config', '1'], /tenant nobody is not in /],
      [['--tenant', 'acme', '--kms-config', '5'], /KMS config 5 is not a config of tenant acme \(its configs: 1, 2\)/],
      [['--tenant', 'acme', '--kms-config', '77'], /KMS config 77 is not a config of tenant acme/],
      [['--tenant', 'acme', '--kms-config', '2'], /KMS config 2 of tenant acme is disabled/],
      [['--tenant', 'acme', '--kms-config', '1', '--id', '3'], /secret id 3 is already used by tenant acme/],
      [['--tenant', 'acme', '--kms-config', 'one'], /--kms-config must be a whole number/],
      [['--tenant', 'acme', '--kms-config', '1', '--type', 'fuzzy'], /--type must be one of deterministic, search, vector/],
      [['--tenant', 'acme', '--kms-config', '1', '--state', 'archived'], /--state must be one of current, in-rotation/],
      [['--kms-config', '1'], /--tenant is required/],
      [['--tenant', 'acme'], /--kms-config is required/],
    ];
    await Promise.all(
      cases.map(async ([args, message]) => {
        const run = await cli(['secret', 'create', '--config', path, ...args]);
        assert.equal(run.code, 2, `${args.join(' ')}\n${show(run)}`);
        assert.equal(run.stdout, '', show(run));
        assert.match(run.stderr, message, show(run));
      }),
    );
  });

  it('a KMS that cannot wrap is an operational failure, exit 1', async () => {
    const bad = await tenantsFile(
      'secret-bad.yaml',
      `version: 1
tenants:
  acme:
    kmsConfigs:
      - { id: 1, status: primary, provider: pkcs11, pkcs11: { module: /nonexistent/libnothing.so, tokenLabel: t, keyLabel: k, pin: { env: KW_TEST_PIN } } }
`,
    );
    const run = await cli(['secret', 'create', '--config', bad, '--tenant', 'acme', '--kms-config', '1']);
    assert.equal(run.code, 1, show(run));
    assert.equal(run.stdout, '');
    assert.match(run.stderr, /KMS config 1 could not wrap the new secret \(key_unusable\): secret environment variable KW_TEST_PIN is not set/);
  });
});
