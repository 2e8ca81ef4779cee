import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parse } from 'graphql';
import {
  type AttemptFailure,
  backoffDelay,
  decideRetry,
  failureOfResult,
  IDEMPOTENT_MUTATIONS,
  idempotentMutationsFromSchema,
  memoryIntentStore,
  parseRetryAfter,
  planOperation,
  readIdempotency,
  retryPolicy,
  webStorageIntentStore,
} from '../../clients/src';
import { keyForCall, settleCall } from '../../clients/src/calls';

const policy = retryPolicy({ maxAttempts: 4, baseDelayMs: 100, maxDelayMs: 1_000, random: () => 0.5 });

describe('the retry policy', () => {
  it.each<[string, AttemptFailure]>([
    ['a network error', { kind: 'network' }],
    ['a timeout', { kind: 'timeout' }],
    ['HTTP 502', { kind: 'http', status: 502 }],
    ['HTTP 503', { kind: 'http', status: 503 }],
    ['SERVICE_UNAVAILABLE', { kind: 'graphql', codes: ['SERVICE_UNAVAILABLE'] }],
    ['IDEMPOTENCY_REQUEST_IN_PROGRESS', { kind: 'graphql', codes: ['IDEMPOTENCY_REQUEST_IN_PROGRESS'] }],
    ['RATE_LIMITED', { kind: 'graphql', codes: ['RATE_LIMITED'] }],
    ['HTTP 429', { kind: 'http', status: 429 }],
  ])('retries %s with a key', (_name, failure) => {
    expect(decideRetry(failure, 1, policy, true)).toMatchObject({ retry: true });
  });

  it.each<[string, AttemptFailure]>([
    ['INSUFFICIENT_STOCK', { kind: 'graphql', codes: ['INSUFFICIENT_STOCK'] }],
    ['IDEMPOTENCY_KEY_REUSED', { kind: 'graphql', codes: ['IDEMPOTENCY_KEY_REUSED'] }],
    ['BAD_USER_INPUT', { kind: 'graphql', codes: ['BAD_USER_INPUT'] }],
    ['UNAUTHENTICATED', { kind: 'graphql', codes: ['UNAUTHENTICATED'] }],
    ['INTERNAL_SERVER_ERROR with HTTP 200', { kind: 'graphql', codes: ['INTERNAL_SERVER_ERROR'] }],
    ['an error without a code', { kind: 'graphql', codes: [undefined] }],
    ['a retryable code next to a final one', { kind: 'graphql', codes: ['SERVICE_UNAVAILABLE', 'INSUFFICIENT_STOCK'] }],
    ['HTTP 400', { kind: 'http', status: 400 }],
    ['HTTP 401', { kind: 'http', status: 401 }],
  ])('does not retry %s', (_name, failure) => {
    expect(decideRetry(failure, 1, policy, true)).toMatchObject({ retry: false, reason: expect.stringContaining('final') });
  });

  it.each<AttemptFailure>([
    { kind: 'network' },
    { kind: 'timeout' },
    { kind: 'http', status: 503 },
    { kind: 'graphql', codes: ['RATE_LIMITED'] },
  ])('never sends a mutation without a key twice (%j)', (failure) => {
    expect(decideRetry(failure, 1, policy, false)).toEqual({ retry: false, reason: expect.stringContaining('without an idempotency key') });
  });

  it('stops after maxAttempts', () => {
    expect(decideRetry({ kind: 'network' }, 3, policy, true).retry).toBe(true);
    expect(decideRetry({ kind: 'network' }, 4, policy, true)).toEqual({ retry: false, reason: 'network error; gave up after 4 attempts' });
  });

  it('backs off exponentially with full jitter, capped at maxDelayMs', () => {
    const ceiling = (attempt: number) => backoffDelay(attempt, { ...policy, random: () => 0.999_999 });
    expect([1, 2, 3, 4, 5, 6].map(ceiling)).toEqual([99, 199, 399, 799, 999, 999]);
    expect(backoffDelay(3, { ...policy, random: () => 0 })).toBe(0);
    expect(backoffDelay(3, policy)).toBe(200);
  });

  it('waits at least the server hint: retryAfterSeconds or Retry-After', () => {
    expect(
      decideRetry({ kind: 'graphql', codes: ['IDEMPOTENCY_REQUEST_IN_PROGRESS'], retryAfterSeconds: 2 }, 1, policy, true),
    ).toMatchObject({
      retry: true,
      delayMs: 2_000,
    });
    expect(decideRetry({ kind: 'http', status: 429, retryAfterSeconds: 3 }, 1, policy, true)).toMatchObject({
      retry: true,
      delayMs: 3_000,
    });
  });

  it('gives up when the server asks to wait longer than maxRetryAfterMs', () => {
    expect(decideRetry({ kind: 'graphql', codes: ['RATE_LIMITED'], retryAfterSeconds: 3_600 }, 1, policy, true)).toMatchObject({
      retry: false,
    });
  });

  it('refuses a policy that cannot run', () => {
    expect(() => retryPolicy({ maxAttempts: 0 })).toThrow(/maxAttempts/);
    expect(() => retryPolicy({ baseDelayMs: -1 })).toThrow(/baseDelayMs/);
  });

  it('reads Retry-After in seconds or as an HTTP date', () => {
    const now = Date.parse('2026-01-01T00:00:00Z');
    expect(parseRetryAfter('7', now)).toBe(7);
    expect(parseRetryAfter('Thu, 01 Jan 2026 00:00:30 GMT', now)).toBe(30);
    expect(parseRetryAfter('soon', now)).toBeUndefined();
    expect(parseRetryAfter(null, now)).toBeUndefined();
  });

  it('reads the failure of a GraphQL answer, and none from an answer with data', () => {
    const limited = { errors: [{ message: 'slow down', extensions: { code: 'RATE_LIMITED', retryAfterSeconds: 4 } }] };
    expect(failureOfResult(limited)).toEqual({ kind: 'graphql', codes: ['RATE_LIMITED'], retryAfterSeconds: 4 });
    expect(failureOfResult(limited, '9')).toEqual({ kind: 'graphql', codes: ['RATE_LIMITED'], retryAfterSeconds: 9 });
    expect(failureOfResult({ data: { createOrder: { order: { id: '1' } } } })).toBeNull();
  });
});

describe('which operations carry a key', () => {
  const fields = new Set(IDEMPOTENT_MUTATIONS);
  const plan = (source: string, variables?: Record<string, unknown>, name?: string) =>
    planOperation(parse(source), name, variables, fields);

  it('sends the key of a lone idempotent mutation in the header', () => {
    expect(plan('mutation { createOrder(input: { lines: [] }) { order { id } } }')).toEqual({ kind: 'header-key', field: 'createOrder' });
    expect(plan('mutation M($key: IdempotencyKey) { createOrder(input: {lines: []}, idempotencyKey: $key) { __typename } }', {})).toEqual({
      kind: 'header-key',
      field: 'createOrder',
    });
  });

  it('leaves keys given as arguments to the caller', () => {
    expect(
      plan('mutation M($key: IdempotencyKey) { createOrder(input: {lines: []}, idempotencyKey: $key) { __typename } }', { key: 'k1' }),
    ).toEqual({
      kind: 'argument-keys',
    });
    expect(
      plan(
        'mutation { a: createOrder(input: {lines: []}, idempotencyKey: "a") { __typename } b: cancelOrder(input: {orderId: "x"}, idempotencyKey: "b") { __typename } }',
      ),
    ).toEqual({ kind: 'argument-keys' });
  });

  it('treats a mutation with a field that takes no key, or several fields sharing the header, as keyless', () => {
    expect(plan('mutation { somethingElse }')).toMatchObject({ kind: 'keyless' });
    expect(
      plan('mutation { a: createOrder(input: {lines: []}) { __typename } b: createOrder(input: {lines: []}) { __typename } }'),
    ).toMatchObject({
      kind: 'keyless',
    });
  });

  it('reads fields through fragments and picks the operation by name', () => {
    const source =
      'query Q { viewer { id } } mutation M { ...F } fragment F on Mutation { createOrder(input: {lines: []}) { __typename } }';
    expect(plan(source, {}, 'M')).toEqual({ kind: 'header-key', field: 'createOrder' });
    expect(plan(source, {}, 'Q')).toEqual({ kind: 'read' });
  });

  it('finds idempotent mutations by their key argument or the @idempotent directive', () => {
    const sdl = parse(`
      directive @idempotent(ttlSeconds: Int) on FIELD_DEFINITION
      type Mutation { a(idempotencyKey: String): Int  b: Int @idempotent(ttlSeconds: 60)  c: Int }
      extend type Mutation { d(idempotencyKey: String): Int }`);
    expect(idempotentMutationsFromSchema(sdl)).toEqual(['a', 'b', 'd']);
  });

  it('ships metadata that matches schema/schema.graphql (npm run clients:metadata regenerates it)', () => {
    const sdl = readFileSync(path.join(__dirname, '../../schema/schema.graphql'), 'utf8');
    expect(idempotentMutationsFromSchema(parse(sdl))).toEqual([...IDEMPOTENT_MUTATIONS]);
  });
});

describe('keys of intents', () => {
  it('keeps the key of a named intent until its outcome is known', async () => {
    const intents = memoryIntentStore();
    const call = { intent: 'checkout:cart-1' };
    const first = await keyForCall(call, intents);
    expect(first).toMatch(/^[0-9a-f-]{36}$/);
    await settleCall(call, intents, false);
    expect(await keyForCall(call, intents)).toBe(first);
    await settleCall(call, intents, true);
    expect(await keyForCall(call, intents)).not.toBe(first);
  });

  it('gives every call without an intent a new key, and uses a key given by the caller', async () => {
    const intents = memoryIntentStore();
    expect(await keyForCall(undefined, intents)).not.toBe(await keyForCall(undefined, intents));
    expect(await keyForCall({ key: 'mine', intent: 'x' }, intents)).toBe('mine');
  });

  it('keeps keys in a Web Storage under a prefix', async () => {
    const items = new Map<string, string>();
    const storage = {
      getItem: (name: string) => items.get(name) ?? null,
      setItem: (name: string, value: string) => void items.set(name, value),
      removeItem: (name: string) => void items.delete(name),
    };
    const key = await keyForCall({ intent: 'checkout:cart-2' }, webStorageIntentStore(storage));
    expect(Object.fromEntries(items)).toEqual({ 'idempotency-intent:checkout:cart-2': key });
    expect(() => webStorageIntentStore()).toThrow(/no localStorage/);
  });
});

describe('the replay marker', () => {
  it('reads replayed, firstExecutedAt and expiresAt from extensions.idempotency', () => {
    const entry = {
      path: ['createOrder'],
      key: 'k',
      replayed: true,
      firstExecutedAt: '2026-01-01T00:00:00.000Z',
      expiresAt: '2026-01-02T00:00:00.000Z',
    };
    expect(readIdempotency({ extensions: { idempotency: [entry] } })).toEqual({
      replayed: true,
      firstExecutedAt: entry.firstExecutedAt,
      expiresAt: entry.expiresAt,
      key: 'k',
      entries: [entry],
    });
    expect(readIdempotency({ extensions: {} })).toBeUndefined();
    expect(readIdempotency(undefined)).toBeUndefined();
  });
});
