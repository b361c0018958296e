/**
 * API-key check for the API port. Accepts `Authorization: Bearer <key>` and the
 * tenant-security clients' `Authorization: cmk <key>`. Both sides are hashed first so
 * the comparison is constant-time whatever the lengths, and every accepted key is
 * compared (no early exit), so timing tells nothing about which key nearly matched.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { Errors, KeywardError } from '../errors.js';

const SCHEME = /^(?:bearer|cmk)[ \t]+([^ \t]+)[ \t]*$/i;

export function apiKeyMatches(header: string | undefined, digests: readonly Buffer[]): boolean {
  const match = header === undefined ? null : SCHEME.exec(header);
  const presented = createHash('sha256').update(match?.[1] ?? '', 'utf8').digest();
  let ok = false;
  for (const digest of digests) ok = timingSafeEqual(presented, digest) || ok;
  return ok && match !== null;
}

export function apiKeyHook(digests: readonly Buffer[]) {
  return (request: FastifyRequest, _reply: FastifyReply, done: (err?: Error) => void): void => {
    if (apiKeyMatches(request.headers.authorization, digests)) return done();
    done(
      new KeywardError(
        Errors.UNAUTHORIZED_REQUEST,
        request.headers.authorization === undefined
          ? 'missing Authorization header; send "Authorization: Bearer <api key>"'
          : 'the API key is not valid',
      ),
    );
  };
}
