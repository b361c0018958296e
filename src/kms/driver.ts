import type { Logger } from 'pino';

export const PROVIDERS = ['local', 'pkcs11', 'aws', 'azure', 'gcp'] as const;
export type ProviderName = (typeof PROVIDERS)[number];

/**
 * The one interface every KMS driver implements. Deliberately narrow: bytes in, bytes
 * out, with associated data that binds the result to its tenant and KMS config. No SDK
 * type crosses it. Every failure is thrown as a classified `KmsError`.
 *
 * Contract (checked by test/kms/conformance.ts for every driver):
 * - `unwrap(await wrap(p, aad), aad)` equals `p`;
 * - `unwrap` with any other `aad`, or of a modified blob, rejects with kind `bad_ciphertext`;
 * - neither method modifies its inputs, and the returned buffer is the caller's to wipe;
 * - concurrent calls are safe;
 * - after `close()`, calls reject;
 * - a driver does not retry: `withRetry` does, for every provider alike (SDK retries off);
 * - `options.signal` aborts the call (passed on to the SDK), as `withTimeout` does.
 */
export interface KmsDriver {
  readonly provider: ProviderName;
  wrap(plaintext: Buffer, aad: Buffer, options?: CallOptions): Promise<Buffer>;
  unwrap(ciphertext: Buffer, aad: Buffer, options?: CallOptions): Promise<Buffer>;
  close(): Promise<void>;
}

export interface CallOptions {
  /** Aborted when the caller stops waiting (timeout); the driver should cancel its request. */
  readonly signal?: AbortSignal;
}

export interface DriverContext {
  readonly logger: Logger;
  /** Environment for resolving `{env: NAME}` secret references (only main.ts reads `process.env`). */
  readonly env: Readonly<Record<string, string | undefined>>;
}
