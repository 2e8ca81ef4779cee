import pino, { type Logger } from 'pino';
import type { LogLevel } from '../config';

/** The process logger. Credentials and stored payloads are redacted wherever they appear. */
export function createLogger(level: LogLevel): Logger {
  return pino({
    level,
    redact: {
      paths: ['req.headers.authorization', 'headers.authorization', 'authorization', 'token', '*.token', 'outcome', '*.outcome'],
      censor: '[redacted]',
    },
  });
}
