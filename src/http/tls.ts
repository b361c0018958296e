/**
 * TLS on the API port: the certificate and key from files, and optionally a CA bundle
 * that client certificates must chain to (mTLS). The files are watched (their directories,
 * so a Kubernetes Secret's symlink swap is seen) and polled; a change is loaded into the
 * running server for new connections, without a restart. A change that does not load (a
 * key that does not match its certificate, a half-written file) keeps the current
 * certificate and is logged.
 */
import { X509Certificate, createHash } from 'node:crypto';
import { watch, type FSWatcher } from 'node:fs';
import { readFile } from 'node:fs/promises';
import type { Server } from 'node:https';
import { dirname } from 'node:path';
import { createSecureContext, type SecureContextOptions } from 'node:tls';
import type { Logger } from 'pino';
import type { TlsFiles } from '../config/env.js';

export interface TlsServerOptions extends SecureContextOptions {
  readonly requestCert: boolean;
  readonly rejectUnauthorized: boolean;
}

/** Reads the files into server options; throws (naming the file, never its contents) when one cannot be read or they do not fit. */
export async function readTlsOptions(files: TlsFiles): Promise<TlsServerOptions> {
  const read = async (path: string, what: string): Promise<Buffer> => {
    try {
      return await readFile(path);
    } catch (err) {
      throw new Error(`cannot read the TLS ${what} ${path} (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
    }
  };
  // One after the other, so that the first missing file is the one reported, every time.
  const cert = await read(files.certFile, 'certificate (KEYWARD_TLS_CERT)');
  const key = await read(files.keyFile, 'key (KEYWARD_TLS_KEY)');
  const ca = files.clientCaFile === undefined ? undefined : await read(files.clientCaFile, 'client CA bundle (KEYWARD_TLS_CLIENT_CA)');
  const options: TlsServerOptions = { cert, key, ...(ca ? { ca } : {}), requestCert: ca !== undefined, rejectUnauthorized: ca !== undefined };
  try {
    createSecureContext(options);
  } catch (err) {
    throw new Error(`the TLS certificate and key do not load together: ${(err as Error).message}`);
  }
  return options;
}

function describe(cert: Buffer | string | Array<string | Buffer> | undefined): Record<string, string> {
  try {
    const x509 = new X509Certificate(Array.isArray(cert) ? cert[0]! : cert!);
    return { subject: x509.subject.replace(/\n/g, ', '), notAfter: x509.validTo, fingerprint256: x509.fingerprint256 };
  } catch {
    return {};
  }
}

/** Watches the files and reloads them into `server`; returns a function that stops watching. */
export function watchTls(server: Server, files: TlsFiles, logger: Logger, pollMs: number): () => void {
  const paths = [files.certFile, files.keyFile, ...(files.clientCaFile ? [files.clientCaFile] : [])];
  let last = '';
  let running: Promise<void> | undefined;
  let again = false;

  const digest = async (): Promise<string> => {
    const hash = createHash('sha256');
    for (const path of paths) hash.update(await readFile(path).catch(() => Buffer.from('missing'))).update('\0');
    return hash.digest('hex');
  };
  const reload = async (): Promise<void> => {
    const now = await digest();
    if (now === last) return;
    try {
      const options = await readTlsOptions(files);
      server.setSecureContext(options);
      last = now;
      logger.info({ ...describe(options.cert), clientCertificates: options.requestCert ? 'required' : 'off' }, 'TLS certificate reloaded');
    } catch (err) {
      // Remember it, so a broken file is reported once, not at every poll.
      last = now;
      logger.error({ reason: (err as Error).message }, 'TLS certificate reload failed; keeping the current certificate');
    }
  };
  const trigger = (): void => {
    if (running) {
      again = true;
      return;
    }
    running = reload().finally(() => {
      running = undefined;
      if (again) {
        again = false;
        trigger();
      }
    });
  };

  void digest().then((d) => {
    last = d;
  });
  const watchers: FSWatcher[] = [];
  let debounce: NodeJS.Timeout | undefined;
  for (const dir of new Set(paths.map((p) => dirname(p)))) {
    try {
      const watcher = watch(dir, { persistent: false }, () => {
        clearTimeout(debounce);
        debounce = setTimeout(trigger, 200);
        debounce.unref();
      });
      watcher.on('error', () => undefined);
      watchers.push(watcher);
    } catch (err) {
      logger.warn({ dir, err }, 'cannot watch the TLS files; relying on polling');
    }
  }
  const poll = setInterval(trigger, pollMs);
  poll.unref();
  return () => {
    clearInterval(poll);
    clearTimeout(debounce);
    for (const watcher of watchers) watcher.close();
  };
}

export { describe as describeCertificate };
