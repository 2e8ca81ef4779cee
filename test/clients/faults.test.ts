import { randomUUID } from 'node:crypto';
import { ApolloClient, ApolloLink, HttpLink, InMemoryCache } from '@apollo/client';
import { createClient, fetchExchange } from '@urql/core';
import { createIdempotencyLink } from '../../clients/src/apollo';
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

/** One way of placing an order through a GraphQL client library with its idempotency adapter. */
interface ClientUnderTest {
  readonly name: string;
  place(url: string, token: string, input: unknown, options: { keyless?: boolean }): Promise<Placed>;
}

const apollo: ClientUnderTest = {
  name: 'Apollo Client 4 with createIdempotencyLink',
  async place(url, token, input, { keyless }) {
    const client = new ApolloClient({
      cache: new InMemoryCache(),
      link: ApolloLink.from([
        createIdempotencyLink({ ...RETRY, idempotentMutations: keyless ? [] : undefined }),
        new HttpLink({ uri: url, headers: { authorization: `Bearer ${token}` } }),
      ]),
    });
    try {
      const result = await client.mutate({ mutation: CreateOrderDocument, variables: { input } as never });
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
  async place(url, token, input, { keyless }) {
    const client = createClient({
      url,
      exchanges: [idempotencyExchange({ ...RETRY, idempotentMutations: keyless ? [] : undefined }), fetchExchange],
      fetchOptions: { headers: { authorization: `Bearer ${token}` } },
    });
    const result = await client.mutation(CreateOrderDocument, { input } as never).toPromise();
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

  async function placeThrough(fault: Fault, options: { keyless?: boolean } = {}) {
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

  it('sends a new key for a new call with the same input', async () => {
    const first = await placeThrough('none');
    const user = first.user;
    const second = await client.place(proxy!.url, await server.token(user), { lines: [{ productId: mug, quantity: 1 }] }, {});
    expect(second.orderId).not.toBe(first.placed.orderId);
    expect((await ordersOf(user)).sort()).toEqual([first.placed.orderId, second.orderId].sort());
  });
});
