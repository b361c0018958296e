/**
 * Small helpers for the key-leasing end-to-end tests: reading Prometheus counters from
 * the ops port, the ops `/leases` view, and polling with a deadline instead of sleeping.
 */
import type { FastifyInstance } from 'fastify';

/** One lease as `GET /leases` shows it. */
export interface LeaseView {
  readonly tenantId: string;
  readonly kmsConfigId: number;
  readonly leaseId: number;
  readonly state: 'fresh' | 'stale';
  readonly current: boolean;
  readonly createdAt: string;
  readonly lastVerified: string;
  readonly wipeInSeconds: number;
  readonly lastError: string | undefined;
}

/**
 * The sum of every sample of `name` whose labels include all of `labels` (0 when none).
 * Parses the Prometheus text format: `name{a="x",b="y"} 12`.
 */
export function metricSum(text: string, name: string, labels: Readonly<Record<string, string>> = {}): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue;
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)$/.exec(line.trim());
    if (!match || match[1] !== name) continue;
    const found: Record<string, string> = {};
    for (const pair of (match[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) found[pair[1]!] = pair[2]!;
    if (Object.entries(labels).every(([k, v]) => found[k] === v)) sum += Number(match[3]);
  }
  return sum;
}

/** Reads the metrics text from an in-process ops app, or from a process's ops URL. */
export async function metricsText(ops: FastifyInstance | string): Promise<string> {
  if (typeof ops === 'string') return (await fetch(`${ops}/metrics`)).text();
  return (await ops.inject('/metrics')).body;
}

export async function metric(ops: FastifyInstance | string, name: string, labels: Readonly<Record<string, string>> = {}): Promise<number> {
  return metricSum(await metricsText(ops), name, labels);
}

/** `GET /leases?tenantId=` on an in-process ops app or a process's ops URL. */
export async function leasesOf(ops: FastifyInstance | string, tenantId: string): Promise<LeaseView[]> {
  const path = `/leases?tenantId=${encodeURIComponent(tenantId)}`;
  if (typeof ops === 'string') return ((await (await fetch(`${ops}${path}`)).json()) as { leases: LeaseView[] }).leases;
  return (await ops.inject(path)).json<{ leases: LeaseView[] }>().leases;
}

/**
 * Calls `probe` every `everyMs` until it returns a value other than undefined, and
 * returns that value with the time it took; throws with `what` once `withinMs` passed.
 */
export async function pollUntil<T>(
  what: string,
  probe: () => Promise<T | undefined>,
  options: { withinMs: number; everyMs?: number },
): Promise<{ value: T; elapsedMs: number }> {
  const started = performance.now();
  const deadline = started + options.withinMs;
  let last: Error | undefined;
  for (;;) {
    try {
      const value = await probe();
      if (value !== undefined) return { value, elapsedMs: performance.now() - started };
    } catch (err) {
      last = err instanceof Error ? err : new Error(JSON.stringify(err));
    }
    if (performance.now() > deadline) {
      throw new Error(`${what}: not seen within ${options.withinMs} ms${last ? ` (last error: ${last.message})` : ''}`);
    }
    await new Promise((resolve) => setTimeout(resolve, options.everyMs ?? 10));
  }
}
