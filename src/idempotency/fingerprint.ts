import { createHash, createHmac } from 'node:crypto';
import canonicalize from 'canonicalize';

/**
 * SHA-256 of the RFC 8785 canonical JSON of `{ operation, arguments }`. `args` are the coerced
 * field arguments without the key; object properties whose value is null are dropped first, so
 * an optional input field that is absent and one that is null give the same fingerprint.
 *
 * With a `secret` the hash is an HMAC-SHA-256: inputs with little variety (a known product id,
 * a quantity) could otherwise be recovered from a stored fingerprint by trying them all.
 */
export function fingerprint(operation: string, args: Readonly<Record<string, unknown>>, secret?: Buffer): Buffer {
  const canonical = canonicalize({ operation, arguments: withoutNulls(args) });
  if (canonical === undefined) throw new TypeError('arguments cannot be represented as JSON');
  return (secret ? createHmac('sha256', secret) : createHash('sha256')).update(canonical).digest();
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
