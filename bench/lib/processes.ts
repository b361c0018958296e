/**
 * The two servers under load, as real child processes: Keyward (dist/main.js, or src/
 * through tsx) with a tenants file of its own, and the bare Fastify ceiling. Also the
 * helpers around them: free ports, the build, /metrics scrapes, /proc readings.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync, readFileSync } from 'node:fs';
import { mkdir, readdir, stat, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

export const REPO = fileURLToPath(new URL('../../', import.meta.url));
export const RESULTS = join(REPO, 'bench', 'results');
export const PROFILES = join(RESULTS, 'profiles');
export const API_KEY = 'bench-api-key-0123456789abcdef';
export const DIRECT_TENANT = 'bench-direct';
export const LEASED_TENANT = 'bench-leased';

const run = promisify(execFile);

/** 20261123-031246: names the profiles of one run. */
export const stamp = (() => {
  const d = new Date();
  const p = (n: number): string => String(n).padStart(2, '0');
  const value = `${d.getFullYear()}${p(d.getMonth() + 1)}${p(d.getDate())}-${p(d.getHours())}${p(d.getMinutes())}${p(d.getSeconds())}`;
  return (): string => value;
})();

/**
 * Where a child's --cpu-prof profiles go: a directory per process and run, because every
 * thread writes one (tsx's loader runs on a thread of its own), named by Node
 * CPU.<date>.<time>.<pid>.<thread>.<seq>.cpuprofile; the main thread is thread 0.
 */
export function profileDir(name: 'keyward' | 'ceiling'): string {
  return join(PROFILES, `${stamp()}-${name}`);
}

/** The main thread's profile in a profile directory, once the process has exited. */
export async function mainThreadProfile(dir: string): Promise<string | undefined> {
  const files = (await readdir(dir).catch(() => [] as string[])).filter((f) => f.endsWith('.cpuprofile'));
  const main = files.find((f) => f.split('.')[4] === '0') ?? files[0];
  return main === undefined ? undefined : join(dir, main);
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

async function newestMtime(dir: string): Promise<number> {
  let newest = 0;
  for (const entry of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (!entry.isFile()) continue;
    const s = await stat(join(entry.parentPath, entry.name));
    newest = Math.max(newest, s.mtimeMs);
  }
  return newest;
}

export interface BuildResult {
  readonly ran: boolean;
  readonly seconds: number;
  readonly ok: boolean;
  readonly output: string;
}

/** `tsc -p tsconfig.build.json` into dist/ (what `npm start` does). */
export async function build(mode: 'always' | 'if-stale' | 'never'): Promise<BuildResult> {
  if (mode === 'never') return { ran: false, seconds: 0, ok: true, output: '' };
  if (mode === 'if-stale') {
    const distMain = await stat(join(REPO, 'dist', 'main.js')).catch(() => undefined);
    if (distMain && distMain.mtimeMs >= (await newestMtime(join(REPO, 'src')))) return { ran: false, seconds: 0, ok: true, output: 'dist/ is newer than src/' };
  }
  const started = performance.now();
  try {
    const { stdout, stderr } = await run(process.execPath, [join(REPO, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.build.json'], { cwd: REPO, maxBuffer: 16 << 20 });
    return { ran: true, seconds: (performance.now() - started) / 1000, ok: true, output: stdout + stderr };
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string; message: string };
    return { ran: true, seconds: (performance.now() - started) / 1000, ok: false, output: `${e.stdout ?? ''}${e.stderr ?? ''}` || e.message };
  }
}

export interface Child {
  readonly name: string;
  readonly child: ChildProcess;
  readonly pid: number;
  readonly url: string;
  readonly exited: Promise<number | null>;
  stderr(): string;
  stop(): Promise<number | null>;
}

function track(name: string, child: ChildProcess, url: string, stderrFile: string | undefined): Child {
  let err = '';
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
    err = (err + chunk).slice(-20_000);
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return {
    name,
    child,
    pid: child.pid!,
    url,
    exited,
    stderr: () => (stderrFile ? readTail(stderrFile) : err),
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
      const code = await exited;
      clearTimeout(timer);
      return code;
    },
  };
}

function readTail(file: string): string {
  try {
    return readFileSync(file, 'utf8').slice(-20_000);
  } catch {
    return '';
  }
}

async function waitFor(url: string, child: Child, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    if (child.child.exitCode !== null || child.child.signalCode !== null) {
      throw new Error(`${child.name} exited (${child.child.exitCode ?? child.child.signalCode}) before it was ready:\n${child.stderr()}`);
    }
    try {
      const res = await fetch(url);
      if (res.ok) return;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error(`${child.name} not ready after ${ms} ms:\n${child.stderr()}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

export interface KeywardChild extends Child {
  readonly opsUrl: string;
  /** Where the child's stdout (audit events) goes: a file path, or /dev/null. */
  readonly stdoutPath: string;
  readonly argv: readonly string[];
}

export interface KeywardStart {
  readonly dir: string;
  readonly tsx: boolean;
  readonly cpuProf: boolean;
  readonly audit: 'file' | 'null';
}

export async function startKeyward(options: KeywardStart): Promise<KeywardChild> {
  const tenants = `# Written by bench/run.ts: one direct and one leased tenant on the local software KMS.
version: 1
tenants:
  ${DIRECT_TENANT}:
    kmsConfigs:
      - id: 1
        status: primary
        provider: local
        local: { keyFile: master.key }
  ${LEASED_TENANT}:
    kmsConfigs:
      - id: 2
        status: primary
        provider: local
        local: { keyFile: master.key }
        leasing: { enabled: true }
`;
  const configPath = join(options.dir, 'tenants.yaml');
  await writeFile(configPath, tenants);
  const [port, opsPort] = [await freePort(), await freePort()];
  const nodeArgs: string[] = [];
  if (options.cpuProf) {
    await mkdir(profileDir('keyward'), { recursive: true });
    nodeArgs.push('--cpu-prof', '--cpu-prof-dir', profileDir('keyward'));
  }
  const entry = options.tsx ? ['--import', 'tsx', join(REPO, 'src', 'main.ts')] : [join(REPO, 'dist', 'main.js')];
  const argv = [...nodeArgs, ...entry];
  const stdoutPath = options.audit === 'null' ? '/dev/null' : join(options.dir, 'keyward-stdout.jsonl');
  const stderrPath = join(options.dir, 'keyward-stderr.log');
  // O_APPEND: the bench truncates the file between scenarios and the child keeps writing at the (new) end.
  const out = openSync(stdoutPath, 'a');
  const err = openSync(stderrPath, 'a');
  const child = spawn(process.execPath, argv, {
    cwd: REPO,
    env: {
      PATH: process.env.PATH ?? '',
      HOME: process.env.HOME ?? '',
      KEYWARD_CONFIG: configPath,
      KEYWARD_API_KEY: API_KEY,
      // The default level, as users run it.
      KEYWARD_LOG_LEVEL: 'info',
      KEYWARD_HOST: '127.0.0.1',
      KEYWARD_OPS_HOST: '127.0.0.1',
      KEYWARD_PORT: String(port),
      KEYWARD_OPS_PORT: String(opsPort),
      KEYWARD_BATCH_LIMIT: '10000',
      KEYWARD_REPLICA_ID: 'bench',
    },
    stdio: ['ignore', out, err],
  });
  closeSync(out);
  closeSync(err);
  const base = track('keyward', child, `http://127.0.0.1:${port}`, stderrPath);
  const keyward: KeywardChild = { ...base, opsUrl: `http://127.0.0.1:${opsPort}`, stdoutPath, argv: ['node', ...argv] };
  await waitFor(`${keyward.opsUrl}/ready`, keyward, 30_000);
  return keyward;
}

export interface CeilingRoute {
  readonly url: string;
  /** The JSON answered, parsed (Fastify serialises it, as it would a handler's result). */
  readonly response: unknown;
}

/** The bare Fastify ceiling (bench/ceiling-server.ts): same major, same listen, no auth, no crypto, no logging. */
export async function startCeiling(dir: string, routes: readonly CeilingRoute[], bodyLimit: number, cpuProf: boolean): Promise<Child> {
  const routesFile = join(dir, 'ceiling-routes.json');
  await writeFile(routesFile, JSON.stringify({ bodyLimit, routes }));
  const port = await freePort();
  if (cpuProf) await mkdir(profileDir('ceiling'), { recursive: true });
  const prof = cpuProf ? ['--cpu-prof', '--cpu-prof-dir', profileDir('ceiling')] : [];
  const child = spawn(process.execPath, [...prof, '--import', 'tsx', join(REPO, 'bench', 'ceiling-server.ts'), routesFile, String(port)], {
    cwd: REPO,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '' },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  const ceiling = track('ceiling', child, `http://127.0.0.1:${port}`, undefined);
  await waitFor(`${ceiling.url}/ready`, ceiling, 30_000);
  return ceiling;
}

/** Sums the samples of a metric family (optionally only those whose labels contain `filter`). */
export function metricSum(text: string, name: string, filter?: string): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const rest = line.slice(name.length);
    if (rest[0] !== '{' && rest[0] !== ' ') continue;
    if (filter && !rest.includes(filter)) continue;
    const value = Number(line.slice(line.lastIndexOf(' ') + 1));
    if (Number.isFinite(value)) sum += value;
  }
  return sum;
}

export async function scrape(keyward: KeywardChild): Promise<string> {
  const res = await fetch(`${keyward.opsUrl}/metrics`);
  return res.text();
}

/** Resident set size of a process in bytes (VmRSS from /proc/<pid>/status). */
export function rssBytes(pid: number): number | undefined {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const match = /^VmRSS:\s+(\d+)\s+kB/m.exec(status);
    return match ? Number(match[1]) * 1024 : undefined;
  } catch {
    return undefined;
  }
}

const TICKS = 100; // USER_HZ on Linux

/** CPU seconds (user + system) a process has used so far, from /proc/<pid>/stat. */
export function cpuSeconds(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // Fields after the command: state is [0]; utime and stime are fields 14 and 15 of the whole line.
    return (Number(fields[11]) + Number(fields[12])) / TICKS;
  } catch {
    return undefined;
  }
}

/** CPU seconds all CPUs have spent busy (user, nice, system, irq, softirq, steal) since boot, from /proc/stat. */
export function systemBusySeconds(): number | undefined {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0]!;
    const f = line.trim().split(/\s+/).slice(1).map(Number);
    // user nice system idle iowait irq softirq steal
    return ((f[0] ?? 0) + (f[1] ?? 0) + (f[2] ?? 0) + (f[5] ?? 0) + (f[6] ?? 0) + (f[7] ?? 0)) / TICKS;
  } catch {
    return undefined;
  }
}

/**
 * Measures, over an interval, how much CPU went to processes other than the ones named
 * (the bench itself, Keyward, the ceiling): other people's builds and tests on a shared
 * machine skew every figure, so the bench says when it saw them.
 */
export function foreignCpu(pids: readonly number[]): () => number | undefined {
  const own = (): number | undefined => {
    let sum = process.cpuUsage().user / 1e6 + process.cpuUsage().system / 1e6;
    for (const pid of pids) {
      const c = cpuSeconds(pid);
      if (c === undefined) return undefined;
      sum += c;
    }
    return sum;
  };
  const sys0 = systemBusySeconds();
  const own0 = own();
  const t0 = performance.now();
  return () => {
    const sys1 = systemBusySeconds();
    const own1 = own();
    if (sys0 === undefined || sys1 === undefined || own0 === undefined || own1 === undefined) return undefined;
    const wall = (performance.now() - t0) / 1000;
    return Math.max(0, (100 * (sys1 - sys0 - (own1 - own0))) / wall);
  };
}
