/**
 * The Dockerfile and .dockerignore, without a Docker engine (none runs where Keyward is developed):
 *
 *  1. The Dockerfile read statically (test/deploy/container-dockerfile.ts): stages and their
 *     bases, users, ports, healthcheck, entrypoint, how dependencies are installed and pruned,
 *     what the runtime image contains, apt hygiene, nothing fetched unchecked and no secrets.
 *  2. .dockerignore with Docker's pattern semantics: what stays out of the build context, and
 *     that everything the Dockerfile copies is in it.
 *  3. The dev image's entrypoint (a heredoc in the Dockerfile), run for real against SoftHSM2.
 *  4. The runtime stage's contents rebuilt in a temporary directory as the Dockerfile makes them
 *     (the production-only `npm ci --omit=dev` from the lockfile, pkcs11js compiled; dist/
 *     compiled; config/dev.yaml and LICENSE) and started with plain `node dist/main.js` there,
 *     with HOME unusable: a local and a PKCS#11 (SoftHSM2) tenant round-trip, the image's
 *     HEALTHCHECK command passes, SIGTERM stops it cleanly, development mode starts. This proves
 *     the pruned production dependencies are enough: nothing from devDependencies (tsx,
 *     TypeScript) is needed at run time.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { cp, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { freePort } from '../helpers/emulator.js';
import { REPO } from '../helpers/process.js';
import { cleanupSoftHsm, createSoftHsmToken, type SoftHsmToken } from '../helpers/softhsm.js';
import {
  execForm,
  importClosure,
  last,
  parseCopy,
  parseDockerfile,
  parseDockerignore,
  parseHealthcheck,
  stageEnv,
  type Instruction,
} from './container-dockerfile.js';

const dockerfileText = readFileSync(join(REPO, 'Dockerfile'), 'utf8');
const dockerfile = parseDockerfile(dockerfileText);
const ignore = parseDockerignore(readFileSync(join(REPO, '.dockerignore'), 'utf8'));

const runs = (stage: string): Instruction[] => dockerfile.stage(stage).instructions.filter((i) => i.keyword === 'RUN');
const copies = (stage: string) => dockerfile.stage(stage).instructions.filter((i) => i.keyword === 'COPY').map(parseCopy);

/** Every file under `dir` (relative to the repository), skipping what is never a build input. */
function repoFiles(dir = REPO, out: string[] = []): string[] {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const full = join(dir, entry.name);
    const rel = relative(REPO, full).split('\\').join('/');
    if (entry.isDirectory()) {
      if (rel === '.git' || rel.endsWith('node_modules')) continue;
      repoFiles(full, out);
    } else {
      out.push(rel);
    }
  }
  return out;
}

const devEntrypoint = (): string => {
  const copy = dockerfile.stage('dev').instructions.find((i) => i.keyword === 'COPY' && i.args.includes('/usr/local/bin/keyward-dev-entrypoint'));
  assert.ok(copy && copy.heredocs.length === 1, 'the dev entrypoint is a heredoc of the dev stage');
  return copy.heredocs[0]!.body;
};

describe('Dockerfile (read statically)', () => {
  it('uses BuildKit syntax; stages deps, build, standins, hsm, runtime-base, dev and runtime, the last being runtime (the default target)', () => {
    assert.match(dockerfile.directives.syntax ?? '', /^docker\/dockerfile:1(\.\d+)*$/);
    assert.ok(dockerfileText.startsWith('# syntax='), 'the syntax directive is the first line');
    assert.deepEqual(dockerfile.stages.map((s) => s.name), ['deps', 'build', 'standins', 'hsm', 'runtime-base', 'dev', 'runtime']);
    assert.equal(dockerfile.stages.at(-1)!.name, 'runtime');
    assert.deepEqual(dockerfile.chain('runtime').map((s) => s.name), ['runtime-base', 'runtime']);
    assert.deepEqual(dockerfile.chain('dev').map((s) => s.name), ['runtime-base', 'dev'], 'dev is the runtime image plus SoftHSM');
  });

  it('every base image is Node.js 24 on Debian bookworm (glibc), an earlier stage, or scratch for the hsm stage', () => {
    assert.equal(dockerfile.globalArgs.NODE_VERSION, '24');
    for (const stage of dockerfile.stages) {
      if (stage.parent) continue;
      if (stage.name === 'hsm') {
        assert.equal(stage.base, 'scratch');
        continue;
      }
      assert.match(stage.base, /^node:24-bookworm(-slim)?$/, `${stage.name}: FROM ${stage.from}`);
    }
    assert.equal(dockerfile.stage('deps').base, 'node:24-bookworm', 'the build stages have python3/make/g++ for pkcs11js');
    assert.equal(dockerfile.stage('runtime-base').base, 'node:24-bookworm-slim');
    assert.equal(dockerfile.stage('standins').base, 'node:24-bookworm-slim');
  });

  it('runtime, dev and standins run as the node user (uid 1000), never root', () => {
    for (const stage of ['runtime', 'dev', 'standins']) assert.equal(last(dockerfile, stage, 'USER')?.args, 'node', stage);
    assert.equal(dockerfile.stage('runtime').instructions.find((i) => i.keyword === 'USER')?.args, 'node', 'runtime says so itself');
  });

  it('runtime: WORKDIR /app, NODE_ENV=production, ports 7777 and 9000, a node HEALTHCHECK on /live, an exec-form ENTRYPOINT', () => {
    assert.equal(last(dockerfile, 'runtime', 'WORKDIR')?.args, '/app');
    assert.equal(stageEnv(dockerfile, 'runtime').NODE_ENV, 'production');
    const exposed = dockerfile.effective('runtime').filter((i) => i.keyword === 'EXPOSE').flatMap((i) => i.args.split(/\s+/));
    assert.deepEqual(exposed.sort(), ['7777', '9000']);
    const health = parseHealthcheck(last(dockerfile, 'runtime', 'HEALTHCHECK')!);
    assert.ok(Array.isArray(health.command), 'exec form');
    assert.equal(health.command[0], 'node', 'node itself: the slim image has no curl or wget');
    assert.match(health.command.join(' '), /KEYWARD_OPS_PORT/);
    assert.match(health.command.join(' '), /http:\/\/127\.0\.0\.1:.*\/live/);
    for (const option of ['interval', 'timeout', 'start-period', 'retries']) assert.ok(health.options[option], option);
    assert.deepEqual(execForm(last(dockerfile, 'runtime', 'ENTRYPOINT')!.args), ['node', 'dist/main.js']);
    assert.deepEqual(execForm(last(dockerfile, 'runtime', 'CMD')!.args), [], "the base image's CMD [\"node\"] is cleared");
    assert.deepEqual(execForm(last(dockerfile, 'dev', 'ENTRYPOINT')!.args), ['/usr/local/bin/keyward-dev-entrypoint']);
    assert.deepEqual(execForm(last(dockerfile, 'dev', 'CMD')!.args), ['node', '/app/dist/main.js']);
    const labels = dockerfile.effective('runtime').filter((i) => i.keyword === 'LABEL').map((i) => i.args).join(' ');
    for (const label of ['title', 'description', 'licenses', 'version']) assert.match(labels, new RegExp(`org\\.opencontainers\\.image\\.${label}=`));
    assert.match(labels, /licenses="Apache-2\.0"/);
  });

  it('installs from the lockfile with npm ci (npm cache mounted), builds dist/, and prunes the dev dependencies', () => {
    const deps = dockerfile.stage('deps').instructions;
    const lockCopy = deps.findIndex((i) => i.keyword === 'COPY' && /package\.json\s+package-lock\.json/.test(i.args));
    const install = deps.findIndex((i) => i.keyword === 'RUN' && /\bnpm ci\b/.test(i.args));
    assert.ok(lockCopy >= 0 && install > lockCopy, 'package.json and package-lock.json are copied before npm ci');
    assert.match(deps[install]!.args, /--mount=type=cache,target=\/root\/\.npm/);
    for (const stage of dockerfile.stages) {
      for (const run of stage.instructions.filter((i) => i.keyword === 'RUN')) {
        assert.doesNotMatch(run.args, /\bnpm (install|i)\b/, `${stage.name}: npm install would ignore the lockfile`);
      }
    }
    const build = runs('build').map((r) => r.args).join(' && ');
    assert.match(build, /npm run build[\s\S]*npm prune --omit=dev/, 'build, then prune');
  });

  it('runtime contains only package.json, the pruned node_modules, dist/, config/dev.yaml, LICENSE and /opt/pkcs11', () => {
    const found = copies('runtime-base').map((c) => ({ from: c.flags.from, sources: c.sources, dest: c.dest }));
    assert.deepEqual(found, [
      { from: 'build', sources: ['/app/package.json'], dest: './package.json' },
      { from: 'build', sources: ['/app/node_modules'], dest: './node_modules' },
      { from: 'build', sources: ['/app/dist'], dest: './dist' },
      { from: undefined, sources: ['config/dev.yaml'], dest: './config/dev.yaml' },
      { from: undefined, sources: ['LICENSE'], dest: './LICENSE' },
      { from: 'hsm', sources: ['/'], dest: '/opt/pkcs11/' },
    ]);
    assert.equal(copies('runtime').length, 0);
    assert.ok(!copies('runtime-base').some((c) => c.flags.from === 'deps'), 'never the unpruned tree');
  });

  it('bakes a PKCS#11 module in through the `hsm` stage (replaced by --build-context hsm=DIR) and the PKCS11_APT_PACKAGES build arg', () => {
    const hsm = dockerfile.stage('hsm');
    assert.equal(hsm.base, 'scratch');
    assert.ok(hsm.instructions.every((i) => i.keyword === 'COPY' && i.heredocs.length > 0), 'only its README: nothing from outside');
    assert.match(dockerfileText, /docker build --build-context hsm=/, 'documented');
    const arg = dockerfile.stage('runtime-base').instructions.find((i) => i.keyword === 'ARG' && i.args.startsWith('PKCS11_APT_PACKAGES'));
    assert.equal(arg?.args, 'PKCS11_APT_PACKAGES=""', 'no package unless asked');
  });

  it('fetches nothing unchecked and carries no secrets', () => {
    for (const stage of dockerfile.stages) {
      for (const ins of stage.instructions) {
        if (ins.keyword === 'ADD') {
          assert.ok(!/https?:\/\//.test(ins.args) || /--checksum=sha256:/.test(ins.args), `line ${ins.line}: ADD of a URL needs --checksum`);
        }
        if (ins.keyword === 'RUN') {
          assert.doesNotMatch(ins.args, /\b(curl|wget)\b[^|]*\|\s*(ba)?sh\b/, `line ${ins.line}: no curl | sh`);
          assert.doesNotMatch(ins.args, /--insecure|--no-check-certificate|strict-ssl\s*(=|\s)\s*false|NODE_TLS_REJECT_UNAUTHORIZED/, `line ${ins.line}`);
        }
        if (ins.keyword === 'ENV' || ins.keyword === 'ARG' || ins.keyword === 'LABEL') {
          assert.doesNotMatch(ins.args, /(API_KEY|PASSWORD|SECRET|TOKEN|_PIN|CREDENTIAL|PRIVATE)[A-Z_]*\s*=/i, `line ${ins.line}: ${ins.keyword} ${ins.args}`);
        }
      }
    }
  });

  it('apt layers install without recommends and remove the package lists in the same RUN', () => {
    let seen = 0;
    for (const stage of dockerfile.stages) {
      for (const run of stage.instructions.filter((i) => i.keyword === 'RUN' && /apt-get install/.test(i.args))) {
        seen++;
        assert.match(run.args, /apt-get update/, `line ${run.line}`);
        assert.match(run.args, /apt-get install -y --no-install-recommends/, `line ${run.line}`);
        assert.match(run.args, /rm -rf \/var\/lib\/apt\/lists\/\*/, `line ${run.line}`);
      }
    }
    assert.ok(seen >= 3, 'deps (conditional), standins, runtime-base (conditional), dev');
    const dev = runs('dev').find((r) => /apt-get install/.test(r.args))!;
    assert.match(dev.args, /\bsofthsm2\b/);
    assert.match(dev.args, /\bopensc\b/);
  });
});

describe('.dockerignore (Docker pattern semantics)', () => {
  it('leaves out tests, docs, benchmarks, git and CI files, the chart, markdown, local state, keys, secrets, .env files and build output', () => {
    const out = [
      'test/cli.test.ts', 'test/helpers/app.ts', 'test/helpers/softhsm.ts', 'test/fixtures/x.json', 'test/interop/package.json', 'test/deploy/container.test.ts',
      'docs/configuration.md', 'bench/run.ts', '.git/HEAD', '.github/workflows/ci.yml', 'helm/keyward/Chart.yaml',
      'README.md', 'DEVELOPERS.md', 'src/README.md', 'node_modules/fastify/package.json', 'dist/main.js', 'coverage/lcov.info',
      '.keyward-dev/local-master.key', '.env', '.env.local', 'src/.env', 'server.pem', 'src/kms/test.pem', 'config/tenant.key',
      'secrets/api-key', 'src/secrets/pin', 'config/other.yaml', 'deploy/compose/tenants.yaml', 'docker-compose.yml', 'scripts/test.sh',
      'scripts/provision/local-kms.sh', 'openapi.yaml', 'eslint.config.js', 'npm-debug.log', 'scripts/standins/node_modules/x.js',
    ];
    for (const path of out) assert.ok(ignore.excluded(path), `${path} is left out of the build context`);
  });

  it('lets in what the build needs: package*.json, tsconfig*.json, src/, config/dev.yaml, LICENSE, the stand-ins and their helpers', () => {
    const files = repoFiles();
    const included = files.filter((f) => !ignore.excluded(f)).sort();
    const expected = files
      .filter((f) =>
        ['package.json', 'package-lock.json', 'tsconfig.json', 'tsconfig.build.json', 'config/dev.yaml', 'LICENSE'].includes(f) ||
        f.startsWith('src/') ||
        f.startsWith('scripts/standins/') ||
        /^test\/helpers\/(emulator|https-standin|azure-token-standin|azure-keyvault-standin|gcp-kms-standin)\.ts$/.test(f),
      )
      .filter((f) => !/\.(md|pem|key|log)$/.test(f))
      .sort();
    assert.deepEqual(included, expected);
    for (const f of ['package.json', 'package-lock.json', 'src/main.ts', 'src/kms/crc32c.ts', 'scripts/standins/serve.ts']) assert.ok(included.includes(f), f);
  });

  it('every file the Dockerfile copies from the build context exists and is in the context', () => {
    let checked = 0;
    for (const stage of dockerfile.stages) {
      for (const copy of stage.instructions.filter((i) => i.keyword === 'COPY').map(parseCopy)) {
        if (copy.flags.from !== undefined || copy.heredoc) continue;
        for (const source of copy.sources) {
          const path = join(REPO, source);
          assert.ok(existsSync(path), `${stage.name}: COPY ${source}: missing`);
          const files = statSync(path).isDirectory() ? repoFiles(path) : [source];
          assert.ok(files.length > 0, source);
          for (const f of files) {
            assert.ok(!ignore.excluded(f), `${stage.name}: COPY ${source}: ${f} is left out by .dockerignore`);
            checked++;
          }
        }
      }
    }
    assert.ok(checked > 50);
  });

  it('the standins stage copies everything scripts/standins imports (from test/helpers and src)', () => {
    const closure = [...importClosure(REPO, readdirSync(join(REPO, 'scripts', 'standins')).filter((f) => f.endsWith('.ts')).map((f) => `scripts/standins/${f}`))];
    const copied = copies('standins').filter((c) => c.flags.from === undefined).flatMap((c) => c.sources);
    for (const file of closure.filter((f) => !f.startsWith('scripts/standins/'))) {
      assert.ok(copied.includes(file), `${file} (imported by the stand-ins) is copied into the standins image`);
    }
    assert.ok(copied.includes('scripts/standins'));
    assert.deepEqual(execForm(last(dockerfile, 'standins', 'ENTRYPOINT')!.args), ['node', '--import', 'tsx', 'scripts/standins/serve.ts']);
    assert.ok(copies('standins').some((c) => c.flags.from === 'deps' && c.sources[0] === '/app/node_modules'), 'with tsx (a dev dependency)');
  });
});

describe("the dev image's entrypoint (SoftHSM token on first start)", () => {
  let dir: string;
  let script: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'keyward-dev-entrypoint-'));
    script = join(dir, 'keyward-dev-entrypoint');
    await writeFile(script, devEntrypoint(), { mode: 0o755 });
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const run = (env: Record<string, string>, args: string[]) =>
    spawnSync(script, args, { env: { PATH: process.env.PATH ?? '', KEYWARD_SOFTHSM_DIR: join(dir, 'hsm'), SOFTHSM2_CONF: join(dir, 'hsm', 'softhsm2.conf'), ...env }, encoding: 'utf8' });

  it('is valid POSIX sh, and runs the command it is given with SOFTHSM2_CONF set', () => {
    const syntax = spawnSync('sh', ['-n', script], { encoding: 'utf8' });
    assert.equal(syntax.status, 0, syntax.stderr);
    const result = run({}, ['sh', '-c', 'echo "conf=$SOFTHSM2_CONF"']);
    assert.equal(result.status, 0, result.stderr);
    assert.equal(result.stdout.trim(), `conf=${join(dir, 'hsm', 'softhsm2.conf')}`);
  });

  it('refuses KEYWARD_SOFTHSM_INIT=1 without a PIN (exit 2)', () => {
    const result = run({ KEYWARD_SOFTHSM_INIT: '1' }, ['true']);
    assert.equal(result.status, 2);
    assert.match(result.stderr, /needs KEYWARD_SOFTHSM_PIN/);
  });

  it('creates the token and a sensitive, non-extractable AES-256 key once, and finds them on the next start', () => {
    const env = { KEYWARD_SOFTHSM_INIT: '1', KEYWARD_SOFTHSM_PIN: '11223344', KEYWARD_SOFTHSM_TOKEN_LABEL: 'dev-token', KEYWARD_SOFTHSM_KEY_LABEL: 'dev-master' };
    const first = run(env, ['true']);
    assert.equal(first.status, 0, first.stderr);
    assert.match(first.stderr, /creating SoftHSM token 'dev-token'/);
    assert.match(first.stderr, /creating AES-256 key 'dev-master'/);
    const second = run(env, ['true']);
    assert.equal(second.status, 0, second.stderr);
    assert.match(second.stderr, /token 'dev-token' is there/);
    assert.match(second.stderr, /key 'dev-master' is there/);
    const list = spawnSync('pkcs11-tool', ['--module', '/usr/lib/softhsm/libsofthsm2.so', '--token-label', 'dev-token', '--login', '--pin', '11223344', '--list-objects', '--type', 'secrkey'], {
      env: { PATH: process.env.PATH ?? '', SOFTHSM2_CONF: join(dir, 'hsm', 'softhsm2.conf') },
      encoding: 'utf8',
    });
    assert.equal(list.status, 0, list.stderr);
    assert.equal(list.stdout.match(/Secret Key Object; AES length 32/g)?.length, 1, list.stdout);
    assert.match(list.stdout, /label:\s+dev-master/);
    assert.match(list.stdout, /Usage:.*encrypt, decrypt.*wrap, unwrap/);
    assert.match(list.stdout, /Access:.*\bsensitive\b.*never extractable/);
  });
});

interface Started {
  readonly child: ChildProcess;
  readonly api: string;
  readonly ops: string;
  readonly opsPort: number;
  readonly stdout: () => string;
  readonly exited: Promise<number | null>;
}

/** `node dist/main.js` in `cwd` with exactly `env` (no NODE_OPTIONS, no tsx), until it listens. */
async function startBuilt(cwd: string, env: Record<string, string>): Promise<Started> {
  const child = spawn(process.execPath, ['dist/main.js'], { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.setEncoding('utf8').on('data', (c: string) => (out += c));
  child.stderr.setEncoding('utf8').on('data', (c: string) => (err += c));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const deadline = Date.now() + 30_000;
  for (;;) {
    const line = out.split('\n').find((l) => l.includes('"msg":"keyward listening"'));
    if (line) {
      const entry = JSON.parse(line) as { api: Array<{ address: string; port: number }>; ops: Array<{ address: string; port: number }> };
      return {
        child,
        api: `http://127.0.0.1:${entry.api[0]!.port}`,
        ops: `http://127.0.0.1:${entry.ops[0]!.port}`,
        opsPort: entry.ops[0]!.port,
        stdout: () => out,
        exited,
      };
    }
    if (child.exitCode !== null || Date.now() > deadline) {
      child.kill('SIGKILL');
      assert.fail(`node dist/main.js did not start (exit ${child.exitCode}):\n${err}\n${out}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe("the runtime stage's contents, rebuilt and started without Docker", () => {
  let app: string;
  let token: SoftHsmToken;
  let server: Started | undefined;
  const API_KEY = 'container-test-api-key-0123';

  before(async () => {
    app = await mkdtemp(join(tmpdir(), 'keyward-runtime-'));
    // COPY --from=build: package.json, then the production dependencies as `npm ci` + `npm prune
    // --omit=dev` leave them (the same set as a production-only install from the lockfile).
    await cp(join(REPO, 'package.json'), join(app, 'package.json'));
    await cp(join(REPO, 'package-lock.json'), join(app, 'package-lock.json'));
    const install = spawnSync('npm', ['ci', '--omit=dev', '--ignore-scripts=false', '--no-audit', '--no-fund', '--prefer-offline'], { cwd: app, encoding: 'utf8', timeout: 300_000 });
    assert.equal(install.status, 0, `npm ci --omit=dev failed:\n${install.stderr}`);
    await rm(join(app, 'package-lock.json'));
    const tsc = spawnSync(process.execPath, [join(REPO, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.build.json', '--outDir', join(app, 'dist')], { cwd: REPO, encoding: 'utf8', timeout: 300_000 });
    assert.equal(tsc.status, 0, tsc.stdout + tsc.stderr);
    // COPY from the context, and the RUN that makes the development key directory.
    await mkdir(join(app, 'config'));
    await cp(join(REPO, 'config', 'dev.yaml'), join(app, 'config', 'dev.yaml'));
    await cp(join(REPO, 'LICENSE'), join(app, 'LICENSE'));
    await mkdir(join(app, '.keyward-dev'), { mode: 0o700 });

    token = await createSoftHsmToken({ label: 'container-hsm', keys: ['container-master'] });
    await mkdir(join(app, 'etc'));
    await writeFile(
      join(app, 'etc', 'tenants.yaml'),
      `version: 1
tenants:
  local-tenant:
    kmsConfigs:
      - { id: 1, status: primary, provider: local, local: { keyFile: keys/local.key } }
  hsm-tenant:
    kmsConfigs:
      - id: 2
        status: primary
        provider: pkcs11
        pkcs11: { module: ${token.module}, tokenLabel: ${token.label}, pin: { env: CONTAINER_HSM_PIN }, keyLabel: container-master }
`,
    );
  });

  after(async () => {
    if (server && server.child.exitCode === null) {
      server.child.kill('SIGKILL');
      await server.exited;
    }
    await cleanupSoftHsm();
    if (app) await rm(app, { recursive: true, force: true });
  });

  /** The runtime image's environment (its ENV), and what a deployment adds; HOME unusable. */
  const env = (extra: Record<string, string>): Record<string, string> => ({
    PATH: process.env.PATH ?? '',
    HOME: '/nonexistent',
    ...stageEnv(dockerfile, 'runtime'),
    KEYWARD_HOST: '127.0.0.1',
    KEYWARD_OPS_HOST: '127.0.0.1',
    KEYWARD_PORT: '0',
    KEYWARD_OPS_PORT: '0',
    ...extra,
  });

  const post = async (url: string, key: string, body: unknown): Promise<{ status: number; json: Record<string, unknown> }> => {
    const res = await fetch(url, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });
    return { status: res.status, json: (await res.json()) as Record<string, unknown> };
  };

  it('has the production dependencies only: pkcs11js compiled, no dev-only package (tsx, typescript, eslint …)', () => {
    assert.ok(existsSync(join(app, 'node_modules', 'pkcs11js', 'build', 'Release', 'pkcs11.node')), 'pkcs11js built natively');
    for (const name of ['tsx', 'typescript', 'eslint', 'typescript-eslint']) assert.ok(!existsSync(join(app, 'node_modules', name)), `${name} is not installed`);
    const lock = JSON.parse(readFileSync(join(REPO, 'package-lock.json'), 'utf8')) as { packages: Record<string, { dev?: boolean }> };
    const devOnly = Object.entries(lock.packages).filter(([path, p]) => path.startsWith('node_modules/') && p.dev === true);
    assert.ok(devOnly.length > 50);
    for (const [path] of devOnly) assert.ok(!existsSync(join(app, path)), `${path} (dev only) is not installed`);
    // Nothing above the app directory could supply a module either.
    for (let dir = join(app, '..'); ; dir = join(dir, '..')) {
      assert.ok(!existsSync(join(dir, 'node_modules')), `${dir}/node_modules would be on the module path`);
      if (dir === join(dir, '..')) break;
    }
  });

  it('serves a local and a PKCS#11 (SoftHSM2) tenant with plain `node dist/main.js`; the image HEALTHCHECK passes; SIGTERM exits 0', async () => {
    server = await startBuilt(app, env({ KEYWARD_CONFIG: 'etc/tenants.yaml', KEYWARD_API_KEY: API_KEY, CONTAINER_HSM_PIN: token.pin, SOFTHSM2_CONF: process.env.SOFTHSM2_CONF! }));
    assert.match(server.stdout(), /"mode":"production"/);
    for (const tenantId of ['local-tenant', 'hsm-tenant']) {
      const gen = await post(`${server.api}/v1/keys/generate`, API_KEY, { tenantId, metadata: { requestingId: 'container-test' } });
      assert.equal(gen.status, 200, `${tenantId}: ${JSON.stringify(gen.json)}\n${server.stdout()}`);
      const un = await post(`${server.api}/v1/keys/unwrap`, API_KEY, { tenantId, edek: gen.json.edek, metadata: { requestingId: 'container-test' } });
      assert.equal(un.status, 200, JSON.stringify(un.json));
      assert.equal(un.json.dek, gen.json.dek);
    }
    assert.ok(existsSync(join(app, 'etc', 'keys', 'local.key')), 'relative key path resolved against the tenants file');
    assert.equal((await fetch(`${server.ops}/live`)).status, 200);
    assert.equal((await fetch(`${server.ops}/ready`)).status, 200);

    // The HEALTHCHECK command of the runtime image, run as Docker would, with the container's env.
    const health = parseHealthcheck(last(dockerfile, 'runtime', 'HEALTHCHECK')!);
    const command = health.command as string[];
    const probe = (opsPort: string): number | null =>
      spawnSync(process.execPath, command.slice(1), { env: { PATH: process.env.PATH ?? '', KEYWARD_OPS_PORT: opsPort }, timeout: 10_000 }).status;
    assert.equal(probe(String(server.opsPort)), 0, 'healthy');
    assert.equal(probe(` ${server.opsPort} `), 0, 'the value is trimmed, as Keyward trims it');
    assert.equal(probe(String(await freePort())), 1, 'unhealthy when nothing answers');

    server.child.kill('SIGTERM');
    assert.equal(await server.exited, 0, 'drains and exits 0 on SIGTERM');
  });

  it('the CLI runs from the same tree (the image\'s `keyward` command): config check', () => {
    const check = spawnSync(process.execPath, ['dist/cli.js', 'config', 'check', '--config', 'etc/tenants.yaml'], { cwd: app, env: env({}), encoding: 'utf8' });
    assert.equal(check.status, 0, check.stderr);
    assert.match(check.stdout, /valid/);
    assert.match(dockerfileText, /exec node \/app\/dist\/cli\.js "\$@"/);
  });

  it('without KEYWARD_CONFIG, development mode starts and keeps its key in the writable .keyward-dev', async () => {
    const dev = await startBuilt(app, env({ KEYWARD_PORT: '0', KEYWARD_OPS_PORT: '0' }));
    try {
      assert.match(dev.stdout(), /"mode":"development"/);
      const gen = await post(`${dev.api}/v1/keys/generate`, 'keyward-dev-api-key', { tenantId: 'tenant-dev', metadata: { requestingId: 'container-test' } });
      assert.equal(gen.status, 200, JSON.stringify(gen.json));
      assert.ok(existsSync(join(app, '.keyward-dev', 'local-master.key')));
    } finally {
      dev.child.kill('SIGTERM');
      await dev.exited;
    }
  });
});
