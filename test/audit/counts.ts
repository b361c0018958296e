/** Reads the audit counters of one sink type from a metrics registry. */
import type { Metrics } from '../../src/metrics.js';

export interface AuditCounts {
  emitted: number;
  delivered: number;
  retried: number;
  dropped: Record<string, number>;
}

export async function auditCounts(metrics: Metrics, sinkType: string): Promise<AuditCounts> {
  const value = async (name: string): Promise<number> => {
    const metric = await metrics.registry.getSingleMetric(name)?.get();
    return (metric?.values ?? []).filter((v) => v.labels.sink_type === sinkType).reduce((n, v) => n + v.value, 0);
  };
  const dropped: Record<string, number> = {};
  const drops = await metrics.registry.getSingleMetric('keyward_audit_events_dropped_total')?.get();
  for (const v of drops?.values ?? []) {
    if (v.labels.sink_type === sinkType && v.value > 0) dropped[String(v.labels.reason)] = (dropped[String(v.labels.reason)] ?? 0) + v.value;
  }
  return {
    emitted: await value('keyward_audit_events_emitted_total'),
    delivered: await value('keyward_audit_events_delivered_total'),
    retried: await value('keyward_audit_events_retried_total'),
    dropped,
  };
}

/** emitted = delivered + every drop: what must hold once queues are empty. */
export function balanced(counts: AuditCounts): boolean {
  return counts.emitted === counts.delivered + Object.values(counts.dropped).reduce((a, b) => a + b, 0);
}
