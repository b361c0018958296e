import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import { leasedDekAad } from '../../src/envelope/aad.js';
import { LEASED_IV_BYTES, SEALED_DEK_BYTES, openDek, sealDek } from '../../src/leasing/seal.js';

const LEK = randomBytes(32);
const DEK = randomBytes(32);
const AAD = leasedDekAad('acme', 7, 42);

function flip(buf: Buffer, index: number): Buffer {
  const copy = Buffer.from(buf);
  copy[index] = copy[index]! ^ 0x01;
  return copy;
}

describe('sealDek / openDek', () => {
  it('round-trips a DEK: a 12-byte IV and 48 bytes of ciphertext ‖ tag', () => {
    const sealed = sealDek(LEK, DEK, AAD);
    assert.equal(sealed.iv.length, LEASED_IV_BYTES);
    assert.equal(LEASED_IV_BYTES, 12);
    assert.equal(sealed.data.length, SEALED_DEK_BYTES);
    assert.equal(SEALED_DEK_BYTES, 48);
    assert.ok(!sealed.data.subarray(0, 32).equals(DEK), 'the DEK is encrypted, not copied');
    assert.deepEqual(openDek(LEK, sealed.iv, sealed.data, AAD), DEK);
  });

  it('does not modify its inputs', () => {
    const lek = Buffer.from(LEK);
    const dek = Buffer.from(DEK);
    const aad = Buffer.from(AAD);
    const sealed = sealDek(lek, dek, aad);
    const iv = Buffer.from(sealed.iv);
    const data = Buffer.from(sealed.data);
    openDek(lek, sealed.iv, sealed.data, aad);
    assert.deepEqual([lek, dek, aad, sealed.iv, sealed.data], [LEK, DEK, AAD, iv, data]);
  });

  const wrongAads: Array<[string, Buffer]> = [
    ['another tenant', leasedDekAad('acmf', 7, 42)],
    ['another config', leasedDekAad('acme', 8, 42)],
    ['another lease id', leasedDekAad('acme', 7, 43)],
    ['an empty AAD', Buffer.alloc(0)],
  ];
  for (const [name, aad] of wrongAads) {
    it(`refuses ${name} (undefined)`, () => {
      const sealed = sealDek(LEK, DEK, AAD);
      assert.equal(openDek(LEK, sealed.iv, sealed.data, aad), undefined);
    });
  }

  it('refuses another lease key (undefined)', () => {
    const sealed = sealDek(LEK, DEK, AAD);
    assert.equal(openDek(randomBytes(32), sealed.iv, sealed.data, AAD), undefined);
    assert.equal(openDek(flip(LEK, 31), sealed.iv, sealed.data, AAD), undefined);
  });

  it('refuses a tampered IV, ciphertext or tag, at every byte (undefined)', () => {
    const sealed = sealDek(LEK, DEK, AAD);
    for (let i = 0; i < sealed.iv.length; i++) {
      assert.equal(openDek(LEK, flip(sealed.iv, i), sealed.data, AAD), undefined, `iv byte ${i}`);
    }
    for (let i = 0; i < sealed.data.length; i++) {
      assert.equal(openDek(LEK, sealed.iv, flip(sealed.data, i), AAD), undefined, `${i < 32 ? 'ciphertext' : 'tag'} byte ${i}`);
    }
  });

  it('refuses wrong lengths of IV and data (undefined, no exception)', () => {
    const sealed = sealDek(LEK, DEK, AAD);
    const ivs = [Buffer.alloc(0), sealed.iv.subarray(0, 11), Buffer.concat([sealed.iv, Buffer.of(0)]), randomBytes(16)];
    for (const iv of ivs) assert.equal(openDek(LEK, iv, sealed.data, AAD), undefined, `iv of ${iv.length} bytes`);
    const datas = [Buffer.alloc(0), sealed.data.subarray(0, 16), sealed.data.subarray(0, 47), Buffer.concat([sealed.data, Buffer.of(0)])];
    for (const data of datas) assert.equal(openDek(LEK, sealed.iv, data, AAD), undefined, `data of ${data.length} bytes`);
  });

  it('uses a fresh IV for every seal', () => {
    const ivs = new Set<string>();
    const datas = new Set<string>();
    for (let i = 0; i < 200; i++) {
      const sealed = sealDek(LEK, DEK, AAD);
      ivs.add(sealed.iv.toString('hex'));
      datas.add(sealed.data.toString('hex'));
    }
    assert.equal(ivs.size, 200);
    assert.equal(datas.size, 200);
  });
});
