/**
 * Prometheus metrics, on an injected registry. Units are seconds; label sets are
 * closed (route templates, status codes, provider names, failure kinds) — never a
 * tenant id, key id or error text.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

const LATENCY_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

export interface Metrics {
  readonly registry: Registry;
  readonly httpRequests: Counter<'route' | 'status'>;
  readonly httpDuration: Histogram<'route' | 'status'>;
  readonly kmsRequests: Counter<'provider' | 'operation' | 'outcome'>;
  readonly kmsDuration: Histogram<'provider' | 'operation' | 'outcome'>;
  readonly kmsRetries: Counter<'provider' | 'operation' | 'reason'>;
  readonly configReloads: Counter<'outcome'>;
  readonly leaseWipes: Counter<'reason'>;
  readonly securityEvents: Counter<'outcome'>;
  readonly clientSdkRequests: Counter<'language'>;
  readonly reportedOperations: Counter<'kind'>;
  readonly leaseRefreshes: Counter<'outcome'>;
  readonly leaseCache: Counter<'result'>;
  /** Registers where `keyward_leases{state}` reads its values at scrape time. */
  observeLeases(source: () => Record<'fresh' | 'stale', number>): void;
}

export function createMetrics(options: { registry?: Registry; processMetrics?: boolean } = {}): Metrics {
  const registry = options.registry ?? new Registry();
  if (options.processMetrics ?? true) collectDefaultMetrics({ register: registry });
  const registers = [registry];
  let leaseSource: (() => Record<'fresh' | 'stale', number>) | undefined;
  new Gauge({
    name: 'keyward_leases',
    help: 'Cached lease keys by state: fresh (last refresh succeeded) or stale (the KMS could not be reached since; still serving until maxOutage).',
    labelNames: ['state'],
    registers,
    collect() {
      const counts = leaseSource?.() ?? { fresh: 0, stale: 0 };
      this.set({ state: 'fresh' }, counts.fresh);
      this.set({ state: 'stale' }, counts.stale);
    },
  });
  return {
    observeLeases: (source) => {
      leaseSource = source;
    },
    clientSdkRequests: new Counter({
      name: 'keyward_client_sdk_requests_total',
      help: 'Requests to /api/1 by the client SDK language they announce (x-icl-tsc-language): java, node, go, php, rust, other, none.',
      labelNames: ['language'],
      registers,
    }),
    securityEvents: new Counter({
      name: 'keyward_security_events_total',
      help: 'Application security events received on /api/1/event/security-event, by outcome: accepted or rejected.',
      labelNames: ['outcome'],
      registers,
    }),
    reportedOperations: new Counter({
      name: 'keyward_reported_operations_total',
      help: 'Operations that client SDKs reported having done with cached keys (/api/1/document/report-operations), by kind: wraps, unwraps.',
      labelNames: ['kind'],
      registers,
    }),
    leaseWipes: new Counter({
      name: 'keyward_lease_wipes_total',
      help: 'Lease keys wiped (zero-filled), by reason: revoked, outage, disabled, evicted, shutdown.',
      labelNames: ['reason'],
      registers,
    }),
    leaseRefreshes: new Counter({
      name: 'keyward_lease_refreshes_total',
      help: 'Background lease refreshes (a KMS unwrap of the leased key), by outcome: ok or a failure class.',
      labelNames: ['outcome'],
      registers,
    }),
    leaseCache: new Counter({
      name: 'keyward_lease_cache_requests_total',
      help: 'Lease look-ups by requests, by result: hit (served from memory) or miss (the KMS was asked).',
      labelNames: ['result'],
      registers,
    }),
    registry,
    httpRequests: new Counter({
      name: 'keyward_http_requests_total',
      help: 'HTTP requests answered, by route template and status code.',
      labelNames: ['route', 'status'],
      registers,
    }),
    httpDuration: new Histogram({
      name: 'keyward_http_request_duration_seconds',
      help: 'Time to answer an HTTP request, by route template and status code.',
      labelNames: ['route', 'status'],
      buckets: LATENCY_BUCKETS,
      registers,
    }),
    kmsRequests: new Counter({
      name: 'keyward_kms_requests_total',
      help: 'Calls to tenant KMSs, by provider, operation (wrap, unwrap) and outcome (ok or a failure class).',
      labelNames: ['provider', 'operation', 'outcome'],
      registers,
    }),
    kmsDuration: new Histogram({
      name: 'keyward_kms_request_duration_seconds',
      help: 'Latency of calls to tenant KMSs, by provider, operation and outcome.',
      labelNames: ['provider', 'operation', 'outcome'],
      buckets: LATENCY_BUCKETS,
      registers,
    }),
    kmsRetries: new Counter({
      name: 'keyward_kms_retries_total',
      help: 'KMS call attempts retried, by provider, operation and the failure class that caused the retry (unreachable, throttled).',
      labelNames: ['provider', 'operation', 'reason'],
      registers,
    }),
    configReloads: new Counter({
      name: 'keyward_config_reloads_total',
      help: 'Tenants-file reloads, by outcome (success, failure). A failed reload keeps the previous config.',
      labelNames: ['outcome'],
      registers,
    }),
  };
}
