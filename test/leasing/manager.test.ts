/**
 * LeaseManager, every transition of DESIGN.md "A lease's life, precisely", driven by an
 * injected clock and an in-process fake KMS driver (no timers, no network).
 */
import assert from 'node:assert/strict';
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import { parseTenantsFile } from '../../src/config/tenants-file.js';
import { lekAad } from '../../src/envelope/aad.js';
import { edekEntry, encodeEdeks } from '../../src/envelope/edek.js';
import type { KmsDriver } from '../../src/kms/driver.js';
import { KmsError, isKmsError, type KmsFailureKind } from '../../src/kms/errors.js';
import { LeaseManager, isLeased, type Lease } from '../../src/leasing/manager.js';
import { createLogger } from '../../src/logger.js';
import { createMetrics, type Metrics } from '../../src/metrics.js';
import type { KmsConfig, LeasePolicy, TenantDirectory } from '../../src/tenants/directory.js';

const SECOND = 1_000;
const MINUTE = 60 * SECOND;
const HOUR = 60 * MINUTE;
const T0 = Date.UTC(2030, 0, 1, 0, 0, 0);

// ---------------------------------------------------------------------------------------------------------------
// Fakes

class FakeClock {
  t = T0;
  now(): number {
    return this.t;
  }
  advance(ms: number): void {
    this.t += ms;
  }
  set(ms: number): void {
    this.t = ms;
  }
}

/** AES-256-GCM under a fixed master key; calls are counted, can be failed with any KmsError, and can be held. */
class FakeDriver implements KmsDriver {
  readonly provider = 'local' as const;
  readonly #master = randomBytes(32);
  wraps = 0;
  unwraps = 0;
  /** When set, every call (after the hold) rejects with it. */
  failWith: KmsError | Error | undefined;
  /** When true, calls wait until release(). */
  holding = false;
  readonly #held: Array<() => void> = [];
  /** The plaintext buffers handed to wrap (the LEKs themselves: the manager keeps the same Buffer). */
  readonly wrapped: Buffer[] = [];
  /** The buffers unwrap returned (the manager caches these very Buffers). */
  readonly returned: Buffer[] = [];

  get calls(): number {
    return this.wraps + this.unwraps;
  }

  hold(): void {
    this.holding = true;
  }

  release(): void {
    this.holding = false;
    for (const resume of this.#held.splice(0)) resume();
  }

  async #gate(): Promise<void> {
    if (this.holding) await new Promise<void>((resolve) => this.#held.push(resolve));
    if (this.failWith) throw this.failWith;
  }

  /** Encrypts without counting a call: for making ELEKs in tests. */
  seal(plaintext: Buffer, aad: Buffer): Buffer {
    const iv = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', this.#master, iv);
    cipher.setAAD(aad);
    return Buffer.concat([iv, cipher.update(plaintext), cipher.final(), cipher.getAuthTag()]);
  }

  async wrap(plaintext: Buffer, aad: Buffer): Promise<Buffer> {
    this.wraps += 1;
    this.wrapped.push(plaintext);
    await this.#gate();
    return this.seal(plaintext, aad);
  }

  async unwrap(ciphertext: Buffer, aad: Buffer): Promise<Buffer> {
    this.unwraps += 1;
    await this.#gate();
    try {
      const decipher = createDecipheriv('aes-256-gcm', this.#master, ciphertext.subarray(0, 12));
      decipher.setAAD(aad);
      decipher.setAuthTag(ciphertext.subarray(ciphertext.length - 16));
      const out = Buffer.concat([decipher.update(ciphertext.subarray(12, ciphertext.length - 16)), decipher.final()]);
      this.returned.push(out);
      return out;
    } catch {
      throw new KmsError('bad_ciphertext', 'fake: does not decrypt');
    }
  }

  async close(): Promise<void> {}
}

// ---------------------------------------------------------------------------------------------------------------
// Configs, through the real tenants-file parser

type Leased = KmsConfig & { leasing: LeasePolicy };
interface ConfigSpec {
  id: number;
  status?: 'primary' | 'active' | 'disabled';
  keyFile?: string;
  leasing?: Record<string, unknown> | false;
}

const OPTIONS = { baseDir: '/tmp', defaultKmsTimeoutMs: 5_000 };
const DEFAULT_LEASING = { enabled: true, refreshInterval: '5m', maxOutage: '1h', rotateAfter: '2h', idleAfter: '2h' };

/** A TenantDirectory from tenant → configs (written as JSON, which is YAML). */
function directory(tenants: Record<string, ConfigSpec[]>): TenantDirectory {
  const file = {
    version: 1,
    tenants: Object.fromEntries(
      Object.entries(tenants).map(([tenant, specs]) => [
        tenant,
        {
          kmsConfigs: specs.map((s) => ({
            id: s.id,
            status: s.status ?? 'active',
            provider: 'local',
            local: { keyFile: s.keyFile ?? `k${s.id}.key` },
            ...(s.leasing === false ? {} : { leasing: { ...DEFAULT_LEASING, ...(s.leasing ?? {}) } }),
          })),
        },
      ]),
    ),
  };
  return parseTenantsFile(JSON.stringify(file), OPTIONS);
}

function leased(dir: TenantDirectory, id: number): Leased {
  const config = dir.config(id);
  assert.ok(config && isLeased(config), `config ${id} is leased`);
  return config;
}

function plain(dir: TenantDirectory, id: number): KmsConfig {
  const config = dir.config(id);
  assert.ok(config && !isLeased(config), `config ${id} is not leased`);
  return config;
}

interface Harness {
  clock: FakeClock;
  driver: FakeDriver;
  metrics: Metrics;
  manager: LeaseManager;
}

function harness(options: { random?: () => number } = {}): Harness {
  const clock = new FakeClock();
  const driver = new FakeDriver();
  const metrics = createMetrics({ processMetrics: false });
  const manager = new LeaseManager({
    pool: { driverFor: async () => driver },
    metrics,
    logger: createLogger({ level: 'silent' }),
    clock,
    random: options.random ?? (() => 0.5),
  });
  return { clock, driver, metrics, manager };
}

/** An ELEK for (config, leaseId) wrapping `key`, as another replica would have made it. */
function elekFor(driver: FakeDriver, tenantId: string, kmsConfigId: number, leaseId: number, key: Buffer): Buffer {
  const blob = driver.seal(key, lekAad(tenantId, kmsConfigId, leaseId));
  return encodeEdeks([edekEntry({ encryptedDekData: blob, kmsConfigId, tenantId })]);
}

/** A metric sample from the Prometheus text exposition; 0 when the series is absent. */
async function sample(metrics: Metrics, name: string, labels: Record<string, string> = {}): Promise<number> {
  const text = await metrics.registry.metrics();
  for (const line of text.split('\n')) {
    const m = /^([A-Za-z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const got = Object.fromEntries([...(m[2] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1]!, x[2]!]));
    const want = Object.entries(labels);
    if (want.length === Object.keys(got).length && want.every(([k, v]) => got[k] === v)) return Number(m[3]);
  }
  return 0;
}

function allZero(buf: Buffer): boolean {
  return buf.length > 0 && buf.every((b) => b === 0);
}

/** Lets every pending promise callback run (no timers involved in what is asserted). */
async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise<void>((resolve) => setImmediate(resolve));
}

async function rejectsWith(promise: Promise<unknown>, kind: KmsFailureKind): Promise<void> {
  await assert.rejects(promise, (err: unknown) => {
    assert.ok(isKmsError(err), `expected a KmsError, got ${String(err)}`);
    assert.equal(err.kind, kind);
    return true;
  });
}

const ACME = 'acme';

// ---------------------------------------------------------------------------------------------------------------

describe('LeaseManager: first use and hits', () => {
  it('a miss wraps a new LEK once; the lease is fresh; later currentLease calls are hits with no KMS call', async () => {
    const { driver, metrics, manager } = harness();
    const config = leased(directory({ [ACME]: [{ id: 1 }] }), 1);

    const lease = await manager.currentLease(config);
    assert.equal(driver.wraps, 1);
    assert.equal(driver.unwraps, 0);
    assert.equal(lease.tenantId, ACME);
    assert.equal(lease.kmsConfigId, 1);
    assert.ok(Number.isInteger(lease.leaseId) && lease.leaseId >= 1 && lease.leaseId <= 2 ** 31 - 1);
    assert.equal(lease.key.length, 32);
    assert.ok(!allZero(lease.key));
    assert.equal(lease.wiped, false);
    assert.equal(lease.transient, false);
    assert.equal(driver.wrapped[0], lease.key, 'the KMS wrapped the lease key itself');

    const [status] = manager.status();
    assert.equal(status?.state, 'fresh');
    assert.equal(status?.current, true);

    for (let i = 0; i < 5; i++) assert.equal(await manager.currentLease(config), lease);
    assert.equal(driver.calls, 1);
    assert.equal(await sample(metrics, 'keyward_lease_cache_requests_total', { result: 'miss' }), 1);
    assert.equal(await sample(metrics, 'keyward_lease_cache_requests_total', { result: 'hit' }), 5);
    assert.equal(await sample(metrics, 'keyward_leases', { state: 'fresh' }), 1);
    assert.equal(await sample(metrics, 'keyward_leases', { state: 'stale' }), 0);
  });

  it('leaseFor: a miss unwraps the ELEK once through the KMS, later calls are hits; both are counted', async () => {
    const { driver, metrics, manager } = harness();
    const config = leased(directory({ [ACME]: [{ id: 1 }] }), 1);
    const key = randomBytes(32);
    const elek = elekFor(driver, ACME, 1, 77, key);

    const lease = await manager.leaseFor(config, 77, elek);
    assert.deepEqual(lease.key, key);
    assert.equal(lease.leaseId, 77);
    assert.deepEqual(lease.elek, elek);
    assert.equal(driver.unwraps, 1);
    for (let i = 0; i < 3; i++) assert.equal(await manager.leaseFor(config, 77, Buffer.from(elek)), lease);
    assert.equal(driver.calls, 1);
    assert.equal(await sample(metrics, 'keyward_lease_cache_requests_total', { result: 'miss' }), 1);
    assert.equal(await sample(metrics, 'keyward_lease_cache_requests_total', { result: 'hit' }), 3);
    const [status] = manager.status();
    assert.equal(status?.current, false, 'a lease recovered for unwraps does not serve new wraps');
  });

  it('a lease made by currentLease also serves leaseFor of its own ELEK without a KMS call', async () => {
    const { driver, manager } = harness();
    const config = leased(directory({ [ACME]: [{ id: 1 }] }), 1);
    const lease = await manager.currentLease(config);
    assert.equal(await manager.leaseFor(config, lease.leaseId, lease.elek), lease);
    assert.equal(driver.calls, 1);
  });

  it('a first-use refusal caches nothing and the request gets the KmsError', async () => {
    const { driver, manager } = harness();
    const config = leased(directory({ [ACME]: [{ id: 1 }] }), 1);
    driver.failWith = new KmsError('refused', 'fake: access denied');
    await rejectsWith(manager.currentLease(config), 'refused');
    assert.ok(allZero(driver.wrapped[0]!), 'the LEK that was never approved is zero-filled');
    assert.deepEqual(manager.status(), []);
  });
});

describe('LeaseManager: rotation', () => {
  it('after rotateAfter a new lease serves new wraps; the old one still serves leaseFor', async () => {
    const { clock, driver, manager } = harness();
    const config = leased(directory({ [ACME]: [{ id: 1, leasing: { rotateAfter: '30m' } }] }), 1);

    const first = await manager.currentLease(config);
    clock.advance(30 * MINUTE - 1);
    assert.equal(await manager.currentLease(config), first, 'not yet due to rotate');
    assert.equal(driver.wraps, 1);

    clock.advance(1);
    const second = await manager.currentLease(config);
    assert.notEqual(second, first);
    assert.notEqual(second.leaseId, first.leaseId);
    assert.ok(!second.key.equals(first.key));
    assert.equal(driver.wraps, 2);
    assert.equal(first.wiped, false);
    assert.ok(!allZero(first.key));

    assert.equal(await manager.leaseFor(config, first.leaseId, first.elek), first);
    assert.equal(await manager.currentLease(config), second);
    assert.equal(driver.calls, 2, 'the old lease is served from memory');

    const status = manager.status();
    assert.equal(status.length, 2);
    assert.equal(status.find((s) => s.leaseId === first.leaseId)?.current, false);
    assert.equal(status.find((s) => s.leaseId === second.leaseId)?.current, true);
  });
});

describe('LeaseManager: single flight', () => {
  it('50 concurrent leaseFor of one ELEK while the unwrap is pending: one KMS unwrap, one lease for all', async () => {
    const { driver, manager } = harness();
    const config = leased(directory({ [ACME]: [{ id: 1 }] }), 1);
    const elek = elekFor(driver, ACME, 1, 5, randomBytes(32));
    driver.hold();
    const calls = Array.from({ length: 50 }, () => manager.leaseFor(config, 5, Buffer.from(elek)));
    await settle();
    assert.equal(driver.unwraps, 1);
    driver.release();
    const leases = await Promise.all(calls);
    assert.equal(new Set(leases).size, 1);
    assert.equal(driver.calls, 1);
    assert.equal(manager.status().length, 1);
  });

  it('50 concurrent currentLease while the wrap is pending: one KMS wrap, one lease for all', async () => {
    const { driver, manager } = harness();
    const config = leased(directory({ [ACME]: [{ id: 1 }] }), 1);
    driver.hold();
    const calls = Array.from({ length: 50 }, () => manager.currentLease(config));
    await settle();
    assert.equal(driver.wraps, 1);
    driver.release();
    const leases = await Promise.all(calls);
    assert.equal(new Set(leases).size, 1);
    assert.equal(driver.calls, 1);
    assert.equal(manager.status().length, 1);
  });

  it('a failing recovery rejects all 50 waiters, and the next leaseFor asks the KMS again', async () => {
    const { driver, manager } = harness();
    const config = leased(directory({ [ACME]: [{ id: 1 }] }), 1);
    const key = randomBytes(32);
    const elek = elekFor(driver, ACME, 1, 5, key);
    driver.hold();
    const calls = Array.from({ length: 50 }, () => manager.leaseFor(config, 5, elek));
    await settle();
    driver.failWith = new KmsError('unreachable', 'fake: down');
    driver.release();
    const results = await Promise.allSettled(calls);
    assert.equal(driver.unwraps, 1);
    for (const r of results) {
      assert.equal(r.status, 'rejected');
      assert.ok(r.status === 'rejected' && isKmsError(r.reason) && r.reason.kind === 'unreachable');
    }
    assert.deepEqual(manager.status(), []);

    driver.failWith = undefined;
    const lease = await manager.leaseFor(config, 5, elek);
    assert.equal(driver.unwraps, 2);
    assert.deepEqual(lease.key, key);
  });

  it('a failing wrap rejects all 50 currentLease waiters, and the next call tries again', async () => {
    const { driver, manager } = harness();
    const config = leased(directory({ [ACME]: [{ id: 1 }] }), 1);
    driver.hold();
    const calls = Array.from({ length: 50 }, () => manager.currentLease(config));
    await settle();
    driver.failWith = new KmsError('throttled', 'fake: slow down');
    driver.release();
    const results = await Promise.allSettled(calls);
    assert.equal(driver.wraps, 1);
    assert.ok(results.every((r) => r.status === 'rejected' && isKmsError(r.reason) && r.reason.kind === 'throttled'));

    driver.failWith = undefined;
    const lease = await manager.currentLease(config);
    assert.equal(driver.wraps, 2);
    assert.equal(lease.wiped, false);
  });
});

describe('LeaseManager: refresh', () => {
  for (const r of [0, 0.5, 0.999999]) {
    it(`runDue refreshes once at refreshInterval × ${(0.9 + 0.2 * r).toFixed(3)} (random ${r}) and not before`, async () => {
      const { clock, driver, metrics, manager } = harness({ random: () => r });
      const config = leased(directory({ [ACME]: [{ id: 1 }] }), 1);
      const lease = await manager.currentLease(config);
      const due = Math.round(5 * MINUTE * (0.9 + 0.2 * r));
      assert.ok(due >= 0.9 * 5 * MINUTE && due <= 1.1 * 5 * MINUTE);

      await manager.runDue();
      clock.advance(due - 1);
      await manager.runDue();
      assert.equal(driver.unwraps, 0, 'nothing is due yet');
      assert.equal(manager.status()[0]?.lastVerified, new Date(T0).toISOString());

      clock.advance(1);
      await manager.runDue();
      assert.equal(driver.unwraps, 1);
      assert.equal(driver.wraps, 1);
      const [status] = manager.status();
      assert.equal(status?.lastVerified, new Date(T0 + due).toISOString());
      assert.equal(status?.state, 'fresh');
      assert.equal(status?.lastError, undefined);
      assert.equal(lease.wiped, false);
      assert.equal(await sample(metrics, 'keyward_lease_refreshes_total', { outcome: 'ok' }), 1);

      await manager.runDue();
      assert.equal(driver.unwraps, 1, 'the next refresh is a full interval later');
    });
  }

  it('a refresh does not count as use: no cache hit or miss is recorded', async () => {
    const { clock, metrics, manager } = harness();
    const config = leased(directory({ [ACME]: [{ id: 1 }] }), 1);
    await manager.currentLease(config);
    clock.advance(5 * MINUTE);
    await manager.runDue();
    assert.equal(await sample(metrics, 'keyward_lease_cache_requests_total', { result: 'hit' }), 0);
    assert.equal(await sample(metrics, 'keyward_lease_cache_requests_total', { result: 'miss' }), 1);
  });

  for (const kind of ['refused', 'key_unusable'] as const) {
    it(`a refresh refused (${kind}) wipes the lease at once (revoked), zero-filled; the next use asks the KMS and is refused`, async () => {
      const { clock, driver, metrics, manager } = harness();
      const config = leased(directory({ [ACME]: [{ id: 1 }] }), 1);
      const lease = await manager.currentLease(config);
      const key = lease.key;
      const copy = Buffer.from(key);

      driver.failWith = new KmsError(kind, 'fake: no');
      clock.advance(5 * MINUTE);
      await manager.runDue();
      assert.equal(lease.wiped, true);
      assert.equal(lease.key, key);
      assert.ok(allZero(key), 'every byte of the lease key is 0');
      assert.deepEqual(manager.status(), []);
      assert.equal(await sample(metrics, 'keyward_lease_wipes_total', { reason: 'revoked' }), 1);
      assert.equal(await sample(metrics, 'keyward_lease_refreshes_total', { outcome: kind }), 1);

      const before = driver.calls;
      await rejectsWith(manager.leaseFor(config, lease.leaseId, lease.elek), kind);
      assert.equal(driver.unwraps, 2, 'leaseFor is a miss that asks the KMS');
      await rejectsWith(manager.currentLease(config), kind);
      assert.equal(driver.wraps, 2, 'currentLease is a miss that asks the KMS');
      assert.equal(driver.calls, before + 2);

      // The tenant restores access: service resumes by itself, with the same lease key recovered.
      driver.failWith = undefined;
      const back = await manager.leaseFor(config, lease.leaseId, lease.elek);
      assert.deepEqual(back.key, copy);
    });
  }

  it('a refresh answered with another key is treated as a refusal (revoked)', async () => {
    const { clock, driver, metrics, manager } = harness();
    const config = leased(directory({ [ACME]: [{ id: 1 }] }), 1);
    const lease = await manager.currentLease(config);
    const unwrap = driver.unwrap.bind(driver);
    driver.unwrap = async () => randomBytes(32);
    clock.advance(5 * MINUTE);
    await manager.runDue();
    driver.unwrap = unwrap;
    assert.equal(lease.wiped, true);
    assert.ok(allZero(lease.key));
    assert.equal(await sample(metrics, 'keyward_lease_wipes_total', { reason: 'revoked' }), 1);
  });

  for (const failure of [
    new KmsError('unreachable', 'fake: timeout'),
    new KmsError('throttled', 'fake: 429'),
    new KmsError('other', 'fake: 500'),
    new KmsError('account_issue', 'fake: billing'),
    new Error('not even a KmsError'),
  ]) {
    const kind = isKmsError(failure) ? failure.kind : 'other';
    const label = isKmsError(failure) ? kind : 'a plain Error';
    it(`a refresh that fails with ${label} keeps the lease, stale and serving, until lastVerified + maxOutage, then wipes it (outage)`, async () => {
      const { clock, driver, metrics, manager } = harness();
      const config = leased(directory({ [ACME]: [{ id: 1 }] }), 1);
      const lease = await manager.currentLease(config);
      const key = lease.key;

      clock.advance(5 * MINUTE);
      await manager.runDue(); // ok: lastVerified = T0 + 5m
      const verified = T0 + 5 * MINUTE;
      driver.failWith = failure;
      clock.advance(5 * MINUTE);
      await manager.runDue();
      assert.equal(lease.wiped, false);
      const [status] = manager.status();
      assert.equal(status?.state, 'stale');
      assert.equal(status?.lastError, kind);
      assert.equal(status?.lastVerified, new Date(verified).toISOString());
      assert.equal(await sample(metrics, 'keyward_leases', { state: 'stale' }), 1);
      assert.equal(await sample(metrics, 'keyward_leases', { state: 'fresh' }), 0);
      assert.equal(await sample(metrics, 'keyward_lease_refreshes_total', { outcome: kind }), 1);
      // Time to the outage wipe, per provider: an hour after the last good refresh, 5 minutes of it gone.
      assert.equal(await sample(metrics, 'keyward_lease_wipe_in_seconds', { provider: 'local' }), 55 * 60);

      // Still served, from memory.
      const calls = driver.calls;
      assert.equal(await manager.leaseFor(config, lease.leaseId, lease.elek), lease);
      assert.equal(await manager.currentLease(config), lease);
      assert.equal(driver.calls, calls);

      // Refreshes keep failing every interval; the lease serves until its deadline...
      while (clock.now() + 5 * MINUTE < verified + HOUR) {
        clock.advance(5 * MINUTE);
        await manager.runDue();
        assert.equal(lease.wiped, false);
      }
      clock.set(verified + HOUR - 1);
      await manager.runDue();
      assert.equal(lease.wiped, false, 'one millisecond before the deadline it still serves');
      assert.equal(manager.status()[0]?.wipeInSeconds, 0);
      assert.equal(await sample(metrics, 'keyward_lease_wipe_in_seconds', { provider: 'local' }), 0.001);
      // ... and not a millisecond after it.
      clock.set(verified + HOUR);
      await manager.runDue();
      assert.equal(lease.wiped, true);
      assert.ok(allZero(key));
      assert.deepEqual(manager.status(), []);
      assert.equal(await sample(metrics, 'keyward_lease_wipes_total', { reason: 'outage' }), 1);
      assert.equal(await sample(metrics, 'keyward_leases', { state: 'stale' }), 0);
      assert.doesNotMatch(await metrics.registry.metrics(), /^keyward_lease_wipe_in_seconds\{/m, 'no stale lease, no sample');
    });
  }

  it('outage deadline is enforced at use: leaseFor past lastVerified + maxOutage never returns the old lease, even if runDue never ran', async () => {
    const { clock, driver, metrics, manager } = harness();
    const config = leased(directory({ [ACME]: [{ id: 1 }] }), 1);
    const original = randomBytes(32);
    const elek = elekFor(driver, ACME, 1, 9, original);
    const lease = await manager.leaseFor(config, 9, elek);
    const key = lease.key;

    driver.failWith = new KmsError('unreachable', 'fake: down');
    clock.advance(HOUR);
    await rejectsWith(manager.leaseFor(config, 9, elek), 'unreachable');
    assert.equal(lease.wiped, true);
    assert.ok(allZero(key));
    assert.equal(driver.unwraps, 2, 'the use past the deadline was a miss that asked the KMS');
    assert.equal(await sample(metrics, 'keyward_lease_wipes_total', { reason: 'outage' }), 1);

    // Recovery: the KMS is back, the next leaseFor re-leases and serves.
    driver.failWith = undefined;
    const back = await manager.leaseFor(config, 9, elek);
    assert.notEqual(back, lease);
    assert.equal(back.wiped, false);
    assert.deepEqual(back.key, original);
    assert.equal(driver.unwraps, 3);
    assert.equal(manager.status()[0]?.state, 'fresh');
    assert.equal(await manager.leaseFor(config, 9, elek), back);
    assert.equal(driver.unwraps, 3);
  });

  it('outage deadline is enforced at use: currentLease past the deadline makes a new lease instead of serving the old one', async () => {
    const { clock, driver, metrics, manager } = harness();
    const config = leased(directory({ [ACME]: [{ id: 1, leasing: { rotateAfter: '3h' } }] }), 1);
    const lease = await manager.currentLease(config);
    const key = lease.key;

    driver.failWith = new KmsError('throttled', 'fake: throttled');
    clock.advance(HOUR - 1);
    assert.equal(await manager.currentLease(config), lease, 'before the deadline it serves');
    clock.advance(1);
    await rejectsWith(manager.currentLease(config), 'throttled');
    assert.equal(lease.wiped, true);
    assert.ok(allZero(key));
    assert.equal(driver.wraps, 2);
    assert.equal(await sample(metrics, 'keyward_lease_wipes_total', { reason: 'outage' }), 1);

    driver.failWith = undefined;
    const fresh = await manager.currentLease(config);
    assert.notEqual(fresh, lease);
    assert.equal(fresh.wiped, false);
    assert.equal(driver.wraps, 3);
  });

  it('a refresh that fails after the deadline passed while it was pending wipes the lease (outage)', async () => {
    const { clock, driver, metrics, manager } = harness();
    const config = leased(directory({ [ACME]: [{ id: 1 }] }), 1);
    const lease = await manager.currentLease(config);
    driver.failWith = new KmsError('unreachable', 'fake: down');
    for (let t = 5; t <= 50; t += 5) {
      clock.set(T0 + t * MINUTE);
      await manager.runDue();
    }
    assert.equal(driver.unwraps, 10);
    assert.equal(lease.wiped, false);
    clock.set(T0 + 56 * MINUTE);
    assert.equal(await manager.leaseFor(config, lease.leaseId, lease.elek), lease);
    // The refresh due at 55m starts at 57m, before the deadline (60m), and fails at 61m, after it.
    clock.set(T0 + 57 * MINUTE);
    driver.hold();
    const sweep = manager.runDue();
    await settle();
    assert.equal(driver.unwraps, 11);
    assert.equal(lease.wiped, false);
    clock.set(T0 + 61 * MINUTE);
    driver.release();
    await sweep;
    assert.equal(lease.wiped, true);
    assert.ok(allZero(lease.key));
    assert.equal(await sample(metrics, 'keyward_lease_wipes_total', { reason: 'outage' }), 1);
  });

  it('recovery: a stale lease whose refresh succeeds again becomes fresh', async () => {
    const { clock, driver, metrics, manager } = harness();
    const config = leased(directory({ [ACME]: [{ id: 1 }] }), 1);
    const lease = await manager.currentLease(config);
    driver.failWith = new KmsError('unreachable', 'fake: down');
    clock.advance(5 * MINUTE);
    await manager.runDue();
    assert.equal(manager.status()[0]?.state, 'stale');
    assert.equal(manager.status()[0]?.lastVerified, new Date(T0).toISOString());

    driver.failWith = undefined;
    clock.advance(5 * MINUTE);
    await manager.runDue();
    const [status] = manager.status();
    assert.equal(status?.state, 'fresh');
    assert.equal(status?.lastError, undefined);
    assert.equal(status?.lastVerified, new Date(T0 + 10 * MINUTE).toISOString());
    assert.equal(status?.wipeInSeconds, 3600);
    assert.equal(lease.wiped, false);
    assert.equal(await sample(metrics, 'keyward_leases', { state: 'fresh' }), 1);
    assert.equal(await sample(metrics, 'keyward_leases', { state: 'stale' }), 0);
    assert.equal(await sample(metrics, 'keyward_lease_refreshes_total', { outcome: 'ok' }), 1);
    assert.equal(await sample(metrics, 'keyward_lease_refreshes_total', { outcome: 'unreachable' }), 1);
  });

  it('a refresh still pending is not started twice by the next sweep', async () => {
    const { clock, driver, manager } = harness();
    const config = leased(directory({ [ACME]: [{ id: 1 }] }), 1);
    await manager.currentLease(config);
    clock.advance(5 * MINUTE);
    driver.hold();
    const first = manager.runDue();
    await settle();
    clock.advance(5 * MINUTE);
    const second = manager.runDue();
    await settle();
    assert.equal(driver.unwraps, 1);
    driver.release();
    await Promise.all([first, second]);
    assert.equal(driver.unwraps, 1);
  });
});

describe('LeaseManager: eviction', () => {
  it('a lease unused for idleAfter is wiped (evicted); a lease used meanwhile is kept', async () => {
    const { clock, driver, metrics, manager } = harness();
    const config = leased(directory({ [ACME]: [{ id: 1, leasing: { idleAfter: '30m' } }] }), 1);
    const used = await manager.currentLease(config);
    const idle = await manager.leaseFor(config, 3, elekFor(driver, ACME, 1, 3, randomBytes(32)));
    const idleKey = idle.key;

    clock.advance(20 * MINUTE);
    assert.equal(await manager.currentLease(config), used);
    clock.set(T0 + 30 * MINUTE - 1);
    await manager.runDue();
    assert.equal(idle.wiped, false);
    clock.set(T0 + 30 * MINUTE);
    await manager.runDue();
    assert.equal(idle.wiped, true);
    assert.ok(allZero(idleKey));
    assert.equal(used.wiped, false);
    assert.deepEqual(manager.status().map((s) => s.leaseId), [used.leaseId]);
    assert.equal(await sample(metrics, 'keyward_lease_wipes_total', { reason: 'evicted' }), 1);

    clock.set(T0 + 50 * MINUTE);
    await manager.runDue();
    assert.equal(used.wiped, true, 'the current lease is evicted too once idle');
    assert.equal(await sample(metrics, 'keyward_lease_wipes_total', { reason: 'evicted' }), 2);
  });

  it('beyond maxCachedLeases the least recently used lease is wiped (evicted); the current lease is kept', async () => {
    const { driver, metrics, manager } = harness();
    const config = leased(directory({ [ACME]: [{ id: 1, leasing: { maxCachedLeases: 3 } }] }), 1);
    const current = await manager.currentLease(config);
    const elek = (id: number): Buffer => elekFor(driver, ACME, 1, id, randomBytes(32));
    const [ex, ey, ez] = [elek(11), elek(12), elek(13)];
    const x = await manager.leaseFor(config, 11, ex);
    const y = await manager.leaseFor(config, 12, ey);
    assert.equal(await manager.leaseFor(config, 11, ex), x); // x is now more recently used than y
    const yKey = y.key;
    // The current lease is the least recently used of all, but it serves new wraps: y goes.
    const z = await manager.leaseFor(config, 13, ez);
    assert.equal(y.wiped, true);
    assert.ok(allZero(yKey));
    assert.equal(current.wiped, false);
    assert.equal(x.wiped, false);
    assert.equal(z.wiped, false);
    assert.deepEqual(manager.status().map((s) => s.leaseId).sort((a, b) => a - b), [current.leaseId, 11, 13].sort((a, b) => a - b));
    assert.equal(await sample(metrics, 'keyward_lease_wipes_total', { reason: 'evicted' }), 1);
    assert.equal(await manager.currentLease(config), current);
  });

  it('with maxCachedLeases 1, rotation replaces the current lease: the new lease serves, the old one is evicted', async () => {
    const { clock, manager } = harness();
    const config = leased(directory({ [ACME]: [{ id: 1, leasing: { maxCachedLeases: 1, rotateAfter: '30m' } }] }), 1);
    const old = await manager.currentLease(config);
    clock.advance(30 * MINUTE);
    const next = await manager.currentLease(config);
    assert.notEqual(next, old);
    assert.equal(next.wiped, false, 'currentLease must not hand out a lease it already wiped');
    assert.ok(!allZero(next.key));
    assert.equal(old.wiped, true);
    assert.ok(allZero(old.key));
    assert.deepEqual(manager.status().map((s) => [s.leaseId, s.current]), [[next.leaseId, true]]);
  });

  it('with maxCachedLeases 1, leaseFor of another lease returns a live lease, not one wiped on admission', async () => {
    const { driver, manager } = harness();
    const config = leased(directory({ [ACME]: [{ id: 1, leasing: { maxCachedLeases: 1 } }] }), 1);
    await manager.currentLease(config);
    const key = randomBytes(32);
    const lease = await manager.leaseFor(config, 21, elekFor(driver, ACME, 1, 21, key));
    assert.equal(lease.wiped, false);
    assert.deepEqual(lease.key, key);
    assert.ok(manager.status().length <= 2);
  });
});

describe('LeaseManager: sync()', () => {
  const before = (): TenantDirectory =>
    directory({
      [ACME]: [{ id: 1, status: 'primary' }, { id: 2 }, { id: 3 }, { id: 4 }, { id: 5 }],
      globex: [{ id: 9 }],
    });
  const scenarios: Array<[string, number, TenantDirectory]> = [
    ['the config is removed', 1, directory({ [ACME]: [{ id: 2 }, { id: 3 }, { id: 4 }, { id: 5 }], globex: [{ id: 9 }] })],
    ['the config is disabled', 2, directory({ [ACME]: [{ id: 1 }, { id: 2, status: 'disabled' }, { id: 3 }, { id: 4 }, { id: 5 }], globex: [{ id: 9 }] })],
    ['leasing is turned off', 3, directory({ [ACME]: [{ id: 1 }, { id: 2 }, { id: 3, leasing: false }, { id: 4 }, { id: 5 }], globex: [{ id: 9 }] })],
    ['leasing is set to enabled: false', 3, directory({ [ACME]: [{ id: 1 }, { id: 2 }, { id: 3, leasing: { enabled: false } }, { id: 4 }, { id: 5 }], globex: [{ id: 9 }] })],
    ['the config is pointed at another key (provider settings changed)', 5, directory({ [ACME]: [{ id: 1 }, { id: 2 }, { id: 3 }, { id: 4 }, { id: 5, keyFile: 'other.key' }], globex: [{ id: 9 }] })],
    ['the config id moves to another tenant', 4, directory({ [ACME]: [{ id: 1 }, { id: 2 }, { id: 3 }, { id: 5 }], globex: [{ id: 9 }, { id: 4 }] })],
  ];
  for (const [name, id, after] of scenarios) {
    it(`wipes the leases of config ${id} (disabled) when ${name}; the other configs keep theirs`, async () => {
      const { driver, metrics, manager } = harness();
      const dir = before();
      manager.sync(dir);
      const leases = new Map<number, Lease[]>();
      for (const c of [1, 2, 3, 4, 5]) {
        const config = leased(dir, c);
        const current = await manager.currentLease(config);
        const other = await manager.leaseFor(config, 1000 + c, elekFor(driver, ACME, c, 1000 + c, randomBytes(32)));
        leases.set(c, [current, other]);
      }
      const keys = [...leases.get(id)!].map((l) => l.key);
      manager.sync(after);
      for (const lease of leases.get(id)!) assert.equal(lease.wiped, true);
      for (const key of keys) assert.ok(allZero(key));
      for (const c of [1, 2, 3, 4, 5].filter((c) => c !== id)) {
        for (const lease of leases.get(c)!) assert.equal(lease.wiped, false, `config ${c} keeps its leases`);
      }
      assert.equal(await sample(metrics, 'keyward_lease_wipes_total', { reason: 'disabled' }), 2);
      assert.ok(manager.status().every((s) => s.kmsConfigId !== id));
      assert.equal(manager.status().length, 8);
      const calls = driver.calls;
      for (const c of [1, 2, 3, 4, 5].filter((c) => c !== id)) {
        const [current] = leases.get(c)!;
        assert.equal(await manager.currentLease(leased(after, c)), current);
      }
      assert.equal(driver.calls, calls, 'the kept leases still serve from memory under the reloaded configs');
    });
  }

  it('a config still leased keeps its leases, and takes its new policy', async () => {
    const { clock, driver, metrics, manager } = harness();
    const dir = directory({ [ACME]: [{ id: 1 }] });
    manager.sync(dir);
    const lease = await manager.currentLease(leased(dir, 1));
    const reloaded = directory({ [ACME]: [{ id: 1, status: 'primary', leasing: { maxOutage: '30m' } }] });
    manager.sync(reloaded);
    assert.equal(lease.wiped, false);
    assert.equal(await manager.currentLease(leased(reloaded, 1)), lease);
    assert.equal(driver.calls, 1);
    assert.equal(await sample(metrics, 'keyward_lease_wipes_total', { reason: 'disabled' }), 0);
    assert.equal(manager.status()[0]?.wipeInSeconds, 1800, 'the shorter maxOutage applies');
    driver.failWith = new KmsError('unreachable', 'fake: down');
    clock.advance(30 * MINUTE);
    await manager.runDue();
    assert.equal(lease.wiped, true);
  });

  it('a lowered maxCachedLeases evicts down to the new cap at reload', async () => {
    const { driver, metrics, manager } = harness();
    const dir = directory({ [ACME]: [{ id: 1 }] });
    manager.sync(dir);
    const current = await manager.currentLease(leased(dir, 1));
    for (const id of [31, 32, 33]) await manager.leaseFor(leased(dir, 1), id, elekFor(driver, ACME, 1, id, randomBytes(32)));
    manager.sync(directory({ [ACME]: [{ id: 1, leasing: { maxCachedLeases: 2 } }] }));
    assert.equal(manager.status().length, 2);
    assert.equal(current.wiped, false);
    assert.equal(await sample(metrics, 'keyward_lease_wipes_total', { reason: 'evicted' }), 2);
  });

  it('a call that starts after sync() removed its config (holding the old config object) leaves no lease cached', async () => {
    const { clock, driver, manager } = harness();
    const dir = directory({ [ACME]: [{ id: 1 }, { id: 2 }] });
    manager.sync(dir);
    const stale = leased(dir, 1);
    await manager.currentLease(stale);
    manager.sync(directory({ [ACME]: [{ id: 2 }] }));
    assert.deepEqual(manager.status(), []);
    // e.g. the later items of a batch that read the tenant before the reload
    const key = randomBytes(32);
    // Whether the call is refused or served uncached, nothing may stay in the cache.
    await manager.leaseFor(stale, 40, elekFor(driver, ACME, 1, 40, key)).catch((err: unknown) => assert.ok(isKmsError(err)));
    assert.deepEqual(manager.status(), [], 'a removed config must not have cached leases');
    const calls = driver.calls;
    clock.advance(10 * MINUTE);
    await manager.runDue();
    assert.equal(driver.calls, calls, 'nor background refreshes');
  });
});

describe('LeaseManager: close()', () => {
  it('wipes every lease (shutdown), zero-filled, and rejects calls made afterwards', async () => {
    const { driver, metrics, manager } = harness();
    const dir = directory({ [ACME]: [{ id: 1 }, { id: 2 }], globex: [{ id: 3 }] });
    const leases = [
      await manager.currentLease(leased(dir, 1)),
      await manager.currentLease(leased(dir, 2)),
      await manager.currentLease(leased(dir, 3)),
      await manager.leaseFor(leased(dir, 1), 8, elekFor(driver, ACME, 1, 8, randomBytes(32))),
    ];
    const keys = leases.map((l) => l.key);
    manager.close();
    assert.ok(leases.every((l) => l.wiped));
    assert.ok(keys.every(allZero));
    assert.deepEqual(manager.status(), []);
    assert.equal(await sample(metrics, 'keyward_lease_wipes_total', { reason: 'shutdown' }), 4);
    assert.equal(await sample(metrics, 'keyward_leases', { state: 'fresh' }), 0);

    const calls = driver.calls;
    await rejectsWith(manager.currentLease(leased(dir, 1)), 'unreachable');
    await rejectsWith(manager.leaseFor(leased(dir, 1), leases[0]!.leaseId, leases[0]!.elek), 'unreachable');
    await rejectsWith(manager.leaseFor(plain(directory({ [ACME]: [{ id: 1, leasing: false }] }), 1), 8, leases[3]!.elek), 'unreachable');
    await manager.runDue();
    assert.equal(driver.calls, calls, 'nothing reaches the KMS after close');
  });

  it('a lease whose KMS call was pending at close is wiped (shutdown) and its caller rejected', async () => {
    const { driver, metrics, manager } = harness();
    const config = leased(directory({ [ACME]: [{ id: 1 }] }), 1);
    driver.hold();
    const pending = manager.currentLease(config);
    await settle();
    manager.close();
    driver.release();
    await assert.rejects(pending, isKmsError);
    assert.ok(allZero(driver.wrapped[0]!));
    assert.equal(await sample(metrics, 'keyward_lease_wipes_total', { reason: 'shutdown' }), 1);
  });
});

describe('LeaseManager: leasing off', () => {
  it('leaseFor returns a transient lease recovered through the KMS on every call; nothing is cached', async () => {
    const { driver, metrics, manager } = harness();
    const config = plain(directory({ [ACME]: [{ id: 1, leasing: false }] }), 1);
    const key = randomBytes(32);
    const elek = elekFor(driver, ACME, 1, 6, key);
    for (let i = 1; i <= 3; i++) {
      const lease = await manager.leaseFor(config, 6, elek);
      assert.equal(lease.transient, true);
      assert.equal(lease.wiped, false);
      assert.deepEqual(lease.key, key);
      assert.equal(driver.unwraps, i, 'one KMS call per call');
    }
    assert.deepEqual(manager.status(), []);
    assert.equal(await sample(metrics, 'keyward_leases', { state: 'fresh' }), 0);
    assert.equal(await sample(metrics, 'keyward_lease_cache_requests_total', { result: 'hit' }), 0);
  });
});

describe('LeaseManager: a lease made while its config is removed (#admit guard)', () => {
  it('currentLease: the new lease is wiped and the call rejects', async () => {
    const { driver, metrics, manager } = harness();
    const dir = directory({ [ACME]: [{ id: 1 }, { id: 2 }] });
    manager.sync(dir);
    driver.hold();
    const pending = manager.currentLease(leased(dir, 1));
    await settle();
    manager.sync(directory({ [ACME]: [{ id: 2 }] }));
    driver.release();
    await rejectsWith(pending, 'key_unusable');
    assert.ok(allZero(driver.wrapped[0]!), 'the LEK is zero-filled');
    assert.deepEqual(manager.status(), []);
    assert.equal(await sample(metrics, 'keyward_lease_wipes_total', { reason: 'disabled' }), 1);
  });

  it('leaseFor: the recovered lease is wiped and every waiter rejects', async () => {
    const { driver, metrics, manager } = harness();
    const dir = directory({ [ACME]: [{ id: 1 }, { id: 2 }] });
    manager.sync(dir);
    const elek = elekFor(driver, ACME, 1, 12, randomBytes(32));
    driver.hold();
    const pending = [manager.leaseFor(leased(dir, 1), 12, elek), manager.leaseFor(leased(dir, 1), 12, elek)];
    await settle();
    manager.sync(directory({ [ACME]: [{ id: 1, status: 'disabled' }, { id: 2 }] }));
    driver.release();
    for (const p of pending) await rejectsWith(p, 'key_unusable');
    assert.equal(driver.unwraps, 1);
    assert.ok(allZero(driver.returned[0]!), 'the recovered LEK is zero-filled');
    assert.deepEqual(manager.status(), []);
    assert.equal(await sample(metrics, 'keyward_lease_wipes_total', { reason: 'disabled' }), 1);
  });
});

describe('LeaseManager: ELEK checks before any KMS call', () => {
  const dir = directory({ [ACME]: [{ id: 1 }, { id: 2 }], globex: [{ id: 3 }], plain: [{ id: 4, leasing: false }] });
  const cases: Array<[string, KmsConfig, (d: FakeDriver) => Buffer]> = [
    ['names another config id', leased(dir, 1), (d) => elekFor(d, ACME, 2, 7, randomBytes(32))],
    ['names another tenant', leased(dir, 1), (d) => elekFor(d, 'globex', 1, 7, randomBytes(32))],
    ['names another tenant (config of that tenant)', leased(dir, 3), (d) => elekFor(d, ACME, 3, 7, randomBytes(32))],
    ['does not parse', leased(dir, 1), () => Buffer.from([0xff, 0xff, 0xff])],
    ['is truncated', leased(dir, 1), (d) => elekFor(d, ACME, 1, 7, randomBytes(32)).subarray(0, 20)],
    ['is empty', leased(dir, 1), () => Buffer.alloc(0)],
    [
      'holds two entries',
      leased(dir, 1),
      (d) => {
        const entry = edekEntry({ encryptedDekData: d.seal(randomBytes(32), lekAad(ACME, 1, 7)), kmsConfigId: 1, tenantId: ACME });
        return encodeEdeks([entry, entry]);
      },
    ],
    ['names another config id (leasing off)', plain(dir, 4), (d) => elekFor(d, 'plain', 1, 7, randomBytes(32))],
  ];
  for (const [name, config, make] of cases) {
    it(`an ELEK that ${name} → bad_ciphertext, no KMS call`, async () => {
      const { driver, manager } = harness();
      await rejectsWith(manager.leaseFor(config, 7, make(driver)), 'bad_ciphertext');
      assert.equal(driver.calls, 0);
      assert.deepEqual(manager.status(), []);
    });
  }

  it('an ELEK bound to another lease id is refused by the KMS (AAD) and not cached', async () => {
    const { driver, manager } = harness();
    await rejectsWith(manager.leaseFor(leased(dir, 1), 8, elekFor(driver, ACME, 1, 7, randomBytes(32))), 'bad_ciphertext');
    assert.equal(driver.unwraps, 1);
    assert.deepEqual(manager.status(), []);
  });
});

describe('LeaseManager: status()', () => {
  it('reports each lease, counts wipeInSeconds down with the clock, filters by tenant', async () => {
    const { clock, driver, manager } = harness();
    const dir = directory({ [ACME]: [{ id: 1 }], globex: [{ id: 2 }] });
    const lease = await manager.currentLease(leased(dir, 1));
    await manager.currentLease(leased(dir, 2));

    assert.deepEqual(manager.status(ACME), [
      {
        tenantId: ACME,
        kmsConfigId: 1,
        leaseId: lease.leaseId,
        state: 'fresh',
        current: true,
        createdAt: new Date(T0).toISOString(),
        lastVerified: new Date(T0).toISOString(),
        wipeInSeconds: 3600,
        lastError: undefined,
      },
    ]);
    assert.equal(manager.status().length, 2);
    assert.deepEqual(manager.status('globex').map((s) => s.kmsConfigId), [2]);
    assert.deepEqual(manager.status('nobody'), []);

    clock.advance(4 * MINUTE + 30 * SECOND);
    assert.equal(manager.status(ACME)[0]?.wipeInSeconds, 3330);
    driver.failWith = new KmsError('unreachable', 'fake: down');
    clock.advance(30 * SECOND);
    await manager.runDue();
    const [stale] = manager.status(ACME);
    assert.equal(stale?.wipeInSeconds, 3300);
    assert.equal(stale?.state, 'stale');
    assert.equal(stale?.lastError, 'unreachable');
    assert.equal(stale?.createdAt, new Date(T0).toISOString());
    clock.advance(54 * MINUTE);
    assert.equal(manager.status(ACME)[0]?.wipeInSeconds, 60);
  });

  it('never contains key bytes', async () => {
    const { driver, manager } = harness();
    const dir = directory({ [ACME]: [{ id: 1 }] });
    const lease = await manager.currentLease(leased(dir, 1));
    const other = await manager.leaseFor(leased(dir, 1), 4, elekFor(driver, ACME, 1, 4, randomBytes(32)));
    const text = JSON.stringify(manager.status());
    for (const key of [lease.key, other.key]) {
      assert.ok(!text.includes(key.toString('base64')));
      assert.ok(!text.includes(key.toString('hex')));
      assert.ok(!text.includes(key.toString('base64url')));
    }
    assert.ok(!/"key"|"elek"/.test(text));
  });
});

describe('LeaseManager: every wipe path zero-fills the key', () => {
  interface WipeCase {
    name: string;
    reason: 'revoked' | 'outage' | 'disabled' | 'evicted' | 'shutdown';
    leasing?: Record<string, unknown>;
    /** Makes the lease wiped; returns nothing. */
    trigger(h: Harness, lease: Lease, config: Leased): Promise<void>;
  }
  const cases: WipeCase[] = [
    {
      name: 'revoked (refresh refused)',
      reason: 'revoked',
      async trigger({ clock, driver, manager }) {
        driver.failWith = new KmsError('refused', 'fake: revoked');
        clock.advance(5 * MINUTE);
        await manager.runDue();
      },
    },
    {
      name: 'revoked (refresh key_unusable)',
      reason: 'revoked',
      async trigger({ clock, driver, manager }) {
        driver.failWith = new KmsError('key_unusable', 'fake: key disabled');
        clock.advance(5 * MINUTE);
        await manager.runDue();
      },
    },
    {
      name: 'outage (by the sweeper)',
      reason: 'outage',
      async trigger({ clock, driver, manager }) {
        driver.failWith = new KmsError('unreachable', 'fake: down');
        clock.advance(HOUR);
        await manager.runDue();
      },
    },
    {
      name: 'outage (at use)',
      reason: 'outage',
      async trigger({ clock, driver, manager }, lease, config) {
        driver.failWith = new KmsError('unreachable', 'fake: down');
        clock.advance(HOUR);
        await manager.leaseFor(config, lease.leaseId, lease.elek).catch(() => undefined);
      },
    },
    {
      name: 'disabled (reload)',
      reason: 'disabled',
      async trigger({ manager }) {
        manager.sync(directory({ [ACME]: [{ id: 1, status: 'disabled' }] }));
      },
    },
    {
      name: 'evicted (idle)',
      reason: 'evicted',
      leasing: { idleAfter: '10m' },
      async trigger({ clock, manager }) {
        clock.advance(10 * MINUTE);
        await manager.runDue();
      },
    },
    {
      name: 'evicted (cache cap)',
      reason: 'evicted',
      leasing: { maxCachedLeases: 2 },
      async trigger({ driver, manager }, _lease, config) {
        await manager.currentLease(config);
        await manager.leaseFor(config, 201, elekFor(driver, ACME, 1, 201, randomBytes(32)));
      },
    },
    {
      name: 'shutdown',
      reason: 'shutdown',
      async trigger({ manager }) {
        manager.close();
      },
    },
  ];
  for (const c of cases) {
    it(`${c.name}: wiped with reason ${c.reason}, every key byte 0`, async () => {
      const h = harness();
      const dir = directory({ [ACME]: [{ id: 1, ...(c.leasing ? { leasing: c.leasing } : {}) }] });
      h.manager.sync(dir);
      const config = leased(dir, 1);
      const lease = await h.manager.leaseFor(config, 100, elekFor(h.driver, ACME, 1, 100, randomBytes(32)));
      const key = lease.key;
      const copy = Buffer.from(key);
      assert.ok(!allZero(key));
      await c.trigger(h, lease, config);
      assert.equal(lease.wiped, true);
      assert.equal(lease.key, key, 'the same Buffer, wiped in place');
      assert.ok(allZero(key), `every byte is 0 (was ${copy.length} random bytes)`);
      assert.equal(await sample(h.metrics, 'keyward_lease_wipes_total', { reason: c.reason }), 1);
      assert.ok(h.manager.status().every((s) => s.leaseId !== 100));
    });
  }
});
