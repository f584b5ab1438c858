/** Structured JSON logs (pino): one line per event, greppable by field. */
import { pino, type Logger } from 'pino';

export type { Logger };

export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** Where a secret could sit in a logged object: redacted when auth is on (`redact`). */
const SECRET_PATHS = ['authorization', 'password', 'token', '*.authorization', '*.password', '*.token', '*.headers.authorization', 'req.headers.cookie'];

export function createLogger(level: LogLevel, destination: NodeJS.WritableStream | number = 1, redact = false): Logger {
  return pino(
    { level, base: { service: 'berth' }, timestamp: pino.stdTimeFunctions.isoTime, ...(redact ? { redact: { paths: SECRET_PATHS, censor: '[redacted]' } } : {}) },
    typeof destination === 'number' ? pino.destination({ dest: destination, sync: false }) : destination,
  );
}
