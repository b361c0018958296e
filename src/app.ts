/**
 * Builds the two Fastify apps (API and ops) around a started runtime. Listens on
 * nothing: main.ts does that, and tests use `inject()`.
 */
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import { LazyChildLogger } from './logger.js';
import type { ProcessConfig } from './config/env.js';
import { KeyService, type AuditRecorder, type KeySource } from './envelope/keys.js';
import { answeredCode, badUrlHandler, errorHandler, notFoundHandler } from './http/errors.js';
import { apiKeyHook, tenantScopeHook, type ApiKey } from './http/auth.js';
import { readTlsOptions, watchTls } from './http/tls.js';
import type { Server as HttpsServer } from 'node:https';
import { buildOpsApp } from './http/ops.js';
import { registerV1 } from './http/v1.js';
import { registerCompat } from './http/compat.js';
import { SecurityEvents } from './audit/security-events.js';
import { DerivationService } from './derivation/derive.js';
import type { LeaseManager } from './leasing/manager.js';
import type { Metrics } from './metrics.js';
import type { RuntimeStatus } from './runtime.js';

export type AppConfig = Pick<ProcessConfig, 'apiKeyDigests' | 'batchLimit' | 'bodyLimit' | 'dev'> &
  Partial<Pick<ProcessConfig, 'apiKeyTenants' | 'tls' | 'configPollMs'>>;

export interface AppDeps {
  readonly config: AppConfig;
  readonly runtime: KeySource & {
    readonly audit: AuditRecorder;
    status(): RuntimeStatus;
    readonly leases: Pick<LeaseManager, 'status' | 'currentLease' | 'leaseFor'>;
    readonly secrets: Pick<LeaseManager, 'leaseFor'>;
  };
  readonly metrics: Metrics;
  readonly logger: Logger;
}

export interface RegisteredRoute {
  readonly method: string;
  readonly url: string;
  readonly bodySchema: unknown;
}

export interface Apps {
  readonly api: FastifyInstance;
  readonly ops: FastifyInstance;
  /** Every route the two apps registered (HEAD twins excluded): what the OpenAPI test checks. */
  readonly routes: readonly RegisteredRoute[];
  /** Marks the process as shutting down: /ready turns 503 so load balancers drain it. */
  beginShutdown(): void;
}

const SDK_LANGUAGES = new Set(['java', 'node', 'go', 'php', 'rust']);

/** The announced client SDK language, folded into a closed set so it can be a metric label. */
function sdkLanguage(header: string | string[] | undefined): string {
  if (typeof header !== 'string' || header === '') return 'none';
  const language = header.trim().toLowerCase();
  return SDK_LANGUAGES.has(language) ? language : 'other';
}

/**
 * Fastify's line per request ("incoming request", "request completed") at debug rather than info: at info the audit
 * events already record every key operation, and two more lines per request would double what goes to stdout.
 * A request that errored is still logged as an error.
 */
class RequestLinesAtDebug extends LogController {
  override incomingRequest(request: FastifyRequest): void {
    if (!this.isLogDisabled(request)) request.log.debug({ req: request }, 'incoming request');
  }

  override requestCompleted(error: Error | null | undefined, request: FastifyRequest, reply: FastifyReply): void {
    if (this.isLogDisabled(request)) return;
    if (error) reply.log.error({ res: reply, err: error, responseTime: reply.elapsedTime }, 'request errored');
    else reply.log.debug({ res: reply, responseTime: reply.elapsedTime }, 'request completed');
  }
}

export async function buildApp({ config, runtime, metrics, logger }: AppDeps): Promise<Apps> {
  let shuttingDown = false;

  // pino 10's Logger type is wider than Fastify's; the annotation narrows it without a cast.
  const apiLogger: FastifyBaseLogger = logger.child({ port: 'api' });
  // TLS on the API port when configured (the ops port stays plain HTTP: probes and scrapes).
  const https = config.tls ? await readTlsOptions(config.tls) : undefined;
  const api = Fastify({
    ...(https ? { https } : {}),
    loggerInstance: apiLogger,
    logController: new RequestLinesAtDebug(),
    // The request's child logger is made when the request logs something, not for every request.
    childLoggerFactory: (parent, bindings, options) => new LazyChildLogger(parent as Logger, bindings, options) as unknown as FastifyBaseLogger,
    bodyLimit: config.bodyLimit,
    // Mistyped fields are errors, not silently coerced; unknown fields are errors on /v1.
    ajv: { customOptions: { coerceTypes: false, removeAdditional: false, allErrors: false } },
    return503OnClosing: true,
    forceCloseConnections: 'idle',
    // A client configured with a trailing slash ("http://keyward:7777/") asks for //api/1/...
    routerOptions: { ignoreDuplicateSlashes: true },
    // A path that is not valid percent-encoding (FST_ERR_BAD_URL) never reaches a route: it is answered in
    // Keyward's own {code, message} shape like every other error, not with Fastify's body.
    frameworkErrors: (error, request, reply): void => {
      if (error.code === 'FST_ERR_BAD_URL') void badUrlHandler(request, reply);
      else void errorHandler(error, request, reply);
    },
  });
  const routes: RegisteredRoute[] = [];
  const record = (route: { method: string | string[]; url: string; schema?: { body?: unknown } }): void => {
    for (const method of [route.method].flat()) {
      if (method !== 'HEAD') routes.push({ method, url: route.url, bodySchema: route.schema?.body });
    }
  };
  api.addHook('onRoute', record);

  // JSON only: Fastify's built-in text/plain parser would turn a wrong Content-Type into a
  // confusing validation error instead of a clear 415.
  api.removeContentTypeParser('text/plain');
  api.setErrorHandler(errorHandler);
  api.setNotFoundHandler(notFoundHandler);
  api.addHook('onResponse', async (request, reply) => {
    const route = request.routeOptions.url ?? 'unmatched';
    const labels = { route, status: String(reply.statusCode) };
    metrics.httpRequests.inc(labels);
    metrics.httpDuration.observe(labels, reply.elapsedTime / 1000);
    const code = answeredCode(reply);
    if (code !== undefined) metrics.errors.inc({ code: String(code), scope: 'request' });
    if (route.startsWith('/api/1/')) metrics.clientSdkRequests.inc({ language: sdkLanguage(request.headers['x-icl-tsc-language']) });
  });

  const keys = new KeyService({ source: runtime, logger, audit: runtime.audit });
  const events = new SecurityEvents({ audit: runtime.audit, metrics });
  const derivation = new DerivationService({ source: runtime, secrets: runtime.secrets, audit: runtime.audit });
  await api.register((scope, _options, done) => {
    // One scope, one API-key check, for both faces.
    // One API-key check and one tenant-scope check for both faces. The environment's keys
    // are fixed; the tenants file's keys follow its reloads.
    const envKeys: ApiKey[] = config.apiKeyDigests.map((digest, i) => ({
      name: i === 0 ? 'KEYWARD_API_KEY' : 'KEYWARD_API_KEY_2',
      digest,
      tenants: config.apiKeyTenants ?? ['*'],
    }));
    // The list is rebuilt only when a reload brings a new directory, not per request.
    let keysOf: { directory: unknown; keys: readonly ApiKey[] } | undefined;
    scope.addHook(
      'onRequest',
      apiKeyHook(() => {
        const directory = runtime.directory;
        if (keysOf?.directory !== directory) keysOf = { directory, keys: [...envKeys, ...directory.apiKeys] };
        return keysOf.keys;
      }),
    );
    scope.addHook('preHandler', tenantScopeHook());
    registerV1(scope, { keys, metrics, batchLimit: config.batchLimit });
    registerCompat(scope, { keys, derivation, events, metrics, batchLimit: config.batchLimit });
    done();
  });

  const ops = buildOpsApp({
    logger,
    metrics,
    onRoute: record,
    state: {
      ready: () => !shuttingDown,
      shuttingDown: () => shuttingDown,
      status: () => ({ mode: config.dev ? 'development' : 'production', ...runtime.status() }),
      leases: (tenantId) => runtime.leases.status(tenantId),
    },
  });

  if (config.tls) {
    const stopWatching = watchTls(api.server as unknown as HttpsServer, config.tls, logger, config.configPollMs ?? 10_000);
    api.addHook('onClose', (_instance, done) => {
      stopWatching();
      done();
    });
  }

  await api.ready();
  await ops.ready();
  return {
    api,
    ops,
    routes,
    beginShutdown: () => {
      shuttingDown = true;
    },
  };
}
