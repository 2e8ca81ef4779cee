import { randomUUID } from 'node:crypto';
import { withClient } from './support/database';
import { type GraphQLResponse, startTestServer, type TestServer } from './support/server';

const CREATE_ORDER = `mutation Place($input: CreateOrderInput!) {
  createOrder(input: $input) { order { id lines { quantity product { id } } } }
}`;

interface LineInput {
  productId: string;
  quantity: number;
}

type PlaceResponse = GraphQLResponse<{ createOrder: { order: { id: string } } }>;

describe('concurrent orders', () => {
  let server: TestServer;
  const productIds = new Map<string, string>();

  beforeAll(async () => {
    server = await startTestServer();
    const rows = await sql<{ id: string; sku: string }>('select id, sku from products');
    for (const row of rows) productIds.set(row.sku, row.id);
  });

  afterAll(async () => {
    await server?.close();
  });

  async function sql<T>(text: string, params: unknown[] = []): Promise<T[]> {
    return withClient(server.databaseUrl, async (client) => (await client.query(text, params)).rows as T[]);
  }

  function productId(sku: string): string {
    const id = productIds.get(sku);
    if (!id) throw new Error(`no seeded product ${sku}`);
    return id;
  }

  async function stockOf(id: string): Promise<number> {
    const [row] = await sql<{ stock: number }>('select stock from products where id = $1', [id]);
    return row!.stock;
  }

  async function ordersContaining(id: string): Promise<number> {
    const [row] = await sql<{ count: number }>('select count(distinct order_id)::int as count from order_lines where product_id = $1', [
      id,
    ]);
    return row!.count;
  }

  async function countOrders(): Promise<number> {
    const [row] = await sql<{ count: number }>('select count(*)::int as count from orders');
    return row!.count;
  }

  async function placeAs(user: string, lines: LineInput[]): Promise<PlaceResponse> {
    const token = await server.token(user);
    return server.gql(CREATE_ORDER, { input: { lines } }, { token, headers: { 'idempotency-key': randomUUID() } });
  }

  /** Sorts responses into successes and error codes; anything else fails the test with the response. */
  function tally(responses: PlaceResponse[]): { placed: string[]; codes: string[] } {
    const placed: string[] = [];
    const codes: string[] = [];
    for (const response of responses) {
      const order = response.body.data?.createOrder?.order;
      if (order && !response.body.errors) placed.push(order.id);
      else codes.push(String(response.body.errors?.[0]?.extensions?.code ?? JSON.stringify(response.body)));
    }
    return { placed, codes };
  }

  it('sells a stock of 5 to exactly 5 of 20 simultaneous orders and refuses the rest with INSUFFICIENT_STOCK', async () => {
    const mug = productId('MUG-001');
    await sql('update products set stock = 5 where id = $1', [mug]);
    const ordersBefore = await countOrders();

    const responses = await Promise.all(
      Array.from({ length: 20 }, (_, index) => placeAs(`buyer-${index % 4}`, [{ productId: mug, quantity: 1 }])),
    );

    const { placed, codes } = tally(responses);
    expect(codes).toEqual(Array(15).fill('INSUFFICIENT_STOCK'));
    expect(placed).toHaveLength(5);
    expect(new Set(placed).size).toBe(5);
    expect(await stockOf(mug)).toBe(0);
    expect(await ordersContaining(mug)).toBe(5);
    expect((await countOrders()) - ordersBefore).toBe(5);
    const stored = await sql<{ id: string }>('select id::text from orders where id = any($1::uuid[]) order by id', [placed]);
    expect(stored.map((row) => row.id)).toEqual([...placed].sort());
  });

  it('never deadlocks when simultaneous orders list the same two products in opposite orders', async () => {
    const cap = productId('CAP-001');
    const bag = productId('BAG-001');
    await sql('update products set stock = 12 where id = any($1::uuid[])', [[cap, bag]]);

    const responses = await Promise.all(
      Array.from({ length: 30 }, (_, index) =>
        placeAs(
          `pair-buyer-${index}`,
          index % 2 === 0
            ? [
                { productId: cap, quantity: 1 },
                { productId: bag, quantity: 1 },
              ]
            : [
                { productId: bag, quantity: 1 },
                { productId: cap, quantity: 1 },
              ],
        ),
      ),
    );

    const { placed, codes } = tally(responses);
    expect(codes).toEqual(Array(18).fill('INSUFFICIENT_STOCK'));
    expect(placed).toHaveLength(12);
    expect([await stockOf(cap), await stockOf(bag)]).toEqual([0, 0]);
    expect([await ordersContaining(cap), await ordersContaining(bag)]).toEqual([12, 12]);
  });

  it('places every one of many simultaneous crossed orders when stock suffices', async () => {
    const tee = productId('TEE-001');
    const sock = productId('SOCK-001');
    await sql('update products set stock = 100 where id = any($1::uuid[])', [[tee, sock]]);

    const responses = await Promise.all(
      Array.from({ length: 40 }, (_, index) =>
        placeAs(`crossed-buyer-${index % 5}`, [
          { productId: index % 2 === 0 ? tee : sock, quantity: 2 },
          { productId: index % 2 === 0 ? sock : tee, quantity: 1 },
        ]),
      ),
    );

    const { placed, codes } = tally(responses);
    expect(codes).toEqual([]);
    expect(placed).toHaveLength(40);
    // 20 orders take 2 tees and 1 sock, the other 20 take 1 tee and 2 socks.
    expect([await stockOf(tee), await stockOf(sock)]).toEqual([100 - 60, 100 - 60]);
    expect(await ordersContaining(tee)).toBe(40);
  });
});
