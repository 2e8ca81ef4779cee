import pino, { type DestinationStream, type Logger } from 'pino';
import type { LogLevel } from '../config';

/**
 * The process logger, writing JSON lines to `destination` (default stdout). Credentials and
 * stored payloads are redacted wherever they appear.
 */
export function createLogger(level: LogLevel, destination?: DestinationStream): Logger {
  const options = {
    level,
    redact: {
      paths: ['req.headers.authorization', 'headers.authorization', 'authorization', 'token', '*.token', 'outcome', '*.outcome'],
      censor: '[redacted]',
    },
  };
  return destination ? pino(options, destination) : pino(options);
}
