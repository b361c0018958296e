/**
 * Classification of Google Cloud KMS failures into the closed set of `KmsError` kinds, as
 * laid down in kms-errors.md (Google section). It reads the structured fields that
 * google-gax leaves on a failed call — the numeric gRPC `code`, the status message in
 * `details`, and `reason` from the `google.rpc.ErrorInfo` detail — and uses message text
 * only to split cases that share one code. Order: transport → throttling → account →
 * ciphertext → key state → auth → server 5xx → other.
 *
 * This file imports no SDK: it recognises errors by shape, so it can be unit tested on the
 * exact shapes the services produce. Our messages never copy the provider's text; the
 * provider's text reaches only the log, through `providerMessageForLog`.
 */
import { KmsError, type KmsFailureKind } from '../errors.js';

/** gRPC status codes (https://grpc.github.io/grpc/core/md_doc_statuscodes.html). */
export const GrpcStatus = {
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  ALREADY_EXISTS: 6,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  ABORTED: 10,
  OUT_OF_RANGE: 11,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  DATA_LOSS: 15,
  UNAUTHENTICATED: 16,
} as const;

const STATUS_NAMES: ReadonlyMap<number, string> = new Map(Object.entries(GrpcStatus).map(([name, code]) => [code, name]));

export function grpcStatusName(code: number): string {
  return STATUS_NAMES.get(code) ?? `code ${code}`;
}

export type GcpOperation = 'encrypt' | 'decrypt' | 'connect';

/** What the failing call was doing. The key name is configuration, not a secret. */
export interface GcpErrorContext {
  readonly operation: GcpOperation;
  readonly keyName: string;
}

/** The fields of a failed gax/grpc-js call that classification reads. */
interface GrpcErrorLike {
  readonly code: number;
  readonly details: string;
  readonly reason: string | undefined;
  readonly statusDetails: readonly unknown[];
}

function asGrpcError(err: unknown): GrpcErrorLike | undefined {
  if (typeof err !== 'object' || err === null) return undefined;
  const e = err as { code?: unknown; details?: unknown; message?: unknown; reason?: unknown; statusDetails?: unknown };
  if (typeof e.code !== 'number' || !Number.isInteger(e.code) || e.code < 0 || e.code > 16) return undefined;
  const details = typeof e.details === 'string' ? e.details : typeof e.message === 'string' ? e.message : '';
  return {
    code: e.code,
    details,
    reason: typeof e.reason === 'string' ? e.reason : undefined,
    statusDetails: Array.isArray(e.statusDetails) ? (e.statusDetails as unknown[]) : [],
  };
}

/** grpc-js reports a failing call-credentials plugin (google-auth-library) with this prefix. */
const PLUGIN_PREFIX = 'Getting metadata from plugin failed';

/** Node and gaxios network failures, wherever they surface (a token fetch, a bare socket error). */
const NETWORK_MARKERS =
  /\b(ECONNREFUSED|ECONNRESET|ENOTFOUND|EAI_AGAIN|ETIMEDOUT|EHOSTUNREACH|ENETUNREACH|EPIPE|ECONNABORTED|socket hang up|network timeout|timed out|fetch failed)\b/i;
/** An HTTP 5xx or 429 from the token endpoint, as gaxios words it. */
const HTTP_STATUS_RETRYABLE = /\bstatus(?: code)?:? (5\d\d|429)\b/i;
/**
 * OAuth 2.0 token-endpoint refusals (RFC 6749 §5.2) and google-auth-library's "no
 * credentials at all": the identity provider said no, so the KMS would too.
 */
const CREDENTIAL_REFUSALS =
  /\b(invalid_grant|unauthorized_client|invalid_client|access_denied|invalid_scope|unsupported_grant_type|Could not load the default credentials|No key or keyFile set|The incoming JSON object does not contain a client_email field|does not contain a private_key field)\b/i;

const ACCOUNT_REASONS: ReadonlySet<string> = new Set(['BILLING_DISABLED', 'SERVICE_DISABLED']);
/** Google's wording when the Cloud KMS API is off in the calling project. */
const API_DISABLED = /API has not been used in project .* before or it is disabled/is;
/** Cloud KMS's wording for a ciphertext that does not authenticate (wrong key, AAD, corrupt). */
const DECRYPTION_FAILED = /\bDecryption failed\b/i;
/**
 * The request's CRC32C field did not match the bytes the service received: the request
 * was damaged on the way. Google's data-integrity guide says to retry a limited number of
 * times, so this is a transport failure, not a bad ciphertext.
 */
const CHECKSUM_MISMATCH = /\bchecksum in field \w+ did not match\b/i;
/** Cloud KMS's wording for a key version that is not usable: "…is not enabled, current state is: DISABLED". */
const KEY_NOT_ENABLED = /\bis not enabled, current state is:? *(\w+)/i;

const UNREACHABLE_CODES: ReadonlySet<number> = new Set([
  GrpcStatus.CANCELLED,
  GrpcStatus.UNAVAILABLE,
  GrpcStatus.DEADLINE_EXCEEDED,
  GrpcStatus.INTERNAL,
  GrpcStatus.ABORTED,
]);
/** Codes that map to HTTP 5xx (google.rpc.Code) and are not named above: server faults. */
const SERVER_FAULT_CODES: ReadonlySet<number> = new Set([GrpcStatus.UNKNOWN, GrpcStatus.DATA_LOSS]);

/** With no RetryInfo from the service, a second is our estimate (as for other providers). */
const DEFAULT_THROTTLE_SECONDS = 1;

/** A protobuf int64 as protobufjs hands it over (number, decimal string or Long); NaN otherwise. */
export function int64ToNumber(value: unknown): number {
  if (typeof value === 'number') return value;
  if (typeof value === 'string') return value.trim() === '' ? Number.NaN : Number(value);
  if (typeof value === 'object' && value !== null && typeof (value as { toNumber?: unknown }).toNumber === 'function') {
    return (value as { toNumber(): number }).toNumber();
  }
  return Number.NaN;
}

/** Seconds from a `google.rpc.RetryInfo` detail, if the service sent one. */
export function retryDelaySeconds(statusDetails: readonly unknown[]): number | undefined {
  for (const detail of statusDetails) {
    if (typeof detail !== 'object' || detail === null || !('retryDelay' in detail)) continue;
    const delay = (detail as { retryDelay?: { seconds?: unknown; nanos?: unknown } }).retryDelay;
    if (typeof delay !== 'object' || delay === null) continue;
    const seconds = int64ToNumber(delay.seconds ?? 0);
    const nanos = int64ToNumber(delay.nanos ?? 0);
    const total = seconds + nanos / 1e9;
    if (Number.isFinite(total) && total >= 0) return total;
  }
  return undefined;
}

const OPERATION_TEXT: Record<GcpOperation, string> = {
  encrypt: 'an encrypt',
  decrypt: 'a decrypt',
  connect: 'connecting',
};

function describeFailure(kind: KmsFailureKind, status: string, context: GcpErrorContext, state?: string): string {
  const key = context.keyName;
  const doing = OPERATION_TEXT[context.operation];
  switch (kind) {
    case 'refused':
      return `Cloud KMS refused Keyward's credentials or access to key ${key} (${status})`;
    case 'account_issue':
      return `Cloud KMS cannot serve key ${key}: billing or the Cloud KMS API is disabled in its project (${status})`;
    case 'key_unusable':
      return state !== undefined
        ? `Cloud KMS key ${key} cannot be used: its key version is ${state} (${status})`
        : `Cloud KMS key ${key} cannot be used for ${doing} (${status})`;
    case 'bad_ciphertext':
      return `Cloud KMS rejected the wrapped key as corrupt, or made under another key or tenant (${status})`;
    case 'unreachable':
      return `Cloud KMS did not complete ${doing} for key ${key} (${status})`;
    case 'throttled':
      return `Cloud KMS throttled ${doing} for key ${key} (${status})`;
    case 'other':
      return `Cloud KMS failed ${doing} for key ${key} (${status})`;
  }
}

function make(kind: KmsFailureKind, status: string, context: GcpErrorContext, err: unknown, extra: { state?: string; retryAfterSeconds?: number } = {}): KmsError {
  const message = describeFailure(kind, status, context, extra.state);
  return extra.retryAfterSeconds === undefined
    ? new KmsError(kind, message, { cause: err })
    : new KmsError(kind, message, { cause: err, retryAfterSeconds: extra.retryAfterSeconds });
}

/**
 * Maps any failure of a Cloud KMS call (or of the client's start-up) into a `KmsError`.
 * A `KmsError` passes through unchanged.
 */
export function classifyGcpError(err: unknown, context: GcpErrorContext): KmsError {
  if (err instanceof KmsError) return err;
  const grpc = asGrpcError(err);
  if (grpc === undefined) return classifyNonGrpc(err, context);

  const { code, details, reason } = grpc;
  const status = grpcStatusName(code);
  const fromPlugin = details.includes(PLUGIN_PREFIX);

  // 1. Transport. A credential plugin that could not reach its token endpoint is an outage,
  //    not a refusal (kms-errors.md rule 3), whatever code it arrives with.
  if (fromPlugin && (NETWORK_MARKERS.test(details) || HTTP_STATUS_RETRYABLE.test(details))) {
    return make('unreachable', `${status}, credential provider unreachable`, context, err);
  }
  if (code === GrpcStatus.INVALID_ARGUMENT && CHECKSUM_MISMATCH.test(details)) {
    return make('unreachable', `${status}, request damaged in transit`, context, err);
  }
  if (UNREACHABLE_CODES.has(code) && !fromPlugin) return make('unreachable', status, context, err);

  // 2. Throttling: quota or rate limit. The default gax config does not retry it; withRetry does.
  if (code === GrpcStatus.RESOURCE_EXHAUSTED) {
    return make('throttled', status, context, err, { retryAfterSeconds: retryDelaySeconds(grpc.statusDetails) ?? DEFAULT_THROTTLE_SECONDS });
  }

  // 3. Account: billing off or the API disabled arrive as PERMISSION_DENIED with an ErrorInfo reason.
  if (code === GrpcStatus.PERMISSION_DENIED && ((reason !== undefined && ACCOUNT_REASONS.has(reason)) || API_DISABLED.test(details))) {
    return make('account_issue', reason ?? status, context, err);
  }

  // 4. Ciphertext: Cloud KMS answers a wrong key, wrong AAD and a corrupt blob alike.
  if (code === GrpcStatus.INVALID_ARGUMENT && context.operation === 'decrypt' && DECRYPTION_FAILED.test(details)) {
    return make('bad_ciphertext', status, context, err);
  }

  // 5. Key state: a disabled, destroyed or scheduled-for-destruction version; a key that is not there.
  if (code === GrpcStatus.FAILED_PRECONDITION) {
    const state = KEY_NOT_ENABLED.exec(details)?.[1]?.toUpperCase();
    return make('key_unusable', status, context, err, state === undefined ? {} : { state });
  }
  if (code === GrpcStatus.NOT_FOUND) return make('key_unusable', status, context, err);

  // 6. Auth: bad or revoked credentials, a missing or revoked IAM grant (a deleted key looks the same).
  if (code === GrpcStatus.UNAUTHENTICATED || code === GrpcStatus.PERMISSION_DENIED) return make('refused', status, context, err);
  if (fromPlugin && CREDENTIAL_REFUSALS.test(details)) return make('refused', `${status}, credentials rejected`, context, err);

  // 7. Server faults.
  if (SERVER_FAULT_CODES.has(code) && !fromPlugin) return make('unreachable', status, context, err);

  return make('other', status, context, err);
}

/** Failures without a gRPC status: client start-up, auth library, aborts, sockets. */
function classifyNonGrpc(err: unknown, context: GcpErrorContext): KmsError {
  const name = err instanceof Error ? err.name : typeof err;
  const text = err instanceof Error ? `${err.message} ${String((err as NodeJS.ErrnoException).code ?? '')}` : String(err);
  if (name === 'AbortError' || name === 'TimeoutError' || NETWORK_MARKERS.test(text) || HTTP_STATUS_RETRYABLE.test(text)) {
    return make('unreachable', name, context, err);
  }
  if (CREDENTIAL_REFUSALS.test(text)) return make('refused', 'no usable credentials', context, err);
  return make('other', name, context, err);
}

// ---------------------------------------------------------------------------------------
// The provider's own text, for the log only.
// ---------------------------------------------------------------------------------------

const LOG_TEXT_LIMIT = 400;
const RESOURCE_WORDS = /(projects|locations|keyRings|cryptoKeys|cryptoKeyVersions|organizations|folders)\//;
const SECRET_PATTERNS: readonly RegExp[] = [
  // PEM blocks (a service-account private key echoed back by a confused library).
  /-----BEGIN [A-Z ]+-----[\s\S]*?(-----END [A-Z ]+-----|$)/g,
  // JSON fields of a service-account key.
  /"(private_key|private_key_id|client_secret|refresh_token|access_token|id_token)"\s*:\s*"[^"]*"/g,
  // OAuth access tokens and JWTs (a signed assertion or an ID token).
  /\bya29\.[\w.-]+/g,
  /\beyJ[\w-]*\.[\w-]*\.[\w-]*/g,
  /\b(Bearer|assertion=|access_token=)\s*[^\s&"']+/gi,
];

/**
 * The provider's message with anything secret-looking removed, cut to a sane length, for
 * `ctx.logger` only. Resource names stay (they are configuration); long runs of base64 or
 * hex that are not resource names go.
 */
export function providerMessageForLog(err: unknown): string | undefined {
  if (typeof err !== 'object' || err === null) return undefined;
  const e = err as { details?: unknown; message?: unknown };
  const raw = typeof e.details === 'string' && e.details !== '' ? e.details : typeof e.message === 'string' ? e.message : undefined;
  if (raw === undefined) return undefined;
  let text = raw;
  for (const pattern of SECRET_PATTERNS) text = text.replace(pattern, '[redacted]');
  text = text.replace(/[A-Za-z0-9+/_=-]{32,}/g, (run) => (RESOURCE_WORDS.test(run) ? run : '[redacted]'));
  return text.length > LOG_TEXT_LIMIT ? `${text.slice(0, LOG_TEXT_LIMIT)}…` : text;
}
