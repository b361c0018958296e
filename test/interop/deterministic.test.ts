/**
 * Interop: deterministic (searchable) field encryption of IronCore Labs' published Node SDK,
 * @ironcorelabs/tenant-security-nodejs 4.1.3 (AGPL, installed only in this separate package,
 * see README.md), against a real Keyward process serving `/api/1/key/derive-with-secret-path`.
 *
 * The SDK's deterministic client (`TenantSecurityClient.deterministicClient`) asks Keyward for
 * derived keys (sha512, secretType `deterministic`) and does AES-SIV itself; every ciphertext
 * starts with a 6-byte header: the tenantSecretId (u32, big-endian) and two zero bytes. Nothing
 * here talks HTTP itself: every request is the SDK's own, every result and error is what the
 * SDK made of Keyward's answer.
 *
 * Tenants: the `local` KMS direct (secrets in files Keyward creates, `createIfMissing`) and
 * leased, SoftHSM2 (PKCS#11) and AWS KMS (nsmithuk/local-kms), whose secrets this file wraps
 * with the repository's own drivers (`wrapNewSecret`) and writes inline; one tenant without a
 * deterministic secret, one without a primary config. Reloads (SIGHUP) rotate the secrets.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { access, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  FieldMetadata,
  KmsException,
  TenantSecurityClient,
  TenantSecurityErrorCode,
  TenantSecurityException,
  TscException,
  type DeterministicEncryptedField,
  type DeterministicPlaintextField,
  type DeterministicPlaintextFieldCollection,
} from '@ironcorelabs/tenant-security-nodejs';
import { parseTenantsFile } from '../../src/config/tenants-file.js';
import { wrapNewSecret } from '../../src/derivation/derive.js';
import { edekFromBase64 } from '../../src/envelope/edek.js';
import type { DriverContext, KmsDriver } from '../../src/kms/driver.js';
import { createAwsDriver } from '../../src/kms/drivers/aws.js';
import { createLocalDriver } from '../../src/kms/drivers/local.js';
import { createPkcs11Driver } from '../../src/kms/drivers/pkcs11.js';
import { createLogger } from '../../src/logger.js';
import { LOCAL_KMS_REGION, TEST_ACCESS_KEY_ID, TEST_SECRET_ACCESS_KEY, startLocalKms, type LocalKms } from '../helpers/local-kms.js';
import { startKeyward, stopKeyward, type KeywardProcess } from '../helpers/process.js';
import { cleanupSoftHsm, createSoftHsmToken, SOFTHSM_MODULE, type SoftHsmToken } from '../helpers/softhsm.js';

const API_KEY = 'interop-det-api-key-0123456789abcdef';
const PIN_ENV = 'INTEROP_HSM_PIN';
const KEY_ENV = 'INTEROP_AWS_ACCESS_KEY_ID';
const SECRET_ENV = 'INTEROP_AWS_SECRET_ACCESS_KEY';

/** The four tenants with a deterministic secret and a primary config. */
const WORKING = [
  { tenantId: 'det-local', configId: 1 },
  { tenantId: 'det-leased', configId: 2 },
  { tenantId: 'det-hsm', configId: 3 },
  { tenantId: 'det-aws', configId: 4 },
] as const;
type WorkingTenant = (typeof WORKING)[number]['tenantId'];
/** Has a primary config but no derivation secret at all. */
const NO_SECRET = 'det-nosecret';
/** Has only a current secret of type `search`: nothing for the SDK's `deterministic` requests. */
const SEARCH_ONLY = 'det-searchonly';
/** Has a current deterministic secret, wrapped by a config that is active but not primary. */
const NO_PRIMARY = 'det-noprimary';

/** 1: secret 1 current. 2: secret 2 current, 1 in-rotation. 3: secret 2 current, 1 archived. */
type Phase = 1 | 2 | 3;

function meta(tenantId: string): FieldMetadata {
  return new FieldMetadata(tenantId, 'interop-suite', 'PII', '127.0.0.1', `obj-${randomUUID()}`, `req-${randomUUID()}`, {
    suite: 'interop-deterministic',
  });
}

function field(plaintext: string | Buffer, secretPath: string, derivationPath: string): DeterministicPlaintextField {
  return { plaintextField: typeof plaintext === 'string' ? Buffer.from(plaintext, 'utf8') : plaintext, secretPath, derivationPath };
}

/** A "document": several fields, each under its own secret path / derivation path. */
function sampleDocument(): DeterministicPlaintextFieldCollection {
  return {
    name: field('Ada Lovelace', 'customers', 'name'),
    email: field('ada@example.org', 'customers', 'email'),
    ssn: field('123-45-6789', 'customers/pii', 'ssn'),
    city: field('Zürich — ünïcödé ✓', 'addresses', 'city'),
    blob: field(randomBytes(1024), 'attachments', 'thumbnail'),
    one: field(Buffer.from([0]), 'flags', 'bit'),
  };
}

/** The tenantSecretId of the SDK's deterministic header (u32 big-endian, then two zero bytes). */
function secretIdOf(encrypted: DeterministicEncryptedField): number {
  const bytes = encrypted.encryptedField;
  assert.ok(bytes.length > 6 && bytes[4] === 0 && bytes[5] === 0, 'deterministic header: 4-byte secret id and 2 zero bytes');
  return bytes.readUInt32BE(0);
}

function assertSameField(actual: DeterministicPlaintextField, expected: DeterministicPlaintextField, what: string): void {
  assert.ok(actual.plaintextField.equals(expected.plaintextField), `${what}: plaintext round-trips`);
  assert.equal(actual.secretPath, expected.secretPath, `${what}: secretPath`);
  assert.equal(actual.derivationPath, expected.derivationPath, `${what}: derivationPath`);
}

/** The thrown value is the SDK's own exception class with this code (and message, if given). */
async function rejectsWith(
  promise: Promise<unknown>,
  type: abstract new (...args: never[]) => TenantSecurityException,
  code: TenantSecurityErrorCode,
  message?: RegExp,
): Promise<TenantSecurityException> {
  let caught: unknown;
  await assert.rejects(promise, (err: unknown) => {
    caught = err;
    return true;
  });
  return assertException(caught, type, code, message);
}

function assertException(
  caught: unknown,
  type: abstract new (...args: never[]) => TenantSecurityException,
  code: TenantSecurityErrorCode,
  message?: RegExp,
): TenantSecurityException {
  const err = caught as TenantSecurityException;
  const seen = `${(err as Error)?.constructor?.name} code ${String(err?.errorCode)} http ${String(err?.httpResponseCode)}: ${String((err as Error)?.message)}`;
  assert.ok(err instanceof type, `expected ${type.name}, got ${seen}`);
  assert.equal(err.errorCode, code, `expected code ${code}, got ${seen}`);
  if (message) assert.match(err.message, message, seen);
  return err;
}

/** A batch's failures as `id: code message`, for assertion messages. */
function failures(result: { failures: Record<string, TenantSecurityException> }): string {
  return Object.entries(result.failures)
    .map(([id, err]) => `${id}: ${err.errorCode} ${err.message}`)
    .join('; ');
}

function hex(encrypted: DeterministicEncryptedField): string {
  return encrypted.encryptedField.toString('hex');
}

describe('tenant-security-nodejs 4.1.3 deterministic encryption against a Keyward process: local, leased, SoftHSM2 and AWS tenants', () => {
  let dir: string;
  let configPath: string;
  let token: SoftHsmToken;
  let kms: LocalKms;
  let proc: KeywardProcess;
  let client: TenantSecurityClient;
  /** Inline wrapped secrets (ids 1 and 2) of the tenants whose secrets this file makes. */
  const wrapped: Record<string, Record<1 | 2, string>> = {};

  const secretsYaml = (tenantId: WorkingTenant, configId: number, phase: Phase): string => {
    const source = (id: 1 | 2) =>
      tenantId === 'det-local' ? `{ file: secrets/det-local-${id}.b64, createIfMissing: true }` : JSON.stringify(wrapped[tenantId]![id]);
    const first = phase === 1 ? 'current' : phase === 2 ? 'in-rotation' : 'archived';
    // det-hsm names the type explicitly; the others rely on the default (deterministic).
    const type = tenantId === 'det-hsm' ? 'type: deterministic, ' : '';
    const lines = [`      - { id: 1, state: ${first}, ${type}kmsConfigId: ${configId}, wrapped: ${source(1)} }`];
    if (phase > 1) lines.push(`      - { id: 2, state: current, ${type}kmsConfigId: ${configId}, wrapped: ${source(2)} }`);
    return `    derivationSecrets:\n${lines.join('\n')}\n`;
  };

  const configsYaml = (): Record<WorkingTenant, string> => ({
    'det-local': `      - { id: 1, status: primary, provider: local, local: { keyFile: keys/local.key } }\n`,
    'det-leased': `      - { id: 2, status: primary, provider: local, local: { keyFile: keys/local.key }, leasing: { enabled: true } }\n`,
    'det-hsm': `      - id: 3
        status: primary
        provider: pkcs11
        pkcs11: { module: ${SOFTHSM_MODULE}, tokenLabel: ${token.label}, pin: { env: ${PIN_ENV} }, keyLabel: interop-det-mk }
`,
    'det-aws': `      - id: 4
        status: primary
        provider: aws
        aws:
          region: ${LOCAL_KMS_REGION}
          keyId: ${kms.keys.interop!.arn}
          endpoint: ${kms.endpoint}
          credentials: { type: static, accessKeyId: { env: ${KEY_ENV} }, secretAccessKey: { env: ${SECRET_ENV} } }
`,
  });

  /** The tenants file of a phase; `withSecrets: false` gives the configs alone (to wrap secrets under them). */
  const tenantsYaml = (phase: Phase, withSecrets = true): string => {
    const configs = configsYaml();
    let text = 'version: 1\ntenants:\n';
    for (const { tenantId, configId } of WORKING) {
      text += `  ${tenantId}:\n    kmsConfigs:\n${configs[tenantId]}`;
      if (withSecrets) text += secretsYaml(tenantId, configId, phase);
    }
    text += `  ${NO_SECRET}:\n    kmsConfigs:\n      - { id: 5, status: primary, provider: local, local: { keyFile: keys/local.key } }\n`;
    text += `  ${SEARCH_ONLY}:
    kmsConfigs:
      - { id: 6, status: primary, provider: local, local: { keyFile: keys/local.key } }
    derivationSecrets:
      - { id: 1, state: current, type: search, kmsConfigId: 6, wrapped: { file: secrets/searchonly-1.b64, createIfMissing: true } }
`;
    text += `  ${NO_PRIMARY}:
    kmsConfigs:
      - { id: 7, status: active, provider: local, local: { keyFile: keys/local.key } }
    derivationSecrets:
      - { id: 3, state: current, kmsConfigId: 7, wrapped: { file: secrets/noprimary-3.b64, createIfMissing: true } }
`;
    return text;
  };

  /** Rewrites the tenants file, sends SIGHUP and waits for the next `tenants file reloaded` line. */
  async function reloadTo(phase: Phase): Promise<void> {
    const reloads = (): number => proc.lines.filter((l) => l.includes('"tenants file reload')).length;
    const before = reloads();
    await writeFile(configPath, tenantsYaml(phase));
    proc.child.kill('SIGHUP');
    const deadline = Date.now() + 10_000;
    while (reloads() === before) {
      assert.ok(Date.now() < deadline, `no reload line within 10 s; stdout: ${proc.lines.slice(-5).join('\n')}`);
      await new Promise((r) => setTimeout(r, 20));
    }
    const last = proc.lines.filter((l) => l.includes('"tenants file reload')).at(-1)!;
    assert.equal((JSON.parse(last) as { msg: string }).msg, 'tenants file reloaded', `reload to phase ${phase}: ${last}`);
  }

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'keyward-interop-det-'));
    configPath = join(dir, 'tenants.yaml');
    token = await createSoftHsmToken({ label: 'keyward-interop-det', keys: ['interop-det-mk'] });
    kms = await startLocalKms([{ name: 'interop' }]);

    // Wrap secrets 1 and 2 of the leased, HSM and AWS tenants with the repository's own drivers,
    // under the configs exactly as Keyward parses them from the file.
    const directory = parseTenantsFile(tenantsYaml(1, false), { baseDir: dir, defaultKmsTimeoutMs: 10_000 });
    const ctx: DriverContext = {
      logger: createLogger({ level: 'silent' }),
      env: { [PIN_ENV]: token.pin, [KEY_ENV]: TEST_ACCESS_KEY_ID, [SECRET_ENV]: TEST_SECRET_ACCESS_KEY },
    };
    const drivers: Record<string, () => Promise<KmsDriver>> = {
      'det-leased': () => {
        const config = directory.config(2)!;
        assert.equal(config.provider, 'local');
        return createLocalDriver({ keyFile: config.provider === 'local' ? config.local.keyFile : '' }, ctx);
      },
      'det-hsm': () =>
        createPkcs11Driver({ module: SOFTHSM_MODULE, tokenLabel: token.label, pin: token.pin, keyLabel: 'interop-det-mk', mechanism: 'aes-gcm', sessions: 1 }, ctx),
      'det-aws': () => {
        const config = directory.config(4)!;
        assert.equal(config.provider, 'aws');
        if (config.provider !== 'aws') throw new Error('not aws');
        return createAwsDriver(config.aws, ctx);
      },
    };
    for (const { tenantId, configId } of WORKING) {
      const make = drivers[tenantId];
      if (!make) continue;
      const driver = await make();
      try {
        const config = directory.config(configId)!;
        wrapped[tenantId] = { 1: await wrapNewSecret(config, 1, driver), 2: await wrapNewSecret(config, 2, driver) };
      } finally {
        await driver.close();
      }
    }

    await writeFile(configPath, tenantsYaml(1));
    proc = await startKeyward({
      KEYWARD_CONFIG: configPath,
      KEYWARD_API_KEY: API_KEY,
      SOFTHSM2_CONF: process.env.SOFTHSM2_CONF!,
      [PIN_ENV]: token.pin,
      [KEY_ENV]: TEST_ACCESS_KEY_ID,
      [SECRET_ENV]: TEST_SECRET_ACCESS_KEY,
    });
    // The SDK appends `/api/1/<endpoint>` to this base URL.
    client = new TenantSecurityClient(proc.apiUrl, API_KEY);
  });

  after(async () => {
    if (proc) await stopKeyward(proc);
    if (kms) await kms.close();
    await cleanupSoftHsm();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('Keyward created the createIfMissing secrets at start, wrapped for their tenant and config', async () => {
    for (const [file, tenantId, configId] of [
      ['det-local-1.b64', 'det-local', 1],
      ['searchonly-1.b64', SEARCH_ONLY, 6],
      ['noprimary-3.b64', NO_PRIMARY, 7],
    ] as const) {
      const [entry, ...rest] = edekFromBase64((await readFile(join(dir, 'secrets', file), 'utf8')).trim());
      assert.equal(rest.length, 0);
      assert.equal(entry!.tenantId, tenantId);
      assert.equal(entry!.kmsConfigId, configId);
    }
    await assert.rejects(access(join(dir, 'secrets', 'det-local-2.b64')), 'secret 2 is not in the file yet');
  });

  for (const { tenantId } of WORKING) {
    it(`${tenantId}: encryptFieldBatch / decryptFieldBatch of a several-field document, and single fields, round trip`, async () => {
      const det = client.deterministicClient;
      const doc = sampleDocument();
      const encrypted = await det.encryptFieldBatch(doc, meta(tenantId));
      assert.equal(encrypted.hasFailures, false, `${tenantId}: ${failures(encrypted)}`);
      assert.deepEqual(Object.keys(encrypted.successes).sort(), Object.keys(doc).sort());
      for (const [id, enc] of Object.entries(encrypted.successes)) {
        assert.ok(det.isCiphertext(enc.encryptedField), `${id}: the SDK recognises its deterministic header`);
        assert.equal(secretIdOf(enc), 1, `${id}: encrypted under tenant secret 1`);
        assert.ok(!enc.encryptedField.subarray(6).equals(doc[id]!.plaintextField), `${id}: not the plaintext`);
        assert.equal(enc.secretPath, doc[id]!.secretPath);
        assert.equal(enc.derivationPath, doc[id]!.derivationPath);
      }
      const decrypted = await det.decryptFieldBatch(encrypted.successes, meta(tenantId));
      assert.equal(decrypted.hasFailures, false, `${tenantId}: ${failures(decrypted)}`);
      for (const [id, plain] of Object.entries(doc)) assertSameField(decrypted.successes[id]!, plain, `${tenantId}/${id}`);

      // One field at a time: its own derive request, the same ciphertext as in the batch.
      const single = await det.encryptField(doc.ssn!, meta(tenantId));
      assert.equal(hex(single), hex(encrypted.successes.ssn!), 'single-field and batch encryption agree');
      assertSameField(await det.decryptField(single, meta(tenantId)), doc.ssn!, `${tenantId}/ssn single`);
    });
  }

  it('determinism: same plaintext and paths give the same ciphertext; paths and tenants change it; the search term is the ciphertext', async () => {
    const det = client.deterministicClient;
    const plain = field('jane.doe@example.com', 'customers', 'email');
    const perTenant: string[] = [];
    for (const { tenantId } of WORKING) {
      const first = await det.encryptField(plain, meta(tenantId));
      const second = await det.encryptField(field('jane.doe@example.com', 'customers', 'email'), meta(tenantId));
      assert.equal(hex(second), hex(first), `${tenantId}: same plaintext and path, same ciphertext`);
      const batch = await det.encryptFieldBatch({ a: plain, b: plain }, meta(tenantId));
      assert.equal(hex(batch.successes.a!), hex(first), `${tenantId}: batch gives the same ciphertext`);
      assert.equal(hex(batch.successes.b!), hex(first));
      const terms = await det.generateSearchTerms(plain, meta(tenantId));
      assert.equal(terms.length, 1, `${tenantId}: one secret, one search term`);
      assert.equal(hex(terms[0]!), hex(first), `${tenantId}: the search term is the stored ciphertext`);

      // Another derivation path, another secret path, another plaintext: another ciphertext.
      const variants = await det.encryptFieldBatch(
        {
          derivation: field('jane.doe@example.com', 'customers', 'backup-email'),
          secret: field('jane.doe@example.com', 'suppliers', 'email'),
          text: field('jane.doe@example.org', 'customers', 'email'),
        },
        meta(tenantId),
      );
      assert.equal(variants.hasFailures, false);
      const all = [hex(first), ...Object.values(variants.successes).map(hex)];
      assert.equal(new Set(all).size, 4, `${tenantId}: paths and plaintext change the ciphertext`);
      // The paths are bound to the key: the ciphertext under another derivation path does not decrypt.
      await rejectsWith(det.decryptField({ ...first, derivationPath: 'backup-email' }, meta(tenantId)), TscException, TenantSecurityErrorCode.DETERMINISTIC_FIELD_DECRYPT_FAILED);
      await rejectsWith(det.decryptField({ ...first, secretPath: 'suppliers' }, meta(tenantId)), TscException, TenantSecurityErrorCode.DETERMINISTIC_FIELD_DECRYPT_FAILED);
      perTenant.push(hex(first));
    }
    assert.equal(new Set(perTenant).size, WORKING.length, 'the same plaintext encrypts differently for every tenant');
  });

  it("another tenant's ciphertext does not decrypt (SDK error 904), singly or in a batch", async () => {
    const det = client.deterministicClient;
    const plain = field('4111 1111 1111 1111', 'payments', 'card');
    const encrypted = new Map<string, DeterministicEncryptedField>();
    for (const { tenantId } of WORKING) encrypted.set(tenantId, await det.encryptField(plain, meta(tenantId)));
    for (let i = 0; i < WORKING.length; i++) {
      const owner = WORKING[i]!.tenantId;
      const other = WORKING[(i + 1) % WORKING.length]!.tenantId;
      // Same header (secret id 1 in both tenants), another tenant's key: AES-SIV refuses it.
      await rejectsWith(det.decryptField(encrypted.get(owner)!, meta(other)), TscException, TenantSecurityErrorCode.DETERMINISTIC_FIELD_DECRYPT_FAILED);
      const batch = await det.decryptFieldBatch({ mine: encrypted.get(other)!, foreign: encrypted.get(owner)! }, meta(other));
      assert.deepEqual(Object.keys(batch.successes), ['mine']);
      assertSameField(batch.successes.mine!, plain, `${other}/mine`);
      assertException(batch.failures.foreign, TscException, TenantSecurityErrorCode.DETERMINISTIC_FIELD_DECRYPT_FAILED);
      // The owner still decrypts it.
      assertSameField(await det.decryptField(encrypted.get(owner)!, meta(owner)), plain, `${owner}/own`);
    }
  });

  it('no deterministic derivation secret (none at all, or only a search one) and unknown tenants: the SDK surfaces 201', async () => {
    const det = client.deterministicClient;
    const plain = field('x', 'customers', 'name');
    const someCiphertext = await det.encryptField(plain, meta('det-local'));
    for (const tenantId of [NO_SECRET, SEARCH_ONLY, 'det-no-such-tenant']) {
      const code = TenantSecurityErrorCode.UNKNOWN_TENANT_OR_NO_ACTIVE_KMS_CONFIGURATIONS;
      const err = await rejectsWith(det.encryptField(plain, meta(tenantId)), KmsException, code);
      assert.equal(err.httpResponseCode, 404, err.message);
      await rejectsWith(det.decryptField(someCiphertext, meta(tenantId)), KmsException, code);
      await rejectsWith(det.generateSearchTerms(plain, meta(tenantId)), KmsException, code);
      await rejectsWith(det.rotateField(someCiphertext, meta(tenantId)), KmsException, code);
      // Batches: the derive call fails as a whole, so the whole batch rejects with it.
      await rejectsWith(det.encryptFieldBatch({ a: plain }, meta(tenantId)), KmsException, code);
    }
    // The document API of the same tenant is unaffected: it has a primary config.
    const doc = { a: Buffer.from('still fine') };
    const enc = await client.encryptDocument(doc, meta(NO_SECRET));
    assert.ok((await client.decryptDocument(enc, meta(NO_SECRET))).plaintextDocument.a!.equals(doc.a));
  });

  it('a tenant with no primary config still derives: search terms and decryption work; the SDK itself refuses encrypt and rotate', async () => {
    const det = client.deterministicClient;
    const plain = field('Grace Hopper', 'customers', 'name');
    // hasPrimaryConfig false does not fail the derive call: search terms are made…
    const terms = await det.generateSearchTerms(plain, meta(NO_PRIMARY));
    assert.equal(terms.length, 1);
    assert.equal(secretIdOf(terms[0]!), 3, 'under the tenant secret 3');
    assert.equal(hex(await det.generateSearchTerms(plain, meta(NO_PRIMARY)).then((t) => t[0]!)), hex(terms[0]!), 'deterministically');
    // …and a search term is a ciphertext the tenant decrypts, singly and in a batch.
    assertSameField(await det.decryptField(terms[0]!, meta(NO_PRIMARY)), plain, 'no-primary decrypt');
    const batch = await det.decryptFieldBatch({ t: terms[0]! }, meta(NO_PRIMARY));
    assert.equal(batch.hasFailures, false);
    assertSameField(batch.successes.t!, plain, 'no-primary batch decrypt');
    const searchBatch = await det.generateSearchTermsBatch({ n: plain }, meta(NO_PRIMARY));
    assert.equal(hex(searchBatch.successes.n![0]!), hex(terms[0]!));
    // The SDK, seeing hasPrimaryConfig false, refuses to make new ciphertext (its own rule, not Keyward's).
    await rejectsWith(det.encryptField(plain, meta(NO_PRIMARY)), TscException, TenantSecurityErrorCode.DETERMINISTIC_FIELD_ENCRYPT_FAILED, /no primary KMS configuration/);
    await rejectsWith(det.encryptFieldBatch({ a: plain }, meta(NO_PRIMARY)), TscException, TenantSecurityErrorCode.DETERMINISTIC_FIELD_ENCRYPT_FAILED);
    await rejectsWith(det.rotateField(terms[0]!, meta(NO_PRIMARY)), TscException, TenantSecurityErrorCode.DETERMINISTIC_ROTATE_FAILED, /no primary KMS configuration/);
  });

  describe('rotation by reloads: secret 1 current → 2 current and 1 in-rotation → 1 archived', () => {
    /** Per tenant: a document and a lone field encrypted under secret 1, and what became of them. */
    const state = new Map<
      string,
      {
        doc: DeterministicPlaintextFieldCollection;
        underOne: Record<string, DeterministicEncryptedField>;
        lone: DeterministicPlaintextField;
        loneUnderOne: DeterministicEncryptedField;
        rotated?: Record<string, DeterministicEncryptedField>;
      }
    >();

    it('secret 1 current: documents are encrypted under secret 1, one search term each', async () => {
      const det = client.deterministicClient;
      for (const { tenantId } of WORKING) {
        const doc = sampleDocument();
        const enc = await det.encryptFieldBatch(doc, meta(tenantId));
        assert.equal(enc.hasFailures, false);
        for (const e of Object.values(enc.successes)) assert.equal(secretIdOf(e), 1);
        const lone = field(`lone field of ${tenantId}`, 'customers', 'note');
        const loneUnderOne = await det.encryptField(lone, meta(tenantId));
        assert.equal(secretIdOf(loneUnderOne), 1);
        const terms = await det.generateSearchTerms(doc.email!, meta(tenantId));
        assert.deepEqual(terms.map(hex), [hex(enc.successes.email!)]);
        // Rotating under one secret is a no-op: the SDK hands back the same ciphertext.
        assert.equal(hex(await det.rotateField(loneUnderOne, meta(tenantId))), hex(loneUnderOne));
        state.set(tenantId, { doc, underOne: enc.successes, lone, loneUnderOne });
      }
    });

    it('reload: secret 2 (new) current, 1 in-rotation → old fields decrypt, 2 search terms, rotateField(Batch) re-encrypts under secret 2', async () => {
      await reloadTo(2);
      // Keyward made det-local's secret 2 (createIfMissing) during the reload.
      const [entry] = edekFromBase64((await readFile(join(dir, 'secrets', 'det-local-2.b64'), 'utf8')).trim());
      assert.equal(entry!.tenantId, 'det-local');
      assert.equal(entry!.kmsConfigId, 1);

      const det = client.deterministicClient;
      for (const { tenantId } of WORKING) {
        const s = state.get(tenantId)!;
        // Fields under secret 1 still decrypt.
        const dec = await det.decryptFieldBatch(s.underOne, meta(tenantId));
        assert.equal(dec.hasFailures, false, `${tenantId}: ${failures(dec)}`);
        for (const [id, plain] of Object.entries(s.doc)) assertSameField(dec.successes[id]!, plain, `${tenantId}/${id} under 1`);
        assertSameField(await det.decryptField(s.loneUnderOne, meta(tenantId)), s.lone, `${tenantId}/lone under 1`);

        // New encryption uses the current secret 2.
        const fresh = await det.encryptField(s.doc.email!, meta(tenantId));
        assert.equal(secretIdOf(fresh), 2, `${tenantId}: new ciphertext under secret 2`);
        assert.notEqual(hex(fresh), hex(s.underOne.email!));
        assertSameField(await det.decryptField(fresh, meta(tenantId)), s.doc.email!, `${tenantId}/email under 2`);

        // Two search terms while rotating: exactly the old and the new ciphertext.
        const terms = await det.generateSearchTerms(s.doc.email!, meta(tenantId));
        assert.equal(terms.length, 2, `${tenantId}: two search terms while rotating`);
        assert.deepEqual(terms.map(hex).sort(), [hex(s.underOne.email!), hex(fresh)].sort());
        assert.deepEqual(terms.map(secretIdOf).sort(), [1, 2]);
        const termsBatch = await det.generateSearchTermsBatch({ e: s.doc.email!, n: s.doc.name! }, meta(tenantId));
        assert.equal(termsBatch.successes.e!.length, 2);
        assert.equal(termsBatch.successes.n!.length, 2);

        // rotateFieldBatch re-encrypts the document under secret 2; rotating again is a no-op.
        const rotated = await det.rotateFieldBatch(s.underOne, meta(tenantId));
        assert.equal(rotated.hasFailures, false, `${tenantId}: ${failures(rotated)}`);
        for (const [id, r] of Object.entries(rotated.successes)) {
          assert.equal(secretIdOf(r), 2, `${tenantId}/${id}: rotated to secret 2`);
          assert.notEqual(hex(r), hex(s.underOne[id]!));
        }
        assert.equal(hex(rotated.successes.email!), hex(fresh), 'the rotated field is what encrypting anew gives');
        assert.equal(hex(await det.rotateField(rotated.successes.ssn!, meta(tenantId))), hex(rotated.successes.ssn!));
        const back = await det.decryptFieldBatch(rotated.successes, meta(tenantId));
        assert.equal(back.hasFailures, false);
        for (const [id, plain] of Object.entries(s.doc)) assertSameField(back.successes[id]!, plain, `${tenantId}/${id} rotated`);
        s.rotated = rotated.successes;
        // The lone field stays under secret 1 on purpose (it is never rotated).
      }
    });

    it('reload: secret 1 archived → one search term; un-rotated fields no longer decrypt (SDK error), rotated ones do', async () => {
      await reloadTo(3);
      const det = client.deterministicClient;
      for (const { tenantId } of WORKING) {
        const s = state.get(tenantId)!;
        const terms = await det.generateSearchTerms(s.doc.email!, meta(tenantId));
        assert.equal(terms.length, 1, `${tenantId}: one search term once secret 1 is archived`);
        assert.equal(hex(terms[0]!), hex(s.rotated!.email!));

        const back = await det.decryptFieldBatch(s.rotated!, meta(tenantId));
        assert.equal(back.hasFailures, false, `${tenantId}: ${failures(back)}`);
        for (const [id, plain] of Object.entries(s.doc)) assertSameField(back.successes[id]!, plain, `${tenantId}/${id} rotated, after archive`);

        await rejectsWith(det.decryptField(s.loneUnderOne, meta(tenantId)), TscException, TenantSecurityErrorCode.DETERMINISTIC_FIELD_DECRYPT_FAILED);
        await rejectsWith(det.rotateField(s.loneUnderOne, meta(tenantId)), TscException, TenantSecurityErrorCode.DETERMINISTIC_ROTATE_FAILED);
        const mixed = await det.decryptFieldBatch({ rotated: s.rotated!.name!, archived: s.underOne.name! }, meta(tenantId));
        assert.deepEqual(Object.keys(mixed.successes), ['rotated']);
        assertSameField(mixed.successes.rotated!, s.doc.name!, `${tenantId}/name rotated`);
        assertException(mixed.failures.archived, TscException, TenantSecurityErrorCode.DETERMINISTIC_FIELD_DECRYPT_FAILED);
        assert.equal(secretIdOf(await det.encryptField(s.lone, meta(tenantId))), 2);
      }
    });
  });
});
