/**
 * A real rsyslog receiver for the syslog audit-delivery tests: one `rsyslogd -n` per call, with
 * its own config, work directory and output file in a temporary directory (never the system
 * config, no /dev/log or kernel log input), listening with imtcp on 127.0.0.1 only, optionally
 * over TLS (the gtls stream driver, clients not asked for certificates) with the test CA and
 * server certificate of scripts/provision/azure-standin-tls.sh.
 *
 * imtcp accepts RFC 6587 octet-counted frames (`<len> <msg>`) as well as LF-terminated ones; the
 * messages go through rsyslog's RFC 5424 parser (RFC 3164 only as the fallback, so a frame that
 * is not RFC 5424 still shows up, with `version` 0) and are written one JSON object per line
 * (rsyslog's own jsonf encoding of each parsed field), which messages() reads back.
 *
 * rsyslogd is installed by scripts/provision/rsyslog.sh (run by scripts/provision-emulators.sh).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { constants, rmSync } from 'node:fs';
import { access, mkdtemp, open, readFile, readdir, readlink, rm, stat, writeFile } from 'node:fs/promises';
import { connect as netConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { TEST_CACHE, freePort } from './emulator.js';

/** One message as rsyslog parsed it. Absent RFC 5424 fields read as rsyslog writes them: "-". */
export interface ReceivedSyslog {
  readonly pri: number;
  /** 1 for RFC 5424; 0 when rsyslog did not recognize the frame as RFC 5424. */
  readonly version: number;
  /** TIMESTAMP as rsyslog re-renders it in RFC 3339 (fraction and offset as received, `Z` kept). */
  readonly timestamp: string;
  readonly hostname: string;
  readonly appName: string;
  readonly procId: string;
  readonly msgId: string;
  /** STRUCTURED-DATA verbatim, e.g. `[keyward@32473 tenant="t"]`, or "-". */
  readonly structuredData: string;
  /** MSG, in full. */
  readonly msg: string;
  /** The whole frame as received (without the octet count), for failure messages. */
  readonly raw: string;
}

export interface RsyslogServer {
  /** Fixed across stop()/start(). */
  readonly port: number;
  readonly tls: boolean;
  /** The CA that signed the server certificate (the test CA; meaningful when tls). */
  readonly caFile: string;
  /**
   * The name to verify the server certificate against (a DNS name in its SANs, so it can be sent as
   * TLS SNI too; the certificate also has IP 127.0.0.1). Connect to 127.0.0.1 with this servername.
   */
  readonly serverName: string;
  /** Every message rsyslog received and parsed, in arrival order, as parsed by rsyslog itself. */
  messages(): Promise<ReceivedSyslog[]>;
  /** Waits until at least n messages were received (polls the output file), or throws after timeoutMs (default 15000) saying how many arrived. */
  waitFor(n: number, timeoutMs?: number): Promise<ReceivedSyslog[]>;
  /** What rsyslogd wrote to stderr so far (errors, TLS handshake failures, unparsable frames). */
  output(): Promise<string>;
  /** Kills the daemon (SIGTERM, then SIGKILL) and waits for it to exit: a receiver outage. */
  stop(): Promise<void>;
  /** Starts it again on the same port; resolves once it accepts connections. */
  start(): Promise<void>;
  /** stop() and remove the temporary directory. */
  close(): Promise<void>;
}

const SERVER_NAME = 'localhost';
const START_TIMEOUT_MS = 15_000;
const STOP_GRACE_MS = 3_000;
const BIND_FAILED = /Could not create tcp listener|Error while binding tcp socket/;

/** rsyslogd: $KEYWARD_RSYSLOGD, else /usr/sbin (often not on a non-root PATH), else PATH. */
async function rsyslogdBinary(): Promise<string> {
  const candidates = [process.env.KEYWARD_RSYSLOGD, '/usr/sbin/rsyslogd', '/usr/local/sbin/rsyslogd'];
  for (const dir of (process.env.PATH ?? '').split(':')) if (dir) candidates.push(join(dir, 'rsyslogd'));
  for (const candidate of candidates) {
    if (!candidate) continue;
    try {
      await access(candidate, constants.X_OK);
      return candidate;
    } catch {
      // next
    }
  }
  throw new Error('rsyslogd is not installed: run scripts/provision/rsyslog.sh (or scripts/provision-emulators.sh), which installs rsyslog and rsyslog-gnutls');
}

async function tlsFiles(): Promise<{ ca: string; cert: string; key: string }> {
  const dir = join(TEST_CACHE, 'azure-standin');
  const files = { ca: join(dir, 'ca.pem'), cert: join(dir, 'server.pem'), key: join(dir, 'server.key') };
  for (const file of Object.values(files)) {
    try {
      await access(file, constants.R_OK);
    } catch {
      throw new Error(`${file} is missing: run scripts/provision/azure-standin-tls.sh (or scripts/provision-emulators.sh), which creates the test CA and server certificate`);
    }
  }
  return files;
}

/** A RainerScript string literal. */
function quote(value: string): string {
  return `"${value.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;
}

function config(options: { dir: string; port: number; output: string; tls?: { ca: string; cert: string; key: string } }): string {
  const { dir, port, output, tls } = options;
  const globals = [
    `workDirectory=${quote(dir)}`,
    // Audit events are JSON documents; the default 8k would truncate big ones.
    'maxMessageSize="64k"',
    // The hostname comes from the message; never look the peer up.
    'net.enableDNS="off"',
    // Keep MSG byte for byte (the default turns control characters into #ooo escapes).
    'parser.escapeControlCharactersOnReceive="off"',
  ];
  if (tls) {
    // The gtls settings are per process: one rsyslogd per receiver.
    globals.push(
      'defaultNetstreamDriver="gtls"',
      `defaultNetstreamDriverCAFile=${quote(tls.ca)}`,
      `defaultNetstreamDriverCertFile=${quote(tls.cert)}`,
      `defaultNetstreamDriverKeyFile=${quote(tls.key)}`,
    );
  }
  // mode 1 = TLS only; authMode anon = clients need no certificate.
  const imtcp = tls ? 'module(load="imtcp" streamDriver.name="gtls" streamDriver.mode="1" streamDriver.authMode="anon")' : 'module(load="imtcp")';
  const field = (outname: string, name: string, extra = ''): string => `  property(outname="${outname}" name="${name}" format="jsonf"${extra})`;
  return [
    `global(${globals.join('\n  ')})`,
    // No imuxsock/imklog: nothing from this machine's own logging reaches the receiver.
    imtcp,
    'template(name="keywardJson" type="list" option.jsonf="on") {',
    field('pri', 'pri', ' datatype="number"'),
    field('version', 'protocol-version', ' datatype="number"'),
    field('timestamp', 'timereported', ' dateFormat="rfc3339"'),
    field('hostname', 'hostname'),
    field('appName', 'app-name'),
    field('procId', 'procid'),
    field('msgId', 'msgid'),
    field('structuredData', 'structured-data'),
    field('msg', 'msg'),
    field('raw', 'rawmsg'),
    '}',
    // Its own ruleset, so that rsyslogd's internal messages (which go to the default ruleset, and
    // with -n to stderr) never land in the output. Written synchronously, flushed per batch.
    'ruleset(name="received" parser=["rsyslog.rfc5424", "rsyslog.rfc3164"]) {',
    `  action(type="omfile" file=${quote(output)} template="keywardJson" flushOnTXEnd="on" asyncWriting="off")`,
    '}',
    `input(type="imtcp" address="127.0.0.1" port="${port}" ruleset="received" ratelimit.interval="0")`,
    '',
  ].join('\n');
}

/** Children still running and directories not yet removed: killed and removed when the test process goes. */
const running = new Set<ChildProcess>();
const directories = new Set<string>();
let exitHookInstalled = false;
function killRunning(): void {
  for (const child of running) {
    try {
      child.kill('SIGKILL');
    } catch {
      // already gone
    }
  }
  running.clear();
  for (const dir of directories) rmSync(dir, { recursive: true, force: true });
  directories.clear();
}
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', killRunning);
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(signal, () => {
      killRunning();
      // Nobody else handles it: die of it, as without this hook.
      if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
    });
  }
}

/** Whether process `pid` holds the socket listening on 127.0.0.1:port (Linux /proc), undefined when /proc cannot tell. */
async function holdsListener(pid: number, port: number): Promise<boolean | undefined> {
  let table: string;
  try {
    table = await readFile('/proc/net/tcp', 'utf8');
  } catch {
    return undefined;
  }
  const hexPort = port.toString(16).toUpperCase().padStart(4, '0');
  const inodes = new Set<string>();
  for (const line of table.split('\n').slice(1)) {
    const cols = line.trim().split(/\s+/);
    // local_address is at 1, st at 3 (0A = LISTEN), inode at 9.
    if (cols.length < 10 || cols[3] !== '0A') continue;
    if (cols[1] === `0100007F:${hexPort}` || cols[1] === `7F000001:${hexPort}`) inodes.add(cols[9]!);
  }
  if (inodes.size === 0) return false;
  let fds: string[];
  try {
    fds = await readdir(`/proc/${pid}/fd`);
  } catch {
    return undefined;
  }
  for (const fd of fds) {
    const target = await readlink(`/proc/${pid}/fd/${fd}`).catch(() => '');
    const match = /^socket:\[(\d+)\]$/.exec(target);
    if (match && inodes.has(match[1]!)) return true;
  }
  return false;
}

/** One connection attempt; for TLS a full handshake with the certificate checked. */
function probe(port: number, tls?: { ca: Buffer }): Promise<string | undefined> {
  return new Promise((resolve) => {
    const socket = tls
      ? tlsConnect({ host: '127.0.0.1', port, servername: SERVER_NAME, ca: tls.ca })
      : netConnect({ host: '127.0.0.1', port });
    const done = (error?: string): void => {
      clearTimeout(timer);
      socket.removeAllListeners('error');
      socket.on('error', () => undefined);
      socket.end();
      socket.destroy();
      resolve(error);
    };
    const timer = setTimeout(() => done('timed out'), 2_000);
    socket.once(tls ? 'secureConnect' : 'connect', () => done());
    socket.once('error', (err: Error) => done(err.message));
  });
}

class BindError extends Error {}

export async function startRsyslog(options: { readonly tls?: boolean } = {}): Promise<RsyslogServer> {
  const binary = await rsyslogdBinary();
  const tls = options.tls ? await tlsFiles() : undefined;
  const ca = tls ? await readFile(tls.ca) : undefined;
  const dir = await mkdtemp(join(tmpdir(), 'keyward-rsyslog-'));
  directories.add(dir);
  const confFile = join(dir, 'rsyslog.conf');
  const pidFile = join(dir, 'rsyslogd.pid');
  const outputFile = join(dir, 'received.jsonl');
  const stderrFile = join(dir, 'rsyslogd.stderr');
  let port = 0;
  let child: { proc: ChildProcess; exited: Promise<void> } | undefined;
  installExitHook();

  const stderr = (): Promise<string> => readFile(stderrFile, 'utf8').catch(() => '');

  const launch = async (): Promise<void> => {
    await rm(pidFile, { force: true });
    const logFrom = await stat(stderrFile).then((s) => s.size, () => 0);
    const log = await open(stderrFile, 'a');
    let proc: ChildProcess;
    try {
      proc = spawn(binary, ['-n', '-f', confFile, '-i', pidFile], {
        cwd: dir,
        env: { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin', HOME: process.env.HOME ?? dir },
        stdio: ['ignore', log.fd, log.fd],
      });
    } finally {
      await log.close();
    }
    running.add(proc);
    const exited = new Promise<void>((resolve) => {
      proc.once('exit', () => {
        running.delete(proc);
        resolve();
      });
      proc.once('error', () => {
        running.delete(proc);
        resolve();
      });
    });
    child = { proc, exited };
    const newOutput = async (): Promise<string> => (await readFile(stderrFile).catch(() => Buffer.alloc(0))).subarray(logFrom).toString('utf8');
    const deadline = Date.now() + START_TIMEOUT_MS;
    let lastProbe: string | undefined = 'not tried';
    for (;;) {
      if (proc.exitCode !== null || proc.signalCode !== null || proc.pid === undefined) {
        await exited;
        child = undefined;
        throw new Error(`rsyslogd exited (${proc.exitCode ?? proc.signalCode}) while starting on 127.0.0.1:${port}; its stderr:\n${await newOutput()}`);
      }
      const out = await newOutput();
      if (BIND_FAILED.test(out)) {
        await stop();
        throw new BindError(`rsyslogd could not listen on 127.0.0.1:${port}; its stderr:\n${out}`);
      }
      // Something accepting on the port is not enough (the port may have been taken by another
      // process meanwhile): it must be this rsyslogd's socket.
      const holds = await holdsListener(proc.pid, port);
      if (holds !== false) {
        lastProbe = await probe(port, ca ? { ca } : undefined);
        if (lastProbe === undefined) return;
      }
      if (Date.now() > deadline) {
        await stop();
        throw new Error(
          `rsyslogd did not accept ${tls ? 'TLS ' : ''}connections on 127.0.0.1:${port} within ${START_TIMEOUT_MS} ms` +
            `${holds === false ? ' (it holds no listening socket there)' : `; last attempt: ${lastProbe}`}; its stderr:\n${await newOutput()}`,
        );
      }
      await new Promise((r) => setTimeout(r, 25));
    }
  };

  const stop = async (): Promise<void> => {
    const current = child;
    child = undefined;
    if (!current) return;
    const { proc, exited } = current;
    if (proc.exitCode === null && proc.signalCode === null) {
      proc.kill('SIGTERM');
      let timer: NodeJS.Timeout | undefined;
      const graceOver = await Promise.race([
        exited.then(() => false),
        new Promise<boolean>((resolve) => {
          timer = setTimeout(() => resolve(true), STOP_GRACE_MS);
        }),
      ]);
      clearTimeout(timer);
      if (graceOver) proc.kill('SIGKILL');
    }
    await exited;
  };

  const start = async (): Promise<void> => {
    if (child && child.proc.exitCode === null && child.proc.signalCode === null) return;
    child = undefined;
    await launch();
  };

  // The first start picks the port; a port taken between freePort() and rsyslogd's bind gets another try.
  for (let attempt = 1; ; attempt++) {
    port = await freePort();
    await writeFile(confFile, config({ dir, port, output: outputFile, tls }));
    try {
      await launch();
      break;
    } catch (err) {
      if (err instanceof BindError && attempt < 4) continue;
      await stop();
      await rm(dir, { recursive: true, force: true });
      directories.delete(dir);
      throw err;
    }
  }

  const messages = async (): Promise<ReceivedSyslog[]> => {
    let content: string;
    try {
      content = await readFile(outputFile, 'utf8');
    } catch {
      return [];
    }
    const lines = content.split('\n');
    // The last piece is empty, or a line still being written.
    lines.pop();
    return lines.map((line) => {
      let parsed: unknown;
      try {
        parsed = JSON.parse(line);
      } catch {
        throw new Error(`rsyslog output line is not JSON: ${line}`);
      }
      const o = parsed as Record<string, unknown>;
      const text = (name: string): string => {
        const value = o[name];
        if (typeof value !== 'string') throw new Error(`rsyslog output line has no string ${name}: ${line}`);
        return value;
      };
      const number = (name: string): number => {
        const value = o[name];
        if (typeof value !== 'number') throw new Error(`rsyslog output line has no number ${name}: ${line}`);
        return value;
      };
      return {
        pri: number('pri'),
        version: number('version'),
        timestamp: text('timestamp'),
        hostname: text('hostname'),
        appName: text('appName'),
        procId: text('procId'),
        msgId: text('msgId'),
        structuredData: text('structuredData'),
        msg: text('msg'),
        raw: text('raw'),
      };
    });
  };

  let closed = false;
  return {
    get port() {
      return port;
    },
    tls: tls !== undefined,
    caFile: tls?.ca ?? join(TEST_CACHE, 'azure-standin', 'ca.pem'),
    serverName: SERVER_NAME,
    messages,
    async waitFor(n: number, timeoutMs = 15_000): Promise<ReceivedSyslog[]> {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const received = await messages();
        if (received.length >= n) return received;
        if (Date.now() > deadline) {
          throw new Error(
            `rsyslog received ${received.length} of ${n} messages in ${timeoutMs} ms` +
              `${received.length ? `; last: ${received[received.length - 1]!.raw}` : ''}; rsyslogd stderr:\n${await stderr()}`,
          );
        }
        await new Promise((r) => setTimeout(r, 25));
      }
    },
    output: stderr,
    stop,
    start,
    async close() {
      await stop();
      if (closed) return;
      closed = true;
      await rm(dir, { recursive: true, force: true });
      directories.delete(dir);
    },
  };
}
