/**
 * The live state of a Keyward process: the current tenants snapshot and the drivers
 * serving it. Reloads are serialized; a reload that fails validation keeps the old
 * snapshot, logs every problem and counts a failure. Domain code: no Fastify here.
 */
import { watch, type FSWatcher } from 'node:fs';
import { hostname } from 'node:os';
import type { Writable } from 'node:stream';
import { AuditLog } from './audit/log.js';
import { basename, dirname } from 'node:path';
import type { Logger } from 'pino';
import { ConfigError } from './config/errors.js';
import { loadTenantsFile } from './config/tenants-file.js';
import { DriverPool, type PoolStatus } from './kms/pool.js';
import { LeaseManager, type Clock } from './leasing/manager.js';
import { DEFAULT_SECRET_POLICY, createMissingDevSecrets } from './derivation/derive.js';
import { secretAad } from './envelope/aad.js';
import type { Metrics } from './metrics.js';
import type { TenantDirectory } from './tenants/directory.js';

export interface RuntimeOptions {
  readonly configPath: string;
  readonly kmsTimeoutMs: number;
  readonly env: Readonly<Record<string, string | undefined>>;
  readonly logger: Logger;
  readonly metrics: Metrics;
  /** Safety-net poll for file systems where change events are unreliable. */
  readonly pollMs?: number;
  readonly retryInitMs?: number;
  /** For tests of leasing: the clock leases are timed by. */
  readonly clock?: Clock;
  /** Where the stdout audit sink writes (main passes process.stdout). */
  readonly auditStdout: Writable;
  /** Names this process in audit events (default: the host name). */
  readonly replicaId?: string;
  /** How long shutdown (and a sink removed by a reload) keeps delivering queued audit events (default 5s). */
  readonly auditFlushTimeoutMs?: number;
}

export type ReloadOutcome = 'unchanged' | 'applied' | 'failed';

export interface RuntimeStatus {
  readonly configPath: string;
  readonly loadedAt: string;
  readonly tenants: number;
  readonly drivers: PoolStatus;
  readonly lastReloadError: string | undefined;
}

export class KeywardRuntime {
  readonly pool: DriverPool;
  readonly leases: LeaseManager;
  /** Unwrapped derivation secrets, cached and wiped under the lease rules. */
  readonly secrets: LeaseManager;
  /** Audit events to each tenant's sinks. */
  readonly audit: AuditLog;
  readonly #options: RuntimeOptions;
  #directory: TenantDirectory;
  #digest: string;
  #loadedAt = new Date();
  #lastReloadError: string | undefined;
  #reloading: Promise<ReloadOutcome> | undefined;
  #again = false;
  #watcher: FSWatcher | undefined;
  #poll: NodeJS.Timeout | undefined;
  #debounce: NodeJS.Timeout | undefined;
  #closed = false;

  private constructor(options: RuntimeOptions, directory: TenantDirectory, digest: string, pool: DriverPool) {
    this.#options = options;
    this.#directory = directory;
    this.#digest = digest;
    this.pool = pool;
    this.audit = new AuditLog({
      metrics: options.metrics,
      logger: options.logger,
      stdout: options.auditStdout,
      env: options.env,
      replica: options.replicaId ?? hostname(),
      flushTimeoutMs: options.auditFlushTimeoutMs ?? 5_000,
    });
    this.audit.sync(directory);
    this.leases = new LeaseManager({ pool, metrics: options.metrics, logger: options.logger, clock: options.clock });
    this.leases.sync(directory);
    this.leases.start();
    this.secrets = new LeaseManager({
      pool,
      logger: options.logger,
      clock: options.clock,
      purpose: { aad: secretAad, policyOf: (config) => config.leasing ?? DEFAULT_SECRET_POLICY },
    });
    this.secrets.sync(directory);
    this.secrets.start();
  }

  /** Loads and validates the tenants file (throws ConfigError listing every problem) and starts drivers. */
  static async start(options: RuntimeOptions): Promise<KeywardRuntime> {
    const { directory, digest } = await loadTenantsFile(options.configPath, options.kmsTimeoutMs);
    const pool = new DriverPool({ logger: options.logger, metrics: options.metrics, env: options.env, retryInitMs: options.retryInitMs });
    await pool.sync(directory);
    await createMissingDevSecrets(directory, pool, options.logger);
    const runtime = new KeywardRuntime(options, directory, digest, pool);
    options.logger.info({ configPath: options.configPath, tenants: directory.tenantCount, drivers: pool.status() }, 'tenants file loaded');
    return runtime;
  }

  get directory(): TenantDirectory {
    return this.#directory;
  }

  status(): RuntimeStatus {
    return {
      configPath: this.#options.configPath,
      loadedAt: this.#loadedAt.toISOString(),
      tenants: this.#directory.tenantCount,
      drivers: this.pool.status(),
      lastReloadError: this.#lastReloadError,
    };
  }

  /** Re-reads the tenants file. Concurrent calls coalesce; a call during a reload runs once more after it. */
  reload(): Promise<ReloadOutcome> {
    if (this.#reloading) {
      this.#again = true;
      return this.#reloading;
    }
    this.#reloading = this.#reloadOnce().finally(() => {
      this.#reloading = undefined;
      if (this.#again && !this.#closed) {
        this.#again = false;
        void this.reload();
      }
    });
    return this.#reloading;
  }

  async #reloadOnce(): Promise<ReloadOutcome> {
    const { logger, metrics, configPath, kmsTimeoutMs } = this.#options;
    try {
      const { directory, digest } = await loadTenantsFile(configPath, kmsTimeoutMs);
      if (digest === this.#digest) {
        // The file is the configuration in use again (an invalid edit reverted): the last error no longer applies.
        if (this.#lastReloadError !== undefined) {
          this.#lastReloadError = undefined;
          logger.info({ configPath }, 'tenants file is valid again and unchanged from the configuration in use');
        }
        return 'unchanged';
      }
      await this.pool.sync(directory);
      await createMissingDevSecrets(directory, this.pool, logger);
      this.#directory = directory;
      this.#digest = digest;
      // Leases (and cached derivation secrets) of configs removed, disabled or changed are wiped now.
      this.leases.sync(directory);
      this.secrets.sync(directory);
      this.audit.sync(directory);
      this.#loadedAt = new Date();
      this.#lastReloadError = undefined;
      metrics.configReloads.inc({ outcome: 'success' });
      logger.info({ configPath, tenants: directory.tenantCount, drivers: this.pool.status() }, 'tenants file reloaded');
      return 'applied';
    } catch (err) {
      const problems = err instanceof ConfigError ? err.problems : [(err as Error).message];
      this.#lastReloadError = problems.join('; ');
      metrics.configReloads.inc({ outcome: 'failure' });
      logger.error({ configPath, problems }, 'tenants file reload failed; keeping the previous configuration');
      return 'failed';
    }
  }

  /**
   * Watches the file's directory, not the file: Kubernetes updates a mounted ConfigMap
   * by swapping a symlink, which a watch on the old file never sees.
   */
  watch(): void {
    if (this.#poll || this.#closed) return;
    const { configPath, logger } = this.#options;
    const trigger = (): void => {
      clearTimeout(this.#debounce);
      this.#debounce = setTimeout(() => void this.reload(), 100);
      this.#debounce.unref();
    };
    try {
      const name = basename(configPath);
      this.#watcher = watch(dirname(configPath), { persistent: false }, (_event, file) => {
        if (file === null || file === name || file.startsWith('..')) trigger();
      });
      this.#watcher.on('error', (err) => logger.warn({ err }, 'watching the tenants file failed; relying on polling'));
    } catch (err) {
      logger.warn({ err }, 'cannot watch the tenants file; relying on polling');
    }
    const pollMs = this.#options.pollMs ?? 10_000;
    this.#poll = setInterval(trigger, pollMs);
    this.#poll.unref();
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#watcher?.close();
    clearInterval(this.#poll);
    clearTimeout(this.#debounce);
    await this.#reloading?.catch(() => undefined);
    this.leases.close();
    this.secrets.close();
    await Promise.all([this.pool.close(), this.audit.close()]);
  }
}
