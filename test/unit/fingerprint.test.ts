import { createHash } from 'node:crypto';
import fc from 'fast-check';
import { fingerprint } from '../../src/idempotency/fingerprint';

/** A coerced GraphQL argument value: what a resolver receives. */
type Value = null | boolean | number | string | Value[] | { [name: string]: Value };
type Args = Record<string, Value>;
type Leaf = boolean | number | string;

const fieldName = fc.stringMatching(/^[A-Za-z][A-Za-z0-9_]{0,11}$/);
const number = fc.oneof(
  fc.integer({ min: -2_147_483_648, max: 2_147_483_647 }),
  fc.double({ noNaN: true, noDefaultInfinity: true }).filter((value) => !Object.is(value, -0)),
);
const leaf: fc.Arbitrary<Leaf> = fc.oneof(number, fc.string({ unit: 'binary', maxLength: 12 }), fc.boolean());

const { value } = fc.letrec<{ value: Value; object: { [name: string]: Value } }>((tie) => ({
  value: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    leaf,
    fc.constant(null),
    fc.array(tie('value'), { maxLength: 4 }),
    tie('object'),
  ),
  object: fc.dictionary(fieldName, tie('value'), { maxKeys: 5, noNullPrototype: true }),
}));
const args: fc.Arbitrary<Args> = fc.dictionary(fieldName, value, { minKeys: 1, maxKeys: 4, noNullPrototype: true });
const operation = fc.stringMatching(/^[a-z][A-Za-z0-9]{0,20}$/);

/** A small seeded generator, so a permutation is reproducible from the seed fast-check shrinks. */
function random(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

function shuffled<T>(items: readonly T[], next: () => number): T[] {
  const result = [...items];
  for (let index = result.length - 1; index > 0; index -= 1) {
    const other = Math.floor(next() * (index + 1));
    [result[index], result[other]] = [result[other]!, result[index]!];
  }
  return result;
}

/** A deep copy whose objects list their properties in another order, at every depth. */
function withKeysPermuted(input: Value, next: () => number): Value {
  if (Array.isArray(input)) return input.map((item) => withKeysPermuted(item, next));
  if (input !== null && typeof input === 'object') {
    const result: { [name: string]: Value } = {};
    for (const name of shuffled(Object.keys(input), next)) result[name] = withKeysPermuted(input[name]!, next);
    return result;
  }
  return input;
}

/** A deep copy with `null` properties added to objects at every depth (optional fields given as null). */
function withNullsAdded(input: Value, extra: readonly string[]): Value {
  if (Array.isArray(input)) return input.map((item) => withNullsAdded(item, extra));
  if (input !== null && typeof input === 'object') {
    const result: { [name: string]: Value } = {};
    for (const [name, item] of Object.entries(input)) result[name] = withNullsAdded(item, extra);
    for (const name of extra) if (!(name in result)) result[name] = null;
    return result;
  }
  return input;
}

/** JSON text that is equal for values the fingerprint must treat as equal (key order, null properties). */
function normalised(input: Value): string {
  const strip = (item: Value): Value => {
    if (Array.isArray(item)) return item.map(strip);
    if (item !== null && typeof item === 'object') {
      const result: { [name: string]: Value } = {};
      for (const name of Object.keys(item).sort()) if (item[name] !== null) result[name] = strip(item[name]!);
      return result;
    }
    return item;
  };
  return JSON.stringify(strip(input));
}

type Path = (string | number)[];

function leafPaths(input: Value, path: Path = []): Path[] {
  if (Array.isArray(input)) return input.flatMap((item, index) => leafPaths(item, [...path, index]));
  if (input !== null && typeof input === 'object') return Object.entries(input).flatMap(([name, item]) => leafPaths(item, [...path, name]));
  return input === null ? [] : [path];
}

function replaceAt(input: Value, path: Path, replacement: (old: Value) => Value): Value {
  if (path.length === 0) return replacement(input);
  const [head, ...rest] = path;
  if (Array.isArray(input)) return input.map((item, index) => (index === head ? replaceAt(item, rest, replacement) : item));
  const object = input as { [name: string]: Value };
  return { ...object, [head as string]: replaceAt(object[head as string]!, rest, replacement) };
}

/** Another value of the same type as a leaf. */
function changed(old: Value, salt: number): Value {
  switch (typeof old) {
    case 'boolean':
      return !old;
    case 'number':
      return old === salt ? salt + 1 : salt;
    case 'string':
      return `${old}${String.fromCharCode(97 + (salt % 26))}`;
    default:
      throw new Error(`not a leaf: ${JSON.stringify(old)}`);
  }
}

const argsWithLeaf = args.filter((candidate) => leafPaths(candidate).length > 0);

describe('fingerprint', () => {
  it('is the SHA-256 of the RFC 8785 canonical JSON of the operation and arguments', () => {
    const canonical = '{"arguments":{"input":{"lines":[{"productId":"p-1","quantity":2}],"note":"é"}},"operation":"createOrder"}';
    const print = fingerprint('createOrder', { input: { note: 'é', lines: [{ quantity: 2, productId: 'p-1' }] } });
    expect(print.equals(createHash('sha256').update(canonical, 'utf8').digest())).toBe(true);
  });

  it('is 32 bytes for any operation and arguments', () => {
    fc.assert(
      fc.property(operation, args, (name, input) => {
        const print = fingerprint(name, input);
        expect(Buffer.isBuffer(print)).toBe(true);
        expect(print).toHaveLength(32);
      }),
    );
  });

  it('is deterministic', () => {
    fc.assert(
      fc.property(operation, args, (name, input) => {
        const copy = structuredClone(input);
        expect(fingerprint(name, input).equals(fingerprint(name, input))).toBe(true);
        expect(fingerprint(name, input).equals(fingerprint(name, copy))).toBe(true);
      }),
    );
  });

  it('does not depend on the order of object keys at any depth', () => {
    fc.assert(
      fc.property(operation, args, fc.integer(), (name, input, seed) => {
        const permuted = withKeysPermuted(input, random(seed)) as Args;
        expect(fingerprint(name, permuted).equals(fingerprint(name, input))).toBe(true);
      }),
    );
  });

  it('treats an optional field given as null like an absent one, at any depth', () => {
    fc.assert(
      fc.property(operation, args, fc.uniqueArray(fieldName, { minLength: 1, maxLength: 3 }), (name, input, extra) => {
        const padded = withNullsAdded(input, extra) as Args;
        expect(fingerprint(name, padded).equals(fingerprint(name, input))).toBe(true);
      }),
    );
  });

  it('treats an optional argument given as undefined like an absent one', () => {
    expect(fingerprint('cancelOrder', { input: { orderId: 'o-1', reason: undefined } })).toEqual(
      fingerprint('cancelOrder', { input: { orderId: 'o-1' } }),
    );
  });

  it('changes when any leaf value changes, at any depth', () => {
    fc.assert(
      fc.property(operation, argsWithLeaf, fc.nat(), fc.integer({ min: -1000, max: 1000 }), (name, input, pick, salt) => {
        const paths = leafPaths(input);
        const path = paths[pick % paths.length]!;
        const mutated = replaceAt(input, path, (old) => changed(old, salt)) as Args;
        expect(fingerprint(name, mutated).equals(fingerprint(name, input))).toBe(false);
      }),
    );
  });

  it('changes when a leaf keeps its text but changes its type', () => {
    const base = fingerprint('createOrder', { input: { quantity: 1 } });
    expect(fingerprint('createOrder', { input: { quantity: '1' } }).equals(base)).toBe(false);
    expect(fingerprint('createOrder', { input: { flag: true } }).equals(fingerprint('createOrder', { input: { flag: 'true' } }))).toBe(
      false,
    );
  });

  it('changes when a leaf is given a value instead of null', () => {
    fc.assert(
      fc.property(operation, args, fieldName, leaf, (name, input, field, filled) => {
        fc.pre(!(field in input));
        const withNull = { ...input, [field]: null };
        const withValue = { ...input, [field]: filled };
        expect(fingerprint(name, withValue).equals(fingerprint(name, withNull))).toBe(false);
      }),
    );
  });

  it('changes when the elements of an array are reordered', () => {
    const distinctItems = fc.uniqueArray(value, { minLength: 2, maxLength: 6, selector: normalised });
    fc.assert(
      fc.property(operation, distinctItems, fc.integer(), (name, items, seed) => {
        const reordered = shuffled(items, random(seed));
        fc.pre(JSON.stringify(reordered) !== JSON.stringify(items));
        const print = (list: Value[]) => fingerprint(name, { input: { lines: list } });
        expect(print(reordered).equals(print(items))).toBe(false);
      }),
    );
  });

  it('changes when the operation changes', () => {
    fc.assert(
      fc.property(operation, operation, args, (first, second, input) => {
        fc.pre(first !== second);
        expect(fingerprint(first, input).equals(fingerprint(second, input))).toBe(false);
      }),
    );
  });

  it('does not let the operation name and the arguments run into each other', () => {
    expect(fingerprint('createOrder', { a: 1 }).equals(fingerprint('createOrde', { ra: 1 }))).toBe(false);
  });
});

describe('fingerprint and encryption keys', () => {
  it('is the plain SHA-256 of the canonical JSON, which no key enters', () => {
    const args = { input: { lines: [{ productId: 'a', quantity: 1 }] } };
    const canonical = '{"arguments":{"input":{"lines":[{"productId":"a","quantity":1}]}},"operation":"createOrder"}';
    expect(fingerprint('createOrder', args).equals(createHash('sha256').update(canonical).digest())).toBe(true);
  });
});
