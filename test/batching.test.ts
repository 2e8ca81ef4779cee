import { randomUUID } from 'node:crypto';
import { withClient } from './support/database';
import { startTestServer, type TestServer } from './support/server';

const ORDERS_WITH_LINES = '{ orders(first: 50) { edges { node { id lines { quantity product { name } } } } } }';

/** Statements one page of orders with lines and products may take: orders, lines, products, and one spare. */
const MAX_STATEMENTS = 4;

interface ExpectedLine {
  quantity: number;
  product: { name: string };
}

interface OrdersPage {
  orders: { edges: { node: { id: string; lines: ExpectedLine[] } }[] };
}

describe('batched loading of order lines and products', () => {
  let server: TestServer;
  let products: { id: string; name: string }[] = [];
  /** Per user: the orders placed, newest first, with the lines each was given. */
  const placed = new Map<number, { token: string; orders: { id: string; lines: ExpectedLine[] }[] }>();

  beforeAll(async () => {
    // The background purge would add statements of its own to the count.
    server = await startTestServer({ env: { IDEMPOTENCY_PURGE_INTERVAL_SECONDS: '0' } });
    products = await withClient(
      server.databaseUrl,
      async (client) => (await client.query<{ id: string; name: string }>('select id, name from products order by sku')).rows,
    );
    for (const count of [10, 50]) {
      const token = await server.token(`batch-user-${count}`);
      const orders: { id: string; lines: ExpectedLine[] }[] = [];
      for (let index = 0; index < count; index++) {
        const lineCount = 2 + (index % 2);
        const lines = Array.from({ length: lineCount }, (_, position) => ({
          product: products[(index * 3 + position) % products.length]!,
          quantity: 1 + ((index + position) % 3),
        }));
        const response = await server.gql<{ createOrder: { order: { id: string } } }>(
          'mutation Place($input: CreateOrderInput!) { createOrder(input: $input) { order { id } } }',
          { input: { lines: lines.map((line) => ({ productId: line.product.id, quantity: line.quantity })) } },
          { token, headers: { 'idempotency-key': randomUUID() } },
        );
        expect(response.body.errors).toBeUndefined();
        orders.unshift({
          id: response.body.data!.createOrder.order.id,
          lines: lines.map((line) => ({ quantity: line.quantity, product: { name: line.product.name } })),
        });
      }
      placed.set(count, { token, orders });
    }
  });

  afterAll(async () => {
    await server?.close();
  });

  /** Runs the orders query for the user who placed `count` orders; returns its data and every statement the ORM sent. */
  async function readOrders(count: number): Promise<{ data: OrdersPage | null | undefined; statements: string[] }> {
    const { token } = placed.get(count)!;
    server.resetStatements();
    const response = await server.gql<OrdersPage>(ORDERS_WITH_LINES, undefined, { token });
    const statements = [...server.statements];
    expect(response.body.errors).toBeUndefined();
    return { data: response.body.data, statements };
  }

  it.each([10, 50])('reads %i orders with their lines and products correctly in a small constant number of statements', async (count) => {
    const { data, statements } = await readOrders(count);

    expect(data?.orders.edges.map((edge) => edge.node)).toEqual(placed.get(count)!.orders);
    expect(statements.length).toBeGreaterThan(0);
    expect(statements.length).toBeLessThanOrEqual(MAX_STATEMENTS);
  });

  it('sends as many statements for 50 orders as for 10', async () => {
    const ten = await readOrders(10);
    const fifty = await readOrders(50);

    expect(fifty.data?.orders.edges).toHaveLength(50);
    expect(ten.data?.orders.edges).toHaveLength(10);
    expect(fifty.statements.length).toBe(ten.statements.length);
  });
});
