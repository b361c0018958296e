/**
 * The chaos run, short form (docs/chaos.md; `npm run chaos` is the long one): ~30 s of steady
 * mixed load on eleven tenants — direct and leased, on AWS KMS (local-kms, a real emulator
 * process), Cloud KMS and Key Vault (the stand-ins), plus SoftHSM2 and local bystanders —
 * against Keyward as a real child process, while each cloud KMS is killed and restarted
 * (AWS and Cloud KMS also black-holed) and the tenants file is reloaded: tenants removed and
 * re-added, a primary flipped and back, a config disabled and enabled, an invalid file in between.
 *
 * KEYWARD_CHAOS_SEED picks another schedule (the seed is printed with the summary).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { formatReport, runChaos, type ChaosReport } from '../../scripts/chaos/harness.js';

const SEED = Number(process.env.KEYWARD_CHAOS_SEED ?? 20_260_117);
const DURATION_S = 30;

describe('chaos run (short form)', () => {
  let report: ChaosReport;

  it('runs mixed load through KMS kills, black-holes and tenants-file reloads', { timeout: 240_000 }, async () => {
    report = await runChaos({ durationS: DURATION_S, seed: SEED });
    console.log(formatReport(report));
    assert.ok(report.requests > 500, `steady load: ${report.requests} requests`);
    for (const op of ['v1.generate', 'v1.wrap', 'v1.unwrap', 'v1.batchUnwrap', 'v1.rewrap', 'api1.wrap', 'api1.unwrap', 'api1.batchUnwrap']) {
      assert.ok((report.operations[op]?.ok ?? 0) > 0, `${op} succeeded at least once: ${JSON.stringify(report.operations[op])}`);
    }
  });

  it('every unwrapped DEK equals the generated one, during the run and afterwards', () => {
    assert.deepEqual(report.mismatches, []);
    assert.deepEqual(report.final.failures, []);
    assert.ok(report.final.verified > 300, `EDEKs verified after the run: ${report.final.verified}`);
    assert.equal(report.final.ok, report.final.verified);
    assert.equal(report.final.verified, report.final.edeks, 'every EDEK made during the run was verified');
    for (const provider of ['aws', 'gcp', 'azure'] as const) {
      assert.ok(report.final.madeBeforeFirstOutage[provider] > 0, `${provider}: EDEKs made before its first outage still unwrap`);
    }
  });

  it('every failure carries the right code for what was happening, and every answer is well formed', () => {
    assert.deepEqual(report.wrongCodes, []);
    assert.deepEqual(report.unexpectedSuccesses, []);
    assert.deepEqual(report.badAnswers, []);
    // The outages and reloads really produced failures, and only of the expected kinds.
    assert.ok((report.codes['208'] ?? 0) > 0, `208 seen: ${JSON.stringify(report.codes)}`);
    assert.ok((report.codes['201'] ?? 0) > 0, `201 seen: ${JSON.stringify(report.codes)}`);
    assert.ok((report.codes['202'] ?? 0) > 0, `202 seen: ${JSON.stringify(report.codes)}`);
    assert.deepEqual(Object.keys(report.codes).filter((c) => !['201', '202', '208', '209'].includes(c)), [], `codes: ${JSON.stringify(report.codes)}`);
  });

  it('no request ran past its documented deadline', () => {
    assert.deepEqual(report.hung, []);
    for (const [op, stats] of Object.entries(report.operations)) {
      assert.equal(stats.hung, 0, op);
      assert.equal(stats.transportErrors, 0, `${op}: every request got an HTTP answer`);
      assert.ok(stats.maxLatencyMs < stats.deadlineMs, `${op}: max ${stats.maxLatencyMs} ms < deadline ${stats.deadlineMs} ms`);
    }
  });

  it('each cloud KMS went down at least once: direct tenants got 208/209, leased tenants kept succeeding, service came back', () => {
    const outages = report.events.filter((e) => e.kind === 'outage');
    for (const provider of ['aws', 'gcp', 'azure'] as const) {
      const own = outages.filter((e) => e.provider === provider);
      assert.ok(own.some((e) => e.type === 'kill'), `${provider} was killed and restarted`);
      for (const e of own) {
        assert.equal(e.outcome, 'done', `${provider} ${e.type} at ${e.startS} s`);
        assert.ok(e.endS !== undefined && e.endS > e.startS, `${provider} ${e.type} ended`);
        assert.ok(e.observed.directFailures! > 0, `${provider} ${e.type} at ${e.startS} s: direct tenants failed during it (${JSON.stringify(e.observed)})`);
        assert.ok(e.observed.leasedSuccesses! > 0, `${provider} ${e.type} at ${e.startS} s: the leased tenant kept working (${JSON.stringify(e.observed)})`);
        assert.ok(e.observed.recoveryMs! >= 0, `${provider} ${e.type} at ${e.startS} s: direct service recovered (${JSON.stringify(e.observed)})`);
      }
    }
    assert.ok(outages.some((e) => e.type === 'blackhole'), 'at least one black-hole outage (timeouts, not refusals)');
    for (const tenant of ['l-aws', 'l-gcp', 'l-azure']) {
      assert.ok(report.perTenant[tenant]!.okDuringOutage > 0, `${tenant} succeeded while its KMS was down: ${JSON.stringify(report.perTenant[tenant])}`);
    }
    for (const [tenant, counts] of Object.entries(report.perTenant)) assert.ok(counts.ok > 0, `${tenant} had successes: ${JSON.stringify(counts)}`);
  });

  it('each reload took effect: removed tenants got 201 and came back with their old EDEKs, the primary flipped and back, a disabled config refused with 202 and came back, an invalid file changed nothing', () => {
    const reloads = report.events.filter((e) => e.kind === 'reload');
    const of = (type: string) => reloads.filter((e) => e.type === type);
    for (const type of ['remove-churn', 'readd-churn', 'flip-primary', 'flip-back', 'disable-secondary', 'enable-secondary']) {
      assert.ok(of(type).length > 0, `a ${type} reload happened`);
      for (const e of of(type)) assert.equal(e.outcome, 'applied', `${type} at ${e.startS} s`);
    }
    for (const e of of('remove-churn')) {
      assert.ok(e.observed['c-gcp:201']! > 0 && e.observed['c-aws-leased:201']! > 0, `removed tenants answered 201: ${JSON.stringify(e.observed)}`);
    }
    for (const e of of('readd-churn')) {
      for (const t of ['c-gcp', 'c-aws-leased']) {
        assert.ok(e.observed[`${t}:ok`]! > 0, `${t} served again after the re-add: ${JSON.stringify(e.observed)}`);
        assert.ok(e.observed[`${t}:oldEdeksOk`]! > 0, `${t}: EDEKs from before its removal unwrap after the re-add: ${JSON.stringify(e.observed)}`);
      }
    }
    for (const e of [...of('flip-primary'), ...of('flip-back')]) {
      assert.ok(e.observed['d-multi:madeUnderNewPrimary']! > 0, `new EDEKs follow the new primary: ${JSON.stringify(e.observed)}`);
    }
    for (const e of of('disable-secondary')) {
      assert.ok(e.observed['d-multi:config32:202']! > 0, `unwraps under the disabled config answered 202: ${JSON.stringify(e.observed)}`);
    }
    for (const e of of('enable-secondary')) {
      assert.ok(e.observed['d-multi:config32:ok']! > 0, `unwraps under the re-enabled config succeed again: ${JSON.stringify(e.observed)}`);
    }
    assert.ok(of('invalid').length > 0, 'an invalid tenants file was written');
    for (const e of of('invalid')) {
      assert.equal(e.outcome, 'failed', 'the invalid file was refused (reload failure logged)');
      assert.ok(e.observed.servedWhileInvalid! > 0, 'the previous configuration kept serving');
      // The operator then puts the file back exactly as it was: the file is valid and in use again,
      // so /health must stop reporting the failed reload (docs/configuration.md, "Hot reload").
      assert.equal(e.observed.healthClearedAfterRevert, 1, `/health still reports lastReloadError after the invalid edit at ${e.startS} s was reverted`);
    }
    assert.ok(report.process.reloads.applied >= 4, `reloads applied: ${report.process.reloads.applied}`);
  });

  it('afterwards Keyward is alive, ready and healthy, logged no unexpected error, wiped leases only for reloads, and stops cleanly', () => {
    assert.equal(report.process.aliveAfterRun, true);
    assert.equal(report.process.live, 200);
    assert.equal(report.process.ready, 200);
    const health = report.process.health as { drivers: { failed: number; starting: number }; lastReloadError?: string };
    assert.equal(health.drivers.failed, 0);
    assert.equal(health.drivers.starting, 0);
    assert.equal(health.lastReloadError, undefined);
    assert.equal(report.process.stderr, '', 'nothing on stderr besides process warnings (listed as notices)');
    assert.deepEqual(report.process.unexpectedErrorLogs, {});
    assert.deepEqual(Object.keys(report.process.leaseWipes).filter((r) => r !== 'disabled' && r !== 'shutdown'), [], JSON.stringify(report.process.leaseWipes));
    assert.ok((report.process.leaseWipes.disabled ?? 0) > 0, 'removing the leased churn tenant wiped its lease');
    assert.equal(report.process.leases.tenants, 4, 'every leased tenant holds leases after the run');
    assert.equal(report.process.leases.stale, 0, `leases fresh again once the KMSs are back: ${JSON.stringify(report.process.leases)}`);
    assert.equal(report.process.exitCode, 0);
    // And the harness's own verdict agrees.
    assert.deepEqual(report.checks.filter((c) => !c.ok), []);
    assert.equal(report.ok, true);
  });
});
