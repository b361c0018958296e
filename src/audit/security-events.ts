/**
 * Application security events (the tenant-security `event/security-event` call): the
 * application tells the tenant's record that something happened (a login, an export, a
 * retention run). Validated by name family, accepted for unknown tenants too (they go to
 * the default audit route), and recorded as audit events with every metadata field.
 */
import { Errors, KeywardError } from '../errors.js';
import type { AuditRecorder, RequestMetadata } from '../envelope/keys.js';
import type { Metrics } from '../metrics.js';
import { auditCaller } from './event.js';

/**
 * The families of the wire contract. The Go client sends two periodic events without
 * their `PERIODIC_` prefix; they are accepted as they come.
 */
const EVENT_NAME = /^(?:(?:ADMIN|USER|DATA|PERIODIC|CUSTOM)_[A-Z][A-Z0-9_]*|ENFORCE_RETENTION_POLICY|CREATE_BACKUP)$/;

export interface SecurityEvent {
  readonly tenantId: string;
  readonly name: string;
  /** When the application says it happened (ms since the epoch); absent → now. */
  readonly timestampMillis: number | undefined;
  readonly meta: RequestMetadata;
}

export class SecurityEvents {
  readonly #audit: AuditRecorder;
  readonly #metrics: Metrics;

  constructor(options: { audit: AuditRecorder; metrics: Metrics }) {
    this.#audit = options.audit;
    this.#metrics = options.metrics;
  }

  /** Throws SECURITY_EVENT_REJECTED for a bad name, AUDIT_UNAVAILABLE when a required tenant's event cannot be queued. */
  record(event: SecurityEvent): void {
    const occurredAt = new Date(event.timestampMillis ?? Date.now());
    const base = {
      tenantId: event.tenantId,
      operation: 'security_event' as const,
      securityEvent: { name: event.name.slice(0, 256), occurredAt: Number.isNaN(occurredAt.getTime()) ? new Date().toISOString() : occurredAt.toISOString() },
      caller: auditCaller(event.meta),
    };
    if (!EVENT_NAME.test(event.name)) {
      this.#metrics.securityEvents.inc({ outcome: 'rejected' });
      const error = new KeywardError(
        Errors.SECURITY_EVENT_REJECTED,
        `security event "${event.name.slice(0, 100)}" is not one of ADMIN_*, USER_*, DATA_*, PERIODIC_*, CUSTOM_*`,
      );
      this.#audit.record([{ ...base, outcome: 'failure', error: { code: error.code, name: error.spec.name, message: error.message } }], { mustQueue: false });
      throw error;
    }
    this.#audit.record([{ ...base, outcome: 'success' }], { mustQueue: true });
    this.#metrics.securityEvents.inc({ outcome: 'accepted' });
  }
}
