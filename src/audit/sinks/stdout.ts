/**
 * The default sink: one JSON event per line on standard output, where the platform's log
 * shipper picks it up. Lines carry `"schema":"keyward.audit.v1"`, which tells them apart
 * from Keyward's own log lines on the same stream.
 */
import type { Writable } from 'node:stream';
import { DeliveryError, serializeBatch, type Transport } from '../queue.js';

export function stdoutTransport(out: Writable): Transport {
  return {
    send: (batch) =>
      new Promise<void>((resolve, reject) => {
        const text = serializeBatch(() => {
          let lines = '';
          for (const event of batch) lines += `${JSON.stringify(event)}\n`;
          return lines;
        });
        out.write(text, (err) => {
          if (err) reject(new DeliveryError(`writing to stdout failed: ${err.message}`, { retryable: true, cause: err }));
          else resolve();
        });
      }),
    close: async () => undefined,
  };
}
