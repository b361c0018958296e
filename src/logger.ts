/**
 * pino, with secrets redacted by configuration rather than by care: the Authorization
 * header, every DEK, PIN and key field, wherever it sits in a logged object.
 */
import { pino, type DestinationStream, type Logger } from 'pino';

export const REDACTED_PATHS = [
  'req.headers.authorization',
  'req.headers["x-api-key"]',
  'headers.authorization',
  'authorization',
  'dek',
  '*.dek',
  '*.*.dek',
  'keys.*.dek',
  'body.keys.*.dek',
  'pin',
  '*.pin',
  'apiKey',
  '*.apiKey',
  'key',
  '*.key',
  'plaintext',
  '*.plaintext',
];

export function createLogger(options: { level: string; destination?: DestinationStream; name?: string }): Logger {
  return pino(
    {
      name: options.name ?? 'keyward',
      level: options.level,
      redact: { paths: REDACTED_PATHS, censor: '[REDACTED]' },
      base: { service: 'keyward' },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    options.destination,
  );
}
