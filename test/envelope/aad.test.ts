import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { edekAad } from '../../src/envelope/aad.js';

/** Pinned vectors: changing the AAD format would make every stored EDEK unreadable. */
describe('EDEK associated data (tenant binding)', () => {
  const label = Buffer.from('keyward:edek:v1\0', 'latin1').toString('hex');
  const vectors: Array<[string, number, string]> = [
    ['tenant-dev', 1, `${label}0000000a${Buffer.from('tenant-dev').toString('hex')}00000001`],
    ['é', 2147483647, `${label}00000002c3a97fffffff`],
    ['ab', 0x0102, `${label}00000002616200000102`],
  ];
  for (const [tenant, config, hex] of vectors) {
    it(`encodes (${tenant}, ${config})`, () => {
      assert.equal(edekAad(tenant, config).toString('hex'), hex);
    });
  }

  it('gives different bytes for pairs that would collide without the length prefix', () => {
    // Without the length prefix, a tenant id ending in bytes that look like a config id could collide.
    const pairs: Array<[string, number]> = [['a', 1], ['a\u0000', 1], ['ab', 1], ['a', 2], ['b', 1]];
    const seen = new Set(pairs.map(([t, c]) => edekAad(t, c).toString('hex')));
    assert.equal(seen.size, pairs.length);
  });
});

describe('parseEdekAad', () => {
  it('reads back what edekAad wrote', async () => {
    const { parseEdekAad } = await import('../../src/envelope/aad.js');
    assert.deepEqual(parseEdekAad(edekAad('tenant-é', 42)), { tenantId: 'tenant-é', kmsConfigId: 42 });
    assert.equal(parseEdekAad(Buffer.from('conformance|tenant-a|7')), undefined);
    assert.equal(parseEdekAad(edekAad('t', 1).subarray(0, 20)), undefined);
    assert.equal(parseEdekAad(Buffer.concat([edekAad('t', 1), Buffer.of(0)])), undefined);
  });
});
