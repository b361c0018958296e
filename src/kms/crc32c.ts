/**
 * CRC32C (Castagnoli, reflected polynomial 0x82F63B78), the checksum Cloud KMS uses for
 * its request and response integrity fields (https://cloud.google.com/kms/docs/data-integrity-guidelines).
 * Table-driven, one byte at a time: the inputs are a few dozen bytes, so slicing-by-8 would
 * buy nothing. Pinned by test/kms/crc32c.test.ts ("123456789" → 0xE3069283, RFC 3720 B.4).
 */

const TABLE: Uint32Array = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

/** The CRC32C of `data` as an unsigned 32-bit integer; pass `previous` to continue a running checksum. */
export function crc32c(data: Uint8Array, previous = 0): number {
  let crc = ~previous >>> 0;
  for (let i = 0; i < data.length; i++) {
    crc = TABLE[(crc ^ data[i]!) & 0xff]! ^ (crc >>> 8);
  }
  return ~crc >>> 0;
}
