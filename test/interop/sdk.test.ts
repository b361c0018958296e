/**
 * Interop: IronCore Labs' published Node SDK, @ironcorelabs/tenant-security-nodejs 4.1.3
 * (AGPL, installed only in this separate package, see README.md), against a real Keyward
 * process on 127.0.0.1 speaking the `/api/1` wire API (/work/shared/ironcore-compat.md).
 * Nothing here talks HTTP itself: every request is the SDK's own, every result and error is
 * what the SDK made of Keyward's answer. Tenants: the `local` KMS direct and leased,
 * SoftHSM2 (PKCS#11), AWS KMS (nsmithuk/local-kms), one with no primary configuration, and
 * one whose configuration a reload disables. Key derivation is not covered here.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  CustomSecurityEvent,
  DataEvent,
  DocumentMetadata,
  EventMetadata,
  KmsException,
  TenantSecurityClient,
  TenantSecurityErrorCode,
  TenantSecurityException,
  TspServiceException,
  UserEvent,
  type EncryptedDocumentWithEdek,
  type PlaintextDocument,
} from '@ironcorelabs/tenant-security-nodejs';
import { edekFromBase64 } from '../../src/envelope/edek.js';
import { LOCAL_KMS_REGION, TEST_ACCESS_KEY_ID, TEST_SECRET_ACCESS_KEY, startLocalKms, type LocalKms } from '../helpers/local-kms.js';
import { startKeyward, stopKeyward, type KeywardProcess } from '../helpers/process.js';
import { cleanupSoftHsm, createSoftHsmToken, SOFTHSM_MODULE, type SoftHsmToken } from '../helpers/softhsm.js';

const API_KEY = 'interop-sdk-api-key-0123456789abcdef';
const PIN_ENV = 'INTEROP_HSM_PIN';
const KEY_ENV = 'INTEROP_AWS_ACCESS_KEY_ID';
const SECRET_ENV = 'INTEROP_AWS_SECRET_ACCESS_KEY';

/** The four tenants that can wrap, with the KMS config id each one's EDEKs must name. */
const WORKING = [
  { tenantId: 'sdk-local', configId: 1, leased: false },
  { tenantId: 'sdk-leased', configId: 2, leased: true },
  { tenantId: 'sdk-hsm', configId: 3, leased: false },
  { tenantId: 'sdk-aws', configId: 4, leased: false },
] as const;
const NO_PRIMARY = 'sdk-noprimary';

function meta(tenantId: string, extra: Partial<{ objectId: string; requestId: string }> = {}): DocumentMetadata {
  return new DocumentMetadata(
    tenantId,
    'interop-suite',
    'PII',
    '127.0.0.1',
    extra.objectId ?? `obj-${randomUUID()}`,
    extra.requestId ?? `req-${randomUUID()}`,
    { suite: 'interop', sdk: 'tenant-security-nodejs@4.1.3' },
  );
}

function sampleDocument(): PlaintextDocument {
  return {
    text: Buffer.from('Grüße from the tenant-security SDK — ünïcödé ✓', 'utf8'),
    json: Buffer.from(JSON.stringify({ ssn: '123-45-6789', name: 'Ada Lovelace', tags: ['a', 'b'] })),
    binary: randomBytes(4096),
    one: Buffer.from([0]),
  };
}

function assertSameDocument(actual: PlaintextDocument, expected: PlaintextDocument): void {
  assert.deepEqual(Object.keys(actual).sort(), Object.keys(expected).sort());
  for (const [field, bytes] of Object.entries(expected)) {
    assert.ok(Buffer.isBuffer(actual[field]), `field ${field} is a Buffer`);
    assert.ok(actual[field]!.equals(bytes), `field ${field} round-trips`);
  }
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
  const err = caught as TenantSecurityException;
  const seen = `${(err as Error)?.constructor?.name} code ${String(err?.errorCode)} http ${String(err?.httpResponseCode)}: ${String((err as Error)?.message)}`;
  assert.ok(err instanceof type, `expected ${type.name}, got ${seen}`);
  assert.equal(err.errorCode, code, `expected code ${code}, got ${seen}`);
  if (message) assert.match(err.message, message, seen);
  return err;
}

/** Resolves once the process has written a stdout line containing every one of these strings. */
function waitForLine(proc: KeywardProcess, ...needles: string[]): Promise<Record<string, unknown>> {
  return proc.waitForLog((entry) => {
    const text = JSON.stringify(entry);
    return needles.every((n) => text.includes(n));
  }, 10_000);
}

describe('tenant-security-nodejs 4.1.3 against a Keyward process: local, leased, SoftHSM2 and AWS tenants', () => {
  let dir: string;
  let token: SoftHsmToken;
  let kms: LocalKms;
  let proc: KeywardProcess;
  let client: TenantSecurityClient;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'keyward-interop-'));
    token = await createSoftHsmToken({ label: 'keyward-interop', keys: ['interop-mk'] });
    kms = await startLocalKms([{ name: 'interop' }]);
    const configPath = join(dir, 'tenants.yaml');
    await writeFile(
      configPath,
      `version: 1
audit:
  sinks:
    # A SIEM that is down (nothing listens on port 1), with room for one event.
    siem-down:
      type: http
      http: { url: 'http://127.0.0.1:1/events' }
      queue: { size: 1, minBackoff: 1s, maxBackoff: 1s }
tenants:
  sdk-required:
    audit: { sinks: [siem-down], policy: required }
    kmsConfigs:
      - { id: 6, status: primary, provider: local, local: { keyFile: keys/local.key } }
  sdk-local:
    kmsConfigs:
      - { id: 1, status: primary, provider: local, local: { keyFile: keys/local.key } }
  sdk-leased:
    kmsConfigs:
      - { id: 2, status: primary, provider: local, local: { keyFile: keys/local.key }, leasing: { enabled: true } }
  sdk-hsm:
    kmsConfigs:
      - id: 3
        status: primary
        provider: pkcs11
        pkcs11: { module: ${SOFTHSM_MODULE}, tokenLabel: ${token.label}, pin: { env: ${PIN_ENV} }, keyLabel: interop-mk }
  sdk-aws:
    kmsConfigs:
      - id: 4
        status: primary
        provider: aws
        aws:
          region: ${LOCAL_KMS_REGION}
          keyId: ${kms.keys.interop!.arn}
          endpoint: ${kms.endpoint}
          credentials: { type: static, accessKeyId: { env: ${KEY_ENV} }, secretAccessKey: { env: ${SECRET_ENV} } }
  ${NO_PRIMARY}:
    kmsConfigs:
      - { id: 5, status: active, provider: local, local: { keyFile: keys/local.key } }
`,
    );
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

  for (const { tenantId, configId, leased } of WORKING) {
    it(`${tenantId}: encryptDocument / decryptDocument round trip, text and binary fields`, async () => {
      const doc = sampleDocument();
      const encrypted = await client.encryptDocument(doc, meta(tenantId));
      assert.deepEqual(Object.keys(encrypted.encryptedDocument).sort(), Object.keys(doc).sort());
      for (const [field, bytes] of Object.entries(encrypted.encryptedDocument)) {
        assert.ok(client.isCiphertext(bytes), `field ${field} carries the SDK's CMK header`);
        assert.ok(!bytes.equals(doc[field]!), `field ${field} is not the plaintext`);
      }
      // The EDEK Keyward made: bound to this tenant and its primary config, leased or direct.
      const entries = edekFromBase64(encrypted.edek);
      assert.equal(entries.length, 1);
      assert.equal(entries[0]!.tenantId, tenantId);
      assert.equal(entries[0]!.kmsConfigId, configId);
      assert.equal(entries[0]!.leasedKeyId !== 0, leased, 'leased EDEK carries a leased key id, direct does not');

      const decrypted = await client.decryptDocument(encrypted, meta(tenantId));
      assert.equal(decrypted.edek, encrypted.edek);
      assertSameDocument(decrypted.plaintextDocument, doc);
    });
  }

  it('encryptDocumentWithExistingKey reuses the EDEK and decrypts to the new document', async () => {
    for (const { tenantId } of WORKING) {
      const first = await client.encryptDocument(sampleDocument(), meta(tenantId));
      const next = sampleDocument();
      const again = await client.encryptDocumentWithExistingKey({ plaintextDocument: next, edek: first.edek }, meta(tenantId));
      assert.equal(again.edek, first.edek, `${tenantId}: the EDEK is reused`);
      const decrypted = await client.decryptDocument(again, meta(tenantId));
      assertSameDocument(decrypted.plaintextDocument, next);
      // Same DEK: the first document's fields still decrypt under the shared EDEK.
      const mixed: EncryptedDocumentWithEdek = {
        edek: first.edek,
        encryptedDocument: { ...first.encryptedDocument, extra: again.encryptedDocument.text! },
      };
      const both = await client.decryptDocument(mixed, meta(tenantId));
      assert.ok(both.plaintextDocument.extra!.equals(next.text!), `${tenantId}: one DEK for both documents`);
    }
  });

  it('encryptStream / decryptStream round trip of a few hundred KB, file to file', async () => {
    for (const { tenantId } of [WORKING[0], WORKING[2]]) {
      const plaintext = randomBytes(384 * 1024 + 17);
      const [plainPath, encryptedPath, decryptedPath] = ['plain', 'encrypted', 'decrypted'].map((n) => join(dir, `${tenantId}.${n}`)) as [string, string, string];
      await writeFile(plainPath, plaintext);
      const { edek } = await client.encryptStream(createReadStream(plainPath, { highWaterMark: 64 * 1024 }), createWriteStream(encryptedPath), meta(tenantId));
      const ciphertext = await readFile(encryptedPath);
      assert.ok(ciphertext.length > plaintext.length, 'ciphertext carries header, IV and tag');
      assert.ok(client.isCiphertext(ciphertext));
      assert.equal(edekFromBase64(edek)[0]!.tenantId, tenantId);

      const result = await client.decryptStream(edek, createReadStream(encryptedPath), createWriteStream(decryptedPath), meta(tenantId));
      assert.equal(result.edek, edek);
      assert.ok((await readFile(decryptedPath)).equals(plaintext), `${tenantId}: stream round-trips`);
      // The stream decrypts only under its tenant's key service.
      await rejectsWith(
        client.decryptStream(edek, createReadStream(encryptedPath), createWriteStream(`${decryptedPath}.refused`), meta('sdk-aws')),
        KmsException,
        TenantSecurityErrorCode.INVALID_PROVIDED_EDEK,
      );
    }
  });

  it('batches: encryptDocumentBatch / decryptDocumentBatch, with per-document failures for a foreign and a corrupted EDEK', async () => {
    for (const { tenantId } of WORKING) {
      const docs: Record<string, PlaintextDocument> = {};
      for (let i = 0; i < 6; i++) docs[`doc-${i}`] = sampleDocument();
      const encrypted = await client.encryptDocumentBatch(docs, meta(tenantId));
      assert.equal(encrypted.hasFailures, false, `${tenantId}: ${JSON.stringify(encrypted.failures)}`);
      assert.deepEqual(Object.keys(encrypted.successes).sort(), Object.keys(docs).sort());
      assert.equal(new Set(Object.values(encrypted.successes).map((d) => d.edek)).size, 6, 'one EDEK per document');

      const other = WORKING.find((t) => t.tenantId !== tenantId)!.tenantId;
      const foreign = await client.encryptDocument(sampleDocument(), meta(other));
      const corrupted = Buffer.from(encrypted.successes['doc-5']!.edek, 'base64');
      // Byte 8 lies inside encryptedDekData (the KMS ciphertext or the lease-wrapped DEK).
      corrupted[8] = corrupted[8]! ^ 0xff;
      const batch = {
        ...encrypted.successes,
        'doc-4': { ...encrypted.successes['doc-4']!, edek: foreign.edek },
        'doc-5': { ...encrypted.successes['doc-5']!, edek: corrupted.toString('base64') },
        garbage: { ...encrypted.successes['doc-0']!, edek: randomBytes(40).toString('base64') },
      };
      const decrypted = await client.decryptDocumentBatch(batch, meta(tenantId));
      assert.equal(decrypted.hasSuccesses, true);
      assert.equal(decrypted.hasFailures, true);
      assert.deepEqual(Object.keys(decrypted.successes).sort(), ['doc-0', 'doc-1', 'doc-2', 'doc-3']);
      assert.deepEqual(Object.keys(decrypted.failures).sort(), ['doc-4', 'doc-5', 'garbage']);
      for (const id of ['doc-0', 'doc-1', 'doc-2', 'doc-3']) assertSameDocument(decrypted.successes[id]!.plaintextDocument, docs[id]!);
      const foreignFailure = decrypted.failures['doc-4']!;
      assert.ok(foreignFailure instanceof KmsException, `${tenantId}: foreign EDEK → KmsException (${foreignFailure.message})`);
      assert.equal(foreignFailure.errorCode, TenantSecurityErrorCode.INVALID_PROVIDED_EDEK, foreignFailure.message);
      assert.match(foreignFailure.message, /is not assigned to tenant/);
      for (const id of ['doc-5', 'garbage']) {
        const failure = decrypted.failures[id]!;
        assert.ok(failure instanceof KmsException, `${tenantId}/${id}: ${failure.constructor.name} ${failure.errorCode} ${failure.message}`);
        assert.ok(
          [TenantSecurityErrorCode.INVALID_PROVIDED_EDEK, TenantSecurityErrorCode.KMS_UNWRAP_FAILED].includes(failure.errorCode),
          `${tenantId}/${id}: code ${failure.errorCode} ${failure.message}`,
        );
      }
      assert.equal(decrypted.failures.garbage!.errorCode, TenantSecurityErrorCode.INVALID_PROVIDED_EDEK);

      // The same EDEKs re-used for new documents in one batch call (batch-unwrap underneath).
      const reuse = await client.encryptDocumentBatchWithExistingKey(
        { a: { plaintextDocument: docs['doc-1']!, edek: encrypted.successes['doc-0']!.edek }, bad: { plaintextDocument: docs['doc-2']!, edek: foreign.edek } },
        meta(tenantId),
      );
      assert.deepEqual(Object.keys(reuse.successes), ['a']);
      assert.equal(reuse.successes.a!.edek, encrypted.successes['doc-0']!.edek);
      assert.equal(reuse.failures.bad!.errorCode, TenantSecurityErrorCode.INVALID_PROVIDED_EDEK);
      assertSameDocument((await client.decryptDocument(reuse.successes.a!, meta(tenantId))).plaintextDocument, docs['doc-1']!);
    }
  });

  it('rekeyEdek to another tenant and to the same tenant; the old tenant is then refused with 203', async () => {
    const moves = [
      ['sdk-local', 'sdk-aws'],
      ['sdk-aws', 'sdk-hsm'],
      ['sdk-hsm', 'sdk-leased'],
      ['sdk-leased', 'sdk-local'],
    ] as const;
    for (const [from, to] of moves) {
      const doc = sampleDocument();
      const encrypted = await client.encryptDocument(doc, meta(from));
      const rekeyed = await client.rekeyEdek(encrypted.edek, to, meta(from));
      assert.equal(typeof rekeyed, 'string');
      assert.equal(edekFromBase64(rekeyed)[0]!.tenantId, to);
      const moved = await client.decryptDocument({ edek: rekeyed, encryptedDocument: encrypted.encryptedDocument }, meta(to));
      assertSameDocument(moved.plaintextDocument, doc);
      await rejectsWith(
        client.decryptDocument({ edek: rekeyed, encryptedDocument: encrypted.encryptedDocument }, meta(from)),
        KmsException,
        TenantSecurityErrorCode.INVALID_PROVIDED_EDEK,
        /is not assigned to tenant/,
      );
    }
    for (const { tenantId, configId } of WORKING) {
      const doc = sampleDocument();
      const encrypted = await client.encryptDocument(doc, meta(tenantId));
      const rekeyed = await client.rekeyEdek(encrypted.edek, tenantId, meta(tenantId));
      const [entry] = edekFromBase64(rekeyed);
      assert.equal(entry!.tenantId, tenantId);
      assert.equal(entry!.kmsConfigId, configId);
      for (const edek of [rekeyed, encrypted.edek]) {
        const back = await client.decryptDocument({ edek, encryptedDocument: encrypted.encryptedDocument }, meta(tenantId));
        assertSameDocument(back.plaintextDocument, doc);
      }
    }
  });

  it('logSecurityEvent: USER_, DATA_ and CUSTOM_ events with metadata are accepted and audited', async () => {
    const events = [
      { event: UserEvent.LOGIN, tenantId: 'sdk-local' },
      { event: DataEvent.EXPORT, tenantId: 'sdk-aws' },
      { event: new CustomSecurityEvent('INTEROP_REPORT_DOWNLOADED'), tenantId: 'sdk-hsm' },
      // The contract: events are accepted (queued) for tenants Keyward does not know too.
      { event: UserEvent.CHANGE_PERMISSIONS, tenantId: 'sdk-unknown-tenant' },
    ];
    for (const { event, tenantId } of events) {
      const requestId = `evt-${randomUUID()}`;
      const metadata = new EventMetadata(tenantId, 'interop-admin', 'AUDIT', Date.now() - 5_000, '10.0.0.7', `object-${requestId}`, requestId, {
        reason: 'interop check',
      });
      const result = await client.logSecurityEvent(event, metadata);
      assert.equal(result, null, 'the SDK hands back the parsed body, the literal null');
      const record = await waitForLine(proc, event.getFlatEvent(), requestId, tenantId);
      const text = JSON.stringify(record);
      for (const field of ['interop-admin', 'AUDIT', '10.0.0.7', `object-${requestId}`, 'interop check']) {
        assert.ok(text.includes(field), `audit record of ${event.getFlatEvent()} has ${field}: ${text}`);
      }
    }
  });

  it('a tenant whose audit policy is required, with its SIEM down: the SDK raises the 301-class exception with the reason, and gets no key', async () => {
    // The first event fills the one-event queue; the next operation cannot be audited.
    await client.encryptDocument(sampleDocument(), meta('sdk-required'));
    const err = await rejectsWith(
      client.encryptDocument(sampleDocument(), meta('sdk-required')),
      TenantSecurityException,
      TenantSecurityErrorCode.SECURITY_EVENT_REJECTED,
      /cannot be queued.*requires every operation to be audited/,
    );
    assert.equal(err.httpResponseCode, 503);
    // Other tenants are not held back.
    await client.encryptDocument(sampleDocument(), meta('sdk-local'));
  });

  it('error codes arrive as the SDK exception types: 101, 200, 201, 203', async () => {
    const badKey = new TenantSecurityClient(proc.apiUrl, 'not-the-api-key-0123456789abcdef');
    const unauthorized = await rejectsWith(badKey.encryptDocument(sampleDocument(), meta('sdk-local')), TspServiceException, TenantSecurityErrorCode.UNAUTHORIZED_REQUEST);
    assert.equal(unauthorized.httpResponseCode, 401);
    await rejectsWith(badKey.logSecurityEvent(UserEvent.LOGIN, new EventMetadata('sdk-local', 'x')), TspServiceException, TenantSecurityErrorCode.UNAUTHORIZED_REQUEST);

    await rejectsWith(client.encryptDocument(sampleDocument(), meta(NO_PRIMARY)), KmsException, TenantSecurityErrorCode.NO_PRIMARY_KMS_CONFIGURATION);
    await rejectsWith(client.encryptDocumentBatch({ a: sampleDocument() }, meta(NO_PRIMARY)), KmsException, TenantSecurityErrorCode.NO_PRIMARY_KMS_CONFIGURATION);

    const unknown = 'sdk-no-such-tenant';
    await rejectsWith(
      client.encryptDocument(sampleDocument(), meta(unknown)),
      KmsException,
      TenantSecurityErrorCode.UNKNOWN_TENANT_OR_NO_ACTIVE_KMS_CONFIGURATIONS,
      /No configurations available for the provided tenant/,
    );
    const local = await client.encryptDocument(sampleDocument(), meta('sdk-local'));
    await rejectsWith(client.decryptDocument(local, meta(unknown)), KmsException, TenantSecurityErrorCode.UNKNOWN_TENANT_OR_NO_ACTIVE_KMS_CONFIGURATIONS);

    // Garbage, and another tenant's EDEK.
    await rejectsWith(
      client.decryptDocument({ ...local, edek: randomBytes(48).toString('base64') }, meta('sdk-local')),
      KmsException,
      TenantSecurityErrorCode.INVALID_PROVIDED_EDEK,
    );
    await rejectsWith(client.decryptDocument(local, meta('sdk-aws')), KmsException, TenantSecurityErrorCode.INVALID_PROVIDED_EDEK, /is not assigned to tenant/);
    await rejectsWith(client.rekeyEdek(local.edek, 'sdk-hsm', meta('sdk-leased')), KmsException, TenantSecurityErrorCode.INVALID_PROVIDED_EDEK);
    await rejectsWith(client.rekeyEdek(local.edek, NO_PRIMARY, meta('sdk-local')), KmsException, TenantSecurityErrorCode.NO_PRIMARY_KMS_CONFIGURATION);
  });
});

describe('tenant-security-nodejs 4.1.3 against a Keyward process: a configuration disabled by a reload', () => {
  let dir: string;
  let configPath: string;
  let proc: KeywardProcess;
  let client: TenantSecurityClient;

  const tenants = (firstStatus: 'primary' | 'disabled', extra = '') => `version: 1
tenants:
  sdk-rotating:
    kmsConfigs:
      - { id: 10, status: ${firstStatus}, provider: local, local: { keyFile: keys/old.key } }${
        firstStatus === 'disabled' ? '\n      - { id: 11, status: primary, provider: local, local: { keyFile: keys/new.key } }' : ''
      }
${extra}`;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'keyward-interop-reload-'));
    configPath = join(dir, 'tenants.yaml');
    await writeFile(configPath, tenants('primary'));
    proc = await startKeyward({ KEYWARD_CONFIG: configPath, KEYWARD_API_KEY: API_KEY });
    client = new TenantSecurityClient(proc.apiUrl, API_KEY);
  });

  after(async () => {
    if (proc) await stopKeyward(proc);
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('an EDEK of a configuration a reload disabled is refused with 202; the new primary serves', async () => {
    const doc = sampleDocument();
    const encrypted = await client.encryptDocument(doc, meta('sdk-rotating'));
    assertSameDocument((await client.decryptDocument(encrypted, meta('sdk-rotating'))).plaintextDocument, doc);

    // Disable config 10, make 11 primary, and add a tenant so the reload is recognisable by its count.
    await writeFile(
      configPath,
      tenants('disabled', '  sdk-marker:\n    kmsConfigs:\n      - { id: 12, status: primary, provider: local, local: { keyFile: keys/new.key } }\n'),
    );
    proc.child.kill('SIGHUP');
    await proc.waitForLog((e) => e.msg === 'tenants file reloaded' && e.tenants === 2);

    await rejectsWith(client.decryptDocument(encrypted, meta('sdk-rotating')), KmsException, TenantSecurityErrorCode.KMS_CONFIGURATION_DISABLED);
    const batch = await client.decryptDocumentBatch({ old: encrypted }, meta('sdk-rotating'));
    assert.equal(batch.failures.old?.errorCode, TenantSecurityErrorCode.KMS_CONFIGURATION_DISABLED);
    await rejectsWith(client.rekeyEdek(encrypted.edek, 'sdk-rotating', meta('sdk-rotating')), KmsException, TenantSecurityErrorCode.KMS_CONFIGURATION_DISABLED);

    const fresh = await client.encryptDocument(doc, meta('sdk-rotating'));
    assert.equal(edekFromBase64(fresh.edek)[0]!.kmsConfigId, 11);
    assertSameDocument((await client.decryptDocument(fresh, meta('sdk-rotating'))).plaintextDocument, doc);
  });
});
