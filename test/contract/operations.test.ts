import { randomUUID } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import type { TypedDocumentNode } from '@graphql-typed-document-node/core';
import { assertObjectType, buildASTSchema, buildSchema, type GraphQLSchema, Kind, parse, print, validate, visit } from 'graphql';
import { SANDBOX_DOCUMENT } from '../../src/http/explorer';
import { startTestServer, type TestServer } from '../support/server';
import {
  CancelOrderDocument,
  CreateOrderDocument,
  CreateProductDocument,
  IdempotencyRecordDocument,
  MyOrdersDocument,
  OrderDocument,
  ProductDocument,
  ProductsDocument,
  ViewerDocument,
} from './generated/graphql';

const ROOT = path.resolve(__dirname, '../..');
const OPERATIONS_DIR = path.join(__dirname, 'operations');
const SDL = readFileSync(path.join(ROOT, 'schema', 'schema.graphql'), 'utf8');

/** The documented operations (README, docs/idempotency.md, the Sandbox page) that must stay in the contract. */
const DOCUMENTED = [
  'CancelOrder',
  'CreateOrder',
  'CreateProduct',
  'IdempotencyRecord',
  'MyOrders',
  'Order',
  'Product',
  'Products',
  'Viewer',
];

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const ISO_INSTANT = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/;

const operationFiles = readdirSync(OPERATIONS_DIR)
  .filter((file) => file.endsWith('.graphql'))
  .sort();

/** Validation messages of every operation file against a schema, by file. */
function validationErrors(schema: GraphQLSchema): Record<string, string[]> {
  const errors: Record<string, string[]> = {};
  for (const file of operationFiles) {
    const messages = validate(schema, parse(readFileSync(path.join(OPERATIONS_DIR, file), 'utf8'))).map((error) => error.message);
    if (messages.length > 0) errors[file] = messages;
  }
  return errors;
}

describe('contract operations against schema/schema.graphql', () => {
  const schema = buildSchema(SDL);

  it('hold every documented operation, one per file, named like its operation', () => {
    const names = operationFiles.map((file) => {
      const definitions = parse(readFileSync(path.join(OPERATIONS_DIR, file), 'utf8')).definitions;
      expect(definitions).toHaveLength(1);
      const [definition] = definitions;
      expect(definition?.kind).toBe(Kind.OPERATION_DEFINITION);
      const name = definition?.kind === Kind.OPERATION_DEFINITION ? definition.name?.value : undefined;
      expect(`${name}.graphql`).toBe(file);
      return name;
    });
    expect(names).toEqual(expect.arrayContaining(DOCUMENTED));
  });

  it('all validate against the committed schema', () => {
    expect(validationErrors(schema)).toEqual({});
  });

  it('fail validation when the schema drops a field an operation selects', () => {
    const withoutTotal = buildASTSchema(
      visit(parse(SDL), {
        ObjectTypeDefinition: (node) =>
          node.name.value === 'Order' ? { ...node, fields: node.fields?.filter((field) => field.name.value !== 'totalCents') } : undefined,
      }),
    );
    expect(Object.keys(assertObjectType(withoutTotal.getType('Order')).getFields())).not.toContain('totalCents');
    expect(Object.keys(validationErrors(withoutTotal)).sort()).toEqual(['CreateOrder.graphql', 'MyOrders.graphql', 'Order.graphql']);
  });

  it('include the Sandbox page example document, which validates too', () => {
    expect(validate(schema, parse(SANDBOX_DOCUMENT)).map((error) => error.message)).toEqual([]);
  });
});

describe('contract operations against a live server', () => {
  let server: TestServer;
  let alice: string;
  let admin: string;

  beforeAll(async () => {
    server = await startTestServer();
    [alice, admin] = await Promise.all([server.token('contract-alice'), server.token('contract-admin', { admin: true })]);
  });

  afterAll(async () => {
    await server?.close();
  });

  /** Sends a typed operation as a client would and returns its data, asserting a clean 200 answer. */
  async function run<TData, TVariables extends Record<string, unknown>>(
    document: TypedDocumentNode<TData, TVariables>,
    variables: TVariables,
    options: { token?: string; headers?: Record<string, string> } = {},
  ): Promise<{ data: TData; headers: Headers; extensions?: Record<string, unknown> }> {
    const response = await server.gql<TData>(print(document), variables, { ...options, autoKey: false });
    expect(response.body.errors).toBeUndefined();
    expect(response.status).toBe(200);
    expect(response.body.data).toEqual(expect.any(Object));
    return { data: response.body.data as TData, headers: response.headers, extensions: response.body.extensions };
  }

  async function firstProducts(count: number) {
    const { data } = await run(ProductsDocument, { first: count });
    return data.products.edges.map((edge) => edge.node);
  }

  async function placeOrder(token: string, productId: string, quantity: number, note?: string) {
    const { data } = await run(CreateOrderDocument, { input: { lines: [{ productId, quantity }], note }, key: randomUUID() }, { token });
    return data.createOrder.order;
  }

  it('Products pages through the catalog anonymously with typed nodes and cursors', async () => {
    const first = await run(ProductsDocument, { first: 3 });
    const page = first.data.products;
    expect(page.edges).toHaveLength(3);
    for (const { cursor, node } of page.edges) {
      expect(cursor).toEqual(expect.any(String));
      expect(node.id).toMatch(UUID);
      expect(node.sku).toEqual(expect.any(String));
      expect(node.name).toEqual(expect.any(String));
      expect(Number.isInteger(node.priceCents)).toBe(true);
      expect(node.currency).toMatch(/^[A-Z]{3}$/);
      expect(Number.isInteger(node.stock)).toBe(true);
    }
    expect(page.pageInfo.hasNextPage).toBe(true);
    expect(page.pageInfo.endCursor).toEqual(expect.any(String));

    const second = await run(ProductsDocument, { first: 3, after: page.pageInfo.endCursor });
    const seen = new Set(page.edges.map((edge) => edge.node.id));
    expect(second.data.products.edges).toHaveLength(3);
    expect(second.data.products.edges.every((edge) => !seen.has(edge.node.id))).toBe(true);
  });

  it('Products runs without variables, on the default page size', async () => {
    const { data } = await run(ProductsDocument, {});
    expect(data.products.edges.length).toBeGreaterThan(3);
    expect(data.products.edges.length).toBeLessThanOrEqual(20);
  });

  it('Product returns the catalog entry by id, and null for an unknown id', async () => {
    const [listed] = await firstProducts(1);
    const { data } = await run(ProductDocument, { id: listed!.id });
    expect(data.product).toEqual(listed);

    const missing = await run(ProductDocument, { id: randomUUID() });
    expect(missing.data.product).toBeNull();
  });

  it('Viewer names the token subject and its roles, and is null when anonymous', async () => {
    expect((await run(ViewerDocument, {}, { token: alice })).data.viewer).toEqual({ id: 'contract-alice', roles: [] });
    expect((await run(ViewerDocument, {}, { token: admin })).data.viewer).toEqual({ id: 'contract-admin', roles: ['admin'] });
    expect((await run(ViewerDocument, {})).data.viewer).toBeNull();
  });

  it('CreateOrder with $key places an order and replays it for the same key', async () => {
    const [mug, tee] = await firstProducts(2);
    const key = randomUUID();
    const variables = {
      input: {
        lines: [
          { productId: mug!.id, quantity: 2 },
          { productId: tee!.id, quantity: 1 },
        ],
        note: 'contract',
      },
      key,
    };

    const first = await run(CreateOrderDocument, variables, { token: alice });
    const order = first.data.createOrder.order;
    expect(order.id).toMatch(UUID);
    expect(order.status).toBe('PLACED');
    expect(order.currency).toBe(mug!.currency);
    expect(order.note).toBe('contract');
    expect(order.createdAt).toMatch(ISO_INSTANT);
    expect(order.lines).toEqual([
      {
        quantity: 2,
        unitPriceCents: mug!.priceCents,
        lineTotalCents: 2 * mug!.priceCents,
        product: { id: mug!.id, sku: mug!.sku, name: mug!.name },
      },
      {
        quantity: 1,
        unitPriceCents: tee!.priceCents,
        lineTotalCents: tee!.priceCents,
        product: { id: tee!.id, sku: tee!.sku, name: tee!.name },
      },
    ]);
    expect(order.totalCents).toBe(2 * mug!.priceCents + tee!.priceCents);
    expect(first.headers.get('idempotent-replayed')).toBeNull();
    expect(first.extensions?.idempotency).toEqual([expect.objectContaining({ path: ['createOrder'], key, replayed: false })]);

    const again = await run(CreateOrderDocument, variables, { token: alice });
    expect(again.data.createOrder.order).toEqual(order);
    expect(again.headers.get('idempotent-replayed')).toBe('true');
    expect(again.extensions?.idempotency).toEqual([expect.objectContaining({ path: ['createOrder'], key, replayed: true })]);
  });

  it('CreateOrder without $key takes the key from the Idempotency-Key header, as the Sandbox sends it', async () => {
    const [product] = await firstProducts(1);
    const key = `sandbox-${randomUUID()}`;
    const { data, extensions } = await run(
      CreateOrderDocument,
      { input: { lines: [{ productId: product!.id, quantity: 1 }] } },
      { token: alice, headers: { 'idempotency-key': key } },
    );
    expect(data.createOrder.order.status).toBe('PLACED');
    expect(data.createOrder.order.note).toBeNull();
    expect(extensions?.idempotency).toEqual([expect.objectContaining({ key, replayed: false })]);
  });

  it('CancelOrder cancels a placed order and returns its stock', async () => {
    const [product] = await firstProducts(1);
    const placed = await placeOrder(alice, product!.id, 3);
    const stockAfterOrder = (await run(ProductDocument, { id: product!.id })).data.product!.stock;

    const { data } = await run(
      CancelOrderDocument,
      { input: { orderId: placed.id, reason: 'changed my mind' }, key: randomUUID() },
      { token: alice },
    );

    const cancelled = data.cancelOrder.order;
    expect(cancelled.id).toBe(placed.id);
    expect(cancelled.status).toBe('CANCELLED');
    expect(cancelled.cancelledAt).toMatch(ISO_INSTANT);
    expect(cancelled.lines).toEqual([{ quantity: 3, product: { id: product!.id, stock: stockAfterOrder + 3 } }]);
    expect((await run(ProductDocument, { id: product!.id })).data.product!.stock).toBe(stockAfterOrder + 3);
  });

  it("MyOrders lists the viewer's orders newest first, with lines and products", async () => {
    const buyer = await server.token(`contract-buyer-${randomUUID()}`);
    const [a, b] = await firstProducts(2);
    const older = await placeOrder(buyer, a!.id, 1, 'older');
    const newer = await placeOrder(buyer, b!.id, 2, 'newer');

    const { data } = await run(MyOrdersDocument, { first: 10 }, { token: buyer });

    expect(data.orders.edges.map((edge) => edge.node.id)).toEqual([newer.id, older.id]);
    expect(data.orders.pageInfo).toEqual({ hasNextPage: false, endCursor: expect.any(String) });
    const [latest] = data.orders.edges;
    expect(latest!.cursor).toEqual(expect.any(String));
    expect(latest!.node).toEqual({
      id: newer.id,
      status: 'PLACED',
      totalCents: 2 * b!.priceCents,
      currency: b!.currency,
      note: 'newer',
      createdAt: newer.createdAt,
      cancelledAt: null,
      lines: [
        {
          quantity: 2,
          unitPriceCents: b!.priceCents,
          lineTotalCents: 2 * b!.priceCents,
          product: { id: b!.id, sku: b!.sku, name: b!.name, priceCents: b!.priceCents, currency: b!.currency },
        },
      ],
    });
  });

  it("Order returns the viewer's order by id, and null for another user", async () => {
    const [product] = await firstProducts(1);
    const placed = await placeOrder(alice, product!.id, 1, 'by id');

    const { data } = await run(OrderDocument, { id: placed.id }, { token: alice });
    expect(data.order).toEqual({ ...placed, cancelledAt: null });

    const stranger = await server.token('contract-stranger');
    expect((await run(OrderDocument, { id: placed.id }, { token: stranger })).data.order).toBeNull();
  });

  it("IdempotencyRecord shows the viewer's record for a used key, and null for an unused one", async () => {
    const [product] = await firstProducts(1);
    const key = randomUUID();
    await run(CreateOrderDocument, { input: { lines: [{ productId: product!.id, quantity: 1 }] }, key }, { token: alice });

    const { data } = await run(IdempotencyRecordDocument, { key }, { token: alice });
    const record = data.idempotencyRecord!;
    expect(record).toEqual({
      key,
      operation: 'createOrder',
      outcome: 'SUCCEEDED',
      createdAt: expect.any(String),
      expiresAt: expect.any(String),
    });
    expect(record.createdAt).toMatch(ISO_INSTANT);
    expect(record.expiresAt).toMatch(ISO_INSTANT);
    expect(Date.parse(record.expiresAt)).toBeGreaterThan(Date.parse(record.createdAt));

    expect((await run(IdempotencyRecordDocument, { key: randomUUID() }, { token: alice })).data.idempotencyRecord).toBeNull();
  });

  it('CreateProduct adds a product as an admin, readable through Product', async () => {
    const sku = `CONTRACT-${randomUUID().slice(0, 8)}`;
    const { data } = await run(
      CreateProductDocument,
      { input: { sku, name: 'Contract mug', priceCents: 1250, currency: 'EUR', stock: 7 }, key: randomUUID() },
      { token: admin },
    );

    const product = data.createProduct.product;
    expect(product).toEqual({ id: expect.stringMatching(UUID), sku, name: 'Contract mug', priceCents: 1250, currency: 'EUR', stock: 7 });
    expect((await run(ProductDocument, { id: product.id })).data.product).toEqual(product);
  });
});
