/**
 * HTTP JSON collectors: a generic webhook (the batch as a JSON array, `Authorization:
 * Bearer <token>`) or a Splunk HTTP Event Collector (one HEC envelope per event,
 * concatenated, `Authorization: Splunk <token>`). Answers decide what happens next:
 * 2xx delivered; 408, 429, 5xx, 401, 403 and network failures retried (a wrong token is
 * an operator's fix away, so those events wait in the queue); any other 4xx drops the
 * batch as rejected. The token is read from its secret reference at each delivery, so a
 * rotated Secret file is picked up without a restart.
 */
import { readFile } from 'node:fs/promises';
import { Agent as HttpAgent, request as httpRequest, type IncomingMessage } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { rootCertificates } from 'node:tls';
import { readSecret } from '../../config/secrets.js';
import type { AuditEvent } from '../event.js';
import type { HttpSinkSpec } from '../plan.js';
import { DeliveryError, serializeBatch, type Transport } from '../queue.js';

const MAX_ANSWER_BYTES = 4096;

export function httpTransport(spec: HttpSinkSpec, env: Readonly<Record<string, string | undefined>>): Transport {
  const url = new URL(spec.url);
  const secure = url.protocol === 'https:';
  let agent: HttpAgent | HttpsAgent | undefined;

  const agentFor = async (): Promise<HttpAgent | HttpsAgent> => {
    if (agent) return agent;
    if (!secure) return (agent = new HttpAgent({ keepAlive: true, maxSockets: 1 }));
    let ca: string[] | undefined;
    if (spec.caFile) {
      try {
        ca = [...rootCertificates, await readFile(spec.caFile, 'utf8')];
      } catch (err) {
        throw new DeliveryError(`the CA file ${spec.caFile} cannot be read (${(err as NodeJS.ErrnoException).code ?? 'error'})`, { retryable: true, cause: err });
      }
    }
    return (agent = new HttpsAgent({ keepAlive: true, maxSockets: 1, ...(ca ? { ca } : {}) }));
  };

  const body = (batch: readonly AuditEvent[]): string =>
    spec.format === 'splunk-hec'
      ? batch.map((event) => JSON.stringify({ time: Date.parse(event.time) / 1000, host: event.replica, source: 'keyward', sourcetype: 'keyward:audit', event })).join('\n')
      : JSON.stringify(batch);

  return {
    async send(batch, signal) {
      const headers: Record<string, string> = { 'content-type': 'application/json', 'user-agent': 'keyward-audit' };
      if (spec.token) {
        let token: string;
        try {
          token = await readSecret(spec.token, env);
        } catch (err) {
          throw new DeliveryError((err as Error).message, { retryable: true, cause: err });
        }
        headers.authorization = `${spec.format === 'splunk-hec' ? 'Splunk' : 'Bearer'} ${token}`;
      }
      const payload = Buffer.from(serializeBatch(() => body(batch)), 'utf8');
      headers['content-length'] = String(payload.length);
      const options = { method: 'POST', headers, agent: await agentFor(), timeout: spec.timeoutMs, signal };
      const answer = await new Promise<{ status: number; retryAfter: string | undefined; text: string }>((resolve, reject) => {
        const req = (secure ? httpsRequest : httpRequest)(url, options, (res: IncomingMessage) => {
          let text = '';
          res.setEncoding('utf8');
          res.on('data', (chunk: string) => {
            if (text.length < MAX_ANSWER_BYTES) text += chunk;
          });
          res.on('end', () => resolve({ status: res.statusCode ?? 0, retryAfter: headerText(res.headers['retry-after']), text: text.slice(0, MAX_ANSWER_BYTES) }));
          res.on('error', reject);
        });
        req.on('timeout', () => req.destroy(new Error(`no answer within ${spec.timeoutMs} ms`)));
        req.on('error', (err) => reject(new DeliveryError(`${url.host}: ${err.message}`, { retryable: true, cause: err })));
        req.end(payload);
      });
      const { status } = answer;
      if (status >= 200 && status < 300) return;
      const reason = `${url.host} answered ${status}${answer.text ? `: ${oneLine(answer.text)}` : ''}`;
      const retryable = status === 408 || status === 429 || status >= 500 || status === 401 || status === 403;
      throw new DeliveryError(status === 401 || status === 403 ? `${reason} (check the sink's token)` : reason, { retryable, retryAfterMs: retryAfterMs(answer.retryAfter) });
    },
    async close() {
      agent?.destroy();
    },
  };
}

function headerText(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

function oneLine(text: string): string {
  return text.replace(/\s+/g, ' ').trim().slice(0, 200);
}

/** Retry-After in seconds or as an HTTP date. */
function retryAfterMs(value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  if (/^[0-9]+$/.test(value.trim())) return Number(value.trim()) * 1000;
  const at = Date.parse(value);
  return Number.isNaN(at) ? undefined : Math.max(0, at - Date.now());
}
