import { BadUserInputError } from './errors';

/** Encodes the values of a keyset position as an opaque cursor. */
export function encodeCursor(kind: string, values: readonly string[]): string {
  return Buffer.from(JSON.stringify([kind, ...values])).toString('base64url');
}

/** Decodes a cursor made by {@link encodeCursor} for `kind`, or throws BAD_USER_INPUT. */
export function decodeCursor(kind: string, cursor: string, arity: number): string[] {
  let decoded: unknown;
  try {
    decoded = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
  } catch {
    decoded = undefined;
  }
  if (
    !Array.isArray(decoded) ||
    decoded.length !== arity + 1 ||
    decoded[0] !== kind ||
    !decoded.every((value) => typeof value === 'string')
  ) {
    throw invalidCursor();
  }
  return decoded.slice(1) as string[];
}

/** The BAD_USER_INPUT answer to a cursor that this service did not make. */
export function invalidCursor(): BadUserInputError {
  return new BadUserInputError('Invalid cursor: pass an endCursor returned by the same field', { argument: 'after' });
}

/** An instant written by `Date.toISOString()` for years 1 to 9999 (within PostgreSQL's range), else undefined. */
export function cursorInstant(value: string): Date | undefined {
  if (!/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/.test(value)) return undefined;
  const at = new Date(value);
  return !Number.isNaN(at.getTime()) && at.toISOString() === value && at.getUTCFullYear() >= 1 ? at : undefined;
}

/** Whether `id` is a UUID in any case. */
export function isUuid(id: string): boolean {
  return UUID.test(id);
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** Throws BAD_USER_INPUT unless `id` is a UUID; returns it lower-cased. */
export function requireUuid(id: string, argument: string): string {
  if (!isUuid(id)) throw new BadUserInputError(`${argument} must be a UUID, got ${JSON.stringify(id.slice(0, 64))}`, { argument });
  return id.toLowerCase();
}
