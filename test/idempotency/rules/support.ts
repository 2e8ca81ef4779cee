import { randomBytes, randomUUID } from 'node:crypto';
import { withClient } from '../../support/database';
import { plainResult } from '../../support/records';
import { type GraphQLResponse, startTestServer, type TestServer } from '../../support/server';

// Shared by the tests of rules I1-I13 (docs/idempotency.md, "Rules"), observed over HTTP against the real server and database.

export { codesOf } from '../../support/responses';

/** One entry of `extensions.idempotency`. */
export interface Marker {
  path: (string | number)[];
  key: string;
  replayed: boolean;
  firstExecutedAt: string;
  expiresAt: string;
  forgottenAt: string;
}

export interface ProductView {
  id: string;
  sku: string;
  name: string;
  priceCents: number;
  currency: string;
  stock: number;
}

export interface OrderView {
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

export interface OrderInput {
  lines: LineInput[];
  note?: string | null;
}

export type Placed = { createOrder: { order: OrderView } };
export type Cancelled = { cancelOrder: { order: OrderView } };
export type CreatedProduct = { createProduct: { product: ProductView } };
export type RecordLookup = {
  idempotencyRecord: { key: string; operation: string; outcome: string; createdAt: string; expiresAt: string } | null;
};

/** A record row as stored, in comparable form. */
export interface StoredRow {
  user_id: string;
  key: string;
  operation: string;
  fingerprint: string;
  outcome: string;
  /** The stored bytes, in hex. */
  result_bytes: string;
  /** The stored result, decoded as an unencrypted record; null in a tombstone. */
  result: unknown;
  created_at: Date;
  expires_at: Date;
  forgotten_at: Date | null;
}

/** What must stay untouched when nothing executes. */
export interface Snapshot {
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
export const CREATE_ORDER = `mutation Place($input: CreateOrderInput!, $key: IdempotencyKey) {
  createOrder(input: $input, idempotencyKey: $key) { order { ${ORDER_FIELDS} } }
}`;
export const CREATE_ORDER_ID_ONLY = `mutation Place($input: CreateOrderInput!, $key: IdempotencyKey) {
  createOrder(input: $input, idempotencyKey: $key) { order { id } }
}`;
export const CANCEL_ORDER = `mutation Cancel($input: CancelOrderInput!, $key: IdempotencyKey) {
  cancelOrder(input: $input, idempotencyKey: $key) { order { ${ORDER_FIELDS} } }
}`;
export const CREATE_PRODUCT = `mutation AddProduct($input: CreateProductInput!, $key: IdempotencyKey) {
  createProduct(input: $input, idempotencyKey: $key) { product { ${PRODUCT_FIELDS} } }
}`;
export const RECORD = `query Record($key: IdempotencyKey!) {
  idempotencyRecord(key: $key) { key operation outcome createdAt expiresAt }
}`;
export const DAY_MS = 86_400_000;

/** A fresh, valid idempotency key. */
export function newKey(): string {
  return `k-${randomUUID()}`;
}

/** The `extensions.idempotency` entries of a response. */
export function markersOf(response: GraphQLResponse<unknown>): Marker[] | undefined {
  return response.body.extensions?.idempotency as Marker[] | undefined;
}

/** The Idempotent-Replayed header of a response. */
export function replayedHeader(response: GraphQLResponse<unknown>): string | null {
  return response.headers.get('idempotent-replayed');
}

export async function sleep(ms: number): Promise<void> {
  await new Promise((resolve) => setTimeout(resolve, ms));
}

export interface SendOptions {
  token?: string;
  /** The Idempotency-Key header; none when undefined. */
  header?: string;
  on?: TestServer;
}

export interface RulesServersOptions {
  /** Also start a second process on the same database whose replays always read the database (default false). */
  readonly uncached?: boolean;
}

/** The servers and users of one test file, and helpers bound to its main server; usable once its `beforeAll` ran. */
export interface RulesContext {
  readonly server: TestServer;
  /** A second process on the same database whose replays always read the database. */
  readonly uncached: TestServer;
  readonly alice: string;
  readonly bob: string;
  readonly carol: string;
  /** A token of an administrator. */
  readonly admin: string;
  sql<T>(text: string, params?: unknown[], target?: TestServer): Promise<T[]>;
  /** The id of a seeded product. */
  productId(sku: string): string;
  /** A product of its own for one test, so stock and price changes affect nothing else. */
  newProduct(stock: number, priceCents?: number, target?: TestServer): Promise<string>;
  stockOf(id: string, target?: TestServer): Promise<number>;
  countOrders(target?: TestServer): Promise<number>;
  snapshot(target?: TestServer): Promise<Snapshot>;
  /** The records stored under a key, one per user. */
  rowsOf(key: string, target?: TestServer): Promise<StoredRow[]>;
  /** Posts an operation with exactly the key sources the test names: no automatic header. */
  send<T>(query: string, variables: Record<string, unknown> | undefined, options?: SendOptions): Promise<GraphQLResponse<T>>;
  /** Places an order as alice unless told otherwise. */
  placeOrder(input: OrderInput, key: string | undefined, options?: SendOptions & { query?: string }): Promise<GraphQLResponse<Placed>>;
  /** Places an order and expects it to succeed. */
  placed(input: OrderInput, key: string | undefined, options?: SendOptions & { query?: string }): Promise<GraphQLResponse<Placed>>;
  /** An order of seeded mugs. */
  mug(quantity?: number): OrderInput;
}

/** Starts the servers of one test file before its tests and closes them after. */
export function useRulesServers(options: RulesServersOptions = {}): RulesContext {
  let server: TestServer;
  let uncached: TestServer | undefined;
  let alice: string;
  let bob: string;
  let carol: string;
  let admin: string;
  const productIds = new Map<string, string>();

  beforeAll(async () => {
    server = await startTestServer();
    if (options.uncached) uncached = await startTestServer({ databaseUrl: server.databaseUrl, cacheSize: 0 });
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
    const rows = await sql<Omit<StoredRow, 'result'> & { result: Buffer | null }>(
      `select user_id, key, operation, encode(fingerprint, 'hex') as fingerprint, outcome, encode(result, 'hex') as result_bytes, result,
              created_at, expires_at, forgotten_at
         from idempotency_records where key = $1 order by user_id`,
      [key],
      target,
    );
    return rows.map((row) => ({ ...row, result: row.result && plainResult(row.result) }));
  }

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

  return {
    get server() {
      return server;
    },
    get uncached() {
      if (!uncached) throw new Error('no uncached server: call useRulesServers({ uncached: true })');
      return uncached;
    },
    get alice() {
      return alice;
    },
    get bob() {
      return bob;
    },
    get carol() {
      return carol;
    },
    get admin() {
      return admin;
    },
    sql,
    productId,
    newProduct,
    stockOf,
    countOrders,
    snapshot,
    rowsOf,
    send,
    placeOrder,
    placed,
    mug,
  };
}
