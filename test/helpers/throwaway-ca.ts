/**
 * A CA made for one test (openssl), with a server certificate for 127.0.0.1/localhost.
 * Unlike the stand-ins' CA, nothing trusts it unless told to: tests of `caFile` settings
 * use it to prove the setting is what makes the connection verify.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface ThrowawayCa {
  readonly caFile: string;
  readonly key: Buffer;
  readonly cert: Buffer;
  /** Issues a client certificate (extendedKeyUsage clientAuth) with this common name. */
  client(commonName: string): Promise<{ key: Buffer; cert: Buffer }>;
  remove(): Promise<void>;
}

export async function makeThrowawayCa(): Promise<ThrowawayCa> {
  const dir = await mkdtemp(join(tmpdir(), 'keyward-ca-'));
  const f = (name: string): string => join(dir, name);
  await run('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-sha256', '-days', '2', '-keyout', f('ca.key'), '-out', f('ca.pem'), '-subj', '/CN=Keyward throwaway test CA', '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign']);
  await run('openssl', ['req', '-newkey', 'rsa:2048', '-nodes', '-sha256', '-keyout', f('server.key'), '-out', f('server.csr'), '-subj', '/CN=127.0.0.1']);
  await writeFile(f('server.ext'), 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n');
  await run('openssl', ['x509', '-req', '-in', f('server.csr'), '-CA', f('ca.pem'), '-CAkey', f('ca.key'), '-CAcreateserial', '-days', '2', '-sha256', '-extfile', f('server.ext'), '-out', f('server.pem')]);
  return {
    caFile: f('ca.pem'),
    key: await readFile(f('server.key')),
    cert: await readFile(f('server.pem')),
    async client(commonName: string) {
      const name = `client-${commonName.replace(/[^A-Za-z0-9-]/g, '_')}`;
      await run('openssl', ['req', '-newkey', 'rsa:2048', '-nodes', '-sha256', '-keyout', f(`${name}.key`), '-out', f(`${name}.csr`), '-subj', `/CN=${commonName}`]);
      await writeFile(f(`${name}.ext`), 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n');
      await run('openssl', ['x509', '-req', '-in', f(`${name}.csr`), '-CA', f('ca.pem'), '-CAkey', f('ca.key'), '-CAcreateserial', '-days', '2', '-sha256', '-extfile', f(`${name}.ext`), '-out', f(`${name}.pem`)]);
      return { key: await readFile(f(`${name}.key`)), cert: await readFile(f(`${name}.pem`)) };
    },
    remove: () => rm(dir, { recursive: true, force: true }),
  };
}
