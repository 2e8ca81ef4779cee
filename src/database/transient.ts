import { ConnectionException, DeadlockException, LockWaitTimeoutException } from '@mikro-orm/core';

/** SQLSTATE classes and codes meaning "try again": the same request may well succeed. */
const TRANSIENT_SQLSTATES = new Set([
  '40001', // serialization_failure
  '40P01', // deadlock_detected
  '55P03', // lock_not_available
  '57014', // query_canceled (statement_timeout)
  '57P01', // admin_shutdown
  '57P02', // crash_shutdown
  '57P03', // cannot_connect_now
  '53300', // too_many_connections
]);

const TRANSIENT_MESSAGES = [
  'Connection terminated',
  'connect ECONNREFUSED',
  'Knex: Timeout acquiring a connection',
  'ECONNRESET',
  'Client has encountered a connection error',
  'terminating connection',
  'Connection lost',
  // knex's wording when BEGIN failed on a lost connection and a statement followed it.
  'Transaction query already complete',
];

/**
 * Whether an error says the database was unreachable or refused work for a passing reason
 * (lost connection, shutdown, deadlock, serialization failure, timeout).
 */
export function isTransientDatabaseError(error: unknown): boolean {
  for (let current = error, depth = 0; current && depth < 5; depth++) {
    if (current instanceof ConnectionException || current instanceof DeadlockException || current instanceof LockWaitTimeoutException) {
      return true;
    }
    if (typeof current !== 'object') return false;
    const { code, message, cause } = current as { code?: unknown; message?: unknown; cause?: unknown };
    if (
      typeof code === 'string' &&
      (TRANSIENT_SQLSTATES.has(code) || code.startsWith('08') || code === 'ECONNREFUSED' || code === 'ECONNRESET')
    ) {
      return true;
    }
    if (typeof message === 'string' && TRANSIENT_MESSAGES.some((text) => message.includes(text))) return true;
    current = cause;
  }
  return false;
}
