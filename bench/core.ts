/**
 * `npx tsx bench/core.ts`: a small in-process benchmark of the key service over the
 * `local` driver (no HTTP), against raw AES-256-GCM. It prints figures; it asserts
 * nothing. The HTTP benchmark against a bare Fastify ceiling is `npm run bench`
 * (bench/run.ts).
 */
import { Writable } from 'node:stream';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { createCipheriv, randomBytes } from 'node:crypto';
import { KeyService } from '../src/envelope/keys.js';
import { createLogger } from '../src/logger.js';
import { createMetrics } from '../src/metrics.js';
import { KeywardRuntime } from '../src/runtime.js';

const N = Number(process.env.BENCH_N ?? 20_000);

async function time(label: string, n: number, fn: () => Promise<unknown>): Promise<number> {
  for (let i = 0; i < Math.min(1000, n); i++) await fn();
  const start = performance.now();
  for (let i = 0; i < n; i++) await fn();
  const seconds = (performance.now() - start) / 1000;
  const rate = n / seconds;
  console.log(`${label.padEnd(44)} ${rate.toFixed(0).padStart(9)} ops/s   ${((seconds / n) * 1e6).toFixed(1).padStart(7)} µs/op`);
  return rate;
}

const dir = await mkdtemp(join(tmpdir(), 'keyward-bench-'));
try {
  const configPath = join(dir, 'tenants.yaml');
  await writeFile(configPath, 'version: 1\ntenants:\n  bench:\n    kmsConfigs:\n      - { id: 1, status: primary, provider: local, local: { keyFile: k.key } }\n');
  const logger = createLogger({ level: 'silent' });
  const auditSink = new Writable({ write: (_chunk, _encoding, callback) => callback() });
  const runtime = await KeywardRuntime.start({ configPath, kmsTimeoutMs: 5000, env: {}, logger, metrics: createMetrics({ processMetrics: false }), auditStdout: auditSink });
  const keys = new KeyService({ source: runtime, logger, audit: runtime.audit });
  const meta = { requestingId: 'bench' };
  const { edek, dek } = await keys.generate('bench', meta);
  dek.fill(0);

  console.log(`Keyward core benchmark, ${N} operations each, node ${process.version}`);
  const key = randomBytes(32);
  const raw = await time('ceiling: raw AES-256-GCM of 32 bytes', N, () => {
    const c = createCipheriv('aes-256-gcm', key, randomBytes(12));
    c.update(key);
    c.final();
    return Promise.resolve(c.getAuthTag());
  });
  const gen = await time('generate (local KMS, direct)', N, async () => (await keys.generate('bench', meta)).dek.fill(0));
  const un = await time('unwrap (local KMS, direct)', N, async () => (await keys.unwrap('bench', edek, meta)).fill(0));
  console.log(`ratio generate / raw AES: ${(gen / raw).toFixed(2)}   unwrap / raw AES: ${(un / raw).toFixed(2)}`);
  await runtime.close();
} finally {
  await rm(dir, { recursive: true, force: true });
}
