/**
 * Property-based fuzzing (fast-check) of every route of both faces with hostile bodies, through a real in-process
 * Keyward (test/helpers/app.ts). The routes come from the route tables (V1_ROUTES, COMPAT_ROUTES) and valid bodies
 * from each route's own body schema, so a new route is fuzzed without touching this file (if the baseline test says
 * none of its generated bodies got past the handler, give its semantic fields a hint in `hints`).
 *
 * test/http/bad-input.test.ts checks a fixed list of bad inputs; this file generates them:
 * (a) arbitrary JSON values, and objects over the route's own field names with arbitrary JSON values;
 * (b) valid bodies mutated: fields dropped, keys duplicated in the JSON text, values retyped, huge strings, unicode
 *     (lone surrogates, NUL, BOM, RTL), null, numbers as strings and out-of-range numbers (1e400, -0, 2^53+1),
 *     deep nesting, prototype keys (__proto__, constructor, toString…), keys with line breaks, base64 edge cases,
 *     batches resized around the batch limit;
 * (c) raw byte payloads, broken encodings (UTF-16, gzip, BOM, truncation), odd content types, lengths and methods;
 * (d) for every map (object whose keys are data) and string array the schema has, at any depth: hostile keys
 *     (line breaks, prototype names) and values (wrong types, deep nesting, huge strings), and hostile items.
 * Besides: URL variants of every route, requests without a valid API key, and the largest bodies the schemas allow
 * at the default limits.
 *
 * Every answer must: never be a 5xx (with the local KMS no documented 5xx can happen); come within
 * LATENCY_BUDGET_MS; be `{code, message}` with a catalogued (code, status) the route documents when it is not a
 * 2xx; match the route's response schema when it is; and, for batches and derivations, account for every requested
 * id (each in `keys` or `failures`). The service must keep serving: audit queues drain after every request, a
 * generate/unwrap round trip works for every tenant every 50 runs, metrics stay finite.
 *
 * What the fuzz found is pinned, minimal, in the last describe block.
 */
import assert from 'node:assert/strict';
import { gzipSync } from 'node:zlib';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import type { RouteSpec } from '../../src/http/v1.js';
import { Errors } from '../../src/errors.js';
import { edekEntry, encodeEdeks } from '../../src/envelope/edek.js';
import { API_KEY, API_KEY_2, META, startTestApp, type TestApp } from '../helpers/app.js';
import {
  checkAnswer,
  describeRequest,
  isDek,
  LATENCY_BUDGET_MS,
  metricSamples,
  postJson,
  ROUTES,
  seedFor,
  send,
  type Method,
  type RawRequest,
  type Timed,
} from './support.js';

/** Small limits keep limit-sized batches and over-limit bodies cheap; the default limits have their own tests. */
const BATCH_LIMIT = 24;
const BODY_LIMIT = 256 * 1024;

const TENANTS = `
version: 1
tenants:
  tenant-a:
    kmsConfigs:
      - { id: 11, status: primary, provider: local, local: { keyFile: keys/a.key } }
      - { id: 12, status: active, provider: local, local: { keyFile: keys/b.key } }
      - { id: 13, status: disabled, provider: local, local: { keyFile: keys/a.key } }
    derivationSecrets:
      - { id: 5, state: current, kmsConfigId: 11, wrapped: { file: secrets/a5.b64, createIfMissing: true } }
      - { id: 6, state: in-rotation, kmsConfigId: 12, wrapped: { file: secrets/a6.b64, createIfMissing: true } }
  tenant-b:
    kmsConfigs:
      - { id: 21, status: primary, provider: local, local: { keyFile: keys/a.key } }
  tenant-leased:
    kmsConfigs:
      - { id: 31, status: primary, provider: local, local: { keyFile: keys/a.key }, leasing: { enabled: true } }
    derivationSecrets:
      - { id: 1, state: current, kmsConfigId: 31, wrapped: { file: secrets/l1.b64, createIfMissing: true } }
  tenant-required:
    audit: { sinks: [stdout], policy: required }
    kmsConfigs:
      - { id: 41, status: primary, provider: local, local: { keyFile: keys/b.key } }
  tenant-noprimary:
    kmsConfigs:
      - { id: 51, status: active, provider: local, local: { keyFile: keys/a.key } }
  tenant-empty:
    kmsConfigs: []
`;

const SERVING_TENANTS = ['tenant-a', 'tenant-b', 'tenant-leased', 'tenant-required'];
const OTHER_TENANTS = ['tenant-noprimary', 'tenant-empty', 'no-such-tenant', 'TENANT-A', 'tenant-a ', 'tenant-\u0430'];

const params = <T,>(name: string, numRuns: number): fc.Parameters<T> => ({ seed: seedFor(`http-bodies:${name}`), numRuns });

// ---------------------------------------------------------------------------------------------------------------
// Valid bodies from the route's schema

interface Schema {
  readonly type?: string;
  readonly properties?: Readonly<Record<string, Schema>>;
  readonly required?: readonly string[];
  readonly patternProperties?: Readonly<Record<string, Schema>>;
  readonly propertyNames?: Schema;
  readonly additionalProperties?: boolean | Schema;
  readonly anyOf?: readonly Schema[];
  readonly items?: Schema;
  readonly minLength?: number;
  readonly maxLength?: number;
  readonly minimum?: number;
  readonly maximum?: number;
  readonly maxItems?: number;
  readonly maxProperties?: number;
}

interface Pools {
  /** Valid EDEKs of several tenants (base64). */
  readonly edeks: readonly string[];
}

const id = fc.string({ minLength: 1, maxLength: 12 });
const tenantId = fc.oneof({ weight: 6, arbitrary: fc.constantFrom(...SERVING_TENANTS) }, { weight: 1, arbitrary: fc.constantFrom(...OTHER_TENANTS) });

/** Semantic fields, by property name: what a schema alone cannot say (an EDEK, a 32-byte DEK, an event name…). */
function hints(pools: Pools): Record<string, fc.Arbitrary<unknown>> {
  const edek = fc.constantFrom(...pools.edeks);
  return {
    tenantId,
    newTenantId: tenantId,
    edek,
    encryptedDocumentKey: edek,
    edeks: fc.dictionary(id, edek, { maxKeys: 4 }),
    dek: fc.uint8Array({ minLength: 32, maxLength: 32 }).map((b) => Buffer.from(b).toString('base64')),
    ids: fc.uniqueArray(id, { maxLength: 4 }),
    documentIds: fc.uniqueArray(id, { maxLength: 4 }),
    event: fc.oneof(fc.constantFrom('USER_LOGIN', 'ADMIN_ADD_USER', 'DATA_EXPORT', 'PERIODIC_ENFORCE_RETENTION_POLICY', 'CUSTOM_X', 'CREATE_BACKUP'), fc.constant(null)),
    derivationType: fc.constantFrom('sha256', 'sha512'),
    secretType: fc.oneof({ weight: 5, arbitrary: fc.constant('deterministic') }, { weight: 1, arbitrary: fc.constantFrom('search', 'vector') }),
    paths: fc.dictionary(fc.string({ maxLength: 8 }), fc.array(fc.string({ maxLength: 8 }), { maxLength: 3 }), { maxKeys: 3 }),
    timestampMillis: fc.oneof(fc.integer({ min: 0, max: 4_102_444_800_000 }), fc.constant(null)),
  };
}

/** A value the schema accepts, with hints for semantic fields; small, so that mutations decide what is big. */
function fromSchema(schema: Schema, name: string, hinted: Record<string, fc.Arbitrary<unknown>>): fc.Arbitrary<unknown> {
  const hint = hinted[name];
  if (hint) return hint;
  if (schema.anyOf) return fc.oneof(...schema.anyOf.map((s) => fromSchema(s, name, hinted)));
  switch (schema.type) {
    case 'object': {
      if (schema.properties) {
        const model: Record<string, fc.Arbitrary<unknown>> = {};
        for (const [key, sub] of Object.entries(schema.properties)) model[key] = fromSchema(sub, key, hinted);
        return fc.record(model, { requiredKeys: [...(schema.required ?? [])] });
      }
      // A map: TypeBox's Record (patternProperties) or a map by propertyNames/additionalProperties.
      const value = mapValue(schema);
      const keyMin = schema.propertyNames?.minLength ?? 0;
      const key = fc.string({ minLength: keyMin, maxLength: Math.max(keyMin, Math.min(8, schema.propertyNames?.maxLength ?? 8)) });
      return fc.dictionary(key, value ? fromSchema(value, '', hinted) : fc.jsonValue({ maxDepth: 1 }), { maxKeys: Math.min(3, schema.maxProperties ?? 3) });
    }
    case 'string':
      return fc.string({ minLength: schema.minLength ?? 0, maxLength: Math.min(16, schema.maxLength ?? 16) });
    case 'integer':
    case 'number': {
      // Small values, and the extremes the schema lets through (JSON numbers are doubles).
      const min = schema.minimum ?? -Number.MAX_VALUE;
      const max = schema.maximum ?? Number.MAX_VALUE;
      const extremes = [min, max, Number.MAX_SAFE_INTEGER, 2 ** 53, 2 ** 64, 1e300, 1e308, Number.MAX_VALUE, -(2 ** 53), -Number.MAX_VALUE].filter((n) => n >= min && n <= max);
      const small = fc.integer({ min: Math.max(min, -1000), max: Math.min(max, 1000) });
      return fc.oneof(
        { weight: 4, arbitrary: schema.type === 'integer' ? small : fc.oneof(small, fc.double({ noNaN: true, noDefaultInfinity: true, min, max })) },
        { weight: 1, arbitrary: fc.constantFrom(...extremes) },
      );
    }
    case 'boolean':
      return fc.boolean();
    case 'null':
      return fc.constant(null);
    case 'array':
      return fc.array(schema.items ? fromSchema(schema.items, '', hinted) : fc.jsonValue({ maxDepth: 1 }), { maxLength: Math.min(3, schema.maxItems ?? 3) });
    default:
      return fc.jsonValue({ maxDepth: 2 });
  }
}

/** The value schema of a map (an object whose keys are data), if `schema` is one. */
function mapValue(schema: Schema): Schema | undefined {
  if (schema.type !== 'object' || schema.properties) return undefined;
  const [pattern] = Object.values(schema.patternProperties ?? {});
  if (pattern) return pattern;
  return typeof schema.additionalProperties === 'object' ? schema.additionalProperties : undefined;
}

/**
 * Whether `value` is valid under `schema`: the subset of JSON Schema the route tables use (TypeBox's own Value.Check
 * does not know the Unsafe kinds some of them are made of).
 */
function conforms(schema: Schema, value: unknown): boolean {
  if (schema.anyOf) return schema.anyOf.some((s) => conforms(s, value));
  switch (schema.type) {
    case 'null':
      return value === null;
    case 'boolean':
      return typeof value === 'boolean';
    case 'string':
      return typeof value === 'string' && value.length >= (schema.minLength ?? 0) && value.length <= (schema.maxLength ?? Infinity);
    case 'integer':
    case 'number':
      return typeof value === 'number' && (schema.type === 'number' || Number.isInteger(value)) && value >= (schema.minimum ?? -Infinity) && value <= (schema.maximum ?? Infinity);
    case 'array':
      return Array.isArray(value) && value.length <= (schema.maxItems ?? Infinity) && value.every((v) => conforms(schema.items ?? {}, v));
    case 'object': {
      if (typeof value !== 'object' || value === null || Array.isArray(value)) return false;
      const entries = Object.entries(value);
      if (entries.length > (schema.maxProperties ?? Infinity)) return false;
      if (!(schema.required ?? []).every((k) => Object.prototype.hasOwnProperty.call(value, k))) return false;
      return entries.every(([k, v]) => {
        if (schema.propertyNames && !conforms(schema.propertyNames, k)) return false;
        const property = schema.properties?.[k];
        if (property) return conforms(property, v);
        const patterns = Object.entries(schema.patternProperties ?? {}).filter(([p]) => new RegExp(p, 'u').test(k));
        if (patterns.length > 0) return patterns.every(([, s]) => conforms(s, v));
        if (schema.additionalProperties === false) return false;
        return typeof schema.additionalProperties === 'object' ? conforms(schema.additionalProperties, v) : true;
      });
    }
    default:
      return true;
  }
}

/** Every property name a body schema mentions, at any depth. */
function fieldNames(schema: Schema): string[] {
  const names = new Set<string>();
  const visit = (s: Schema): void => {
    for (const [key, sub] of Object.entries(s.properties ?? {})) {
      names.add(key);
      visit(sub);
    }
    const additional = typeof s.additionalProperties === 'object' ? [s.additionalProperties] : [];
    for (const sub of [...(s.anyOf ?? []), ...Object.values(s.patternProperties ?? {}), ...additional, ...(s.items ? [s.items] : [])]) visit(sub);
  };
  visit(schema);
  return [...names];
}

const MAP_VALUE = '\u0000map value\u0000';

/** Paths to the maps (objects whose keys are data) and to the string arrays of a body schema, at any depth. */
function collections(schema: Schema): { records: string[][]; stringArrays: string[][] } {
  const records: string[][] = [];
  const stringArrays: string[][] = [];
  /** MAP_VALUE in a path: the value under some key of the map (an existing one, or a new one). */
  const visit = (s: Schema, path: string[]): void => {
    const value = mapValue(s);
    if (value) {
      records.push(path);
      visit(value, [...path, MAP_VALUE]);
    }
    if (s.type === 'array' && s.items?.type === 'string') stringArrays.push(path);
    for (const [key, sub] of Object.entries(s.properties ?? {})) visit(sub, [...path, key]);
    for (const sub of s.anyOf ?? []) visit(sub, path);
  };
  visit(schema, []);
  return { records, stringArrays };
}

// ---------------------------------------------------------------------------------------------------------------
// A JSON tree that can say what JSON.stringify cannot: duplicate keys, 1e400, -0, raw deep nesting

type Ast = { t: 'raw'; text: string } | { t: 'arr'; items: Ast[] } | { t: 'obj'; entries: Array<[string, Ast]> };

function toAst(value: unknown): Ast {
  if (Array.isArray(value)) return { t: 'arr', items: value.map(toAst) };
  if (value !== null && typeof value === 'object') return { t: 'obj', entries: Object.entries(value).map(([k, v]) => [k, toAst(v)]) };
  return { t: 'raw', text: JSON.stringify(value) ?? 'null' };
}

function render(ast: Ast): string {
  if (ast.t === 'raw') return ast.text;
  if (ast.t === 'arr') return `[${ast.items.map(render).join(',')}]`;
  return `{${ast.entries.map(([k, v]) => `${JSON.stringify(k)}:${render(v)}`).join(',')}}`;
}

interface Place {
  readonly node: Ast;
  readonly set: (a: Ast) => void;
  /** Absent for the root. */
  readonly drop?: () => void;
  /** The object holding this node as a value, with its entry. */
  readonly owner?: { readonly object: Extract<Ast, { t: 'obj' }>; readonly entry: [string, Ast] };
}

/** Every node, with how to replace it, drop it, and the object entry it is the value of. */
function places(root: { value: Ast }): Place[] {
  const out: Place[] = [];
  const visit = (place: Place): void => {
    out.push(place);
    const node = place.node;
    if (node.t === 'arr') {
      node.items.forEach((item, i) => visit({ node: item, set: (a) => (node.items[i] = a), drop: () => node.items.splice(node.items.indexOf(item), 1) }));
    } else if (node.t === 'obj') {
      for (const entry of node.entries) {
        visit({ node: entry[1], set: (a) => (entry[1] = a), drop: () => node.entries.splice(node.entries.indexOf(entry), 1), owner: { object: node, entry } });
      }
    }
  };
  visit({ node: root.value, set: (a) => (root.value = a) });
  return out;
}

const PROTO_KEYS = ['__proto__', 'constructor', 'prototype', 'toString', 'hasOwnProperty', 'valueOf', '__defineGetter__', 'isPrototypeOf', 'toJSON'];
/** Keys that `.` in the schemas' `^(.*)$` key pattern does not match. */
const LINE_KEYS = ['\n', 'a\nb', '\r', '\u2028', '\u2029', 'x\r\n'];
const REPLACEMENTS = [
  'null', 'true', 'false', '0', '-1', '1.5', '""', '"x"', '[]', '{}', '[null]', '{"a":1}', '[""]', '{"":""}',
  '1e400', '-1e400', '-0', '1e-400', '9007199254740993', '1.7976931348623157e308', '123456789012345678901234567890',
  '"NaN"', '"Infinity"', '"-1"', '"1e400"', '"0x10"', '"\\u0000"', '"\\ud800"', '"\\udfff\\ud800"', '[[[[[]]]]]',
];
const UNICODE = ['\u0000', '\ufeff', '\u202e', 'e\u0301', '\u00e9', '\uffff', '\u{10ffff}', '🔑', 'ｔｅｎａｎｔ', '\u0085', '\t\n\r', 'tenant-\u0430'];

function base64Edges(pools: Pools): fc.Arbitrary<string> {
  const real = fc.constantFrom(...pools.edeks);
  return fc.oneof(
    fc.constantFrom(
      '', '=', '==', '====', 'A', 'AA', 'AAA', 'AAAA', 'AA==', 'AAA=', 'AB==', 'AAB=', 'CgA=', 'EAE=', 'Cg==', ' CgA=', 'CgA= ', 'Cg A=',
      'CgA=\n', 'Cg-_', '\u0000', '////', '++++', 'A'.repeat(43) + '=', 'A'.repeat(44), 'A'.repeat(87_384), 'A'.repeat(87_388),
    ),
    fc.tuple(real, fc.nat(), fc.constantFrom(' ', '\n', '\r\n', '\t')).map(([e, at, ws]) => e.slice(0, at % e.length) + ws + e.slice(at % e.length)),
    real.map((e) => e.replace(/\+/g, '-').replace(/\//g, '_')),
    real.map((e) => e.replace(/=+$/, '')),
    real.map((e) => e.slice(0, -4)),
    fc.tuple(real, real).map(([a, b]) => a + b),
    fc.base64String({ maxLength: 64 }),
  );
}

type Mutation =
  | { op: 'drop'; at: number }
  | { op: 'rename-key'; at: number; to: { lineTerminator: string; front: boolean } | { name: string } }
  | { op: 'replace'; at: number; text: string }
  | { op: 'duplicate-key'; at: number; text: string; before: boolean }
  | { op: 'add-key'; at: number; key: string; text: string }
  | { op: 'push'; at: number; text: string }
  | { op: 'resize'; at: number; size: number; unique: boolean }
  | { op: 'wrap'; at: number; inArray: boolean }
  | { op: 'empty'; at: number };

function mutationArb(pools: Pools, names: readonly string[]): fc.Arbitrary<Mutation> {
  // Which node (among those the mutation applies to): uniform, not biased to the first ones (the root).
  const at = fc.noBias(fc.integer({ min: 0, max: 1_000_000 }));
  const deep = fc
    .record({ depth: fc.constantFrom(64, 1_000, 20_000, 100_000), array: fc.boolean() })
    .map(({ depth, array }) => (array ? '['.repeat(depth) + ']'.repeat(depth) : '{"a":'.repeat(depth) + '1' + '}'.repeat(depth)));
  const huge = fc
    .record({ n: fc.constantFrom(257, 1_025, 4_097, 87_384, 87_385, 300_000), ch: fc.constantFrom('A', 'é', '🔑', '\u0000', ' ') })
    .map(({ n, ch }) => JSON.stringify(ch.repeat(n)));
  const text = fc.oneof(
    { weight: 4, arbitrary: fc.constantFrom(...REPLACEMENTS) },
    { weight: 2, arbitrary: fc.jsonValue({ maxDepth: 2 }).map((v) => JSON.stringify(v)) },
    { weight: 2, arbitrary: fc.string({ unit: 'binary', maxLength: 24 }).map((s) => JSON.stringify(s)) },
    { weight: 1, arbitrary: fc.constantFrom(...UNICODE).map((s) => JSON.stringify(s)) },
    { weight: 1, arbitrary: huge },
    { weight: 1, arbitrary: deep },
    { weight: 3, arbitrary: base64Edges(pools).map((s) => JSON.stringify(s)) },
    { weight: 1, arbitrary: fc.constantFrom(...PROTO_KEYS, ...LINE_KEYS).map((s) => JSON.stringify(s)) },
    { weight: 1, arbitrary: fc.constantFrom(...SERVING_TENANTS, ...OTHER_TENANTS).map((s) => JSON.stringify(s)) },
  );
  const key = fc.oneof(
    { weight: 3, arbitrary: fc.constantFrom(...PROTO_KEYS) },
    { weight: 3, arbitrary: fc.constantFrom(...LINE_KEYS) },
    { weight: 2, arbitrary: fc.string({ unit: 'binary', maxLength: 12 }) },
    { weight: 1, arbitrary: fc.constantFrom('', ' ', 'tenantId', 'metadata', 'iclFields', 'extra', 'x'.repeat(300)) },
  );
  // A new entry's value: anything above, or an object naming one of the route's own fields with such a value.
  const entryValue = fc.oneof(text, fc.tuple(fc.constantFrom(...names), text).map(([name, value]) => `{${JSON.stringify(name)}:${value}}`));
  // An existing key made hostile: a line terminator added to it, or a prototype name instead.
  const renamed = fc.oneof(
    fc.record({ lineTerminator: fc.constantFrom('\n', '\r', '\u2028', '\u2029'), front: fc.boolean() }),
    fc.record({ name: fc.constantFrom(...PROTO_KEYS) }),
  );
  return fc.oneof(
    fc.record({ op: fc.constant('drop' as const), at }),
    { weight: 4, arbitrary: fc.record({ op: fc.constant('replace' as const), at, text }) },
    fc.record({ op: fc.constant('duplicate-key' as const), at, text, before: fc.boolean() }),
    { weight: 4, arbitrary: fc.record({ op: fc.constant('add-key' as const), at, key, text: entryValue }) },
    fc.record({ op: fc.constant('rename-key' as const), at, to: renamed }),
    fc.record({ op: fc.constant('push' as const), at, text: fc.oneof(text, fc.constantFrom(...PROTO_KEYS, ...LINE_KEYS, '', ' ').map((s) => JSON.stringify(s))) }),
    fc.record({ op: fc.constant('resize' as const), at, size: fc.constantFrom(0, 1, BATCH_LIMIT - 1, BATCH_LIMIT, BATCH_LIMIT + 1, 2 * BATCH_LIMIT), unique: fc.boolean() }),
    fc.record({ op: fc.constant('wrap' as const), at, inArray: fc.boolean() }),
    fc.record({ op: fc.constant('empty' as const), at }),
  );
}

/** Applies `m` to a node it can apply to (`at` picks which), or does nothing when there is none. */
function applyMutation(root: { value: Ast }, m: Mutation, pools: Pools): void {
  const all = places(root);
  const isContainer = (p: Place): boolean => p.node.t !== 'raw';
  const fits: Record<Mutation['op'], (p: Place) => boolean> = {
    drop: (p) => p.drop !== undefined,
    'rename-key': (p) => p.owner !== undefined,
    replace: () => true,
    'duplicate-key': (p) => p.owner !== undefined,
    'add-key': (p) => p.node.t === 'obj',
    push: isContainer,
    resize: isContainer,
    wrap: () => true,
    empty: isContainer,
  };
  const candidates = all.filter(fits[m.op]);
  if (candidates.length === 0) return;
  const target = candidates[m.at % candidates.length]!;
  const node = target.node;
  switch (m.op) {
    case 'drop':
      target.drop?.();
      return;
    case 'replace':
      target.set({ t: 'raw', text: m.text });
      return;
    case 'rename-key': {
      const entry = target.owner!.entry;
      entry[0] = 'name' in m.to ? m.to.name : m.to.front ? m.to.lineTerminator + entry[0] : entry[0] + m.to.lineTerminator;
      return;
    }
    case 'duplicate-key': {
      // The same key twice in the JSON text: JSON.parse keeps the last one.
      const { object, entry } = target.owner!;
      object.entries.splice(object.entries.indexOf(entry) + (m.before ? 0 : 1), 0, [entry[0], { t: 'raw', text: m.text }]);
      return;
    }
    case 'add-key':
      if (node.t === 'obj') node.entries.push([m.key, { t: 'raw', text: m.text }]);
      return;
    case 'push':
      if (node.t === 'arr') node.items.push({ t: 'raw', text: m.text });
      else if (node.t === 'obj') node.entries.push([`pushed-${node.entries.length}`, { t: 'raw', text: m.text }]);
      return;
    case 'resize': {
      // A batch at, under or over the limit: copies of what is there (suffixed, so unique, unless asked not to be).
      if (node.t === 'arr') {
        const items = node.items;
        node.items = Array.from({ length: m.size }, (_, i) => {
          const item = items[i % Math.max(1, items.length)] ?? { t: 'raw', text: '"id"' };
          if (m.unique && item.t === 'raw' && item.text.startsWith('"')) return { t: 'raw', text: JSON.stringify(`${JSON.parse(item.text) as string}#${i}`) };
          return item;
        });
      } else if (node.t === 'obj') {
        const entries = node.entries;
        node.entries = Array.from({ length: m.size }, (_, i) => {
          const [k, v] = entries[i % Math.max(1, entries.length)] ?? ['id', { t: 'raw', text: JSON.stringify(pools.edeks[0]) }];
          return [`${k}#${i}`, v];
        });
      }
      return;
    }
    case 'wrap':
      target.set(m.inArray ? { t: 'arr', items: [node] } : { t: 'obj', entries: [['value', node]] });
      return;
    case 'empty':
      target.set(node.t === 'arr' ? { t: 'arr', items: [] } : { t: 'obj', entries: [] });
  }
}

// ---------------------------------------------------------------------------------------------------------------
// What every answer must be

/** Sends, and re-sends up to twice if slow: one slow answer is a GC pause or a busy machine, three are a finding. */
async function sendSteady(app: TestApp, request: RawRequest): Promise<Timed> {
  const first = await send(app, request);
  let ms = first.ms;
  for (let attempt = 0; attempt < 2 && ms >= LATENCY_BUDGET_MS; attempt++) ms = Math.min(ms, (await send(app, request)).ms);
  return { res: first.res, ms };
}

const hasOwn = (o: unknown, k: string): boolean => typeof o === 'object' && o !== null && Object.prototype.hasOwnProperty.call(o, k);

/** A 2xx: the route's response schema, DEKs of 32 bytes, and every requested item accounted for. */
function checkSuccess(route: RouteSpec, requestText: string | undefined, timed: Timed, context: string): void {
  const where = `${context}\n→ ${timed.res.statusCode} ${timed.res.body.slice(0, 400)}`;
  const body: unknown = JSON.parse(timed.res.body);
  assert.ok(conforms(route.response as Schema, body), `2xx answer does not match the route's response schema: ${where}`);
  const deks: unknown[] = [];
  const collect = (v: unknown): void => {
    if (typeof v !== 'object' || v === null) return;
    for (const [k, x] of Object.entries(v)) {
      if (k === 'dek') deks.push(x);
      else collect(x);
    }
  };
  collect(body);
  for (const dek of deks) assert.ok(isDek(dek), `a dek that is not 32 bytes of base64: ${where}`);
  if (requestText === undefined) return;
  let request: Record<string, unknown>;
  try {
    request = JSON.parse(requestText) as Record<string, unknown>;
  } catch {
    return; // a 2xx for text JSON.parse refuses is the content-type or encoding path; nothing to count
  }
  const answer = body as { keys?: unknown; failures?: unknown; derivedKeys?: unknown };
  const accountFor = (ids: readonly string[]): void => {
    for (const i of ids) {
      const places = Number(hasOwn(answer.keys, i)) + Number(hasOwn(answer.failures, i));
      assert.equal(places, 1, `requested id ${JSON.stringify(i)} is in ${places} of keys/failures (must be exactly one): ${where}`);
    }
    const answered = [...Object.keys(answer.keys ?? {}), ...Object.keys(answer.failures ?? {})];
    assert.deepEqual(new Set(answered), new Set(ids), `the answer names ids that were not requested: ${where}`);
  };
  for (const field of ['ids', 'documentIds']) {
    const ids = request[field];
    if (Array.isArray(ids) && 'keys' in answer) accountFor(ids as string[]);
  }
  if (hasOwn(request, 'edeks') && typeof request.edeks === 'object' && request.edeks !== null && 'keys' in answer) accountFor(Object.keys(request.edeks));
  if (hasOwn(request, 'paths') && typeof request.paths === 'object' && request.paths !== null && 'derivedKeys' in answer) {
    for (const [secretPath, derivationPaths] of Object.entries(request.paths as Record<string, unknown>)) {
      assert.ok(hasOwn(answer.derivedKeys, secretPath), `secret path ${JSON.stringify(secretPath)} is missing from derivedKeys: ${where}`);
      const byPath = (answer.derivedKeys as Record<string, unknown>)[secretPath];
      for (const p of derivationPaths as string[]) {
        assert.ok(hasOwn(byPath, p), `derivation path ${JSON.stringify(p)} of ${JSON.stringify(secretPath)} is missing from derivedKeys: ${where}`);
      }
    }
  }
}

async function checkRequest(app: TestApp, route: RouteSpec, request: RawRequest, options: { allowNotFound?: boolean } = {}): Promise<Timed> {
  const timed = await sendSteady(app, request);
  const context = describeRequest(request);
  const documented = options.allowNotFound ? [...route.errors, Errors.ROUTE_NOT_FOUND] : route.errors;
  if (request.method === 'HEAD') {
    assert.ok(timed.res.statusCode < 500 && timed.ms < LATENCY_BUDGET_MS, `HEAD: ${timed.res.statusCode} in ${Math.round(timed.ms)} ms: ${context}`);
    return timed;
  }
  checkAnswer(timed, context, documented);
  if (timed.res.statusCode < 300) checkSuccess(route, typeof request.payload === 'string' ? request.payload : undefined, timed, context);
  await noteAuditDrain(app, context);
  return timed;
}

/** The service still serves: a generate/unwrap round trip per serving tenant, and every audit queue drains. */
async function assertServing(app: TestApp, context: string): Promise<void> {
  for (const tenant of SERVING_TENANTS) {
    const made = await postJson(app, '/v1/keys/generate', { tenantId: tenant, metadata: META });
    assert.equal(made.res.statusCode, 200, `${context}: generate for ${tenant} → ${made.res.statusCode} ${made.res.body}`);
    const { dek, edek } = made.res.json<{ dek: string; edek: string }>();
    const back = await postJson(app, '/api/1/document/unwrap', { tenantId: tenant, iclFields: META, encryptedDocumentKey: edek });
    assert.equal(back.res.statusCode, 200, `${context}: unwrap for ${tenant} → ${back.res.statusCode} ${back.res.body}`);
    assert.equal(back.res.json<{ dek: string }>().dek, dek, `${context}: unwrap for ${tenant} gave another DEK`);
  }
  await assertAuditDrains(app, context);
}

/** The first request after which audit events stopped draining: every later failure names it. */
const wedgedBy = new WeakMap<TestApp, string>();
const queued = (app: TestApp): number => [...app.runtime.audit.depths().values()].reduce((a, b) => a + b, 0);

/**
 * Notes the request after which the audit queues stop draining (within `waitMs`). A stuck sink stays stuck: the
 * property stops sending (see `wedged`) and fails at its end naming that request, rather than shrinking towards
 * whatever input happens to come last.
 */
async function noteAuditDrain(app: TestApp, context: string, waitMs = 200): Promise<void> {
  const until = performance.now() + waitMs;
  while (queued(app) > 0 && performance.now() < until) await new Promise((resolve) => setTimeout(resolve, 1));
  if (queued(app) > 0 && !wedgedBy.has(app)) wedgedBy.set(app, context);
}

const wedged = (app: TestApp): boolean => wedgedBy.has(app);

/** Every audit queue empties within a second: a poisoned event must not block its sink. */
async function assertAuditDrains(app: TestApp, context: string): Promise<void> {
  if (!wedged(app)) await noteAuditDrain(app, context, 1_000);
  if (wedged(app)) {
    assert.fail(`${context}: audit events stay queued (${JSON.stringify([...app.runtime.audit.depths()])}): a sink has been stuck since the request\n${wedgedBy.get(app)}`);
  }
}

/** Checks the service every `every` runs of a property, and once more at its end. */
function servingProbe(app: () => TestApp, context: string, every: number): { tick: () => Promise<void>; final: () => Promise<void> } {
  let runs = 0;
  return {
    tick: async () => {
      if (++runs % every === 0 && !wedged(app())) await assertServing(app(), `${context}, after run ${runs}`);
    },
    final: () => assertServing(app(), `${context}, at the end`),
  };
}

// ---------------------------------------------------------------------------------------------------------------

describe('HTTP bodies: property-based fuzz of every route', () => {
  let app: TestApp;
  let pools: Pools;
  let hinted: Record<string, fc.Arbitrary<unknown>>;

  const start = async (): Promise<void> => {
    app = await startTestApp({ tenants: TENANTS, batchLimit: BATCH_LIMIT, bodyLimit: BODY_LIMIT });
    const edeks: string[] = [];
    for (const tenant of ['tenant-a', 'tenant-a', 'tenant-b', 'tenant-leased', 'tenant-leased', 'tenant-required']) {
      const { res } = await postJson(app, '/v1/keys/generate', { tenantId: tenant, metadata: META });
      assert.equal(res.statusCode, 200, res.body);
      edeks.push(res.json<{ edek: string }>().edek);
    }
    pools = { edeks };
    hinted = hints(pools);
  };
  /** Services being closed: a wedged one waits out its audit flush timeout, in the background. */
  const closing: Array<Promise<void>> = [];
  /** A property that poisoned the service has failed already; the next one gets a fresh service, to find more. */
  const healthy = async (): Promise<void> => {
    if (!wedgedBy.has(app)) return;
    closing.push(app.close());
    await start();
  };
  /** At least one of `runs` generated bodies of `route` gets a 2xx: the fuzz gets past validation into the handler. */
  const reachesHandler = async (route: RouteSpec, name: string, runs: number): Promise<void> => {
    let ok = 0;
    await fc.assert(
      fc.asyncProperty(fromSchema(route.body as Schema, '', hinted), async (body) => {
        if (wedged(app)) return;
        const timed = await checkRequest(app, route, { url: route.url, payload: JSON.stringify(body) });
        if (timed.res.statusCode < 300) ok++;
      }),
      params(`${name} ${route.url}`, runs),
    );
    await assertAuditDrains(app, `${name} ${route.url}`);
    assert.ok(ok > 0, `${route.url}: none of ${runs} generated bodies got a 2xx; add hints for its fields so the fuzz reaches the handler`);
  };

  before(start);
  after(async () => {
    await app.close();
    await Promise.all(closing);
  });

  it('covers every route of both tables', () => {
    assert.ok(ROUTES.length >= 13, `only ${ROUTES.length} routes`);
    assert.equal(new Set(ROUTES.map((r) => r.url)).size, ROUTES.length);
    for (const route of ROUTES) assert.equal(route.method, 'POST', `${route.url}: only POST routes are generated here`);
  });

  it('baseline: schema-generated bodies of every route get well-formed answers, and reach the handler (some 2xx per route)', async () => {
    for (const route of ROUTES) await reachesHandler(route, 'baseline', 30);
  });

  for (const route of ROUTES) {
    it(`${route.url}: (a) arbitrary JSON values`, async () => {
      await healthy();
      const probe = servingProbe(() => app, `${route.url} (a)`, 50);
      const names = fieldNames(route.body as Schema);
      const payload = fc.oneof(
        fc.json({ depthSize: 'small' }),
        fc.anything({ maxDepth: 3, withNullPrototype: true, withBoxedValues: true, withSparseArray: true }).map((v) => JSON.stringify(v) ?? 'null'),
        // Objects over the route's own field names, with values of any JSON type: past the outer shape, into the fields.
        fc.dictionary(fc.oneof(fc.constantFrom(...names), fc.string({ maxLength: 6 })), fc.jsonValue({ maxDepth: 3 }), { maxKeys: names.length + 2 }).map((o) => JSON.stringify(o)),
        fc.tuple(fromSchema(route.body as Schema, '', hinted), fc.constantFrom(...names), fc.jsonValue({ maxDepth: 2 })).map(([valid, name, value]) =>
          JSON.stringify({ ...(valid as object), [name]: value }),
        ),
      );
      await fc.assert(
        fc.asyncProperty(payload, async (text) => {
          if (wedged(app)) return;
          await checkRequest(app, route, { url: route.url, payload: text });
          await probe.tick();
        }),
        params(`(a) ${route.url}`, 60),
      );
      await probe.final();
    });

    it(`${route.url}: (b) valid bodies, mutated`, async () => {
      await healthy();
      const probe = servingProbe(() => app, `${route.url} (b)`, 50);
      const mutated = fc.tuple(fromSchema(route.body as Schema, '', hinted), fc.array(mutationArb(pools, fieldNames(route.body as Schema)), { minLength: 1, maxLength: 3 })).map(([valid, mutations]) => {
        const root = { value: toAst(valid) };
        for (const m of mutations) applyMutation(root, m, pools);
        return render(root.value);
      });
      await fc.assert(
        fc.asyncProperty(mutated, async (text) => {
          if (wedged(app)) return;
          await checkRequest(app, route, { url: route.url, payload: text });
          await probe.tick();
        }),
        params(`(b) ${route.url}`, 180),
      );
      await probe.final();
    });

    it(`${route.url}: (c) raw bytes, broken encodings, odd content types and methods`, async () => {
      await healthy();
      const probe = servingProbe(() => app, `${route.url} (c)`, 50);
      const validText = fromSchema(route.body as Schema, '', hinted).map((v) => JSON.stringify(v));
      const payload: fc.Arbitrary<{ payload: string | Buffer; encoding?: string }> = fc.oneof(
        fc.uint8Array({ maxLength: 512 }).map((b) => ({ payload: Buffer.from(b) })),
        fc.tuple(validText, fc.constantFrom('\ufeff', '\u0000', ' \n\t', '[', ')]}\'\n', 'null'), fc.constantFrom('', '\u0000', ',', '}', ' garbage', '\n{}')).map(([t, pre, post]) => ({ payload: pre + t + post })),
        fc.tuple(validText, fc.nat()).map(([t, at]) => ({ payload: t.slice(0, at % (t.length + 1)) })),
        fc.tuple(validText, fc.constantFrom('utf16le', 'latin1', 'ucs2') as fc.Arbitrary<BufferEncoding>, fc.boolean()).map(([t, enc, bom]) => ({ payload: Buffer.from((bom ? '\ufeff' : '') + t.replace(/"/, '"é'), enc) })),
        validText.map((t) => ({ payload: gzipSync(t), encoding: 'gzip' })),
        validText.map((t) => ({ payload: t, encoding: 'br' })),
        fc.constantFrom('', ' ', '\n', 'null', '0', '""', '[]', '{}', '{"a":}', '{"tenantId":"tenant-a"', '\u0000').map((t) => ({ payload: t })),
        validText.map((t) => ({ payload: ' '.repeat(BODY_LIMIT) + t })),
      );
      const contentType = fc.oneof(
        { weight: 4, arbitrary: fc.constant('application/json') },
        {
          weight: 4,
          arbitrary: fc.constantFrom(
            undefined, '', 'application/json; charset=utf-8', 'application/json; charset=utf-16', 'APPLICATION/JSON', 'application/json;;',
            'application/json; charset="', 'text/plain', 'text/json', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x',
            'application/octet-stream', 'application/json-patch+json', 'application/vnd.api+json', 'application/*', '*/*', 'application',
            'application/json, text/plain', `application/json; ${'p=v; '.repeat(500)}`, ';', 'a/b/c',
          ),
        },
        { weight: 1, arbitrary: fc.string({ unit: 'grapheme-ascii', maxLength: 40 }).filter((s) => !/[\r\n\0]/.test(s)) },
      );
      const method = fc.oneof({ weight: 6, arbitrary: fc.constant<Method>('POST') }, { weight: 1, arbitrary: fc.constantFrom<Method>('GET', 'PUT', 'DELETE', 'PATCH', 'OPTIONS', 'HEAD') });
      const auth = fc.constantFrom(`Bearer ${API_KEY}`, `cmk ${API_KEY}`, `bearer\t${API_KEY_2}  `, `CMK ${API_KEY_2}`);
      const contentLength = fc.oneof({ weight: 7, arbitrary: fc.constant(null) }, { weight: 1, arbitrary: fc.constantFrom('0', '1', 'abc', '-1', '99999999') });
      await fc.assert(
        fc.asyncProperty(payload, contentType, method, auth, contentLength, async (p, ct, m, authorization, cl) => {
          if (wedged(app)) return;
          const headers: Record<string, string> = { authorization };
          if (ct !== undefined) headers['content-type'] = ct;
          if (p.encoding) headers['content-encoding'] = p.encoding;
          if (cl !== null) headers['content-length'] = cl;
          const request: RawRequest = { method: m, url: route.url, headers, ...(m === 'GET' || m === 'HEAD' ? {} : { payload: p.payload }) };
          await checkRequest(app, route, request, { allowNotFound: m !== 'POST' });
          await probe.tick();
        }),
        params(`(c) ${route.url}`, 60),
      );
      await probe.final();
    });
  }

  for (const route of ROUTES) {
    const { records, stringArrays } = collections(route.body as Schema);
    it(`${route.url}: (d) hostile keys and values in its maps (${records.length}) and string arrays (${stringArrays.length})`, async () => {
      await healthy();
      const probe = servingProbe(() => app, `${route.url} (d)`, 50);
      const names = fieldNames(route.body as Schema);
      // Deep nesting goes into the text as is: JSON.stringify itself overflows the stack on it (as the sinks do).
      const DEEP = '\u0000deep\u0000';
      const deepText = (n: number): string => '['.repeat(n) + ']'.repeat(n);
      const hostileValue = fc.oneof(
        { weight: 2, arbitrary: fc.constant(null) },
        // An object naming one of the route's own fields, with a value of the wrong type or range.
        { weight: 3, arbitrary: fc.tuple(fc.constantFrom(...names), fc.constantFrom<unknown>(null, -1, 'x', 1e308, [], {})).map(([k, v]) => ({ [k]: v })) },
        { weight: 2, arbitrary: fc.constantFrom<unknown>(5, -5, 1.5, '', 'x', true, [], {}, ['x'], 'A'.repeat(100_000)) },
        { weight: 1, arbitrary: fc.constantFrom(...pools.edeks) },
        { weight: 1, arbitrary: fc.constantFrom(64, 5_000, 20_000).map((n) => `${DEEP}${n}`) },
      );
      const hostileKey = fc.oneof(
        { weight: 3, arbitrary: fc.constantFrom(...LINE_KEYS) },
        { weight: 2, arbitrary: fc.constantFrom(...PROTO_KEYS.filter((k) => k !== '__proto__')) },
        { weight: 1, arbitrary: fc.constantFrom('', ' ', 'x'.repeat(1_000), '\u0000', '\ud800') },
      );
      const hostileString = fc.oneof(
        { weight: 2, arbitrary: fc.constant('__proto__') },
        { weight: 2, arbitrary: fc.constantFrom(...PROTO_KEYS) },
        { weight: 3, arbitrary: fc.constantFrom(...LINE_KEYS, ...UNICODE, 'a\nb', '', ' ', 'x'.repeat(300)) },
      );
      // Every map and every string array of the body, each with its own runs.
      for (const at of [...records.map((p) => ({ record: p })), ...stringArrays.map((p) => ({ array: p }))]) {
        const body = fc.tuple(fromSchema(route.body as Schema, '', hinted), hostileKey, hostileValue, hostileString).map(([valid, key, value, item]) => {
          // A copy: fast-check shares generated values with the shrinker, which must never see them changed.
          const root = { body: structuredClone(valid) } as Record<string, unknown>;
          const path = ['body', ...('record' in at ? at.record : at.array)];
          // Walk down, making what is missing: objects on the way, the map or the array at the end.
          let holder: Record<string, unknown> = root;
          path.forEach((step, i) => {
            const last = i === path.length - 1;
            const name = step === MAP_VALUE ? (Object.keys(holder)[0] ?? 'k') : step;
            const want = last && 'array' in at ? 'array' : 'object';
            const here = holder[name];
            if (want === 'array' ? !Array.isArray(here) : typeof here !== 'object' || here === null || Array.isArray(here)) holder[name] = want === 'array' ? [] : {};
            if (!last) holder = holder[name] as Record<string, unknown>;
            else if ('record' in at) (holder[name] as Record<string, unknown>)[key] = value;
            else (holder[name] as unknown[]).push(item);
          });
          return JSON.stringify(root.body).replace(/"\\u0000deep\\u0000(\d+)"/g, (_, n: string) => deepText(Number(n)));
        });
        await fc.assert(
          fc.asyncProperty(body, async (text) => {
            if (wedged(app)) return;
            await checkRequest(app, route, { url: route.url, payload: text });
            await probe.tick();
          }),
          params(`(d) ${route.url} ${JSON.stringify(at)}`, 50),
        );
      }
      await probe.final();
    });
  }

  it('URL variants of every route: the route, or 404 with code 103, always {code, message}', async () => {
    await healthy();
    const VARIANTS: Record<string, (u: string) => string> = {
      as: (u) => u,
      'trailing slash': (u) => `${u}/`,
      'double slash': (u) => `/${u}`,
      'upper case': (u) => u.toUpperCase(),
      query: (u) => `${u}?a=1&a=2&__proto__=x&constructor[prototype]=y`,
      'percent-encoded letter': (u) => u.replace(/\/([a-z])/, (_, c: string) => `/%${c.charCodeAt(0).toString(16)}`),
      'dot segments': (u) => u.replace(/\/[^/]+$/, '/x/..$&'),
      'encoded NUL': (u) => `${u}%00`,
      'malformed percent-encoding': (u) => `${u}%E0%A4%A`,
      'matrix parameter': (u) => `${u};x=1`,
    };
    const routeAndBody = fc.constantFrom(...ROUTES.map((r) => r.url)).chain((url) => fc.tuple(fc.constant(url), fromSchema(ROUTES.find((r) => r.url === url)!.body as Schema, '', hinted)));
    await fc.assert(
      fc.asyncProperty(routeAndBody, fc.constantFrom(...Object.keys(VARIANTS)), async ([url, body], variant) => {
        if (wedged(app)) return;
        const route = ROUTES.find((r) => r.url === url)!;
        await checkRequest(app, route, { url: VARIANTS[variant]!(url), payload: JSON.stringify(body) }, { allowNotFound: true });
      }),
      params('url variants', 150),
    );
    await assertAuditDrains(app, 'url variants');
  });

  it('without a valid API key: 401 with code 101 whatever the body, content type or API key form', async () => {
    await healthy();
    const authorization = fc.constantFrom(
      undefined, '', 'Bearer', 'Bearer ', 'cmk', API_KEY, `Basic ${API_KEY}`, `Bearer ${API_KEY}x`, `Bearer ${API_KEY.toUpperCase()}`,
      `Bearer ${API_KEY} extra`, `Bearer  ${API_KEY.slice(0, -1)}`, `Token ${API_KEY}`, `Bearer ${'k'.repeat(10_000)}`,
    );
    const body = fc.oneof(fc.json(), fc.uint8Array({ maxLength: 64 }).map((b) => Buffer.from(b).toString('latin1')), fc.constant('{"__proto__":{"x":1}}'));
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(...ROUTES.map((r) => r.url)), authorization, body, fc.constantFrom('application/json', 'text/plain'), async (url, auth, text, ct) => {
        const route = ROUTES.find((r) => r.url === url)!;
        const headers: Record<string, string> = { 'content-type': ct };
        if (auth !== undefined) headers.authorization = auth;
        const request: RawRequest = { url: route.url, headers, payload: text };
        const timed = await sendSteady(app, request);
        const error = checkAnswer(timed, describeRequest(request), route.errors);
        assert.equal(timed.res.statusCode, 401, describeRequest(request));
        assert.equal(error?.code, Errors.UNAUTHORIZED_REQUEST.code);
      }),
      params('unauthenticated', 200),
    );
  });

  it('afterwards: every route still serves valid bodies, audit queues drain, metrics are finite', async () => {
    for (const route of ROUTES) await reachesHandler(route, 'afterwards', 15);
    await assertServing(app, 'after the fuzz');
    const metrics = await app.ops.inject({ method: 'GET', url: '/metrics' });
    assert.equal(metrics.statusCode, 200);
    for (const { line, value } of metricSamples(metrics.body)) assert.ok(Number.isFinite(value), `metric sample is not a finite number: ${line}`);
  });
});

describe('HTTP bodies: the largest bodies the schemas allow, at the default limits', () => {
  let app: TestApp;
  let edek: string;
  before(async () => {
    app = await startTestApp({ tenants: TENANTS });
    edek = (await postJson(app, '/v1/keys/generate', { tenantId: 'tenant-a', metadata: META })).res.json<{ edek: string }>().edek;
  });
  after(() => app.close());

  const ids = (n: number): string[] => Array.from({ length: n }, (_, i) => `id-${i}`);
  const ICL = { requestingId: 'fuzz' };
  const cases: Array<{ name: string; url: string; body: () => unknown; status: number }> = [
    { name: 'batch generate of 1000', url: '/v1/keys/batch/generate', body: () => ({ tenantId: 'tenant-a', ids: ids(1000), metadata: META }), status: 200 },
    { name: 'batch generate of 1001', url: '/v1/keys/batch/generate', body: () => ({ tenantId: 'tenant-a', ids: ids(1001), metadata: META }), status: 413 },
    { name: 'batch-wrap of 1000', url: '/api/1/document/batch-wrap', body: () => ({ tenantId: 'tenant-leased', iclFields: ICL, documentIds: ids(1000) }), status: 200 },
    { name: 'batch unwrap of 1000', url: '/v1/keys/batch/unwrap', body: () => ({ tenantId: 'tenant-a', edeks: Object.fromEntries(ids(1000).map((i) => [i, edek])), metadata: META }), status: 200 },
    { name: 'batch-unwrap of 1001', url: '/api/1/document/batch-unwrap', body: () => ({ tenantId: 'tenant-a', iclFields: ICL, edeks: Object.fromEntries(ids(1001).map((i) => [i, edek])) }), status: 413 },
    {
      name: 'batch unwrap of 45 EDEKs near 64 KiB, 16 entries each: 15 of the tenant\'s that do not decrypt, then the good one',
      url: '/v1/keys/batch/unwrap',
      body: () => {
        const junk = encodeEdeks([edekEntry({ encryptedDekData: Buffer.alloc(4_300, 1), kmsConfigId: 11, tenantId: 'tenant-a' })]);
        const big = Buffer.concat([...Array.from({ length: 15 }, () => junk), Buffer.from(edek, 'base64')]);
        assert.ok(big.length <= 65_536 && big.length > 60_000, `${big.length}`);
        return { tenantId: 'tenant-a', edeks: Object.fromEntries(ids(45).map((i) => [i, big.toString('base64')])), metadata: META };
      },
      status: 200,
    },
    {
      name: 'report-operations with 50,000 EDEKs',
      url: '/api/1/document/report-operations',
      body: () => ({ operations: Object.fromEntries(ids(50_000).map((i) => [i, { wraps: 1, unwraps: 2 }])) }),
      status: 200,
    },
  ];
  for (const c of cases) {
    it(`${c.name}: ${c.status}, within ${LATENCY_BUDGET_MS} ms`, async () => {
      const route = ROUTES.find((r) => r.url === c.url)!;
      const payload = JSON.stringify(c.body());
      const timed = await checkRequest(app, route, { url: c.url, payload });
      assert.equal(timed.res.statusCode, c.status, timed.res.body.slice(0, 300));
    });
  }
});

/**
 * Minimal reproductions of what the properties above found, each asserting the correct behaviour. Each was
 * fixed after the fuzz found it and stays as a regression test (test/http/map-keys.test.ts has more of those).
 */
describe('HTTP bodies: what the fuzz found, minimal', () => {
  let app: TestApp;
  before(async () => {
    app = await startTestApp({ tenants: TENANTS });
  });
  after(() => app.close());

  const ICL = { requestingId: 'fuzz' };
  const route = (url: string): RouteSpec => ROUTES.find((r) => r.url === url)!;
  const expect4xx = async (url: string, payload: string, extra?: (timed: Timed) => void): Promise<void> => {
    const timed = await send(app, { url, payload });
    const context = describeRequest({ url, payload });
    checkAnswer(timed, context, route(url).errors);
    if (timed.res.statusCode < 300) checkSuccess(route(url), payload, timed, context);
    extra?.(timed);
  };

  it('report-operations: an entry of the wrong type under a key with a line break is a 400, not a 500 (null, a string, a negative count)', async () => {
    for (const value of [null, { wraps: 'x' }, { wraps: -5 }]) {
      await expect4xx('/api/1/document/report-operations', JSON.stringify({ operations: { '\n': value } }));
    }
  });

  it('report-operations: a client cannot push a counter to the largest double, or to +Inf', async () => {
    await send(app, { url: '/api/1/document/report-operations', payload: '{"operations":{"a":{"wraps":1.7976931348623157e308}}}' });
    await send(app, { url: '/api/1/document/report-operations', payload: '{"operations":{"a":{"wraps":1.7976931348623157e308}}}' });
    const metrics = await app.ops.inject({ method: 'GET', url: '/metrics' });
    for (const { line, value } of metricSamples(metrics.body)) assert.ok(Number.isFinite(value) && value < 1e300, `metric sample pushed to ${line}`);
  });

  it('batch generate / batch-wrap: the id "__proto__" is in the answer\'s keys (it was generated and audited, then lost)', async () => {
    await expect4xx('/v1/keys/batch/generate', JSON.stringify({ tenantId: 'tenant-a', ids: ['__proto__', 'b'], metadata: META }), (timed) => {
      assert.deepEqual(Object.keys(timed.res.json<{ keys: object }>().keys), ['__proto__', 'b']);
    });
    await expect4xx('/api/1/document/batch-wrap', JSON.stringify({ tenantId: 'tenant-a', iclFields: ICL, documentIds: ['__proto__'] }), (timed) => {
      assert.deepEqual(Object.keys(timed.res.json<{ keys: object }>().keys), ['__proto__']);
    });
  });

  it('derive: the derivation path "__proto__" is in the answer (it was derived, then lost)', async () => {
    await expect4xx('/api/1/key/derive-with-secret-path', JSON.stringify({ tenantId: 'tenant-a', iclFields: ICL, paths: { p: ['__proto__', 'q'] }, derivationType: 'sha256', secretType: 'deterministic' }), (timed) => {
      assert.deepEqual(Object.keys(timed.res.json<{ derivedKeys: Record<string, object> }>().derivedKeys.p!), ['__proto__', 'q']);
    });
  });

  it('a deeply nested custom field (once let through under a key with a line break) never wedges the audit sink', async () => {
    const deep = '['.repeat(20_000) + ']'.repeat(20_000);
    await send(app, { url: '/v1/keys/generate', payload: `{"tenantId":"tenant-a","metadata":{"requestingId":"x","custom":{"\\n":${deep}}}}` });
    await assertAuditDrains(app, 'after one request with a deeply nested custom field');
  });

  it('derive: one request of 1000 secret paths × 250 derivation paths (0.8 MB) is refused at once (413 BATCH_TOO_LARGE), not derived for seconds with the event loop blocked', async () => {
    const paths = Object.fromEntries(Array.from({ length: 1000 }, (_, i) => [String(i), Array<string>(250).fill('')]));
    const payload = JSON.stringify({ tenantId: 'tenant-a', iclFields: ICL, paths, derivationType: 'sha512', secretType: 'deterministic' });
    const timed = await send(app, { url: '/api/1/key/derive-with-secret-path', payload });
    assert.equal(timed.res.statusCode, 413, timed.res.body);
    assert.equal(timed.res.json<{ code: number }>().code, 102);
    assert.match(timed.res.json<{ message: string }>().message, /at most 1000 derivation paths in all \(got 250000\)/);
    // At the limit, it is derived: 4 secret paths × 250 = 1000 derivations.
    const within = Object.fromEntries(Array.from({ length: 4 }, (_, i) => [String(i), Array.from({ length: 250 }, (_, j) => `p${j}`)]));
    const ok = await send(app, { url: '/api/1/key/derive-with-secret-path', payload: JSON.stringify({ tenantId: 'tenant-a', iclFields: ICL, paths: within, derivationType: 'sha512', secretType: 'deterministic' }) });
    assert.equal(ok.res.statusCode, 200, ok.res.body);
    const derived = ok.res.json<{ derivedKeys: Record<string, Record<string, unknown[]>> }>().derivedKeys;
    assert.equal(Object.values(derived).reduce((n, byPath) => n + Object.keys(byPath).length, 0), 1000);
  });

  it('a malformed percent-encoding in the URL is answered with {code, message} (ROUTE_NOT_FOUND), not Fastify\'s own error body', async () => {
    const timed = await send(app, { url: '/v1/keys/generate%E0%A4%A', payload: JSON.stringify({ tenantId: 'tenant-a', metadata: META }) });
    checkAnswer(timed, 'POST /v1/keys/generate%E0%A4%A');
    assert.equal(timed.res.statusCode, 404);
    assert.deepEqual(timed.res.json(), { code: 103, message: 'the URL path is not valid percent-encoding' });
  });
});

