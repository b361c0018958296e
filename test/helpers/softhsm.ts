/**
 * A throw-away SoftHSM2 for one test process: its own token directory and softhsm2.conf
 * in a temp dir, tokens made with softhsm2-util, AES keys made with pkcs11js.
 *
 * SoftHSM reads SOFTHSM2_CONF when the module is C_Initialize'd, so the first call here
 * must come before the first driver is created; every token of the process then lives in
 * the same directory.
 *
 * Key management (create, delete, change PIN) runs pkcs11js in a child process, as an
 * operator's tool would. In this process it would share the drivers' Cryptoki state:
 * its C_Logout or last C_CloseSession would log the drivers out and its C_Finalize would
 * end their sessions, so tests would measure the helper rather than the driver. SoftHSM's
 * file object store makes the child's changes visible to the drivers.
 */
import { spawn } from 'node:child_process';
import { access, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** The SoftHSM2 module; KEYWARD_PKCS11_MODULE overrides the Debian/Ubuntu path. */
export const SOFTHSM_MODULE = process.env.KEYWARD_PKCS11_MODULE ?? '/usr/lib/softhsm/libsofthsm2.so';

const INSTALL_HINT = 'Run `npm test`, which installs SoftHSM2 before it runs the tests.';

/** What the key may be used for; everything defaults to true. */
export interface AesKeyUsage {
  readonly encrypt?: boolean;
  readonly decrypt?: boolean;
  readonly wrap?: boolean;
  readonly unwrap?: boolean;
}

export interface SoftHsmTokenOptions {
  readonly label: string;
  readonly soPin?: string;
  readonly pin?: string;
  /** Labels of AES-256 keys to create on the new token. */
  readonly keys?: readonly string[];
}

export interface SoftHsmToken {
  readonly module: string;
  readonly label: string;
  readonly soPin: string;
  /** The current user PIN (follows `changePin`). */
  readonly pin: string;
  /** Generates an AES-256 token key (sensitive, not extractable) with this label. */
  createKey(keyLabel: string, usage?: AesKeyUsage): Promise<void>;
  /** Destroys every secret key with this label; returns how many there were. */
  deleteKey(keyLabel: string): Promise<number>;
  /** C_SetPIN as the user. */
  changePin(newPin: string): Promise<void>;
}

interface SoftHsmHome {
  readonly dir: string;
  readonly conf: string;
}

let home: Promise<SoftHsmHome> | undefined;

/** Child-process script: runs a list of key-management requests against one token. */
const KEY_TOOL = `
const P = require(process.env.KEYWARD_PKCS11JS);
let input = '';
process.stdin.setEncoding('utf8');
process.stdin.on('data', (chunk) => { input += chunk; });
process.stdin.on('end', () => {
  try {
    process.stdout.write(JSON.stringify(run(JSON.parse(input))));
  } catch (err) {
    process.stderr.write(String(err && err.stack || err));
    process.exitCode = 1;
  }
});
function findSecretKeys(p, s, label) {
  p.C_FindObjectsInit(s, [{ type: P.CKA_CLASS, value: P.CKO_SECRET_KEY }, { type: P.CKA_LABEL, value: label }]);
  try { return p.C_FindObjects(s, 100); } finally { p.C_FindObjectsFinal(s); }
}
function run(req) {
  const p = new P.PKCS11();
  p.load(req.module);
  p.C_Initialize();
  try {
    const slot = p.C_GetSlotList(true).find((x) => p.C_GetTokenInfo(x).label.trim() === req.token);
    if (!slot) throw new Error('no token labelled ' + req.token);
    const s = p.C_OpenSession(slot, P.CKF_SERIAL_SESSION | P.CKF_RW_SESSION);
    p.C_Login(s, P.CKU_USER, req.pin);
    const results = [];
    for (const step of req.steps) {
      if (step.op === 'create-aes-key') {
        const u = step.usage;
        p.C_GenerateKey(s, { mechanism: P.CKM_AES_KEY_GEN }, [
          { type: P.CKA_CLASS, value: P.CKO_SECRET_KEY },
          { type: P.CKA_KEY_TYPE, value: P.CKK_AES },
          { type: P.CKA_VALUE_LEN, value: 32 },
          { type: P.CKA_LABEL, value: step.label },
          { type: P.CKA_TOKEN, value: true },
          { type: P.CKA_PRIVATE, value: true },
          { type: P.CKA_SENSITIVE, value: true },
          { type: P.CKA_EXTRACTABLE, value: false },
          { type: P.CKA_ENCRYPT, value: u.encrypt },
          { type: P.CKA_DECRYPT, value: u.decrypt },
          { type: P.CKA_WRAP, value: u.wrap },
          { type: P.CKA_UNWRAP, value: u.unwrap },
        ]);
        results.push(1);
      } else if (step.op === 'delete-key') {
        const found = findSecretKeys(p, s, step.label);
        for (const h of found) p.C_DestroyObject(s, h);
        results.push(found.length);
      } else if (step.op === 'set-pin') {
        p.C_SetPIN(s, req.pin, step.newPin);
        results.push(1);
      } else {
        throw new Error('unknown step ' + step.op);
      }
    }
    return results;
  } finally {
    p.C_Finalize();
  }
}
`;

type Step =
  | { op: 'create-aes-key'; label: string; usage: Required<AesKeyUsage> }
  | { op: 'delete-key'; label: string }
  | { op: 'set-pin'; newPin: string };

interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

function run(command: string, args: readonly string[], env: NodeJS.ProcessEnv, input?: string): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    // No stdin pipe unless there is input: softhsm2-util exits without reading it (EPIPE).
    const child = spawn(command, args, { env, stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
      stdout += chunk;
    });
    child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
      stderr += chunk;
    });
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
    if (input !== undefined && child.stdin !== null) {
      // A child that dies early shows in its exit code and stderr; don't crash on EPIPE.
      child.stdin.on('error', () => undefined);
      child.stdin.end(input);
    }
  });
}

async function ensureInstalled(): Promise<void> {
  try {
    await access(SOFTHSM_MODULE);
  } catch {
    throw new Error(`SoftHSM2 module not found at ${SOFTHSM_MODULE}. ${INSTALL_HINT}`);
  }
  try {
    await run('softhsm2-util', ['--version'], process.env);
  } catch (err) {
    throw new Error(`softhsm2-util cannot be run (${(err as Error).message}). ${INSTALL_HINT}`);
  }
}

async function makeHome(): Promise<SoftHsmHome> {
  await ensureInstalled();
  const dir = await mkdtemp(join(tmpdir(), 'keyward-softhsm-'));
  const tokens = join(dir, 'tokens');
  await mkdir(tokens, { mode: 0o700 });
  const conf = join(dir, 'softhsm2.conf');
  await writeFile(
    conf,
    [`directories.tokendir = ${tokens}`, 'objectstore.backend = file', 'log.level = ERROR', 'slots.removable = false', ''].join('\n'),
    { mode: 0o600 },
  );
  process.env.SOFTHSM2_CONF = conf;
  return { dir, conf };
}

function softHsmHome(): Promise<SoftHsmHome> {
  home ??= makeHome();
  return home;
}

async function keyTool(token: { label: string; pin: string }, steps: readonly Step[]): Promise<number[]> {
  const { conf } = await softHsmHome();
  const request = { module: SOFTHSM_MODULE, token: token.label, pin: token.pin, steps };
  const env = {
    ...process.env,
    SOFTHSM2_CONF: conf,
    KEYWARD_PKCS11JS: createRequire(import.meta.url).resolve('pkcs11js'),
  };
  const result = await run(process.execPath, ['-e', KEY_TOOL], env, JSON.stringify(request));
  if (result.code !== 0) {
    throw new Error(`SoftHSM key tool failed on token '${token.label}' (exit ${result.code}): ${result.stderr.trim()}`);
  }
  return JSON.parse(result.stdout) as number[];
}

function fullUsage(usage: AesKeyUsage = {}): Required<AesKeyUsage> {
  return {
    encrypt: usage.encrypt ?? true,
    decrypt: usage.decrypt ?? true,
    wrap: usage.wrap ?? true,
    unwrap: usage.unwrap ?? true,
  };
}

/**
 * Initialises a new token in this process's SoftHSM directory (creating that directory
 * and pointing SOFTHSM2_CONF at it on first use) and creates the given AES keys on it.
 */
export async function createSoftHsmToken(options: SoftHsmTokenOptions): Promise<SoftHsmToken> {
  const { conf } = await softHsmHome();
  const soPin = options.soPin ?? '12345678';
  const state = { label: options.label, pin: options.pin ?? '87654321' };
  const init = await run(
    'softhsm2-util',
    ['--init-token', '--free', '--label', state.label, '--so-pin', soPin, '--pin', state.pin],
    { ...process.env, SOFTHSM2_CONF: conf },
  );
  if (init.code !== 0) {
    throw new Error(`softhsm2-util --init-token failed (exit ${init.code}): ${(init.stderr || init.stdout).trim()}`);
  }
  const token: SoftHsmToken = {
    module: SOFTHSM_MODULE,
    label: state.label,
    soPin,
    get pin() {
      return state.pin;
    },
    async createKey(keyLabel, usage) {
      await keyTool(state, [{ op: 'create-aes-key', label: keyLabel, usage: fullUsage(usage) }]);
    },
    async deleteKey(keyLabel) {
      const [count] = await keyTool(state, [{ op: 'delete-key', label: keyLabel }]);
      return count ?? 0;
    },
    async changePin(newPin) {
      await keyTool(state, [{ op: 'set-pin', newPin }]);
      state.pin = newPin;
    },
  };
  const keys = options.keys ?? [];
  if (keys.length > 0) {
    await keyTool(
      state,
      keys.map((label) => ({ op: 'create-aes-key', label, usage: fullUsage() })),
    );
  }
  return token;
}

/** Removes this process's SoftHSM directory and every token in it. */
export async function cleanupSoftHsm(): Promise<void> {
  const current = home;
  home = undefined;
  if (current === undefined) return;
  const { dir } = await current;
  await rm(dir, { recursive: true, force: true });
}
