/**
 * A STAND-IN for Microsoft Entra ID (Azure AD) token issuance, for the Azure Key Vault
 * driver tests. It is not an emulator of Entra ID and proves nothing about Entra ID itself;
 * it speaks just enough of the documented protocol for @azure/identity + MSAL to run their
 * real code paths against it:
 *
 * - OpenID discovery: `GET /{tenant}/v2.0/.well-known/openid-configuration` (MSAL fetches it
 *   when `disableInstanceDiscovery` makes the authority a known one);
 * - OAuth 2.0 client credentials, AAD v2: `POST /{tenant}/oauth2/v2.0/token` with
 *   `client_secret`, or a `client_assertion` (workload identity: the federated token file);
 * - App Service managed identity: `GET /msi/token?api-version=2019-08-01&resource=…` with the
 *   `X-IDENTITY-HEADER` secret (what IDENTITY_ENDPOINT / IDENTITY_HEADER point at).
 *
 * Error bodies follow Entra's documented shape (`error`, `error_description` with an AADSTS
 * code, `error_codes`). Access tokens are opaque random strings that the Key Vault stand-in
 * checks with `validate()`; tokens can be revoked and clients disabled on demand.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { join } from 'node:path';
import { TEST_CACHE } from './emulator.js';
import { startHttpsStandin } from './https-standin.js';

export const KEY_VAULT_RESOURCE = 'https://vault.azure.net';
export const MANAGED_HSM_RESOURCE = 'https://managedhsm.azure.net';

export interface StandinTls {
  readonly key: Buffer;
  readonly cert: Buffer;
}

/**
 * The stand-ins' server certificate (scripts/provision/azure-standin-tls.sh). The tests rely on
 * NODE_EXTRA_CA_CERTS (set by scripts/run-node-tests.sh) to trust its CA: certificate checks stay on.
 */
export async function standinTls(): Promise<StandinTls> {
  const dir = join(TEST_CACHE, 'azure-standin');
  const ca = join(dir, 'ca.pem');
  if (process.env.NODE_EXTRA_CA_CERTS !== ca) {
    throw new Error(
      `NODE_EXTRA_CA_CERTS must name ${ca}: run scripts/provision-emulators.sh (it creates the stand-in's test CA), ` +
        'then run the tests through scripts/run-node-tests.sh, which trusts that CA',
    );
  }
  try {
    return { key: await readFile(join(dir, 'server.key')), cert: await readFile(join(dir, 'server.pem')) };
  } catch {
    throw new Error(`${dir}/server.{key,pem} are missing: run scripts/provision-emulators.sh`);
  }
}

interface IssuedToken {
  readonly clientId: string;
  readonly tenantId: string;
  readonly resource: string;
  readonly expiresAt: number;
  revoked: boolean;
}

interface Client {
  readonly tenantId: string;
  secret?: string;
  /** Workload identity: the federated token the client presents as its assertion. */
  federatedToken?: string;
  disabled: boolean;
}

export interface TokenRequestRecord {
  readonly flow: 'client_credentials' | 'managed_identity' | 'discovery';
  readonly clientId?: string;
  readonly status: number;
}

export interface TokenStandin {
  /** `https://127.0.0.1:<port>`: the `authorityHost` to configure. */
  readonly authorityHost: string;
  readonly port: number;
  /** App Service managed identity endpoint (IDENTITY_ENDPOINT) and its header secret (IDENTITY_HEADER). */
  readonly identityEndpoint: string;
  readonly identityHeader: string;
  readonly requests: TokenRequestRecord[];
  registerClient(tenantId: string, clientId: string, credential: { secret?: string; federatedToken?: string }): void;
  /** The client's secret stops working (deleted or expired in Entra): token requests fail with invalid_client. */
  disableClient(clientId: string): void;
  /** Every token issued so far (to `clientId`, or to anyone) is revoked; the Key Vault stand-in answers 401 to them. */
  revoke(clientId?: string): void;
  /** The user-assigned (or system, when undefined) managed identity that the MSI endpoint serves. */
  setManagedIdentity(tenantId: string, clientId: string): void;
  validate(token: string, resource: string, tenantId: string): { verdict: 'ok' | 'invalid' | 'revoked'; clientId?: string };
  stop(): Promise<void>;
  start(): Promise<void>;
  close(): Promise<void>;
}

function aadError(res: ServerResponse, status: number, error: string, aadsts: number, description: string): void {
  const body = {
    error,
    error_description: `AADSTS${aadsts}: ${description} Trace ID: ${randomUUID()} Correlation ID: ${randomUUID()} Timestamp: ${new Date().toISOString()}`,
    error_codes: [aadsts],
    timestamp: new Date().toISOString(),
    trace_id: randomUUID(),
    correlation_id: randomUUID(),
  };
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store, no-cache' });
  res.end(JSON.stringify(body));
}

function json(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store, no-cache' });
  res.end(JSON.stringify(body));
}

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

export async function startTokenStandin(options: { port?: number } = {}): Promise<TokenStandin> {
  const tls = await standinTls();
  const clients = new Map<string, Client>();
  const tokens = new Map<string, IssuedToken>();
  const requests: TokenRequestRecord[] = [];
  const identityHeader = randomBytes(16).toString('hex');
  let managedIdentity: { tenantId: string; clientId: string } | undefined;
  let port = options.port ?? 0;
  let authorityHost = '';

  const issue = (clientId: string, tenantId: string, resource: string): { token: string; expiresIn: number } => {
    const token = `standin.${randomBytes(24).toString('base64url')}`;
    const expiresIn = 3599;
    tokens.set(token, { clientId, tenantId, resource, expiresAt: Date.now() + expiresIn * 1000, revoked: false });
    return { token, expiresIn };
  };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const url = new URL(req.url ?? '/', authorityHost);
    const discovery = /^\/([^/]+)\/v2\.0\/\.well-known\/openid-configuration$/.exec(url.pathname);
    if (req.method === 'GET' && discovery) {
      const tenant = discovery[1]!;
      requests.push({ flow: 'discovery', status: 200 });
      json(res, 200, {
        token_endpoint: `${authorityHost}/${tenant}/oauth2/v2.0/token`,
        token_endpoint_auth_methods_supported: ['client_secret_post', 'private_key_jwt', 'client_secret_basic'],
        jwks_uri: `${authorityHost}/${tenant}/discovery/v2.0/keys`,
        response_modes_supported: ['query', 'fragment', 'form_post'],
        subject_types_supported: ['pairwise'],
        id_token_signing_alg_values_supported: ['RS256'],
        response_types_supported: ['code', 'id_token', 'code id_token', 'id_token token'],
        scopes_supported: ['openid', 'profile', 'email', 'offline_access'],
        issuer: `${authorityHost}/${tenant}/v2.0`,
        request_uri_parameter_supported: false,
        authorization_endpoint: `${authorityHost}/${tenant}/oauth2/v2.0/authorize`,
        end_session_endpoint: `${authorityHost}/${tenant}/oauth2/v2.0/logout`,
        tenant_region_scope: null,
        cloud_instance_name: 'microsoftonline.com',
      });
      return;
    }
    const tokenPath = /^\/([^/]+)\/oauth2\/v2\.0\/token$/.exec(url.pathname);
    if (req.method === 'POST' && tokenPath) {
      const tenant = tokenPath[1]!;
      const form = new URLSearchParams(await readBody(req));
      const clientId = form.get('client_id') ?? '';
      const fail = (status: number, error: string, code: number, text: string): void => {
        requests.push({ flow: 'client_credentials', clientId, status });
        aadError(res, status, error, code, text);
      };
      if (form.get('grant_type') !== 'client_credentials') return fail(400, 'unsupported_grant_type', 70003, 'The app requested an unsupported grant type.');
      const client = clients.get(clientId);
      if (!client) return fail(400, 'unauthorized_client', 700016, `Application with identifier '${clientId}' was not found in the directory '${tenant}'.`);
      if (client.tenantId !== tenant) return fail(400, 'invalid_request', 90002, `Tenant '${tenant}' not found.`);
      const secret = form.get('client_secret');
      const assertion = form.get('client_assertion');
      const authenticated =
        !client.disabled &&
        ((secret !== null && client.secret !== undefined && secret === client.secret) ||
          (assertion !== null && client.federatedToken !== undefined && assertion === client.federatedToken &&
            form.get('client_assertion_type') === 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer'));
      if (!authenticated) {
        return fail(401, 'invalid_client', 7000215, `Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '${clientId}'.`);
      }
      const scope = (form.get('scope') ?? '').split(' ').find((s) => s.endsWith('/.default'));
      if (!scope) return fail(400, 'invalid_scope', 1002012, 'The provided value for scope is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier.');
      const issued = issue(clientId, tenant, scope.slice(0, -'/.default'.length));
      requests.push({ flow: 'client_credentials', clientId, status: 200 });
      json(res, 200, { token_type: 'Bearer', expires_in: issued.expiresIn, ext_expires_in: issued.expiresIn, access_token: issued.token });
      return;
    }
    if (req.method === 'GET' && url.pathname === '/msi/token') {
      const resource = url.searchParams.get('resource') ?? '';
      if (req.headers['x-identity-header'] !== identityHeader) {
        requests.push({ flow: 'managed_identity', status: 401 });
        json(res, 401, { statusCode: 401, message: 'Unauthorized request: X-IDENTITY-HEADER is missing or wrong' });
        return;
      }
      const wanted = url.searchParams.get('client_id') ?? undefined;
      if (!managedIdentity || (wanted !== undefined && wanted !== managedIdentity.clientId)) {
        requests.push({ flow: 'managed_identity', clientId: wanted, status: 400 });
        json(res, 400, { statusCode: 400, message: 'No managed identity found for the specified ClientId/ResourceId/PrincipalId.' });
        return;
      }
      const issued = issue(managedIdentity.clientId, managedIdentity.tenantId, resource.replace(/\/$/, ''));
      requests.push({ flow: 'managed_identity', clientId: managedIdentity.clientId, status: 200 });
      json(res, 200, {
        access_token: issued.token,
        expires_on: String(Math.floor(Date.now() / 1000) + issued.expiresIn),
        resource,
        token_type: 'Bearer',
        client_id: managedIdentity.clientId,
      });
      return;
    }
    json(res, 404, { error: 'not_found', error_description: `the token stand-in does not serve ${req.method} ${url.pathname}` });
  };

  const https = await startHttpsStandin({
    tls,
    port,
    handler: (req, res) => {
      handle(req, res).catch((err: unknown) => {
        if (!res.headersSent) json(res, 500, { error: 'server_error', error_description: String(err) });
        else res.destroy();
      });
    },
  });
  port = https.port;
  authorityHost = `https://127.0.0.1:${port}`;
  const { start, stop } = https;

  return {
    get authorityHost() {
      return authorityHost;
    },
    get port() {
      return port;
    },
    get identityEndpoint() {
      return `${authorityHost}/msi/token`;
    },
    identityHeader,
    requests,
    registerClient(tenantId, clientId, credential) {
      clients.set(clientId, { tenantId, secret: credential.secret, federatedToken: credential.federatedToken, disabled: false });
    },
    disableClient(clientId) {
      const client = clients.get(clientId);
      if (client) client.disabled = true;
    },
    revoke(clientId) {
      for (const token of tokens.values()) if (clientId === undefined || token.clientId === clientId) token.revoked = true;
    },
    setManagedIdentity(tenantId, clientId) {
      managedIdentity = { tenantId, clientId };
    },
    validate(token, resource, tenantId) {
      const issued = tokens.get(token);
      if (!issued || issued.resource !== resource || issued.tenantId !== tenantId || issued.expiresAt < Date.now()) return { verdict: 'invalid' };
      return { verdict: issued.revoked ? 'revoked' : 'ok', clientId: issued.clientId };
    },
    stop,
    start,
    close: stop,
  };
}
