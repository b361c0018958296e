/**
 * The EDEK wire format: protobuf `ironcorelabs.proto.cmk.EncryptedDeks`, written and read by hand so that the
 * parser of hostile input is small, bounded and fully ours (docs/edek-format.md, published vectors in
 * test/fixtures/edek-vectors.json).
 *
 * The schema is `EDEK_PROTO` below.
 *
 * This module checks the wire format only. What the values mean (a kmsConfigId that is not 0 and belongs to the
 * tenant, a 12-byte IV, leased fields present together) is for the caller to check.
 */
import { isUtf8 } from 'node:buffer';

export interface EncryptedDek {
  /** Direct: the KMS ciphertext of the DEK. Leased: AES-256-GCM(LEK) of the DEK (32 bytes + 16-byte tag). */
  encryptedDekData: Buffer;
  /** The KMS configuration that made this entry. 0 when absent on the wire (never valid; the caller rejects it). */
  kmsConfigId: number;
  /** Leased only: which leased key wrapped the DEK; 0 in a direct entry. */
  leasedKeyId: number;
  /** Leased only: the 12-byte AES-GCM IV; empty in a direct entry. */
  leasedKeyIv: Buffer;
  /** Leased only: the ELEK, itself an encoded `EncryptedDeks`; empty in a direct entry. */
  encryptedLeasedKeyData: Buffer;
  /** The tenant the entry is bound to; '' when absent on the wire. */
  tenantId: string;
}

export type EncryptedDeks = EncryptedDek[];

/** The schema, as published for the tenant-security clients; tests parse it with protobufjs to check this codec. */
export const EDEK_PROTO = `syntax = "proto3";
package ironcorelabs.proto.cmk;

message EncryptedDek {
  bytes  encryptedDekData       = 1;
  int32  kmsConfigId            = 2;
  int32  leasedKeyId            = 3;
  bytes  leasedKeyIv            = 4;
  bytes  encryptedLeasedKeyData = 5;
  string tenantId               = 6;
}

message EncryptedDeks {
  repeated EncryptedDek encryptedDeks = 1;
}
`;

/** An entry with proto3 defaults for every field not given. */
export function edekEntry(fields: Partial<EncryptedDek>): EncryptedDek {
  return {
    encryptedDekData: Buffer.alloc(0),
    kmsConfigId: 0,
    leasedKeyId: 0,
    leasedKeyIv: Buffer.alloc(0),
    encryptedLeasedKeyData: Buffer.alloc(0),
    tenantId: '',
    ...fields,
  };
}

/** At most this many entries in one EDEK (one per KMS config of a tenant is the real use). */
export const EDEK_MAX_ENTRIES = 16;
/** At most this many bytes in one encoded EDEK (a real one is a few hundred bytes). */
export const EDEK_MAX_BYTES = 64 * 1024;
/** Base64 length of EDEK_MAX_BYTES bytes: longer strings are refused before they are decoded. */
const EDEK_MAX_BASE64_CHARS = Math.ceil(EDEK_MAX_BYTES / 3) * 4;

const INT32_MAX = 0x7fffffff;

/**
 * The EDEK could not be read. The message names only positions, field numbers and wire types, never content, so
 * it is safe to send to the caller (callers map it to INVALID_PROVIDED_EDEK, code 203).
 */
export class EdekFormatError extends Error {
  override readonly name = 'EdekFormatError';
  /** Byte offset into the decoded EDEK where the problem was found, when there is one. */
  readonly offset: number | undefined;

  constructor(message: string, offset?: number) {
    super(message);
    this.offset = offset;
  }
}

export function isEdekFormatError(err: unknown): err is EdekFormatError {
  return err instanceof EdekFormatError;
}

// ---------------------------------------------------------------------------------------------------------------
// Decoding

const WIRE_VARINT = 0;
const WIRE_FIXED64 = 1;
const WIRE_LEN = 2;
const WIRE_START_GROUP = 3;
const WIRE_END_GROUP = 4;
const WIRE_FIXED32 = 5;

/** The one field of EncryptedDeks: `repeated EncryptedDek encryptedDeks = 1`. */
const ENTRIES_FIELD = 1;

const ENTRY_FIELDS: ReadonlyMap<number, { name: keyof EncryptedDek; wireType: number }> = new Map([
  [1, { name: 'encryptedDekData', wireType: WIRE_LEN }],
  [2, { name: 'kmsConfigId', wireType: WIRE_VARINT }],
  [3, { name: 'leasedKeyId', wireType: WIRE_VARINT }],
  [4, { name: 'leasedKeyIv', wireType: WIRE_LEN }],
  [5, { name: 'encryptedLeasedKeyData', wireType: WIRE_LEN }],
  [6, { name: 'tenantId', wireType: WIRE_LEN }],
]);

/** The value of an absent bytes field: zero-length, so sharing it shares nothing. */
const EMPTY = Buffer.alloc(0);


function invalid(detail: string, offset?: number): EdekFormatError {
  return new EdekFormatError(`EDEK is not a valid EncryptedDeks message: ${detail}`, offset);
}

/** A varint as two unsigned 32-bit halves, so that all 64 bits are exact without BigInt. */
interface Varint {
  lo: number;
  hi: number;
}

/**
 * A cursor over the whole input. Every read takes `end`, the end of the enclosing message, so nothing inside an
 * entry can reach past it, and positions in error messages are offsets into the input as the caller sent it.
 */
class Reader {
  pos = 0;

  constructor(
    private readonly buf: Uint8Array,
    private readonly owned = false,
  ) {}

  varint(end: number): Varint {
    const start = this.pos;
    let lo = 0;
    let hi = 0;
    for (let i = 0; ; i++) {
      if (this.pos >= end) throw invalid(`truncated varint at byte ${start}`, start);
      const b = this.buf[this.pos++]!;
      if (i === 9) {
        // The tenth byte carries bit 63 only.
        if (b & 0x80) throw invalid(`varint longer than 10 bytes at byte ${start}`, start);
        if (b > 1) throw invalid(`varint overflows 64 bits at byte ${start}`, start);
        return { lo: lo >>> 0, hi: (hi | (b << 31)) >>> 0 };
      }
      const bits = b & 0x7f;
      if (i < 4) {
        lo |= bits << (7 * i);
      } else if (i === 4) {
        lo |= (bits & 0x0f) << 28;
        hi = bits >>> 4;
      } else {
        hi |= bits << (7 * i - 32);
      }
      if ((b & 0x80) === 0) return { lo: lo >>> 0, hi: hi >>> 0 };
    }
  }

  /** Reads a length prefix; returns [from, to) of the bytes it announces, which must end by `end`. */
  lengthDelimited(end: number): [number, number] {
    const at = this.pos;
    const { lo, hi } = this.varint(end);
    const left = end - this.pos;
    if (hi !== 0 || lo > left) {
      const announced = hi === 0 ? String(lo) : 'over 2^32';
      throw invalid(`length at byte ${at} runs past the end (${announced} bytes announced, ${left} left)`, at);
    }
    const from = this.pos;
    this.pos += lo;
    return [from, this.pos];
  }

  /** Reads a tag, refusing field number 0, groups (wire types 3 and 4) and the undefined wire types 6 and 7. */
  tag(end: number): { field: number; wireType: number; at: number } {
    const at = this.pos;
    const { lo, hi } = this.varint(end);
    if (hi !== 0) throw invalid(`tag wider than 32 bits at byte ${at}`, at);
    const field = lo >>> 3;
    const wireType = lo & 7;
    if (field === 0) throw invalid(`field number 0 at byte ${at}`, at);
    if (wireType === WIRE_START_GROUP || wireType === WIRE_END_GROUP) {
      throw invalid(`group wire type ${wireType} (field ${field}) at byte ${at}`, at);
    }
    if (wireType > WIRE_FIXED32) throw invalid(`undefined wire type ${wireType} (field ${field}) at byte ${at}`, at);
    return { field, wireType, at };
  }

  /** Skips the value of an unknown field: proto3 ignores them, so a newer writer's extra fields do no harm. */
  skip(wireType: number, end: number): void {
    if (wireType === WIRE_VARINT) {
      this.varint(end);
    } else if (wireType === WIRE_LEN) {
      this.lengthDelimited(end);
    } else {
      // tag() lets only fixed64 and fixed32 through besides the two above.
      const at = this.pos;
      const size = wireType === WIRE_FIXED64 ? 8 : 4;
      if (size > end - this.pos) throw invalid(`truncated fixed-width value at byte ${at}`, at);
      this.pos += size;
    }
  }

  /** Reads an int32: a varint whose 64-bit two's-complement value lies in the int32 range. */
  int32(end: number, name: string): number {
    const at = this.pos;
    const { lo, hi } = this.varint(end);
    if (hi === 0 && lo <= INT32_MAX) return lo;
    // A negative int32 is written sign-extended to 64 bits (ten bytes).
    if (hi === 0xffffffff && lo > INT32_MAX) return lo | 0;
    throw invalid(`${name} at byte ${at} is outside the int32 range`, at);
  }

  /**
   * [from, to) as a Buffer of its own: a copy, so that decoded entries never alias the caller's input — or, when the
   * input is a buffer nobody else holds (`owned`: edekFromBase64's fresh decode), a view of it.
   */
  copy(from: number, to: number): Buffer {
    if (from === to) return EMPTY;
    return this.owned ? Buffer.from(this.buf.buffer, this.buf.byteOffset + from, to - from) : Buffer.from(this.buf.subarray(from, to));
  }

  utf8(from: number, to: number, name: string): string {
    const bytes = this.buf.subarray(from, to);
    // isUtf8 is a native check, far cheaper than a fatal TextDecoder on short strings; toString keeps a BOM.
    if (!isUtf8(bytes)) throw invalid(`${name} at byte ${from} is not valid UTF-8`, from);
    return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length).toString('utf8');
  }
}

function decodeEntry(r: Reader, end: number): EncryptedDek {
  const entry: EncryptedDek = {
    encryptedDekData: EMPTY,
    kmsConfigId: 0,
    leasedKeyId: 0,
    leasedKeyIv: EMPTY,
    encryptedLeasedKeyData: EMPTY,
    tenantId: '',
  };
  while (r.pos < end) {
    const { field, wireType, at } = r.tag(end);
    const known = ENTRY_FIELDS.get(field);
    if (known === undefined) {
      r.skip(wireType, end);
      continue;
    }
    if (wireType !== known.wireType) {
      throw invalid(
        `field ${field} (${known.name}) has wire type ${wireType}, expected ${known.wireType}, at byte ${at}`,
        at,
      );
    }
    // A field that occurs more than once: the last occurrence wins (the protobuf rule for scalars and bytes).
    switch (known.name) {
      case 'kmsConfigId':
      case 'leasedKeyId':
        entry[known.name] = r.int32(end, known.name);
        break;
      case 'tenantId': {
        const [from, to] = r.lengthDelimited(end);
        entry.tenantId = r.utf8(from, to, known.name);
        break;
      }
      case 'encryptedDekData':
      case 'leasedKeyIv':
      case 'encryptedLeasedKeyData': {
        const [from, to] = r.lengthDelimited(end);
        entry[known.name] = r.copy(from, to);
        break;
      }
    }
  }
  return entry;
}

/**
 * Decodes an `EncryptedDeks` message. Throws EdekFormatError, and nothing else, for any input that is not one:
 * truncated or over-long varints, lengths past the end, field number 0, groups, a known field with the wrong wire
 * type, an int32 out of range, a tenantId that is not UTF-8, more than EDEK_MAX_ENTRIES entries or an input over
 * EDEK_MAX_BYTES. Unknown fields are skipped; a repeated scalar or bytes field keeps its last value.
 *
 * The returned buffers are copies, never views of `bytes`: callers may keep them after the request body is gone,
 * and nothing they do to them reaches the input (the cost is a few hundred bytes per EDEK).
 *
 * An empty input is a valid message with no entries and decodes to []; edekFromBase64 refuses that.
 */
export function decodeEdeks(bytes: Uint8Array): EncryptedDek[] {
  return decode(bytes, false);
}

function decode(bytes: Uint8Array, owned: boolean): EncryptedDek[] {
  if (!(bytes instanceof Uint8Array)) throw new EdekFormatError('EDEK must be bytes');
  if (bytes.length > EDEK_MAX_BYTES) {
    throw invalid(`${bytes.length} bytes is over the ${EDEK_MAX_BYTES}-byte limit`);
  }
  const r = new Reader(bytes, owned);
  const end = bytes.length;
  const entries: EncryptedDek[] = [];
  while (r.pos < end) {
    const { field, wireType, at } = r.tag(end);
    if (field !== ENTRIES_FIELD) {
      r.skip(wireType, end);
      continue;
    }
    if (wireType !== WIRE_LEN) {
      throw invalid(`field 1 (encryptedDeks) has wire type ${wireType}, expected ${WIRE_LEN}, at byte ${at}`, at);
    }
    if (entries.length === EDEK_MAX_ENTRIES) {
      throw invalid(`more than ${EDEK_MAX_ENTRIES} entries (at byte ${at})`, at);
    }
    const [from, to] = r.lengthDelimited(end);
    r.pos = from;
    entries.push(decodeEntry(r, to));
  }
  return entries;
}

// ---------------------------------------------------------------------------------------------------------------
// Encoding

function varintSize(n: number): number {
  // n is a checked int32 >= 0 or a length under EDEK_MAX_BYTES.
  return n < 0x80 ? 1 : n < 0x4000 ? 2 : n < 0x200000 ? 3 : n < 0x10000000 ? 4 : 5;
}

function lenFieldSize(length: number): number {
  return length === 0 ? 0 : 1 + varintSize(length) + length;
}

function intFieldSize(n: number): number {
  return n === 0 ? 0 : 1 + varintSize(n);
}

// Lone surrogates would be written as U+FFFD by Buffer.from and read back as a different tenant id.
const LONE_SURROGATE = /[\uD800-\uDFFF]/u;

interface CheckedEntry {
  entry: EncryptedDek;
  tenant: Buffer;
  size: number;
}

function checkEntry(entry: EncryptedDek, index: number): CheckedEntry {
  const where = `encodeEdeks: entry ${index}`;
  if (typeof entry !== 'object' || entry === null) throw new TypeError(`${where} is not an object`);
  for (const name of ['encryptedDekData', 'leasedKeyIv', 'encryptedLeasedKeyData'] as const) {
    if (!(entry[name] instanceof Uint8Array)) throw new TypeError(`${where}: ${name} must be a Buffer`);
  }
  // Keyward only ever writes positive ids; anything else is a programming error, not bad input.
  if (!Number.isInteger(entry.kmsConfigId) || entry.kmsConfigId < 1 || entry.kmsConfigId > INT32_MAX) {
    throw new RangeError(`${where}: kmsConfigId must be an integer from 1 to ${INT32_MAX}`);
  }
  if (!Number.isInteger(entry.leasedKeyId) || entry.leasedKeyId < 0 || entry.leasedKeyId > INT32_MAX) {
    throw new RangeError(`${where}: leasedKeyId must be an integer from 0 (direct) to ${INT32_MAX}`);
  }
  if (typeof entry.tenantId !== 'string' || LONE_SURROGATE.test(entry.tenantId)) {
    throw new TypeError(`${where}: tenantId must be a well-formed string`);
  }
  const tenant = Buffer.from(entry.tenantId, 'utf8');
  const size =
    lenFieldSize(entry.encryptedDekData.length) +
    intFieldSize(entry.kmsConfigId) +
    intFieldSize(entry.leasedKeyId) +
    lenFieldSize(entry.leasedKeyIv.length) +
    lenFieldSize(entry.encryptedLeasedKeyData.length) +
    lenFieldSize(tenant.length);
  return { entry, tenant, size };
}

class Writer {
  pos = 0;

  constructor(readonly buf: Buffer) {}

  varint(n: number): void {
    while (n >= 0x80) {
      this.buf[this.pos++] = (n & 0x7f) | 0x80;
      n >>>= 7;
    }
    this.buf[this.pos++] = n;
  }

  intField(field: number, n: number): void {
    if (n === 0) return;
    this.buf[this.pos++] = (field << 3) | WIRE_VARINT;
    this.varint(n);
  }

  lenField(field: number, bytes: Uint8Array): void {
    if (bytes.length === 0) return;
    this.buf[this.pos++] = (field << 3) | WIRE_LEN;
    this.varint(bytes.length);
    this.buf.set(bytes, this.pos);
    this.pos += bytes.length;
  }
}

/**
 * Encodes entries as an `EncryptedDeks` message in canonical proto3 form: fields in field-number order, default
 * values (0, empty bytes, '') left out, int32 as a plain varint. Throws (TypeError / RangeError: a programming
 * error, not bad input) for a kmsConfigId that is not 1..2^31-1, a negative leasedKeyId, a tenantId with a lone
 * surrogate, or a result that decodeEdeks would refuse (over EDEK_MAX_ENTRIES entries or EDEK_MAX_BYTES bytes).
 */
export function encodeEdeks(entries: readonly EncryptedDek[]): Buffer {
  if (!Array.isArray(entries)) throw new TypeError('encodeEdeks: entries must be an array');
  if (entries.length > EDEK_MAX_ENTRIES) {
    throw new RangeError(`encodeEdeks: ${entries.length} entries is over the limit of ${EDEK_MAX_ENTRIES}`);
  }
  const checked = entries.map(checkEntry);
  const total = checked.reduce((sum, c) => sum + 1 + varintSize(c.size) + c.size, 0);
  if (total > EDEK_MAX_BYTES) {
    throw new RangeError(`encodeEdeks: ${total} bytes is over the limit of ${EDEK_MAX_BYTES}`);
  }
  const w = new Writer(Buffer.alloc(total));
  for (const { entry, tenant, size } of checked) {
    w.buf[w.pos++] = (ENTRIES_FIELD << 3) | WIRE_LEN;
    w.varint(size);
    w.lenField(1, entry.encryptedDekData);
    w.intField(2, entry.kmsConfigId);
    w.intField(3, entry.leasedKeyId);
    w.lenField(4, entry.leasedKeyIv);
    w.lenField(5, entry.encryptedLeasedKeyData);
    w.lenField(6, tenant);
  }
  return w.buf;
}

// ---------------------------------------------------------------------------------------------------------------
// Base64, as EDEKs travel in JSON

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
const NOT_BASE64_CHAR = /[^A-Za-z0-9+/=]/;

function badBase64(detail: string): EdekFormatError {
  return new EdekFormatError(`EDEK is not valid base64: ${detail}`);
}

/**
 * Decodes a base64 EDEK as it arrives in a request. Only standard, padded, canonical base64 is accepted (no
 * whitespace, no URL-safe alphabet, no missing padding, no stray bits in the last character), because Node's own
 * decoder silently skips what it does not understand and two different strings must not name the same EDEK.
 */
export function edekFromBase64(s: string): EncryptedDek[] {
  if (typeof s !== 'string') throw badBase64('not a string');
  if (s.length > EDEK_MAX_BASE64_CHARS) {
    throw new EdekFormatError(`EDEK is over the ${EDEK_MAX_BYTES}-byte limit`);
  }
  const bytes = Buffer.from(s, 'base64');
  // Canonical standard base64 is exactly what re-encodes to itself: Node's lenient decoder skips or accepts
  // whatever else there is (whitespace, the URL-safe alphabet, missing padding, stray bits), and the re-encoding
  // then differs. Only then is the string looked at closely, to say what is wrong with it.
  if (bytes.toString('base64') !== s) {
    const bad = NOT_BASE64_CHAR.exec(s);
    if (bad !== null) throw badBase64(`character outside the standard alphabet at position ${bad.index}`);
    if (s.length % 4 !== 0) throw badBase64(`length ${s.length} is not a multiple of 4`);
    if (!BASE64.test(s)) throw badBase64('misplaced padding');
    throw badBase64('non-zero bits in the padding');
  }
  // The decoded buffer is ours alone: entries may be views of it rather than copies.
  const entries = decode(bytes, true);
  if (entries.length === 0) throw new EdekFormatError('EDEK holds no keys');
  return entries;
}

/** Encodes entries as a base64 EDEK. An EDEK with no entry would be refused on the way back, so it throws. */
export function edekToBase64(entries: readonly EncryptedDek[]): string {
  if (Array.isArray(entries) && entries.length === 0) {
    throw new RangeError('edekToBase64: an EDEK must hold at least one entry');
  }
  return encodeEdeks(entries).toString('base64');
}
