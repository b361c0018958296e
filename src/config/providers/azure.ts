/**
 * Settings of an `azure` KMS config (docs/kms/azure.md). No SDK import here: the driver
 * (src/kms/drivers/azure.ts) turns these into @azure/identity and @azure/keyvault-keys
 * options, and is only loaded when a config names the provider.
 */
import { Type, type Static } from '@sinclair/typebox';
import { SecretRef } from '../secret-ref.js';

const AuthorityHost = Type.String({
  minLength: 1,
  pattern: '^https://',
  description: 'Microsoft Entra authority, e.g. https://login.microsoftonline.us for Azure Government. Default: the public cloud.',
});

const DisableInstanceDiscovery = Type.Boolean({
  description:
    'Trust authorityHost as given instead of validating it through instance discovery at login.microsoftonline.com ' +
    '(for Azure Stack, private clouds and authorities that public discovery does not know).',
});

export const AzureCredentials = Type.Union(
  [
    Type.Object(
      {
        type: Type.Literal('clientSecret'),
        tenantId: Type.String({ minLength: 1 }),
        clientId: Type.String({ minLength: 1 }),
        clientSecret: SecretRef,
        authorityHost: Type.Optional(AuthorityHost),
        disableInstanceDiscovery: Type.Optional(DisableInstanceDiscovery),
      },
      { additionalProperties: false },
    ),
    Type.Object(
      {
        type: Type.Literal('clientCertificate'),
        tenantId: Type.String({ minLength: 1 }),
        clientId: Type.String({ minLength: 1 }),
        /** PEM with the certificate and its unencrypted private key. */
        certificate: SecretRef,
        sendCertificateChain: Type.Optional(Type.Boolean({ description: 'Send the x5c chain (subject name / issuer authentication).' })),
        authorityHost: Type.Optional(AuthorityHost),
        disableInstanceDiscovery: Type.Optional(DisableInstanceDiscovery),
      },
      { additionalProperties: false },
    ),
    Type.Object(
      {
        type: Type.Literal('managedIdentity'),
        /** A user-assigned identity's client id; omitted: the system-assigned identity. */
        clientId: Type.Optional(Type.String({ minLength: 1 })),
      },
      { additionalProperties: false },
    ),
    Type.Object(
      {
        type: Type.Literal('workloadIdentity'),
        /** Defaults (AKS workload identity webhook): AZURE_TENANT_ID, AZURE_CLIENT_ID, AZURE_FEDERATED_TOKEN_FILE. */
        tenantId: Type.Optional(Type.String({ minLength: 1 })),
        clientId: Type.Optional(Type.String({ minLength: 1 })),
        tokenFilePath: Type.Optional(Type.String({ minLength: 1 })),
        authorityHost: Type.Optional(AuthorityHost),
        disableInstanceDiscovery: Type.Optional(DisableInstanceDiscovery),
      },
      { additionalProperties: false },
    ),
  ],
  { description: 'client secret, client certificate, managed identity or workload identity.' },
);
export type AzureCredentials = Static<typeof AzureCredentials>;

export const AzureSettings = Type.Object(
  {
    vaultUrl: Type.String({
      minLength: 1,
      pattern: '^https://[^/?#]+/?$',
      description: 'Vault or Managed HSM URL, e.g. https://acme.vault.azure.net or https://acme.managedhsm.azure.net.',
    }),
    keyName: Type.String({ minLength: 1, maxLength: 127, pattern: '^[0-9A-Za-z-]+$' }),
    keyVersion: Type.Optional(
      Type.String({ minLength: 1, maxLength: 64, pattern: '^[0-9A-Za-z]+$', description: 'Pin new wraps to this version; default: the current version.' }),
    ),
    algorithm: Type.Optional(Type.Union([Type.Literal('RSA-OAEP-256'), Type.Literal('A256KW')], { description: 'Default RSA-OAEP-256; A256KW for Managed HSM AES keys.' })),
    credentials: AzureCredentials,
    disableChallengeResourceVerification: Type.Optional(
      Type.Boolean({
        description:
          "Accept a vault whose authentication challenge names a resource outside the vault URL's domain " +
          '(vaults reached through a private DNS name or a reverse proxy). Default false.',
      }),
    ),
  },
  { additionalProperties: false },
);
export type AzureSettings = Static<typeof AzureSettings>;
