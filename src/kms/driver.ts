import type { Logger } from 'pino';

export const PROVIDERS = ['local', 'pkcs11'] as const;
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
 * - after `close()`, calls reject.
 */
export interface KmsDriver {
  readonly provider: ProviderName;
  wrap(plaintext: Buffer, aad: Buffer): Promise<Buffer>;
  unwrap(ciphertext: Buffer, aad: Buffer): Promise<Buffer>;
  close(): Promise<void>;
}

export interface DriverContext {
  readonly logger: Logger;
}
