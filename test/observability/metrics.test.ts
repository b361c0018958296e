/**
 * What Keyward exports on the ops port's /metrics, from a real in-process Keyward after
 * some traffic: it passes Prometheus' own linter (`promtool check metrics`), and it is
 * exactly what docs/metrics.md catalogues — every family listed with its type, nothing
 * listed that is not exported, and no label on a sample that the catalogue does not name.
 * promtool comes from scripts/provision/prometheus.sh.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { API_KEY, META, json, post, startTestApp, type TestApp } from '../helpers/app.js';
import { REPO_ROOT as ROOT, promtool } from '../helpers/promtool.js';

const CATALOGUE = 'docs/metrics.md';

/**
 * prom-client's collectDefaultMetrics exports these as gauges whose names end in `_total`,
 * and promtool's linter says so ("non-counter metrics should not have "_total" suffix").
 * The names are prom-client's (its process-handle, -request and -resource collectors), not
 * Keyward's, and renaming them would break every dashboard built on prom-client's defaults,
 * so these exact remarks are accepted — and only these: a remark about any other family,
 * or another remark about these, fails the test. The scrape without these three families
 * must lint clean.
 */
const PROM_CLIENT_TOTAL_GAUGES = ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total'];
const ACCEPTED_REMARKS = new Set(PROM_CLIENT_TOTAL_GAUGES.map((name) => `${name} non-counter metrics should not have "_total" suffix`));

/** The ops-port routes: not API traffic, and never counted in the HTTP metrics. */
const OPS_ROUTES = ['/live', '/ready', '/health', '/leases', '/metrics'];

const METRIC_TYPES = new Set(['counter', 'gauge', 'histogram', 'summary', 'untyped']);

// --- promtool ------------------------------------------------------------------------


// --- the exposition format -----------------------------------------------------------

interface Sample {
  readonly name: string;
  readonly labels: ReadonlyMap<string, string>;
  readonly line: number;
}

interface Family {
  readonly name: string;
  readonly type: string;
  help: string | undefined;
  readonly samples: Sample[];
}

const NAME = '[a-zA-Z_:][a-zA-Z0-9_:]*';
const SAMPLE_LINE = new RegExp(`^(${NAME})(?:\\{(.*)\\})?[ \\t]+(\\S+)(?:[ \\t]+(-?\\d+))?$`);
const LABEL_PAIR = /\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*(?:,|$)/y;

function parseLabels(text: string, line: number): Map<string, string> {
  const labels = new Map<string, string>();
  LABEL_PAIR.lastIndex = 0;
  while (LABEL_PAIR.lastIndex < text.length) {
    const start = LABEL_PAIR.lastIndex;
    const match = LABEL_PAIR.exec(text);
    assert.ok(match, `line ${line}: cannot parse the labels at "${text.slice(start)}"`);
    assert.ok(!labels.has(match[1]!), `line ${line}: label ${match[1]} twice`);
    labels.set(match[1]!, match[2]!);
  }
  return labels;
}

/** The families of a Prometheus text exposition (format 0.0.4), each with its help text and samples. */
function parseExposition(exposition: string): Map<string, Family> {
  const families = new Map<string, Family>();
  const help = new Map<string, string>();
  exposition.split('\n').forEach((raw, index) => {
    const line = index + 1;
    const text = raw.trimEnd();
    if (text === '') return;
    const meta = /^#\s+(HELP|TYPE)\s+(\S+)(?:\s+(.*))?$/.exec(text);
    if (meta) {
      const name = meta[2]!;
      const rest = meta[3] ?? '';
      if (meta[1] === 'HELP') {
        assert.ok(!help.has(name), `line ${line}: a second # HELP for ${name}`);
        help.set(name, rest);
      } else {
        assert.ok(!families.has(name), `line ${line}: a second # TYPE for ${name}`);
        assert.ok(METRIC_TYPES.has(rest), `line ${line}: unknown type "${rest}" for ${name}`);
        families.set(name, { name, type: rest, help: undefined, samples: [] });
      }
      return;
    }
    if (text.startsWith('#')) return;
    const match = SAMPLE_LINE.exec(text);
    assert.ok(match, `line ${line}: not a sample: ${text}`);
    const name = match[1]!;
    const family = families.get(familyOf(name, families) ?? name);
    assert.ok(family, `line ${line}: ${name} belongs to no family with a # TYPE line before it`);
    family.samples.push({ name, labels: parseLabels(match[2] ?? '', line), line });
  });
  for (const family of families.values()) family.help = help.get(family.name);
  return families;
}

/** The family a sample name belongs to: itself, or a histogram/summary it is a series of. */
function familyOf(sampleName: string, families: ReadonlyMap<string, { readonly type: string }>): string | undefined {
  if (families.has(sampleName)) return sampleName;
  for (const [suffix, types] of [
    ['_bucket', ['histogram']],
    ['_sum', ['histogram', 'summary']],
    ['_count', ['histogram', 'summary']],
  ] as const) {
    if (!sampleName.endsWith(suffix)) continue;
    const base = sampleName.slice(0, -suffix.length);
    const type = families.get(base)?.type;
    if (type !== undefined && (types as readonly string[]).includes(type)) return base;
  }
  return undefined;
}

/** The labels a sample may carry beyond its family's own: `le` on buckets, `quantile` on summaries. */
function implicitLabels(family: Family, sample: Sample): string[] {
  if (family.type === 'histogram' && sample.name === `${family.name}_bucket`) return ['le'];
  if (family.type === 'summary' && sample.name === family.name) return ['quantile'];
  return [];
}

/** Drops whole families (their HELP, TYPE and sample lines) from an exposition. */
function withoutFamilies(text: string, names: readonly string[]): string {
  const drop = new Set(names);
  return text
    .split('\n')
    .filter((line) => {
      const meta = /^#\s+(?:HELP|TYPE)\s+(\S+)/.exec(line);
      if (meta) return !drop.has(meta[1]!);
      const sample = new RegExp(`^(${NAME})`).exec(line);
      return !(sample && drop.has(sample[1]!));
    })
    .join('\n');
}

// --- the catalogue (docs/metrics.md) -------------------------------------------------

interface CatalogueEntry {
  readonly name: string;
  readonly type: string;
  readonly labels: readonly string[];
  readonly meaning: string;
  readonly line: number;
}

/** The cells of a markdown table row; `\|` is a literal pipe inside a cell. */
function cells(row: string): string[] {
  const inner = row.trim().replace(/^\|/, '').replace(/\|$/, '');
  return inner.split(/(?<!\\)\|/).map((cell) => cell.trim().replace(/\\\|/g, '|'));
}

/**
 * Every row of every `| metric | type | labels | meaning |` table, outside code fences.
 * A malformed row fails loudly rather than being skipped, so the document stays checkable.
 */
function parseCatalogue(markdown: string): Map<string, CatalogueEntry> {
  const entries = new Map<string, CatalogueEntry>();
  const lines = markdown.split('\n');
  let fenced = false;
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    if (/^\s*(```|~~~)/.test(line)) fenced = !fenced;
    if (fenced || !line.trim().startsWith('|')) continue;
    const header = cells(line).map((cell) => cell.toLowerCase());
    if (header.join('|') !== 'metric|type|labels|meaning') continue;
    const separator = lines[i + 1] ?? '';
    assert.ok(cells(separator).every((cell) => /^:?-{3,}:?$/.test(cell)), `${CATALOGUE}:${i + 2}: a table separator row must follow the header`);
    for (i += 2; i < lines.length && lines[i]!.trim().startsWith('|'); i++) {
      const at = `${CATALOGUE}:${i + 1}`;
      const row = cells(lines[i]!);
      assert.equal(row.length, 4, `${at}: a catalogue row has 4 cells (metric, type, labels, meaning): ${lines[i]}`);
      const [nameCell, typeCell, labelsCell, meaning] = row as [string, string, string, string];
      const name = /^`([a-zA-Z_:][a-zA-Z0-9_:]*)`$/.exec(nameCell)?.[1];
      assert.ok(name, `${at}: the metric cell must be one name in backticks, not ${nameCell}`);
      assert.ok(METRIC_TYPES.has(typeCell), `${at}: unknown type ${typeCell}`);
      const labels =
        labelsCell === '' || labelsCell === '—' || labelsCell === '-'
          ? []
          : labelsCell.split(',').map((cell) => {
              const label = /^`([a-zA-Z_][a-zA-Z0-9_]*)`$/.exec(cell.trim())?.[1];
              assert.ok(label, `${at}: labels are backticked names separated by commas (or — for none), not ${labelsCell}`);
              return label;
            });
      assert.ok(!entries.has(name), `${at}: ${name} is catalogued twice`);
      assert.ok(meaning.length > 0, `${at}: ${name} has no meaning`);
      entries.set(name, { name, type: typeCell, labels, meaning, line: i + 1 });
    }
    i--;
  }
  return entries;
}

/** Families prom-client only exports on Linux (their rows say "Linux only"). */
function expectedOnThisPlatform(entry: CatalogueEntry): boolean {
  return process.platform === 'linux' || !/Linux only/.test(entry.meaning);
}

// --- the tests -----------------------------------------------------------------------

describe('metrics on /metrics', () => {
  let app: TestApp;
  let scrape: string;
  let families: Map<string, Family>;
  let catalogue: Map<string, CatalogueEntry>;

  before(async () => {
    app = await startTestApp();
    // Some of everything: successes, a KMS call each way, an unknown tenant (404, code 201),
    // a malformed body (400), an unmatched route, /api/1 calls from an SDK, probes.
    const generated = await post(app, '/v1/keys/generate', { tenantId: 'tenant-a', metadata: META });
    assert.equal(generated.statusCode, 200, generated.body);
    const { edek } = json<{ edek: string }>(generated);
    const unwrapped = await post(app, '/v1/keys/unwrap', { tenantId: 'tenant-a', edek, metadata: META });
    assert.equal(unwrapped.statusCode, 200, unwrapped.body);
    const unknown = await post(app, '/v1/keys/generate', { tenantId: 'tenant-nobody', metadata: META });
    assert.equal(unknown.statusCode, 404, unknown.body);
    const malformed = await post(app, '/v1/keys/wrap', '{"tenantId": ');
    assert.equal(malformed.statusCode, 400, malformed.body);
    const nowhere = await post(app, '/v1/keys/nothing-here', {});
    assert.equal(nowhere.statusCode, 404, nowhere.body);
    const sdk = (endpoint: string, body: unknown) =>
      app.api.inject({
        method: 'POST',
        url: `/api/1/${endpoint}`,
        headers: { authorization: `cmk ${API_KEY}`, 'content-type': 'application/json', 'x-icl-tsc-language': 'java' },
        payload: JSON.stringify(body),
      });
    const iclFields = { requestingId: 'metrics-test' };
    const wrapped = await sdk('document/wrap', { tenantId: 'tenant-b', iclFields, customFields: {} });
    assert.equal(wrapped.statusCode, 200, wrapped.body);
    const event = await sdk('event/security-event', { tenantId: 'tenant-b', iclFields: { ...iclFields, event: 'USER_LOGIN' } });
    assert.equal(event.statusCode, 200, event.body);
    for (const url of ['/live', '/ready', '/health', '/leases', '/metrics']) {
      assert.equal((await app.ops.inject({ url })).statusCode, 200, url);
    }

    const response = await app.ops.inject({ url: '/metrics' });
    assert.equal(response.statusCode, 200);
    assert.match(response.headers['content-type'] as string, /^text\/plain; version=0\.0\.4/);
    scrape = response.body;
    families = parseExposition(scrape);
    catalogue = parseCatalogue(readFileSync(join(ROOT, CATALOGUE), 'utf8'));
  });
  after(() => app.close());

  it('counts the traffic: routes as templates, statuses, KMS calls, SDK languages; never the ops port', () => {
    const has = (family: string, labels: Record<string, string>): boolean =>
      (families.get(family)?.samples ?? []).some((s) => s.name === family && Object.entries(labels).every(([k, v]) => s.labels.get(k) === v));
    assert.ok(has('keyward_http_requests_total', { route: '/v1/keys/generate', status: '200' }));
    assert.ok(has('keyward_http_requests_total', { route: '/v1/keys/generate', status: '404' }), 'the unknown tenant');
    assert.ok(has('keyward_http_requests_total', { route: '/v1/keys/wrap', status: '400' }), 'the malformed body');
    assert.ok(has('keyward_http_requests_total', { route: 'unmatched', status: '404' }), 'the unmatched route');
    assert.ok(has('keyward_http_requests_total', { route: '/api/1/document/wrap', status: '200' }));
    assert.ok(has('keyward_kms_requests_total', { provider: 'local', operation: 'wrap', outcome: 'ok' }));
    assert.ok(has('keyward_kms_requests_total', { provider: 'local', operation: 'unwrap', outcome: 'ok' }));
    assert.ok(has('keyward_client_sdk_requests_total', { language: 'java' }));
    assert.ok(has('keyward_security_events_total', { outcome: 'accepted' }));
    const routes = new Set((families.get('keyward_http_requests_total')?.samples ?? []).map((s) => s.labels.get('route')));
    for (const route of OPS_ROUTES) assert.ok(!routes.has(route), `ops route ${route} is counted as API traffic`);
    // No label value carries a tenant id.
    assert.doesNotMatch(scrape, /tenant-(a|b|nobody)/);
  });

  it('passes promtool check metrics: no remarks but prom-client\'s _total gauges, none at all without them', () => {
    // promtool check metrics exits 0 and prints nothing on clean input; it exits 3 and
    // prints one "<name> <problem>" line per lint problem (on stderr), 1 on a parse error.
    const full = promtool(['check', 'metrics'], scrape);
    const remarks = `${full.stdout}${full.stderr}`.split('\n').filter((line) => line.trim() !== '');
    assert.ok(full.status === 0 || full.status === 3, `promtool check metrics exited ${full.status}: ${full.stdout}${full.stderr}`);
    assert.equal(full.status === 0, remarks.length === 0, `exit ${full.status} with remarks ${JSON.stringify(remarks)}`);
    const unexpected = remarks.filter((remark) => !ACCEPTED_REMARKS.has(remark));
    assert.deepEqual(unexpected, [], 'promtool remarks on something other than prom-client\'s _total gauges');

    const rest = promtool(['check', 'metrics'], withoutFamilies(scrape, PROM_CLIENT_TOTAL_GAUGES));
    assert.equal(rest.stdout + rest.stderr, '', 'promtool check metrics without the three prom-client gauges');
    assert.equal(rest.status, 0);
  });

  it(`exports every family in ${CATALOGUE}, with the catalogued type`, () => {
    const missing: string[] = [];
    const wrongType: string[] = [];
    for (const family of families.values()) {
      const entry = catalogue.get(family.name);
      if (!entry) missing.push(`${family.name} (${family.type}): ${family.help ?? ''}`);
      else if (entry.type !== family.type) wrongType.push(`${family.name}: exported as ${family.type}, catalogued as ${entry.type} (line ${entry.line})`);
    }
    assert.deepEqual({ missing, wrongType }, { missing: [], wrongType: [] }, `exported but not in ${CATALOGUE}, or catalogued with another type`);
    assert.ok(families.size > 40, `parsed the scrape (${families.size} families)`);
  });

  it(`catalogues in ${CATALOGUE} only what is exported`, () => {
    const absent = [...catalogue.values()].filter((entry) => expectedOnThisPlatform(entry) && !families.has(entry.name)).map((entry) => `${entry.name} (line ${entry.line})`);
    assert.deepEqual(absent, [], `in ${CATALOGUE} but not exported`);
    // Every Keyward metric has help text, and the audit ones are there before the audit code counts anything.
    for (const name of ['keyward_audit_events_emitted_total', 'keyward_audit_events_dropped_total', 'keyward_audit_queue_events', 'keyward_lease_wipe_in_seconds']) {
      assert.ok(families.has(name), name);
    }
    for (const family of families.values()) {
      if (family.name.startsWith('keyward_')) assert.ok(family.help && family.help.length > 10, `${family.name} has help text`);
    }
  });

  it(`puts on samples only labels that ${CATALOGUE} names for their family`, () => {
    const stray: string[] = [];
    let checked = 0;
    for (const family of families.values()) {
      const entry = catalogue.get(family.name);
      if (!entry) continue; // reported by the test above
      const allowed = new Set(entry.labels);
      for (const sample of family.samples) {
        const extra = new Set(implicitLabels(family, sample));
        for (const label of sample.labels.keys()) {
          checked++;
          if (!allowed.has(label) && !extra.has(label)) stray.push(`${sample.name}{${label}} (catalogued: ${entry.labels.join(', ') || 'none'}; first at scrape line ${sample.line})`);
        }
      }
    }
    const firstOfEach = [...new Map(stray.map((line) => [line.replace(/; first at.*$/, ''), line])).values()];
    assert.deepEqual(firstOfEach, []);
    assert.ok(checked > 50, `checked the labels of the samples (${checked})`);
  });
});
