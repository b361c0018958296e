/**
 * Routes audit events to each tenant's sinks. Every key operation and security event
 * ends here; the tenant's route (tenants file) says which sinks get it and under which
 * policy:
 *   bestEffort — a full queue drops the event and counts it; the operation goes on;
 *   required   — if any of the tenant's sinks cannot queue a success event, the
 *                operation is refused (AUDIT_UNAVAILABLE, 302/503) before its result
 *                leaves Keyward. Failure events are always best effort.
 * Sinks are reconciled on reload: an unchanged sink keeps its queue, a changed or
 * removed one drains in the background (bounded by the flush timeout).
 */
import { randomUUID } from 'node:crypto';
import type { Writable } from 'node:stream';
import type { Logger } from 'pino';
import { Errors, KeywardError } from '../errors.js';
import type { Metrics } from '../metrics.js';
import type { TenantDirectory } from '../tenants/directory.js';
import { AUDIT_SCHEMA, type AuditEvent, type AuditRecord } from './event.js';
import type { SinkSpec, SinkType } from './plan.js';
import { SinkQueue, type Transport } from './queue.js';
import { httpTransport } from './sinks/http.js';
import { stdoutTransport } from './sinks/stdout.js';
import { syslogTransport } from './sinks/syslog.js';

export interface AuditLogOptions {
  readonly metrics: Metrics;
  readonly logger: Logger;
  /** Where the stdout sink writes (main passes process.stdout). */
  readonly stdout: Writable;
  readonly env: Readonly<Record<string, string | undefined>>;
  /** Names this process in every event (KEYWARD_REPLICA_ID, else the host name). */
  readonly replica: string;
  /** How long close() and retired sinks keep delivering. */
  readonly flushTimeoutMs: number;
  readonly now?: () => Date;
}

interface LiveSink {
  readonly spec: SinkSpec;
  readonly queue: SinkQueue;
}

export class AuditLog {
  readonly #options: AuditLogOptions;
  readonly #sinks = new Map<string, LiveSink>();
  readonly #retiring = new Set<Promise<unknown>>();
  /** Sinks a reload replaced or removed, still draining: their events count as queued until then. */
  readonly #draining = new Set<SinkQueue>();
  #directory: TenantDirectory | undefined;
  #closed = false;

  constructor(options: AuditLogOptions) {
    this.#options = options;
    options.metrics.observeAuditQueues(() => this.depths());
  }

  /** Makes the sinks match the directory's audit plan. */
  sync(directory: TenantDirectory): void {
    this.#directory = directory;
    const wanted = directory.audit.sinks;
    for (const [name, live] of this.#sinks) {
      const spec = wanted.get(name);
      if (spec?.fingerprint === live.spec.fingerprint) continue;
      this.#sinks.delete(name);
      this.#retire(live);
    }
    for (const [name, spec] of wanted) {
      if (!this.#sinks.has(name)) this.#sinks.set(name, { spec, queue: this.#queueFor(spec) });
    }
  }

  /**
   * Stamps and routes events. With `mustQueue` (success events, before the result is
   * returned), throws AUDIT_UNAVAILABLE when a tenant with the required policy would
   * lose one; nothing is queued then.
   */
  record(records: readonly AuditRecord[], options: { mustQueue: boolean }): void {
    const directory = this.#directory;
    if (!directory || this.#closed) {
      if (options.mustQueue && records.some((r) => directory?.auditRoute(r.tenantId).policy === 'required')) throw this.#refuse(records[0]!);
      return;
    }
    const routed = records.map((record) => ({ record, route: directory.auditRoute(record.tenantId) }));
    if (options.mustQueue) {
      const need = new Map<LiveSink, number>();
      for (const { route } of routed) {
        if (route.policy !== 'required') continue;
        for (const name of route.sinks) {
          const live = this.#sinks.get(name);
          if (live) need.set(live, (need.get(live) ?? 0) + 1);
        }
      }
      for (const [live, n] of need) {
        if (live.queue.room() < n) throw this.#refuse(records[0]!, live.spec.name);
      }
    }
    const time = this.#time();
    for (const { record, route } of routed) {
      const event = this.#stamp(record, time);
      for (const name of route.sinks) this.#sinks.get(name)?.queue.offer(event);
    }
  }

  /** Events waiting, by sink type. */
  depths(): Map<SinkType, number> {
    const depths = new Map<SinkType, number>();
    for (const queue of [...[...this.#sinks.values()].map((live) => live.queue), ...this.#draining]) {
      depths.set(queue.type, (depths.get(queue.type) ?? 0) + queue.depth);
    }
    return depths;
  }

  /** Delivers what is queued within the flush timeout; reports what could not be. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const live of this.#sinks.values()) this.#retire(live);
    this.#sinks.clear();
    await Promise.all(this.#retiring);
  }

  #retire(live: LiveSink): void {
    const { logger, flushTimeoutMs } = this.#options;
    const queued = live.queue.depth;
    this.#draining.add(live.queue);
    const done = live.queue.close(flushTimeoutMs).then((lost) => {
      this.#draining.delete(live.queue);
      const fields = { sink: live.spec.name, sinkType: live.spec.type, flushTimeoutMs };
      if (lost > 0) logger.error({ ...fields, undelivered: lost, delivered: queued - lost }, 'audit sink closed with events it could not deliver (counted as dropped, reason shutdown)');
      else logger.info({ ...fields, delivered: queued }, 'audit sink flushed and closed');
    });
    this.#retiring.add(done);
    void done.finally(() => this.#retiring.delete(done));
  }

  #queueFor(spec: SinkSpec): SinkQueue {
    const { metrics, logger, stdout, env } = this.#options;
    let transport: Transport;
    switch (spec.type) {
      case 'stdout':
        transport = stdoutTransport(stdout);
        break;
      case 'http':
        transport = httpTransport(spec.http, env);
        break;
      case 'syslog':
        transport = syslogTransport(spec.syslog);
        break;
    }
    return new SinkQueue({ name: spec.name, type: spec.type, policy: spec.queue, transport, metrics, logger });
  }

  #lastMs = NaN;
  #lastIso = '';

  /** The event time, ISO 8601 to the millisecond; formatted once per millisecond (a batch's items share it). */
  #time(): string {
    if (this.#options.now) return this.#options.now().toISOString();
    const ms = Date.now();
    if (ms !== this.#lastMs) {
      this.#lastMs = ms;
      this.#lastIso = new Date(ms).toISOString();
    }
    return this.#lastIso;
  }

  #stamp(record: AuditRecord, time: string): AuditEvent {
    return Object.freeze({ schema: AUDIT_SCHEMA, id: randomUUID(), time, replica: this.#options.replica, ...record });
  }

  #refuse(record: AuditRecord, sink?: string): KeywardError {
    this.#options.metrics.auditRefusedOperations.inc({ operation: record.operation });
    this.#options.logger.warn({ tenantId: record.tenantId, operation: record.operation, sink }, 'operation refused: its audit event cannot be queued and the tenant requires one');
    return new KeywardError(
      Errors.AUDIT_UNAVAILABLE,
      `the audit event of this ${record.operation} cannot be queued${sink ? ` (sink ${sink} is full)` : ''}, and tenant ${record.tenantId} requires every operation to be audited; retry later`,
    );
  }
}
