import { Client } from 'pg';
import { encodeCursor } from '../../src/cursor';
import { isTransientDatabaseError } from '../../src/database/transient';
import { withClient } from '../support/database';
import { codesOf } from '../support/responses';
import { type GraphQLResponse, startTestServer, type TestServer } from '../support/server';

// Input the schema refuses must be refused at the boundary with BAD_USER_INPUT (never a retryable
// SERVICE_UNAVAILABLE or a masked INTERNAL_SERVER_ERROR), and must change nothing.

const CREATE_ORDER = `mutation($input: CreateOrderInput!) { createOrder(input: $input) { order { id note } } }`;
const CANCEL_ORDER = `mutation($input: CancelOrderInput!) { cancelOrder(input: $input) { order { id status } } }`;
const CREATE_PRODUCT = `mutation($input: CreateProductInput!) { createProduct(input: $input) { product { id name } } }`;
const ORDERS = `query($after: String) { orders(first: 1, after: $after) { edges { cursor node { id } } } }`;
const PRODUCTS = `query($after: String) { products(first: 1, after: $after) { edges { cursor node { id } } } }`;

function expectBadInput(response: GraphQLResponse): void {
  expect(codesOf(response)).toEqual(['BAD_USER_INPUT']);
  expect(response.body.errors?.[0]?.extensions?.retryable).toBeUndefined();
}

describe('input boundaries', () => {
  let server: TestServer;
  let token: string;
  let productId: string;

  beforeAll(async () => {
    server = await startTestServer();
    token = await server.token('boundary-user');
    productId = await withClient(server.databaseUrl, async (client) => (await client.query('SELECT id FROM products LIMIT 1')).rows[0].id);
  });
  afterAll(async () => {
    await server.close();
  });

  const countOrders = () =>
    withClient(server.databaseUrl, async (client) => Number((await client.query('SELECT count(*) FROM orders')).rows[0].count));

  async function placeOrder(note?: string): Promise<GraphQLResponse<{ createOrder: { order: { id: string; note: string | null } } }>> {
    return server.gql(CREATE_ORDER, { input: { lines: [{ productId, quantity: 1 }], note } }, { token });
  }

  describe('the character U+0000', () => {
    it('is BAD_USER_INPUT in a variable, and stores nothing', async () => {
      const before = await countOrders();
      expectBadInput(await placeOrder('before\u0000after'));
      expect(await countOrders()).toBe(before);
    });

    it('is BAD_USER_INPUT in a nested input field and in a list', async () => {
      const response = await server.gql(CREATE_ORDER, { input: { lines: [{ productId: `${productId}\u0000`, quantity: 1 }] } }, { token });
      expectBadInput(response);
    });

    it('is BAD_USER_INPUT in an inline literal, also when the same document comes again', async () => {
      const document = `mutation { createOrder(input: { lines: [{ productId: "${productId}", quantity: 1 }], note: "a\\u0000b" }) { order { id } } }`;
      // The second request gets Apollo's cached parse of the document.
      for (let attempt = 0; attempt < 2; attempt++) expectBadInput(await server.gql(document, undefined, { token }));
    });

    it('is BAD_USER_INPUT in a query argument and in cancelOrder.reason', async () => {
      expectBadInput(await server.gql(PRODUCTS, { after: 'x\u0000' }));
      expectBadInput(await server.gql(CANCEL_ORDER, { input: { orderId: productId, reason: '\u0000' } }, { token }));
    });

    it('is not a transient failure when it reaches PostgreSQL, which answers with a protocol violation', async () => {
      const client = new Client({ connectionString: server.databaseUrl });
      await client.connect();
      const failure = await client.query("SELECT 'a\u0000b'").then(
        () => undefined,
        (error: unknown) => error,
      );
      await client.end().catch(() => undefined);
      expect((failure as { code?: string }).code).toBe('08P01');
      expect(isTransientDatabaseError(failure)).toBe(false);
    });
  });

  describe('forged cursors', () => {
    const forgedOrderCursors = {
      'a non-UUID id': encodeCursor('order', [new Date().toISOString(), 'not-a-uuid']),
      'an out-of-range date': encodeCursor('order', ['-271821-04-20T00:00:00.000Z', '00000000-0000-4000-8000-000000000000']),
      'a date PostgreSQL cannot read': encodeCursor('order', ['+275760-09-13T00:00:00.000Z', '00000000-0000-4000-8000-000000000000']),
      'a date that is not ISO': encodeCursor('order', ['Tue, 1 Dec 2026', '00000000-0000-4000-8000-000000000000']),
      garbage: 'garbage!!',
    };

    it.each(Object.entries(forgedOrderCursors))('answers orders(after:) with %s as BAD_USER_INPUT', async (_name, after) => {
      expectBadInput(await server.gql(ORDERS, { after }, { token }));
    });

    it('still pages through orders with the cursors it hands out', async () => {
      expect((await placeOrder()).body.errors).toBeUndefined();
      expect((await placeOrder()).body.errors).toBeUndefined();
      const first = await server.gql<{ orders: { edges: { cursor: string; node: { id: string } }[] } }>(ORDERS, {}, { token });
      const cursor = first.body.data?.orders.edges[0]?.cursor;
      const second = await server.gql<{ orders: { edges: { node: { id: string } }[] } }>(ORDERS, { after: cursor }, { token });
      expect(second.body.errors).toBeUndefined();
      expect(second.body.data?.orders.edges[0]?.node.id).not.toBe(first.body.data?.orders.edges[0]?.node.id);
    });

    it.each([
      ['a SKU the catalog could not hold', encodeCursor('product', ['x'.repeat(300)])],
      ['a SKU with U+0000', encodeCursor('product', ['MUG\u0000'])],
      ['the wrong kind', encodeCursor('order', [new Date().toISOString(), '00000000-0000-4000-8000-000000000000'])],
    ])('answers products(after:) with %s as BAD_USER_INPUT', async (_name, after) => {
      expectBadInput(await server.gql(PRODUCTS, { after }));
    });
  });

  describe('length limits stated in the schema, counted in characters (code points)', () => {
    it('accepts a note of 500 emoji', async () => {
      const response = await placeOrder('\u{1F600}'.repeat(500));
      expect(response.body.errors).toBeUndefined();
      expect(response.body.data?.createOrder.order.note).toBe('\u{1F600}'.repeat(500));
    });

    it('refuses a note of 501 characters', async () => {
      expectBadInput(await placeOrder('\u{1F600}'.repeat(501)));
    });

    it('refuses a cancellation reason over 500 characters and keeps the order placed', async () => {
      const placed = await placeOrder();
      const orderId = placed.body.data?.createOrder.order.id as string;
      expectBadInput(await server.gql(CANCEL_ORDER, { input: { orderId, reason: 'r'.repeat(501) } }, { token }));
      const cancelled = await server.gql<{ cancelOrder: { order: { status: string } } }>(
        CANCEL_ORDER,
        { input: { orderId, reason: '\u{1F600}'.repeat(500) } },
        { token },
      );
      expect(cancelled.body.errors).toBeUndefined();
      expect(cancelled.body.data?.cancelOrder.order.status).toBe('CANCELLED');
    });

    it('accepts a product name of 200 emoji and refuses 201', async () => {
      const admin = await server.token('boundary-admin', { admin: true });
      const product = (sku: string, name: string) => ({ sku, name, priceCents: 100, currency: 'USD', stock: 1 });
      const accepted = await server.gql(CREATE_PRODUCT, { input: product('EMOJI-200', '\u{1F600}'.repeat(200)) }, { token: admin });
      expect(accepted.body.errors).toBeUndefined();
      expectBadInput(await server.gql(CREATE_PRODUCT, { input: product('EMOJI-201', '\u{1F600}'.repeat(201)) }, { token: admin }));
    });
  });
});

describe('HEAD /graphql', () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer({ seed: false });
  });
  afterAll(async () => {
    await server.close();
  });

  it('answers 405 with Allow: GET, POST, as for any method the resource does not support', async () => {
    const response = await fetch(`${server.url}?query=${encodeURIComponent('{ viewer { id } }')}`, { method: 'HEAD' });
    expect(response.status).toBe(405);
    expect(response.headers.get('allow')).toBe('GET, POST');
  });
});
