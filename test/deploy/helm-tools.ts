/**
 * helm v3.22.0 and the repository's strict manifest checker (tools/k8s-validate), both
 * installed into $KEYWARD_TEST_CACHE/bin by scripts/provision/helm.sh, and the chart's
 * rendered objects. Renders are cached per set of arguments, so a test file renders each
 * variant once.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { accessSync, constants, readFileSync, readdirSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments } from 'yaml';

export const REPO_ROOT = fileURLToPath(new URL('../..', import.meta.url));
export const CHART = join(REPO_ROOT, 'helm', 'keyward');
export const HELM_VERSION = 'v3.22.0';
const TEST_CACHE = process.env.KEYWARD_TEST_CACHE ?? join(homedir(), '.cache', 'keyward-test');
const BIN = join(TEST_CACHE, 'bin');
const VALIDATOR_SOURCES = join(REPO_ROOT, 'tools', 'k8s-validate');
const PROVISION = 'run `bash scripts/provision/helm.sh` (npm test runs it through scripts/provision-emulators.sh)';

let checked: { helm: string; validator: string } | undefined;

/** The two tools, checked once: present, helm at the pinned version, the validator built from the current sources. */
export function tools(): { helm: string; validator: string } {
  if (checked) return checked;
  const helm = join(BIN, 'helm');
  const validator = join(BIN, 'k8s-validate');
  for (const [path, what] of [
    [helm, `helm ${HELM_VERSION}`],
    [validator, 'k8s-validate (built from tools/k8s-validate)'],
  ] as const) {
    try {
      accessSync(path, constants.X_OK);
    } catch {
      assert.fail(`${path} is missing: ${PROVISION}, which installs ${what} into ${BIN}`);
    }
  }
  const version = spawnSync(helm, ['version', '--template', '{{.Version}}'], { encoding: 'utf8' });
  assert.equal(version.stdout, HELM_VERSION, `${helm} is not helm ${HELM_VERSION} (${version.stdout}${version.stderr}): ${PROVISION}`);
  // The provisioning script's stamp names the hash of the sources the binary was built from.
  const lines = readdirSync(VALIDATOR_SOURCES)
    .filter((name) => /^(go\.mod|go\.sum|.*\.go)$/.test(name))
    .sort()
    .map((name) => `${createHash('sha256').update(readFileSync(join(VALIDATOR_SOURCES, name))).digest('hex')}  ${name}\n`);
  const sources = createHash('sha256').update(lines.join('')).digest('hex');
  let stamp = '';
  try {
    stamp = readFileSync(`${validator}.stamp`, 'utf8');
  } catch {
    // no stamp: treated as stale
  }
  assert.ok(stamp.startsWith(`sources ${sources}\n`), `${validator} was not built from the current tools/k8s-validate sources: ${PROVISION} to rebuild it`);
  checked = { helm, validator };
  return checked;
}

export interface Run {
  readonly status: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

export function helm(args: readonly string[]): Run {
  const result = spawnSync(tools().helm, args, { cwd: REPO_ROOT, encoding: 'utf8', timeout: 60_000, env: { ...process.env, HELM_CACHE_HOME: join(TEST_CACHE, 'helm-home', 'cache'), HELM_CONFIG_HOME: join(TEST_CACHE, 'helm-home', 'config'), HELM_DATA_HOME: join(TEST_CACHE, 'helm-home', 'data') } });
  if (result.error) throw result.error;
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

/** Runs k8s-validate over `manifests` (on stdin), or over the files named. */
export function validate(input: { manifests: string } | { files: readonly string[] }): Run {
  const args = 'files' in input ? [...input.files] : ['-'];
  const result = spawnSync(tools().validator, args, {
    cwd: REPO_ROOT,
    input: 'manifests' in input ? input.manifests : undefined,
    encoding: 'utf8',
    timeout: 60_000,
  });
  if (result.error) throw result.error;
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

// --- the rendered objects ------------------------------------------------------------

export interface Meta {
  readonly name: string;
  readonly namespace?: string;
  readonly labels?: Readonly<Record<string, string>>;
  readonly annotations?: Readonly<Record<string, string>>;
}

export interface K8sObject {
  readonly apiVersion: string;
  readonly kind: string;
  readonly metadata: Meta;
  readonly spec?: unknown;
  readonly data?: Readonly<Record<string, string>>;
  readonly automountServiceAccountToken?: boolean;
}

export interface EnvVar {
  readonly name: string;
  readonly value?: string;
  readonly valueFrom?: {
    readonly secretKeyRef?: { readonly name: string; readonly key: string };
    readonly fieldRef?: { readonly fieldPath: string };
  };
}

export interface Probe {
  readonly httpGet?: { readonly path: string; readonly port: string | number };
  readonly periodSeconds?: number;
  readonly failureThreshold?: number;
}

export interface SecurityContext {
  readonly runAsNonRoot?: boolean;
  readonly runAsUser?: number;
  readonly runAsGroup?: number;
  readonly fsGroup?: number;
  readonly readOnlyRootFilesystem?: boolean;
  readonly allowPrivilegeEscalation?: boolean;
  readonly privileged?: boolean;
  readonly capabilities?: { readonly drop?: readonly string[]; readonly add?: readonly string[] };
  readonly seccompProfile?: { readonly type: string };
}

export interface Container {
  readonly name: string;
  readonly image: string;
  readonly command?: readonly string[];
  readonly restartPolicy?: string;
  readonly ports?: readonly { readonly name?: string; readonly containerPort: number }[];
  readonly env?: readonly EnvVar[];
  readonly securityContext?: SecurityContext;
  readonly livenessProbe?: Probe;
  readonly readinessProbe?: Probe;
  readonly startupProbe?: Probe;
  readonly lifecycle?: { readonly preStop?: { readonly sleep?: { readonly seconds: number } } };
  readonly resources?: { readonly requests?: Readonly<Record<string, string>>; readonly limits?: Readonly<Record<string, string>> };
  readonly volumeMounts?: readonly { readonly name: string; readonly mountPath: string; readonly subPath?: string; readonly readOnly?: boolean }[];
}

export interface Volume {
  readonly name: string;
  readonly configMap?: { readonly name: string; readonly items?: unknown };
  readonly secret?: { readonly secretName: string };
  readonly emptyDir?: { readonly sizeLimit?: string; readonly medium?: string };
  readonly hostPath?: { readonly path: string };
}

export interface PodSpec {
  readonly serviceAccountName?: string;
  readonly automountServiceAccountToken?: boolean;
  readonly securityContext?: SecurityContext;
  readonly terminationGracePeriodSeconds?: number;
  readonly initContainers?: readonly Container[];
  readonly containers: readonly Container[];
  readonly volumes?: readonly Volume[];
  readonly nodeSelector?: Readonly<Record<string, string>>;
  readonly topologySpreadConstraints?: readonly {
    readonly maxSkew: number;
    readonly topologyKey: string;
    readonly whenUnsatisfiable: string;
    readonly labelSelector: { readonly matchLabels: Readonly<Record<string, string>> };
  }[];
}

export interface Deployment extends K8sObject {
  readonly spec: {
    readonly replicas?: number;
    readonly selector: { readonly matchLabels: Readonly<Record<string, string>> };
    readonly template: { readonly metadata: { readonly labels: Readonly<Record<string, string>>; readonly annotations?: Readonly<Record<string, string>> }; readonly spec: PodSpec };
  };
}

export interface Rendered {
  readonly text: string;
  readonly objects: readonly K8sObject[];
  /** The one object of `kind` (and `name`, if given); fails when there is none or several. */
  readonly one: <T extends K8sObject = K8sObject>(kind: string, name?: string) => T;
  readonly all: (kind: string) => K8sObject[];
  readonly deployment: () => Deployment;
  /** The Keyward container of the Deployment. */
  readonly keyward: () => Container;
}

export function parseObjects(text: string): K8sObject[] {
  return parseAllDocuments(text)
    .map((doc) => doc.toJS() as K8sObject | null)
    .filter((obj): obj is K8sObject => obj !== null && typeof obj === 'object');
}

export function rendered(text: string): Rendered {
  const objects = parseObjects(text);
  const all = (kind: string): K8sObject[] => objects.filter((o) => o.kind === kind);
  const one = <T extends K8sObject = K8sObject>(kind: string, name?: string): T => {
    const found = all(kind).filter((o) => name === undefined || o.metadata.name === name);
    assert.equal(found.length, 1, `expected one ${kind}${name === undefined ? '' : ` ${name}`}, found ${found.length}: ${objects.map((o) => `${o.kind}/${o.metadata.name}`).join(', ')}`);
    return found[0] as T;
  };
  const deployment = (): Deployment => one<Deployment>('Deployment');
  return {
    text,
    objects,
    one,
    all,
    deployment,
    keyward: () => {
      const container = deployment().spec.template.spec.containers.find((c) => c.name === 'keyward');
      assert.ok(container, 'the Deployment has a keyward container');
      return container;
    },
  };
}

const renders = new Map<string, Rendered>();

/** `helm template keyward helm/keyward -n keyward` with these arguments (values files relative to the chart, --set …); cached. */
export function render(...args: string[]): Rendered {
  const key = JSON.stringify(args);
  const cached = renders.get(key);
  if (cached) return cached;
  const run = helm(['template', 'keyward', CHART, '--namespace', 'keyward', ...args]);
  assert.equal(run.status, 0, `helm template ${args.join(' ')} failed:\n${run.stderr}`);
  const result = rendered(run.stdout);
  renders.set(key, result);
  return result;
}

/** `helm template` expected to fail; returns its error output. */
export function renderFails(...args: string[]): string {
  const run = helm(['template', 'keyward', CHART, '--namespace', 'keyward', ...args]);
  assert.notEqual(run.status, 0, `helm template ${args.join(' ')} should have failed, but rendered:\n${run.stdout.slice(0, 2000)}`);
  return run.stderr;
}

export function env(container: Container, name: string): EnvVar | undefined {
  const found = (container.env ?? []).filter((e) => e.name === name);
  assert.ok(found.length <= 1, `${name} is set ${found.length} times`);
  return found[0];
}
