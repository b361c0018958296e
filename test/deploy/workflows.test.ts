/**
 * The GitHub Actions workflows (.github/workflows): actionlint (installed by
 * scripts/provision/actionlint.sh into KEYWARD_TEST_CACHE; it also runs shellcheck over `run:`
 * scripts when shellcheck is on PATH, as it is on GitHub's runners), then this repository's own
 * rules: every action pinned by commit SHA with its release tag beside it, the same SHA for the
 * same action everywhere, read-only tokens except where the image is published, the CI job
 * running the README's `npm test` on every supported Node.js line, pull requests checked, no
 * `pull_request_target`, and no event data pasted into shell scripts.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { accessSync, constants, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';
import { TEST_CACHE } from '../helpers/emulator.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const WORKFLOWS_DIR = join(ROOT, '.github', 'workflows');
const ACTIONLINT = join(TEST_CACHE, 'bin', 'actionlint');
const PROVISION_SCRIPT = 'scripts/provision/actionlint.sh';

/** The workflows this repository must have; others may be added and get the general rules. */
const CI = 'ci.yml';
const IMAGE = 'image.yml';
const CHART = 'chart.yml';
const NODE_LINES = ['20', '22', '24'];

/** Scopes a job may be granted `write` on, and only the job that publishes the image. */
const IMAGE_JOB_WRITE_SCOPES = new Set(['packages', 'id-token', 'attestations']);

type Mapping = Record<string, unknown>;

function isMapping(value: unknown): value is Mapping {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

interface Step {
  readonly index: number;
  readonly name: string;
  readonly uses: string | undefined;
  readonly run: string | undefined;
  readonly with: Mapping;
}

interface Job {
  readonly id: string;
  readonly raw: Mapping;
  readonly steps: readonly Step[];
}

interface Workflow {
  readonly file: string;
  readonly text: string;
  readonly doc: Mapping;
  readonly jobs: readonly Job[];
}

function stepsOf(job: Mapping): Step[] {
  const steps = job.steps;
  if (!Array.isArray(steps)) return [];
  return steps.map((raw: unknown, index): Step => {
    const step = isMapping(raw) ? raw : {};
    const uses = typeof step.uses === 'string' ? step.uses : undefined;
    const name = typeof step.name === 'string' ? step.name : (uses ?? `step ${index + 1}`);
    return {
      index,
      name,
      uses,
      run: typeof step.run === 'string' ? step.run : undefined,
      with: isMapping(step.with) ? step.with : {},
    };
  });
}

function loadWorkflows(): Workflow[] {
  const files = readdirSync(WORKFLOWS_DIR)
    .filter((f) => f.endsWith('.yml') || f.endsWith('.yaml'))
    .sort();
  return files.map((file) => {
    const text = readFileSync(join(WORKFLOWS_DIR, file), 'utf8');
    // YAML 1.2 (the yaml package's default): `on` is a plain key, not a boolean.
    const doc: unknown = parse(text);
    assert.ok(isMapping(doc), `${file}: not a YAML mapping`);
    const jobs = isMapping(doc.jobs) ? doc.jobs : {};
    return {
      file,
      text,
      doc,
      jobs: Object.entries(jobs).map(([id, raw]) => {
        const job = isMapping(raw) ? raw : {};
        return { id, raw: job, steps: stepsOf(job) };
      }),
    };
  });
}

/** The events a workflow is triggered by, whatever form `on:` takes. */
function triggers(workflow: Workflow): string[] {
  const on = workflow.doc.on;
  if (typeof on === 'string') return [on];
  if (Array.isArray(on)) return on.filter((e): e is string => typeof e === 'string');
  if (isMapping(on)) return Object.keys(on);
  return [];
}

interface Use {
  readonly workflow: string;
  readonly where: string;
  readonly value: string;
}

/** Every `uses:` of a workflow: steps' actions and jobs' reusable workflows. */
function usesOf(workflow: Workflow): Use[] {
  const found: Use[] = [];
  for (const job of workflow.jobs) {
    if (typeof job.raw.uses === 'string') found.push({ workflow: workflow.file, where: `job ${job.id}`, value: job.raw.uses });
    for (const step of job.steps) {
      if (step.uses !== undefined) found.push({ workflow: workflow.file, where: `job ${job.id}, ${step.name}`, value: step.uses });
    }
  }
  return found;
}

/** owner/repo[/path]@<40 hex> */
const PINNED = /^([A-Za-z0-9_.-]+\/[A-Za-z0-9_.-]+)(\/[^@\s]+)?@([0-9a-f]{40})$/;
/** A `uses:` line as written: the reference, then `# vX.Y.Z` (the release the SHA belongs to). */
const USES_LINE = /^\s*(?:-\s+)?uses\s*:/;
const PINNED_LINE = /^\s*(?:-\s+)?uses\s*:\s*(['"]?)([^\s'"#]+)\1\s+#\s*(v\d+\.\d+\.\d+)\s*$/;

interface PinnedLine {
  readonly workflow: string;
  readonly line: number;
  readonly ref: string;
  readonly tag: string;
}

/** The `uses:` lines of the raw text; lines that are not SHA + version comment go to `bad`. */
function pinnedLines(workflow: Workflow, bad: string[]): PinnedLine[] {
  const lines: PinnedLine[] = [];
  workflow.text.split('\n').forEach((line, i) => {
    if (!USES_LINE.test(line)) return;
    const match = PINNED_LINE.exec(line);
    if (!match) {
      bad.push(`${workflow.file}:${i + 1}: \`${line.trim()}\` is not \`uses: owner/repo@<40-hex SHA> # vX.Y.Z\``);
      return;
    }
    lines.push({ workflow: workflow.file, line: i + 1, ref: match[2]!, tag: match[3]! });
  });
  return lines;
}

/** Problems with one `permissions:` value; `writeAllowed` is the set of scopes that may be `write`. */
function permissionProblems(where: string, permissions: unknown, writeAllowed: ReadonlySet<string>): string[] {
  if (permissions === 'read-all') return [];
  if (typeof permissions === 'string') return [`${where}: permissions \`${permissions}\` (only read-all, or a mapping, is allowed)`];
  if (!isMapping(permissions)) return [`${where}: permissions is neither a mapping nor read-all`];
  const problems: string[] = [];
  for (const [scope, level] of Object.entries(permissions)) {
    if (level === 'read' || level === 'none') continue;
    if (level === 'write' && writeAllowed.has(scope)) continue;
    problems.push(`${where}: \`${scope}: ${String(level)}\` is not allowed here`);
  }
  return problems;
}

/** The job that builds and publishes the runtime image: the only one that may write packages. */
function isImagePublishJob(workflow: Workflow, job: Job): boolean {
  return (
    workflow.file === IMAGE &&
    job.steps.some((s) => s.uses !== undefined && s.uses.startsWith('docker/build-push-action@') && s.with.target === 'runtime')
  );
}

/** Expressions whose values come from whoever opened the pull request or pushed the branch. */
const UNTRUSTED_EXPRESSION = /\$\{\{[^}]*\bgithub\s*\.\s*(?:event\b|head_ref\b)[^}]*\}\}/g;

/** `npm test` as a command of its own in a shell script (possibly after sudo/env). */
const NPM_TEST = /(?:^|[\s;&|(])npm\s+test(?=$|[\s;&|)])/m;
const NPM_CI = /(?:^|[\s;&|(])npm\s+ci(?=$|[\s;&|)])/m;

const workflows = loadWorkflows();
const byFile = new Map(workflows.map((w) => [w.file, w]));

function workflow(file: string): Workflow {
  const found = byFile.get(file);
  assert.ok(found, `.github/workflows/${file} is missing`);
  return found;
}

describe('GitHub Actions workflows', () => {
  it('the CI, image and chart workflows exist (the rules below look them up by file name)', () => {
    for (const file of [CI, IMAGE, CHART]) workflow(file);
  });

  it('actionlint finds no problem in any of them', () => {
    try {
      accessSync(ACTIONLINT, constants.X_OK);
    } catch {
      assert.fail(`${ACTIONLINT} is missing: run \`bash ${PROVISION_SCRIPT}\` (npm test runs it, through scripts/provision-emulators.sh), which installs actionlint`);
    }
    const files = workflows.map((w) => join('.github', 'workflows', w.file));
    const result = spawnSync(ACTIONLINT, ['-no-color', ...files], { cwd: ROOT, encoding: 'utf8', timeout: 120_000 });
    if (result.error) throw result.error;
    assert.equal(result.status, 0, `actionlint found problems (exit ${result.status}):\n${result.stdout}${result.stderr}`);
  });

  it('every uses: is owner/repo[/path]@<40-hex SHA> with a # vX.Y.Z comment on the same line', () => {
    const bad: string[] = [];
    for (const w of workflows) {
      const lines = pinnedLines(w, bad);
      for (const use of usesOf(w)) {
        if (!PINNED.test(use.value)) bad.push(`${w.file} (${use.where}): \`${use.value}\` is not pinned to a full commit SHA`);
        else if (!lines.some((l) => l.ref === use.value))
          bad.push(`${w.file} (${use.where}): \`${use.value}\` has no \`uses: … # vX.Y.Z\` line of its own with the release tag`);
      }
    }
    assert.ok(workflows.some((w) => usesOf(w).length > 0), 'found uses: to check');
    assert.deepEqual(bad, []);
  });

  it('an action is pinned to the same SHA and tag in every workflow', () => {
    const pins = new Map<string, Map<string, string[]>>();
    for (const w of workflows) {
      for (const line of pinnedLines(w, [])) {
        const match = PINNED.exec(line.ref);
        if (!match) continue;
        const repo = match[1]!.toLowerCase();
        const pin = `${match[3]!} # ${line.tag}`;
        const seen = pins.get(repo) ?? new Map<string, string[]>();
        seen.set(pin, [...(seen.get(pin) ?? []), `${w.file}:${line.line}`]);
        pins.set(repo, seen);
      }
    }
    const disagreements = [...pins]
      .filter(([, seen]) => seen.size > 1)
      .map(([repo, seen]) => `${repo}: ${[...seen].map(([pin, at]) => `${pin} (${at.join(', ')})`).join(' vs ')}`);
    assert.deepEqual(disagreements, []);
  });

  it('the default token is read-only; only the image-publishing job may write, and only packages/id-token/attestations', () => {
    const problems: string[] = [];
    for (const w of workflows) {
      if (!('permissions' in w.doc)) problems.push(`${w.file}: no top-level permissions (the default token could be read-write)`);
      else problems.push(...permissionProblems(`${w.file} (top level)`, w.doc.permissions, new Set()));
      for (const job of w.jobs) {
        if (!('permissions' in job.raw)) continue;
        const allowed = isImagePublishJob(w, job) ? IMAGE_JOB_WRITE_SCOPES : new Set<string>();
        problems.push(...permissionProblems(`${w.file} (job ${job.id})`, job.raw.permissions, allowed));
      }
    }
    assert.deepEqual(problems, []);
  });

  it('the CI job runs the README\'s `npm ci && npm test` on Node.js 20, 22 and 24', () => {
    const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
    assert.match(readme, /^npm test\b/m, 'the README quick start gives `npm test`');

    const ci = workflow(CI);
    const job = ci.jobs.find((j) => j.id === 'test');
    assert.ok(job, `${CI}: no job \`test\``);
    const strategy = isMapping(job.raw.strategy) ? job.raw.strategy : {};
    const matrix = isMapping(strategy.matrix) ? strategy.matrix : {};
    assert.ok(Array.isArray(matrix.node), `${CI}: jobs.test.strategy.matrix.node is not a list`);
    assert.deepEqual(matrix.node.map(String).sort(), NODE_LINES, `${CI}: the Node.js matrix`);
    assert.equal(strategy['fail-fast'], false, `${CI}: one Node.js line failing must not cancel the others (fail-fast: false)`);

    const setupNode = job.steps.find((s) => s.uses?.startsWith('actions/setup-node@'));
    assert.ok(setupNode, `${CI}: jobs.test has no actions/setup-node step`);
    assert.match(String(setupNode.with['node-version']), /^\$\{\{\s*matrix\.node\s*\}\}$/, `${CI}: setup-node takes the matrix's node`);

    const test = job.steps.find((s) => s.run !== undefined && NPM_TEST.test(s.run));
    assert.ok(test, `${CI}: no step of jobs.test runs \`npm test\``);
    const install = job.steps.find((s) => s.run !== undefined && NPM_CI.test(s.run));
    assert.ok(install && install.index < test.index, `${CI}: jobs.test runs \`npm ci\` before \`npm test\``);
  });

  it('pull requests are checked, and nothing runs on pull_request_target', () => {
    for (const file of [CI, IMAGE, CHART]) {
      assert.ok(triggers(workflow(file)).includes('pull_request'), `${file}: no pull_request trigger`);
    }
    const target = workflows.filter((w) => triggers(w).includes('pull_request_target')).map((w) => w.file);
    assert.deepEqual(target, [], 'pull_request_target runs fork code with the base repository\'s token and secrets');
  });

  it('no run: script interpolates github.event.* or github.head_ref (pass them through env: instead)', () => {
    const injections: string[] = [];
    for (const w of workflows) {
      for (const job of w.jobs) {
        for (const step of job.steps) {
          const scripts = [step.run, step.uses?.startsWith('actions/github-script@') ? step.with.script : undefined];
          for (const script of scripts) {
            if (typeof script !== 'string') continue;
            for (const m of script.matchAll(UNTRUSTED_EXPRESSION)) injections.push(`${w.file} (job ${job.id}, ${step.name}): ${m[0]}`);
          }
        }
      }
    }
    assert.deepEqual(injections, []);
  });
});
