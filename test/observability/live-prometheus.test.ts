/**
 * The shipped dashboard and rules against real data: a real Prometheus server (Debian's
 * prometheus package) scrapes a live Keyward every second while it serves traffic —
 * direct and leased tenants, failures, /api/1 calls, an HTTP audit sink — and loads the
 * rule file. Then every query of every dashboard panel is run through Prometheus' API
 * (each must evaluate; the panels the traffic feeds must have data), and every recording
 * and alerting rule must have evaluated without error. Grafana itself cannot be installed
 * here (not in Debian, not on the registries this machine reaches); this is the part of
 * "the dashboard works" that can be proven without it.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { startAuditCollector, type AuditCollector } from '../helpers/audit-collector.js';
import { API_KEY, post, startTestApp, type TestApp } from '../helpers/app.js';
import { REPO_ROOT } from '../helpers/promtool.js';

const RULES = join(REPO_ROOT, 'helm/keyward/files/prometheus-rules.yaml');
const DASHBOARD = join(REPO_ROOT, 'helm/keyward/files/grafana-dashboard.json');
const TOKEN = 'live-prometheus-token';

interface Panel {
  readonly title: string;
  readonly targets?: ReadonlyArray<{ readonly expr: string }>;
  readonly panels?: readonly Panel[];
}

/** Panels that the traffic below must give data. The others may rightly be empty (no stale lease, no drop). */
const MUST_HAVE_DATA = [
  'API requests',
  'API 5xx ratio',
  'API p99 latency',
  'Availability SLI: 5xx ratio on API routes',
  'Latency SLI: API requests slower than 250 ms',
  'KMS error ratio by provider',
  'Request rate by route and status',
  'Latency percentiles (API routes)',
  'Client errors (4xx) by status and route',
  'Errors by catalogue code',
  'KMS request rate by provider and outcome',
  'KMS latency p95 by provider and operation',
  'Lease keys by state',
  'Lease cache hit ratio',
  'Audit events emitted, delivered and retried by sink type',
  'Audit queue depth',
  'Audit events unaccounted for',
  'Client SDK requests by language',
  'Security events by outcome',
  'CPU',
  'Resident memory',
];

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  await new Promise((resolve) => server.close(resolve));
  if (typeof address !== 'object' || !address) throw new Error('no port');
  return address.port;
}

describe('dashboard and rules on a real Prometheus scraping a live Keyward', () => {
  let dir: string;
  let app: TestApp;
  let collector: AuditCollector;
  let prometheus: ChildProcess;
  let promUrl: string;
  let promLog = '';

  const query = async (expr: string): Promise<{ status: string; error?: string; data?: { result: unknown[] } }> => {
    const res = await fetch(`${promUrl}/api/v1/query?query=${encodeURIComponent(expr)}`);
    return (await res.json()) as { status: string; error?: string; data?: { result: unknown[] } };
  };

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'keyward-live-prometheus-'));
    collector = await startAuditCollector({ token: TOKEN });
    app = await startTestApp({
      env: { SIEM_TOKEN: TOKEN },
      tenants: `
version: 1
audit:
  sinks:
    siem: { type: http, http: { url: '${collector.url}/events', token: { env: SIEM_TOKEN } } }
  default: { sinks: [siem, stdout] }
tenants:
  direct:
    kmsConfigs:
      - { id: 1, status: primary, provider: local, local: { keyFile: keys/a.key } }
  leased:
    kmsConfigs:
      - { id: 2, status: primary, provider: local, local: { keyFile: keys/a.key }, leasing: { enabled: true } }
`,
    });
    await app.ops.listen({ host: '127.0.0.1', port: 0 });
    const ops = app.ops.server.address();
    assert.ok(typeof ops === 'object' && ops);
    const port = await freePort();
    promUrl = `http://127.0.0.1:${port}`;
    await writeFile(
      join(dir, 'prometheus.yml'),
      `global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - ${RULES}
scrape_configs:
  - job_name: keyward
    static_configs:
      - targets: ['127.0.0.1:${ops.port}']
`,
    );
    prometheus = spawn('prometheus', [`--config.file=${join(dir, 'prometheus.yml')}`, `--storage.tsdb.path=${join(dir, 'data')}`, `--web.listen-address=127.0.0.1:${port}`], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    prometheus.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
      promLog += chunk;
    });
    let spawnError: Error | undefined;
    prometheus.on('error', (err) => {
      spawnError = err;
    });
    for (let i = 0; ; i++) {
      try {
        if ((await fetch(`${promUrl}/-/ready`)).ok) break;
      } catch {
        // not listening yet
      }
      if (spawnError) assert.fail(`cannot run prometheus (${spawnError.message}): it comes with Debian's prometheus package, which scripts/provision/prometheus.sh installs`);
      if (i > 150 || prometheus.exitCode !== null) assert.fail(`prometheus did not become ready:\n${promLog}`);
      await sleep(100);
    }

    // Eight seconds of mixed traffic, scraped every second.
    const until = Date.now() + 8_000;
    while (Date.now() < until) {
      for (const tenantId of ['direct', 'leased']) {
        const edek = (await post(app, '/v1/keys/generate', { tenantId, metadata: { requestingId: 'live' } })).json<{ edek: string }>().edek;
        await post(app, '/v1/keys/unwrap', { tenantId, edek, metadata: { requestingId: 'live' } });
      }
      await post(app, '/v1/keys/generate', { tenantId: 'nobody', metadata: { requestingId: 'live' } });
      await app.api.inject({
        method: 'POST',
        url: '/api/1/event/security-event',
        headers: { authorization: `cmk ${API_KEY}`, 'content-type': 'application/json', 'x-icl-tsc-language': 'node' },
        payload: JSON.stringify({ tenantId: 'direct', iclFields: { requestingId: 'live', event: 'USER_LOGIN' } }),
      });
      await sleep(50);
    }
    await sleep(2_500);
  });

  after(async () => {
    if (prometheus?.pid !== undefined && prometheus.exitCode === null) {
      prometheus.kill('SIGTERM');
      await new Promise((resolve) => prometheus.once('exit', resolve));
    }
    await app?.close();
    await collector?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('Prometheus scrapes Keyward, and every dashboard query evaluates; the panels the traffic feeds have data', async () => {
    const up = await query('up{job="keyward"}');
    assert.deepEqual((up.data?.result as Array<{ value: [number, string] }>).map((r) => r.value[1]), ['1'], promLog);
    const dashboard = JSON.parse(await readFile(DASHBOARD, 'utf8')) as { panels: Panel[] };
    const panels: Panel[] = [];
    const walk = (list: readonly Panel[]): void => {
      for (const panel of list) {
        panels.push(panel);
        walk(panel.panels ?? []);
      }
    };
    walk(dashboard.panels);
    const empty: string[] = [];
    let queries = 0;
    for (const panel of panels) {
      for (const target of panel.targets ?? []) {
        // What Grafana would substitute: all jobs and instances, a rate window of a few scrapes.
        const expr = target.expr.replaceAll('$__rate_interval', '5s').replaceAll('$job', '.*').replaceAll('$instance', '.*');
        const answer = await query(expr);
        queries += 1;
        assert.equal(answer.status, 'success', `${panel.title}: ${answer.error ?? ''}\n${expr}`);
        if ((answer.data?.result.length ?? 0) === 0) empty.push(panel.title);
      }
    }
    assert.ok(queries >= 40, `ran ${queries} panel queries`);
    const missing = MUST_HAVE_DATA.filter((title) => empty.includes(title));
    assert.deepEqual(missing, [], `panels without data after the traffic: ${missing.join(', ')}`);
  });

  it('every recording and alerting rule loaded and evaluated without error; no alert fires on healthy traffic', async () => {
    const res = (await (await fetch(`${promUrl}/api/v1/rules`)).json()) as {
      data: { groups: Array<{ name: string; rules: Array<{ name: string; type: string; health: string; lastError?: string; state?: string }> }> };
    };
    const rules = res.data.groups.flatMap((g) => g.rules);
    assert.ok(rules.filter((r) => r.type === 'recording').length >= 8);
    assert.ok(rules.filter((r) => r.type === 'alerting').length >= 13);
    const unhealthy = rules.filter((r) => r.health !== 'ok').map((r) => `${r.name}: ${r.health} ${r.lastError ?? ''}`);
    assert.deepEqual(unhealthy, []);
    const availability = await query('job:keyward_api_availability_errors:ratio_rate5m');
    assert.equal(availability.data?.result.length, 1, 'the availability SLI is recorded');
    const firing = rules.filter((r) => r.type === 'alerting' && r.state !== 'inactive').map((r) => `${r.name} (${r.state})`);
    assert.deepEqual(firing, [], 'unknown-tenant 404s are caller faults: nothing fires');
  });
});
