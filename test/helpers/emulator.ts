/**
 * Runs a local KMS emulator as a child process on 127.0.0.1 for one test file: a free
 * port, fresh state, a readiness check, and stop/restart for outage tests. Emulators
 * are installed by scripts/provision-emulators.sh into KEYWARD_TEST_CACHE (outside the
 * repository); `emulatorBinary` fails with a clear message when one is missing.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { access, mkdtemp, rm } from 'node:fs/promises';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const TEST_CACHE = process.env.KEYWARD_TEST_CACHE ?? join(homedir(), '.cache', 'keyward-test');

/** Path of an installed emulator file under the cache; throws if `npm test` has not provisioned it. */
export async function emulatorFile(...parts: string[]): Promise<string> {
  const path = join(TEST_CACHE, ...parts);
  try {
    await access(path);
  } catch {
    throw new Error(`${path} is missing: run \`npm test\` (or scripts/provision-emulators.sh), which installs the KMS emulators`);
  }
  return path;
}

/** A TCP port that was free a moment ago on 127.0.0.1. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port'))));
    });
  });
}

/** Resolves once something accepts TCP connections on 127.0.0.1:port. */
export async function waitForPort(port: number, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const open = await new Promise<boolean>((resolve) => {
      const socket = connect({ host: '127.0.0.1', port });
      socket.once('connect', () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });
    if (open) return;
    if (Date.now() > deadline) throw new Error(`nothing listens on 127.0.0.1:${port} after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

export interface EmulatorSpec {
  readonly name: string;
  readonly command: string;
  /** Arguments for the given port. */
  readonly args: (port: number) => string[];
  readonly env?: (port: number) => Record<string, string>;
  readonly cwd?: string;
  /** Extra readiness check after the port opens (e.g. an HTTP probe). */
  readonly ready?: (port: number) => Promise<void>;
  readonly startTimeoutMs?: number;
  /**
   * For an emulator that can only listen on all interfaces: run it in a private network
   * namespace (`unshare --net`, needs root) where "all interfaces" is that namespace's own
   * loopback, and reach it through a Unix socket relayed to 127.0.0.1:port here. Its
   * `args`/`env` get the port it should listen on inside the namespace.
   */
  readonly isolateNetwork?: boolean;
}

export interface Emulator {
  readonly name: string;
  readonly port: number;
  /** Output so far, for failure messages. */
  output(): string;
  /** Kills the process (SIGKILL: an outage, not a shutdown). */
  stop(): Promise<void>;
  /** Starts it again on the same port. */
  start(): Promise<void>;
  /** Stops it for good and removes what it left behind. */
  close(): Promise<void>;
}

const LAUNCHER = fileURLToPath(new URL('./netns-launch.mjs', import.meta.url));

export async function startEmulator(spec: EmulatorSpec, fixedPort?: number): Promise<Emulator> {
  const port = fixedPort ?? (await freePort());
  const isolated = spec.isolateNetwork === true;
  const socketDir = isolated ? await mkdtemp(join(tmpdir(), 'keyward-netns-')) : undefined;
  const socketPath = socketDir === undefined ? undefined : join(socketDir, `${port}.sock`);
  let relay: Server | undefined;
  const relaySockets = new Set<Socket>();
  let child: ChildProcess | undefined;
  let log = '';

  /** Host side of an isolated emulator: 127.0.0.1:port → the Unix socket. */
  const openRelay = (): Promise<void> =>
    new Promise((resolve, reject) => {
      const server = createServer((client) => {
        const upstream = connect({ path: socketPath! });
        for (const s of [client, upstream]) {
          relaySockets.add(s);
          s.on('close', () => relaySockets.delete(s));
        }
        client.on('error', () => upstream.destroy());
        upstream.on('error', () => client.destroy());
        client.pipe(upstream);
        upstream.pipe(client);
      });
      server.on('error', reject);
      server.listen(port, '127.0.0.1', () => {
        relay = server;
        resolve();
      });
    });
  const closeRelay = (): Promise<void> =>
    new Promise((resolve) => {
      for (const s of relaySockets) s.destroy();
      relaySockets.clear();
      const server = relay;
      relay = undefined;
      if (!server) return resolve();
      server.close(() => resolve());
    });

  const start = async (): Promise<void> => {
    const [command, args] = isolated
      ? ['unshare', ['--net', '--', process.execPath, LAUNCHER, socketDir!, String(port), spec.command, ...spec.args(port)]]
      : [spec.command, spec.args(port)];
    // Its own process group, so that stop() kills the emulator and anything it started.
    const proc = spawn(command, args, {
      cwd: spec.cwd,
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...spec.env?.(port) },
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    });
    child = proc;
    const append = (chunk: Buffer): void => {
      log = (log + chunk.toString('utf8')).slice(-20_000);
    };
    proc.stdout?.on('data', append);
    proc.stderr?.on('data', append);
    const exited = new Promise<never>((_, reject) =>
      proc.once('exit', (code) => reject(new Error(`${spec.name} exited (${code}) while starting:\n${log}`))),
    );
    if (isolated) await openRelay();
    await Promise.race([isolated ? waitForRelay(port, spec.startTimeoutMs ?? 60_000) : waitForPort(port, spec.startTimeoutMs ?? 60_000), exited]);
    if (spec.ready) await Promise.race([spec.ready(port), exited]);
    exited.catch(() => undefined);
  };
  const stop = async (): Promise<void> => {
    await closeRelay();
    const proc = child;
    child = undefined;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    const gone = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
    try {
      process.kill(-proc.pid!, 'SIGKILL');
    } catch {
      proc.kill('SIGKILL');
    }
    await gone;
  };
  try {
    await start();
  } catch (err) {
    await stop();
    if (socketDir) await rm(socketDir, { recursive: true, force: true });
    throw err;
  }
  return {
    name: spec.name,
    port,
    output: () => log,
    stop,
    start,
    async close() {
      await stop();
      if (socketDir) await rm(socketDir, { recursive: true, force: true });
    },
  };
}

/** Through the relay a TCP connect always succeeds; wait until a byte exchange does. */
async function waitForRelay(port: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const answered = await new Promise<boolean>((resolve) => {
      const socket = connect({ host: '127.0.0.1', port });
      socket.setTimeout(1000, () => socket.destroy());
      socket.once('connect', () => socket.write('GET / HTTP/1.0\r\n\r\n'));
      socket.once('data', () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('close', () => resolve(false));
      socket.once('error', () => resolve(false));
    });
    if (answered) return;
    if (Date.now() > deadline) throw new Error(`nothing answers through the relay on 127.0.0.1:${port} after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
