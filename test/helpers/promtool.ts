/** Runs Prometheus' promtool (Debian's prometheus package, installed by scripts/provision/prometheus.sh). */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO_ROOT = fileURLToPath(new URL('../..', import.meta.url));

function findPromtool(): string {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (dir === '') continue;
    const candidate = join(dir, 'promtool');
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not in this directory
    }
  }
  assert.fail('promtool is not on PATH. It comes with Prometheus: run `bash scripts/provision/prometheus.sh` (npm test runs it), or install it yourself.');
}

export interface PromtoolRun {
  readonly status: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs promtool in the repository root, with `input` on stdin. */
export function promtool(args: readonly string[], input?: string, timeoutMs = 120_000): PromtoolRun {
  const result = spawnSync(findPromtool(), args, { cwd: REPO_ROOT, input, encoding: 'utf8', timeout: timeoutMs });
  if (result.error) throw result.error;
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}
