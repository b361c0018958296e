import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ConfigError } from '../../src/config/errors.js';
import { loadTenantsFile, parseTenantsFile } from '../../src/config/tenants-file.js';
import type { KmsConfig, TenantDirectory } from '../../src/tenants/directory.js';

const OPTIONS = { baseDir: '/etc/keyward', defaultKmsTimeoutMs: 5_000 };

const VALID = `
version: 1
tenants:
  acme:
    kmsConfigs:
      - id: 1
        status: primary
        provider: local
        local:
          keyFile: keys/acme.key
      - id: 2
        status: active
        provider: pkcs11
        timeout: 2s
        pkcs11:
          module: lib/libsofthsm2.so
          tokenLabel: acme-token
          pin: { file: secrets/acme-pin }
          keyLabel: acme-master
  globex:
    kmsConfigs:
      - id: 3
        status: disabled
        provider: pkcs11
        pkcs11:
          module: /usr/lib/softhsm/libsofthsm2.so
          tokenLabel: globex
          pin: { env: GLOBEX_PIN }
          keyLabel: globex-master
          mechanism: aes-key-wrap-pad
          sessions: 16
      - id: 4
        status: primary
        provider: local
        local:
          keyFile: /var/lib/keyward/globex.key
  initech:
    kmsConfigs: []
`;

function parse(text: string): TenantDirectory {
  return parseTenantsFile(text, OPTIONS);
}

/** Parses `text`, asserts a ConfigError, and returns its problems. */
function problemsOf(text: string): readonly string[] {
  let caught: unknown;
  try {
    parse(text);
  } catch (err) {
    caught = err;
  }
  assert.ok(caught instanceof ConfigError, `expected a ConfigError, got ${String(caught)}`);
  assert.ok(caught.problems.length > 0);
  for (const problem of caught.problems) assert.ok(caught.message.includes(problem), 'the message lists every problem');
  return caught.problems;
}

/** A file with one tenant `acme` holding one config whose YAML flow mapping is `entry`. */
function oneConfig(entry: string): string {
  return `version: 1\ntenants:\n  acme:\n    kmsConfigs:\n      - ${entry}\n`;
}

const LOCAL_OK = 'id: 1, status: primary, provider: local, local: { keyFile: k.key }';
const PKCS11_BLOCK = 'pkcs11: { module: m.so, tokenLabel: t, keyLabel: k, pin: { env: PIN } }';

function configOf(directory: TenantDirectory, id: number): KmsConfig {
  const config = directory.config(id);
  assert.ok(config, `config ${id} exists`);
  return config;
}

describe('parseTenantsFile: a valid file', () => {
  it('parses tenants and configs, resolving relative paths against baseDir', () => {
    const directory = parse(VALID);
    assert.equal(directory.tenantCount, 3);

    const acme = directory.tenant('acme');
    assert.ok(acme);
    assert.deepEqual(
      acme.configs.map((c) => c.id),
      [1, 2],
    );
    assert.equal(acme.primary?.id, 1);

    const local = configOf(directory, 1);
    assert.equal(local.provider, 'local');
    assert.equal(local.tenantId, 'acme');
    assert.equal(local.status, 'primary');
    assert.equal(local.timeoutMs, 5_000, 'the default KMS timeout applies');
    assert.ok(local.provider === 'local');
    assert.deepEqual(local.local, { keyFile: '/etc/keyward/keys/acme.key' });

    const hsm = configOf(directory, 2);
    assert.ok(hsm.provider === 'pkcs11');
    assert.equal(hsm.status, 'active');
    assert.equal(hsm.timeoutMs, 2_000);
    assert.deepEqual(hsm.pkcs11, {
      module: '/etc/keyward/lib/libsofthsm2.so',
      tokenLabel: 'acme-token',
      pin: { file: '/etc/keyward/secrets/acme-pin' },
      keyLabel: 'acme-master',
      mechanism: 'aes-gcm',
      sessions: 4,
    });
  });

  it('keeps absolute paths, env references and explicit pkcs11 settings as written', () => {
    const directory = parse(VALID);
    const globex = directory.tenant('globex');
    assert.ok(globex);
    assert.equal(globex.primary?.id, 4);
    const hsm = configOf(directory, 3);
    assert.ok(hsm.provider === 'pkcs11');
    assert.equal(hsm.status, 'disabled');
    assert.deepEqual(hsm.pkcs11, {
      module: '/usr/lib/softhsm/libsofthsm2.so',
      tokenLabel: 'globex',
      pin: { env: 'GLOBEX_PIN' },
      keyLabel: 'globex-master',
      mechanism: 'aes-key-wrap-pad',
      sessions: 16,
    });
    const local = configOf(directory, 4);
    assert.ok(local.provider === 'local');
    assert.equal(local.local.keyFile, '/var/lib/keyward/globex.key');
  });

  it('accepts a tenant with no configs (and no primary)', () => {
    const initech = parse(VALID).tenant('initech');
    assert.ok(initech);
    assert.equal(initech.configs.length, 0);
    assert.equal(initech.primary, undefined);
  });

  it('accepts a tenant with no primary config', () => {
    const directory = parse(oneConfig('{ id: 9, status: active, provider: local, local: { keyFile: k.key } }'));
    assert.equal(directory.tenant('acme')?.primary, undefined);
    assert.equal(configOf(directory, 9).status, 'active');
  });

  it('accepts every tenant id character and the id limits 1 and 2^31-1', () => {
    const text = `version: 1
tenants:
  "Org-1.eu_west:team@example":
    kmsConfigs:
      - { id: 1, status: primary, provider: local, local: { keyFile: a.key } }
      - { id: 2147483647, status: active, provider: local, local: { keyFile: b.key } }
`;
    const directory = parse(text);
    assert.equal(directory.tenant('Org-1.eu_west:team@example')?.configs.length, 2);
    assert.equal(configOf(directory, 2147483647).tenantId, 'Org-1.eu_west:team@example');
  });

  it('returns frozen tenants and configs', () => {
    const directory = parse(VALID);
    const acme = directory.tenant('acme');
    assert.ok(acme);
    assert.ok(Object.isFrozen(acme));
    assert.ok(Object.isFrozen(acme.configs));
    const hsm = configOf(directory, 2);
    assert.ok(Object.isFrozen(hsm));
    assert.ok(hsm.provider === 'pkcs11');
    assert.ok(Object.isFrozen(hsm.pkcs11));
    assert.ok(Object.isFrozen(hsm.pkcs11.pin));
  });

  it('treats an unknown tenant or config id as absent', () => {
    const directory = parse(VALID);
    assert.equal(directory.tenant('nobody'), undefined);
    assert.equal(directory.config(99), undefined);
  });
});

describe('parseTenantsFile: every rule gives a problem naming where', () => {
  it('reports a YAML syntax error with its line', () => {
    const problems = problemsOf('version: 1\ntenants:\n  acme: [\n    oops\n');
    assert.equal(problems.length, 1);
    assert.match(problems[0]!, /^line [0-9]+: /);
    assert.doesNotMatch(problems[0]!, /^line \?/);
    const tab = problemsOf('version: 1\ntenants:\n\tacme: {}\n');
    assert.match(tab[0]!, /^line 3: .*[Tt]ab/);
  });

  it('names the YAML file label in the error summary', () => {
    let caught: unknown;
    try {
      parseTenantsFile('version: [', OPTIONS, '/etc/keyward/tenants.yaml');
    } catch (err) {
      caught = err;
    }
    assert.ok(caught instanceof ConfigError);
    assert.match(caught.message, /^Invalid YAML in \/etc\/keyward\/tenants\.yaml:/);
  });

  it('refuses duplicate YAML keys, with the line of the duplicate', () => {
    const problems = problemsOf('version: 1\ntenants: {}\ntenants: {}\n');
    assert.equal(problems.length, 1);
    assert.match(problems[0]!, /^line 3: Map keys must be unique/);
    const inner = problemsOf(oneConfig('{ id: 1, id: 2, status: primary, provider: local, local: { keyFile: k } }'));
    assert.match(inner[0]!, /^line 5: Map keys must be unique/);
  });

  it('refuses an empty file, a wrong version and a missing version', () => {
    assert.deepEqual(problemsOf(''), ['(file): Expected object']);
    assert.deepEqual(problemsOf('version: 2\ntenants: {}\n'), ['version: Expected 1']);
    assert.deepEqual(problemsOf('version: "1"\ntenants: {}\n'), ['version: Expected 1']);
    assert.ok(problemsOf('tenants: {}\n').includes('version: Expected required property'));
  });

  it('refuses a missing tenants map', () => {
    assert.ok(problemsOf('version: 1\n').includes('tenants: Expected required property'));
  });

  it('refuses an unknown top-level key', () => {
    assert.deepEqual(problemsOf('version: 1\ntenants: {}\ntennants: {}\n'), ['tennants: Unexpected property']);
  });

  it('refuses unknown fields in a tenant, a config and a provider block', () => {
    assert.deepEqual(problemsOf('version: 1\ntenants:\n  acme:\n    kmsConfigs: []\n    owner: ops\n'), ['tenants.acme.owner: Unexpected property']);
    assert.deepEqual(problemsOf(oneConfig(`{ ${LOCAL_OK}, colour: red }`)), ['tenants.acme.kmsConfigs[0].colour: Unexpected property']);
    assert.deepEqual(problemsOf(oneConfig('{ id: 1, status: primary, provider: local, local: { keyFile: k, mode: 600 } }')), [
      'tenants.acme.kmsConfigs[0].local.mode: Unexpected property',
    ]);
  });

  it('refuses config ids that are 0, negative, above 2^31-1 or not integers', () => {
    const at = 'tenants.acme.kmsConfigs[0].id';
    const cases: Array<[string, string]> = [
      ['0', `${at}: Expected integer to be greater or equal to 1`],
      ['-3', `${at}: Expected integer to be greater or equal to 1`],
      ['2147483648', `${at}: Expected integer to be less or equal to 2147483647`],
      ['1.5', `${at}: Expected integer`],
      ['"7"', `${at}: Expected integer`],
    ];
    for (const [id, expected] of cases) {
      const problems = problemsOf(oneConfig(`{ id: ${id}, status: primary, provider: local, local: { keyFile: k } }`));
      assert.deepEqual(problems, [expected], `id ${id}`);
    }
  });

  it('says which values are allowed for enums and secret references, without echoing the value', () => {
    const problems = problemsOf(
      oneConfig('{ id: 1, status: sideways, provider: pkcs11, pkcs11: { module: m.so, tokenLabel: t, keyLabel: k, pin: "s3cret-pin", mechanism: rot13 } }'),
    );
    assert.ok(problems.includes('tenants.acme.kmsConfigs[0].status: must be one of primary, active, disabled'), problems.join('\n'));
    assert.ok(problems.includes('tenants.acme.kmsConfigs[0].pkcs11.mechanism: must be one of aes-gcm, aes-key-wrap-pad'), problems.join('\n'));
    assert.ok(problems.some((p) => p.startsWith('tenants.acme.kmsConfigs[0].pkcs11.pin: must be {env: VARIABLE_NAME} or {file:')), problems.join('\n'));
    assert.ok(!problems.join('\n').includes('s3cret-pin'));
  });

  it('refuses a config without id, status or provider', () => {
    const problems = problemsOf(oneConfig('{ local: { keyFile: k } }'));
    for (const field of ['id', 'status', 'provider']) {
      assert.ok(problems.includes(`tenants.acme.kmsConfigs[0].${field}: Expected required property`), field);
    }
  });

  it('refuses a config id used twice, across tenants or within one', () => {
    const across = `version: 1
tenants:
  acme:
    kmsConfigs:
      - { id: 1, status: primary, provider: local, local: { keyFile: a } }
  globex:
    kmsConfigs:
      - { id: 1, status: primary, provider: local, local: { keyFile: b } }
`;
    assert.deepEqual(problemsOf(across), [
      'tenants.globex.kmsConfigs[0].id: 1 is already used by tenant acme; KMS config ids are unique across the file',
    ]);
    const within = `version: 1
tenants:
  acme:
    kmsConfigs:
      - { id: 5, status: primary, provider: local, local: { keyFile: a } }
      - { id: 5, status: active, provider: local, local: { keyFile: b } }
`;
    assert.deepEqual(problemsOf(within), [
      'tenants.acme.kmsConfigs[1].id: 5 is already used by tenant acme; KMS config ids are unique across the file',
    ]);
  });

  it('refuses two primaries in one tenant', () => {
    const text = `version: 1
tenants:
  acme:
    kmsConfigs:
      - { id: 1, status: primary, provider: local, local: { keyFile: a } }
      - { id: 2, status: active, provider: local, local: { keyFile: b } }
      - { id: 3, status: primary, provider: local, local: { keyFile: c } }
`;
    assert.deepEqual(problemsOf(text), ['tenants.acme: 2 KMS configs are primary (ids 1, 3); at most one may be']);
  });

  it('refuses an unknown status', () => {
    const problems = problemsOf(oneConfig('{ id: 1, status: enabled, provider: local, local: { keyFile: k } }'));
    assert.equal(problems.length, 1);
    assert.match(problems[0]!, /^tenants\.acme\.kmsConfigs\[0\]\.status: /);
  });

  it('refuses an unknown provider', () => {
    const problems = problemsOf(oneConfig('{ id: 1, status: primary, provider: vault, local: { keyFile: k } }'));
    assert.equal(problems.length, 1);
    assert.match(problems[0]!, /^tenants\.acme\.kmsConfigs\[0\]\.provider: /);
  });

  it('refuses a config without the block of its provider', () => {
    assert.deepEqual(problemsOf(oneConfig('{ id: 1, status: primary, provider: local }')), [
      'tenants.acme.kmsConfigs[0].local: required when provider is local',
    ]);
    assert.deepEqual(problemsOf(oneConfig('{ id: 1, status: primary, provider: pkcs11 }')), [
      'tenants.acme.kmsConfigs[0].pkcs11: required when provider is pkcs11',
    ]);
  });

  it('refuses a block of another provider, alone or beside the right one', () => {
    assert.deepEqual(problemsOf(oneConfig(`{ ${LOCAL_OK}, ${PKCS11_BLOCK} }`)), [
      'tenants.acme.kmsConfigs[0].pkcs11: provider is local, so a pkcs11 block does not belong here',
    ]);
    assert.deepEqual(problemsOf(oneConfig('{ id: 1, status: primary, provider: pkcs11, local: { keyFile: k } }')), [
      'tenants.acme.kmsConfigs[0].local: provider is pkcs11, so a local block does not belong here',
      'tenants.acme.kmsConfigs[0].pkcs11: required when provider is pkcs11',
    ]);
  });

  it('refuses bad tenant id characters and over-long tenant ids', () => {
    const rule = 'tenant ids are 1-256 characters of letters, digits and . _ : @ - (starting with a letter or digit)';
    for (const id of ['-acme', 'acme corp', 'acme/eu', 'acme!', '.hidden', 'a'.repeat(257)]) {
      const text = `version: 1\ntenants:\n  "${id}":\n    kmsConfigs: []\n`;
      assert.deepEqual(problemsOf(text), [`tenants.${id}: ${rule}`], JSON.stringify(id));
    }
    const longest = 'a'.repeat(256);
    assert.equal(parse(`version: 1\ntenants:\n  ${longest}:\n    kmsConfigs: []\n`).tenant(longest)?.id, longest);
  });

  it('refuses a malformed or out-of-range timeout', () => {
    const at = 'tenants.acme.kmsConfigs[0].timeout';
    const problem = (timeout: string): readonly string[] =>
      problemsOf(oneConfig(`{ id: 1, status: primary, provider: local, timeout: "${timeout}", local: { keyFile: k } }`));
    assert.deepEqual(problem('5 seconds'), [`${at}: Expected string to match '^[0-9]+(ms|s|m|h)$'`]);
    assert.deepEqual(problem('1.5s'), [`${at}: Expected string to match '^[0-9]+(ms|s|m|h)$'`]);
    assert.deepEqual(problem('9ms'), [`${at}: must be from 10ms to 120s`]);
    assert.deepEqual(problem('3m'), [`${at}: must be from 10ms to 120s`]);
    const edges = parse(
      `version: 1\ntenants:\n  acme:\n    kmsConfigs:\n      - { id: 1, status: primary, provider: local, timeout: 10ms, local: { keyFile: a } }\n      - { id: 2, status: active, provider: local, timeout: 2m, local: { keyFile: b } }\n`,
    );
    assert.equal(configOf(edges, 1).timeoutMs, 10);
    assert.equal(configOf(edges, 2).timeoutMs, 120_000);
  });

  it('refuses an inline secret: the pin must be {env} or {file}', () => {
    const at = 'tenants.acme.kmsConfigs[0].pkcs11.pin';
    const withPin = (pin: string): string =>
      oneConfig(`{ id: 1, status: primary, provider: pkcs11, pkcs11: { module: m.so, tokenLabel: t, keyLabel: k, pin: ${pin} } }`);
    for (const pin of ['"1234"', '1234', '{ value: "1234" }', '{ env: PIN, file: pin.txt }', '{ env: "1-not-a-name" }', '{ file: "" }']) {
      const problems = problemsOf(withPin(pin));
      assert.ok(problems.length >= 1, pin);
      assert.ok(
        problems.every((p) => p.startsWith(`${at}:`) || p.startsWith(`${at}.`)),
        `${pin}: every problem names the pin (${problems.join(' | ')})`,
      );
      assert.ok(!problems.some((p) => p.includes('1234')), `${pin}: the secret is never echoed back`);
    }
  });

  it('refuses out-of-range pkcs11 settings', () => {
    const at = 'tenants.acme.kmsConfigs[0].pkcs11';
    const withBlock = (extra: string, tokenLabel = 't'): readonly string[] =>
      problemsOf(oneConfig(`{ id: 1, status: primary, provider: pkcs11, pkcs11: { module: m.so, tokenLabel: "${tokenLabel}", keyLabel: k, pin: { env: PIN }${extra} } }`));
    assert.deepEqual(withBlock(', sessions: 0'), [`${at}.sessions: Expected integer to be greater or equal to 1`]);
    assert.deepEqual(withBlock(', sessions: 65'), [`${at}.sessions: Expected integer to be less or equal to 64`]);
    assert.equal(withBlock(', mechanism: rsa-oaep').length, 1);
    assert.match(withBlock(', mechanism: rsa-oaep')[0]!, /^tenants\.acme\.kmsConfigs\[0\]\.pkcs11\.mechanism: /);
    assert.deepEqual(withBlock('', 'x'.repeat(33)), [`${at}.tokenLabel: Expected string length less or equal to 32`]);
    assert.deepEqual(withBlock('', ''), [`${at}.tokenLabel: Expected string length greater or equal to 1`]);
  });

  it('reports several schema errors together', () => {
    const text = `version: 1
tenants:
  acme:
    kmsConfigs:
      - { id: 0, status: primary, provider: local, local: { keyFile: k } }
      - { id: 2, status: sometimes, provider: local, local: { keyFile: k } }
      - { id: 3, status: active, provider: pkcs11, pkcs11: { module: m.so, tokenLabel: t, keyLabel: k, pin: "1234" } }
  globex:
    kmsConfigs:
      - { id: 4, status: primary, provider: local, timeout: soon, local: { keyFile: k }, extra: true }
`;
    const problems = problemsOf(text);
    const expectedPrefixes = [
      'tenants.acme.kmsConfigs[0].id: ',
      'tenants.acme.kmsConfigs[1].status: ',
      'tenants.acme.kmsConfigs[2].pkcs11.pin',
      'tenants.globex.kmsConfigs[0].timeout: ',
      'tenants.globex.kmsConfigs[0].extra: Unexpected property',
    ];
    for (const prefix of expectedPrefixes) {
      assert.ok(problems.some((p) => p.startsWith(prefix)), `reports ${prefix} (got ${problems.join(' | ')})`);
    }
    assert.equal(new Set(problems).size, problems.length, 'no problem is listed twice');
  });

  it('reports several rule errors together', () => {
    const text = `version: 1
tenants:
  "bad tenant":
    kmsConfigs:
      - { id: 1, status: primary, provider: local, local: { keyFile: a } }
  acme:
    kmsConfigs:
      - { id: 1, status: primary, provider: local, local: { keyFile: a } }
      - { id: 2, status: primary, provider: local, timeout: 1ms, local: { keyFile: b } }
      - { id: 3, status: primary, provider: local }
      - { id: 4, status: active, provider: local, local: { keyFile: c }, ${PKCS11_BLOCK} }
      - { id: 5, status: primary, provider: local, local: { keyFile: d } }
`;
    assert.deepEqual(problemsOf(text), [
      'tenants.bad tenant: tenant ids are 1-256 characters of letters, digits and . _ : @ - (starting with a letter or digit)',
      'tenants.acme.kmsConfigs[0].id: 1 is already used by tenant bad tenant; KMS config ids are unique across the file',
      'tenants.acme.kmsConfigs[1].timeout: must be from 10ms to 120s',
      'tenants.acme.kmsConfigs[2].local: required when provider is local',
      'tenants.acme.kmsConfigs[3].pkcs11: provider is local, so a pkcs11 block does not belong here',
      'tenants.acme: 2 KMS configs are primary (ids 1, 5); at most one may be',
    ]);
  });
});

describe('parseTenantsFile: settings fingerprints', () => {
  const fingerprints = (text: string): Map<number, string> => {
    const directory = parse(text);
    return new Map([...directory.configs()].map((c) => [c.id, c.fingerprint]));
  };
  const file = (...entries: string[]): string =>
    `version: 1\ntenants:\n${entries.map((e, i) => `  t${i}:\n    kmsConfigs:\n      - ${e}\n`).join('')}`;
  const pkcs11 = (id: number, block: string, status = 'primary'): string =>
    `{ id: ${id}, status: ${status}, provider: pkcs11, pkcs11: { ${block} } }`;
  const base = 'module: m.so, tokenLabel: t, keyLabel: k, pin: { env: PIN }';

  it('is the same for the same settings, whatever the id, tenant, status, timeout or spelling', () => {
    const fp = fingerprints(
      file(
        '{ id: 1, status: primary, provider: local, local: { keyFile: keys/k.key } }',
        '{ id: 2, status: disabled, provider: local, timeout: 1s, local: { keyFile: /etc/keyward/keys/k.key } }',
        pkcs11(3, base),
        pkcs11(4, `${base}, mechanism: aes-gcm, sessions: 4`, 'active'),
        pkcs11(5, 'sessions: 4, keyLabel: k, pin: { env: PIN }, tokenLabel: t, module: /etc/keyward/m.so'),
      ),
    );
    assert.match(fp.get(1)!, /^[0-9a-f]{64}$/);
    assert.equal(fp.get(1), fp.get(2), 'a relative path and its absolute form are the same setting');
    assert.equal(fp.get(3), fp.get(4), 'defaults written out are the same as defaults left out');
    assert.equal(fp.get(3), fp.get(5), 'key order does not matter');
    assert.notEqual(fp.get(1), fp.get(3));
  });

  it('is stable from one parse to the next', () => {
    assert.deepEqual(fingerprints(VALID), fingerprints(VALID));
  });

  it('differs when any driver setting differs', () => {
    const fp = fingerprints(
      file(
        pkcs11(1, base),
        pkcs11(2, 'module: other.so, tokenLabel: t, keyLabel: k, pin: { env: PIN }'),
        pkcs11(3, 'module: m.so, tokenLabel: t2, keyLabel: k, pin: { env: PIN }'),
        pkcs11(4, 'module: m.so, tokenLabel: t, keyLabel: k2, pin: { env: PIN }'),
        pkcs11(5, 'module: m.so, tokenLabel: t, keyLabel: k, pin: { env: PIN_2 }'),
        pkcs11(6, 'module: m.so, tokenLabel: t, keyLabel: k, pin: { file: PIN }'),
        pkcs11(7, `${base}, mechanism: aes-key-wrap-pad`),
        pkcs11(8, `${base}, sessions: 5`),
        '{ id: 9, status: primary, provider: local, local: { keyFile: a.key } }',
        '{ id: 10, status: primary, provider: local, local: { keyFile: b.key } }',
      ),
    );
    assert.equal(new Set(fp.values()).size, 10, 'ten different settings, ten fingerprints');
  });

  it('depends on baseDir for relative paths', () => {
    const text = oneConfig('{ id: 1, status: primary, provider: local, local: { keyFile: k.key } }');
    const a = parseTenantsFile(text, { ...OPTIONS, baseDir: '/a' }).config(1);
    const b = parseTenantsFile(text, { ...OPTIONS, baseDir: '/b' }).config(1);
    assert.ok(a && b);
    assert.notEqual(a.fingerprint, b.fingerprint);
  });
});

describe('loadTenantsFile', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'keyward-tenants-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('resolves relative paths against the file directory and digests the bytes', async () => {
    const path = join(dir, 'tenants.yaml');
    const text = oneConfig(`{ ${LOCAL_OK} }`);
    await writeFile(path, text);
    const loaded = await loadTenantsFile(path, 1_234);
    const config = loaded.directory.config(1);
    assert.ok(config?.provider === 'local');
    assert.equal(config.local.keyFile, join(dir, 'k.key'));
    assert.equal(config.timeoutMs, 1_234);
    assert.equal(loaded.digest, createHash('sha256').update(text).digest('hex'));
  });

  it('throws a ConfigError naming the file when it is missing', async () => {
    const path = join(dir, 'missing.yaml');
    await assert.rejects(loadTenantsFile(path, 5_000), (err: unknown) => {
      assert.ok(err instanceof ConfigError);
      assert.match(err.message, /Cannot read tenants file .*missing\.yaml/);
      assert.deepEqual(err.problems, ['ENOENT: the file named by KEYWARD_CONFIG must exist and be readable']);
      return true;
    });
  });

  it('names the file in validation errors', async () => {
    const path = join(dir, 'bad.yaml');
    await writeFile(path, 'version: 3\ntenants: {}\n');
    await assert.rejects(loadTenantsFile(path, 5_000), (err: unknown) => {
      assert.ok(err instanceof ConfigError);
      assert.ok(err.message.startsWith(`Invalid ${path}:`), err.message);
      assert.deepEqual(err.problems, ['version: Expected 1']);
      return true;
    });
  });
});
