/**
 * The associated data that binds every wrapped DEK to its tenant and KMS config.
 * Length-prefixed so that no two (tenant, config) pairs share an encoding; changing
 * this breaks every stored EDEK, so it is versioned and pinned by test vectors.
 *
 *   "keyward:edek:v1\0" ‖ u32be(len(tenantId utf8)) ‖ tenantId ‖ u32be(kmsConfigId)
 */
const LABEL = Buffer.from('keyward:edek:v1\0', 'latin1');

export function edekAad(tenantId: string, kmsConfigId: number): Buffer {
  return bound(LABEL, tenantId, [kmsConfigId]);
}

/** label ‖ u32be(len(tenantId utf8)) ‖ tenantId ‖ u32be(n) for each n: the one layout of every Keyward AAD. */
function bound(label: Buffer, tenantId: string, numbers: readonly number[]): Buffer {
  const tenant = Buffer.from(tenantId, 'utf8');
  const out = Buffer.alloc(label.length + 4 + tenant.length + 4 * numbers.length);
  label.copy(out, 0);
  out.writeUInt32BE(tenant.length, label.length);
  tenant.copy(out, label.length + 4);
  numbers.forEach((n, i) => out.writeUInt32BE(n, label.length + 4 + tenant.length + 4 * i));
  return out;
}

/**
 * Reads an AAD made by `edekAad` back into its parts, for drivers that can show them
 * to the tenant (AWS puts them in the encryption context, which CloudTrail logs).
 * Undefined for any other bytes.
 */
export function parseEdekAad(aad: Buffer): { tenantId: string; kmsConfigId: number } | undefined {
  if (aad.length < LABEL.length + 8 || !aad.subarray(0, LABEL.length).equals(LABEL)) return undefined;
  const length = aad.readUInt32BE(LABEL.length);
  if (aad.length !== LABEL.length + 4 + length + 4) return undefined;
  const tenantId = aad.subarray(LABEL.length + 4, LABEL.length + 4 + length).toString('utf8');
  return { tenantId, kmsConfigId: aad.readUInt32BE(LABEL.length + 4 + length) };
}

const LEK_LABEL = Buffer.from('keyward:lek:v1\0', 'latin1');
const LEASED_DEK_LABEL = Buffer.from('keyward:leased-dek:v1\0', 'latin1');

/**
 * AAD of the KMS wrap of a lease key (LEK): distinct from `edekAad` so that a wrapped
 * DEK can never be passed off as a wrapped LEK, and bound to the lease id.
 *   "keyward:lek:v1\0" ‖ u32be(len(tenantId)) ‖ tenantId ‖ u32be(kmsConfigId) ‖ u32be(leaseId)
 */
export function lekAad(tenantId: string, kmsConfigId: number, leaseId: number): Buffer {
  return bound(LEK_LABEL, tenantId, [kmsConfigId, leaseId]);
}

/**
 * AAD of the local AES-GCM wrap of a DEK under a lease key.
 *   "keyward:leased-dek:v1\0" ‖ u32be(len(tenantId)) ‖ tenantId ‖ u32be(kmsConfigId) ‖ u32be(leaseId)
 */
export function leasedDekAad(tenantId: string, kmsConfigId: number, leaseId: number): Buffer {
  return bound(LEASED_DEK_LABEL, tenantId, [kmsConfigId, leaseId]);
}

const SECRET_LABEL = Buffer.from('keyward:derivation-secret:v1\0', 'latin1');

/**
 * AAD of the KMS wrap of a tenant derivation secret.
 *   "keyward:derivation-secret:v1\0" ‖ u32be(len(tenantId)) ‖ tenantId ‖ u32be(kmsConfigId) ‖ u32be(secretId)
 */
export function secretAad(tenantId: string, kmsConfigId: number, secretId: number): Buffer {
  return bound(SECRET_LABEL, tenantId, [kmsConfigId, secretId]);
}
