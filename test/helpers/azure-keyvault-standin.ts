/**
 * A STAND-IN for Azure Key Vault (and the Managed HSM key API), written for Keyward's tests
 * because no independent Key Vault emulator can be installed on the test machine (see
 * docs/kms/azure.md, "Testing: stand-in, not an independent emulator"). It is ours, so it can
 * only show that the driver speaks the protocol *as we read the documentation*; it cannot
 * reveal where we misread it.
 *
 * It implements, over HTTPS on 127.0.0.1, the subset of the documented Key Vault REST API
 * (https://learn.microsoft.com/rest/api/keyvault/keys) that Keyward and its tests use, with
 * the `api-version` query parameter checked:
 *   GET   /keys/{name}[/{version}]                  get key (public part only)
 *   POST  /keys/{name}/create                       create key; on an existing name, a new version (rotation)
 *   PATCH /keys/{name}/{version}                    update key (attributes.enabled, key_ops)
 *   POST  /keys/{name}/{version}/wrapkey|unwrapkey  RSA-OAEP-256 (node:crypto, real RSA keys) and A256KW
 *                                                   (RFC 3394, for Managed HSM `oct-HSM` keys). An empty
 *                                                   version (`/keys/{name}//wrapkey`) means the current one,
 *                                                   and the answer's `kid` names the version used.
 * Authentication is challenge based, as the service does it: a request without a bearer token
 * gets 401 with `WWW-Authenticate: Bearer authorization="https://login.windows.net/{tenant}",
 * resource="https://vault.azure.net"`, and a token is accepted only if the token stand-in issued
 * it for that resource and tenant and has not revoked it. Errors use the service's body shape
 * `{"error":{"code","message","innererror"?}}`: 401 Unauthorized, 403 Forbidden (no permission:
 * `ForbiddenByRbac`; disabled key: inner `KeyDisabled`), 404 KeyNotFound, 400 BadParameter (OAEP
 * decoding, malformed values, unknown api-version), and on demand 429 Throttled with Retry-After
 * and 503 ServiceUnavailable. `stop()`/`start()` take it down and bring it back on the same port
 * with the same keys.
 */
import {
  constants,
  createCipheriv,
  createDecipheriv,
  generateKeyPairSync,
  privateDecrypt,
  publicEncrypt,
  randomBytes,
  randomUUID,
  type KeyObject,
} from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { KEY_VAULT_RESOURCE, standinTls, type TokenStandin } from './azure-token-standin.js';
import { startHttpsStandin } from './https-standin.js';

/** The api-versions the real service documents for the keys API; anything else is refused. */
export const SUPPORTED_API_VERSIONS = ['7.0', '7.1', '7.2', '7.3', '7.4', '7.5', '7.6', '2025-07-01'] as const;

const IV_A256KW = Buffer.from('A6A6A6A6A6A6A6A6', 'hex');

type KeyType = 'RSA' | 'RSA-HSM' | 'oct-HSM';

interface KeyVersion {
  readonly version: string;
  readonly kty: KeyType;
  readonly privateKey?: KeyObject;
  readonly publicKey?: KeyObject;
  readonly secret?: Buffer;
  keyOps: string[];
  enabled: boolean;
  readonly created: number;
  updated: number;
}

interface StoredKey {
  readonly name: string;
  readonly versions: Map<string, KeyVersion>;
  current: string;
}

export interface VaultRequestRecord {
  readonly method: string;
  readonly path: string;
  /** get, create, update, wrapkey, unwrapkey, or undefined for others. */
  readonly operation?: string;
  readonly keyName?: string;
  /** The key version the operation used (the current one when the URL named none). */
  readonly version?: string;
  readonly status: number;
  readonly authenticated: boolean;
}

export interface InjectedFailure {
  readonly status: 429 | 500 | 503;
  /** Requests (with a valid token) that get this answer before normal service resumes. */
  readonly count: number;
  readonly retryAfterSeconds?: number;
}

export interface KeyVaultStandin {
  readonly port: number;
  /** `https://127.0.0.1:<port>` */
  readonly vaultUrl: string;
  readonly requests: VaultRequestRecord[];
  /** Creates a key (or, if the name exists, a new current version of it); returns the version. */
  createKey(name: string, kty?: KeyType): string;
  currentVersion(name: string): string;
  setEnabled(name: string, version: string, enabled: boolean): void;
  /** `none`: the client's every key operation is refused with 403 ForbiddenByRbac (its role assignment removed). */
  setPermission(clientId: string, mode: 'full' | 'none'): void;
  /** The next `count` authenticated key requests fail with the given status. */
  injectFailures(failure: InjectedFailure): void;
  /** Counts requests per operation since `since` (an index into `requests`). */
  count(operation: string, since?: number): number;
  stop(): Promise<void>;
  start(): Promise<void>;
  close(): Promise<void>;
}

class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly inner?: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

const b64u = (buf: Buffer): string => buf.toString('base64url');

function decodeB64u(value: unknown, property: string): Buffer {
  if (typeof value !== 'string' || value === '') throw new HttpError(400, 'BadParameter', `Property '${property}' is required.`);
  if (!/^[A-Za-z0-9_-]*={0,2}$/.test(value)) throw new HttpError(400, 'BadParameter', `Content of '${property}' is not base64url.`);
  return Buffer.from(value, 'base64url');
}

export async function startKeyVaultStandin(options: { tokens: TokenStandin; tenantId: string; port?: number }): Promise<KeyVaultStandin> {
  const tls = await standinTls();
  const keys = new Map<string, StoredKey>();
  const requests: VaultRequestRecord[] = [];
  const denied = new Set<string>();
  let failures: { failure: InjectedFailure; left: number } | undefined;
  let port = options.port ?? 0;
  let vaultUrl = '';

  const newVersion = (kty: KeyType): KeyVersion => {
    const version = randomBytes(16).toString('hex');
    const now = Math.floor(Date.now() / 1000);
    if (kty === 'oct-HSM') {
      return { version, kty, secret: randomBytes(32), keyOps: ['wrapKey', 'unwrapKey', 'encrypt', 'decrypt'], enabled: true, created: now, updated: now };
    }
    const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    return { version, kty, privateKey, publicKey, keyOps: ['encrypt', 'decrypt', 'sign', 'verify', 'wrapKey', 'unwrapKey'], enabled: true, created: now, updated: now };
  };

  const createKey = (name: string, kty: KeyType = 'RSA'): string => {
    const v = newVersion(kty);
    const stored = keys.get(name) ?? { name, versions: new Map<string, KeyVersion>(), current: v.version };
    stored.versions.set(v.version, v);
    stored.current = v.version;
    keys.set(name, stored);
    return v.version;
  };

  const find = (name: string, version: string | undefined): KeyVersion => {
    const stored = keys.get(name);
    const v = stored?.versions.get(version === undefined || version === '' ? stored.current : version);
    if (!stored || !v) {
      const id = version ? `${name}/${version}` : name;
      throw new HttpError(
        404,
        'KeyNotFound',
        `A key with (name/id) ${id} was not found in this key vault. If you recently deleted this key you may be able to recover it using the correct recovery command. For help resolving this issue, please see https://go.microsoft.com/fwlink/?linkid=2125182`,
      );
    }
    return v;
  };

  const bundle = (name: string, v: KeyVersion): unknown => {
    const kid = `${vaultUrl}/keys/${name}/${v.version}`;
    const key: Record<string, unknown> = { kid, kty: v.kty, key_ops: v.keyOps };
    if (v.publicKey) {
      const jwk = v.publicKey.export({ format: 'jwk' });
      key.n = jwk.n;
      key.e = jwk.e;
    }
    return {
      key,
      attributes: { enabled: v.enabled, created: v.created, updated: v.updated, recoveryLevel: 'Recoverable+Purgeable', recoverableDays: 90, exportable: false },
    };
  };

  const usable = (v: KeyVersion, operation: 'wrapKey' | 'unwrapKey'): void => {
    if (!v.enabled) throw new HttpError(403, 'Forbidden', `Operation ${operation} is not allowed on a disabled key.`, 'KeyDisabled');
    if (!v.keyOps.includes(operation)) throw new HttpError(403, 'Forbidden', `Operation ${operation} is not permitted on this key.`, 'KeyOperationForbidden');
  };

  const wrap = (v: KeyVersion, alg: unknown, value: Buffer): Buffer => {
    if (alg === 'RSA-OAEP-256' && v.publicKey) {
      return publicEncrypt({ key: v.publicKey, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' }, value);
    }
    if (alg === 'A256KW' && v.secret) {
      if (value.length < 16 || value.length % 8 !== 0) throw new HttpError(400, 'BadParameter', 'The length of the key to wrap must be a multiple of 8 bytes and at least 16 bytes.');
      const cipher = createCipheriv('id-aes256-wrap', v.secret, IV_A256KW);
      return Buffer.concat([cipher.update(value), cipher.final()]);
    }
    throw new HttpError(400, 'BadParameter', `Algorithm ${String(alg)} is not supported for key type ${v.kty}.`);
  };

  const unwrap = (v: KeyVersion, alg: unknown, value: Buffer): Buffer => {
    if (alg === 'RSA-OAEP-256' && v.privateKey) {
      try {
        return privateDecrypt({ key: v.privateKey, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' }, value);
      } catch {
        // The real service's answer to any RSA-OAEP decryption failure.
        throw new HttpError(400, 'BadParameter', 'Error occurred while decoding OAEP padding.');
      }
    }
    if (alg === 'A256KW' && v.secret) {
      try {
        const decipher = createDecipheriv('id-aes256-wrap', v.secret, IV_A256KW);
        return Buffer.concat([decipher.update(value), decipher.final()]);
      } catch {
        // Not verified against a real Managed HSM: the message text is the stand-in's own.
        throw new HttpError(400, 'BadParameter', 'Error occurred while unwrapping the key: the integrity check failed.');
      }
    }
    throw new HttpError(400, 'BadParameter', `Algorithm ${String(alg)} is not supported for key type ${v.kty}.`);
  };

  const readJson = async (req: IncomingMessage): Promise<Record<string, unknown>> => {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const text = Buffer.concat(chunks).toString('utf8');
    if (text === '') return {};
    try {
      const parsed: unknown = JSON.parse(text);
      if (typeof parsed === 'object' && parsed !== null) return parsed as Record<string, unknown>;
    } catch {
      // fall through
    }
    throw new HttpError(400, 'BadParameter', 'The request body is not valid JSON.');
  };

  const send = (res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void => {
    res.writeHead(status, {
      'content-type': 'application/json; charset=utf-8',
      'cache-control': 'no-cache',
      'x-ms-request-id': randomUUID(),
      'x-ms-keyvault-service-version': '1.9.0.0 (stand-in)',
      'x-ms-keyvault-region': 'local',
      ...headers,
    });
    res.end(JSON.stringify(body));
  };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const url = new URL(req.url ?? '/', vaultUrl);
    const method = req.method ?? 'GET';
    const segments = url.pathname.split('/').slice(1).map(decodeURIComponent);
    let record: Omit<VaultRequestRecord, 'status'> = { method, path: url.pathname, authenticated: false };
    const answer = (status: number, body: unknown, headers: Record<string, string> = {}): void => {
      requests.push({ ...record, status });
      send(res, status, body, headers);
    };
    try {
      // Authentication first, as the service does: the SDK's first request carries no body.
      const auth = req.headers.authorization;
      const challenge = { 'www-authenticate': `Bearer authorization="https://login.windows.net/${options.tenantId}", resource="${KEY_VAULT_RESOURCE}"` };
      if (!auth || !/^Bearer /i.test(auth)) {
        req.resume();
        throw new HttpError(401, 'Unauthorized', 'AKV10000: Request is missing a Bearer or PoP token.', undefined, challenge);
      }
      const { verdict, clientId } = options.tokens.validate(auth.slice('Bearer '.length).trim(), KEY_VAULT_RESOURCE, options.tenantId);
      if (verdict !== 'ok') {
        req.resume();
        const text = verdict === 'revoked' ? 'AKV10032: Invalid token: the token has been revoked.' : 'AKV10032: Invalid issuer or audience.';
        throw new HttpError(401, 'Unauthorized', text, undefined, challenge);
      }
      record = { ...record, authenticated: true };

      const apiVersion = url.searchParams.get('api-version');
      if (apiVersion === null) throw new HttpError(400, 'BadParameter', 'The api-version query parameter (?api-version=) is required for all requests.');
      if (!(SUPPORTED_API_VERSIONS as readonly string[]).includes(apiVersion)) {
        throw new HttpError(400, 'BadParameter', `The specified version (${apiVersion}) is not recognized. Consider using the latest supported version (2025-07-01).`);
      }
      if (segments[0] !== 'keys' || segments[1] === undefined || segments[1] === '') {
        throw new HttpError(404, 'NotFound', `The stand-in does not serve ${method} ${url.pathname}.`);
      }
      const name = segments[1];
      // /keys/{name}, /keys/{name}/{version}, /keys/{name}/create, /keys/{name}/{version?}/{op}
      let operation: string;
      let version: string | undefined;
      if (segments.length === 2 || (segments.length === 3 && segments[2] === '')) {
        operation = method === 'GET' ? 'get' : 'unsupported';
      } else if (segments.length === 3 && segments[2] === 'create') {
        operation = method === 'POST' ? 'create' : 'unsupported';
      } else if (segments.length === 3 && (segments[2] === 'wrapkey' || segments[2] === 'unwrapkey')) {
        operation = method === 'POST' ? segments[2] : 'unsupported';
      } else if (segments.length === 3) {
        version = segments[2];
        operation = method === 'GET' ? 'get' : method === 'PATCH' ? 'update' : 'unsupported';
      } else if (segments.length === 4 && (segments[3] === 'wrapkey' || segments[3] === 'unwrapkey')) {
        version = segments[2];
        operation = method === 'POST' ? segments[3] : 'unsupported';
      } else {
        operation = 'unsupported';
      }
      record = { ...record, operation, keyName: name };
      if (operation === 'unsupported') throw new HttpError(405, 'MethodNotAllowed', `The stand-in does not serve ${method} ${url.pathname}.`);

      if (failures && failures.left > 0) {
        failures.left -= 1;
        req.resume();
        const { status, retryAfterSeconds } = failures.failure;
        const headers: Record<string, string> = retryAfterSeconds === undefined ? {} : { 'retry-after': String(retryAfterSeconds) };
        if (status === 429) throw new HttpError(429, 'Throttled', 'Request was not processed because too many requests were received. Reason: A1', undefined, headers);
        if (status === 503) throw new HttpError(503, 'ServiceUnavailable', 'The service is temporarily unavailable. Please retry later.', undefined, headers);
        throw new HttpError(500, 'InternalServerError', 'An unexpected error occurred.', undefined, headers);
      }
      if (clientId !== undefined && denied.has(clientId)) {
        req.resume();
        const action = { get: 'read', create: 'create', update: 'write', wrapkey: 'wrap/action', unwrapkey: 'unwrap/action' }[operation] ?? 'read';
        throw new HttpError(
          403,
          'Forbidden',
          `Caller is not authorized to perform action on resource.\r\nIf role assignments, deny assignments or role definitions were changed recently, please observe propagation time.\r\nAction: 'Microsoft.KeyVault/vaults/keys/${action}'\r\nAssignment: (not found)\r\nDecisionReason: 'DeniedWithNoValidRBAC'\r\n`,
          'ForbiddenByRbac',
        );
      }

      if (operation === 'get') {
        const v = find(name, version);
        record = { ...record, version: v.version };
        return answer(200, bundle(name, v));
      }
      const body = await readJson(req);
      if (operation === 'create') {
        const kty = body.kty;
        if (kty !== 'RSA' && kty !== 'RSA-HSM' && kty !== 'oct-HSM') throw new HttpError(400, 'BadParameter', `Key type ${String(kty)} is not supported by the stand-in.`);
        if (kty !== 'oct-HSM' && body.key_size !== undefined && body.key_size !== 2048) throw new HttpError(400, 'BadParameter', 'The stand-in creates 2048-bit RSA keys only.');
        const created = createKey(name, kty);
        const v = find(name, created);
        if (Array.isArray(body.key_ops)) v.keyOps = body.key_ops.map(String);
        const attributes = body.attributes as { enabled?: unknown } | undefined;
        if (attributes && typeof attributes.enabled === 'boolean') v.enabled = attributes.enabled;
        record = { ...record, version: v.version };
        return answer(200, bundle(name, v));
      }
      if (operation === 'update') {
        const v = find(name, version);
        const attributes = body.attributes as { enabled?: unknown } | undefined;
        if (attributes && typeof attributes.enabled === 'boolean') v.enabled = attributes.enabled;
        if (Array.isArray(body.key_ops)) v.keyOps = body.key_ops.map(String);
        v.updated = Math.floor(Date.now() / 1000);
        record = { ...record, version: v.version };
        return answer(200, bundle(name, v));
      }
      // wrapkey / unwrapkey
      const v = find(name, version);
      record = { ...record, version: v.version };
      usable(v, operation === 'wrapkey' ? 'wrapKey' : 'unwrapKey');
      const value = decodeB64u(body.value, 'value');
      const result = operation === 'wrapkey' ? wrap(v, body.alg, value) : unwrap(v, body.alg, value);
      const out = { kid: `${vaultUrl}/keys/${name}/${v.version}`, value: b64u(result) };
      result.fill(0);
      return answer(200, out);
    } catch (err) {
      if (err instanceof HttpError) {
        const error: Record<string, unknown> = { code: err.code, message: err.message };
        if (err.inner !== undefined) error.innererror = { code: err.inner };
        return answer(err.status, { error }, err.headers);
      }
      return answer(500, { error: { code: 'InternalServerError', message: `stand-in failure: ${String(err)}` } });
    }
  };

  const https = await startHttpsStandin({
    tls,
    port,
    handler: (req, res) => {
      handle(req, res).catch(() => res.destroy());
    },
  });
  port = https.port;
  vaultUrl = `https://127.0.0.1:${port}`;
  const { start, stop } = https;

  return {
    get port() {
      return port;
    },
    get vaultUrl() {
      return vaultUrl;
    },
    requests,
    createKey,
    currentVersion(name) {
      const stored = keys.get(name);
      if (!stored) throw new Error(`no key ${name}`);
      return stored.current;
    },
    setEnabled(name, version, enabled) {
      find(name, version).enabled = enabled;
    },
    setPermission(clientId, mode) {
      if (mode === 'none') denied.add(clientId);
      else denied.delete(clientId);
    },
    injectFailures(failure) {
      failures = { failure, left: failure.count };
    },
    count(operation, since = 0) {
      return requests.slice(since).filter((r) => r.operation === operation && r.authenticated).length;
    },
    stop,
    start,
    close: stop,
  };
}
