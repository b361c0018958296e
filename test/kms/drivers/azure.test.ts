/**
 * The Azure Key Vault driver against a STAND-IN that speaks the Key Vault REST protocol
 * (test/helpers/azure-keyvault-standin.ts) and a token stand-in for Microsoft Entra ID
 * (test/helpers/azure-token-standin.ts). No independent Key Vault emulator can be installed here
 * (docs/kms/azure.md, "Testing"), so these tests prove that the driver, the real @azure/identity
 * and @azure/keyvault-keys code, and the protocol *as documented* fit together: challenge
 * authentication, versionless wraps that record the version used, rotation, the service's error
 * bodies, and outages. They cannot prove that the real service answers exactly as documented;
 * the classification of its error shapes is pinned by azure-errors.test.ts.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ClientSecretCredential } from '@azure/identity';
import { KeyClient } from '@azure/keyvault-keys';
import pino from 'pino';
import type { AzureSettings } from '../../../src/config/providers/azure.js';
import type { DriverContext, KmsDriver } from '../../../src/kms/driver.js';
import { KmsError, type KmsFailureKind } from '../../../src/kms/errors.js';
import { createAzureDriver } from '../../../src/kms/drivers/azure.js';
import { withRetry, withTimeout } from '../../../src/kms/wrappers.js';
import { runDriverConformance } from '../conformance.js';
import { startFaultProxy } from '../../helpers/fault-proxy.js';
import { startKeyVaultStandin } from '../../helpers/azure-keyvault-standin.js';
import { startTokenStandin } from '../../helpers/azure-token-standin.js';

const TENANT = '0b1d3f5a-7c9e-4a2b-8d6f-1e3a5c7b9d0f';
const SECRETS: Record<string, string> = {
  'keyward-app': `app-secret-${randomBytes(12).toString('hex')}`,
  'keyward-revoked': `revoked-secret-${randomBytes(12).toString('hex')}`,
  'keyward-denied': `denied-secret-${randomBytes(12).toString('hex')}`,
  'keyward-admin': `admin-secret-${randomBytes(12).toString('hex')}`,
};

const logLines: string[] = [];
const ctx: DriverContext = {
  logger: pino({ level: 'debug' }, { write: (line: string) => void logLines.push(line) }),
  env: Object.fromEntries(Object.entries(SECRETS).map(([client, secret]) => [`SECRET_${client.replace(/-/g, '_').toUpperCase()}`, secret])),
};

const tokens = await startTokenStandin();
for (const [client, secret] of Object.entries(SECRETS)) tokens.registerClient(TENANT, client, { secret });
const vault = await startKeyVaultStandin({ tokens, tenantId: TENANT });
for (const name of ['mk-a', 'mk-b', 'mk-rotate', 'mk-pin', 'mk-disable', 'mk-auth', 'mk-outage']) vault.createKey(name);
vault.createKey('hsm-a', 'oct-HSM');
vault.createKey('hsm-b', 'oct-HSM');

after(async () => {
  await vault.close();
  await tokens.close();
});

/** Settings as a tenants file would give them, for the client `client` (its secret from the environment). */
function settings(keyName: string, overrides: Partial<AzureSettings> = {}, client = 'keyward-app'): AzureSettings {
  return {
    vaultUrl: vault.vaultUrl,
    keyName,
    // The stand-in's challenge names https://vault.azure.net, as the real service's does, while it
    // listens on 127.0.0.1: exactly the situation of a vault reached through a private name.
    disableChallengeResourceVerification: true,
    credentials: {
      type: 'clientSecret',
      tenantId: TENANT,
      clientId: client,
      clientSecret: { env: `SECRET_${client.replace(/-/g, '_').toUpperCase()}` },
      authorityHost: tokens.authorityHost,
      disableInstanceDiscovery: true,
    },
    ...overrides,
  };
}

const aad = (tenant: string): Buffer => Buffer.from(`azure-test|${tenant}|1`);

async function rejectsWithKind(p: Promise<unknown>, kind: KmsFailureKind, message?: RegExp): Promise<KmsError> {
  let caught: KmsError | undefined;
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof KmsError, `expected a KmsError, got ${String(err)}`);
    assert.equal(err.kind, kind, `expected ${kind}, got ${err.kind}: ${err.message}`);
    if (message) assert.match(err.message, message);
    caught = err;
    return true;
  });
  return caught!;
}

/** The driver behind withRetry(withTimeout(…)), counting the attempts that reach it. */
function retried(driver: KmsDriver, options: { retries?: number; timeoutMs?: number } = {}): { driver: KmsDriver; attempts: () => number } {
  let count = 0;
  const counting: KmsDriver = {
    provider: driver.provider,
    wrap: (p, a, o) => ((count += 1), driver.wrap(p, a, o)),
    unwrap: (b, a, o) => ((count += 1), driver.unwrap(b, a, o)),
    close: () => driver.close(),
  };
  return {
    driver: withRetry(withTimeout(counting, options.timeoutMs ?? 5_000), { retries: options.retries ?? 2, baseDelayMs: 20, maxDelayMs: 100 }),
    attempts: () => count,
  };
}

/** An administrator's client for the stand-in, through the real SDK (rotation and disabling are REST calls too). */
const admin = new KeyClient(
  vault.vaultUrl,
  new ClientSecretCredential(TENANT, 'keyward-admin', SECRETS['keyward-admin']!, { authorityHost: tokens.authorityHost, disableInstanceDiscovery: true }),
  { disableChallengeResourceVerification: true },
);

runDriverConformance('azure (Key Vault stand-in, RSA-OAEP-256)', {
  create: () => createAzureDriver(settings('mk-a'), ctx),
  createOther: () => createAzureDriver(settings('mk-b'), ctx),
});

runDriverConformance('azure (Key Vault stand-in, Managed HSM A256KW)', {
  create: () => createAzureDriver(settings('hsm-a', { algorithm: 'A256KW' }), ctx),
  createOther: () => createAzureDriver(settings('hsm-b', { algorithm: 'A256KW' }), ctx),
});

describe('azure driver: protocol and key versions', () => {
  let driver: KmsDriver;
  before(async () => {
    driver = await createAzureDriver(settings('mk-a'), ctx);
  });
  after(async () => {
    await driver.close();
  });

  it('authenticates through the challenge with a client-secret token from the authority, and every wrap is a call to the vault', async () => {
    assert.ok(tokens.requests.some((r) => r.flow === 'discovery'), 'MSAL fetched the OpenID configuration of the configured authority');
    assert.ok(tokens.requests.some((r) => r.flow === 'client_credentials' && r.status === 200 && r.clientId === 'keyward-app'));
    assert.ok(vault.requests.some((r) => r.status === 401 && !r.authenticated), 'the first request of a client met the 401 challenge');
    const since = vault.requests.length;
    for (let i = 0; i < 3; i++) await driver.wrap(randomBytes(32), aad('t'));
    // RSA-OAEP-256 through the service: the SDK never wraps locally with the public key.
    assert.equal(vault.count('wrapkey', since), 3);
  });

  it('records the key version that wrapped; after a rotation, old EDEKs unwrap under their version and new wraps use the new one', async () => {
    const rotating = await createAzureDriver(settings('mk-rotate'), ctx);
    try {
      const v1 = vault.currentVersion('mk-rotate');
      const dek1 = randomBytes(32);
      const blob1 = await rotating.wrap(dek1, aad('t'));
      assert.ok(blob1.includes(Buffer.from(v1)), 'the blob records the version');

      const rotated = await admin.createRsaKey('mk-rotate', { keySize: 2048 });
      const v2 = rotated.properties.version!;
      assert.notEqual(v2, v1);
      assert.equal(vault.currentVersion('mk-rotate'), v2, 'the stand-in rotated through its REST API');

      const since = vault.requests.length;
      const dek2 = randomBytes(32);
      const blob2 = await rotating.wrap(dek2, aad('t'));
      const wrapRecord = vault.requests.slice(since).find((r) => r.operation === 'wrapkey' && r.authenticated);
      assert.equal(wrapRecord?.version, v2, 'the vault wrapped with the new current version');
      assert.ok(blob2.includes(Buffer.from(v2)));

      assert.deepEqual(await rotating.unwrap(blob1, aad('t')), dek1);
      assert.deepEqual(await rotating.unwrap(blob2, aad('t')), dek2);
      const unwraps = vault.requests.slice(since).filter((r) => r.operation === 'unwrapkey' && r.status === 200).map((r) => r.version);
      assert.deepEqual(unwraps, [v1, v2], 'each EDEK is unwrapped under the version it records');

      // Disabling the old version stops exactly the EDEKs made under it.
      await admin.updateKeyProperties('mk-rotate', v1, { enabled: false });
      await rejectsWithKind(rotating.unwrap(blob1, aad('t')), 'key_unusable');
      assert.deepEqual(await rotating.unwrap(blob2, aad('t')), dek2);
      assert.equal((await rotating.wrap(randomBytes(32), aad('t'))).includes(Buffer.from(v2)), true);
    } finally {
      await rotating.close();
    }
  });

  it('keyVersion pins new wraps to that version, also after a rotation', async () => {
    const v1 = vault.currentVersion('mk-pin');
    const pinned = await createAzureDriver(settings('mk-pin', { keyVersion: v1 }), ctx);
    try {
      vault.createKey('mk-pin');
      const since = vault.requests.length;
      const dek = randomBytes(32);
      const blob = await pinned.wrap(dek, aad('t'));
      assert.equal(vault.requests.slice(since).find((r) => r.operation === 'wrapkey' && r.authenticated)?.version, v1);
      assert.ok(blob.includes(Buffer.from(v1)));
      assert.deepEqual(await pinned.unwrap(blob, aad('t')), dek);
      // An EDEK of the (unpinned) current version still unwraps under the pinned config.
      const current = await createAzureDriver(settings('mk-pin'), ctx);
      const newer = await current.wrap(dek, aad('t'));
      assert.deepEqual(await pinned.unwrap(newer, aad('t')), dek);
      await current.close();
    } finally {
      await pinned.close();
    }
  });

  it('refuses to start on an unknown key, an unknown pinned version or a key of the wrong type (key_unusable)', async () => {
    await rejectsWithKind(createAzureDriver(settings('no-such-key'), ctx), 'key_unusable', /no-such-key.*not found/);
    await rejectsWithKind(createAzureDriver(settings('mk-a', { keyVersion: '0123456789abcdef0123456789abcdef' }), ctx), 'key_unusable', /not found/);
    await rejectsWithKind(createAzureDriver(settings('mk-a', { algorithm: 'A256KW' }), ctx), 'key_unusable', /A256KW needs/);
    await rejectsWithKind(createAzureDriver(settings('hsm-a'), ctx), 'key_unusable', /RSA-OAEP-256 needs/);
    await admin.createRsaKey('mk-encrypt-only', { keySize: 2048, keyOps: ['encrypt', 'decrypt'] });
    await rejectsWithKind(createAzureDriver(settings('mk-encrypt-only'), ctx), 'key_unusable', /does not allow both wrapKey and unwrapKey/);
  });

  it('a blob made with the other algorithm, or naming a version the key never had, is bad_ciphertext', async () => {
    const hsm = await createAzureDriver(settings('hsm-a', { algorithm: 'A256KW' }), ctx);
    try {
      const hsmBlob = await hsm.wrap(randomBytes(32), aad('t'));
      await rejectsWithKind(driver.unwrap(hsmBlob, aad('t')), 'bad_ciphertext', /RSA-OAEP-256/);
      const blob = await driver.wrap(randomBytes(32), aad('t'));
      const forged = Buffer.from(blob);
      forged.write('0'.repeat(32), 3, 'latin1');
      const since = vault.requests.length;
      await rejectsWithKind(driver.unwrap(forged, aad('t')), 'bad_ciphertext', /does not have/);
      assert.ok(vault.requests.slice(since).some((r) => r.operation === 'unwrapkey' && r.status === 404), 'the vault answered KeyNotFound');
      assert.ok(vault.requests.slice(since).some((r) => r.operation === 'get' && r.status === 200), 'one look at the key told a foreign version from a deleted key');
    } finally {
      await hsm.close();
    }
  });
});

describe('azure driver: revocation', () => {
  it('a disabled key: wrap and unwrap are key_unusable, with exactly one attempt through withRetry(withTimeout(driver))', async () => {
    const raw = await createAzureDriver(settings('mk-disable'), ctx);
    const { driver, attempts } = retried(raw);
    const dek = randomBytes(32);
    const blob = await driver.wrap(dek, aad('t'));
    const version = vault.currentVersion('mk-disable');
    await admin.updateKeyProperties('mk-disable', version, { enabled: false });

    let before = attempts();
    const since = vault.requests.length;
    await rejectsWithKind(driver.unwrap(blob, aad('t')), 'key_unusable', /disabled/);
    assert.equal(attempts() - before, 1, 'withRetry does not retry an unusable key');
    before = attempts();
    await rejectsWithKind(driver.wrap(dek, aad('t')), 'key_unusable');
    assert.equal(attempts() - before, 1);
    const refusals = vault.requests.slice(since).filter((r) => r.authenticated);
    assert.deepEqual(refusals.map((r) => r.status), [403, 403], 'one request each: the SDK did not retry either');

    await admin.updateKeyProperties('mk-disable', version, { enabled: true });
    assert.deepEqual(await driver.unwrap(blob, aad('t')), dek, 'enabled again, the EDEK unwraps');
    await driver.close();
  });

  it('revoked tokens (401) and a removed role assignment (403) are refused, with one attempt each', async () => {
    const revokedRaw = await createAzureDriver(settings('mk-auth', {}, 'keyward-revoked'), ctx);
    const revoked = retried(revokedRaw);
    const blob = await revoked.driver.wrap(randomBytes(32), aad('t'));
    tokens.revoke('keyward-revoked');
    let before = revoked.attempts();
    await rejectsWithKind(revoked.driver.unwrap(blob, aad('t')), 'refused', /HTTP 401 Unauthorized/);
    assert.equal(revoked.attempts() - before, 1);
    await revoked.driver.close();

    const deniedRaw = await createAzureDriver(settings('mk-auth', {}, 'keyward-denied'), ctx);
    const denied = retried(deniedRaw);
    const blob2 = await denied.driver.wrap(randomBytes(32), aad('t'));
    vault.setPermission('keyward-denied', 'none');
    before = denied.attempts();
    await rejectsWithKind(denied.driver.unwrap(blob2, aad('t')), 'refused', /HTTP 403 Forbidden\/ForbiddenByRbac/);
    await rejectsWithKind(denied.driver.wrap(randomBytes(32), aad('t')), 'refused');
    assert.equal(denied.attempts() - before, 2);
    vault.setPermission('keyward-denied', 'full');
    await denied.driver.close();

    // A credential the directory no longer accepts: refused at start.
    tokens.disableClient('keyward-revoked');
    await rejectsWithKind(createAzureDriver(settings('mk-auth', {}, 'keyward-revoked'), ctx), 'refused', /refused the configured Azure credentials/);
  });
});

describe('azure driver: throttling and outages', () => {
  it('429 Throttled: throttled with Retry-After, then retried by withRetry after that delay', async () => {
    const raw = await createAzureDriver(settings('mk-outage'), ctx);
    const dek = randomBytes(32);
    const blob = await raw.wrap(dek, aad('t'));

    vault.injectFailures({ status: 429, count: 1, retryAfterSeconds: 1 });
    const err = await rejectsWithKind(raw.unwrap(blob, aad('t')), 'throttled');
    assert.equal(err.retryAfterSeconds, 1);

    const { driver, attempts } = retried(raw);
    vault.injectFailures({ status: 429, count: 1, retryAfterSeconds: 1 });
    const since = vault.requests.length;
    const started = Date.now();
    assert.deepEqual(await driver.unwrap(blob, aad('t')), dek);
    assert.ok(Date.now() - started >= 950, `waited for Retry-After (${Date.now() - started} ms)`);
    assert.equal(attempts(), 2);
    assert.deepEqual(
      vault.requests.slice(since).filter((r) => r.authenticated).map((r) => r.status),
      [429, 200],
      'the SDK made one request per attempt (its own retries are off)',
    );

    vault.injectFailures({ status: 503, count: 1 });
    await rejectsWithKind(raw.unwrap(blob, aad('t')), 'unreachable', /HTTP 503 ServiceUnavailable/);
    vault.injectFailures({ status: 503, count: 1 });
    assert.deepEqual(await driver.unwrap(blob, aad('t')), dek, 'a 503 is retried');
    await raw.close();
  });

  it('vault refusing connections: unreachable within the bound; recovery once it is back', async () => {
    const proxy = await startFaultProxy(vault.port);
    try {
      const raw = await createAzureDriver(settings('mk-outage', { vaultUrl: `https://127.0.0.1:${proxy.port}` }), ctx);
      const { driver } = retried(raw, { retries: 1, timeoutMs: 2_000 });
      const dek = randomBytes(32);
      const blob = await driver.wrap(dek, aad('t'));
      await proxy.setMode('refuse');
      const started = Date.now();
      await rejectsWithKind(driver.unwrap(blob, aad('t')), 'unreachable', /could not be reached/);
      assert.ok(Date.now() - started < 4_500, `failed within the bound (${Date.now() - started} ms)`);
      await proxy.setMode('pass');
      assert.deepEqual(await driver.unwrap(blob, aad('t')), dek, 'withRetry gets through once the vault is back');
      await raw.close();
    } finally {
      await proxy.close();
    }
  });

  it('vault process down and back on the same port with the same keys: unreachable, then recovery', async () => {
    const driver = await createAzureDriver(settings('mk-outage'), ctx);
    const dek = randomBytes(32);
    const blob = await driver.wrap(dek, aad('t'));
    await vault.stop();
    try {
      await rejectsWithKind(withTimeout(driver, 2_000).unwrap(blob, aad('t')), 'unreachable');
      await rejectsWithKind(withTimeout(driver, 2_000).wrap(dek, aad('t')), 'unreachable');
    } finally {
      await vault.start();
    }
    // Through withRetry, as Keyward calls it: a pooled connection cut by the outage may fail
    // the first attempt (ECONNRESET, unreachable), and the retry opens a fresh one.
    assert.deepEqual(await retried(driver).driver.unwrap(blob, aad('t')), dek);
    await driver.close();
  });

  it('a blackholed vault: unreachable after the timeout, no hang; the request is aborted through the signal', async () => {
    const proxy = await startFaultProxy(vault.port);
    try {
      const raw = await createAzureDriver(settings('mk-outage', { vaultUrl: `https://127.0.0.1:${proxy.port}` }), ctx);
      const dek = randomBytes(32);
      const blob = await raw.wrap(dek, aad('t'));
      await proxy.setMode('blackhole');
      // Let the client see its pooled connection cut, so the next call meets the blackhole.
      await new Promise((resolve) => setTimeout(resolve, 100));
      const started = Date.now();
      await rejectsWithKind(withTimeout(raw, 500).unwrap(blob, aad('t')), 'unreachable', /within 500 ms/);
      assert.ok(Date.now() - started < 1_500);
      // Without withTimeout, the caller's own signal ends the call, classified as unreachable.
      const controller = new AbortController();
      setTimeout(() => controller.abort(), 300);
      await rejectsWithKind(raw.unwrap(blob, aad('t'), { signal: controller.signal }), 'unreachable', /aborted/);
      await proxy.setMode('pass');
      assert.deepEqual(await retried(raw).driver.unwrap(blob, aad('t')), dek);
      await raw.close();
    } finally {
      await proxy.close();
    }
  });

  it('the token endpoint down at start: unreachable, not refused (a network failure on the auth path never wipes)', async () => {
    const authority = await startTokenStandin();
    authority.registerClient(TENANT, 'keyward-app', { secret: SECRETS['keyward-app']! });
    const host = authority.authorityHost;
    await authority.close();
    const down = settings('mk-a');
    await rejectsWithKind(createAzureDriver({ ...down, credentials: { ...down.credentials, authorityHost: host } as AzureSettings['credentials'] }, ctx), 'unreachable');
  });
});

describe('azure driver: other credentials', () => {
  it('workload identity: the federated token file is exchanged for a vault token (client assertion)', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'keyward-azure-wi-'));
    try {
      const federated = `federated.${randomBytes(16).toString('hex')}`;
      const tokenFilePath = join(dir, 'azure-identity-token');
      await writeFile(tokenFilePath, federated);
      tokens.registerClient(TENANT, 'keyward-workload', { federatedToken: federated });
      const driver = await createAzureDriver(
        settings('mk-a', {
          credentials: { type: 'workloadIdentity', tenantId: TENANT, clientId: 'keyward-workload', tokenFilePath, authorityHost: tokens.authorityHost, disableInstanceDiscovery: true },
        }),
        ctx,
      );
      const dek = randomBytes(32);
      assert.deepEqual(await driver.unwrap(await driver.wrap(dek, aad('t')), aad('t')), dek);
      assert.ok(tokens.requests.some((r) => r.flow === 'client_credentials' && r.clientId === 'keyward-workload' && r.status === 200));
      await driver.close();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('managed identity (App Service: IDENTITY_ENDPOINT / IDENTITY_HEADER)', async () => {
    tokens.setManagedIdentity(TENANT, 'keyward-msi');
    process.env.IDENTITY_ENDPOINT = tokens.identityEndpoint;
    process.env.IDENTITY_HEADER = tokens.identityHeader;
    try {
      const driver = await createAzureDriver(settings('mk-a', { credentials: { type: 'managedIdentity', clientId: 'keyward-msi' } }), ctx);
      const dek = randomBytes(32);
      assert.deepEqual(await driver.unwrap(await driver.wrap(dek, aad('t')), aad('t')), dek);
      assert.ok(tokens.requests.some((r) => r.flow === 'managed_identity' && r.status === 200));
      await driver.close();
    } finally {
      delete process.env.IDENTITY_ENDPOINT;
      delete process.env.IDENTITY_HEADER;
    }
  });

  it('never logs a client secret or an access token', () => {
    const logs = logLines.join('');
    assert.ok(logLines.length > 0);
    for (const secret of Object.values(SECRETS)) assert.ok(!logs.includes(secret), 'no client secret in the log');
    assert.ok(!/standin\.[A-Za-z0-9_-]{20,}/.test(logs), 'no access token in the log');
  });
});
