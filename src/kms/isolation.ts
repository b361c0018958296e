/**
 * Per-KMS-config isolation, so one tenant's slow or dead KMS cannot take the others
 * down with it:
 * - a concurrency limit: at most `limit` calls of one config in flight;
 * - a bounded queue behind it: at most `queue` calls waiting; beyond that a call fails at
 *   once as throttled (KMS_THROTTLED, 209/503 with Retry-After) instead of piling up;
 * - coalescing: concurrent unwraps of the same blob under the same config share one KMS
 *   call; each caller gets its own copy of the key, and the shared one is wiped.
 * Wraps are never coalesced: no two wraps are the same (each DEK is new).
 */
import type { KmsDriver } from './driver.js';
import { KmsError } from './errors.js';
import type { Metrics } from '../metrics.js';

export interface ConcurrencyPolicy {
  readonly limit: number;
  readonly queue: number;
}

export const DEFAULT_CONCURRENCY: ConcurrencyPolicy = Object.freeze({ limit: 64, queue: 1_000 });

interface Waiter {
  readonly resolve: (key: Buffer) => void;
  readonly reject: (err: unknown) => void;
}

export class ConfigIsolation {
  readonly policy: ConcurrencyPolicy;
  readonly #configId: number;
  readonly #provider: string;
  readonly #metrics: Pick<Metrics, 'kmsQueueRejections'> | undefined;
  #inFlight = 0;
  readonly #waiting: Array<() => void> = [];
  readonly #unwraps = new Map<string, Waiter[]>();

  constructor(configId: number, provider: string, policy: ConcurrencyPolicy, metrics?: Pick<Metrics, 'kmsQueueRejections'>) {
    this.#configId = configId;
    this.#provider = provider;
    this.policy = policy;
    this.#metrics = metrics;
  }

  /** Calls in flight and waiting, for tests and status. */
  get load(): { inFlight: number; waiting: number } {
    return { inFlight: this.#inFlight, waiting: this.#waiting.length };
  }

  /** The driver, behind this config's limit, queue and unwrap coalescing. */
  wrapDriver(driver: KmsDriver): KmsDriver {
    return {
      provider: driver.provider,
      wrap: (plaintext, aad, options) => this.#limited(() => driver.wrap(plaintext, aad, options)),
      unwrap: (blob, aad, options) => this.#coalesced(blob, aad, () => this.#limited(() => driver.unwrap(blob, aad, options))),
      close: () => driver.close(),
    };
  }

  async #limited(call: () => Promise<Buffer>): Promise<Buffer> {
    if (this.#inFlight >= this.policy.limit) {
      if (this.#waiting.length >= this.policy.queue) {
        this.#metrics?.kmsQueueRejections.inc({ provider: this.#provider });
        throw new KmsError(
          'throttled',
          `Keyward's queue for KMS config ${this.#configId} is full (${this.policy.limit} calls in flight, ${this.policy.queue} waiting); the KMS is slow or unreachable`,
          { retryAfterSeconds: 1 },
        );
      }
      await new Promise<void>((resolve) => this.#waiting.push(resolve));
    } else {
      this.#inFlight += 1;
    }
    try {
      return await call();
    } finally {
      // Hand the slot straight to the next waiter, or free it.
      const next = this.#waiting.shift();
      if (next) next();
      else this.#inFlight -= 1;
    }
  }

  #coalesced(blob: Buffer, aad: Buffer, call: () => Promise<Buffer>): Promise<Buffer> {
    const key = `${aad.toString('base64')}|${blob.toString('base64')}`;
    return new Promise<Buffer>((resolve, reject) => {
      const waiters = this.#unwraps.get(key);
      if (waiters) {
        waiters.push({ resolve, reject });
        return;
      }
      const group: Waiter[] = [{ resolve, reject }];
      this.#unwraps.set(key, group);
      call().then(
        (shared) => {
          this.#unwraps.delete(key);
          for (const waiter of group) waiter.resolve(Buffer.from(shared));
          shared.fill(0);
        },
        (err: unknown) => {
          this.#unwraps.delete(key);
          for (const waiter of group) waiter.reject(err);
        },
      );
    });
  }
}
