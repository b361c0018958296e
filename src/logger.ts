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

type LogMethod = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace';

/**
 * A request's logger that makes its pino child (with the request id) only when something is logged at an enabled
 * level. Fastify asks for one child per request, and making it costs more than most of a request's own work, while
 * at the default level almost no request logs anything. Logged lines are those of the real child, unchanged.
 */
export class LazyChildLogger {
  #child: Logger | undefined;
  readonly #threshold: number | undefined;

  constructor(
    private readonly parent: Logger,
    private readonly bindings: Record<string, unknown>,
    private readonly options: { level?: string },
  ) {
    this.#threshold = options.level === undefined ? undefined : parent.levels.values[options.level];
  }

  get level(): string {
    return this.#child?.level ?? this.options.level ?? this.parent.level;
  }

  set level(level: string) {
    this.#real().level = level;
  }

  isLevelEnabled(level: string): boolean {
    if (this.#child) return this.#child.isLevelEnabled(level);
    if (this.#threshold === undefined) return this.parent.isLevelEnabled(level);
    const value = this.parent.levels.values[level];
    return value !== undefined && value >= this.#threshold;
  }

  fatal(...args: unknown[]): void {
    this.#log('fatal', args);
  }
  error(...args: unknown[]): void {
    this.#log('error', args);
  }
  warn(...args: unknown[]): void {
    this.#log('warn', args);
  }
  info(...args: unknown[]): void {
    this.#log('info', args);
  }
  debug(...args: unknown[]): void {
    this.#log('debug', args);
  }
  trace(...args: unknown[]): void {
    this.#log('trace', args);
  }
  silent(): void {}

  child(bindings: Record<string, unknown>, options?: { level?: string }): Logger {
    return this.#real().child(bindings, options);
  }

  #log(level: LogMethod, args: unknown[]): void {
    if (!this.isLevelEnabled(level)) return;
    const child = this.#real();
    Reflect.apply(child[level], child, args);
  }

  #real(): Logger {
    this.#child ??= this.parent.child(this.bindings, this.options);
    return this.#child;
  }
}
