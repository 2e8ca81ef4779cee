import { randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { encryptedCodec, plainCodec, type ResultCodec, UnreadableRecordError } from '../../src/idempotency';

type StoredResult = ReturnType<ResultCodec['decode']>;

interface Envelope {
  v: number;
  alg: string;
  iv: string;
  tag: string;
  data: string;
}

const KEY = randomBytes(32);
const AD = 'alice\u0000key-1\u0000'.concat('ab'.repeat(32));
const ORDER_ID = '6f1d2c1e-8a55-4b7e-9d7c-3c1f2e4a5b6c';
const PAYLOAD: StoredResult = {
  kind: 'payload',
  payload: { order: { id: ORDER_ID, status: 'PLACED', totalCents: 3600, note: 'gift wrap', lines: [{ quantity: 3 }] } },
};
const FAILURE: StoredResult = {
  kind: 'error',
  code: 'INSUFFICIENT_STOCK',
  message: `Insufficient stock for product: ${ORDER_ID}`,
  details: { productIds: [ORDER_ID] },
};

const storedResult: fc.Arbitrary<StoredResult> = fc.oneof(
  fc.record({ kind: fc.constant('payload' as const), payload: fc.jsonValue() }),
  fc.record({
    kind: fc.constant('error' as const),
    code: fc.string({ minLength: 1 }),
    message: fc.string(),
    details: fc.dictionary(fc.string(), fc.jsonValue(), { noNullPrototype: true }),
  }),
);

/** What a JSONB column gives back: the stored value after a JSON round trip. */
function throughJsonb(value: unknown): unknown {
  return JSON.parse(JSON.stringify(value));
}

function decodeError(codec: ResultCodec, stored: unknown, associatedData = AD): unknown {
  try {
    codec.decode(stored, associatedData);
    return undefined;
  } catch (error) {
    return error;
  }
}

function flipByte(base64: string, index = 0): string {
  const bytes = Buffer.from(base64, 'base64');
  const at = index % bytes.length;
  bytes[at] = bytes[at]! ^ 0x01;
  return bytes.toString('base64');
}

describe('plainCodec', () => {
  it('round-trips payloads and failures through JSONB unchanged', () => {
    fc.assert(
      fc.property(storedResult, (result) => {
        expect(plainCodec.decode(throughJsonb(plainCodec.encode(result, AD)), AD)).toEqual(throughJsonb(result));
      }),
    );
  });

  it('stores the payload as readable JSON', () => {
    expect(JSON.stringify(plainCodec.encode(PAYLOAD, AD))).toContain(ORDER_ID);
  });

  it.each([
    ['null', null],
    ['a string', 'payload'],
    ['an object without a kind', { payload: {} }],
    ['an unknown kind', { kind: 'other', payload: {} }],
  ])('refuses %s with UnreadableRecordError', (_case, stored) => {
    expect(decodeError(plainCodec, stored)).toBeInstanceOf(UnreadableRecordError);
  });

  it('refuses an encrypted record with UnreadableRecordError', () => {
    const encrypted = throughJsonb(encryptedCodec(KEY).encode(PAYLOAD, AD));
    expect(decodeError(plainCodec, encrypted)).toBeInstanceOf(UnreadableRecordError);
  });
});

describe('encryptedCodec', () => {
  const codec = encryptedCodec(KEY);

  function encrypt(result: StoredResult = PAYLOAD, associatedData = AD): Envelope {
    return throughJsonb(codec.encode(result, associatedData)) as Envelope;
  }

  it('refuses a key that is not 32 bytes', () => {
    expect(() => encryptedCodec(randomBytes(16))).toThrow();
    expect(() => encryptedCodec(randomBytes(31))).toThrow();
    expect(() => encryptedCodec(randomBytes(33))).toThrow();
  });

  it('round-trips payloads and failures through JSONB unchanged', () => {
    fc.assert(
      fc.property(storedResult, fc.string(), (result, associatedData) => {
        expect(codec.decode(encrypt(result, associatedData), associatedData)).toEqual(throughJsonb(result));
      }),
    );
  });

  it('keeps no plaintext of a payload or a failure in the stored value', () => {
    for (const result of [PAYLOAD, FAILURE]) {
      const text = JSON.stringify(encrypt(result));
      expect(text).not.toContain(ORDER_ID);
      expect(text).not.toContain('PLACED');
      expect(text).not.toContain('gift wrap');
      expect(text).not.toContain('INSUFFICIENT_STOCK');
      expect(text).not.toContain('payload');
    }
  });

  it('uses a fresh IV for every record, so equal results encrypt differently', () => {
    const first = encrypt();
    const second = encrypt();
    expect(first.iv).not.toBe(second.iv);
    expect(first.data).not.toBe(second.data);
    expect(Buffer.from(first.iv, 'base64')).toHaveLength(12);
  });

  it('refuses a record encrypted with another key', () => {
    const other = encryptedCodec(randomBytes(32));
    expect(decodeError(codec, throughJsonb(other.encode(PAYLOAD, AD)))).toBeInstanceOf(UnreadableRecordError);
  });

  it.each([
    ['another user', 'bob\u0000key-1\u0000'.concat('ab'.repeat(32))],
    ['another key', 'alice\u0000key-2\u0000'.concat('ab'.repeat(32))],
    ['another fingerprint', 'alice\u0000key-1\u0000'.concat('cd'.repeat(32))],
    ['no associated data', ''],
  ])('refuses a record read with the associated data of %s', (_case, associatedData) => {
    expect(decodeError(codec, encrypt(), associatedData)).toBeInstanceOf(UnreadableRecordError);
  });

  it('refuses a record whose ciphertext has any bit of any byte flipped', () => {
    const envelope = encrypt();
    const length = Buffer.from(envelope.data, 'base64').length;
    fc.assert(
      fc.property(fc.nat({ max: length - 1 }), fc.integer({ min: 0, max: 7 }), (index, bit) => {
        const bytes = Buffer.from(envelope.data, 'base64');
        bytes[index] = bytes[index]! ^ (1 << bit);
        expect(decodeError(codec, { ...envelope, data: bytes.toString('base64') })).toBeInstanceOf(UnreadableRecordError);
      }),
    );
  });

  it.each([
    ['a flipped byte in the ciphertext', (envelope: Envelope) => ({ ...envelope, data: flipByte(envelope.data, 5) })],
    [
      'a truncated ciphertext',
      (envelope: Envelope) => ({ ...envelope, data: Buffer.from(envelope.data, 'base64').subarray(1).toString('base64') }),
    ],
    [
      'an extended ciphertext',
      (envelope: Envelope) => ({
        ...envelope,
        data: Buffer.concat([Buffer.from(envelope.data, 'base64'), Buffer.from([0])]).toString('base64'),
      }),
    ],
    ['a flipped byte in the tag', (envelope: Envelope) => ({ ...envelope, tag: flipByte(envelope.tag, 7) })],
    [
      'a tag truncated to 4 bytes',
      (envelope: Envelope) => ({ ...envelope, tag: Buffer.from(envelope.tag, 'base64').subarray(0, 4).toString('base64') }),
    ],
    [
      'a tag truncated to 12 bytes',
      (envelope: Envelope) => ({ ...envelope, tag: Buffer.from(envelope.tag, 'base64').subarray(0, 12).toString('base64') }),
    ],
    ['an empty tag', (envelope: Envelope) => ({ ...envelope, tag: '' })],
    ['no tag', ({ tag: _tag, ...envelope }: Envelope) => envelope],
    ['a flipped byte in the IV', (envelope: Envelope) => ({ ...envelope, iv: flipByte(envelope.iv, 3) })],
    ['another IV', (envelope: Envelope) => ({ ...envelope, iv: randomBytes(12).toString('base64') })],
    ['an empty IV', (envelope: Envelope) => ({ ...envelope, iv: '' })],
    ['the ciphertext of another record', (envelope: Envelope) => ({ ...envelope, data: encrypt(FAILURE).data })],
  ])('refuses a record with %s', (_case, tamper) => {
    expect(decodeError(codec, tamper(encrypt()))).toBeInstanceOf(UnreadableRecordError);
  });

  it.each([
    ['a plain payload', PAYLOAD],
    ['a plain failure', FAILURE],
    ['null', null],
    ['an unknown version', { ...(throughJsonb(encryptedCodec(KEY).encode(PAYLOAD, AD)) as Envelope), v: 2 }],
  ])('refuses %s with UnreadableRecordError', (_case, stored) => {
    expect(decodeError(codec, throughJsonb(stored))).toBeInstanceOf(UnreadableRecordError);
  });
});
