import { randomBytes } from 'node:crypto';
import { deflateRawSync } from 'node:zlib';
import fc from 'fast-check';
import { uncompressSync } from 'snappy';
import { encryptedCodec, plainCodec, type ResultCodec, UnreadableRecordError } from '../../src/idempotency';
import { MAX_RESULT_BYTES } from '../../src/idempotency/codec';
import { deflatedResult, encryptedDeflatedResult, legacyEnvelope } from '../support/records';

type StoredResult = ReturnType<ResultCodec['decode']>;

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
/** A createOrder payload of the size the API returns: an order with two lines and their products. */
const ORDER_PAYLOAD: StoredResult = {
  kind: 'payload',
  payload: {
    order: {
      id: ORDER_ID,
      status: 'PLACED',
      totalCents: 7996,
      currency: 'USD',
      note: null,
      createdAt: '2026-11-28T10:00:00.000Z',
      lines: [0, 1].map((index) => ({
        quantity: 2,
        unitPriceCents: 1999,
        lineTotalCents: 3998,
        product: {
          id: `a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5${index}`,
          sku: `SKU-000${index}`,
          name: `Product ${index}`,
          description: 'A product of the catalog, described in a sentence or two for the shop front.',
          priceCents: 1999,
          currency: 'USD',
          stock: 120,
        },
      })),
    },
  },
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

/** The value as JSON gives it back (`-0` becomes 0, and so on). */
function throughJson(value: unknown): unknown {
  return JSON.parse(JSON.stringify(value));
}

function decodeError(codec: ResultCodec, stored: Buffer, associatedData = AD): unknown {
  try {
    codec.decode(stored, associatedData);
    return undefined;
  } catch (error) {
    return error;
  }
}

function flipped(bytes: Buffer, index: number, bit = 0): Buffer {
  const copy = Buffer.from(bytes);
  copy[index] = copy[index]! ^ (1 << bit);
  return copy;
}

/** An encrypted result as rows written before compression hold it: a JSON envelope, as text. */
function legacyEnvelopeOf(result: StoredResult, associatedData = AD, key = KEY): Buffer {
  return Buffer.from(legacyEnvelope(JSON.stringify(result), key, associatedData));
}

describe('plainCodec', () => {
  it('round-trips payloads and failures', () => {
    fc.assert(
      fc.property(storedResult, (result) => {
        expect(plainCodec.decode(plainCodec.encode(JSON.stringify(result), AD), AD)).toEqual(throughJson(result));
      }),
    );
  });

  it('stores the JSON it is given, compressed with Snappy behind the format byte 3', () => {
    const json = JSON.stringify(ORDER_PAYLOAD);
    const stored = plainCodec.encode(json, AD);
    expect(stored[0]).toBe(3);
    expect((uncompressSync(stored.subarray(1), { asBuffer: true }) as Buffer).toString('utf8')).toBe(json);
  });

  it('stores an order payload in less than three quarters of its JSON', () => {
    const json = JSON.stringify(ORDER_PAYLOAD);
    expect(json.length).toBeGreaterThan(700);
    expect(plainCodec.encode(JSON.stringify(ORDER_PAYLOAD), AD).length).toBeLessThan(json.length * 0.75);
  });

  it('reads results deflated behind the format byte 1, as they were written before Snappy', () => {
    for (const result of [PAYLOAD, FAILURE, ORDER_PAYLOAD]) {
      expect(plainCodec.decode(deflatedResult(JSON.stringify(result)), AD)).toEqual(result);
    }
  });

  it('returns buffers of their own, not slices of the shared pool that a cached record would pin', () => {
    for (const stored of [plainCodec.encode(JSON.stringify(PAYLOAD), AD), encryptedCodec(KEY).encode(JSON.stringify(PAYLOAD), AD)]) {
      expect(stored.length).toBeLessThan(Buffer.poolSize);
      expect(stored.buffer.byteLength).toBe(stored.length);
    }
  });

  it('reads results stored as JSON text before results were compressed', () => {
    for (const result of [PAYLOAD, FAILURE]) {
      expect(plainCodec.decode(Buffer.from(JSON.stringify(result)), AD)).toEqual(result);
    }
  });

  it.each([
    ['no bytes', Buffer.alloc(0)],
    ['an unknown format byte', Buffer.concat([Buffer.of(5), plainCodec.encode(JSON.stringify(PAYLOAD), AD).subarray(1)])],
    ['a deflate stream behind the Snappy format byte', Buffer.concat([Buffer.of(3), deflateRawSync(JSON.stringify(PAYLOAD))])],
    ['a truncated Snappy block', plainCodec.encode(JSON.stringify(ORDER_PAYLOAD), AD).subarray(0, 40)],
    ['a Snappy preamble cut short', Buffer.of(3, 0x80)],
    ['a Snappy block without a preamble', Buffer.of(3)],
    ['compressed text that is not JSON', Buffer.concat([Buffer.of(3), plainCodec.encode('{"kind":', AD).subarray(1)])],
    ['a truncated deflate stream', deflatedResult(JSON.stringify(ORDER_PAYLOAD)).subarray(0, 40)],
    ['deflated text that is not JSON', Buffer.concat([Buffer.of(1), deflateRawSync('{"kind":')])],
    ['deflated null', Buffer.concat([Buffer.of(1), deflateRawSync('null')])],
    ['a deflated object without a kind', Buffer.concat([Buffer.of(1), deflateRawSync('{"payload":{}}')])],
    ['a deflated unknown kind', Buffer.concat([Buffer.of(1), deflateRawSync('{"kind":"other","payload":{}}')])],
    ['JSON text of an unknown kind', Buffer.from('{"kind":"other"}')],
    ['JSON text cut short', Buffer.from('{"kind":"payload"')],
  ])('refuses %s with UnreadableRecordError', (_case, stored) => {
    expect(decodeError(plainCodec, stored)).toBeInstanceOf(UnreadableRecordError);
  });

  it('refuses a valid result that decompresses to more than MAX_RESULT_BYTES, without decompressing it', () => {
    const json = `{"kind":"payload","payload":"${'x'.repeat(MAX_RESULT_BYTES)}"}`;
    for (const stored of [plainCodec.encode(json, AD), deflatedResult(json)]) {
      const error = decodeError(plainCodec, stored);
      expect(error).toBeInstanceOf(UnreadableRecordError);
      expect((error as Error).message).toContain('decompressed');
    }
  });

  it('refuses a Snappy block declaring more than MAX_RESULT_BYTES before allocating them', () => {
    // 5 bytes of preamble claim 4 GiB - 1; the decompressor would allocate that much up front.
    const error = decodeError(plainCodec, Buffer.of(3, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x00));
    expect(error).toBeInstanceOf(UnreadableRecordError);
    expect(String((error as Error).cause)).toContain('out of range');
  });

  it('refuses encrypted records, current and earlier, saying that no key is set', () => {
    for (const stored of [
      encryptedCodec(KEY).encode(JSON.stringify(PAYLOAD), AD),
      encryptedDeflatedResult(JSON.stringify(PAYLOAD), KEY, AD),
      legacyEnvelopeOf(PAYLOAD),
    ]) {
      const error = decodeError(plainCodec, stored);
      expect(error).toBeInstanceOf(UnreadableRecordError);
      expect((error as Error).message).toContain('no IDEMPOTENCY_ENCRYPTION_KEY');
    }
  });
});

describe('encryptedCodec', () => {
  const codec = encryptedCodec(KEY);
  const encrypt = (result: StoredResult = PAYLOAD, associatedData = AD): Buffer => codec.encode(JSON.stringify(result), associatedData);
  const HEADER = 1 + 12 + 16;

  it('refuses a key that is not 32 bytes', () => {
    expect(() => encryptedCodec(randomBytes(16))).toThrow();
    expect(() => encryptedCodec(randomBytes(31))).toThrow();
    expect(() => encryptedCodec(randomBytes(33))).toThrow();
  });

  it('round-trips payloads and failures', () => {
    fc.assert(
      fc.property(storedResult, fc.string(), (result, associatedData) => {
        expect(codec.decode(encrypt(result, associatedData), associatedData)).toEqual(throughJson(result));
      }),
    );
  });

  it('stores the format byte 4, the IV, the tag and the ciphertext of the Snappy-compressed JSON', () => {
    const json = JSON.stringify(ORDER_PAYLOAD);
    const stored = codec.encode(json, AD);
    expect(stored[0]).toBe(4);
    expect(stored.length - HEADER).toBe(plainCodec.encode(json, AD).length - 1);
    expect(stored.length - HEADER).toBeLessThan(json.length * 0.75);
  });

  it('keeps no plaintext of a payload or a failure in the stored value', () => {
    for (const result of [PAYLOAD, FAILURE, ORDER_PAYLOAD]) {
      for (const encoding of ['utf8', 'latin1'] as const) {
        const text = encrypt(result).toString(encoding);
        for (const secret of [ORDER_ID, 'PLACED', 'gift wrap', 'INSUFFICIENT_STOCK', 'payload', 'catalog'])
          expect(text).not.toContain(secret);
      }
    }
  });

  it('uses a fresh IV for every record, so equal results encrypt differently', () => {
    const [first, second] = [encrypt(), encrypt()];
    expect(first.subarray(1, 13)).not.toEqual(second.subarray(1, 13));
    expect(first.subarray(HEADER)).not.toEqual(second.subarray(HEADER));
  });

  it('refuses a record encrypted with another key', () => {
    const other = encryptedCodec(randomBytes(32));
    expect(decodeError(codec, other.encode(JSON.stringify(PAYLOAD), AD))).toBeInstanceOf(UnreadableRecordError);
  });

  it.each([
    ['another user', 'bob\u0000key-1\u0000'.concat('ab'.repeat(32))],
    ['another key', 'alice\u0000key-2\u0000'.concat('ab'.repeat(32))],
    ['another fingerprint', 'alice\u0000key-1\u0000'.concat('cd'.repeat(32))],
    ['no associated data', ''],
  ])('refuses a record read with the associated data of %s', (_case, associatedData) => {
    expect(decodeError(codec, encrypt(), associatedData)).toBeInstanceOf(UnreadableRecordError);
    expect(decodeError(codec, legacyEnvelopeOf(PAYLOAD), associatedData)).toBeInstanceOf(UnreadableRecordError);
  });

  it('refuses a record with any bit of any byte after the format byte flipped', () => {
    const stored = encrypt();
    fc.assert(
      fc.property(fc.integer({ min: 1, max: stored.length - 1 }), fc.integer({ min: 0, max: 7 }), (index, bit) => {
        expect(decodeError(codec, flipped(stored, index, bit))).toBeInstanceOf(UnreadableRecordError);
      }),
    );
  });

  it.each([
    ['a truncated ciphertext', (stored: Buffer) => stored.subarray(0, stored.length - 1)],
    ['an extended ciphertext', (stored: Buffer) => Buffer.concat([stored, Buffer.of(0)])],
    ['no ciphertext', (stored: Buffer) => stored.subarray(0, HEADER)],
    ['a tag cut to 12 bytes and nothing after it', (stored: Buffer) => stored.subarray(0, 1 + 12 + 12)],
    ['only the format byte', (stored: Buffer) => stored.subarray(0, 1)],
    ['another IV', (stored: Buffer) => Buffer.concat([stored.subarray(0, 1), randomBytes(12), stored.subarray(13)])],
    [
      'the ciphertext of another record',
      (stored: Buffer) => Buffer.concat([stored.subarray(0, HEADER), encrypt(FAILURE).subarray(HEADER)]),
    ],
  ])('refuses a record with %s', (_case, tamper) => {
    expect(decodeError(codec, tamper(encrypt()))).toBeInstanceOf(UnreadableRecordError);
  });

  it('reads encrypted results deflated behind the format byte 2, as they were written before Snappy', () => {
    for (const result of [PAYLOAD, FAILURE, ORDER_PAYLOAD]) {
      expect(codec.decode(encryptedDeflatedResult(JSON.stringify(result), KEY, AD), AD)).toEqual(result);
    }
    expect(decodeError(codec, encryptedDeflatedResult(JSON.stringify(PAYLOAD), KEY, AD), 'another')).toBeInstanceOf(UnreadableRecordError);
    expect(decodeError(codec, flipped(encryptedDeflatedResult(JSON.stringify(PAYLOAD), KEY, AD), HEADER + 2))).toBeInstanceOf(
      UnreadableRecordError,
    );
  });

  it('reads encrypted results stored before results were compressed', () => {
    expect(codec.decode(legacyEnvelopeOf(PAYLOAD), AD)).toEqual(PAYLOAD);
    expect(codec.decode(legacyEnvelopeOf(FAILURE), AD)).toEqual(FAILURE);
  });

  it.each([
    ['another key', () => legacyEnvelopeOf(PAYLOAD, AD, randomBytes(32))],
    ['an unknown version', () => Buffer.from(JSON.stringify({ ...JSON.parse(legacyEnvelopeOf(PAYLOAD).toString()), v: 2 }))],
    ['no tag', () => Buffer.from(JSON.stringify({ ...JSON.parse(legacyEnvelopeOf(PAYLOAD).toString()), tag: undefined }))],
    [
      'a tag cut to 12 bytes',
      () => {
        const envelope = JSON.parse(legacyEnvelopeOf(PAYLOAD).toString());
        return Buffer.from(JSON.stringify({ ...envelope, tag: Buffer.from(envelope.tag, 'base64').subarray(0, 12).toString('base64') }));
      },
    ],
    [
      'a flipped byte in the ciphertext',
      () => {
        const envelope = JSON.parse(legacyEnvelopeOf(PAYLOAD).toString());
        return Buffer.from(JSON.stringify({ ...envelope, data: flipped(Buffer.from(envelope.data, 'base64'), 3).toString('base64') }));
      },
    ],
  ])('refuses an earlier encrypted result with %s', (_case, stored) => {
    expect(decodeError(codec, stored())).toBeInstanceOf(UnreadableRecordError);
  });

  it.each([
    ['a plain record', plainCodec.encode(JSON.stringify(PAYLOAD), AD)],
    ['a plain failure', plainCodec.encode(JSON.stringify(FAILURE), AD)],
    ['a deflated plain record', deflatedResult(JSON.stringify(PAYLOAD))],
    ['JSON text of a plain result', Buffer.from(JSON.stringify(PAYLOAD))],
    ['no bytes', Buffer.alloc(0)],
    ['an unknown format byte', Buffer.concat([Buffer.of(9), encrypt().subarray(1)])],
  ])('refuses %s with UnreadableRecordError', (_case, stored) => {
    expect(decodeError(codec, stored)).toBeInstanceOf(UnreadableRecordError);
  });
});
