import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { edekFromBase64, edekToBase64 } from '../../src/envelope/edek.js';
import { DEFAULT_TENANTS, META, json, post, startTestApp, type ErrorJson, type TestApp } from '../helpers/app.js';

interface Generated {
  dek: string;
  edek: string;
}

async function generate(app: TestApp, tenantId: string): Promise<Generated> {
  const res = await post(app, '/v1/keys/generate', { tenantId, metadata: META });
  assert.equal(res.statusCode, 200, res.body);
  return json<Generated>(res);
}

async function unwrap(app: TestApp, tenantId: string, edek: string) {
  return post(app, '/v1/keys/unwrap', { tenantId, edek, metadata: META });
}

function assertError(res: { statusCode: number; json: () => unknown }, status: number, code: number, messagePart?: string): void {
  const body = res.json() as ErrorJson;
  assert.equal(res.statusCode, status, JSON.stringify(body));
  assert.equal(body.code, code, JSON.stringify(body));
  assert.equal(typeof body.message, 'string');
  assert.deepEqual(Object.keys(body).sort(), ['code', 'message']);
  if (messagePart) assert.match(body.message, new RegExp(messagePart));
}

describe('native API /v1', () => {
  let app: TestApp;
  before(async () => {
    app = await startTestApp();
  });
  after(() => app.close());

  describe('generate, wrap, unwrap, rewrap', () => {
    it('generates a 32-byte DEK whose EDEK is bound to the tenant and its primary config', async () => {
      const { dek, edek } = await generate(app, 'tenant-a');
      assert.equal(Buffer.from(dek, 'base64').length, 32);
      const entries = edekFromBase64(edek);
      assert.equal(entries.length, 1);
      assert.equal(entries[0]!.kmsConfigId, 11);
      assert.equal(entries[0]!.tenantId, 'tenant-a');
      assert.equal(entries[0]!.leasedKeyId, 0);
      const res = await unwrap(app, 'tenant-a', edek);
      assert.equal(res.statusCode, 200);
      assert.deepEqual(json(res), { dek });
    });

    it('generates a different DEK every time', async () => {
      const a = await generate(app, 'tenant-a');
      const b = await generate(app, 'tenant-a');
      assert.notEqual(a.dek, b.dek);
      assert.notEqual(a.edek, b.edek);
    });

    it('wraps a caller-supplied DEK and unwraps it again', async () => {
      const dek = randomBytes(32).toString('base64');
      const res = await post(app, '/v1/keys/wrap', { tenantId: 'tenant-b', dek, metadata: META });
      assert.equal(res.statusCode, 200);
      const { edek } = json<{ edek: string }>(res);
      assert.deepEqual(Object.keys(json(res)), ['edek']);
      assert.deepEqual(json(await unwrap(app, 'tenant-b', edek)), { dek });
    });

    it('rewraps within a tenant, giving a new EDEK for the same DEK', async () => {
      const { dek, edek } = await generate(app, 'tenant-a');
      const res = await post(app, '/v1/keys/rewrap', { tenantId: 'tenant-a', edek, metadata: META });
      assert.equal(res.statusCode, 200);
      const rewrapped = json<{ edek: string }>(res).edek;
      assert.notEqual(rewrapped, edek);
      assert.deepEqual(json(await unwrap(app, 'tenant-a', rewrapped)), { dek });
    });

    it('rewraps to another tenant: the new EDEK is theirs, and no longer the old tenant\'s', async () => {
      const { dek, edek } = await generate(app, 'tenant-a');
      const res = await post(app, '/v1/keys/rewrap', { tenantId: 'tenant-a', edek, newTenantId: 'tenant-b', metadata: META });
      assert.equal(res.statusCode, 200);
      const moved = json<{ edek: string }>(res).edek;
      assert.equal(edekFromBase64(moved)[0]!.tenantId, 'tenant-b');
      assert.equal(edekFromBase64(moved)[0]!.kmsConfigId, 21);
      assert.deepEqual(json(await unwrap(app, 'tenant-b', moved)), { dek });
      assertError(await unwrap(app, 'tenant-a', moved), 400, 203, 'is not assigned to tenant tenant-a');
    });

    it('rewrap checks the source EDEK belongs to tenantId', async () => {
      const { edek } = await generate(app, 'tenant-b');
      const res = await post(app, '/v1/keys/rewrap', { tenantId: 'tenant-a', edek, newTenantId: 'tenant-a', metadata: META });
      assertError(res, 400, 203);
    });

    it('rewrap to a tenant without a primary config is refused with 200', async () => {
      const { edek } = await generate(app, 'tenant-a');
      const res = await post(app, '/v1/keys/rewrap', { tenantId: 'tenant-a', edek, newTenantId: 'tenant-noprimary', metadata: META });
      assertError(res, 409, 200);
    });

    it('accepts full metadata with custom fields', async () => {
      const res = await post(app, '/v1/keys/generate', {
        tenantId: 'tenant-a',
        metadata: { requestingId: 'svc', dataLabel: 'PII', sourceIp: '10.0.0.1', objectId: 'doc-1', requestId: 'r-1', custom: { team: 'billing' } },
      });
      assert.equal(res.statusCode, 200);
    });
  });

  describe('tenant binding', () => {
    it("refuses another tenant's EDEK (203, 'is not assigned to tenant')", async () => {
      const { edek } = await generate(app, 'tenant-a');
      assertError(await unwrap(app, 'tenant-b', edek), 400, 203, 'is not assigned to tenant tenant-b');
    });

    it('refuses an EDEK whose tenant field was rewritten, even where both tenants share a master key', async () => {
      const { edek } = await generate(app, 'tenant-a');
      const [entry] = edekFromBase64(edek);
      // Same master key (keys/a.key) behind tenant-a config 11 and tenant-b config 21.
      const forgedSameConfig = edekToBase64([{ ...entry!, tenantId: 'tenant-b' }]);
      assertError(await unwrap(app, 'tenant-b', forgedSameConfig), 400, 203);
      const forged = edekToBase64([{ ...entry!, tenantId: 'tenant-b', kmsConfigId: 21 }]);
      assertError(await unwrap(app, 'tenant-b', forged), 400, 203, 'does not decrypt');
    });

    it('refuses a tampered EDEK', async () => {
      const { edek } = await generate(app, 'tenant-a');
      const [entry] = edekFromBase64(edek);
      const data = Buffer.from(entry!.encryptedDekData);
      data[20] = data[20]! ^ 0xff;
      assertError(await unwrap(app, 'tenant-a', edekToBase64([{ ...entry!, encryptedDekData: data }])), 400, 203);
    });

    it('refuses EDEKs that do not parse', async () => {
      assertError(await unwrap(app, 'tenant-a', 'not base64!'), 400, 203);
      assertError(await unwrap(app, 'tenant-a', Buffer.from([0xff, 0xff, 0xff]).toString('base64')), 400, 203);
      assertError(await unwrap(app, 'tenant-a', ''), 400, 102);
    });
  });

  describe('tenant and config state', () => {
    it('unknown tenant → 201 with the compatible message', async () => {
      assertError(await post(app, '/v1/keys/generate', { tenantId: 'nobody', metadata: META }), 404, 201, 'No configurations available for the provided tenant');
      const { edek } = await generate(app, 'tenant-a');
      assertError(await unwrap(app, 'nobody', edek), 404, 201);
    });

    it('no primary config → generate and wrap refused with 200', async () => {
      assertError(await post(app, '/v1/keys/generate', { tenantId: 'tenant-noprimary', metadata: META }), 409, 200);
      const dek = randomBytes(32).toString('base64');
      assertError(await post(app, '/v1/keys/wrap', { tenantId: 'tenant-empty', dek, metadata: META }), 409, 200);
    });

    it('a tenant without configs cannot unwrap (201)', async () => {
      const { edek } = await generate(app, 'tenant-a');
      const [entry] = edekFromBase64(edek);
      assertError(await unwrap(app, 'tenant-empty', edekToBase64([{ ...entry!, tenantId: 'tenant-empty' }])), 404, 201);
    });
  });

  describe('config changes (reload)', () => {
    it('keeps unwrapping through an active config, and refuses a disabled one with 202', async () => {
      const local = await startTestApp();
      try {
        const { dek, edek } = await generate(local, 'tenant-a');
        // Config 11 becomes active, 12 primary: old EDEKs still unwrap, new ones go to 12.
        await local.rewrite(DEFAULT_TENANTS.replace('id: 11, status: primary', 'id: 11, status: active').replace('id: 12, status: active', 'id: 12, status: primary'));
        assert.deepEqual(json(await unwrap(local, 'tenant-a', edek)), { dek });
        assert.equal(edekFromBase64((await generate(local, 'tenant-a')).edek)[0]!.kmsConfigId, 12);
        // Now config 11 is disabled: its EDEKs are refused with 202.
        await local.rewrite(DEFAULT_TENANTS.replace('id: 11, status: primary', 'id: 11, status: disabled').replace('id: 12, status: active', 'id: 12, status: primary'));
        assertError(await unwrap(local, 'tenant-a', edek), 403, 202, 'disabled');
        assertError(await post(local, '/v1/keys/rewrap', { tenantId: 'tenant-a', edek, metadata: META }), 403, 202);
      } finally {
        await local.close();
      }
    });

    it('unwraps a multi-entry EDEK through whichever config still works', async () => {
      const { dek, edek } = await generate(app, 'tenant-a');
      const [entry] = edekFromBase64(edek);
      const disabledFirst = edekToBase64([{ ...entry!, kmsConfigId: 13 }, entry!]);
      assert.deepEqual(json(await unwrap(app, 'tenant-a', disabledFirst)), { dek });
    });
  });

  describe('batches', () => {
    it('generates a batch, and unwraps it with per-item failures', async () => {
      const res = await post(app, '/v1/keys/batch/generate', { tenantId: 'tenant-a', ids: ['x', 'y', 'z'], metadata: META });
      assert.equal(res.statusCode, 200);
      const body = json<{ keys: Record<string, Generated>; failures: Record<string, ErrorJson> }>(res);
      assert.deepEqual(Object.keys(body.keys).sort(), ['x', 'y', 'z']);
      assert.deepEqual(body.failures, {});
      const other = await generate(app, 'tenant-b');
      const unwrapRes = await post(app, '/v1/keys/batch/unwrap', {
        tenantId: 'tenant-a',
        edeks: { x: body.keys.x!.edek, y: body.keys.y!.edek, bad: 'AAAA', foreign: other.edek, junk: '%%%' },
        metadata: META,
      });
      assert.equal(unwrapRes.statusCode, 200);
      const out = json<{ keys: Record<string, { dek: string }>; failures: Record<string, ErrorJson> }>(unwrapRes);
      assert.deepEqual(out.keys, { x: { dek: body.keys.x!.dek }, y: { dek: body.keys.y!.dek } });
      assert.deepEqual(Object.keys(out.failures).sort(), ['bad', 'foreign', 'junk']);
      for (const failure of Object.values(out.failures)) assert.equal(failure.code, 203);
      assert.match(out.failures.foreign!.message, /is not assigned to tenant/);
    });

    it('answers empty batches with both maps present', async () => {
      assert.deepEqual(json(await post(app, '/v1/keys/batch/generate', { tenantId: 'tenant-a', ids: [], metadata: META })), { keys: {}, failures: {} });
      assert.deepEqual(json(await post(app, '/v1/keys/batch/unwrap', { tenantId: 'tenant-a', edeks: {}, metadata: META })), { keys: {}, failures: {} });
    });

    it('fails the whole batch for an unknown tenant or a missing primary', async () => {
      assertError(await post(app, '/v1/keys/batch/generate', { tenantId: 'nobody', ids: ['a'], metadata: META }), 404, 201);
      assertError(await post(app, '/v1/keys/batch/generate', { tenantId: 'tenant-noprimary', ids: ['a'], metadata: META }), 409, 200);
      assertError(await post(app, '/v1/keys/batch/unwrap', { tenantId: 'nobody', edeks: { a: 'AAAA' }, metadata: META }), 404, 201);
    });

    it('refuses duplicate ids', async () => {
      assertError(await post(app, '/v1/keys/batch/generate', { tenantId: 'tenant-a', ids: ['a', 'a'], metadata: META }), 400, 102, 'unique');
    });

    it('enforces the item limit on both batch routes', async () => {
      const small = await startTestApp({ batchLimit: 3 });
      try {
        assert.equal((await post(small, '/v1/keys/batch/generate', { tenantId: 'tenant-a', ids: ['1', '2', '3'], metadata: META })).statusCode, 200);
        assertError(await post(small, '/v1/keys/batch/generate', { tenantId: 'tenant-a', ids: ['1', '2', '3', '4'], metadata: META }), 413, 102, 'at most 3');
        const edeks = Object.fromEntries(['1', '2', '3', '4'].map((id) => [id, 'AAAA']));
        assertError(await post(small, '/v1/keys/batch/unwrap', { tenantId: 'tenant-a', edeks, metadata: META }), 413, 102, 'at most 3');
      } finally {
        await small.close();
      }
    });

    it('handles a full batch of 1000', async () => {
      const ids = Array.from({ length: 1000 }, (_, i) => `doc-${i}`);
      const gen = json<{ keys: Record<string, Generated>; failures: object }>(await post(app, '/v1/keys/batch/generate', { tenantId: 'tenant-a', ids, metadata: META }));
      assert.equal(Object.keys(gen.keys).length, 1000);
      const edeks = Object.fromEntries(Object.entries(gen.keys).map(([id, k]) => [id, k.edek]));
      const back = json<{ keys: Record<string, { dek: string }>; failures: object }>(await post(app, '/v1/keys/batch/unwrap', { tenantId: 'tenant-a', edeks, metadata: META }));
      assert.equal(Object.keys(back.keys).length, 1000);
      for (const id of ids) assert.equal(back.keys[id]!.dek, gen.keys[id]!.dek);
    });
  });
});
