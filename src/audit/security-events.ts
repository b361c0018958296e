/**
 * Application security events (the tenant-security `event/security-event` call): the
 * application tells the tenant's record that something happened (a login, an export, a
 * retention run). Validated by name family, accepted for unknown tenants too, and
 * written to the audit stream with every metadata field. Routing to tenant SIEMs comes
 * with the audit sinks.
 */
import type { Logger } from 'pino';
import { Errors, KeywardError } from '../errors.js';
import { auditMetadata, type RequestMetadata } from '../envelope/keys.js';
import type { Metrics } from '../metrics.js';

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
  readonly #audit: Logger;
  readonly #metrics: Metrics;

  constructor(options: { logger: Logger; metrics: Metrics }) {
    this.#audit = options.logger.child({ stream: 'audit' });
    this.#metrics = options.metrics;
  }

  record(event: SecurityEvent): void {
    if (!EVENT_NAME.test(event.name)) {
      this.#metrics.securityEvents.inc({ outcome: 'rejected' });
      throw new KeywardError(
        Errors.SECURITY_EVENT_REJECTED,
        `security event "${event.name.slice(0, 100)}" is not one of ADMIN_*, USER_*, DATA_*, PERIODIC_*, CUSTOM_*`,
      );
    }
    this.#metrics.securityEvents.inc({ outcome: 'accepted' });
    this.#audit.info(
      {
        event: 'security.event',
        name: event.name,
        tenantId: event.tenantId,
        occurredAt: new Date(event.timestampMillis ?? Date.now()).toISOString(),
        ...auditMetadata(event.meta),
      },
      'audit',
    );
  }
}
