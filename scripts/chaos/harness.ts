/**
 * The chaos run (docs/chaos.md): steady mixed load across tenants on three clouds while
 * their KMSs are killed and restarted (or black-holed) and the tenants file is reloaded,
 * against Keyward running as a real child process. Afterwards: every DEK that came back
 * equals the one generated, every failure carried the right code for the situation it
 * happened in, no request ran past its documented bound, every EDEK made during the run
 * still unwraps, and the process is alive, ready and clean.
 *
 * Real parts: nsmithuk/local-kms (AWS; SIGKILLed and restarted on the same port, keys
 * persisted in its data directory), the Cloud KMS and Key Vault stand-ins of test/helpers
 * (their servers closed and reopened on the same port, keys kept), TCP fault proxies in
 * front of AWS and Cloud KMS (black-holing), SoftHSM2 and the local software KMS as
 * bystanders that must never notice anything. Everything listens on 127.0.0.1.
 *
 * The schedule (which KMS goes down when, for how long, how; which reloads when) is a
 * function of the seed; the interleaving of requests is not (timing), so a failure report
 * names the seed and the times, and the request log holds what each request depended on.
 *
 * Keys are Buffers in this process, compared with Buffer.equals and never printed.
 */
import { randomBytes } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { edekFromBase64 } from '../../src/envelope/edek.js';
import { startKeyVaultStandin, type KeyVaultStandin } from '../../test/helpers/azure-keyvault-standin.js';
import { startTokenStandin, type TokenStandin } from '../../test/helpers/azure-token-standin.js';
import { TEST_CACHE } from '../../test/helpers/emulator.js';
import { startFaultProxy, type FaultProxy } from '../../test/helpers/fault-proxy.js';
import { createStandInKey, standInAdminClient, startGcpKmsStandIn, type GcpKmsStandIn } from '../../test/helpers/gcp-kms-standin.js';
import { LOCAL_KMS_REGION, TEST_ACCESS_KEY_ID, TEST_SECRET_ACCESS_KEY, startLocalKms, type LocalKms } from '../../test/helpers/local-kms.js';
import { REPO, startKeyward, type KeywardProcess } from '../../test/helpers/process.js';
import { SOFTHSM_MODULE, cleanupSoftHsm, createSoftHsmToken } from '../../test/helpers/softhsm.js';

// ---------------------------------------------------------------------------------------------
// Options and report
// ---------------------------------------------------------------------------------------------

export interface ChaosOptions {
  /** Length of the loaded run (warm-up, chaos, cool-down), in seconds; at least 20. */
  readonly durationS: number;
  /** Seeds the schedule and the load's choices. Default: random (printed in the report). */
  readonly seed?: number;
  /** Progress lines (events as they happen). Default: silent. */
  readonly log?: (line: string) => void;
  /**
   * Concurrent load workers. Each serves a fixed share of the tenants, so that one tenant's
   * load never stalls behind another tenant's dead KMS (the load is closed-loop). Default 8.
   */
  readonly workers?: number;
  /** Think time of a worker between requests, [min, max] ms. Default [25, 75]. */
  readonly pauseMs?: readonly [number, number];
  /** Black-hole outages (connections accepted, never answered) besides the kills. Default true. */
  readonly blackhole?: boolean;
  /** A SoftHSM2 bystander tenant. Default: when SoftHSM2 is installed. */
  readonly pkcs11?: boolean;
  /** Per-attempt KMS timeout written into every KMS config. Default 1000 ms. */
  readonly kmsTimeoutMs?: number;
  /** `retries` of every KMS config. Default 1. */
  readonly retries?: number;
  /** At most this many EDEKs are unwrapped in the final verification (a random sample beyond). Default 100000. */
  readonly verifyLimit?: number;
  /** Writes every request (op, tenants, times, outcome, code, what it needed; never keys) to this file as JSON lines. */
  readonly requestLog?: string;
}

export type Cloud = 'aws' | 'gcp' | 'azure';
export type ProviderName = Cloud | 'local' | 'pkcs11';
export type OpName = 'v1.generate' | 'v1.wrap' | 'v1.unwrap' | 'v1.batchUnwrap' | 'v1.rewrap' | 'api1.wrap' | 'api1.unwrap' | 'api1.batchUnwrap';

export interface OpStats {
  total: number;
  ok: number;
  /** Whole-request failures by code. */
  failed: Record<string, number>;
  hung: number;
  transportErrors: number;
  maxLatencyMs: number;
  p99LatencyMs: number;
  /** The client-side deadline of the op (its longest form), ms. */
  deadlineMs: number;
}

export interface ChaosEvent {
  readonly kind: 'outage' | 'reload';
  /** outage: kill / blackhole; reload: its type. */
  readonly type: string;
  readonly provider?: Cloud;
  readonly plannedAtS: number;
  /** When it began (outage: kill or black-hole; reload: file written), seconds since the start. */
  readonly startS: number;
  /** Outage: service restored; reload: the reload outcome seen in Keyward's log. */
  readonly endS: number | undefined;
  readonly outcome: string;
  /** What the run saw of it (see `checks`). */
  readonly observed: Record<string, number>;
}

export interface Finding {
  readonly op: OpName | 'final';
  readonly tenant: string;
  readonly atS: number;
  readonly detail: string;
}

export interface Check {
  readonly name: string;
  readonly ok: boolean;
  readonly detail: string;
}

export interface ChaosReport {
  readonly seed: number;
  readonly durationS: number;
  readonly settings: {
    readonly workers: number;
    readonly kmsTimeoutMs: number;
    readonly retries: number;
    readonly concurrency: { limit: number; queue: number };
    readonly deadlineDerivation: string;
    readonly recoveryGraceMs: Record<Cloud, number>;
    readonly tenants: readonly { id: string; kind: string; role: string; providers: string }[];
  };
  readonly requests: number;
  readonly operations: Record<string, OpStats>;
  /** Per-item outcomes of the batch routes. */
  readonly items: { total: number; ok: number; failed: Record<string, number> };
  /** Every failure code seen (requests and items). */
  readonly codes: Record<string, number>;
  readonly perTenant: Record<string, { ok: number; failed: number; okDuringOutage: number }>;
  readonly events: readonly ChaosEvent[];
  readonly mismatches: readonly Finding[];
  readonly wrongCodes: readonly Finding[];
  readonly unexpectedSuccesses: readonly Finding[];
  readonly badAnswers: readonly Finding[];
  readonly hung: readonly Finding[];
  readonly maxLatencyMs: number;
  readonly harnessEventLoopDelayMaxMs: number;
  readonly final: {
    readonly edeks: number;
    readonly verified: number;
    readonly ok: number;
    readonly failures: readonly Finding[];
    /** EDEKs made before each provider's first outage, unwrapped after the run (its keys survived restarts). */
    readonly madeBeforeFirstOutage: Record<Cloud, number>;
    readonly settleMs: number;
  };
  readonly process: {
    readonly aliveAfterRun: boolean;
    readonly live: number;
    readonly ready: number;
    readonly health: unknown;
    /** Anything on Keyward's stderr besides process warnings. */
    readonly stderr: string;
    /** Process warnings on Keyward's stderr (deprecations, SDK notices): reported, not failures. */
    readonly stderrNotices: readonly string[];
    readonly errorLogs: Record<string, number>;
    readonly unexpectedErrorLogs: Record<string, number>;
    readonly leaseWipes: Record<string, number>;
    /** `GET /leases` after the run: leases of the leased tenants, how many still stale, when all were fresh (-1: never). */
    readonly leases: { total: number; stale: number; tenants: number; freshAfterMs: number };
    readonly reloads: { applied: number; failed: number };
    readonly exitCode: number | null;
  };
  readonly checks: readonly Check[];
  readonly ok: boolean;
}

// ---------------------------------------------------------------------------------------------
// Tenants
// ---------------------------------------------------------------------------------------------

type TenantKind = 'direct' | 'leased';
/** steady: always there; churn: removed and re-added by reloads; multi: primary flipped by reloads; bystander: never disturbed. */
type Role = 'steady' | 'churn' | 'multi' | 'bystander';

interface ConfigSpec {
  readonly id: number;
  readonly provider: ProviderName;
  /** Key name in its KMS. */
  readonly key: string;
}

interface TenantSpec {
  readonly id: string;
  readonly kind: TenantKind;
  readonly role: Role;
  readonly configs: readonly ConfigSpec[];
}

const ALL_TENANTS: readonly TenantSpec[] = [
  { id: 'd-aws', kind: 'direct', role: 'steady', configs: [{ id: 11, provider: 'aws', key: 'd-aws' }] },
  { id: 'd-gcp', kind: 'direct', role: 'steady', configs: [{ id: 12, provider: 'gcp', key: 'd-gcp' }] },
  { id: 'd-azure', kind: 'direct', role: 'steady', configs: [{ id: 13, provider: 'azure', key: 'd-azure' }] },
  { id: 'l-aws', kind: 'leased', role: 'steady', configs: [{ id: 21, provider: 'aws', key: 'l-aws' }] },
  { id: 'l-gcp', kind: 'leased', role: 'steady', configs: [{ id: 22, provider: 'gcp', key: 'l-gcp' }] },
  { id: 'l-azure', kind: 'leased', role: 'steady', configs: [{ id: 23, provider: 'azure', key: 'l-azure' }] },
  {
    id: 'd-multi',
    kind: 'direct',
    role: 'multi',
    configs: [
      { id: 31, provider: 'aws', key: 'multi' },
      { id: 32, provider: 'gcp', key: 'multi' },
    ],
  },
  { id: 'c-gcp', kind: 'direct', role: 'churn', configs: [{ id: 41, provider: 'gcp', key: 'c-gcp' }] },
  { id: 'c-aws-leased', kind: 'leased', role: 'churn', configs: [{ id: 42, provider: 'aws', key: 'c-aws' }] },
  { id: 'b-local', kind: 'direct', role: 'bystander', configs: [{ id: 51, provider: 'local', key: 'b-local' }] },
  { id: 'b-hsm', kind: 'direct', role: 'bystander', configs: [{ id: 52, provider: 'pkcs11', key: 'b-hsm' }] },
];

/** What the reloads change. */
interface FileState {
  /** The churn tenants are in the file. */
  readonly churn: boolean;
  /** Which config of d-multi is primary. */
  readonly multiPrimary: 'aws' | 'gcp';
  /** d-multi's other (non-primary) config is `disabled` instead of `active`. */
  readonly multiSecondaryDisabled: boolean;
}

const BASELINE: FileState = { churn: true, multiPrimary: 'aws', multiSecondaryDisabled: false };
const sameState = (a: FileState, b: FileState): boolean =>
  a.churn === b.churn && a.multiPrimary === b.multiPrimary && a.multiSecondaryDisabled === b.multiSecondaryDisabled;

const CLOUDS: readonly Cloud[] = ['aws', 'gcp', 'azure'];
const GCP_RING = 'projects/keyward-chaos/locations/europe-west1/keyRings/chaos';
const API_KEY = `chaos-api-key-${randomBytes(12).toString('hex')}`;
const AZ_TENANT = '7d3f2a10-5b6c-4e8d-9f01-2a3b4c5d6e7f';
const AZ_CLIENT = 'keyward-chaos';
const ENV_AWS_ID = 'CHAOS_AWS_ACCESS_KEY_ID';
const ENV_AWS_SECRET = 'CHAOS_AWS_SECRET_ACCESS_KEY';
const ENV_AZ_SECRET = 'CHAOS_AZURE_CLIENT_SECRET';
const ENV_HSM_PIN = 'CHAOS_HSM_PIN';
/** Per-config isolation written into the tenants file: far above what the load needs, so 209 means a dead KMS. */
const CONCURRENCY = { limit: 16, queue: 16 } as const;
/** Keyward's batch routes work on this many items at once (src/envelope/keys.ts BATCH_CONCURRENCY). */
const BATCH_CONCURRENCY = 8;
/** Documented reconnect backoff cap of the Cloud KMS client (docs/kms/gcp.md). */
const GCP_RECONNECT_CAP_MS = 10_000;
/** HTTP and scheduling slack on top of the KMS bound. */
const MARGIN_MS = 1_000;
const REFRESH_INTERVAL_MS = 3_000;

// ---------------------------------------------------------------------------------------------
// Schedule
// ---------------------------------------------------------------------------------------------

/** mulberry32: small, seedable, good enough to pick times and tenants. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export type ReloadType = 'remove-churn' | 'invalid' | 'flip-primary' | 'readd-churn' | 'flip-back' | 'disable-secondary' | 'enable-secondary' | 'restore';

export interface PlannedOutage {
  readonly provider: Cloud;
  readonly kind: 'kill' | 'blackhole';
  readonly atMs: number;
  readonly durationMs: number;
}

export interface PlannedReload {
  readonly type: ReloadType;
  readonly atMs: number;
}

export interface ChaosPlan {
  readonly durationMs: number;
  readonly warmupMs: number;
  readonly cooldownMs: number;
  readonly outages: readonly PlannedOutage[];
  readonly reloads: readonly PlannedReload[];
}

const RELOAD_CYCLE: readonly ReloadType[] = ['remove-churn', 'invalid', 'flip-primary', 'readd-churn', 'flip-back', 'disable-secondary', 'enable-secondary'];

function applyReload(state: FileState, type: ReloadType): FileState {
  switch (type) {
    case 'remove-churn':
      return { ...state, churn: false };
    case 'readd-churn':
      return { ...state, churn: true };
    case 'flip-primary':
      return { ...state, multiPrimary: 'gcp' };
    case 'flip-back':
      return { ...state, multiPrimary: 'aws' };
    case 'disable-secondary':
      return { ...state, multiSecondaryDisabled: true };
    case 'enable-secondary':
      return { ...state, multiSecondaryDisabled: false };
    case 'restore':
      return BASELINE;
    case 'invalid':
      return state;
  }
}

const clamp = (value: number, min: number, max: number): number => Math.min(max, Math.max(min, value));

/**
 * The chaos schedule, a pure function of duration, seed and options: a warm-up without
 * chaos (leases and connections warm), the chaos span, and a cool-down without chaos in
 * which everything must recover. Each cloud gets kill outages (and AWS/GCP black-holes),
 * one per slot so that each is seen on its own; reloads cycle through remove → invalid →
 * flip primary → re-add → flip back → disable the other config → enable it, ending on the
 * baseline file.
 */
export function planChaos(durationS: number, seed: number, options: { blackhole?: boolean } = {}): ChaosPlan {
  const durationMs = Math.round(durationS * 1000);
  const warmupMs = Math.round(clamp(durationMs * 0.1, 3_000, 5_000));
  const cooldownMs = Math.round(clamp(durationMs * 0.1, 6_000, 15_000));
  const spanStart = warmupMs;
  const span = durationMs - warmupMs - cooldownMs;
  if (span < 10_000) throw new Error(`a chaos run needs at least 20 s (got ${durationS} s)`);
  const rnd = prng(seed);
  const outages: PlannedOutage[] = [];
  for (const provider of CLOUDS) {
    const kinds: Array<'kill' | 'blackhole'> = Array.from({ length: Math.max(1, Math.floor(span / 35_000)) }, () => 'kill' as const);
    if (options.blackhole !== false && provider !== 'azure') {
      for (let i = 0; i < Math.max(1, Math.floor(span / 70_000)); i++) kinds.push('blackhole');
    }
    for (let i = kinds.length - 1; i > 0; i--) {
      const j = Math.floor(rnd() * (i + 1));
      [kinds[i], kinds[j]] = [kinds[j]!, kinds[i]!];
    }
    const slot = span / kinds.length;
    kinds.forEach((kind, i) => {
      const longest = Math.min(5_000, slot * 0.6);
      const durationMs = Math.round(Math.min(longest, 2_000 + rnd() * Math.max(0, longest - 2_000)));
      const atMs = Math.round(spanStart + i * slot + rnd() * Math.max(0, slot - durationMs - 500));
      outages.push({ provider, kind, atMs, durationMs });
    });
  }
  outages.sort((a, b) => a.atMs - b.atMs);
  const reloads: PlannedReload[] = [];
  const count = Math.max(RELOAD_CYCLE.length, Math.floor(span / 5_000));
  const slot = span / count;
  let state = BASELINE;
  for (let i = 0; i < count; i++) {
    const type = RELOAD_CYCLE[i % RELOAD_CYCLE.length]!;
    reloads.push({ type, atMs: Math.round(spanStart + (i + 0.5) * slot + (rnd() - 0.5) * slot * 0.3) });
    state = applyReload(state, type);
  }
  if (!sameState(state, BASELINE)) {
    reloads.push({ type: 'restore', atMs: spanStart + span });
  }
  return { durationMs, warmupMs, cooldownMs, outages, reloads };
}

// ---------------------------------------------------------------------------------------------
// The error catalogue (docs/errors.md): which codes exist and with which HTTP status
// ---------------------------------------------------------------------------------------------

async function loadCatalogue(): Promise<Map<number, Set<number>>> {
  const text = await readFile(join(REPO, 'docs', 'errors.md'), 'utf8');
  const catalogue = new Map<number, Set<number>>();
  for (const line of text.split('\n')) {
    const match = /^\|\s*(\d{3})\s*\|\s*([A-Z_0-9]+)\s*\|\s*(\d{3})\s*\|/.exec(line);
    if (!match) continue;
    const code = Number(match[1]);
    const statuses = catalogue.get(code) ?? new Set<number>();
    statuses.add(Number(match[3]));
    catalogue.set(code, statuses);
  }
  if (catalogue.size < 10) throw new Error('could not read the error catalogue from docs/errors.md');
  return catalogue;
}

// ---------------------------------------------------------------------------------------------
// What happened when: outages and reloads as the run executed them
// ---------------------------------------------------------------------------------------------

interface OutageWindow {
  readonly planned: PlannedOutage;
  startMs: number;
  restoredMs: number | undefined;
  readonly graceMs: number;
  error?: string;
}

interface ReloadWindow {
  readonly planned: PlannedReload;
  readonly before: FileState;
  readonly after: FileState;
  writtenMs: number;
  seenMs: number | undefined;
  outcome: 'pending' | 'applied' | 'failed' | 'not-seen';
  /** invalid: when the file was put back as it was (the configuration in use), and when /health stopped reporting the error. */
  revertedMs?: number;
  errorClearedMs?: number;
}

const INF = Number.POSITIVE_INFINITY;
const overlaps = (s: number, e: number, from: number, to: number): boolean => s <= to && e >= from;

class Timeline {
  readonly outages: OutageWindow[] = [];
  readonly reloads: ReloadWindow[] = [];

  /** The provider may have been unable to serve at some point of [s, e] (down, or recovering within its grace). */
  providerDown(provider: ProviderName, s: number, e: number): boolean {
    return this.outages.some((o) => o.planned.provider === provider && overlaps(s, e, o.startMs, (o.restoredMs ?? INF) + o.graceMs));
  }

  /** Windows in which a churn tenant may be missing: from the removal's write to the re-add's application. */
  #absence(): Array<{ from: number; to: number; definiteFrom: number; definiteTo: number }> {
    const out: Array<{ from: number; to: number; definiteFrom: number; definiteTo: number }> = [];
    let open: { from: number; definiteFrom: number } | undefined;
    for (const w of this.reloads) {
      if (w.before.churn && !w.after.churn) {
        // An unseen removal may still have applied: lenient from its write, never definite.
        open = { from: w.writtenMs, definiteFrom: w.outcome === 'applied' ? w.seenMs! : INF };
      } else if (!w.before.churn && w.after.churn && open) {
        out.push({ from: open.from, to: w.outcome === 'applied' ? w.seenMs! : INF, definiteFrom: open.definiteFrom, definiteTo: w.writtenMs });
        open = undefined;
      }
    }
    if (open) out.push({ from: open.from, to: INF, definiteFrom: open.definiteFrom, definiteTo: INF });
    return out;
  }

  possiblyAbsent(tenant: TenantSpec, s: number, e: number): boolean {
    if (tenant.role !== 'churn') return false;
    return this.#absence().some((a) => overlaps(s, e, a.from, a.to));
  }

  definitelyAbsent(tenant: TenantSpec, s: number, e: number): boolean {
    if (tenant.role !== 'churn') return false;
    return this.#absence().some((a) => s >= a.definiteFrom && e <= a.definiteTo);
  }

  /** Windows in which d-multi's secondary config may be disabled: from the disabling write to the re-enabling's application. */
  #disabled(multi: TenantSpec): Array<{ configId: number; from: number; to: number; definiteFrom: number; definiteTo: number }> {
    const out: Array<{ configId: number; from: number; to: number; definiteFrom: number; definiteTo: number }> = [];
    let open: { configId: number; from: number; definiteFrom: number } | undefined;
    for (const w of this.reloads) {
      if (!w.before.multiSecondaryDisabled && w.after.multiSecondaryDisabled) {
        const configId = multi.configs.find((c) => c.provider !== w.after.multiPrimary)!.id;
        open = { configId, from: w.writtenMs, definiteFrom: w.outcome === 'applied' ? w.seenMs! : INF };
      } else if (w.before.multiSecondaryDisabled && !w.after.multiSecondaryDisabled && open) {
        out.push({ ...open, to: w.outcome === 'applied' ? w.seenMs! : INF, definiteTo: w.writtenMs });
        open = undefined;
      }
    }
    if (open) out.push({ ...open, to: INF, definiteTo: INF });
    return out;
  }

  possiblyDisabled(tenant: TenantSpec, configId: number, s: number, e: number): boolean {
    if (tenant.role !== 'multi') return false;
    return this.#disabled(tenant).some((d) => d.configId === configId && overlaps(s, e, d.from, d.to));
  }

  definitelyDisabled(tenant: TenantSpec, configId: number, s: number, e: number): boolean {
    if (tenant.role !== 'multi') return false;
    return this.#disabled(tenant).some((d) => d.configId === configId && s >= d.definiteFrom && e <= d.definiteTo);
  }

  /** The providers d-multi's primary may have been on during [s, e]. */
  primaries(tenant: TenantSpec, s: number, e: number): Set<ProviderName> {
    if (tenant.role !== 'multi') return new Set(tenant.configs.map((c) => c.provider));
    const out = new Set<ProviderName>();
    let atStart: 'aws' | 'gcp' = BASELINE.multiPrimary;
    for (const w of this.reloads) {
      if (w.before.multiPrimary === w.after.multiPrimary) continue;
      const appliedAt = w.outcome === 'applied' ? w.seenMs! : INF;
      if (appliedAt <= s) atStart = w.after.multiPrimary;
      if (overlaps(s, e, w.writtenMs, appliedAt)) {
        out.add(w.before.multiPrimary);
        out.add(w.after.multiPrimary);
      }
    }
    out.add(atStart);
    return out;
  }
}

/**
 * What the run knows to be in Keyward's lease cache, learned from answers: a lease that
 * served (or was made by) a successful request is cached until a reload removes its
 * config. Leasing settings (rotateAfter, idleAfter, maxOutage beyond the run) keep
 * anything else from wiping it during the run. A failure of a leased tenant whose lease
 * was known is WRONG: it had no reason to ask its KMS.
 */
class LeaseKnowledge {
  readonly #epoch = new Map<string, number>();
  readonly #unsettled = new Set<string>();
  readonly #cached = new Map<string, Set<number>>();
  readonly #current = new Map<string, number>();

  snapshot(tenant: string): { epoch: number; settled: boolean } {
    return { epoch: this.#epoch.get(tenant) ?? 0, settled: !this.#unsettled.has(tenant) };
  }

  /** From a reload's write until the tenant is back: nothing is known and nothing is learned. */
  unsettle(tenant: string): void {
    this.#epoch.set(tenant, (this.#epoch.get(tenant) ?? 0) + 1);
    this.#unsettled.add(tenant);
    this.#cached.delete(tenant);
    this.#current.delete(tenant);
  }

  settle(tenant: string): void {
    this.#unsettled.delete(tenant);
  }

  knowsCurrent(tenant: string): boolean {
    return !this.#unsettled.has(tenant) && this.#current.has(tenant);
  }

  knows(tenant: string, leaseId: number): boolean {
    return !this.#unsettled.has(tenant) && (this.#cached.get(tenant)?.has(leaseId) ?? false);
  }

  learn(tenant: string, at: { epoch: number; settled: boolean }, leaseId: number, current: boolean): void {
    if (leaseId <= 0 || !at.settled || this.#unsettled.has(tenant) || (this.#epoch.get(tenant) ?? 0) !== at.epoch) return;
    const set = this.#cached.get(tenant) ?? new Set<number>();
    set.add(leaseId);
    this.#cached.set(tenant, set);
    if (current) this.#current.set(tenant, leaseId);
  }
}

// ---------------------------------------------------------------------------------------------
// Keyward's log, followed as it is written
// ---------------------------------------------------------------------------------------------

interface LogEntry {
  readonly atMs: number;
  readonly entry: Record<string, unknown>;
}

const EXPECTED_ERROR_LOGS = new Set([
  // The invalid reloads of the schedule.
  'tenants file reload failed; keeping the previous configuration',
]);

/** Waits until /health shows no driver starting or failed; returns how many log lines Keyward had written by then. */
async function driversStarted(proc: KeywardProcess, withinMs: number): Promise<number> {
  const deadline = performance.now() + withinMs;
  let last = '';
  while (performance.now() < deadline) {
    try {
      const res = await fetch(`${proc.opsUrl}/health`, { signal: AbortSignal.timeout(2_000) });
      const body = (await res.json()) as { drivers?: { starting?: number; failed?: number } };
      last = JSON.stringify(body.drivers);
      if (body.drivers?.starting === 0 && body.drivers.failed === 0) return proc.lines.length;
    } catch (err) {
      last = (err as Error).message;
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`chaos: Keyward's KMS drivers did not all start within ${withinMs} ms (last /health drivers: ${last})`);
}

class LogFollower {
  #index: number;
  readonly reloads: Array<LogEntry & { outcome: 'applied' | 'failed' }> = [];
  readonly leaseWipes: LogEntry[] = [];
  readonly errors: LogEntry[] = [];
  #timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly proc: KeywardProcess,
    private readonly now: () => number,
    from = 0,
  ) {
    this.#index = from;
  }

  start(): void {
    this.#timer = setInterval(() => this.scan(), 25);
  }

  stop(): void {
    clearInterval(this.#timer);
    this.scan();
  }

  scan(): void {
    const lines = this.proc.lines;
    const at = this.now();
    for (; this.#index < lines.length; this.#index++) {
      const line = lines[this.#index]!;
      // Audit events are most of the output; only a few messages matter here.
      const interesting =
        line.includes('"msg":"tenants file reload') || line.includes('"msg":"lease wiped"') || line.includes('"level":"error"') || line.includes('"level":"fatal"');
      if (!interesting) continue;
      let entry: Record<string, unknown>;
      try {
        entry = JSON.parse(line) as Record<string, unknown>;
      } catch {
        continue;
      }
      if (entry.msg === 'tenants file reloaded') this.reloads.push({ atMs: at, entry, outcome: 'applied' });
      else if (entry.msg === 'tenants file reload failed; keeping the previous configuration') this.reloads.push({ atMs: at, entry, outcome: 'failed' });
      if (entry.msg === 'lease wiped') this.leaseWipes.push({ atMs: at, entry });
      if (entry.level === 'error' || entry.level === 'fatal') this.errors.push({ atMs: at, entry });
    }
  }
}

// ---------------------------------------------------------------------------------------------
// The request log
// ---------------------------------------------------------------------------------------------

interface GeneratedKey {
  readonly tenant: string;
  /** The plaintext DEK, kept to compare; never printed. */
  readonly dek: Buffer;
  readonly edek: string;
  readonly configId: number;
  readonly leaseId: number;
  readonly madeMs: number;
}

/** One thing a request needed Keyward to do, with what the run knew at its start. */
interface Need {
  readonly tenant: TenantSpec;
  readonly kind: 'wrap' | 'unwrap';
  /** unwrap: the EDEK's config and lease. */
  readonly configId?: number;
  readonly leaseId?: number;
  /** unwrap: when the EDEK was made. */
  readonly madeMs?: number;
  /** The lease it needs was known to be cached when the request started. */
  readonly leaseKnown: boolean;
}

interface ItemResult {
  readonly need: Need;
  readonly ok: boolean;
  readonly code?: number;
}

interface RequestEntry {
  readonly op: OpName;
  readonly tenant: TenantSpec;
  readonly needs: readonly Need[];
  readonly startMs: number;
  endMs: number;
  readonly deadlineMs: number;
  outcome: 'ok' | 'error' | 'hung' | 'transport' | 'bad-answer';
  status?: number;
  code?: number;
  items?: ItemResult[];
  /** wrap-type successes: the config the new EDEK names. */
  madeConfigId?: number;
}

// ---------------------------------------------------------------------------------------------
// The run
// ---------------------------------------------------------------------------------------------

const OP_WEIGHTS: ReadonlyArray<readonly [OpName, number]> = [
  ['v1.generate', 18],
  ['v1.wrap', 6],
  ['v1.unwrap', 22],
  ['v1.batchUnwrap', 10],
  ['v1.rewrap', 10],
  ['api1.wrap', 12],
  ['api1.unwrap', 14],
  ['api1.batchUnwrap', 8],
];

function softHsmInstalled(): boolean {
  if (!existsSync(SOFTHSM_MODULE)) return false;
  const probe = spawnSync('softhsm2-util', ['--version'], { stdio: 'ignore' });
  return probe.status === 0;
}

function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))]!;
}

const round = (ms: number): number => Math.round(ms * 10) / 10;

/** The promise's value, or 'timeout' after `ms` (the timer is cleared either way). */
async function within<T>(promise: Promise<T>, ms: number): Promise<T | 'timeout'> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<'timeout'>((resolve) => {
    timer = setTimeout(() => resolve('timeout'), ms);
  });
  try {
    return await Promise.race([promise, late]);
  } finally {
    clearTimeout(timer);
  }
}
const seconds = (ms: number): number => Math.round(ms) / 1000;

interface HttpAnswer {
  readonly status: number;
  readonly body: unknown;
  readonly retryAfter: string | null;
}

/** Validates an error body: exactly {code, message}, a catalogue code, the catalogue's status. */
function errorShapeProblem(body: unknown, status: number | undefined, catalogue: Map<number, Set<number>>): string | undefined {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) return `error body is not a JSON object`;
  const keys = Object.keys(body).sort();
  if (keys.join(',') !== 'code,message') return `error body has fields [${keys.join(', ')}], not exactly code and message`;
  const { code, message } = body as { code: unknown; message: unknown };
  if (typeof code !== 'number' || !Number.isInteger(code)) return 'error code is not an integer';
  if (typeof message !== 'string' || message === '') return 'error message is not a non-empty string';
  const statuses = catalogue.get(code);
  if (!statuses) return `code ${code} is not in docs/errors.md`;
  if (status !== undefined && !statuses.has(status)) return `code ${code} came with HTTP ${status}; docs/errors.md says ${[...statuses].join(' or ')}`;
  return undefined;
}

export async function runChaos(options: ChaosOptions): Promise<ChaosReport> {
  const seed = (options.seed ?? Math.floor(Math.random() * 2 ** 31)) >>> 0;
  const log = options.log ?? (() => undefined);
  const workers = options.workers ?? 8;
  const [pauseMin, pauseMax] = options.pauseMs ?? [25, 75];
  const timeoutMs = options.kmsTimeoutMs ?? 1_000;
  const retries = options.retries ?? 1;
  const verifyLimit = options.verifyLimit ?? 100_000;
  const usePkcs11 = options.pkcs11 ?? softHsmInstalled();
  const plan = planChaos(options.durationS, seed, { blackhole: options.blackhole });
  const tenants = ALL_TENANTS.filter((t) => usePkcs11 || !t.configs.some((c) => c.provider === 'pkcs11'));
  const tenantById = new Map(tenants.map((t) => [t.id, t]));
  const configById = new Map(tenants.flatMap((t) => t.configs.map((c) => [c.id, { tenant: t, config: c }] as const)));

  // The documented bound (docs/configuration.md, `retries`, `concurrency`): one KMS call is at most
  // (retries + 1) × timeout plus the backoff waits; it may first wait in its config's queue for
  // ceil(queue / limit) rounds of calls ahead of it.
  let backoffMs = 0;
  for (let i = 0; i < retries; i++) backoffMs += Math.min(2_000, 100 * 2 ** i);
  const callBoundMs = (retries + 1) * timeoutMs + backoffMs;
  const queueRounds = Math.ceil(CONCURRENCY.queue / CONCURRENCY.limit);
  const perCallMs = (queueRounds + 1) * callBoundMs;
  const callsOf = (need: Need): number => (need.tenant.kind === 'leased' ? 2 : 1);
  const deadlineDerivation =
    `one KMS call ≤ (retries ${retries} + 1) × timeout ${timeoutMs} ms + backoff ${backoffMs} ms = ${callBoundMs} ms; ` +
    `queued behind ≤ ceil(queue ${CONCURRENCY.queue} / limit ${CONCURRENCY.limit}) = ${queueRounds} round(s) → ${perCallMs} ms per call; ` +
    `a request's deadline = ${MARGIN_MS} ms + ${perCallMs} ms × its KMS calls in sequence ` +
    `(direct wrap or unwrap: 1; leased: 2, a lease made or recovered and, if a reload wiped it meanwhile, once more; ` +
    `rewrap: unwrap + wrap; batch: ceil(items / ${BATCH_CONCURRENCY}) × its longest item)`;
  const recoveryGraceMs: Record<Cloud, number> = {
    aws: callBoundMs + MARGIN_MS,
    azure: callBoundMs + MARGIN_MS,
    // The Cloud KMS client reconnects by itself with a backoff capped at 10 s (docs/kms/gcp.md).
    gcp: GCP_RECONNECT_CAP_MS + callBoundMs + MARGIN_MS,
  };
  const deadlineOf = (needs: readonly Need[], batch: boolean): number => {
    if (batch) return MARGIN_MS + Math.ceil(needs.length / BATCH_CONCURRENCY) * Math.max(1, ...needs.map(callsOf)) * perCallMs;
    return MARGIN_MS + needs.reduce((sum, n) => sum + callsOf(n), 0) * perCallMs;
  };

  const catalogue = await loadCatalogue();
  const caFile = join(TEST_CACHE, 'azure-standin', 'ca.pem');
  if (process.env.NODE_EXTRA_CA_CERTS !== caFile) {
    throw new Error(`NODE_EXTRA_CA_CERTS must name ${caFile} (run through scripts/run-node-tests.sh or scripts/chaos.ts, after scripts/provision-emulators.sh)`);
  }

  log(`chaos: seed ${seed}, ${options.durationS} s, ${workers} workers; ${plan.outages.length} outages, ${plan.reloads.length} reloads planned`);
  const cleanups: Array<() => Promise<unknown>> = [];
  const dir = await mkdtemp(join(tmpdir(), 'keyward-chaos-'));
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  let keyward: KeywardProcess | undefined;
  try {
    // ---- KMS servers ----
    const awsKeys = [...new Set(tenants.flatMap((t) => t.configs.filter((c) => c.provider === 'aws').map((c) => c.key)))];
    const aws: LocalKms = await startLocalKms(awsKeys.map((name) => ({ name })));
    cleanups.push(() => aws.close());
    const awsProxy: FaultProxy = await startFaultProxy(aws.emulator.port);
    cleanups.push(() => awsProxy.close());

    const gcp: GcpKmsStandIn = await startGcpKmsStandIn();
    cleanups.push(() => gcp.close());
    const gcpKeyNames: Record<string, string> = {};
    const admin = standInAdminClient(gcp);
    try {
      for (const t of tenants) {
        for (const c of t.configs) {
          if (c.provider === 'gcp' && gcpKeyNames[c.key] === undefined) gcpKeyNames[c.key] = await createStandInKey(admin, `${GCP_RING}/cryptoKeys/${c.key}`);
        }
      }
    } finally {
      await admin.close();
    }
    const gcpProxy: FaultProxy = await startFaultProxy(gcp.port);
    cleanups.push(() => gcpProxy.close());

    const azureSecret = `chaos-${randomBytes(16).toString('hex')}`;
    const tokens: TokenStandin = await startTokenStandin();
    cleanups.push(() => tokens.close());
    tokens.registerClient(AZ_TENANT, AZ_CLIENT, { secret: azureSecret });
    const vault: KeyVaultStandin = await startKeyVaultStandin({ tokens, tenantId: AZ_TENANT });
    cleanups.push(() => vault.close());
    for (const t of tenants) for (const c of t.configs) if (c.provider === 'azure') vault.createKey(c.key);

    let hsmPin = '';
    if (usePkcs11) {
      const token = await createSoftHsmToken({ label: 'chaos', keys: ['b-hsm'] });
      cleanups.push(() => cleanupSoftHsm());
      hsmPin = token.pin;
    }

    const control: Record<Cloud, { kill(): Promise<void>; restart(): Promise<void>; proxy?: FaultProxy }> = {
      aws: { kill: () => aws.emulator.stop(), restart: () => aws.emulator.start(), proxy: awsProxy },
      gcp: { kill: () => gcp.stop(), restart: () => gcp.start(), proxy: gcpProxy },
      azure: { kill: () => vault.stop(), restart: () => vault.start() },
    };

    // ---- The tenants file ----
    const leaseHoldS = Math.max(3_600, Math.ceil(options.durationS) + 600);
    const providerBlock = (c: ConfigSpec): string[] => {
      switch (c.provider) {
        case 'aws':
          return [
            '        aws:',
            `          region: ${LOCAL_KMS_REGION}`,
            `          keyId: ${aws.keys[c.key]!.arn}`,
            `          endpoint: http://127.0.0.1:${awsProxy.port}`,
            `          credentials: { type: static, accessKeyId: { env: ${ENV_AWS_ID} }, secretAccessKey: { env: ${ENV_AWS_SECRET} } }`,
          ];
        case 'gcp':
          return [`        gcp: { keyName: ${gcpKeyNames[c.key]!}, endpoint: '127.0.0.1:${gcpProxy.port}', tls: false }`];
        case 'azure':
          return [
            '        azure:',
            `          vaultUrl: ${vault.vaultUrl}`,
            `          keyName: ${c.key}`,
            '          disableChallengeResourceVerification: true',
            '          credentials:',
            '            type: clientSecret',
            `            tenantId: ${AZ_TENANT}`,
            `            clientId: ${AZ_CLIENT}`,
            `            clientSecret: { env: ${ENV_AZ_SECRET} }`,
            `            authorityHost: ${tokens.authorityHost}`,
            '            disableInstanceDiscovery: true',
          ];
        case 'local':
          return [`        local: { keyFile: keys/${c.key}.key }`];
        case 'pkcs11':
          return [`        pkcs11: { module: ${SOFTHSM_MODULE}, tokenLabel: chaos, pin: { env: ${ENV_HSM_PIN} }, keyLabel: ${c.key} }`];
      }
    };
    const render = (state: FileState): string => {
      const lines = ['# Written by the chaos run (scripts/chaos/harness.ts).', 'version: 1', 'tenants:'];
      for (const t of tenants) {
        if (t.role === 'churn' && !state.churn) continue;
        lines.push(`  ${t.id}:`, '    kmsConfigs:');
        for (const c of t.configs) {
          const status =
            t.role !== 'multi' ? 'primary' : c.provider === state.multiPrimary ? 'primary' : state.multiSecondaryDisabled ? 'disabled' : 'active';
          lines.push(
            `      - id: ${c.id}`,
            `        status: ${status}`,
            `        provider: ${c.provider}`,
            `        timeout: ${timeoutMs}ms`,
            `        retries: ${retries}`,
            `        concurrency: { limit: ${CONCURRENCY.limit}, queue: ${CONCURRENCY.queue} }`,
          );
          if (t.kind === 'leased') {
            lines.push(
              `        leasing: { enabled: true, refreshInterval: ${REFRESH_INTERVAL_MS}ms, maxOutage: ${leaseHoldS}s, rotateAfter: ${leaseHoldS}s, idleAfter: ${leaseHoldS}s }`,
            );
          }
          lines.push(...providerBlock(c));
        }
      }
      return `${lines.join('\n')}\n`;
    };
    const configPath = join(dir, 'tenants.yaml');
    let writes = 0;
    const writeTenants = async (text: string): Promise<void> => {
      // Atomically, as a ConfigMap update or an editor's save-by-rename would.
      const tmp = join(dir, `.tenants.${++writes}.tmp`);
      await writeFile(tmp, text);
      await rename(tmp, configPath);
    };
    await writeTenants(render(BASELINE));

    // ---- Keyward ----
    keyward = await startKeyward({
      KEYWARD_CONFIG: configPath,
      KEYWARD_API_KEY: API_KEY,
      KEYWARD_CONFIG_POLL: '1s',
      KEYWARD_LOG_LEVEL: 'info',
      KEYWARD_REPLICA_ID: 'chaos',
      KEYWARD_SHUTDOWN_TIMEOUT: '15s',
      [ENV_AWS_ID]: TEST_ACCESS_KEY_ID,
      [ENV_AWS_SECRET]: TEST_SECRET_ACCESS_KEY,
      [ENV_AZ_SECRET]: azureSecret,
      [ENV_HSM_PIN]: hsmPin || 'unused',
      // Cloud SDKs never look for instance metadata; the stand-ins' test CA is trusted.
      AWS_EC2_METADATA_DISABLED: 'true',
      METADATA_SERVER_DETECTION: 'none',
      NO_GCE_CHECK: 'true',
      NODE_EXTRA_CA_CERTS: caFile,
      ...(process.env.SOFTHSM2_CONF ? { SOFTHSM2_CONF: process.env.SOFTHSM2_CONF } : {}),
    });
    const proc = keyward;
    log(`chaos: Keyward pid ${proc.child.pid} on ${proc.apiUrl} (ops ${proc.opsUrl})`);
    // The load starts once every KMS driver has started: on a loaded machine a driver's first call can miss its 1 s
    // timeout, and Keyward retries it. That is start-up, not chaos: its log lines are listed, not judged.
    const startupLines = await driversStarted(proc, 60_000);
    const startupErrors = proc.lines.slice(0, startupLines).filter((l) => l.includes('"level":"error"') || l.includes('"level":"fatal"'));
    if (startupErrors.length > 0) log(`chaos: notice: ${startupErrors.length} error line(s) while the drivers started (retried by Keyward; not judged): ${startupErrors.map((l) => String((JSON.parse(l) as { msg?: unknown }).msg)).join('; ')}`);

    // ---- Shared state ----
    const t0 = performance.now();
    const now = (): number => performance.now() - t0;
    const follower = new LogFollower(proc, now, startupLines);
    follower.start();
    cleanups.push(async () => follower.stop());
    const loopDelay = monitorEventLoopDelay({ resolution: 10 });
    loopDelay.enable();
    cleanups.push(async () => loopDelay.disable());
    const timeline = new Timeline();
    const leases = new LeaseKnowledge();
    const records = new Map<string, GeneratedKey[]>(tenants.map((t) => [t.id, []]));
    const entries: RequestEntry[] = [];
    const mismatches: Finding[] = [];
    const badAnswers: Finding[] = [];
    const latencies = new Map<OpName, number[]>();
    let fileState = BASELINE;

    const post = async (path: string, body: unknown, deadlineMs: number): Promise<HttpAnswer | 'hung' | { transport: string }> => {
      const signal = AbortSignal.timeout(deadlineMs);
      const scheme = path.startsWith('/api/1/') ? 'cmk' : 'Bearer';
      try {
        const res = await fetch(`${proc.apiUrl}${path}`, {
          method: 'POST',
          headers: { authorization: `${scheme} ${API_KEY}`, 'content-type': 'application/json' },
          body: JSON.stringify(body),
          signal,
        });
        const text = await res.text();
        let parsed: unknown;
        try {
          parsed = JSON.parse(text);
        } catch {
          parsed = { unparsable: text.slice(0, 200) };
        }
        return { status: res.status, body: parsed, retryAfter: res.headers.get('retry-after') };
      } catch (err) {
        if (signal.aborted) return 'hung';
        return { transport: err instanceof Error ? `${err.message}${err.cause instanceof Error ? `: ${err.cause.message}` : ''}` : String(err) };
      }
    };

    const get = async (path: string): Promise<{ status: number; body: unknown }> => {
      try {
        const res = await fetch(`${proc.opsUrl}${path}`, { signal: AbortSignal.timeout(5_000) });
        return { status: res.status, body: await res.json() };
      } catch (err) {
        return { status: 0, body: String(err) };
      }
    };

    const bad = (op: OpName | 'final', tenant: string, atMs: number, detail: string): void => {
      badAnswers.push({ op, tenant, atS: seconds(atMs), detail });
    };

    /** Checks a new EDEK and keeps it (with its DEK) for later unwraps and the final verification. */
    const keep = (op: OpName, tenant: TenantSpec, dek: Buffer, edek: unknown, entry: RequestEntry, lease: { epoch: number; settled: boolean }): boolean => {
      if (typeof edek !== 'string') {
        bad(op, tenant.id, entry.startMs, 'no edek string in a success answer');
        return false;
      }
      let parsed;
      try {
        parsed = edekFromBase64(edek);
      } catch (err) {
        bad(op, tenant.id, entry.startMs, `the EDEK does not parse: ${(err as Error).message}`);
        return false;
      }
      const [first] = parsed;
      if (parsed.length !== 1 || !first) {
        bad(op, tenant.id, entry.startMs, `the new EDEK has ${parsed.length} entries, not 1`);
        return false;
      }
      const config = tenant.configs.find((c) => c.id === first.kmsConfigId);
      if (first.tenantId !== tenant.id || !config) {
        bad(op, tenant.id, entry.startMs, `the new EDEK is bound to tenant ${first.tenantId} config ${first.kmsConfigId}`);
        return false;
      }
      if ((tenant.kind === 'leased') !== first.leasedKeyId > 0) {
        bad(op, tenant.id, entry.startMs, `a ${tenant.kind} tenant got an EDEK with leased key id ${first.leasedKeyId}`);
        return false;
      }
      entry.madeConfigId = config.id;
      records.get(tenant.id)!.push({ tenant: tenant.id, dek: Buffer.from(dek), edek, configId: config.id, leaseId: first.leasedKeyId, madeMs: entry.endMs });
      leases.learn(tenant.id, lease, first.leasedKeyId, true);
      return true;
    };

    const decodeDek = (value: unknown): Buffer | undefined => {
      if (typeof value !== 'string') return undefined;
      const buf = Buffer.from(value, 'base64');
      return buf.length === 32 && buf.toString('base64') === value ? buf : undefined;
    };

    /** Compares an unwrapped DEK with the one generated; wipes the copy. */
    const compare = (op: OpName | 'final', record: GeneratedKey, value: unknown, atMs: number): boolean => {
      const got = decodeDek(value);
      if (!got) {
        bad(op, record.tenant, atMs, 'the unwrap answer holds no 32-byte base64 dek');
        return false;
      }
      const same = got.equals(record.dek);
      got.fill(0);
      if (!same) mismatches.push({ op, tenant: record.tenant, atS: seconds(atMs), detail: `the unwrapped DEK differs from the generated one (EDEK config ${record.configId}, lease ${record.leaseId}, made at ${seconds(record.madeMs)} s)` });
      return same;
    };

    const wrapNeed = (tenant: TenantSpec): Need => ({ tenant, kind: 'wrap', leaseKnown: tenant.kind === 'leased' && leases.knowsCurrent(tenant.id) });
    const unwrapNeed = (tenant: TenantSpec, record: GeneratedKey): Need => ({
      tenant,
      kind: 'unwrap',
      configId: record.configId,
      leaseId: record.leaseId,
      madeMs: record.madeMs,
      leaseKnown: record.leaseId > 0 && leases.knows(tenant.id, record.leaseId),
    });

    /** Records a whole-request failure answer (error body checked against the catalogue). */
    const failure = (op: OpName, tenant: TenantSpec, entry: RequestEntry, answer: HttpAnswer): void => {
      entry.outcome = 'error';
      const problem = errorShapeProblem(answer.body, answer.status, catalogue);
      if (problem) {
        entry.outcome = 'bad-answer';
        bad(op, tenant.id, entry.startMs, `HTTP ${answer.status}: ${problem}`);
        return;
      }
      const code = (answer.body as { code: number }).code;
      entry.code = code;
      if ((code === 208 || code === 209) && !answer.retryAfter) bad(op, tenant.id, entry.startMs, `code ${code} without a Retry-After header`);
    };

    const pick = <T>(rnd: () => number, list: readonly T[]): T => list[Math.floor(rnd() * list.length)]!;
    const pickRecord = (rnd: () => number, tenant: TenantSpec): GeneratedKey | undefined => {
      const list = records.get(tenant.id)!;
      if (list.length === 0) return undefined;
      if (tenant.role === 'multi') {
        // Each of its configs as often as the other, whichever is primary (or disabled) at the time.
        const configId = pick(rnd, tenant.configs).id;
        const under = list.filter((r) => r.configId === configId);
        if (under.length > 0) return pick(rnd, under);
      }
      // Half the picks among the newest keys, half among all of them (old leases, old primaries).
      const from = rnd() < 0.5 ? Math.max(0, list.length - 20) : 0;
      return list[from + Math.floor(rnd() * (list.length - from))];
    };

    /** One request: picked at random among the worker's tenants, or the given probe. */
    const runOne = async (rnd: () => number, mine: readonly TenantSpec[], probe?: { op: OpName; tenant: TenantSpec; record?: GeneratedKey }): Promise<void> => {
      let total = 0;
      for (const [, w] of OP_WEIGHTS) total += w;
      let roll = rnd() * total;
      let op: OpName = 'v1.generate';
      for (const [name, w] of OP_WEIGHTS) {
        roll -= w;
        if (roll < 0) {
          op = name;
          break;
        }
      }
      if (probe) op = probe.op;
      const tenant = probe?.tenant ?? pick(rnd, mine);
      const needsRecord = op === 'v1.unwrap' || op === 'api1.unwrap' || op === 'v1.rewrap' || op === 'v1.batchUnwrap' || op === 'api1.batchUnwrap';
      if (needsRecord && records.get(tenant.id)!.length === 0) op = 'v1.generate';
      const leaseAt = leases.snapshot(tenant.id);
      const meta = { requestingId: `chaos-${op}` };
      const icl = { requestingId: `chaos-${op}` };

      let needs: Need[];
      let body: unknown;
      let path: string;
      let batch: GeneratedKey[] = [];
      let record: GeneratedKey | undefined;
      let target: TenantSpec | undefined;
      let ownDek: Buffer | undefined;
      switch (op) {
        case 'v1.generate':
        case 'api1.wrap':
          needs = [wrapNeed(tenant)];
          path = op === 'v1.generate' ? '/v1/keys/generate' : '/api/1/document/wrap';
          body = op === 'v1.generate' ? { tenantId: tenant.id, metadata: meta } : { tenantId: tenant.id, iclFields: icl, customFields: null, timestampMillis: Date.now() };
          break;
        case 'v1.wrap':
          ownDek = randomBytes(32);
          needs = [wrapNeed(tenant)];
          path = '/v1/keys/wrap';
          body = { tenantId: tenant.id, dek: ownDek.toString('base64'), metadata: meta };
          break;
        case 'v1.unwrap':
        case 'api1.unwrap':
          record = probe?.record ?? pickRecord(rnd, tenant)!;
          needs = [unwrapNeed(tenant, record)];
          path = op === 'v1.unwrap' ? '/v1/keys/unwrap' : '/api/1/document/unwrap';
          body = op === 'v1.unwrap' ? { tenantId: tenant.id, edek: record.edek, metadata: meta } : { tenantId: tenant.id, iclFields: icl, encryptedDocumentKey: record.edek };
          break;
        case 'v1.rewrap':
          record = pickRecord(rnd, tenant)!;
          target = rnd() < 0.7 ? tenant : pick(rnd, tenants);
          needs = [unwrapNeed(tenant, record), wrapNeed(target)];
          path = '/v1/keys/rewrap';
          body = { tenantId: tenant.id, edek: record.edek, ...(target === tenant ? {} : { newTenantId: target.id }), metadata: meta };
          break;
        case 'v1.batchUnwrap':
        case 'api1.batchUnwrap': {
          const size = 2 + Math.floor(rnd() * 5);
          const chosen = new Set<GeneratedKey>();
          for (let i = 0; i < size; i++) chosen.add(pickRecord(rnd, tenant)!);
          batch = [...chosen];
          needs = batch.map((r) => unwrapNeed(tenant, r));
          const edeks = Object.fromEntries(batch.map((r, i) => [`doc-${i}`, r.edek]));
          path = op === 'v1.batchUnwrap' ? '/v1/keys/batch/unwrap' : '/api/1/document/batch-unwrap';
          body = op === 'v1.batchUnwrap' ? { tenantId: tenant.id, edeks, metadata: meta } : { tenantId: tenant.id, iclFields: icl, edeks };
          break;
        }
      }
      const isBatch = op === 'v1.batchUnwrap' || op === 'api1.batchUnwrap';
      const targetLeaseAt = target ? leases.snapshot(target.id) : leaseAt;
      const entry: RequestEntry = { op, tenant, needs, startMs: now(), endMs: 0, deadlineMs: deadlineOf(needs, isBatch), outcome: 'ok' };
      entries.push(entry);
      const answer = await post(path, body, entry.deadlineMs);
      entry.endMs = now();
      const latency = entry.endMs - entry.startMs;
      const list = latencies.get(op) ?? [];
      list.push(latency);
      latencies.set(op, list);
      if (answer === 'hung') {
        entry.outcome = 'hung';
        ownDek?.fill(0);
        return;
      }
      if ('transport' in answer) {
        entry.outcome = 'transport';
        bad(op, tenant.id, entry.startMs, `no HTTP answer: ${answer.transport}`);
        ownDek?.fill(0);
        return;
      }
      entry.status = answer.status;
      if (answer.status !== 200) {
        failure(op, tenant, entry, answer);
        ownDek?.fill(0);
        return;
      }
      const ok = answer.body as Record<string, unknown>;
      switch (op) {
        case 'v1.generate':
        case 'api1.wrap': {
          const dek = decodeDek(ok.dek);
          if (!dek) {
            entry.outcome = 'bad-answer';
            bad(op, tenant.id, entry.startMs, 'no 32-byte base64 dek in a generate answer');
            return;
          }
          if (!keep(op, tenant, dek, ok.edek, entry, leaseAt)) entry.outcome = 'bad-answer';
          dek.fill(0);
          return;
        }
        case 'v1.wrap':
          if (!keep(op, tenant, ownDek!, ok.edek, entry, leaseAt)) entry.outcome = 'bad-answer';
          ownDek!.fill(0);
          return;
        case 'v1.unwrap':
        case 'api1.unwrap':
          if (compare(op, record!, ok.dek, entry.startMs)) leases.learn(tenant.id, leaseAt, record!.leaseId, false);
          else entry.outcome = 'bad-answer';
          return;
        case 'v1.rewrap':
          // The DEK does not come back; the new EDEK must unwrap to the old DEK later (and in the final verification).
          leases.learn(tenant.id, leaseAt, record!.leaseId, false);
          if (!keep(op, target!, record!.dek, ok.edek, entry, targetLeaseAt)) entry.outcome = 'bad-answer';
          return;
        case 'v1.batchUnwrap':
        case 'api1.batchUnwrap': {
          const keys = (ok.keys ?? {}) as Record<string, { dek?: unknown }>;
          const failures = (ok.failures ?? {}) as Record<string, unknown>;
          entry.items = [];
          batch.forEach((r, i) => {
            const id = `doc-${i}`;
            const need = needs[i]!;
            const key = keys[id];
            const fail = failures[id];
            if ((key === undefined) === (fail === undefined)) {
              bad(op, tenant.id, entry.startMs, `batch item ${id} is in ${key ? 'both keys and failures' : 'neither keys nor failures'}`);
              entry.outcome = 'bad-answer';
              return;
            }
            if (key) {
              const same = compare(op, r, key.dek, entry.startMs);
              if (same) leases.learn(tenant.id, leaseAt, r.leaseId, false);
              entry.items!.push({ need, ok: same });
              return;
            }
            const problem = errorShapeProblem(fail, undefined, catalogue);
            if (problem) {
              bad(op, tenant.id, entry.startMs, `batch item failure: ${problem}`);
              entry.outcome = 'bad-answer';
              return;
            }
            entry.items!.push({ need, ok: false, code: (fail as { code: number }).code });
          });
          const extra = [...Object.keys(keys), ...Object.keys(failures)].filter((id) => !/^doc-\d+$/.test(id) || Number(id.slice(4)) >= batch.length);
          if (extra.length > 0) {
            bad(op, tenant.id, entry.startMs, `batch answer names ids that were not asked: ${extra.join(', ')}`);
            entry.outcome = 'bad-answer';
          }
          return;
        }
      }
    };

    // ---- Chaos runners ----
    let stopping = false;
    const until = async (atMs: number): Promise<void> => {
      const wait = atMs - now();
      if (wait > 0) await sleep(wait);
    };

    const outageRunner = async (provider: Cloud): Promise<void> => {
      for (const planned of plan.outages.filter((o) => o.provider === provider)) {
        await until(planned.atMs);
        const window: OutageWindow = { planned, startMs: now(), restoredMs: undefined, graceMs: recoveryGraceMs[provider] };
        timeline.outages.push(window);
        log(`chaos: ${seconds(window.startMs).toFixed(1)} s  ${provider} ${planned.kind === 'kill' ? 'killed' : 'black-holed'} for ${planned.durationMs} ms`);
        try {
          if (planned.kind === 'kill') await control[provider].kill();
          else await control[provider].proxy!.setMode('blackhole');
        } catch (err) {
          window.error = `could not take it down: ${(err as Error).message}`;
        }
        await sleep(planned.durationMs);
        for (let attempt = 1; ; attempt++) {
          try {
            if (planned.kind === 'kill') await control[provider].restart();
            else await control[provider].proxy!.setMode('pass');
            break;
          } catch (err) {
            if (attempt >= 20) {
              window.error = `could not bring it back: ${(err as Error).message}`;
              break;
            }
            await sleep(250);
          }
        }
        window.restoredMs = now();
        log(`chaos: ${seconds(window.restoredMs).toFixed(1)} s  ${provider} back (${Math.round(window.restoredMs - window.startMs)} ms down)`);
      }
    };

    const reloadRunner = async (): Promise<void> => {
      for (const planned of plan.reloads) {
        await until(planned.atMs);
        const before = fileState;
        const after = applyReload(before, planned.type);
        const window: ReloadWindow = { planned, before, after, writtenMs: now(), seenMs: undefined, outcome: 'pending' };
        timeline.reloads.push(window);
        // What a reload can wipe: the churn tenants' leases (removed, then back with none).
        if (before.churn !== after.churn) for (const t of tenants) if (t.role === 'churn') leases.unsettle(t.id);
        follower.scan();
        const seenBefore = follower.reloads.length;
        const invalid = planned.type === 'invalid';
        await writeTenants(invalid ? `${render(before)}bogusTopLevelField: true\n` : render(after));
        const wanted = invalid ? 'failed' : 'applied';
        const deadline = now() + 15_000;
        while (now() < deadline) {
          follower.scan();
          const seen = follower.reloads.slice(seenBefore).find((r) => r.outcome === wanted);
          if (seen) {
            window.seenMs = seen.atMs;
            window.outcome = wanted;
            break;
          }
          await sleep(25);
        }
        if (window.outcome === 'pending') window.outcome = 'not-seen';
        // Probes whose answer comes before any KMS call, so that each effect is seen whatever the load did:
        // a removed tenant answers 201, an EDEK of a disabled config 202. Judged like every other request.
        if (window.outcome === 'applied') {
          const probeRnd = prng(seed ^ 0x7e57);
          if (before.churn && !after.churn) {
            for (const t of tenants) if (t.role === 'churn') await runOne(probeRnd, [t], { op: 'v1.generate', tenant: t });
          }
          if (!before.multiSecondaryDisabled && after.multiSecondaryDisabled) {
            const multi = tenants.find((t) => t.role === 'multi')!;
            const secondary = multi.configs.find((c) => c.provider !== after.multiPrimary)!.id;
            const record = records.get(multi.id)!.find((r) => r.configId === secondary);
            if (record) await runOne(probeRnd, [multi], { op: 'v1.unwrap', tenant: multi, record });
          }
        }
        if (invalid) {
          // The operator notices and puts the file back as it was: the configuration in use is
          // valid again, so /health should stop reporting the failed reload within a poll or two.
          await sleep(1_000);
          window.revertedMs = now();
          await writeTenants(render(before));
          const clearBy = now() + 3_000;
          while (now() < clearBy) {
            const health = await get('/health');
            if ((health.body as { lastReloadError?: unknown }).lastReloadError === undefined) {
              window.errorClearedMs = now();
              break;
            }
            await sleep(100);
          }
        }
        if (!invalid) fileState = after;
        if (window.outcome === 'applied' && !before.churn && after.churn) for (const t of tenants) if (t.role === 'churn') leases.settle(t.id);
        const reverted =
          window.revertedMs === undefined ? '' : `; reverted, /health ${window.errorClearedMs === undefined ? 'still reports the reload error 3 s later' : 'cleared its reload error'}`;
        log(`chaos: ${seconds(window.writtenMs).toFixed(1)} s  reload ${planned.type}: ${window.outcome}${window.seenMs === undefined ? '' : ` after ${Math.round(window.seenMs - window.writtenMs)} ms`}${reverted}`);
      }
    };

    const worker = async (index: number): Promise<void> => {
      const rnd = prng((seed ^ Math.imul(index + 1, 0x9e3779b1)) >>> 0);
      // Its share of the tenants: every tenant has a worker, and leased tenants (listed early) one of their own.
      const mine = tenants.filter((_, i) => (workers >= tenants.length ? i === index % tenants.length : i % workers === index));
      while (!stopping) {
        await runOne(rnd, mine);
        await sleep(pauseMin + rnd() * (pauseMax - pauseMin));
      }
    };

    // ---- Run ----
    const load = Array.from({ length: workers }, (_, i) => worker(i));
    const chaos = Promise.all([...CLOUDS.map((p) => outageRunner(p)), reloadRunner()]);
    await until(plan.durationMs);
    await chaos; // normally long done: the schedule ends before the cool-down
    stopping = true;
    await Promise.all(load);
    const loadEndMs = now();
    log(`chaos: load stopped at ${seconds(loadEndMs).toFixed(1)} s after ${entries.length} requests`);

    // ---- Afterwards: everything is back; every EDEK must unwrap to its DEK ----
    const aliveAfterRun = proc.child.exitCode === null && proc.child.signalCode === null;
    const finalFailures: Finding[] = [];
    let verified = 0;
    let verifiedOk = 0;
    const verifiedKeys = new Set<GeneratedKey>();
    const failedKeys = new Set<GeneratedKey>();
    const settleStart = now();
    // Wait (bounded by the longest recovery grace) until every tenant answers a generate again.
    for (const t of tenants) {
      const deadline = now() + Math.max(...Object.values(recoveryGraceMs)) + 5_000;
      for (;;) {
        const answer = await post('/v1/keys/generate', { tenantId: t.id, metadata: { requestingId: 'chaos-settle' } }, deadlineOf([wrapNeed(t)], false));
        if (typeof answer === 'object' && 'status' in answer && answer.status === 200) {
          const dek = decodeDek((answer.body as { dek?: unknown }).dek);
          dek?.fill(0);
          break;
        }
        if (now() > deadline) {
          finalFailures.push({ op: 'final', tenant: t.id, atS: seconds(now()), detail: `no successful generate within the recovery grace: ${JSON.stringify(typeof answer === 'object' && 'status' in answer ? answer.body : answer)}` });
          break;
        }
        await sleep(200);
      }
    }
    const settleMs = now() - settleStart;
    const all = [...records.values()].flat();
    let sample = all;
    if (all.length > verifyLimit) {
      const rnd = prng(seed ^ 0x5eed);
      sample = [...all];
      for (let i = sample.length - 1; i > 0; i--) {
        const j = Math.floor(rnd() * (i + 1));
        [sample[i], sample[j]] = [sample[j]!, sample[i]!];
      }
      sample = sample.slice(0, verifyLimit);
    }
    const byTenant = new Map<string, GeneratedKey[]>();
    for (const r of sample) byTenant.set(r.tenant, [...(byTenant.get(r.tenant) ?? []), r]);
    let chunkIndex = 0;
    for (const [tenantId, list] of byTenant) {
      for (let i = 0; i < list.length; i += 40) {
        const chunk = list.slice(i, i + 40);
        const viaCompat = chunkIndex++ % 2 === 1;
        const edeks = Object.fromEntries(chunk.map((r, j) => [`k${j}`, r.edek]));
        const t = tenantById.get(tenantId)!;
        const deadline = deadlineOf(chunk.map((r) => unwrapNeed(t, r)), true);
        const answer = await post(
          viaCompat ? '/api/1/document/batch-unwrap' : '/v1/keys/batch/unwrap',
          viaCompat ? { tenantId, iclFields: { requestingId: 'chaos-final' }, edeks } : { tenantId, edeks, metadata: { requestingId: 'chaos-final' } },
          deadline,
        );
        verified += chunk.length;
        if (answer === 'hung' || 'transport' in answer || answer.status !== 200) {
          for (const r of chunk) failedKeys.add(r);
          const why = answer === 'hung' ? `no answer within ${deadline} ms` : 'transport' in answer ? answer.transport : `HTTP ${answer.status} ${JSON.stringify(answer.body)}`;
          finalFailures.push({ op: 'final', tenant: tenantId, atS: seconds(now()), detail: `batch of ${chunk.length}: ${why}` });
          continue;
        }
        const body = answer.body as { keys?: Record<string, { dek?: unknown }>; failures?: Record<string, { code?: number; message?: string }> };
        chunk.forEach((r, j) => {
          const key = body.keys?.[`k${j}`];
          if (key && compare('final', r, key.dek, now())) {
            verifiedOk += 1;
            verifiedKeys.add(r);
            return;
          }
          failedKeys.add(r);
          if (!key) {
            const f = body.failures?.[`k${j}`];
            finalFailures.push({ op: 'final', tenant: tenantId, atS: seconds(now()), detail: `EDEK made at ${seconds(r.madeMs)} s (config ${r.configId}, lease ${r.leaseId}) failed: ${f?.code ?? '?'} ${f?.message ?? ''}` });
          }
        });
      }
    }
    log(`chaos: final verification: ${verifiedOk}/${verified} EDEKs unwrapped to their DEK (${all.length} made)`);

    // ---- The process ----
    // Refreshes resume once the KMSs are back: every lease turns fresh again (the ops view, never key material).
    const leasedTenants = tenants.filter((t) => t.kind === 'leased').map((t) => t.id);
    const leasesStart = now();
    const leasesDeadline = leasesStart + Math.max(...Object.values(recoveryGraceMs)) + 2.2 * REFRESH_INTERVAL_MS + 2_000;
    let leaseView = { total: 0, stale: 0, tenants: 0, freshAfterMs: -1 };
    for (;;) {
      const view = await get('/leases');
      const list = ((view.body as { leases?: Array<{ tenantId: string; state: string }> }).leases ?? []).filter((l) => leasedTenants.includes(l.tenantId));
      leaseView = {
        total: list.length,
        stale: list.filter((l) => l.state !== 'fresh').length,
        tenants: new Set(list.map((l) => l.tenantId)).size,
        freshAfterMs: -1,
      };
      if (leaseView.stale === 0 && leaseView.tenants === leasedTenants.length) {
        leaseView.freshAfterMs = Math.round(now() - leasesStart);
        break;
      }
      if (now() > leasesDeadline) break;
      await sleep(250);
    }
    const live = await get('/live');
    const ready = await get('/ready');
    const health = await get('/health');
    follower.stop();
    loopDelay.disable();
    const stderrBeforeStop = proc.stderr();
    proc.child.kill('SIGTERM');
    const exitCode = await within(proc.exited, 20_000);
    if (exitCode !== 'timeout') keyward = undefined;

    if (options.requestLog) {
      const lines = entries.map((x) =>
        JSON.stringify({
          op: x.op,
          tenant: x.tenant.id,
          startS: seconds(x.startMs),
          ms: Math.round(x.endMs - x.startMs),
          deadlineMs: x.deadlineMs,
          outcome: x.outcome,
          status: x.status,
          code: x.code,
          items: x.items?.map((i) => (i.ok ? 'ok' : i.code)),
          made: x.madeConfigId,
          needs: x.needs.map((n) => ({ tenant: n.tenant.id, kind: n.kind, configId: n.configId, leaseId: n.leaseId, leaseKnown: n.leaseKnown })),
        }),
      );
      await writeFile(options.requestLog, `${lines.join('\n')}\n`);
    }

    // ---- Judgement ----
    const report = judge({
      seed,
      options,
      plan,
      tenants,
      configById,
      timeline,
      entries,
      latencies,
      mismatches,
      badAnswers,
      follower,
      records: all,
      final: { verified, ok: verifiedOk, failures: finalFailures, settleMs, verifiedKeys, failedKeys },
      processInfo: {
        leases: { ...leaseView, leasedTenants: leasedTenants.length },
        aliveAfterRun,
        live: live.status,
        ready: ready.status,
        health: health.body,
        stderr: stderrBeforeStop + (exitCode === 'timeout' ? '' : proc.stderr().slice(stderrBeforeStop.length)),
        exitCode: exitCode === 'timeout' ? null : exitCode,
      },
      settings: {
        workers,
        kmsTimeoutMs: timeoutMs,
        retries,
        concurrency: { ...CONCURRENCY },
        deadlineDerivation,
        recoveryGraceMs,
        tenants: tenants.map((t) => ({ id: t.id, kind: t.kind, role: t.role, providers: t.configs.map((c) => `${c.provider}#${c.id}`).join('+') })),
      },
      deadlines: {
        generate: deadlineOf([{ tenant: tenantById.get('l-aws')!, kind: 'wrap', leaseKnown: false }], false),
        unwrap: deadlineOf([{ tenant: tenantById.get('l-aws')!, kind: 'unwrap', leaseKnown: false }], false),
        rewrap: deadlineOf([{ tenant: tenantById.get('l-aws')!, kind: 'unwrap', leaseKnown: false }, { tenant: tenantById.get('l-aws')!, kind: 'wrap', leaseKnown: false }], false),
        batch: deadlineOf([{ tenant: tenantById.get('l-aws')!, kind: 'unwrap', leaseKnown: false }], true),
      },
      loopDelayMaxMs: loopDelay.max / 1e6,
    });
    for (const r of all) r.dek.fill(0);
    return report;
  } finally {
    if (keyward) {
      keyward.child.kill('SIGKILL');
      await keyward.exited;
    }
    for (const cleanup of cleanups.reverse()) await cleanup().catch(() => undefined);
  }
}

// ---------------------------------------------------------------------------------------------
// Judgement: the allowed-code table, per request, against what was happening at the time
// ---------------------------------------------------------------------------------------------

interface JudgeInput {
  readonly seed: number;
  readonly options: ChaosOptions;
  readonly plan: ChaosPlan;
  readonly tenants: readonly TenantSpec[];
  readonly configById: ReadonlyMap<number, { tenant: TenantSpec; config: ConfigSpec }>;
  readonly timeline: Timeline;
  readonly entries: readonly RequestEntry[];
  readonly latencies: ReadonlyMap<OpName, number[]>;
  readonly mismatches: Finding[];
  readonly badAnswers: Finding[];
  readonly follower: LogFollower;
  readonly records: readonly GeneratedKey[];
  readonly final: { verified: number; ok: number; failures: Finding[]; settleMs: number; verifiedKeys: ReadonlySet<GeneratedKey>; failedKeys: ReadonlySet<GeneratedKey> };
  readonly processInfo: {
    readonly leases: { total: number; stale: number; tenants: number; freshAfterMs: number; leasedTenants: number };
    readonly aliveAfterRun: boolean;
    readonly live: number;
    readonly ready: number;
    readonly health: unknown;
    readonly stderr: string;
    readonly exitCode: number | null;
  };
  readonly settings: ChaosReport['settings'];
  readonly deadlines: { generate: number; unwrap: number; rewrap: number; batch: number };
  readonly loopDelayMaxMs: number;
}

/**
 * The table of allowed failure codes (docs/chaos.md):
 *
 * | situation during the request                                               | allowed failure codes |
 * |----------------------------------------------------------------------------|-----------------------|
 * | tenant (or rewrap target) removed by a reload, or being removed/re-added    | 201                   |
 * | a KMS the request needs is down or recovering, and the tenant is direct     | 208, 209              |
 * | same, leased tenant, and its lease was not known to be cached               | 208, 209              |
 * | leased tenant whose lease was known cached (KMS down or not)                | none: must succeed    |
 * | everything it needs is up and the tenant is there                           | none: must succeed    |
 *
 * Anything else (100, 203, 205, 207, ...) is WRONG_CODE. A success while the tenant had
 * certainly been removed is an unexpected success.
 */
function judge(input: JudgeInput): ChaosReport {
  const { timeline, entries, tenants, configById } = input;
  const wrongCodes: Finding[] = [];
  const unexpectedSuccesses: Finding[] = [];
  const hung: Finding[] = [];

  const providersOf = (need: Need, s: number, e: number): Array<{ provider: ProviderName; leased: boolean }> => {
    if (need.kind === 'unwrap') {
      const found = configById.get(need.configId!);
      return found ? [{ provider: found.config.provider, leased: need.tenant.kind === 'leased' }] : [];
    }
    return [...timeline.primaries(need.tenant, s, e)].map((provider) => ({ provider, leased: need.tenant.kind === 'leased' }));
  };
  const kmsRisk = (need: Need, s: number, e: number): boolean =>
    providersOf(need, s, e).some(
      ({ provider, leased }) => timeline.providerDown(provider, s, e) && (!leased || !need.leaseKnown || timeline.possiblyAbsent(need.tenant, s, e)),
    );
  const allowed = (code: number, needs: readonly Need[], s: number, e: number, wholeBatch: boolean): boolean => {
    if (code === 201) return needs.some((n) => timeline.possiblyAbsent(n.tenant, s, e));
    if (wholeBatch) return false;
    if (code === 202) return needs.some((n) => n.kind === 'unwrap' && timeline.possiblyDisabled(n.tenant, n.configId!, s, e));
    if (code === 208 || code === 209) return needs.some((n) => kmsRisk(n, s, e));
    return false;
  };
  const situation = (needs: readonly Need[], s: number, e: number): string =>
    needs
      .map((n) => {
        const provs = providersOf(n, s, e).map(({ provider }) => `${provider}${timeline.providerDown(provider, s, e) ? ' (down)' : ' (up)'}`);
        const lease = n.tenant.kind === 'leased' ? `, lease ${n.kind === 'unwrap' ? n.leaseId : 'current'} ${n.leaseKnown ? 'known cached' : 'not known cached'}` : '';
        const presence =
          (timeline.possiblyAbsent(n.tenant, s, e) ? ', tenant possibly removed' : '') +
          (n.kind === 'unwrap' && timeline.possiblyDisabled(n.tenant, n.configId!, s, e) ? ', config possibly disabled' : '');
        return `${n.kind} for ${n.tenant.id} (${n.tenant.kind}) via ${provs.join('/') || 'no config'}${lease}${presence}`;
      })
      .join('; ');

  const ops: Record<string, OpStats> = {};
  const items = { total: 0, ok: 0, failed: {} as Record<string, number> };
  const codes: Record<string, number> = {};
  const perTenant: Record<string, { ok: number; failed: number; okDuringOutage: number }> = Object.fromEntries(tenants.map((t) => [t.id, { ok: 0, failed: 0, okDuringOutage: 0 }]));
  const count = (map: Record<string, number>, key: number | string): void => {
    map[String(key)] = (map[String(key)] ?? 0) + 1;
  };
  const duringOutage = (t: TenantSpec, s: number, e: number): boolean =>
    timeline.outages.some((o) => t.configs.some((c) => c.provider === o.planned.provider) && s >= o.startMs && e <= (o.restoredMs ?? INF));
  let maxLatencyMs = 0;

  for (const entry of entries) {
    const { op, tenant, needs, startMs: s, endMs: e } = entry;
    const stats = (ops[op] ??= { total: 0, ok: 0, failed: {}, hung: 0, transportErrors: 0, maxLatencyMs: 0, p99LatencyMs: 0, deadlineMs: 0 });
    stats.total += 1;
    maxLatencyMs = Math.max(maxLatencyMs, e - s);
    const tenantsInvolved = [...new Set(needs.map((n) => n.tenant))];
    if (entry.outcome === 'hung') {
      stats.hung += 1;
      hung.push({ op, tenant: tenant.id, atS: seconds(s), detail: `no answer within its deadline of ${entry.deadlineMs} ms; needed: ${situation(needs, s, e)}` });
      continue;
    }
    if (entry.outcome === 'transport') {
      stats.transportErrors += 1;
      continue;
    }
    if (entry.outcome === 'error' && entry.code !== undefined) {
      count(stats.failed, entry.code);
      count(codes, entry.code);
      perTenant[tenant.id]!.failed += 1;
      const isBatch = op === 'v1.batchUnwrap' || op === 'api1.batchUnwrap';
      if (!allowed(entry.code, needs, s, e, isBatch)) {
        wrongCodes.push({ op, tenant: tenant.id, atS: seconds(s), detail: `code ${entry.code} (HTTP ${entry.status}) after ${Math.round(e - s)} ms; needed: ${situation(needs, s, e)}` });
      }
      continue;
    }
    if (entry.outcome !== 'ok') continue;
    // A whole-request success.
    const removed = tenantsInvolved.filter((t) => timeline.definitelyAbsent(t, s, e));
    if (removed.length > 0) {
      unexpectedSuccesses.push({ op, tenant: tenant.id, atS: seconds(s), detail: `succeeded although ${removed.map((t) => t.id).join(', ')} had been removed by a reload` });
    }
    if (!entry.items) {
      const disabled = needs.filter((n) => n.kind === 'unwrap' && timeline.definitelyDisabled(n.tenant, n.configId!, s, e));
      if (disabled.length > 0) {
        unexpectedSuccesses.push({ op, tenant: tenant.id, atS: seconds(s), detail: `unwrapped an EDEK of config ${disabled[0]!.configId}, which a reload had disabled` });
      }
    }
    if (entry.madeConfigId !== undefined) {
      const target = needs.find((n) => n.kind === 'wrap')!.tenant;
      const made = configById.get(entry.madeConfigId)!;
      const primaries = timeline.primaries(target, s, e);
      if (!primaries.has(made.config.provider)) {
        wrongCodes.push({ op, tenant: target.id, atS: seconds(s), detail: `the new EDEK is under config ${entry.madeConfigId} (${made.config.provider}), not the primary (${[...primaries].join('/')})` });
      }
    }
    if (entry.items) {
      let allOk = true;
      for (const item of entry.items) {
        items.total += 1;
        if (item.ok) {
          items.ok += 1;
          if (item.need.configId !== undefined && timeline.definitelyDisabled(item.need.tenant, item.need.configId, s, e)) {
            unexpectedSuccesses.push({ op, tenant: tenant.id, atS: seconds(s), detail: `batch item unwrapped an EDEK of config ${item.need.configId}, which a reload had disabled` });
          }
          continue;
        }
        allOk = false;
        if (item.code === undefined) continue;
        count(items.failed, item.code);
        count(codes, item.code);
        if (!allowed(item.code, [item.need], s, e, false)) {
          wrongCodes.push({ op, tenant: tenant.id, atS: seconds(s), detail: `batch item code ${item.code} after ${Math.round(e - s)} ms; needed: ${situation([item.need], s, e)}` });
        }
      }
      if (allOk) stats.ok += 1;
      if (allOk) perTenant[tenant.id]!.ok += 1;
      else perTenant[tenant.id]!.failed += 1;
      if (allOk && duringOutage(tenant, s, e)) perTenant[tenant.id]!.okDuringOutage += 1;
      continue;
    }
    stats.ok += 1;
    perTenant[tenant.id]!.ok += 1;
    if (duringOutage(tenant, s, e)) perTenant[tenant.id]!.okDuringOutage += 1;
  }
  const deadlineOfOp = (op: OpName): number =>
    op === 'v1.rewrap' ? input.deadlines.rewrap : op.endsWith('atchUnwrap') ? input.deadlines.batch : op.endsWith('nwrap') ? input.deadlines.unwrap : input.deadlines.generate;
  for (const [op, list] of input.latencies) {
    const sorted = [...list].sort((a, b) => a - b);
    const stats = ops[op]!;
    stats.maxLatencyMs = round(sorted[sorted.length - 1] ?? 0);
    stats.p99LatencyMs = round(percentile(sorted, 0.99));
    stats.deadlineMs = deadlineOfOp(op);
  }

  // ---- What each chaos event did ----
  const needsProvider = (entry: RequestEntry, provider: Cloud, kind: TenantKind): boolean =>
    entry.needs.some((n) => n.tenant.kind === kind && providersOf(n, entry.startMs, entry.endMs).some((p) => p.provider === provider));
  const events: ChaosEvent[] = [];
  for (const o of timeline.outages) {
    const provider = o.planned.provider;
    const end = o.restoredMs ?? INF;
    let directFailed = 0;
    let leasedOk = 0;
    let recoveryMs = -1;
    for (const entry of entries) {
      const s = entry.startMs;
      const e = entry.endMs;
      const ownOnly = entry.needs.every((n) => providersOf(n, s, e).every((p) => p.provider === provider));
      if (ownOnly && overlaps(s, e, o.startMs, end) && needsProvider(entry, provider, 'direct')) {
        const codesSeen = entry.items ? entry.items.filter((i) => !i.ok).map((i) => i.code) : [entry.code];
        if (codesSeen.some((c) => c === 208 || c === 209)) directFailed += 1;
      }
      if (ownOnly && entry.outcome === 'ok' && s >= o.startMs && e <= end && needsProvider(entry, provider, 'leased') && (!entry.items || entry.items.every((i) => i.ok))) leasedOk += 1;
      if (o.restoredMs !== undefined && entry.outcome === 'ok' && s >= o.restoredMs && needsProvider(entry, provider, 'direct') && (!entry.items || entry.items.every((i) => i.ok))) {
        const took = e - o.restoredMs;
        if (recoveryMs < 0 || took < recoveryMs) recoveryMs = took;
      }
    }
    events.push({
      kind: 'outage',
      type: o.planned.kind,
      provider,
      plannedAtS: seconds(o.planned.atMs),
      startS: seconds(o.startMs),
      endS: o.restoredMs === undefined ? undefined : seconds(o.restoredMs),
      outcome: o.error ?? 'done',
      observed: { directFailures: directFailed, leasedSuccesses: leasedOk, recoveryMs: Math.round(recoveryMs) },
    });
  }
  const churn = tenants.filter((t) => t.role === 'churn');
  const multi = tenants.find((t) => t.role === 'multi')!;
  let removedAt = INF;
  timeline.reloads.forEach((w, i) => {
    const later = timeline.reloads.slice(i + 1);
    const from = w.seenMs ?? INF;
    // Each effect lasts until a later reload changes the same thing again.
    const churnUntil = later.find((x) => x.before.churn !== x.after.churn)?.writtenMs ?? INF;
    const primaryUntil = later.find((x) => x.before.multiPrimary !== x.after.multiPrimary)?.writtenMs ?? INF;
    const disabledUntil = later.find((x) => x.before.multiSecondaryDisabled !== x.after.multiSecondaryDisabled)?.writtenMs ?? INF;
    const nextValid = later.find((x) => x.planned.type !== 'invalid')?.writtenMs ?? INF;
    const observed: Record<string, number> = {};
    let to = churnUntil;
    const inWindow = (entry: RequestEntry): boolean => entry.startMs >= from && entry.endMs <= to;
    if (w.before.churn && !w.after.churn) {
      removedAt = w.writtenMs;
      for (const t of churn) observed[`${t.id}:201`] = entries.filter((x) => inWindow(x) && x.tenant === t && x.code === 201).length;
    }
    if (!w.before.churn && w.after.churn) {
      for (const t of churn) {
        observed[`${t.id}:ok`] = entries.filter((x) => inWindow(x) && x.tenant === t && x.outcome === 'ok').length;
        // EDEKs made before the removal, unwrapped after the re-add (a leased one through a new lease recovery).
        const before = removedAt;
        observed[`${t.id}:oldEdeksOk`] = entries.filter(
          (x) =>
            inWindow(x) &&
            x.tenant === t &&
            x.outcome === 'ok' &&
            (!x.items || x.items.every((item) => item.ok)) &&
            x.needs.some((n) => n.kind === 'unwrap' && n.tenant === t && (n.madeMs ?? INF) < before),
        ).length;
      }
    }
    if (w.before.multiPrimary !== w.after.multiPrimary) {
      to = primaryUntil;
      const wanted = multi.configs.find((c) => c.provider === w.after.multiPrimary)!.id;
      observed[`${multi.id}:madeUnderNewPrimary`] = entries.filter((x) => inWindow(x) && x.madeConfigId === wanted && x.needs.some((n) => n.kind === 'wrap' && n.tenant === multi)).length;
    }
    if (w.before.multiSecondaryDisabled !== w.after.multiSecondaryDisabled) {
      to = disabledUntil;
      const secondary = multi.configs.find((c) => c.provider !== w.after.multiPrimary)!.id;
      const unwrapsOf = (x: RequestEntry): ItemResult[] =>
        x.items ? x.items.filter((i) => i.need.configId === secondary) : x.needs.some((n) => n.kind === 'unwrap' && n.configId === secondary) ? [{ need: x.needs[0]!, ok: x.outcome === 'ok', ...(x.code === undefined ? {} : { code: x.code }) }] : [];
      const seen = entries.filter((x) => inWindow(x) && x.tenant === multi).flatMap(unwrapsOf);
      if (w.after.multiSecondaryDisabled) observed[`${multi.id}:config${secondary}:202`] = seen.filter((i) => i.code === 202).length;
      else observed[`${multi.id}:config${secondary}:ok`] = seen.filter((i) => i.ok).length;
    }
    if (w.planned.type === 'invalid') {
      observed.servedWhileInvalid = entries.filter((x) => x.startMs >= w.writtenMs && x.endMs <= (w.revertedMs ?? nextValid) && x.outcome === 'ok').length;
      // 1 when /health stopped reporting the reload error after the revert, 0 when it kept reporting it.
      observed.healthClearedAfterRevert = w.errorClearedMs === undefined ? 0 : 1;
    }
    events.push({
      kind: 'reload',
      type: w.planned.type,
      plannedAtS: seconds(w.planned.atMs),
      startS: seconds(w.writtenMs),
      endS: w.seenMs === undefined ? undefined : seconds(w.seenMs),
      outcome: w.outcome,
      observed,
    });
  });
  events.sort((a, b) => a.startS - b.startS);

  // ---- Keys made before the first outage of each provider, unwrapped at the end ----
  const madeBeforeFirstOutage = {} as Record<Cloud, number>;
  const lostBeforeFirstOutage = {} as Record<Cloud, number>;
  for (const provider of CLOUDS) {
    const first = Math.min(...timeline.outages.filter((o) => o.planned.provider === provider).map((o) => o.startMs));
    const early = input.records.filter((r) => r.madeMs < first && configById.get(r.configId)?.config.provider === provider);
    madeBeforeFirstOutage[provider] = early.filter((r) => input.final.verifiedKeys.has(r)).length;
    lostBeforeFirstOutage[provider] = early.filter((r) => input.final.failedKeys.has(r)).length;
  }

  // ---- The process ----
  const errorLogs: Record<string, number> = {};
  const unexpectedErrorLogs: Record<string, number> = {};
  for (const { entry } of input.follower.errors) {
    const msg = String(entry.msg);
    count(errorLogs, msg);
    if (!EXPECTED_ERROR_LOGS.has(msg)) count(unexpectedErrorLogs, msg);
  }
  const leaseWipes: Record<string, number> = {};
  for (const { entry } of input.follower.leaseWipes) count(leaseWipes, String(entry.reason));
  // Process warnings (`process.emitWarning`: the AWS SDK's Node-version notice, library
  // deprecations) are notices, listed in the report; anything else on stderr is an error.
  const notices: string[] = [];
  const stderr = input.processInfo.stderr
    // The AWS SDK's multi-line notice, through its last line ("More information can be found at: …").
    .replace(/\(node:\d+\) Warning: NodeVersionSupportWarning:[^\n]*\n(?:(?!\(node:)[^\n]*\n){0,12}?More information can be found at: [^\n]*\n?/g, (block) => {
      notices.push(block.split('\n')[0]!.replace(/^\(node:\d+\) /, ''));
      return '';
    })
    .replace(/^\(node:\d+\) (?:\[[A-Z0-9_]+\] )?\w*(?:Warning|Deprecation)\w*: [^\n]*\n?/gm, (line) => {
      notices.push(line.trim().replace(/^\(node:\d+\) /, ''));
      return '';
    })
    .replace(/^\(Use `node --trace-[^\n]*\n?/gm, '')
    .trim();
  const health = input.processInfo.health as { drivers?: { failed?: number; starting?: number }; lastReloadError?: unknown } | undefined;

  // ---- Verdict ----
  const checks: Check[] = [];
  const check = (name: string, ok: boolean, detail: string): void => void checks.push({ name, ok, detail });
  const total = entries.length;
  check('unwrapped DEKs equal the generated ones', input.mismatches.length === 0, `${input.mismatches.length} mismatches`);
  check('every failure carried the right code for its situation', wrongCodes.length === 0, `${wrongCodes.length} wrong codes`);
  check('no success for a removed tenant', unexpectedSuccesses.length === 0, `${unexpectedSuccesses.length} unexpected successes`);
  check('no request ran past its deadline', hung.length === 0, `${hung.length} hung; max latency ${Math.round(maxLatencyMs)} ms`);
  check('every answer well formed (JSON {code, message} with a catalogue code and status)', input.badAnswers.length === 0, `${input.badAnswers.length} bad answers`);
  check('steady load ran', total > 0 && Object.values(ops).every((o) => o.total > 0), `${total} requests, ${Object.keys(ops).length} operation kinds`);
  for (const t of tenants) check(`tenant ${t.id} had successes`, perTenant[t.id]!.ok > 0, `${perTenant[t.id]!.ok} ok, ${perTenant[t.id]!.failed} failed`);
  for (const ev of events.filter((x) => x.kind === 'outage')) {
    const p = ev.provider!;
    const name = `${p} ${ev.type} at ${ev.startS.toFixed(1)} s`;
    check(`${name}: took place and ended`, ev.outcome === 'done' && ev.endS !== undefined, ev.outcome);
    check(`${name}: direct tenants got 208/209 during it`, ev.observed.directFailures! > 0, `${ev.observed.directFailures} direct failures`);
    check(`${name}: the leased tenant kept succeeding during it`, ev.observed.leasedSuccesses! > 0, `${ev.observed.leasedSuccesses} leased successes`);
    const grace = input.settings.recoveryGraceMs[p];
    check(`${name}: direct service recovered within ${grace} ms`, ev.observed.recoveryMs! >= 0 && ev.observed.recoveryMs! <= grace, `first direct success ${ev.observed.recoveryMs} ms after it was back`);
  }
  for (const ev of events.filter((x) => x.kind === 'reload')) {
    const name = `reload ${ev.type} at ${ev.startS.toFixed(1)} s`;
    check(`${name}: seen in Keyward's log`, ev.outcome === (ev.type === 'invalid' ? 'failed' : 'applied'), ev.outcome);
    const effect = Object.entries(ev.observed).filter(([k]) => k !== 'healthClearedAfterRevert');
    check(`${name}: took effect`, effect.length > 0 && effect.every(([, v]) => v > 0), JSON.stringify(ev.observed));
    if (ev.type === 'invalid') {
      check(
        `${name}: /health stops reporting lastReloadError once the file is put back as it was`,
        ev.observed.healthClearedAfterRevert === 1,
        ev.observed.healthClearedAfterRevert === 1 ? 'cleared' : 'still reported 3 s after the revert (the reload of the identical file is "unchanged" and leaves the error)',
      );
    }
  }
  check('every EDEK made during the run unwraps to its DEK afterwards', input.final.failures.length === 0 && input.final.ok === input.final.verified && input.final.verified > 0, `${input.final.ok}/${input.final.verified} ok, ${input.final.failures.length} failures (of ${input.records.length} made)`);
  for (const p of CLOUDS) {
    check(
      `${p}: EDEKs made before its first outage unwrap afterwards (keys survived restarts)`,
      madeBeforeFirstOutage[p] > 0 && lostBeforeFirstOutage[p] === 0,
      `${madeBeforeFirstOutage[p]} unwrapped, ${lostBeforeFirstOutage[p]} failed`,
    );
  }
  check('Keyward alive after the run, /live and /ready 200', input.processInfo.aliveAfterRun && input.processInfo.live === 200 && input.processInfo.ready === 200, `alive ${input.processInfo.aliveAfterRun}, live ${input.processInfo.live}, ready ${input.processInfo.ready}`);
  check('/health: no failed or starting driver, no reload error left', health?.drivers?.failed === 0 && health.drivers.starting === 0 && (health.lastReloadError === undefined || health.lastReloadError === null), JSON.stringify({ drivers: health?.drivers, lastReloadError: health?.lastReloadError }));
  check('nothing on stderr but process warnings', stderr === '', stderr.slice(0, 500));
  check('no unexpected error logs', Object.keys(unexpectedErrorLogs).length === 0, JSON.stringify(unexpectedErrorLogs));
  const lv = input.processInfo.leases;
  check(
    'every leased tenant holds leases, all fresh again after the outages (refreshes resumed)',
    lv.freshAfterMs >= 0 && lv.stale === 0 && lv.tenants === lv.leasedTenants,
    `${lv.total} leases of ${lv.tenants}/${lv.leasedTenants} leased tenants, ${lv.stale} stale${lv.freshAfterMs >= 0 ? `; all fresh ${lv.freshAfterMs} ms after the final verification` : ''}`,
  );
  const badWipes = Object.keys(leaseWipes).filter((r) => r !== 'disabled' && r !== 'shutdown');
  check('leases wiped only by reloads (no refusal or outage wipe)', badWipes.length === 0, JSON.stringify(leaseWipes));
  check('Keyward exited 0 on SIGTERM', input.processInfo.exitCode === 0, `exit ${input.processInfo.exitCode}`);
  const reloadsSeen = input.follower.reloads;

  return {
    seed: input.seed,
    durationS: input.options.durationS,
    settings: input.settings,
    requests: total,
    operations: ops,
    items,
    codes,
    perTenant,
    events,
    mismatches: input.mismatches,
    wrongCodes,
    unexpectedSuccesses,
    badAnswers: input.badAnswers,
    hung,
    maxLatencyMs: round(maxLatencyMs),
    harnessEventLoopDelayMaxMs: round(input.loopDelayMaxMs),
    final: {
      edeks: input.records.length,
      verified: input.final.verified,
      ok: input.final.ok,
      failures: input.final.failures,
      madeBeforeFirstOutage,
      settleMs: Math.round(input.final.settleMs),
    },
    process: {
      aliveAfterRun: input.processInfo.aliveAfterRun,
      live: input.processInfo.live,
      ready: input.processInfo.ready,
      health: input.processInfo.health,
      stderr,
      stderrNotices: notices,
      errorLogs,
      unexpectedErrorLogs,
      leaseWipes,
      leases: { total: input.processInfo.leases.total, stale: input.processInfo.leases.stale, tenants: input.processInfo.leases.tenants, freshAfterMs: input.processInfo.leases.freshAfterMs },
      reloads: { applied: reloadsSeen.filter((r) => r.outcome === 'applied').length, failed: reloadsSeen.filter((r) => r.outcome === 'failed').length },
      exitCode: input.processInfo.exitCode,
    },
    checks,
    ok: checks.every((c) => c.ok),
  };
}

// ---------------------------------------------------------------------------------------------
// Summary
// ---------------------------------------------------------------------------------------------

export function formatReport(report: ChaosReport): string {
  const out: string[] = [];
  const s = report.settings;
  out.push(`Keyward chaos run: seed ${report.seed}, ${report.durationS} s, ${s.workers} workers, KMS timeout ${s.kmsTimeoutMs} ms × ${s.retries + 1} attempts`);
  out.push(`  deadlines: ${s.deadlineDerivation}`);
  out.push(`  recovery grace after an outage: ${CLOUDS.map((p) => `${p} ${s.recoveryGraceMs[p]} ms`).join(', ')}`);
  out.push('');
  out.push(`requests: ${report.requests}; max latency ${report.maxLatencyMs} ms; harness event-loop delay max ${report.harnessEventLoopDelayMaxMs} ms`);
  out.push('  operation            total      ok  failed (by code)                       hung  p99 ms  max ms  deadline ms');
  for (const [op, o] of Object.entries(report.operations).sort()) {
    const failed = Object.entries(o.failed).map(([c, n]) => `${c}×${n}`).join(' ') || '-';
    out.push(`  ${op.padEnd(18)} ${String(o.total).padStart(7)} ${String(o.ok).padStart(7)}  ${failed.padEnd(38)} ${String(o.hung).padStart(4)} ${String(o.p99LatencyMs).padStart(7)} ${String(o.maxLatencyMs).padStart(7)} ${String(o.deadlineMs).padStart(12)}`);
  }
  out.push(`  batch items: ${report.items.total} (${report.items.ok} ok; failed ${Object.entries(report.items.failed).map(([c, n]) => `${c}×${n}`).join(' ') || '-'})`);
  out.push(`  all failure codes: ${Object.entries(report.codes).map(([c, n]) => `${c}×${n}`).join(' ') || '-'}`);
  out.push('  per tenant (ok / failed / ok during an outage of its KMS):');
  out.push(`    ${Object.entries(report.perTenant).map(([t, v]) => `${t} ${v.ok}/${v.failed}/${v.okDuringOutage}`).join(', ')}`);
  out.push('');
  out.push('chaos events (seconds since the load started):');
  for (const ev of report.events) {
    const what = ev.kind === 'outage' ? `${ev.provider} ${ev.type}` : `reload ${ev.type}`;
    out.push(`  ${ev.startS.toFixed(1).padStart(6)} → ${ev.endS === undefined ? '  ?  ' : ev.endS.toFixed(1).padStart(6)}  ${what.padEnd(26)} ${ev.outcome.padEnd(8)} ${JSON.stringify(ev.observed)}`);
  }
  out.push('');
  out.push(
    `final: ${report.final.ok}/${report.final.verified} EDEKs unwrapped to their DEK (${report.final.edeks} made; made before the first outage: ` +
      `${CLOUDS.map((p) => `${p} ${report.final.madeBeforeFirstOutage[p]}`).join(', ')}); settled in ${report.final.settleMs} ms`,
  );
  out.push(
    `process: alive ${report.process.aliveAfterRun}, /live ${report.process.live}, /ready ${report.process.ready}, exit ${report.process.exitCode}; ` +
      `reloads applied ${report.process.reloads.applied}, failed ${report.process.reloads.failed}; lease wipes ${JSON.stringify(report.process.leaseWipes)}; ` +
      `leases after: ${report.process.leases.total} (${report.process.leases.stale} stale); ` +
      `error logs ${JSON.stringify(report.process.errorLogs)}`,
  );
  for (const notice of report.process.stderrNotices) out.push(`  stderr notice: ${notice.slice(0, 200)}`);
  const lists: Array<[string, readonly Finding[]]> = [
    ['MISMATCHES', report.mismatches],
    ['WRONG CODES', report.wrongCodes],
    ['UNEXPECTED SUCCESSES', report.unexpectedSuccesses],
    ['HUNG', report.hung],
    ['BAD ANSWERS', report.badAnswers],
    ['FINAL VERIFICATION FAILURES', report.final.failures],
  ];
  for (const [title, list] of lists) {
    if (list.length === 0) continue;
    out.push('', `${title} (${list.length}):`);
    for (const f of list.slice(0, 15)) out.push(`  ${f.atS.toFixed(2)} s ${f.op} ${f.tenant}: ${f.detail}`);
    if (list.length > 15) out.push(`  … and ${list.length - 15} more`);
  }
  out.push('', 'checks:');
  for (const c of report.checks) out.push(`  ${c.ok ? 'ok  ' : 'FAIL'} ${c.name} — ${c.detail}`);
  out.push('', report.ok ? 'CHAOS RUN PASSED' : `CHAOS RUN FAILED (${report.checks.filter((c) => !c.ok).length} checks failed)`);
  return out.join('\n');
}
