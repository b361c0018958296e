/**
 * A TCP proxy in front of a real emulator, to make outages on demand:
 * - `pass`: forwards every connection;
 * - `refuse`: closes the listener, so connections are refused (a KMS that is down);
 * - `blackhole`: accepts connections and never answers (a KMS that hangs).
 * Switching mode also cuts the connections already open, as an outage would.
 */
import { createServer, connect, type Server, type Socket } from 'node:net';

export type ProxyMode = 'pass' | 'refuse' | 'blackhole';

export interface FaultProxy {
  readonly port: number;
  setMode(mode: ProxyMode): Promise<void>;
  close(): Promise<void>;
}

export async function startFaultProxy(targetPort: number, port = 0): Promise<FaultProxy> {
  let mode: ProxyMode = 'pass';
  const sockets = new Set<Socket>();
  let server: Server | undefined;

  const listen = (onPort: number): Promise<number> =>
    new Promise((resolve, reject) => {
      const s = createServer((client) => {
        sockets.add(client);
        client.on('close', () => sockets.delete(client));
        client.on('error', () => client.destroy());
        if (mode === 'blackhole') return;
        const upstream = connect({ host: '127.0.0.1', port: targetPort });
        sockets.add(upstream);
        upstream.on('close', () => sockets.delete(upstream));
        upstream.on('error', () => client.destroy());
        client.on('close', () => upstream.destroy());
        upstream.on('close', () => client.destroy());
        client.pipe(upstream);
        upstream.pipe(client);
      });
      s.on('error', reject);
      s.listen(onPort, '127.0.0.1', () => {
        server = s;
        const address = s.address();
        resolve(typeof address === 'object' && address ? address.port : onPort);
      });
    });

  const closeServer = (): Promise<void> =>
    new Promise((resolve) => {
      for (const socket of sockets) socket.destroy();
      sockets.clear();
      if (!server) return resolve();
      const s = server;
      server = undefined;
      s.close(() => resolve());
    });

  const actualPort = await listen(port);
  return {
    port: actualPort,
    async setMode(next: ProxyMode) {
      for (const socket of sockets) socket.destroy();
      sockets.clear();
      if (next === 'refuse' && server) await closeServer();
      if (next !== 'refuse' && !server) await listen(actualPort);
      mode = next;
    },
    close: closeServer,
  };
}
