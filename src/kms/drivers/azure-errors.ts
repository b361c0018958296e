/**
 * Classification of Azure Key Vault failures into the closed set of `KmsError` kinds, as laid
 * down in kms-errors.md (Azure section), in its order: transport → throttling → account →
 * ciphertext → key state → auth → server 5xx → other.
 *
 * Inputs are recognised by shape, not by class, so this file imports no SDK and can be unit
 * tested without one:
 * - `RestError` (@azure/core-rest-pipeline): `statusCode`, `code` (= the body's `error.code`, or
 *   a transport code such as REQUEST_SEND_ERROR when there was no answer), `details.error.innerError.code`
 *   (the body's `error.innererror.code`), and the answer's headers in `response.headers`;
 * - @azure/identity's `AuthenticationError`, `AuthenticationRequiredError`,
 *   `AggregateAuthenticationError` and `CredentialUnavailableError`, by `name`;
 * - `AbortError` (our timeout aborted the request);
 * - the plain `Error`s the SDK throws from its own local checks (key expired, not yet valid,
 *   operation not permitted, challenge resource mismatch).
 *
 * Messages are ours: the provider's text is never copied into them (it can name principals,
 * client addresses or, from an identity provider, request details). It stays on `cause`, for
 * operators, and is only logged through `redactSecrets`.
 */
import { KmsError, type KmsFailureKind } from '../errors.js';

export type AzureOperation = 'start' | 'wrap' | 'unwrap' | 'check';

/** What the failing call was doing. Vault URL and key name are configuration, safe in messages. */
export interface AzureErrorContext {
  readonly operation: AzureOperation;
  readonly vaultUrl?: string;
  readonly keyName?: string;
}

/** Transport failures: the request never got an answer. */
const NETWORK_CODES: ReadonlySet<string> = new Set([
  'REQUEST_SEND_ERROR',
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'ENOTFOUND',
  'EAI_AGAIN',
  'ETIMEDOUT',
  'ESOCKETTIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENETDOWN',
  'EPIPE',
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_SOCKET',
]);

/**
 * Text by which an identity error shows that the identity provider could not be reached (rule 3
 * of kms-errors.md: never wipe on a network-looking error that arrives through an auth path).
 * MSAL reports a failed authority metadata download as `endpoints_resolution_error`.
 */
const NETWORK_TEXT =
  /\b(?:ECONNREFUSED|ECONNRESET|ECONNABORTED|ENOTFOUND|EAI_AGAIN|ETIMEDOUT|EHOSTUNREACH|ENETUNREACH|ENETDOWN|EPIPE|REQUEST_SEND_ERROR)\b|socket hang up|network[ _-]?(?:error|request failed|is unreachable)|timed? ?out\b|timeout|getaddrinfo|fetch failed|endpoints_resolution_error|endpoints cannot be resolved|service unavailable|temporarily unavailable/i;

/** 403 answers whose inner code says the key's state, not the caller's rights, is the problem. */
const KEY_STATE_INNER_CODES: ReadonlySet<string> = new Set(['KeyDisabled', 'KeyExpired', 'KeyNotYetValid', 'KeyOperationForbidden']);

/**
 * The service's message for the same case, for answers that lack the inner code: "Operation
 * unwrapKey is not allowed on a disabled key." (kms-errors.md), and its expired, not-yet-valid and
 * not-permitted siblings. 403 also means "no permission", so the text is what splits the two.
 */
const KEY_STATE_TEXT = /not (?:allowed|permitted) on (?:a |an |this )?(?:disabled |expired |inactive )?key|key is (?:disabled|expired|not yet valid)/i;

/** BadParameter on an unwrap whose message blames the ciphertext (e.g. "Error occurred while decoding OAEP padding."). */
const CIPHERTEXT_TEXT = /OAEP|padding|decod|decrypt|unwrap|integrity|length of the data|ciphertext/i;

/** The SDK's own checks before it sends anything (cryptographyClient.ts `ensureValid`). */
const SDK_LOCAL_KEY_TEXT = /can't be used before|expired at|is not supported on key/;

/** @azure/keyvault-common, when the challenge's resource is not the vault's domain. */
const CHALLENGE_MISMATCH_TEXT = /challenge resource .* does not match the requested domain/;

const IDENTITY_ERROR_NAMES: ReadonlySet<string> = new Set([
  'AuthenticationError',
  'AuthenticationRequiredError',
  'AggregateAuthenticationError',
  'CredentialUnavailableError',
]);

interface HeadersLike {
  get(name: string): string | undefined;
}

interface RestErrorLike {
  readonly name: string;
  readonly message: string;
  readonly statusCode?: number;
  readonly code?: string;
  readonly details?: unknown;
  readonly response?: { readonly headers?: HeadersLike; readonly status?: number; readonly bodyAsText?: string | null };
}

function isRestErrorLike(err: unknown): err is RestErrorLike {
  return err instanceof Error && err.name === 'RestError';
}

/** The inner error code: `details.error.innerError.code` (the SDK's deserialised body) or the raw body's `innererror`. */
export function innerErrorCode(err: RestErrorLike): string | undefined {
  const details = err.details as { error?: { innerError?: { code?: unknown }; innererror?: { code?: unknown } } } | undefined;
  const fromDetails = details?.error?.innerError?.code ?? details?.error?.innererror?.code;
  if (typeof fromDetails === 'string') return fromDetails;
  const text = err.response?.bodyAsText;
  if (typeof text === 'string' && text.length < 10_000) {
    try {
      const body = JSON.parse(text) as { error?: { innererror?: { code?: unknown } } };
      const code = body.error?.innererror?.code;
      if (typeof code === 'string') return code;
    } catch {
      // not JSON: no inner code
    }
  }
  return undefined;
}

/**
 * Seconds to wait from a throttled answer: `retry-after-ms` / `x-ms-retry-after-ms` (milliseconds)
 * or `Retry-After` (seconds, or an HTTP date). Undefined when absent or unreadable.
 */
export function retryAfterSeconds(headers: HeadersLike | undefined, now = Date.now()): number | undefined {
  if (!headers) return undefined;
  for (const name of ['retry-after-ms', 'x-ms-retry-after-ms']) {
    const ms = Number(headers.get(name));
    if (headers.get(name) !== undefined && Number.isFinite(ms) && ms >= 0) return ms / 1000;
  }
  const value = headers.get('retry-after');
  if (value === undefined || value.trim() === '') return undefined;
  const seconds = Number(value);
  if (Number.isFinite(seconds) && seconds >= 0) return seconds;
  const date = Date.parse(value);
  if (Number.isFinite(date)) return Math.max(0, (date - now) / 1000);
  return undefined;
}

function networkCode(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && NETWORK_CODES.has(code) ? code : undefined;
}

/** The messages of an error, its causes and (for AggregateAuthenticationError) its parts. */
function allMessages(err: unknown, depth = 0): string[] {
  if (!(err instanceof Error) || depth > 4) return [];
  const parts = [err.message];
  const code = (err as { code?: unknown }).code;
  if (typeof code === 'string') parts.push(code);
  const nested = (err as { errors?: unknown }).errors;
  if (Array.isArray(nested)) for (const inner of nested) parts.push(...allMessages(inner, depth + 1));
  parts.push(...allMessages(err.cause, depth + 1));
  return parts;
}

function describe(context: AzureErrorContext): { key: string; vault: string; doing: string } {
  let vault = 'the vault';
  if (context.vaultUrl !== undefined) {
    try {
      vault = `vault ${new URL(context.vaultUrl).host}`;
    } catch {
      vault = 'the vault';
    }
  }
  const key = context.keyName === undefined ? 'the key' : `key '${context.keyName}'`;
  const doing = { start: 'starting', wrap: 'wrapping', unwrap: 'unwrapping', check: 'checking the key' }[context.operation];
  return { key, vault, doing };
}

function make(kind: KmsFailureKind, message: string, err: unknown, retryAfter?: number): KmsError {
  return retryAfter === undefined ? new KmsError(kind, message, { cause: err }) : new KmsError(kind, message, { cause: err, retryAfterSeconds: retryAfter });
}

/** `HTTP 403 Forbidden/KeyDisabled`: status and the service's (enumerated, secret-free) codes. */
function statusText(err: RestErrorLike): string {
  const inner = innerErrorCode(err);
  const codes = [err.code, inner].filter((c): c is string => typeof c === 'string' && /^[A-Za-z0-9_.-]{1,64}$/.test(c));
  return `HTTP ${err.statusCode ?? '?'}${codes.length > 0 ? ` ${codes.join('/')}` : ''}`;
}

/**
 * Maps any failure of an Azure Key Vault call (or of the credential behind it) into a `KmsError`.
 * A `KmsError` passes through unchanged.
 */
export function classifyAzureError(err: unknown, context: AzureErrorContext): KmsError {
  if (err instanceof KmsError) return err;
  const { key, vault, doing } = describe(context);

  // 1. Transport: no answer, an aborted request, or a request timeout.
  if (err instanceof Error && err.name === 'AbortError') {
    return make('unreachable', `Azure Key Vault call was aborted while ${doing} (${vault})`, err);
  }
  if (isRestErrorLike(err) && err.statusCode === undefined) {
    const code = networkCode(err) ?? (typeof err.code === 'string' ? 'REQUEST_SEND_ERROR' : 'no response');
    return make('unreachable', `${vault} could not be reached while ${doing} (${code})`, err);
  }
  if (!isRestErrorLike(err) && networkCode(err) !== undefined) {
    return make('unreachable', `${vault} could not be reached while ${doing} (${networkCode(err)})`, err);
  }
  if (isRestErrorLike(err) && err.statusCode === 408) {
    return make('unreachable', `${vault} timed out while ${doing} (${statusText(err)})`, err);
  }

  if (err instanceof Error && IDENTITY_ERROR_NAMES.has(err.name)) return classifyIdentityError(err, context);

  if (isRestErrorLike(err)) {
    const status = err.statusCode ?? 0;
    const inner = innerErrorCode(err);
    // 2. Throttling.
    if (status === 429) {
      return make('throttled', `${vault} is throttling requests (${statusText(err)})`, err, retryAfterSeconds(err.response?.headers));
    }
    // 3. Account markers: kms-errors.md documents none for Key Vault (subscription problems
    //    arrive as 401/403 and are handled below).
    // 4. Ciphertext.
    if (status === 400 && err.code === 'BadParameter' && context.operation === 'unwrap' && CIPHERTEXT_TEXT.test(err.message)) {
      return make('bad_ciphertext', `${vault} could not unwrap the key with ${key}: the wrapped key is corrupt or was made under another key (${statusText(err)})`, err);
    }
    // 5. Key state.
    if (status === 403 && ((inner !== undefined && KEY_STATE_INNER_CODES.has(inner)) || KEY_STATE_TEXT.test(err.message))) {
      return make('key_unusable', `${key} in ${vault} is disabled, expired or does not allow this operation (${statusText(err)})`, err);
    }
    if (status === 404) {
      return make('key_unusable', `${key} was not found in ${vault} (${statusText(err)})`, err);
    }
    // 6. Authentication and authorisation.
    if (status === 401) {
      return make('refused', `${vault} refused the credentials while ${doing} (${statusText(err)})`, err);
    }
    if (status === 403) {
      return make('refused', `${vault} denied access to ${key} while ${doing}: no permission, or blocked by the firewall (${statusText(err)})`, err);
    }
    // 7. Server side.
    if (status >= 500) {
      return make('unreachable', `${vault} failed while ${doing} (${statusText(err)})`, err);
    }
    return make('other', `${vault} rejected the request while ${doing} (${statusText(err)})`, err);
  }

  if (err instanceof Error && err.name === 'Error') {
    if (SDK_LOCAL_KEY_TEXT.test(err.message)) {
      return make('key_unusable', `${key} cannot be used now: it is expired, not yet valid, or does not allow this operation`, err);
    }
    if (CHALLENGE_MISMATCH_TEXT.test(err.message)) {
      return make(
        'key_unusable',
        `${vault} answered with an authentication challenge for another domain; if the vault is reached through a private DNS name or a proxy, set disableChallengeResourceVerification`,
        err,
      );
    }
  }
  const what = err instanceof Error ? err.name : typeof err;
  return make('other', `Azure Key Vault call failed while ${doing} (${what})`, err);
}

/**
 * @azure/identity failures. Refused — the credentials are wrong, expired, or not available —
 * unless the error shows that the identity provider could not be reached or failed on its
 * side, in which case nothing is known about the credentials: unreachable (or throttled).
 */
function classifyIdentityError(err: Error, context: AzureErrorContext): KmsError {
  const { doing } = describe(context);
  const status = (err as { statusCode?: unknown }).statusCode;
  if (typeof status === 'number' && status === 429) {
    return make('throttled', `the Microsoft Entra token endpoint is throttling requests while ${doing} (${err.name})`, err);
  }
  if ((typeof status === 'number' && (status >= 500 || status === 408)) || allMessages(err).some((m) => NETWORK_TEXT.test(m)) || networkCode(err.cause) !== undefined) {
    return make('unreachable', `the Microsoft Entra token endpoint could not be reached while ${doing} (${err.name})`, err);
  }
  return make('refused', `Microsoft Entra ID refused the configured Azure credentials while ${doing} (${err.name})`, err);
}
