import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DEV_API_KEY, DEV_CONFIG_PATH, digestApiKey, loadProcessConfig } from '../../src/config/env.js';
import { ConfigError } from '../../src/config/errors.js';

const CWD = '/srv/keyward';
const GOOD_KEY = 'a-production-key-0123456789';
const OTHER_KEY = 'the-next-production-key-9876';

/** Production mode: a tenants file and a valid API key, plus whatever the test adds. */
function prod(extra: Record<string, string | undefined> = {}): Record<string, string | undefined> {
  return { KEYWARD_CONFIG: '/etc/keyward/tenants.yaml', KEYWARD_API_KEY: GOOD_KEY, ...extra };
}

/** Runs `fn`, asserts it throws a ConfigError, and returns its problems. */
function problemsOf(fn: () => unknown): readonly string[] {
  let caught: unknown;
  try {
    fn();
  } catch (err) {
    caught = err;
  }
  assert.ok(caught instanceof ConfigError, `expected a ConfigError, got ${String(caught)}`);
  for (const problem of caught.problems) assert.ok(caught.message.includes(problem), 'the message lists every problem');
  return caught.problems;
}

describe('loadProcessConfig: development mode (KEYWARD_CONFIG unset)', () => {
  it('serves the built-in dev config on loopback with the dev API key and default ports', () => {
    const config = loadProcessConfig({}, CWD);
    assert.equal(config.dev, true);
    assert.equal(config.configPath, DEV_CONFIG_PATH);
    assert.match(config.configPath, /config[\\/]dev\.yaml$/);
    assert.deepEqual(config.api, { host: '127.0.0.1', port: 7777 });
    assert.deepEqual(config.ops, { host: '127.0.0.1', port: 9000 });
    assert.deepEqual(config.apiKeyDigests, [digestApiKey(DEV_API_KEY)]);
    assert.equal(config.logLevel, 'info');
    assert.equal(config.batchLimit, 1000);
    assert.equal(config.bodyLimit, 4 * 1024 * 1024);
    assert.equal(config.shutdownTimeoutMs, 10_000);
    assert.equal(config.configPollMs, 10_000);
    assert.equal(config.kmsTimeoutMs, 2_000);
  });

  it('treats a blank KEYWARD_CONFIG as unset', () => {
    assert.equal(loadProcessConfig({ KEYWARD_CONFIG: '   ' }, CWD).dev, true);
  });

  it('accepts loopback hosts but still listens on 127.0.0.1', () => {
    for (const host of ['127.0.0.1', 'localhost', '::1']) {
      const config = loadProcessConfig({ KEYWARD_HOST: host, KEYWARD_OPS_HOST: host }, CWD);
      assert.equal(config.api.host, '127.0.0.1');
      assert.equal(config.ops.host, '127.0.0.1');
    }
  });

  it('refuses KEYWARD_HOST=0.0.0.0 and a public KEYWARD_OPS_HOST', () => {
    const problems = problemsOf(() => loadProcessConfig({ KEYWARD_HOST: '0.0.0.0', KEYWARD_OPS_HOST: '10.0.0.5' }, CWD));
    assert.equal(problems.length, 2);
    assert.match(problems[0]!, /^KEYWARD_HOST=0\.0\.0\.0: development mode listens on 127\.0\.0\.1 only/);
    assert.match(problems[1]!, /^KEYWARD_OPS_HOST=10\.0\.0\.5: development mode listens on 127\.0\.0\.1 only/);
  });

  it('replaces the dev API key when KEYWARD_API_KEY is set', () => {
    const config = loadProcessConfig({ KEYWARD_API_KEY: 'my-dev-key' }, CWD);
    assert.deepEqual(config.apiKeyDigests, [digestApiKey('my-dev-key')]);
  });
});

describe('loadProcessConfig: production mode (KEYWARD_CONFIG set)', () => {
  it('listens on all interfaces by default and accepts only the configured key', () => {
    const config = loadProcessConfig(prod(), CWD);
    assert.equal(config.dev, false);
    assert.equal(config.configPath, '/etc/keyward/tenants.yaml');
    assert.deepEqual(config.api, { host: '0.0.0.0', port: 7777 });
    assert.deepEqual(config.ops, { host: '0.0.0.0', port: 9000 });
    assert.deepEqual(config.apiKeyDigests, [digestApiKey(GOOD_KEY)]);
    assert.ok(!config.apiKeyDigests.some((d) => d.equals(digestApiKey(DEV_API_KEY))), 'the dev key is never accepted');
  });

  it('resolves a relative KEYWARD_CONFIG against the working directory', () => {
    assert.equal(loadProcessConfig(prod({ KEYWARD_CONFIG: 'conf/tenants.yaml' }), CWD).configPath, '/srv/keyward/conf/tenants.yaml');
    assert.equal(loadProcessConfig(prod({ KEYWARD_CONFIG: '../tenants.yaml' }), CWD).configPath, '/srv/tenants.yaml');
  });

  it('trims surrounding whitespace from values', () => {
    const config = loadProcessConfig(prod({ KEYWARD_CONFIG: ' t.yaml ', KEYWARD_API_KEY: `  ${GOOD_KEY}\n`, KEYWARD_PORT: ' 8080 ' }), CWD);
    assert.equal(config.configPath, '/srv/keyward/t.yaml');
    assert.deepEqual(config.apiKeyDigests, [digestApiKey(GOOD_KEY)]);
    assert.equal(config.api.port, 8080);
  });

  it('requires KEYWARD_API_KEY', () => {
    const problems = problemsOf(() => loadProcessConfig(prod({ KEYWARD_API_KEY: undefined }), CWD));
    assert.deepEqual(problems, ['KEYWARD_API_KEY is required outside development mode (KEYWARD_CONFIG is set)']);
    assert.deepEqual(problemsOf(() => loadProcessConfig(prod({ KEYWARD_API_KEY: '  ' }), CWD)), problems);
  });

  it('requires API keys of at least 16 characters', () => {
    assert.deepEqual(problemsOf(() => loadProcessConfig(prod({ KEYWARD_API_KEY: '0123456789abcde' }), CWD)), [
      'KEYWARD_API_KEY must be at least 16 characters',
    ]);
    assert.deepEqual(problemsOf(() => loadProcessConfig(prod({ KEYWARD_API_KEY_2: 'short' }), CWD)), [
      'KEYWARD_API_KEY_2 must be at least 16 characters',
    ]);
    const config = loadProcessConfig(prod({ KEYWARD_API_KEY: '0123456789abcdef' }), CWD);
    assert.deepEqual(config.apiKeyDigests, [digestApiKey('0123456789abcdef')]);
  });

  it('accepts two keys during a rotation, current one first', () => {
    const config = loadProcessConfig(prod({ KEYWARD_API_KEY_2: OTHER_KEY }), CWD);
    assert.deepEqual(config.apiKeyDigests, [digestApiKey(GOOD_KEY), digestApiKey(OTHER_KEY)]);
  });

  it('refuses KEYWARD_API_KEY_2 on its own', () => {
    const problems = problemsOf(() => loadProcessConfig(prod({ KEYWARD_API_KEY: undefined, KEYWARD_API_KEY_2: OTHER_KEY }), CWD));
    assert.deepEqual(problems, ['KEYWARD_API_KEY_2 is set without KEYWARD_API_KEY (set the current key first)']);
    const short = problemsOf(() => loadProcessConfig(prod({ KEYWARD_API_KEY: undefined, KEYWARD_API_KEY_2: 'short' }), CWD));
    assert.deepEqual(short, [
      'KEYWARD_API_KEY_2 must be at least 16 characters',
      'KEYWARD_API_KEY_2 is set without KEYWARD_API_KEY (set the current key first)',
    ]);
    const devProblems = problemsOf(() => loadProcessConfig({ KEYWARD_API_KEY_2: OTHER_KEY }, CWD));
    assert.deepEqual(devProblems, problems, 'in development mode too');
  });

  it('accepts custom hosts, ports, limits, durations and log level', () => {
    const config = loadProcessConfig(
      prod({
        KEYWARD_HOST: '10.1.2.3',
        KEYWARD_PORT: '8443',
        KEYWARD_OPS_HOST: '127.0.0.1',
        KEYWARD_OPS_PORT: '9090',
        KEYWARD_LOG_LEVEL: 'debug',
        KEYWARD_BATCH_LIMIT: '100000',
        KEYWARD_BODY_LIMIT: '1024',
        KEYWARD_SHUTDOWN_TIMEOUT: '30s',
        KEYWARD_CONFIG_POLL: '1h',
        KEYWARD_KMS_TIMEOUT: '2m',
      }),
      CWD,
    );
    assert.deepEqual(config.api, { host: '10.1.2.3', port: 8443 });
    assert.deepEqual(config.ops, { host: '127.0.0.1', port: 9090 });
    assert.equal(config.logLevel, 'debug');
    assert.equal(config.batchLimit, 100_000);
    assert.equal(config.bodyLimit, 1024);
    assert.equal(config.shutdownTimeoutMs, 30_000);
    assert.equal(config.configPollMs, 3_600_000);
    assert.equal(config.kmsTimeoutMs, 120_000);
  });

  it('allows port 0 (any free port) on both listeners', () => {
    const config = loadProcessConfig(prod({ KEYWARD_PORT: '0', KEYWARD_OPS_PORT: '0' }), CWD);
    assert.equal(config.api.port, 0);
    assert.equal(config.ops.port, 0);
  });

  it('refuses the same port for the API and ops listeners on the same host', () => {
    assert.deepEqual(problemsOf(() => loadProcessConfig(prod({ KEYWARD_PORT: '9000' }), CWD)), ['KEYWARD_PORT and KEYWARD_OPS_PORT must differ']);
    assert.deepEqual(problemsOf(() => loadProcessConfig({ KEYWARD_OPS_PORT: '7777' }, CWD)), ['KEYWARD_PORT and KEYWARD_OPS_PORT must differ']);
  });
});

describe('loadProcessConfig: bad values', () => {
  it('refuses numbers that are not whole numbers in range', () => {
    const cases: Array<[string, string, string]> = [
      ['KEYWARD_PORT', '65536', 'from 0 to 65535'],
      ['KEYWARD_PORT', '-1', 'from 0 to 65535'],
      ['KEYWARD_OPS_PORT', '90.5', 'from 0 to 65535'],
      ['KEYWARD_OPS_PORT', '0x50', 'from 0 to 65535'],
      ['KEYWARD_BATCH_LIMIT', '0', 'from 1 to 100000'],
      ['KEYWARD_BATCH_LIMIT', '1e3', 'from 1 to 100000'],
      ['KEYWARD_BODY_LIMIT', '1023', 'from 1024 to 67108864'],
      ['KEYWARD_BODY_LIMIT', '67108865', 'from 1024 to 67108864'],
    ];
    for (const [name, value, range] of cases) {
      const problems = problemsOf(() => loadProcessConfig(prod({ [name]: value }), CWD));
      assert.deepEqual(problems, [`${name} must be a whole number ${range} (got "${value}")`], `${name}=${value}`);
    }
  });

  it('refuses malformed or out-of-range durations', () => {
    const cases: Array<[string, string, string]> = [
      ['KEYWARD_SHUTDOWN_TIMEOUT', '10', 'from 100 ms to 600000 ms'],
      ['KEYWARD_SHUTDOWN_TIMEOUT', '1.5s', 'from 100 ms to 600000 ms'],
      ['KEYWARD_SHUTDOWN_TIMEOUT', '11m', 'from 100 ms to 600000 ms'],
      ['KEYWARD_CONFIG_POLL', '99ms', 'from 100 ms to 3600000 ms'],
      ['KEYWARD_CONFIG_POLL', '2h', 'from 100 ms to 3600000 ms'],
      ['KEYWARD_KMS_TIMEOUT', '5 s', 'from 10 ms to 120000 ms'],
      ['KEYWARD_KMS_TIMEOUT', '9ms', 'from 10 ms to 120000 ms'],
      ['KEYWARD_KMS_TIMEOUT', '3m', 'from 10 ms to 120000 ms'],
    ];
    for (const [name, value, range] of cases) {
      const problems = problemsOf(() => loadProcessConfig(prod({ [name]: value }), CWD));
      assert.deepEqual(problems, [`${name} must be a duration like 500ms, 10s or 5m, ${range} (got "${value}")`], `${name}=${value}`);
    }
  });

  it('refuses an unknown log level', () => {
    const problems = problemsOf(() => loadProcessConfig(prod({ KEYWARD_LOG_LEVEL: 'verbose' }), CWD));
    assert.deepEqual(problems, ['KEYWARD_LOG_LEVEL must be one of fatal, error, warn, info, debug, trace, silent (got "verbose")']);
    assert.deepEqual(problemsOf(() => loadProcessConfig(prod({ KEYWARD_LOG_LEVEL: 'INFO' }), CWD)).length, 1, 'levels are lower case');
  });

  it('lists every problem of many bad variables in one ConfigError', () => {
    const env = {
      KEYWARD_CONFIG: 'tenants.yaml',
      KEYWARD_API_KEY: 'short',
      KEYWARD_API_KEY_2: 'also-short',
      KEYWARD_PORT: '70000',
      KEYWARD_OPS_PORT: 'ops',
      KEYWARD_LOG_LEVEL: 'loud',
      KEYWARD_BATCH_LIMIT: '0',
      KEYWARD_BODY_LIMIT: '12',
      KEYWARD_SHUTDOWN_TIMEOUT: 'forever',
      KEYWARD_CONFIG_POLL: '50ms',
      KEYWARD_KMS_TIMEOUT: '3m',
    };
    let caught: unknown;
    try {
      loadProcessConfig(env, CWD);
    } catch (err) {
      caught = err;
    }
    assert.ok(caught instanceof ConfigError);
    assert.equal(caught.name, 'ConfigError');
    const expected = [
      'KEYWARD_API_KEY must be at least 16 characters',
      'KEYWARD_API_KEY_2 must be at least 16 characters',
      'KEYWARD_LOG_LEVEL must be one of fatal, error, warn, info, debug, trace, silent (got "loud")',
      'KEYWARD_PORT must be a whole number from 0 to 65535 (got "70000")',
      'KEYWARD_OPS_PORT must be a whole number from 0 to 65535 (got "ops")',
      'KEYWARD_BATCH_LIMIT must be a whole number from 1 to 100000 (got "0")',
      'KEYWARD_BODY_LIMIT must be a whole number from 1024 to 67108864 (got "12")',
      'KEYWARD_SHUTDOWN_TIMEOUT must be a duration like 500ms, 10s or 5m, from 100 ms to 600000 ms (got "forever")',
      'KEYWARD_CONFIG_POLL must be a duration like 500ms, 10s or 5m, from 100 ms to 3600000 ms (got "50ms")',
      'KEYWARD_KMS_TIMEOUT must be a duration like 500ms, 10s or 5m, from 10 ms to 120000 ms (got "3m")',
    ];
    assert.equal(caught.problems.length, expected.length);
    assert.deepEqual([...caught.problems].sort(), [...expected].sort());
    assert.ok(caught.message.startsWith('Invalid environment:'));
    for (const problem of expected) assert.ok(caught.message.includes(`  - ${problem}`), `message lists: ${problem}`);
    assert.ok(Object.isFrozen(caught.problems));
  });
});

describe('loadProcessConfig: result', () => {
  it('is frozen, nested objects included', () => {
    for (const config of [loadProcessConfig({}, CWD), loadProcessConfig(prod({ KEYWARD_API_KEY_2: OTHER_KEY }), CWD)]) {
      assert.ok(Object.isFrozen(config));
      assert.ok(Object.isFrozen(config.api));
      assert.ok(Object.isFrozen(config.ops));
      assert.ok(Object.isFrozen(config.apiKeyDigests));
      assert.throws(() => {
        (config as { port?: number }).port = 1;
      }, TypeError);
      assert.throws(() => {
        (config.api as { port: number }).port = 1;
      }, TypeError);
    }
  });
});
