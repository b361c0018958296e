/**
 * Property-based fuzzing of the EDEK codec (src/envelope/edek.ts) on its own, with fast-check.
 *
 * test/envelope/edek.test.ts checks the published vectors and compares with protobufjs on random messages. This
 * file goes further:
 * - a protobuf *model* generator (tags of any field number and wire type, redundant and overlong varints, lying and
 *   huge lengths, nested messages, repeated and unknown fields, raw hostile fragments) with an independent oracle
 *   that predicts, from the model alone, what the decoder must return or that it must refuse — protobufjs cannot be
 *   that oracle, as it misreads redundant 6- to 9-byte varints;
 * - for every input: entries or EdekFormatError and nothing else, a well-formed result, no aliasing of the input,
 *   decode(encode(decode(x))) = decode(x), a canonical form never longer than the input, a safe error message with
 *   an in-range offset, and a bounded time;
 * - the base64 front end: accepted only when canonical, and every other spelling of an EDEK refused;
 * - the encoder: every valid EncryptedDek list round-trips, the size limit is exact, and invalid input is a
 *   TypeError/RangeError (a programming error), never bytes the decoder would refuse.
 */
import assert from 'node:assert/strict';
import { isUtf8 } from 'node:buffer';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import {
  decodeEdeks,
  EDEK_MAX_BYTES,
  EDEK_MAX_ENTRIES,
  edekEntry,
  edekFromBase64,
  EdekFormatError,
  edekToBase64,
  encodeEdeks,
  type EncryptedDek,
} from '../../src/envelope/edek.js';
import { mutateBytes, seedFor, type BasicByteMutation } from './support.js';

const INT32_MAX = 2 ** 31 - 1;
const TWO_64 = 2n ** 64n;
/** Base64 length of EDEK_MAX_BYTES (edek.ts refuses longer strings before decoding). */
const MAX_BASE64_CHARS = Math.ceil(EDEK_MAX_BYTES / 3) * 4;
/** Generous: a 64 KiB input decodes in well under a millisecond; this only catches a hang or a blow-up. */
const TIME_BUDGET_MS = 100;

const params = <T,>(name: string, numRuns: number): fc.Parameters<T> => ({ seed: seedFor(`edek-decoder:${name}`), numRuns });

// ---------------------------------------------------------------------------------------------------------------
// Checks every decode must pass

interface Normal {
  d: string;
  k: number;
  l: number;
  iv: string;
  e: string;
  t: string;
}

const normal = (entries: readonly EncryptedDek[]): Normal[] =>
  entries.map((e) => ({
    d: Buffer.from(e.encryptedDekData).toString('hex'),
    k: e.kmsConfigId,
    l: e.leasedKeyId,
    iv: Buffer.from(e.leasedKeyIv).toString('hex'),
    e: Buffer.from(e.encryptedLeasedKeyData).toString('hex'),
    t: e.tenantId,
  }));

const ENTRY_KEYS = ['encryptedDekData', 'encryptedLeasedKeyData', 'kmsConfigId', 'leasedKeyId', 'leasedKeyIv', 'tenantId'];

/** Messages name positions, field numbers and wire types only: no room for content (docs/edek-format.md). */
const SAFE_MESSAGE =
  /^(?:EDEK is not a valid EncryptedDeks message: [A-Za-z0-9 (),^-]+|EDEK is not valid base64: [a-z0-9 -]+|EDEK holds no keys|EDEK is over the \d+-byte limit|EDEK must be bytes)$/;

function checkFormatError(err: unknown, inputLength: number, what: string): asserts err is EdekFormatError {
  assert.ok(err instanceof EdekFormatError, `${what}: threw ${err instanceof Error ? `${err.name}: ${err.message}` : String(err)}, not EdekFormatError`);
  assert.equal(err.name, 'EdekFormatError');
  assert.match(err.message, SAFE_MESSAGE, `${what}: unexpected message shape`);
  if (err.offset !== undefined) {
    assert.ok(Number.isInteger(err.offset) && err.offset >= 0 && err.offset <= inputLength, `${what}: offset ${err.offset} outside [0, ${inputLength}]`);
  }
}

function hex(bytes: Uint8Array): string {
  const h = Buffer.from(bytes).toString('hex');
  return h.length > 400 ? `${h.slice(0, 400)}… (${bytes.length} bytes)` : h;
}

/**
 * Fails when `fn` (pure) takes over TIME_BUDGET_MS three times running: one slow call alone is a GC pause or a busy
 * machine, not a hang.
 */
function assertQuick(fn: () => unknown, what: string): void {
  let best = Infinity;
  for (let attempt = 0; attempt < 3 && best >= TIME_BUDGET_MS; attempt++) {
    const started = performance.now();
    try {
      fn();
    } catch {
      // Only the time matters here.
    }
    best = Math.min(best, performance.now() - started);
  }
  assert.ok(best < TIME_BUDGET_MS, `${what}: took ${Math.round(best)} ms (budget ${TIME_BUDGET_MS} ms)`);
}

const encodable = (entries: readonly EncryptedDek[]): boolean => entries.every((e) => e.kmsConfigId >= 1 && e.leasedKeyId >= 0);

/**
 * Decodes `input` and checks everything that must hold whatever it is; returns the entries, or undefined when the
 * input was refused (with EdekFormatError, as it must be).
 */
function checkedDecode(input: Uint8Array): EncryptedDek[] | undefined {
  const what = `input ${hex(input)}`;
  // A private copy with its own ArrayBuffer, so aliasing can be detected by overwriting it afterwards.
  const own = new Uint8Array(input);
  assertQuick(() => decodeEdeks(new Uint8Array(input)), what);
  let entries: EncryptedDek[];
  try {
    entries = decodeEdeks(own);
  } catch (err) {
    checkFormatError(err, input.length, what);
    assert.match(err.message, /^EDEK is not a valid EncryptedDeks message: /, what);
    assert.deepEqual(own, new Uint8Array(input), `${what}: the decoder changed its input`);
    return undefined;
  }
  assert.deepEqual(own, new Uint8Array(input), `${what}: the decoder changed its input`);

  // Well-formed.
  assert.ok(Array.isArray(entries) && entries.length <= EDEK_MAX_ENTRIES, what);
  for (const e of entries) {
    assert.deepEqual(Object.keys(e).sort(), ENTRY_KEYS, what);
    for (const b of [e.encryptedDekData, e.leasedKeyIv, e.encryptedLeasedKeyData]) assert.ok(Buffer.isBuffer(b), what);
    for (const n of [e.kmsConfigId, e.leasedKeyId]) assert.ok(Number.isInteger(n) && n >= -(2 ** 31) && n <= INT32_MAX, `${what}: int32 ${n}`);
    assert.equal(typeof e.tenantId, 'string', what);
    assert.ok(!/\p{Surrogate}/u.test(e.tenantId), `${what}: tenantId with a lone surrogate`);
  }

  // Copies, never views: overwriting the input changes no entry, and writing into an entry changes no input.
  const before = normal(entries);
  own.fill(0xa5);
  assert.deepEqual(normal(entries), before, `${what}: a decoded entry aliases the input`);
  for (const e of entries) for (const b of [e.encryptedDekData, e.leasedKeyIv, e.encryptedLeasedKeyData]) b.fill(0x3c);
  assert.ok(own.every((b) => b === 0xa5), `${what}: an entry buffer aliases the input`);
  const decoded = decodeEdeks(new Uint8Array(input)); // fresh, as the fills above changed the buffers

  // Canonical round trip: decode(encode(decode(x))) = decode(x); the canonical form is never longer than x.
  if (encodable(decoded)) {
    const canonical = encodeEdeks(decoded);
    assert.deepEqual(normal(decodeEdeks(canonical)), before, `${what}: decode(encode(decode(x))) differs`);
    assert.ok(canonical.length <= input.length, `${what}: canonical form (${canonical.length} bytes) is longer than the input`);
    assert.ok(encodeEdeks(decodeEdeks(canonical)).equals(canonical), `${what}: encoding is not canonical`);
  } else {
    assert.throws(() => encodeEdeks(decoded), RangeError, `${what}: an id the encoder must refuse`);
  }
  return decoded;
}

// ---------------------------------------------------------------------------------------------------------------
// A protobuf model, its serialisation and an independent oracle

type Body = { readonly k: 'bytes'; readonly bytes: Uint8Array } | { readonly k: 'msg'; readonly nodes: readonly PbNode[] };

type PbNode =
  /** Wire type 0; `pad` redundant bytes (0x80 … 0x00) after the minimal encoding. */
  | { readonly k: 'varint'; readonly field: number; readonly value: bigint; readonly pad: number; readonly tagPad: number }
  /** Wire types 1 and 5. */
  | { readonly k: 'fixed'; readonly field: number; readonly wire: 1 | 5; readonly bytes: Uint8Array; readonly tagPad: number }
  /** Wire type 2; the declared length is the true one plus `lie` (never below 0). */
  | { readonly k: 'len'; readonly field: number; readonly body: Body; readonly lenPad: number; readonly lie: number; readonly tagPad: number }
  /** A tag every reader must refuse: field number 0, a group (wire types 3, 4) or wire type 6 or 7; then anything. */
  | { readonly k: 'badtag'; readonly field: number; readonly wire: number; readonly tagPad: number; readonly after: Uint8Array }
  /** Bytes with no model: overlong varints, huge lengths, noise. */
  | { readonly k: 'raw'; readonly bytes: Uint8Array };

type Framed = Exclude<PbNode, { k: 'raw' } | { k: 'badtag' }>;

function varintBytes(value: bigint, pad = 0): number[] {
  const groups: number[] = [];
  let v = value;
  do {
    groups.push(Number(v & 0x7fn));
    v >>= 7n;
  } while (v > 0n);
  for (let i = 0; i < pad; i++) groups.push(0);
  return groups.map((g, i) => (i < groups.length - 1 ? g | 0x80 : g));
}

const varintLength = (value: bigint, pad = 0): number => varintBytes(value, pad).length;
const tagValue = (field: number, wire: number): bigint => (BigInt(field) << 3n) | BigInt(wire);
const declaredLength = (n: Extract<PbNode, { k: 'len' }>): number => Math.max(0, serializeBody(n.body).length + n.lie);

function serializeBody(body: Body): Buffer {
  return body.k === 'bytes' ? Buffer.from(body.bytes) : serialize(body.nodes);
}

function serialize(nodes: readonly PbNode[]): Buffer {
  return Buffer.concat(nodes.map(serializeNode));
}

/** Nodes are immutable: each is serialised once, however often the oracle asks for its bytes or size. */
const serialized = new WeakMap<PbNode, Buffer>();

function serializeNode(n: PbNode): Buffer {
  let bytes = serialized.get(n);
  if (!bytes) {
    bytes = serializeUncached(n);
    serialized.set(n, bytes);
  }
  return bytes;
}

function serializeUncached(n: PbNode): Buffer {
  switch (n.k) {
    case 'varint':
      return Buffer.from([...varintBytes(tagValue(n.field, 0), n.tagPad), ...varintBytes(n.value, n.pad)]);
    case 'fixed':
      return Buffer.concat([Buffer.from(varintBytes(tagValue(n.field, n.wire), n.tagPad)), n.bytes]);
    case 'len':
      return Buffer.concat([Buffer.from([...varintBytes(tagValue(n.field, 2), n.tagPad), ...varintBytes(BigInt(declaredLength(n)), n.lenPad)]), serializeBody(n.body)]);
    case 'badtag':
      return Buffer.concat([Buffer.from(varintBytes(tagValue(n.field, n.wire), n.tagPad)), n.after]);
    case 'raw':
      return Buffer.from(n.bytes);
  }
}

type Outcome = { readonly k: 'entries'; readonly entries: EncryptedDek[] } | { readonly k: 'error' } | { readonly k: 'unknown' };

const ERROR: Outcome = { k: 'error' };
const UNKNOWN: Outcome = { k: 'unknown' };
const ENTRY_WIRE: ReadonlyMap<number, number> = new Map([
  [1, 2],
  [2, 0],
  [3, 0],
  [4, 2],
  [5, 2],
  [6, 2],
]);

const wireOf = (n: Framed): number => (n.k === 'varint' ? 0 : n.k === 'fixed' ? n.wire : 2);

/**
 * The oracle walks a container's nodes in byte order, as the reader does, and stops at the first node that decides
 * the outcome: an error, or bytes it cannot predict (raw noise, a length that lies but stays inside the container).
 * `remaining` is how many bytes of the container follow the node: a length reaching beyond them is an error.
 */
function walk(nodes: readonly PbNode[], visit: (n: Framed, remaining: number) => Outcome | undefined): Outcome | undefined {
  const sizes = nodes.map((n) => serializeNode(n).length);
  let remaining = sizes.reduce((a, b) => a + b, 0);
  for (const [i, n] of nodes.entries()) {
    remaining -= sizes[i]!;
    if (n.k === 'raw') return UNKNOWN;
    if (varintLength(tagValue(n.field, n.k === 'badtag' ? n.wire : wireOf(n)), n.tagPad) > 10) return ERROR;
    if (n.k === 'badtag') return ERROR;
    const decided = visit(n, remaining);
    if (decided) return decided;
  }
  return undefined;
}

/** The framing of a value the reader skips or takes as bytes: the only part of it that can fail. */
function framing(n: Framed, remaining: number): Outcome | undefined {
  if (n.k === 'varint' && (n.value >= TWO_64 || varintLength(n.value, n.pad) > 10)) return ERROR;
  if (n.k === 'len') {
    const body = serializeBody(n.body).length;
    const declared = declaredLength(n);
    if (varintLength(BigInt(declared), n.lenPad) > 10) return ERROR;
    if (declared > body + remaining) return ERROR; // runs past the end of its container
    if (declared !== body) return UNKNOWN; // a different split of the same bytes
  }
  return undefined;
}

/** What decodeEntry must make of an entry body: the reader's rules, restated independently of it. */
function expectEntry(nodes: readonly PbNode[]): Outcome {
  const entry = edekEntry({});
  const decided = walk(nodes, (n, remaining) => {
    const wire = ENTRY_WIRE.get(n.field);
    if (wire === undefined) return framing(n, remaining); // unknown field: skipped
    if (wireOf(n) !== wire) return ERROR;
    const frame = framing(n, remaining);
    if (frame) return frame;
    if (n.k === 'varint') {
      // int32 on the wire: 0..2^31-1, or a negative sign-extended to 64 bits. The last occurrence wins.
      let value: number;
      if (n.value <= BigInt(INT32_MAX)) value = Number(n.value);
      else if (n.value >= TWO_64 - 2n ** 31n) value = Number(n.value - TWO_64);
      else return ERROR;
      if (n.field === 2) entry.kmsConfigId = value;
      else entry.leasedKeyId = value;
    } else if (n.k === 'len') {
      const bytes = serializeBody(n.body);
      if (n.field === 6) {
        if (!isUtf8(bytes)) return ERROR;
        entry.tenantId = bytes.toString('utf8');
      } else if (n.field === 1) entry.encryptedDekData = bytes;
      else if (n.field === 4) entry.leasedKeyIv = bytes;
      else entry.encryptedLeasedKeyData = bytes;
    }
    return undefined;
  });
  return decided ?? { k: 'entries', entries: [entry] };
}

/** What decodeEdeks must make of a whole message. */
function expectMessage(nodes: readonly PbNode[]): Outcome {
  if (serialize(nodes).length > EDEK_MAX_BYTES) return ERROR;
  const entries: EncryptedDek[] = [];
  const decided = walk(nodes, (n, remaining) => {
    if (n.field !== 1) return framing(n, remaining);
    if (n.k !== 'len') return ERROR;
    if (entries.length === EDEK_MAX_ENTRIES) return ERROR;
    const frame = framing(n, remaining);
    if (frame) return frame;
    if (n.body.k === 'bytes') return UNKNOWN;
    const entry = expectEntry(n.body.nodes);
    if (entry.k !== 'entries') return entry;
    entries.push(...entry.entries);
    return undefined;
  });
  return decided ?? { k: 'entries', entries };
}

// Generators.

const pad = fc.oneof({ weight: 10, arbitrary: fc.constant(0) }, { weight: 2, arbitrary: fc.integer({ min: 1, max: 4 }) }, { weight: 1, arbitrary: fc.integer({ min: 5, max: 10 }) });
const fieldNumber = fc.oneof(
  { weight: 8, arbitrary: fc.integer({ min: 1, max: 7 }) },
  { weight: 1, arbitrary: fc.constantFrom(8, 15, 16, 2047, 2048, 2 ** 29 - 1) },
  { weight: 1, arbitrary: fc.integer({ min: 8, max: 2 ** 29 - 1 }) },
);
const int32OnTheWire = fc.oneof(
  fc.integer({ min: 0, max: INT32_MAX }).map(BigInt),
  fc.integer({ min: -(2 ** 31), max: -1 }).map((n) => TWO_64 + BigInt(n)),
  fc.constantFrom(0n, 1n, 127n, 128n, 16383n, 16384n, BigInt(INT32_MAX), 2n ** 31n, 2n ** 32n - 1n, 2n ** 32n, 2n ** 63n, TWO_64 - 1n, TWO_64 - 2n ** 31n, TWO_64 - 2n ** 31n - 1n),
  fc.bigInt({ min: 0n, max: TWO_64 - 1n }),
  // Ten bytes whose last is over 1: more than 64 bits, refused wherever it is read.
  { weight: 1, arbitrary: fc.bigInt({ min: TWO_64, max: 2n ** 70n - 1n }) },
);
const smallBytes = (max: number): fc.Arbitrary<Uint8Array> => fc.uint8Array({ maxLength: max });
const utf8Body: fc.Arbitrary<Body> = fc
  .oneof(fc.string({ unit: 'binary', maxLength: 24 }), fc.constantFrom('', 't', 'tenant-a', '\uFEFFt', '\u0000', 'é', '🔑'))
  .map((s) => ({ k: 'bytes', bytes: Buffer.from(s, 'utf8') }));
const invalidUtf8Body: fc.Arbitrary<Body> = fc
  .constantFrom('ff', 'c3', 'c328', 'f4908080', 'f08282ac', 'edbfbf', 'e282', 'c0af', 'eda080')
  .map((h) => ({ k: 'bytes', bytes: Buffer.from(h, 'hex') }));

/** Fragments no model describes: what a hostile or broken writer sends. */
const HOSTILE = [
  '0b', '0c', '1b', '3b', '3c', // groups (wire types 3 and 4)
  '0e', '0f', '16', '37', // wire types 6 and 7
  '00', '02', '0500000000', // field number 0
  '80', '8080', 'ffffffff', // truncated varints
  '0a', '0aff', '0affffffff0f', '0a8080808010', '0affffffffffffffffff01', // lengths past the end, 2^32, 2^64-1
  '10ffffffffffffffffffff01', '1080808080808080808002', // varints of 11 bytes, and a tenth byte over 1
  '808080808001', 'ffffffffffffffffff7f', // tags wider than 32 bits
  '09', '0d000000', '11', '15', // fixed-width values cut short
  '0a021001', '0a0310', '0a023200', // entries whose inner fields run past them
];
const badTag: fc.Arbitrary<PbNode> = fc.oneof(
  fc.record({ k: fc.constant('badtag' as const), field: fieldNumber, wire: fc.constantFrom(3, 4, 6, 7), tagPad: pad, after: smallBytes(6) }),
  fc.record({ k: fc.constant('badtag' as const), field: fc.constant(0), wire: fc.integer({ min: 0, max: 7 }), tagPad: pad, after: smallBytes(6) }),
);
const hostile: fc.Arbitrary<PbNode> = fc.oneof(
  badTag,
  fc.constantFrom(...HOSTILE).map((h) => ({ k: 'raw' as const, bytes: Buffer.from(h, 'hex') })),
  smallBytes(12).map((bytes) => ({ k: 'raw' as const, bytes })),
);

const lie = fc.oneof({ weight: 12, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.integer({ min: -3, max: 3 }) }, { weight: 1, arbitrary: fc.constantFrom(1_000, 2 ** 31, 2 ** 40) });

const { node: anyNode, nodes: anyNodes } = fc.letrec<{ node: PbNode; nodes: PbNode[] }>((tie) => ({
  node: fc.oneof(
    { maxDepth: 3, depthSize: 'small' },
    fc.record({ k: fc.constant('varint' as const), field: fieldNumber, value: int32OnTheWire, pad, tagPad: pad }),
    fc.constantFrom(1 as const, 5 as const).chain((wire) =>
      fc.record({ k: fc.constant('fixed' as const), field: fieldNumber, wire: fc.constant(wire), bytes: fc.uint8Array({ minLength: wire === 1 ? 8 : 4, maxLength: wire === 1 ? 8 : 4 }), tagPad: pad }),
    ),
    fc.record({ k: fc.constant('len' as const), field: fieldNumber, body: fc.oneof(smallBytes(40).map((bytes): Body => ({ k: 'bytes', bytes })), utf8Body, invalidUtf8Body), lenPad: pad, lie, tagPad: pad }),
    fc.record({ k: fc.constant('len' as const), field: fieldNumber, body: tie('nodes').map((nodes): Body => ({ k: 'msg', nodes })), lenPad: pad, lie, tagPad: pad }),
    hostile,
  ),
  nodes: fc.array(tie('node'), { maxLength: 6 }),
}));

/** A field of an entry, mostly with the right wire type and a plausible value. */
const entryField: fc.Arbitrary<PbNode> = fc.oneof(
  { weight: 3, arbitrary: fc.record({ k: fc.constant('varint' as const), field: fc.constantFrom(2, 3), value: int32OnTheWire, pad, tagPad: pad }) },
  {
    weight: 3,
    arbitrary: fc.record({ k: fc.constant('len' as const), field: fc.constantFrom(1, 4, 5), body: smallBytes(64).map((bytes): Body => ({ k: 'bytes', bytes })), lenPad: pad, lie, tagPad: pad }),
  },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('len' as const), field: fc.constant(5), body: anyNodes.map((nodes): Body => ({ k: 'msg', nodes })), lenPad: pad, lie, tagPad: pad }) },
  { weight: 3, arbitrary: fc.record({ k: fc.constant('len' as const), field: fc.constant(6), body: utf8Body, lenPad: pad, lie, tagPad: pad }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('len' as const), field: fc.constant(6), body: invalidUtf8Body, lenPad: pad, lie, tagPad: pad }) },
  { weight: 2, arbitrary: anyNode },
  // A known field with another wire type than its own: always refused.
  {
    weight: 1,
    arbitrary: fc.oneof(
      fc.record({ k: fc.constant('fixed' as const), field: fc.integer({ min: 1, max: 6 }), wire: fc.constantFrom(1 as const, 5 as const), bytes: fc.uint8Array({ minLength: 8, maxLength: 8 }), tagPad: pad }).map((n) => ({ ...n, bytes: n.bytes.subarray(0, n.wire === 1 ? 8 : 4) })),
      fc.record({ k: fc.constant('varint' as const), field: fc.constantFrom(1, 4, 5, 6), value: int32OnTheWire, pad, tagPad: pad }),
      fc.record({ k: fc.constant('len' as const), field: fc.constantFrom(2, 3), body: smallBytes(8).map((bytes): Body => ({ k: 'bytes', bytes })), lenPad: pad, lie, tagPad: pad }),
    ),
  },
);

const entryNode: fc.Arbitrary<PbNode> = fc.record({
  k: fc.constant('len' as const),
  field: fc.constant(1),
  body: fc.array(entryField, { maxLength: 9 }).map((nodes): Body => ({ k: 'msg', nodes })),
  lenPad: pad,
  lie,
  tagPad: pad,
});

/** An entry with well-formed fields only (values may still be out of range or bad UTF-8, but rarely). */
const cleanEntryNode: fc.Arbitrary<PbNode> = fc.record({
  k: fc.constant('len' as const),
  field: fc.constant(1),
  body: fc
    .array(
      fc.oneof(
        fc.record({ k: fc.constant('varint' as const), field: fc.constantFrom(2, 3, 9), value: fc.integer({ min: 0, max: INT32_MAX }).map(BigInt), pad, tagPad: fc.constant(0) }),
        fc.record({ k: fc.constant('len' as const), field: fc.constantFrom(1, 4, 5, 10), body: smallBytes(16).map((bytes): Body => ({ k: 'bytes', bytes })), lenPad: fc.constant(0), lie: fc.constant(0), tagPad: fc.constant(0) }),
        fc.record({ k: fc.constant('len' as const), field: fc.constant(6), body: utf8Body, lenPad: fc.constant(0), lie: fc.constant(0), tagPad: fc.constant(0) }),
      ),
      { maxLength: 6 },
    )
    .map((nodes): Body => ({ k: 'msg', nodes })),
  lenPad: fc.constant(0),
  lie: fc.constant(0),
  tagPad: fc.constant(0),
});

/** A whole message: mostly entries, some unknown fields, a little hostile noise; sometimes around 16 entries. */
const message: fc.Arbitrary<PbNode[]> = fc.oneof(
  { weight: 8, arbitrary: fc.array(fc.oneof({ weight: 6, arbitrary: entryNode }, { weight: 2, arbitrary: anyNode }, { weight: 1, arbitrary: hostile }), { maxLength: 6 }) },
  { weight: 2, arbitrary: fc.array(cleanEntryNode, { minLength: 15, maxLength: 18 }) },
);

/**
 * Messages of well-framed fields only (no lying lengths, no noise): the oracle decides every one of them. Known
 * fields with their own wire type and values in and out of the int32 range, known fields with another wire type,
 * unknown fields of every wire type, forbidden tags, tenant ids that are not UTF-8, redundant and overlong varints.
 */
const framedField: fc.Arbitrary<PbNode> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ k: fc.constant('varint' as const), field: fc.constantFrom(2, 3), value: int32OnTheWire, pad, tagPad: pad }) },
  { weight: 3, arbitrary: fc.record({ k: fc.constant('len' as const), field: fc.constantFrom(1, 4, 5), body: smallBytes(24).map((bytes): Body => ({ k: 'bytes', bytes })), lenPad: pad, lie: fc.constant(0), tagPad: pad }) },
  { weight: 3, arbitrary: fc.record({ k: fc.constant('len' as const), field: fc.constant(6), body: fc.oneof({ weight: 4, arbitrary: utf8Body }, { weight: 1, arbitrary: invalidUtf8Body }), lenPad: pad, lie: fc.constant(0), tagPad: pad }) },
  {
    weight: 2,
    arbitrary: fc.oneof(
      fc.record({ k: fc.constant('fixed' as const), field: fc.integer({ min: 1, max: 6 }), wire: fc.constantFrom(1 as const, 5 as const), bytes: fc.uint8Array({ minLength: 8, maxLength: 8 }), tagPad: pad }).map((n) => ({ ...n, bytes: n.bytes.subarray(0, n.wire === 1 ? 8 : 4) })),
      fc.record({ k: fc.constant('varint' as const), field: fc.constantFrom(1, 4, 5, 6), value: int32OnTheWire, pad, tagPad: pad }),
      fc.record({ k: fc.constant('len' as const), field: fc.constantFrom(2, 3), body: smallBytes(8).map((bytes): Body => ({ k: 'bytes', bytes })), lenPad: pad, lie: fc.constant(0), tagPad: pad }),
    ),
  },
  {
    weight: 2,
    arbitrary: fc.oneof(
      fc.record({ k: fc.constant('varint' as const), field: fc.integer({ min: 7, max: 2 ** 29 - 1 }), value: int32OnTheWire, pad, tagPad: pad }),
      fc.record({ k: fc.constant('len' as const), field: fc.integer({ min: 7, max: 2 ** 29 - 1 }), body: smallBytes(8).map((bytes): Body => ({ k: 'bytes', bytes })), lenPad: pad, lie: fc.constant(0), tagPad: pad }),
      fc.constantFrom(1 as const, 5 as const).chain((wire) =>
        fc.record({ k: fc.constant('fixed' as const), field: fc.integer({ min: 7, max: 2 ** 29 - 1 }), wire: fc.constant(wire), bytes: fc.uint8Array({ minLength: wire === 1 ? 8 : 4, maxLength: wire === 1 ? 8 : 4 }), tagPad: pad }),
      ),
    ),
  },
  { weight: 1, arbitrary: badTag },
);
const framedMessage: fc.Arbitrary<PbNode[]> = fc.array(
  fc.oneof(
    { weight: 5, arbitrary: fc.array(framedField, { maxLength: 7 }).map((nodes): PbNode => ({ k: 'len', field: 1, body: { k: 'msg', nodes }, lenPad: 0, lie: 0, tagPad: 0 })) },
    // Beside the entries; field 1 with its own wire type is an entry, which the line above makes.
    { weight: 1, arbitrary: framedField.filter((n) => !(n.k === 'len' && n.field === 1)) },
  ),
  { maxLength: 5 },
);

// Valid entries, for the encoder.

const INT32_EDGES = [1, 127, 128, 16383, 16384, 2 ** 21 - 1, 2 ** 21, 2 ** 28 - 1, 2 ** 28, INT32_MAX];
const configId = fc.oneof(fc.integer({ min: 1, max: INT32_MAX }), fc.constantFrom(...INT32_EDGES));
const leaseId = fc.oneof(fc.constant(0), fc.integer({ min: 0, max: INT32_MAX }), fc.constantFrom(...INT32_EDGES));
const bytesField = fc.oneof(
  { weight: 3, arbitrary: fc.uint8Array({ maxLength: 300 }).map((b) => Buffer.from(b)) },
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 40 }) }, // a plain Uint8Array is accepted too
  { weight: 1, arbitrary: fc.constant(Buffer.alloc(0)) },
);
const tenantIdString = fc.oneof(
  fc.string({ unit: 'binary', maxLength: 40 }),
  fc.string({ maxLength: 40 }),
  fc.constantFrom('', '\uFEFF', '\uFEFFtenant', '\u0000', 'a'.repeat(256), '🔑'.repeat(64), '\u{10FFFF}'),
);
const validEntry: fc.Arbitrary<EncryptedDek> = fc.record({
  encryptedDekData: bytesField,
  kmsConfigId: configId,
  leasedKeyId: leaseId,
  leasedKeyIv: bytesField,
  encryptedLeasedKeyData: bytesField,
  tenantId: tenantIdString,
}) as fc.Arbitrary<EncryptedDek>;
const validEntries = fc.array(validEntry, { maxLength: EDEK_MAX_ENTRIES });

// Mutations of valid encodings.

type Mutation = BasicByteMutation;

const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ k: fc.constant('flip' as const), at: fc.nat(), bit: fc.integer({ min: 0, max: 7 }) }),
  fc.record({ k: fc.constant('set' as const), at: fc.nat(), value: fc.oneof(fc.constantFrom(0x00, 0x01, 0x7f, 0x80, 0xff, 0x0a, 0x10, 0x32), fc.integer({ min: 0, max: 255 })) }),
  fc.record({ k: fc.constant('truncate' as const), at: fc.nat() }),
  fc.record({ k: fc.constant('insert' as const), at: fc.nat(), bytes: fc.oneof(fc.uint8Array({ minLength: 1, maxLength: 8 }), fc.constantFrom(...HOSTILE).map((h) => Buffer.from(h, 'hex'))) }),
  fc.record({ k: fc.constant('delete' as const), at: fc.nat(), length: fc.integer({ min: 1, max: 8 }) }),
  fc.record({ k: fc.constant('duplicate' as const), at: fc.nat(), length: fc.integer({ min: 1, max: 24 }) }),
);

const mutate = mutateBytes;

// ---------------------------------------------------------------------------------------------------------------

describe('EDEK decoder: property-based fuzz', () => {
  it('arbitrary bytes: entries that re-encode stably, or EdekFormatError — nothing else', () => {
    const input = fc.oneof(
      { weight: 3, arbitrary: fc.uint8Array({ maxLength: 256 }) },
      // Concatenated hostile fragments and tiny valid pieces: protobuf-shaped noise.
      { weight: 3, arbitrary: fc.array(fc.oneof(fc.constantFrom(...HOSTILE, '0a00', '1001', '3201', '0800', '0a021001', '10ff01', '3a00'), fc.uint8Array({ maxLength: 4 }).map((b) => Buffer.from(b).toString('hex'))), { maxLength: 12 }).map((hs) => Buffer.from(hs.join(''), 'hex')) },
    );
    fc.assert(
      fc.property(input, (bytes) => {
        checkedDecode(bytes);
      }),
      params('arbitrary bytes', 4000),
    );
  });

  it('protobuf-shaped messages: the decoder does exactly what an independent model of the rules predicts', () => {
    let predicted = 0;
    fc.assert(
      fc.property(message, (nodes) => {
        const bytes = serialize(nodes);
        const expected = expectMessage(nodes);
        const actual = checkedDecode(bytes);
        if (expected.k === 'unknown') return;
        predicted++;
        if (expected.k === 'error') {
          assert.equal(actual, undefined, `must be refused: ${hex(bytes)}`);
        } else {
          assert.ok(actual !== undefined, `must be accepted: ${hex(bytes)}`);
          assert.deepEqual(normal(actual), normal(expected.entries), `decoded differently: ${hex(bytes)}`);
        }
      }),
      params('model', 3000),
    );
    // The oracle must decide most cases, or this property says little.
    assert.ok(predicted > 1500, `only ${predicted} of 3000 messages were predictable`);
  });

  it('well-framed messages (known fields of any wire type and range, unknown fields, forbidden tags): exactly as the model predicts', () => {
    let accepted = 0;
    fc.assert(
      fc.property(framedMessage, (nodes) => {
        const bytes = serialize(nodes);
        const expected = expectMessage(nodes);
        const actual = checkedDecode(bytes);
        if (expected.k === 'unknown') assert.fail(`the oracle decides every well-framed message: ${hex(bytes)}`);
        else if (expected.k === 'error') {
          assert.equal(actual, undefined, `must be refused: ${hex(bytes)}`);
        } else {
          accepted++;
          assert.ok(actual !== undefined, `must be accepted: ${hex(bytes)}`);
          assert.deepEqual(normal(actual), normal(expected.entries), `decoded differently: ${hex(bytes)}`);
        }
      }),
      params('framed', 3000),
    );
    assert.ok(accepted > 500, `only ${accepted} of 3000 accepted`);
  });

  it('mutations of valid encodings (bit flips, truncations, extensions, insertions, deletions, duplications)', () => {
    fc.assert(
      fc.property(fc.array(validEntry, { minLength: 1, maxLength: 3 }), fc.array(mutation, { minLength: 1, maxLength: 4 }), (entries, mutations) => {
        let bytes = encodeEdeks(entries);
        for (const m of mutations) bytes = mutate(bytes, m);
        checkedDecode(bytes);
      }),
      params('mutations', 3000),
    );
  });

  it('inputs around the 64 KiB limit: over it always refused, at or under it decoded as the model predicts, in bounded time', () => {
    /** Unknown fields (field 7) filling exactly `bytes` bytes: one big one, or thousands of tiny ones to skip. */
    const filler = (kind: 'one-field' | 'many-varints' | 'random', bytes: number, seed: number): PbNode[] => {
      if (bytes <= 0) return [];
      if (kind === 'random') {
        const tail = Buffer.alloc(bytes);
        let x = seed | 1;
        for (let i = 0; i < tail.length; i++) {
          x ^= x << 13;
          x ^= x >>> 17;
          x ^= x << 5;
          tail[i] = x & 0xff;
        }
        return [{ k: 'raw', bytes: tail }];
      }
      if (kind === 'one-field') {
        for (let length = Math.max(0, bytes - 4); length <= bytes; length++) {
          if (1 + varintLength(BigInt(length)) + length === bytes) {
            return [{ k: 'len', field: 7, body: { k: 'bytes', bytes: Buffer.alloc(length, 0xee) }, lenPad: 0, lie: 0, tagPad: 0 }];
          }
        }
      }
      if (bytes < 2) return [{ k: 'raw', bytes: Buffer.alloc(bytes) }];
      const tiny: PbNode[] = Array.from({ length: Math.floor(bytes / 2) }, () => ({ k: 'varint', field: 7, value: 0n, pad: 0, tagPad: 0 }));
      if (bytes % 2 === 1) tiny[0] = { k: 'varint', field: 7, value: 0n, pad: 1, tagPad: 0 }; // 38 80 00
      return tiny;
    };
    const sized = fc.record({
      nodes: fc.oneof(fc.array(cleanEntryNode, { maxLength: 4 }), message),
      size: fc.integer({ min: EDEK_MAX_BYTES - 3, max: EDEK_MAX_BYTES + 3 }),
      kind: fc.oneof({ weight: 3, arbitrary: fc.constant('one-field' as const) }, fc.constant('many-varints' as const), fc.constant('random' as const)),
      seed: fc.integer(),
      fillerFirst: fc.boolean(),
    });
    fc.assert(
      fc.property(sized, ({ nodes, size, kind, seed, fillerFirst }) => {
        const fill = filler(kind, size - serialize(nodes).length, seed);
        const all = fillerFirst ? [...fill, ...nodes] : [...nodes, ...fill];
        const bytes = serialize(all);
        const decoded = checkedDecode(bytes);
        if (bytes.length > EDEK_MAX_BYTES) assert.equal(decoded, undefined, `${bytes.length} bytes accepted`);
        const expected = expectMessage(all);
        if (expected.k === 'error') assert.equal(decoded, undefined, `${bytes.length} bytes: must be refused`);
        if (expected.k === 'entries') assert.deepEqual(normal(decoded ?? []), normal(expected.entries), `${bytes.length} bytes: decoded differently`);
      }),
      params('64k', 60),
    );
  });

  it('anything that is not bytes: EdekFormatError', () => {
    fc.assert(
      fc.property(fc.oneof(fc.anything(), fc.constantFrom<unknown>(new ArrayBuffer(4), new Uint8ClampedArray(4), new Int8Array(4), new DataView(new ArrayBuffer(2)), [10, 0])), (value) => {
        if (value instanceof Uint8Array) return;
        assert.throws(() => decodeEdeks(value as Uint8Array), (err) => {
          checkFormatError(err, 0, `decodeEdeks(${fc.stringify(value)})`);
          return true;
        });
        if (typeof value === 'string') return;
        assert.throws(() => edekFromBase64(value as string), (err) => {
          checkFormatError(err, 0, `edekFromBase64(${fc.stringify(value)})`);
          return true;
        });
      }),
      params('not bytes', 500),
    );
  });
});

describe('EDEK base64 front end: property-based fuzz', () => {
  const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
  const nearLimit = fc.record({ length: fc.integer({ min: MAX_BASE64_CHARS - 8, max: MAX_BASE64_CHARS + 8 }), ch: fc.constantFrom('A', 'C', '/', '=') }).map(({ length, ch }) => ch.repeat(length));

  /** Accepted ⇒ canonical base64 of bytes that decode to the same, non-empty entries. */
  function checkedFromBase64(s: string): EncryptedDek[] | undefined {
    const what = `edekFromBase64(${JSON.stringify(s.length > 300 ? `${s.slice(0, 300)}…` : s)})`;
    assertQuick(() => edekFromBase64(s), what);
    let entries: EncryptedDek[];
    try {
      entries = edekFromBase64(s);
    } catch (err) {
      checkFormatError(err, Buffer.from(s, 'base64').length, what);
      return undefined;
    }
    const bytes = Buffer.from(s, 'base64');
    assert.equal(bytes.toString('base64'), s, `${what}: accepted a non-canonical spelling`);
    assert.ok(entries.length >= 1, `${what}: accepted an EDEK with no entries`);
    assert.deepEqual(normal(entries), normal(checkedDecode(bytes) ?? []), `${what}: differs from decodeEdeks`);
    return entries;
  }

  it('arbitrary strings: non-empty entries from canonical base64 only, otherwise EdekFormatError', () => {
    const str = fc.oneof(
      fc.string({ unit: 'binary', maxLength: 64 }),
      fc.string({ unit: fc.constantFrom(...ALPHABET, '=', ' ', '\n', '-', '_'), maxLength: 64 }),
      fc.base64String({ maxLength: 200 }),
      fc.uint8Array({ maxLength: 120 }).map((b) => Buffer.from(b).toString('base64')),
      message.map((nodes) => serialize(nodes).toString('base64')),
      nearLimit,
    );
    fc.assert(
      fc.property(str, (s) => {
        checkedFromBase64(s);
      }),
      params('base64 strings', 3000),
    );
  });

  it('one spelling per EDEK: the canonical base64 of any accepted message is accepted, every other spelling refused', () => {
    type Respell = { k: 'space'; at: number; ch: string } | { k: 'urlsafe' } | { k: 'strip' } | { k: 'extra-pad'; pad: string } | { k: 'pad-bits'; plus: number } | { k: 'wrap'; before: string; after: string };
    const respell: fc.Arbitrary<Respell> = fc.oneof(
      fc.record({ k: fc.constant('space' as const), at: fc.nat(), ch: fc.constantFrom(' ', '\n', '\r\n', '\t', '\u00a0', '\u2028') }),
      fc.constant({ k: 'urlsafe' as const }),
      fc.constant({ k: 'strip' as const }),
      fc.record({ k: fc.constant('extra-pad' as const), pad: fc.constantFrom('=', '==', '====') }),
      fc.record({ k: fc.constant('pad-bits' as const), plus: fc.integer({ min: 1, max: 15 }) }),
      fc.record({ k: fc.constant('wrap' as const), before: fc.constantFrom('', '\uFEFF', '\u0000', '"'), after: fc.constantFrom('', '\u0000', '"', '.') }),
    );
    const apply = (s: string, r: Respell): string => {
      switch (r.k) {
        case 'space': {
          const at = r.at % (s.length + 1);
          return s.slice(0, at) + r.ch + s.slice(at);
        }
        case 'urlsafe':
          return s.replace(/\+/g, '-').replace(/\//g, '_');
        case 'strip':
          return s.replace(/=+$/, '');
        case 'extra-pad':
          return s + r.pad;
        case 'pad-bits': {
          const pads = s.length - s.replace(/=+$/, '').length;
          if (pads === 0) return s;
          const last = s.length - pads - 1;
          const index = ALPHABET.indexOf(s[last]!);
          const unused = pads === 2 ? 0x0f : 0x03; // bits of the last character no byte uses
          const twisted = (index & ~unused) | (r.plus & unused);
          return s.slice(0, last) + ALPHABET[twisted]! + s.slice(last + 1);
        }
        case 'wrap':
          return r.before + s + r.after;
      }
    };
    const encoded = fc.oneof(validEntries.filter((e) => e.length > 0).map((e) => encodeEdeks(e)), message.map(serialize));
    fc.assert(
      fc.property(encoded, fc.array(respell, { minLength: 1, maxLength: 2 }), (bytes, respells) => {
        const canonical = bytes.toString('base64');
        const direct = checkedDecode(bytes);
        const viaBase64 = checkedFromBase64(canonical);
        if (direct === undefined || direct.length === 0) assert.equal(viaBase64, undefined, 'refused bytes (or no entries) accepted through base64');
        else assert.deepEqual(normal(viaBase64 ?? []), normal(direct), 'base64 and bytes decode differently');
        const other = respells.reduce(apply, canonical);
        if (other === canonical) return;
        assert.equal(checkedFromBase64(other), undefined, `a second spelling was accepted: ${JSON.stringify(other)} for ${canonical}`);
      }),
      params('one spelling', 2000),
    );
  });
});

describe('EDEK encoder: property-based fuzz', () => {
  it('encode(valid entries) decodes back to them, canonically, also through base64', () => {
    fc.assert(
      fc.property(validEntries, (entries) => {
        const bytes = encodeEdeks(entries);
        const decoded = checkedDecode(bytes);
        assert.ok(decoded !== undefined, 'the decoder refused what the encoder wrote');
        assert.deepEqual(normal(decoded), normal(entries));
        assert.ok(encodeEdeks(decoded).equals(bytes), 'not canonical');
        if (entries.length === 0) {
          assert.equal(bytes.length, 0);
          assert.throws(() => edekToBase64(entries), RangeError);
        } else {
          assert.deepEqual(normal(edekFromBase64(edekToBase64(entries))), normal(entries));
        }
      }),
      params('encode roundtrip', 1500),
    );
  });

  it('at the 64 KiB limit: encodes exactly what fits, refuses the rest with RangeError, never writes what it cannot read', () => {
    fc.assert(
      fc.property(fc.array(validEntry, { minLength: 1, maxLength: 3 }), fc.integer({ min: -6, max: 6 }), (entries, delta) => {
        // Grow the last entry's data so that the whole lands `delta` bytes from the limit.
        const last = entries[entries.length - 1]!;
        const probe = [...entries.slice(0, -1), { ...last, encryptedDekData: Buffer.alloc(0) }];
        const base = encodeEdeks(probe).length;
        let grow = Math.max(0, EDEK_MAX_BYTES + delta - base);
        // The data's length prefix and the entry's grow with it: shrink until the total is as close as it gets.
        const total = (n: number): number => encodeEdeksSize([...entries.slice(0, -1), { ...last, encryptedDekData: Buffer.alloc(n) }]);
        while (grow > 0 && total(grow) > EDEK_MAX_BYTES + delta) grow--;
        const big = [...entries.slice(0, -1), { ...last, encryptedDekData: Buffer.alloc(grow, 0x5a) }];
        const size = total(grow);
        if (size <= EDEK_MAX_BYTES) {
          const bytes = encodeEdeks(big);
          assert.equal(bytes.length, size);
          assert.deepEqual(normal(checkedDecode(bytes) ?? []), normal(big));
        } else {
          assert.throws(() => encodeEdeks(big), RangeError);
        }
      }),
      params('encode limit', 150),
    );
  });

  it('invalid entries: TypeError or RangeError (a programming error), never bytes and never EdekFormatError', () => {
    const notInteger = fc.double().filter((n) => !Number.isInteger(n));
    const badConfigId = fc.oneof(
      fc.constantFrom(0, -0, -1, -(2 ** 31), 2 ** 31, 2 ** 32, 1.5, Number.NaN, Infinity, -Infinity, Number.MAX_SAFE_INTEGER),
      fc.integer({ max: 0 }),
      fc.integer({ min: 2 ** 31, max: Number.MAX_SAFE_INTEGER }),
      notInteger,
    );
    const badLeaseId = fc.oneof(
      fc.constantFrom(-1, -(2 ** 31), 2 ** 31, 0.5, Number.NaN, Infinity, -Infinity),
      fc.integer({ max: -1 }),
      fc.integer({ min: 2 ** 31, max: Number.MAX_SAFE_INTEGER }),
      notInteger,
    );
    const notBytes = fc.constantFrom<unknown>('abc', [1, 2], null, undefined, 3, {}, new ArrayBuffer(3));
    const loneSurrogate = fc
      .tuple(fc.string({ maxLength: 4 }), fc.integer({ min: 0xd800, max: 0xdfff }), fc.string({ maxLength: 4 }))
      .map(([a, s, b]) => a + String.fromCharCode(s) + b)
      .filter((s) => /\p{Surrogate}/u.test(s));
    const base = (): EncryptedDek => edekEntry({ kmsConfigId: 1 });
    const brokenEntry: fc.Arbitrary<unknown> = fc.oneof(
      badConfigId.map((kmsConfigId) => ({ ...base(), kmsConfigId })),
      badLeaseId.map((leasedKeyId) => ({ ...base(), leasedKeyId })),
      loneSurrogate.map((tenantId) => ({ ...base(), tenantId })),
      fc.tuple(notBytes, fc.constantFrom('encryptedDekData', 'leasedKeyIv', 'encryptedLeasedKeyData')).map(([value, field]) => ({ ...base(), [field]: value })),
      fc.constantFrom<unknown>(null, 'x', 5, [], { kmsConfigId: 1 }),
    );
    const broken: fc.Arbitrary<EncryptedDek[]> = fc.oneof(
      fc.tuple(validEntries, brokenEntry, fc.nat()).map(([entries, bad, at]) => {
        const i = at % (entries.length + 1);
        return [...entries.slice(0, i), bad as EncryptedDek, ...entries.slice(i)];
      }),
      fc.array(validEntry, { minLength: EDEK_MAX_ENTRIES + 1, maxLength: EDEK_MAX_ENTRIES + 3 }),
    );
    fc.assert(
      fc.property(broken, (entries) => {
        assert.throws(
          () => encodeEdeks(entries),
          (err) => (err instanceof TypeError || err instanceof RangeError) && !(err instanceof EdekFormatError),
          `encodeEdeks(${fc.stringify(entries).slice(0, 300)})`,
        );
      }),
      params('encode invalid', 800),
    );
  });
});

/** The size encodeEdeks writes, computed here from the proto3 rules (not by calling it, which throws over the limit). */
function encodeEdeksSize(entries: readonly EncryptedDek[]): number {
  const lenField = (n: number): number => (n === 0 ? 0 : 1 + varintLength(BigInt(n)) + n);
  const intField = (n: number): number => (n === 0 ? 0 : 1 + varintLength(BigInt(n)));
  return entries.reduce((sum, e) => {
    const size =
      lenField(e.encryptedDekData.length) +
      intField(e.kmsConfigId) +
      intField(e.leasedKeyId) +
      lenField(e.leasedKeyIv.length) +
      lenField(e.encryptedLeasedKeyData.length) +
      lenField(Buffer.byteLength(e.tenantId, 'utf8'));
    return sum + 1 + varintLength(BigInt(size)) + size;
  }, 0);
}
