import { readFile } from 'node:fs/promises';
import type { SecretRef } from './schema.js';

/** A referenced secret is missing or unreadable; the message names the reference only. */
export class SecretError extends Error {
  override readonly name = 'SecretError';
}

/**
 * Reads a referenced secret. Environment is passed in (only main.ts reads `process`).
 * Secrets are credentials (PINs, tokens), never key material; a trailing newline in a
 * file is dropped because Kubernetes Secrets and `echo` both add one.
 */
export async function readSecret(ref: SecretRef, env: Readonly<Record<string, string | undefined>>): Promise<string> {
  if ('env' in ref) {
    const value = env[ref.env];
    if (value === undefined || value === '') {
      throw new SecretError(`secret environment variable ${ref.env} is not set`);
    }
    return value;
  }
  let text: string;
  try {
    text = await readFile(ref.file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'error';
    throw new SecretError(`secret file ${ref.file} cannot be read (${code})`);
  }
  const value = text.replace(/\r?\n$/, '');
  if (value === '') throw new SecretError(`secret file ${ref.file} is empty`);
  return value;
}

export function describeSecretRef(ref: SecretRef): string {
  return 'env' in ref ? `env:${ref.env}` : `file:${ref.file}`;
}
