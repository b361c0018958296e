/**
 * Property-based fuzzing (fast-check) of the tenant binding of EDEKs, through a real in-process Keyward: tenants that
 * share a master key file, leased and direct configs, several configs per tenant, a disabled one, tenant ids that
 * look alike.
 *
 * - An EDEK of tenant A is never unwrapped for any other tenant id, by any route that unwraps (/v1 unwrap, batch
 *   unwrap, rewrap from B; /api/1 unwrap, batch-unwrap, rekey from B): always the documented 4xx (203, or 201 /
 *   200 when the tenant or the rekey target cannot be served), and no DEK of the pool anywhere in the answer.
 * - The owner always gets its DEK back, by every route; a rekey/rewrap moves the binding to the target only.
 * - EDEKs of several tenants spliced into one: each owner gets its own DEK, everyone else a 4xx.
 * - Random byte and bit mutations, truncations and extensions of valid EDEKs (and of their base64): an unwrap either
 *   returns exactly the DEK of an entry that still authenticates for that tenant, or a 4xx — never a 5xx, never
 *   another DEK. Which entries "still authenticate" is predicted by an oracle from the decoded entries: for a direct
 *   entry only (tenant, config, encryptedDekData) matter, for a leased one (tenant, config, leasedKeyId, IV, sealed
 *   DEK, and the ELEK's single entry's ciphertext, tenant and config); the other bytes may change harmlessly.
 * - Batch unwraps of mixed EDEKs: each item exactly as a single unwrap would answer it.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import { decodeEdeks, type EncryptedDek } from '../../src/envelope/edek.js';
import { Errors } from '../../src/errors.js';
import { META, startTestApp, type TestApp } from '../helpers/app.js';
import { checkAnswer, describeRequest, isDek, JSON_AUTH, mutateBytes, seedFor, send, type BasicByteMutation, type Timed } from './support.js';

type Status = 'primary' | 'active' | 'disabled';

/** The tenants as the final tenants file has them: id → config id → status. */
const CONFIGS: Readonly<Record<string, Readonly<Record<number, Status>>>> = {
  't-alpha': { 11: 'primary', 12: 'active', 13: 'disabled' },
  't-alpha2': { 21: 'primary' },
  't-beta': { 31: 'primary' },
  't-gamma': { 41: 'primary' },
  't-delta': { 51: 'primary', 52: 'active' },
  't-epsilon': { 61: 'primary' },
  't-noprimary': { 71: 'active' },
  't-empty': {},
};

/** API keys of the tenants file, each scoped to tenant-id patterns (`*`: any run of characters). */
const SCOPED_KEYS = [
  { name: 'alpha-only', key: 'fuzz-key-alpha-only-5b1e0c', tenants: ['t-alpha'] },
  { name: 'alpha-star', key: 'fuzz-key-alpha-star-77d2aa', tenants: ['t-alpha*'] },
  { name: 'gamma-delta', key: 'fuzz-key-gamma-delta-9c04f1', tenants: ['t-gamma', 't-delta'] },
  { name: 'star-a', key: 'fuzz-key-star-a-e3f8b2', tenants: ['*a'] },
] as const;

/** Whether a key with these patterns may act for `tenant`: the glob semantics, restated here. */
function inScope(patterns: readonly string[], tenant: string): boolean {
  return patterns.some((p) => new RegExp(`^${p.split('*').map((part) => part.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('[\\s\\S]*')}$`).test(tenant));
}

/**
 * Master keys: a is shared by t-alpha (11, 13), t-alpha2, t-beta, t-gamma (leased), t-delta (52) and t-noprimary; b by
 * t-alpha (12) and t-delta (51, leased); c by t-epsilon alone.
 */
function tenantsFile(phase: 1 | 2 | 3): string {
  const alpha = { 1: ['active', 'primary', 'active'], 2: ['active', 'active', 'primary'], 3: ['primary', 'active', 'disabled'] }[phase];
  const delta = phase === 3 ? ['primary', 'active'] : ['active', 'primary'];
  const apiKeys = SCOPED_KEYS.map(
    (k) => `  - { name: ${k.name}, sha256: ${createHash('sha256').update(k.key, 'utf8').digest('hex')}, tenants: [${k.tenants.map((t) => `'${t}'`).join(', ')}] }`,
  ).join('\n');
  return `
version: 1
apiKeys:
${apiKeys}
tenants:
  t-alpha:
    kmsConfigs:
      - { id: 11, status: ${alpha[0]}, provider: local, local: { keyFile: keys/a.key } }
      - { id: 12, status: ${alpha[1]}, provider: local, local: { keyFile: keys/b.key } }
      - { id: 13, status: ${alpha[2]}, provider: local, local: { keyFile: keys/a.key } }
  t-alpha2:
    kmsConfigs:
      - { id: 21, status: primary, provider: local, local: { keyFile: keys/a.key } }
  t-beta:
    kmsConfigs:
      - { id: 31, status: primary, provider: local, local: { keyFile: keys/a.key } }
  t-gamma:
    kmsConfigs:
      - { id: 41, status: primary, provider: local, local: { keyFile: keys/a.key }, leasing: { enabled: true } }
  t-delta:
    kmsConfigs:
      - { id: 51, status: ${delta[0]}, provider: local, local: { keyFile: keys/b.key }, leasing: { enabled: true } }
      - { id: 52, status: ${delta[1]}, provider: local, local: { keyFile: keys/a.key } }
  t-epsilon:
    kmsConfigs:
      - { id: 61, status: primary, provider: local, local: { keyFile: keys/c.key } }
  t-noprimary:
    kmsConfigs:
      - { id: 71, status: ${phase === 1 ? 'primary' : 'active'}, provider: local, local: { keyFile: keys/a.key } }
  t-empty:
    kmsConfigs: []
`;
}

const CONFIGURED = Object.keys(CONFIGS);
const WITH_PRIMARY = CONFIGURED.filter((t) => Object.values(CONFIGS[t]!).includes('primary'));
/** Not configured, but close to ids that are. */
const LOOKALIKES = ['T-ALPHA', 't-alpha ', ' t-alpha', 't-alpha\u0000', 't-\u0430lpha', 't-alpha\n', '\uff54-alpha', 't-alph', 't-alpha/', 't-alpha\u200b', 't-beta2', 'nobody'];
const ALL_TENANTS = [...CONFIGURED, ...LOOKALIKES];

const params = <T,>(name: string, numRuns: number): fc.Parameters<T> => ({ seed: seedFor(`tenant-binding:${name}`), numRuns });

interface PoolEdek {
  readonly name: string;
  readonly owner: string;
  readonly edek: string;
  readonly dek: string;
  /** False when the owner itself is refused (every entry under a disabled config). */
  readonly unwrapsForOwner: boolean;
}

// ---------------------------------------------------------------------------------------------------------------
// The oracle: which entries of an EDEK still authenticate for a tenant

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

/** What the unwrap of `entry` for `tenant` depends on, and nothing else; undefined if it cannot succeed. */
function relevant(entry: EncryptedDek, tenant: string): string | undefined {
  if (entry.leasedKeyId === 0) return `direct:${tenant}:${entry.kmsConfigId}:${hex(entry.encryptedDekData)}`;
  let elek: EncryptedDek[];
  try {
    elek = decodeEdeks(entry.encryptedLeasedKeyData);
  } catch {
    return undefined;
  }
  const [lek] = elek;
  if (elek.length !== 1 || !lek || lek.kmsConfigId !== entry.kmsConfigId || lek.tenantId !== tenant) return undefined;
  return `leased:${tenant}:${entry.kmsConfigId}:${entry.leasedKeyId}:${hex(entry.leasedKeyIv)}:${hex(entry.encryptedDekData)}:${hex(lek.encryptedDekData)}`;
}

/** The entries an unwrap for `tenant` tries, in its order: the tenant's own, of configs it has and that are not disabled, primary first. */
function tried(entries: readonly EncryptedDek[], tenant: string): EncryptedDek[] {
  const configs = CONFIGS[tenant] ?? {};
  const usable = entries.filter((e) => e.tenantId === tenant && configs[e.kmsConfigId] !== undefined && configs[e.kmsConfigId] !== 'disabled' && e.leasedKeyId >= 0);
  return usable.sort((a, b) => Number(configs[b.kmsConfigId] === 'primary') - Number(configs[a.kmsConfigId] === 'primary'));
}

type Expected = { readonly dek: string } | { readonly codes: readonly number[] };

/** What an unwrap of `bytes` for `tenant` must answer (`bytes` undefined: a spelling that is not canonical base64). */
function expectUnwrap(known: ReadonlyMap<string, string>, tenant: string, bytes: Buffer | undefined): Expected {
  if (CONFIGS[tenant] === undefined) return { codes: [Errors.UNKNOWN_TENANT_OR_NO_ACTIVE_KMS_CONFIGURATIONS.code] };
  let entries: EncryptedDek[] = [];
  try {
    if (bytes !== undefined) entries = decodeEdeks(bytes);
  } catch {
    // refused below
  }
  // A tenant with no KMS config at all: 203 for an EDEK it does not own, 201 for one it does.
  if (Object.keys(CONFIGS[tenant]).length === 0 && entries.some((e) => e.tenantId === tenant)) {
    return { codes: [Errors.UNKNOWN_TENANT_OR_NO_ACTIVE_KMS_CONFIGURATIONS.code] };
  }
  for (const entry of tried(entries, tenant)) {
    const dek = known.get(relevant(entry, tenant) ?? '');
    if (dek !== undefined) return { dek };
  }
  // Refused: 203 (does not parse, not the tenant's, does not authenticate), or 202 (the tenant's, under a disabled config).
  return { codes: [Errors.INVALID_PROVIDED_EDEK.code, Errors.KMS_CONFIGURATION_DISABLED.code] };
}

// ---------------------------------------------------------------------------------------------------------------
// Unwrapping through every route

type Via = 'v1-unwrap' | 'v1-batch' | 'v1-rewrap' | 'compat-unwrap' | 'compat-batch' | 'compat-rekey';
const UNWRAP_VIAS: readonly Via[] = ['v1-unwrap', 'v1-batch', 'compat-unwrap', 'compat-batch'];
const ALL_VIAS: readonly Via[] = [...UNWRAP_VIAS, 'v1-rewrap', 'compat-rekey'];

/** What came back for the one EDEK asked about: its DEK, or a refusal (`item`: a batch item failure). */
type Answer = { readonly dek: string; readonly bodies: string } | { readonly code: number; readonly status: number; readonly item: boolean; readonly bodies: string };

const ICL = { requestingId: 'tenant-binding-fuzz' };

async function callAs(app: TestApp, url: string, body: unknown, bodies: string[], authorization?: string): Promise<Timed> {
  const request = { url, payload: JSON.stringify(body), headers: authorization === undefined ? JSON_AUTH : { ...JSON_AUTH, authorization } };
  const timed = await send(app, request);
  bodies.push(timed.res.body);
  checkAnswer(timed, describeRequest(request));
  return timed;
}

const postJson = (app: TestApp, url: string, body: unknown): Promise<Timed> => send(app, { url, payload: JSON.stringify(body) });

function refusal(timed: Timed, bodies: string[], item = false): Answer {
  const { code } = timed.res.json<{ code: number }>();
  return { code, status: timed.res.statusCode, item, bodies: bodies.join('\n') };
}

/**
 * Unwraps `edek` for `tenant` through `via`. Batches carry `decoys` beside it. A rewrap's or rekey's new EDEK is
 * unwrapped for its target to learn the DEK it holds (`moved` gets it).
 */
async function unwrapVia(
  app: TestApp,
  via: Via,
  tenant: string,
  edek: string,
  options: { newTenantId?: string | undefined; decoys?: Record<string, string>; moved?: (edek: string, target: string) => void; authorization?: string } = {},
): Promise<Answer> {
  const bodies: string[] = [];
  const call = (url: string, body: unknown, list: string[]): Promise<Timed> => callAs(app, url, body, list, options.authorization);
  const batch = { ...(options.decoys ?? {}), target: edek };
  switch (via) {
    case 'v1-unwrap':
    case 'compat-unwrap': {
      const timed =
        via === 'v1-unwrap'
          ? await call('/v1/keys/unwrap', { tenantId: tenant, edek, metadata: META }, bodies)
          : await call('/api/1/document/unwrap', { tenantId: tenant, iclFields: ICL, encryptedDocumentKey: edek }, bodies);
      if (timed.res.statusCode !== 200) return refusal(timed, bodies);
      return { dek: timed.res.json<{ dek: string }>().dek, bodies: bodies.join('\n') };
    }
    case 'v1-batch':
    case 'compat-batch': {
      const timed =
        via === 'v1-batch'
          ? await call('/v1/keys/batch/unwrap', { tenantId: tenant, edeks: batch, metadata: META }, bodies)
          : await call('/api/1/document/batch-unwrap', { tenantId: tenant, iclFields: ICL, edeks: batch }, bodies);
      if (timed.res.statusCode !== 200) return refusal(timed, bodies);
      const answer = timed.res.json<{ keys: Record<string, { dek: string }>; failures: Record<string, { code: number }> }>();
      assert.deepEqual(new Set([...Object.keys(answer.keys), ...Object.keys(answer.failures)]), new Set(Object.keys(batch)), `batch answer does not account for every id: ${timed.res.body}`);
      const key = answer.keys.target;
      if (key) return { dek: key.dek, bodies: bodies.join('\n') };
      return { code: answer.failures.target!.code, status: 200, item: true, bodies: bodies.join('\n') };
    }
    case 'v1-rewrap':
    case 'compat-rekey': {
      const target = options.newTenantId ?? tenant;
      const timed =
        via === 'v1-rewrap'
          ? await call('/v1/keys/rewrap', { tenantId: tenant, edek, ...(options.newTenantId === undefined ? {} : { newTenantId: options.newTenantId }), metadata: META }, bodies)
          : await call('/api/1/document/rekey', { tenantId: tenant, iclFields: ICL, encryptedDocumentKey: edek, newTenantId: target }, bodies);
      if (timed.res.statusCode !== 200) return refusal(timed, bodies);
      const moved = timed.res.json<{ edek: string; dek?: string }>();
      options.moved?.(moved.edek, target);
      const back = await call('/v1/keys/unwrap', { tenantId: target, edek: moved.edek, metadata: META }, bodies);
      assert.equal(back.res.statusCode, 200, `the moved EDEK does not unwrap for its target ${target}: ${back.res.body}`);
      const dek = back.res.json<{ dek: string }>().dek;
      if (moved.dek !== undefined) assert.equal(moved.dek, dek, 'rekey answered a DEK other than the one its new EDEK holds');
      return { dek, bodies: bodies.join('\n') };
    }
  }
}

type ByteMutation =
  | BasicByteMutation
  | { k: 'extend'; bytes: Uint8Array }
  | { k: 'splice'; other: string; at: number }
  | { k: 'field'; entry: number; edit: FieldEdit };

/** Edits at the protobuf level, inside one entry, lengths kept right: the harmless ones and the relabelling ones. */
type FieldEdit =
  | { k: 'unknown'; at: number; bytes: Uint8Array }
  | { k: 'repeat'; which: number }
  | { k: 'default'; at: number; bytes: Uint8Array }
  | { k: 'pad-varint'; which: number; pad: number }
  | { k: 'reorder'; seed: number }
  | { k: 'elek-unknown'; bytes: Uint8Array }
  | { k: 'junk-lease-fields'; iv: Uint8Array; elek: Uint8Array }
  | { k: 'tenant'; to: string }
  /** Tenant and config together: the entry moved to another tenant's config, possibly one on the same master key. */
  | { k: 'relabel'; tenant: string; config: number }
  | { k: 'config'; to: number }
  | { k: 'lease-id'; to: number };

// ---------------------------------------------------------------------------------------------------------------
// A protobuf field editor for well-formed messages (the pool's EDEKs and what earlier edits made of them)

interface Field {
  readonly field: number;
  readonly wire: number;
  /** The value's bytes: the varint, the fixed bytes, or the length-delimited payload (without its length). */
  readonly value: Buffer;
}

function readVarint(buf: Buffer, pos: number): [number, number] {
  let value = 0;
  let scale = 1;
  for (let i = pos; i < buf.length && i < pos + 10; i++) {
    value += (buf[i]! & 0x7f) * scale;
    scale *= 128;
    if ((buf[i]! & 0x80) === 0) return [value, i + 1];
  }
  throw new Error('not a varint');
}

function varint(n: number, pad = 0): Buffer {
  const out: number[] = [];
  let v = n;
  do {
    out.push(v % 128);
    v = Math.floor(v / 128);
  } while (v > 0);
  for (let i = 0; i < pad; i++) out.push(0);
  return Buffer.from(out.map((b, i) => (i < out.length - 1 ? b | 0x80 : b)));
}

/** The fields of a message, or undefined if it is not well-formed (then edits leave it alone). */
function fields(buf: Buffer): Field[] | undefined {
  const out: Field[] = [];
  try {
    for (let pos = 0; pos < buf.length; ) {
      const [tag, afterTag] = readVarint(buf, pos);
      const wire = tag % 8;
      let end: number;
      let start = afterTag;
      if (wire === 0) end = readVarint(buf, afterTag)[1];
      else if (wire === 1) end = afterTag + 8;
      else if (wire === 5) end = afterTag + 4;
      else if (wire === 2) {
        const [length, afterLength] = readVarint(buf, afterTag);
        start = afterLength;
        end = afterLength + length;
      } else return undefined;
      if (end > buf.length) return undefined;
      out.push({ field: Math.floor(tag / 8), wire, value: buf.subarray(start, end) });
      pos = end;
    }
  } catch {
    return undefined;
  }
  return out;
}

function encodeField(f: Field, pad = 0): Buffer {
  const tag = varint(f.field * 8 + f.wire);
  if (f.wire === 2) return Buffer.concat([tag, varint(f.value.length), f.value]);
  if (f.wire === 0) return Buffer.concat([tag, pad === 0 ? f.value : varint(readVarint(f.value, 0)[0], pad)]);
  return Buffer.concat([tag, f.value]);
}

const joinFields = (list: readonly Field[]): Buffer => Buffer.concat(list.map((f) => encodeField(f)));
const field = (n: number, wire: number, value: Buffer): Field => ({ field: n, wire, value });

/** Applies `edit` inside the `index`-th entry (modulo the count) of a well-formed EDEK; anything else is left as is. */
function editEntry(edek: Buffer, index: number, edit: FieldEdit): Buffer {
  const top = fields(edek);
  const entryPositions = top?.flatMap((f, i) => (f.field === 1 && f.wire === 2 ? [i] : [])) ?? [];
  if (!top || entryPositions.length === 0) return edek;
  const at = entryPositions[index % entryPositions.length]!;
  const inner = fields(top[at]!.value);
  if (!inner) return edek;
  let list = [...inner];
  const pick = (n: number, filter: (f: Field) => boolean): number | undefined => {
    const candidates = list.flatMap((f, i) => (filter(f) ? [i] : []));
    return candidates.length === 0 ? undefined : candidates[n % candidates.length];
  };
  let body: Buffer | undefined;
  switch (edit.k) {
    case 'unknown':
    case 'default': {
      const extra = fields(Buffer.from(edit.bytes))!;
      const i = edit.at % (list.length + 1);
      list = [...list.slice(0, i), ...extra, ...list.slice(i)];
      break;
    }
    case 'repeat': {
      const i = pick(edit.which, () => true);
      if (i !== undefined) list.splice(i, 0, list[i]!);
      break;
    }
    case 'pad-varint': {
      const i = pick(edit.which, (f) => f.wire === 0);
      if (i !== undefined) body = Buffer.concat(list.map((f, j) => encodeField(f, j === i ? edit.pad : 0)));
      break;
    }
    case 'reorder': {
      // A rotation: fields keep their relative order except at the seam (repeated fields may swap: last wins).
      const r = list.length === 0 ? 0 : edit.seed % list.length;
      list = [...list.slice(r), ...list.slice(0, r)];
      break;
    }
    case 'elek-unknown': {
      const i = pick(0, (f) => f.field === 5 && f.wire === 2);
      if (i !== undefined) list[i] = field(5, 2, Buffer.concat([list[i]!.value, Buffer.from(edit.bytes)]));
      break;
    }
    case 'junk-lease-fields':
      list = [...list.filter((f) => f.field !== 4 && f.field !== 5), field(4, 2, Buffer.from(edit.iv)), field(5, 2, Buffer.from(edit.elek))];
      break;
    case 'tenant':
      list = [...list.filter((f) => f.field !== 6), field(6, 2, Buffer.from(edit.to, 'utf8'))];
      break;
    case 'config':
      list = [...list.filter((f) => f.field !== 2), field(2, 0, varint(edit.to))];
      break;
    case 'relabel':
      list = [...list.filter((f) => f.field !== 2 && f.field !== 6), field(2, 0, varint(edit.config)), field(6, 2, Buffer.from(edit.tenant, 'utf8'))];
      break;
    case 'lease-id':
      list = [...list.filter((f) => f.field !== 3), field(3, 0, varint(edit.to))];
  }
  const entry = field(1, 2, body ?? joinFields(list));
  return joinFields([...top.slice(0, at), entry, ...top.slice(at + 1)]);
}

// ---------------------------------------------------------------------------------------------------------------

describe('tenant binding: property-based fuzz', () => {
  let app: TestApp;
  const pool: PoolEdek[] = [];
  /** Per tenant: relevant(entry) → DEK, for every entry of the pool that unwraps for its owner. */
  const known = new Map<string, Map<string, string>>();

  const generate = async (tenant: string): Promise<{ dek: string; edek: string }> => {
    const { res } = await postJson(app, '/v1/keys/generate', { tenantId: tenant, metadata: META });
    assert.equal(res.statusCode, 200, res.body);
    return res.json();
  };
  const wrap = async (tenant: string, dek: string): Promise<string> => {
    const { res } = await postJson(app, '/v1/keys/wrap', { tenantId: tenant, dek, metadata: META });
    assert.equal(res.statusCode, 200, res.body);
    return res.json<{ edek: string }>().edek;
  };
  const concat = (...edeks: string[]): string => Buffer.concat(edeks.map((e) => Buffer.from(e, 'base64'))).toString('base64');
  const knownFor = (tenant: string): Map<string, string> => known.get(tenant) ?? new Map<string, string>();

  before(async () => {
    // Phase 1: t-alpha's primary is 12, t-delta's is 52 (direct), t-noprimary has one.
    app = await startTestApp({ tenants: tenantsFile(1) });
    const alphaDek = (await generate('t-alpha')).dek;
    const alpha12 = await wrap('t-alpha', alphaDek);
    const delta = await generate('t-delta');
    const noprimary = await generate('t-noprimary');
    // Phase 2: t-alpha's primary is 13.
    await app.rewrite(tenantsFile(2));
    const alpha13 = await wrap('t-alpha', alphaDek);
    // Phase 3, the final file: 11 primary, 13 disabled; t-delta's primary 51 is leased; t-noprimary has none.
    await app.rewrite(tenantsFile(3));
    const alpha11 = await wrap('t-alpha', alphaDek);
    const delta51 = await wrap('t-delta', delta.dek);

    const add = (name: string, owner: string, edek: string, dek: string, unwrapsForOwner = true): void => {
      pool.push({ name, owner, edek, dek, unwrapsForOwner });
    };
    for (const tenant of WITH_PRIMARY) {
      for (let i = 0; i < 2; i++) {
        const made = await generate(tenant);
        add(`${tenant} #${i}`, tenant, made.edek, made.dek);
      }
    }
    add('t-alpha under 11 and 12', 't-alpha', concat(alpha11, alpha12), alphaDek);
    add('t-alpha under 13 (disabled), then 11', 't-alpha', concat(alpha13, alpha11), alphaDek);
    add('t-alpha under 13 only (disabled)', 't-alpha', alpha13, alphaDek, false);
    add('t-alpha under 12 only (active)', 't-alpha', alpha12, alphaDek);
    add('t-delta leased 51 and direct 52', 't-delta', concat(delta51, delta.edek), delta.dek);
    add('t-noprimary under 71 (active)', 't-noprimary', noprimary.edek, noprimary.dek);

    for (const item of pool) {
      // Every pool EDEK behaves for its owner as expected before anything is fuzzed.
      const answer = await unwrapVia(app, 'v1-unwrap', item.owner, item.edek);
      if (item.unwrapsForOwner) assert.ok('dek' in answer && answer.dek === item.dek, `${item.name}: ${answer.bodies}`);
      else assert.ok('code' in answer && answer.code === Errors.KMS_CONFIGURATION_DISABLED.code, `${item.name}: ${answer.bodies}`);
      const map = known.get(item.owner) ?? new Map<string, string>();
      for (const entry of tried(decodeEdeks(Buffer.from(item.edek, 'base64')), item.owner)) map.set(relevant(entry, item.owner)!, item.dek);
      known.set(item.owner, map);
    }
  });
  after(() => app.close());

  const poolItem = (): fc.Arbitrary<PoolEdek> => fc.constantFrom(...pool);
  const allDeks = (): string[] => [...new Set(pool.map((p) => p.dek))];
  const assertNoPoolDek = (bodies: string, what: string): void => {
    for (const dek of allDeks()) assert.ok(!bodies.includes(dek), `${what}: a DEK of the pool appears in the answer:\n${bodies.slice(0, 800)}`);
  };

  it('an EDEK of tenant A is never unwrapped for any other tenant id, by any route: the documented 4xx, no DEK', async () => {
    const attempt = fc.record({
      item: poolItem(),
      victim: fc.constantFrom(...ALL_TENANTS),
      via: fc.constantFrom(...ALL_VIAS),
      newTenantId: fc.option(fc.constantFrom(...ALL_TENANTS), { nil: undefined }),
      decoys: fc.dictionary(fc.constantFrom('d1', 'd2', 'd3'), poolItem().map((p) => p.edek), { maxKeys: 3 }),
    });
    await fc.assert(
      fc.asyncProperty(attempt, async ({ item, victim, via, newTenantId, decoys }) => {
        fc.pre(victim !== item.owner);
        const what = `${item.name} unwrapped for ${JSON.stringify(victim)} via ${via}${newTenantId === undefined ? '' : ` to ${JSON.stringify(newTenantId)}`}`;
        const answer = await unwrapVia(app, via, victim, item.edek, { newTenantId, decoys });
        assert.ok(!('dek' in answer), `${what}: got a DEK (${answer.bodies.slice(0, 400)})`);
        // The target of a rekey is looked up first; then the victim; an EDEK it does not own is 203.
        const target = via === 'compat-rekey' ? (newTenantId ?? victim) : via === 'v1-rewrap' ? (newTenantId ?? victim) : undefined;
        let expected: number = CONFIGS[victim] === undefined ? Errors.UNKNOWN_TENANT_OR_NO_ACTIVE_KMS_CONFIGURATIONS.code : Errors.INVALID_PROVIDED_EDEK.code;
        if (target !== undefined && CONFIGS[target] === undefined) expected = Errors.UNKNOWN_TENANT_OR_NO_ACTIVE_KMS_CONFIGURATIONS.code;
        else if (target !== undefined && !WITH_PRIMARY.includes(target)) expected = Errors.NO_PRIMARY_KMS_CONFIGURATION.code;
        assert.equal(answer.code, expected, `${what}: ${answer.bodies.slice(0, 400)}`);
        if (!answer.item) assert.ok(answer.status >= 400 && answer.status < 500, `${what}: status ${answer.status}`);
        // Decoys in a batch may be the victim's own: their DEKs may come back; the target's must not.
        if (!answer.item && via !== 'v1-batch' && via !== 'compat-batch') assertNoPoolDek(answer.bodies, what);
        else assert.ok(!answer.bodies.includes(item.dek) || pool.some((p) => p.owner === victim && p.dek === item.dek), `${what}: the target's DEK appears in the answer`);
      }),
      params('cross-tenant', 500),
    );
  });

  it('an API key scoped to some tenants never gets a DEK of any other tenant, whatever tenantId or newTenantId it names', async () => {
    /** Ids no tenant can have (docs/configuration.md): whether a pattern covers them does not matter, only that nothing is unwrapped. */
    const possibleId = (t: string): boolean => /^[A-Za-z0-9][A-Za-z0-9._:@-]{0,255}$/.test(t);
    const attempt = poolItem().chain((item) =>
      fc.record({
        key: fc.constantFrom(...SCOPED_KEYS),
        item: fc.constant(item),
        tenant: fc.oneof({ weight: 2, arbitrary: fc.constant(item.owner) }, { weight: 3, arbitrary: fc.constantFrom(...ALL_TENANTS) }),
        via: fc.constantFrom(...ALL_VIAS),
        newTenantId: fc.option(fc.constantFrom(...ALL_TENANTS), { nil: undefined }),
      }),
    );
    await fc.assert(
      fc.asyncProperty(attempt, async ({ key, item, tenant, via, newTenantId }) => {
        const rekey = via === 'v1-rewrap' || via === 'compat-rekey';
        const named = rekey ? [tenant, newTenantId ?? tenant] : [tenant];
        const what = `key ${key.name} (${key.tenants.join(', ')}): ${item.name} for ${JSON.stringify(tenant)} via ${via}${newTenantId === undefined ? '' : ` to ${JSON.stringify(newTenantId)}`}`;
        const answer = await unwrapVia(app, via, tenant, item.edek, { newTenantId: rekey ? newTenantId : undefined, authorization: `Bearer ${key.key}` });
        const forbidden = via.startsWith('compat') ? Errors.API_KEY_TENANT_FORBIDDEN_SDK : Errors.API_KEY_TENANT_FORBIDDEN;
        if (named.every(possibleId) && !named.every((t) => inScope(key.tenants, t))) {
          assert.ok('code' in answer && answer.code === forbidden.code && answer.status === forbidden.status, `${what}: not refused as out of scope: ${answer.bodies.slice(0, 300)}`);
        }
        if ('dek' in answer) {
          // Only for a tenant within the key's scope, and only the DEK that tenant may have.
          assert.ok(named.every((t) => inScope(key.tenants, t)), `${what}: a DEK for a tenant outside the key's scope`);
          const expected = expectUnwrap(knownFor(tenant), tenant, Buffer.from(item.edek, 'base64'));
          assert.ok('dek' in expected && expected.dek === answer.dek, `${what}: a DEK the tenant may not have`);
        } else if (!named.every((t) => inScope(key.tenants, t))) {
          assertNoPoolDek(answer.bodies, what);
        }
      }),
      params('scoped api keys', 300),
    );
  });

  it('the owner gets exactly its DEK by every route; a rekey or rewrap moves the binding to its target only', async () => {
    const attempt = fc.record({
      item: poolItem().filter((p) => p.unwrapsForOwner),
      via: fc.constantFrom(...ALL_VIAS),
      newTenantId: fc.option(fc.constantFrom(...WITH_PRIMARY), { nil: undefined }),
      probe: fc.constantFrom(...ALL_TENANTS),
    });
    await fc.assert(
      fc.asyncProperty(attempt, async ({ item, via, newTenantId, probe }) => {
        let moved: { edek: string; target: string } | undefined;
        const answer = await unwrapVia(app, via, item.owner, item.edek, { newTenantId, moved: (edek, target) => (moved = { edek, target }) });
        if ((via === 'v1-rewrap' || via === 'compat-rekey') && !WITH_PRIMARY.includes(newTenantId ?? item.owner)) {
          // Nothing can be wrapped for a tenant without a primary config: 409, and no DEK.
          assert.ok('code' in answer && answer.code === Errors.NO_PRIMARY_KMS_CONFIGURATION.code, `${item.name} via ${via}: ${answer.bodies.slice(0, 300)}`);
          return;
        }
        assert.ok('dek' in answer, `${item.name} via ${via}: refused for its owner: ${answer.bodies.slice(0, 400)}`);
        assert.equal(answer.dek, item.dek, `${item.name} via ${via}: ANOTHER DEK for its owner`);
        assert.ok(isDek(answer.dek));
        if (!moved) return;
        // The new EDEK is the target's alone: any other tenant (the former owner included) is refused, without a DEK.
        if (probe === moved.target) return;
        const other = await unwrapVia(app, 'v1-unwrap', probe, moved.edek);
        assert.ok(!('dek' in other), `the EDEK moved to ${moved.target} unwraps for ${JSON.stringify(probe)}`);
        assertNoPoolDek(other.bodies, `moved EDEK for ${probe}`);
      }),
      params('owner and rekey', 150),
    );
  });

  it('EDEKs of several tenants spliced into one: each owner gets its own DEK, everyone else a 4xx', async () => {
    const splice = fc
      .uniqueArray(poolItem().filter((p) => p.unwrapsForOwner), { minLength: 2, maxLength: 4, selector: (p) => p.owner })
      .chain((items) => fc.tuple(fc.shuffledSubarray(items, { minLength: items.length, maxLength: items.length }), fc.constantFrom(...ALL_TENANTS), fc.constantFrom(...UNWRAP_VIAS)));
    await fc.assert(
      fc.asyncProperty(splice, async ([items, tenant, via]) => {
        const edek = Buffer.concat(items.map((p) => Buffer.from(p.edek, 'base64'))).toString('base64');
        const owner = items.find((p) => p.owner === tenant);
        const answer = await unwrapVia(app, via, tenant, edek);
        const what = `${items.map((p) => p.name).join(' + ')} for ${JSON.stringify(tenant)} via ${via}`;
        if (owner) {
          assert.ok('dek' in answer, `${what}: refused: ${answer.bodies.slice(0, 400)}`);
          assert.equal(answer.dek, owner.dek, `${what}: a DEK other than the tenant's own`);
        } else {
          assert.ok(!('dek' in answer), `${what}: got a DEK`);
          assert.ok([Errors.INVALID_PROVIDED_EDEK.code, Errors.UNKNOWN_TENANT_OR_NO_ACTIVE_KMS_CONFIGURATIONS.code].includes(answer.code), `${what}: code ${answer.code}`);
        }
      }),
      params('splice', 200),
    );
  });

  const byteMutation = (): fc.Arbitrary<ByteMutation> => {
    const at = fc.noBias(fc.integer({ min: 0, max: 100_000 }));
    // Valid unknown fields (7 varint, 8 bytes, 9 fixed32, 10 fixed64) and an empty entry: what a harmless extension looks like.
    const harmless = fc.constantFrom('3800', '3801', '42020000', '4d00000000', '510000000000000000', '0a00', '120101');
    return fc.oneof(
      { weight: 4, arbitrary: fc.record({ k: fc.constant('flip' as const), at, bit: fc.integer({ min: 0, max: 7 }) }) },
      { weight: 2, arbitrary: fc.record({ k: fc.constant('set' as const), at, value: fc.oneof(fc.constantFrom(0, 1, 0x7f, 0x80, 0xff, 0x0a, 0x10, 0x18, 0x32), fc.integer({ min: 0, max: 255 })) }) },
      { weight: 2, arbitrary: fc.record({ k: fc.constant('truncate' as const), at }) },
      { weight: 2, arbitrary: fc.record({ k: fc.constant('extend' as const), bytes: fc.oneof(fc.uint8Array({ minLength: 1, maxLength: 8 }), harmless.map((h) => Buffer.from(h, 'hex'))) }) },
      { weight: 1, arbitrary: fc.record({ k: fc.constant('insert' as const), at, bytes: fc.oneof(fc.uint8Array({ minLength: 1, maxLength: 4 }), harmless.map((h) => Buffer.from(h, 'hex'))) }) },
      { weight: 1, arbitrary: fc.record({ k: fc.constant('delete' as const), at, length: fc.integer({ min: 1, max: 4 }) }) },
      { weight: 1, arbitrary: fc.record({ k: fc.constant('duplicate' as const), at, length: fc.integer({ min: 1, max: 32 }) }) },
      { weight: 1, arbitrary: fc.record({ k: fc.constant('splice' as const), other: poolItem().map((p) => p.edek), at }) },
      { weight: 8, arbitrary: fc.record({ k: fc.constant('field' as const), entry: fc.nat(3), edit: fieldEdit() }) },
    );
  };

  const fieldEdit = (): fc.Arbitrary<FieldEdit> => {
    const unknownField = fc.constantFrom('3800', '38ff01', '42020000', '4d00000000', '510000000000000000', '7a00', 'f80700', '8201020a00');
    const configIds = Object.values(CONFIGS).flatMap((c) => Object.keys(c).map(Number));
    return fc.oneof(
      fc.record({ k: fc.constant('unknown' as const), at: fc.nat(), bytes: unknownField.map((h) => Buffer.from(h, 'hex')) }),
      fc.record({ k: fc.constant('repeat' as const), which: fc.nat() }),
      // Explicit defaults: leasedKeyId 0, empty IV, empty ELEK, empty tenant id, kmsConfigId 0.
      fc.record({ k: fc.constant('default' as const), at: fc.nat(), bytes: fc.constantFrom('1800', '2200', '2a00', '3200', '1000').map((h) => Buffer.from(h, 'hex')) }),
      fc.record({ k: fc.constant('pad-varint' as const), which: fc.nat(), pad: fc.integer({ min: 1, max: 5 }) }),
      fc.record({ k: fc.constant('reorder' as const), seed: fc.nat() }),
      fc.record({ k: fc.constant('elek-unknown' as const), bytes: unknownField.map((h) => Buffer.from(h, 'hex')) }),
      fc.record({ k: fc.constant('junk-lease-fields' as const), iv: fc.uint8Array({ maxLength: 12 }), elek: fc.uint8Array({ maxLength: 16 }) }),
      fc.record({ k: fc.constant('tenant' as const), to: fc.constantFrom(...ALL_TENANTS) }),
      fc.constantFrom(...Object.entries(CONFIGS).flatMap(([tenant, c]) => Object.keys(c).map((config) => ({ k: 'relabel' as const, tenant, config: Number(config) })))),
      fc.record({ k: fc.constant('config' as const), to: fc.oneof(fc.constantFrom(...configIds), fc.integer({ min: 0, max: 100 })) }),
      fc.record({ k: fc.constant('lease-id' as const), to: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 2 ** 31 - 1 })) }),
    );
  };

  function mutate(input: Buffer, m: ByteMutation): Buffer {
    const bytes = Buffer.from(input);
    const at = 'at' in m ? m.at % (bytes.length + 1) : 0;
    switch (m.k) {
      case 'extend':
        return Buffer.concat([bytes, m.bytes]);
      case 'field':
        return editEntry(bytes, m.entry, m.edit);
      case 'splice': {
        // Another EDEK's entries before or after these (at a message boundary), or its bytes anywhere.
        const other = Buffer.from(m.other, 'base64');
        if (m.at % 3 === 0) return Buffer.concat([other, bytes]);
        if (m.at % 3 === 1) return Buffer.concat([bytes, other]);
        return Buffer.concat([bytes.subarray(0, at), other, bytes.subarray(at)]);
      }
      default:
        return mutateBytes(bytes, m);
    }
  }

  /** Spellings of base64 other than the canonical one: each must be refused (203), whatever it decodes to. */
  const textMutation = fc.constantFrom('space', 'newline', 'urlsafe', 'unpadded', 'extra-padding', 'pad-bits');
  function respell(edek: string, kind: string, at: number): string {
    const i = at % (edek.length + 1);
    switch (kind) {
      case 'space':
        return `${edek.slice(0, i)} ${edek.slice(i)}`;
      case 'newline':
        return `${edek.slice(0, i)}\n${edek.slice(i)}`;
      case 'urlsafe':
        return edek.replace(/\+/g, '-').replace(/\//g, '_');
      case 'unpadded':
        return edek.replace(/=+$/, '');
      case 'extra-padding':
        return `${edek}=`;
      default: {
        const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
        const pads = edek.length - edek.replace(/=+$/, '').length;
        if (pads === 0) return edek;
        const last = edek.length - pads - 1;
        return edek.slice(0, last) + ALPHABET[ALPHABET.indexOf(edek[last]!) | 1]! + edek.slice(last + 1);
      }
    }
  }

  it('mutated EDEKs: the DEK of an entry that still authenticates for the tenant, or a 4xx — never a 5xx, never another DEK', async () => {
    let harmless = 0;
    let refused = 0;
    const attempt = fc.record({
      item: poolItem(),
      mutations: fc.oneof(
        fc.array(byteMutation(), { minLength: 1, maxLength: 3 }),
        // Edits at the protobuf level only: about half are harmless, the others relabel tenant, config or lease.
        fc.array(fc.record({ k: fc.constant('field' as const), entry: fc.nat(3), edit: fieldEdit() }), { minLength: 1, maxLength: 2 }),
      ),
      text: fc.oneof({ weight: 7, arbitrary: fc.constant(null) }, { weight: 1, arbitrary: fc.tuple(textMutation, fc.nat()) }),
      // Who asks: the owner; any tenant; or the tenant an entry was relabelled to (the attacker's move).
      asker: fc.oneof(
        { weight: 3, arbitrary: fc.constant({ k: 'owner' as const }) },
        { weight: 1, arbitrary: fc.record({ k: fc.constant('any' as const), tenant: fc.constantFrom(...ALL_TENANTS) }) },
        { weight: 2, arbitrary: fc.constant({ k: 'relabelled' as const }) },
      ),
      via: fc.constantFrom(...UNWRAP_VIAS),
    });
    await fc.assert(
      fc.asyncProperty(attempt, async ({ item, mutations, text, asker, via }) => {
        const relabelled = (mutations as ByteMutation[]).flatMap((m) => (m.k !== 'field' ? [] : m.edit.k === 'relabel' ? [m.edit.tenant] : m.edit.k === 'tenant' ? [m.edit.to] : []));
        const who = asker.k === 'any' ? asker.tenant : asker.k === 'relabelled' && relabelled.length > 0 ? relabelled[relabelled.length - 1]! : item.owner;
        let bytes: Buffer = Buffer.from(item.edek, 'base64');
        for (const m of mutations) bytes = mutate(bytes, m);
        const canonical = bytes.toString('base64');
        const sent = text === null ? canonical : respell(canonical, text[0], text[1]);
        // Base64 that is not canonical is refused whatever it decodes to; empty is refused by the schema (102).
        const expected = sent === '' ? { codes: [Errors.INVALID_REQUEST_BODY.code] } : expectUnwrap(knownFor(who), who, sent === canonical ? bytes : undefined);
        const what = `${item.name}, mutated ${JSON.stringify(mutations)}${text === null ? '' : ` and respelled ${text[0]}`}, for ${JSON.stringify(who)} via ${via}: sent ${JSON.stringify(sent)}`;
        const answer = await unwrapVia(app, via, who, sent);
        if ('dek' in expected) {
          harmless++;
          assert.ok('dek' in answer, `${what}: refused (${answer.bodies.slice(0, 300)}), but an entry in it still authenticates for the tenant`);
          assert.equal(answer.dek, expected.dek, `${what}: A DIFFERENT DEK`);
        } else {
          refused++;
          assert.ok(!('dek' in answer), `${what}: unwrapped to ${answer.bodies.slice(0, 300)} although no entry should authenticate (a DEK it should not give, or an oracle gap)`);
          const codes = CONFIGS[who] === undefined ? [Errors.UNKNOWN_TENANT_OR_NO_ACTIVE_KMS_CONFIGURATIONS.code] : expected.codes;
          assert.ok(codes.includes(answer.code) || (sent === '' && answer.code === Errors.INVALID_PROVIDED_EDEK.code), `${what}: code ${answer.code}, expected one of ${codes.join(', ')}`);
        }
      }),
      params('mutations', 1_000),
    );
    // The property says something only if both outcomes are common.
    assert.ok(harmless > 100 && refused > 300, `harmless ${harmless}, refused ${refused}`);
  });

  it('batch unwraps of mixed, mutated EDEKs: each item exactly as a single unwrap of it would be answered', async () => {
    const itemArb = fc.record({ item: poolItem(), mutation: fc.oneof(fc.constant(null), byteMutation()) });
    const attempt = fc.record({
      items: fc.dictionary(fc.string({ unit: 'grapheme-ascii', minLength: 1, maxLength: 6 }), itemArb, { minKeys: 1, maxKeys: 8 }),
      tenant: fc.constantFrom(...CONFIGURED),
      compat: fc.boolean(),
    });
    await fc.assert(
      fc.asyncProperty(attempt, async ({ items, tenant, compat }) => {
        const edeks: Record<string, string> = {};
        const expected: Record<string, Expected> = {};
        for (const [id, { item, mutation }] of Object.entries(items)) {
          const bytes = mutation === null ? Buffer.from(item.edek, 'base64') : mutate(Buffer.from(item.edek, 'base64'), mutation);
          edeks[id] = bytes.length === 0 ? 'AA==' : bytes.toString('base64');
          expected[id] = expectUnwrap(knownFor(tenant), tenant, bytes.length === 0 ? Buffer.from('AA==', 'base64') : bytes);
        }
        const url = compat ? '/api/1/document/batch-unwrap' : '/v1/keys/batch/unwrap';
        const body = compat ? { tenantId: tenant, iclFields: ICL, edeks } : { tenantId: tenant, edeks, metadata: META };
        const timed = await postJson(app, url, body);
        const what = `${url} for ${tenant}: ${JSON.stringify(body).slice(0, 600)}`;
        checkAnswer(timed, what);
        assert.equal(timed.res.statusCode, 200, what);
        const answer = timed.res.json<{ keys: Record<string, { dek: string }>; failures: Record<string, { code: number }> }>();
        for (const [id, want] of Object.entries(expected)) {
          if ('dek' in want) assert.equal(answer.keys[id]?.dek, want.dek, `${what}: item ${JSON.stringify(id)} → ${JSON.stringify(answer.keys[id] ?? answer.failures[id])}, expected its DEK`);
          else {
            assert.ok(!(id in answer.keys), `${what}: item ${JSON.stringify(id)} unwrapped, expected a refusal`);
            assert.ok(want.codes.includes(answer.failures[id]?.code ?? -1), `${what}: item ${JSON.stringify(id)} → ${JSON.stringify(answer.failures[id])}`);
          }
        }
        assert.deepEqual(new Set([...Object.keys(answer.keys), ...Object.keys(answer.failures)]), new Set(Object.keys(edeks)), what);
      }),
      params('batch', 200),
    );
  });
});
