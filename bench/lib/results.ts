/** The shape of bench/results/<name>.json: every figure of a run, and the machine it ran on. */
import type { LoadResult, PacedResult } from './load.js';
import type { Comparison, ProfileReport } from './profile.js';

export interface AuditFigures {
  /** Bytes the child wrote to stdout (audit events) during the scenario's warm-up and measured run. */
  readonly stdoutBytes: number | undefined;
  readonly emitted: number;
  readonly delivered: number;
  readonly dropped: number;
}

export interface ScenarioResult {
  readonly id: string;
  readonly label: string;
  readonly keysPerRequest: number;
  readonly leased: boolean;
  readonly requestBytes: number;
  readonly responseBytes: number;
  readonly keyward: LoadResult;
  readonly ceiling: LoadResult | undefined;
  readonly keysPerSecond: number;
  readonly ratio: number | undefined;
  /** KMS calls (keyward_kms_requests_total) during the scenario's warm-up and measured run. */
  readonly kmsCalls: number;
  /** CPU used by the Keyward child during the measured run, in percent of one core. */
  readonly keywardCpuPercent: number | undefined;
  readonly ceilingCpuPercent: number | undefined;
  /** CPU used by the bench process itself (autocannon) during the measured Keyward run, percent of one core. */
  readonly driverCpuPercent: number;
  /** The same during the ceiling's measured run. */
  readonly ceilingDriverCpuPercent: number;
  /** CPU used by other processes on the machine during each measured run (percent of one core): skews the figures. */
  readonly foreignCpuPercent: { readonly keyward: number | undefined; readonly ceiling: number | undefined };
  readonly audit: AuditFigures;
}

export interface RateResult {
  readonly scenario: string;
  /** The maximum measured again just before the rate runs (their 80% is of this). */
  readonly maxRps: number;
  /** The scenario's own maximum (measured before the other leased scenarios ran); absent in results written before it was recorded. */
  readonly scenarioMaxRps?: number;
  readonly targetRps: number;
  /** autocannon with overallRate = 80% of max (the brief's method). */
  readonly autocannon: LoadResult;
  /** The open-loop paced generator at the same rate. */
  readonly paced: PacedResult;
  readonly foreignCpuPercent: { readonly autocannon: number | undefined; readonly paced: number | undefined };
  /**
   * Keyward's side of the paced run, from its /metrics scraped just before and after it: the
   * largest event-loop delay (prom-client resets its monitor at each scrape) and the time spent
   * in garbage-collection pauses, by kind, in ms.
   */
  readonly pacedServer?: { readonly eventLoopMaxMs: number; readonly eventLoopP99Ms: number; readonly gcMs: Readonly<Record<string, number>>; readonly gcPauses: Readonly<Record<string, number>> };
}

export interface SoakSample {
  readonly elapsedS: number;
  readonly rssBytes: number;
  readonly heapUsedBytes: number | undefined;
}

export interface SoakResult {
  readonly minutes: number;
  readonly rate: number;
  readonly warmupS: number;
  readonly mix: readonly string[];
  readonly samples: readonly SoakSample[];
  readonly rssAfterWarmup: number;
  readonly rssEnd: number;
  readonly rssMax: number;
  readonly growthPercent: number;
  /** Least-squares slope of RSS after warm-up, MiB per minute. */
  readonly slopeMiBPerMin: number;
  readonly load: PacedResult;
  readonly leasedOps: number;
  readonly kmsCalls: number;
  readonly audit: AuditFigures;
  /** CPU of other processes on the machine during the soak, average percent of one core. */
  readonly foreignCpuPercent: number | undefined;
}

export interface Target {
  readonly name: string;
  readonly goal: string;
  readonly value: string;
  /** `(short)`: measured, but over less than the target names (a soak under 10 minutes). */
  readonly status: 'PASS' | 'MISS' | 'NOT RUN' | 'PASS (short)' | 'MISS (short)';
  /** How far: e.g. "0.74× of 0.80× (needs +8%)". */
  readonly gap: string;
}

export interface MachineInfo {
  readonly node: string;
  readonly cpuModel: string;
  readonly cores: number;
  readonly memoryGiB: number;
  readonly kernel: string;
  readonly date: string;
  readonly gitCommit: string;
  readonly gitDirty: boolean;
  readonly fastify: string;
  readonly autocannon: string;
}

export interface BenchResults {
  readonly schema: 'keyward.bench.v1';
  readonly machine: MachineInfo;
  readonly settings: {
    readonly mode: 'default' | 'quick';
    readonly warmupS: number;
    readonly durationS: number;
    readonly rateDurationS: number;
    readonly connections: number;
    readonly pipelining: number;
    readonly batchConnections: number;
    readonly keyward: string;
    readonly ceiling: string;
    readonly auditStdout: string;
    readonly notes: readonly string[];
  };
  readonly durations: { readonly buildS: number; readonly setupS: number; readonly scenariosS: number; readonly rateS: number; readonly soakS: number; readonly totalS: number };
  readonly scenarios: readonly ScenarioResult[];
  readonly kms: {
    readonly leasedOps: number;
    readonly calls: number;
    readonly per10k: number | undefined;
    /** The leased scenarios' window (warm-ups and p99-at-80% runs included), and the soak's. */
    readonly scenarioOps: number;
    readonly scenarioCalls: number;
    readonly soakOps: number | undefined;
    readonly soakCalls: number | undefined;
    readonly totalCallsInRun: number;
  };
  readonly p99At80: RateResult | undefined;
  readonly soak: SoakResult | undefined;
  readonly targets: readonly Target[];
  readonly auditSample: string | undefined;
  /** --cpu-prof: the Keyward child's profile, the ceiling's, and CPU per request compared topic by topic. */
  readonly profile: { readonly keyward: ProfileReport; readonly ceiling: ProfileReport | undefined; readonly comparisons: readonly Comparison[] } | undefined;
}
