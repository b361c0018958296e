/**
 * Request and response schemas of the native API. One definition gives request
 * validation, response serialization, the OpenAPI document and the handler types.
 */
import { Type, type Static, type TSchema, type TUnsafe } from '@sinclair/typebox';

/**
 * A JSON object used as a map (ids → values). Not TypeBox's Record: its key pattern
 * `^(.*)$` does not match keys that contain a line break, so such keys would skip request
 * validation and be dropped from answers by the serializer (found by the fuzz tests).
 * Every key is checked with `propertyNames`, every value with `additionalProperties`.
 */
export function StringMap<T extends TSchema>(
  value: T,
  options: { keyMinLength?: number; keyMaxLength?: number; maxProperties?: number; description?: string } = {},
): TUnsafe<Record<string, Static<T>>> {
  const { keyMinLength, keyMaxLength, ...rest } = options;
  return Type.Unsafe<Record<string, Static<T>>>({
    type: 'object',
    propertyNames: { type: 'string', ...(keyMinLength !== undefined ? { minLength: keyMinLength } : {}), ...(keyMaxLength !== undefined ? { maxLength: keyMaxLength } : {}) },
    additionalProperties: value,
    ...rest,
  });
}

const MAX_ID = 256;
/** Base64 of an EDEK: up to 64 KiB of protobuf. */
const MAX_EDEK_CHARS = 87_384;

export const TenantId = Type.String({ minLength: 1, maxLength: MAX_ID, description: 'The tenant whose KMS protects the key.' });

export const Base64Dek = Type.String({
  maxLength: 64,
  contentEncoding: 'base64',
  description: 'A 32-byte AES-256 data key, standard base64 (44 characters with padding).',
});

export const Edek = Type.String({
  minLength: 1,
  maxLength: MAX_EDEK_CHARS,
  contentEncoding: 'base64',
  description: 'An encrypted data key: base64 of the EncryptedDeks protobuf (docs/edek-format.md). Opaque to callers.',
});

export const Metadata = Type.Object(
  {
    requestingId: Type.String({ minLength: 1, maxLength: MAX_ID, description: 'Who asks: a user or service id. Required.' }),
    dataLabel: Type.Optional(Type.String({ maxLength: MAX_ID, description: 'Classification of the data the key protects.' })),
    sourceIp: Type.Optional(Type.String({ maxLength: 64, description: 'IP address of the end user, if any.' })),
    objectId: Type.Optional(Type.String({ maxLength: MAX_ID, description: 'Id of the object the key protects.' })),
    requestId: Type.Optional(Type.String({ maxLength: MAX_ID, description: 'Caller request id, for correlation.' })),
    custom: Type.Optional(
      StringMap(Type.String({ maxLength: 1024 }), {
        keyMaxLength: 128,
        maxProperties: 64,
        description: 'Free-form string fields (at most 64) carried into logs and audit events.',
      }),
    ),
  },
  { additionalProperties: false, description: 'Caller metadata, recorded with the operation.' },
);
export type Metadata = Static<typeof Metadata>;

const body = <T extends Record<string, TSchema>>(properties: T, description: string) =>
  Type.Object(properties, { additionalProperties: false, description });

export const GenerateBody = body({ tenantId: TenantId, metadata: Metadata }, 'Generate a new DEK for a tenant.');
export const WrapBody = body({ tenantId: TenantId, dek: Base64Dek, metadata: Metadata }, 'Wrap a caller-supplied DEK for a tenant.');
export const UnwrapBody = body({ tenantId: TenantId, edek: Edek, metadata: Metadata }, "Unwrap one of the tenant's EDEKs.");
export const RewrapBody = body(
  {
    tenantId: TenantId,
    edek: Edek,
    newTenantId: Type.Optional(Type.String({ ...TenantId, description: 'Wrap for this tenant instead; defaults to tenantId.' })),
    metadata: Metadata,
  },
  "Unwrap an EDEK of tenantId, then wrap the same DEK under the primary KMS config of newTenantId (or of tenantId).",
);
export const BatchGenerateBody = body(
  {
    tenantId: TenantId,
    ids: Type.Array(Type.String({ minLength: 1, maxLength: MAX_ID }), {
      description: 'Caller ids of the keys to generate; unique; at most KEYWARD_BATCH_LIMIT (default 1000).',
    }),
    metadata: Metadata,
  },
  'Generate one DEK per id.',
);
export const BatchUnwrapBody = body(
  {
    tenantId: TenantId,
    edeks: StringMap(Edek, {
      keyMinLength: 1,
      keyMaxLength: MAX_ID,
      description: 'EDEKs by caller id; at most KEYWARD_BATCH_LIMIT (default 1000).',
    }),
    metadata: Metadata,
  },
  'Unwrap many EDEKs of one tenant.',
);

export type GenerateBody = Static<typeof GenerateBody>;
export type WrapBody = Static<typeof WrapBody>;
export type UnwrapBody = Static<typeof UnwrapBody>;
export type RewrapBody = Static<typeof RewrapBody>;
export type BatchGenerateBody = Static<typeof BatchGenerateBody>;
export type BatchUnwrapBody = Static<typeof BatchUnwrapBody>;

export const ErrorBody = Type.Object(
  {
    code: Type.Integer({ description: 'Keyward error code (docs/errors.md).' }),
    message: Type.String({ description: 'What went wrong, safe to show; never carries key material or internals.' }),
  },
  { description: 'Every error response, and every per-item batch failure.' },
);

const DekOut = Type.String({ contentEncoding: 'base64', description: 'The plaintext 32-byte DEK, base64. Use it, then forget it.' });
const EdekOut = Type.String({ contentEncoding: 'base64', description: 'The EDEK to store beside the ciphertext.' });

export const GenerateResponse = Type.Object({ dek: DekOut, edek: EdekOut });
export const WrapResponse = Type.Object({ edek: EdekOut });
export const UnwrapResponse = Type.Object({ dek: DekOut });
export const RewrapResponse = Type.Object({ edek: EdekOut });
const Failures = StringMap(ErrorBody, { description: 'Per-item failures by id; always present.' });
export const BatchGenerateResponse = Type.Object({
  keys: StringMap(GenerateResponse, { description: 'Generated keys by id; always present.' }),
  failures: Failures,
});
export const BatchUnwrapResponse = Type.Object({
  keys: StringMap(UnwrapResponse, { description: 'Unwrapped keys by id; always present.' }),
  failures: Failures,
});
