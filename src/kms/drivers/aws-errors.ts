/**
 * Classification of AWS KMS failures into the closed set of `KmsError` kinds, as laid
 * down in kms-errors.md (AWS section), in its order: transport → throttling → account →
 * ciphertext → key state → auth → server 5xx → other.
 *
 * Structured fields decide: `err.name` (the SDK's exception class, or for an unmodelled
 * error the service's error code), `err.code` for Node network errors, and
 * `$metadata.httpStatusCode`. Message text is read only to split cases that share one
 * name (clock skew inside InvalidSignatureException, an external key store proxy timeout
 * inside KMSInvalidStateException, a network failure inside a credential provider's
 * error). The provider's message is never copied into ours; `awsProviderMessage` makes
 * it fit for a log line.
 *
 * This file does not import the SDK: it recognises its errors by shape, so it can be
 * loaded and unit tested on its own.
 */
import { KmsError, type KmsFailureKind } from '../errors.js';
import { redactSecrets } from '../redact.js';

export type AwsOperation = 'wrap' | 'unwrap';

export interface AwsErrorContext {
  readonly operation: AwsOperation;
  /** The configured key reference (id, ARN, alias); not a secret, it names the tenant's key. */
  readonly keyId: string;
}

/** What a classifier reads from an error, and what a log line may show of it. */
export interface AwsErrorFacts {
  /** Exception name or network error code, reduced to a safe identifier. */
  readonly name: string;
  readonly code: string | undefined;
  readonly httpStatus: number | undefined;
  readonly requestId: string | undefined;
  readonly retryAfterSeconds: number | undefined;
}

// kms-errors.md, AWS section, name by name.
const THROTTLING = new Set(['ThrottlingException', 'LimitExceededException', 'Throttling', 'TooManyRequestsException', 'RequestLimitExceeded']);
const CIPHERTEXT = new Set(['InvalidCiphertextException', 'IncorrectKeyException']);
const KEY_STATE = new Set([
  'DisabledException',
  'KMSInvalidStateException',
  'NotFoundException',
  'InvalidKeyUsageException',
  // Not in kms-errors.md: a malformed key ARN in our settings is a configuration problem like
  // an unknown key (KMS answers most malformed ids with NotFoundException already).
  'InvalidArnException',
]);
const REFUSED = new Set([
  'UnrecognizedClientException',
  'InvalidSignatureException',
  'ExpiredTokenException',
  'AccessDeniedException',
  'CredentialsProviderError',
  // The same refusals as STS words them, met on the assumeRole credential path
  // (https://docs.aws.amazon.com/STS/latest/APIReference/CommonErrors.html).
  'AccessDenied',
  'InvalidClientTokenId',
  'SignatureDoesNotMatch',
  'ExpiredToken',
  'IncompleteSignature',
  'MissingAuthenticationToken',
]);
const UNREACHABLE = new Set(['KMSInternalException', 'DependencyTimeoutException', 'KeyUnavailableException', 'InternalFailure', 'ServiceUnavailable']);
/**
 * Not in kms-errors.md's AWS list, which names no account markers: AWS's common errors for
 * an account that is not subscribed (OptInRequired) and STS disabled in the region.
 */
const ACCOUNT = new Set(['OptInRequired', 'RegionDisabledException']);
/** Node and SDK transport failures: the request never got an answer. */
const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ECONNRESET',
  'ETIMEDOUT',
  'ECONNABORTED',
  'EPIPE',
  'ENETDOWN',
  'EHOSTDOWN',
  'UND_ERR_SOCKET',
  'UND_ERR_CONNECT_TIMEOUT',
  'ERR_SOCKET_CONNECTION_TIMEOUT',
]);
const NETWORK_NAMES = new Set(['TimeoutError', 'AbortError', 'RequestTimeout', 'RequestTimeoutException']);
/** How a network failure reads when it reaches us only as text (credential providers wrap them). */
const NETWORK_TEXT =
  /\b(ECONNREFUSED|ENOTFOUND|EAI_AGAIN|EHOSTUNREACH|ENETUNREACH|ECONNRESET|ETIMEDOUT|socket hang up|timed? ?out|network|getaddrinfo)\b/i;
/** InvalidSignatureException / RequestExpired for a skewed clock, not a bad key pair. */
const CLOCK_SKEW_TEXT = /signature (expired|not yet current)|request has expired|clock skew/i;
/** A proxy timeout of an external key store (XKS), which KMS reports as KMSInvalidStateException. */
const PROXY_TEXT = /\bproxy\b/i;
const PROXY_TIMEOUT_TEXT = /time[ds]? ?out|did not respond|not responding|unreachable|could not (reach|connect)|unable to (reach|connect)|busy|throttl/i;

function record(value: unknown): Record<string, unknown> | undefined {
  return value !== null && typeof value === 'object' ? (value as Record<string, unknown>) : undefined;
}

function stringField(value: unknown, field: string): string | undefined {
  const v = record(value)?.[field];
  return typeof v === 'string' ? v : undefined;
}

/** Error names and codes are identifiers; anything else is not shown. */
function safeIdentifier(value: string | undefined): string | undefined {
  return value !== undefined && /^[A-Za-z][A-Za-z0-9_.:-]{0,79}$/.test(value) ? value : undefined;
}

/** Seconds from a Retry-After header: delta-seconds or an HTTP date. */
export function parseRetryAfter(value: string | undefined, now = Date.now()): number | undefined {
  if (value === undefined) return undefined;
  const text = value.trim();
  if (/^\d+$/.test(text)) return Number(text);
  const date = Date.parse(text);
  if (Number.isNaN(date)) return undefined;
  return Math.max(0, Math.ceil((date - now) / 1000));
}

function headerOf(response: unknown, name: string): string | undefined {
  const headers = record(record(response)?.headers);
  if (!headers) return undefined;
  for (const [key, value] of Object.entries(headers)) {
    if (key.toLowerCase() === name) {
      if (typeof value === 'string') return value;
      if (Array.isArray(value) && typeof value[0] === 'string') return value[0];
    }
  }
  return undefined;
}

/** The structured facts of an SDK or network error, with nothing secret in them. */
export function awsErrorFacts(err: unknown): AwsErrorFacts {
  const e = record(err);
  const metadata = record(e?.$metadata);
  const status = metadata?.httpStatusCode;
  const requestId = stringField(metadata, 'requestId');
  return {
    name: safeIdentifier(stringField(e, 'name')) ?? 'Error',
    code: safeIdentifier(stringField(e, 'code')),
    httpStatus: typeof status === 'number' ? status : undefined,
    requestId: requestId !== undefined && /^[A-Za-z0-9-]{1,128}$/.test(requestId) ? requestId : undefined,
    retryAfterSeconds: parseRetryAfter(headerOf(e?.$response, 'retry-after')),
  };
}

/**
 * A Node network error, possibly nested: the SDK may wrap it (`cause`), and Node's
 * happy-eyeballs connect throws an AggregateError whose `errors` hold the per-address ones.
 */
function networkCode(err: unknown, depth = 0): string | undefined {
  const e = record(err);
  if (!e || depth > 3) return undefined;
  const code = stringField(e, 'code');
  if (code !== undefined && NETWORK_CODES.has(code)) return code;
  const errors = e.errors;
  if (Array.isArray(errors)) {
    for (const inner of errors) {
      const found = networkCode(inner, depth + 1);
      if (found) return found;
    }
  }
  return networkCode(e.cause, depth + 1);
}

function messageOf(err: unknown): string {
  const e = record(err);
  const message = stringField(e, 'message') ?? stringField(e, 'Message');
  return message ?? '';
}

const OPERATION_TEXT: Record<AwsOperation, string> = { wrap: 'wrap (Encrypt)', unwrap: 'unwrap (Decrypt)' };

/**
 * Turns anything the AWS SDK (or the network under it) throws into a classified
 * `KmsError`. The provider error stays as `cause`; the message is ours.
 */
export function classifyAwsError(err: unknown, context: AwsErrorContext): KmsError {
  if (err instanceof KmsError) return err;
  const facts = awsErrorFacts(err);
  const { name, httpStatus } = facts;
  const message = messageOf(err);
  const op = OPERATION_TEXT[context.operation];
  const key = context.keyId;
  const tag = httpStatus === undefined ? name : `${name}, HTTP ${httpStatus}`;
  const make = (kind: KmsFailureKind, text: string, retryAfterSeconds?: number): KmsError =>
    new KmsError(kind, text, retryAfterSeconds === undefined ? { cause: err } : { cause: err, retryAfterSeconds });

  // 1. Transport: no HTTP status, a network code or a timeout/abort. Never a refusal
  //    (kms-errors.md rule 3), even when it surfaced through a credential provider.
  const netCode = networkCode(err);
  if (httpStatus === undefined && (netCode !== undefined || NETWORK_NAMES.has(name))) {
    return make('unreachable', `AWS KMS could not be reached for ${op} (${netCode ?? name})`);
  }

  // 2. Throttling: by name, by status 429, or the SDK's own throttling marker.
  const retryable = record(record(err)?.$retryable);
  if (THROTTLING.has(name) || httpStatus === 429 || retryable?.throttling === true) {
    return make('throttled', `AWS KMS throttled a ${op} with key ${key} (${tag})`, facts.retryAfterSeconds);
  }

  // 3. Account.
  if (ACCOUNT.has(name)) {
    return make('account_issue', `the AWS account cannot use KMS here (${tag}); the operator must fix the account or region`);
  }

  // 4. Ciphertext.
  if (CIPHERTEXT.has(name)) {
    return make('bad_ciphertext', `AWS KMS key ${key} cannot decrypt this wrapped key under this tenant's encryption context (${name})`);
  }

  // 5. Key state. An external key store proxy that timed out is an outage, not a key state.
  if (KEY_STATE.has(name)) {
    if (name === 'KMSInvalidStateException' && PROXY_TEXT.test(message) && PROXY_TIMEOUT_TEXT.test(message)) {
      return make('unreachable', `the external key store proxy of AWS KMS key ${key} did not answer a ${op} (${name})`);
    }
    const state =
      name === 'DisabledException'
        ? 'is disabled'
        : name === 'NotFoundException' || name === 'InvalidArnException'
          ? 'does not exist (or is not visible to these credentials)'
          : name === 'InvalidKeyUsageException'
            ? 'cannot be used for encryption (wrong key usage or spec)'
            : 'is in a state that does not allow it (pending deletion, pending import or unavailable key store)';
    return make('key_unusable', `AWS KMS key ${key} ${state}; ${op} refused (${name})`);
  }

  // 6. Auth. A skewed clock is not a bad credential: the SDK corrects its clock offset
  //    from the server's Date header after such an answer, so a retry can succeed.
  if (REFUSED.has(name) || name === 'RequestExpired' || httpStatus === 401 || httpStatus === 403) {
    if ((name === 'InvalidSignatureException' || name === 'RequestExpired' || name === 'SignatureDoesNotMatch') && CLOCK_SKEW_TEXT.test(message)) {
      return make('unreachable', `AWS KMS rejected the request time for ${op}: this machine's clock is skewed (${name})`);
    }
    if (name === 'CredentialsProviderError' && NETWORK_TEXT.test(message)) {
      return make('unreachable', `the AWS credential provider could not reach its source for ${op} (${name})`);
    }
    if (name === 'RequestExpired') {
      return make('unreachable', `AWS KMS rejected the request time for ${op} (${name})`);
    }
    return make('refused', `AWS refused the credentials or permissions for ${op} with key ${key} (${tag})`);
  }

  // 7. Server side.
  if (UNREACHABLE.has(name) || (httpStatus !== undefined && httpStatus >= 500) || record(err)?.$fault === 'server') {
    return make('unreachable', `AWS KMS failed on its side during ${op} (${tag})`);
  }

  // 8. Anything else.
  return make('other', `AWS KMS ${op} with key ${key} failed (${tag})`);
}

/** The provider's message of an SDK error, redacted for a log line (empty when there is none). */
export function awsProviderMessage(err: unknown): string {
  return redactSecrets(messageOf(err));
}
