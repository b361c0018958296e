import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { deriveKey, type DerivationType } from '../../src/derivation/derive.js';
import { parseTenantsFile } from '../../src/config/tenants-file.js';
import { tenantsFileProblems } from '../helpers/config.js';
import { json, startTestApp, API_KEY, type ErrorJson, type TestApp } from '../helpers/app.js';

interface Vector {
  name: string;
  secret: string;
  derivationType: DerivationType;
  secretType: string;
  secretPath: string;
  derivationPath: string;
  derivedKey: string;
}

const { vectors } = JSON.parse(readFileSync(new URL('../fixtures/derivation-vectors.json', import.meta.url), 'utf8')) as { vectors: Vector[] };

describe('key derivation', () => {
  it('has vectors (computed independently, with Python hmac)', () => assert.ok(vectors.length >= 5));
  for (const v of vectors) {
    it(`matches the published vector: ${v.name}`, () => {
      const key = deriveKey(Buffer.from(v.secret, 'hex'), v.derivationType, v.secretType, v.secretPath, v.derivationPath);
      assert.equal(key.toString('hex'), v.derivedKey);
      assert.equal(key.length, v.derivationType === 'sha512' ? 64 : 32);
    });
  }

  it('separates secret type, secret path and derivation path (no concatenation ambiguity)', () => {
    const secret = Buffer.alloc(32, 7);
    const outputs = [
      deriveKey(secret, 'sha512', 'deterministic', 'ab', 'c'),
      deriveKey(secret, 'sha512', 'deterministic', 'a', 'bc'),
      deriveKey(secret, 'sha512', 'search', 'ab', 'c'),
      deriveKey(secret, 'sha512', 'deterministicab', '', 'c'),
    ].map((b) => b.toString('hex'));
    assert.equal(new Set(outputs).size, outputs.length);
  });
});

describe('derivation secrets in the tenants file', () => {
  const file = (secrets: string, provider = 'local') => `version: 1
tenants:
  acme:
    kmsConfigs:
      - { id: 1, status: primary, provider: ${provider}, ${provider === 'local' ? 'local: { keyFile: k.key }' : 'pkcs11: { module: m.so, tokenLabel: t, keyLabel: k, pin: { env: P } }'} }
    derivationSecrets:
${secrets}`;
  const problems = tenantsFileProblems;

  it('accepts secrets and resolves file paths', () => {
    const dir = parseTenantsFile(
      file(`      - { id: 1, state: current, kmsConfigId: 1, wrapped: AAAA }
      - { id: 2, state: in-rotation, type: search, kmsConfigId: 1, wrapped: { file: s/2.b64, createIfMissing: true } }`),
      { baseDir: '/etc/keyward', defaultKmsTimeoutMs: 1000 },
    );
    const secrets = dir.tenant('acme')!.secrets;
    assert.equal(secrets.length, 2);
    assert.equal(secrets[0]!.type, 'deterministic');
    assert.deepEqual(secrets[1]!.wrapped, { file: '/etc/keyward/s/2.b64', create: true });
  });

  it('refuses duplicate ids, two current secrets of one type, foreign configs, bad base64, and dev creation on a real KMS', () => {
    assert.match(problems(file(`      - { id: 1, state: current, kmsConfigId: 1, wrapped: AAAA }\n      - { id: 1, state: archived, kmsConfigId: 1, wrapped: AAAA }`)).join('\n'), /used twice/);
    assert.match(problems(file(`      - { id: 1, state: current, kmsConfigId: 1, wrapped: AAAA }\n      - { id: 2, state: current, kmsConfigId: 1, wrapped: AAAA }`)).join('\n'), /both current/);
    assert.match(problems(file(`      - { id: 1, state: current, kmsConfigId: 9, wrapped: AAAA }`)).join('\n'), /not a KMS config of tenant acme/);
    assert.match(problems(file(`      - { id: 1, state: current, kmsConfigId: 1, wrapped: "not base64!" }`)).join('\n'), /must be base64/);
    assert.match(problems(file(`      - { id: 1, state: current, kmsConfigId: 1, wrapped: { file: x, createIfMissing: true } }`, 'pkcs11')).join('\n'), /only for the development local KMS/);
    assert.match(problems(file(`      - { id: 1, state: sideways, kmsConfigId: 1, wrapped: AAAA }`)).join('\n'), /must be one of current, in-rotation, archived/);
  });
});

describe('/api/1/key/derive-with-secret-path', () => {
  let app: TestApp;
  const tenants = (states: [string, string]) => `version: 1
tenants:
  acme:
    kmsConfigs:
      - { id: 1, status: primary, provider: local, local: { keyFile: keys/a.key } }
    derivationSecrets:
      - { id: 7, state: ${states[0]}, kmsConfigId: 1, wrapped: { file: secrets/7.b64, createIfMissing: true } }
      - { id: 8, state: ${states[1]}, kmsConfigId: 1, wrapped: { file: secrets/8.b64, createIfMissing: true } }
  globex:
    kmsConfigs:
      - { id: 2, status: active, provider: local, local: { keyFile: keys/a.key } }
    derivationSecrets:
      - { id: 1, state: current, kmsConfigId: 2, wrapped: { file: secrets/g1.b64, createIfMissing: true } }
  plain:
    kmsConfigs:
      - { id: 3, status: primary, provider: local, local: { keyFile: keys/a.key } }
`;
  before(async () => {
    app = await startTestApp({ tenants: tenants(['current', 'archived']) });
  });
  after(() => app.close());

  const derive = (tenantId: string, extra: Record<string, unknown> = {}) =>
    app.api.inject({
      method: 'POST',
      url: '/api/1/key/derive-with-secret-path',
      headers: { authorization: `cmk ${API_KEY}`, 'content-type': 'application/json' },
      payload: JSON.stringify({ tenantId, iclFields: { requestingId: 't' }, customFields: null, paths: { ssn: ['', 'eu'], email: [''] }, derivationType: 'sha512', secretType: 'deterministic', ...extra }),
    });
  type Derived = { hasPrimaryConfig: boolean; derivedKeys: Record<string, Record<string, Array<{ derivedKey: string; tenantSecretId: number; current: boolean }>>> };

  it('derives 64-byte keys per path from the current secret only (archived excluded), stable across calls', async () => {
    const first = json<Derived>(await derive('acme'));
    assert.equal(first.hasPrimaryConfig, true);
    assert.deepEqual(Object.keys(first.derivedKeys).sort(), ['email', 'ssn']);
    assert.deepEqual(Object.keys(first.derivedKeys.ssn!).sort(), ['', 'eu']);
    const keys = first.derivedKeys.ssn!['']!;
    assert.equal(keys.length, 1);
    assert.deepEqual({ id: keys[0]!.tenantSecretId, current: keys[0]!.current }, { id: 7, current: true });
    assert.equal(Buffer.from(keys[0]!.derivedKey, 'base64').length, 64);
    assert.notEqual(first.derivedKeys.ssn!['']![0]!.derivedKey, first.derivedKeys.ssn!.eu![0]!.derivedKey);
    const second = json<Derived>(await derive('acme'));
    assert.deepEqual(second, first, 'deterministic: the same keys every time');
  });

  it('during a rotation returns current and in-rotation secrets, exactly one current; then only the new one', async () => {
    const before = json<Derived>(await derive('acme')).derivedKeys.ssn!['']![0]!.derivedKey;
    await app.rewrite(tenants(['in-rotation', 'current']));
    const rotating = json<Derived>(await derive('acme')).derivedKeys.ssn!['']!;
    assert.equal(rotating.length, 2);
    assert.deepEqual(rotating.filter((k) => k.current).map((k) => k.tenantSecretId), [8]);
    assert.equal(rotating.find((k) => k.tenantSecretId === 7)!.derivedKey, before, 'the old secret still derives the same key');
    await app.rewrite(tenants(['archived', 'current']));
    const after = json<Derived>(await derive('acme')).derivedKeys.ssn!['']!;
    assert.deepEqual(after.map((k) => k.tenantSecretId), [8]);
  });

  it('succeeds without a primary config (hasPrimaryConfig: false); 201 without secrets or tenant; 102 for unsupported types', async () => {
    assert.equal(json<Derived>(await derive('globex')).hasPrimaryConfig, false);
    assert.equal(json<ErrorJson>(await derive('plain')).code, 201);
    assert.equal(json<ErrorJson>(await derive('nobody')).code, 201);
    assert.equal(json<ErrorJson>(await derive('acme', { derivationType: 'argon2' })).code, 102);
    assert.equal(json<ErrorJson>(await derive('acme', { secretType: 'banana' })).code, 102);
    const sha256 = json<Derived>(await derive('acme', { derivationType: 'sha256' }));
    assert.equal(Buffer.from(sha256.derivedKeys.ssn!['']![0]!.derivedKey, 'base64').length, 32);
  });

  it("a secret wrapped for another tenant or id does not unwrap: 207, not a derived key", async () => {
    const { readFile, writeFile } = await import('node:fs/promises');
    const acmeSecret = await readFile(`${app.dir}/secrets/8.b64`, 'utf8');
    await writeFile(`${app.dir}/secrets/stolen.b64`, acmeSecret);
    await app.rewrite(
      tenants(['archived', 'current']) +
        `  thief:
    kmsConfigs:
      - { id: 4, status: primary, provider: local, local: { keyFile: keys/a.key } }
    derivationSecrets:
      - { id: 8, state: current, kmsConfigId: 4, wrapped: { file: secrets/stolen.b64 } }
`,
    );
    const res = await derive('thief');
    assert.equal(res.statusCode, 502);
    assert.equal(json<ErrorJson>(res).code, 207);
    assert.match(json<ErrorJson>(res).message, /does not unwrap/);
  });

  it('a tenant cannot derive with another tenant\'s keys: different tenants, different keys', async () => {
    const a = json<Derived>(await derive('acme')).derivedKeys.ssn!['']!.find((k) => k.current)!.derivedKey;
    const g = json<Derived>(await derive('globex')).derivedKeys.ssn!['']![0]!.derivedKey;
    assert.notEqual(a, g);
  });
});
