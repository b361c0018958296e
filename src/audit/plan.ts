/**
 * Where audit events go, as validated from the tenants file: the named sinks, each with
 * its queue policy, and the route (sinks + policy) of every tenant. Immutable, like the
 * rest of a tenants snapshot; a reload builds a new plan and the AuditLog reconciles.
 */
import type { AuditPolicy, HttpSinkSettings, SyslogSinkSettings } from '../config/schema.js';

export type SinkType = 'stdout' | 'http' | 'syslog';

export interface QueuePolicy {
  /** Most events waiting for delivery; beyond it an event is dropped (bestEffort) or its operation refused (required). */
  readonly size: number;
  readonly batchSize: number;
  readonly lingerMs: number;
  readonly minBackoffMs: number;
  readonly maxBackoffMs: number;
}

export interface HttpSinkSpec extends Omit<HttpSinkSettings, 'timeout' | 'format'> {
  readonly format: 'json' | 'splunk-hec';
  readonly timeoutMs: number;
}

export interface SyslogSinkSpec extends Omit<SyslogSinkSettings, 'timeout' | 'facility' | 'appName'> {
  readonly facility: NonNullable<SyslogSinkSettings['facility']>;
  readonly appName: string;
  readonly timeoutMs: number;
}

interface SinkSpecBase {
  readonly name: string;
  readonly queue: QueuePolicy;
  /** Digest of every setting: a reload keeps a sink (and its queue) whose fingerprint did not change. */
  readonly fingerprint: string;
}

export type SinkSpec =
  | (SinkSpecBase & { readonly type: 'stdout' })
  | (SinkSpecBase & { readonly type: 'http'; readonly http: HttpSinkSpec })
  | (SinkSpecBase & { readonly type: 'syslog'; readonly syslog: SyslogSinkSpec });

export interface AuditRoute {
  readonly sinks: readonly string[];
  readonly policy: AuditPolicy;
}

export interface AuditPlan {
  readonly sinks: ReadonlyMap<string, SinkSpec>;
  /** The route of tenants that name none, and of requests for unknown tenants. */
  readonly default: AuditRoute;
}

export const DEFAULT_QUEUE: QueuePolicy = Object.freeze({ size: 10_000, batchSize: 100, lingerMs: 0, minBackoffMs: 250, maxBackoffMs: 30_000 });
export const DEFAULT_ROUTE: AuditRoute = Object.freeze({ sinks: Object.freeze(['stdout']), policy: 'bestEffort' });
