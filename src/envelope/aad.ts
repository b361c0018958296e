/**
 * The associated data that binds every wrapped DEK to its tenant and KMS config.
 * Length-prefixed so that no two (tenant, config) pairs share an encoding; changing
 * this breaks every stored EDEK, so it is versioned and pinned by test vectors.
 *
 *   "keyward:edek:v1\0" ‖ u32be(len(tenantId utf8)) ‖ tenantId ‖ u32be(kmsConfigId)
 */
const LABEL = Buffer.from('keyward:edek:v1\0', 'latin1');

export function edekAad(tenantId: string, kmsConfigId: number): Buffer {
  const tenant = Buffer.from(tenantId, 'utf8');
  const out = Buffer.alloc(LABEL.length + 4 + tenant.length + 4);
  LABEL.copy(out, 0);
  out.writeUInt32BE(tenant.length, LABEL.length);
  tenant.copy(out, LABEL.length + 4);
  out.writeUInt32BE(kmsConfigId, LABEL.length + 4 + tenant.length);
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
