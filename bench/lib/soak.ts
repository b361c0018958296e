/**
 * The memory soak: steady leased load at a fixed rate (open loop) for N minutes, the
 * child's RSS (VmRSS) sampled every few seconds; growth is measured from the first
 * sample after the warm-up to the last.
 */
import { API_KEY, foreignCpu, metricSum, rssBytes, scrape, type KeywardChild } from './processes.js';
import { paced, type BenchRequest } from './load.js';
import type { SoakResult, SoakSample } from './results.js';
import type { Scenario } from './scenarios.js';

export interface SoakOptions {
  readonly minutes: number;
  readonly rate: number;
  readonly connections: number;
  readonly sampleEveryS: number;
  /** Truncates the child's stdout file; returns the bytes it held. */
  readonly drainAudit: () => Promise<number | undefined>;
  readonly log: (line: string) => void;
}

/** The mix: per 20 requests, 8 unwraps, 4 generates, 4 /api/1 unwraps, 2 /api/1 wraps, 1 batch of 100 (v1), 1 batch of 100 (/api/1). */
function mix(scenarios: readonly Scenario[]): { requests: BenchRequest[]; keys: number; names: string[] } {
  const byId = new Map(scenarios.map((s) => [s.id, s]));
  const plan: Array<[string, number]> = [
    ['v1-unwrap-leased', 8],
    ['v1-generate-leased', 4],
    ['api1-unwrap-leased', 4],
    ['api1-wrap-leased', 2],
    ['v1-batch-unwrap-100', 1],
    ['api1-batch-unwrap-100', 1],
  ];
  const requests: BenchRequest[] = [];
  let keys = 0;
  const names: string[] = [];
  const cursor = new Map<string, number>();
  // Interleave so the batches are spread out.
  for (let round = 0; round < 8; round++) {
    for (const [id, count] of plan) {
      const s = byId.get(id);
      if (!s || round >= count) continue;
      const i = cursor.get(id) ?? 0;
      cursor.set(id, i + 1);
      requests.push(s.requests[i % s.requests.length]!);
      keys += s.keys;
    }
  }
  for (const [id, count] of plan) if (byId.has(id)) names.push(`${count}× ${id}`);
  return { requests, keys, names };
}

export async function soak(keyward: KeywardChild, scenarios: readonly Scenario[], options: SoakOptions): Promise<SoakResult> {
  const { requests, keys, names } = mix(scenarios);
  const keysPerRequest = keys / requests.length;
  const seconds = options.minutes * 60;
  const warmupS = Math.min(120, Math.max(15, Math.round(seconds * 0.1)));
  const samples: SoakSample[] = [];
  const before = await scrape(keyward);
  // The ceiling is idle during the soak; everything but the bench and Keyward counts as other.
  const foreign = foreignCpu([keyward.pid]);
  const url = new URL(keyward.url);
  let auditBytes = 0;
  let lastSample = -Infinity;
  const sample = async (elapsedS: number): Promise<void> => {
    const rss = rssBytes(keyward.pid);
    if (rss === undefined) return;
    let heap: number | undefined;
    try {
      heap = metricSum(await scrape(keyward), 'nodejs_heap_size_used_bytes');
    } catch {
      heap = undefined;
    }
    samples.push({ elapsedS, rssBytes: rss, heapUsedBytes: heap });
    auditBytes += (await options.drainAudit()) ?? 0;
    if (elapsedS % 60 < options.sampleEveryS) options.log(`  soak ${elapsedS}s: RSS ${(rss / 2 ** 20).toFixed(1)} MiB${heap === undefined ? '' : `, heap used ${(heap / 2 ** 20).toFixed(1)} MiB`}`);
  };
  const load = await paced(requests, API_KEY, {
    host: url.hostname,
    port: Number(url.port),
    rate: options.rate,
    seconds,
    warmupS,
    connections: options.connections,
    onSecond: (s) => {
      if (s - lastSample >= options.sampleEveryS) {
        lastSample = s;
        void sample(s);
      }
    },
  });
  await sample(seconds);
  const foreignCpuPercent = foreign();
  const after = await scrape(keyward);
  const post = samples.filter((s) => s.elapsedS >= warmupS);
  const first = post[0] ?? samples[0]!;
  const last = samples[samples.length - 1]!;
  const n = post.length;
  const mx = post.reduce((a, s) => a + s.elapsedS, 0) / Math.max(1, n);
  const my = post.reduce((a, s) => a + s.rssBytes, 0) / Math.max(1, n);
  const sxy = post.reduce((a, s) => a + (s.elapsedS - mx) * (s.rssBytes - my), 0);
  const sxx = post.reduce((a, s) => a + (s.elapsedS - mx) ** 2, 0);
  const slope = sxx > 0 ? sxy / sxx : 0; // bytes per second
  return {
    minutes: options.minutes,
    rate: options.rate,
    warmupS,
    mix: names,
    samples,
    rssAfterWarmup: first.rssBytes,
    rssEnd: last.rssBytes,
    rssMax: Math.max(...post.map((s) => s.rssBytes)),
    growthPercent: (100 * (last.rssBytes - first.rssBytes)) / first.rssBytes,
    slopeMiBPerMin: (slope * 60) / 2 ** 20,
    load,
    leasedOps: Math.round((load.ok + load.warmupOk) * keysPerRequest),
    kmsCalls: metricSum(after, 'keyward_kms_requests_total') - metricSum(before, 'keyward_kms_requests_total'),
    foreignCpuPercent,
    audit: {
      stdoutBytes: auditBytes,
      emitted: metricSum(after, 'keyward_audit_events_emitted_total') - metricSum(before, 'keyward_audit_events_emitted_total'),
      delivered: metricSum(after, 'keyward_audit_events_delivered_total') - metricSum(before, 'keyward_audit_events_delivered_total'),
      dropped: metricSum(after, 'keyward_audit_events_dropped_total') - metricSum(before, 'keyward_audit_events_dropped_total'),
    },
  };
}
