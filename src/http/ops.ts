/**
 * The ops port: liveness, readiness, health detail and Prometheus metrics. Answers
 * from state the process already has; never calls a KMS on a probe.
 */
import Fastify, { type FastifyBaseLogger, type FastifyInstance, type RouteOptions } from 'fastify';
import type { Logger } from 'pino';
import type { LeaseStatus } from '../leasing/manager.js';
import type { Metrics } from '../metrics.js';

export interface OpsState {
  /** Config loaded and drivers started, and not shutting down. */
  ready(): boolean;
  shuttingDown(): boolean;
  status(): Record<string, unknown>;
  /** Lease status for one tenant, or all: state, last successful refresh, time left, last error class. */
  leases(tenantId?: string): readonly LeaseStatus[];
}

export const OPS_ROUTES = ['/live', '/ready', '/health', '/metrics', '/leases'] as const;

export interface OpsOptions {
  readonly logger: Logger;
  readonly metrics: Metrics;
  readonly state: OpsState;
  readonly onRoute?: (route: RouteOptions) => void;
}

export function buildOpsApp(options: OpsOptions): FastifyInstance {
  const { metrics, state } = options;
  const opsLogger: FastifyBaseLogger = options.logger.child({ port: 'ops' });
  const ops = Fastify({ loggerInstance: opsLogger });
  // Probes and scrapes arrive every few seconds; logging each would drown the real events.
  ops.addHook('onRoute', (route) => {
    route.logLevel = 'warn';
    options.onRoute?.(route);
  });

  ops.get('/live', (_request, reply) => reply.send({ status: 'live' }));
  ops.get('/ready', async (_request, reply) => {
    const ready = state.ready();
    return reply.code(ready ? 200 : 503).send({ status: ready ? 'ready' : state.shuttingDown() ? 'shutting-down' : 'starting' });
  });
  ops.get('/health', async (_request, reply) => {
    const ready = state.ready();
    return reply.code(ready ? 200 : 503).send({ status: ready ? 'ok' : state.shuttingDown() ? 'shutting-down' : 'starting', ...state.status() });
  });
  ops.get('/leases', {
    schema: { querystring: { type: 'object', properties: { tenantId: { type: 'string', minLength: 1, maxLength: 256 } }, additionalProperties: false } },
  }, (request, reply) => {
    const { tenantId } = request.query as { tenantId?: string };
    return reply.send({ leases: state.leases(tenantId) });
  });
  ops.get('/metrics', async (_request, reply) => {
    const text = await metrics.registry.metrics();
    return reply.type(metrics.registry.contentType).send(text);
  });
  return ops;
}
