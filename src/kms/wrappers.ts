/**
 * Behaviour added around a driver by wrapping, not by flags inside drivers:
 * `withMetrics(withTimeout(driver, ms), metrics)`.
 */
import type { KmsDriver } from './driver.js';
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

function wrapWith(
  driver: KmsDriver,
  around: (operation: Operation, call: () => Promise<Buffer>) => Promise<Buffer>,
): KmsDriver {
  return {
    provider: driver.provider,
    wrap: (plaintext, aad) => around('wrap', () => settle(() => driver.wrap(plaintext, aad))),
    unwrap: (blob, aad) => around('unwrap', () => settle(() => driver.unwrap(blob, aad))),
    close: () => driver.close(),
  };
}

/**
 * Bounds each call. A call that times out is reported as unreachable; if it completes
 * later, a key it returns is wiped, since nobody will read it.
 */
export function withTimeout(driver: KmsDriver, timeoutMs: number): KmsDriver {
  return wrapWith(driver, (operation, call) => {
    return new Promise<Buffer>((resolve, reject) => {
      let settled = false;
      const timer = setTimeout(() => {
        settled = true;
        reject(new KmsError('unreachable', `the ${driver.provider} KMS did not answer a ${operation} within ${timeoutMs} ms`));
      }, timeoutMs);
      timer.unref();
      call().then(
        (result) => {
          clearTimeout(timer);
          if (settled) result.fill(0);
          else resolve(result);
          settled = true;
        },
        (err: unknown) => {
          clearTimeout(timer);
          if (!settled) reject(err instanceof Error ? err : new KmsError('other', 'the driver failed with a non-Error value'));
          settled = true;
        },
      );
    });
  });
}

/** Counts and times every call by provider, operation and outcome (ok or failure kind). */
export function withMetrics(driver: KmsDriver, metrics: Metrics): KmsDriver {
  return wrapWith(driver, async (operation, call) => {
    const stop = metrics.kmsDuration.startTimer();
    let outcome = 'ok';
    try {
      return await call();
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
