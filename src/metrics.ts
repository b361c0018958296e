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
  readonly errors: Counter<'code' | 'scope'>;
  readonly kmsRequests: Counter<'provider' | 'operation' | 'outcome'>;
  readonly kmsDuration: Histogram<'provider' | 'operation' | 'outcome'>;
  readonly kmsRetries: Counter<'provider' | 'operation' | 'reason'>;
  readonly kmsQueueRejections: Counter<'provider'>;
  readonly configReloads: Counter<'outcome'>;
  readonly leaseWipes: Counter<'reason'>;
  readonly securityEvents: Counter<'outcome'>;
  readonly clientSdkRequests: Counter<'language'>;
  readonly reportedOperations: Counter<'kind'>;
  readonly leaseRefreshes: Counter<'outcome'>;
  readonly leaseCache: Counter<'result'>;
  readonly auditEmitted: Counter<'sink_type'>;
  readonly auditDelivered: Counter<'sink_type'>;
  readonly auditRetried: Counter<'sink_type'>;
  readonly auditDropped: Counter<'sink_type' | 'reason'>;
  readonly auditRefusedOperations: Counter<'operation'>;
  /** Registers where `keyward_leases{state}` and `keyward_lease_wipe_in_seconds` read their values at scrape time. */
  observeLeases(source: () => LeaseCounts): void;
  /** Registers where `keyward_audit_queue_events{sink_type}` reads its values at scrape time. */
  observeAuditQueues(source: () => ReadonlyMap<string, number>): void;
}

export interface LeaseCounts {
  readonly fresh: number;
  readonly stale: number;
  /** Per provider with stale leases: the fewest seconds any of them has left before its outage wipe. */
  readonly staleWipeInSeconds: ReadonlyMap<string, number>;
}

/** The audit sink types: the closed label set of the audit metrics. */
export const AUDIT_SINK_TYPES = ['stdout', 'http', 'syslog'] as const;
export const AUDIT_DROP_REASONS = ['queue_full', 'rejected', 'shutdown'] as const;
export const AUDIT_OPERATIONS = ['generate', 'wrap', 'unwrap', 'rekey', 'derive', 'security_event'] as const;
const WIPE_REASONS = ['revoked', 'outage', 'disabled', 'evicted', 'shutdown'] as const;

export function createMetrics(options: { registry?: Registry; processMetrics?: boolean } = {}): Metrics {
  const registry = options.registry ?? new Registry();
  if (options.processMetrics ?? true) collectDefaultMetrics({ register: registry });
  const registers = [registry];
  let leaseSource: (() => LeaseCounts) | undefined;
  let auditQueueSource: (() => ReadonlyMap<string, number>) | undefined;
  new Gauge({
    name: 'keyward_lease_wipe_in_seconds',
    help: 'While leases are stale (the KMS cannot be reached): per provider, the fewest seconds any stale lease has left before it is wiped for the outage. No sample when no lease is stale.',
    labelNames: ['provider'],
    registers,
    collect() {
      this.reset();
      for (const [provider, seconds] of leaseSource?.().staleWipeInSeconds ?? []) this.set({ provider }, seconds);
    },
  });
  new Gauge({
    name: 'keyward_audit_queue_events',
    help: 'Audit events waiting in sink queues (not yet delivered), by sink type.',
    labelNames: ['sink_type'],
    registers,
    collect() {
      const depths = auditQueueSource?.();
      for (const type of AUDIT_SINK_TYPES) this.set({ sink_type: type }, depths?.get(type) ?? 0);
    },
  });
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
  const metrics: Metrics = {
    observeLeases: (source) => {
      leaseSource = source;
    },
    observeAuditQueues: (source) => {
      auditQueueSource = source;
    },
    auditEmitted: new Counter({
      name: 'keyward_audit_events_emitted_total',
      help: 'Audit events handed to a sink, by sink type (an event routed to two sinks counts twice). Once queues drain: emitted = delivered + dropped.',
      labelNames: ['sink_type'],
      registers,
    }),
    auditDelivered: new Counter({
      name: 'keyward_audit_events_delivered_total',
      help: 'Audit events the sink accepted (HTTP 2xx, or written to the syslog connection or stdout), by sink type.',
      labelNames: ['sink_type'],
      registers,
    }),
    auditRetried: new Counter({
      name: 'keyward_audit_events_retried_total',
      help: 'Audit events sent again after a failed delivery attempt, by sink type (each resend counts once).',
      labelNames: ['sink_type'],
      registers,
    }),
    auditDropped: new Counter({
      name: 'keyward_audit_events_dropped_total',
      help: 'Audit events that will never be delivered, by sink type and reason: queue_full (bestEffort tenant, queue at its bound), rejected (the receiver refused them as invalid), shutdown (still queued at the shutdown deadline).',
      labelNames: ['sink_type', 'reason'],
      registers,
    }),
    auditRefusedOperations: new Counter({
      name: 'keyward_audit_refused_operations_total',
      help: 'Key operations and security events refused because a tenant with the required audit policy could not have its event queued (AUDIT_UNAVAILABLE: code 302 on /v1, 301 on /api/1; HTTP 503), by operation.',
      labelNames: ['operation'],
      registers,
    }),
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
    errors: new Counter({
      name: 'keyward_errors_total',
      help: 'Errors answered, by catalogue code (docs/errors.md; a closed set) and scope: request (the whole request failed) or item (one item of a batch failed).',
      labelNames: ['code', 'scope'],
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
    kmsQueueRejections: new Counter({
      name: 'keyward_kms_queue_rejections_total',
      help: "KMS calls refused at once (KMS_THROTTLED, 209) because their KMS config already had its limit of calls in flight and its queue full: a slow or unreachable tenant KMS, kept from holding up the others. By provider.",
      labelNames: ['provider'],
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
  // Series with a known, closed set of label values start at 0, so that rate() and
  // increase() see their first event (a series born at 1 has no increase to show).
  for (const type of AUDIT_SINK_TYPES) {
    for (const counter of [metrics.auditEmitted, metrics.auditDelivered, metrics.auditRetried]) counter.inc({ sink_type: type }, 0);
    for (const reason of AUDIT_DROP_REASONS) metrics.auditDropped.inc({ sink_type: type, reason }, 0);
  }
  for (const operation of AUDIT_OPERATIONS) metrics.auditRefusedOperations.inc({ operation }, 0);
  for (const reason of WIPE_REASONS) metrics.leaseWipes.inc({ reason }, 0);
  for (const outcome of ['success', 'failure']) metrics.configReloads.inc({ outcome }, 0);
  for (const outcome of ['accepted', 'rejected']) metrics.securityEvents.inc({ outcome }, 0);
  for (const kind of ['wraps', 'unwraps']) metrics.reportedOperations.inc({ kind }, 0);
  for (const result of ['hit', 'miss']) metrics.leaseCache.inc({ result }, 0);
  return metrics;
}
