/**
 * The Azure Key Vault, Microsoft Entra ID (token) and Google Cloud KMS STAND-INS of the test
 * suite (test/helpers/azure-keyvault-standin.ts, azure-token-standin.ts, gcp-kms-standin.ts),
 * served on fixed ports with fixed key names, for docker-compose.yml and for trying Keyward
 * by hand. scripts/standins/serve.ts is the command; this module is what it runs.
 *
 * They are STAND-INS, written by Keyward for its own tests: not the real services, and not
 * independent emulators. They speak the documented protocols as Keyward reads them, so they
 * show that Keyward, the official SDKs and that reading fit together, and nothing about how the
 * real services behave (docs/kms/azure.md and docs/kms/gcp.md say what they prove and what
 * not). Their keys live in memory: every start makes new keys, so EDEKs made under a previous
 * run no longer unwrap.
 *
 * The helpers listen on 127.0.0.1 at ports of their own. This module puts a front on each, on
 * `host` (0.0.0.0 in a container, 127.0.0.1 by default) and a fixed port:
 *  - Cloud KMS (plaintext gRPC): a TCP relay. Nothing in that protocol names the server.
 *  - Key Vault and the token endpoint (HTTPS): a small HTTPS reverse proxy with the same
 *    certificate. It forwards every request as it is and rewrites, in the answers, the
 *    stand-in's own origin (`https://127.0.0.1:<its port>`) to the origin the client asked
 *    for (its Host header). That matters for the token stand-in: MSAL takes the token
 *    endpoint from the OpenID discovery document, which would otherwise name an address
 *    that only exists inside the stand-ins' container. (For Key Vault it only tidies the
 *    `kid`s; Keyward does not compare their host.)
 *
 * TLS: the Azure SDK sends tokens over HTTPS only. The helpers read their certificate from
 * `$KEYWARD_TEST_CACHE/azure-standin/` (scripts/provision/azure-standin-tls.sh makes it for
 * the tests, for 127.0.0.1 and localhost). `ensureStandinTls` uses that material when its
 * certificate covers the names asked for; otherwise it issues a new server certificate from
 * the CA there (making the CA too when there is none) with openssl. An existing CA is never
 * replaced: others may trust it. Clients trust the CA through NODE_EXTRA_CA_CERTS; certificate
 * checking is never switched off.
 */
import { execFile } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { access, chmod, mkdir, mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { Agent, createServer as createHttpsServer, request as httpsRequest, type Server as HttpsServer } from 'node:https';
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import { connect, createServer as createNetServer, isIP, type Server as NetServer, type Socket } from 'node:net';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** The Microsoft Entra tenant (directory) id the Key Vault stand-in's challenge names. Made up. */
export const AZURE_TENANT_ID = '7d0e4b1a-5c3f-4e2a-9b6d-0a1c2e3f4b5c';
/** The app registration (client id) the token stand-in knows, with the client secret of `AZURE_STANDIN_CLIENT_SECRET`. */
export const AZURE_CLIENT_ID = 'keyward-compose';
/** The client secret when `AZURE_STANDIN_CLIENT_SECRET` is not set. Local use only. */
export const DEFAULT_AZURE_CLIENT_SECRET = 'keyward-standin-client-secret';
/** The Key Vault stand-in's key: RSA 2048, for the default algorithm RSA-OAEP-256. */
export const AZURE_KEY_NAME = 'tenant-azure';
/** The Cloud KMS stand-in's key (ENCRYPT_DECRYPT). */
export const GCP_KEY_NAME = 'projects/keyward-local/locations/local/keyRings/keyward/cryptoKeys/tenant-gcp';

export const DEFAULT_PORTS = { azureVault: 8443, azureToken: 8444, gcp: 8090 } as const;
export const DEFAULT_TLS_NAMES = ['127.0.0.1', 'localhost'] as const;

export interface StandinsOptions {
  /** Address the fronts listen on: 0.0.0.0 in a container, 127.0.0.1 (the default) elsewhere. */
  readonly host?: string;
  readonly ports?: Partial<Record<keyof typeof DEFAULT_PORTS, number>>;
  /** Host name clients use, for the URLs reported. Default: `host`, or the first TLS name when `host` is a wildcard. */
  readonly publicHost?: string;
  /** Names (DNS or IP) the server certificate must cover; 127.0.0.1 is always added (the fronts use it). */
  readonly tlsNames?: readonly string[];
  readonly azureClientSecret?: string;
  /** Where the TLS material lives: `<testCache>/azure-standin/`, as the helpers read it. */
  readonly testCache?: string;
  /** Progress lines (TLS material made or reused). */
  readonly log?: (line: string) => void;
}

export interface StandinsInfo {
  readonly azure: {
    readonly vaultUrl: string;
    readonly authorityHost: string;
    readonly tenantId: string;
    readonly clientId: string;
    readonly keyName: string;
    readonly keyVersion: string;
  };
  readonly gcp: { readonly endpoint: string; readonly keyName: string };
  readonly tls: { readonly caFile: string; readonly names: readonly string[] };
  readonly listen: { readonly host: string; readonly azureVault: number; readonly azureToken: number; readonly gcp: number };
}

export interface RunningStandins {
  readonly info: StandinsInfo;
  close(): Promise<void>;
}

// ---------------------------------------------------------------------------------------------
// TLS material

export interface StandinTlsFiles {
  readonly dir: string;
  readonly caFile: string;
  readonly keyFile: string;
  readonly certFile: string;
}

function tlsFiles(testCache: string): StandinTlsFiles & { readonly caKeyFile: string } {
  const dir = join(testCache, 'azure-standin');
  return { dir, caFile: join(dir, 'ca.pem'), caKeyFile: join(dir, 'ca.key'), keyFile: join(dir, 'server.key'), certFile: join(dir, 'server.pem') };
}

async function exists(path: string): Promise<boolean> {
  try {
    await access(path);
    return true;
  } catch {
    return false;
  }
}

function covers(cert: X509Certificate, name: string): boolean {
  return isIP(name) !== 0 ? cert.checkIP(name) !== undefined : cert.checkHost(name) !== undefined;
}

/** Why the server certificate in `files` will not do for `names`, or undefined when it will. */
async function unusable(files: StandinTlsFiles, names: readonly string[]): Promise<string | undefined> {
  if (!(await exists(files.caFile)) || !(await exists(files.certFile)) || !(await exists(files.keyFile))) return 'missing';
  try {
    const ca = new X509Certificate(await readFile(files.caFile));
    const cert = new X509Certificate(await readFile(files.certFile));
    if (!cert.checkIssued(ca) || !cert.verify(ca.publicKey)) return 'not issued by the CA beside it';
    const dayAhead = Date.now() + 24 * 3600 * 1000;
    if (Date.parse(cert.validTo) < dayAhead || Date.parse(ca.validTo) < dayAhead) return 'expiring';
    const missing = names.filter((n) => !covers(cert, n));
    if (missing.length > 0) return `not for ${missing.join(', ')}`;
    return undefined;
  } catch (err) {
    return `unreadable (${(err as Error).message})`;
  }
}

async function openssl(args: readonly string[]): Promise<void> {
  try {
    await run('openssl', args);
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { stderr?: string };
    if (e.code === 'ENOENT') throw new Error('openssl is needed to make the stand-ins\' TLS material and is not on PATH (apt-get install openssl)');
    throw new Error(`openssl ${args[0]} failed: ${e.stderr?.trim() || e.message}`);
  }
}

/**
 * Makes sure `<testCache>/azure-standin/` holds a CA and a server certificate from it for every
 * name in `names`. Reuses what is there when it fits; never replaces an existing CA.
 */
export async function ensureStandinTls(testCache: string, names: readonly string[], log: (line: string) => void = () => undefined): Promise<StandinTlsFiles> {
  const files = tlsFiles(testCache);
  const why = await unusable(files, names);
  if (why === undefined) {
    log(`TLS: using ${files.certFile} (${names.join(', ')}), CA ${files.caFile}`);
    return files;
  }
  await mkdir(files.dir, { recursive: true, mode: 0o700 });
  const work = await mkdtemp(join(files.dir, 'tmp.'));
  try {
    const w = (name: string): string => join(work, name);
    const haveCa = await exists(files.caFile);
    if (haveCa && !(await exists(files.caKeyFile))) {
      throw new Error(`${files.certFile} will not do (${why}), and the CA key ${files.caKeyFile} is not there to issue another: remove ${files.dir} to start over with a new CA`);
    }
    if (!haveCa) {
      log(`TLS: creating a throwaway test CA in ${files.dir}`);
      await openssl(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-sha256', '-days', '3650', '-keyout', w('ca.key'), '-out', w('ca.pem'),
        '-subj', '/CN=Keyward test CA (stand-ins)', '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
    }
    log(`TLS: issuing a server certificate for ${names.join(', ')} (was: ${why})`);
    await openssl(['req', '-newkey', 'rsa:2048', '-nodes', '-sha256', '-keyout', w('server.key'), '-out', w('server.csr'), '-subj', `/CN=${names[0] ?? '127.0.0.1'}`]);
    const san = names.map((n) => (isIP(n) !== 0 ? `IP:${n}` : `DNS:${n}`)).join(',');
    await writeFile(w('server.ext'), `basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\nsubjectAltName=${san}\n`);
    await openssl(['x509', '-req', '-sha256', '-days', '825', '-in', w('server.csr'), '-CA', haveCa ? files.caFile : w('ca.pem'), '-CAkey', haveCa ? files.caKeyFile : w('ca.key'),
      '-CAcreateserial', '-extfile', w('server.ext'), '-out', w('server.pem')]);
    await chmod(w('server.key'), 0o600);
    await rename(w('server.key'), files.keyFile);
    await rename(w('server.pem'), files.certFile);
    if (!haveCa) {
      await chmod(w('ca.key'), 0o600);
      await chmod(w('ca.pem'), 0o644);
      await rename(w('ca.key'), files.caKeyFile);
      // The CA last: a client that trusts it once it exists finds the rest in place.
      await rename(w('ca.pem'), files.caFile);
    }
  } finally {
    await rm(work, { recursive: true, force: true });
  }
  const still = await unusable(files, names);
  if (still !== undefined) throw new Error(`the TLS material made in ${files.dir} will not do: ${still}`);
  return files;
}

// ---------------------------------------------------------------------------------------------
// Fronts: a TCP relay (gRPC) and an HTTPS reverse proxy (Azure)

interface Front {
  close(): Promise<void>;
}

function listen(server: NetServer | HttpsServer, port: number, host: string): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
}

function closer(server: NetServer | HttpsServer, sockets: Set<Socket>): () => Promise<void> {
  return () =>
    new Promise((resolve) => {
      for (const s of sockets) s.destroy();
      sockets.clear();
      server.close(() => resolve());
    });
}

function track(server: NetServer | HttpsServer, sockets: Set<Socket>): void {
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
}

/** host:port → 127.0.0.1:target, byte for byte. */
async function startTcpRelay(host: string, port: number, target: number): Promise<Front> {
  const sockets = new Set<Socket>();
  const server = createNetServer((client) => {
    const upstream = connect({ host: '127.0.0.1', port: target });
    sockets.add(upstream);
    upstream.on('close', () => sockets.delete(upstream));
    client.on('error', () => upstream.destroy());
    upstream.on('error', () => client.destroy());
    client.pipe(upstream);
    upstream.pipe(client);
  });
  track(server, sockets);
  await listen(server, port, host);
  return { close: closer(server, sockets) };
}

const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'te', 'trailer', 'content-length']);

async function readAll(stream: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/**
 * HTTPS on host:port → https://127.0.0.1:target (verified against the stand-ins' CA), with
 * `https://127.0.0.1:<target>` in answers replaced by the origin the client asked for.
 */
async function startHttpsProxy(options: {
  readonly host: string;
  readonly port: number;
  readonly target: number;
  readonly tls: { readonly key: Buffer; readonly cert: Buffer; readonly ca: Buffer };
  readonly fallbackOrigin: string;
}): Promise<Front> {
  const internalOrigin = `https://127.0.0.1:${options.target}`;
  const agent = new Agent({ keepAlive: true, ca: options.tls.ca });
  const sockets = new Set<Socket>();
  const forward = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const body = await readAll(req);
    const headers: IncomingHttpHeaders = {};
    for (const [name, value] of Object.entries(req.headers)) if (!HOP_BY_HOP.has(name)) headers[name] = value;
    headers.host = `127.0.0.1:${options.target}`;
    headers['content-length'] = String(body.length);
    const answer = await new Promise<IncomingMessage>((resolve, reject) => {
      const up = httpsRequest({ host: '127.0.0.1', port: options.target, method: req.method, path: req.url, headers, agent }, resolve);
      up.on('error', reject);
      up.end(body);
    });
    const publicOrigin = req.headers.host ? `https://${req.headers.host}` : options.fallbackOrigin;
    const text = (await readAll(answer)).toString('utf8').split(internalOrigin).join(publicOrigin);
    const out: Record<string, string | string[]> = {};
    for (const [name, value] of Object.entries(answer.headers)) if (value !== undefined && !HOP_BY_HOP.has(name)) out[name] = value;
    out['content-length'] = String(Buffer.byteLength(text));
    res.writeHead(answer.statusCode ?? 502, out);
    res.end(text);
  };
  const server = createHttpsServer({ key: options.tls.key, cert: options.tls.cert }, (req, res) => {
    forward(req, res).catch((err: unknown) => {
      if (res.headersSent) return void res.destroy();
      res.writeHead(502, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: { code: 'StandinProxyError', message: `the stand-in behind this port did not answer: ${String(err)}` } }));
    });
  });
  track(server, sockets);
  await listen(server, options.port, options.host);
  const close = closer(server, sockets);
  return {
    async close() {
      await close();
      agent.destroy();
    },
  };
}

// ---------------------------------------------------------------------------------------------

const WILDCARDS = new Set(['0.0.0.0', '::', '']);

function urlHost(host: string): string {
  return isIP(host) === 6 ? `[${host}]` : host;
}

/** Starts the three stand-ins and their fronts. Close them with `close()`. */
export async function startStandins(options: StandinsOptions = {}): Promise<RunningStandins> {
  const log = options.log ?? (() => undefined);
  const host = options.host ?? '127.0.0.1';
  const ports = {
    azureVault: options.ports?.azureVault ?? DEFAULT_PORTS.azureVault,
    azureToken: options.ports?.azureToken ?? DEFAULT_PORTS.azureToken,
    gcp: options.ports?.gcp ?? DEFAULT_PORTS.gcp,
  };
  const requested = options.tlsNames && options.tlsNames.length > 0 ? options.tlsNames : DEFAULT_TLS_NAMES;
  const tlsNames = [...new Set([...requested, '127.0.0.1'])];
  const publicHost = options.publicHost ?? (WILDCARDS.has(host) ? tlsNames[0]! : host);
  const testCache = options.testCache ?? process.env.KEYWARD_TEST_CACHE ?? join(homedir(), '.cache', 'keyward-test');
  const tls = await ensureStandinTls(testCache, tlsNames, log);

  // The helpers read the same cache, through KEYWARD_TEST_CACHE, when they are first imported.
  process.env.KEYWARD_TEST_CACHE = testCache;
  // The Azure helpers refuse to start unless NODE_EXTRA_CA_CERTS names their CA: a guard for
  // test processes, whose own clients must trust it. Node reads that variable once, at start-up,
  // so setting it here changes no trust of this process; it only satisfies the guard. This
  // process calls the stand-ins only through the fronts below, which trust the CA explicitly.
  process.env.NODE_EXTRA_CA_CERTS = tls.caFile;

  const { startTokenStandin } = await import('../../test/helpers/azure-token-standin.js');
  const { startKeyVaultStandin } = await import('../../test/helpers/azure-keyvault-standin.js');
  const { createStandInKey, standInAdminClient, startGcpKmsStandIn } = await import('../../test/helpers/gcp-kms-standin.js');

  const opened: Array<{ close(): Promise<void> }> = [];
  const closeAll = async (): Promise<void> => {
    for (const item of opened.splice(0).reverse()) await item.close();
  };
  try {
    const tokens = await startTokenStandin();
    opened.push(tokens);
    tokens.registerClient(AZURE_TENANT_ID, AZURE_CLIENT_ID, { secret: options.azureClientSecret ?? DEFAULT_AZURE_CLIENT_SECRET });
    const vault = await startKeyVaultStandin({ tokens, tenantId: AZURE_TENANT_ID });
    opened.push(vault);
    const keyVersion = vault.createKey(AZURE_KEY_NAME, 'RSA');

    const gcp = await startGcpKmsStandIn();
    opened.push(gcp);
    const admin = standInAdminClient(gcp);
    try {
      await createStandInKey(admin, GCP_KEY_NAME);
    } finally {
      await admin.close();
    }

    const material = { key: await readFile(tls.keyFile), cert: await readFile(tls.certFile), ca: await readFile(tls.caFile) };
    const origin = (port: number): string => `https://${urlHost(publicHost)}:${port}`;
    opened.push(await startHttpsProxy({ host, port: ports.azureToken, target: tokens.port, tls: material, fallbackOrigin: origin(ports.azureToken) }));
    opened.push(await startHttpsProxy({ host, port: ports.azureVault, target: vault.port, tls: material, fallbackOrigin: origin(ports.azureVault) }));
    opened.push(await startTcpRelay(host, ports.gcp, gcp.port));

    const info: StandinsInfo = {
      azure: {
        vaultUrl: origin(ports.azureVault),
        authorityHost: origin(ports.azureToken),
        tenantId: AZURE_TENANT_ID,
        clientId: AZURE_CLIENT_ID,
        keyName: AZURE_KEY_NAME,
        keyVersion,
      },
      gcp: { endpoint: `${urlHost(publicHost)}:${ports.gcp}`, keyName: GCP_KEY_NAME },
      tls: { caFile: tls.caFile, names: tlsNames },
      listen: { host, ...ports },
    };
    return { info, close: closeAll };
  } catch (err) {
    await closeAll();
    throw err;
  }
}
