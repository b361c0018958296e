/**
 * A real HTTP(S) receiver for the audit-delivery tests, speaking the two collector dialects
 * Keyward ships audit events in:
 *
 * - generic webhook: `POST /events`, `Authorization: Bearer <token>`, `Content-Type:
 *   application/json`, body a JSON array of event objects; answers 200 `{"accepted":N}`;
 * - Splunk HEC: `POST /services/collector/event`, `Authorization: Splunk <token>`, body HEC
 *   envelopes (`{"time":…,"host":…,"source":…,"sourcetype":…,"event":{…}}`) concatenated, with
 *   or without whitespace between them; answers 200 `{"text":"Success","code":0}`.
 *
 * Both accept `Content-Encoding: gzip`. Wrong credentials get 401, unparsable bodies 400 (the
 * whole batch is refused then: nothing of it is recorded). Failures, hangs and outages can be
 * injected. Listens on 127.0.0.1 and keeps its port across stop()/start(); stop() cuts open
 * connections as a crashed collector would.
 */
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { Socket } from 'node:net';
import { gunzipSync } from 'node:zlib';

export type CollectorFormat = 'json' | 'hec';

export interface CollectedEvent {
  /** Which route it came on: 'json' for POST /events, 'hec' for POST /services/collector/event. */
  readonly format: CollectorFormat;
  /** The event itself (for HEC, the envelope's `event`). */
  readonly event: Record<string, unknown>;
  /** HEC only: the whole envelope (time, host, source, sourcetype, event, …). */
  readonly envelope?: Record<string, unknown>;
}

export interface AuditCollector {
  /** Fixed across stop()/start(). */
  readonly port: number;
  /** Base URL, http://127.0.0.1:PORT (https when tls). */
  readonly url: string;
  /** Events received, in arrival order. */
  readonly received: CollectedEvent[];
  /** POSTs seen, including failed, refused and hanging ones. */
  readonly requests: number;
  /**
   * Makes the next n POSTs (to either route) fail with this status — e.g. 503, 429 (with a
   * Retry-After header when retryAfterSeconds is given), or 400 for a rejected batch — without
   * recording their events. Authorization is not looked at for them.
   */
  failNext(n: number, status: number, retryAfterSeconds?: number): void;
  /**
   * While on, POSTs are read in full and then left without an answer (for timeout tests). Turning
   * it off answers the ones whose client is still connected, as usual (recording their events);
   * stop() drops them.
   */
  hang(on: boolean): void;
  /**
   * Makes the next n POSTs that would succeed record their events and then cut the connection
   * instead of answering: the collector stored the batch, the sender never learns it (the case
   * at-least-once redelivery is for).
   */
  loseAnswers(n: number): void;
  /** Resolves once received.length >= n; throws after timeoutMs (default 15000) with the count. */
  waitFor(n: number, timeoutMs?: number): Promise<void>;
  /** Closes the listener and destroys open connections: an outage. */
  stop(): Promise<void>;
  /** Listens again on the same port. */
  start(): Promise<void>;
  close(): Promise<void>;
}

const JSON_PATH = '/events';
const HEC_PATH = '/services/collector/event';
const MAX_BODY = 16 * 1024 * 1024;

/**
 * Splits a stream of concatenated JSON objects (HEC batch: `{…}{…}` or `{…}\n{…}`) into the
 * objects. Tracks strings and escapes so braces inside string values do not count.
 */
export function parseConcatenatedJson(text: string): Record<string, unknown>[] {
  const objects: Record<string, unknown>[] = [];
  let i = 0;
  const isSpace = (c: string): boolean => c === ' ' || c === '\n' || c === '\r' || c === '\t';
  for (;;) {
    while (i < text.length && isSpace(text[i]!)) i++;
    if (i >= text.length) return objects;
    if (text[i] !== '{') throw new Error(`expected '{' at offset ${i}, found ${JSON.stringify(text[i])}`);
    const begin = i;
    let depth = 0;
    let inString = false;
    let end = -1;
    for (; i < text.length; i++) {
      const c = text[i];
      if (inString) {
        if (c === '\\') i++;
        else if (c === '"') inString = false;
      } else if (c === '"') inString = true;
      else if (c === '{' || c === '[') depth++;
      else if (c === '}' || c === ']') {
        depth--;
        if (depth === 0) {
          end = i + 1;
          break;
        }
      }
    }
    if (end < 0) throw new Error(`unterminated JSON object starting at offset ${begin}`);
    const value: unknown = JSON.parse(text.slice(begin, end));
    objects.push(value as Record<string, unknown>);
    i = end;
  }
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

interface Parked {
  readonly req: IncomingMessage;
  readonly res: ServerResponse;
  readonly route: CollectorFormat;
  readonly body: Buffer;
}

export async function startAuditCollector(options: {
  readonly tls?: { readonly key: string | Buffer; readonly cert: string | Buffer };
  readonly token: string;
  readonly port?: number;
}): Promise<AuditCollector> {
  let port = options.port ?? 0;
  let server: Server | undefined;
  const sockets = new Set<Socket>();
  const received: CollectedEvent[] = [];
  let requests = 0;
  let failures: { remaining: number; status: number; retryAfterSeconds?: number } | undefined;
  let hanging = false;
  let losing = 0;
  let parked: Parked[] = [];
  const waiters = new Set<() => void>();

  const reply = (res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void => {
    if (res.destroyed || res.headersSent) return;
    const text = JSON.stringify(body);
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), ...headers });
    res.end(text);
  };

  const record = (events: CollectedEvent[]): void => {
    received.push(...events);
    for (const waiter of [...waiters]) waiter();
  };

  /** The success answer, unless it is to be lost (see loseAnswers). */
  const accepted = (res: ServerResponse, body: unknown): void => {
    if (losing > 0) {
      losing--;
      res.socket?.destroy();
      return;
    }
    reply(res, 200, body);
  };

  const hecError = (status: number): { text: string; code: number } =>
    status === 400
      ? { text: 'Invalid data format', code: 6 }
      : status === 401
        ? { text: 'Invalid authorization', code: 3 }
        : status === 403
          ? { text: 'Invalid token', code: 4 }
          : status === 429 || status === 503
            ? { text: 'Server is busy', code: 9 }
            : { text: 'Internal server error', code: 8 };

  /** Answers a fully read POST. */
  const answer = ({ req, res, route, body }: Parked): void => {
    if (failures && failures.remaining > 0) {
      const { status, retryAfterSeconds } = failures;
      failures.remaining--;
      if (failures.remaining === 0) failures = undefined;
      const headers: Record<string, string> = retryAfterSeconds === undefined ? {} : { 'retry-after': String(retryAfterSeconds) };
      reply(res, status, route === 'hec' ? hecError(status) : { error: 'injected failure', status }, headers);
      return;
    }
    const authorization = req.headers.authorization;
    if (route === 'json') {
      if (authorization !== `Bearer ${options.token}`) return reply(res, 401, { error: 'unauthorized' });
      const mediaType = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
      if (mediaType !== 'application/json') return reply(res, 415, { error: 'unsupported media type', expected: 'application/json' });
      let batch: unknown;
      try {
        batch = JSON.parse(body.toString('utf8'));
      } catch {
        return reply(res, 400, { error: 'invalid JSON' });
      }
      if (!Array.isArray(batch)) return reply(res, 400, { error: 'body must be a JSON array of events' });
      const bad = batch.findIndex((event) => !isObject(event));
      if (bad >= 0) return reply(res, 400, { error: 'every event must be a JSON object', index: bad });
      record((batch as Record<string, unknown>[]).map((event) => ({ format: 'json' as const, event })));
      return accepted(res, { accepted: batch.length });
    }
    if (authorization !== `Splunk ${options.token}`) return reply(res, 401, hecError(401));
    const text = body.toString('utf8');
    if (text.trim() === '') return reply(res, 400, { text: 'No data', code: 5 });
    let envelopes: Record<string, unknown>[];
    try {
      envelopes = parseConcatenatedJson(text);
    } catch {
      return reply(res, 400, hecError(400));
    }
    for (const [index, envelope] of envelopes.entries()) {
      if (!('event' in envelope)) return reply(res, 400, { text: 'Event field is required', code: 12, 'invalid-event-number': index });
      if (!isObject(envelope.event)) return reply(res, 400, { ...hecError(400), 'invalid-event-number': index });
    }
    record(envelopes.map((envelope) => ({ format: 'hec' as const, event: envelope.event as Record<string, unknown>, envelope })));
    return accepted(res, { text: 'Success', code: 0 });
  };

  const handler = (req: IncomingMessage, res: ServerResponse): void => {
    const path = (req.url ?? '/').split('?')[0];
    const route: CollectorFormat | undefined = path === JSON_PATH ? 'json' : path === HEC_PATH ? 'hec' : undefined;
    if (req.method === 'POST') requests++;
    if (route === undefined) {
      req.resume();
      return reply(res, 404, { error: 'not found' });
    }
    if (req.method !== 'POST') {
      req.resume();
      return reply(res, 405, { error: 'method not allowed' }, { allow: 'POST' });
    }
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size <= MAX_BODY) chunks.push(chunk);
    });
    req.on('error', () => undefined);
    req.on('end', () => {
      if (size > MAX_BODY) return reply(res, 413, { error: 'body too large' });
      let body = Buffer.concat(chunks);
      const encoding = (req.headers['content-encoding'] ?? 'identity').trim().toLowerCase();
      if (encoding === 'gzip') {
        try {
          body = gunzipSync(body);
        } catch {
          return reply(res, 400, route === 'hec' ? hecError(400) : { error: 'invalid gzip body' });
        }
      } else if (encoding !== 'identity') {
        return reply(res, 415, { error: `unsupported content-encoding ${encoding}` });
      }
      const request: Parked = { req, res, route, body };
      if (hanging) parked.push(request);
      else answer(request);
    });
  };

  const start = (): Promise<void> =>
    new Promise((resolve, reject) => {
      if (server) return resolve();
      const s = options.tls ? createHttpsServer({ key: options.tls.key, cert: options.tls.cert }, handler) : createHttpServer(handler);
      s.on('connection', (socket: Socket) => {
        sockets.add(socket);
        socket.on('close', () => sockets.delete(socket));
      });
      s.once('error', reject);
      s.listen(port, '127.0.0.1', () => {
        s.off('error', reject);
        const address = s.address();
        if (typeof address === 'object' && address) port = address.port;
        server = s;
        resolve();
      });
    });

  const stop = (): Promise<void> =>
    new Promise((resolve) => {
      parked = [];
      const s = server;
      server = undefined;
      if (!s) return resolve();
      s.close(() => resolve());
      for (const socket of sockets) socket.destroy();
      sockets.clear();
    });

  await start();
  const scheme = options.tls ? 'https' : 'http';
  return {
    get port() {
      return port;
    },
    get url() {
      return `${scheme}://127.0.0.1:${port}`;
    },
    received,
    get requests() {
      return requests;
    },
    failNext(n: number, status: number, retryAfterSeconds?: number): void {
      failures = n > 0 ? { remaining: n, status, ...(retryAfterSeconds === undefined ? {} : { retryAfterSeconds }) } : undefined;
    },
    loseAnswers(n: number): void {
      losing = Math.max(0, n);
    },
    hang(on: boolean): void {
      hanging = on;
      if (on) return;
      const waiting = parked;
      parked = [];
      for (const request of waiting) if (!request.res.destroyed && !request.req.socket.destroyed) answer(request);
    },
    waitFor(n: number, timeoutMs = 15_000): Promise<void> {
      return new Promise((resolve, reject) => {
        const check = (): void => {
          if (received.length < n) return;
          clearTimeout(timer);
          waiters.delete(check);
          resolve();
        };
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`audit collector received ${received.length} of ${n} events in ${timeoutMs} ms (${requests} POSTs)`));
        }, timeoutMs);
        waiters.add(check);
        check();
      });
    },
    stop,
    start,
    async close() {
      hanging = false;
      await stop();
    },
  };
}
