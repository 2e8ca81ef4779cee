import { randomUUID } from 'node:crypto';
import { ProductEvent } from '../../src/catalog/product.events';
import { eventId } from '../../src/events';
import { OrderEvent } from '../../src/orders/order.events';
import { withClient } from '../support/database';
import { startTestServer, type TestServer } from '../support/server';

interface EventRow {
  id: string;
  type: string;
  data: Record<string, unknown>;
}

const PLACE = `mutation Place($input: CreateOrderInput!) { createOrder(input: $input) { order { id totalCents } } }`;
const CANCEL = `mutation Cancel($input: CancelOrderInput!) { cancelOrder(input: $input) { order { id status } } }`;
const CREATE_PRODUCT = `mutation Create($input: CreateProductInput!) { createProduct(input: $input) { product { id sku } } }`;

describe('the transactional outbox', () => {
  let server: TestServer;
  let alice: string;
  let admin: string;
  let productId: string;

  beforeAll(async () => {
    server = await startTestServer();
    [alice, admin] = await Promise.all([server.token('alice'), server.token('admin-1', { admin: true })]);
    const [row] = await sql<{ id: string }>(`select id from products where stock >= 100 and currency = 'USD' order by sku limit 1`);
    productId = row!.id;
  });

  afterAll(async () => {
    await server?.close();
  });

  async function sql<T>(text: string, params: unknown[] = []): Promise<T[]> {
    return withClient(server.databaseUrl, async (client) => (await client.query(text, params)).rows as T[]);
  }

  async function events(): Promise<EventRow[]> {
    return sql<EventRow>('select id, type, data from outbox_events order by seq');
  }

  async function place(key: string, quantity = 1) {
    return server.gql<{ createOrder: { order: { id: string; totalCents: number } } }>(
      PLACE,
      { input: { lines: [{ productId, quantity }] } },
      { token: alice, headers: { 'idempotency-key': key } },
    );
  }

  it('writes OrderPlaced with the order, once, and nothing when the mutation is replayed', async () => {
    const before = (await events()).length;
    const key = randomUUID();
    const first = await place(key, 2);
    const replay = await place(key, 2);
    expect(first.body.errors).toBeUndefined();
    expect(replay.body.data).toEqual(first.body.data);
    const orderId = first.body.data!.createOrder.order.id;

    const written = (await events()).slice(before);
    expect(written).toEqual([
      {
        id: eventId(OrderEvent.OrderPlaced, orderId),
        type: 'OrderPlaced',
        data: expect.objectContaining({
          orderId,
          userId: 'alice',
          totalCents: first.body.data!.createOrder.order.totalCents,
          lines: [expect.objectContaining({ productId, quantity: 2 })],
        }),
      },
    ]);
  });

  it('writes OrderCancelled once, and nothing for a cancellation that fails', async () => {
    const placed = await place(randomUUID());
    const orderId = placed.body.data!.createOrder.order.id;
    const before = (await events()).length;
    const cancel = (key: string) => server.gql(CANCEL, { input: { orderId } }, { token: alice, headers: { 'idempotency-key': key } });
    const key = randomUUID();
    expect((await cancel(key)).body.errors).toBeUndefined();
    expect((await cancel(key)).body.errors).toBeUndefined();
    const again = await cancel(randomUUID());
    expect(again.body.errors?.[0]?.extensions?.code).toBe('ORDER_NOT_CANCELLABLE');

    const written = (await events()).slice(before);
    expect(written).toEqual([
      {
        id: eventId(OrderEvent.OrderCancelled, orderId),
        type: 'OrderCancelled',
        data: { orderId, userId: 'alice', restocked: [{ productId, quantity: 1 }] },
      },
    ]);
  });

  it('writes no second OrderCancelled for an order set back to PLACED outside the API and cancelled again', async () => {
    const placed = await place(randomUUID());
    const orderId = placed.body.data!.createOrder.order.id;
    const cancel = () => server.gql(CANCEL, { input: { orderId } }, { token: alice });
    expect((await cancel()).body.errors).toBeUndefined();
    await sql(`update orders set status = 'PLACED', cancelled_at = null where id = $1`, [orderId]);
    expect((await cancel()).body.errors).toBeUndefined();
    const rows = await sql<{ id: string }>(`select id from outbox_events where data->>'orderId' = $1 and type = 'OrderCancelled'`, [
      orderId,
    ]);
    expect(rows).toEqual([{ id: eventId(OrderEvent.OrderCancelled, orderId) }]);
  });

  it('stores when each fact happened and data with quotes, backslashes and placeholders as given', async () => {
    const note = `it's a \\ "note" ? $1 \u00e9`;
    const placed = await server.gql<{ createOrder: { order: { id: string } } }>(
      PLACE,
      { input: { lines: [{ productId, quantity: 1 }], note } },
      { token: alice, headers: { 'idempotency-key': randomUUID() } },
    );
    expect(placed.body.errors).toBeUndefined();
    const orderId = placed.body.data!.createOrder.order.id;
    const cancelled = await server.gql(CANCEL, { input: { orderId } }, { token: alice });
    expect(cancelled.body.errors).toBeUndefined();

    const rows = await sql<{ type: string; note: string | null; at_fact: boolean }>(
      `select e.type, e.data->>'note' as note,
              e.occurred_at = case e.type when 'OrderPlaced' then o.created_at else o.cancelled_at end as at_fact
         from outbox_events e join orders o on o.id = (e.data->>'orderId')::uuid
        where o.id = $1 order by e.seq`,
      [orderId],
    );
    expect(rows).toEqual([
      { type: 'OrderPlaced', note, at_fact: true },
      { type: 'OrderCancelled', note: null, at_fact: true },
    ]);
  });

  it('writes nothing for an order that fails on stock', async () => {
    const before = (await events()).length;
    const failed = await place(randomUUID(), 1000);
    expect(failed.body.errors?.[0]?.extensions?.code).toBe('INSUFFICIENT_STOCK');
    expect((await events()).length).toBe(before);
  });

  it('writes ProductCreated once, and nothing when the SKU is taken', async () => {
    const before = (await events()).length;
    const input = { sku: `EV-${randomUUID().slice(0, 8)}`, name: 'Event mug', priceCents: 700, currency: 'USD', stock: 3 };
    const created = await server.gql<{ createProduct: { product: { id: string } } }>(CREATE_PRODUCT, { input }, { token: admin });
    const taken = await server.gql(CREATE_PRODUCT, { input }, { token: admin });
    expect(taken.body.errors?.[0]?.extensions?.code).toBe('SKU_TAKEN');
    const id = created.body.data!.createProduct.product.id;

    expect((await events()).slice(before)).toEqual([
      {
        id: eventId(ProductEvent.ProductCreated, id),
        type: 'ProductCreated',
        data: { productId: id, sku: input.sku, name: input.name, priceCents: 700, currency: 'USD', stock: 3 },
      },
    ]);
  });
});

describe('eventId', () => {
  it('is the same for the same fact and differs across types and subjects', () => {
    const order = randomUUID();
    expect(eventId(OrderEvent.OrderPlaced, order)).toBe(eventId(OrderEvent.OrderPlaced, order));
    expect(eventId(OrderEvent.OrderPlaced, order)).not.toBe(eventId(OrderEvent.OrderCancelled, order));
    expect(eventId(OrderEvent.OrderPlaced, order)).not.toBe(eventId(OrderEvent.OrderPlaced, randomUUID()));
    expect(eventId(OrderEvent.OrderPlaced, order)).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  });
});
