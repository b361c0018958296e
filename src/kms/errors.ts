/**
 * Provider failures, classified at the driver edge into a closed set (kms-errors.md).
 * Status code, retry decision, lease action and metric label all derive from `kind`.
 * Driver messages are written by Keyward, never copied from a provider verbatim, so
 * they are safe to show to a caller.
 */

export const KMS_FAILURE_KINDS = [
  'refused',
  'key_unusable',
  'bad_ciphertext',
  'unreachable',
  'throttled',
  'account_issue',
  'other',
] as const;

export type KmsFailureKind = (typeof KMS_FAILURE_KINDS)[number];

export interface KmsErrorOptions {
  cause?: unknown;
  /** Provider-given (or driver-estimated) seconds before a retry makes sense. */
  retryAfterSeconds?: number;
}

export class KmsError extends Error {
  override readonly name = 'KmsError';
  readonly kind: KmsFailureKind;
  readonly retryAfterSeconds: number | undefined;

  constructor(kind: KmsFailureKind, message: string, options: KmsErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.kind = kind;
    this.retryAfterSeconds = options.retryAfterSeconds;
  }

  /** Refusals and unusable keys are decisions, not accidents: never retry them. */
  get retryable(): boolean {
    return this.kind === 'unreachable' || this.kind === 'throttled';
  }
}

export function isKmsError(err: unknown): err is KmsError {
  return err instanceof KmsError;
}
