/**
 * Command-line flags and BENCH_* environment variables of `npm run bench`. Flags win
 * over variables; both win over the mode's defaults (default or --quick).
 */
import { availableParallelism } from 'node:os';

export interface BenchOptions {
  readonly quick: boolean;
  /** Seconds of warm-up before each measured run (same options, results discarded). */
  readonly warmupS: number;
  /** Seconds of each measured run. */
  readonly durationS: number;
  /** Connections and pipelining of the single-key scenarios. */
  readonly connections: number;
  readonly pipelining: number;
  /** Connections of the batch scenarios (each request is 100 or 1000 keys). */
  readonly batchConnections: number;
  /** Scenario ids to run (all when undefined); an empty list runs none (e.g. a soak alone). */
  readonly scenarios: readonly string[] | undefined;
  /** Skip `tsc -p tsconfig.build.json` (use dist/ as it is). */
  readonly build: 'always' | 'if-stale' | 'never';
  /** Run Keyward through tsx from src/ instead of the built dist/. */
  readonly tsx: boolean;
  readonly cpuProf: boolean;
  /** Minutes of the memory soak; 0 = off. */
  readonly soakMinutes: number;
  /** Requests/s of the soak's steady load; undefined = a quarter of the measured leased-unwrap maximum (or 500). */
  readonly soakRate: number | undefined;
  /** Where the child's stdout (the audit events) goes. */
  readonly audit: 'file' | 'null';
  /** Seconds of the p99-at-80% runs (autocannon overallRate and the paced open-loop run). */
  readonly rateDurationS: number;
  /** Base name of the files written under bench/results/. */
  readonly out: string;
  /** Runs of a scenario again when other processes were busy meanwhile. */
  readonly retries: number;
  /** Seconds to wait at the start for other processes to leave the CPUs alone. */
  readonly waitQuietS: number;
  /** Re-render the .md and .svg of an existing results JSON, and run nothing. */
  readonly render: string | undefined;
  readonly help: boolean;
}

export const USAGE = `npm run bench [-- options]

  --quick                 ~30 s smoke run (short warm-up and duration)
  --duration <s>          measured seconds per scenario      (BENCH_DURATION; default 8, quick 1)
  --warmup <s>            warm-up seconds per scenario       (BENCH_WARMUP; default 2, quick 0.5)
  --rate-duration <s>     seconds of each p99-at-80% run     (BENCH_RATE_DURATION; default 10, quick 1.5)
  --connections <n>       connections, single-key scenarios  (BENCH_CONNECTIONS; default 32)
  --pipelining <n>        HTTP pipelining per connection     (BENCH_PIPELINING; default 1)
  --batch-connections <n> connections, batch scenarios       (BENCH_BATCH_CONNECTIONS; default 8)
  --scenarios <a,b,...>   only these scenario ids ("none" for none; see the list printed at start)
  --soak <minutes>        memory soak after the scenarios    (BENCH_SOAK; default off)
  --soak-rate <req/s>     steady rate of the soak            (BENCH_SOAK_RATE; default a quarter of the leased-unwrap max, else 500)
  --cpu-prof              profile the Keyward child (--cpu-prof into bench/results/profiles) and analyse it
  --audit <file|null>     where the child's stdout audit events go (default file, truncated per scenario)
  --no-build              use dist/ as it is;  --build: always rebuild (default: always; quick: when src/ is newer)
  --tsx                   run Keyward from src/ through tsx (not representative; for when dist cannot build)
  --retries <n>           run a scenario again (up to n times) when other processes took >= 25% of a core meanwhile (BENCH_RETRIES; default 1, quick 0)
  --wait-quiet <s>        before the run and each scenario, wait up to s seconds for other processes to go quiet (BENCH_WAIT_QUIET; default 0)
  --out <name>            results base name under bench/results (default latest; quick: quick; partial runs: partial)
  --render <results.json> only rewrite the .md and .svg of an existing results file (e.g. after a report change)
  --help`;

function numberOf(name: string, raw: string | undefined, fallback: number, min: number): number {
  if (raw === undefined || raw.trim() === '') return fallback;
  const value = Number(raw);
  if (!Number.isFinite(value) || value < min) throw new Error(`${name} must be a number >= ${min} (got "${raw}")`);
  return value;
}

export function parseOptions(argv: readonly string[], env: Readonly<Record<string, string | undefined>>): BenchOptions {
  const flags = new Map<string, string | true>();
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (!arg.startsWith('--')) throw new Error(`unexpected argument "${arg}"\n\n${USAGE}`);
    const [name, inline] = arg.slice(2).split('=', 2) as [string, string | undefined];
    const valued = ['duration', 'warmup', 'rate-duration', 'connections', 'pipelining', 'batch-connections', 'scenarios', 'soak', 'soak-rate', 'audit', 'out', 'wait-quiet', 'retries', 'render'];
    const boolean = ['quick', 'no-build', 'build', 'tsx', 'cpu-prof', 'help'];
    if (valued.includes(name)) {
      const value = inline ?? argv[++i];
      if (value === undefined) throw new Error(`--${name} needs a value\n\n${USAGE}`);
      flags.set(name, value);
    } else if (boolean.includes(name)) {
      flags.set(name, true);
    } else {
      throw new Error(`unknown option --${name}\n\n${USAGE}`);
    }
  }
  const text = (flag: string, variable: string): string | undefined => {
    const value = flags.get(flag);
    return typeof value === 'string' ? value : env[variable];
  };
  const quick = flags.has('quick');
  const scenariosText = text('scenarios', 'BENCH_SCENARIOS');
  const scenarios =
    scenariosText === undefined ? undefined : scenariosText.trim() === 'none' ? [] : scenariosText.split(',').map((s) => s.trim()).filter((s) => s !== '');
  const audit = text('audit', 'BENCH_AUDIT') ?? 'file';
  if (audit !== 'file' && audit !== 'null') throw new Error(`--audit must be file or null (got "${audit}")`);
  const cpuProf = flags.has('cpu-prof');
  const soakMinutes = numberOf('--soak', text('soak', 'BENCH_SOAK'), 0, 0);
  const partial = scenarios !== undefined || cpuProf;
  const defaultOut = partial ? 'partial' : quick ? 'quick' : 'latest';
  const out = text('out', 'BENCH_OUT') ?? defaultOut;
  if (!/^[A-Za-z0-9._-]+$/.test(out)) throw new Error(`--out must be a plain file name (got "${out}")`);
  const soakRateText = text('soak-rate', 'BENCH_SOAK_RATE');
  return {
    quick,
    warmupS: numberOf('--warmup', text('warmup', 'BENCH_WARMUP'), quick ? 0.5 : 2, 0),
    durationS: numberOf('--duration', text('duration', 'BENCH_DURATION'), quick ? 1 : 8, 0.5),
    rateDurationS: numberOf('--rate-duration', text('rate-duration', 'BENCH_RATE_DURATION'), quick ? 1.5 : 10, 0.5),
    connections: Math.round(numberOf('--connections', text('connections', 'BENCH_CONNECTIONS'), 32, 1)),
    pipelining: Math.round(numberOf('--pipelining', text('pipelining', 'BENCH_PIPELINING'), 1, 1)),
    batchConnections: Math.round(numberOf('--batch-connections', text('batch-connections', 'BENCH_BATCH_CONNECTIONS'), 8, 1)),
    scenarios,
    build: flags.has('no-build') ? 'never' : flags.has('build') ? 'always' : quick ? 'if-stale' : 'always',
    tsx: flags.has('tsx'),
    cpuProf,
    soakMinutes,
    soakRate: soakRateText === undefined ? undefined : numberOf('--soak-rate', soakRateText, 0, 1),
    audit,
    out,
    retries: Math.round(numberOf('--retries', text('retries', 'BENCH_RETRIES'), quick ? 0 : 1, 0)),
    waitQuietS: numberOf('--wait-quiet', text('wait-quiet', 'BENCH_WAIT_QUIET'), 0, 0),
    render: typeof flags.get('render') === 'string' ? (flags.get('render') as string) : undefined,
    help: flags.has('help'),
  };
}

export function cores(): number {
  return availableParallelism();
}
