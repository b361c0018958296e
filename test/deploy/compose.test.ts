/**
 * docker-compose.yml and deploy/compose/, without a Docker engine (none runs where Keyward is
 * developed):
 *
 *  1. The file as Compose sees it: `docker-compose config` (the Python docker-compose 1.29.2,
 *     installed by scripts/provision/docker-compose.sh, which validates and resolves a compose
 *     file without an engine), with and without the observability profile, and the resolved
 *     configuration inspected: images and build targets, Keyward's hardening and loopback-only
 *     ports, healthchecks, every bind mount a file of this repository, the Prometheus and
 *     Grafana files, and the tenants file through Keyward's own parser.
 *  2. The same wiring run for real, without Docker: the stand-ins (scripts/standins/serve.ts,
 *     with the standins service's environment) in a private network namespace, reachable only
 *     through their published ports, as from another container; local-kms (the emulator the
 *     local-kms service runs) seeded from deploy/compose/local-kms-seed.yaml; a SoftHSM token
 *     made by the dev image's entrypoint (taken from the Dockerfile) with the keyward service's
 *     environment; and a real Keyward process with that environment and a copy of
 *     deploy/compose/tenants.yaml whose service names are replaced by 127.0.0.1 and the test's
 *     ports. Every tenant then does a generate/unwrap round trip.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { accessSync, constants, existsSync, readFileSync, statSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, posix } from 'node:path';
import { localKmsAnswers } from '../helpers/local-kms.js';
import { parse as parseYaml } from 'yaml';
import { parseTenantsFile } from '../../src/config/tenants-file.js';
import { edekFromBase64 } from '../../src/envelope/edek.js';
import type { KmsConfig } from '../../src/tenants/directory.js';
import { TEST_CACHE, emulatorFile, freePort, startEmulator, type Emulator } from '../helpers/emulator.js';
import { REPO, startKeyward, stopKeyward, type KeywardProcess } from '../helpers/process.js';
import { promtool } from '../helpers/promtool.js';
import { execForm, last, parseDockerfile, parseHealthcheck, stageEnv } from './container-dockerfile.js';
import { startInNetns, type NetnsProcess } from './compose-netns.js';

const COMPOSE = join(TEST_CACHE, 'docker-compose', 'venv', 'bin', 'docker-compose');
const HELM_FILES = join(REPO, 'helm', 'keyward', 'files');

interface Service {
  image?: string;
  build?: { context: string; target?: string; dockerfile?: string };
  environment?: Record<string, string>;
  volumes?: string[];
  ports?: string[];
  expose?: string[];
  read_only?: boolean;
  user?: string;
  cap_drop?: string[];
  security_opt?: string[];
  tmpfs?: string[];
  healthcheck?: { test: string[] | string; interval?: string; start_period?: string };
  depends_on?: Record<string, { condition: string }>;
  profiles?: string[];
}

interface ComposeConfig {
  services: Record<string, Service>;
  volumes?: Record<string, unknown>;
}

function composeConfig(...extra: string[]): ComposeConfig {
  try {
    accessSync(COMPOSE, constants.X_OK);
  } catch {
    assert.fail(`${COMPOSE} is missing: run \`bash scripts/provision/docker-compose.sh\` (npm test runs it)`);
  }
  // A clean environment: no variable of the caller's may fill the file's ${…} defaults.
  const result = spawnSync(COMPOSE, ['-f', 'docker-compose.yml', ...extra, 'config'], {
    cwd: REPO,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '' },
    encoding: 'utf8',
    timeout: 60_000,
  });
  assert.equal(result.status, 0, `docker-compose ${extra.join(' ')} config failed:\n${result.stderr}`);
  return parseYaml(result.stdout) as ComposeConfig;
}

interface Mount {
  readonly source: string;
  readonly target: string;
  readonly readOnly: boolean;
  readonly bind: boolean;
}

function mounts(service: Service): Mount[] {
  return (service.volumes ?? []).map((v) => {
    const [source, target, mode] = v.split(':') as [string, string, string | undefined];
    return { source, target, readOnly: mode === 'ro', bind: source.startsWith('/') };
  });
}

function mountOf(service: Service, target: string): Mount {
  const m = mounts(service).find((x) => x.target === target);
  assert.ok(m, `no mount at ${target}: ${JSON.stringify(service.volumes)}`);
  return m;
}

/** The repository file that a path inside a container comes from, through the service's bind mounts. */
function hostPath(service: Service, containerPath: string): string | undefined {
  for (const m of mounts(service)) {
    if (!m.bind) continue;
    if (containerPath === m.target) return m.source;
    if (containerPath.startsWith(`${m.target}/`)) return join(m.source, containerPath.slice(m.target.length + 1));
  }
  return undefined;
}

/** Every `{ env: NAME }` secret reference in a parsed YAML document. */
function envRefs(node: unknown, out = new Set<string>()): Set<string> {
  if (Array.isArray(node)) for (const x of node) envRefs(x, out);
  else if (node !== null && typeof node === 'object') {
    const entries = Object.entries(node);
    if (entries.length === 1 && entries[0]![0] === 'env' && typeof entries[0]![1] === 'string') out.add(entries[0]![1]);
    else for (const [, v] of entries) envRefs(v, out);
  }
  return out;
}

/** Prometheus' rule_files globs (filepath.Match): `*` and `?` within one path segment. */
function globMatches(glob: string, path: string): boolean {
  const re = glob.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '[^/]*').replace(/\?/g, '[^/]');
  return new RegExp(`^${re}$`).test(path);
}

function healthcheckTest(service: Service): string[] {
  const t = service.healthcheck?.test;
  assert.ok(Array.isArray(t), `healthcheck in exec form: ${JSON.stringify(t)}`);
  return t;
}

const dockerfile = parseDockerfile(readFileSync(join(REPO, 'Dockerfile'), 'utf8'));
const tenantsText = readFileSync(join(REPO, 'deploy', 'compose', 'tenants.yaml'), 'utf8');

describe('docker-compose.yml, as docker-compose 1.29.2 resolves it', () => {
  let plain: ComposeConfig;
  let observability: ComposeConfig;
  let s: Record<string, Service>;

  before(() => {
    plain = composeConfig();
    observability = composeConfig('--profile', 'observability');
    s = observability.services;
  });

  it('validates with and without the observability profile; Prometheus and Grafana are in that profile only', () => {
    assert.deepEqual(Object.keys(plain.services).sort(), ['grafana', 'keyward', 'local-kms', 'prometheus', 'standins']);
    assert.deepEqual(observability, plain, '1.29.2 resolves every service; the profile only selects at `up`');
    for (const [name, service] of Object.entries(s)) {
      const expected = name === 'prometheus' || name === 'grafana' ? ['observability'] : undefined;
      assert.deepEqual(service.profiles, expected, `${name}: profiles`);
    }
  });

  it('every service runs a pinned image or a named target of the Dockerfile', () => {
    const stages = new Set(dockerfile.stages.map((st) => st.name));
    assert.deepEqual(s.keyward!.build, { context: REPO.replace(/\/$/, ''), target: 'dev' }, 'keyward: the dev target (runtime + SoftHSM2)');
    assert.deepEqual(s.standins!.build, { context: REPO.replace(/\/$/, ''), target: 'standins' });
    for (const name of ['keyward', 'standins']) {
      assert.ok(stages.has(s[name]!.build!.target), `${name}: target ${s[name]!.build!.target} is a Dockerfile stage`);
      assert.equal(s[name]!.image, undefined);
    }
    assert.equal(s['local-kms']!.image, 'nsmithuk/local-kms:3.11.7', 'the release of the commit scripts/provision/local-kms.sh builds');
    assert.match(s.prometheus!.image!, /^prom\/prometheus:v\d+\.\d+\.\d+$/);
    assert.match(s.grafana!.image!, /^grafana\/grafana:\d+\.\d+\.\d+$/);
  });

  it('keyward and the stand-ins run hardened: uid 1000, read-only root, /tmp on tmpfs, no capabilities, no new privileges', () => {
    for (const name of ['keyward', 'standins']) {
      const svc = s[name]!;
      assert.equal(svc.user, '1000:1000', name);
      assert.equal(svc.read_only, true, name);
      assert.deepEqual(svc.tmpfs, ['/tmp'], name);
      assert.deepEqual(svc.cap_drop, ['ALL'], name);
      assert.ok(svc.security_opt?.includes('no-new-privileges:true'), name);
    }
    // Writable places of the read-only keyward are volumes, and are what the dev image expects.
    const writable = mounts(s.keyward!).filter((m) => !m.readOnly).map((m) => m.target).sort();
    assert.deepEqual(writable, ['/var/lib/keyward', '/var/lib/keyward-softhsm']);
  });

  it('every published port is bound to 127.0.0.1; Keyward publishes 7777 (API) and 9000 (ops)', () => {
    for (const [name, svc] of Object.entries(s)) {
      for (const port of svc.ports ?? []) assert.match(port, /^127\.0\.0\.1:\d+:\d+\/tcp$/, `${name}: ${port}`);
    }
    assert.deepEqual(s.keyward!.ports, ['127.0.0.1:7777:7777/tcp', '127.0.0.1:9000:9000/tcp']);
    assert.equal(s.standins!.ports, undefined, 'the stand-ins are for Keyward, on the compose network only');
  });

  it('every service has a healthcheck; Keyward waits for healthy local-kms and stand-ins', () => {
    for (const [name, svc] of Object.entries(s)) assert.ok(svc.healthcheck?.test, `${name} has a healthcheck`);
    assert.deepEqual(s.keyward!.depends_on, { 'local-kms': { condition: 'service_healthy' }, standins: { condition: 'service_healthy' } });
    assert.deepEqual(healthcheckTest(s.keyward!).slice(0, 3), ['CMD', 'node', '-e']);
    assert.match(healthcheckTest(s.keyward!)[3]!, /http:\/\/127\.0\.0\.1:9000\/live/);
    // The stand-ins' healthcheck probes the ports the service is told to serve.
    const env = s.standins!.environment!;
    for (const p of [env.STANDINS_AZURE_VAULT_PORT, env.STANDINS_AZURE_TOKEN_PORT, env.STANDINS_GCP_PORT]) {
      assert.ok(healthcheckTest(s.standins!)[3]!.includes(p!), `standins healthcheck probes ${p}`);
      assert.ok(s.standins!.expose!.includes(p!));
    }
    assert.match(healthcheckTest(s['local-kms']!).join(' '), new RegExp(`http://127\\.0\\.0\\.1:${s['local-kms']!.environment!.PORT}/`));
  });

  it('every bind mount is a file or directory of this repository; named volumes are declared', () => {
    for (const [name, svc] of Object.entries(s)) {
      for (const m of mounts(svc)) {
        if (m.bind) {
          assert.ok(m.source.startsWith(REPO), `${name}: ${m.source} is in the repository`);
          assert.ok(existsSync(m.source), `${name}: ${m.source} exists`);
          assert.ok(m.readOnly, `${name}: ${m.source} is mounted read-only`);
        } else {
          assert.ok(Object.hasOwn(observability.volumes ?? {}, m.source), `${name}: volume ${m.source} is declared`);
        }
      }
    }
    // Keyward reads the tenants file from its directory, mounted read-only (hot reload sees renames).
    const keyward = s.keyward!;
    const config = keyward.environment!.KEYWARD_CONFIG!;
    assert.equal(mountOf(keyward, posix.dirname(config)).source, join(REPO, 'deploy', 'compose'));
    assert.ok(statSync(mountOf(keyward, posix.dirname(config)).source).isDirectory());
    assert.equal(hostPath(keyward, config), join(REPO, 'deploy', 'compose', 'tenants.yaml'));
    assert.equal(hostPath(s['local-kms']!, s['local-kms']!.environment!.KMS_SEED_PATH!), join(REPO, 'deploy', 'compose', 'local-kms-seed.yaml'));
    // The stand-ins' CA reaches Keyward through the volume both mount.
    const tls = mountOf(s.standins!, s.standins!.environment!.KEYWARD_TEST_CACHE!);
    const ca = keyward.environment!.NODE_EXTRA_CA_CERTS!;
    const caMount = mounts(keyward).find((m) => m.source === tls.source);
    assert.ok(caMount?.readOnly, 'keyward mounts the stand-ins TLS volume read-only');
    assert.equal(ca, `${caMount.target}/azure-standin/ca.pem`, 'NODE_EXTRA_CA_CERTS names the CA that serve.ts writes (KEYWARD_TEST_CACHE/azure-standin/ca.pem)');
  });

  it('Prometheus: scrapes keyward:9000 and loads the rules file of the Helm chart; promtool accepts the configuration', async () => {
    const prometheus = s.prometheus!;
    const configFile = hostPath(prometheus, '/etc/prometheus/prometheus.yml');
    assert.equal(configFile, join(REPO, 'deploy', 'compose', 'prometheus.yml'));
    const config = parseYaml(readFileSync(configFile, 'utf8')) as {
      rule_files: string[];
      scrape_configs: Array<{ job_name: string; metrics_path?: string; static_configs: Array<{ targets: string[] }> }>;
    };
    const job = config.scrape_configs.find((j) => j.job_name === 'keyward');
    assert.ok(job);
    // Keyward's ops port: KEYWARD_OPS_PORT's default, 9000, not changed in the keyward service.
    assert.equal(s.keyward!.environment!.KEYWARD_OPS_PORT, undefined);
    assert.deepEqual(job.static_configs.flatMap((c) => c.targets), ['keyward:9000']);
    assert.equal(job.metrics_path ?? '/metrics', '/metrics');
    // The rule_files glob inside the container matches exactly the mounted chart rules.
    const ruleMounts = mounts(prometheus).filter((m) => config.rule_files.some((glob) => globMatches(glob, m.target)));
    assert.deepEqual(ruleMounts.map((m) => m.source), [join(HELM_FILES, 'prometheus-rules.yaml')]);

    // promtool checks the configuration and the rules it loads (paths mapped to the repository).
    const dir = await mkdtemp(join(tmpdir(), 'keyward-compose-prom-'));
    try {
      await writeFile(join(dir, 'prometheus.yml'), readFileSync(configFile, 'utf8').replace('/etc/prometheus/rules/*.yaml', join(HELM_FILES, 'prometheus-rules.yaml')));
      const run = promtool(['check', 'config', join(dir, 'prometheus.yml')]);
      assert.equal(run.status, 0, run.stdout + run.stderr);
      assert.match(run.stdout, /SUCCESS: \d+ rules found/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('Grafana: a default Prometheus data source, and a provider for the directory holding the chart dashboard', () => {
    const grafana = s.grafana!;
    const provisioning = mountOf(grafana, '/etc/grafana/provisioning');
    assert.equal(provisioning.source, join(REPO, 'deploy', 'compose', 'grafana', 'provisioning'));
    const ds = parseYaml(readFileSync(join(provisioning.source, 'datasources', 'prometheus.yaml'), 'utf8')) as {
      apiVersion: number;
      datasources: Array<{ type: string; url: string; isDefault?: boolean; uid?: string }>;
    };
    assert.equal(ds.apiVersion, 1);
    assert.equal(ds.datasources.length, 1);
    assert.equal(ds.datasources[0]!.type, 'prometheus');
    assert.equal(ds.datasources[0]!.isDefault, true, "the dashboard's datasource variable falls back to the default");
    assert.ok(s.prometheus!.ports!.some((p) => p.endsWith(`:${new URL(ds.datasources[0]!.url).port}/tcp`)));
    assert.equal(new URL(ds.datasources[0]!.url).hostname, 'prometheus');

    const providers = parseYaml(readFileSync(join(provisioning.source, 'dashboards', 'keyward.yaml'), 'utf8')) as {
      apiVersion: number;
      providers: Array<{ type: string; options: { path: string } }>;
    };
    assert.equal(providers.apiVersion, 1);
    assert.equal(providers.providers.length, 1);
    assert.equal(providers.providers[0]!.type, 'file');
    const dashboardDir = providers.providers[0]!.options.path;
    const dashboards = mounts(grafana).filter((m) => posix.dirname(m.target) === dashboardDir);
    assert.deepEqual(dashboards.map((m) => m.source), [join(HELM_FILES, 'grafana-dashboard.json')]);
    assert.equal(grafana.environment!.GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH, dashboards[0]!.target);

    const dashboard = JSON.parse(readFileSync(dashboards[0]!.source, 'utf8')) as { templating: { list: Array<{ name: string; type: string; query: string }> } };
    const variable = dashboard.templating.list.find((v) => v.name === 'datasource');
    assert.deepEqual(variable && { type: variable.type, query: variable.query }, { type: 'datasource', query: ds.datasources[0]!.type });
  });

  it('deploy/compose/tenants.yaml is valid for Keyward and has one tenant per KMS provider, wired to the services', () => {
    const keyward = s.keyward!;
    const env = keyward.environment!;
    const directory = parseTenantsFile(tenantsText, { baseDir: posix.dirname(env.KEYWARD_CONFIG!), defaultKmsTimeoutMs: 2000 });
    const configs = [...directory.configs()];
    const byProvider = new Map<string, KmsConfig>(configs.map((c) => [c.provider, c]));
    assert.deepEqual([...byProvider.keys()].sort(), ['aws', 'azure', 'gcp', 'local', 'pkcs11']);
    assert.equal(configs.length, 5);
    assert.equal(new Set(configs.map((c) => c.tenantId)).size, 5, 'one tenant per provider');
    for (const c of configs) assert.equal(c.status, 'primary');

    // Secrets are references, and every one is set in keyward's environment.
    for (const name of envRefs(parseYaml(tenantsText))) assert.ok(env[name], `${name} is set for keyward`);

    const local = byProvider.get('local')!;
    assert.ok(local.provider === 'local' && mounts(keyward).some((m) => !m.readOnly && local.local.keyFile.startsWith(`${m.target}/`)), 'the local key file is on a writable volume');

    const aws = byProvider.get('aws')!;
    assert.ok(aws.provider === 'aws');
    const kmsEnv = s['local-kms']!.environment!;
    assert.equal(aws.aws.endpoint, `http://local-kms:${kmsEnv.PORT}`);
    assert.equal(aws.aws.region, kmsEnv.KMS_REGION);
    const seed = parseYaml(readFileSync(join(REPO, 'deploy', 'compose', 'local-kms-seed.yaml'), 'utf8')) as {
      Keys: { Symmetric: { Aes: Array<{ Metadata: { KeyId: string } }> } };
    };
    const seeded = seed.Keys.Symmetric.Aes.map((k) => `arn:aws:kms:${kmsEnv.KMS_REGION}:${kmsEnv.KMS_ACCOUNT_ID}:key/${k.Metadata.KeyId}`);
    assert.ok(seeded.includes(aws.aws.keyId), `${aws.aws.keyId} is seeded`);

    const standins = s.standins!.environment!;
    const azure = byProvider.get('azure')!;
    assert.ok(azure.provider === 'azure');
    assert.equal(azure.azure.vaultUrl, `https://${standins.STANDINS_PUBLIC_HOST}:${standins.STANDINS_AZURE_VAULT_PORT}`);
    assert.ok(azure.azure.credentials.type === 'clientSecret');
    assert.equal(azure.azure.credentials.authorityHost, `https://${standins.STANDINS_PUBLIC_HOST}:${standins.STANDINS_AZURE_TOKEN_PORT}`);
    assert.ok(standins.STANDINS_TLS_NAMES!.split(',').includes(standins.STANDINS_PUBLIC_HOST!), 'the certificate names the host Keyward uses');
    assert.equal(standins.AZURE_STANDIN_CLIENT_SECRET, env.AZURE_STANDIN_CLIENT_SECRET, 'the same client secret on both sides');
    const gcp = byProvider.get('gcp')!;
    assert.ok(gcp.provider === 'gcp');
    assert.equal(gcp.gcp.endpoint, `${standins.STANDINS_PUBLIC_HOST}:${standins.STANDINS_GCP_PORT}`);

    const hsm = byProvider.get('pkcs11')!;
    assert.ok(hsm.provider === 'pkcs11');
    assert.equal(hsm.pkcs11.tokenLabel, env.KEYWARD_SOFTHSM_TOKEN_LABEL);
    assert.equal(hsm.pkcs11.keyLabel, env.KEYWARD_SOFTHSM_KEY_LABEL);
    assert.equal(env.KEYWARD_SOFTHSM_INIT, '1');
  });
});

describe('the compose wiring run without Docker: stand-ins, local-kms, SoftHSM and Keyward', () => {
  let compose: ComposeConfig;
  let work: string;
  let standins: NetnsProcess | undefined;
  let standinsInfo: { azure: { vaultUrl: string; authorityHost: string; tenantId: string; clientId: string; keyName: string }; gcp: { endpoint: string; keyName: string } };
  let ports: { vault: number; token: number; gcp: number };
  let localKms: Emulator | undefined;
  let keyward: KeywardProcess | undefined;
  let tenantIds: string[];

  before(async () => {
    compose = composeConfig();
    work = await mkdtemp(join(tmpdir(), 'keyward-compose-e2e-'));
    // A container's environment: its image's ENV, then the service's `environment`.
    const standinsEnv = { ...stageEnv(dockerfile, 'standins'), ...compose.services.standins!.environment! };
    const keywardEnv = { ...stageEnv(dockerfile, compose.services.keyward!.build!.target!), ...compose.services.keyward!.environment! };
    const kmsEnv = compose.services['local-kms']!.environment!;

    // The stand-ins, with the standins service's environment, in a network namespace of their own:
    // from here only the published ports are reachable (on 127.0.0.1), as from the keyward container.
    ports = { vault: await freePort(), token: await freePort(), gcp: await freePort() };
    const caFile = join(TEST_CACHE, 'azure-standin', 'ca.pem');
    standins = await startInNetns({
      command: process.execPath,
      args: ['--import', 'tsx', 'scripts/standins/serve.ts'],
      cwd: REPO,
      ports: [ports.vault, ports.token, ports.gcp],
      env: {
        PATH: process.env.PATH ?? '',
        HOME: process.env.HOME ?? '',
        ...standinsEnv,
        STANDINS_AZURE_VAULT_PORT: String(ports.vault),
        STANDINS_AZURE_TOKEN_PORT: String(ports.token),
        STANDINS_GCP_PORT: String(ports.gcp),
        // Reached here as 127.0.0.1 (compose: `standins`), with the tests' provisioned CA (compose:
        // the standins-tls volume), which covers 127.0.0.1.
        STANDINS_PUBLIC_HOST: '127.0.0.1',
        STANDINS_TLS_NAMES: '127.0.0.1,localhost',
        KEYWARD_TEST_CACHE: TEST_CACHE,
      },
    });
    const ready = await standins.waitForLine((l) => l.startsWith('{"msg":"stand-ins ready"'));
    standinsInfo = JSON.parse(ready) as typeof standinsInfo;

    // local-kms as the local-kms service runs it: its environment and the seed file.
    const binary = await emulatorFile('local-kms', 'local-kms');
    localKms = await startEmulator({
      name: 'local-kms',
      command: binary,
      args: () => [],
      env: (port) => ({
        ...kmsEnv,
        PORT: String(port),
        KMS_SEED_PATH: join(REPO, 'deploy', 'compose', 'local-kms-seed.yaml'),
        KMS_DATA_PATH: join(work, 'local-kms-data'),
      }),
      ready: (port) => localKmsAnswers(port, kmsEnv.KMS_REGION),
      startTimeoutMs: 20_000,
      isolateNetwork: true,
    });

    // The SoftHSM token, made by the dev image's entrypoint with keyward's environment.
    const entrypoint = dockerfile.stage('dev').instructions.find((i) => i.keyword === 'COPY' && i.args.includes('keyward-dev-entrypoint'))!.heredocs[0]!.body;
    await writeFile(join(work, 'keyward-dev-entrypoint'), entrypoint, { mode: 0o755 });
    const softhsmDir = join(work, 'softhsm');
    const init = spawnSync(join(work, 'keyward-dev-entrypoint'), ['true'], {
      env: { PATH: process.env.PATH ?? '', ...keywardEnv, KEYWARD_SOFTHSM_DIR: softhsmDir, SOFTHSM2_CONF: join(softhsmDir, 'softhsm2.conf') },
      encoding: 'utf8',
    });
    assert.equal(init.status, 0, init.stderr);

    // The tenants file, with the compose service names replaced by where they are here.
    const replacements: Array<[string, string]> = [
      [`http://local-kms:${kmsEnv.PORT}`, `http://127.0.0.1:${localKms.port}`],
      [`https://${standinsEnv.STANDINS_PUBLIC_HOST}:${standinsEnv.STANDINS_AZURE_VAULT_PORT}`, standinsInfo.azure.vaultUrl],
      [`https://${standinsEnv.STANDINS_PUBLIC_HOST}:${standinsEnv.STANDINS_AZURE_TOKEN_PORT}`, standinsInfo.azure.authorityHost],
      [`${standinsEnv.STANDINS_PUBLIC_HOST}:${standinsEnv.STANDINS_GCP_PORT}`, standinsInfo.gcp.endpoint],
      ['/var/lib/keyward/', `${join(work, 'keyward-data')}/`],
    ];
    let tenants = tenantsText;
    for (const [from, to] of replacements) {
      assert.ok(tenants.includes(from), `the tenants file names ${from}`);
      tenants = tenants.split(from).join(to);
    }
    assert.doesNotMatch(tenants, /local-kms:|standins:|\/var\/lib\//, 'every service name was replaced');
    await writeFile(join(work, 'tenants.yaml'), tenants);
    tenantIds = [...parseTenantsFile(tenants, { baseDir: work, defaultKmsTimeoutMs: 2000 }).configs()].map((c) => c.tenantId);

    keyward = await startKeyward({
      ...keywardEnv,
      KEYWARD_CONFIG: join(work, 'tenants.yaml'),
      NODE_EXTRA_CA_CERTS: caFile,
      SOFTHSM2_CONF: join(softhsmDir, 'softhsm2.conf'),
    });
  });

  after(async () => {
    if (keyward) await stopKeyward(keyward);
    await localKms?.close();
    await standins?.stop();
    if (work) await rm(work, { recursive: true, force: true });
  });

  const post = async (path: string, body: unknown): Promise<{ status: number; json: Record<string, unknown> }> => {
    const res = await fetch(`${keyward!.apiUrl}${path}`, {
      method: 'POST',
      headers: { authorization: `Bearer ${compose.services.keyward!.environment!.KEYWARD_API_KEY}`, 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
    return { status: res.status, json: (await res.json()) as Record<string, unknown> };
  };

  it('every tenant generates a DEK through its KMS and unwraps it again', async () => {
    assert.deepEqual([...tenantIds].sort(), ['tenant-aws', 'tenant-azure', 'tenant-gcp', 'tenant-hsm', 'tenant-local']);
    const edeks: Record<string, string> = {};
    for (const tenantId of tenantIds) {
      const gen = await post('/v1/keys/generate', { tenantId, metadata: { requestingId: 'compose-test' } });
      assert.equal(gen.status, 200, `${tenantId}: ${JSON.stringify(gen.json)}\n${keyward!.lines.slice(-20).join('\n')}`);
      const { dek, edek } = gen.json as { dek: string; edek: string };
      assert.equal(edekFromBase64(edek)[0]!.tenantId, tenantId);
      const un = await post('/v1/keys/unwrap', { tenantId, edek, metadata: { requestingId: 'compose-test' } });
      assert.equal(un.status, 200, `${tenantId}: ${JSON.stringify(un.json)}`);
      assert.equal(un.json.dek, dek, tenantId);
      edeks[tenantId] = edek;
    }
    // Bound to its tenant: another tenant's EDEK is refused.
    const wrong = await post('/v1/keys/unwrap', { tenantId: 'tenant-aws', edek: edeks['tenant-gcp'], metadata: { requestingId: 'compose-test' } });
    assert.equal(wrong.status, 400);
    assert.equal(wrong.json.code, 203);

    const health = (await (await fetch(`${keyward!.opsUrl}/health`)).json()) as { drivers: Record<string, number> };
    assert.equal(health.drivers.ready, 5, JSON.stringify(health));
    assert.equal(health.drivers.failed ?? 0, 0, JSON.stringify(health));
    assert.equal((await fetch(`${keyward!.opsUrl}/live`)).status, 200);
  });

  it('the stand-ins answer under the name the client used: the token endpoint is one the client can reach', async () => {
    // MSAL takes the token endpoint from this document: it must name the published port, not the
    // stand-in's own inside its namespace (which Keyward, above, could not have reached).
    const url = `${standinsInfo.azure.authorityHost}/${standinsInfo.azure.tenantId}/v2.0/.well-known/openid-configuration`;
    const doc = (await (await fetch(url)).json()) as { token_endpoint: string; issuer: string };
    assert.equal(doc.token_endpoint, `${standinsInfo.azure.authorityHost}/${standinsInfo.azure.tenantId}/oauth2/v2.0/token`);
    assert.ok(doc.issuer.startsWith(standinsInfo.azure.authorityHost));
    assert.equal(standinsInfo.azure.keyName, 'tenant-azure');
    assert.equal(standinsInfo.gcp.keyName, 'projects/keyward-local/locations/local/keyRings/keyward/cryptoKeys/tenant-gcp');
  });

  it("the standins image's HEALTHCHECK passes against the running stand-ins, and fails when a port is closed", async () => {
    const check = parseHealthcheck(last(dockerfile, 'standins', 'HEALTHCHECK')!);
    const command = execForm(JSON.stringify(check.command))!;
    assert.equal(command[0], 'node');
    const run = (env: Record<string, string>): number | null =>
      spawnSync(process.execPath, command.slice(1), { env: { PATH: process.env.PATH ?? '', ...env }, timeout: 10_000 }).status;
    const portsEnv = { STANDINS_AZURE_VAULT_PORT: String(ports.vault), STANDINS_AZURE_TOKEN_PORT: String(ports.token), STANDINS_GCP_PORT: String(ports.gcp) };
    assert.equal(run(portsEnv), 0);
    assert.equal(run({ ...portsEnv, STANDINS_GCP_PORT: String(await freePort()) }), 1);
  });

  it('the stand-ins stop cleanly on SIGTERM (they run as PID 1 in their container)', async () => {
    const code = await standins!.stop();
    standins = undefined;
    assert.equal(code, 0);
  });
});
