/**
 * A STAND-IN for Google Cloud KMS, written by Keyward for its tests — not an emulator
 * from anyone else, and not Google's service.
 *
 * Why it exists: the independent emulators (winor30/fake-cloud-kms, blackwell-systems/
 * gcp-kms-emulator, Google's own kms-integrations/fakekms) cannot be installed from the
 * registries this project can reach (docs/kms/gcp.md, "Test servers").
 *
 * What it proves: it is a real gRPC server for `google.cloud.kms.v1.KeyManagementService`
 * built from the .proto files that ship in node_modules/@google-cloud/kms/build/protos, so
 * the driver is exercised through the official client, gax and grpc-js over a real
 * HTTP/2 socket: request encoding, routing headers, CRC32C fields, status codes and
 * `grpc-status-details-bin` (google.rpc.ErrorInfo / RetryInfo) all take the real path.
 * It does real AES-256-GCM bound to the request's AAD, checks the CRC32C request fields
 * and fills the verified_* and *_crc32c response fields as service.proto documents, and
 * answers failures with the codes and wording of the real service (kms-errors.md).
 *
 * What it cannot prove: that the real service behaves this way. Its behaviour is our
 * reading of Google's documentation, so a misreading would be shared by driver and
 * stand-in. The classification unit tests (gcp-errors.test.ts) pin the documented shapes
 * separately; nothing here replaces a run against the real Cloud KMS.
 *
 * Implemented: CreateKeyRing, GetKeyRing, CreateCryptoKey, GetCryptoKey,
 * CreateCryptoKeyVersion, GetCryptoKeyVersion, UpdateCryptoKeyVersion (state),
 * UpdateCryptoKeyPrimaryVersion, DestroyCryptoKeyVersion, RestoreCryptoKeyVersion,
 * Encrypt, Decrypt. Everything else answers UNIMPLEMENTED. ENCRYPT_DECRYPT keys only.
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import protobuf from 'protobufjs';
import { KeyManagementServiceClient } from '@google-cloud/kms';
import * as gax from 'google-gax';
import { crc32c } from '../../src/kms/crc32c.js';

const require = createRequire(import.meta.url);
const KMS_PROTOS = join(dirname(require.resolve('@google-cloud/kms')), '..', 'protos');
const GAX_PROTOS = join(dirname(require.resolve('google-gax')), '..', 'protos');

const packageDefinition = protoLoader.loadSync('google/cloud/kms/v1/service.proto', {
  includeDirs: [KMS_PROTOS, GAX_PROTOS],
  keepCase: false,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
});
const kmsPackage = grpc.loadPackageDefinition(packageDefinition) as unknown as {
  google: { cloud: { kms: { v1: { KeyManagementService: { service: grpc.ServiceDefinition } } } } };
};
const SERVICE = kmsPackage.google.cloud.kms.v1.KeyManagementService.service;

// google.rpc.Status and its details, for `grpc-status-details-bin` (what gax decodes into
// err.reason / err.errorInfoMetadata / err.statusDetails).
const rpcRoot = new protobuf.Root();
rpcRoot.resolvePath = (_origin, target) => join(GAX_PROTOS, target);
rpcRoot.loadSync(['google/rpc/status.proto', 'google/rpc/error_details.proto']);
const RpcStatus = rpcRoot.lookupType('google.rpc.Status');
const ErrorInfo = rpcRoot.lookupType('google.rpc.ErrorInfo');
const RetryInfo = rpcRoot.lookupType('google.rpc.RetryInfo');

export type KmsMethod = 'Encrypt' | 'Decrypt';
export type VersionState = 'ENABLED' | 'DISABLED' | 'DESTROY_SCHEDULED' | 'DESTROYED';

/** A failure to answer with, as the real service shapes it. */
export interface Fault {
  readonly code: grpc.status;
  readonly message: string;
  /** google.rpc.ErrorInfo, as Google APIs attach it. */
  readonly errorInfo?: { reason: string; domain: string; metadata?: Record<string, string> };
  /** google.rpc.RetryInfo delay. */
  readonly retryDelaySeconds?: number;
}

/** Failures shaped like the real service's (wording from Google's docs and kms-errors.md). */
export const Faults = {
  permissionDenied(resource: string, permission: string): Fault {
    return {
      code: grpc.status.PERMISSION_DENIED,
      message: `Permission '${permission}' denied on resource '${resource}' (or it may not exist).`,
      errorInfo: { reason: 'IAM_PERMISSION_DENIED', domain: 'iam.googleapis.com', metadata: { permission, resource } },
    };
  },
  unauthenticated(): Fault {
    return {
      code: grpc.status.UNAUTHENTICATED,
      message: 'Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.',
      errorInfo: { reason: 'ACCESS_TOKEN_EXPIRED', domain: 'googleapis.com', metadata: { service: 'cloudkms.googleapis.com', method: 'google.cloud.kms.v1.KeyManagementService.Encrypt' } },
    };
  },
  quotaExceeded(retryDelaySeconds?: number): Fault {
    return {
      code: grpc.status.RESOURCE_EXHAUSTED,
      message:
        "Quota exceeded for quota metric 'Cryptographic requests' and limit 'Cryptographic requests per minute per project per region' " +
        "of service 'cloudkms.googleapis.com' for consumer 'project_number:123456789'.",
      errorInfo: { reason: 'RATE_LIMIT_EXCEEDED', domain: 'googleapis.com', metadata: { service: 'cloudkms.googleapis.com', consumer: 'projects/123456789' } },
      ...(retryDelaySeconds === undefined ? {} : { retryDelaySeconds }),
    };
  },
  unavailable(): Fault {
    return { code: grpc.status.UNAVAILABLE, message: 'The service is currently unavailable.' };
  },
  billingDisabled(): Fault {
    return {
      code: grpc.status.PERMISSION_DENIED,
      message: 'This API method requires billing to be enabled. Please enable billing on project #123456789 by visiting https://console.developers.google.com/billing/enable?project=123456789 then retry.',
      errorInfo: { reason: 'BILLING_DISABLED', domain: 'googleapis.com', metadata: { consumer: 'projects/123456789', service: 'cloudkms.googleapis.com' } },
    };
  },
  serviceDisabled(): Fault {
    return {
      code: grpc.status.PERMISSION_DENIED,
      message:
        'Cloud Key Management Service (KMS) API has not been used in project 123456789 before or it is disabled. Enable it by visiting ' +
        'https://console.developers.google.com/apis/api/cloudkms.googleapis.com/overview?project=123456789 then retry.',
      errorInfo: { reason: 'SERVICE_DISABLED', domain: 'googleapis.com', metadata: { consumer: 'projects/123456789', service: 'cloudkms.googleapis.com' } },
    };
  },
} as const;

/** Response fields the stand-in can damage on demand, to prove the client verifies them. */
export type CorruptibleField =
  | 'ciphertext'
  | 'ciphertextCrc32c'
  | 'verifiedPlaintextCrc32c'
  | 'verifiedAdditionalAuthenticatedDataCrc32c'
  | 'name'
  | 'plaintext'
  | 'plaintextCrc32c';

/** Request fields the stand-in can damage on arrival ("in transit"), before checking their CRC32C. */
export type DamageableField = 'plaintext' | 'additionalAuthenticatedData' | 'ciphertext';

/** What the stand-in saw of one Encrypt/Decrypt request (never the data itself). */
export interface SeenRequest {
  readonly method: KmsMethod;
  readonly name: string;
  readonly plaintextCrc32c: boolean;
  readonly ciphertextCrc32c: boolean;
  readonly additionalAuthenticatedDataCrc32c: boolean;
  readonly aadBytes: number;
  readonly routingHeader: string | undefined;
  readonly authorization: string | undefined;
}

interface Version {
  readonly id: string;
  readonly name: string;
  /** Identifies the version inside its ciphertexts, as the real service's ciphertexts do. */
  readonly tag: Buffer;
  material: Buffer;
  state: VersionState;
  readonly createTime: Date;
  destroyTime: Date | undefined;
  destroyEventTime: Date | undefined;
}

interface CryptoKey {
  readonly name: string;
  readonly createTime: Date;
  readonly versions: Map<string, Version>;
  primary: string | undefined;
  nextVersion: number;
}

interface KeyRing {
  readonly name: string;
  readonly createTime: Date;
}

const TAG_BYTES = 16;
const IV_BYTES = 12;
const GCM_TAG_BYTES = 16;
/** What the real service waits before destroying a version scheduled for destruction (its default). */
const DESTROY_SCHEDULED_DURATION_MS = 30 * 24 * 3600 * 1000;

class ServiceError extends Error {
  constructor(readonly fault: Fault) {
    super(fault.message);
  }
}

function fail(code: grpc.status, message: string): never {
  throw new ServiceError({ code, message });
}

function timestamp(date: Date | undefined): { seconds: string; nanos: number } | null {
  if (date === undefined) return null;
  return { seconds: String(Math.floor(date.getTime() / 1000)), nanos: (date.getTime() % 1000) * 1e6 };
}

/** The trailing metadata a Google API sends with a failure: `grpc-status-details-bin` holding a google.rpc.Status. */
export function statusMetadata(fault: Fault): grpc.Metadata {
  const metadata = new grpc.Metadata();
  const details: { type_url: string; value: Uint8Array }[] = [];
  if (fault.errorInfo) {
    details.push({ type_url: 'type.googleapis.com/google.rpc.ErrorInfo', value: ErrorInfo.encode(ErrorInfo.fromObject(fault.errorInfo)).finish() });
  }
  if (fault.retryDelaySeconds !== undefined) {
    const retry = RetryInfo.fromObject({ retryDelay: { seconds: Math.floor(fault.retryDelaySeconds), nanos: Math.round((fault.retryDelaySeconds % 1) * 1e9) } });
    details.push({ type_url: 'type.googleapis.com/google.rpc.RetryInfo', value: RetryInfo.encode(retry).finish() });
  }
  if (details.length > 0) {
    const status = RpcStatus.fromObject({ code: fault.code, message: fault.message, details });
    metadata.set('grpc-status-details-bin', Buffer.from(RpcStatus.encode(status).finish()));
  }
  return metadata;
}

function int64(value: unknown): number | undefined {
  if (value === null || value === undefined || typeof value !== 'object') return undefined;
  const raw = (value as { value?: unknown }).value;
  if (raw === null || raw === undefined) return undefined;
  return Number(raw);
}

export interface GcpKmsStandIn {
  readonly port: number;
  /** host:port for the driver's `endpoint` setting. */
  readonly endpoint: string;
  /** Calls answered per method since start (or the last `resetCounts`). */
  calls(method: KmsMethod): number;
  resetCounts(): void;
  /** Encrypt/Decrypt requests seen, oldest first. */
  readonly seen: SeenRequest[];
  /** Answers the next `times` calls of `method` with `fault`. */
  failNext(method: KmsMethod, fault: Fault, times?: number): void;
  /** Answers every call of `method` with `fault` until cleared (undefined). */
  setFault(method: KmsMethod, fault: Fault | undefined): void;
  /** Removes the IAM grant on a key: Encrypt and Decrypt answer PERMISSION_DENIED. */
  revoke(keyName: string): void;
  grant(keyName: string): void;
  /** Damages one field of the next response of the method that carries it. */
  corruptNext(field: CorruptibleField): void;
  /** Damages one field of the next request that carries it, as if in transit. */
  damageNextRequest(field: DamageableField): void;
  /** Ends the scheduled-destruction wait of a version now: it becomes DESTROYED and its material is gone. */
  completeDestruction(versionName: string): void;
  /** Stops answering (the port closes), as a crashed service would. */
  stop(): Promise<void>;
  /** Serves again on the same port with the same keys. */
  start(): Promise<void>;
  close(): Promise<void>;
}

export async function startGcpKmsStandIn(): Promise<GcpKmsStandIn> {
  const keyRings = new Map<string, KeyRing>();
  const keys = new Map<string, CryptoKey>();
  const revoked = new Set<string>();
  const persistent = new Map<KmsMethod, Fault>();
  const queued = new Map<KmsMethod, Fault[]>();
  const corrupt = new Set<CorruptibleField>();
  const damage = new Set<DamageableField>();
  const counts = new Map<KmsMethod, number>();
  const seen: SeenRequest[] = [];

  const keyOf = (name: string): CryptoKey => {
    const key = keys.get(name);
    if (!key) fail(grpc.status.NOT_FOUND, `CryptoKey ${name} not found.`);
    return key;
  };
  const versionOf = (name: string): Version => {
    const match = /^(.*)\/cryptoKeyVersions\/([^/]+)$/.exec(name);
    const version = match ? keys.get(match[1]!)?.versions.get(match[2]!) : undefined;
    if (!version) fail(grpc.status.NOT_FOUND, `CryptoKeyVersion ${name} not found.`);
    return version;
  };
  const requireEnabled = (version: Version): void => {
    if (version.state !== 'ENABLED') {
      fail(grpc.status.FAILED_PRECONDITION, `${version.name} is not enabled, current state is: ${version.state}.`);
    }
  };
  const versionJson = (v: Version) => ({
    name: v.name,
    state: v.state,
    protectionLevel: 'SOFTWARE',
    algorithm: 'GOOGLE_SYMMETRIC_ENCRYPTION',
    createTime: timestamp(v.createTime),
    generateTime: timestamp(v.createTime),
    destroyTime: timestamp(v.destroyTime),
    destroyEventTime: timestamp(v.destroyEventTime),
  });
  const keyJson = (k: CryptoKey) => ({
    name: k.name,
    purpose: 'ENCRYPT_DECRYPT',
    createTime: timestamp(k.createTime),
    primary: k.primary === undefined ? null : versionJson(k.versions.get(k.primary)!),
    versionTemplate: { protectionLevel: 'SOFTWARE', algorithm: 'GOOGLE_SYMMETRIC_ENCRYPTION' },
    destroyScheduledDuration: { seconds: String(DESTROY_SCHEDULED_DURATION_MS / 1000), nanos: 0 },
  });
  const addVersion = (key: CryptoKey): Version => {
    const id = String(key.nextVersion++);
    const version: Version = {
      id,
      name: `${key.name}/cryptoKeyVersions/${id}`,
      tag: randomBytes(TAG_BYTES),
      material: randomBytes(32),
      state: 'ENABLED',
      createTime: new Date(),
      destroyTime: undefined,
      destroyEventTime: undefined,
    };
    key.versions.set(id, version);
    return version;
  };
  const checkIam = (method: KmsMethod, keyName: string): void => {
    if (revoked.has(keyName)) {
      const permission = method === 'Encrypt' ? 'cloudkms.cryptoKeyVersions.useToEncrypt' : 'cloudkms.cryptoKeyVersions.useToDecrypt';
      throw new ServiceError(Faults.permissionDenied(keyName, permission));
    }
  };
  const injected = (method: KmsMethod): void => {
    const next = queued.get(method)?.shift();
    if (next) throw new ServiceError(next);
    const always = persistent.get(method);
    if (always) throw new ServiceError(always);
  };
  const takeCorruption = (field: CorruptibleField): boolean => corrupt.delete(field);
  const received = (field: DamageableField, bytes: Buffer): Buffer => {
    if (!damage.delete(field) || bytes.length === 0) return bytes;
    const copy = Buffer.from(bytes);
    copy[0] = copy[0]! ^ 0x01;
    return copy;
  };
  const checksum = (field: string, dataField: string, bytes: Buffer, expected: number | undefined): boolean => {
    if (expected === undefined) return false;
    if (crc32c(bytes) !== expected) {
      fail(grpc.status.INVALID_ARGUMENT, `The checksum in field ${field} did not match the data in field ${dataField}.`);
    }
    return true;
  };

  type Handler = (request: Record<string, unknown>, metadata: grpc.Metadata) => unknown;
  const handlers: Record<string, Handler> = {
    CreateKeyRing(req) {
      const parent = String(req.parent);
      const name = `${parent}/keyRings/${String(req.keyRingId)}`;
      if (!/^projects\/[^/]+\/locations\/[^/]+$/.test(parent)) fail(grpc.status.INVALID_ARGUMENT, `Invalid parent: ${parent}`);
      if (keyRings.has(name)) fail(grpc.status.ALREADY_EXISTS, `KeyRing ${name} already exists.`);
      const ring = { name, createTime: new Date() };
      keyRings.set(name, ring);
      return { name, createTime: timestamp(ring.createTime) };
    },
    GetKeyRing(req) {
      const ring = keyRings.get(String(req.name));
      if (!ring) fail(grpc.status.NOT_FOUND, `KeyRing ${String(req.name)} not found.`);
      return { name: ring.name, createTime: timestamp(ring.createTime) };
    },
    CreateCryptoKey(req) {
      const parent = String(req.parent);
      if (!keyRings.has(parent)) fail(grpc.status.NOT_FOUND, `KeyRing ${parent} not found.`);
      const name = `${parent}/cryptoKeys/${String(req.cryptoKeyId)}`;
      if (keys.has(name)) fail(grpc.status.ALREADY_EXISTS, `CryptoKey ${name} already exists.`);
      const purpose = (req.cryptoKey as { purpose?: string } | null)?.purpose;
      if (purpose !== 'ENCRYPT_DECRYPT') fail(grpc.status.UNIMPLEMENTED, 'this stand-in serves ENCRYPT_DECRYPT keys only');
      const key: CryptoKey = { name, createTime: new Date(), versions: new Map(), primary: undefined, nextVersion: 1 };
      keys.set(name, key);
      if (req.skipInitialVersionCreation !== true) key.primary = addVersion(key).id;
      return keyJson(key);
    },
    GetCryptoKey(req) {
      return keyJson(keyOf(String(req.name)));
    },
    CreateCryptoKeyVersion(req) {
      return versionJson(addVersion(keyOf(String(req.parent))));
    },
    GetCryptoKeyVersion(req) {
      return versionJson(versionOf(String(req.name)));
    },
    UpdateCryptoKeyVersion(req) {
      const update = req.cryptoKeyVersion as { name?: string; state?: VersionState } | null;
      const paths = (req.updateMask as { paths?: string[] } | null)?.paths ?? [];
      if (!update?.name || paths.length !== 1 || paths[0] !== 'state') fail(grpc.status.INVALID_ARGUMENT, 'update_mask must be exactly ["state"]');
      const version = versionOf(update.name);
      const to = update.state;
      if (to !== 'ENABLED' && to !== 'DISABLED') fail(grpc.status.INVALID_ARGUMENT, `Invalid state: ${String(to)}`);
      if (version.state !== 'ENABLED' && version.state !== 'DISABLED') {
        fail(grpc.status.FAILED_PRECONDITION, `${version.name} is not enabled or disabled, current state is: ${version.state}.`);
      }
      version.state = to;
      return versionJson(version);
    },
    UpdateCryptoKeyPrimaryVersion(req) {
      const key = keyOf(String(req.name));
      const id = String(req.cryptoKeyVersionId);
      const version = key.versions.get(id);
      if (!version) fail(grpc.status.NOT_FOUND, `CryptoKeyVersion ${key.name}/cryptoKeyVersions/${id} not found.`);
      requireEnabled(version);
      key.primary = id;
      return keyJson(key);
    },
    DestroyCryptoKeyVersion(req) {
      const version = versionOf(String(req.name));
      if (version.state !== 'ENABLED' && version.state !== 'DISABLED') {
        fail(grpc.status.FAILED_PRECONDITION, `${version.name} is not enabled or disabled, current state is: ${version.state}.`);
      }
      version.state = 'DESTROY_SCHEDULED';
      version.destroyTime = new Date(Date.now() + DESTROY_SCHEDULED_DURATION_MS);
      return versionJson(version);
    },
    RestoreCryptoKeyVersion(req) {
      const version = versionOf(String(req.name));
      if (version.state !== 'DESTROY_SCHEDULED') {
        fail(grpc.status.FAILED_PRECONDITION, `${version.name} is not scheduled for destruction, current state is: ${version.state}.`);
      }
      version.state = 'DISABLED';
      version.destroyTime = undefined;
      return versionJson(version);
    },
    Encrypt(req, metadata) {
      const name = String(req.name);
      record('Encrypt', req, metadata);
      injected('Encrypt');
      // The name may be a key (its primary is used) or one of its versions.
      const keyName = name.includes('/cryptoKeyVersions/') ? name.replace(/\/cryptoKeyVersions\/[^/]+$/, '') : name;
      checkIam('Encrypt', keyName);
      const key = keyOf(keyName);
      let version: Version;
      if (keyName === name) {
        if (key.primary === undefined) fail(grpc.status.FAILED_PRECONDITION, `${key.name} has no primary version.`);
        version = key.versions.get(key.primary)!;
      } else version = versionOf(name);
      requireEnabled(version);
      const plaintext = received('plaintext', req.plaintext as Buffer);
      const aad = received('additionalAuthenticatedData', (req.additionalAuthenticatedData as Buffer | null) ?? Buffer.alloc(0));
      if (plaintext.length > 64 * 1024) fail(grpc.status.INVALID_ARGUMENT, 'The plaintext must be no larger than 64KiB.');
      const verifiedPlaintext = checksum('plaintext_crc32c', 'plaintext', plaintext, int64(req.plaintextCrc32c));
      const verifiedAad = checksum('additional_authenticated_data_crc32c', 'additional_authenticated_data', aad, int64(req.additionalAuthenticatedDataCrc32c));
      const iv = randomBytes(IV_BYTES);
      const cipher = createCipheriv('aes-256-gcm', version.material, iv, { authTagLength: GCM_TAG_BYTES });
      cipher.setAAD(Buffer.concat([version.tag, aad]));
      let ciphertext = Buffer.concat([version.tag, iv, cipher.update(plaintext), cipher.final(), cipher.getAuthTag()]);
      const ciphertextCrc = crc32c(ciphertext);
      if (takeCorruption('ciphertext')) {
        ciphertext = Buffer.from(ciphertext);
        ciphertext[ciphertext.length - 1] = ciphertext[ciphertext.length - 1]! ^ 0x01;
      }
      return {
        name: takeCorruption('name') ? `${key.name}-other/cryptoKeyVersions/${version.id}` : version.name,
        ciphertext,
        ciphertextCrc32c: { value: String(takeCorruption('ciphertextCrc32c') ? (ciphertextCrc ^ 1) >>> 0 : ciphertextCrc) },
        verifiedPlaintextCrc32c: takeCorruption('verifiedPlaintextCrc32c') ? false : verifiedPlaintext,
        verifiedAdditionalAuthenticatedDataCrc32c: takeCorruption('verifiedAdditionalAuthenticatedDataCrc32c') ? false : verifiedAad,
        protectionLevel: 'SOFTWARE',
      };
    },
    Decrypt(req, metadata) {
      const keyName = String(req.name);
      record('Decrypt', req, metadata);
      injected('Decrypt');
      checkIam('Decrypt', keyName);
      const key = keyOf(keyName);
      const ciphertext = received('ciphertext', req.ciphertext as Buffer);
      const aad = received('additionalAuthenticatedData', (req.additionalAuthenticatedData as Buffer | null) ?? Buffer.alloc(0));
      checksum('ciphertext_crc32c', 'ciphertext', ciphertext, int64(req.ciphertextCrc32c));
      checksum('additional_authenticated_data_crc32c', 'additional_authenticated_data', aad, int64(req.additionalAuthenticatedDataCrc32c));
      const decryptionFailed = (): never => fail(grpc.status.INVALID_ARGUMENT, "Decryption failed: verify that 'name' refers to the correct CryptoKey.");
      if (ciphertext.length < TAG_BYTES + IV_BYTES + GCM_TAG_BYTES) decryptionFailed();
      const tag = ciphertext.subarray(0, TAG_BYTES);
      const version = [...key.versions.values()].find((v) => v.tag.equals(tag));
      if (!version) return decryptionFailed();
      requireEnabled(version);
      const iv = ciphertext.subarray(TAG_BYTES, TAG_BYTES + IV_BYTES);
      const body = ciphertext.subarray(TAG_BYTES + IV_BYTES, ciphertext.length - GCM_TAG_BYTES);
      const decipher = createDecipheriv('aes-256-gcm', version.material, iv, { authTagLength: GCM_TAG_BYTES });
      decipher.setAAD(Buffer.concat([version.tag, aad]));
      decipher.setAuthTag(ciphertext.subarray(ciphertext.length - GCM_TAG_BYTES));
      let plaintext: Buffer;
      try {
        plaintext = Buffer.concat([decipher.update(body), decipher.final()]);
      } catch {
        return decryptionFailed();
      }
      const plaintextCrc = crc32c(plaintext);
      if (takeCorruption('plaintext')) plaintext[0] = plaintext[0]! ^ 0x01;
      return {
        plaintext,
        plaintextCrc32c: { value: String(takeCorruption('plaintextCrc32c') ? (plaintextCrc ^ 1) >>> 0 : plaintextCrc) },
        usedPrimary: key.primary === version.id,
        protectionLevel: 'SOFTWARE',
      };
    },
  };

  function record(method: KmsMethod, req: Record<string, unknown>, metadata: grpc.Metadata): void {
    counts.set(method, (counts.get(method) ?? 0) + 1);
    const header = (name: string): string | undefined => {
      const value = metadata.get(name)[0];
      return value === undefined ? undefined : String(value);
    };
    seen.push({
      method,
      name: String(req.name),
      plaintextCrc32c: int64(req.plaintextCrc32c) !== undefined,
      ciphertextCrc32c: int64(req.ciphertextCrc32c) !== undefined,
      additionalAuthenticatedDataCrc32c: int64(req.additionalAuthenticatedDataCrc32c) !== undefined,
      aadBytes: ((req.additionalAuthenticatedData as Buffer | null) ?? Buffer.alloc(0)).length,
      routingHeader: header('x-goog-request-params'),
      authorization: header('authorization'),
    });
    if (seen.length > 1000) seen.shift();
  }

  const implementation: grpc.UntypedServiceImplementation = {};
  for (const [method, handler] of Object.entries(handlers)) {
    implementation[method] = (call: grpc.ServerUnaryCall<Record<string, unknown>, unknown>, callback: grpc.sendUnaryData<unknown>) => {
      try {
        callback(null, handler(call.request, call.metadata));
      } catch (err) {
        const fault = err instanceof ServiceError ? err.fault : { code: grpc.status.INTERNAL, message: `stand-in fault: ${String(err)}` };
        callback({ code: fault.code, details: fault.message, metadata: statusMetadata(fault) });
      }
    };
  }

  let server: grpc.Server | undefined;
  let port = 0;
  const listen = async (): Promise<void> => {
    const s = new grpc.Server();
    s.addService(SERVICE, implementation);
    port = await new Promise<number>((resolve, reject) => {
      s.bindAsync(`127.0.0.1:${port}`, grpc.ServerCredentials.createInsecure(), (err, bound) => (err ? reject(err) : resolve(bound)));
    });
    server = s;
  };
  const shutdown = async (): Promise<void> => {
    const s = server;
    server = undefined;
    // forceShutdown cuts open connections at once, as a crash would.
    s?.forceShutdown();
  };
  await listen();

  return {
    get port() {
      return port;
    },
    get endpoint() {
      return `127.0.0.1:${port}`;
    },
    calls: (method) => counts.get(method) ?? 0,
    resetCounts: () => counts.clear(),
    seen,
    failNext(method, fault, times = 1) {
      const list = queued.get(method) ?? [];
      for (let i = 0; i < times; i++) list.push(fault);
      queued.set(method, list);
    },
    setFault(method, fault) {
      if (fault) persistent.set(method, fault);
      else persistent.delete(method);
    },
    revoke: (keyName) => void revoked.add(keyName),
    grant: (keyName) => void revoked.delete(keyName),
    corruptNext: (field) => void corrupt.add(field),
    damageNextRequest: (field) => void damage.add(field),
    completeDestruction(versionName) {
      const version = versionOf(versionName);
      if (version.state !== 'DESTROY_SCHEDULED') throw new Error(`${versionName} is ${version.state}, not DESTROY_SCHEDULED`);
      version.state = 'DESTROYED';
      version.destroyEventTime = new Date();
      version.material.fill(0);
    },
    stop: shutdown,
    async start() {
      if (!server) await listen();
    },
    close: shutdown,
  };
}

/**
 * The official client, pointed at the stand-in over plaintext gRPC, for the tests' key
 * administration (create key rings, keys and versions; disable, destroy, rotate).
 */
export function standInAdminClient(standIn: Pick<GcpKmsStandIn, 'port'>): KeyManagementServiceClient {
  return new KeyManagementServiceClient({
    apiEndpoint: '127.0.0.1',
    port: standIn.port,
    sslCreds: gax.grpc.credentials.createInsecure(),
    universeDomain: 'googleapis.com',
  });
}

/** Creates key ring (if needed) and an ENCRYPT_DECRYPT key; returns the key's name. */
export async function createStandInKey(admin: KeyManagementServiceClient, keyName: string): Promise<string> {
  const match = /^(projects\/[^/]+\/locations\/[^/]+)\/keyRings\/([^/]+)\/cryptoKeys\/([^/]+)$/.exec(keyName);
  if (!match) throw new Error(`not a crypto key name: ${keyName}`);
  const [, location, ring, key] = match as unknown as [string, string, string, string];
  try {
    await admin.createKeyRing({ parent: location, keyRingId: ring, keyRing: {} });
  } catch (err) {
    if ((err as { code?: number }).code !== grpc.status.ALREADY_EXISTS) throw err;
  }
  const [created] = await admin.createCryptoKey({ parent: `${location}/keyRings/${ring}`, cryptoKeyId: key, cryptoKey: { purpose: 'ENCRYPT_DECRYPT' } });
  return created.name!;
}
