/**
 * Schemas of the tenants file. One schema gives validation, documentation and the
 * TypeScript types (`Static<>`); nothing here imports a KMS SDK, so validating a file
 * never loads a driver.
 */
import { Type, type Static } from '@sinclair/typebox';

import { AwsSettings } from './providers/aws.js';
import { AzureSettings } from './providers/azure.js';
import { GcpSettings } from './providers/gcp.js';
import { SecretRef } from './secret-ref.js';

export { SecretRef };
export { AwsSettings, AzureSettings, GcpSettings };

/** Durations are written like `500ms`, `2s`, `5m`, `1h`. */
export const Duration = Type.String({ pattern: '^[0-9]+(ms|s|m|h)$', description: 'A duration: 500ms, 2s, 5m, 1h.' });

export const LocalSettings = Type.Object(
  {
    keyFile: Type.String({
      minLength: 1,
      description:
        'File holding the 32-byte master key. Created with owner-only permissions on first use. Relative paths resolve against the tenants file directory.',
    }),
  },
  { additionalProperties: false },
);
export type LocalSettings = Static<typeof LocalSettings>;

export const Pkcs11Mechanism = Type.Union([Type.Literal('aes-gcm'), Type.Literal('aes-key-wrap-pad')]);
export type Pkcs11Mechanism = Static<typeof Pkcs11Mechanism>;

export const Pkcs11Settings = Type.Object(
  {
    module: Type.String({ minLength: 1, description: 'Path of the PKCS#11 module (.so).' }),
    tokenLabel: Type.String({ minLength: 1, maxLength: 32, description: 'Label of the token holding the key.' }),
    pin: SecretRef,
    keyLabel: Type.String({ minLength: 1, description: 'CKA_LABEL of the AES master key on the token.' }),
    mechanism: Type.Optional(Pkcs11Mechanism),
    sessions: Type.Optional(Type.Integer({ minimum: 1, maximum: 64, description: 'Sessions kept open (default 4).' })),
  },
  { additionalProperties: false },
);
export type Pkcs11Settings = Static<typeof Pkcs11Settings>;

export const LeasingSettings = Type.Object(
  {
    enabled: Type.Boolean({ description: 'Wrap and unwrap locally under KMS-approved lease keys.' }),
    refreshInterval: Type.Optional(Type.String({ ...Duration, description: 'How often each cached lease is re-approved by the KMS (default 5m).' })),
    maxOutage: Type.Optional(Type.String({ ...Duration, description: 'How long a lease keeps serving without a successful refresh before it is wiped (default 1h).' })),
    rotateAfter: Type.Optional(Type.String({ ...Duration, description: 'How long one lease key serves new wraps (default 1h).' })),
    idleAfter: Type.Optional(Type.String({ ...Duration, description: 'A lease unused this long is wiped and no longer refreshed (default 1h).' })),
    maxCachedLeases: Type.Optional(Type.Integer({ minimum: 1, maximum: 100_000, description: 'Most leases cached for this config (default 100); the least recently used is wiped.' })),
  },
  { additionalProperties: false },
);
export type LeasingSettings = Static<typeof LeasingSettings>;

export const KmsConfigStatus = Type.Union([Type.Literal('primary'), Type.Literal('active'), Type.Literal('disabled')]);
export type KmsConfigStatus = Static<typeof KmsConfigStatus>;

export const MAX_CONFIG_ID = 2 ** 31 - 1;

export const KmsConfigEntry = Type.Object(
  {
    id: Type.Integer({ minimum: 1, maximum: MAX_CONFIG_ID, description: 'Unique across the file; written into every EDEK.' }),
    status: KmsConfigStatus,
    provider: Type.Union([Type.Literal('local'), Type.Literal('pkcs11'), Type.Literal('aws'), Type.Literal('azure'), Type.Literal('gcp')]),
    timeout: Type.Optional(Duration),
    retries: Type.Optional(
      Type.Integer({ minimum: 0, maximum: 5, description: 'Retries of an unreachable or throttled KMS call (default 2); refusals are never retried.' }),
    ),
    leasing: Type.Optional(LeasingSettings),
    concurrency: Type.Optional(
      Type.Object(
        {
          limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 10_000, description: 'Most calls to this KMS config in flight at once (default 64).' })),
          queue: Type.Optional(Type.Integer({ minimum: 0, maximum: 100_000, description: 'Most calls waiting behind them (default 1000); beyond it a call fails at once with KMS_THROTTLED (209).' })),
        },
        { additionalProperties: false },
      ),
    ),
    local: Type.Optional(LocalSettings),
    pkcs11: Type.Optional(Pkcs11Settings),
    aws: Type.Optional(AwsSettings),
    azure: Type.Optional(AzureSettings),
    gcp: Type.Optional(GcpSettings),
  },
  { additionalProperties: false },
);
export type KmsConfigEntry = Static<typeof KmsConfigEntry>;

export const TENANT_ID_PATTERN = '^[A-Za-z0-9][A-Za-z0-9._:@-]{0,255}$';

export const DerivationSecretState = Type.Union([Type.Literal('current'), Type.Literal('in-rotation'), Type.Literal('archived')]);
export const DerivationSecretType = Type.Union([Type.Literal('deterministic'), Type.Literal('search'), Type.Literal('vector')]);

export const DerivationSecretEntry = Type.Object(
  {
    id: Type.Integer({ minimum: 1, maximum: MAX_CONFIG_ID, description: 'The tenantSecretId: unique within the tenant, never reused.' }),
    state: DerivationSecretState,
    type: Type.Optional(DerivationSecretType),
    kmsConfigId: Type.Integer({ minimum: 1, maximum: MAX_CONFIG_ID, description: "The tenant's KMS config whose key wrapped the secret." }),
    wrapped: Type.Union([
      Type.String({ minLength: 1, maxLength: 87_384, description: 'The KMS-wrapped secret, base64 (printed by `keyward secret create`).' }),
      Type.Object(
        {
          file: Type.String({ minLength: 1 }),
          createIfMissing: Type.Optional(Type.Boolean({ description: 'Development only (local provider): create the secret on first start.' })),
        },
        { additionalProperties: false },
      ),
    ]),
  },
  { additionalProperties: false },
);
export type DerivationSecretEntry = Static<typeof DerivationSecretEntry>;

export const SINK_NAME_PATTERN = '^[a-z0-9][a-z0-9-]{0,62}$';
const SinkName = Type.String({ pattern: SINK_NAME_PATTERN, description: 'The name of a sink under audit.sinks, or the built-in stdout.' });

export const AuditPolicy = Type.Union([Type.Literal('bestEffort'), Type.Literal('required')]);
export type AuditPolicy = Static<typeof AuditPolicy>;

export const AuditRouteEntry = Type.Object(
  {
    sinks: Type.Array(SinkName, { minItems: 1, maxItems: 8, uniqueItems: true, description: "Where this tenant's audit events go." }),
    policy: Type.Optional(AuditPolicy),
  },
  { additionalProperties: false },
);
export type AuditRouteEntry = Static<typeof AuditRouteEntry>;

export const SinkQueueSettings = Type.Object(
  {
    size: Type.Optional(Type.Integer({ minimum: 1, maximum: 1_000_000, description: 'Most events waiting for delivery (default 10000).' })),
    batchSize: Type.Optional(Type.Integer({ minimum: 1, maximum: 10_000, description: 'Most events sent in one request or write (default 100).' })),
    linger: Type.Optional(Type.String({ ...Duration, description: 'How long a batch may wait to fill before it is sent (default 0ms: at once).' })),
    minBackoff: Type.Optional(Type.String({ ...Duration, description: 'First wait after a failed delivery (default 250ms); doubles per failure.' })),
    maxBackoff: Type.Optional(Type.String({ ...Duration, description: 'Longest wait between delivery attempts (default 30s).' })),
  },
  { additionalProperties: false },
);
export type SinkQueueSettings = Static<typeof SinkQueueSettings>;

export const HttpSinkSettings = Type.Object(
  {
    url: Type.String({ pattern: '^https?://', description: 'Where batches are POSTed: a webhook, or a Splunk HEC endpoint (…/services/collector/event).' }),
    format: Type.Optional(Type.Union([Type.Literal('json'), Type.Literal('splunk-hec')])),
    token: Type.Optional(SecretRef),
    caFile: Type.Optional(Type.String({ minLength: 1, description: 'PEM CA bundle trusted for an https url, in addition to the system CAs.' })),
    timeout: Type.Optional(Type.String({ ...Duration, description: 'Bound on one delivery request (default 5s).' })),
  },
  { additionalProperties: false },
);
export type HttpSinkSettings = Static<typeof HttpSinkSettings>;

export const SyslogSinkSettings = Type.Object(
  {
    host: Type.String({ minLength: 1, description: 'Syslog receiver host name or address.' }),
    port: Type.Integer({ minimum: 1, maximum: 65535 }),
    tls: Type.Optional(
      Type.Object(
        {
          caFile: Type.Optional(Type.String({ minLength: 1, description: 'PEM CA bundle trusted for the receiver, in addition to the system CAs.' })),
          serverName: Type.Optional(Type.String({ minLength: 1, description: 'Name the receiver certificate must carry (default: host).' })),
        },
        { additionalProperties: false },
      ),
    ),
    facility: Type.Optional(
      Type.Union(
        ['kern', 'user', 'mail', 'daemon', 'auth', 'syslog', 'lpr', 'news', 'uucp', 'cron', 'authpriv', 'ftp', 'local0', 'local1', 'local2', 'local3', 'local4', 'local5', 'local6', 'local7'].map((f) => Type.Literal(f)),
      ),
    ),
    appName: Type.Optional(Type.String({ pattern: '^[!-~]{1,48}$', description: 'RFC 5424 APP-NAME (default keyward).' })),
    timeout: Type.Optional(Type.String({ ...Duration, description: 'Bound on connecting and writing one batch (default 5s).' })),
  },
  { additionalProperties: false },
);
export type SyslogSinkSettings = Static<typeof SyslogSinkSettings>;

export const SinkEntry = Type.Object(
  {
    type: Type.Union([Type.Literal('stdout'), Type.Literal('http'), Type.Literal('syslog')]),
    http: Type.Optional(HttpSinkSettings),
    syslog: Type.Optional(SyslogSinkSettings),
    queue: Type.Optional(SinkQueueSettings),
  },
  { additionalProperties: false },
);
export type SinkEntry = Static<typeof SinkEntry>;

export const AuditSettings = Type.Object(
  {
    sinks: Type.Optional(Type.Record(Type.String(), SinkEntry)),
    default: Type.Optional(AuditRouteEntry),
  },
  { additionalProperties: false },
);

export const TenantEntry = Type.Object(
  {
    kmsConfigs: Type.Array(KmsConfigEntry, { maxItems: 64 }),
    audit: Type.Optional(AuditRouteEntry),
    derivationSecrets: Type.Optional(Type.Array(DerivationSecretEntry, { maxItems: 64 })),
  },
  { additionalProperties: false },
);

export const ApiKeyEntry = Type.Object(
  {
    name: Type.String({ pattern: '^[a-z0-9][a-z0-9-]{0,62}$', description: 'Names the key (the application) in logs.' }),
    sha256: Type.String({ pattern: '^[0-9a-f]{64}$', description: 'SHA-256 of the key, lowercase hex (`printf %s "$KEY" | sha256sum`). The key itself is never in the file.' }),
    tenants: Type.Array(Type.String({ pattern: '^[A-Za-z0-9._:@*-]{1,256}$' }), {
      minItems: 1,
      maxItems: 256,
      description: 'Tenant ids this key may act for; `*` matches any run of characters.',
    }),
  },
  { additionalProperties: false },
);
export type ApiKeyEntry = Static<typeof ApiKeyEntry>;

export const TenantsFile = Type.Object(
  {
    version: Type.Literal(1),
    apiKeys: Type.Optional(Type.Array(ApiKeyEntry, { maxItems: 1000 })),
    audit: Type.Optional(AuditSettings),
    tenants: Type.Record(Type.String(), TenantEntry),
  },
  { additionalProperties: false },
);
export type TenantsFile = Static<typeof TenantsFile>;
