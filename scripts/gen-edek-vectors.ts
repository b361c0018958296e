/**
 * Prints the published EDEK test vectors (test/fixtures/edek-vectors.json) as JSON:
 *
 *   npx tsx scripts/gen-edek-vectors.ts > test/fixtures/edek-vectors.json
 *
 * Valid vectors are made with Keyward's own encoder from fixed byte patterns (never random bytes), so the output is
 * the same on every run; test/envelope/edek.test.ts checks that the committed file is exactly this output and that
 * protobufjs reads every valid vector the same way. Lenient and invalid vectors are hand-assembled from the same
 * pieces, and each invalid one records the message Keyward's decoder gives for it.
 */
import { pathToFileURL } from 'node:url';
import { decodeEdeks, EDEK_PROTO, edekEntry, encodeEdeks, EdekFormatError, type EncryptedDek } from '../src/envelope/edek.js';


/** An entry as it appears in the JSON: bytes fields in base64, ints as numbers. */
export interface JsonEntry {
  encryptedDekData: string;
  kmsConfigId: number;
  leasedKeyId: number;
  leasedKeyIv: string;
  encryptedLeasedKeyData: string;
  tenantId: string;
}

export interface ValidVector {
  name: string;
  description: string;
  fields: { entries: JsonEntry[] };
  /** Leased vectors only: the ELEK in encryptedLeasedKeyData, decoded. */
  elek?: { entries: JsonEntry[] };
  edek: string;
}

/** Bytes that are not what the encoder writes but that every proto3 reader must accept. */
export interface LenientVector {
  name: string;
  description: string;
  fields: { entries: JsonEntry[] };
  edek: string;
  /** What Keyward's encoder writes for the same fields; absent when it refuses them (a negative id). */
  canonical?: string;
}

export interface InvalidVector {
  name: string;
  reason: string;
  edek: string;
  /** The message of the EdekFormatError that Keyward's decoder throws. */
  error: string;
}

export interface EdekVectors {
  description: string;
  proto: string;
  valid: ValidVector[];
  lenient: LenientVector[];
  invalid: InvalidVector[];
}

/** `length` bytes counting up from `start` by `step`, modulo 256: recognisable in a hex dump, never random. */
function pattern(length: number, start: number, step = 1): Buffer {
  return Buffer.from(Array.from({ length }, (_, i) => (start + i * step) & 0xff));
}

const entry = edekEntry;

export function toJsonEntry(e: EncryptedDek): JsonEntry {
  return {
    encryptedDekData: e.encryptedDekData.toString('base64'),
    kmsConfigId: e.kmsConfigId,
    leasedKeyId: e.leasedKeyId,
    leasedKeyIv: e.leasedKeyIv.toString('base64'),
    encryptedLeasedKeyData: e.encryptedLeasedKeyData.toString('base64'),
    tenantId: e.tenantId,
  };
}

function valid(name: string, description: string, entries: EncryptedDek[], elek?: EncryptedDek[]): ValidVector {
  const vector: ValidVector = {
    name,
    description,
    fields: { entries: entries.map(toJsonEntry) },
    edek: encodeEdeks(entries).toString('base64'),
  };
  if (elek !== undefined) vector.elek = { entries: elek.map(toJsonEntry) };
  return vector;
}

function lenient(name: string, description: string, bytes: Buffer, entries: EncryptedDek[]): LenientVector {
  const vector: LenientVector = {
    name,
    description,
    fields: { entries: entries.map(toJsonEntry) },
    edek: bytes.toString('base64'),
  };
  if (entries.every((e) => e.kmsConfigId > 0 && e.leasedKeyId >= 0)) {
    vector.canonical = encodeEdeks(entries).toString('base64');
  }
  return vector;
}

function invalid(name: string, reason: string, bytes: Buffer): InvalidVector {
  let error: string;
  try {
    decodeEdeks(bytes);
    throw new Error(`invalid vector ${name} decodes without error`);
  } catch (err) {
    if (!(err instanceof EdekFormatError)) throw err;
    error = err.message;
  }
  return { name, reason, edek: bytes.toString('base64'), error };
}

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');

/** Wraps entry bytes as one `encryptedDeks` element: tag 0x0a, length, bytes. */
function frame(entryBytes: Buffer): Buffer {
  if (entryBytes.length > 127) throw new Error('frame() writes one-byte lengths only');
  return Buffer.concat([Buffer.from([0x0a, entryBytes.length]), entryBytes]);
}

export function buildVectors(): EdekVectors {
  const dev = entry({ encryptedDekData: pattern(60, 0x10), kmsConfigId: 1, tenantId: 'tenant-dev' });

  const sameDekGcp = entry({ encryptedDekData: pattern(113, 0x40, 3), kmsConfigId: 1, tenantId: 'tenant-multi' });
  const sameDekAzure = entry({ encryptedDekData: pattern(256, 0x80, 5), kmsConfigId: 2, tenantId: 'tenant-multi' });

  const elekEntries = [entry({ encryptedDekData: pattern(184, 0xa0, 7), kmsConfigId: 3, tenantId: 'tenant-leased' })];
  const leased = entry({
    encryptedDekData: pattern(48, 0x30),
    kmsConfigId: 3,
    leasedKeyId: 42,
    leasedKeyIv: pattern(12, 0xc0),
    encryptedLeasedKeyData: encodeEdeks(elekEntries),
    tenantId: 'tenant-leased',
  });

  const validVectors = [
    valid(
      'direct-single',
      'Direct mode, one entry: KMS config 1 of tenant "tenant-dev" (the built-in dev KMS), a 60-byte KMS ciphertext.',
      [dev],
    ),
    valid(
      'direct-max-config-id',
      'Direct mode with the largest kmsConfigId (2147483647, a five-byte varint) and an AWS-sized 184-byte ciphertext.',
      [entry({ encryptedDekData: pattern(184, 0x01, 11), kmsConfigId: 2147483647, tenantId: 'tenant-aws' })],
    ),
    valid(
      'direct-two-entries',
      'The same DEK wrapped under two KMS configs of one tenant (a GCP-sized 113-byte and an Azure-sized 256-byte ' +
        'ciphertext): an unwrap may use either entry, so it still succeeds while one cloud is down.',
      [sameDekGcp, sameDekAzure],
    ),
    valid(
      'leased',
      'Leased mode: encryptedDekData is AES-256-GCM(LEK) of the DEK (32 bytes + 16-byte tag), leasedKeyId 42 names ' +
        'the leased key, leasedKeyIv is its 12-byte IV, and encryptedLeasedKeyData is the ELEK: an EncryptedDeks ' +
        'holding the LEK wrapped by KMS config 3 (decoded in "elek").',
      [leased],
      elekEntries,
    ),
    valid(
      'unicode-tenant',
      'A tenant id outside ASCII (two- three- and four-byte UTF-8 sequences); the length prefix counts bytes, not ' +
        'characters.',
      [entry({ encryptedDekData: pattern(32, 0x55), kmsConfigId: 5, tenantId: 'tenant-Ünïcödé-日本-🔑' })],
    ),
    valid(
      'multi-byte-lengths',
      'Values on varint boundaries: kmsConfigId 16384 (three bytes), leasedKeyId 128 (two bytes), a 200-byte ' +
        'encryptedDekData (two-byte length) and an entry over 127 bytes (two-byte length).',
      [
        entry({
          encryptedDekData: pattern(200, 0x00),
          kmsConfigId: 16384,
          leasedKeyId: 128,
          leasedKeyIv: pattern(12, 0xf0),
          encryptedLeasedKeyData: encodeEdeks([dev]),
          tenantId: 't',
        }),
      ],
    ),
  ];

  const devBytes = encodeEdeks([dev]);
  const devEntry = devBytes.subarray(2); // tag and one-byte length dropped: 62 + 2 + 12 = 76 bytes
  const small = entry({ encryptedDekData: pattern(4, 0xd0), kmsConfigId: 1, tenantId: 't' });
  const smallEntry = encodeEdeks([small]).subarray(2);

  const lenientVectors = [
    lenient(
      'unknown-fields',
      'direct-single with fields a newer writer might add: varint field 7, fixed64 field 8, fixed32 field 9 and ' +
        'length-delimited field 15 inside the entry, and varint field 2 beside it. All are skipped.',
      Buffer.concat([
        hex('10 07'),
        frame(Buffer.concat([devEntry, hex('38 96 01  41 0102030405060708  4d 01020304  7a 03 616263')])),
      ]),
      [dev],
    ),
    lenient(
      'last-one-wins',
      'kmsConfigId written twice (9, then 1), tenantId twice ("other", then "t") and encryptedDekData twice: the ' +
        'last occurrence of each wins.',
      frame(hex('0a 02 eeee  10 09  32 05 6f74686572  0a 04 d0d1d2d3  10 01  32 01 74')),
      [small],
    ),
    lenient(
      'out-of-order-and-explicit-defaults',
      'Fields in reverse order, with default values written out (leasedKeyId 0, empty leasedKeyIv): same entry as ' +
        'the canonical form, which leaves defaults out.',
      frame(hex('32 01 74  22 00  18 00  10 01  0a 04 d0d1d2d3')),
      [small],
    ),
    lenient(
      'non-minimal-varints',
      'kmsConfigId 1 and the entry length written with redundant continuation bytes (81 80 80 00, 8e 00).',
      hex('0a 8e 00  0a 04 d0d1d2d3  10 81 80 80 00  32 01 74'),
      [small],
    ),
    lenient(
      'negative-int32',
      'kmsConfigId -1 in its ten-byte sign-extended form. A valid int32 on the wire; Keyward refuses it later (no ' +
        'config has a negative id) and its encoder never writes one, so there is no canonical form.',
      frame(hex('0a 04 d0d1d2d3  10 ff ff ff ff ff ff ff ff ff 01  32 01 74')),
      [{ ...small, kmsConfigId: -1 }],
    ),
    lenient(
      'empty-entry',
      'One entry with every field at its default. Keyward refuses kmsConfigId 0 later.',
      hex('0a 00'),
      [entry({})],
    ),
  ];

  const seventeen = Buffer.concat(Array.from({ length: 17 }, () => encodeEdeks([small])));

  const invalidVectors = [
    invalid('truncated-tag-only', 'The input ends after the tag of the first entry, before its length.', hex('0a')),
    invalid(
      'truncated-entry',
      'direct-single with its last byte cut off: the entry length announces one byte more than there is.',
      devBytes.subarray(0, devBytes.length - 1),
    ),
    invalid(
      'truncated-varint-in-entry',
      'kmsConfigId starts a varint that the entry ends in the middle of; the bytes after the entry must not be read ' +
        'as its continuation.',
      hex('0a 02 10 ff  01'),
    ),
    invalid(
      'truncated-fixed64',
      'An unknown fixed64 field (wire type 1) with only three of its eight bytes left in the entry.',
      frame(Buffer.concat([smallEntry, hex('41 010203')])),
    ),
    invalid(
      'length-beyond-end',
      'encryptedDekData announces 100 bytes; the entry holds 3.',
      frame(hex('0a 64 010203')),
    ),
    invalid(
      'length-over-32-bits',
      'An entry length of 2^32 + 4 (a varint wider than 32 bits).',
      hex('0a 84 80 80 80 10  0a 02 0102'),
    ),
    invalid('wrong-wire-type-entries', 'Field 1 of EncryptedDeks as a varint instead of a message.', hex('08 01')),
    invalid(
      'wrong-wire-type-kms-config-id',
      'kmsConfigId (field 2) as length-delimited instead of varint.',
      frame(hex('0a 04 d0d1d2d3  12 01 01  32 01 74')),
    ),
    invalid(
      'wrong-wire-type-tenant-id',
      'tenantId (field 6) as fixed32 instead of length-delimited.',
      frame(hex('0a 04 d0d1d2d3  10 01  35 74657374')),
    ),
    invalid(
      'bad-utf8-continuation',
      'tenantId "tenant-" followed by a lone continuation byte 0x80.',
      frame(hex('0a 04 d0d1d2d3  10 01  32 08 74656e616e742d 80')),
    ),
    invalid(
      'bad-utf8-overlong',
      'tenantId holding an overlong encoding of "/" (c0 af), which decoders must refuse.',
      frame(hex('0a 04 d0d1d2d3  10 01  32 03 74 c0af')),
    ),
    invalid(
      'bad-utf8-surrogate',
      'tenantId holding an encoded UTF-16 surrogate (ed a0 80), which is not valid UTF-8.',
      frame(hex('0a 04 d0d1d2d3  10 01  32 04 74 eda080')),
    ),
    invalid(
      'bad-utf8-truncated-sequence',
      'tenantId ending inside a three-byte sequence (e6 97 of 日).',
      frame(hex('0a 04 d0d1d2d3  10 01  32 03 74 e697')),
    ),
    invalid(
      'oversize-varint',
      'kmsConfigId as an eleven-byte varint (at most ten are allowed).',
      frame(hex('10 ff ff ff ff ff ff ff ff ff ff 01')),
    ),
    invalid(
      'varint-overflows-64-bits',
      'kmsConfigId as a ten-byte varint whose last byte carries more than bit 63.',
      frame(hex('10 ff ff ff ff ff ff ff ff ff 03')),
    ),
    invalid(
      'int32-out-of-range',
      'kmsConfigId 2^31 (80 80 80 80 08): a valid varint but not an int32 (some readers silently wrap it to -2^31).',
      frame(hex('0a 04 d0d1d2d3  10 80 80 80 80 08  32 01 74')),
    ),
    invalid(
      'int32-out-of-range-negative',
      'leasedKeyId -2^31 - 1 in ten-byte form: below the int32 range.',
      frame(hex('10 01  18 ff ff ff ff f7 ff ff ff ff 01')),
    ),
    invalid(
      'group-wire-type-in-entry',
      'A start-group tag (field 7, wire type 3) inside an entry. Groups are not proto3.',
      frame(Buffer.concat([smallEntry, hex('3b 3c')])),
    ),
    invalid(
      'group-wire-type-top-level',
      'An end-group tag (field 2, wire type 4) after a valid entry.',
      Buffer.concat([encodeEdeks([small]), hex('14')]),
    ),
    invalid(
      'undefined-wire-type',
      'Wire type 6, which protobuf does not define, inside an entry.',
      frame(Buffer.concat([smallEntry, hex('3e 00')])),
    ),
    invalid(
      'zero-field-number',
      'A tag with field number 0 (wire type 0) inside an entry.',
      frame(hex('00 01  10 01')),
    ),
    invalid('zero-field-number-top-level', 'A tag with field number 0 (wire type 2) at the top level.', hex('02 00')),
    invalid(
      'tag-over-32-bits',
      'A tag whose varint is wider than 32 bits (field numbers stop at 2^29 - 1).',
      frame(hex('80 80 80 80 10 01')),
    ),
    invalid('too-many-entries', 'Seventeen entries; at most sixteen are accepted.', seventeen),
  ];

  return {
    description:
      'Test vectors for the Keyward EDEK format: protobuf ironcorelabs.proto.cmk.EncryptedDeks, carried as standard ' +
      'base64 (docs/edek-format.md). "valid": canonical encodings; decode to "fields" and re-encode to the same ' +
      'bytes. "lenient": non-canonical but valid proto3; decode to "fields" ("canonical" is the re-encoding). ' +
      '"invalid": must be refused. Bytes fields are base64, ints are numbers. Generated by ' +
      'scripts/gen-edek-vectors.ts.',
    proto: EDEK_PROTO,
    valid: validVectors,
    lenient: lenientVectors,
    invalid: invalidVectors,
  };
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  process.stdout.write(`${JSON.stringify(buildVectors(), null, 2)}\n`);
}
