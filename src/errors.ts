/**
 * The one error catalogue. Every error that leaves Keyward is `{code, message}` with
 * the HTTP status fixed here. Numeric codes are those of the tenant-security wire API
 * (see docs/errors.md); a few request-shape problems share code 102 and differ in
 * status. `test/errors.test.ts` keeps this table and docs/errors.md in step.
 */

export interface ErrorSpec {
  /** Stable catalogue name; unique. */
  readonly name: string;
  /** Numeric code sent on the wire. */
  readonly code: number;
  /** HTTP status sent with it. */
  readonly status: number;
  /** When this error is returned (documentation). */
  readonly description: string;
  /** Seconds for the Retry-After header, when retrying later can help. */
  readonly retryAfterSeconds?: number;
}

function spec(
  name: string,
  code: number,
  status: number,
  description: string,
  retryAfterSeconds?: number,
): ErrorSpec {
  return Object.freeze(
    retryAfterSeconds === undefined
      ? { name, code, status, description }
      : { name, code, status, description, retryAfterSeconds },
  );
}

export const Errors = Object.freeze({
  UNKNOWN_ERROR: spec('UNKNOWN_ERROR', 100, 500, 'Unexpected server fault. The message never carries internals; the log has the detail.'),
  UNAUTHORIZED_REQUEST: spec('UNAUTHORIZED_REQUEST', 101, 401, 'Missing, malformed or wrong API key.'),
  INVALID_REQUEST_BODY: spec('INVALID_REQUEST_BODY', 102, 400, 'The body fails validation: missing or mistyped field, bad base64, a DEK that is not 32 bytes, duplicate batch ids.'),
  MALFORMED_JSON: spec('MALFORMED_JSON', 102, 400, 'The body is not valid JSON, or is empty.'),
  UNSUPPORTED_MEDIA_TYPE: spec('UNSUPPORTED_MEDIA_TYPE', 102, 415, 'The Content-Type is not application/json.'),
  BODY_TOO_LARGE: spec('BODY_TOO_LARGE', 102, 413, 'The body is larger than KEYWARD_BODY_LIMIT.'),
  BATCH_TOO_LARGE: spec('BATCH_TOO_LARGE', 102, 413, 'A batch has more items than KEYWARD_BATCH_LIMIT.'),
  API_KEY_TENANT_FORBIDDEN: spec('API_KEY_TENANT_FORBIDDEN', 104, 403, 'The API key is valid but scoped to other tenants (KEYWARD_API_KEY_TENANTS, or the tenants file\'s apiKeys): it may not act for the tenantId (or the newTenantId of a rekey) in the request.'),
  API_KEY_TENANT_FORBIDDEN_SDK: spec('API_KEY_TENANT_FORBIDDEN_SDK', 101, 403, 'API_KEY_TENANT_FORBIDDEN as /api/1 answers it: the tenant-security SDKs know 101 and keep its message (104 would reach their users as "status code outside of recognized range").'),
  ROUTE_NOT_FOUND: spec('ROUTE_NOT_FOUND', 103, 404, 'No such route or method, or a URL path that is not valid percent-encoding (Keyward extension; not part of the tenant-security wire API).'),
  NO_PRIMARY_KMS_CONFIGURATION: spec('NO_PRIMARY_KMS_CONFIGURATION', 200, 409, 'The tenant has no primary KMS configuration, so nothing new can be wrapped for it.'),
  UNKNOWN_TENANT_OR_NO_ACTIVE_KMS_CONFIGURATIONS: spec('UNKNOWN_TENANT_OR_NO_ACTIVE_KMS_CONFIGURATIONS', 201, 404, 'The tenant is not configured, or has no KMS configuration that can serve the request.'),
  KMS_CONFIGURATION_DISABLED: spec('KMS_CONFIGURATION_DISABLED', 202, 403, 'The EDEK was made under a KMS configuration that is now disabled.'),
  INVALID_PROVIDED_EDEK: spec('INVALID_PROVIDED_EDEK', 203, 400, 'The EDEK does not parse, was tampered with, or belongs to another tenant.'),
  KMS_WRAP_FAILED: spec('KMS_WRAP_FAILED', 204, 502, 'The KMS answered a wrap with an error Keyward could not classify further.'),
  KMS_UNWRAP_FAILED: spec('KMS_UNWRAP_FAILED', 205, 502, 'The KMS answered an unwrap with an error Keyward could not classify further.'),
  KMS_AUTHORIZATION_FAILED: spec('KMS_AUTHORIZATION_FAILED', 206, 403, "The tenant's KMS refused Keyward's credentials (invalid or revoked)."),
  KMS_CONFIGURATION_INVALID: spec('KMS_CONFIGURATION_INVALID', 207, 502, 'The master key is missing, disabled or not usable for this operation, or a permission is missing.'),
  KMS_UNREACHABLE: spec('KMS_UNREACHABLE', 208, 503, 'The KMS could not be reached or did not answer in time.', 5),
  KMS_THROTTLED: spec('KMS_THROTTLED', 209, 503, "The KMS throttled Keyward, or Keyward's own queue for this KMS configuration is full (its `concurrency` limit in flight and its queue waiting: the KMS is slow or unreachable). Retry-After tells when to try again.", 1),
  KMS_ACCOUNT_ISSUE: spec('KMS_ACCOUNT_ISSUE', 210, 502, 'The KMS account has a problem (billing, subscription, API disabled).'),
  SECURITY_EVENT_REJECTED: spec('SECURITY_EVENT_REJECTED', 301, 400, 'A security event was refused: its name is not one of the event families of the tenant-security API.'),
  AUDIT_UNAVAILABLE: spec('AUDIT_UNAVAILABLE', 302, 503, "The tenant's audit policy is `required` and its audit event could not be queued (a sink's queue is full, typically because the SIEM is unreachable). Nothing was returned; retry later.", 1),
  AUDIT_UNAVAILABLE_SDK: spec('AUDIT_UNAVAILABLE_SDK', 301, 503, 'AUDIT_UNAVAILABLE as /api/1 answers it: the published tenant-security SDKs know 301 as the only code of the security-event class and keep its message (code 302 would reach their users as "status code outside of recognized range").', 1),
} satisfies Record<string, ErrorSpec>);

export type ErrorName = keyof typeof Errors;

/** An error meant for the caller: its message is safe to send. */
export class KeywardError extends Error {
  override readonly name = 'KeywardError';
  readonly spec: ErrorSpec;
  readonly retryAfterSeconds: number | undefined;

  constructor(spec: ErrorSpec, message: string, options: { cause?: unknown; retryAfterSeconds?: number } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.spec = spec;
    this.retryAfterSeconds = options.retryAfterSeconds ?? spec.retryAfterSeconds;
  }

  get code(): number {
    return this.spec.code;
  }

  get statusCode(): number {
    return this.spec.status;
  }

  toBody(): { code: number; message: string } {
    return { code: this.spec.code, message: this.message };
  }
}

export function isKeywardError(err: unknown): err is KeywardError {
  return err instanceof KeywardError;
}
