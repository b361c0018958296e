/**
 * The Helm chart helm/keyward: `helm lint --strict` and `helm template` with the default
 * values and with every example, every rendered object decoded strictly with the real
 * Kubernetes API types (tools/k8s-validate), the properties the chart promises (hardening,
 * probes, the tenants ConfigMap mounted as a directory for hot reload, the API key from a
 * Secret, TLS on the API port from Secrets mounted as directories, API keys scoped to
 * tenants, scaling, monitoring, network policy, workload identity), values that
 * values.schema.json or the chart's own checks refuse, the sidecar example, and the chart
 * README's values table. helm and the validator come from scripts/provision/helm.sh.
 */
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { parse, stringify } from 'yaml';
import { digestApiKey, loadProcessConfig } from '../../src/config/env.js';
import { parseTenantsFile } from '../../src/config/tenants-file.js';
import {
  CHART,
  REPO_ROOT,
  env,
  helm,
  parseObjects,
  render,
  renderFails,
  rendered,
  validate,
  type Container,
  type Deployment,
  type K8sObject,
  type PodSpec,
} from './helm-tools.js';

const EXAMPLES = readdirSync(join(CHART, 'examples'))
  .filter((name) => name.endsWith('.yaml'))
  .sort()
  .map((name) => join(CHART, 'examples', name));
const SIDECAR = join(CHART, 'examples', 'sidecar', 'payments-api.yaml');
const example = (name: string): string => join(CHART, 'examples', name);
const TENANTS_DIR = '/etc/keyward/tenants';
const TLS_DIR = '/etc/keyward/tls';
const CLIENT_CA_DIR = '/etc/keyward/tls-client-ca';
const API_KEY = 'a-test-api-key-of-32-characters!';
const TLS = ['--set', 'tls.enabled=true,tls.existingSecret=keyward-tls'];

/** Every values set the chart is checked with: the defaults, each example, and one with every option on. */
const KITCHEN_SINK = [
  '--set', 'autoscaling.enabled=true,autoscaling.targetMemoryUtilizationPercentage=80',
  '--set', 'opsService.enabled=true,serviceMonitor.enabled=true,prometheusRule.enabled=true,grafanaDashboard.enabled=true',
  '--set', 'networkPolicy.enabled=true,grafanaDashboard.folder=Keyward',
  '--set', 'apiKey.existingSecret=,apiKey.existingSecretKey2=',
  '--set-string', `apiKey.value=${API_KEY},apiKey.value2=${API_KEY.replace('a-test', 'b-test')}`,
  '--set', 'keyward.batchLimit=500,keyward.bodyLimit=1048576,keyward.kmsTimeout=3s,keyward.auditFlushTimeout=4s,keyward.configPoll=30s',
  '--set', 'tls.enabled=true,tls.existingSecret=keyward-tls,tls.clientCa.existingSecret=keyward-client-ca',
  '--set', 'apiKey.tenants={acme,acme-*}',
];
const VALUE_SETS: readonly { readonly name: string; readonly args: readonly string[] }[] = [
  { name: 'default values', args: [] },
  ...EXAMPLES.map((file) => ({ name: relative(CHART, file), args: ['-f', file] })),
  { name: 'every option on', args: KITCHEN_SINK },
];

function podSpec(deployment: Deployment): PodSpec {
  return deployment.spec.template.spec;
}

/** The tenants file the Deployment reads: the ConfigMap named by its `tenants` volume, at the key KEYWARD_CONFIG names. */
function tenantsFileOf(objects: readonly K8sObject[], deployment: Deployment, container: Container): string {
  const volume = podSpec(deployment).volumes?.find((v) => v.name === 'tenants');
  assert.ok(volume?.configMap, 'a tenants volume from a ConfigMap');
  const configMap = objects.find((o) => o.kind === 'ConfigMap' && o.metadata.name === volume.configMap!.name);
  assert.ok(configMap?.data, `the ConfigMap ${volume.configMap.name} is rendered`);
  const path = env(container, 'KEYWARD_CONFIG')?.value ?? '';
  assert.ok(path.startsWith(`${TENANTS_DIR}/`), `KEYWARD_CONFIG (${path}) is in ${TENANTS_DIR}`);
  const text = configMap.data[path.slice(TENANTS_DIR.length + 1)];
  assert.ok(text !== undefined, `${configMap.metadata.name} has the key ${path.slice(TENANTS_DIR.length + 1)}`);
  return text;
}

/** The environment Keyward would start with: literal values, a stand-in for each Secret reference, the pod name for fieldRefs. */
function processEnv(container: Container): Record<string, string> {
  const result: Record<string, string> = {};
  for (const e of container.env ?? []) {
    if (e.value !== undefined) result[e.name] = e.value;
    else if (e.valueFrom?.secretKeyRef) result[e.name] = `secret-${e.valueFrom.secretKeyRef.key}-of-enough-length`;
    else if (e.valueFrom?.fieldRef?.fieldPath === 'metadata.name') result[e.name] = 'keyward-7d9f8c-x2k4q';
  }
  return result;
}

describe('Helm chart helm/keyward', () => {
  it('passes helm lint --strict with the default values and with every example', () => {
    assert.ok(EXAMPLES.length >= 4, `examples found: ${EXAMPLES.join(', ')}`);
    for (const args of [[], ...EXAMPLES.map((file) => ['-f', file])]) {
      const run = helm(['lint', '--strict', CHART, ...args]);
      const output = `${run.stdout}${run.stderr}`;
      assert.equal(run.status, 0, `helm lint --strict ${args.join(' ')}:\n${output}`);
      assert.match(output, /1 chart\(s\) linted, 0 chart\(s\) failed/);
      assert.doesNotMatch(output, /\[(WARNING|ERROR)\]/, output);
    }
  });

  it('renders objects that decode strictly with the Kubernetes API types, for every values set (k8s-validate)', () => {
    for (const { name, args } of VALUE_SETS) {
      const { text, objects } = render(...args);
      const run = validate({ manifests: text });
      assert.equal(run.status, 0, `${name}:\n${run.stdout}${run.stderr}`);
      assert.equal(run.stdout.split('\n').filter((line) => line.startsWith('ok ')).length, objects.length, `${name}: one line per object\n${run.stdout}`);
      assert.match(run.stdout, new RegExp(`k8s-validate: ${objects.length} objects valid`));
    }
  });

  it('renders the expected objects with the default values: no Secret, no HPA, a PDB for two replicas', () => {
    const { objects, deployment } = render();
    assert.deepEqual(objects.map((o) => `${o.kind}/${o.metadata.name}`).sort(), [
      'ConfigMap/keyward-tenants',
      'Deployment/keyward',
      'PodDisruptionBudget/keyward',
      'Service/keyward',
      'ServiceAccount/keyward',
    ]);
    for (const o of objects) {
      assert.equal(o.metadata.namespace, 'keyward', `${o.kind} is in the release namespace`);
      assert.equal(o.metadata.labels?.['app.kubernetes.io/name'], 'keyward');
      assert.equal(o.metadata.labels?.['app.kubernetes.io/instance'], 'keyward');
      assert.equal(o.metadata.labels?.['app.kubernetes.io/managed-by'], 'Helm');
      assert.equal(o.metadata.labels?.['helm.sh/chart'], 'keyward-0.1.0');
      assert.equal(o.metadata.labels?.['app.kubernetes.io/version'], '0.1.0');
    }
    assert.equal(deployment().spec.replicas, 2);
    const container = render().keyward();
    assert.equal(container.image, 'ghcr.io/keyward/keyward:0.1.0');
    assert.equal(render('--set', 'image.digest=sha256:' + 'ab'.repeat(32)).keyward().image, `ghcr.io/keyward/keyward:0.1.0@sha256:${'ab'.repeat(32)}`);
  });

  it('runs non-root on a read-only root file system, without privileges, capabilities or an API token', () => {
    for (const { name, args } of VALUE_SETS) {
      const deployment = render(...args).deployment();
      const pod = podSpec(deployment);
      assert.equal(pod.securityContext?.runAsNonRoot, true, name);
      assert.equal(pod.securityContext?.runAsUser, 1000, name);
      assert.equal(pod.securityContext?.runAsGroup, 1000, name);
      assert.equal(pod.securityContext?.fsGroup, 1000, name);
      assert.equal(pod.securityContext?.seccompProfile?.type, 'RuntimeDefault', name);
      assert.equal(pod.automountServiceAccountToken, false, name);
      const sc = render(...args).keyward().securityContext;
      assert.equal(sc?.runAsNonRoot, true, name);
      assert.equal(sc?.runAsUser, 1000, name);
      assert.equal(sc?.runAsGroup, 1000, name);
      assert.equal(sc?.readOnlyRootFilesystem, true, name);
      assert.equal(sc?.allowPrivilegeEscalation, false, name);
      assert.equal(sc?.privileged, false, name);
      assert.deepEqual(sc?.capabilities, { drop: ['ALL'] }, name);
      assert.equal(sc?.seccompProfile?.type, 'RuntimeDefault', name);
      const tmp = pod.volumes?.find((v) => v.name === 'tmp');
      assert.ok(tmp?.emptyDir, `${name}: /tmp is an emptyDir`);
      assert.ok(render(...args).keyward().volumeMounts?.some((m) => m.name === 'tmp' && m.mountPath === '/tmp'), `${name}: writable /tmp`);
    }
    const sa = render().one('ServiceAccount');
    assert.equal(sa.automountServiceAccountToken, false);
  });

  it('listens on 7777 (api) and 9000 (ops) and probes the ops port: startup and liveness /live, readiness /ready', () => {
    const container = render().keyward();
    assert.deepEqual(container.ports?.map((p) => [p.name, p.containerPort]), [['api', 7777], ['ops', 9000]]);
    assert.deepEqual(container.startupProbe?.httpGet, { path: '/live', port: 'ops' });
    assert.deepEqual(container.livenessProbe?.httpGet, { path: '/live', port: 'ops' });
    assert.deepEqual(container.readinessProbe?.httpGet, { path: '/ready', port: 'ops' });
    assert.equal(env(container, 'KEYWARD_HOST')?.value, '0.0.0.0');
    assert.equal(env(container, 'KEYWARD_OPS_HOST')?.value, '0.0.0.0');
    assert.equal(env(container, 'KEYWARD_PORT')?.value, '7777');
    assert.equal(env(container, 'KEYWARD_OPS_PORT')?.value, '9000');
    assert.deepEqual(env(container, 'KEYWARD_REPLICA_ID')?.valueFrom, { fieldRef: { fieldPath: 'metadata.name' } });
    assert.equal(env(container, 'KEYWARD_LOG_LEVEL')?.value, 'info');

    const service = render().one<K8sObject & { spec: { type: string; ports: { name: string; port: number; targetPort: string }[] } }>('Service');
    assert.equal(service.spec.type, 'ClusterIP');
    assert.deepEqual(service.spec.ports.map((p) => [p.name, p.port, p.targetPort]), [['api', 7777, 'api'], ['ops', 9000, 'ops']]);

    const withOps = render('--set', 'opsService.enabled=true');
    const main = withOps.one<typeof service>('Service', 'keyward');
    const ops = withOps.one<typeof service>('Service', 'keyward-ops');
    assert.deepEqual(main.spec.ports.map((p) => p.name), ['api']);
    assert.deepEqual(ops.spec.ports.map((p) => [p.name, p.port, p.targetPort]), [['ops', 9000, 'ops']]);

    assert.equal(render('--set', 'livenessProbe.enabled=false').keyward().livenessProbe, undefined);
    assert.equal(render('--set', 'startupProbe.periodSeconds=7').keyward().startupProbe?.periodSeconds, 7);
  });

  it('gives every setting of the environment in a form Keyward accepts (loadProcessConfig)', () => {
    for (const { name, args } of VALUE_SETS) {
      const container = render(...args).keyward();
      const config = loadProcessConfig(processEnv(container), '/app');
      assert.equal(config.dev, false, name);
      assert.equal(config.configPath, env(container, 'KEYWARD_CONFIG')?.value, name);
      assert.deepEqual(config.api, { host: '0.0.0.0', port: 7777 }, name);
      assert.deepEqual(config.ops, { host: '0.0.0.0', port: 9000 }, name);
    }
    const tuned = loadProcessConfig(processEnv(render(...KITCHEN_SINK).keyward()), '/app');
    assert.equal(tuned.batchLimit, 500);
    assert.equal(tuned.bodyLimit, 1048576);
    assert.equal(tuned.kmsTimeoutMs, 3000);
    assert.equal(tuned.auditFlushTimeoutMs, 4000);
    assert.equal(tuned.configPollMs, 30_000);
    assert.equal(tuned.apiKeyDigests.length, 2);
    // Unset settings are left to Keyward's defaults rather than repeated.
    const defaults = render().keyward();
    for (const unset of ['KEYWARD_BATCH_LIMIT', 'KEYWARD_BODY_LIMIT', 'KEYWARD_KMS_TIMEOUT', 'KEYWARD_AUDIT_FLUSH_TIMEOUT', 'KEYWARD_CONFIG_POLL', 'KEYWARD_API_KEY_2']) {
      assert.equal(env(defaults, unset), undefined, unset);
    }
    assert.equal(env(render('--set', 'keyward.listenHost=::').keyward(), 'KEYWARD_OPS_HOST')?.value, '::');
  });

  it('mounts the tenants ConfigMap as a directory (no subPath, no items) and KEYWARD_CONFIG names the file in it', () => {
    for (const { name, args } of VALUE_SETS) {
      const { objects, deployment, keyward } = render(...args);
      const mount = keyward().volumeMounts?.find((m) => m.name === 'tenants');
      assert.deepEqual(mount, { name: 'tenants', mountPath: TENANTS_DIR, readOnly: true }, name);
      for (const m of keyward().volumeMounts ?? []) assert.equal(m.subPath, undefined, `${name}: ${m.name} has no subPath`);
      const volume = podSpec(deployment()).volumes?.find((v) => v.name === 'tenants');
      assert.deepEqual(volume, { name: 'tenants', configMap: { name: 'keyward-tenants' } }, name);
      assert.equal(env(keyward(), 'KEYWARD_CONFIG')?.value, `${TENANTS_DIR}/tenants.yaml`, name);
      // The tenants file is one Keyward accepts.
      const text = tenantsFileOf(objects, deployment(), keyward());
      assert.doesNotThrow(() => parseTenantsFile(text, { baseDir: TENANTS_DIR, defaultKmsTimeoutMs: 2000 }), name);
    }
    // As a string, the file is kept as written (comments included).
    const file = '# acme is on AWS\nversion: 1\ntenants: {}\n';
    const values = writeValues({ tenants: { inline: file } });
    const fromString = render('-f', values);
    assert.equal(tenantsFileOf(fromString.objects, fromString.deployment(), fromString.keyward()), file);
    // An existing ConfigMap: none is rendered, the volume names it, KEYWARD_CONFIG its key.
    const existing = render('--set', 'tenants.existingConfigMap=gitops-tenants,tenants.key=keyward.yaml');
    assert.equal(existing.all('ConfigMap').length, 0);
    assert.deepEqual(podSpec(existing.deployment()).volumes?.find((v) => v.name === 'tenants'), { name: 'tenants', configMap: { name: 'gitops-tenants' } });
    assert.equal(env(existing.keyward(), 'KEYWARD_CONFIG')?.value, `${TENANTS_DIR}/keyward.yaml`);
  });

  it('takes the API key from apiKey.existingSecret: no Secret of its own and no checksum annotation', () => {
    for (const args of [[], ['--set', 'apiKey.existingSecret=prod-key,apiKey.existingSecretKey=current,apiKey.existingSecretKey2=next']]) {
      const { all, deployment, keyward } = render(...args);
      assert.equal(all('Secret').length, 0, 'no Secret is rendered');
      assert.equal(deployment().spec.template.metadata.annotations?.['checksum/api-key'], undefined);
      const expected = args.length === 0 ? { name: 'keyward-api-key', key: 'api-key' } : { name: 'prod-key', key: 'current' };
      assert.deepEqual(env(keyward(), 'KEYWARD_API_KEY'), { name: 'KEYWARD_API_KEY', valueFrom: { secretKeyRef: expected } });
      assert.deepEqual(env(keyward(), 'KEYWARD_API_KEY_2'), args.length === 0 ? undefined : { name: 'KEYWARD_API_KEY_2', valueFrom: { secretKeyRef: { name: 'prod-key', key: 'next' } } });
    }
    for (const file of EXAMPLES) {
      assert.equal(render('-f', file).all('Secret').length, 0, `${relative(CHART, file)} uses an existing Secret`);
    }
  });

  it('creates the API key Secret from apiKey.value, with a checksum that rolls the pods on a new key but not on a tenants change', () => {
    const base = ['--set', 'apiKey.existingSecret=', '--set-string', `apiKey.value=${API_KEY}`];
    const { one, deployment, keyward } = render(...base);
    const secret = one('Secret');
    assert.equal(secret.metadata.name, 'keyward-api-key');
    assert.deepEqual(secret.data, { 'api-key': Buffer.from(API_KEY).toString('base64') });
    assert.deepEqual(env(keyward(), 'KEYWARD_API_KEY')?.valueFrom, { secretKeyRef: { name: 'keyward-api-key', key: 'api-key' } });
    const checksum = deployment().spec.template.metadata.annotations?.['checksum/api-key'];
    assert.match(checksum ?? '', /^[0-9a-f]{64}$/);

    const newKey = render('--set', 'apiKey.existingSecret=', '--set-string', `apiKey.value=${API_KEY.toUpperCase()}`);
    assert.notEqual(newKey.deployment().spec.template.metadata.annotations?.['checksum/api-key'], checksum, 'a new key changes the checksum');

    const newTenants = render(...base, '--set', 'tenants.inline.version=1,tenants.inline.tenants.acme.kmsConfigs={}');
    assert.notDeepEqual(newTenants.one('ConfigMap').data, render(...base).one('ConfigMap').data, 'the tenants file changed');
    assert.deepEqual(newTenants.deployment().spec.template, deployment().spec.template, 'a tenants change leaves the pod template alone: hot reload, no restart');
    for (const key of Object.keys(deployment().spec.template.metadata.annotations ?? {})) {
      assert.doesNotMatch(key, /tenant|config/i, 'no checksum of the tenants ConfigMap');
    }

    const rotation = render(...KITCHEN_SINK).one('Secret');
    assert.deepEqual(Object.keys(rotation.data ?? {}).sort(), ['api-key', 'api-key-2']);
  });

  it('gives the pods longer to stop than Keyward drains: terminationGracePeriodSeconds > shutdown timeout + preStop sleep', () => {
    for (const { name, args } of VALUE_SETS) {
      const pod = podSpec(render(...args).deployment());
      const container = render(...args).keyward();
      const shutdown = loadProcessConfig(processEnv(container), '/app').shutdownTimeoutMs / 1000;
      const sleep = container.lifecycle?.preStop?.sleep?.seconds ?? 0;
      assert.ok((pod.terminationGracePeriodSeconds ?? 30) > shutdown + sleep, `${name}: ${pod.terminationGracePeriodSeconds} > ${shutdown} + ${sleep}`);
    }
    assert.equal(podSpec(render().deployment()).terminationGracePeriodSeconds, 30);
    assert.deepEqual(render().keyward().lifecycle, { preStop: { sleep: { seconds: 5 } } });
    assert.equal(render('--set', 'lifecycle.preStopSleepSeconds=0').keyward().lifecycle, undefined);
  });

  it('spreads the replicas across zones and nodes, preferring (ScheduleAnyway) by default', () => {
    const { deployment } = render();
    const constraints = podSpec(deployment()).topologySpreadConstraints ?? [];
    assert.deepEqual(constraints.map((c) => [c.topologyKey, c.whenUnsatisfiable, c.maxSkew]), [
      ['topology.kubernetes.io/zone', 'ScheduleAnyway', 1],
      ['kubernetes.io/hostname', 'ScheduleAnyway', 1],
    ]);
    for (const c of constraints) assert.deepEqual(c.labelSelector.matchLabels, deployment().spec.selector.matchLabels);
    assert.equal(podSpec(render('--set', 'topologySpread.enabled=false').deployment()).topologySpreadConstraints, undefined);
  });

  it('scales with a HorizontalPodAutoscaler and keeps a PodDisruptionBudget when more than one replica runs', () => {
    const cluster = render('-f', example('cluster-aws-irsa.yaml'));
    assert.equal(cluster.deployment().spec.replicas, undefined, 'no replicas field under the HPA');
    type Hpa = K8sObject & {
      spec: { scaleTargetRef: { kind: string; name: string }; minReplicas: number; maxReplicas: number; metrics: { resource: { name: string; target: { averageUtilization: number } } }[] };
    };
    const hpa = cluster.one<Hpa>('HorizontalPodAutoscaler');
    assert.equal(hpa.apiVersion, 'autoscaling/v2');
    assert.deepEqual(hpa.spec.scaleTargetRef, { apiVersion: 'apps/v1', kind: 'Deployment', name: 'keyward' });
    assert.equal(hpa.spec.minReplicas, 3);
    assert.equal(hpa.spec.maxReplicas, 12);
    assert.deepEqual(hpa.spec.metrics.map((m) => [m.resource.name, m.resource.target.averageUtilization]), [['cpu', 65]]);
    const memory = render(...KITCHEN_SINK).one<typeof hpa>('HorizontalPodAutoscaler');
    assert.deepEqual(memory.spec.metrics.map((m) => m.resource.name), ['cpu', 'memory']);

    const pdb = cluster.one<K8sObject & { apiVersion: string; spec: { minAvailable?: number; selector: { matchLabels: Record<string, string> }; unhealthyPodEvictionPolicy?: string } }>('PodDisruptionBudget');
    assert.equal(pdb.apiVersion, 'policy/v1');
    assert.equal(pdb.spec.minAvailable, 2);
    assert.equal(pdb.spec.unhealthyPodEvictionPolicy, 'AlwaysAllow');
    assert.deepEqual(pdb.spec.selector.matchLabels, cluster.deployment().spec.selector.matchLabels);
    assert.equal(render().one<typeof pdb>('PodDisruptionBudget').spec.minAvailable, 1);

    assert.equal(render('--set', 'replicaCount=1').all('PodDisruptionBudget').length, 0, 'no PDB for a single replica');
    assert.equal(render('--set', 'autoscaling.enabled=true,autoscaling.minReplicas=1').all('PodDisruptionBudget').length, 0, 'no PDB when the HPA may go down to one');
    assert.equal(render('--set', 'podDisruptionBudget.enabled=false').all('PodDisruptionBudget').length, 0);
    assert.equal(render().all('HorizontalPodAutoscaler').length, 0);
  });

  it('wraps the groups of files/prometheus-rules.yaml unchanged into a PrometheusRule, extra labels added to alerts only', () => {
    interface Rule { record?: string; alert?: string; labels?: Record<string, string> }
    interface Groups { groups: { name: string; rules: Rule[] }[] }
    const file = parse(readFileSync(join(CHART, 'files', 'prometheus-rules.yaml'), 'utf8')) as Groups;
    const plain = render('--set', 'prometheusRule.enabled=true').one<K8sObject & { spec: Groups }>('PrometheusRule');
    assert.equal(plain.apiVersion, 'monitoring.coreos.com/v1');
    assert.deepEqual(plain.spec.groups, file.groups);

    const cluster = render('-f', example('cluster-aws-irsa.yaml')).one<typeof plain>('PrometheusRule');
    assert.equal(cluster.metadata.labels?.release, 'kube-prometheus-stack');
    assert.deepEqual(cluster.spec.groups.map((g) => g.name), file.groups.map((g) => g.name));
    for (const [gi, group] of cluster.spec.groups.entries()) {
      for (const [ri, rule] of group.rules.entries()) {
        const original = file.groups[gi]!.rules[ri]!;
        if (original.alert === undefined) {
          assert.deepEqual(rule, original, `recording rule ${original.record} unchanged`);
        } else {
          assert.deepEqual(rule, { ...original, labels: { team: 'security', ...original.labels } }, `alert ${original.alert}: team added, own labels kept`);
        }
      }
    }
    const override = render('--set', 'prometheusRule.enabled=true,prometheusRule.additionalAlertLabels.severity=info').one<typeof plain>('PrometheusRule');
    const alerts = override.spec.groups.flatMap((g) => g.rules).filter((r) => r.alert !== undefined);
    const originalAlerts = file.groups.flatMap((g) => g.rules).filter((r) => r.alert !== undefined);
    assert.deepEqual(alerts.map((r) => r.labels?.severity), originalAlerts.map((r) => r.labels?.severity ?? 'info'), "a rule's own severity wins");
  });

  it('ships files/grafana-dashboard.json in a ConfigMap labelled for the Grafana sidecar', () => {
    const file = JSON.parse(readFileSync(join(CHART, 'files', 'grafana-dashboard.json'), 'utf8')) as unknown;
    const plain = render('--set', 'grafanaDashboard.enabled=true').one('ConfigMap', 'keyward-dashboard');
    assert.equal(plain.metadata.labels?.grafana_dashboard, '1');
    assert.equal(plain.metadata.namespace, 'keyward');
    assert.equal(plain.metadata.annotations, undefined);
    assert.deepEqual(Object.keys(plain.data ?? {}), ['keyward-overview.json']);
    assert.deepEqual(JSON.parse(plain.data!['keyward-overview.json']!), file);

    const cluster = render('-f', example('cluster-aws-irsa.yaml')).one('ConfigMap', 'keyward-dashboard');
    assert.equal(cluster.metadata.namespace, 'monitoring');
    assert.equal(cluster.metadata.annotations?.grafana_folder, 'Keyward');
    const custom = render('--set', 'grafanaDashboard.enabled=true,grafanaDashboard.label=dashboards,grafanaDashboard.labelValue=keyward,grafanaDashboard.folder=Sec,grafanaDashboard.folderAnnotation=k8s-sidecar-target-directory').one('ConfigMap', 'keyward-dashboard');
    assert.equal(custom.metadata.labels?.dashboards, 'keyward');
    assert.equal(custom.metadata.labels?.grafana_dashboard, undefined);
    assert.equal(custom.metadata.annotations?.['k8s-sidecar-target-directory'], 'Sec');
  });

  it('scrapes /metrics on the ops port with a ServiceMonitor that selects the Service carrying it', () => {
    interface Monitor { spec: { selector: { matchLabels: Record<string, string> }; endpoints: { port: string; path: string; interval: string }[] } }
    for (const [args, serviceName] of [[['-f', example('cluster-aws-irsa.yaml')], 'keyward'], [KITCHEN_SINK, 'keyward-ops']] as const) {
      const { one } = render(...args);
      const monitor = one<K8sObject & Monitor>('ServiceMonitor');
      assert.equal(monitor.apiVersion, 'monitoring.coreos.com/v1');
      assert.deepEqual(monitor.spec.endpoints.map((e) => [e.port, e.path]), [['ops', '/metrics']]);
      const service = one<K8sObject & { spec: { ports: { name: string }[] } }>('Service', serviceName);
      for (const [label, value] of Object.entries(monitor.spec.selector.matchLabels)) {
        assert.equal(service.metadata.labels?.[label], value, `the ServiceMonitor selects ${serviceName} (${label})`);
      }
      assert.ok(service.spec.ports.some((p) => p.name === 'ops'));
    }
    const cluster = render('-f', example('cluster-aws-irsa.yaml')).one('ServiceMonitor');
    assert.equal(cluster.metadata.labels?.release, 'kube-prometheus-stack');
  });

  it('restricts the network: API and ops ports from the configured peers, egress to DNS and the listed destinations only', () => {
    interface Port { port: string | number; protocol: string }
    interface Policy {
      spec: {
        podSelector: { matchLabels: Record<string, string> };
        policyTypes: string[];
        ingress: { ports: Port[]; from?: unknown[] }[];
        egress?: { ports?: Port[]; to?: { ipBlock?: { cidr: string }; namespaceSelector?: unknown; podSelector?: unknown }[] }[];
      };
    }
    const { one, deployment } = render('-f', example('cluster-aws-irsa.yaml'));
    const policy = one<K8sObject & Policy>('NetworkPolicy');
    assert.deepEqual(policy.spec.podSelector.matchLabels, deployment().spec.selector.matchLabels);
    assert.deepEqual(policy.spec.policyTypes, ['Ingress', 'Egress']);
    assert.deepEqual(policy.spec.ingress.map((rule) => rule.ports), [[{ port: 'api', protocol: 'TCP' }], [{ port: 'ops', protocol: 'TCP' }]]);
    assert.deepEqual(policy.spec.ingress[0]!.from, [
      { namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'payments' } }, podSelector: { matchLabels: { 'app.kubernetes.io/name': 'payments-api' } } },
    ]);
    assert.deepEqual(policy.spec.ingress[1]!.from, [{ namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'monitoring' } } }]);
    const [dns, kms, splunk, ...rest] = policy.spec.egress ?? [];
    assert.deepEqual(dns?.ports, [{ port: 53, protocol: 'UDP' }, { port: 53, protocol: 'TCP' }]);
    assert.deepEqual(dns?.to, [{ namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'kube-system' } }, podSelector: { matchLabels: { 'k8s-app': 'kube-dns' } } }]);
    assert.deepEqual(kms, { to: [{ ipBlock: { cidr: '10.0.128.0/24' } }], ports: [{ port: 443, protocol: 'TCP' }] });
    assert.deepEqual(splunk, { to: [{ ipBlock: { cidr: '10.20.0.0/24' } }], ports: [{ port: 8088, protocol: 'TCP' }] });
    assert.deepEqual(rest, []);

    // Egress left open: no Egress policy type, no egress rules.
    const open = render('--set', 'networkPolicy.enabled=true,networkPolicy.egress.enabled=false').one<K8sObject & Policy>('NetworkPolicy');
    assert.deepEqual(open.spec.policyTypes, ['Ingress']);
    assert.equal(open.spec.egress, undefined);
    // Empty peer lists: from anywhere.
    const anywhere = render('--set', 'networkPolicy.enabled=true,networkPolicy.ingress.apiFrom=null,networkPolicy.ingress.opsFrom=null').one<K8sObject & Policy>('NetworkPolicy');
    assert.deepEqual(anywhere.spec.ingress.map((rule) => rule.from), [undefined, undefined]);
    assert.equal(render().all('NetworkPolicy').length, 0);
  });

  it('sets up cloud workload identity on the ServiceAccount (IRSA, Azure, GKE) without mounting the API token', () => {
    const cases = [
      ['cluster-aws-irsa.yaml', { 'eks.amazonaws.com/role-arn': 'arn:aws:iam::111122223333:role/keyward' }],
      ['azure-workload-identity.yaml', { 'azure.workload.identity/client-id': '11111111-1111-1111-1111-111111111111' }],
      ['gcp-workload-identity.yaml', { 'iam.gke.io/gcp-service-account': 'keyward@acme-prod.iam.gserviceaccount.com' }],
    ] as const;
    for (const [file, annotations] of cases) {
      const { one, deployment } = render('-f', example(file));
      const sa = one('ServiceAccount');
      assert.equal(sa.metadata.name, 'keyward', `${file}: a fixed ServiceAccount name for the federation`);
      for (const [key, value] of Object.entries(annotations)) assert.equal(sa.metadata.annotations?.[key], value, `${file}: ${key}`);
      assert.equal(sa.automountServiceAccountToken, false);
      assert.equal(podSpec(deployment()).serviceAccountName, 'keyward');
      assert.equal(podSpec(deployment()).automountServiceAccountToken, false);
    }
    const azure = render('-f', example('azure-workload-identity.yaml')).deployment();
    assert.equal(azure.spec.template.metadata.labels['azure.workload.identity/use'], 'true');
    // podLabels cannot change the selector labels.
    const relabelled = render('--set', 'podLabels.app\\.kubernetes\\.io/name=other').deployment();
    assert.deepEqual(relabelled.spec.selector.matchLabels, { 'app.kubernetes.io/name': 'keyward', 'app.kubernetes.io/instance': 'keyward' });
    assert.equal(relabelled.spec.template.metadata.labels['app.kubernetes.io/name'], 'keyward');
  });

  it('mounts the PKCS#11 module, HSM client configuration and PINs that the PKCS#11 example tenants file names', () => {
    const { objects, deployment, keyward } = render('-f', example('pkcs11-hsm.yaml'));
    interface Pkcs11File { tenants: Record<string, { kmsConfigs: { pkcs11: { module: string; pin: { file: string } } }[] }> }
    const tenants = parse(tenantsFileOf(objects, deployment(), keyward())) as Pkcs11File;
    const mounts = keyward().volumeMounts ?? [];
    const mountedAt = (path: string): string | undefined => mounts.find((m) => path.startsWith(`${m.mountPath}/`))?.name;
    for (const config of Object.values(tenants.tenants).flatMap((t) => t.kmsConfigs)) {
      assert.equal(config.pkcs11.module, '/opt/hsm/lib/libvendor.so');
      assert.equal(mountedAt(config.pkcs11.module), 'hsm-lib');
      assert.equal(mountedAt(config.pkcs11.pin.file), 'hsm-pins');
    }
    const init = podSpec(deployment()).initContainers ?? [];
    assert.deepEqual(init.map((c) => c.name), ['hsm-module']);
    assert.ok(init[0]!.volumeMounts?.some((m) => m.name === 'hsm-lib' && m.mountPath === '/opt/hsm/lib'), 'the init container fills the shared module volume');
    assert.equal(init[0]!.securityContext?.allowPrivilegeEscalation, false);
    assert.ok(mounts.every((m) => m.readOnly === true || m.name === 'tmp' || m.name === 'hsm-state'), 'credentials and modules are mounted read-only');
  });

  it('serves the API over TLS from the Secret mounted read-only as a directory (no subPath), the ops port, probes and monitoring unchanged', () => {
    const on = render(...TLS, '--set', 'serviceMonitor.enabled=true,networkPolicy.enabled=true');
    const run = validate({ manifests: on.text });
    assert.equal(run.status, 0, `${run.stdout}${run.stderr}`);
    const container = on.keyward();
    assert.deepEqual(env(container, 'KEYWARD_TLS_CERT'), { name: 'KEYWARD_TLS_CERT', value: `${TLS_DIR}/tls.crt` });
    assert.deepEqual(env(container, 'KEYWARD_TLS_KEY'), { name: 'KEYWARD_TLS_KEY', value: `${TLS_DIR}/tls.key` });
    assert.equal(env(container, 'KEYWARD_TLS_CLIENT_CA'), undefined, 'no client certificates unless tls.clientCa is set');
    // The whole Secret as a directory: Keyward watches the files' directory, where kubelet swaps the symlink on renewal.
    assert.deepEqual(container.volumeMounts?.find((m) => m.name === 'tls'), { name: 'tls', mountPath: TLS_DIR, readOnly: true });
    for (const m of container.volumeMounts ?? []) assert.equal(m.subPath, undefined, `${m.name} has no subPath`);
    assert.deepEqual(podSpec(on.deployment()).volumes?.find((v) => v.name === 'tls'), { name: 'tls', secret: { secretName: 'keyward-tls', defaultMode: 0o440 } });
    const config = loadProcessConfig(processEnv(container), '/app');
    assert.deepEqual(config.tls, { certFile: `${TLS_DIR}/tls.crt`, keyFile: `${TLS_DIR}/tls.key`, clientCaFile: undefined });
    assert.equal(dirname(config.tls?.certFile ?? ''), TLS_DIR, 'the files are directly in the mounted directory');
    // A renewal is reloaded in place: nothing about the Secret in the pod template rolls the pods.
    assert.deepEqual(on.deployment().spec.template.metadata.annotations, render().deployment().spec.template.metadata.annotations);

    // The ops port stays plain HTTP: the probes (no scheme: HTTP), the scrape and the policy are as without TLS.
    type HttpGet = { path: string; port: string; scheme?: string };
    const probes = (c: Container): (HttpGet | undefined)[] => [c.startupProbe, c.livenessProbe, c.readinessProbe].map((p) => p?.httpGet as HttpGet | undefined);
    assert.deepEqual(probes(container), [{ path: '/live', port: 'ops' }, { path: '/live', port: 'ops' }, { path: '/ready', port: 'ops' }]);
    assert.deepEqual(probes(container), probes(render().keyward()));
    type Monitor = K8sObject & { spec: { endpoints: { port: string; path: string; scheme: string }[] } };
    assert.deepEqual(on.one<Monitor>('ServiceMonitor').spec.endpoints.map((e) => [e.port, e.path, e.scheme]), [['ops', '/metrics', 'http']]);
    type Policy = K8sObject & { spec: { ingress: { ports: unknown[] }[] } };
    assert.deepEqual(on.one<Policy>('NetworkPolicy').spec.ingress.map((r) => r.ports), [[{ port: 'api', protocol: 'TCP' }], [{ port: 'ops', protocol: 'TCP' }]]);
    assert.deepEqual(container.ports?.map((p) => [p.name, p.containerPort]), [['api', 7777], ['ops', 9000]]);

    // The Service says the API port speaks TLS; its names and targets do not change.
    type Svc = K8sObject & { spec: { ports: { name: string; port: number; targetPort: string; appProtocol?: string }[] } };
    const ports = (r: ReturnType<typeof render>, name = 'keyward'): [string, number, string, string | undefined][] =>
      r.one<Svc>('Service', name).spec.ports.map((p) => [p.name, p.port, p.targetPort, p.appProtocol]);
    assert.deepEqual(ports(on), [['api', 7777, 'api', 'https'], ['ops', 9000, 'ops', undefined]]);
    assert.deepEqual(ports(render()), [['api', 7777, 'api', undefined], ['ops', 9000, 'ops', undefined]]);
    const opsApart = render(...TLS, '--set', 'opsService.enabled=true');
    assert.deepEqual(ports(opsApart), [['api', 7777, 'api', 'https']]);
    assert.deepEqual(ports(opsApart, 'keyward-ops'), [['ops', 9000, 'ops', undefined]]);

    // Off by default; tls.existingSecret without tls.enabled is refused (a render failure, below) rather than
    // silently serving plain HTTP.
    const off = render();
    for (const name of ['KEYWARD_TLS_CERT', 'KEYWARD_TLS_KEY', 'KEYWARD_TLS_CLIENT_CA']) assert.equal(env(off.keyward(), name), undefined, name);
    assert.equal(podSpec(off.deployment()).volumes?.some((v) => v.secret !== undefined), false, 'no Secret volume');
    assert.equal(loadProcessConfig(processEnv(off.keyward()), '/app').tls, undefined);
    // The production example serves TLS too.
    const cluster = render('-f', example('cluster-aws-irsa.yaml'));
    assert.equal(loadProcessConfig(processEnv(cluster.keyward()), '/app').tls?.certFile, `${TLS_DIR}/tls.crt`);
    assert.deepEqual(podSpec(cluster.deployment()).volumes?.find((v) => v.name === 'tls')?.secret, { secretName: 'keyward-tls', defaultMode: 0o440 });
  });

  it('requires client certificates from tls.clientCa (mutual TLS): its own Secret mounted as a directory, or the ca.crt of the TLS Secret', () => {
    type SecretVolume = { name: string; secret?: { secretName: string; defaultMode?: number; items?: unknown } };
    const cases = [
      { args: ['--set', 'tls.clientCa.existingSecret=keyward-client-ca'], file: `${CLIENT_CA_DIR}/ca.crt`, volumes: [['tls', 'keyward-tls'], ['tls-client-ca', 'keyward-client-ca']] },
      { args: ['--set', 'tls.clientCa.existingSecret=partners-ca,tls.clientCa.key=bundle.pem'], file: `${CLIENT_CA_DIR}/bundle.pem`, volumes: [['tls', 'keyward-tls'], ['tls-client-ca', 'partners-ca']] },
      // cert-manager's Secret holds the issuer's ca.crt beside the certificate: one volume serves both.
      { args: ['--set', 'tls.clientCa.existingSecret=keyward-tls'], file: `${TLS_DIR}/ca.crt`, volumes: [['tls', 'keyward-tls']] },
    ] as const;
    for (const { args, file, volumes } of cases) {
      const what = args.join(' ');
      const r = render(...TLS, ...args);
      const run = validate({ manifests: r.text });
      assert.equal(run.status, 0, `${what}:\n${run.stdout}${run.stderr}`);
      const container = r.keyward();
      assert.deepEqual(env(container, 'KEYWARD_TLS_CLIENT_CA'), { name: 'KEYWARD_TLS_CLIENT_CA', value: file }, what);
      const config = loadProcessConfig(processEnv(container), '/app');
      assert.deepEqual(config.tls, { certFile: `${TLS_DIR}/tls.crt`, keyFile: `${TLS_DIR}/tls.key`, clientCaFile: file }, what);
      const secretVolumes = (podSpec(r.deployment()).volumes ?? []).filter((v) => v.secret !== undefined) as SecretVolume[];
      assert.deepEqual(secretVolumes, volumes.map(([name, secretName]) => ({ name, secret: { secretName, defaultMode: 0o440 } })), what);
      const mounts = (container.volumeMounts ?? []).filter((m) => volumes.some(([name]) => name === m.name));
      assert.deepEqual(mounts, volumes.map(([name]) => ({ name, mountPath: name === 'tls' ? TLS_DIR : CLIENT_CA_DIR, readOnly: true })), `${what}: directories, read-only, no subPath`);
      assert.equal(mounts.find((m) => file.startsWith(`${m.mountPath}/`))?.mountPath, dirname(file), `${what}: the CA file is directly in a mounted directory`);
    }
  });

  it('scopes the API key to tenants (apiKey.tenants → KEYWARD_API_KEY_TENANTS) and passes the tenants file\'s apiKeys through', () => {
    const scoped = render('--set', 'apiKey.tenants={acme,acme-*,eu:*}');
    assert.deepEqual(env(scoped.keyward(), 'KEYWARD_API_KEY_TENANTS'), { name: 'KEYWARD_API_KEY_TENANTS', value: 'acme,acme-*,eu:*' });
    assert.deepEqual(loadProcessConfig(processEnv(scoped.keyward()), '/app').apiKeyTenants, ['acme', 'acme-*', 'eu:*']);
    const star = render('-f', writeValues({ apiKey: { tenants: ['*'] } })).keyward();
    assert.deepEqual(loadProcessConfig(processEnv(star), '/app').apiKeyTenants, ['*']);
    // Unset by default: Keyward's own default, every tenant.
    assert.equal(env(render().keyward(), 'KEYWARD_API_KEY_TENANTS'), undefined);
    assert.deepEqual(loadProcessConfig(processEnv(render().keyward()), '/app').apiKeyTenants, ['*']);
    // With the rotation's second key, both are scoped alike (one variable).
    const rotation = render(...KITCHEN_SINK).keyward();
    const tuned = loadProcessConfig(processEnv(rotation), '/app');
    assert.equal(tuned.apiKeyDigests.length, 2);
    assert.deepEqual(tuned.apiKeyTenants, ['acme', 'acme-*']);

    // Per-application keys in the tenants file: rendered as given, loaded by Keyward, hot-reloaded (the pods do not roll).
    const billing = 'billing-key-of-at-least-32-chars';
    const apiKeys = [
      { name: 'billing', sha256: digestApiKey(billing).toString('hex'), tenants: ['acme', 'acme-*'] },
      { name: 'reports', sha256: digestApiKey('reports-key-of-at-least-32-chars').toString('hex'), tenants: ['*'] },
    ];
    const withKeys = render('-f', writeValues({ tenants: { inline: { version: 1, apiKeys, tenants: {} } } }));
    const run = validate({ manifests: withKeys.text });
    assert.equal(run.status, 0, `${run.stdout}${run.stderr}`);
    const text = tenantsFileOf(withKeys.objects, withKeys.deployment(), withKeys.keyward());
    assert.deepEqual((parse(text) as { apiKeys: unknown }).apiKeys, apiKeys);
    const directory = parseTenantsFile(text, { baseDir: TENANTS_DIR, defaultKmsTimeoutMs: 2000 });
    assert.deepEqual(directory.apiKeys.map((k) => [k.name, k.digest.toString('hex'), k.tenants]), apiKeys.map((k) => [k.name, k.sha256, k.tenants]));
    assert.deepEqual(withKeys.deployment().spec.template, render().deployment().spec.template, 'a change of apiKeys leaves the pod template alone');
  });

  it('refuses bad values: the schema (types, enums, unknown keys, ranges) and the chart checks, with messages naming them', () => {
    const cases: readonly { readonly args: readonly string[]; readonly message: RegExp }[] = [
      { args: ['--set', 'replicaCount=two'], message: /replicaCount.*got string, want integer/ },
      { args: ['--set', 'replicas=3'], message: /additional properties 'replicas' not allowed/ },
      { args: ['--set', 'image.pullPolicy=Sometimes'], message: /image\/pullPolicy.*IfNotPresent/ },
      { args: ['--set', 'apiKey.existingSecret='], message: /Keyward needs an API key.*apiKey\.existingSecret.*apiKey\.value/ },
      { args: ['--set-string', `apiKey.value=${API_KEY}`], message: /either apiKey\.existingSecret .* or apiKey\.value .*not both/ },
      { args: ['--set', 'apiKey.existingSecret=', '--set', 'apiKey.value=short'], message: /apiKey\/value/ },
      { args: ['--set', 'terminationGracePeriodSeconds=12'], message: /terminationGracePeriodSeconds \(12\) must be greater than keyward\.shutdownTimeout \(10s\) plus lifecycle\.preStopSleepSeconds \(5\)/ },
      { args: ['--set', 'keyward.shutdownTimeout=4s'], message: /keyward\.auditFlushTimeout .*must be shorter than keyward\.shutdownTimeout \(4s\)/ },
      { args: ['--set', 'keyward.shutdownTimeout=10 seconds'], message: /keyward\/shutdownTimeout/ },
      { args: ['--set', 'keyward.logLevel=verbose'], message: /keyward\/logLevel/ },
      { args: ['--set', 'service.apiPort=70000'], message: /service\/apiPort/ },
      { args: ['--set', 'tenants.inline.version=2'], message: /tenants\/inline/ },
      { args: ['-f', writeValues({ tenants: { inline: { version: 1, tenant: { acme: {} } } } })], message: /tenants\/inline/ },
      { args: ['-f', writeValues({ networkPolicy: { enabled: true, egress: { rules: [{ cidrs: ['kms.example.com'] }] } } })], message: /networkPolicy\/egress\/rules\/0\/cidrs\/0/ },
      { args: ['--set', 'autoscaling.enabled=true,autoscaling.minReplicas=5,autoscaling.maxReplicas=3'], message: /minReplicas must not exceed autoscaling\.maxReplicas/ },
      { args: ['--set', 'topologySpread.whenUnsatisfiable=Never'], message: /topologySpread\/whenUnsatisfiable/ },
      { args: ['--set', 'tls.enabled=true'], message: /tls\.enabled needs tls\.existingSecret: the name of a kubernetes\.io\/tls Secret/ },
      { args: ['--set', 'tls.existingSecret=keyward-tls'], message: /tls\.existingSecret is set but tls\.enabled is false: the API would be served over plain HTTP/ },
      { args: ['--set', 'tls.clientCa.existingSecret=keyward-client-ca'], message: /tls\.clientCa\.existingSecret \(client certificates, mutual TLS\) needs TLS on the API port: set tls\.enabled and tls\.existingSecret/ },
      { args: ['--set', 'tls.enabled=true,tls.existingSecret=Keyward_TLS'], message: /tls\/existingSecret/ },
      { args: ['--set', 'tls.enabled=yes'], message: /tls\/enabled.*got string, want boolean/ },
      { args: ['--set', 'tls.secretName=keyward-tls'], message: /additional properties 'secretName' not allowed/ },
      { args: ['--set', 'apiKey.tenants={acme,a b}'], message: /apiKey\/tenants\/1/ },
      { args: ['--set', 'apiKey.tenants={acme,x,y,z,acme}'], message: /apiKey\/tenants/ },
      { args: ['--set', 'apiKey.tenants=acme'], message: /apiKey\/tenants.*want array/ },
      { args: ['--set', 'apiKey.tenants={acme}', '--set', 'extraEnv[0].name=KEYWARD_API_KEY_TENANTS,extraEnv[0].value=*'], message: /extraEnv sets KEYWARD_API_KEY_TENANTS, which the chart sets from apiKey\.tenants/ },
      { args: [...TLS, '--set', 'extraEnv[0].name=KEYWARD_TLS_CERT,extraEnv[0].value=/x/tls.crt'], message: /extraEnv sets KEYWARD_TLS_CERT, which the chart sets from the tls values/ },
      // The tenants file holds digests of the keys, never the keys.
      { args: ['-f', writeValues({ tenants: { inline: { version: 1, tenants: {}, apiKeys: [{ name: 'billing', key: API_KEY, tenants: ['acme'] }] } } })], message: /tenants\/inline\/apiKeys\/0.*(missing property 'sha256'|additional properties 'key')/s },
      { args: ['-f', writeValues({ tenants: { inline: { version: 1, tenants: {}, apiKeys: [{ name: 'billing', sha256: 'ab'.repeat(31), tenants: ['acme'] }] } } })], message: /tenants\/inline\/apiKeys\/0\/sha256/ },
      { args: ['-f', writeValues({ tenants: { inline: { version: 1, tenants: {}, apiKeys: [{ name: 'billing', sha256: 'ab'.repeat(32), tenants: [] }] } } })], message: /tenants\/inline\/apiKeys\/0\/tenants/ },
    ];
    for (const { args, message } of cases) {
      assert.match(renderFails(...args), message, args.join(' '));
    }
    // helm lint refuses them too.
    const lint = helm(['lint', '--strict', CHART, '--set', 'replicaCount=two']);
    assert.notEqual(lint.status, 0);
    assert.match(`${lint.stdout}${lint.stderr}`, /replicaCount.*got string, want integer/);
  });

  it('k8s-validate refuses unknown fields, wrong types, unknown kinds and dangling references, naming document, kind, name and field', () => {
    const objects = parseObjects(render().text);
    const deployment = objects.find((o) => o.kind === 'Deployment') as Deployment & { spec: Record<string, unknown> };
    const tamper = (change: (d: Record<string, unknown>) => void): string => {
      const copy = structuredClone(deployment) as unknown as Record<string, unknown>;
      change(copy);
      return objects.map((o) => stringify(o === deployment ? copy : o)).join('---\n');
    };
    const containerOf = (d: Record<string, unknown>): Record<string, unknown> =>
      ((d.spec as { template: { spec: { containers: Record<string, unknown>[] } } }).template.spec.containers[0])!;
    const cases: readonly [string, string, RegExp][] = [
      ['unknown field', tamper((d) => (containerOf(d).bogus = 1)), /FAIL <stdin>#\d+ .*apps\/v1 Deployment keyward\n\s+- unknown field "spec\.template\.spec\.containers\[0\]\.bogus"/],
      ['wrong type', tamper((d) => ((d.spec as Record<string, unknown>).replicas = 'two')), /apps\/v1 Deployment keyward\n\s+- .*cannot unmarshal string into Go struct field .*replicas of type int32/],
      ['bad quantity', tamper((d) => (containerOf(d).resources = { limits: { memory: '512 MB' } })), /Deployment keyward\n\s+- .*quantities must match/],
      ['probe on a missing port', tamper((d) => (containerOf(d).livenessProbe = { httpGet: { path: '/live', port: 'metrics' } })), /livenessProbe\.httpGet\.port: Not found: "metrics"/],
      ['mount of a missing volume', tamper((d) => (containerOf(d).volumeMounts = [{ name: 'nothing', mountPath: '/x' }])), /volumeMounts\[0\]\.name: Not found: "nothing"/],
      ['selector not matching the template', tamper((d) => ((d.spec as { selector: unknown }).selector = { matchLabels: { app: 'other' } })), /`selector` does not match template `labels`/],
      ['unknown kind', 'apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w}\n', /FAIL <stdin>#1 .*example\.com\/v1 Widget w\n\s+- unknown kind/],
      ['ServiceMonitor field', stringify({ apiVersion: 'monitoring.coreos.com/v1', kind: 'ServiceMonitor', metadata: { name: 'm' }, spec: { selector: { matchLabels: { a: 'b' } }, endpoints: [{ port: 'ops', intervall: '30s' }] } }), /ServiceMonitor m\n\s+- unknown field "spec\.endpoints\[0\]\.intervall"/],
      ['PrometheusRule duration', stringify({ apiVersion: 'monitoring.coreos.com/v1', kind: 'PrometheusRule', metadata: { name: 'r' }, spec: { groups: [{ name: 'g', rules: [{ alert: 'A', expr: 'up == 0', for: '5 minutes' }] }] } }), /PrometheusRule r\n\s+- spec\.groups\[0\]\.rules\[0\]\.for: Invalid value: "5 minutes"/],
      ['nothing at all', '# only a comment\n', /no Kubernetes object found/],
    ];
    for (const [what, manifests, message] of cases) {
      const run = validate({ manifests });
      assert.equal(run.status, 1, `${what}: exit status 1\n${run.stdout}${run.stderr}`);
      assert.match(run.stdout, message, what);
    }
    const service = stringify({ apiVersion: 'v1', kind: 'Service', metadata: { name: 'svc' }, spec: { selector: { app: 'none' }, ports: [{ name: 'http', port: 80, targetPort: 'http' }] } });
    const dangling = validate({ manifests: `${stringify(deployment)}---\n${service}` });
    assert.match(dangling.stdout, /v1 Service svc\n\s+- spec\.selector: .* selects no pod template of the input/);
  });

  it('renders NOTES.txt with the port-forward and a /v1/keys/generate call', () => {
    const dir = mkdtempSync(join(tmpdir(), 'keyward-chart-'));
    try {
      // helm template leaves NOTES.txt out; a copy of the chart renders it into a ConfigMap.
      cpSync(CHART, join(dir, 'keyward'), { recursive: true });
      const notes = readFileSync(join(CHART, 'templates', 'NOTES.txt'), 'utf8');
      writeFileSync(join(dir, 'keyward', 'templates', '_notes-under-test.tpl'), `{{- define "notes-under-test" -}}\n${notes}{{- end }}\n`);
      writeFileSync(join(dir, 'keyward', 'templates', 'notes-under-test.yaml'), 'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: notes}\ndata:\n  notes: {{ include "notes-under-test" . | quote }}\n');
      const text = (args: string[]): string => {
        const run = helm(['template', 'keyward', join(dir, 'keyward'), '--namespace', 'keyward', ...args]);
        assert.equal(run.status, 0, run.stderr);
        return rendered(run.stdout).one('ConfigMap', 'notes').data!.notes!;
      };
      const plain = text([]);
      assert.match(plain, /kubectl --namespace keyward port-forward service\/keyward 7777:7777 9000:9000/);
      assert.match(plain, /curl -s http:\/\/127\.0\.0\.1:7777\/v1\/keys\/generate/);
      assert.match(plain, /get secret keyward-api-key/);
      assert.match(plain, /the tenants file has no tenants yet/);
      const cluster = text(['-f', example('cluster-aws-irsa.yaml')]);
      assert.match(cluster, /"tenantId":"acme"/, 'the example request names a tenant of the file');
      assert.doesNotMatch(cluster, /no tenants yet/);
      // With a scoped API key, the example names a tenant the key may act for; none: a warning.
      const scoped = text(['-f', example('cluster-aws-irsa.yaml'), '--set', 'apiKey.tenants={glo*,other}']);
      assert.match(scoped, /"tenantId":"globex"/, 'the first tenant apiKey.tenants allows');
      assert.doesNotMatch(scoped, /WARNING: no tenant/);
      const exact = text(['-f', example('cluster-aws-irsa.yaml'), '--set', 'apiKey.tenants={acme}']);
      assert.match(exact, /"tenantId":"acme"/);
      const none = text(['-f', example('cluster-aws-irsa.yaml'), '--set', 'apiKey.tenants={acme.*,ac,*-eu}']);
      assert.match(none, /WARNING: no tenant of the tenants file matches apiKey\.tenants \(acme\.\*, ac, \*-eu\)/, 'regular-expression characters are literal; * is the only wildcard');
      assert.match(none, /"tenantId":"<a tenant of the tenants file>"/);
      const demo = text(['--set', 'apiKey.existingSecret=', '--set-string', `apiKey.value=${API_KEY}`, '--set', 'opsService.enabled=true']);
      assert.match(demo, /WARNING: the API key comes from apiKey\.value/);
      assert.match(demo, /port-forward service\/keyward-ops 9000:9000/);
      assert.match(plain, /WARNING: tls\.enabled is off, so the API port is plain HTTP/);
      const tls = text([...TLS, '--set', 'tls.clientCa.existingSecret=keyward-client-ca', '--set', 'apiKey.tenants={acme}']);
      assert.match(tls, /the API is at:\n {2}https:\/\/keyward\.keyward\.svc:7777/);
      assert.match(tls, /curl -s --cacert ca\.crt --resolve keyward\.keyward\.svc:7777:127\.0\.0\.1 --cert client\.crt --key client\.key \\\n {4}https:\/\/keyward\.keyward\.svc:7777\/v1\/keys\/generate/);
      assert.match(tls, /ops endpoints .* at:\n {2}http:\/\/keyward\.keyward\.svc:9000/);
      assert.match(tls, /Secrets keyward-tls and keyward-client-ca are mounted as directories/);
      assert.match(tls, /may act for these tenants only \(apiKey\.tenants\): acme\./);
      assert.doesNotMatch(tls, /plain HTTP/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('lists every value in the README with its default, and the chart docs link only to files that exist', () => {
    const values = parse(readFileSync(join(CHART, 'values.yaml'), 'utf8')) as Record<string, unknown>;
    const readme = readFileSync(join(CHART, 'README.md'), 'utf8');
    const rows = new Map<string, string>();
    for (const line of readme.split('\n')) {
      const cells = /^\| `([^`]+)` \| ([^|]+) \| ([^|]*) \|/.exec(line);
      if (cells) rows.set(cells[1]!, cells[3]!.trim());
    }
    const leaves: [string, unknown][] = [];
    const walk = (node: Record<string, unknown>, prefix: string): void => {
      for (const [key, value] of Object.entries(node)) {
        const path = prefix === '' ? key : `${prefix}.${key}`;
        if (!rows.has(path) && value !== null && typeof value === 'object' && !Array.isArray(value) && Object.keys(value).length > 0) walk(value as Record<string, unknown>, path);
        else leaves.push([path, value]);
      }
    };
    walk(values, '');
    const missing = leaves.filter(([path]) => !rows.has(path)).map(([path]) => path);
    assert.deepEqual(missing, [], 'values missing from the README table');
    const has = (path: string): boolean => {
      let node: unknown = values;
      for (const part of path.split('.')) {
        if (node === null || typeof node !== 'object' || !(part in node)) return false;
        node = (node as Record<string, unknown>)[part];
      }
      return true;
    };
    assert.deepEqual([...rows.keys()].filter((path) => !has(path)), [], 'README rows for values that do not exist');
    for (const [path, value] of leaves) {
      const scalar = value === null || typeof value !== 'object' || (Array.isArray(value) ? value.length === 0 : Object.keys(value).length === 0);
      if (scalar) assert.equal(rows.get(path), `\`${JSON.stringify(value)}\``, `README default of ${path}`);
    }

    const broken: string[] = [];
    const markdown = [join(CHART, 'README.md'), join(CHART, 'examples', 'sidecar', 'README.md')];
    for (const file of markdown) {
      for (const match of readFileSync(file, 'utf8').matchAll(/\]\(([^)\s]+)\)/g)) {
        const target = match[1]!.split('#')[0]!;
        const repoFile = /^https:\/\/github\.com\/keyward\/keyward\/blob\/main\/(.+)$/.exec(target)?.[1];
        if (repoFile !== undefined) {
          if (!existsSync(join(REPO_ROOT, repoFile))) broken.push(`${relative(REPO_ROOT, file)} → ${match[1]}`);
        } else if (target !== '' && !/^[a-z]+:/i.test(target) && !existsSync(join(dirname(file), target))) {
          broken.push(`${relative(REPO_ROOT, file)} → ${match[1]}`);
        }
      }
    }
    assert.deepEqual(broken, []);
  });
});

describe('sidecar example helm/keyward/examples/sidecar', () => {
  const objects = parseObjects(readFileSync(SIDECAR, 'utf8'));
  const deployment = objects.find((o) => o.kind === 'Deployment') as Deployment;
  const pod = deployment.spec.template.spec;
  const keyward = [...(pod.initContainers ?? []), ...pod.containers].find((c) => c.name === 'keyward')!;

  it('decodes strictly with the Kubernetes API types (k8s-validate)', () => {
    const run = validate({ files: [relative(REPO_ROOT, SIDECAR)] });
    assert.equal(run.status, 0, `${run.stdout}${run.stderr}`);
    assert.match(run.stdout, /k8s-validate: 3 objects valid/);
  });

  it('serves the API on 127.0.0.1 only and the ops port on the pod address for the probes', () => {
    assert.ok(keyward, 'a keyward container');
    assert.equal(keyward.restartPolicy, 'Always', 'a native sidecar');
    assert.equal(env(keyward, 'KEYWARD_HOST')?.value, '127.0.0.1');
    assert.equal(env(keyward, 'KEYWARD_OPS_HOST')?.value, '0.0.0.0');
    const opsPort = keyward.ports?.find((p) => p.containerPort === 9000)?.name;
    for (const probe of [keyward.startupProbe, keyward.livenessProbe, keyward.readinessProbe]) {
      assert.equal(probe?.httpGet?.port, opsPort);
    }
    assert.equal(keyward.livenessProbe?.httpGet?.path, '/live');
    assert.equal(keyward.readinessProbe?.httpGet?.path, '/ready');
    const app = pod.containers.find((c) => c.name === 'app')!;
    assert.equal(env(app, 'KEYWARD_URL')?.value, 'http://127.0.0.1:7777');
    const config = loadProcessConfig(processEnv(keyward), '/app');
    assert.deepEqual(config.api, { host: '127.0.0.1', port: 7777 });
  });

  it("has the chart's hardening, the tenants ConfigMap as a directory and the API key from a Secret", () => {
    const sc = keyward.securityContext;
    assert.equal(sc?.runAsNonRoot, true);
    assert.equal(sc?.runAsUser, 1000);
    assert.equal(sc?.readOnlyRootFilesystem, true);
    assert.equal(sc?.allowPrivilegeEscalation, false);
    assert.deepEqual(sc?.capabilities, { drop: ['ALL'] });
    assert.equal(sc?.seccompProfile?.type, 'RuntimeDefault');
    assert.equal(pod.automountServiceAccountToken, false);
    const mount = keyward.volumeMounts?.find((m) => m.mountPath === TENANTS_DIR);
    assert.ok(mount && mount.subPath === undefined);
    assert.ok(keyward.volumeMounts?.some((m) => m.mountPath === '/tmp'));
    const tenantsVolume = pod.volumes?.find((v) => v.name === mount.name);
    assert.ok(tenantsVolume?.configMap && tenantsVolume.configMap.items === undefined);
    const configMap = objects.find((o) => o.kind === 'ConfigMap' && o.metadata.name === tenantsVolume.configMap!.name);
    const path = env(keyward, 'KEYWARD_CONFIG')?.value ?? '';
    assert.ok(path.startsWith(`${TENANTS_DIR}/`));
    const text = configMap?.data?.[path.slice(TENANTS_DIR.length + 1)];
    assert.ok(text !== undefined);
    assert.doesNotThrow(() => parseTenantsFile(text, { baseDir: TENANTS_DIR, defaultKmsTimeoutMs: 2000 }));
    assert.deepEqual(env(keyward, 'KEYWARD_API_KEY')?.valueFrom, { secretKeyRef: { name: 'payments-keyward-api-key', key: 'api-key' } });
    const shutdown = loadProcessConfig(processEnv(keyward), '/app').shutdownTimeoutMs / 1000;
    assert.ok((pod.terminationGracePeriodSeconds ?? 30) > shutdown);
  });
});

// --- values files written by the tests -------------------------------------------------

let valuesDir: string | undefined;
let valuesCount = 0;

/** Writes `values` to a temporary values file and returns its path. */
function writeValues(values: unknown): string {
  valuesDir ??= mkdtempSync(join(tmpdir(), 'keyward-values-'));
  const file = join(valuesDir, `values-${++valuesCount}.yaml`);
  writeFileSync(file, stringify(values));
  return file;
}

after(() => {
  if (valuesDir !== undefined) rmSync(valuesDir, { recursive: true, force: true });
});
