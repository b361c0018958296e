/**
 * The scenarios of `npm run bench` and their request bodies, built from EDEKs generated
 * through Keyward's API before anything is measured. Each scenario is also checked
 * once: a 200 with the expected shape, whose body becomes the ceiling's canned answer.
 */
import { API_KEY, DIRECT_TENANT, LEASED_TENANT } from './processes.js';
import { HEADERS, type BenchRequest } from './load.js';

export interface Scenario {
  readonly id: string;
  readonly label: string;
  readonly path: string;
  /** Keys (operations) per request: 1, or the batch size. */
  readonly keys: number;
  readonly leased: boolean;
  readonly batch: boolean;
  readonly requests: readonly BenchRequest[];
  /** Why an answer is wrong, or undefined when it is right. */
  readonly check: (status: number, body: unknown) => string | undefined;
}

/** Display order (the order of the brief); the run order puts every leased scenario first. */
export const SCENARIO_IDS = [
  'v1-unwrap-leased',
  'v1-generate-leased',
  'v1-unwrap-direct',
  'v1-batch-unwrap-100',
  'v1-batch-unwrap-1000',
  'api1-unwrap-leased',
  'api1-batch-unwrap-100',
  'api1-wrap-leased',
] as const;

const META = { requestingId: 'bench-client', dataLabel: 'PII' };
const ICL = { requestingId: 'bench-client', dataLabel: 'PII' };
const VARIANTS = 16;

async function post(apiUrl: string, path: string, body: unknown): Promise<{ status: number; json: unknown; text: string }> {
  const res = await fetch(`${apiUrl}${path}`, { method: 'POST', headers: HEADERS(API_KEY), body: JSON.stringify(body) });
  const text = await res.text();
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, json, text };
}

export interface Material {
  readonly leased: readonly string[];
  readonly direct: readonly string[];
  readonly seconds: number;
}

/** 1000 leased EDEKs (one batch generate) and 16 direct ones, through the API. */
export async function pregenerate(apiUrl: string): Promise<Material> {
  const started = performance.now();
  const ids = Array.from({ length: 1000 }, (_, i) => `doc-${String(i).padStart(4, '0')}`);
  const leasedRes = await post(apiUrl, '/v1/keys/batch/generate', { tenantId: LEASED_TENANT, ids, metadata: META });
  const keys = (leasedRes.json as { keys?: Record<string, { edek: string }> } | undefined)?.keys;
  if (leasedRes.status !== 200 || !keys || Object.keys(keys).length !== 1000) throw new Error(`leased batch generate failed: ${leasedRes.status} ${leasedRes.text.slice(0, 500)}`);
  const leased = ids.map((id) => keys[id]!.edek);
  const direct: string[] = [];
  for (let i = 0; i < VARIANTS; i++) {
    const res = await post(apiUrl, '/v1/keys/generate', { tenantId: DIRECT_TENANT, metadata: META });
    const edek = (res.json as { edek?: string } | undefined)?.edek;
    if (res.status !== 200 || !edek) throw new Error(`direct generate failed: ${res.status} ${res.text.slice(0, 500)}`);
    direct.push(edek);
  }
  return { leased, direct, seconds: (performance.now() - started) / 1000 };
}

const isDek = (v: unknown): boolean => typeof v === 'string' && Buffer.from(v, 'base64').length === 32;

function checkSingle(withEdek: boolean) {
  return (status: number, body: unknown): string | undefined => {
    const b = body as { dek?: unknown; edek?: unknown } | undefined;
    if (status !== 200) return `status ${status}`;
    if (!isDek(b?.dek)) return 'no 32-byte dek';
    if (withEdek && typeof b?.edek !== 'string') return 'no edek';
    return undefined;
  };
}

function checkBatch(size: number) {
  return (status: number, body: unknown): string | undefined => {
    const b = body as { keys?: Record<string, { dek?: unknown }>; failures?: Record<string, unknown> } | undefined;
    if (status !== 200) return `status ${status}`;
    const failures = Object.keys(b?.failures ?? {}).length;
    if (failures > 0) return `${failures} item failures`;
    const keys = Object.values(b?.keys ?? {});
    if (keys.length !== size || !keys.every((k) => isDek(k.dek))) return `expected ${size} deks, got ${keys.length}`;
    return undefined;
  };
}

function batchEdeks(edeks: readonly string[], offset: number, size: number): Record<string, string> {
  const out: Record<string, string> = {};
  for (let i = 0; i < size; i++) out[`doc-${String(i).padStart(4, '0')}`] = edeks[(offset + i) % edeks.length]!;
  return out;
}

export function buildScenarios(material: Material): Scenario[] {
  const { leased, direct } = material;
  const variants = <T>(n: number, make: (i: number) => T): T[] => Array.from({ length: n }, (_, i) => make(i));
  const req = (path: string, body: unknown): BenchRequest => ({ path, body: JSON.stringify(body) });
  const all: Scenario[] = [
    {
      id: 'v1-unwrap-leased',
      label: 'POST /v1/keys/unwrap (leased)',
      path: '/v1/keys/unwrap',
      keys: 1,
      leased: true,
      batch: false,
      requests: variants(VARIANTS, (i) => req('/v1/keys/unwrap', { tenantId: LEASED_TENANT, edek: leased[i * 61]!, metadata: META })),
      check: checkSingle(false),
    },
    {
      id: 'v1-generate-leased',
      label: 'POST /v1/keys/generate (leased)',
      path: '/v1/keys/generate',
      keys: 1,
      leased: true,
      batch: false,
      requests: [req('/v1/keys/generate', { tenantId: LEASED_TENANT, metadata: META })],
      check: checkSingle(true),
    },
    {
      id: 'v1-unwrap-direct',
      label: 'POST /v1/keys/unwrap (direct, local KMS)',
      path: '/v1/keys/unwrap',
      keys: 1,
      leased: false,
      batch: false,
      requests: variants(VARIANTS, (i) => req('/v1/keys/unwrap', { tenantId: DIRECT_TENANT, edek: direct[i]!, metadata: META })),
      check: checkSingle(false),
    },
    {
      id: 'v1-batch-unwrap-100',
      label: 'POST /v1/keys/batch/unwrap ×100 (leased)',
      path: '/v1/keys/batch/unwrap',
      keys: 100,
      leased: true,
      batch: true,
      requests: variants(10, (i) => req('/v1/keys/batch/unwrap', { tenantId: LEASED_TENANT, edeks: batchEdeks(leased, i * 100, 100), metadata: META })),
      check: checkBatch(100),
    },
    {
      id: 'v1-batch-unwrap-1000',
      label: 'POST /v1/keys/batch/unwrap ×1000 (leased)',
      path: '/v1/keys/batch/unwrap',
      keys: 1000,
      leased: true,
      batch: true,
      requests: variants(2, (i) => req('/v1/keys/batch/unwrap', { tenantId: LEASED_TENANT, edeks: batchEdeks(leased, i * 500, 1000), metadata: META })),
      check: checkBatch(1000),
    },
    {
      id: 'api1-unwrap-leased',
      label: 'POST /api/1/document/unwrap (leased)',
      path: '/api/1/document/unwrap',
      keys: 1,
      leased: true,
      batch: false,
      requests: variants(VARIANTS, (i) =>
        req('/api/1/document/unwrap', { tenantId: LEASED_TENANT, iclFields: ICL, customFields: {}, encryptedDocumentKey: leased[i * 61 + 7]! }),
      ),
      check: checkSingle(false),
    },
    {
      id: 'api1-batch-unwrap-100',
      label: 'POST /api/1/document/batch-unwrap ×100 (leased)',
      path: '/api/1/document/batch-unwrap',
      keys: 100,
      leased: true,
      batch: true,
      requests: variants(10, (i) => req('/api/1/document/batch-unwrap', { tenantId: LEASED_TENANT, iclFields: ICL, customFields: {}, edeks: batchEdeks(leased, i * 100 + 50, 100) })),
      check: checkBatch(100),
    },
    {
      id: 'api1-wrap-leased',
      label: 'POST /api/1/document/wrap (leased)',
      path: '/api/1/document/wrap',
      keys: 1,
      leased: true,
      batch: false,
      requests: [req('/api/1/document/wrap', { tenantId: LEASED_TENANT, iclFields: ICL, customFields: {} })],
      check: checkSingle(true),
    },
  ];
  return all;
}

/** The ceiling has one route per scenario: the same path under a prefix naming the scenario. */
export function ceilingPath(scenario: Pick<Scenario, 'id' | 'path'>): string {
  return `/${scenario.id}${scenario.path}`;
}

export function forCeiling(scenario: Scenario): BenchRequest[] {
  return scenario.requests.map((r) => ({ path: ceilingPath(scenario), body: r.body }));
}

/** Sends the scenario's first request once and checks the answer; returns it (parsed) for the ceiling. */
export async function probe(apiUrl: string, scenario: Scenario): Promise<{ response: unknown; bytes: number }> {
  const first = scenario.requests[0]!;
  const res = await post(apiUrl, first.path, JSON.parse(first.body));
  const problem = scenario.check(res.status, res.json);
  if (problem) throw new Error(`scenario ${scenario.id}: ${problem}: ${res.text.slice(0, 500)}`);
  return { response: res.json, bytes: Buffer.byteLength(res.text) };
}
