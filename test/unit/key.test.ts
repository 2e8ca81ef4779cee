import fc from 'fast-check';
import { ErrorCode } from '../../src/errors';
import { IdempotencyError } from '../../src/idempotency';
import { IDEMPOTENCY_KEY_PATTERN, validateKey } from '../../src/idempotency/key';

const KEY_ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-';
const keyChar = fc.constantFrom(...KEY_ALPHABET);
const validKey = fc.string({ unit: keyChar, minLength: 1, maxLength: 64 });

/** The error validateKey throws for a value, or undefined when it accepts it. */
function rejection(value: unknown): unknown {
  try {
    validateKey(value);
    return undefined;
  } catch (error) {
    return error;
  }
}

function expectRejected(value: unknown): void {
  const error = rejection(value);
  expect(error).toBeInstanceOf(IdempotencyError);
  expect((error as IdempotencyError).code).toBe(ErrorCode.IdempotencyKeyInvalid);
  expect((error as IdempotencyError).code).toBe('IDEMPOTENCY_KEY_INVALID');
}

describe('validateKey', () => {
  it('accepts keys of 1 and of 64 characters and returns them unchanged', () => {
    expect(validateKey('a')).toBe('a');
    const longest = 'k'.repeat(64);
    expect(validateKey(longest)).toBe(longest);
  });

  it('rejects the empty string and a key of 65 characters', () => {
    expectRejected('');
    expectRejected('k'.repeat(65));
    expectRejected(`${'k'.repeat(64)}x`);
  });

  it.each([
    ['upper-case letters', 'ABCDEFGHIJKLMNOPQRSTUVWXYZ'],
    ['lower-case letters', 'abcdefghijklmnopqrstuvwxyz'],
    ['digits', '0123456789'],
    ['underscores', '___'],
    ['hyphens', '---'],
    ['a mix of every class', 'Order_2024-01-31_retry-7'],
    ['a UUID', '0b8e7c52-3f5e-4a8e-9b1d-2f4c6a8e0d13'],
  ])('accepts %s', (_case, key) => {
    expect(validateKey(key)).toBe(key);
  });

  it.each([
    ['a leading space', ' abc'],
    ['a trailing space', 'abc '],
    ['a trailing newline', 'abc\n'],
    ['a leading newline', '\nabc'],
    ['a tab', 'ab\tc'],
    ['an inner space', 'a b'],
    ['a dot', 'a.b'],
    ['a slash', 'a/b'],
    ['a plus sign', 'a+b'],
    ['an equals sign', 'abc='],
    ['a colon', 'user:1'],
    ['a NUL character', 'ab\u0000c'],
    ['an accented letter', 'clé'],
    ['Cyrillic letters', 'ключ'],
    ['full-width digits', '１２３'],
    ['an emoji', 'key🔑'],
    ['a combining accent', 'e\u0301'],
    ['a non-breaking space', 'a\u00a0b'],
    ['a zero-width space', 'ab\u200b'],
    ['the Kelvin sign, which case-folds to k', '\u212a'],
  ])('rejects a key with %s, without trimming or normalising it', (_case, key) => {
    expectRejected(key);
  });

  it.each([
    ['a number', 42],
    ['a bigint', 42n],
    ['null', null],
    ['undefined', undefined],
    ['a boolean', true],
    ['an object', { key: 'abc' }],
    ['an array', ['abc']],
    ['a String object', new String('abc')],
    ['a Buffer', Buffer.from('abc')],
  ])('rejects %s with IDEMPOTENCY_KEY_INVALID', (_case, value) => {
    expectRejected(value);
  });

  it('names where the key came from in the message', () => {
    expect(() => validateKey('a b', 'Idempotency-Key header')).toThrow(/Idempotency-Key header/);
  });

  it('gives the same answer however often the same key is validated', () => {
    for (let attempt = 0; attempt < 5; attempt += 1) {
      expect(validateKey('stable-key')).toBe('stable-key');
      expectRejected('bad key');
    }
  });

  it('accepts every string of 1 to 64 allowed characters', () => {
    fc.assert(
      fc.property(validKey, (key) => {
        expect(validateKey(key)).toBe(key);
      }),
    );
  });

  it('rejects every string longer than 64 allowed characters', () => {
    fc.assert(
      fc.property(fc.string({ unit: keyChar, minLength: 65, maxLength: 300 }), (key) => {
        expectRejected(key);
      }),
    );
  });

  it('rejects any otherwise valid key with one character outside the alphabet inserted anywhere', () => {
    const outsider = fc.string({ unit: 'binary', minLength: 1, maxLength: 1 }).filter((char) => !KEY_ALPHABET.includes(char));
    fc.assert(
      fc.property(fc.string({ unit: keyChar, maxLength: 63 }), outsider, fc.nat(), (key, char, at) => {
        const index = at % (key.length + 1);
        expectRejected(key.slice(0, index) + char + key.slice(index));
      }),
    );
  });

  it('accepts exactly the strings the published pattern matches', () => {
    const anyString = fc.oneof(
      validKey,
      fc.string({ unit: 'binary', maxLength: 80 }),
      fc.string({ unit: 'grapheme-ascii', maxLength: 80 }),
    );
    fc.assert(
      fc.property(anyString, (value) => {
        const accepted = rejection(value) === undefined;
        expect(accepted).toBe(IDEMPOTENCY_KEY_PATTERN.test(value));
        expect(accepted).toBe(/^[A-Za-z0-9_-]{1,64}$/.test(value));
      }),
    );
  });
});

describe('IDEMPOTENCY_KEY_PATTERN', () => {
  it('is anchored at both ends and has no flag that changes matching', () => {
    expect(IDEMPOTENCY_KEY_PATTERN.test('abc\n')).toBe(false);
    expect(IDEMPOTENCY_KEY_PATTERN.test('\nabc')).toBe(false);
    expect(IDEMPOTENCY_KEY_PATTERN.test('x'.repeat(65))).toBe(false);
    expect(IDEMPOTENCY_KEY_PATTERN.flags).toBe('');
  });
});
