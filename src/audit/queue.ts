/**
 * One sink's delivery loop: a bounded queue in front of a transport. Events are taken in
 * batches (up to batchSize; those arriving while a batch is in flight form the next
 * one), sent, and retried with exponential backoff and jitter while the failure is
 * retryable. A batch the receiver rejects as invalid is dropped and counted; nothing is
 * dropped silently. At-least-once: a batch whose answer was lost is sent again, with
 * the same event ids.
 *
 * Accounting, per sink type: every offered event is emitted; it ends delivered or
 * dropped (queue_full at the offer, rejected by the receiver, or shutdown at the
 * deadline), so once the queue is empty emitted = delivered + dropped.
 */
import type { Logger } from 'pino';
import type { Metrics } from '../metrics.js';
import type { AuditEvent } from './event.js';
import type { QueuePolicy, SinkType } from './plan.js';

/** A delivery failed. Retryable failures are tried again; others drop the batch. */
export class DeliveryError extends Error {
  override readonly name = 'DeliveryError';
  readonly retryable: boolean;
  readonly retryAfterMs: number | undefined;

  constructor(message: string, options: { retryable: boolean; retryAfterMs?: number | undefined; cause?: unknown }) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.retryable = options.retryable;
    this.retryAfterMs = options.retryAfterMs;
  }
}

/**
 * Serializes a batch for a transport. A batch that cannot be serialized (JSON.stringify throws, e.g. on a
 * structure nested beyond the stack) would fail the same way on every retry: it is dropped as rejected.
 */
export function serializeBatch<T>(encode: () => T): T {
  try {
    return encode();
  } catch (err) {
    throw new DeliveryError(`an audit event cannot be serialized (${err instanceof Error ? err.name : 'error'}); the batch is dropped`, { retryable: false, cause: err });
  }
}

export interface Transport {
  /** Delivers the batch, or throws (a DeliveryError, or anything else: treated as retryable). */
  send(batch: readonly AuditEvent[], signal: AbortSignal): Promise<void>;
  close(): Promise<void>;
}

export interface SinkQueueOptions {
  readonly name: string;
  readonly type: SinkType;
  readonly policy: QueuePolicy;
  readonly transport: Transport;
  readonly metrics: Metrics;
  readonly logger: Logger;
  /** Jitter source in [0, 1). */
  readonly random?: () => number;
}

export class SinkQueue {
  readonly name: string;
  readonly type: SinkType;
  readonly #options: SinkQueueOptions;
  readonly #policy: QueuePolicy;
  readonly #labels: { sink_type: SinkType };
  #queue: AuditEvent[] = [];
  #head = 0;
  #inflight = 0;
  #pump: Promise<void> | undefined;
  /** True while #run loops; cleared by #run itself, in the same tick as its last check of the queue. */
  #running = false;
  #wake: (() => void) | undefined;
  #draining = false;
  #stopped = false;
  #abort = new AbortController();
  #failures = 0;
  /** Events of an in-flight batch given up at the shutdown deadline. */
  #abandoned = 0;

  constructor(options: SinkQueueOptions) {
    this.#options = options;
    this.name = options.name;
    this.type = options.type;
    this.#policy = options.policy;
    this.#labels = { sink_type: options.type };
  }

  /** Events queued or in flight. */
  get depth(): number {
    return this.#queue.length - this.#head + this.#inflight;
  }

  /** How many more events the queue takes now. */
  room(): number {
    return this.#draining ? 0 : Math.max(0, this.#policy.size - this.depth);
  }

  /** Queues the event; false (counted as dropped, queue_full) when the queue is at its bound or closing. */
  offer(event: AuditEvent): boolean {
    const { metrics } = this.#options;
    metrics.auditEmitted.inc(this.#labels);
    if (this.room() === 0) {
      metrics.auditDropped.inc({ ...this.#labels, reason: this.#draining ? 'shutdown' : 'queue_full' });
      return false;
    }
    this.#queue.push(event);
    // Not `#pump ??= ...` with the reset in a .finally(): between the loop's last look at
    // the queue and that callback, an offered event would find #pump still set and wait
    // for the next offer.
    if (!this.#running) {
      this.#running = true;
      this.#pump = this.#run();
    }
    this.#wake?.();
    return true;
  }

  /**
   * Stops taking events and delivers what is queued until `deadlineMs` from now; what is
   * still undelivered then (queued, or in a batch still failing) is counted dropped
   * (shutdown). Returns that number.
   */
  async close(deadlineMs: number): Promise<number> {
    this.#draining = true;
    this.#wake?.();
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<void>((resolve) => {
      // Not unref()ed: shutdown waits for this deadline even when nothing else is pending.
      timer = setTimeout(resolve, deadlineMs);
    });
    await Promise.race([this.#pump ?? Promise.resolve(), deadline]);
    clearTimeout(timer);
    this.#stopped = true;
    this.#abort.abort();
    this.#wake?.();
    await this.#pump;
    const left = this.#queue.length - this.#head;
    if (left > 0) this.#options.metrics.auditDropped.inc({ ...this.#labels, reason: 'shutdown' }, left);
    this.#queue = [];
    this.#head = 0;
    await this.#options.transport.close().catch(() => undefined);
    return left + this.#abandoned;
  }

  async #run(): Promise<void> {
    try {
      while (!this.#stopped && this.#queue.length > this.#head) {
        const waiting = this.#queue.length - this.#head;
        if (this.#policy.lingerMs > 0 && waiting < this.#policy.batchSize && !this.#draining) {
          await this.#sleep(this.#policy.lingerMs, () => this.#queue.length - this.#head >= this.#policy.batchSize || this.#draining);
        } else if (waiting < this.#policy.batchSize) {
          // Let the rest of this event-loop turn offer its events first (the other items of a batch, the other
          // requests served in the same turn): one write for all of them instead of one per event.
          await new Promise<void>((resolve) => setImmediate(resolve));
        }
        const batch = this.#take();
        await this.#deliver(batch);
        this.#inflight = 0;
      }
    } finally {
      this.#running = false;
    }
  }

  #take(): AuditEvent[] {
    const end = Math.min(this.#queue.length, this.#head + this.#policy.batchSize);
    const batch = this.#queue.slice(this.#head, end);
    this.#head = end;
    this.#inflight = batch.length;
    if (this.#head > 1024 && this.#head * 2 > this.#queue.length) {
      this.#queue = this.#queue.slice(this.#head);
      this.#head = 0;
    }
    return batch;
  }

  async #deliver(batch: AuditEvent[]): Promise<void> {
    const { metrics, logger, transport } = this.#options;
    for (;;) {
      try {
        await transport.send(batch, this.#abort.signal);
        metrics.auditDelivered.inc(this.#labels, batch.length);
        if (this.#failures > 0) logger.info({ sink: this.name, sinkType: this.type, failedAttempts: this.#failures }, 'audit sink recovered');
        this.#failures = 0;
        return;
      } catch (err) {
        const error = err instanceof DeliveryError ? err : new DeliveryError(err instanceof Error ? err.message : String(err), { retryable: true, cause: err });
        if (this.#stopped) return this.#abandon(batch);
        if (!error.retryable) {
          metrics.auditDropped.inc({ ...this.#labels, reason: 'rejected' }, batch.length);
          logger.error({ sink: this.name, sinkType: this.type, events: batch.length, reason: error.message }, 'audit sink rejected a batch; its events are dropped');
          return;
        }
        this.#failures += 1;
        // Say so at the first failure and then now and again, not at every retry of a long outage.
        if (this.#failures === 1 || this.#failures % 20 === 0) {
          logger.warn({ sink: this.name, sinkType: this.type, failedAttempts: this.#failures, queued: this.depth, reason: error.message }, 'audit delivery failed; retrying');
        }
        await this.#sleep(this.#backoff(error.retryAfterMs), () => this.#stopped);
        if (this.#stopped) return this.#abandon(batch);
        metrics.auditRetried.inc(this.#labels, batch.length);
      }
    }
  }

  #abandon(batch: readonly AuditEvent[]): void {
    this.#abandoned += batch.length;
    this.#options.metrics.auditDropped.inc({ ...this.#labels, reason: 'shutdown' }, batch.length);
  }

  #backoff(retryAfterMs: number | undefined): number {
    const { minBackoffMs, maxBackoffMs } = this.#policy;
    const exponential = Math.min(maxBackoffMs, minBackoffMs * 2 ** Math.min(this.#failures - 1, 20));
    const jittered = exponential * (0.5 + 0.5 * (this.#options.random ?? Math.random)());
    return Math.min(maxBackoffMs, Math.max(jittered, retryAfterMs ?? 0));
  }

  /** Waits `ms`, or less when `done()` turns true (checked whenever the queue is woken). */
  #sleep(ms: number, done: () => boolean): Promise<void> {
    return new Promise((resolve) => {
      const finish = (): void => {
        clearTimeout(timer);
        this.#wake = undefined;
        resolve();
      };
      const timer = setTimeout(finish, ms);
      timer.unref();
      this.#wake = () => {
        if (done()) finish();
      };
    });
  }
}
