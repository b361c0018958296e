/**
 * The Prometheus rules and the Grafana dashboard shipped for the Helm chart
 * (helm/keyward/files/): the rules pass `promtool check rules` and their unit tests
 * (test/observability/rules-test.yaml, `promtool test rules`); every alert is documented
 * in docs/metrics.md#alerts and tested firing; the dashboard is an importable Grafana
 * dashboard whose queries parse; and every metric either file names is one Keyward
 * exports (a family of docs/metrics.md, which metrics.test.ts checks against a scrape).
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse, stringify } from 'yaml';
import { REPO_ROOT as ROOT, promtool } from '../helpers/promtool.js';

const RULES = 'helm/keyward/files/prometheus-rules.yaml';
const RULE_TESTS = 'test/observability/rules-test.yaml';
const DASHBOARD = 'helm/keyward/files/grafana-dashboard.json';
const CATALOGUE = 'docs/metrics.md';
const RUNBOOK = 'https://github.com/keyward/keyward/blob/main/docs/metrics.md#alerts';

const REQUIRED_ALERTS = [
  'KeywardKmsUnreachable',
  'KeywardLeasesStale',
  'KeywardLeaseApproachingWipe',
  'KeywardLeaseWipedRevoked',
  'KeywardLeaseWipedOutage',
  'KeywardAuditEventsDropped',
  'KeywardAuditQueueBacklog',
  'KeywardAuditRefusingOperations',
  'KeywardConfigReloadFailed',
  'KeywardAvailabilityBudgetFastBurn',
  'KeywardAvailabilityBudgetSlowBurn',
  'KeywardLatencyBudgetFastBurn',
  'KeywardLatencyBudgetSlowBurn',
];

// --- promtool ------------------------------------------------------------------------


function promtoolOutput(args: readonly string[]): { status: number | null; output: string } {
  const run = promtool(args);
  return { status: run.status, output: `${run.stdout}${run.stderr}` };
}

// --- the files -----------------------------------------------------------------------

interface Rule {
  readonly record?: string;
  readonly alert?: string;
  readonly expr: string;
  readonly for?: string;
  readonly labels?: Record<string, string>;
  readonly annotations?: Record<string, string>;
}

interface RuleFile {
  readonly groups: readonly { readonly name: string; readonly rules: readonly Rule[] }[];
}

interface RuleTests {
  readonly rule_files: readonly string[];
  readonly tests: readonly {
    readonly name?: string;
    readonly alert_rule_test?: readonly { readonly alertname: string; readonly eval_time: string; readonly exp_alerts?: readonly unknown[] }[];
  }[];
}

interface Target {
  readonly refId?: string;
  readonly expr?: string;
  readonly datasource?: { readonly type?: string; readonly uid?: string };
}

interface Panel {
  readonly id?: number;
  readonly type?: string;
  readonly title?: string;
  readonly gridPos?: { readonly x: number; readonly y: number; readonly w: number; readonly h: number };
  readonly datasource?: { readonly type?: string; readonly uid?: string };
  readonly targets?: readonly Target[];
  readonly panels?: readonly Panel[];
}

interface Variable {
  readonly name: string;
  readonly type: string;
  readonly query?: unknown;
  readonly definition?: string;
  readonly datasource?: { readonly type?: string; readonly uid?: string };
}

interface Dashboard {
  readonly uid: string;
  readonly title: string;
  readonly schemaVersion: number;
  readonly refresh: string;
  readonly templating: { readonly list: readonly Variable[] };
  readonly panels: readonly Panel[];
}

const read = (path: string): string => readFileSync(join(ROOT, path), 'utf8');
const rules = parse(read(RULES)) as RuleFile;
const allRules = rules.groups.flatMap((group) => group.rules);
const alerts = allRules.filter((rule): rule is Rule & { alert: string } => rule.alert !== undefined);
const recorded = new Set(allRules.flatMap((rule) => (rule.record === undefined ? [] : [rule.record])));
const dashboard = JSON.parse(read(DASHBOARD)) as Dashboard;

/** Every panel, rows' nested panels (collapsed rows keep theirs inside) included. */
function allPanels(panels: readonly Panel[]): Panel[] {
  return panels.flatMap((panel) => [panel, ...allPanels(panel.panels ?? [])]);
}
const panels = allPanels(dashboard.panels);
const queryPanels = panels.filter((panel) => panel.type !== 'row');

/** Every PromQL expression of the dashboard: panel targets and the variables' queries. */
function dashboardExprs(): { where: string; key: string; expr: string }[] {
  const exprs = queryPanels.flatMap((panel) =>
    (panel.targets ?? []).map((target) => ({ where: `panel ${panel.id} "${panel.title}" ${target.refId}`, key: `panel_${panel.id}_${target.refId}`, expr: target.expr ?? '' })),
  );
  for (const variable of dashboard.templating.list) {
    if (variable.type !== 'query') continue;
    const query = typeof variable.query === 'string' ? variable.query : (variable.query as { query?: string } | undefined)?.query ?? variable.definition ?? '';
    exprs.push({ where: `variable ${variable.name}`, key: `variable_${variable.name}`, expr: query });
  }
  return exprs;
}

/** The families of docs/metrics.md's catalogue tables, with their types. */
function catalogueFamilies(): Map<string, string> {
  const families = new Map<string, string>();
  let fenced = false;
  let inTable = false;
  for (const line of read(CATALOGUE).split('\n')) {
    if (/^\s*(```|~~~)/.test(line)) fenced = !fenced;
    if (fenced) continue;
    const cells = line.trim().startsWith('|') ? line.trim().replace(/^\||\|$/g, '').split('|').map((cell) => cell.trim()) : undefined;
    if (!cells) {
      inTable = false;
      continue;
    }
    if (cells.map((cell) => cell.toLowerCase()).join('|') === 'metric|type|labels|meaning') {
      inTable = true;
      continue;
    }
    const name = inTable ? /^`([a-zA-Z_:][a-zA-Z0-9_:]*)`$/.exec(cells[0] ?? '')?.[1] : undefined;
    if (name) families.set(name, cells[1] ?? '');
  }
  return families;
}

/**
 * The metric names an expression refers to: its identifiers once string literals are
 * gone, keeping those of Keyward's and prom-client's prefixes and recording-rule names
 * (they have a colon). Functions, keywords and label names have neither.
 */
function metricNames(expr: string): string[] {
  const code = expr.replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`/g, '""');
  const identifiers = code.match(/[a-zA-Z_:][a-zA-Z0-9_:]*/g) ?? [];
  return [...new Set(identifiers.filter((id) => /^(keyward|process|nodejs)_/.test(id) || id.includes(':')))];
}

/** The catalogue family a series name belongs to (a histogram's _bucket/_sum/_count are its family's). */
function familyOf(name: string, families: ReadonlyMap<string, string>): string | undefined {
  if (families.has(name)) return name;
  const base = /^(.*)_(bucket|sum|count)$/.exec(name)?.[1];
  return base !== undefined && ['histogram', 'summary'].includes(families.get(base) ?? '') ? base : undefined;
}

/** Grafana's variables replaced by values Prometheus can parse. */
function withoutGrafanaVariables(expr: string): string {
  return expr
    .replace(/\$__rate_interval|\$\{__rate_interval\}|\$__interval|\$\{__interval\}|\$__range|\$\{__range\}/g, '5m')
    .replace(/\$\{?[a-zA-Z_][a-zA-Z0-9_]*\}?/g, '.*');
}

// --- the tests -----------------------------------------------------------------------

describe('Prometheus rules', () => {
  it('pass promtool check rules', () => {
    const { status, output } = promtoolOutput(['check', 'rules', RULES]);
    assert.equal(status, 0, output);
    assert.match(output, new RegExp(`SUCCESS: ${allRules.length} rules found`), output);
    assert.doesNotMatch(output, /FAILED|WARNING/i, output);
  });

  it(`pass their unit tests (promtool test rules ${RULE_TESTS})`, () => {
    const { status, output } = promtoolOutput(['test', 'rules', RULE_TESTS]);
    assert.equal(status, 0, output);
    assert.match(output, /^\s*SUCCESS\s*$/m, output);
    assert.doesNotMatch(output, /FAILED/, output);
  });

  it('test the rules file the chart ships', () => {
    const tests = parse(read(RULE_TESTS)) as RuleTests;
    assert.deepEqual(tests.rule_files, [`../../${RULES}`]);
  });

  it('have every required alert, each with a severity, a summary, a description and the runbook link', () => {
    const names = alerts.map((alert) => alert.alert);
    assert.deepEqual(names.filter((name, i) => names.indexOf(name) !== i), [], 'alert names are unique');
    for (const name of REQUIRED_ALERTS) assert.ok(names.includes(name), `${name} is in ${RULES}`);
    for (const alert of alerts) {
      assert.match(alert.labels?.severity ?? '', /^(critical|warning)$/, `${alert.alert}: severity`);
      assert.ok((alert.annotations?.summary ?? '').length > 10, `${alert.alert}: summary`);
      assert.ok((alert.annotations?.description ?? '').length > 20, `${alert.alert}: description`);
      assert.equal(alert.annotations?.runbook_url, RUNBOOK, `${alert.alert}: runbook_url`);
    }
  });

  it('record the SLI ratios over 5m, 30m, 1h and 6h', () => {
    for (const sli of ['job:keyward_api_availability_errors', 'job:keyward_api_latency_slow']) {
      for (const window of ['5m', '30m', '1h', '6h']) assert.ok(recorded.has(`${sli}:ratio_rate${window}`), `${sli}:ratio_rate${window}`);
    }
  });

  it(`are each described under "## Alerts" in ${CATALOGUE}, and only they`, () => {
    const doc = read(CATALOGUE);
    const section = /^## Alerts\n([\s\S]*?)(?=^## |(?![\s\S]))/m.exec(doc)?.[1];
    assert.ok(section, `${CATALOGUE} has an "## Alerts" section`);
    const documented = [...section.matchAll(/^### (\S+)\s*$/gm)].map((match) => match[1]!);
    assert.deepEqual([...documented].sort(), alerts.map((alert) => alert.alert).sort());
  });

  it('are each shown firing by at least one unit test', () => {
    const tests = parse(read(RULE_TESTS)) as RuleTests;
    const firing = new Set(tests.tests.flatMap((test) => (test.alert_rule_test ?? []).filter((t) => (t.exp_alerts ?? []).length > 0).map((t) => t.alertname)));
    assert.deepEqual(alerts.map((alert) => alert.alert).filter((name) => !firing.has(name)), []);
  });
});

describe('Grafana dashboard', () => {
  it('is a Grafana dashboard with the agreed identity and variables', () => {
    assert.equal(dashboard.uid, 'keyward-overview');
    assert.equal(dashboard.title, 'Keyward');
    assert.equal(dashboard.schemaVersion, 39);
    assert.equal(dashboard.refresh, '30s');
    const variables = new Map(dashboard.templating.list.map((variable) => [variable.name, variable]));
    const datasource = variables.get('datasource');
    assert.equal(datasource?.type, 'datasource');
    assert.equal(datasource?.query, 'prometheus');
    for (const name of ['job', 'instance']) {
      const variable = variables.get(name);
      assert.equal(variable?.type, 'query', name);
      assert.equal(variable?.datasource?.uid, '${datasource}', name);
      assert.match(String(variable?.query), new RegExp(`^label_values\\(keyward_leases(\\{[^}]*\\})?, ${name}\\)$`), name);
    }
  });

  it('has unique panel ids and a place on the grid for every panel, without overlaps', () => {
    const ids = panels.map((panel) => panel.id);
    assert.ok(ids.every((id) => Number.isInteger(id)), 'every panel has an id');
    assert.equal(new Set(ids).size, ids.length, 'panel ids are unique');
    const taken = new Map<string, number | undefined>();
    for (const panel of dashboard.panels) {
      const grid = panel.gridPos;
      assert.ok(grid, `panel ${panel.id} has a gridPos`);
      for (const key of ['x', 'y', 'w', 'h'] as const) assert.ok(Number.isInteger(grid[key]) && grid[key] >= 0, `panel ${panel.id} gridPos.${key}`);
      assert.ok(grid.w > 0 && grid.h > 0 && grid.x + grid.w <= 24, `panel ${panel.id} fits the 24-column grid`);
      for (let x = grid.x; x < grid.x + grid.w; x++) {
        for (let y = grid.y; y < grid.y + grid.h; y++) {
          const other = taken.get(`${x},${y}`);
          assert.equal(other, undefined, `panel ${panel.id} overlaps panel ${other}`);
          taken.set(`${x},${y}`, panel.id);
        }
      }
    }
  });

  it('queries the chosen Prometheus data source in every panel, each target with an expression', () => {
    assert.ok(queryPanels.length >= 20, `${queryPanels.length} panels`);
    for (const panel of queryPanels) {
      assert.deepEqual(panel.datasource, { type: 'prometheus', uid: '${datasource}' }, `panel ${panel.id} "${panel.title}" data source`);
      assert.ok((panel.targets ?? []).length > 0, `panel ${panel.id} "${panel.title}" has targets`);
      const refIds = (panel.targets ?? []).map((target) => target.refId);
      assert.equal(new Set(refIds).size, refIds.length, `panel ${panel.id}: unique refIds`);
      for (const target of panel.targets ?? []) {
        assert.ok(typeof target.expr === 'string' && target.expr.trim() !== '', `panel ${panel.id} "${panel.title}" ${target.refId}: expr`);
        if (target.datasource) assert.equal(target.datasource.uid, '${datasource}', `panel ${panel.id} ${target.refId}: data source`);
        if (/\brate\(|\bincrease\(/.test(target.expr) && !/\[(5m|1h)\]/.test(target.expr)) {
          assert.match(target.expr, /\[\$__rate_interval\]/, `panel ${panel.id} ${target.refId}: rate over $__rate_interval`);
        }
      }
    }
  });

  it('has queries that Prometheus parses', () => {
    // promtool parses rule expressions: check the dashboard's as recording rules, with
    // Grafana's variables replaced by values.
    const dir = mkdtempSync(join(tmpdir(), 'keyward-dashboard-'));
    try {
      const file = join(dir, 'dashboard-queries.yaml');
      const exprs = dashboardExprs().filter(({ key }) => key.startsWith('panel_'));
      const groups = [{ name: 'dashboard', rules: exprs.map(({ key, expr }) => ({ record: `dashboard:${key}`, expr: withoutGrafanaVariables(expr) })) }];
      writeFileSync(file, stringify({ groups }));
      const { status, output } = promtoolOutput(['check', 'rules', file]);
      assert.equal(status, 0, output);
      assert.match(output, new RegExp(`SUCCESS: ${exprs.length} rules found`), output);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe(`metrics named by the rules and the dashboard`, () => {
  const families = catalogueFamilies();

  it(`are families of ${CATALOGUE}, or rules recorded in ${RULES}`, () => {
    assert.ok(families.size > 40, `parsed the catalogue (${families.size} families)`);
    const sources = [...allRules.map((rule) => ({ where: `${RULES}: ${rule.record ?? rule.alert}`, expr: rule.expr })), ...dashboardExprs().map(({ where, expr }) => ({ where: `${DASHBOARD}: ${where}`, expr }))];
    const unknown: string[] = [];
    let checked = 0;
    for (const { where, expr } of sources) {
      for (const name of metricNames(expr)) {
        checked++;
        if (recorded.has(name)) continue;
        if (!familyOf(name, families)) unknown.push(`${where}: ${name}`);
      }
    }
    assert.deepEqual(unknown, []);
    assert.ok(checked > 50, `checked the metric names (${checked})`);
  });

  it('include every Keyward family the dashboard should show', () => {
    const shown = new Set(dashboardExprs().flatMap(({ expr }) => metricNames(expr).map((name) => familyOf(name, families))));
    const missing = [...families.keys()].filter((name) => name.startsWith('keyward_') && !shown.has(name));
    assert.deepEqual(missing, [], 'Keyward families without a dashboard panel');
  });
});
