/** A bounded least-recently-used map whose entries also expire: finished records never change before they expire. */
export class ExpiringLruCache<V extends { readonly expiresAt: Date }> {
  private readonly entries = new Map<string, V>();

  constructor(private readonly maxEntries: number) {}

  get(key: string, now = Date.now()): V | undefined {
    const value = this.entries.get(key);
    if (value === undefined) return undefined;
    this.entries.delete(key);
    if (value.expiresAt.getTime() <= now) return undefined;
    this.entries.set(key, value);
    return value;
  }

  set(key: string, value: V): void {
    if (this.maxEntries <= 0) return;
    this.entries.delete(key);
    this.entries.set(key, value);
    // A Map iterates in insertion order, so its first key is the least recently used.
    if (this.entries.size > this.maxEntries) this.entries.delete(this.entries.keys().next().value as string);
  }

  get size(): number {
    return this.entries.size;
  }
}

/**
 * A copy of `bytes` in memory of its own. Small buffers (a stored result, a fingerprint) are often
 * slices of Node's shared 8 KB allocation pool, and a cached slice keeps its whole slab alive.
 */
export function unpooled(bytes: Buffer): Buffer {
  const own = Buffer.allocUnsafeSlow(bytes.length);
  bytes.copy(own);
  return own;
}
