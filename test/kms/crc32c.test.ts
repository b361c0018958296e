/**
 * CRC32C against published vectors: the "check" value of the Castagnoli CRC and the
 * iSCSI test vectors of RFC 3720, appendix B.4.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { crc32c } from '../../src/kms/crc32c.js';

describe('crc32c', () => {
  it('gives the catalogue check value for "123456789"', () => {
    assert.equal(crc32c(Buffer.from('123456789', 'ascii')), 0xe3069283);
  });

  it('gives 0 for no data', () => {
    assert.equal(crc32c(Buffer.alloc(0)), 0);
  });

  it('matches RFC 3720 B.4: 32 bytes of zeros, of ones, ascending and descending', () => {
    assert.equal(crc32c(Buffer.alloc(32, 0x00)), 0x8a9136aa);
    assert.equal(crc32c(Buffer.alloc(32, 0xff)), 0x62a8ab43);
    assert.equal(crc32c(Buffer.from(Array.from({ length: 32 }, (_, i) => i))), 0x46dd794e);
    assert.equal(crc32c(Buffer.from(Array.from({ length: 32 }, (_, i) => 31 - i))), 0x113fdb5c);
  });

  it('matches RFC 3720 B.4: the iSCSI read command PDU', () => {
    const pdu = Buffer.from(
      '01c00000000000000000000000000000' + '14000000000004000000001400000018' + '28000000000000000200000000000000',
      'hex',
    );
    assert.equal(crc32c(pdu), 0xd9963a56);
  });

  it('continues a running checksum across chunks', () => {
    const data = Buffer.from('The quick brown fox jumps over the lazy dog');
    assert.equal(crc32c(data.subarray(10), crc32c(data.subarray(0, 10))), crc32c(data));
    assert.equal(crc32c(data), 0x22620404);
  });

  it('accepts any Uint8Array and returns an unsigned integer', () => {
    const value = crc32c(new Uint8Array([0xff, 0xff, 0xff, 0xff]));
    assert.ok(Number.isInteger(value) && value >= 0 && value <= 0xffffffff);
  });
});
