/**
 * The HTTPS server under the Azure stand-ins: listens on 127.0.0.1, keeps its port across
 * stop()/start() (an outage and a recovery), and cuts open connections on stop() as a
 * crashed service would.
 */
import { createServer, type Server } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';

export interface HttpsStandinServer {
  /** The port, fixed after the first start. */
  readonly port: number;
  readonly start: () => Promise<void>;
  readonly stop: () => Promise<void>;
}

export async function startHttpsStandin(options: {
  readonly tls: { readonly key: string | Buffer; readonly cert: string | Buffer };
  readonly port?: number;
  readonly handler: (req: IncomingMessage, res: ServerResponse) => void;
}): Promise<HttpsStandinServer> {
  let port = options.port ?? 0;
  let server: Server | undefined;
  const sockets = new Set<Socket>();
  const start = (): Promise<void> =>
    new Promise((resolve, reject) => {
      const s = createServer({ key: options.tls.key, cert: options.tls.cert }, options.handler);
      s.on('connection', (socket: Socket) => {
        sockets.add(socket);
        socket.on('close', () => sockets.delete(socket));
      });
      s.once('error', reject);
      s.listen(port, '127.0.0.1', () => {
        const address = s.address();
        if (typeof address === 'object' && address) port = address.port;
        server = s;
        resolve();
      });
    });
  const stop = (): Promise<void> =>
    new Promise((resolve) => {
      for (const socket of sockets) socket.destroy();
      sockets.clear();
      const s = server;
      server = undefined;
      if (!s) return resolve();
      s.close(() => resolve());
    });
  await start();
  return {
    get port() {
      return port;
    },
    start,
    stop,
  };
}
