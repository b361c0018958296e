/**
 * Key leasing end to end against AWS KMS played by nsmithuk/local-kms on 127.0.0.1 — an
 * emulator that really refuses disabled keys (DisabledException) and can be killed and
 * restarted on the same port with its keys kept. The whole app runs in-process (tenants
 * file, driver pool with timeout/retry/metrics wrappers, lease manager and its sweeper,
 * HTTP API, ops port), with short lease times so that the whole life of a lease — cached,
 * refreshed, stale, wiped for an outage, wiped for a revocation, re-leased — fits in seconds.
 *
 * Times: refreshInterval 300 ms (refreshes land in [270, 330) ms), maxOutage 2 s, the
 * sweeper every 300/5 = 60 ms; each KMS call is bounded by 1 s with one retry.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { edekFromBase64 } from '../../src/envelope/edek.js';
import { META, post, startTestApp, type ErrorJson, type TestApp } from '../helpers/app.js';
import { LOCAL_KMS_REGION, TEST_ACCESS_KEY_ID, TEST_SECRET_ACCESS_KEY, startLocalKms, type LocalKms } from '../helpers/local-kms.js';
import { leasesOf, metric, metricsText, metricSum, pollUntil } from '../helpers/leasing.js';

const KEY_ENV = 'TEST_AWS_ACCESS_KEY_ID';
const SECRET_ENV = 'TEST_AWS_SECRET_ACCESS_KEY';

const REFRESH_MS = 300;
const MAX_OUTAGE_MS = 2_000;
const SWEEP_MS = Math.min(1_000, Math.max(20, Math.floor(REFRESH_MS / 5)));
/** Scheduling slack on a busy test machine: event-loop delay, the HTTP round trip, one local-kms call. */
const MARGIN_MS = 300;
const LEASING = `{ enabled: true, refreshInterval: ${REFRESH_MS}ms, maxOutage: ${MAX_OUTAGE_MS / 1000}s, rotateAfter: 1h, idleAfter: 1h }`;

interface Generated {
  dek: string;
  edek: string;
}

describe('key leasing over AWS KMS (local-kms)', () => {
  let kms: LocalKms;
  let app: TestApp;

  const aws = (id: number, key: string, options: { leased?: boolean; status?: string } = {}): string => `
      - id: ${id}
        status: ${options.status ?? 'primary'}
        provider: aws
        timeout: 1s
        retries: 1${options.leased === false ? '' : `\n        leasing: ${LEASING}`}
        aws:
          region: ${LOCAL_KMS_REGION}
          keyId: ${kms.keys[key]!.arn}
          endpoint: ${kms.endpoint}
          credentials: { type: static, accessKeyId: { env: ${KEY_ENV} }, secretAccessKey: { env: ${SECRET_ENV} } }`;

  /** The whole tenants file; a test that reloads changes only its own tenant. */
  const tenants = (options: { toggleLeased?: boolean; disableStatus?: string } = {}): string => `version: 1
tenants:
  lease-volume:
    kmsConfigs:${aws(1, 'volume')}
  lease-outage:
    kmsConfigs:${aws(2, 'outage')}
  lease-revoke:
    kmsConfigs:${aws(3, 'revocable')}
  lease-toggle:
    kmsConfigs:${aws(4, 'toggle', { leased: options.toggleLeased ?? true })}
  lease-disable:
    kmsConfigs:${aws(5, 'disable', { status: options.disableStatus ?? 'primary' })}
`;

  const generate = async (tenantId: string): Promise<Generated> => {
    const res = await post(app, '/v1/keys/generate', { tenantId, metadata: META });
    assert.equal(res.statusCode, 200, res.body);
    return res.json<Generated>();
  };
  const unwrap = (tenantId: string, edek: string) => post(app, '/v1/keys/unwrap', { tenantId, edek, metadata: META });
  const awsCalls = async (operation?: 'wrap' | 'unwrap'): Promise<number> =>
    metric(app.ops, 'keyward_kms_requests_total', operation ? { provider: 'aws', operation } : { provider: 'aws' });
  const wipes = (reason: string): Promise<number> => metric(app.ops, 'keyward_lease_wipes_total', { reason });
  const refreshes = (outcome?: string): Promise<number> => metric(app.ops, 'keyward_lease_refreshes_total', outcome ? { outcome } : {});
  const leasedKeyIdOf = (edek: string): number => edekFromBase64(edek)[0]!.leasedKeyId;

  before(async () => {
    kms = await startLocalKms([{ name: 'volume' }, { name: 'outage' }, { name: 'revocable' }, { name: 'toggle' }, { name: 'disable' }]);
    app = await startTestApp({ tenants: tenants(), env: { [KEY_ENV]: TEST_ACCESS_KEY_ID, [SECRET_ENV]: TEST_SECRET_ACCESS_KEY } });
  });
  after(async () => {
    await app?.close();
    await kms?.close();
  });

  it('(1) thousands of leased operations cost one KMS wrap plus the background refreshes', async () => {
    const tenantId = 'lease-volume';
    const started = performance.now();
    const [wrapsBefore, unwrapsBefore, refreshesBefore, hitsBefore] = await Promise.all([
      awsCalls('wrap'),
      awsCalls('unwrap'),
      refreshes(),
      metric(app.ops, 'keyward_lease_cache_requests_total', { result: 'hit' }),
    ]);

    const ids = Array.from({ length: 200 }, (_, i) => `k${i}`);
    const gen = await post(app, '/v1/keys/batch/generate', { tenantId, ids, metadata: META });
    assert.equal(gen.statusCode, 200, gen.body);
    const generated = gen.json<{ keys: Record<string, Generated>; failures: object }>();
    assert.deepEqual(generated.failures, {});
    const leaseIds = new Set(ids.map((id) => leasedKeyIdOf(generated.keys[id]!.edek)));
    assert.equal(leaseIds.size, 1, 'all 200 EDEKs are sealed under one lease');
    assert.ok(![...leaseIds].includes(0), 'leased EDEKs, not direct ones');

    const UNWRAPS = 5_000;
    const BATCH = 1_000;
    for (let start = 0; start < UNWRAPS; start += BATCH) {
      const edeks: Record<string, string> = {};
      for (let i = start; i < start + BATCH; i++) edeks[`u${i}`] = generated.keys[`k${i % ids.length}`]!.edek;
      const res = await post(app, '/v1/keys/batch/unwrap', { tenantId, edeks, metadata: META });
      assert.equal(res.statusCode, 200, res.body);
      const body = res.json<{ keys: Record<string, { dek: string }>; failures: object }>();
      assert.deepEqual(body.failures, {});
      for (let i = start; i < start + BATCH; i++) assert.equal(body.keys[`u${i}`]!.dek, generated.keys[`k${i % ids.length}`]!.dek);
    }
    const elapsedMs = performance.now() - started;

    const text = await metricsText(app.ops);
    const wraps = metricSum(text, 'keyward_kms_requests_total', { provider: 'aws', operation: 'wrap' }) - wrapsBefore;
    const unwraps = metricSum(text, 'keyward_kms_requests_total', { provider: 'aws', operation: 'unwrap' }) - unwrapsBefore;
    const refreshed = metricSum(text, 'keyward_lease_refreshes_total', {}) - refreshesBefore;
    const hits = metricSum(text, 'keyward_lease_cache_requests_total', { result: 'hit' }) - hitsBefore;
    const operations = ids.length + UNWRAPS;
    const kmsCalls = wraps + unwraps;
    console.log(
      `leasing-aws volume: ${operations} leased operations in ${Math.round(elapsedMs)} ms cost ${kmsCalls} AWS KMS calls ` +
        `(${wraps} wrap to make the lease, ${unwraps} unwraps, of which ${refreshed} background refreshes); ${hits} cache hits`,
    );
    // One lease is made (one KMS wrap, single flight however many generates ask at once) ...
    assert.equal(wraps, 1, 'one KMS wrap made the lease');
    // ... every unwrap is served from memory: the only KMS unwraps are the refreshes (one
    // may still be in flight when its KMS call is counted but its refresh is not yet) ...
    assert.ok(unwraps >= refreshed && unwraps <= refreshed + 1, `KMS unwraps ${unwraps} vs refreshes ${refreshed}`);
    // ... and refreshes come every ≥ 0.9 × refreshInterval for the one lease.
    assert.ok(refreshed <= Math.ceil(elapsedMs / (0.9 * REFRESH_MS)) + 1, `${refreshed} refreshes in ${Math.round(elapsedMs)} ms`);
    // So requests themselves cost at most 2 KMS calls per 10,000 operations (here: 1 in 5,200).
    assert.ok(kmsCalls - refreshed <= Math.ceil((2 * operations) / 10_000), `${kmsCalls - refreshed} request-driven KMS calls`);
    assert.ok(hits >= UNWRAPS, `${hits} lease cache hits`);

    // The refresher kept going under that load: the lease is re-approved within one interval.
    const [lease] = await leasesOf(app.ops, tenantId);
    assert.equal(lease?.state, 'fresh');
    const { elapsedMs: reapprovedMs } = await pollUntil(
      'a successful refresh after the load',
      async () => {
        const [now] = await leasesOf(app.ops, tenantId);
        return now && Date.parse(now.lastVerified) > Date.parse(lease.lastVerified) ? true : undefined;
      },
      { withinMs: 1.1 * REFRESH_MS + SWEEP_MS + MARGIN_MS },
    );
    console.log(`leasing-aws volume: lease re-approved by KMS ${Math.round(reapprovedMs)} ms after the load`);
  });

  it('(2) KMS down: leased unwraps keep working while stale, fail with 503/208 after maxOutage, and recover when it is back', async () => {
    const tenantId = 'lease-outage';
    const gen = await generate(tenantId);
    assert.notEqual(leasedKeyIdOf(gen.edek), 0);
    assert.deepEqual((await unwrap(tenantId, gen.edek)).json(), { dek: gen.dek });
    const [fresh] = await leasesOf(app.ops, tenantId);
    assert.equal(fresh?.state, 'fresh');
    const outageWipesBefore = await wipes('outage');
    let duringGen: Generated | undefined;

    await kms.emulator.stop();
    try {
      // A refresh fails to reach the KMS: the lease turns stale but keeps serving.
      const { value: stale, elapsedMs: staleAfterMs } = await pollUntil(
        'lease state stale',
        async () => {
          const res = await unwrap(tenantId, gen.edek);
          assert.equal(res.statusCode, 200, `served from the cached lease: ${res.body}`);
          assert.equal(res.json<{ dek: string }>().dek, gen.dek);
          const [lease] = await leasesOf(app.ops, tenantId);
          return lease?.state === 'stale' ? lease : undefined;
        },
        { withinMs: 1.1 * REFRESH_MS + SWEEP_MS + 2 * 1_000 + MARGIN_MS },
      );
      assert.equal(stale.lastError, 'unreachable');
      assert.equal(stale.leaseId, fresh.leaseId);
      assert.ok((await metric(app.ops, 'keyward_leases', { state: 'stale' })) >= 1, 'gauge keyward_leases{state="stale"} ≥ 1');
      assert.ok((await refreshes('unreachable')) >= 1);
      console.log(`leasing-aws outage: lease stale ${Math.round(staleAfterMs)} ms after the KMS went down`);
      // New wraps are served by the stale lease too, without waiting on the KMS.
      const during = await post(app, '/v1/keys/generate', { tenantId, metadata: META });
      assert.equal(during.statusCode, 200, during.body);
      duringGen = during.json<Generated>();
      assert.equal(leasedKeyIdOf(duringGen.edek), fresh.leaseId);

      // lastVerified no longer moves: the lease dies at lastVerified + maxOutage.
      const deadline = Date.parse(stale.lastVerified) + MAX_OUTAGE_MS;
      let lastServedStart = 0;
      const { value: failed } = await pollUntil(
        'unwrap refused after maxOutage',
        async () => {
          const sentAt = Date.now();
          const res = await unwrap(tenantId, gen.edek);
          if (res.statusCode === 200) {
            assert.equal(res.json<{ dek: string }>().dek, gen.dek);
            lastServedStart = sentAt;
            return undefined;
          }
          return { res, at: Date.now() };
        },
        { withinMs: MAX_OUTAGE_MS + 2 * 1_000 + MARGIN_MS, everyMs: 20 },
      );
      assert.equal(failed.res.statusCode, 503, failed.res.body);
      assert.equal(failed.res.json<ErrorJson>().code, 208);
      assert.ok(lastServedStart < deadline, `never served past its deadline (last success sent ${lastServedStart - deadline} ms after it)`);
      // The KMS is refused at once (connection refused, one retry): the failure follows the deadline closely.
      assert.ok(failed.at <= deadline + SWEEP_MS + 1_000 + MARGIN_MS, `failed ${failed.at - deadline} ms after the deadline`);
      console.log(`leasing-aws outage: last leased unwrap sent ${deadline - lastServedStart} ms before lastVerified + maxOutage; first 208 answered ${failed.at - deadline} ms after it`);
      assert.ok((await wipes('outage')) > outageWipesBefore, 'wiped with reason outage');
      assert.equal((await leasesOf(app.ops, tenantId)).length, 0, 'no lease cached any more');
      // Still down: new requests keep getting 208, none is served from a wiped lease.
      const again = await unwrap(tenantId, gen.edek);
      assert.equal(again.statusCode, 503);
      assert.equal(again.json<ErrorJson>().code, 208);
    } finally {
      await kms.emulator.start();
    }

    // Back up: the next request re-leases through the ELEK the EDEK carries, without a restart.
    assert.deepEqual((await unwrap(tenantId, gen.edek)).json(), { dek: gen.dek });
    assert.deepEqual((await unwrap(tenantId, duringGen.edek)).json(), { dek: duringGen.dek });
    const [released] = await leasesOf(app.ops, tenantId);
    assert.equal(released?.state, 'fresh');
    assert.equal(released.leaseId, fresh.leaseId, 'the same lease, recovered from its ELEK');
    assert.equal((await post(app, '/v1/keys/generate', { tenantId, metadata: META })).statusCode, 200);
  });

  it('(3) key disabled in KMS: within one refresh interval unwraps fail with 502/207 and the lease is wiped (revoked); enabled, they work again', async () => {
    const tenantId = 'lease-revoke';
    const gen = await generate(tenantId);
    assert.deepEqual((await unwrap(tenantId, gen.edek)).json(), { dek: gen.dek });
    assert.equal((await leasesOf(app.ops, tenantId)).length, 1);
    const revokedBefore = await wipes('revoked');

    const disabledAt = performance.now();
    await kms.disable('revocable');
    let served = 0;
    const { value: refused, elapsedMs } = await pollUntil(
      'unwrap refused after DisableKey',
      async () => {
        const res = await unwrap(tenantId, gen.edek);
        if (res.statusCode === 200) {
          served += 1;
          return undefined;
        }
        return res;
      },
      { withinMs: 5_000, everyMs: 5 },
    );
    const observedMs = performance.now() - disabledAt;
    const bound = 1.1 * REFRESH_MS + SWEEP_MS + MARGIN_MS;
    console.log(
      `leasing-aws revocation: first refusal ${Math.round(observedMs)} ms after DisableKey (poll ${Math.round(elapsedMs)} ms; ${served} unwraps served from the lease before it); bound ${Math.round(bound)} ms`,
    );
    assert.equal(refused.statusCode, 502, refused.body);
    assert.equal(refused.json<ErrorJson>().code, 207);
    assert.ok(observedMs <= bound, `revocation took ${Math.round(observedMs)} ms > ${Math.round(bound)} ms`);
    assert.ok((await wipes('revoked')) > revokedBefore, 'keyward_lease_wipes_total{reason="revoked"} increased');
    assert.ok((await refreshes('key_unusable')) >= 1, 'the refresh was refused as key_unusable');
    assert.equal((await leasesOf(app.ops, tenantId)).length, 0);
    const generateRes = await post(app, '/v1/keys/generate', { tenantId, metadata: META });
    assert.equal(generateRes.statusCode, 502);
    assert.equal(generateRes.json<ErrorJson>().code, 207);

    await kms.enable('revocable');
    assert.deepEqual((await unwrap(tenantId, gen.edek)).json(), { dek: gen.dek });
    assert.equal((await leasesOf(app.ops, tenantId))[0]?.state, 'fresh');
  });

  it('leased and direct EDEKs both unwrap whichever way leasing is switched by a reload', async () => {
    const tenantId = 'lease-toggle';
    const leased = await Promise.all([generate(tenantId), generate(tenantId), generate(tenantId)]);
    for (const g of leased) assert.notEqual(leasedKeyIdOf(g.edek), 0);
    const disabledWipesBefore = await wipes('disabled');

    // Leasing off: the lease is wiped; leased EDEKs still unwrap, each through one KMS unwrap of its ELEK.
    await app.rewrite(tenants({ toggleLeased: false }));
    assert.ok((await wipes('disabled')) > disabledWipesBefore, 'the lease was wiped (reason disabled)');
    assert.equal((await leasesOf(app.ops, tenantId)).length, 0);
    let [unwrapsBefore, refreshesBefore] = await Promise.all([awsCalls('unwrap'), refreshes()]);
    for (const g of leased) assert.deepEqual((await unwrap(tenantId, g.edek)).json(), { dek: g.dek });
    let [unwrapsAfter, refreshesAfter] = await Promise.all([awsCalls('unwrap'), refreshes()]);
    // Other tenants' leases keep refreshing meanwhile; one of those may be counted mid-flight.
    let requestCalls = unwrapsAfter - unwrapsBefore - (refreshesAfter - refreshesBefore);
    console.log(`leasing-aws toggle: 3 leased EDEKs unwrapped with leasing off cost ${requestCalls} KMS unwraps`);
    assert.ok(requestCalls >= 3 && requestCalls <= 4, `one KMS call per unwrap with leasing off (got ${requestCalls})`);
    assert.equal((await leasesOf(app.ops, tenantId)).length, 0, 'nothing is cached with leasing off');

    const wrapsBefore = await awsCalls('wrap');
    const direct = [await generate(tenantId), await generate(tenantId)];
    for (const g of direct) assert.equal(leasedKeyIdOf(g.edek), 0, 'a direct EDEK');
    assert.equal((await awsCalls('wrap')) - wrapsBefore, 2, 'one KMS wrap per direct generate');

    // Leasing on again: direct EDEKs unwrap directly, leased ones re-lease once and then hit.
    await app.rewrite(tenants({ toggleLeased: true }));
    for (const g of direct) assert.deepEqual((await unwrap(tenantId, g.edek)).json(), { dek: g.dek });
    [unwrapsBefore, refreshesBefore] = await Promise.all([awsCalls('unwrap'), refreshes()]);
    for (let round = 0; round < 10; round++) {
      for (const g of leased) assert.deepEqual((await unwrap(tenantId, g.edek)).json(), { dek: g.dek });
    }
    [unwrapsAfter, refreshesAfter] = await Promise.all([awsCalls('unwrap'), refreshes()]);
    requestCalls = unwrapsAfter - unwrapsBefore - (refreshesAfter - refreshesBefore);
    console.log(`leasing-aws toggle: 30 leased unwraps with leasing back on cost ${requestCalls} KMS unwraps`);
    assert.ok(requestCalls >= 1 && requestCalls <= 2, `one KMS unwrap re-leases, the rest are hits (got ${requestCalls})`);
    const [lease] = await leasesOf(app.ops, tenantId);
    assert.equal(lease?.leaseId, leasedKeyIdOf(leased[0].edek));
    // New EDEKs are leased again.
    assert.notEqual(leasedKeyIdOf((await generate(tenantId)).edek), 0);
  });

  it('a reload that disables the config wipes its leases (reason disabled) and its EDEKs get 202', async () => {
    const tenantId = 'lease-disable';
    const gen = await generate(tenantId);
    assert.deepEqual((await unwrap(tenantId, gen.edek)).json(), { dek: gen.dek });
    assert.equal((await leasesOf(app.ops, tenantId)).length, 1);
    const disabledWipesBefore = await wipes('disabled');

    await app.rewrite(tenants({ disableStatus: 'disabled' }));
    assert.equal((await wipes('disabled')) - disabledWipesBefore, 1, 'its one lease was wiped (reason disabled)');
    assert.equal((await leasesOf(app.ops, tenantId)).length, 0);
    const [unwrapsBefore, refreshesBefore] = await Promise.all([awsCalls('unwrap'), refreshes()]);
    const res = await unwrap(tenantId, gen.edek);
    assert.equal(res.statusCode, 403, res.body);
    assert.equal(res.json<ErrorJson>().code, 202);
    const [unwrapsAfter, refreshesAfter] = await Promise.all([awsCalls('unwrap'), refreshes()]);
    // Other tenants' refreshes go on meanwhile (one may be counted mid-flight); the request itself asks nothing.
    assert.ok(unwrapsAfter - unwrapsBefore - (refreshesAfter - refreshesBefore) <= 1, 'a disabled config is refused without asking the KMS');
    assert.equal((await leasesOf(app.ops, tenantId)).length, 0, 'and no lease is made for it');

    await app.rewrite(tenants());
    assert.deepEqual((await unwrap(tenantId, gen.edek)).json(), { dek: gen.dek });
  });
});
