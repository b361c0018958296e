/** Runs Keyward as a real child process (`node --import tsx src/main.ts`) for end-to-end tests. */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export const REPO = fileURLToPath(new URL('../../', import.meta.url));

export interface KeywardProcess {
  readonly child: ChildProcess;
  readonly lines: string[];
  stderr(): string;
  apiUrl: string;
  opsUrl: string;
  /** Resolves with the first stdout JSON line matching, or rejects after `ms`. */
  waitForLog(match: (entry: Record<string, unknown>) => boolean, ms?: number): Promise<Record<string, unknown>>;
  exited: Promise<number | null>;
}

export function spawnKeyward(env: Record<string, string>): KeywardProcess {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
    cwd: REPO,
    env: {
      PATH: process.env.PATH ?? '',
      HOME: process.env.HOME ?? '',
      // Test servers listen on loopback only, on ports the OS picks.
      KEYWARD_HOST: '127.0.0.1',
      KEYWARD_OPS_HOST: '127.0.0.1',
      KEYWARD_PORT: '0',
      KEYWARD_OPS_PORT: '0',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const lines: string[] = [];
  let err = '';
  let buffer = '';
  const waiters: Array<() => void> = [];
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
    buffer += chunk;
    const parts = buffer.split('\n');
    buffer = parts.pop()!;
    lines.push(...parts.filter((l) => l.trim() !== ''));
    for (const w of waiters.splice(0)) w();
  });
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
    err += chunk;
  });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const proc: KeywardProcess = {
    child,
    lines,
    stderr: () => err,
    apiUrl: '',
    opsUrl: '',
    exited,
    waitForLog(match, ms = 20_000) {
      return new Promise((resolve, reject) => {
        const deadline = setTimeout(() => reject(new Error(`log line not seen in ${ms} ms; stderr: ${err}\nstdout: ${lines.join('\n')}`)), ms);
        const check = (): void => {
          for (const line of lines) {
            try {
              const entry = JSON.parse(line) as Record<string, unknown>;
              if (match(entry)) {
                clearTimeout(deadline);
                resolve(entry);
                return;
              }
            } catch {
              // not JSON
            }
          }
          waiters.push(check);
        };
        void exited.then(() => {
          clearTimeout(deadline);
          reject(new Error(`process exited; stderr: ${err}`));
        });
        check();
      });
    },
  };
  return proc;
}

/** Starts Keyward and waits until both ports listen. */
export async function startKeyward(env: Record<string, string>): Promise<KeywardProcess> {
  const proc = spawnKeyward(env);
  const entry = await proc.waitForLog((e) => e.msg === 'keyward listening');
  const api = (entry.api as Array<{ address: string; port: number }>)[0]!;
  const ops = (entry.ops as Array<{ address: string; port: number }>)[0]!;
  proc.apiUrl = `http://${api.address}:${api.port}`;
  proc.opsUrl = `http://${ops.address}:${ops.port}`;
  return proc;
}

export async function stopKeyward(proc: KeywardProcess): Promise<void> {
  if (proc.child.exitCode === null && proc.child.signalCode === null) {
    proc.child.kill('SIGTERM');
    await proc.exited;
  }
}
