import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ConfigError } from '../../src/config/errors.js';
import { parseTenantsFile } from '../../src/config/tenants-file.js';
import type { LeasePolicy } from '../../src/tenants/directory.js';

const OPTIONS = { baseDir: '/etc/keyward', defaultKmsTimeoutMs: 5_000 };
const WHERE = 'tenants.acme.kmsConfigs[0].leasing';

/** A tenants file with one local config whose `leasing` block is `leasing` (JSON is YAML). */
function file(leasing: unknown): string {
  const config: Record<string, unknown> = { id: 1, status: 'primary', provider: 'local', local: { keyFile: 'k.key' } };
  if (leasing !== undefined) config.leasing = leasing;
  return JSON.stringify({ version: 1, tenants: { acme: { kmsConfigs: [config] } } });
}

function policyOf(leasing: unknown): LeasePolicy | undefined {
  const config = parseTenantsFile(file(leasing), OPTIONS).config(1);
  assert.ok(config, 'config 1 parses');
  return config.leasing;
}

function problemsOf(leasing: unknown): readonly string[] {
  let caught: unknown;
  try {
    parseTenantsFile(file(leasing), OPTIONS);
  } catch (err) {
    caught = err;
  }
  assert.ok(caught instanceof ConfigError, `expected a ConfigError, got ${String(caught)}`);
  return caught.problems;
}

describe('tenants file: the leasing block', () => {
  it('applies the defaults: refresh 5m, outage 1h, rotate 1h, idle 1h, 100 cached leases', () => {
    assert.deepEqual(policyOf({ enabled: true }), {
      refreshIntervalMs: 300_000,
      maxOutageMs: 3_600_000,
      rotateAfterMs: 3_600_000,
      idleAfterMs: 3_600_000,
      maxCachedLeases: 100,
    });
  });

  it('takes explicit values in every unit', () => {
    assert.deepEqual(
      policyOf({ enabled: true, refreshInterval: '1500ms', maxOutage: '90s', rotateAfter: '10m', idleAfter: '2h', maxCachedLeases: 7 }),
      { refreshIntervalMs: 1_500, maxOutageMs: 90_000, rotateAfterMs: 600_000, idleAfterMs: 7_200_000, maxCachedLeases: 7 },
    );
  });

  it('returns a frozen policy', () => {
    assert.ok(Object.isFrozen(policyOf({ enabled: true })));
  });

  it('no block, or enabled: false, means no lease policy (direct mode)', () => {
    assert.equal(policyOf(undefined), undefined);
    assert.equal(policyOf({ enabled: false }), undefined);
    assert.equal(policyOf({ enabled: false, refreshInterval: '1m', maxOutage: '2h', maxCachedLeases: 5 }), undefined);
  });

  it('refuses refreshInterval equal to maxOutage, naming both values', () => {
    const problems = problemsOf({ enabled: true, refreshInterval: '1h', maxOutage: '60m' });
    assert.equal(problems.length, 1);
    assert.match(problems[0]!, new RegExp(`^${WHERE.replace(/[.[\]]/g, '\\$&')}: `));
    assert.match(problems[0]!, /refreshInterval \(1h\)/);
    assert.match(problems[0]!, /maxOutage \(60m\)/);
    assert.match(problems[0]!, /shorter/);
  });

  it('refuses refreshInterval longer than maxOutage, naming a defaulted value too', () => {
    const problems = problemsOf({ enabled: true, refreshInterval: '2h' });
    assert.equal(problems.length, 1);
    assert.match(problems[0]!, /refreshInterval \(2h\)/);
    assert.match(problems[0]!, /maxOutage \(1h\)/);
    const other = problemsOf({ enabled: true, maxOutage: '4m' });
    assert.match(other[0]!, /refreshInterval \(5m\).*maxOutage \(4m\)/);
  });

  for (const field of ['refreshInterval', 'maxOutage', 'rotateAfter', 'idleAfter'] as const) {
    it(`refuses a zero ${field}`, () => {
      const leasing: Record<string, unknown> = { enabled: true, [field]: '0s' };
      // Keep the ordering rule satisfied so that only the zero is reported.
      if (field === 'refreshInterval') leasing.maxOutage = '1h';
      const problems = problemsOf(leasing);
      assert.ok(
        problems.some((p) => p.startsWith(`${WHERE}.${field}:`) && p.includes('positive duration') && p.includes('"0s"')),
        problems.join('\n'),
      );
    });

    for (const bad of ['5', '5 m', '-5m', '1.5h', '5min', '', 'PT5M']) {
      it(`refuses the malformed ${field} ${JSON.stringify(bad)}`, () => {
        const problems = problemsOf({ enabled: true, [field]: bad });
        assert.ok(problems.some((p) => p.startsWith(`${WHERE}.${field}:`)), problems.join('\n'));
      });
    }
  }

  it('refuses a duration given as a number', () => {
    const problems = problemsOf({ enabled: true, refreshInterval: 300 });
    assert.ok(problems.some((p) => p.startsWith(`${WHERE}.refreshInterval:`)), problems.join('\n'));
  });

  it('refuses an unknown field', () => {
    const problems = problemsOf({ enabled: true, refreshIntervall: '5m' });
    assert.ok(problems.some((p) => p.startsWith(WHERE) && /refreshIntervall|additional|unexpected/i.test(p)), problems.join('\n'));
  });

  it('requires enabled', () => {
    const problems = problemsOf({ refreshInterval: '5m' });
    assert.ok(problems.some((p) => p.startsWith(WHERE)), problems.join('\n'));
  });

  it('refuses a non-boolean enabled', () => {
    const problems = problemsOf({ enabled: 'yes' });
    assert.ok(problems.some((p) => p.startsWith(`${WHERE}.enabled:`)), problems.join('\n'));
  });

  it('accepts maxCachedLeases from 1 to 100000', () => {
    assert.equal(policyOf({ enabled: true, maxCachedLeases: 1 })?.maxCachedLeases, 1);
    assert.equal(policyOf({ enabled: true, maxCachedLeases: 100_000 })?.maxCachedLeases, 100_000);
  });

  for (const bad of [0, -1, 100_001, 1.5, '10']) {
    it(`refuses maxCachedLeases ${JSON.stringify(bad)}`, () => {
      const problems = problemsOf({ enabled: true, maxCachedLeases: bad });
      assert.ok(problems.some((p) => p.startsWith(`${WHERE}.maxCachedLeases:`)), problems.join('\n'));
    });
  }

  it('reports every leasing problem of a file at once', () => {
    const text = JSON.stringify({
      version: 1,
      tenants: {
        acme: {
          kmsConfigs: [
            { id: 1, status: 'primary', provider: 'local', local: { keyFile: 'a' }, leasing: { enabled: true, refreshInterval: '0ms' } },
            { id: 2, status: 'active', provider: 'local', local: { keyFile: 'b' }, leasing: { enabled: true, refreshInterval: '1h', maxOutage: '30m' } },
          ],
        },
      },
    });
    let caught: unknown;
    try {
      parseTenantsFile(text, OPTIONS);
    } catch (err) {
      caught = err;
    }
    assert.ok(caught instanceof ConfigError);
    assert.ok(caught.problems.some((p) => p.startsWith('tenants.acme.kmsConfigs[0].leasing.refreshInterval:')), caught.problems.join('\n'));
    assert.ok(caught.problems.some((p) => p.startsWith('tenants.acme.kmsConfigs[1].leasing:') && p.includes('maxOutage (30m)')), caught.problems.join('\n'));
  });
});
