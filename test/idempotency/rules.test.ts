import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { IdempotencyStore, purgeExpired } from '../../src/idempotency';
import { withClient } from '../support/database';
import { type GraphQLResponse, startTestServer, type TestServer } from '../support/server';

// Rules I1-I13 of DESIGN.md section 6, observed over HTTP against the real server and database.

interface Marker {
  path: (string | number)[];
  key: string;
  replayed: boolean;
  firstExecutedAt: string;
  expiresAt: string;
}

interface ProductView {
  id: string;
  sku: string;
  name: string;
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

interface OrderInput {
  lines: LineInput[];
  note?: string | null;
}

type Placed = { createOrder: { order: OrderView } };
type Cancelled = { cancelOrder: { order: OrderView } };
type CreatedProduct = { createProduct: { product: ProductView } };
type RecordLookup = { idempotencyRecord: { key: string; operation: string; outcome: string; createdAt: string; expiresAt: string } | null };

/** A record row as stored, in comparable form. */
interface StoredRow {
  user_id: string;
  key: string;
  operation: string;
  fingerprint: string;
  outcome: string;
  result_text: string;
  result: unknown;
  created_at: Date;
  expires_at: Date;
}

/** What must stay untouched when nothing executes. */
interface Snapshot {
  orders: number;
  lines: number;
  records: number;
  products: number;
  stock: { id: string; stock: number }[];
  statuses: { id: string; status: string }[];
}

const PRODUCT_FIELDS = 'id sku name priceCents currency stock';
const ORDER_FIELDS = `id status totalCents currency note createdAt cancelledAt
  lines { quantity unitPriceCents lineTotalCents product { ${PRODUCT_FIELDS} } }`;
const CREATE_ORDER = `mutation Place($input: CreateOrderInput!, $key: IdempotencyKey) {
  createOrder(input: $input, idempotencyKey: $key) { order { ${ORDER_FIELDS} } }
}`;
const CREATE_ORDER_ID_ONLY = `mutation Place($input: CreateOrderInput!, $key: IdempotencyKey) {
  createOrder(input: $input, idempotencyKey: $key) { order { id } }
}`;
const CANCEL_ORDER = `mutation Cancel($input: CancelOrderInput!, $key: IdempotencyKey) {
  cancelOrder(input: $input, idempotencyKey: $key) { order { ${ORDER_FIELDS} } }
}`;
const CREATE_PRODUCT = `mutation AddProduct($input: CreateProductInput!, $key: IdempotencyKey) {
  createProduct(input: $input, idempotencyKey: $key) { product { ${PRODUCT_FIELDS} } }
}`;
const RECORD = `query Record($key: IdempotencyKey!) {
  idempotencyRecord(key: $key) { key operation outcome createdAt expiresAt }
}`;
const DAY_MS = 86_400_000;

function newKey(): string {
  return `k-${randomUUID()}`;
}

function markersOf(response: GraphQLResponse<unknown>): Marker[] | undefined {
  return response.body.extensions?.idempotency as Marker[] | undefined;
}

function codesOf(response: GraphQLResponse<unknown>): unknown[] {
  return (response.body.errors ?? []).map((error) => error.extensions?.code);
}

function replayedHeader(response: GraphQLResponse<unknown>): string | null {
  return response.headers.get('idempotent-replayed');
}

async function sleep(ms: number): Promise<void> {
  await new Promise((resolve) => setTimeout(resolve, ms));
}

describe('idempotency rules', () => {
  let server: TestServer;
  /** A second process on the same database whose replays always read the database. */
  let uncached: TestServer;
  let alice: string;
  let bob: string;
  let carol: string;
  let admin: string;
  const productIds = new Map<string, string>();

  beforeAll(async () => {
    server = await startTestServer();
    uncached = await startTestServer({ databaseUrl: server.databaseUrl, cacheSize: 0 });
    [alice, bob, carol, admin] = await Promise.all([
      server.token('alice'),
      server.token('bob'),
      server.token('carol'),
      server.token('admin-1', { admin: true }),
    ]);
    for (const row of await sql<{ id: string; sku: string }>('select id, sku from products')) productIds.set(row.sku, row.id);
  });

  afterAll(async () => {
    await uncached?.close();
    await server?.close();
  });

  async function sql<T>(text: string, params: unknown[] = [], target: TestServer = server): Promise<T[]> {
    return withClient(target.databaseUrl, async (client) => (await client.query(text, params)).rows as T[]);
  }

  function productId(sku: string): string {
    const id = productIds.get(sku);
    if (!id) throw new Error(`no seeded product ${sku}`);
    return id;
  }

  /** A product of its own for one test, so stock and price changes affect nothing else. */
  async function newProduct(stock: number, priceCents = 1000, target: TestServer = server): Promise<string> {
    const sku = `RULES-${randomBytes(4).toString('hex')}`;
    const [row] = await sql<{ id: string }>(
      `insert into products (id, sku, name, price_cents, currency, stock, created_at)
       values (gen_random_uuid(), $1, $2, $3, 'USD', $4, now()) returning id::text`,
      [sku, `Product ${sku}`, priceCents, stock],
      target,
    );
    return row!.id;
  }

  async function stockOf(id: string, target: TestServer = server): Promise<number> {
    const [row] = await sql<{ stock: number }>('select stock from products where id = $1', [id], target);
    return row!.stock;
  }

  async function countOrders(target: TestServer = server): Promise<number> {
    const [row] = await sql<{ count: number }>('select count(*)::int as count from orders', [], target);
    return row!.count;
  }

  async function snapshot(target: TestServer = server): Promise<Snapshot> {
    const [counts] = await sql<{ orders: number; lines: number; records: number; products: number }>(
      `select (select count(*)::int from orders) as orders, (select count(*)::int from order_lines) as lines,
              (select count(*)::int from idempotency_records) as records, (select count(*)::int from products) as products`,
      [],
      target,
    );
    const stock = await sql<{ id: string; stock: number }>('select id::text, stock from products order by id', [], target);
    const statuses = await sql<{ id: string; status: string }>('select id::text, status from orders order by id', [], target);
    return { ...counts!, stock, statuses };
  }

  async function rowsOf(key: string, target: TestServer = server): Promise<StoredRow[]> {
    return sql<StoredRow>(
      `select user_id, key, operation, encode(fingerprint, 'hex') as fingerprint, outcome, result::text as result_text, result,
              created_at, expires_at
         from idempotency_records where key = $1 order by user_id`,
      [key],
      target,
    );
  }

  interface SendOptions {
    token?: string;
    /** The Idempotency-Key header; none when undefined. */
    header?: string;
    on?: TestServer;
  }

  /** Posts an operation with exactly the key sources the test names: no automatic header. */
  function send<T>(query: string, variables: Record<string, unknown> | undefined, options: SendOptions = {}) {
    const headers: Record<string, string> = options.header === undefined ? {} : { 'idempotency-key': options.header };
    return (options.on ?? server).gql<T>(query, variables, { token: options.token, headers, autoKey: false });
  }

  function placeOrder(input: OrderInput, key: string | undefined, options: SendOptions & { query?: string } = {}) {
    return send<Placed>(options.query ?? CREATE_ORDER, { input, key }, { token: alice, ...options });
  }

  async function placed(
    input: OrderInput,
    key: string | undefined,
    options: SendOptions & { query?: string } = {},
  ): Promise<GraphQLResponse<Placed>> {
    const response = await placeOrder(input, key, options);
    expect(response.body.errors).toBeUndefined();
    return response;
  }

  function mug(quantity = 1): OrderInput {
    return { lines: [{ productId: productId('MUG-001'), quantity }] };
  }

  describe('I1: where the key comes from', () => {
    it('takes the key from the idempotencyKey argument', async () => {
      const key = newKey();

      const first = await placed(mug(), key);
      const retry = await placeOrder(mug(), key);

      expect(markersOf(first)).toEqual([expect.objectContaining({ key, replayed: false })]);
      expect(retry.body.data?.createOrder.order.id).toBe(first.body.data!.createOrder.order.id);
      expect(markersOf(retry)).toEqual([expect.objectContaining({ key, replayed: true })]);
      expect((await rowsOf(key)).map((row) => row.user_id)).toEqual(['alice']);
    });

    it('takes the key from the Idempotency-Key header', async () => {
      const key = newKey();

      const first = await placed(mug(), undefined, { header: key });
      const retry = await placeOrder(mug(), undefined, { header: key });

      expect(markersOf(first)).toEqual([expect.objectContaining({ key, replayed: false })]);
      expect(retry.body.data?.createOrder.order.id).toBe(first.body.data!.createOrder.order.id);
      expect(markersOf(retry)).toEqual([expect.objectContaining({ key, replayed: true })]);
      expect((await rowsOf(key)).map((row) => row.user_id)).toEqual(['alice']);
    });

    it('accepts the same key in the argument and the header', async () => {
      const key = newKey();
      const before = await countOrders();

      const response = await placed(mug(), key, { header: key });

      expect(markersOf(response)).toEqual([expect.objectContaining({ key, replayed: false })]);
      expect(await countOrders()).toBe(before + 1);
      expect(await rowsOf(key)).toHaveLength(1);
    });

    it('treats an explicit null argument as absent and uses the header', async () => {
      const key = newKey();

      const first = await placed(mug(), undefined, { header: key });
      const literal = `mutation { createOrder(input: { lines: [{ productId: "${productId('MUG-001')}", quantity: 1 }] }, idempotencyKey: null) {
        order { id } } }`;
      const viaLiteral = await send<Placed>(literal, undefined, { token: alice, header: key });
      const viaNullVariable = await send<Placed>(CREATE_ORDER_ID_ONLY, { input: mug(), key: null }, { token: alice, header: key });

      expect(viaLiteral.body.errors).toBeUndefined();
      expect(viaNullVariable.body.errors).toBeUndefined();
      expect(viaLiteral.body.data?.createOrder.order.id).toBe(first.body.data!.createOrder.order.id);
      expect(viaNullVariable.body.data?.createOrder.order.id).toBe(first.body.data!.createOrder.order.id);
      expect(markersOf(viaLiteral)).toEqual([expect.objectContaining({ key, replayed: true })]);
      expect(await rowsOf(key)).toHaveLength(1);
    });

    it.each([
      ['1 character', 'k'],
      ['64 characters', `${randomBytes(16).toString('hex')}${'_-'.repeat(16)}`],
    ])('stores and replays a key of %s, from the argument or the header', async (_case, key) => {
      const [argumentUser, headerUser] = [await server.token(`edge-${randomUUID()}`), await server.token(`edge-${randomUUID()}`)];

      const viaArgument = await placed(mug(), key, { token: argumentUser });
      const viaHeader = await placed(mug(), undefined, { token: headerUser, header: key });
      const replays = [
        await placeOrder(mug(), undefined, { token: argumentUser, header: key }),
        await placeOrder(mug(), key, { token: headerUser }),
      ];

      expect(replays.map((replay) => replay.body.data?.createOrder.order.id)).toEqual([
        viaArgument.body.data!.createOrder.order.id,
        viaHeader.body.data!.createOrder.order.id,
      ]);
      expect(replays.map((replay) => markersOf(replay)?.[0]?.replayed)).toEqual([true, true]);
      expect((await rowsOf(key)).map((row) => row.key)).toEqual([key, key]);
    });

    it('executes two aliased fields that each pass their own key, without a header', async () => {
      const [firstKey, secondKey] = [newKey(), newKey()];
      const before = await countOrders();
      const query = `mutation Two($input: CreateOrderInput!, $a: IdempotencyKey, $b: IdempotencyKey) {
        first: createOrder(input: $input, idempotencyKey: $a) { order { id } }
        second: createOrder(input: $input, idempotencyKey: $b) { order { id } }
      }`;

      const response = await send<{ first: { order: { id: string } }; second: { order: { id: string } } }>(
        query,
        { input: mug(), a: firstKey, b: secondKey },
        { token: alice },
      );

      expect(response.body.errors).toBeUndefined();
      expect(response.body.data!.first.order.id).not.toBe(response.body.data!.second.order.id);
      expect(await countOrders()).toBe(before + 2);
      expect(await rowsOf(firstKey)).toHaveLength(1);
      expect(await rowsOf(secondKey)).toHaveLength(1);
    });

    describe('refuses the request and executes or stores nothing', () => {
      async function expectRefused(response: GraphQLResponse<unknown>, code: string, before: Snapshot, keys: string[] = []) {
        expect(Object.values(response.body.data ?? {}).filter((value) => value !== null)).toEqual([]);
        expect(response.body.errors?.length ?? 0).toBeGreaterThan(0);
        expect(new Set(codesOf(response))).toEqual(new Set([code]));
        expect(markersOf(response)).toBeUndefined();
        expect(await snapshot()).toEqual(before);
        for (const key of keys) expect(await rowsOf(key)).toEqual([]);
      }

      it('answers IDEMPOTENCY_KEY_INVALID when the argument and the header differ', async () => {
        const [argument, header] = [newKey(), newKey()];
        const before = await snapshot();

        const response = await placeOrder(mug(), argument, { header });

        await expectRefused(response, 'IDEMPOTENCY_KEY_INVALID', before, [argument, header]);
      });

      it('answers IDEMPOTENCY_KEY_INVALID when the header is used by an operation with two idempotent fields', async () => {
        const header = newKey();
        const before = await snapshot();
        const query = `mutation Two($input: CreateOrderInput!) {
          first: createOrder(input: $input) { order { id } }
          second: createOrder(input: $input) { order { id } }
        }`;

        const response = await send(query, { input: mug() }, { token: alice, header });

        await expectRefused(response, 'IDEMPOTENCY_KEY_INVALID', before, [header]);
      });

      it('answers IDEMPOTENCY_KEY_INVALID when the header is used by two different idempotent fields, one in a fragment', async () => {
        const header = newKey();
        const order = (await placed(mug(), newKey())).body.data!.createOrder.order;
        const before = await snapshot();
        const query = `mutation Mixed($input: CreateOrderInput!, $cancel: CancelOrderInput!) {
          createOrder(input: $input) { order { id } }
          ...Cancel
        }
        fragment Cancel on Mutation { cancelOrder(input: $cancel) { order { id } } }`;

        const response = await send(query, { input: mug(), cancel: { orderId: order.id } }, { token: alice, header });

        await expectRefused(response, 'IDEMPOTENCY_KEY_INVALID', before, [header]);
      });

      it('answers IDEMPOTENCY_KEY_MISSING when neither an argument nor a header is given', async () => {
        const before = await snapshot();

        const response = await placeOrder(mug(), undefined);

        await expectRefused(response, 'IDEMPOTENCY_KEY_MISSING', before);
      });

      it('answers IDEMPOTENCY_KEY_MISSING for an explicit null argument without a header', async () => {
        const before = await snapshot();
        const literal = `mutation { createOrder(input: { lines: [{ productId: "${productId('MUG-001')}", quantity: 1 }] }, idempotencyKey: null) {
          order { id } } }`;

        const viaVariable = await send(CREATE_ORDER_ID_ONLY, { input: mug(), key: null }, { token: alice });
        const viaLiteral = await send(literal, undefined, { token: alice });

        await expectRefused(viaVariable, 'IDEMPOTENCY_KEY_MISSING', before);
        await expectRefused(viaLiteral, 'IDEMPOTENCY_KEY_MISSING', before);
      });

      const malformed: [string, unknown][] = [
        ['an empty string', ''],
        ['a space inside', 'a b'],
        ['65 characters', 'k'.repeat(65)],
        ['a leading space', ' abc'],
        ['a trailing newline', 'abc\n'],
        ['a non-ASCII letter', 'clé'],
        ['a dot', 'order.1'],
        ['a number', 42],
      ];

      it.each(malformed)('answers IDEMPOTENCY_KEY_INVALID, not BAD_USER_INPUT, for %s in a variable', async (_case, key) => {
        const before = await snapshot();

        const response = await send(CREATE_ORDER_ID_ONLY, { input: mug(), key }, { token: alice });

        await expectRefused(response, 'IDEMPOTENCY_KEY_INVALID', before);
      });

      it.each(
        malformed.filter(([, key]) => typeof key === 'string'),
      )('answers IDEMPOTENCY_KEY_INVALID for %s in a string literal', async (_case, key) => {
        const before = await snapshot();
        const query = `mutation { createOrder(input: { lines: [{ productId: "${productId('MUG-001')}", quantity: 1 }] }, idempotencyKey: ${JSON.stringify(key)}) {
            order { id } } }`;

        const response = await send(query, undefined, { token: alice });

        await expectRefused(response, 'IDEMPOTENCY_KEY_INVALID', before);
      });

      it.each([
        ['a number', '42'],
        ['a list', '["key-1"]'],
      ])('answers IDEMPOTENCY_KEY_INVALID for %s as a literal key', async (_case, literal) => {
        const before = await snapshot();
        const query = `mutation { createOrder(input: { lines: [{ productId: "${productId('MUG-001')}", quantity: 1 }] }, idempotencyKey: ${literal}) {
            order { id } } }`;

        const response = await send(query, undefined, { token: alice });

        await expectRefused(response, 'IDEMPOTENCY_KEY_INVALID', before);
      });

      it.each([
        ['an empty header', ''],
        ['a space inside', 'a b'],
        ['65 characters', 'h'.repeat(65)],
        ['a non-ASCII letter', 'clé'],
        ['a comma, as when the header is repeated', 'key-1, key-2'],
      ])('answers IDEMPOTENCY_KEY_INVALID for %s in the Idempotency-Key header', async (_case, header) => {
        const before = await snapshot();

        const response = await placeOrder(mug(), undefined, { header });

        await expectRefused(response, 'IDEMPOTENCY_KEY_INVALID', before);
      });
    });
  });

  describe('I2: records belong to a user and a key', () => {
    it('keeps the records of two users who use the same key apart, without a conflict', async () => {
      const key = newKey();

      const asAlice = await placed(mug(), key, { token: alice });
      const asBob = await placed(mug(), key, { token: bob });
      const aliceAgain = await placeOrder(mug(), key, { token: alice });
      const bobAgain = await placeOrder(mug(), key, { token: bob });

      const aliceOrder = asAlice.body.data!.createOrder.order.id;
      const bobOrder = asBob.body.data!.createOrder.order.id;
      expect(bobOrder).not.toBe(aliceOrder);
      expect(markersOf(asBob)).toEqual([expect.objectContaining({ key, replayed: false })]);
      expect(aliceAgain.body.data?.createOrder.order.id).toBe(aliceOrder);
      expect(bobAgain.body.data?.createOrder.order.id).toBe(bobOrder);
      expect((await rowsOf(key)).map((row) => row.user_id)).toEqual(['alice', 'bob']);
      expect(await sql('select user_id from orders where id = any($1::uuid[]) order by user_id', [[aliceOrder, bobOrder]])).toEqual([
        { user_id: 'alice' },
        { user_id: 'bob' },
      ]);
    });

    it("neither conflicts with nor reveals another user's record with the same key", async () => {
      const key = newKey();
      const first = await placed(mug(1), key, { token: alice });

      const asBob = await placed(mug(2), key, { token: bob });
      const bobsView = await server.gql<RecordLookup>(RECORD, { key }, { token: bob });
      const carolsView = await server.gql<RecordLookup>(RECORD, { key }, { token: carol });

      expect(asBob.body.data!.createOrder.order.lines[0]!.quantity).toBe(2);
      const bobsMarker = markersOf(asBob)![0]!;
      expect(bobsView.body.data?.idempotencyRecord).toEqual({
        key,
        operation: 'createOrder',
        outcome: 'SUCCEEDED',
        createdAt: bobsMarker.firstExecutedAt,
        expiresAt: bobsMarker.expiresAt,
      });
      expect(carolsView.body).toEqual({ data: { idempotencyRecord: null } });
      expect(JSON.stringify(asBob.body)).not.toContain(first.body.data!.createOrder.order.id);
    });
  });

  describe('I3: the fingerprint depends on the arguments only', () => {
    const key = newKey();
    let orderId: string;
    let ordersAfterFirst: number;

    beforeAll(async () => {
      const first = await placed(mug(1), key, { query: CREATE_ORDER_ID_ONLY });
      orderId = first.body.data!.createOrder.order.id;
      ordersAfterFirst = await countOrders();
    });

    type Retry = { query: string; variables?: Record<string, unknown>; header?: string; orderId: (data: never) => string };
    const literalInput = (fields: string) => `{ lines: [{ ${fields} }] }`;
    const retries: [string, () => Retry][] = [
      [
        'another selection set',
        () => ({
          query: `mutation Place($input: CreateOrderInput!, $key: IdempotencyKey) {
            createOrder(input: $input, idempotencyKey: $key) { order { totalCents lines { quantity } id status } } }`,
          variables: { input: mug(1), key },
          orderId: (data: Placed) => data.createOrder.order.id,
        }),
      ],
      [
        'aliases',
        () => ({
          query: `mutation Place($input: CreateOrderInput!, $key: IdempotencyKey) {
            placed: createOrder(input: $input, idempotencyKey: $key) { o: order { orderId: id } } }`,
          variables: { input: mug(1), key },
          orderId: (data: { placed: { o: { orderId: string } } }) => data.placed.o.orderId,
        }),
      ],
      [
        'another operation name',
        () => ({
          query: `mutation RetryAfterTimeout($input: CreateOrderInput!, $key: IdempotencyKey) {
            createOrder(input: $input, idempotencyKey: $key) { order { id } } }`,
          variables: { input: mug(1), key },
          orderId: (data: Placed) => data.createOrder.order.id,
        }),
      ],
      [
        'an anonymous operation',
        () => ({
          query: `mutation ($input: CreateOrderInput!, $key: IdempotencyKey) { createOrder(input: $input, idempotencyKey: $key) { order { id } } }`,
          variables: { input: mug(1), key },
          orderId: (data: Placed) => data.createOrder.order.id,
        }),
      ],
      [
        'inline literals instead of variables',
        () => ({
          query: `mutation { createOrder(input: ${literalInput(`productId: "${productId('MUG-001')}", quantity: 1`)}, idempotencyKey: "${key}") {
            order { id } } }`,
          orderId: (data: Placed) => data.createOrder.order.id,
        }),
      ],
      [
        'input fields in another order',
        () => ({
          query: `mutation { createOrder(idempotencyKey: "${key}", input: { note: null, lines: [{ quantity: 1, productId: "${productId('MUG-001')}" }] }) {
            order { id } } }`,
          orderId: (data: Placed) => data.createOrder.order.id,
        }),
      ],
      [
        'other whitespace, commas and comments',
        () => ({
          query: `
            # a retry from another client
            mutation   Place (  $input : CreateOrderInput! ,, $key:IdempotencyKey )
            {createOrder(input:$input,idempotencyKey:$key){order{id}}}
          `,
          variables: { key, input: { lines: [{ quantity: 1, productId: productId('MUG-001') }] } },
          orderId: (data: Placed) => data.createOrder.order.id,
        }),
      ],
      [
        'note: null in a variable instead of no note',
        () => ({
          query: CREATE_ORDER_ID_ONLY,
          variables: { input: { ...mug(1), note: null }, key },
          orderId: (data: Placed) => data.createOrder.order.id,
        }),
      ],
      [
        'the key in the header instead of the argument',
        () => ({
          query: CREATE_ORDER_ID_ONLY,
          variables: { input: mug(1) },
          header: key,
          orderId: (data: Placed) => data.createOrder.order.id,
        }),
      ],
    ];

    it.each(retries)('replays the first result for a retry that differs only in %s', async (_case, make) => {
      const retry = make();
      const before = await snapshot();

      const response = await send<never>(retry.query, retry.variables, { token: alice, header: retry.header });

      expect(response.body.errors).toBeUndefined();
      expect(retry.orderId(response.body.data!)).toBe(orderId);
      expect(markersOf(response)).toEqual([expect.objectContaining({ key, replayed: true })]);
      expect(await snapshot()).toEqual(before);
      expect(await countOrders()).toBe(ordersAfterFirst);
    });

    it.each([
      ['another quantity', () => mug(2)],
      ['another product', () => ({ lines: [{ productId: productId('PEN-001'), quantity: 1 }] })],
      ['a note', () => ({ ...mug(1), note: 'leave at the door' })],
      ['an empty note', () => ({ ...mug(1), note: '' })],
      ['an extra line', () => ({ lines: [...mug(1).lines, { productId: productId('PEN-001'), quantity: 1 }] })],
      ['the product id in upper case', () => ({ lines: [{ productId: productId('MUG-001').toUpperCase(), quantity: 1 }] })],
    ])('answers IDEMPOTENCY_KEY_REUSED for a retry with %s', async (_case, input) => {
      const before = await snapshot();

      const response = await placeOrder(input(), key);

      expect(codesOf(response)).toEqual(['IDEMPOTENCY_KEY_REUSED']);
      expect(response.body.data ?? null).toBeNull();
      expect(await snapshot()).toEqual(before);
    });
  });

  describe('I4 and I5: one atomic first execution, then replays of the whole payload', () => {
    it('replays every field of the first payload, whatever the first selection, after stock, price and status changed', async () => {
      const product = await newProduct(50, 1250);
      const key = newKey();
      const first = await placed({ lines: [{ productId: product, quantity: 2 }] }, key, { query: CREATE_ORDER_ID_ONLY });
      const orderId = first.body.data!.createOrder.order.id;
      expect(first.body.data!.createOrder.order).toEqual({ id: orderId });
      const stockAtFirst = await stockOf(product);
      const [row] = await sql<{ created_at: Date }>('select created_at from orders where id = $1', [orderId]);

      await placed({ lines: [{ productId: product, quantity: 3 }] }, newKey());
      expect((await send<Cancelled>(CANCEL_ORDER, { input: { orderId }, key: newKey() }, { token: alice })).body.errors).toBeUndefined();
      await sql("update products set price_cents = 9999, name = 'Renamed' where id = $1", [product]);
      const stockNow = await stockOf(product);
      expect(stockNow).not.toBe(stockAtFirst);
      const before = await snapshot();

      const cachedReplay = await placeOrder({ lines: [{ productId: product, quantity: 2 }] }, key);
      const databaseReplay = await placeOrder({ lines: [{ productId: product, quantity: 2 }] }, key, { on: uncached });

      const expected: OrderView = {
        id: orderId,
        status: 'PLACED',
        totalCents: 2500,
        currency: 'USD',
        note: null,
        createdAt: row!.created_at.toISOString(),
        cancelledAt: null,
        lines: [
          {
            quantity: 2,
            unitPriceCents: 1250,
            lineTotalCents: 2500,
            product: {
              id: product,
              sku: expect.stringMatching(/^RULES-/),
              name: expect.not.stringMatching(/Renamed/),
              priceCents: 1250,
              currency: 'USD',
              stock: stockAtFirst,
            },
          },
        ],
      };
      for (const replay of [cachedReplay, databaseReplay]) {
        expect(replay.body.errors).toBeUndefined();
        expect(replay.body.data!.createOrder.order).toEqual(expected);
        expect(markersOf(replay)).toEqual([expect.objectContaining({ replayed: true })]);
      }
      expect(databaseReplay.body.data).toEqual(cachedReplay.body.data);
      expect(await snapshot()).toEqual(before);
      expect(await stockOf(product)).toBe(stockNow);
    });

    it('stores the payload the first execution returned, in the record committed with the order', async () => {
      const key = newKey();

      const first = await placed(mug(3), key);

      const order = first.body.data!.createOrder.order;
      const [row] = await rowsOf(key);
      expect(row!.outcome).toBe('SUCCEEDED');
      expect(row!.result).toEqual({ kind: 'payload', payload: { order: expect.objectContaining({ id: order.id }) } });
      const stored = (row!.result as { payload: { order: OrderView & { lines: { product: ProductView }[] } } }).payload.order;
      expect(stored.lines.map((line) => line.product)).toEqual(order.lines.map((line) => expect.objectContaining(line.product)));
      expect(stored.totalCents).toBe(order.totalCents);
    });

    it('executes nothing on a replay: no order, no stock change, no write statement', async () => {
      const key = newKey();
      const first = await placed(mug(2), key);
      const before = await snapshot();

      for (const target of [server, uncached, server, uncached]) {
        target.resetStatements();
        const replay = await placeOrder(mug(2), key, { on: target });
        expect(replay.body.data?.createOrder.order).toEqual(first.body.data!.createOrder.order);
        const writes = target.statements.filter((statement) => /^\s*(insert|update|delete|begin|start transaction)\b/i.test(statement));
        expect(writes).toEqual([]);
      }
      expect(await snapshot()).toEqual(before);
    });

    it('commits no order when its record cannot be written, and the key then executes normally', async () => {
      const key = `fail-record-${randomBytes(6).toString('hex')}`;
      const product = await newProduct(10);
      await sql(`create or replace function rules_test_fail_record() returns trigger language plpgsql as $$
                 begin
                   if new.key like 'fail-record-%' then raise exception 'record write failed on purpose'; end if;
                   return new;
                 end $$`);
      await sql(
        'create trigger rules_test_fail_record before insert on idempotency_records for each row execute function rules_test_fail_record()',
      );
      const before = await snapshot();
      let failed: GraphQLResponse<Placed>;
      try {
        failed = await placeOrder({ lines: [{ productId: product, quantity: 4 }] }, key);
      } finally {
        await sql('drop trigger rules_test_fail_record on idempotency_records');
        await sql('drop function rules_test_fail_record()');
      }

      expect(failed.body.data ?? null).toBeNull();
      expect(codesOf(failed)).toEqual(['INTERNAL_SERVER_ERROR']);
      expect(await snapshot()).toEqual(before);
      expect(await stockOf(product)).toBe(10);

      const retry = await placed({ lines: [{ productId: product, quantity: 4 }] }, key);
      expect(markersOf(retry)).toEqual([expect.objectContaining({ key, replayed: false })]);
      expect(await stockOf(product)).toBe(6);
    });
  });

  describe('I6: the replay marker', () => {
    it('reports the first execution and its replays in extensions.idempotency and the Idempotent-Replayed header', async () => {
      const key = newKey();

      const first = await placed(mug(), key);
      const replays = [await placeOrder(mug(), key), await placeOrder(mug(), key, { on: uncached })];

      const [row] = await rowsOf(key);
      const marker = markersOf(first)![0]!;
      expect(markersOf(first)).toEqual([
        {
          path: ['createOrder'],
          key,
          replayed: false,
          firstExecutedAt: row!.created_at.toISOString(),
          expiresAt: row!.expires_at.toISOString(),
        },
      ]);
      expect(Date.parse(marker.expiresAt) - Date.parse(marker.firstExecutedAt)).toBe(DAY_MS);
      expect(replayedHeader(first)).toBeNull();
      for (const replay of replays) {
        expect(markersOf(replay)).toEqual([{ ...marker, replayed: true }]);
        expect(replayedHeader(replay)).toBe('true');
      }
    });

    it('reports the response path of an aliased field', async () => {
      const key = newKey();
      const query = `mutation ($input: CreateOrderInput!, $key: IdempotencyKey) {
        placed: createOrder(input: $input, idempotencyKey: $key) { order { id } } }`;

      const first = await send(query, { input: mug(), key }, { token: alice });
      const replay = await send(query, { input: mug(), key }, { token: alice });

      expect(markersOf(first)).toEqual([expect.objectContaining({ path: ['placed'], key, replayed: false })]);
      expect(markersOf(replay)).toEqual([expect.objectContaining({ path: ['placed'], key, replayed: true })]);
    });

    it('carries the entry of a stored failure and of its replay', async () => {
      const key = newKey();
      const input = { lines: [{ productId: randomUUID(), quantity: 1 }] };

      const first = await placeOrder(input, key);
      const replay = await placeOrder(input, key, { on: uncached });

      expect(codesOf(first)).toEqual(['PRODUCT_NOT_FOUND']);
      const marker = markersOf(first)![0]!;
      expect(marker).toEqual(expect.objectContaining({ path: ['createOrder'], key, replayed: false }));
      expect(replayedHeader(first)).toBeNull();
      expect(codesOf(replay)).toEqual(['PRODUCT_NOT_FOUND']);
      expect(markersOf(replay)).toEqual([{ ...marker, replayed: true }]);
      expect(replayedHeader(replay)).toBe('true');
    });

    it('reports one entry per idempotent field, each with its own path and key', async () => {
      const [firstKey, secondKey, thirdKey] = [newKey(), newKey(), newKey()];
      const query = `mutation Two($input: CreateOrderInput!, $a: IdempotencyKey, $b: IdempotencyKey) {
        first: createOrder(input: $input, idempotencyKey: $a) { order { id } }
        second: createOrder(input: $input, idempotencyKey: $b) { order { id } }
      }`;

      const both = await send(query, { input: mug(), a: firstKey, b: secondKey }, { token: alice });
      const mixed = await send(query, { input: mug(), a: firstKey, b: thirdKey }, { token: alice });

      expect(markersOf(both)).toEqual([
        expect.objectContaining({ path: ['first'], key: firstKey, replayed: false }),
        expect.objectContaining({ path: ['second'], key: secondKey, replayed: false }),
      ]);
      expect(replayedHeader(both)).toBeNull();
      expect(markersOf(mixed)).toEqual([
        { ...markersOf(both)![0]!, replayed: true },
        expect.objectContaining({ path: ['second'], key: thirdKey, replayed: false }),
      ]);
      expect(replayedHeader(mixed)).toBe('true');
    });

    it('reports nothing for an operation without idempotent fields', async () => {
      const response = await send(`query { viewer { id } }`, undefined, { token: alice, header: newKey() });

      expect(response.body.errors).toBeUndefined();
      expect(markersOf(response)).toBeUndefined();
      expect(replayedHeader(response)).toBeNull();
    });
  });

  describe('I7: a key reused with other arguments', () => {
    const targets: [string, () => TestServer][] = [
      ['from the cache', () => server],
      ['from the database', () => uncached],
    ];

    it.each(
      targets,
    )('answers IDEMPOTENCY_KEY_REUSED for other arguments, executes nothing and keeps the record (%s)', async (_case, target) => {
      const key = newKey();
      const first = await placed(mug(1), key);
      const orderId = first.body.data!.createOrder.order.id;
      const rowBefore = await rowsOf(key);
      const before = await snapshot();

      const reused = await placeOrder(mug(5), key, { on: target() });

      expect(codesOf(reused)).toEqual(['IDEMPOTENCY_KEY_REUSED']);
      expect(reused.body.data ?? null).toBeNull();
      expect(JSON.stringify(reused.body)).not.toContain(orderId);
      expect(replayedHeader(reused)).toBeNull();
      expect(await snapshot()).toEqual(before);
      expect(await rowsOf(key)).toEqual(rowBefore);
      const replay = await placeOrder(mug(1), key, { on: target() });
      expect(replay.body.data?.createOrder.order).toEqual(first.body.data!.createOrder.order);
    });

    it.each(targets)('answers IDEMPOTENCY_KEY_REUSED for the key of a createOrder used by a cancelOrder (%s)', async (_case, target) => {
      const key = newKey();
      const first = await placed(mug(1), key);
      const orderId = first.body.data!.createOrder.order.id;
      const rowBefore = await rowsOf(key);
      const before = await snapshot();

      const reused = await send<Cancelled>(CANCEL_ORDER, { input: { orderId }, key }, { token: alice, on: target() });

      expect(codesOf(reused)).toEqual(['IDEMPOTENCY_KEY_REUSED']);
      expect(reused.body.data ?? null).toBeNull();
      expect(JSON.stringify(reused.body)).not.toContain(first.body.data!.createOrder.order.createdAt);
      expect(await snapshot()).toEqual(before);
      expect(await sql('select status from orders where id = $1', [orderId])).toEqual([{ status: 'PLACED' }]);
      expect(await rowsOf(key)).toEqual(rowBefore);
    });

    it('answers IDEMPOTENCY_KEY_REUSED, not the stored failure, for other arguments after a failure', async () => {
      const key = newKey();
      const missing = randomUUID();
      const first = await placeOrder({ lines: [{ productId: missing, quantity: 1 }] }, key);
      expect(codesOf(first)).toEqual(['PRODUCT_NOT_FOUND']);
      const rowBefore = await rowsOf(key);
      const before = await snapshot();

      const reused = await placeOrder(mug(1), key, { on: uncached });

      expect(codesOf(reused)).toEqual(['IDEMPOTENCY_KEY_REUSED']);
      expect(JSON.stringify(reused.body)).not.toContain(missing);
      expect(await snapshot()).toEqual(before);
      expect(await rowsOf(key)).toEqual(rowBefore);
    });
  });

  describe('I9: what is stored', () => {
    function expectStoredFailure(rows: StoredRow[], operation: string, code: string): void {
      expect(rows).toHaveLength(1);
      expect(rows[0]).toMatchObject({ operation, outcome: 'FAILED', result: { kind: 'error', code } });
    }

    it('stores INSUFFICIENT_STOCK and replays it after the stock was raised; a new key then succeeds', async () => {
      const product = await newProduct(2);
      const other = await newProduct(10);
      const key = newKey();
      const input = {
        lines: [
          { productId: other, quantity: 1 },
          { productId: product, quantity: 3 },
        ],
      };
      const before = await snapshot();

      const first = await placeOrder(input, key);

      expect(codesOf(first)).toEqual(['INSUFFICIENT_STOCK']);
      expect(first.body.data ?? null).toBeNull();
      expectStoredFailure(await rowsOf(key), 'createOrder', 'INSUFFICIENT_STOCK');
      expect(await snapshot()).toEqual({ ...before, records: before.records + 1 });

      await sql('update products set stock = 100 where id = $1', [product]);
      const afterRaise = await snapshot();
      const replays = [await placeOrder(input, key), await placeOrder(input, key, { on: uncached })];
      for (const replay of replays) {
        expect(replay.body.errors).toEqual(first.body.errors);
        expect(replay.body.data ?? null).toBeNull();
      }
      expect(await snapshot()).toEqual(afterRaise);

      const fresh = await placed(input, newKey());
      expect(fresh.body.data!.createOrder.order.lines.map((line) => line.quantity)).toEqual([1, 3]);
      expect([await stockOf(other), await stockOf(product)]).toEqual([9, 97]);
    });

    it('stores PRODUCT_NOT_FOUND and replays it after the product appeared; a new key then succeeds', async () => {
      const missing = randomUUID();
      const key = newKey();
      const input = { lines: [{ productId: missing, quantity: 1 }] };

      const first = await placeOrder(input, key);
      expect(codesOf(first)).toEqual(['PRODUCT_NOT_FOUND']);
      expect(first.body.errors![0]!.message).toContain(missing);
      expectStoredFailure(await rowsOf(key), 'createOrder', 'PRODUCT_NOT_FOUND');

      await sql(
        `insert into products (id, sku, name, price_cents, currency, stock, created_at)
                 values ($1, $2, 'Late product', 100, 'USD', 10, now())`,
        [missing, `LATE-${randomBytes(4).toString('hex')}`],
      );
      const before = await snapshot();
      const replay = await placeOrder(input, key, { on: uncached });
      expect(replay.body.errors).toEqual(first.body.errors);
      expect(await snapshot()).toEqual(before);

      const fresh = await placed(input, newKey());
      expect(fresh.body.data!.createOrder.order.lines[0]!.product.id).toBe(missing);
    });

    it('stores ORDER_NOT_CANCELLABLE and replays it after the order became cancellable again; a new key then cancels', async () => {
      const order = (await placed(mug(1), newKey())).body.data!.createOrder.order;
      const cancel = (key: string, target: TestServer = server) =>
        send<Cancelled>(CANCEL_ORDER, { input: { orderId: order.id }, key }, { token: alice, on: target });
      expect((await cancel(newKey())).body.errors).toBeUndefined();
      const key = newKey();

      const first = await cancel(key);
      expect(codesOf(first)).toEqual(['ORDER_NOT_CANCELLABLE']);
      expectStoredFailure(await rowsOf(key), 'cancelOrder', 'ORDER_NOT_CANCELLABLE');

      await sql("update orders set status = 'PLACED', cancelled_at = null where id = $1", [order.id]);
      await sql('update products set stock = stock - 1 where id = $1', [productId('MUG-001')]);
      const before = await snapshot();
      for (const replay of [await cancel(key), await cancel(key, uncached)]) {
        expect(replay.body.errors).toEqual(first.body.errors);
      }
      expect(await snapshot()).toEqual(before);

      const fresh = await cancel(newKey());
      expect(fresh.body.errors).toBeUndefined();
      expect(fresh.body.data!.cancelOrder.order.status).toBe('CANCELLED');
    });

    it('stores SKU_TAKEN and replays it after the SKU was freed; a new key then creates the product', async () => {
      const sku = `RULES-SKU-${randomBytes(4).toString('hex')}`;
      const input = { sku, name: 'Rules product', priceCents: 500, currency: 'USD', stock: 5 };
      const created = await send<CreatedProduct>(CREATE_PRODUCT, { input, key: newKey() }, { token: admin });
      expect(created.body.errors).toBeUndefined();
      const key = newKey();

      const first = await send<CreatedProduct>(CREATE_PRODUCT, { input, key }, { token: admin });
      expect(codesOf(first)).toEqual(['SKU_TAKEN']);
      expectStoredFailure(await rowsOf(key), 'createProduct', 'SKU_TAKEN');

      await sql('update products set sku = $2 where sku = $1', [sku, `${sku}-OLD`]);
      const before = await snapshot();
      const replay = await send<CreatedProduct>(CREATE_PRODUCT, { input, key }, { token: admin, on: uncached });
      expect(replay.body.errors).toEqual(first.body.errors);
      expect(await snapshot()).toEqual(before);

      const fresh = await send<CreatedProduct>(CREATE_PRODUCT, { input, key: newKey() }, { token: admin });
      expect(fresh.body.errors).toBeUndefined();
      expect(fresh.body.data!.createProduct.product.sku).toBe(sku);
    });

    it('stores nothing for BAD_USER_INPUT, so the same key works with the corrected input', async () => {
      const key = newKey();
      const before = await snapshot();

      const zero = await placeOrder(mug(0), key);
      const uncoercible = await send(
        CREATE_ORDER_ID_ONLY,
        { input: { lines: [{ productId: productId('MUG-001'), quantity: 'one' }] }, key },
        { token: alice },
      );

      expect(codesOf(zero)).toEqual(['BAD_USER_INPUT']);
      expect(codesOf(uncoercible)).toEqual(['BAD_USER_INPUT']);
      expect(markersOf(zero)).toBeUndefined();
      expect(await rowsOf(key)).toEqual([]);
      expect(await snapshot()).toEqual(before);

      const corrected = await placed(mug(1), key);
      expect(markersOf(corrected)).toEqual([expect.objectContaining({ key, replayed: false })]);
      expect(await countOrders()).toBe(before.orders + 1);
    });

    it('stores nothing when the caller may not run the mutation', async () => {
      const key = newKey();
      const input = { sku: `RULES-DENIED-${randomBytes(4).toString('hex')}`, name: 'Denied', priceCents: 1, currency: 'USD', stock: 1 };
      const before = await snapshot();

      const denied = await send(CREATE_PRODUCT, { input, key }, { token: bob });
      const anonymous = await placeOrder(mug(1), key, { token: undefined });

      expect(codesOf(denied)).toEqual(['FORBIDDEN']);
      expect(codesOf(anonymous)).toEqual(['UNAUTHENTICATED']);
      expect(await rowsOf(key)).toEqual([]);
      expect(await snapshot()).toEqual(before);
    });
  });

  describe('I10: expiry', () => {
    it('purges exactly the expired records, in batches, and reports how many', async () => {
      const user = `purge-${randomBytes(4).toString('hex')}`;
      await sql(
        `insert into idempotency_records (user_id, key, operation, fingerprint, outcome, result, created_at, expires_at)
         select $1, 'expired-' || n, 'createOrder', sha256(n::text::bytea), 'SUCCEEDED', '{"kind":"payload","payload":null}'::jsonb,
                now() - interval '2 days', now() - make_interval(mins => n)
           from generate_series(1, 5) as n
         union all
         select $1, 'live-' || n, 'createOrder', sha256(n::text::bytea), 'SUCCEEDED', '{"kind":"payload","payload":null}'::jsonb,
                now(), now() + make_interval(mins => n)
           from generate_series(1, 3) as n`,
        [user],
      );
      const [counts] = await sql<{ expired: number; total: number }>(
        'select count(*) filter (where expires_at <= now())::int as expired, count(*)::int as total from idempotency_records',
      );
      expect(counts!.expired).toBeGreaterThanOrEqual(5);

      const deleted = await purgeExpired(server.orm, new IdempotencyStore(), 2);

      expect(deleted).toBe(counts!.expired);
      const [after] = await sql<{ expired: number; total: number }>(
        'select count(*) filter (where expires_at <= now())::int as expired, count(*)::int as total from idempotency_records',
      );
      expect(after).toEqual({ expired: 0, total: counts!.total - deleted });
      expect(await sql('select key from idempotency_records where user_id = $1 order by key', [user])).toEqual([
        { key: 'live-1' },
        { key: 'live-2' },
        { key: 'live-3' },
      ]);
      expect(await purgeExpired(server.orm, new IdempotencyStore())).toBe(0);
    });

    describe('with IDEMPOTENCY_TTL_SECONDS=1', () => {
      let shortLived: TestServer;
      let token: string;

      beforeAll(async () => {
        shortLived = await startTestServer({ env: { IDEMPOTENCY_TTL_SECONDS: '1' } });
        token = await shortLived.token('alice');
      });

      afterAll(async () => {
        await shortLived?.close();
      });

      async function placeShort(quantity: number, key: string): Promise<GraphQLResponse<Placed>> {
        const [row] = await sql<{ id: string }>("select id::text from products where sku = 'MUG-001'", [], shortLived);
        return send<Placed>(CREATE_ORDER_ID_ONLY, { input: { lines: [{ productId: row!.id, quantity }] }, key }, { token, on: shortLived });
      }

      async function waitUntilExpired(marker: Marker): Promise<void> {
        const wait = Date.parse(marker.expiresAt) + 300 - Date.now();
        if (wait > 0) await sleep(wait);
      }

      it('executes a key again once its record expired, bypassing the in-memory cache', async () => {
        const key = newKey();
        const first = await placeShort(1, key);
        const replay = await placeShort(1, key);
        const marker = markersOf(first)![0]!;
        expect(Date.parse(marker.expiresAt) - Date.parse(marker.firstExecutedAt)).toBe(1000);
        expect(markersOf(replay)).toEqual([{ ...marker, replayed: true }]);
        expect(replay.body.data).toEqual(first.body.data);
        const ordersBefore = await countOrders(shortLived);

        await waitUntilExpired(marker);
        const lookup = await shortLived.gql<RecordLookup>(RECORD, { key }, { token });
        const again = await placeShort(1, key);

        expect(lookup.body).toEqual({ data: { idempotencyRecord: null } });
        expect(again.body.errors).toBeUndefined();
        expect(again.body.data!.createOrder.order.id).not.toBe(first.body.data!.createOrder.order.id);
        expect(markersOf(again)).toEqual([expect.objectContaining({ key, replayed: false })]);
        expect(Date.parse(markersOf(again)![0]!.firstExecutedAt)).toBeGreaterThan(Date.parse(marker.firstExecutedAt));
        expect(await countOrders(shortLived)).toBe(ordersBefore + 1);
        expect(await rowsOf(key, shortLived)).toHaveLength(1);
      });

      it('accepts other arguments with a key whose record expired', async () => {
        const key = newKey();
        const first = await placeShort(1, key);
        expect(first.body.errors).toBeUndefined();

        await waitUntilExpired(markersOf(first)![0]!);
        const other = await placeShort(2, key);

        expect(other.body.errors).toBeUndefined();
        expect(markersOf(other)).toEqual([expect.objectContaining({ key, replayed: false })]);
        expect(other.body.data!.createOrder.order.id).not.toBe(first.body.data!.createOrder.order.id);
      });
    });
  });

  describe('I11: looking up a record', () => {
    async function lookup(key: string, token: string | undefined): Promise<GraphQLResponse<RecordLookup>> {
      return server.gql<RecordLookup>(RECORD, { key }, { token });
    }

    it("shows the viewer's own live record of a success and of a failure", async () => {
      const [succeeded, failed] = [newKey(), newKey()];
      const success = await placed(mug(), succeeded);
      const failure = await placeOrder({ lines: [{ productId: randomUUID(), quantity: 1 }] }, failed);

      const [forSuccess, forFailure] = [await lookup(succeeded, alice), await lookup(failed, alice)];

      const [successMarker, failureMarker] = [markersOf(success)![0]!, markersOf(failure)![0]!];
      expect(forSuccess.body).toEqual({
        data: {
          idempotencyRecord: {
            key: succeeded,
            operation: 'createOrder',
            outcome: 'SUCCEEDED',
            createdAt: successMarker.firstExecutedAt,
            expiresAt: successMarker.expiresAt,
          },
        },
      });
      expect(forFailure.body.data?.idempotencyRecord).toEqual({
        key: failed,
        operation: 'createOrder',
        outcome: 'FAILED',
        createdAt: failureMarker.firstExecutedAt,
        expiresAt: failureMarker.expiresAt,
      });
    });

    it("returns null for another user's key and for an unknown key", async () => {
      const key = newKey();
      await placed(mug(), key);

      expect((await lookup(key, bob)).body).toEqual({ data: { idempotencyRecord: null } });
      expect((await lookup(newKey(), alice)).body).toEqual({ data: { idempotencyRecord: null } });
    });

    it('requires an authenticated user', async () => {
      const key = newKey();
      await placed(mug(), key);

      const response = await lookup(key, undefined);

      expect(response.body.data?.idempotencyRecord ?? null).toBeNull();
      expect(codesOf(response)).toEqual(['UNAUTHENTICATED']);
    });

    it('returns null for an expired record', async () => {
      const key = newKey();
      await placed(mug(), key);
      expect((await lookup(key, alice)).body.data?.idempotencyRecord?.key).toBe(key);

      await sql("update idempotency_records set expires_at = now() - interval '1 second' where key = $1", [key]);

      expect((await lookup(key, alice)).body).toEqual({ data: { idempotencyRecord: null } });
    });

    it('answers IDEMPOTENCY_KEY_INVALID for a malformed key', async () => {
      expect(codesOf(await lookup('not a key', alice))).toEqual(['IDEMPOTENCY_KEY_INVALID']);
    });
  });

  describe('I12: every state-changing mutation opts in to the generic engine', () => {
    it('replays cancelOrder without returning stock twice, and refuses its key for another order', async () => {
      const product = await newProduct(20);
      const order = (await placed({ lines: [{ productId: product, quantity: 5 }] }, newKey())).body.data!.createOrder.order;
      const other = (await placed({ lines: [{ productId: product, quantity: 1 }] }, newKey())).body.data!.createOrder.order;
      const key = newKey();
      const cancel = (orderId: string, target: TestServer = server) =>
        send<Cancelled>(CANCEL_ORDER, { input: { orderId }, key }, { token: alice, on: target });

      const first = await cancel(order.id);
      expect(first.body.errors).toBeUndefined();
      expect(first.body.data!.cancelOrder.order.status).toBe('CANCELLED');
      expect(await stockOf(product)).toBe(19);
      const before = await snapshot();

      const replays = [await cancel(order.id), await cancel(order.id, uncached)];
      const reused = await cancel(other.id);

      for (const replay of replays) {
        expect(replay.body.data).toEqual(first.body.data);
        expect(markersOf(replay)).toEqual([expect.objectContaining({ path: ['cancelOrder'], key, replayed: true })]);
      }
      expect(codesOf(reused)).toEqual(['IDEMPOTENCY_KEY_REUSED']);
      expect(await snapshot()).toEqual(before);
      expect(await sql('select status from orders where id = $1', [other.id])).toEqual([{ status: 'PLACED' }]);
      expect((await rowsOf(key))[0]!.operation).toBe('cancelOrder');
    });

    it('replays createProduct and refuses its key for another product', async () => {
      const key = newKey();
      const input = {
        sku: `RULES-IDEM-${randomBytes(4).toString('hex')}`,
        name: 'Idempotent product',
        priceCents: 700,
        currency: 'USD',
        stock: 9,
      };
      const create = (fields: typeof input, target: TestServer = server) =>
        send<CreatedProduct>(CREATE_PRODUCT, { input: fields, key }, { token: admin, on: target });

      const first = await create(input);
      expect(first.body.errors).toBeUndefined();
      const before = await snapshot();

      const replays = [await create(input), await create(input, uncached)];
      const reused = await create({ ...input, name: 'Another name' });

      for (const replay of replays) {
        expect(replay.body.data).toEqual(first.body.data);
        expect(markersOf(replay)).toEqual([expect.objectContaining({ path: ['createProduct'], key, replayed: true })]);
      }
      expect(codesOf(reused)).toEqual(['IDEMPOTENCY_KEY_REUSED']);
      expect(await snapshot()).toEqual(before);
      expect(await sql('select count(*)::int as count from products where sku = $1', [input.sku])).toEqual([{ count: 1 }]);
    });

    it('keeps the engine free of imports from orders and catalog', () => {
      const root = path.resolve(__dirname, '../../src');
      const engine = path.join(root, 'idempotency');
      const forbidden = [path.join(root, 'orders'), path.join(root, 'catalog')];
      const files = readdirSync(engine, { recursive: true, encoding: 'utf8' }).filter((file) => file.endsWith('.ts'));
      expect(files.length).toBeGreaterThan(5);

      const offending: string[] = [];
      for (const file of files) {
        const source = readFileSync(path.join(engine, file), 'utf8');
        const specifiers = [...source.matchAll(/(?:from\s+|import\s*\(\s*|require\s*\(\s*|import\s+)['"]([^'"]+)['"]/g)].map(
          (match) => match[1]!,
        );
        for (const specifier of specifiers) {
          if (!specifier.startsWith('.')) continue;
          const target = path.resolve(engine, path.dirname(file), specifier);
          if (forbidden.some((folder) => target === folder || target.startsWith(`${folder}${path.sep}`)))
            offending.push(`${file}: ${specifier}`);
        }
      }
      expect(offending).toEqual([]);
    });
  });

  describe('I13: storage', () => {
    it('stores a 32-byte fingerprint that is the SHA-256 of the canonical arguments, not the input', async () => {
      const key = newKey();
      const note = 'ring the bell twice';
      const mugId = productId('MUG-001');

      await placed({ lines: [{ productId: mugId, quantity: 1 }], note }, key);

      const [row] = await sql<{ fingerprint: Buffer; length: number }>(
        'select fingerprint, octet_length(fingerprint) as length from idempotency_records where key = $1',
        [key],
      );
      expect(row!.length).toBe(32);
      const canonical = `{"arguments":{"input":{"lines":[{"productId":"${mugId}","quantity":1}],"note":"${note}"}},"operation":"createOrder"}`;
      expect(row!.fingerprint.equals(createHash('sha256').update(canonical).digest())).toBe(true);
      for (const encoding of ['utf8', 'latin1', 'hex', 'base64'] as const) {
        const text = row!.fingerprint.toString(encoding);
        expect(text).not.toContain(note);
        expect(text).not.toContain(mugId);
        expect(text).not.toContain(key);
      }
    });

    it('stores the whole payload as plain JSONB when no encryption key is set', async () => {
      const key = newKey();
      const order = (await placed(mug(), key)).body.data!.createOrder.order;

      const [row] = await sql<{ type: string; kind: string; id: string; text: string }>(
        `select jsonb_typeof(result) as type, result->>'kind' as kind, result#>>'{payload,order,id}' as id, result::text as text
           from idempotency_records where key = $1`,
        [key],
      );
      expect(row).toEqual({ type: 'object', kind: 'payload', id: order.id, text: expect.stringContaining(order.id) });
    });

    describe('with IDEMPOTENCY_ENCRYPTION_KEY', () => {
      let encrypted: TestServer;
      let token: string;
      let mugId: string;

      beforeAll(async () => {
        encrypted = await startTestServer({ env: { IDEMPOTENCY_ENCRYPTION_KEY: randomBytes(32).toString('base64') }, cacheSize: 0 });
        token = await encrypted.token('alice');
        [{ id: mugId }] = (await sql<{ id: string }>("select id::text from products where sku = 'MUG-001'", [], encrypted)) as [
          { id: string },
        ];
      });

      afterAll(async () => {
        await encrypted?.close();
      });

      function placeEncrypted(input: OrderInput, key: string) {
        return send<Placed>(CREATE_ORDER, { input, key }, { token, on: encrypted });
      }

      async function storedText(key: string): Promise<string> {
        const [row] = await sql<{ text: string }>('select result::text as text from idempotency_records where key = $1', [key], encrypted);
        return row!.text;
      }

      it('keeps no plaintext of a payload or a failure at rest, and still replays both', async () => {
        const [okKey, failedKey] = [newKey(), newKey()];
        const missing = randomUUID();
        const note = 'deliver to the back door';
        const first = await placeEncrypted({ lines: [{ productId: mugId, quantity: 1 }], note }, okKey);
        const failure = await placeEncrypted({ lines: [{ productId: missing, quantity: 1 }] }, failedKey);
        expect(first.body.errors).toBeUndefined();
        expect(codesOf(failure)).toEqual(['PRODUCT_NOT_FOUND']);
        const orderId = first.body.data!.createOrder.order.id;
        const ordersBefore = await countOrders(encrypted);

        const [okText, failedText] = [await storedText(okKey), await storedText(failedKey)];
        for (const secret of [orderId, mugId, note, 'PLACED', 'payload', 'MUG-001']) expect(okText).not.toContain(secret);
        for (const secret of [missing, 'PRODUCT_NOT_FOUND', 'Product not found']) expect(failedText).not.toContain(secret);
        expect(Object.keys(JSON.parse(okText)).sort()).toEqual(['alg', 'data', 'iv', 'tag', 'v']);

        const replay = await placeEncrypted({ lines: [{ productId: mugId, quantity: 1 }], note }, okKey);
        const failureReplay = await placeEncrypted({ lines: [{ productId: missing, quantity: 1 }] }, failedKey);
        expect(replay.body.data).toEqual(first.body.data);
        expect(markersOf(replay)).toEqual([expect.objectContaining({ replayed: true })]);
        expect(failureReplay.body.errors).toEqual(failure.body.errors);
        expect(await countOrders(encrypted)).toBe(ordersBefore);
      });

      it('fails the replay of a tampered record with INTERNAL_SERVER_ERROR instead of returning other data', async () => {
        const key = newKey();
        const first = await placeEncrypted({ lines: [{ productId: mugId, quantity: 1 }] }, key);
        const orderId = first.body.data!.createOrder.order.id;
        const [row] = await sql<{ data: string }>(
          "select result->>'data' as data from idempotency_records where key = $1",
          [key],
          encrypted,
        );
        const bytes = Buffer.from(row!.data, 'base64');
        bytes[bytes.length >> 1] = bytes[bytes.length >> 1]! ^ 0x20;
        await sql(
          "update idempotency_records set result = jsonb_set(result, '{data}', to_jsonb($2::text)) where key = $1",
          [key, bytes.toString('base64')],
          encrypted,
        );
        const before = await snapshot(encrypted);

        const replay = await placeEncrypted({ lines: [{ productId: mugId, quantity: 1 }] }, key);

        expect(codesOf(replay)).toEqual(['INTERNAL_SERVER_ERROR']);
        expect(replay.body.data ?? null).toBeNull();
        expect(JSON.stringify(replay.body)).not.toContain(orderId);
        expect(await snapshot(encrypted)).toEqual(before);
      });

      it('fails the replay of a record copied onto another key instead of replaying it', async () => {
        const [source, target] = [newKey(), newKey()];
        const input = { lines: [{ productId: mugId, quantity: 1 }] };
        const sourceOrder = (await placeEncrypted(input, source)).body.data!.createOrder.order.id;
        const targetOrder = (await placeEncrypted(input, target)).body.data!.createOrder.order.id;
        await sql(
          `update idempotency_records t set result = s.result from idempotency_records s
            where t.key = $2 and s.key = $1 and s.user_id = t.user_id`,
          [source, target],
          encrypted,
        );
        const before = await snapshot(encrypted);

        const replay = await placeEncrypted(input, target);

        expect(codesOf(replay)).toEqual(['INTERNAL_SERVER_ERROR']);
        expect(JSON.stringify(replay.body)).not.toContain(sourceOrder);
        expect(JSON.stringify(replay.body)).not.toContain(targetOrder);
        expect(await snapshot(encrypted)).toEqual(before);
      });
    });
  });
});
