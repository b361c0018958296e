/**
 * Load generation. `closedLoop` drives autocannon (programmatic API) for a warm-up and
 * then a measured run; latencies are recorded again here, in microseconds, because
 * autocannon's own histogram holds whole milliseconds (a 0.4 ms answer counts as 0).
 * `paced` is an open-loop generator at a fixed rate: requests are sent on schedule
 * whatever the answers do, and each latency is measured from the request's scheduled
 * time, so queueing shows (no coordinated omission).
 */
import { createHistogram, monitorEventLoopDelay, type RecordableHistogram } from 'node:perf_hooks';
import { connect, type Socket } from 'node:net';
import autocannon from 'autocannon';

export interface BenchRequest {
  readonly path: string;
  readonly body: string;
}

export interface Latency {
  readonly mean: number;
  readonly p50: number;
  readonly p90: number;
  readonly p99: number;
  readonly p999: number;
  readonly max: number;
}

export interface LoadResult {
  /** Seconds measured. */
  readonly seconds: number;
  readonly ok: number;
  readonly non2xx: number;
  readonly errors: number;
  readonly timeouts: number;
  readonly rps: number;
  /** Milliseconds, from this module's microsecond histogram (2xx answers only). */
  readonly latency: Latency;
  /** autocannon's own figures (whole milliseconds; with overallRate, its coordinated-omission correction). */
  readonly autocannon?: { readonly p50: number; readonly p99: number; readonly rpsAverage: number };
  /** 2xx answers of the warm-up (they count as operations, e.g. for the KMS-call budget). */
  readonly warmupOk: number;
  readonly connections: number;
  readonly pipelining: number;
  readonly overallRate?: number;
}

export const HEADERS = (apiKey: string): Record<string, string> => ({ 'content-type': 'application/json', authorization: `Bearer ${apiKey}` });

function latencyOf(h: RecordableHistogram): Latency {
  const ms = (us: number): number => us / 1000;
  if (h.count === 0) return { mean: 0, p50: 0, p90: 0, p99: 0, p999: 0, max: 0 };
  return { mean: ms(h.mean), p50: ms(h.percentile(50)), p90: ms(h.percentile(90)), p99: ms(h.percentile(99)), p999: ms(h.percentile(99.9)), max: ms(h.max) };
}

interface CannonRun {
  readonly result: autocannon.Result;
  readonly histogram: RecordableHistogram;
}

function cannon(url: string, requests: readonly BenchRequest[], apiKey: string, options: { connections: number; pipelining: number; seconds: number; overallRate?: number }): Promise<CannonRun> {
  const histogram = createHistogram();
  return new Promise((resolve, reject) => {
    const instance = autocannon(
      {
        url,
        connections: options.connections,
        pipelining: options.pipelining,
        duration: options.seconds,
        method: 'POST',
        headers: HEADERS(apiKey),
        requests: requests.map((r) => ({ method: 'POST', path: r.path, body: r.body })),
        ...(options.overallRate ? { overallRate: options.overallRate } : {}),
        timeout: 30,
      },
      (err, result) => {
        if (err) reject(err instanceof Error ? err : new Error(String(err)));
        else resolve({ result, histogram });
      },
    );
    instance.on('response', (_client, statusCode, _bytes, responseTime) => {
      if (statusCode >= 200 && statusCode < 300) histogram.record(Math.max(1, Math.round(responseTime * 1000)));
    });
  });
}

/** A warm-up (discarded) and a measured autocannon run with the same options. */
export async function closedLoop(
  url: string,
  requests: readonly BenchRequest[],
  apiKey: string,
  options: { connections: number; pipelining: number; warmupS: number; durationS: number; overallRate?: number },
  hooks: { readonly start?: () => void; readonly end?: () => void } = {},
): Promise<LoadResult> {
  let warmupOk = 0;
  if (options.warmupS > 0) {
    const warm = await cannon(url, requests, apiKey, { ...options, seconds: options.warmupS });
    warmupOk = warm.result['2xx'];
  }
  hooks.start?.();
  const { result, histogram } = await cannon(url, requests, apiKey, { ...options, seconds: options.durationS });
  hooks.end?.();
  const seconds = result.duration;
  return {
    seconds,
    ok: result['2xx'],
    non2xx: result.non2xx,
    errors: result.errors,
    timeouts: result.timeouts,
    rps: result['2xx'] / seconds,
    latency: latencyOf(histogram),
    autocannon: { p50: result.latency.p50, p99: result.latency.p99, rpsAverage: result.requests.average },
    warmupOk,
    connections: options.connections,
    pipelining: options.pipelining,
    ...(options.overallRate ? { overallRate: options.overallRate } : {}),
  };
}

interface Conn {
  readonly socket: Socket;
  /** Scheduled send times (ns) of the requests in flight on this connection, in order. */
  readonly pending: bigint[];
  buffer: Buffer;
  need: number | undefined;
  status: number;
}

export interface PacedOptions {
  readonly host: string;
  readonly port: number;
  readonly rate: number;
  readonly seconds: number;
  /** Seconds at the start whose answers are not recorded. */
  readonly warmupS: number;
  readonly connections: number;
  /** Called every second with the answers so far (for progress and soak sampling). */
  readonly onSecond?: (elapsedS: number) => void;
}

export interface PacedResult extends LoadResult {
  readonly sent: number;
  readonly rate: number;
  /** Answers still missing 5 s after the last scheduled request. */
  readonly unanswered: number;
  /**
   * The generator's own event-loop delay over the run (ms): a stall here delays sends and the
   * reading of answers, and shows as latency that is not the server's.
   */
  readonly generatorDelay: { readonly p99: number; readonly max: number };
}

/**
 * Open-loop load at a fixed rate over keep-alive connections (requests pipeline on a
 * connection when it is still busy). Latency = answer time − scheduled send time.
 */
export async function paced(requests: readonly BenchRequest[], apiKey: string, options: PacedOptions): Promise<PacedResult> {
  const raw = requests.map((r) => {
    const body = Buffer.from(r.body);
    const head = `POST ${r.path} HTTP/1.1\r\nHost: ${options.host}:${options.port}\r\nContent-Type: application/json\r\nAuthorization: Bearer ${apiKey}\r\nContent-Length: ${body.length}\r\n\r\n`;
    return Buffer.concat([Buffer.from(head, 'latin1'), body]);
  });
  const histogram = createHistogram();
  let ok = 0;
  let non2xx = 0;
  let errors = 0;
  let warmupOk = 0;
  let answered = 0;
  const start = process.hrtime.bigint();
  const warmEnd = start + BigInt(Math.round(options.warmupS * 1e9));
  const conns: Conn[] = [];
  let failure: Error | undefined;

  const onAnswer = (conn: Conn): void => {
    const scheduled = conn.pending.shift();
    answered++;
    if (scheduled === undefined) return;
    const status = conn.status;
    if (status >= 200 && status < 300) {
      if (scheduled < warmEnd) {
        warmupOk++;
      } else {
        ok++;
        const us = Number((process.hrtime.bigint() - scheduled) / 1000n);
        histogram.record(Math.max(1, us));
      }
    } else {
      non2xx++;
    }
  };

  const onData = (conn: Conn, chunk: Buffer): void => {
    conn.buffer = conn.buffer.length === 0 ? chunk : Buffer.concat([conn.buffer, chunk]);
    for (;;) {
      if (conn.need === undefined) {
        const end = conn.buffer.indexOf('\r\n\r\n');
        if (end < 0) return;
        const head = conn.buffer.toString('latin1', 0, end);
        conn.status = Number(head.slice(9, 12));
        const length = /\r\ncontent-length:[ \t]*(\d+)/i.exec(head);
        if (!length) {
          failure = new Error(`paced: an answer without Content-Length: ${head.slice(0, 200)}`);
          conn.socket.destroy();
          return;
        }
        conn.need = end + 4 + Number(length[1]);
      }
      if (conn.buffer.length < conn.need) return;
      conn.buffer = conn.buffer.subarray(conn.need);
      conn.need = undefined;
      onAnswer(conn);
    }
  };

  await Promise.all(
    Array.from({ length: options.connections }, () =>
      new Promise<void>((resolve, reject) => {
        const socket = connect({ host: options.host, port: options.port, noDelay: true }, () => resolve());
        const conn: Conn = { socket, pending: [], buffer: Buffer.alloc(0), need: undefined, status: 0 };
        socket.on('data', (chunk: Buffer) => onData(conn, chunk));
        socket.on('error', (err) => {
          errors++;
          reject(err);
        });
        conns.push(conn);
      }),
    ),
  );

  const loopDelay = monitorEventLoopDelay({ resolution: 1 });
  loopDelay.enable();
  const total = Math.floor(options.rate * options.seconds);
  const intervalNs = 1e9 / options.rate;
  const t0 = process.hrtime.bigint();
  let sent = 0;
  let next = 0;
  let lastSecond = 0;
  await new Promise<void>((resolve) => {
    const timer = setInterval(() => {
      const now = process.hrtime.bigint();
      const elapsedNs = Number(now - t0);
      const due = Math.min(total, Math.floor(elapsedNs / intervalNs) + 1);
      while (sent < due) {
        // The least busy connection; its scheduled time is when it should have left, not now.
        let best = conns[next % conns.length]!;
        for (const c of conns) if (c.pending.length < best.pending.length) best = c;
        next++;
        best.pending.push(t0 + BigInt(Math.round(sent * intervalNs)));
        best.socket.write(raw[sent % raw.length]!);
        sent++;
      }
      const second = Math.floor(elapsedNs / 1e9);
      if (second > lastSecond) {
        lastSecond = second;
        options.onSecond?.(second);
      }
      if (sent >= total || failure) {
        clearInterval(timer);
        resolve();
      }
    }, 1);
  });
  const drainDeadline = Date.now() + 5_000;
  while (answered < sent && Date.now() < drainDeadline && !failure) await new Promise((r) => setTimeout(r, 10));
  loopDelay.disable();
  for (const c of conns) c.socket.destroy();
  if (failure) throw failure;
  const seconds = Math.max(0.001, options.seconds - options.warmupS);
  return {
    seconds,
    ok,
    non2xx,
    errors,
    timeouts: 0,
    rps: ok / seconds,
    latency: latencyOf(histogram),
    warmupOk,
    connections: options.connections,
    pipelining: 1,
    sent,
    rate: options.rate,
    unanswered: sent - answered,
    generatorDelay: { p99: loopDelay.percentile(99) / 1e6, max: loopDelay.max / 1e6 },
  };
}
