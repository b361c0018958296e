/**
 * `npm run chaos -- [--duration 120] [--seed N] [--workers 8] [--no-blackhole] [--json FILE] [--requests FILE]`
 *
 * Runs the chaos run of scripts/chaos/harness.ts (docs/chaos.md) against Keyward as a child
 * process, prints its summary and exits 1 when any check failed (a DEK mismatch, a wrong
 * code, a hung request, a lost EDEK, an unhealthy process …), 2 on bad arguments.
 *
 * Needs what `npm test` provisions (scripts/provision-emulators.sh: local-kms and the
 * stand-ins' test CA; SoftHSM2 optionally). Node reads NODE_EXTRA_CA_CERTS only at start-up,
 * so this script re-runs itself with the test environment when it is not set: the Azure
 * stand-in's CA trusted, and every cloud SDK's metadata probing off.
 */
import { spawn } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { formatReport, runChaos } from './chaos/harness.js';
import { TEST_CACHE } from '../test/helpers/emulator.js';
import { REPO } from '../test/helpers/process.js';

const USAGE = 'usage: npx tsx scripts/chaos.ts [--duration SECONDS (default 120, at least 20)] [--seed N] [--workers N] [--no-blackhole] [--json FILE] [--requests FILE]';

interface Args {
  durationS: number;
  seed?: number;
  workers?: number;
  blackhole: boolean;
  json?: string;
  requests?: string;
}

function parseArgs(argv: readonly string[]): Args {
  const args: Args = { durationS: 120, blackhole: true };
  const number = (flag: string, value: string | undefined, min: number): number => {
    const n = Number(value);
    if (value === undefined || !/^\d+$/.test(value) || n < min) {
      console.error(`${flag} needs a whole number of at least ${min} (got ${value ?? 'nothing'})\n${USAGE}`);
      process.exit(2);
    }
    return n;
  };
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i]!;
    const [name, inline] = flag.includes('=') ? [flag.slice(0, flag.indexOf('=')), flag.slice(flag.indexOf('=') + 1)] : [flag, undefined];
    const value = (): string | undefined => inline ?? argv[++i];
    switch (name) {
      case '--duration':
        args.durationS = number(name, value(), 20);
        break;
      case '--seed':
        args.seed = number(name, value(), 0);
        break;
      case '--workers':
        args.workers = number(name, value(), 1);
        break;
      case '--no-blackhole':
        args.blackhole = false;
        break;
      case '--json':
        args.json = value();
        break;
      case '--requests':
        args.requests = value();
        break;
      case '--help':
      case '-h':
        console.log(USAGE);
        process.exit(0);
        break;
      default:
        console.error(`unknown argument ${flag}\n${USAGE}`);
        process.exit(2);
    }
  }
  return args;
}

async function main(): Promise<void> {
  const ca = join(TEST_CACHE, 'azure-standin', 'ca.pem');
  if (process.env.NODE_EXTRA_CA_CERTS !== ca || process.env.KEYWARD_CHAOS_CHILD !== '1') {
    // Again, with the environment the test runner gives (scripts/run-node-tests.sh).
    const child = spawn(process.execPath, ['--import', 'tsx', fileURLToPath(import.meta.url), ...process.argv.slice(2)], {
      cwd: REPO,
      stdio: 'inherit',
      env: {
        ...process.env,
        KEYWARD_CHAOS_CHILD: '1',
        KEYWARD_TEST_CACHE: TEST_CACHE,
        NODE_EXTRA_CA_CERTS: ca,
        AWS_EC2_METADATA_DISABLED: 'true',
        METADATA_SERVER_DETECTION: 'none',
        NO_GCE_CHECK: 'true',
      },
    });
    for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => child.kill(signal));
    child.on('exit', (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
    return;
  }
  const args = parseArgs(process.argv.slice(2));
  const started = Date.now();
  const report = await runChaos({
    durationS: args.durationS,
    seed: args.seed,
    workers: args.workers,
    blackhole: args.blackhole,
    requestLog: args.requests,
    log: (line) => console.log(line),
  });
  console.log('');
  console.log(formatReport(report));
  console.log(`(wall time ${Math.round((Date.now() - started) / 1000)} s)`);
  if (args.json) {
    await writeFile(args.json, `${JSON.stringify(report, null, 2)}\n`);
    console.log(`report written to ${args.json}`);
  }
  process.exit(report.ok ? 0 : 1);
}

main().catch((err: unknown) => {
  console.error(`chaos run could not run: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
  process.exit(2);
});
