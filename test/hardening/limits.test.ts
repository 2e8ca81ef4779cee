import { randomUUID } from 'node:crypto';
import { getIntrospectionQuery } from 'graphql';
import { withTimeout } from '../../src/timeout';
import { countRows, withClient } from '../support/database';
import { lockProducts, lockWaiters } from '../support/locks';
import { codeOf } from '../support/responses';
import { type GraphQLResponse, startTestServer, type TestServer } from '../support/server';

/** 40 characters, as an operator would set. */
const PRODUCTION_SECRET = 'hardening-limits-production-secret-01234';

const CREATE = `mutation Place($input: CreateOrderInput!, $key: IdempotencyKey) {
  createOrder(input: $input, idempotencyKey: $key) { order { id status lines { quantity product { id } } } }
}`;

interface Created {
  createOrder: { order: { id: string; status: string } } | null;
}

async function productIds(server: TestServer): Promise<string[]> {
  return withClient(server.databaseUrl, async (client) => {
    const { rows } = await client.query<{ id: string }>('SELECT id FROM products ORDER BY sku');
    return rows.map((row) => row.id);
  });
}

function ordersOf(server: TestServer, user: string): Promise<number> {
  return countRows(server, 'SELECT count(*) FROM orders WHERE user_id = $1', [user]);
}

function recordsOf(server: TestServer, user: string): Promise<number> {
  return countRows(server, 'SELECT count(*) FROM idempotency_records WHERE user_id = $1', [user]);
}

/** Posts a raw body, so tests can send what the harness's gql() never would. */
async function postRaw(url: string, body: string, headers: Record<string, string> = {}): Promise<GraphQLResponse> {
  const response = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body });
  const text = await response.text();
  let parsed: GraphQLResponse['body'];
  try {
    parsed = JSON.parse(text) as GraphQLResponse['body'];
  } catch {
    parsed = { errors: [{ message: text }] };
  }
  return { status: response.status, headers: response.headers, body: parsed };
}

function messages<T>(response: GraphQLResponse<T>): string {
  return (response.body.errors ?? []).map((error) => error.message).join('\n');
}

/** One aliased createOrder field per key, each with its own idempotencyKey argument. */
function createOrderFields(productId: string, keys: string[]): string {
  return keys
    .map(
      (key, index) =>
        `o${index}: createOrder(input: { lines: [{ productId: "${productId}", quantity: 1 }] }, idempotencyKey: "${key}") { order { id } }`,
    )
    .join('\n');
}

function keysFor(prefix: string, n: number): string[] {
  return Array.from({ length: n }, (_, index) => `${prefix}-${index}`);
}

async function waitUntil(condition: () => Promise<boolean>, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await condition()) return;
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
  throw new Error(`timed out waiting until ${what}`);
}

describe('query limits in development', () => {
  let server: TestServer;
  let token: string;
  let products: string[];

  beforeAll(async () => {
    server = await startTestServer({ env: { NODE_ENV: 'development', IDEMPOTENCY_PURGE_INTERVAL_SECONDS: '0' } });
    token = await server.token('limits-user');
    products = await productIds(server);
  });
  afterAll(async () => {
    await server?.close();
  });

  /** `{ products { edges { node { id } } } }` (depth 4) wrapped in inline fragments, each one level deeper. */
  function queryOfDepth(depth: number): string {
    const wrappers = depth - 4;
    return `{ ${'... on Query { '.repeat(wrappers)}products(first: 1) { edges { node { id } } }${' }'.repeat(wrappers)} }`;
  }

  it('accepts a query at the depth limit of 10', async () => {
    const response = await server.gql(queryOfDepth(10));
    expect(response.body.errors).toBeUndefined();
  });

  it('rejects a query deeper than 10 with GRAPHQL_VALIDATION_FAILED naming the depth limit', async () => {
    const response = await server.gql(queryOfDepth(11));
    expect(response.body.data).toBeUndefined();
    expect(codeOf(response)).toBe('GRAPHQL_VALIDATION_FAILED');
    expect(messages(response)).toMatch(/depth limit of 10 exceeded, found 11/i);
  });

  it('rejects 20 aliased createOrder fields with their own keys and executes none of them', async () => {
    const ordersBefore = await countRows(server, 'SELECT count(*) FROM orders');
    const keys = keysFor(randomUUID(), 20);
    const response = await server.gql(`mutation { ${createOrderFields(products[0]!, keys)} }`, undefined, { token, autoKey: false });

    expect(response.body.data).toBeUndefined();
    expect(codeOf(response)).toBe('GRAPHQL_VALIDATION_FAILED');
    expect(messages(response)).toMatch(/aliases limit of 10 exceeded/i);
    expect(await countRows(server, 'SELECT count(*) FROM orders')).toBe(ordersBefore);
    expect(await countRows(server, 'SELECT count(*) FROM idempotency_records WHERE key = ANY($1)', [keys])).toBe(0);
  });

  it('rejects 11 aliases in a query and accepts 10', async () => {
    const aliased = (n: number) =>
      `{ ${Array.from({ length: n }, (_, index) => `p${index}: product(id: "${products[index % products.length]}") { id }`).join(' ')} }`;
    const accepted = await server.gql(aliased(10));
    expect(accepted.body.errors).toBeUndefined();
    const rejected = await server.gql(aliased(11));
    expect(codeOf(rejected)).toBe('GRAPHQL_VALIDATION_FAILED');
    expect(messages(rejected)).toMatch(/aliases limit of 10 exceeded, found 11/i);
    const inFragment = await server.gql(`{ ...Many } fragment Many on Query ${aliased(11)}`);
    expect(codeOf(inFragment)).toBe('GRAPHQL_VALIDATION_FAILED');
  });

  it('executes an operation of 5 createOrder fields with their own keys', async () => {
    const user = 'limits-five';
    const response = await server.gql(`mutation { ${createOrderFields(products[1]!, keysFor('five', 5))} }`, undefined, {
      token: await server.token(user),
      autoKey: false,
    });
    expect(response.body.errors).toBeUndefined();
    expect(await ordersOf(server, user)).toBe(5);
  });

  it('rejects 6 root mutation fields with GRAPHQL_VALIDATION_FAILED and executes none of them', async () => {
    const user = 'limits-six';
    const response = await server.gql(`mutation { ${createOrderFields(products[1]!, keysFor('six', 6))} }`, undefined, {
      token: await server.token(user),
      autoKey: false,
    });
    expect(response.body.data).toBeUndefined();
    expect(codeOf(response)).toBe('GRAPHQL_VALIDATION_FAILED');
    expect(messages(response)).toMatch(/mutation field limit of 5 exceeded, found 6/i);
    expect(await ordersOf(server, user)).toBe(0);
    expect(await recordsOf(server, user)).toBe(0);
  });

  it('counts mutation fields inside inline fragments and fragment spreads toward the limit of 5', async () => {
    const user = 'limits-fragments';
    const options = { token: await server.token(user), autoKey: false };
    const inline = await server.gql(
      `mutation { ... on Mutation { ${createOrderFields(products[1]!, keysFor('inline', 6))} } }`,
      undefined,
      options,
    );
    const spread = await server.gql(
      `mutation { ...Six } fragment Six on Mutation { ${createOrderFields(products[1]!, keysFor('spread', 6))} }`,
      undefined,
      options,
    );

    for (const response of [inline, spread]) {
      expect(response.body.data).toBeUndefined();
      expect(codeOf(response)).toBe('GRAPHQL_VALIDATION_FAILED');
    }
    expect(await ordersOf(server, user)).toBe(0);
    expect(await recordsOf(server, user)).toBe(0);
  });

  it('accepts a document of fewer than 2000 tokens', async () => {
    const response = await server.gql(`{ ${'__typename '.repeat(1990)}}`);
    expect(response.body.errors).toBeUndefined();
    expect(response.body.data).toEqual({ __typename: 'Query' });
  });

  it('rejects a document of more than 2000 tokens with GRAPHQL_PARSE_FAILED', async () => {
    const response = await server.gql(`{ ${'__typename '.repeat(2001)}}`);
    expect(response.body.data).toBeUndefined();
    expect(codeOf(response)).toBe('GRAPHQL_PARSE_FAILED');
    expect(messages(response)).toMatch(/2000 tokens/);
  });

  it('accepts 20 directives and rejects 21 with GRAPHQL_VALIDATION_FAILED', async () => {
    const directives = (n: number) => `{ products(first: 1) { edges { node { id ${'__typename @skip(if: false) '.repeat(n)}} } } }`;
    const accepted = await server.gql(directives(20));
    expect(accepted.body.errors).toBeUndefined();
    const rejected = await server.gql(directives(21));
    expect(rejected.body.data).toBeUndefined();
    expect(codeOf(rejected)).toBe('GRAPHQL_VALIDATION_FAILED');
    expect(messages(rejected)).toMatch(/directives limit of 20 exceeded, found 21/i);
  });

  it('rejects a query costing more than 5000 with GRAPHQL_VALIDATION_FAILED', async () => {
    const response = await server.gql('{ products(first: 1000) { edges { node { id sku name priceCents currency stock } } } }');
    expect(response.body.data).toBeUndefined();
    expect(codeOf(response)).toBe('GRAPHQL_VALIDATION_FAILED');
    expect(messages(response)).toMatch(/cost limit of 5000 exceeded/i);
  });

  it('accepts the queries clients send: a full page of products, and orders with their lines and products', async () => {
    const user = 'limits-reader';
    const readerToken = await server.token(user);
    const placed = await server.gql<Created>(
      CREATE,
      { input: { lines: [{ productId: products[2], quantity: 2 }], note: 'legit' }, key: randomUUID() },
      { token: readerToken, autoKey: false },
    );
    expect(placed.body.errors).toBeUndefined();

    const catalog = await server.gql<{ products: { edges: unknown[] } }>(
      `{ products(first: 100) { edges { cursor node { id sku name priceCents currency stock } } pageInfo { hasNextPage endCursor } } }`,
    );
    expect(catalog.body.errors).toBeUndefined();
    expect(catalog.body.data?.products.edges.length).toBe(products.length);

    const orderFields = `id status totalCents currency note createdAt cancelledAt
      lines { quantity unitPriceCents lineTotalCents product { id sku name priceCents currency stock } }`;
    const literal = await server.gql<{ orders: { edges: { node: { id: string } }[] } }>(
      `query MyOrders { orders(first: 20) { edges { cursor node { ${orderFields} } } pageInfo { hasNextPage endCursor } } }`,
      undefined,
      { token: readerToken },
    );
    expect(literal.body.errors).toBeUndefined();
    expect(literal.body.data?.orders.edges.map((edge) => edge.node.id)).toEqual([placed.body.data?.createOrder?.order.id]);

    const paged = await server.gql<{ orders: { edges: unknown[] } }>(
      `query MyOrders($first: Int = 20, $after: String) {
        orders(first: $first, after: $after) { edges { cursor node { ${orderFields} } } pageInfo { hasNextPage endCursor } }
      }`,
      { first: 100 },
      { token: readerToken },
    );
    expect(paged.body.errors).toBeUndefined();
    expect(paged.body.data?.orders.edges).toHaveLength(1);
  });

  it("answers the Sandbox's introspection query", async () => {
    const query = getIntrospectionQuery({
      descriptions: true,
      specifiedByUrl: true,
      directiveIsRepeatable: true,
      schemaDescription: true,
      inputValueDeprecation: true,
    });
    const response = await server.gql<{ __schema: { types: { name: string }[] } }>(query, undefined, {
      headers: { 'apollo-require-preflight': 'true' },
    });
    expect(response.body.errors).toBeUndefined();
    expect(response.body.data?.__schema.types.map((type) => type.name)).toEqual(
      expect.arrayContaining(['CreateOrderInput', 'Order', 'IdempotencyKey']),
    );
  });

  it('suggests the intended field for a misspelled one', async () => {
    const response = await server.gql('{ products(first: 1) { edges { node { nam } } } }');
    expect(codeOf(response)).toBe('GRAPHQL_VALIDATION_FAILED');
    expect(messages(response)).toMatch(/Did you mean "name"/);
  });

  it('answers a body over 100 kB with HTTP 413 and executes nothing', async () => {
    const user = 'limits-big-body';
    const body = JSON.stringify({
      query: CREATE,
      variables: { input: { lines: [{ productId: products[3], quantity: 1 }] }, key: 'big-body', padding: 'x'.repeat(110 * 1024) },
    });
    const response = await postRaw(server.url, body, { authorization: `Bearer ${await server.token(user)}` });
    expect(response.status).toBe(413);
    expect(await ordersOf(server, user)).toBe(0);
    expect(await recordsOf(server, user)).toBe(0);
  });

  it('accepts a body just under 100 kB', async () => {
    const body = JSON.stringify({ query: '{ __typename }', variables: { padding: 'x'.repeat(95 * 1024) } });
    const response = await postRaw(server.url, body);
    expect(response.status).toBe(200);
    expect(response.body.data).toEqual({ __typename: 'Query' });
  });

  it('answers a batched JSON array body with HTTP 400 and executes none of its operations', async () => {
    const user = 'limits-batch';
    const operation = (key: string) => ({ query: CREATE, variables: { input: { lines: [{ productId: products[3], quantity: 1 }] }, key } });
    const response = await postRaw(server.url, JSON.stringify([operation('batch-1'), operation('batch-2')]), {
      authorization: `Bearer ${await server.token(user)}`,
    });
    expect(response.status).toBe(400);
    expect(response.body.data).toBeUndefined();
    expect(response.body.errors?.length).toBeGreaterThan(0);
    expect(await ordersOf(server, user)).toBe(0);
    expect(await recordsOf(server, user)).toBe(0);
  });
});

describe('schema exposure in production', () => {
  let production: TestServer;
  let explorer: TestServer;

  beforeAll(async () => {
    [production, explorer] = await Promise.all([
      startTestServer({ env: { NODE_ENV: 'production', JWT_SECRET: PRODUCTION_SECRET } }),
      startTestServer({ env: { NODE_ENV: 'production', JWT_SECRET: PRODUCTION_SECRET, GRAPHQL_EXPLORER: 'true' } }),
    ]);
  });
  afterAll(async () => {
    await production?.close();
    await explorer?.close();
  });

  it('gives no "Did you mean" suggestion for a misspelled field, argument, type or input field', async () => {
    const token = await production.token('prod-user');
    const responses = await Promise.all([
      production.gql('{ products(first: 1) { edges { node { nam } } } }'),
      production.gql('{ products(frist: 1) { edges { node { id } } } }'),
      production.gql('query ($input: CreateOrderInpt!) { viewer { id } }'),
      production.gql(
        CREATE,
        { input: { lines: [{ productId: randomUUID(), quantity: 1, quantiy: 1 }] }, key: 'typo' },
        { token, autoKey: false },
      ),
    ]);
    for (const response of responses) {
      expect(response.body.errors?.length).toBeGreaterThan(0);
      expect(messages(response)).not.toMatch(/did you mean/i);
    }
    expect(messages(responses[0]!)).not.toContain('"name"');
  });

  it('rejects introspection, by __schema or by __type', async () => {
    for (const query of [getIntrospectionQuery(), '{ __type(name: "CreateOrderInput") { inputFields { name } } }']) {
      const response = await production.gql(query);
      expect(response.body.data).toBeUndefined();
      expect(codeOf(response)).toBe('GRAPHQL_VALIDATION_FAILED');
    }
  });

  it('answers introspection when GRAPHQL_EXPLORER=true', async () => {
    const response = await explorer.gql<{ __schema: { types: { name: string }[] } }>(getIntrospectionQuery());
    expect(response.body.errors).toBeUndefined();
    expect(response.body.data?.__schema.types.map((type) => type.name)).toContain('CreateOrderInput');
  });
});

describe('REQUEST_TIMEOUT_MS', () => {
  let server: TestServer;
  let products: string[];

  beforeAll(async () => {
    // The lock and statement timeouts are ten minutes: only the request timeout can answer a blocked request.
    server = await startTestServer({
      env: {
        REQUEST_TIMEOUT_MS: '500',
        IDEMPOTENCY_WAIT_MS: '600000',
        STATEMENT_TIMEOUT_MS: '600000',
        IDEMPOTENCY_PURGE_INTERVAL_SECONDS: '0',
      },
    });
    products = await productIds(server);
  });
  afterAll(async () => {
    await server?.close();
  });

  it('answers a createOrder blocked past the timeout with 503 SERVICE_UNAVAILABLE, then replays the order it committed', async () => {
    const user = 'timeout-user';
    const token = await server.token(user);
    const input = { lines: [{ productId: products[0], quantity: 1 }] };
    const release = await lockProducts(server.databaseUrl, [products[0]!]);
    try {
      // 30 s is sixty request timeouts: the bound only turns a hang into a clear failure.
      const timedOut = await withTimeout(
        server.gql<Created>(CREATE, { input, key: 'slow-order' }, { token, autoKey: false }),
        30_000,
        'the request timeout to answer the blocked createOrder',
      );
      expect(timedOut.status).toBe(503);
      expect(timedOut.headers.get('retry-after')).toMatch(/^\d+$/);
      expect(timedOut.headers.get('idempotent-replayed')).toBeNull();
      expect(codeOf(timedOut)).toBe('SERVICE_UNAVAILABLE');
      expect(timedOut.body.data ?? null).toBeNull();
      // Answered while its transaction still waits for the held lock.
      expect(await lockWaiters(server.databaseUrl)).toBe(1);
      expect(await ordersOf(server, user)).toBe(0);
    } finally {
      await release();
    }

    await waitUntil(async () => (await ordersOf(server, user)) === 1, 'the blocked order committed');
    const retry = await server.gql<Created>(CREATE, { input, key: 'slow-order' }, { token, autoKey: false });
    expect(retry.status).toBe(200);
    expect(retry.body.errors).toBeUndefined();
    expect(retry.headers.get('idempotent-replayed')).toBe('true');
    const [stored] = await withClient(server.databaseUrl, async (client) => {
      return (await client.query<{ id: string }>('SELECT id FROM orders WHERE user_id = $1', [user])).rows;
    });
    expect(retry.body.data?.createOrder?.order.id).toBe(stored?.id);
    expect(await ordersOf(server, user)).toBe(1);
  });

  it('answers fast requests normally', async () => {
    const response = await server.gql('{ products(first: 1) { edges { node { id } } } }');
    expect(response.status).toBe(200);
    expect(response.body.errors).toBeUndefined();
  });
});

describe('STATEMENT_TIMEOUT_MS', () => {
  let server: TestServer;
  let products: string[];

  beforeAll(async () => {
    // The lock timeout (IDEMPOTENCY_WAIT_MS) and the request timeout are ten minutes here, so
    // only the statement timeout can end a statement blocked on a row lock.
    server = await startTestServer({
      env: {
        STATEMENT_TIMEOUT_MS: '300',
        IDEMPOTENCY_WAIT_MS: '600000',
        REQUEST_TIMEOUT_MS: '600000',
        IDEMPOTENCY_PURGE_INTERVAL_SECONDS: '0',
      },
    });
    products = await productIds(server);
  });
  afterAll(async () => {
    await server?.close();
  });

  it('cancels a createOrder blocked by a lock that is never released with SERVICE_UNAVAILABLE, stores nothing, and lets the key be used again', async () => {
    const user = 'statement-timeout-user';
    const token = await server.token(user);
    const input = { lines: [{ productId: products[0], quantity: 1 }] };
    const release = await lockProducts(server.databaseUrl, [products[0]!]);
    let failed: GraphQLResponse<Created>;
    try {
      // The lock is released only after the answer. 30 s is a hundred statement timeouts: the
      // bound only turns a hang (no statement timeout) into a clear failure on a slow machine.
      failed = await withTimeout(
        server.gql<Created>(CREATE, { input, key: 'cancelled-statement' }, { token, autoKey: false }),
        30_000,
        'the statement timeout to end the blocked createOrder',
      );
      // The statement really ended in the database: nothing waits for the still-held lock.
      expect(await lockWaiters(server.databaseUrl)).toBe(0);
    } finally {
      await release();
    }
    expect(codeOf(failed)).toBe('SERVICE_UNAVAILABLE');
    expect(failed.body.data?.createOrder ?? null).toBeNull();
    expect(JSON.stringify(failed.body)).not.toMatch(/statement timeout|canceling statement|select /i);
    expect(await ordersOf(server, user)).toBe(0);
    expect(await recordsOf(server, user)).toBe(0);

    const retry = await server.gql<Created>(CREATE, { input, key: 'cancelled-statement' }, { token, autoKey: false });
    expect(retry.body.errors).toBeUndefined();
    expect(retry.body.data?.createOrder?.order.status).toBe('PLACED');
    expect(retry.headers.get('idempotent-replayed')).toBeNull();
    expect(await ordersOf(server, user)).toBe(1);
    expect(await recordsOf(server, user)).toBe(1);
  });
});
