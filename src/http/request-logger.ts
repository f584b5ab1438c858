/**
 * The per-request logger Fastify hands to `req.log` and `reply.log`. Fastify
 * makes one for every request (`logger.child({ reqId })`), which in pino
 * serializes the bindings and builds a logger object: about 2 % of the
 * server's CPU on a `HEAD` blob or `GET` manifest, for a logger that a
 * request served without incident never writes to (the request log, when
 * on, writes through it; errors and warnings do). This one stands in for
 * the child and makes the real child only when a line is written.
 */
import type { FastifyBaseLogger } from 'fastify';
import type { Bindings, ChildLoggerOptions } from 'pino';

type Level = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';

class LazyChildLogger {
  private real: FastifyBaseLogger | undefined;

  constructor(
    private readonly parent: FastifyBaseLogger,
    private readonly bindings: Bindings,
    private readonly options: ChildLoggerOptions | undefined,
  ) {}

  private get logger(): FastifyBaseLogger {
    return (this.real ??= this.parent.child(this.bindings, this.options));
  }

  get level(): string {
    return this.real?.level ?? this.options?.level ?? this.parent.level;
  }

  set level(level: string) {
    this.logger.level = level;
  }

  /** Without making the child: levels are inherited unless the options set one. */
  isLevelEnabled(level: string): boolean {
    if (this.real || this.options?.level !== undefined) return (this.logger as unknown as { isLevelEnabled(l: string): boolean }).isLevelEnabled(level);
    return (this.parent as unknown as { isLevelEnabled(l: string): boolean }).isLevelEnabled(level);
  }

  child(bindings: Bindings, options?: ChildLoggerOptions): FastifyBaseLogger {
    return this.logger.child(bindings, options);
  }

  fatal(...args: unknown[]): void {
    this.write('fatal', args);
  }
  error(...args: unknown[]): void {
    this.write('error', args);
  }
  warn(...args: unknown[]): void {
    this.write('warn', args);
  }
  info(...args: unknown[]): void {
    this.write('info', args);
  }
  debug(...args: unknown[]): void {
    this.write('debug', args);
  }
  trace(...args: unknown[]): void {
    this.write('trace', args);
  }
  silent(): void {}

  private write(level: Exclude<Level, 'silent'>, args: unknown[]): void {
    // A line below the level is dropped without making the child.
    if (!this.isLevelEnabled(level)) return;
    (this.logger[level] as (...a: unknown[]) => void)(...args);
  }
}

/** Fastify's `childLoggerFactory`: a request logger that costs nothing until it writes. */
export function lazyRequestLogger(parent: FastifyBaseLogger, bindings: Bindings, options?: ChildLoggerOptions): FastifyBaseLogger {
  return new LazyChildLogger(parent, bindings, options) as unknown as FastifyBaseLogger;
}
