import { randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { keyIdOf, RecordFormat, ResultCodec, type StoredResult } from '../../src/idempotency/codec';

const [KEY, OLD_KEY, OTHER_KEY] = [randomBytes(32), randomBytes(32), randomBytes(32)];
const BINDING = 'alice\u0000key-1\u0000'.concat('ab'.repeat(32));
const PAYLOAD: StoredResult = { kind: 'payload', payload: { order: { id: 'o-1', status: 'PLACED', note: 'gift wrap' } } };
const FAILURE: StoredResult = { kind: 'error', code: 'INSUFFICIENT_STOCK', message: 'Insufficient stock', details: { productIds: ['p'] } };

const storedResult: fc.Arbitrary<StoredResult> = fc.oneof(
  fc.record({ kind: fc.constant('payload' as const), payload: fc.jsonValue() }),
  fc.record({
    kind: fc.constant('error' as const),
    code: fc.string({ minLength: 1 }),
    message: fc.string(),
    details: fc.dictionary(fc.string(), fc.jsonValue(), { noNullPrototype: true }),
  }),
);

/** What JSON makes of a value (-0 becomes 0, and so on). */
const viaJson = (value: unknown) => JSON.parse(JSON.stringify(value));

describe('ResultCodec', () => {
  it('stores plain results as their JSON text, format 1, no key id', () => {
    const stored = new ResultCodec().encode(JSON.stringify(PAYLOAD), BINDING);
    expect(stored).toEqual({ format: RecordFormat.Json, keyId: null, result: Buffer.from(JSON.stringify(PAYLOAD)) });
  });

  it('round-trips any result, plain and encrypted', () => {
    const codecs = [new ResultCodec(), new ResultCodec(KEY)];
    fc.assert(
      fc.property(storedResult, (result) => {
        for (const codec of codecs) expect(codec.decode(codec.encode(JSON.stringify(result), BINDING), BINDING)).toEqual(viaJson(result));
      }),
    );
  });

  it('encrypts with AES-256-GCM under the current key: format 2, its key id, no plaintext, a fresh IV each time', () => {
    const codec = new ResultCodec(KEY);
    const [a, b] = [codec.encode(JSON.stringify(FAILURE), BINDING), codec.encode(JSON.stringify(FAILURE), BINDING)];
    expect(a).toMatchObject({ format: RecordFormat.EncryptedJson, keyId: keyIdOf(KEY) });
    expect(a.result.toString('latin1')).not.toContain('INSUFFICIENT_STOCK');
    expect(a.result.equals(b.result)).toBe(false);
    expect(a.result.length).toBe(12 + 16 + Buffer.byteLength(JSON.stringify(FAILURE)));
  });

  it('reads records of a previous key after a rotation, and plain records after encryption was turned on', () => {
    const before = new ResultCodec(OLD_KEY).encode(JSON.stringify(PAYLOAD), BINDING);
    const plain = new ResultCodec().encode(JSON.stringify(FAILURE), BINDING);
    const rotated = new ResultCodec(KEY, [OLD_KEY]);
    expect(rotated.decode(before, BINDING)).toEqual(PAYLOAD);
    expect(rotated.decode(plain, BINDING)).toEqual(FAILURE);
    // New records use the current key only.
    expect(rotated.encode('{}', BINDING).keyId).toBe(keyIdOf(KEY));
  });

  it('calls a record unreadable when its key is gone, its binding differs, its bytes changed or its format is unknown', () => {
    const encrypted = new ResultCodec(OLD_KEY).encode(JSON.stringify(PAYLOAD), BINDING);
    const tampered = { ...encrypted, result: Buffer.from(encrypted.result) };
    tampered.result[tampered.result.length - 1] = (tampered.result.at(-1) ?? 0) ^ 1;
    const cases: [string, ResultCodec, Parameters<ResultCodec['decode']>[0], string?][] = [
      ['its key is not configured', new ResultCodec(OTHER_KEY), encrypted],
      ['no key is configured at all', new ResultCodec(), encrypted],
      ['it was copied onto another record', new ResultCodec(OLD_KEY), encrypted, `${BINDING}x`],
      ['a byte changed', new ResultCodec(OLD_KEY), tampered],
      ['an unknown format', new ResultCodec(), { format: 9, keyId: null, result: Buffer.from('{}') }],
      ['not JSON', new ResultCodec(), { format: 1, keyId: null, result: Buffer.from('{"kind":') }],
      ['JSON of another shape', new ResultCodec(), { format: 1, keyId: null, result: Buffer.from('{"kind":"other"}') }],
    ];
    for (const [why, codec, stored, binding] of cases) expect([why, codec.decode(stored, binding ?? BINDING)]).toEqual([why, null]);
  });

  it('refuses keys that are not 32 bytes', () => {
    expect(() => new ResultCodec(randomBytes(16))).toThrow(RangeError);
    expect(() => new ResultCodec(KEY, [randomBytes(31)])).toThrow(RangeError);
  });

  it('names keys by an id that reveals nothing usable about the key and tells keys apart', () => {
    expect(keyIdOf(KEY)).toMatch(/^[0-9a-f]{16}$/);
    expect(keyIdOf(KEY)).not.toBe(keyIdOf(OLD_KEY));
    expect(KEY.toString('hex')).not.toContain(keyIdOf(KEY));
  });
});
