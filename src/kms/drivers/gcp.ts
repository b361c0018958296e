/**
 * Google Cloud KMS driver: wraps data keys with a tenant's symmetric ENCRYPT_DECRYPT
 * CryptoKey through the official client (@google-cloud/kms 5.x over gRPC).
 *
 * Blob format (the first byte says which):
 * - 0x01: 0x01 ‖ the Cloud KMS ciphertext. The caller's aad is Cloud KMS's
 *   `additionalAuthenticatedData`, so a blob only decrypts for the tenant and config it
 *   was made for. Cloud KMS finds the key version inside its ciphertext, so old blobs keep
 *   decrypting after a rotation for as long as their version stays enabled.
 *
 * Integrity (https://cloud.google.com/kms/docs/data-integrity-guidelines): every request
 * carries the CRC32C of what it sends, and every response is checked — the service must
 * say it verified our plaintext and AAD, the ciphertext must match its CRC32C, the
 * decrypted plaintext must match its CRC32C, and the answering key version must belong to
 * the configured key. A checksum mismatch means the exchange was damaged on the way; the
 * guide says to retry a limited number of times, so it is `unreachable` (retryable by
 * `withRetry`), never a success and never a bad ciphertext.
 *
 * No retries here (the KmsDriver contract): each call is made with `{ retry: null }`, so
 * gax's default policy (UNAVAILABLE / DEADLINE_EXCEEDED retried for up to 600 s) is off,
 * and cancelled when `options.signal` fires. Failures are classified by
 * `classifyGcpError` (gcp-errors.ts, per kms-errors.md).
 *
 * Tested against Keyward's own Cloud KMS stand-in (test/helpers/gcp-kms-standin.ts), a
 * gRPC server built from the client's .proto files — not against Google's service or an
 * independent emulator; docs/kms/gcp.md says what that does and does not prove.
 */
import { createPrivateKey } from 'node:crypto';
import { KeyManagementServiceClient, type protos } from '@google-cloud/kms';
import { grpc, routingHeader, type CallOptions as GaxCallOptions, type CancellablePromise, type ClientOptions } from 'google-gax';
import type { Logger } from 'pino';
import type { CallOptions, DriverContext, KmsDriver } from '../driver.js';
import { KmsError } from '../errors.js';
import { crc32c } from '../crc32c.js';
import { SecretError, describeSecretRef, readSecret } from '../../config/secrets.js';
import type { GcpSettings } from '../../config/providers/gcp.js';
import { classifyGcpError, grpcStatusName, int64ToNumber, providerMessageForLog, type GcpOperation } from './gcp-errors.js';

const FORMAT_V1 = 0x01;
const DEFAULT_ENDPOINT = 'cloudkms.googleapis.com';
const DEFAULT_PORT = 443;
/**
 * gRPC deadline of each call. `withTimeout` normally cancels first (through the signal);
 * this only bounds a driver used without it. 60 s is the client library's own default.
 */
const CALL_DEADLINE_MS = 60_000;
/**
 * grpc-js backs off reconnecting up to 120 s by default; after an outage that would keep a
 * recovered KMS unused for minutes. Reconnect attempts stay cheap at this bound.
 */
const MAX_RECONNECT_BACKOFF_MS = 10_000;

type EncryptRequest = protos.google.cloud.kms.v1.IEncryptRequest;
type EncryptResponse = protos.google.cloud.kms.v1.IEncryptResponse;
type DecryptRequest = protos.google.cloud.kms.v1.IDecryptRequest;
type DecryptResponse = protos.google.cloud.kms.v1.IDecryptResponse;
type UnaryCall<Req, Res> = (request: Req, options: GaxCallOptions) => CancellablePromise<[Res, unknown, unknown]>;

/**
 * The client's generated methods (`client.encrypt`) chain `.then` onto gax's call and so
 * drop its `cancel()`, and they log whole requests and responses — plaintext included —
 * when GOOGLE_SDK_NODE_LOGGING is set. The gax calls they delegate to (`innerApiCalls`,
 * public on the generated client) keep `cancel()` and log nothing; the routing header
 * the generated method would add is added here.
 */
interface InnerCalls {
  encrypt: UnaryCall<EncryptRequest, EncryptResponse>;
  decrypt: UnaryCall<DecryptRequest, DecryptResponse>;
}

export async function createGcpDriver(settings: GcpSettings, ctx: DriverContext): Promise<KmsDriver> {
  const logger = ctx.logger.child({ provider: 'gcp', keyName: settings.keyName });
  const options = await clientOptions(settings, ctx);
  let client: KeyManagementServiceClient | undefined;
  try {
    client = new KeyManagementServiceClient(options);
    // Builds the gRPC stub and, with credentials, the auth client. It opens no connection to
    // Cloud KMS: channels connect on first use, so a KMS outage does not stop the driver starting.
    await client.initialize();
  } catch (err) {
    await client?.close().catch(() => undefined);
    const error = classifyGcpError(err, { operation: 'connect', keyName: settings.keyName });
    logger.error({ kind: error.kind, providerMessage: providerMessageForLog(err) }, 'Cloud KMS client could not start');
    throw error;
  }
  logger.debug({ endpoint: settings.endpoint ?? DEFAULT_ENDPOINT, tls: settings.tls !== false }, 'Cloud KMS driver ready');
  return new GcpDriver(settings.keyName, client, logger);
}

/** Client options from settings; no network is touched. Configuration mistakes are `key_unusable` (207). */
async function clientOptions(settings: GcpSettings, ctx: DriverContext): Promise<ClientOptions> {
  const tls = settings.tls !== false;
  const bad = (why: string): KmsError => new KmsError('key_unusable', `gcp KMS config for ${settings.keyName}: ${why}`);
  const options: ClientOptions = {
    fallback: false,
    'grpc.max_reconnect_backoff_ms': MAX_RECONNECT_BACKOFF_MS,
  };
  if (settings.endpoint !== undefined) {
    const colon = settings.endpoint.lastIndexOf(':');
    const host = settings.endpoint.slice(0, colon).replace(/^\[(.*)\]$/, '$1');
    const port = Number(settings.endpoint.slice(colon + 1));
    if (colon <= 0 || !Number.isInteger(port) || port < 1 || port > 65535) throw bad('endpoint must be host:port');
    options.apiEndpoint = host;
    options.port = port;
  } else {
    options.apiEndpoint = DEFAULT_ENDPOINT;
    options.port = DEFAULT_PORT;
  }

  if (!tls) {
    if (settings.endpoint === undefined) throw bad('tls: false needs an endpoint (a local emulator or sidecar proxy)');
    if (settings.credentials !== undefined) throw bad('credentials are never sent over plaintext gRPC; drop them or use tls');
    // Plaintext channel, no call credentials. The explicit universe keeps google-auth-library
    // from looking for credentials to learn it, so no Google auth endpoint is ever asked.
    options.sslCreds = grpc.credentials.createInsecure();
    options.universeDomain = 'googleapis.com';
    return options;
  }

  const credentials = settings.credentials ?? { type: 'default' as const };
  if (credentials.type === 'serviceAccount') {
    let text: string;
    try {
      text = await readSecret(credentials.key, ctx.env);
    } catch (err) {
      if (err instanceof SecretError) throw new KmsError('key_unusable', err.message, { cause: err });
      throw err;
    }
    const where = describeSecretRef(credentials.key);
    let key: { type?: unknown; client_email?: unknown; private_key?: unknown; project_id?: unknown; universe_domain?: unknown };
    try {
      key = JSON.parse(text) as typeof key;
    } catch {
      // Never the parser's message: it quotes the text, which is a private key.
      throw bad(`the service-account key (${where}) is not JSON`);
    }
    if (typeof key !== 'object' || key === null || typeof key.client_email !== 'string' || typeof key.private_key !== 'string') {
      throw bad(`the service-account key (${where}) needs client_email and private_key (a JSON key file of type service_account)`);
    }
    try {
      // A key that cannot sign would fail inside the auth plugin on every call, as an
      // unclassifiable UNKNOWN; say so once, at start-up, as the configuration problem it is.
      createPrivateKey(key.private_key);
    } catch {
      throw bad(`the service-account key (${where}) has a private_key that is not a PEM private key`);
    }
    options.credentials = { client_email: key.client_email, private_key: key.private_key };
    if (typeof key.universe_domain === 'string') options.universeDomain = key.universe_domain;
    if (typeof key.project_id === 'string') options.projectId = key.project_id;
  }
  // type 'default': application default credentials, found by google-auth-library
  // (GOOGLE_APPLICATION_CREDENTIALS, gcloud's ADC file, workload identity / metadata server).
  return options;
}

class GcpDriver implements KmsDriver {
  readonly provider = 'gcp' as const;
  readonly #keyName: string;
  readonly #versionPrefix: string;
  readonly #routing: string;
  readonly #logger: Logger;
  #client: KeyManagementServiceClient | undefined;
  readonly #calls: InnerCalls;

  constructor(keyName: string, client: KeyManagementServiceClient, logger: Logger) {
    this.#keyName = keyName;
    this.#versionPrefix = `${keyName}/cryptoKeyVersions/`;
    this.#routing = routingHeader.fromParams({ name: keyName });
    this.#logger = logger;
    this.#client = client;
    this.#calls = client.innerApiCalls as unknown as InnerCalls;
  }

  async wrap(plaintext: Buffer, aad: Buffer, options?: CallOptions): Promise<Buffer> {
    const response = await this.#call('encrypt', {
      name: this.#keyName,
      plaintext,
      additionalAuthenticatedData: aad,
      plaintextCrc32c: { value: crc32c(plaintext) },
      additionalAuthenticatedDataCrc32c: { value: crc32c(aad) },
    }, options);
    if (response.verifiedPlaintextCrc32c !== true || response.verifiedAdditionalAuthenticatedDataCrc32c !== true) {
      throw this.#integrityFailure('encrypt', 'did not confirm the checksums of the plaintext and AAD it received');
    }
    const ciphertext = toBuffer(response.ciphertext);
    if (ciphertext.length === 0 || int64(response.ciphertextCrc32c?.value) !== crc32c(ciphertext)) {
      throw this.#integrityFailure('encrypt', 'returned a ciphertext that does not match its checksum');
    }
    const name = response.name ?? '';
    if (!name.startsWith(this.#versionPrefix) || !/^[0-9]+$/.test(name.slice(this.#versionPrefix.length))) {
      // Not a damaged exchange but a wrong answer (a misrouting proxy or endpoint): a retry
      // along the same path would not fix it, and the ciphertext is of no use to us.
      this.#logger.error({ operation: 'encrypt', answeredBy: name.slice(0, 300) }, 'Cloud KMS answered with a key version of another key');
      throw new KmsError('other', `Cloud KMS answered an encrypt for key ${this.#keyName} with a version of another key`);
    }
    return Buffer.concat([Buffer.of(FORMAT_V1), ciphertext]);
  }

  async unwrap(blob: Buffer, aad: Buffer, options?: CallOptions): Promise<Buffer> {
    if (blob.length < 2 || blob[0] !== FORMAT_V1) {
      throw new KmsError('bad_ciphertext', 'the wrapped key is not a Cloud KMS ciphertext made by Keyward');
    }
    // A copy, so that nothing the client does to its request can reach the caller's buffer.
    const ciphertext = Buffer.from(blob.subarray(1));
    const response = await this.#call('decrypt', {
      name: this.#keyName,
      ciphertext,
      additionalAuthenticatedData: aad,
      ciphertextCrc32c: { value: crc32c(ciphertext) },
      additionalAuthenticatedDataCrc32c: { value: crc32c(aad) },
    }, options);
    const received = toBuffer(response.plaintext);
    const plaintext = Buffer.from(received);
    received.fill(0);
    if (int64(response.plaintextCrc32c?.value) !== crc32c(plaintext)) {
      plaintext.fill(0);
      throw this.#integrityFailure('decrypt', 'returned a plaintext that does not match its checksum');
    }
    return plaintext;
  }

  async close(): Promise<void> {
    const client = this.#client;
    this.#client = undefined;
    await client?.close();
  }

  async #call<M extends keyof InnerCalls>(
    method: M,
    request: Parameters<InnerCalls[M]>[0],
    options: CallOptions | undefined,
  ): Promise<Awaited<ReturnType<InnerCalls[M]>>[0]> {
    const operation: GcpOperation = method;
    if (this.#client === undefined) throw new KmsError('unreachable', 'the gcp KMS driver is closed');
    const signal = options?.signal;
    if (signal?.aborted) throw new KmsError('unreachable', `Cloud KMS ${operation} was cancelled before it started`);
    const invoke = this.#calls[method] as UnaryCall<Parameters<InnerCalls[M]>[0], Awaited<ReturnType<InnerCalls[M]>>[0]>;
    const call = invoke(request, {
      retry: null,
      timeout: CALL_DEADLINE_MS,
      otherArgs: { headers: { 'x-goog-request-params': this.#routing } },
    });
    const cancel = (): void => call.cancel();
    signal?.addEventListener('abort', cancel, { once: true });
    try {
      const [response] = await call;
      return response;
    } catch (err) {
      const error = classifyGcpError(err, { operation, keyName: this.#keyName });
      const code = (err as { code?: unknown }).code;
      const fields = {
        operation,
        kind: error.kind,
        grpcStatus: typeof code === 'number' ? grpcStatusName(code) : undefined,
        reason: (err as { reason?: unknown }).reason,
        providerMessage: providerMessageForLog(err),
      };
      // A bad ciphertext is the caller's problem and expected in normal traffic; a call we
      // cancelled ourselves (timeout) is reported by withTimeout.
      if (error.kind === 'bad_ciphertext' || signal?.aborted === true) this.#logger.debug(fields, 'Cloud KMS call failed');
      else this.#logger.warn(fields, 'Cloud KMS call failed');
      throw error;
    } finally {
      signal?.removeEventListener('abort', cancel);
    }
  }

  #integrityFailure(operation: GcpOperation, what: string): KmsError {
    this.#logger.warn({ operation, kind: 'unreachable' }, `Cloud KMS ${what}; response discarded`);
    return new KmsError('unreachable', `Cloud KMS ${what} (data damaged in transit; the response was discarded) for key ${this.#keyName}`);
  }
}

function toBuffer(bytes: Uint8Array | string | null | undefined): Buffer {
  if (bytes === null || bytes === undefined) return Buffer.alloc(0);
  if (typeof bytes === 'string') return Buffer.from(bytes, 'base64');
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** An int64 wrapper's value (a CRC32C), or undefined when absent or not an integer. */
function int64(value: unknown): number | undefined {
  const n = int64ToNumber(value);
  return Number.isSafeInteger(n) ? n : undefined;
}
