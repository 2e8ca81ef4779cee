import { createHash } from 'node:crypto';
import canonicalize from 'canonicalize';

/**
 * SHA-256 of the RFC 8785 canonical JSON of `{ operation, arguments }` (the coerced field arguments
 * without the key). Null properties are dropped so that an absent optional input field and a null
 * one match. No encryption key enters it, so enabling or rotating one keeps every retry's fingerprint.
 */
export function fingerprint(operation: string, args: Readonly<Record<string, unknown>>): Buffer {
  const canonical = canonicalize({ operation, arguments: withoutNulls(args) });
  if (canonical === undefined) throw new TypeError('arguments cannot be represented as JSON');
  return createHash('sha256').update(canonical).digest();
}

function withoutNulls(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(withoutNulls);
  if (value === null || typeof value !== 'object' || value instanceof Date) return value;
  return Object.fromEntries(Object.entries(value).flatMap(([name, item]) => (item == null ? [] : [[name, withoutNulls(item)]])));
}
