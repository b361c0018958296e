/**
 * AWS KMS driver: wraps data keys with the tenant's KMS key through `Encrypt`/`Decrypt`
 * (@aws-sdk/client-kms v3). Proven against nsmithuk/local-kms (test/kms/drivers/aws.test.ts).
 *
 * Blob format (the first byte says which):
 * - 0x01: 0x01 ‖ check (8) ‖ CiphertextBlob of KMS `Encrypt`, where check is the first 8
 *   bytes of SHA-256(CiphertextBlob).
 *
 * The check value is not what makes the wrap authentic — KMS does that, with AES-GCM
 * over its blob and the encryption context as AAD. It makes a corrupted or edited blob
 * fail here, deterministically and without a KMS call, whatever the KMS implementation
 * authenticates: local-kms, for one, ignores the key ARN inside its blob when KeyId is
 * given, so an edit there would otherwise go unnoticed.
 *
 * The caller's aad binds the wrap through the KMS encryption context, which KMS
 * authenticates as AAD: `{"keyward:aad": base64(aad)}`, plus readable `keyward:tenant`
 * and `keyward:kmsConfigId` entries when the aad is an EDEK aad, so the tenant's
 * CloudTrail shows which of its tenants' keys were touched. `Decrypt` names the KeyId,
 * so a blob made under another key fails (IncorrectKeyException) instead of being
 * decrypted by whichever key it names.
 *
 * The driver never retries (`maxAttempts: 1`): `withRetry` does, for every provider alike.
 * Failures are classified by `classifyAwsError` (aws-errors.ts, per kms-errors.md).
 */
import { createHash } from 'node:crypto';
import { DecryptCommand, EncryptCommand, KMSClient, type KMSClientConfig } from '@aws-sdk/client-kms';
import { fromNodeProviderChain, fromTemporaryCredentials } from '@aws-sdk/credential-providers';
import type { CallOptions, DriverContext, KmsDriver } from '../driver.js';
import { KmsError } from '../errors.js';
import { parseEdekAad } from '../../envelope/aad.js';
import { readSecret } from '../../config/secrets.js';
import type { AwsSettings } from '../../config/providers/aws.js';
import { awsErrorFacts, awsProviderMessage, classifyAwsError, type AwsOperation } from './aws-errors.js';

const FORMAT_V1 = 0x01;
const CHECK_BYTES = 8;
const HEADER_BYTES = 1 + CHECK_BYTES;
/** KMS accepts ciphertext blobs of 1..6144 bytes (Decrypt API reference). */
const MAX_CIPHERTEXT_BLOB = 6144;

/**
 * Backstops only: every call made through the pool carries `withTimeout`'s abort signal,
 * which is the real per-attempt bound. These keep a call made without a signal (or an STS
 * credential refresh, which the signal does not reach) from hanging on a dead connection.
 */
const CONNECT_TIMEOUT_MS = 5_000;
const REQUEST_TIMEOUT_MS = 30_000;

const CONTEXT_AAD = 'keyward:aad';
const CONTEXT_TENANT = 'keyward:tenant';
const CONTEXT_CONFIG = 'keyward:kmsConfigId';

/**
 * The encryption context for an aad. KMS binds the ciphertext to all of it; the readable
 * entries only repeat what the `keyward:aad` entry already binds, for CloudTrail.
 */
export function encryptionContextFor(aad: Buffer): Record<string, string> {
  const context: Record<string, string> = { [CONTEXT_AAD]: aad.toString('base64') };
  const parsed = parseEdekAad(aad);
  if (parsed) {
    context[CONTEXT_TENANT] = parsed.tenantId;
    context[CONTEXT_CONFIG] = String(parsed.kmsConfigId);
  }
  return context;
}

function checkValue(ciphertextBlob: Uint8Array): Buffer {
  return createHash('sha256').update(ciphertextBlob).digest().subarray(0, CHECK_BYTES);
}

type Credentials = NonNullable<KMSClientConfig['credentials']>;

async function resolveCredentials(settings: AwsSettings, ctx: DriverContext): Promise<Credentials> {
  const spec = settings.credentials ?? { type: 'default' as const };
  switch (spec.type) {
    case 'static': {
      const [accessKeyId, secretAccessKey, sessionToken] = await Promise.all([
        readSecret(spec.accessKeyId, ctx.env),
        readSecret(spec.secretAccessKey, ctx.env),
        spec.sessionToken === undefined ? Promise.resolve(undefined) : readSecret(spec.sessionToken, ctx.env),
      ]);
      return sessionToken === undefined ? { accessKeyId, secretAccessKey } : { accessKeyId, secretAccessKey, sessionToken };
    }
    case 'assumeRole': {
      const externalId = spec.externalId === undefined ? undefined : await readSecret(spec.externalId, ctx.env);
      // The source credentials come from the default chain (IRSA, instance role, env).
      return fromTemporaryCredentials({
        params: {
          RoleArn: spec.roleArn,
          RoleSessionName: spec.sessionName ?? 'keyward',
          DurationSeconds: spec.durationSeconds ?? 3600,
          ...(externalId === undefined ? {} : { ExternalId: externalId }),
        },
        clientConfig: {
          region: settings.region,
          maxAttempts: 1,
          requestHandler: { connectionTimeout: CONNECT_TIMEOUT_MS, requestTimeout: REQUEST_TIMEOUT_MS, throwOnRequestTimeout: true },
          ...(spec.stsEndpoint === undefined ? {} : { endpoint: spec.stsEndpoint }),
        },
      });
    }
    case 'default':
      return fromNodeProviderChain();
  }
}

export async function createAwsDriver(settings: AwsSettings, ctx: DriverContext): Promise<KmsDriver> {
  const credentials = await resolveCredentials(settings, ctx);
  const config: KMSClientConfig = {
    region: settings.region,
    credentials,
    // Never retry inside the SDK: withRetry retries unreachable/throttled for every provider.
    maxAttempts: 1,
    requestHandler: { connectionTimeout: CONNECT_TIMEOUT_MS, requestTimeout: REQUEST_TIMEOUT_MS, throwOnRequestTimeout: true },
    ...(settings.endpoint === undefined ? {} : { endpoint: settings.endpoint }),
  };
  const client = new KMSClient(config);
  ctx.logger.debug(
    { provider: 'aws', region: settings.region, keyId: settings.keyId, endpoint: settings.endpoint, credentials: settings.credentials?.type ?? 'default' },
    'AWS KMS driver ready',
  );
  return new AwsDriver(client, settings.keyId, ctx);
}

class AwsDriver implements KmsDriver {
  readonly provider = 'aws' as const;
  #client: KMSClient | undefined;
  readonly #keyId: string;
  readonly #ctx: DriverContext;

  constructor(client: KMSClient, keyId: string, ctx: DriverContext) {
    this.#client = client;
    this.#keyId = keyId;
    this.#ctx = ctx;
  }

  async wrap(plaintext: Buffer, aad: Buffer, options?: CallOptions): Promise<Buffer> {
    const client = this.#live();
    // A copy for the SDK: the caller's buffer is never handed on, and ours is wiped after.
    const input = Uint8Array.from(plaintext);
    try {
      const out = await client.send(
        new EncryptCommand({ KeyId: this.#keyId, Plaintext: input, EncryptionContext: encryptionContextFor(aad) }),
        { abortSignal: options?.signal },
      );
      const blob = out.CiphertextBlob;
      if (!blob || blob.length === 0) throw new KmsError('other', `AWS KMS returned no ciphertext for key ${this.#keyId}`);
      return Buffer.concat([Buffer.of(FORMAT_V1), checkValue(blob), blob]);
    } catch (err) {
      throw this.#fail('wrap', err);
    } finally {
      input.fill(0);
    }
  }

  async unwrap(blob: Buffer, aad: Buffer, options?: CallOptions): Promise<Buffer> {
    const client = this.#live();
    if (blob.length <= HEADER_BYTES || blob.length > HEADER_BYTES + MAX_CIPHERTEXT_BLOB || blob[0] !== FORMAT_V1) {
      throw new KmsError('bad_ciphertext', 'the wrapped key is not an AWS KMS ciphertext made by Keyward');
    }
    const ciphertext = blob.subarray(HEADER_BYTES);
    if (!checkValue(ciphertext).equals(blob.subarray(1, HEADER_BYTES))) {
      throw new KmsError('bad_ciphertext', 'the wrapped key is corrupted (its check value does not match)');
    }
    try {
      const out = await client.send(
        new DecryptCommand({
          KeyId: this.#keyId,
          CiphertextBlob: Uint8Array.from(ciphertext),
          EncryptionContext: encryptionContextFor(aad),
        }),
        { abortSignal: options?.signal },
      );
      const plain = out.Plaintext;
      if (!plain || plain.length === 0) throw new KmsError('other', `AWS KMS returned no plaintext for key ${this.#keyId}`);
      const result = Buffer.from(plain);
      plain.fill(0);
      return result;
    } catch (err) {
      throw this.#fail('unwrap', err);
    }
  }

  async close(): Promise<void> {
    const client = this.#client;
    this.#client = undefined;
    client?.destroy();
  }

  #live(): KMSClient {
    if (!this.#client) throw new KmsError('unreachable', 'the AWS KMS driver is closed');
    return this.#client;
  }

  /** Classifies, and logs the provider's own words (redacted) for the operator. */
  #fail(operation: AwsOperation, err: unknown): KmsError {
    const error = classifyAwsError(err, { operation, keyId: this.#keyId });
    if (err instanceof KmsError) return error;
    const facts = awsErrorFacts(err);
    const fields = {
      provider: 'aws',
      operation,
      keyId: this.#keyId,
      kind: error.kind,
      awsError: facts.code ?? facts.name,
      httpStatus: facts.httpStatus,
      requestId: facts.requestId,
      providerMessage: awsProviderMessage(err),
    };
    // Outages and bad ciphertexts can come in floods and say nothing new: debug. Refusals,
    // unusable keys and the unexpected need the operator's (or the tenant's) attention.
    const quiet = error.kind === 'unreachable' || error.kind === 'throttled' || error.kind === 'bad_ciphertext';
    if (quiet) this.#ctx.logger.debug(fields, 'AWS KMS call failed');
    else this.#ctx.logger.warn(fields, 'AWS KMS call failed');
    return error;
  }
}
