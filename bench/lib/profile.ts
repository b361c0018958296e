/**
 * Reads a V8 .cpuprofile (node --cpu-prof) and says where the time went: self time by
 * function (function + script + line), self time by area (Keyward's own files under
 * dist/, each npm package, Node internals, V8), inclusive time of Keyward's functions,
 * and inclusive time of a few topics worth watching (audit, metrics, EDEK parsing,
 * logging, schema validation, serialization...). Optionally only the samples inside
 * time windows (the measured runs), given on the same monotonic clock as
 * process.hrtime (V8's profile timestamps are CLOCK_MONOTONIC microseconds on Linux).
 */
import { readFileSync } from 'node:fs';
import { SourceMap } from 'node:module';
import { dirname, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

interface CallFrame {
  readonly functionName: string;
  readonly url: string;
  readonly lineNumber: number;
  readonly columnNumber: number;
}

interface ProfileNode {
  readonly id: number;
  readonly callFrame: CallFrame;
  readonly children?: readonly number[];
}

interface CpuProfile {
  readonly nodes: readonly ProfileNode[];
  readonly startTime: number;
  readonly endTime: number;
  readonly samples: readonly number[];
  readonly timeDeltas: readonly number[];
}

export interface Window {
  readonly label: string;
  /** Microseconds, process.hrtime clock. */
  readonly startUs: number;
  readonly endUs: number;
  /** The scenario measured, and the requests answered in the window (for CPU per request). */
  readonly scenario?: string;
  readonly requests?: number;
}

export interface Row {
  readonly name: string;
  readonly where: string;
  readonly ms: number;
  readonly percent: number;
}

export interface WindowReport {
  readonly label: string;
  /** Milliseconds sampled in the window, and how much of it was not idle. */
  readonly sampledMs: number;
  readonly busyMs: number;
  readonly samples: number;
  readonly scenario: string | undefined;
  readonly requests: number | undefined;
  /** Busy CPU microseconds per answered request. */
  readonly usPerRequest: number | undefined;
  /** Percent figures below are of busy (non-idle) time. */
  /** Self time of the sampled (leaf) function; natives say which code they ran for ("via"). */
  readonly topSelf: readonly Row[];
  readonly byArea: readonly Row[];
  /** Self time folded into the owner: the deepest Keyward, npm or generated frame. */
  readonly byOwner: readonly Row[];
  readonly byOwnerArea: readonly Row[];
  readonly keywardOwned: readonly Row[];
  /** Inclusive (callees, and continuations called synchronously, included). */
  readonly keywardInclusive: readonly Row[];
  /** Owner time by topic; each sample in exactly one topic. */
  readonly topics: readonly Row[];
}

export interface ProfileReport {
  readonly file: string;
  /** Whether the windows matched the profile's clock (otherwise the whole profile was used). */
  readonly windowed: boolean;
  /** The time windows asked for (process.hrtime microseconds), kept so the file can be analysed again. */
  readonly asked: readonly Window[];
  readonly windows: readonly WindowReport[];
}

const REPO = fileURLToPath(new URL('../../', import.meta.url));

function shortUrl(url: string): string {
  if (url === '') return '';
  const path = url.startsWith('file://') ? fileURLToPath(url) : url;
  const rel = path.startsWith(REPO) ? relative(REPO, path) : path;
  return rel.replace(/^node_modules\//, '');
}

function area(url: string, name: string): string {
  if (url === '') {
    if (name === '(garbage collector)') return 'V8: garbage collector';
    if (name === '(idle)') return '(idle)';
    if (name === '(program)') return 'V8: (program)';
    return 'V8/native builtins and generated code';
  }
  if (url.startsWith('node:')) {
    const m = /^node:(?:internal\/)?([a-z_]+)/.exec(url);
    return `node: ${m?.[1] ?? url}`;
  }
  const path = url.startsWith('file://') ? fileURLToPath(url) : url;
  const nm = path.lastIndexOf('/node_modules/');
  if (nm >= 0) {
    const rest = path.slice(nm + '/node_modules/'.length).split('/');
    const pkg = rest[0]!.startsWith('@') ? `${rest[0]}/${rest[1]}` : rest[0]!;
    return `npm: ${pkg}`;
  }
  const rel = path.startsWith(REPO) ? relative(REPO, path) : path;
  if (rel.startsWith('dist/') || rel.startsWith('src/')) {
    const parts = rel.split('/');
    return `keyward: ${parts.length > 2 ? parts[1] : parts[1]!.replace(/\.[jt]s$/, '')}`;
  }
  return rel;
}

const isKeyward = (url: string): boolean => {
  const rel = shortUrl(url);
  return rel.startsWith('dist/') || rel.startsWith('src/');
};

/**
 * The owner of a sample: the deepest frame of its stack that is code of Keyward or of an
 * npm package (or code generated at run time: ajv validators, fast-json-stringify
 * serializers). Native builtins and Node internals are folded into it, so `writev` under
 * Fastify's reply counts for Fastify, and the synchronous file write under the audit
 * stdout sink counts for the audit sink.
 */
interface Owner {
  readonly frame: CallFrame;
  readonly area: string;
}

function ownerOf(leafId: number, byId: Map<number, ProfileNode>, parents: Map<number, number>): Owner {
  let firstNode: CallFrame | undefined;
  for (let id: number | undefined = leafId; id !== undefined; id = parents.get(id)) {
    const f = byId.get(id)!.callFrame;
    if (f.url.startsWith('file://')) return { frame: f, area: area(f.url, f.functionName) };
    if (f.url === '' && f.lineNumber >= 0) {
      // Generated at run time (new Function): say by whom, from the next frame with a script.
      let by = '';
      for (let up = parents.get(id); up !== undefined; up = parents.get(up)) {
        const u = byId.get(up)!.callFrame.url;
        if (u !== '') {
          by = shortUrl(u);
          break;
        }
      }
      const kind = /^validate\d*$/.test(f.functionName) || by.startsWith('fastify/lib/validation') ? 'generated: ajv validators' : by.startsWith('fastify/lib/reply') ? 'generated: fast-json-stringify serializers' : 'generated code';
      return { frame: f, area: kind };
    }
    if (!firstNode && f.url.startsWith('node:')) firstNode = f;
  }
  const leaf = byId.get(leafId)!.callFrame;
  if (firstNode) return { frame: firstNode, area: `${area(firstNode.url, firstNode.functionName)} (no app caller)` };
  return { frame: leaf, area: area(leaf.url, leaf.functionName) };
}

/** Topics, by owner: what a sample's time was spent for. */
const TOPICS: ReadonlyArray<{ name: string; match: (o: Owner, rel: string) => boolean }> = [
  { name: 'audit: events stamped, routed, queued, serialised and written (dist/audit/*, incl. the sync stdout write)', match: (_o, rel) => /^(dist|src)\/audit\//.test(rel) },
  { name: 'audit: record built in KeyService (#record)', match: (o, rel) => o.frame.functionName === '#record' && /envelope\/keys/.test(rel) },
  { name: 'metrics: prom-client, the onResponse hook (dist/app.js)', match: (_o, rel) => rel.startsWith('prom-client/') || /^(dist|src)\/(app|metrics)\./.test(rel) },
  { name: 'API-key check (dist/http/auth.js, SHA-256 and compare)', match: (_o, rel) => /^(dist|src)\/http\/auth/.test(rel) },
  { name: 'EDEK parsing/encoding (dist/envelope/edek.js)', match: (_o, rel) => /^(dist|src)\/envelope\/edek/.test(rel) },
  { name: 'key service (dist/envelope/keys.js, aad.js)', match: (o, rel) => /^(dist|src)\/envelope\/(keys|aad|concurrency)/.test(rel) && o.frame.functionName !== '#record' },
  { name: 'lease look-up (dist/leasing/manager.js)', match: (_o, rel) => /^(dist|src)\/leasing\/manager/.test(rel) },
  { name: 'AES-GCM seal/open (dist/leasing/seal.js)', match: (_o, rel) => /^(dist|src)\/leasing\/seal/.test(rel) },
  { name: 'HTTP handlers and errors (dist/http/v1.js, compat.js, errors.js)', match: (_o, rel) => /^(dist|src)\/http\/(v1|compat|errors|base64)/.test(rel) },
  { name: 'logging: pino', match: (_o, rel) => /^(pino|pino-std-serializers|sonic-boom|thread-stream)\//.test(rel) },
  { name: 'JSON body parse (secure-json-parse, fastify content-type-parser)', match: (_o, rel) => rel.startsWith('secure-json-parse/') || rel.startsWith('fastify/lib/content-type-parser') },
  { name: 'schema validation (ajv-compiled validators, fastify validation.js)', match: (o, rel) => o.area === 'generated: ajv validators' || rel.startsWith('fastify/lib/validation') },
  { name: 'response serialization (fast-json-stringify code, fastify reply.js incl. socket writev)', match: (o, rel) => o.area === 'generated: fast-json-stringify serializers' || rel.startsWith('fastify/lib/reply') },
  { name: 'fastify core otherwise (routing, hooks, request handling, find-my-way...)', match: (_o, rel) => (rel.startsWith('fastify/') && !rel.startsWith('fastify/lib/reply') && !rel.startsWith('fastify/lib/validation') && !rel.startsWith('fastify/lib/content-type-parser')) || rel.startsWith('find-my-way/') || rel.startsWith('@fastify/') },
  { name: 'node http/net/streams with no app frame (socket reads, HTTP parser)', match: (o) => o.area.endsWith('(no app caller)') },
  { name: 'garbage collector', match: (o) => o.frame.functionName === '(garbage collector)' },
  { name: 'V8 (program): outside JS, e.g. compiling, the event loop', match: (o) => o.frame.functionName === '(program)' },
];

const sourceMaps = new Map<string, SourceMap | null>();

/** dist/…js:line → src/…ts:line through the emitted source map, when there is one. */
function original(url: string, line: number, column: number): string | undefined {
  if (!url.startsWith('file://')) return undefined;
  const path = fileURLToPath(url);
  let map = sourceMaps.get(path);
  if (map === undefined) {
    try {
      map = new SourceMap(JSON.parse(readFileSync(`${path}.map`, 'utf8')) as ConstructorParameters<typeof SourceMap>[0]);
    } catch {
      map = null;
    }
    sourceMaps.set(path, map);
  }
  if (!map) return undefined;
  const entry = map.findEntry(line, column) as { originalSource?: string; originalLine?: number };
  if (!entry.originalSource || entry.originalLine === undefined) return undefined;
  const source = entry.originalSource.startsWith('file://') ? fileURLToPath(entry.originalSource) : resolve(dirname(path), entry.originalSource);
  return `${relative(REPO, source)}:${entry.originalLine + 1}`;
}

function where(f: CallFrame): string {
  const rel = shortUrl(f.url);
  if (rel === '') return '';
  const mapped = isKeyward(f.url) ? original(f.url, f.lineNumber, f.columnNumber) : undefined;
  return mapped ?? `${rel}:${f.lineNumber + 1}`;
}

function table(map: Map<string, { name: string; where: string; us: number }>, busyUs: number, limit: number): Row[] {
  return [...map.values()]
    .sort((a, b) => b.us - a.us)
    .slice(0, limit)
    .map((r) => ({ name: r.name, where: r.where, ms: r.us / 1000, percent: busyUs > 0 ? (100 * r.us) / busyUs : 0 }));
}

function analyseWindow(profile: CpuProfile, parents: Map<number, number>, byId: Map<number, ProfileNode>, times: readonly number[], window: Window): WindowReport {
  const { label, startUs: from, endUs: to } = window;
  type Acc = Map<string, { name: string; where: string; us: number }>;
  const self: Acc = new Map();
  const areas: Acc = new Map();
  const owners: Acc = new Map();
  const ownerAreas: Acc = new Map();
  const kwOwned: Acc = new Map();
  const kwIncl: Acc = new Map();
  const topics: Acc = new Map();
  let sampledUs = 0;
  let idleUs = 0;
  let count = 0;
  const add = (m: Acc, key: string, name: string, w: string, us: number): void => {
    const row = m.get(key);
    if (row) row.us += us;
    else m.set(key, { name, where: w, us });
  };
  const ownerCache = new Map<number, Owner>();
  const { samples } = profile;
  for (let i = 0; i < samples.length; i++) {
    const t = times[i]!;
    if (t < from || t > to) continue;
    // A sample stands for the time until the next one.
    const us = i + 1 < samples.length ? times[i + 1]! - t : 0;
    if (us <= 0) continue;
    count++;
    sampledUs += us;
    const node = byId.get(samples[i]!)!;
    const f = node.callFrame;
    if (f.functionName === '(idle)') {
      idleUs += us;
      continue;
    }
    let owner = ownerCache.get(node.id);
    if (!owner) {
      owner = ownerOf(node.id, byId, parents);
      ownerCache.set(node.id, owner);
    }
    const name = f.functionName || '(anonymous)';
    const o = owner.frame;
    const oName = o.functionName || '(anonymous)';
    const oWhere = where(o);
    const leafVia = f.url === '' && o !== f ? `via ${oName} ${oWhere}` : where(f);
    add(self, `${name}@${f.url}:${f.lineNumber}|${o.url}:${o.lineNumber}`, name, leafVia, us);
    add(areas, area(f.url, f.functionName), area(f.url, f.functionName), '', us);
    add(owners, `${oName}@${o.url}:${o.lineNumber}`, oName, oWhere, us);
    add(ownerAreas, owner.area, owner.area, '', us);
    if (isKeyward(o.url)) add(kwOwned, `${oName}@${o.url}:${o.lineNumber}`, oName, oWhere, us);
    const rel = shortUrl(o.url);
    for (const topic of TOPICS) {
      if (topic.match(owner, rel)) {
        add(topics, topic.name, topic.name, '', us);
        break;
      }
    }
    const seenFn = new Set<string>();
    for (let id: number | undefined = node.id; id !== undefined; id = parents.get(id)) {
      const frame = byId.get(id)!.callFrame;
      if (!isKeyward(frame.url)) continue;
      const key = `${frame.functionName}@${frame.url}:${frame.lineNumber}`;
      if (seenFn.has(key)) continue;
      seenFn.add(key);
      add(kwIncl, key, frame.functionName || '(anonymous)', where(frame), us);
    }
  }
  const busyUs = sampledUs - idleUs;
  const covered = [...topics.values()].reduce((a, r) => a + r.us, 0);
  if (busyUs - covered > 0) topics.set('(other)', { name: '(other: npm packages and code not named above)', where: '', us: busyUs - covered });
  return {
    label,
    sampledMs: sampledUs / 1000,
    busyMs: busyUs / 1000,
    samples: count,
    scenario: window.scenario,
    requests: window.requests,
    usPerRequest: window.requests ? busyUs / window.requests : undefined,
    topSelf: table(self, busyUs, 25),
    byArea: table(areas, busyUs, 20),
    byOwner: table(owners, busyUs, 25),
    byOwnerArea: table(ownerAreas, busyUs, 25),
    keywardOwned: table(kwOwned, busyUs, 25),
    keywardInclusive: table(kwIncl, busyUs, 25),
    topics: table(topics, busyUs, TOPICS.length + 1),
  };
}

export function analyseProfile(file: string, windows: readonly Window[] = []): ProfileReport {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const byId = new Map<number, ProfileNode>();
  const parents = new Map<number, number>();
  for (const node of profile.nodes) {
    byId.set(node.id, node);
    for (const child of node.children ?? []) parents.set(child, node.id);
  }
  const times: number[] = new Array<number>(profile.samples.length);
  let t = profile.startTime;
  for (let i = 0; i < profile.samples.length; i++) {
    t += profile.timeDeltas[i] ?? 0;
    times[i] = t;
  }
  // The windows are usable when they fall inside the profile's span (same clock).
  const usable = windows.filter((w) => w.startUs >= profile.startTime - 1e6 && w.endUs <= profile.endTime + 1e6);
  const windowed = windows.length > 0 && usable.length === windows.length;
  const reports = windowed
    ? usable.map((w) => analyseWindow(profile, parents, byId, times, w))
    : [analyseWindow(profile, parents, byId, times, { label: 'whole profile', startUs: -Infinity, endUs: Infinity })];
  return { file: relative(REPO, file), windowed, asked: windows, windows: reports };
}

const fmtRow = (r: Row): string => `${r.percent.toFixed(1).padStart(5)}%  ${r.ms.toFixed(0).padStart(6)} ms  ${r.name}${r.where ? `  (${r.where})` : ''}`;

export function formatProfile(report: ProfileReport, options: { top?: number } = {}): string {
  const top = options.top ?? 15;
  const out: string[] = [`CPU profile ${report.file}${report.windowed ? ' (samples of the measured runs only)' : ' (whole profile: start-up and every phase)'}`];
  for (const w of report.windows) {
    const perRequest = w.usPerRequest === undefined ? '' : `, ${w.usPerRequest.toFixed(0)} µs of CPU per request`;
    out.push('', `── ${w.label}: ${w.samples} samples, ${(w.sampledMs / 1000).toFixed(1)} s sampled, ${(w.busyMs / 1000).toFixed(1)} s busy (${w.sampledMs > 0 ? ((100 * w.busyMs) / w.sampledMs).toFixed(0) : 0}% of one core)${perRequest}; percentages are of busy time`);
    out.push('Top self time by function (natives: "via" the code they ran for):', ...w.topSelf.slice(0, top).map(fmtRow));
    out.push('Self time by owner area (natives and Node internals folded into the nearest Keyward/npm/generated frame):', ...w.byOwnerArea.slice(0, 14).map(fmtRow));
    out.push("Keyward's own functions, owner self time (what they and the natives they call cost):", ...w.keywardOwned.slice(0, top).map(fmtRow));
    out.push('By topic (owner time; each sample in one topic):', ...w.topics.filter((r) => r.ms > 0).map(fmtRow));
  }
  return out.join('\n');
}

export interface Comparison {
  readonly scenario: string;
  readonly keywardUsPerRequest: number;
  readonly ceilingUsPerRequest: number;
  /** CPU µs per request by topic, Keyward and the ceiling (owner time). */
  readonly topics: ReadonlyArray<{ readonly topic: string; readonly keyward: number; readonly ceiling: number }>;
}

/** CPU per request, topic by topic, of Keyward against the ceiling in the same scenario. */
export function compare(keyward: WindowReport, ceiling: WindowReport): Comparison | undefined {
  if (!keyward.requests || !ceiling.requests || keyward.usPerRequest === undefined || ceiling.usPerRequest === undefined) return undefined;
  const per = (w: WindowReport, topic: string): number => ((w.topics.find((t) => t.name === topic)?.ms ?? 0) * 1000) / w.requests!;
  const names = [...new Set([...keyward.topics.map((t) => t.name), ...ceiling.topics.map((t) => t.name)])];
  const topics = names
    .map((topic) => ({ topic, keyward: per(keyward, topic), ceiling: per(ceiling, topic) }))
    .sort((a, b) => b.keyward - b.ceiling - (a.keyward - a.ceiling));
  return { scenario: keyward.scenario ?? keyward.label, keywardUsPerRequest: keyward.usPerRequest, ceilingUsPerRequest: ceiling.usPerRequest, topics };
}

export function formatComparison(c: Comparison): string {
  const lines = [
    `CPU per request, ${c.scenario}: Keyward ${c.keywardUsPerRequest.toFixed(0)} µs, ceiling ${c.ceilingUsPerRequest.toFixed(0)} µs (${(c.keywardUsPerRequest / c.ceilingUsPerRequest).toFixed(2)}×); by topic, largest difference first:`,
    `${'µs/req Keyward'.padStart(15)} ${'ceiling'.padStart(8)} ${'diff'.padStart(7)} ${'% of KW'.padStart(8)}  topic`,
  ];
  for (const t of c.topics) {
    if (t.keyward < 0.5 && t.ceiling < 0.5) continue;
    lines.push(`${t.keyward.toFixed(1).padStart(15)} ${t.ceiling.toFixed(1).padStart(8)} ${(t.keyward - t.ceiling >= 0 ? '+' : '') + (t.keyward - t.ceiling).toFixed(1).padStart(6)} ${((100 * t.keyward) / c.keywardUsPerRequest).toFixed(1).padStart(7)}%  ${t.topic}`);
  }
  return lines.join('\n');
}
