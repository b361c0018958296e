#!/usr/bin/env node
/**
 * The process: reads the environment, starts the runtime and both servers, handles
 * signals. The only file that touches `process`.
 *   SIGTERM/SIGINT: /ready turns 503, stop accepting, drain in-flight requests, close
 *                   drivers, exit 0 (1 if draining overran KEYWARD_SHUTDOWN_TIMEOUT).
 *   SIGHUP:         reload the tenants file now.
 */
import { buildApp } from './app.js';
import { DEV_API_KEY, loadProcessConfig, type ProcessConfig } from './config/env.js';
import { ConfigError } from './config/errors.js';
import { createLogger } from './logger.js';
import { createMetrics } from './metrics.js';
import { KeywardRuntime } from './runtime.js';

function fail(message: string): never {
  process.stderr.write(`keyward: ${message}\n`);
  process.exit(2);
}

function devBanner(config: ProcessConfig, tenants: string[]): string {
  const keyLine = process.env.KEYWARD_API_KEY ? 'API key: from KEYWARD_API_KEY' : `API key: ${DEV_API_KEY}  (set KEYWARD_API_KEY to change)`;
  const lines = [
    'KEYWARD DEVELOPMENT MODE - NOT FOR PRODUCTION',
    `tenants: ${tenants.join(', ')} (local software KMS, key in a plain file)`,
    keyLine,
    `API http://${config.api.host}:${config.api.port}  ops http://${config.ops.host}:${config.ops.port}`,
    'Set KEYWARD_CONFIG to a tenants file to leave development mode.',
  ];
  const width = Math.max(...lines.map((l) => l.length)) + 4;
  const rule = '#'.repeat(width);
  return `\n${rule}\n${lines.map((l) => `# ${l.padEnd(width - 4)} #`).join('\n')}\n${rule}\n\n`;
}

async function main(): Promise<void> {
  let config: ProcessConfig;
  try {
    config = loadProcessConfig(process.env, process.cwd());
  } catch (err) {
    if (err instanceof ConfigError) fail(err.message);
    throw err;
  }
  const logger = createLogger({ level: config.logLevel });
  const metrics = createMetrics();

  let runtime: KeywardRuntime;
  try {
    runtime = await KeywardRuntime.start({
      configPath: config.configPath,
      kmsTimeoutMs: config.kmsTimeoutMs,
      env: process.env,
      logger,
      metrics,
      pollMs: config.configPollMs,
      auditStdout: process.stdout,
      replicaId: config.replicaId,
      auditFlushTimeoutMs: config.auditFlushTimeoutMs,
    });
  } catch (err) {
    if (err instanceof ConfigError) {
      logger.fatal({ problems: err.problems }, 'cannot start: invalid configuration');
      fail(err.message);
    }
    throw err;
  }

  let apps: Awaited<ReturnType<typeof buildApp>>;
  try {
    apps = await buildApp({ config, runtime, metrics, logger });
  } catch (err) {
    // TLS files that cannot be read or do not fit together are a configuration problem.
    if (config.tls) {
      await runtime.close();
      fail((err as Error).message);
    }
    throw err;
  }
  await apps.api.listen({ host: config.api.host, port: config.api.port });
  await apps.ops.listen({ host: config.ops.host, port: config.ops.port });
  runtime.watch();

  if (config.dev) {
    const tenants = [...new Set([...runtime.directory.configs()].map((c) => c.tenantId))];
    const api = apps.api.server.address();
    const ops = apps.ops.server.address();
    const shown: ProcessConfig = {
      ...config,
      api: { ...config.api, port: typeof api === 'object' && api ? api.port : config.api.port },
      ops: { ...config.ops, port: typeof ops === 'object' && ops ? ops.port : config.ops.port },
    };
    process.stderr.write(devBanner(shown, tenants));
    logger.warn({ mode: 'development' }, 'development mode: built-in config and local software KMS; never use this in production');
  }
  logger.info(
    {
      api: apps.api.addresses(),
      ops: apps.ops.addresses(),
      mode: config.dev ? 'development' : 'production',
      tls: config.tls ? (config.tls.clientCaFile ? 'on, client certificates required' : 'on') : 'off',
    },
    'keyward listening',
  );

  let stopping = false;
  const shutdown = async (signal: string): Promise<void> => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'shutting down: draining in-flight requests');
    apps.beginShutdown();
    const force = setTimeout(() => {
      logger.error({ timeoutMs: config.shutdownTimeoutMs }, 'shutdown timed out; exiting with requests still in flight');
      process.exit(1);
    }, config.shutdownTimeoutMs);
    force.unref();
    try {
      await apps.api.close();
      await runtime.close();
      await apps.ops.close();
      logger.info('stopped');
      process.exit(0);
    } catch (err) {
      logger.error({ err }, 'error during shutdown');
      process.exit(1);
    }
  };
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  process.on('SIGINT', () => void shutdown('SIGINT'));
  process.on('SIGHUP', () => {
    logger.info('SIGHUP: reloading the tenants file');
    void runtime.reload();
  });
}

process.on('unhandledRejection', (reason) => {
  process.stderr.write(`keyward: unhandled rejection: ${reason instanceof Error ? reason.stack : String(reason)}\n`);
  process.exit(1);
});

main().catch((err: unknown) => {
  process.stderr.write(`keyward: failed to start: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
