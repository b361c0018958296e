/**
 * Runs a process the way compose runs a service container, as far as networking goes: in a
 * private network namespace (`unshare --net`, needs root, as test/helpers/emulator.ts does for
 * local-kms), where it may listen on 0.0.0.0 and on ports of its own, and from where only the
 * given ports are reachable here, on 127.0.0.1 and the same port numbers (relayed through Unix
 * sockets), like a container's published ports. Anything the process listens on besides those,
 * or any URL it hands out naming its own 127.0.0.1, is unreachable from here, as it would be
 * from another container.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const LAUNCHER = fileURLToPath(new URL('../helpers/netns-launch.mjs', import.meta.url));

export interface NetnsProcess {
  readonly child: ChildProcess;
  /** Standard output so far. */
  stdout(): string;
  /** Standard output and error so far, for failure messages. */
  output(): string;
  /** Resolves with the first stdout line for which `match` is true. */
  waitForLine(match: (line: string) => boolean, ms?: number): Promise<string>;
  /** SIGTERM, then the exit code (SIGKILL after `ms`). */
  stop(ms?: number): Promise<number | null>;
}

export async function startInNetns(options: {
  readonly command: string;
  readonly args: readonly string[];
  readonly env: Record<string, string>;
  readonly cwd: string;
  readonly ports: readonly number[];
}): Promise<NetnsProcess> {
  const socketDir = await mkdtemp(join(tmpdir(), 'keyward-compose-netns-'));
  const sockets = new Set<Socket>();
  const relays: Server[] = await Promise.all(
    options.ports.map(
      (port) =>
        new Promise<Server>((resolve, reject) => {
          const server = createServer((client) => {
            const upstream = connect({ path: join(socketDir, `${port}.sock`) });
            for (const s of [client, upstream]) {
              sockets.add(s);
              s.on('close', () => sockets.delete(s));
            }
            client.on('error', () => upstream.destroy());
            upstream.on('error', () => client.destroy());
            client.pipe(upstream);
            upstream.pipe(client);
          });
          server.once('error', reject);
          server.listen(port, '127.0.0.1', () => resolve(server));
        }),
    ),
  );
  const child = spawn('unshare', ['--net', '--', process.execPath, LAUNCHER, socketDir, options.ports.join(','), options.command, ...options.args], {
    cwd: options.cwd,
    env: options.env,
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  let out = '';
  let all = '';
  const waiters = new Set<() => void>();
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
    out += chunk;
    all += chunk;
    for (const w of [...waiters]) w();
  });
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
    all += chunk;
  });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  let exitCode: number | null | undefined;
  void exited.then((code) => {
    exitCode = code;
    for (const w of [...waiters]) w();
  });

  const cleanup = async (): Promise<void> => {
    for (const s of sockets) s.destroy();
    await Promise.all(relays.map((r) => new Promise<void>((resolve) => r.close(() => resolve()))));
    await rm(socketDir, { recursive: true, force: true });
  };

  return {
    child,
    stdout: () => out,
    output: () => all,
    waitForLine(match, ms = 60_000) {
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`no matching line within ${ms} ms; output:\n${all}`));
        }, ms);
        const check = (): void => {
          const line = out.split('\n').find(match);
          if (line !== undefined) {
            clearTimeout(timer);
            waiters.delete(check);
            resolve(line);
          } else if (exitCode !== undefined) {
            clearTimeout(timer);
            waiters.delete(check);
            reject(new Error(`exited (${exitCode}) first; output:\n${all}`));
          }
        };
        waiters.add(check);
        check();
      });
    },
    async stop(ms = 10_000) {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        const timer = setTimeout(() => {
          try {
            process.kill(-child.pid!, 'SIGKILL');
          } catch {
            // gone already
          }
        }, ms);
        await exited;
        clearTimeout(timer);
      }
      await cleanup();
      return child.exitCode;
    },
  };
}
