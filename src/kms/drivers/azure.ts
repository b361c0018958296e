/**
 * Azure Key Vault / Managed HSM driver: wraps data keys under a key held in the tenant's vault,
 * through @azure/keyvault-keys. Tested against a stand-in that speaks the Key Vault REST protocol
 * (test/helpers/azure-keyvault-standin.ts), not against the real service: see docs/kms/azure.md.
 *
 * Blob format (version 1):
 *   0x01 ‖ alg (0x01 RSA-OAEP-256, 0x02 A256KW) ‖ n (1 byte) ‖ key version (n ASCII bytes) ‖ wrapped
 * where `wrapped` is the vault's wrap of `plaintext ‖ nonce ‖ SHA-256(aad)[0..16]`. Neither algorithm
 * takes associated data, so the tenant binding travels inside the wrapped value and is compared on
 * unwrap in constant time. `nonce` is 8 random bytes for A256KW and empty for RSA-OAEP-256: AES key
 * wrap (RFC 3394) is deterministic, and without it two wraps of one DEK would give equal EDEKs
 * (OAEP is randomised already). The key version that wrapped is recorded, so EDEKs keep unwrapping
 * after the key is rotated: unwrap always names that version.
 *
 * Every call goes to the vault. New wraps name no version unless `keyVersion` pins one: the
 * vault then uses the key's current version and says which in the answer's `kid`, which is what
 * gets recorded — so a rotation is followed at once, with no extra request and no cached idea
 * of "current".
 *
 * Retries: none here (`retryOptions.maxRetries: 0` on every client and credential); `withRetry`
 * retries unreachable and throttled calls for every provider alike. Failures are classified by
 * `classifyAzureError` (azure-errors.ts, per kms-errors.md).
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import {
  ClientCertificateCredential,
  ClientSecretCredential,
  ManagedIdentityCredential,
  WorkloadIdentityCredential,
  type TokenCredential,
} from '@azure/identity';
import { CryptographyClient, KeyClient, parseKeyVaultKeyIdentifier, type CryptographyClientOptions, type KeyVaultKey } from '@azure/keyvault-keys';
import type { CallOptions, DriverContext, KmsDriver } from '../driver.js';
import { KmsError } from '../errors.js';
import { redactSecrets } from '../redact.js';
import { classifyAzureError, type AzureOperation } from './azure-errors.js';
import { readSecret } from '../../config/secrets.js';
import type { AzureCredentials, AzureSettings } from '../../config/providers/azure.js';

type Algorithm = NonNullable<AzureSettings['algorithm']>;

const FORMAT_V1 = 0x01;
const ALG_IDS: Record<Algorithm, number> = { 'RSA-OAEP-256': 0x01, A256KW: 0x02 };
/** Key types each algorithm works with (RSA for vaults; symmetric keys exist only in Managed HSM). */
const KEY_TYPES: Record<Algorithm, readonly string[]> = { 'RSA-OAEP-256': ['RSA', 'RSA-HSM'], A256KW: ['oct', 'oct-HSM'] };
/** RSA-OAEP output is exactly the modulus: Key Vault's RSA keys are 2048, 3072 or 4096 bits. */
const RSA_WRAPPED_LENGTHS: ReadonlySet<number> = new Set([256, 384, 512]);
const BINDING_BYTES = 16;
const NONCE_BYTES: Record<Algorithm, number> = { 'RSA-OAEP-256': 0, A256KW: 8 };
const VERSION_PATTERN = /^[0-9A-Za-z]{1,64}$/;
/** Clients kept for unwrapping under older key versions (each holds its own HTTP pipeline). */
const MAX_VERSION_CLIENTS = 16;
/** Never retry inside the SDK: see the header comment. */
const NO_RETRIES = { maxRetries: 0 } as const;

export async function createAzureDriver(settings: AzureSettings, ctx: DriverContext): Promise<KmsDriver> {
  const algorithm: Algorithm = settings.algorithm ?? 'RSA-OAEP-256';
  const vaultUrl = settings.vaultUrl.replace(/\/+$/, '');
  const context = { vaultUrl, keyName: settings.keyName };
  // A secret that cannot be read fails as itself (the pool reports it, naming the reference).
  const secret = await credentialSecret(settings.credentials, ctx.env);
  let credential: TokenCredential;
  try {
    credential = buildCredential(settings.credentials, secret);
  } catch (err) {
    throw logged(ctx, classifyAzureError(err, { ...context, operation: 'start' }));
  }
  const clientOptions = (): CryptographyClientOptions => ({
    retryOptions: { ...NO_RETRIES },
    disableChallengeResourceVerification: settings.disableChallengeResourceVerification ?? false,
  });
  const keyClient = new KeyClient(vaultUrl, credential, clientOptions());

  // Fail fast on a key that cannot serve this config: missing, or of the wrong type.
  let key: KeyVaultKey;
  try {
    key = await keyClient.getKey(settings.keyName, settings.keyVersion === undefined ? {} : { version: settings.keyVersion });
  } catch (err) {
    throw logged(ctx, classifyAzureError(err, { ...context, operation: 'start' }));
  }
  if (key.keyType === undefined || !KEY_TYPES[algorithm].includes(key.keyType)) {
    throw new KmsError(
      'key_unusable',
      `Azure key '${settings.keyName}' is a ${key.keyType ?? 'key of unknown type'}; ${algorithm} needs a ${KEY_TYPES[algorithm].join(' or ')} key`,
    );
  }
  const ops = key.keyOperations;
  if (ops !== undefined && (!ops.includes('wrapKey') || !ops.includes('unwrapKey'))) {
    throw new KmsError('key_unusable', `Azure key '${settings.keyName}' does not allow both wrapKey and unwrapKey (its key_ops: ${ops.join(', ')})`);
  }
  if (key.properties.enabled === false) {
    ctx.logger.warn({ provider: 'azure', vault: new URL(vaultUrl).host, keyName: settings.keyName }, 'Azure key is disabled: wraps will fail until it is enabled');
  }
  ctx.logger.info(
    { provider: 'azure', vault: new URL(vaultUrl).host, keyName: settings.keyName, keyVersion: settings.keyVersion ?? 'current', algorithm, credentials: settings.credentials.type },
    'Azure Key Vault driver ready',
  );
  return new AzureDriver({ vaultUrl, keyName: settings.keyName, keyVersion: settings.keyVersion, algorithm, credential, keyClient, clientOptions, ctx });
}

/** The client secret or certificate PEM behind the credentials' secret reference, if they have one. */
async function credentialSecret(c: AzureCredentials, env: DriverContext['env']): Promise<string> {
  if (c.type === 'clientSecret') return readSecret(c.clientSecret, env);
  if (c.type === 'clientCertificate') return readSecret(c.certificate, env);
  return '';
}

function buildCredential(c: AzureCredentials, secret: string): TokenCredential {
  // Explicit credentials only: never DefaultAzureCredential, which probes IMDS and the developer tools.
  const common = { retryOptions: { ...NO_RETRIES } };
  switch (c.type) {
    case 'clientSecret':
      return new ClientSecretCredential(c.tenantId, c.clientId, secret, {
        ...common,
        authorityHost: c.authorityHost,
        disableInstanceDiscovery: c.disableInstanceDiscovery ?? false,
      });
    case 'clientCertificate':
      return new ClientCertificateCredential(
        c.tenantId,
        c.clientId,
        { certificate: secret },
        { ...common, authorityHost: c.authorityHost, disableInstanceDiscovery: c.disableInstanceDiscovery ?? false, sendCertificateChain: c.sendCertificateChain ?? false },
      );
    case 'managedIdentity':
      return c.clientId === undefined ? new ManagedIdentityCredential(common) : new ManagedIdentityCredential({ ...common, clientId: c.clientId });
    case 'workloadIdentity':
      // Unset fields fall back to the variables the AKS workload identity webhook injects
      // (AZURE_TENANT_ID, AZURE_CLIENT_ID, AZURE_FEDERATED_TOKEN_FILE, AZURE_AUTHORITY_HOST).
      return new WorkloadIdentityCredential({
        ...common,
        tenantId: c.tenantId,
        clientId: c.clientId,
        tokenFilePath: c.tokenFilePath,
        authorityHost: c.authorityHost,
        disableInstanceDiscovery: c.disableInstanceDiscovery ?? false,
      });
  }
}

function logged(ctx: DriverContext, err: KmsError): KmsError {
  const cause = err.cause instanceof Error ? redactSecrets(err.cause.message) : undefined;
  ctx.logger.debug({ provider: 'azure', kind: err.kind, reason: err.message, providerMessage: cause }, 'Azure Key Vault call failed');
  return err;
}

interface AzureDriverOptions {
  readonly vaultUrl: string;
  readonly keyName: string;
  readonly keyVersion: string | undefined;
  readonly algorithm: Algorithm;
  readonly credential: TokenCredential;
  readonly keyClient: KeyClient;
  readonly clientOptions: () => CryptographyClientOptions;
  readonly ctx: DriverContext;
}

class AzureDriver implements KmsDriver {
  readonly provider = 'azure' as const;
  readonly #o: AzureDriverOptions;
  /** Wraps with `keyVersion`, or with no version (the vault's current one). */
  readonly #wrapClient: CryptographyClient;
  /** Unwrap clients by key version, least recently used first. */
  readonly #versionClients = new Map<string, CryptographyClient>();
  #closed = false;

  constructor(options: AzureDriverOptions) {
    this.#o = options;
    this.#wrapClient = this.#client(options.keyVersion);
  }

  async wrap(plaintext: Buffer, aad: Buffer, options?: CallOptions): Promise<Buffer> {
    this.#live();
    const { algorithm, keyName } = this.#o;
    if (algorithm === 'A256KW' && (plaintext.length === 0 || plaintext.length % 8 !== 0)) {
      throw new KmsError('other', `A256KW wraps keys whose length is a multiple of 8 bytes (got ${plaintext.length})`);
    }
    const payload = Buffer.concat([plaintext, randomBytes(NONCE_BYTES[algorithm]), binding(aad)]);
    let kid: unknown;
    let wrapped: Uint8Array;
    try {
      const result = await this.#call('wrap', () =>
        this.#wrapClient.wrapKey(algorithm, payload, {
          abortSignal: options?.signal,
          // The SDK's result names the key the client was made for (here without a version);
          // the vault's answer names the version it actually used.
          onResponse: (response) => {
            kid = (response.parsedBody as { kid?: unknown } | undefined)?.kid;
          },
        }),
      );
      wrapped = result.result;
    } finally {
      payload.fill(0);
    }
    const version = versionFromKid(kid, keyName);
    if (version === undefined) {
      throw new KmsError('other', `Azure Key Vault's wrap answer does not name a version of key '${keyName}'`);
    }
    const id = Buffer.from(version, 'ascii');
    return Buffer.concat([Buffer.of(FORMAT_V1, ALG_IDS[algorithm], id.length), id, wrapped]);
  }

  async unwrap(blob: Buffer, aad: Buffer, options?: CallOptions): Promise<Buffer> {
    this.#live();
    const { algorithm, keyName } = this.#o;
    const parsed = parseBlob(blob, algorithm);
    if (typeof parsed === 'string') throw new KmsError('bad_ciphertext', `the wrapped key is not an Azure Key Vault ciphertext for this config (${parsed})`);
    let out: Uint8Array;
    try {
      const result = await this.#call('unwrap', () => this.#versionClient(parsed.version).unwrapKey(algorithm, parsed.wrapped, { abortSignal: options?.signal }));
      out = result.result;
    } catch (err) {
      const classified = classifyAzureError(err, { operation: 'unwrap', vaultUrl: this.#o.vaultUrl, keyName });
      if (classified.kind === 'key_unusable' && (classified.cause as { statusCode?: unknown } | undefined)?.statusCode === 404) {
        throw await this.#explainMissingVersion(classified, parsed.version, options);
      }
      throw classified;
    }
    const result = Buffer.from(out.buffer, out.byteOffset, out.byteLength);
    try {
      const overhead = NONCE_BYTES[algorithm] + BINDING_BYTES;
      if (result.length < overhead) throw new KmsError('bad_ciphertext', 'the unwrapped value is too short to carry its tenant binding');
      const plainLength = result.length - overhead;
      const expected = binding(aad);
      if (!timingSafeEqual(result.subarray(result.length - BINDING_BYTES), expected)) {
        throw new KmsError('bad_ciphertext', `the wrapped key is bound to another tenant or KMS config (key '${keyName}')`);
      }
      return Buffer.from(result.subarray(0, plainLength));
    } finally {
      result.fill(0);
    }
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#versionClients.clear();
  }

  /**
   * A 404 for a recorded version means either the key is gone (unusable) or this blob names a
   * version the key never had — a blob from another key, or a corrupted one. Key Vault cannot
   * delete single versions, so one look at the key itself tells the two apart.
   */
  async #explainMissingVersion(notFound: KmsError, version: string, options?: CallOptions): Promise<KmsError> {
    try {
      await this.#o.keyClient.getKey(this.#o.keyName, { abortSignal: options?.signal });
    } catch (err) {
      return classifyAzureError(err, { operation: 'check', vaultUrl: this.#o.vaultUrl, keyName: this.#o.keyName });
    }
    return new KmsError('bad_ciphertext', `the wrapped key names version ${version}, which key '${this.#o.keyName}' does not have: it was made under another key`, {
      cause: notFound.cause,
    });
  }

  /** Runs one SDK call; its failure comes out classified (and logged at debug, redacted). */
  async #call<T>(operation: AzureOperation, call: () => Promise<T>): Promise<T> {
    try {
      return await call();
    } catch (err) {
      throw logged(this.#o.ctx, classifyAzureError(err, { operation, vaultUrl: this.#o.vaultUrl, keyName: this.#o.keyName }));
    }
  }

  #client(version: string | undefined): CryptographyClient {
    const { vaultUrl, keyName } = this.#o;
    const id = version === undefined ? `${vaultUrl}/keys/${keyName}` : `${vaultUrl}/keys/${keyName}/${version}`;
    // A KeyVaultKey without key material, rather than the key id: given an id, the SDK fetches
    // the key, caches its public part and attributes for the client's lifetime, and then
    // (a) wraps locally with RSA-OAEP and RSA1_5 — it has no local RSA-OAEP-256, but relying on
    // that is fragile — so a revoked or disabled key would go unnoticed, and (b) checks expiry
    // against the cached attributes, which go stale when the key rotates. Without key material
    // the client has no local provider at all: every wrap and unwrap is a call to the vault,
    // which decides with the key's live state — so a successful call proves the vault still
    // grants access. (@azure/keyvault-keys 4.10, cryptographyClient.ts getProvider/ensureValid.)
    const key: KeyVaultKey = { name: keyName, id, properties: { name: keyName, vaultUrl, id, version } };
    return new CryptographyClient(key, this.#o.credential, this.#o.clientOptions());
  }

  #versionClient(version: string): CryptographyClient {
    if (version === this.#o.keyVersion) return this.#wrapClient;
    let client = this.#versionClients.get(version);
    if (client) {
      this.#versionClients.delete(version);
    } else {
      client = this.#client(version);
      if (this.#versionClients.size >= MAX_VERSION_CLIENTS) {
        const oldest = this.#versionClients.keys().next().value;
        if (oldest !== undefined) this.#versionClients.delete(oldest);
      }
    }
    this.#versionClients.set(version, client);
    return client;
  }

  #live(): void {
    if (this.#closed) throw new KmsError('unreachable', 'the azure KMS driver is closed');
  }
}

/** The SHA-256 prefix of the associated data that binds a wrapped key to its tenant and config. */
function binding(aad: Buffer): Buffer {
  return createHash('sha256').update(aad).digest().subarray(0, BINDING_BYTES);
}

/** The version in a kid `https://{vault}/keys/{name}/{version}`, if it names our key. */
function versionFromKid(kid: unknown, keyName: string): string | undefined {
  if (typeof kid !== 'string') return undefined;
  try {
    // The host is not compared: behind a private endpoint or proxy the vault names itself.
    const parsed = parseKeyVaultKeyIdentifier(kid);
    if (parsed.name.toLowerCase() !== keyName.toLowerCase()) return undefined;
    return parsed.version !== undefined && VERSION_PATTERN.test(parsed.version) ? parsed.version : undefined;
  } catch {
    return undefined;
  }
}

interface ParsedBlob {
  readonly version: string;
  readonly wrapped: Buffer;
}

/** The parts of a version-1 blob, or why it is not one. */
function parseBlob(blob: Buffer, algorithm: Algorithm): ParsedBlob | string {
  if (blob.length < 4 || blob[0] !== FORMAT_V1) return 'unknown format';
  if (blob[1] !== ALG_IDS[algorithm]) return `not made with ${algorithm}`;
  const length = blob[2]!;
  if (length === 0 || blob.length <= 3 + length) return 'truncated';
  const version = blob.subarray(3, 3 + length).toString('latin1');
  if (!VERSION_PATTERN.test(version)) return 'malformed key version';
  const wrapped = blob.subarray(3 + length);
  const sizeOk = algorithm === 'RSA-OAEP-256' ? RSA_WRAPPED_LENGTHS.has(wrapped.length) : wrapped.length >= 24 && wrapped.length % 8 === 0;
  if (!sizeOk) return 'wrapped value has the wrong length';
  return { version, wrapped };
}

