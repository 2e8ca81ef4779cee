import { createHash } from 'node:crypto';
import { withClient } from '../support/database';
import { type GraphQLResponse, startTestServer, type TestServer } from '../support/server';

// Automatic persisted queries are off (docs/graphql-over-http.md, Deviations): a request that
// names its operation only by hash would hide a mutation from the mutation rate limit.

const CREATE = `mutation($input: CreateOrderInput!, $key: IdempotencyKey) {
  createOrder(input: $input, idempotencyKey: $key) { order { id } }
}`;
const persistedQuery = { version: 1, sha256Hash: createHash('sha256').update(CREATE).digest('hex') };

describe('automatic persisted queries', () => {
  let server: TestServer;
  let token: string;
  let productId: string;

  beforeAll(async () => {
    server = await startTestServer({ env: { IDEMPOTENCY_PURGE_INTERVAL_SECONDS: '0' } });
    token = await server.token('apq-user');
    productId = await withClient(
      server.databaseUrl,
      async (client) => (await client.query<{ id: string }>('select id from products order by sku limit 1')).rows[0]!.id,
    );
  });
  afterAll(async () => {
    await server?.close();
  });

  async function post(body: Record<string, unknown>): Promise<GraphQLResponse> {
    const response = await fetch(server.url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json', authorization: `Bearer ${token}` },
      body: JSON.stringify(body),
    });
    return { status: response.status, headers: response.headers, body: (await response.json()) as GraphQLResponse['body'] };
  }

  async function orders(): Promise<number> {
    return withClient(server.databaseUrl, async (client) =>
      Number((await client.query<{ count: string }>("select count(*) from orders where user_id = 'apq-user'")).rows[0]!.count),
    );
  }

  const variables = (key: string) => ({ input: { lines: [{ productId, quantity: 1 }] }, key });

  it('refuses a request that sends only the hash with PERSISTED_QUERY_NOT_SUPPORTED', async () => {
    const response = await post({ variables: variables('apq-hash-only'), extensions: { persistedQuery } });
    expect(response.status).toBe(200);
    expect(response.body.data).toBeUndefined();
    expect(response.body.errors?.map((error) => error.extensions?.code)).toEqual(['PERSISTED_QUERY_NOT_SUPPORTED']);
    expect(await orders()).toBe(0);
  });

  it('refuses to register a query sent with its hash, and executes nothing', async () => {
    const response = await post({ query: CREATE, variables: variables('apq-register'), extensions: { persistedQuery } });
    expect(response.body.errors?.map((error) => error.extensions?.code)).toEqual(['PERSISTED_QUERY_NOT_SUPPORTED']);
    expect(await orders()).toBe(0);

    // The same request without the extension is served: the refusal is about persisted queries only.
    const plain = await post({ query: CREATE, variables: variables('apq-register') });
    expect(plain.body.errors).toBeUndefined();
    expect(await orders()).toBe(1);
  });
});
