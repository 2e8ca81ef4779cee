import { ConnectionException, DeadlockException, LockWaitTimeoutException } from '@mikro-orm/core';

/** SQLSTATE codes meaning "try again": the same request may well succeed. */
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

/**
 * 08P01 protocol_violation is the one connection-class code a request can cause: PostgreSQL
 * answers it to a string holding U+0000, and the same request fails the same way every time.
 */
const PROTOCOL_VIOLATION = '08P01';

/**
 * The system calls of a database connection's socket. An error raised by one of them (whatever
 * its errno: ENOENT for a Unix socket whose server is gone, ECONNREFUSED, ETIMEDOUT, EAI_AGAIN,
 * ECONNRESET, EPIPE, ...) means the database could not be reached or the connection was lost.
 */
const SOCKET_SYSCALLS = new Set(['connect', 'getaddrinfo', 'read', 'write']);

const TRANSIENT_MESSAGES = [
  // node-postgres, when the server closes a connection or the connection attempt times out.
  'Connection terminated',
  'Client has encountered a connection error',
  'terminating connection',
  'Connection lost',
  // node-postgres's pool, when no connection became free within its connection timeout.
  'timeout exceeded when trying to connect',
];

/**
 * Whether an error says the database was unreachable or refused work for a passing reason
 * (no connection could be made or acquired, lost connection, shutdown, deadlock,
 * serialization failure, timeout).
 */
export function isTransientDatabaseError(error: unknown): boolean {
  for (let current = error, depth = 0; current && depth < 5; depth++) {
    if (current instanceof DeadlockException || current instanceof LockWaitTimeoutException) return true;
    if (typeof current !== 'object') return false;
    const { code, message, cause, syscall } = current as Record<string, unknown>;
    if (typeof code === 'string' && code === PROTOCOL_VIOLATION) return false;
    if (current instanceof ConnectionException) return true;
    if (typeof syscall === 'string' && SOCKET_SYSCALLS.has(syscall)) return true;
    if (typeof code === 'string' && (TRANSIENT_SQLSTATES.has(code) || code.startsWith('08'))) return true;
    if (typeof message === 'string' && TRANSIENT_MESSAGES.some((text) => message.includes(text))) return true;
    current = cause;
  }
  return false;
}
