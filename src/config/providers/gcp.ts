/** Settings of a `gcp` KMS config (docs/kms/gcp.md). No SDK import here. */
import { Type, type Static } from '@sinclair/typebox';
import { SecretRef } from '../secret-ref.js';

export const GcpCredentials = Type.Union(
  [
    Type.Object(
      {
        type: Type.Literal('serviceAccount'),
        // The whole JSON key file is the secret: `{file: sa.json}` or `{env: NAME}` holding the JSON.
        key: SecretRef,
      },
      { additionalProperties: false },
    ),
    Type.Object({ type: Type.Literal('default') }, { additionalProperties: false }),
  ],
  {
    description:
      'a service-account JSON key (secret reference), or application default credentials (GOOGLE_APPLICATION_CREDENTIALS, ' +
      'workload identity on GKE, the metadata server on Google Cloud). Default: application default credentials.',
  },
);

export const GcpSettings = Type.Object(
  {
    keyName: Type.String({
      pattern: '^projects/[^/]+/locations/[^/]+/keyRings/[^/]+/cryptoKeys/[^/]+$',
      description: 'projects/P/locations/L/keyRings/R/cryptoKeys/K (a symmetric ENCRYPT_DECRYPT key).',
    }),
    endpoint: Type.Optional(
      Type.String({
        minLength: 3,
        pattern: '^(\\[[0-9A-Fa-f:.]+\\]|[A-Za-z0-9.-]+):[0-9]{1,5}$',
        description: 'host:port of a private endpoint (Private Service Connect), a regional endpoint or a local emulator. Default: cloudkms.googleapis.com:443.',
      }),
    ),
    tls: Type.Optional(
      Type.Boolean({
        description:
          'false: plaintext gRPC and no credentials sent, for a local emulator or a sidecar proxy on the same host only. ' +
          'Requires an endpoint; cannot be combined with credentials. Default: true.',
      }),
    ),
    credentials: Type.Optional(GcpCredentials),
  },
  { additionalProperties: false },
);
export type GcpSettings = Static<typeof GcpSettings>;
