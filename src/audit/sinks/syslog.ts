/**
 * Syslog over TCP (RFC 5424 messages, RFC 6587 octet-counting framing), optionally over
 * TLS (RFC 5425). One connection, opened on first use and again after any error or
 * close by the receiver. A batch is delivered when the socket took all of it; TCP
 * syslog has no application acknowledgement, so a receiver that dies with bytes in
 * flight can lose them (docs/audit.md says so; the HTTP sink has acknowledgements).
 *
 * Message: PRI = facility × 8 + severity (info for successes, warning for failures),
 * VERSION 1, TIMESTAMP = the event time, HOSTNAME = the replica id, APP-NAME, PROCID -,
 * MSGID = the operation, STRUCTURED-DATA -, MSG = the event as JSON (no BOM).
 */
import { readFile } from 'node:fs/promises';
import { connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect, rootCertificates } from 'node:tls';
import type { AuditEvent } from '../event.js';
import type { SyslogSinkSpec } from '../plan.js';
import { DeliveryError, serializeBatch, type Transport } from '../queue.js';

const FACILITIES = {
  kern: 0, user: 1, mail: 2, daemon: 3, auth: 4, syslog: 5, lpr: 6, news: 7, uucp: 8, cron: 9, authpriv: 10, ftp: 11,
  local0: 16, local1: 17, local2: 18, local3: 19, local4: 20, local5: 21, local6: 22, local7: 23,
} as const;
const SEVERITY_WARNING = 4;
const SEVERITY_INFO = 6;

/** RFC 5424 header fields are printable US-ASCII without spaces, bounded in length. */
function headerField(text: string, max: number): string {
  const clean = text.replace(/[^!-~]/g, '_').slice(0, max);
  return clean === '' ? '-' : clean;
}

export function syslogMessage(event: AuditEvent, spec: Pick<SyslogSinkSpec, 'facility' | 'appName'>): string {
  const pri = (FACILITIES[spec.facility as keyof typeof FACILITIES] ?? FACILITIES.authpriv) * 8 + (event.outcome === 'success' ? SEVERITY_INFO : SEVERITY_WARNING);
  return `<${pri}>1 ${event.time} ${headerField(event.replica, 255)} ${headerField(spec.appName, 48)} - ${headerField(event.operation, 32)} - ${JSON.stringify(event)}`;
}

/** RFC 6587 octet counting: the length in bytes, a space, the message. */
export function frame(message: string): string {
  return `${Buffer.byteLength(message, 'utf8')} ${message}`;
}

export function syslogTransport(spec: SyslogSinkSpec): Transport {
  let socket: Socket | undefined;
  let ca: string[] | undefined;

  const forget = (s: Socket): void => {
    if (socket === s) socket = undefined;
    s.destroy();
  };

  const open = async (signal: AbortSignal): Promise<Socket> => {
    if (socket && !socket.destroyed && socket.writable) return socket;
    if (spec.tls?.caFile && !ca) {
      try {
        ca = [...rootCertificates, await readFile(spec.tls.caFile, 'utf8')];
      } catch (err) {
        throw new DeliveryError(`the CA file ${spec.tls.caFile} cannot be read (${(err as NodeJS.ErrnoException).code ?? 'error'})`, { retryable: true, cause: err });
      }
    }
    const s = spec.tls
      ? tlsConnect({ host: spec.host, port: spec.port, servername: spec.tls.serverName ?? spec.host, ...(ca ? { ca } : {}) })
      : netConnect({ host: spec.host, port: spec.port });
    await new Promise<void>((resolve, reject) => {
      const onAbort = (): void => fail(new Error('delivery stopped'));
      signal.addEventListener('abort', onAbort, { once: true });
      const timer = setTimeout(() => fail(new Error(`no connection within ${spec.timeoutMs} ms`)), spec.timeoutMs);
      const fail = (err: Error): void => {
        clearTimeout(timer);
        signal.removeEventListener('abort', onAbort);
        s.destroy();
        reject(new DeliveryError(`${spec.host}:${spec.port}: ${err.message}`, { retryable: true, cause: err }));
      };
      s.once('error', fail);
      s.once(spec.tls ? 'secureConnect' : 'connect', () => {
        clearTimeout(timer);
        signal.removeEventListener('abort', onAbort);
        s.off('error', fail);
        resolve();
      });
    });
    s.setKeepAlive(true, 30_000);
    s.setNoDelay(true);
    // The receiver closing (or resetting) the connection: open a new one for the next batch.
    s.on('error', () => forget(s));
    s.on('end', () => forget(s));
    s.on('close', () => forget(s));
    // Receivers do not talk back on a syslog connection; discard anything they send.
    s.resume();
    socket = s;
    return s;
  };

  return {
    async send(batch, signal) {
      const data = serializeBatch(() => {
        let frames = '';
        for (const event of batch) frames += frame(syslogMessage(event, spec));
        return frames;
      });
      const s = await open(signal);
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => done(new Error(`the write did not complete within ${spec.timeoutMs} ms`)), spec.timeoutMs);
        const onClose = (): void => done(new Error('the receiver closed the connection'));
        const done = (err?: Error | null): void => {
          clearTimeout(timer);
          s.off('close', onClose);
          if (!err) return resolve();
          forget(s);
          reject(new DeliveryError(`${spec.host}:${spec.port}: ${err.message}`, { retryable: true, cause: err }));
        };
        s.once('close', onClose);
        s.write(data, 'utf8', done);
      });
    },
    async close() {
      const s = socket;
      socket = undefined;
      if (s) await new Promise<void>((resolve) => s.end(resolve));
      s?.destroy();
    },
  };
}
