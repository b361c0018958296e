/**
 * The local half of key leasing: a DEK wrapped under a lease key (LEK) with AES-256-GCM,
 * bound to tenant, config and lease id through the AAD (`leasedDekAad`).
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';

export const LEASED_IV_BYTES = 12;
const TAG_BYTES = 16;
/** A sealed 32-byte DEK: ciphertext ‖ tag. */
export const SEALED_DEK_BYTES = 32 + TAG_BYTES;

export interface Sealed {
  readonly iv: Buffer;
  /** ciphertext ‖ tag */
  readonly data: Buffer;
}

export function sealDek(lek: Buffer, dek: Buffer, aad: Buffer): Sealed {
  const iv = randomBytes(LEASED_IV_BYTES);
  const cipher = createCipheriv('aes-256-gcm', lek, iv, { authTagLength: TAG_BYTES });
  cipher.setAAD(aad);
  const data = Buffer.concat([cipher.update(dek), cipher.final(), cipher.getAuthTag()]);
  return { iv, data };
}

/** The DEK, or undefined when the sealed data does not authenticate (tampered, wrong lease, tenant or config). */
export function openDek(lek: Buffer, iv: Buffer, data: Buffer, aad: Buffer): Buffer | undefined {
  if (iv.length !== LEASED_IV_BYTES || data.length !== SEALED_DEK_BYTES) return undefined;
  const decipher = createDecipheriv('aes-256-gcm', lek, iv, { authTagLength: TAG_BYTES });
  decipher.setAAD(aad);
  decipher.setAuthTag(data.subarray(data.length - TAG_BYTES));
  const head = decipher.update(data.subarray(0, data.length - TAG_BYTES));
  try {
    const tail = decipher.final();
    const dek = Buffer.concat([head, tail]);
    head.fill(0);
    return dek;
  } catch {
    head.fill(0);
    return undefined;
  }
}
