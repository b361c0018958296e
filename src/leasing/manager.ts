/**
 * Key leasing (DESIGN.md, "A lease's life"). A lease is a random AES-256 key (LEK) that
 * the tenant's KMS wrapped (the ELEK, carried in every EDEK made under it); while cached,
 * DEKs are wrapped and unwrapped locally under it.
 *
 * - Misses are single flight: however many requests need a lease, the KMS is asked once.
 * - Every cached lease is re-approved in the background every `refreshInterval` (jittered)
 *   by unwrapping its ELEK through the KMS — an unwrap, not a wrap, because some KMSs
 *   (Azure RSA) can wrap locally and would never notice a revocation.
 * - A refusal (refused, key_unusable) wipes the lease at once ("revoked"); an outage
 *   (unreachable, throttled, anything else) leaves it serving, stale, until
 *   `lastVerified + maxOutage`, when it is wiped ("outage") — checked at use as well as
 *   by the sweeper, so a lease is never used past its deadline.
 * - Reloads wipe leases of configs that were removed, disabled, pointed at other provider
 *   settings or had leasing turned off ("disabled"); the cache cap and idleness evict ("evicted"); close() wipes all
 *   ("shutdown"). Wiping zero-fills the key bytes.
 * - Requests never wait on a refresh; a wiped lease is simply a miss next time, so
 *   service resumes by itself once the KMS answers again.
 *
 * Domain code: no Fastify; time comes from an injectable clock.
 */
import { randomFillSync, randomInt, timingSafeEqual } from 'node:crypto';
import type { Logger } from 'pino';
import { lekAad } from '../envelope/aad.js';
import { EdekFormatError, decodeEdeks, edekEntry, encodeEdeks } from '../envelope/edek.js';
import type { KmsDriver } from '../kms/driver.js';
import { KmsError, isKmsError, type KmsFailureKind } from '../kms/errors.js';
import type { LeaseCounts, Metrics } from '../metrics.js';
import type { KmsConfig, LeasePolicy, TenantDirectory } from '../tenants/directory.js';

export interface Clock {
  now(): number;
}

export const systemClock: Clock = { now: () => Date.now() };

export type WipeReason = 'revoked' | 'outage' | 'disabled' | 'evicted' | 'shutdown';
export type LeaseState = 'fresh' | 'stale';

const LEK_BYTES = 32;
const MAX_LEASE_ID = 2 ** 31 - 1;

/** A lease as requests see it. `key` is zero-filled once `wiped` is true: check before use. */
export interface Lease {
  readonly tenantId: string;
  readonly kmsConfigId: number;
  readonly leaseId: number;
  readonly key: Buffer;
  readonly elek: Buffer;
  readonly wiped: boolean;
  /** Not cached (leasing is off for its config): the caller wipes it after use. */
  readonly transient: boolean;
}

interface Entry extends Lease {
  key: Buffer;
  wiped: boolean;
  readonly cacheKey: string;
  readonly createdAt: number;
  lastVerified: number;
  lastUsed: number;
  nextRefreshAt: number;
  lastError: KmsFailureKind | undefined;
  refreshing: Promise<void> | undefined;
}

interface Group {
  config: KmsConfig;
  policy: LeasePolicy;
  /** Cached leases in least-recently-used order (Map keeps insertion order; a use re-inserts). */
  readonly leases: Map<string, Entry>;
  readonly pending: Map<string, Promise<Entry>>;
  current: Entry | undefined;
  creating: Promise<Entry> | undefined;
}

export interface LeaseStatus {
  readonly tenantId: string;
  readonly kmsConfigId: number;
  readonly leaseId: number;
  readonly state: LeaseState;
  /** Serves new wraps (the others only unwrap). */
  readonly current: boolean;
  readonly createdAt: string;
  readonly lastVerified: string;
  /** Seconds until the lease is wiped unless a refresh succeeds first. */
  readonly wipeInSeconds: number;
  readonly lastError: KmsFailureKind | undefined;
}

export interface LeaseManagerOptions {
  readonly pool: { driverFor(config: KmsConfig): Promise<KmsDriver> };
  /** Lease metrics; the derivation-secret cache, which shares this class, passes none. */
  readonly metrics?: Metrics;
  /**
   * What the cached keys are: lease keys (the default: `lekAad`, the config's leasing
   * policy) or derivation secrets (their own AAD, a policy for every config).
   */
  readonly purpose?: {
    readonly aad: (tenantId: string, kmsConfigId: number, id: number) => Buffer;
    readonly policyOf: (config: KmsConfig) => LeasePolicy | undefined;
  };
  readonly logger: Logger;
  readonly clock?: Clock;
  /** Jitter source in [0, 1): refreshes land in [0.9, 1.1) × refreshInterval. */
  readonly random?: () => number;
}

type Leased = KmsConfig & { leasing: LeasePolicy };

export function isLeased(config: KmsConfig): config is Leased {
  return config.leasing !== undefined;
}

export class LeaseManager {
  readonly #groups = new Map<string, Group>();
  readonly #options: LeaseManagerOptions;
  readonly #metrics: Metrics | undefined;
  readonly #aad: (tenantId: string, kmsConfigId: number, id: number) => Buffer;
  readonly #policyOf: (config: KmsConfig) => LeasePolicy | undefined;
  readonly #clock: Clock;
  readonly #random: () => number;
  #timer: NodeJS.Timeout | undefined;
  #sweepMs = 1_000;
  #closed = false;
  #directory: TenantDirectory | undefined;

  constructor(options: LeaseManagerOptions) {
    this.#options = options;
    this.#metrics = options.metrics;
    this.#aad = options.purpose?.aad ?? lekAad;
    this.#policyOf = options.purpose?.policyOf ?? ((config) => config.leasing);
    this.#clock = options.clock ?? systemClock;
    this.#random = options.random ?? Math.random;
    options.metrics?.observeLeases(() => this.#counts());
  }

  /** The lease that new wraps under `config` use; made (one KMS wrap) when there is none, or it is due to rotate. */
  async currentLease(config: Leased): Promise<Lease> {
    this.#live();
    const group = this.#group(config, config.leasing);
    const now = this.#clock.now();
    const current = group.current;
    if (current && !current.wiped) {
      if (this.#expired(current, now)) this.#wipe(group, current, 'outage');
      else if (now < current.createdAt + group.policy.rotateAfterMs) {
        this.#touch(group, current, now);
        this.#metrics?.leaseCache.inc({ result: 'hit' });
        return current;
      }
    }
    this.#metrics?.leaseCache.inc({ result: 'miss' });
    group.creating ??= this.#create(group).finally(() => {
      group.creating = undefined;
    });
    return group.creating;
  }

  /**
   * The lease an EDEK entry names. A hit is served from memory; a miss recovers the LEK
   * by unwrapping the ELEK through the KMS, once however many requests wait. With leasing
   * off for the config, the LEK is recovered every time and not cached (`transient`).
   */
  async leaseFor(config: KmsConfig, leaseId: number, elek: Buffer): Promise<Lease> {
    this.#live();
    const policy = this.#policyOf(config);
    if (!policy) {
      const key = await this.#recover(config, leaseId, elek);
      return { tenantId: config.tenantId, kmsConfigId: config.id, leaseId, key, elek, wiped: false, transient: true };
    }
    const group = this.#group(config, policy);
    const now = this.#clock.now();
    // Most EDEKs name the current lease: recognised by id and ELEK bytes without building the cache key.
    const current = group.current;
    if (current && current.leaseId === leaseId && current.elek.equals(elek) && this.#serves(group, current, now)) return current;
    const cacheKey = `${leaseId}:${elek.toString('base64')}`;
    const hit = group.leases.get(cacheKey);
    if (hit && this.#serves(group, hit, now)) return hit;
    this.#metrics?.leaseCache.inc({ result: 'miss' });
    let pending = group.pending.get(cacheKey);
    if (!pending) {
      pending = this.#recover(config, leaseId, elek)
        .then((key) => this.#admit(group, { leaseId, key, elek, cacheKey }))
        .finally(() => group.pending.delete(cacheKey));
      group.pending.set(cacheKey, pending);
    }
    return pending;
  }

  /** Applies a reloaded tenants file: wipes leases of configs removed, disabled, moved, re-pointed or no longer leased. */
  sync(directory: TenantDirectory): void {
    this.#directory = directory;
    let shortest = Infinity;
    for (const [key, group] of this.#groups) {
      const config = directory.config(group.config.id);
      // A changed fingerprint means other provider settings — possibly another key — so its leases are not this config's any more.
      const changed = config !== undefined && config.fingerprint !== group.config.fingerprint;
      const policy = config === undefined ? undefined : this.#policyOf(config);
      if (!config || !policy || changed || config.tenantId !== group.config.tenantId || config.status === 'disabled') {
        for (const entry of [...group.leases.values()]) this.#wipe(group, entry, 'disabled');
        this.#groups.delete(key);
        continue;
      }
      group.config = config;
      group.policy = policy;
      this.#enforceCap(group);
    }
    for (const config of directory.configs()) {
      const policy = this.#policyOf(config);
      if (policy) shortest = Math.min(shortest, policy.refreshIntervalMs);
    }
    this.#sweepMs = Number.isFinite(shortest) ? Math.min(1_000, Math.max(20, Math.floor(shortest / 5))) : 1_000;
    if (this.#timer) this.start();
  }

  /** Starts the background sweeper (refresh, outage wipe, idle eviction). */
  start(): void {
    if (this.#closed) return;
    clearInterval(this.#timer);
    this.#timer = setInterval(() => void this.runDue(), this.#sweepMs);
    this.#timer.unref();
  }

  /**
   * One sweep: wipes leases past their outage deadline or idle, and starts the refreshes
   * that are due. Resolves when the refreshes it started have settled (for tests; the
   * timer does not wait).
   */
  async runDue(): Promise<void> {
    if (this.#closed) return;
    const started: Promise<void>[] = [];
    const now = this.#clock.now();
    for (const group of this.#groups.values()) {
      const policy = group.policy;
      for (const entry of [...group.leases.values()]) {
        if (entry.wiped) continue;
        if (this.#expired(entry, now)) this.#wipe(group, entry, 'outage');
        else if (now - entry.lastUsed >= policy.idleAfterMs) this.#wipe(group, entry, 'evicted');
        else if (now >= entry.nextRefreshAt && !entry.refreshing) {
          entry.refreshing = this.#refresh(group, entry).finally(() => {
            entry.refreshing = undefined;
          });
          started.push(entry.refreshing);
        }
      }
    }
    await Promise.all(started);
  }

  status(tenantId?: string): LeaseStatus[] {
    const now = this.#clock.now();
    const out: LeaseStatus[] = [];
    for (const group of this.#groups.values()) {
      if (tenantId !== undefined && group.config.tenantId !== tenantId) continue;
      for (const entry of group.leases.values()) {
        out.push({
          tenantId: entry.tenantId,
          kmsConfigId: entry.kmsConfigId,
          leaseId: entry.leaseId,
          state: entry.lastError === undefined ? 'fresh' : 'stale',
          current: group.current === entry,
          createdAt: new Date(entry.createdAt).toISOString(),
          lastVerified: new Date(entry.lastVerified).toISOString(),
          wipeInSeconds: Math.max(0, Math.round((entry.lastVerified + group.policy.maxOutageMs - now) / 1000)),
          lastError: entry.lastError,
        });
      }
    }
    return out;
  }

  /** Stops the sweeper and wipes every lease. */
  close(): void {
    this.#closed = true;
    clearInterval(this.#timer);
    this.#timer = undefined;
    for (const group of this.#groups.values()) {
      for (const entry of [...group.leases.values()]) this.#wipe(group, entry, 'shutdown');
    }
    this.#groups.clear();
  }

  #live(): void {
    if (this.#closed) throw new KmsError('unreachable', 'Keyward is shutting down');
  }

  #group(config: KmsConfig, policy: LeasePolicy): Group {
    const key = `${config.tenantId}\u0000${config.id}`;
    let group = this.#groups.get(key);
    if (!group) {
      const known = this.#directory?.config(config.id);
      if (this.#directory && (!known || known.tenantId !== config.tenantId || known.status === 'disabled' || !this.#policyOf(known) || known.fingerprint !== config.fingerprint)) {
        throw new KmsError('key_unusable', 'the KMS configuration was disabled, removed or changed by a reload');
      }
      group = { config, policy, leases: new Map(), pending: new Map(), current: undefined, creating: undefined };
      this.#groups.set(key, group);
    }
    return group;
  }

  async #create(group: Group): Promise<Entry> {
    const config = group.config;
    let leaseId = randomInt(1, MAX_LEASE_ID);
    while ([...group.leases.values()].some((e) => e.leaseId === leaseId)) leaseId = randomInt(1, MAX_LEASE_ID);
    const key = randomFillSync(Buffer.alloc(LEK_BYTES));
    let blob: Buffer;
    try {
      const driver = await this.#options.pool.driverFor(config);
      blob = await driver.wrap(key, this.#aad(config.tenantId, config.id, leaseId));
    } catch (err) {
      key.fill(0);
      throw err;
    }
    const elek = encodeEdeks([edekEntry({ encryptedDekData: blob, kmsConfigId: config.id, tenantId: config.tenantId })]);
    const entry = this.#admit(group, { leaseId, key, elek, cacheKey: `${leaseId}:${elek.toString('base64')}`, current: true });
    this.#options.logger.debug({ tenantId: config.tenantId, kmsConfigId: config.id, leaseId }, 'lease created');
    return entry;
  }

  /** Unwraps an ELEK through the KMS after checking it belongs to this tenant and config. */
  async #recover(config: KmsConfig, leaseId: number, elek: Buffer): Promise<Buffer> {
    let blob: Buffer;
    try {
      const entries = decodeEdeks(elek);
      const [entry] = entries;
      if (entries.length !== 1 || !entry || entry.kmsConfigId !== config.id || entry.tenantId !== config.tenantId) {
        throw new KmsError('bad_ciphertext', 'the leased key in the EDEK is not bound to this tenant and KMS config');
      }
      blob = entry.encryptedDekData;
    } catch (err) {
      if (err instanceof EdekFormatError) throw new KmsError('bad_ciphertext', `the leased key in the EDEK does not parse: ${err.message}`, { cause: err });
      throw err;
    }
    const driver = await this.#options.pool.driverFor(config);
    const key = await driver.unwrap(blob, this.#aad(config.tenantId, config.id, leaseId));
    if (key.length !== LEK_BYTES) {
      key.fill(0);
      throw new KmsError('bad_ciphertext', 'the leased key in the EDEK has the wrong length');
    }
    return key;
  }

  /** Caches a lease just approved by the KMS; if its config went away meanwhile, wipes it instead. */
  #admit(group: Group, fields: { leaseId: number; key: Buffer; elek: Buffer; cacheKey: string; current?: boolean }): Entry {
    const now = this.#clock.now();
    const config = group.config;
    const entry: Entry = {
      tenantId: config.tenantId,
      kmsConfigId: config.id,
      leaseId: fields.leaseId,
      key: fields.key,
      // A copy: the caller's ELEK may be a view of a request's decoded EDEK.
      elek: Buffer.from(fields.elek),
      cacheKey: fields.cacheKey,
      wiped: false,
      transient: false,
      createdAt: now,
      lastVerified: now,
      lastUsed: now,
      nextRefreshAt: now + this.#interval(group.policy),
      lastError: undefined,
      refreshing: undefined,
    };
    const live = this.#groups.get(`${config.tenantId}\u0000${config.id}`) === group && !this.#closed;
    if (!live) {
      entry.key.fill(0);
      entry.wiped = true;
      this.#metrics?.leaseWipes.inc({ reason: this.#closed ? 'shutdown' : 'disabled' });
      throw new KmsError('key_unusable', 'the KMS configuration was disabled or removed while its lease was being made');
    }
    group.leases.set(entry.cacheKey, entry);
    if (fields.current) group.current = entry;
    this.#enforceCap(group, entry);
    return entry;
  }

  async #refresh(group: Group, entry: Entry): Promise<void> {
    const config = group.config;
    entry.nextRefreshAt = this.#clock.now() + this.#interval(group.policy);
    let key: Buffer;
    try {
      key = await this.#recover(config, entry.leaseId, entry.elek);
    } catch (err) {
      const kind: KmsFailureKind = isKmsError(err) ? err.kind : 'other';
      this.#metrics?.leaseRefreshes.inc({ outcome: kind });
      if (entry.wiped) return;
      entry.lastError = kind;
      const refused = kind === 'refused' || kind === 'key_unusable';
      this.#options.logger.warn(
        { tenantId: config.tenantId, kmsConfigId: config.id, leaseId: entry.leaseId, kind, reason: (err as Error).message },
        refused ? 'lease refresh refused: wiping the lease' : 'lease refresh failed: the lease keeps serving until its outage deadline',
      );
      if (refused) this.#wipe(group, entry, 'revoked');
      else if (this.#expired(entry, this.#clock.now())) this.#wipe(group, entry, 'outage');
      return;
    }
    this.#metrics?.leaseRefreshes.inc({ outcome: 'ok' });
    const same = !entry.wiped && key.length === entry.key.length && timingSafeEqual(key, entry.key);
    key.fill(0);
    if (entry.wiped) return;
    if (!same) {
      // The KMS approved the ELEK but returned other key bytes: never serve with a key the KMS disowns.
      this.#options.logger.error({ tenantId: config.tenantId, kmsConfigId: config.id, leaseId: entry.leaseId }, 'lease refresh returned a different key: wiping the lease');
      this.#wipe(group, entry, 'revoked');
      return;
    }
    entry.lastVerified = this.#clock.now();
    entry.lastError = undefined;
  }

  #expired(entry: Entry, now: number, known?: Group): boolean {
    const group = known ?? this.#groups.get(`${entry.tenantId}\u0000${entry.kmsConfigId}`);
    const maxOutage = group?.policy.maxOutageMs ?? 0;
    return now >= entry.lastVerified + maxOutage;
  }

  /** Whether a cached lease can serve now (counted as a hit); one past its outage deadline is wiped instead. */
  #serves(group: Group, entry: Entry, now: number): boolean {
    if (entry.wiped) return false;
    if (this.#expired(entry, now, group)) {
      this.#wipe(group, entry, 'outage');
      return false;
    }
    this.#touch(group, entry, now);
    this.#metrics?.leaseCache.inc({ result: 'hit' });
    return true;
  }

  #touch(group: Group, entry: Entry, now: number): void {
    entry.lastUsed = now;
    // The current lease is the last to be evicted (#enforceCap): its place in the LRU order does not matter.
    if (entry === group.current) return;
    // Re-insert: the Map's order is the LRU order.
    group.leases.delete(entry.cacheKey);
    group.leases.set(entry.cacheKey, entry);
  }

  #enforceCap(group: Group, keep?: Entry): void {
    const cap = group.policy.maxCachedLeases;
    const victims = [...group.leases.values()].filter((e) => e !== keep);
    victims.sort((a, b) => Number(a === group.current) - Number(b === group.current));
    for (const entry of victims) {
      if (group.leases.size <= cap) break;
      this.#wipe(group, entry, 'evicted');
    }
  }

  #wipe(group: Group, entry: Entry, reason: WipeReason): void {
    if (entry.wiped) return;
    entry.key.fill(0);
    entry.wiped = true;
    group.leases.delete(entry.cacheKey);
    if (group.current === entry) group.current = undefined;
    this.#metrics?.leaseWipes.inc({ reason });
    this.#options.logger.info({ tenantId: entry.tenantId, kmsConfigId: entry.kmsConfigId, leaseId: entry.leaseId, reason }, 'lease wiped');
  }

  #interval(policy: LeasePolicy): number {
    return Math.round(policy.refreshIntervalMs * (0.9 + 0.2 * this.#random()));
  }

  #counts(): LeaseCounts {
    const counts = { fresh: 0, stale: 0 };
    const staleWipeInSeconds = new Map<string, number>();
    const now = this.#clock.now();
    for (const group of this.#groups.values()) {
      for (const entry of group.leases.values()) {
        const state: LeaseState = entry.lastError === undefined ? 'fresh' : 'stale';
        counts[state] += 1;
        if (state === 'stale') {
          const left = Math.max(0, (entry.lastVerified + group.policy.maxOutageMs - now) / 1000);
          const provider = group.config.provider;
          staleWipeInSeconds.set(provider, Math.min(left, staleWipeInSeconds.get(provider) ?? Infinity));
        }
      }
    }
    return { ...counts, staleWipeInSeconds };
  }
}
