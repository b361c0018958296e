/**
 * Cleans a provider's own error text before it is logged: providers sometimes echo
 * request details, and a log line must never carry a credential or key material.
 * Conservative by design: it may hide harmless text, never the other way round.
 */
const PATTERNS: Array<[RegExp, string]> = [
  [/\b(?:AKIA|ASIA|AIDA|AROA)[A-Z0-9]{16}\b/g, '[aws-key-id]'],
  [/\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*/g, '[jwt]'],
  [/\b(bearer|basic|cmk)\s+[A-Za-z0-9._~+/=-]{8,}/gi, '$1 [token]'],
  [/\b([A-Za-z_-]*(?:secret|password|passwd|token|pin|signature|credential|private_?key)[A-Za-z_-]*)(["']?\s*[:=]\s*["']?)[^\s"',;&]+/gi, '$1$2[redacted]'],
  [/-----BEGIN [A-Z ]+-----[\s\S]*?(?:-----END [A-Z ]+-----|$)/g, '[pem]'],
  [/[A-Za-z0-9+/]{40,}={0,2}/g, '[long-token]'],
];

export const MAX_LOGGED_MESSAGE = 500;

export function redactSecrets(text: string): string {
  let out = text;
  for (const [pattern, replacement] of PATTERNS) out = out.replace(pattern, replacement);
  return out.length > MAX_LOGGED_MESSAGE ? `${out.slice(0, MAX_LOGGED_MESSAGE)}…` : out;
}

/** The provider's own message behind a KmsError (its `cause`), redacted; undefined if none. */
export function providerMessage(err: unknown): string | undefined {
  const cause = err instanceof Error ? err.cause : undefined;
  if (cause instanceof Error && cause.message) return redactSecrets(cause.message);
  if (typeof cause === 'string') return redactSecrets(cause);
  return undefined;
}
