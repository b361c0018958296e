/**
 * The default sink: one JSON event per line on standard output, where the platform's log
 * shipper picks it up. Lines carry `"schema":"keyward.audit.v1"`, which tells them apart
 * from Keyward's own log lines on the same stream.
 */
import type { Writable } from 'node:stream';
import { DeliveryError, type Transport } from '../queue.js';

export function stdoutTransport(out: Writable): Transport {
  return {
    send: (batch) =>
      new Promise<void>((resolve, reject) => {
        let text = '';
        for (const event of batch) text += `${JSON.stringify(event)}\n`;
        out.write(text, (err) => {
          if (err) reject(new DeliveryError(`writing to stdout failed: ${err.message}`, { retryable: true, cause: err }));
          else resolve();
        });
      }),
    close: async () => undefined,
  };
}
