import { createHash } from 'node:crypto';
import canonicalize from 'canonicalize';

/**
 * SHA-256 of the RFC 8785 canonical JSON of `{ operation, arguments }`. `args` are the coerced
 * field arguments without the key; properties whose value is null are dropped first, so an
 * absent optional input field and a null one give the same fingerprint. It never depends on
 * the encryption keys, so enabling or rotating a key keeps every retry's fingerprint.
 */
export function fingerprint(operation: string, args: Readonly<Record<string, unknown>>): Buffer {
  const canonical = canonicalize({ operation, arguments: withoutNulls(args) });
  if (canonical === undefined) throw new TypeError('arguments cannot be represented as JSON');
  return createHash('sha256').update(canonical).digest();
}

function withoutNulls(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(withoutNulls);
  if (value !== null && typeof value === 'object' && !(value instanceof Date)) {
    const result: Record<string, unknown> = {};
    for (const [name, item] of Object.entries(value)) {
      if (item !== null && item !== undefined) result[name] = withoutNulls(item);
    }
    return result;
  }
  return value;
}
