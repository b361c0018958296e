import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { edekAad, leasedDekAad, lekAad } from '../../src/envelope/aad.js';

/**
 * Pinned vectors, computed independently of src/ (Python struct.pack('>I', ...)):
 *   label ‖ u32be(len(tenant utf8)) ‖ tenant ‖ u32be(kmsConfigId) ‖ u32be(leaseId)
 * Changing either format makes every stored leased EDEK unreadable.
 */
const LEK = '6b6579776172643a6c656b3a763100'; // "keyward:lek:v1\0"
const LEASED_DEK = '6b6579776172643a6c65617365642d64656b3a763100'; // "keyward:leased-dek:v1\0"

const VECTORS: Array<{ tenant: string; config: number; lease: number; lek: string; leasedDek: string }> = [
  {
    tenant: 'acme',
    config: 7,
    lease: 42,
    lek: '6b6579776172643a6c656b3a7631000000000461636d65000000070000002a',
    leasedDek: '6b6579776172643a6c65617365642d64656b3a7631000000000461636d65000000070000002a',
  },
  {
    tenant: 'é',
    config: 2147483647,
    lease: 2147483647,
    lek: '6b6579776172643a6c656b3a76310000000002c3a97fffffff7fffffff',
    leasedDek: '6b6579776172643a6c65617365642d64656b3a76310000000002c3a97fffffff7fffffff',
  },
  {
    tenant: 'tenant-dev-leased',
    config: 1,
    lease: 1,
    lek: '6b6579776172643a6c656b3a7631000000001174656e616e742d6465762d6c65617365640000000100000001',
    leasedDek: '6b6579776172643a6c65617365642d64656b3a7631000000001174656e616e742d6465762d6c65617365640000000100000001',
  },
];

describe('lekAad (KMS wrap of a lease key)', () => {
  for (const v of VECTORS) {
    it(`encodes (${v.tenant}, ${v.config}, ${v.lease}) to the pinned bytes`, () => {
      const aad = lekAad(v.tenant, v.config, v.lease);
      assert.equal(aad.toString('hex'), v.lek);
      assert.ok(v.lek.startsWith(LEK));
    });
  }
});

describe('leasedDekAad (local seal of a DEK under a lease key)', () => {
  for (const v of VECTORS) {
    it(`encodes (${v.tenant}, ${v.config}, ${v.lease}) to the pinned bytes`, () => {
      const aad = leasedDekAad(v.tenant, v.config, v.lease);
      assert.equal(aad.toString('hex'), v.leasedDek);
      assert.ok(v.leasedDek.startsWith(LEASED_DEK));
    });
  }
});

describe('the three AAD kinds never coincide', () => {
  it('differ for the same tenant, config and lease id', () => {
    for (const v of VECTORS) {
      const direct = edekAad(v.tenant, v.config).toString('hex');
      const lek = lekAad(v.tenant, v.config, v.lease).toString('hex');
      const sealed = leasedDekAad(v.tenant, v.config, v.lease).toString('hex');
      assert.equal(new Set([direct, lek, sealed]).size, 3, `${v.tenant}/${v.config}/${v.lease}`);
    }
  });

  it('differ within the label, so no choice of tenant, config or lease id can make two kinds collide', () => {
    // The labels differ at a byte before any of them ends, so no two AADs of different kinds share a prefix.
    const labels = ['keyward:edek:v1\0', 'keyward:lek:v1\0', 'keyward:leased-dek:v1\0'].map((l) => Buffer.from(l, 'latin1'));
    const shortest = Math.min(...labels.map((l) => l.length));
    for (let i = 0; i < labels.length; i++) {
      for (let j = i + 1; j < labels.length; j++) {
        assert.notDeepEqual(labels[i]!.subarray(0, shortest), labels[j]!.subarray(0, shortest));
      }
    }
    // And the functions really start with those labels.
    assert.deepEqual(edekAad('t', 1).subarray(0, labels[0]!.length), labels[0]);
    assert.deepEqual(lekAad('t', 1, 1).subarray(0, labels[1]!.length), labels[1]);
    assert.deepEqual(leasedDekAad('t', 1, 1).subarray(0, labels[2]!.length), labels[2]);
  });

  it('gives distinct bytes across many tenants, configs and lease ids of all three kinds', () => {
    const tenants = ['a', 'a\u0000', 'ab', 'b', 'acme', 'é'];
    const ids = [1, 2, 256, 2147483647];
    const seen = new Set<string>();
    let count = 0;
    for (const t of tenants) {
      for (const c of ids) {
        seen.add(edekAad(t, c).toString('hex'));
        count += 1;
        for (const l of ids) {
          seen.add(lekAad(t, c, l).toString('hex'));
          seen.add(leasedDekAad(t, c, l).toString('hex'));
          count += 2;
        }
      }
    }
    assert.equal(seen.size, count);
  });

  it('binds the lease id: the same tenant and config with another lease id is another AAD', () => {
    assert.notDeepEqual(lekAad('acme', 7, 1), lekAad('acme', 7, 2));
    assert.notDeepEqual(leasedDekAad('acme', 7, 1), leasedDekAad('acme', 7, 2));
    assert.notDeepEqual(lekAad('acme', 7, 1), lekAad('acme', 8, 1));
    assert.notDeepEqual(leasedDekAad('acme', 7, 1), leasedDekAad('acmf', 7, 1));
  });
});
