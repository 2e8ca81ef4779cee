import type { FastifyRequest } from 'fastify';

/** SQL statements start with one of these; the ORM puts them, values inlined, in error messages. */
const SQL = /^\s*(select|insert|update|delete|with|begin|commit|rollback)\b/i;

interface SafeError {
  type: string;
  message: string;
  code?: unknown;
  sqlState?: unknown;
  stack?: string;
  cause?: SafeError;
}

/**
 * Errors as logged: the ORM's messages embed the failed statement with its values (a stored
 * payload, an order note), so only the database's own message is kept, and stacks keep only
 * their frames, since their first lines repeat the message.
 */
export function safeError(error: unknown, depth = 0): SafeError | unknown {
  if (!(error instanceof Error)) return error;
  const { code, sqlState } = error as Error & { code?: unknown; sqlState?: unknown };
  const message = redactSql(error.message);
  // Only the frames: the message part of a stack can span lines (a multi-line statement).
  const stack = error.stack
    ?.split('\n')
    .filter((line) => line.startsWith('    at '))
    .join('\n');
  const safe: SafeError = { type: error.name, message, code, sqlState, stack };
  if (error.cause !== undefined && depth < 3) safe.cause = safeError(error.cause, depth + 1) as SafeError;
  return safe;
}

function redactSql(message: string): string {
  if (!SQL.test(message)) return message;
  // "<statement> - <database message>": the statement goes, the database's reason stays.
  const separator = message.lastIndexOf(' - ');
  return separator >= 0 ? `[statement omitted] - ${message.slice(separator + 3)}` : '[statement omitted]';
}

/** Requests as logged: no query string, which can carry GraphQL variables on GET. */
export function safeRequest(request: FastifyRequest): Record<string, unknown> {
  return {
    method: request.method,
    url: request.url.split('?')[0],
    host: request.host,
    remoteAddress: request.ip,
  };
}

/** A connection URL as logged: its password replaced, so logs never carry the credential. */
export function withoutPassword(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password === '') return url;
    parsed.password = 'redacted';
    return parsed.toString();
  } catch {
    return '[unparseable URL]';
  }
}
