/** Tables and targets: printed to the console and written as bench/results/<name>.md. */
import type { BenchResults, ScenarioResult, SoakResult, RateResult, Target } from './results.js';
import type { PacedResult } from './load.js';
import { formatComparison, formatProfile } from './profile.js';

const n0 = (v: number | undefined): string => (v === undefined ? '–' : Math.round(v).toLocaleString('en-US'));
const ms = (v: number | undefined): string => (v === undefined ? '–' : v < 10 ? v.toFixed(2) : v.toFixed(1));
const pct = (v: number | undefined): string => (v === undefined ? '–' : `${v.toFixed(0)}%`);
const mib = (bytes: number): string => `${(bytes / 2 ** 20).toFixed(1)} MiB`;

export const TARGETS = {
  ratio: 0.8,
  batchKeysPerSecond: 100_000,
  p99Ms: 5,
  rssGrowthPercent: 5,
  kmsPer10k: 2,
} as const;

export function targets(scenarios: readonly ScenarioResult[], kmsPer10k: number | undefined, rate: RateResult | undefined, soak: SoakResult | undefined): Target[] {
  const out: Target[] = [];
  const unwrap = scenarios.find((s) => s.id === 'v1-unwrap-leased');
  if (unwrap?.ratio !== undefined) {
    const ok = unwrap.ratio >= TARGETS.ratio;
    out.push({
      name: 'leased single unwrap vs ceiling',
      goal: `≥ ${TARGETS.ratio.toFixed(2)} × ceiling req/s`,
      value: `${n0(unwrap.keyward.rps)} / ${n0(unwrap.ceiling?.rps)} req/s = ${unwrap.ratio.toFixed(2)}×`,
      status: ok ? 'PASS' : 'MISS',
      gap: ok ? `${((unwrap.ratio / TARGETS.ratio - 1) * 100).toFixed(0)}% above` : `needs ${((TARGETS.ratio / unwrap.ratio - 1) * 100).toFixed(0)}% more req/s (${n0(TARGETS.ratio * unwrap.ceiling!.rps)} req/s)`,
    });
  } else {
    out.push({ name: 'leased single unwrap vs ceiling', goal: `≥ ${TARGETS.ratio.toFixed(2)} × ceiling req/s`, value: '–', status: 'NOT RUN', gap: '' });
  }
  const batches = scenarios.filter((s) => s.keysPerRequest > 1 && s.id.startsWith('v1-'));
  if (batches.length > 0) {
    const best = batches.reduce((a, b) => (b.keysPerSecond > a.keysPerSecond ? b : a));
    const ok = best.keysPerSecond >= TARGETS.batchKeysPerSecond;
    out.push({
      name: 'batch unwrap keys/s',
      goal: `≥ ${n0(TARGETS.batchKeysPerSecond)} keys/s`,
      value: batches.map((b) => `×${b.keysPerRequest}: ${n0(b.keysPerSecond)}`).join(', ') + ' keys/s',
      status: ok ? 'PASS' : 'MISS',
      gap: ok ? `best (×${best.keysPerRequest}) ${((best.keysPerSecond / TARGETS.batchKeysPerSecond - 1) * 100).toFixed(0)}% above` : `best (×${best.keysPerRequest}) at ${((100 * best.keysPerSecond) / TARGETS.batchKeysPerSecond).toFixed(0)}% of target: needs ${(TARGETS.batchKeysPerSecond / best.keysPerSecond).toFixed(2)}×`,
    });
  } else {
    out.push({ name: 'batch unwrap keys/s', goal: `≥ ${n0(TARGETS.batchKeysPerSecond)} keys/s`, value: '–', status: 'NOT RUN', gap: '' });
  }
  if (rate) {
    const p99 = rate.autocannon.latency.p99;
    const ok = p99 < TARGETS.p99Ms;
    out.push({
      name: 'p99 of leased unwrap at 80% of max',
      goal: `< ${TARGETS.p99Ms} ms`,
      value: `${ms(p99)} ms at ${n0(rate.autocannon.rps)} req/s (autocannon overallRate ${n0(rate.targetRps)}); paced open-loop: ${ms(rate.paced.latency.p99)} ms`,
      status: ok ? 'PASS' : 'MISS',
      gap: ok ? `${(TARGETS.p99Ms - p99).toFixed(2)} ms headroom` : `${(p99 - TARGETS.p99Ms).toFixed(2)} ms over`,
    });
  } else {
    out.push({ name: 'p99 of leased unwrap at 80% of max', goal: `< ${TARGETS.p99Ms} ms`, value: '–', status: 'NOT RUN', gap: '' });
  }
  if (soak) {
    const ok = soak.growthPercent < TARGETS.rssGrowthPercent;
    const short = soak.minutes < 10 ? ` (a ${soak.minutes}-min soak, not the 10 min the target names)` : '';
    out.push({
      name: 'RSS growth over the soak',
      goal: `< ${TARGETS.rssGrowthPercent}% over 10 min`,
      value: `${mib(soak.rssAfterWarmup)} → ${mib(soak.rssEnd)} (max ${mib(soak.rssMax)}) = ${soak.growthPercent >= 0 ? '+' : ''}${soak.growthPercent.toFixed(1)}%, slope ${soak.slopeMiBPerMin.toFixed(2)} MiB/min${short}`,
      status: soak.minutes < 10 ? (ok ? 'PASS (short)' : 'MISS (short)') : ok ? 'PASS' : 'MISS',
      gap: ok ? `${(TARGETS.rssGrowthPercent - soak.growthPercent).toFixed(1)} points headroom` : `${(soak.growthPercent - TARGETS.rssGrowthPercent).toFixed(1)} points over`,
    });
  } else {
    out.push({ name: 'RSS growth over the soak', goal: `< ${TARGETS.rssGrowthPercent}% over 10 min`, value: 'not run (npm run bench -- --soak 10)', status: 'NOT RUN', gap: '' });
  }
  if (kmsPer10k !== undefined) {
    const ok = kmsPer10k <= TARGETS.kmsPer10k;
    out.push({
      name: 'KMS calls per 10,000 leased ops',
      goal: `≤ ${TARGETS.kmsPer10k}`,
      value: kmsPer10k.toFixed(3),
      status: ok ? 'PASS' : 'MISS',
      gap: ok ? `${(TARGETS.kmsPer10k - kmsPer10k).toFixed(3)} headroom` : `${(kmsPer10k - TARGETS.kmsPer10k).toFixed(3)} over`,
    });
  } else {
    out.push({ name: 'KMS calls per 10,000 leased ops', goal: `≤ ${TARGETS.kmsPer10k}`, value: '–', status: 'NOT RUN', gap: '' });
  }
  return out;
}

function pad(rows: readonly (readonly string[])[], right: ReadonlySet<number>): string {
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
  return rows
    .map((r, i) => {
      const line = r.map((cell, c) => (right.has(c) ? cell.padStart(widths[c]!) : cell.padEnd(widths[c]!))).join('  ');
      return i === 0 ? `${line}\n${widths.map((w) => '─'.repeat(w)).join('  ')}` : line;
    })
    .join('\n');
}

function mainRows(scenarios: readonly ScenarioResult[]): string[][] {
  const header = ['scenario', 'conn', 'req/s', 'keys/s', 'p50 ms', 'p99 ms', 'ceiling req/s', 'ceiling p99', 'ratio'];
  return [
    header,
    ...scenarios.map((s) => [
      s.label,
      `${s.keyward.connections}×${s.keyward.pipelining}`,
      n0(s.keyward.rps),
      n0(s.keysPerSecond),
      ms(s.keyward.latency.p50),
      ms(s.keyward.latency.p99),
      n0(s.ceiling?.rps),
      ms(s.ceiling?.latency.p99),
      s.ratio === undefined ? '–' : `${s.ratio.toFixed(2)}×`,
    ]),
  ];
}

function diagRows(scenarios: readonly ScenarioResult[]): string[][] {
  const header = ['scenario', 'KW cpu', 'ceil cpu', 'bench cpu', 'other cpu', 'req B', 'resp B', 'KMS calls', 'audit B/key', 'audit dropped', 'non-2xx/err'];
  return [
    header,
    ...scenarios.map((s) => {
      const keys = (s.keyward.ok + s.keyward.warmupOk) * s.keysPerRequest;
      return [
        s.id,
        pct(s.keywardCpuPercent),
        pct(s.ceilingCpuPercent),
        `${pct(s.driverCpuPercent)}/${pct(s.ceilingDriverCpuPercent)}`,
        `${pct(s.foreignCpuPercent.keyward)}/${pct(s.foreignCpuPercent.ceiling)}`,
        n0(s.requestBytes),
        n0(s.responseBytes),
        n0(s.kmsCalls),
        s.audit.stdoutBytes === undefined || keys === 0 ? '–' : n0(s.audit.stdoutBytes / keys),
        n0(s.audit.dropped),
        `${s.keyward.non2xx}/${s.keyward.errors}`,
      ];
    }),
  ];
}

function targetRows(list: readonly Target[]): string[][] {
  return [['target', 'goal', 'status', 'figures', 'how far'], ...list.map((t) => [t.name, t.goal, t.status, t.value, t.gap])];
}

export function ordered(results: BenchResults, order: readonly string[]): ScenarioResult[] {
  return order.map((id) => results.scenarios.find((s) => s.id === id)).filter((s): s is ScenarioResult => s !== undefined);
}

export function consoleReport(results: BenchResults, rows: readonly ScenarioResult[]): string {
  const out: string[] = [];
  const s = results.settings;
  out.push('', `Results (${s.mode}: ${s.warmupS} s warm-up + ${s.durationS} s per scenario; latencies in ms from a µs histogram of 2xx answers)`);
  if (rows.length > 0) {
    out.push(pad(mainRows(rows), new Set([1, 2, 3, 4, 5, 6, 7, 8])));
    out.push('', 'Diagnostics (cpu = % of one core during the measured run; bench = the load generator; x/y = during the Keyward run/the ceiling run; other = CPU of processes outside the bench; audit = bytes the child wrote to stdout per key op)');
    out.push(pad(diagRows(rows), new Set([1, 2, 3, 4, 5, 6, 7, 8, 9, 10])));
  }
  const k = results.kms;
  const soakPart = k.soakOps === undefined ? '' : ` (leased scenarios: ${n0(k.scenarioCalls)} for ${n0(k.scenarioOps)}; soak: ${n0(k.soakCalls)} for ${n0(k.soakOps)})`;
  out.push('', `KMS calls per 10,000 leased operations: ${k.per10k === undefined ? '–' : k.per10k.toFixed(3)} = ${n0(k.calls)} calls (keyward_kms_requests_total) for ${n0(k.leasedOps)} leased operations, batch items counted${soakPart}; the whole run, pre-generation and the direct scenario included, made ${n0(k.totalCallsInRun)} calls`);
  const r = results.p99At80;
  if (r) {
    out.push(
      '',
      `p99 at 80% of max, ${r.scenario}: max ${n0(r.maxRps)} req/s${maxNote(r)} → target rate ${n0(r.targetRps)} req/s`,
      `  autocannon overallRate: ${n0(r.autocannon.rps)} req/s achieved, p50 ${ms(r.autocannon.latency.p50)} ms, p99 ${ms(r.autocannon.latency.p99)} ms, p99.9 ${ms(r.autocannon.latency.p999)} ms (autocannon's own whole-ms, CO-corrected p99: ${r.autocannon.autocannon?.p99 ?? '–'} ms)`,
      `  paced open-loop (${r.paced.connections} conns): ${n0(r.paced.rps)} req/s achieved, p50 ${ms(r.paced.latency.p50)} ms, p99 ${ms(r.paced.latency.p99)} ms, p99.9 ${ms(r.paced.latency.p999)} ms, unanswered ${r.paced.unanswered}`,
      ...pacedSides(r).map((line) => `    ${line}`),
    );
  }
  const soak = results.soak;
  if (soak) {
    out.push(
      '',
      `Soak: ${soak.minutes} min at ${n0(soak.rate)} req/s (${soak.mix.join(', ')}), warm-up ${soak.warmupS} s; RSS ${mib(soak.rssAfterWarmup)} after warm-up → ${mib(soak.rssEnd)} at the end (max ${mib(soak.rssMax)}), growth ${soak.growthPercent.toFixed(2)}%, slope ${soak.slopeMiBPerMin.toFixed(3)} MiB/min; p99 ${ms(soak.load.latency.p99)} ms; ${n0(soak.kmsCalls)} KMS calls for ${n0(soak.leasedOps)} leased ops; audit ${mib(soak.audit.stdoutBytes ?? 0)} written, ${n0(soak.audit.dropped)} dropped${soak.foreignCpuPercent !== undefined && soak.foreignCpuPercent >= 10 ? `; !! other processes used ${soak.foreignCpuPercent.toFixed(0)}% of a core on average` : ''}`,
    );
  }
  out.push('', 'Targets', pad(targetRows(results.targets), new Set()));
  return out.join('\n');
}

function mdTable(rows: readonly (readonly string[])[], right: ReadonlySet<number>): string {
  const [header, ...body] = rows;
  return [
    `| ${header!.join(' | ')} |`,
    `|${header!.map((_, c) => (right.has(c) ? '---:' : '---')).join('|')}|`,
    ...body.map((r) => `| ${r.map((c) => c.replace(/\|/g, '\\|')).join(' | ')} |`),
  ].join('\n');
}

export function markdown(results: BenchResults, rows: readonly ScenarioResult[], svgName: string): string {
  const m = results.machine;
  const s = results.settings;
  const out: string[] = [
    `# Keyward benchmark (${s.mode} mode${rows.length < 8 ? `, ${rows.length === 0 ? 'no' : rows.length} scenario${rows.length === 1 ? '' : 's'}` : ''}${results.soak ? `, ${results.soak.minutes}-min soak` : ''}${results.profile ? ', CPU-profiled' : ''})`,
    '',
    `${m.date} · ${m.cpuModel} · ${m.cores} cores · ${m.memoryGiB} GiB · Linux ${m.kernel} · node ${m.node} · fastify ${m.fastify} · autocannon ${m.autocannon} · commit \`${m.gitCommit.slice(0, 12)}\`${m.gitDirty ? ' (uncommitted changes)' : ''}`,
    '',
    `Keyward: \`${s.keyward}\`. Ceiling: ${s.ceiling}. Audit events (the child's stdout): ${s.auditStdout}.`,
    `Each scenario: ${s.warmupS} s warm-up, then ${s.durationS} s measured; single-key scenarios ${s.connections} connections × pipelining ${s.pipelining}, batches ${s.batchConnections} connections. Load generator (autocannon) in the bench process on the same machine. Latencies: 2xx answers, from a microsecond histogram.`,
    '',
    ...(rows.length > 0 ? [`![Keyward vs ceiling](${svgName})`, ''] : []),
  ];
  if (rows.length > 0) {
    out.push(mdTable(mainRows(rows), new Set([1, 2, 3, 4, 5, 6, 7, 8])), '', '### Diagnostics', '', mdTable(diagRows(rows), new Set([1, 2, 3, 4, 5, 6, 7, 8, 9, 10])), '');
  }
  const k = results.kms;
  out.push(`**KMS calls per 10,000 leased operations:** ${k.per10k === undefined ? '–' : k.per10k.toFixed(3)} (${n0(k.calls)} calls for ${n0(k.leasedOps)} leased operations, batch items counted).`, '');
  const r = results.p99At80;
  if (r) {
    out.push(
      `**p99 at 80% of max** (${r.scenario}, max ${n0(r.maxRps)} req/s${maxNote(r)}, rate ${n0(r.targetRps)} req/s): autocannon overallRate p99 **${ms(r.autocannon.latency.p99)} ms** (p50 ${ms(r.autocannon.latency.p50)} ms); paced open-loop p99 ${ms(r.paced.latency.p99)} ms (p50 ${ms(r.paced.latency.p50)} ms).${pacedSides(r).map((line) => ` ${line}.`).join('')}`,
      '',
    );
  }
  if (results.soak) {
    const so = results.soak;
    const other = so.foreignCpuPercent === undefined ? '' : `; other processes used ${so.foreignCpuPercent.toFixed(0)}% of a core on average meanwhile`;
    out.push(
      `**Soak** ${so.minutes} min at ${n0(so.rate)} req/s (${so.mix.join(', ')}; warm-up ${so.warmupS} s): RSS ${mib(so.rssAfterWarmup)} → ${mib(so.rssEnd)} (max ${mib(so.rssMax)}), growth ${so.growthPercent.toFixed(2)}%, least-squares slope ${so.slopeMiBPerMin.toFixed(3)} MiB/min; p50 ${ms(so.load.latency.p50)} ms, p99 ${ms(so.load.latency.p99)} ms; audit ${mib(so.audit.stdoutBytes ?? 0)} written, ${n0(so.audit.dropped)} dropped${other}.`,
      '',
    );
  }
  out.push('### Targets', '', mdTable(targetRows(results.targets), new Set()), '');
  if (s.notes.length > 0) out.push('### Notes', '', ...s.notes.map((note) => `- ${note}`), '');
  if (results.profile) {
    out.push('### CPU profile', '', '```', ...results.profile.comparisons.map((c) => `${formatComparison(c)}\n`), formatProfile(results.profile.keyward, { top: 12 }), '```', '');
  }
  const d = results.durations;
  out.push(`Run time: ${d.totalS.toFixed(0)} s (build ${d.buildS.toFixed(0)} s, set-up ${d.setupS.toFixed(0)} s, scenarios ${d.scenariosS.toFixed(0)} s, p99-at-80% ${d.rateS.toFixed(0)} s, soak ${d.soakS.toFixed(0)} s).`, '');
  return out.join('\n');
}

/** Where the maximum the rate runs use came from (results of older runs have the scenario's only). */
function maxNote(r: RateResult): string {
  return r.scenarioMaxRps === undefined ? '' : ` measured again just before (the scenario's own: ${n0(r.scenarioMaxRps)} req/s)`;
}

/** Whose event loop was late during the paced run: the generator's, or Keyward's (with its GC pauses). */
export function pacedSides(r: RateResult): string[] {
  const lines: string[] = [];
  const g = r.paced.generatorDelay as PacedResult['generatorDelay'] | undefined;
  if (g) lines.push(`load generator's own event-loop delay: p99 ${g.p99.toFixed(1)} ms, max ${g.max.toFixed(1)} ms`);
  const k = r.pacedServer;
  if (k) {
    const gc = Object.entries(k.gcMs).map(([kind, total]) => `${kind} ${total.toFixed(0)} ms in ${n0(k.gcPauses[kind] ?? 0)}`).join(', ');
    lines.push(`Keyward's event-loop delay: p99 ${k.eventLoopP99Ms.toFixed(1)} ms, max ${k.eventLoopMaxMs.toFixed(1)} ms; its GC pauses: ${gc || 'none'}`);
  }
  return lines;
}
