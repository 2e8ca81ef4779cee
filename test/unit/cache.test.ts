import fc from 'fast-check';
import { ExpiringLruCache, unpooled } from '../../src/idempotency/cache';

interface Entry {
  readonly id: string;
  readonly expiresAt: Date;
}

const NOW = Date.parse('2030-01-01T00:00:00Z');
const LATER = new Date(NOW + 60_000);

function entry(id: string, expiresAt = LATER): Entry {
  return { id, expiresAt };
}

describe('ExpiringLruCache', () => {
  it('returns what was stored under a key, and nothing for other keys', () => {
    const cache = new ExpiringLruCache<Entry>(10);
    const stored = entry('a');
    cache.set('a', stored);
    expect(cache.get('a', NOW)).toBe(stored);
    expect(cache.get('b', NOW)).toBeUndefined();
  });

  it('evicts the least recently stored entry when it grows past its bound', () => {
    const cache = new ExpiringLruCache<Entry>(3);
    for (const id of ['a', 'b', 'c', 'd']) cache.set(id, entry(id));
    expect(cache.size).toBe(3);
    expect(cache.get('a', NOW)).toBeUndefined();
    expect(['b', 'c', 'd'].map((id) => cache.get(id, NOW)?.id)).toEqual(['b', 'c', 'd']);
  });

  it('keeps an entry that was read recently and evicts the least recently used one instead', () => {
    const cache = new ExpiringLruCache<Entry>(3);
    for (const id of ['a', 'b', 'c']) cache.set(id, entry(id));
    expect(cache.get('a', NOW)?.id).toBe('a');
    cache.set('d', entry('d'));
    expect(cache.get('b', NOW)).toBeUndefined();
    expect(cache.get('a', NOW)?.id).toBe('a');
    expect(cache.get('c', NOW)?.id).toBe('c');
    expect(cache.get('d', NOW)?.id).toBe('d');
  });

  it('refreshes an entry stored again without growing', () => {
    const cache = new ExpiringLruCache<Entry>(2);
    cache.set('a', entry('a'));
    cache.set('b', entry('b'));
    const replacement = entry('a2');
    cache.set('a', replacement);
    expect(cache.size).toBe(2);
    cache.set('c', entry('c'));
    expect(cache.get('b', NOW)).toBeUndefined();
    expect(cache.get('a', NOW)).toBe(replacement);
  });

  it('does not return an entry at or after its expiry, and forgets it', () => {
    const cache = new ExpiringLruCache<Entry>(10);
    const expiresAt = new Date(NOW + 1000);
    cache.set('a', entry('a', expiresAt));
    expect(cache.get('a', NOW + 999)?.id).toBe('a');
    expect(cache.get('a', NOW + 1000)).toBeUndefined();
    expect(cache.size).toBe(0);
    expect(cache.get('a', NOW)).toBeUndefined();
  });

  it('does not return an entry that had already expired when it was stored', () => {
    const cache = new ExpiringLruCache<Entry>(10);
    cache.set('a', entry('a', new Date(Date.now() - 1)));
    expect(cache.get('a')).toBeUndefined();
  });

  it('uses the current time by default', () => {
    const cache = new ExpiringLruCache<Entry>(10);
    cache.set('live', entry('live', new Date(Date.now() + 60_000)));
    cache.set('gone', entry('gone', new Date(Date.now() - 60_000)));
    expect(cache.get('live')?.id).toBe('live');
    expect(cache.get('gone')).toBeUndefined();
  });

  it('stores nothing when its bound is 0', () => {
    const cache = new ExpiringLruCache<Entry>(0);
    cache.set('a', entry('a'));
    expect(cache.size).toBe(0);
    expect(cache.get('a', NOW)).toBeUndefined();
  });

  it('behaves like a reference LRU model for any sequence of operations', () => {
    type Operation = { kind: 'set' | 'get'; key: string };
    // A key space a little larger than the bound makes evictions of recently read keys likely.
    const scenario = fc.integer({ min: 1, max: 4 }).chain((bound) => {
      const key = fc.constantFrom(...'abcdef'.slice(0, bound + 2));
      const operation: fc.Arbitrary<Operation> = fc.record({ kind: fc.constantFrom('set', 'get'), key });
      return fc.tuple(fc.constant(bound), fc.array(operation, { maxLength: 40, size: 'max' }));
    });
    fc.assert(
      fc.property(scenario, ([bound, operations]) => {
        const cache = new ExpiringLruCache<Entry>(bound);
        // Most recently used last.
        let model: string[] = [];
        const values = new Map<string, Entry>();
        operations.forEach((op, step) => {
          switch (op.kind) {
            case 'set': {
              const value = entry(`${op.key}${step}`);
              cache.set(op.key, value);
              values.set(op.key, value);
              model = [...model.filter((k) => k !== op.key), op.key].slice(-bound);
              break;
            }
            case 'get': {
              const expected = model.includes(op.key) ? values.get(op.key) : undefined;
              expect(cache.get(op.key, NOW)).toBe(expected);
              if (expected) model = [...model.filter((k) => k !== op.key), op.key];
              break;
            }
          }
          expect(cache.size).toBe(model.length);
          expect(cache.size).toBeLessThanOrEqual(bound);
        });
      }),
      { numRuns: 300 },
    );
  });
});

describe('unpooled', () => {
  it('copies a slice of the shared buffer pool into memory of its own, bytes unchanged', () => {
    const pooled = Buffer.from('{"kind":"payload"}');
    // The precondition: a small Buffer.from is a slice of a larger shared slab.
    expect(pooled.buffer.byteLength).toBeGreaterThan(pooled.length);
    const own = unpooled(pooled);
    expect(own.buffer.byteLength).toBe(own.length);
    expect(own.equals(pooled)).toBe(true);
    pooled[0] = 0;
    expect(own[0]).toBe('{'.charCodeAt(0));
  });
});
