import { Writable } from 'node:stream';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import { ConfigError } from '../src/config/errors.js';
import { KmsError } from '../src/kms/errors.js';
import { createLogger } from '../src/logger.js';
import { createMetrics, type Metrics } from '../src/metrics.js';
import { KeywardRuntime, type RuntimeOptions } from '../src/runtime.js';
import type { KmsConfig } from '../src/tenants/directory.js';

const logger = createLogger({ level: 'silent' });
const AAD = Buffer.from('runtime-test|aad');

interface ConfigSpec {
  readonly id: number;
  readonly status?: 'primary' | 'active' | 'disabled';
  readonly keyFile: string;
  readonly timeout?: string;
}

/** A tenants file: tenant id → its local configs. */
function tenantsYaml(tenants: Record<string, readonly ConfigSpec[]>): string {
  const lines = ['version: 1', 'tenants:'];
  for (const [tenant, configs] of Object.entries(tenants)) {
    lines.push(`  ${tenant}:`, '    kmsConfigs:');
    if (configs.length === 0) lines[lines.length - 1] += ' []';
    for (const c of configs) {
      lines.push(`      - id: ${c.id}`, `        status: ${c.status ?? 'primary'}`, '        provider: local');
      if (c.timeout !== undefined) lines.push(`        timeout: ${c.timeout}`);
      lines.push('        local:', `          keyFile: ${JSON.stringify(c.keyFile)}`);
    }
  }
  return `${lines.join('\n')}\n`;
}

interface Fixture {
  readonly dir: string;
  readonly keys: string;
  readonly configPath: string;
  readonly metrics: Metrics;
  options(extra?: Partial<RuntimeOptions>): RuntimeOptions;
  /** Starts a runtime that is closed (and its directory removed) when the test ends. */
  start(extra?: Partial<RuntimeOptions>): Promise<KeywardRuntime>;
}

/** A temp directory with `tenants.yaml` holding `text`, and a separate directory for key files. */
async function fixture(t: TestContext, write?: (f: { dir: string; keys: string }) => Promise<string>): Promise<Fixture> {
  const dir = await mkdtemp(join(tmpdir(), 'keyward-runtime-'));
  const keys = join(dir, 'keys');
  const configPath = write ? await write({ dir, keys }) : join(dir, 'tenants.yaml');
  const metrics = createMetrics({ processMetrics: false });
  const runtimes: KeywardRuntime[] = [];
  t.after(async () => {
    for (const runtime of runtimes) await runtime.close();
    await rm(dir, { recursive: true, force: true });
  });
  const options = (extra: Partial<RuntimeOptions> = {}): RuntimeOptions => ({
    configPath,
    kmsTimeoutMs: 5_000,
    env: {},
    logger,
    metrics,
    auditStdout: new Writable({ write: (_chunk, _encoding, callback) => callback() }),
    // Long enough that only the file-system watcher can explain a reload within a test.
    pollMs: 3_600_000,
    ...extra,
  });
  return {
    dir,
    keys,
    configPath,
    metrics,
    options,
    async start(extra) {
      const runtime = await KeywardRuntime.start(options(extra));
      runtimes.push(runtime);
      return runtime;
    },
  };
}

async function reloads(metrics: Metrics, outcome: 'success' | 'failure'): Promise<number> {
  const metric = metrics.registry.getSingleMetric('keyward_config_reloads_total');
  assert.ok(metric, 'the reload counter is registered');
  const { values } = await metric.get();
  return values.find((v) => v.labels.outcome === outcome)?.value ?? 0;
}

/** Polls `check` until it returns true, failing after `timeoutMs`. */
async function waitFor(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 3_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) assert.fail(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

function configOf(runtime: KeywardRuntime, id: number): KmsConfig {
  const config = runtime.directory.config(id);
  assert.ok(config, `config ${id} is served`);
  return config;
}

async function roundTrip(runtime: KeywardRuntime, id: number): Promise<void> {
  const driver = await runtime.pool.driverFor(configOf(runtime, id));
  const dek = randomBytes(32);
  assert.deepEqual(await driver.unwrap(await driver.wrap(dek, AAD), AAD), dek);
}

describe('KeywardRuntime: start and reload', () => {
  it('starts from the tenants file with its drivers ready', async (t) => {
    const f = await fixture(t);
    await writeFile(f.configPath, tenantsYaml({ acme: [{ id: 1, keyFile: join(f.keys, 'a.key') }], beta: [] }));
    const runtime = await f.start();
    assert.equal(runtime.directory.tenantCount, 2);
    assert.equal(runtime.directory.tenant('acme')?.primary?.id, 1);
    const status = runtime.status();
    assert.equal(status.configPath, f.configPath);
    assert.equal(status.tenants, 2);
    assert.deepEqual(status.drivers, { ready: 1, failed: 0, starting: 0 });
    assert.equal(status.lastReloadError, undefined);
    assert.ok(!Number.isNaN(Date.parse(status.loadedAt)));
    await roundTrip(runtime, 1);
  });

  it('throws a ConfigError from start() when the file is invalid or missing', async (t) => {
    const f = await fixture(t);
    await writeFile(f.configPath, 'version: 2\ntenants: {}\n');
    await assert.rejects(KeywardRuntime.start(f.options()), (err: unknown) => {
      assert.ok(err instanceof ConfigError);
      assert.deepEqual(err.problems, ['version: Expected 1']);
      return true;
    });
    await assert.rejects(KeywardRuntime.start(f.options({ configPath: join(f.dir, 'absent.yaml') })), ConfigError);
  });

  it('treats a reload of unchanged bytes as a no-op that is not counted', async (t) => {
    const f = await fixture(t);
    await writeFile(f.configPath, tenantsYaml({ acme: [{ id: 1, keyFile: join(f.keys, 'a.key') }] }));
    const runtime = await f.start();
    const directory = runtime.directory;
    const loadedAt = runtime.status().loadedAt;
    assert.equal(await runtime.reload(), 'unchanged');
    assert.equal(runtime.directory, directory);
    assert.equal(runtime.status().loadedAt, loadedAt);
    assert.equal(await reloads(f.metrics, 'success'), 0);
    assert.equal(await reloads(f.metrics, 'failure'), 0);
  });

  it('applies a valid change and counts a success', async (t) => {
    const f = await fixture(t);
    await writeFile(f.configPath, tenantsYaml({ acme: [{ id: 1, keyFile: join(f.keys, 'a.key') }] }));
    const runtime = await f.start();
    const before = runtime.directory;
    await writeFile(
      f.configPath,
      tenantsYaml({ acme: [{ id: 1, keyFile: join(f.keys, 'a.key') }], beta: [{ id: 2, keyFile: join(f.keys, 'b.key') }] }),
    );
    assert.equal(await runtime.reload(), 'applied');
    assert.notEqual(runtime.directory, before);
    assert.equal(runtime.directory.tenantCount, 2);
    assert.equal(runtime.directory.tenant('beta')?.primary?.id, 2);
    assert.equal(before.tenant('beta'), undefined, 'the old snapshot is not mutated');
    assert.equal(await reloads(f.metrics, 'success'), 1);
    assert.equal(await reloads(f.metrics, 'failure'), 0);
    assert.deepEqual(runtime.status().drivers, { ready: 2, failed: 0, starting: 0 });
    await roundTrip(runtime, 2);
  });

  it('keeps the old config when a change is invalid, counts the failure, and recovers on a fix', async (t) => {
    const f = await fixture(t);
    const good = tenantsYaml({ acme: [{ id: 1, keyFile: join(f.keys, 'a.key') }] });
    await writeFile(f.configPath, good);
    const runtime = await f.start();
    const served = runtime.directory;

    await writeFile(
      f.configPath,
      tenantsYaml({ acme: [{ id: 1, keyFile: join(f.keys, 'a.key') }, { id: 2, keyFile: join(f.keys, 'b.key') }] }),
    );
    assert.equal(await runtime.reload(), 'failed');
    assert.equal(runtime.directory, served, 'the previous snapshot is still served');
    assert.equal(await reloads(f.metrics, 'failure'), 1);
    assert.equal(await reloads(f.metrics, 'success'), 0);
    const error = runtime.status().lastReloadError;
    assert.ok(error !== undefined);
    assert.match(error, /tenants\.acme: 2 KMS configs are primary \(ids 1, 2\); at most one may be/);
    assert.deepEqual(runtime.status().drivers, { ready: 1, failed: 0, starting: 0 }, 'no driver started for a refused file');
    await roundTrip(runtime, 1);

    await writeFile(f.configPath, 'version: [\n');
    assert.equal(await runtime.reload(), 'failed');
    assert.equal(await reloads(f.metrics, 'failure'), 2, 'every failed attempt is counted');
    assert.match(runtime.status().lastReloadError ?? '', /^line [0-9]+: /);

    await writeFile(f.configPath, `${good}# fixed\n`);
    assert.equal(await runtime.reload(), 'applied');
    assert.equal(runtime.status().lastReloadError, undefined);
    assert.equal(await reloads(f.metrics, 'success'), 1);
    assert.equal(await reloads(f.metrics, 'failure'), 2);
  });

  it('clears the reload error when an invalid edit is reverted to the configuration in use (found by the chaos run)', async (t) => {
    const f = await fixture(t);
    const good = tenantsYaml({ acme: [{ id: 1, keyFile: join(f.keys, 'a.key') }] });
    await writeFile(f.configPath, good);
    const runtime = await f.start();
    await writeFile(f.configPath, 'version: [\n');
    assert.equal(await runtime.reload(), 'failed');
    assert.ok(runtime.status().lastReloadError !== undefined);
    await writeFile(f.configPath, good);
    assert.equal(await runtime.reload(), 'unchanged', 'the same content as the configuration in use: nothing to apply');
    assert.equal(runtime.status().lastReloadError, undefined, '/health no longer reports the reverted error');
    assert.equal(await reloads(f.metrics, 'failure'), 1);
    assert.equal(await reloads(f.metrics, 'success'), 0);
  });

  it('counts a tenants file that disappears as a failed reload', async (t) => {
    const f = await fixture(t);
    await writeFile(f.configPath, tenantsYaml({ acme: [{ id: 1, keyFile: join(f.keys, 'a.key') }] }));
    const runtime = await f.start();
    await rm(f.configPath);
    assert.equal(await runtime.reload(), 'failed');
    assert.match(runtime.status().lastReloadError ?? '', /ENOENT/);
    assert.equal(runtime.directory.tenantCount, 1);
    assert.equal(await reloads(f.metrics, 'failure'), 1);
  });

  it('coalesces concurrent reloads', async (t) => {
    const f = await fixture(t);
    await writeFile(f.configPath, tenantsYaml({ acme: [{ id: 1, keyFile: join(f.keys, 'a.key') }] }));
    const runtime = await f.start();
    await writeFile(f.configPath, tenantsYaml({ acme: [{ id: 1, status: 'active', keyFile: join(f.keys, 'a.key') }] }));
    const first = runtime.reload();
    const second = runtime.reload();
    assert.equal(first, second, 'a reload asked for during a reload shares it');
    assert.equal(await first, 'applied');
    // The queued re-run reads the same bytes: unchanged, not counted.
    await waitFor('the queued reload to finish', async () => (await runtime.reload()) === 'unchanged');
    assert.equal(await reloads(f.metrics, 'success'), 1);
  });
});

describe('KeywardRuntime: drivers across reloads', () => {
  it('keeps the same live driver when its settings do not change', async (t) => {
    const f = await fixture(t);
    const keyFile = join(f.keys, 'a.key');
    await writeFile(f.configPath, tenantsYaml({ acme: [{ id: 1, keyFile }] }));
    const runtime = await f.start();
    const before = await runtime.pool.driverFor(configOf(runtime, 1));
    const dek = randomBytes(32);
    const blob = await before.wrap(dek, AAD);

    // If the reload started a new driver, it would create a new key here and fail to unwrap.
    await rm(keyFile);
    await writeFile(f.configPath, tenantsYaml({ acme: [{ id: 1, keyFile }], beta: [{ id: 2, keyFile }] }));
    assert.equal(await runtime.reload(), 'applied');
    assert.deepEqual(runtime.status().drivers, { ready: 1, failed: 0, starting: 0 }, 'configs with equal settings share one driver');

    const after = await runtime.pool.driverFor(configOf(runtime, 1));
    assert.deepEqual(await after.unwrap(blob, AAD), dek);
    assert.deepEqual(await before.unwrap(await before.wrap(dek, AAD), AAD), dek, 'the handle from before the reload still works');
    const shared = await runtime.pool.driverFor(configOf(runtime, 2));
    assert.deepEqual(await shared.unwrap(blob, AAD), dek, 'the new config is served by the same driver');
  });

  it('closes the driver of a config that a reload removed', async (t) => {
    const f = await fixture(t);
    const a = { id: 1, keyFile: join(f.keys, 'a.key') };
    const b = { id: 2, status: 'active' as const, keyFile: join(f.keys, 'b.key') };
    await writeFile(f.configPath, tenantsYaml({ acme: [a, b] }));
    const runtime = await f.start();
    assert.deepEqual(runtime.status().drivers, { ready: 2, failed: 0, starting: 0 });
    const removed = await runtime.pool.driverFor(configOf(runtime, 2));
    await removed.wrap(randomBytes(32), AAD);

    await writeFile(f.configPath, tenantsYaml({ acme: [a] }));
    assert.equal(await runtime.reload(), 'applied');
    assert.deepEqual(runtime.status().drivers, { ready: 1, failed: 0, starting: 0 });
    assert.equal(runtime.directory.config(2), undefined);
    await waitFor('the retired driver to close', async () => {
      try {
        await removed.wrap(randomBytes(32), AAD);
        return false;
      } catch (err) {
        assert.ok(err instanceof KmsError, String(err));
        return true;
      }
    });
    await roundTrip(runtime, 1);
  });

  it('records a driver that fails to start, and answers key_unusable for it', async (t) => {
    const f = await fixture(t);
    const blocker = join(f.dir, 'blocker');
    await writeFile(f.configPath, tenantsYaml({ acme: [{ id: 1, keyFile: join(blocker, 'a.key') }] }));
    await writeFile(blocker, 'a file where a directory should be');
    const runtime = await f.start();
    assert.deepEqual(runtime.status().drivers, { ready: 0, failed: 1, starting: 0 });
    const config = configOf(runtime, 1);
    let first: unknown;
    await assert.rejects(runtime.pool.driverFor(config), (err: unknown) => {
      assert.ok(err instanceof KmsError);
      assert.equal(err.kind, 'key_unusable');
      assert.match(err.message, /blocker/);
      first = err;
      return true;
    });
    await assert.rejects(runtime.pool.driverFor(config), (err: unknown) => {
      assert.equal(err, first, 'within the retry interval the start-up error is answered without a new attempt');
      return true;
    });
  });

  it('retries a failed driver on use after retryInitMs', async (t) => {
    const f = await fixture(t);
    const blocker = join(f.dir, 'blocker');
    await writeFile(f.configPath, tenantsYaml({ acme: [{ id: 1, keyFile: join(blocker, 'a.key') }] }));
    await writeFile(blocker, 'a file where a directory should be');
    const runtime = await f.start({ retryInitMs: 1 });
    assert.deepEqual(runtime.status().drivers, { ready: 0, failed: 1, starting: 0 });
    await rm(blocker);
    await waitFor('the driver to start on a later use', async () => {
      try {
        await runtime.pool.driverFor(configOf(runtime, 1));
        return true;
      } catch {
        return false;
      }
    });
    assert.deepEqual(runtime.status().drivers, { ready: 1, failed: 0, starting: 0 });
    await roundTrip(runtime, 1);
  });
  it('retries a failed driver in the background too: /health recovers with no request (found by the chaos run)', async (t) => {
    const f = await fixture(t);
    const blocker = join(f.dir, 'blocker');
    await writeFile(f.configPath, tenantsYaml({ acme: [{ id: 1, keyFile: join(blocker, 'a.key') }] }));
    await writeFile(blocker, 'a file where a directory should be');
    const runtime = await f.start({ retryInitMs: 20 });
    assert.deepEqual(runtime.status().drivers, { ready: 0, failed: 1, starting: 0 });
    await new Promise((resolve) => setTimeout(resolve, 100));
    assert.deepEqual(runtime.status().drivers, { ready: 0, failed: 1, starting: 0 }, 'still failing while the cause is there');
    await rm(blocker);
    await waitFor('the driver to start with no request', () => runtime.status().drivers.ready === 1);
    assert.deepEqual(runtime.status().drivers, { ready: 1, failed: 0, starting: 0 });
    await roundTrip(runtime, 1);
  });
});

describe('KeywardRuntime: watch()', () => {
  const initial = (keys: string): string => tenantsYaml({ acme: [{ id: 1, keyFile: join(keys, 'a.key') }] });
  const changed = (keys: string): string =>
    tenantsYaml({ acme: [{ id: 1, keyFile: join(keys, 'a.key') }], beta: [{ id: 2, keyFile: join(keys, 'a.key') }] });
  const sawBeta = (runtime: KeywardRuntime) => (): boolean => runtime.directory.tenant('beta') !== undefined;

  it('picks up a rewrite of the file', async (t) => {
    const f = await fixture(t);
    await writeFile(f.configPath, initial(f.keys));
    const runtime = await f.start();
    runtime.watch();
    await writeFile(f.configPath, changed(f.keys));
    await waitFor('the rewrite to be applied', sawBeta(runtime));
    assert.equal(await reloads(f.metrics, 'success'), 1);
  });

  it('picks up an atomic replace by rename', async (t) => {
    const f = await fixture(t);
    await writeFile(f.configPath, initial(f.keys));
    const runtime = await f.start();
    runtime.watch();
    const temp = join(f.dir, '.tenants.yaml.tmp');
    await writeFile(temp, changed(f.keys));
    await rename(temp, f.configPath);
    await waitFor('the replaced file to be applied', sawBeta(runtime));
    assert.equal(await reloads(f.metrics, 'success'), 1);
  });

  it('picks up a Kubernetes ConfigMap update (..data symlink swap)', async (t) => {
    // The kubelet's layout: tenants.yaml -> ..data/tenants.yaml, ..data -> ..<timestamp>/, and an
    // update writes a new timestamped directory and renames a fresh symlink over ..data.
    const f = await fixture(t, async ({ dir, keys }) => {
      await mkdir(join(dir, '..2026_01_01_00_00_00.000000001'));
      await writeFile(join(dir, '..2026_01_01_00_00_00.000000001', 'tenants.yaml'), initial(keys));
      await symlink('..2026_01_01_00_00_00.000000001', join(dir, '..data'));
      await symlink('..data/tenants.yaml', join(dir, 'tenants.yaml'));
      return join(dir, 'tenants.yaml');
    });
    const runtime = await f.start();
    assert.equal(runtime.directory.tenantCount, 1);
    runtime.watch();

    const next = '..2026_01_01_00_05_00.000000002';
    await mkdir(join(f.dir, next));
    await writeFile(join(f.dir, next, 'tenants.yaml'), changed(f.keys));
    await symlink(next, join(f.dir, '..data_tmp'));
    await rename(join(f.dir, '..data_tmp'), join(f.dir, '..data'));
    await rm(join(f.dir, '..2026_01_01_00_00_00.000000001'), { recursive: true });

    await waitFor('the swapped ConfigMap to be applied', sawBeta(runtime));
    assert.equal(await reloads(f.metrics, 'success'), 1);
    assert.equal(runtime.status().configPath, join(f.dir, 'tenants.yaml'));
  });

  it('polls as a safety net without counting unchanged bytes', async (t) => {
    const f = await fixture(t);
    await writeFile(f.configPath, initial(f.keys));
    const runtime = await f.start({ pollMs: 100 });
    runtime.watch();
    await writeFile(f.configPath, changed(f.keys));
    await waitFor('the change to be applied', sawBeta(runtime));
    // Unchanged bytes on every later poll: nothing more is counted.
    await new Promise((resolve) => setTimeout(resolve, 350));
    assert.equal(await reloads(f.metrics, 'success'), 1);
    assert.equal(await reloads(f.metrics, 'failure'), 0);
  });

  it('counts a watched change to an invalid file as a failure and keeps serving', async (t) => {
    const f = await fixture(t);
    await writeFile(f.configPath, initial(f.keys));
    const runtime = await f.start();
    runtime.watch();
    await writeFile(f.configPath, 'version: 1\ntenants: {}\nunknown: true\n');
    await waitFor('the failure to be recorded', () => /unknown: Unexpected property/.test(runtime.status().lastReloadError ?? ''));
    assert.equal(runtime.directory.tenantCount, 1);
    assert.ok((await reloads(f.metrics, 'failure')) >= 1);
    assert.equal(await reloads(f.metrics, 'success'), 0);
  });

  it('stops watching on close', async (t) => {
    const f = await fixture(t);
    await writeFile(f.configPath, initial(f.keys));
    const runtime = await KeywardRuntime.start(f.options({ pollMs: 100 }));
    runtime.watch();
    await runtime.close();
    const served = runtime.directory;
    await writeFile(f.configPath, changed(f.keys));
    await new Promise((resolve) => setTimeout(resolve, 400));
    assert.equal(runtime.directory, served);
    assert.equal(await reloads(f.metrics, 'success'), 0);
    assert.deepEqual(runtime.status().drivers, { ready: 0, failed: 0, starting: 0 }, 'drivers are closed');
  });
});
