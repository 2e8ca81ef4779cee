import { randomUUID } from 'node:crypto';
import { ApolloClient, ApolloLink, HttpLink, InMemoryCache } from '@apollo/client';
import { RetryLink } from '@apollo/client/link/retry';
import { createClient, fetchExchange } from '@urql/core';
import { createIdempotencyLink } from '../../clients/src/apollo';
import { type IntentStore, memoryIntentStore } from '../../clients/src/intents';
import { readIdempotency } from '../../clients/src/marker';
import type { RetryOptions } from '../../clients/src/policy';
import { idempotencyExchange } from '../../clients/src/urql';
import { CreateOrderDocument } from '../contract/generated/graphql';
import { type Fault, type FaultyProxy, type ProxiedRequest, startFaultyProxy } from '../contract/support/faulty-proxy';
import { withClient } from '../support/database';
import { startTestServer, type TestServer } from '../support/server';

// Short backoff: what is under test is which requests are sent again and with which key. The
// timeout only ends the wait of the delay-past-timeout fault, whose proxy waits for the client to go.
const RETRY: RetryOptions = { maxAttempts: 4, baseDelayMs: 10, maxDelayMs: 50, attemptTimeoutMs: 2_000 };

interface Placed {
  readonly orderId: string | undefined;
  readonly order: unknown;
  readonly replayed: boolean | undefined;
  readonly error: unknown;
}

interface PlaceOptions {
  /** The adapter is told no mutation takes a key. */
  readonly keyless?: boolean;
  /** The intent to name in the call, and the store its key is kept in. */
  readonly intent?: { readonly name: string; readonly store: IntentStore };
  readonly maxAttempts?: number;
}

/** One way of placing an order through a GraphQL client library with its idempotency adapter. */
interface ClientUnderTest {
  readonly name: string;
  place(url: string, token: string, input: unknown, options: PlaceOptions): Promise<Placed>;
}

function adapterOptions({ keyless, intent, maxAttempts }: PlaceOptions) {
  return { ...RETRY, maxAttempts: maxAttempts ?? RETRY.maxAttempts, idempotentMutations: keyless ? [] : undefined, intents: intent?.store };
}

const apollo: ClientUnderTest = {
  name: 'Apollo Client 4 with createIdempotencyLink',
  async place(url, token, input, options) {
    const client = new ApolloClient({
      cache: new InMemoryCache(),
      link: ApolloLink.from([
        createIdempotencyLink(adapterOptions(options)),
        new HttpLink({ uri: url, headers: { authorization: `Bearer ${token}` } }),
      ]),
    });
    try {
      const result = await client.mutate({
        mutation: CreateOrderDocument,
        variables: { input } as never,
        context: { idempotency: { intent: options.intent?.name } },
      });
      const order = result.data?.createOrder.order;
      return { orderId: order?.id, order: strip(order), replayed: readIdempotency(result)?.replayed, error: result.error };
    } catch (error) {
      return { orderId: undefined, order: undefined, replayed: undefined, error };
    } finally {
      client.stop();
    }
  },
};

const urql: ClientUnderTest = {
  name: 'urql with idempotencyExchange',
  async place(url, token, input, options) {
    const client = createClient({
      url,
      exchanges: [idempotencyExchange(adapterOptions(options)), fetchExchange],
      fetchOptions: { headers: { authorization: `Bearer ${token}` } },
    });
    const result = await client
      .mutation(CreateOrderDocument, { input } as never, { idempotency: { intent: options.intent?.name } })
      .toPromise();
    const order = result.data?.createOrder.order;
    return { orderId: order?.id, order: strip(order), replayed: readIdempotency(result)?.replayed, error: result.error };
  },
};

/** The order as data, without the cache's __typename fields the two libraries add differently. */
function strip(value: unknown): unknown {
  return value === undefined ? undefined : JSON.parse(JSON.stringify(value, (name, field) => (name === '__typename' ? undefined : field)));
}

/** The order the server returned to its first execution of the intent (the answer that was not a replay). */
function firstExecution(requests: readonly ProxiedRequest[]): unknown {
  const first = requests.find((request) => request.answer !== undefined && request.replayedHeader === undefined);
  const body = first?.answer === undefined ? undefined : (JSON.parse(first.answer) as { data?: { createOrder?: { order?: unknown } } });
  return strip(body?.data?.createOrder?.order);
}

describe.each([apollo, urql])('$name through a faulty network', (client) => {
  let server: TestServer;
  let proxy: FaultyProxy | undefined;
  let mug: string;

  beforeAll(async () => {
    server = await startTestServer();
    const [row] = await withClient(
      server.databaseUrl,
      async (db) => (await db.query<{ id: string }>("select id from products where sku = 'MUG-001'")).rows,
    );
    mug = row!.id;
  });
  afterEach(async () => {
    await proxy?.close();
    proxy = undefined;
  });
  afterAll(async () => {
    await server?.close();
  });

  const ordersOf = (user: string) =>
    withClient(server.databaseUrl, async (db) =>
      (await db.query<{ id: string }>('select id from orders where user_id = $1', [user])).rows.map((row) => row.id),
    );

  async function placeThrough(fault: Fault, options: PlaceOptions = {}) {
    const user = `client-${randomUUID()}`;
    proxy = await startFaultyProxy(server.url, fault);
    const placed = await client.place(proxy.url, await server.token(user), { lines: [{ productId: mug, quantity: 1 }] }, options);
    return { user, placed, requests: proxy.requests.filter((request) => request.operation === 'createOrder') };
  }

  it.each<Fault>([
    'drop-response',
    'reset-mid-request',
    'delay-past-timeout',
    'answer-503',
  ])('places exactly one order through %s, and the final answer is the first execution', async (fault) => {
    const { user, placed, requests } = await placeThrough(fault);

    expect(placed.error).toBeUndefined();
    expect(await ordersOf(user)).toEqual([placed.orderId]);
    expect(placed.order).toEqual(firstExecution(requests));
    expect(requests.length).toBeGreaterThanOrEqual(2);
    expect(requests[0]?.faulted).toBe(true);
    // One key for the whole call, sent on every attempt.
    expect(requests[0]?.key).toEqual(expect.stringMatching(/^[0-9a-f-]{36}$/));
    expect(new Set(requests.map((request) => request.key)).size).toBe(1);
    // Where the first attempt committed, the answer that finally arrived is its replay.
    if (fault !== 'answer-503') expect(placed.replayed).toBe(true);
  });

  it.each<Fault>(['drop-response', 'answer-503'])('does not send a keyless mutation again after %s', async (fault) => {
    const { user, placed, requests } = await placeThrough(fault, { keyless: true });

    expect(placed.error).toBeDefined();
    expect(requests).toHaveLength(1);
    expect(requests[0]).toMatchObject({ faulted: true, key: undefined });
    // The server refused it (IDEMPOTENCY_KEY_MISSING) or never saw it: nothing was ordered.
    expect(await ordersOf(user)).toEqual([]);
  });

  it('reuses the key of a named intent on a manual retry after the adapter gave up', async () => {
    const intent = { name: `checkout:${randomUUID()}`, store: memoryIntentStore() };
    const { user, placed: gaveUp, requests } = await placeThrough('drop-response', { intent, maxAttempts: 1 });
    expect(gaveUp.error).toBeDefined();
    expect(requests).toHaveLength(1);

    // The user presses "try again": the same intent, so the same key, and the first order's replay.
    const retried = await client.place(proxy!.url, await server.token(user), { lines: [{ productId: mug, quantity: 1 }] }, { intent });

    expect(retried.error).toBeUndefined();
    expect(retried.replayed).toBe(true);
    expect(await ordersOf(user)).toEqual([retried.orderId]);
    expect(proxy!.requests.map((request) => request.key)).toEqual([requests[0]?.key, requests[0]?.key]);
    // The outcome is known now: the next call of that intent gets a new key.
    expect(await intent.store.get(intent.name)).toBeUndefined();
  });

  it('sends a new key for a new call with the same input', async () => {
    const first = await placeThrough('none');
    const user = first.user;
    const second = await client.place(proxy!.url, await server.token(user), { lines: [{ productId: mug, quantity: 1 }] }, {});
    expect(second.orderId).not.toBe(first.placed.orderId);
    expect((await ordersOf(user)).sort()).toEqual([first.placed.orderId, second.orderId].sort());
  });
});

describe('Apollo Client 4 with a RetryLink in front of createIdempotencyLink', () => {
  let server: TestServer;
  let proxy: FaultyProxy | undefined;

  beforeAll(async () => {
    server = await startTestServer();
  });
  afterAll(async () => {
    await proxy?.close();
    await server?.close();
  });

  it('sends the same key on every RetryLink attempt, and one order is placed', async () => {
    const user = `retry-link-${randomUUID()}`;
    proxy = await startFaultyProxy(server.url, 'drop-response');
    const [row] = await withClient(
      server.databaseUrl,
      async (db) => (await db.query<{ id: string }>("select id from products where sku = 'CAP-001'")).rows,
    );
    const client = new ApolloClient({
      cache: new InMemoryCache(),
      link: ApolloLink.from([
        new RetryLink({ delay: { initial: 10, max: 50, jitter: true }, attempts: { max: 3 } }),
        // The idempotency link gives up at once: every further attempt is RetryLink's.
        createIdempotencyLink({ ...RETRY, maxAttempts: 1 }),
        new HttpLink({ uri: proxy.url, headers: { authorization: `Bearer ${await server.token(user)}` } }),
      ]),
    });
    const result = await client.mutate({
      mutation: CreateOrderDocument,
      variables: { input: { lines: [{ productId: row!.id, quantity: 1 }] } },
    });
    client.stop();

    const keys = proxy.requests.map((request) => request.key);
    expect(keys).toHaveLength(2);
    expect(new Set(keys).size).toBe(1);
    expect(readIdempotency(result)?.replayed).toBe(true);
    const orders = await withClient(
      server.databaseUrl,
      async (db) => (await db.query('select id from orders where user_id = $1', [user])).rows,
    );
    expect(orders).toEqual([{ id: result.data?.createOrder.order.id }]);
  });
});
