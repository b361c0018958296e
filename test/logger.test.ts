/** The request logger Fastify gets: its pino child is made only when a line is logged at an enabled level. */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { createLogger, LazyChildLogger } from '../src/logger.js';

function capture(level: string) {
  const lines: Array<Record<string, unknown>> = [];
  const logger = createLogger({
    level,
    destination: new Writable({
      write(chunk: Buffer, _e, cb) {
        for (const line of chunk.toString('utf8').split('\n')) if (line !== '') lines.push(JSON.parse(line) as Record<string, unknown>);
        cb();
      },
    }),
  });
  // Counts the children made from the root logger (pino children inherit this property through their prototype,
  // so `this` says whose child it is).
  let children = 0;
  type Child = (this: typeof logger, ...args: Parameters<typeof logger.child>) => ReturnType<typeof logger.child>;
  const original = (Object.getPrototypeOf(logger) as { child: Child }).child;
  logger.child = function (this: typeof logger, ...args: Parameters<typeof logger.child>) {
    if (this === logger) children += 1;
    return original.apply(this, args);
  } as typeof logger.child;
  return { logger, lines, children: () => children };
}

describe('LazyChildLogger', () => {
  it('makes no child while nothing is logged at an enabled level', () => {
    const { logger, lines, children } = capture('info');
    const log = new LazyChildLogger(logger, { reqId: 'req-1' }, {});
    log.debug({ x: 1 }, 'not at info');
    log.trace('nor this');
    assert.equal(log.isLevelEnabled('debug'), false);
    assert.equal(log.isLevelEnabled('warn'), true);
    assert.equal(log.level, 'info');
    assert.equal(children(), 0);
    assert.deepEqual(lines, []);
  });

  it('logs through the real child: bindings, message, level and redaction as pino writes them', () => {
    const { logger, lines, children } = capture('info');
    const log = new LazyChildLogger(logger, { reqId: 'req-2' }, {});
    log.warn({ tenantId: 'acme', dek: 'SECRET' }, 'first');
    log.error(new Error('boom'), 'second');
    assert.equal(children(), 1, 'one child, made at the first line, kept');
    assert.equal(lines.length, 2);
    assert.equal(lines[0]!.reqId, 'req-2');
    assert.equal(lines[0]!.msg, 'first');
    assert.equal(lines[0]!.level, 'warn');
    assert.equal(lines[0]!.dek, '[REDACTED]');
    assert.equal(lines[1]!.level, 'error');
    assert.equal((lines[1]!.err as { message: string }).message, 'boom');
  });

  it('a route level (Fastify logLevel) is honoured before any child exists', () => {
    const { logger, lines, children } = capture('debug');
    const log = new LazyChildLogger(logger, { reqId: 'req-3' }, { level: 'warn' });
    log.info('below the route level');
    assert.equal(children(), 0);
    assert.equal(log.level, 'warn');
    log.warn('at the route level');
    assert.deepEqual(lines.map((l) => [l.msg, l.reqId]), [['at the route level', 'req-3']]);
    assert.equal(log.child({ more: 1 }).level, 'warn', 'child() hands out a real pino child');
  });
});
