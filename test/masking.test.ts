import { randomUUID } from 'node:crypto';
import { withClient } from './support/database';
import { startTestServer, type TestServer } from './support/server';

const ORDERS_WITH_LINES = '{ orders { edges { node { id lines { quantity product { name } } } } } }';

/** Text that would show a client the server's internals: SQL, table names, stack frames, file paths. */
const LEAKS = ['order_lines', 'select', 'insert', 'stack', '    at ', '/work', 'node_modules', '.ts:', '.js:'];

interface RawResponse {
  status: number;
  text: string;
  body: {
    data?: Record<string, unknown> | null;
    errors?: { message: string; extensions?: Record<string, unknown> }[];
  };
}

describe('error masking', () => {
  let server: TestServer;
  let token: string;
  let mugId: string;

  beforeAll(async () => {
    // Development mode is where Apollo would add stack traces, so it is the mode worth checking.
    server = await startTestServer({ env: { NODE_ENV: 'development' } });
    token = await server.token('masked-user');
    const [mug] = await sql<{ id: string }>("select id from products where sku = 'MUG-001'");
    mugId = mug!.id;
    const placed = await post(
      `mutation { createOrder(input: { lines: [{ productId: "${mugId}", quantity: 1 }] }) { order { id } } }`,
      true,
    );
    expect(placed.body.errors).toBeUndefined();
  });

  afterAll(async () => {
    await server?.close();
  });

  async function sql<T>(text: string): Promise<T[]> {
    return withClient(server.databaseUrl, async (client) => (await client.query(text)).rows as T[]);
  }

  /** POSTs a GraphQL document and keeps the exact response text, to search it for leaks. */
  async function post(query: string, mutation = false): Promise<RawResponse> {
    const headers: Record<string, string> = { 'content-type': 'application/json', authorization: `Bearer ${token}` };
    if (mutation) headers['idempotency-key'] = randomUUID();
    const response = await fetch(server.url, { method: 'POST', headers, body: JSON.stringify({ query }) });
    const text = await response.text();
    return { status: response.status, text, body: JSON.parse(text) as RawResponse['body'] };
  }

  async function withOrderLinesGone<T>(work: () => Promise<T>): Promise<T> {
    await sql('ALTER TABLE order_lines RENAME TO order_lines_gone');
    try {
      return await work();
    } finally {
      await sql('ALTER TABLE order_lines_gone RENAME TO order_lines');
    }
  }

  function expectNoLeak(text: string): void {
    for (const leak of LEAKS) expect(text.toLowerCase()).not.toContain(leak.toLowerCase());
  }

  it('masks an unexpected database failure in a query as INTERNAL_SERVER_ERROR, without SQL, stack or paths', async () => {
    const response = await withOrderLinesGone(() => post(ORDERS_WITH_LINES));

    expect(response.status).toBe(200);
    expect(response.body.errors?.length).toBeGreaterThan(0);
    for (const error of response.body.errors!) {
      expect(error.message).toBe('Internal server error');
      expect(error.extensions).toEqual({ code: 'INTERNAL_SERVER_ERROR' });
    }
    expectNoLeak(response.text);

    const restored = await post(ORDERS_WITH_LINES);
    expect(restored.body.errors).toBeUndefined();
    expect(restored.text).toContain('Ceramic mug');
  });

  it('masks an unexpected database failure in a mutation the same way, and writes nothing', async () => {
    const [before] = await sql<{ orders: number; stock: number }>(
      `select (select count(*)::int from orders) as orders, (select stock from products where sku = 'MUG-001') as stock`,
    );

    const response = await withOrderLinesGone(() =>
      post(`mutation { createOrder(input: { lines: [{ productId: "${mugId}", quantity: 2 }] }) { order { id } } }`, true),
    );

    expect(response.status).toBe(200);
    expect(response.body.data ?? null).toBeNull();
    expect(response.body.errors).toEqual([
      expect.objectContaining({ message: 'Internal server error', extensions: { code: 'INTERNAL_SERVER_ERROR' } }),
    ]);
    expectNoLeak(response.text);
    const [after] = await sql<{ orders: number; stock: number }>(
      `select (select count(*)::int from orders) as orders, (select stock from products where sku = 'MUG-001') as stock`,
    );
    expect(after).toEqual(before);
  });

  it('reports a domain error with its code and message but no stack trace', async () => {
    const orderId = randomUUID();

    const response = await post(`mutation { cancelOrder(input: { orderId: "${orderId}" }) { order { id } } }`, true);

    expect(response.body.errors).toHaveLength(1);
    const [error] = response.body.errors!;
    expect(error!.extensions?.code).toBe('ORDER_NOT_FOUND');
    expect(error!.message).toContain(orderId);
    expect(error!.extensions).not.toHaveProperty('stacktrace');
    expect(error!.extensions).not.toHaveProperty('exception');
    expectNoLeak(response.text);
  });

  it('reports an invalid query without a stack trace', async () => {
    const response = await post('{ orders { edges { node { secretField } } } }');

    expect(response.body.errors?.[0]?.extensions?.code).toBe('GRAPHQL_VALIDATION_FAILED');
    expect(response.body.errors?.[0]?.extensions).not.toHaveProperty('stacktrace');
    expectNoLeak(response.text);
  });
});
