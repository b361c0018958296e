/**
 * Owns the live drivers. Configs with identical settings share one driver (the AAD
 * keeps their EDEKs apart). A reload keeps drivers whose settings did not change,
 * starts new ones, and closes retired ones once their in-flight calls are done.
 * A driver that failed to start is retried on use, at most every `retryInitMs`, and in the background with a
 * growing interval (retryInitMs doubling, capped at a minute), so that an idle replica's /health recovers too.
 */
import type { Logger } from 'pino';
import type { DriverContext, KmsDriver, ProviderName } from './driver.js';
import { KmsError, isKmsError } from './errors.js';
import { providerMessage } from './redact.js';
import { withMetrics, withRetry, withTimeout } from './wrappers.js';
import { ConfigIsolation } from './isolation.js';
import { SecretError, readSecret } from '../config/secrets.js';
import type { Metrics } from '../metrics.js';
import type { KmsConfig, TenantDirectory } from '../tenants/directory.js';

type Env = Readonly<Record<string, string | undefined>>;
/**
 * Lazy: a cloud SDK or native module is only loaded when a config names its provider.
 * Each factory gets its own provider's settings block and the driver context.
 */
type Factory = (config: KmsConfig, ctx: DriverContext) => Promise<KmsDriver>;
const FACTORIES: Record<ProviderName, Factory> = {
  local: async (config, ctx) => {
    if (config.provider !== 'local') throw new Error('provider mismatch');
    const { createLocalDriver } = await import('./drivers/local.js');
    return createLocalDriver({ keyFile: config.local.keyFile }, ctx);
  },
  pkcs11: async (config, ctx) => {
    if (config.provider !== 'pkcs11') throw new Error('provider mismatch');
    const { createPkcs11Driver } = await import('./drivers/pkcs11.js');
    const s = config.pkcs11;
    const pin = await readSecret(s.pin, ctx.env);
    return createPkcs11Driver(
      { module: s.module, tokenLabel: s.tokenLabel, keyLabel: s.keyLabel, pin, mechanism: s.mechanism ?? 'aes-gcm', sessions: s.sessions ?? 4 },
      ctx,
    );
  },
  aws: async (config, ctx) => {
    if (config.provider !== 'aws') throw new Error('provider mismatch');
    const { createAwsDriver } = await import('./drivers/aws.js');
    return createAwsDriver(config.aws, ctx);
  },
  azure: async (config, ctx) => {
    if (config.provider !== 'azure') throw new Error('provider mismatch');
    const { createAzureDriver } = await import('./drivers/azure.js');
    return createAzureDriver(config.azure, ctx);
  },
  gcp: async (config, ctx) => {
    if (config.provider !== 'gcp') throw new Error('provider mismatch');
    const { createGcpDriver } = await import('./drivers/gcp.js');
    return createGcpDriver(config.gcp, ctx);
  },
};

export interface DriverPoolOptions {
  readonly logger: Logger;
  readonly metrics: Metrics;
  readonly env: Env;
  readonly retryInitMs?: number;
}

export interface PoolStatus {
  readonly ready: number;
  readonly failed: number;
  readonly starting: number;
}

class Slot {
  state: 'starting' | 'ready' | 'failed' | 'closed' = 'starting';
  driver: KmsDriver | undefined;
  error: KmsError | undefined;
  failedAt = 0;
  pending: Promise<KmsDriver> | undefined;
  inFlight = 0;
  retired = false;
  /** The next background start attempt while failed, and how many have failed in a row. */
  retryTimer: NodeJS.Timeout | undefined;
  retryAttempts = 0;
  #idle: (() => void) | undefined;

  constructor(
    readonly key: string,
    readonly provider: ProviderName,
    private readonly start: () => Promise<KmsDriver>,
  ) {}

  /** Starts (or restarts) the driver once, however many callers wait for it. */
  boot(): Promise<KmsDriver> {
    this.pending ??= this.start()
      .then((driver) => {
        if (this.state === 'closed') {
          void driver.close();
          throw new KmsError('unreachable', 'the KMS driver was retired while starting');
        }
        this.state = 'ready';
        this.driver = driver;
        this.error = undefined;
        this.retryAttempts = 0;
        return driver;
      })
      .catch((err: unknown) => {
        this.state = this.state === 'closed' ? 'closed' : 'failed';
        this.error = isKmsError(err) ? err : new KmsError('other', 'the KMS driver could not start', { cause: err });
        this.failedAt = Date.now();
        throw this.error;
      })
      .finally(() => {
        this.pending = undefined;
      });
    return this.pending;
  }

  enter(): void {
    this.inFlight += 1;
  }

  leave(): void {
    this.inFlight -= 1;
    if (this.inFlight === 0) this.#idle?.();
  }

  async close(): Promise<void> {
    this.state = 'closed';
    clearTimeout(this.retryTimer);
    if (this.inFlight > 0) await new Promise<void>((resolve) => (this.#idle = resolve));
    const driver = this.driver;
    this.driver = undefined;
    await driver?.close();
  }
}

export class DriverPool {
  readonly #slots = new Map<string, Slot>();
  /** Per config id: its concurrency limit, queue and unwrap coalescing. */
  readonly #isolations = new Map<number, ConfigIsolation>();
  readonly #options: DriverPoolOptions;
  readonly #retryInitMs: number;

  constructor(options: DriverPoolOptions) {
    this.#options = options;
    this.#retryInitMs = options.retryInitMs ?? 5_000;
  }

  /**
   * Makes the pool serve `directory`: starts drivers for new settings (waiting until
   * each has started or failed), and retires drivers no config uses any more.
   */
  async sync(directory: TenantDirectory): Promise<void> {
    const wanted = new Map<string, KmsConfig>();
    for (const config of directory.configs()) wanted.set(slotKey(config), config);
    const ids = new Set([...directory.configs()].map((c) => c.id));
    for (const id of this.#isolations.keys()) if (!ids.has(id)) this.#isolations.delete(id);

    const starting: Promise<unknown>[] = [];
    for (const [key, config] of wanted) {
      if (this.#slots.has(key)) continue;
      const slot = this.#createSlot(key, config);
      this.#slots.set(key, slot);
      starting.push(
        slot.boot().catch((err: unknown) => {
          this.#logStartFailure(config, err);
          this.#retryLater(slot, config);
        }),
      );
    }
    await Promise.all(starting);

    for (const [key, slot] of this.#slots) {
      if (wanted.has(key)) continue;
      this.#slots.delete(key);
      slot.retired = true;
      slot.close().catch((err: unknown) => this.#options.logger.warn({ err, provider: slot.provider }, 'closing a retired KMS driver failed'));
    }
  }

  /**
   * The driver for `config`, ready to call, behind the config's own concurrency limit,
   * queue and unwrap coalescing; throws a classified KmsError when it cannot start.
   */
  async driverFor(config: KmsConfig): Promise<KmsDriver> {
    const slot = this.#slots.get(slotKey(config));
    if (!slot || slot.state === 'closed') throw new KmsError('unreachable', 'the KMS driver for this configuration is shutting down');
    if (slot.state === 'ready' && slot.driver) return this.#isolation(config).wrapDriver(this.#tracked(slot, slot.driver));
    if (slot.state === 'failed' && slot.error && Date.now() - slot.failedAt < this.#retryInitMs) throw slot.error;
    try {
      return this.#isolation(config).wrapDriver(this.#tracked(slot, await slot.boot()));
    } catch (err) {
      this.#logStartFailure(config, err);
      this.#retryLater(slot, config);
      throw err;
    }
  }

  /** Schedules a background start attempt for a failed driver (one at a time); its failures log at debug only. */
  #retryLater(slot: Slot, config: KmsConfig): void {
    if (slot.retryTimer || slot.state !== 'failed') return;
    const delay = Math.min(this.#retryInitMs * 2 ** Math.min(slot.retryAttempts, 16), 60_000);
    slot.retryTimer = setTimeout(() => {
      slot.retryTimer = undefined;
      if (slot.state !== 'failed' || slot.retired || slot.pending) return;
      slot.boot().then(
        () => {
          this.#options.logger.info({ provider: config.provider, kmsConfigId: config.id, tenantId: config.tenantId }, 'KMS driver started on a later attempt');
        },
        (err: unknown) => {
          slot.retryAttempts += 1;
          this.#options.logger.debug({ provider: config.provider, kmsConfigId: config.id, kind: isKmsError(err) ? err.kind : 'other' }, 'KMS driver start retried in the background: still failing');
          this.#retryLater(slot, config);
        },
      );
    }, delay);
    slot.retryTimer.unref();
  }

  /** One isolation per config id, kept while its policy stays the same. */
  #isolation(config: KmsConfig): ConfigIsolation {
    const current = this.#isolations.get(config.id);
    if (current && current.policy.limit === config.concurrency.limit && current.policy.queue === config.concurrency.queue) return current;
    const made = new ConfigIsolation(config.id, config.provider, config.concurrency, this.#options.metrics);
    this.#isolations.set(config.id, made);
    return made;
  }

  status(): PoolStatus {
    let ready = 0;
    let failed = 0;
    let starting = 0;
    for (const slot of this.#slots.values()) {
      if (slot.state === 'ready') ready += 1;
      else if (slot.state === 'failed') failed += 1;
      else if (slot.state === 'starting') starting += 1;
    }
    return { ready, failed, starting };
  }

  async close(): Promise<void> {
    const slots = [...this.#slots.values()];
    this.#slots.clear();
    await Promise.allSettled(slots.map((slot) => slot.close()));
  }

  #createSlot(key: string, config: KmsConfig): Slot {
    const { logger, metrics, env } = this.#options;
    const startTimeout = Math.max(config.timeoutMs, 10_000);
    const start = async (): Promise<KmsDriver> => {
      const raw = await withDeadline(FACTORIES[config.provider](config, { logger, env }), startTimeout, config.provider);
      return withMetrics(withRetry(withTimeout(raw, config.timeoutMs), { retries: config.retries, metrics }), metrics);
    };
    return new Slot(key, config.provider, start);
  }

  #tracked(slot: Slot, driver: KmsDriver): KmsDriver {
    const run = async (call: () => Promise<Buffer>): Promise<Buffer> => {
      slot.enter();
      try {
        return await call();
      } finally {
        slot.leave();
      }
    };
    return {
      provider: driver.provider,
      wrap: (plaintext, aad) => run(() => driver.wrap(plaintext, aad)),
      unwrap: (blob, aad) => run(() => driver.unwrap(blob, aad)),
      close: () => Promise.resolve(),
    };
  }

  #logStartFailure(config: KmsConfig, err: unknown): void {
    this.#options.logger.error(
      {
        provider: config.provider,
        kmsConfigId: config.id,
        tenantId: config.tenantId,
        kind: isKmsError(err) ? err.kind : 'other',
        reason: (err as Error).message,
        providerMessage: providerMessage(err),
      },
      'KMS driver could not start; requests for this configuration fail until it does',
    );
  }
}

function slotKey(config: KmsConfig): string {
  return `${config.fingerprint}:${config.timeoutMs}:${config.retries}`;
}

/**
 * Bounds driver start-up. A driver that starts after its deadline is closed at once.
 * Secret-reading errors are ours and name the reference, never the value; any other
 * unexpected error keeps its text in the log only.
 */
function withDeadline(start: Promise<KmsDriver>, ms: number, provider: string): Promise<KmsDriver> {
  return new Promise<KmsDriver>((resolve, reject) => {
    let late = false;
    const timer = setTimeout(() => {
      late = true;
      reject(new KmsError('unreachable', `the ${provider} KMS driver did not start within ${ms} ms`));
    }, ms);
    timer.unref();
    start.then(
      (driver) => {
        clearTimeout(timer);
        if (late) void driver.close().catch(() => undefined);
        else resolve(driver);
      },
      (err: unknown) => {
        clearTimeout(timer);
        if (late) return;
        if (isKmsError(err)) reject(err);
        else if (err instanceof SecretError) reject(new KmsError('key_unusable', err.message, { cause: err }));
        else reject(new KmsError('other', `the ${provider} KMS driver could not start (see the Keyward log)`, { cause: err }));
      },
    );
  });
}
