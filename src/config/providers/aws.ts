/** Settings of an `aws` KMS config (docs/kms/aws.md). No SDK import here. */
import { Type, type Static } from '@sinclair/typebox';
import { SecretRef } from '../secret-ref.js';

export const AwsCredentials = Type.Union(
  [
    Type.Object(
      {
        type: Type.Literal('static'),
        accessKeyId: SecretRef,
        secretAccessKey: SecretRef,
        sessionToken: Type.Optional(SecretRef),
      },
      { additionalProperties: false },
    ),
    Type.Object(
      {
        type: Type.Literal('assumeRole'),
        roleArn: Type.String({ minLength: 20, pattern: '^arn:aws[a-z-]*:iam::[0-9]{12}:role/.+$', description: 'ARN of the role to assume (in the tenant account).' }),
        externalId: Type.Optional(SecretRef),
        sessionName: Type.Optional(Type.String({ minLength: 2, maxLength: 64, pattern: '^[A-Za-z0-9_=,.@-]+$' })),
        durationSeconds: Type.Optional(Type.Integer({ minimum: 900, maximum: 43_200, description: 'Lifetime of the role session (default 3600).' })),
        stsEndpoint: Type.Optional(Type.String({ minLength: 1, description: 'Custom STS endpoint URL (e.g. an STS VPC endpoint).' })),
      },
      { additionalProperties: false },
    ),
    Type.Object({ type: Type.Literal('default') }, { additionalProperties: false }),
  ],
  { description: 'static key pair (secret references), an assumed role, or the default provider chain (IRSA, instance role).' },
);
export type AwsCredentials = Static<typeof AwsCredentials>;

export const AwsSettings = Type.Object(
  {
    region: Type.String({ minLength: 1, pattern: '^[a-z]{2}(-[a-z]+)+-[0-9]+$', description: 'AWS region of the key, e.g. eu-west-1.' }),
    keyId: Type.String({ minLength: 1, maxLength: 2048, description: 'Key id, key ARN, alias name (alias/...) or alias ARN.' }),
    endpoint: Type.Optional(Type.String({ minLength: 1, pattern: '^https?://', description: 'Custom KMS endpoint URL (VPC endpoint, FIPS endpoint, local emulator).' })),
    credentials: Type.Optional(AwsCredentials),
  },
  { additionalProperties: false },
);
export type AwsSettings = Static<typeof AwsSettings>;
