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
