import { randomUUID } from 'node:crypto';
import { withClient } from './support/database';
import { type GraphQLResponse, startTestServer, type TestServer } from './support/server';

interface ProductView {
  id: string;
  sku: string;
  priceCents: number;
  currency: string;
  stock: number;
}

interface OrderView {
  id: string;
  status: 'PLACED' | 'CANCELLED';
  totalCents: number;
  currency: string;
  note: string | null;
  createdAt: string;
  cancelledAt: string | null;
  lines: { quantity: number; unitPriceCents: number; lineTotalCents: number; product: ProductView }[];
}

interface LineInput {
  productId: string;
  quantity: number;
}

interface CatalogRow {
  id: string;
  priceCents: number;
}

/** What a failed write must leave untouched. */
interface Snapshot {
  orders: number;
  lines: number;
  stock: { id: string; stock: number }[];
}

const ORDER_FIELDS = `
  id status totalCents currency note createdAt cancelledAt
  lines { quantity unitPriceCents lineTotalCents product { id sku priceCents currency stock } }
`;
const CREATE_ORDER = `mutation Place($input: CreateOrderInput!) { createOrder(input: $input) { order { ${ORDER_FIELDS} } } }`;
const CANCEL_ORDER = `mutation Cancel($input: CancelOrderInput!) { cancelOrder(input: $input) { order { ${ORDER_FIELDS} } } }`;
const ORDER = `query Order($id: ID!) { order(id: $id) { ${ORDER_FIELDS} } }`;
const ORDERS = `query Orders($first: Int, $after: String) {
  orders(first: $first, after: $after) { edges { cursor node { id createdAt } } pageInfo { hasNextPage endCursor } }
}`;

/** Products inserted next to the demo catalog, so that 101 distinct lines can be ordered. */
const EXTRA_PRODUCTS = 101;

describe('orders', () => {
  let server: TestServer;
  let alice: string;
  let bob: string;
  let admin: string;
  const catalog = new Map<string, CatalogRow>();
  let extraProductIds: string[] = [];
  let euroProductId: string;

  beforeAll(async () => {
    server = await startTestServer();
    [alice, bob, admin] = await Promise.all([server.token('alice'), server.token('bob'), server.token('admin-1', { admin: true })]);
    const rows = await sql<{ id: string; sku: string; price_cents: number }>('select id, sku, price_cents from products');
    for (const row of rows) catalog.set(row.sku, { id: row.id, priceCents: row.price_cents });
    extraProductIds = (
      await sql<{ id: string }>(
        `insert into products (id, sku, name, price_cents, currency, stock, created_at)
         select gen_random_uuid(), 'EXTRA-' || n, 'Extra product ' || n, 100, 'USD', 5000, now()
         from generate_series(1, $1::int) as n
         returning id`,
        [EXTRA_PRODUCTS],
      )
    ).map((row) => row.id);

    const created = await server.gql<{ createProduct: { product: ProductView } }>(
      `mutation { createProduct(input: { sku: "EUR-MUG", name: "Euro mug", priceCents: 1100, currency: "EUR", stock: 50 }) {
        product { id currency }
      } }`,
      undefined,
      { token: admin, headers: idempotencyHeader() },
    );
    expect(created.body.errors).toBeUndefined();
    euroProductId = created.body.data!.createProduct.product.id;
  });

  afterAll(async () => {
    await server?.close();
  });

  async function sql<T>(text: string, params: unknown[] = []): Promise<T[]> {
    return withClient(server.databaseUrl, async (client) => (await client.query(text, params)).rows as T[]);
  }

  async function stockOf(productId: string): Promise<number> {
    const [row] = await sql<{ stock: number }>('select stock from products where id = $1', [productId]);
    return row!.stock;
  }

  async function setStock(productId: string, stock: number): Promise<void> {
    await sql('update products set stock = $2 where id = $1', [productId, stock]);
  }

  async function snapshot(): Promise<Snapshot> {
    const [counts] = await sql<{ orders: number; lines: number }>(
      'select (select count(*)::int from orders) as orders, (select count(*)::int from order_lines) as lines',
    );
    const stock = await sql<{ id: string; stock: number }>('select id::text, stock from products order by id');
    return { orders: counts!.orders, lines: counts!.lines, stock };
  }

  function product(sku: string): CatalogRow {
    const row = catalog.get(sku);
    if (!row) throw new Error(`no seeded product ${sku}`);
    return row;
  }

  function placeOrder(token: string | undefined, input: { lines: LineInput[]; note?: string | null }) {
    return server.gql<{ createOrder: { order: OrderView } }>(CREATE_ORDER, { input }, { token, headers: idempotencyHeader() });
  }

  function cancelOrder(token: string, orderId: string) {
    return server.gql<{ cancelOrder: { order: OrderView } }>(CANCEL_ORDER, { input: { orderId } }, { token, headers: idempotencyHeader() });
  }

  async function placed(token: string, lines: LineInput[], note?: string): Promise<OrderView> {
    const response = await placeOrder(token, { lines, note });
    expect(response.body.errors).toBeUndefined();
    return response.body.data!.createOrder.order;
  }

  describe('placing an order', () => {
    it('places a single-line order with its line total, total, currency and status, and decrements stock', async () => {
      const mug = product('MUG-001');
      const stockBefore = await stockOf(mug.id);
      const startedAt = Date.now();

      const order = await placed(alice, [{ productId: mug.id, quantity: 3 }], 'gift wrap, please');

      expect(order).toMatchObject({
        status: 'PLACED',
        currency: 'USD',
        totalCents: 3 * mug.priceCents,
        note: 'gift wrap, please',
        cancelledAt: null,
      });
      expect(order.id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
      expect(order.lines).toEqual([
        {
          quantity: 3,
          unitPriceCents: mug.priceCents,
          lineTotalCents: 3 * mug.priceCents,
          product: { id: mug.id, sku: 'MUG-001', priceCents: mug.priceCents, currency: 'USD', stock: stockBefore - 3 },
        },
      ]);
      const createdAt = Date.parse(order.createdAt);
      expect(createdAt).toBeGreaterThanOrEqual(startedAt - 1000);
      expect(createdAt).toBeLessThanOrEqual(Date.now() + 1000);

      expect(await stockOf(mug.id)).toBe(stockBefore - 3);
      const rows = await sql('select user_id, status, total_cents, currency, note from orders where id = $1', [order.id]);
      expect(rows).toEqual([{ user_id: 'alice', status: 'PLACED', total_cents: 3600, currency: 'USD', note: 'gift wrap, please' }]);
    });

    it('sums the line totals of a multi-line order, keeps the lines in the given order and decrements every stock', async () => {
      const lines = [
        { sku: 'TEE-001', quantity: 2 },
        { sku: 'CAP-001', quantity: 1 },
        { sku: 'NB-001', quantity: 5 },
      ];
      const before = new Map(await Promise.all(lines.map(async (line) => [line.sku, await stockOf(product(line.sku).id)] as const)));

      const order = await placed(
        alice,
        lines.map((line) => ({ productId: product(line.sku).id, quantity: line.quantity })),
      );

      const expectedLines = lines.map((line) => {
        const { id, priceCents } = product(line.sku);
        return {
          quantity: line.quantity,
          unitPriceCents: priceCents,
          lineTotalCents: line.quantity * priceCents,
          product: { id, sku: line.sku, priceCents, currency: 'USD', stock: before.get(line.sku)! - line.quantity },
        };
      });
      expect(order.lines).toEqual(expectedLines);
      expect(order.totalCents).toBe(2 * 1900 + 1 * 1500 + 5 * 900);
      expect(order.totalCents).toBe(expectedLines.reduce((sum, line) => sum + line.lineTotalCents, 0));
      expect(order).toMatchObject({ status: 'PLACED', currency: 'USD', note: null, cancelledAt: null });

      for (const line of lines) {
        expect(await stockOf(product(line.sku).id)).toBe(before.get(line.sku)! - line.quantity);
      }
      const stored = await sql<{ product_id: string; quantity: number; unit_price_cents: number; line_total_cents: number }>(
        'select product_id, quantity, unit_price_cents, line_total_cents from order_lines where order_id = $1 order by position',
        [order.id],
      );
      expect(stored).toEqual(
        expectedLines.map((line) => ({
          product_id: line.product.id,
          quantity: line.quantity,
          unit_price_cents: line.unitPriceCents,
          line_total_cents: line.lineTotalCents,
        })),
      );
    });

    it('accepts the limits: 100 lines, a quantity of 1000 and a note of 500 characters', async () => {
      const lines = extraProductIds.slice(0, 100).map((productId, index) => ({ productId, quantity: index === 0 ? 1000 : 1 }));

      const order = await placed(alice, lines, 'n'.repeat(500));

      expect(order.lines).toHaveLength(100);
      expect(order.lines[0]).toMatchObject({ quantity: 1000, lineTotalCents: 100_000 });
      expect(order.totalCents).toBe(1000 * 100 + 99 * 100);
      expect(order.note).toHaveLength(500);
      expect(await stockOf(extraProductIds[0]!)).toBe(4000);
    });

    it('requires an authenticated user', async () => {
      const before = await snapshot();
      const response = await placeOrder(undefined, { lines: [{ productId: product('MUG-001').id, quantity: 1 }] });
      expect(response.body.errors?.[0]?.extensions?.code).toBe('UNAUTHENTICATED');
      expect(response.body.data ?? null).toBeNull();
      expect(await snapshot()).toEqual(before);
    });
  });

  describe('rejecting an order writes nothing', () => {
    function expectFailure(response: GraphQLResponse, code: string): void {
      expect(response.status).toBe(200);
      expect(response.body.data ?? null).toBeNull();
      expect(response.body.errors).toHaveLength(1);
      expect(response.body.errors![0]!.extensions?.code).toBe(code);
      expect(response.body.errors![0]!.path).toEqual(['createOrder']);
    }

    it('fails with PRODUCT_NOT_FOUND for an unknown product id', async () => {
      const unknown = randomUUID();
      const before = await snapshot();

      const response = await placeOrder(alice, {
        lines: [
          { productId: product('MUG-001').id, quantity: 1 },
          { productId: unknown, quantity: 1 },
        ],
      });

      expectFailure(response, 'PRODUCT_NOT_FOUND');
      expect(response.body.errors![0]!.message).toContain(unknown);
      expect(await snapshot()).toEqual(before);
    });

    const badInputs: [string, () => { lines: LineInput[]; note?: string }][] = [
      ['no lines', () => ({ lines: [] })],
      ['101 lines', () => ({ lines: extraProductIds.map((productId) => ({ productId, quantity: 1 })) })],
      ['a quantity of 0', () => ({ lines: [{ productId: product('MUG-001').id, quantity: 0 }] })],
      ['a quantity of 1001', () => ({ lines: [{ productId: extraProductIds[1]!, quantity: 1001 }] })],
      ['a negative quantity', () => ({ lines: [{ productId: product('MUG-001').id, quantity: -2 }] })],
      ['a note of 501 characters', () => ({ lines: [{ productId: product('MUG-001').id, quantity: 1 }], note: 'n'.repeat(501) })],
      [
        'a malformed product id',
        () => ({
          lines: [
            { productId: product('MUG-001').id, quantity: 1 },
            { productId: 'not-a-uuid', quantity: 1 },
          ],
        }),
      ],
      [
        'the same product in two lines',
        () => ({
          lines: [
            { productId: product('MUG-001').id, quantity: 1 },
            { productId: product('MUG-001').id, quantity: 2 },
          ],
        }),
      ],
      [
        'the same product in two lines, spelled in different letter cases',
        () => ({
          lines: [
            { productId: product('MUG-001').id, quantity: 1 },
            { productId: product('MUG-001').id.toUpperCase(), quantity: 2 },
          ],
        }),
      ],
      [
        'products in two currencies',
        () => ({
          lines: [
            { productId: product('MUG-001').id, quantity: 1 },
            { productId: euroProductId, quantity: 1 },
          ],
        }),
      ],
    ];

    it.each(badInputs)('fails with BAD_USER_INPUT for %s', async (_case, input) => {
      const before = await snapshot();

      const response = await placeOrder(alice, input());

      expectFailure(response, 'BAD_USER_INPUT');
      expect(await snapshot()).toEqual(before);
    });

    it('fails with INSUFFICIENT_STOCK when a quantity exceeds the stock, and sells the last units when it does not', async () => {
      const poster = product('POS-001');
      const mug = product('MUG-001');
      await setStock(poster.id, 4);
      const before = await snapshot();

      const response = await placeOrder(alice, {
        lines: [
          { productId: mug.id, quantity: 1 },
          { productId: poster.id, quantity: 5 },
        ],
      });

      expectFailure(response, 'INSUFFICIENT_STOCK');
      expect(await snapshot()).toEqual(before);

      const order = await placed(alice, [{ productId: poster.id, quantity: 4 }]);
      expect(order.lines[0]!.product.stock).toBe(0);
      expect(await stockOf(poster.id)).toBe(0);
    });
  });

  describe('cancelling an order', () => {
    it('sets the order CANCELLED with cancelledAt and restores the stock of every line', async () => {
      const bag = product('BAG-001');
      const sock = product('SOCK-001');
      const stockBefore = [await stockOf(bag.id), await stockOf(sock.id)];
      const order = await placed(alice, [
        { productId: bag.id, quantity: 2 },
        { productId: sock.id, quantity: 3 },
      ]);
      expect([await stockOf(bag.id), await stockOf(sock.id)]).toEqual([stockBefore[0]! - 2, stockBefore[1]! - 3]);

      const response = await cancelOrder(alice, order.id);

      expect(response.body.errors).toBeUndefined();
      const cancelled = response.body.data!.cancelOrder.order;
      expect(cancelled).toMatchObject({ id: order.id, status: 'CANCELLED', totalCents: order.totalCents, createdAt: order.createdAt });
      expect(cancelled.cancelledAt).not.toBeNull();
      expect(Date.parse(cancelled.cancelledAt!)).toBeGreaterThanOrEqual(Date.parse(order.createdAt));
      expect(cancelled.lines.map((line) => line.quantity)).toEqual([2, 3]);
      expect([await stockOf(bag.id), await stockOf(sock.id)]).toEqual(stockBefore);
      const rows = await sql<{ status: string; cancelled_at: Date | null }>('select status, cancelled_at from orders where id = $1', [
        order.id,
      ]);
      expect(rows[0]!.status).toBe('CANCELLED');
      expect(rows[0]!.cancelled_at).toBeInstanceOf(Date);
    });

    it('fails with ORDER_NOT_CANCELLABLE when the order is already cancelled, and returns no stock twice', async () => {
      const cap = product('CAP-001');
      const order = await placed(alice, [{ productId: cap.id, quantity: 2 }]);
      expect((await cancelOrder(alice, order.id)).body.errors).toBeUndefined();
      const before = await snapshot();

      const again = await cancelOrder(alice, order.id);

      expect(again.body.data ?? null).toBeNull();
      expect(again.body.errors?.[0]?.extensions?.code).toBe('ORDER_NOT_CANCELLABLE');
      expect(await snapshot()).toEqual(before);
    });

    it("fails with ORDER_NOT_FOUND for another user's order, which stays PLACED", async () => {
      const pin = product('PIN-001');
      const order = await placed(alice, [{ productId: pin.id, quantity: 1 }]);
      const before = await snapshot();

      const response = await cancelOrder(bob, order.id);

      expect(response.body.data ?? null).toBeNull();
      expect(response.body.errors?.[0]?.extensions?.code).toBe('ORDER_NOT_FOUND');
      expect(await snapshot()).toEqual(before);
      expect(await sql('select status, cancelled_at from orders where id = $1', [order.id])).toEqual([
        { status: 'PLACED', cancelled_at: null },
      ]);
    });
  });

  describe('reading orders', () => {
    it("returns null for another user's order, without an error", async () => {
      const order = await placed(alice, [{ productId: product('KEY-001').id, quantity: 1 }]);

      const asBob = await server.gql<{ order: OrderView | null }>(ORDER, { id: order.id }, { token: bob });
      const asAlice = await server.gql<{ order: OrderView | null }>(ORDER, { id: order.id }, { token: alice });

      expect(asBob.body).toEqual({ data: { order: null } });
      expect(asAlice.body.errors).toBeUndefined();
      expect(asAlice.body.data?.order?.id).toBe(order.id);
    });

    it('returns null for an order id that does not exist', async () => {
      const response = await server.gql(ORDER, { id: randomUUID() }, { token: alice });
      expect(response.body).toEqual({ data: { order: null } });
    });

    it('lets an admin read any order by id, with its lines', async () => {
      const order = await placed(bob, [
        { productId: product('STK-001').id, quantity: 2 },
        { productId: product('BTL-001').id, quantity: 1 },
      ]);

      const response = await server.gql<{ order: OrderView | null }>(ORDER, { id: order.id }, { token: admin });

      expect(response.body.errors).toBeUndefined();
      const seen = response.body.data!.order!;
      expect(seen).toMatchObject({ id: order.id, status: 'PLACED', totalCents: 2 * 400 + 2400, currency: 'USD' });
      expect(seen.lines.map((line) => [line.product.sku, line.quantity, line.lineTotalCents])).toEqual([
        ['STK-001', 2, 800],
        ['BTL-001', 1, 2400],
      ]);
    });

    it('fails with BAD_USER_INPUT for a malformed order id', async () => {
      const response = await server.gql(ORDER, { id: 'not-a-uuid' }, { token: alice });
      expect(response.status).toBe(200);
      expect(response.body.errors?.[0]?.extensions?.code).toBe('BAD_USER_INPUT');
    });

    it("lists only the viewer's orders, newest first, page by page", async () => {
      const carol = await server.token('carol');
      const dave = await server.token('dave');
      const umbrella = product('UMB-001').id;
      const created: string[] = [];
      for (let index = 0; index < 5; index++) {
        created.push((await placed(carol, [{ productId: umbrella, quantity: 1 }])).id);
        await placed(dave, [{ productId: umbrella, quantity: 1 }]);
      }

      type Page = {
        orders: {
          edges: { cursor: string; node: { id: string; createdAt: string } }[];
          pageInfo: { hasNextPage: boolean; endCursor: string | null };
        };
      };
      const pages: Page['orders'][] = [];
      let after: string | null = null;
      do {
        const response: GraphQLResponse<Page> = await server.gql<Page>(ORDERS, { first: 2, after }, { token: carol });
        expect(response.body.errors).toBeUndefined();
        const page: Page['orders'] = response.body.data!.orders;
        pages.push(page);
        after = page.pageInfo.hasNextPage ? page.pageInfo.endCursor : null;
      } while (after && pages.length < 10);

      expect(pages.map((page) => page.edges.length)).toEqual([2, 2, 1]);
      expect(pages.map((page) => page.pageInfo.hasNextPage)).toEqual([true, true, false]);
      for (const page of pages) expect(page.pageInfo.endCursor).toBe(page.edges.at(-1)!.cursor);
      const listed = pages.flatMap((page) => page.edges.map((edge) => edge.node));
      expect(listed.map((node) => node.id)).toEqual([...created].reverse());
      const times = listed.map((node) => Date.parse(node.createdAt));
      expect(times).toEqual([...times].sort((a, b) => b - a));
    });
  });
});

/** A fresh key per mutation, so each request is a first execution once mutations are idempotent. */
function idempotencyHeader(): Record<string, string> {
  return { 'idempotency-key': randomUUID() };
}
