/**
 * Behaviour added around a driver by wrapping, not by flags inside drivers:
 * `withMetrics(withRetry(withTimeout(driver, ms), policy), metrics)` — each attempt is
 * bounded, only unreachable/throttled attempts are retried, and metrics see the outcome
 * of the whole call.
 */
import type { CallOptions, KmsDriver } from './driver.js';
import { KmsError, isKmsError } from './errors.js';
import type { Metrics } from '../metrics.js';

type Operation = 'wrap' | 'unwrap';

/** A driver that throws instead of rejecting still yields a rejected promise. */
function settle(call: () => Promise<Buffer>): Promise<Buffer> {
  try {
    return call();
  } catch (err) {
    return Promise.reject(err instanceof Error ? err : new KmsError('other', 'the driver failed with a non-Error value'));
  }
}

type Call = (options?: CallOptions) => Promise<Buffer>;

function wrapWith(
  driver: KmsDriver,
  around: (operation: Operation, call: Call, options: CallOptions | undefined) => Promise<Buffer>,
): KmsDriver {
  return {
    provider: driver.provider,
    wrap: (plaintext, aad, options) => around('wrap', (o) => settle(() => driver.wrap(plaintext, aad, o)), options),
    unwrap: (blob, aad, options) => around('unwrap', (o) => settle(() => driver.unwrap(blob, aad, o)), options),
    close: () => driver.close(),
  };
}

/**
 * Bounds each call. A call that times out is reported as unreachable and its request is
 * aborted through the signal; if it completes anyway, a key it returns is wiped, since
 * nobody will read it.
 */
export function withTimeout(driver: KmsDriver, timeoutMs: number): KmsDriver {
  return wrapWith(driver, (operation, call, options) => {
    return new Promise<Buffer>((resolve, reject) => {
      let settled = false;
      const controller = new AbortController();
      const outer = options?.signal;
      const onOuterAbort = (): void => controller.abort(outer?.reason);
      outer?.addEventListener('abort', onOuterAbort, { once: true });
      const timer = setTimeout(() => {
        settled = true;
        outer?.removeEventListener('abort', onOuterAbort);
        controller.abort(new Error('timeout'));
        reject(new KmsError('unreachable', `the ${driver.provider} KMS did not answer a ${operation} within ${timeoutMs} ms`));
      }, timeoutMs);
      // Not unref()ed: the timer belongs to a call in flight and is cleared when it settles.
      call({ signal: controller.signal }).then(
        (result) => {
          clearTimeout(timer);
          outer?.removeEventListener('abort', onOuterAbort);
          if (settled) result.fill(0);
          else resolve(result);
          settled = true;
        },
        (err: unknown) => {
          clearTimeout(timer);
          outer?.removeEventListener('abort', onOuterAbort);
          if (!settled) reject(err instanceof Error ? err : new KmsError('other', 'the driver failed with a non-Error value'));
          settled = true;
        },
      );
    });
  });
}

export interface RetryPolicy {
  /** Retries after the first attempt (0 disables retrying). */
  readonly retries: number;
  /** First backoff ceiling; doubles per retry (full jitter: the wait is random below it). */
  readonly baseDelayMs?: number;
  readonly maxDelayMs?: number;
  /** A provider's Retry-After longer than this is not waited for: the caller gets it instead. */
  readonly maxRetryAfterMs?: number;
  readonly metrics?: Metrics;
  /** For tests: the randomness behind the jitter. */
  readonly random?: () => number;
}

/**
 * Retries only what may succeed later — unreachable and throttled — with exponential
 * backoff and full jitter, and never a refusal, an unusable key or a bad ciphertext.
 * A throttled answer's Retry-After is honoured when it is short enough to wait for.
 */
export function withRetry(driver: KmsDriver, policy: RetryPolicy): KmsDriver {
  const base = policy.baseDelayMs ?? 100;
  const max = policy.maxDelayMs ?? 2_000;
  const maxRetryAfter = policy.maxRetryAfterMs ?? 5_000;
  const random = policy.random ?? Math.random;
  return wrapWith(driver, async (operation, call, options) => {
    for (let attempt = 0; ; attempt++) {
      try {
        return await call(options);
      } catch (err) {
        if (!isKmsError(err) || !err.retryable || attempt >= policy.retries || options?.signal?.aborted) throw err;
        let delay = random() * Math.min(max, base * 2 ** attempt);
        if (err.kind === 'throttled' && err.retryAfterSeconds !== undefined) {
          const hinted = err.retryAfterSeconds * 1000;
          if (hinted > maxRetryAfter) throw err;
          delay = Math.max(delay, hinted);
        }
        policy.metrics?.kmsRetries.inc({ provider: driver.provider, operation, reason: err.kind });
        await sleep(delay, options?.signal);
      }
    }
  });
}

/**
 * The backoff between attempts. Deliberately not unref()ed: unlike background timers it
 * belongs to a call in flight, and nothing else may be keeping the process alive.
 */
function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener('abort', () => {
      clearTimeout(timer);
      resolve();
    }, { once: true });
  });
}

/** Counts and times every call by provider, operation and outcome (ok or failure kind). */
export function withMetrics(driver: KmsDriver, metrics: Metrics): KmsDriver {
  return wrapWith(driver, async (operation, call, options) => {
    const stop = metrics.kmsDuration.startTimer();
    let outcome = 'ok';
    try {
      return await call(options);
    } catch (err) {
      outcome = isKmsError(err) ? err.kind : 'other';
      throw err;
    } finally {
      const labels = { provider: driver.provider, operation, outcome };
      stop(labels);
      metrics.kmsRequests.inc(labels);
    }
  });
}
