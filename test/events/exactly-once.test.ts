import { randomUUID } from 'node:crypto';
import { Client } from 'pg';
import { signToken } from '../../src/auth/token';
import { eventId } from '../../src/events';
import { OrderEvent } from '../../src/orders/order.events';
import { createTestDatabase, dropTestDatabase, withClient } from '../support/database';
import { postGraphQL, SPAWNED_JWT_SECRET, serverEnv, signalServer, startServer, stopAllServers } from '../support/processes';
import { startTestServer, type TestServer } from '../support/server';

const PLACE = `mutation Place($input: CreateOrderInput!) { createOrder(input: $input) { order { id } } }`;
const CANCEL = `mutation Cancel($input: CancelOrderInput!) { cancelOrder(input: $input) { order { id } } }`;
const EVENTS = `query Events($first: Int, $after: String) {
  events(first: $first, after: $after) { edges { node { id type data } } pageInfo { hasNextPage endCursor } }
}`;

interface FeedNode {
  id: string;
  type: string;
  data: { orderId?: string };
}

interface FeedPage {
  events: { edges: { node: FeedNode }[]; pageInfo: { hasNextPage: boolean; endCursor: string | null } };
}

jest.setTimeout(180_000);

/** Reads the feed from `url` page by page, remembering its cursor, as a consumer would. */
class FeedReader {
  cursor: string | null = null;
  readonly seen: FeedNode[] = [];

  constructor(private readonly read: (after: string | null) => Promise<FeedPage['events']>) {}

  /** Reads one page; returns whether more pages are ready now. */
  async step(): Promise<boolean> {
    const page = await this.read(this.cursor);
    this.seen.push(...page.edges.map((edge) => edge.node));
    this.cursor = page.pageInfo.endCursor ?? this.cursor;
    return page.pageInfo.hasNextPage;
  }

  /** Pages until `count` events were seen in all. */
  async until(count: number): Promise<void> {
    while (this.seen.length < count) {
      if (!(await this.step())) await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }
}

describe('exactly-once events under concurrent writers', () => {
  let server: TestServer;
  let reader: string;
  let productId: string;

  beforeAll(async () => {
    server = await startTestServer();
    reader = await signToken({ id: 'consumer', roles: ['events:read'] }, server.config.jwtSecret, '1h');
    const [row] = await sql<{ id: string }>(`select id from products where currency = 'USD' order by sku limit 1`);
    productId = row!.id;
    await sql('update products set stock = 1000000 where id = $1', [productId]);
  });

  afterAll(async () => {
    await server?.close();
  });

  async function sql<T>(text: string, params: unknown[] = []): Promise<T[]> {
    return withClient(server.databaseUrl, async (client) => (await client.query(text, params)).rows as T[]);
  }

  async function readPage(after: string | null) {
    const response = await server.gql<FeedPage>(EVENTS, { first: 7, after }, { token: reader });
    expect(response.body.errors).toBeUndefined();
    return response.body.data!.events;
  }

  it('shows each committed event once while 20 writers run, and none for replays or failures', async () => {
    const feed = new FeedReader(readPage);
    await feed.until(0);
    while (await feed.step());
    const before = feed.seen.length;

    let writing = true;
    const paging = (async () => {
      while (writing) if (!(await feed.step())) await new Promise((resolve) => setTimeout(resolve, 5));
    })();

    const expected: string[] = [];
    /** Sends a mutation with one key, retrying with the same key while the answer is retryable. */
    const send = async <T>(query: string, variables: Record<string, unknown>, token: string, key = randomUUID()) => {
      const headers = { 'idempotency-key': key };
      for (;;) {
        const response = await server.gql<T>(query, variables, { token, headers });
        if (response.body.errors?.[0]?.extensions?.retryable !== true) return response;
      }
    };
    const writers = Promise.all(
      Array.from({ length: 20 }, async (_, writer) => {
        const token = await server.token(`writer-${writer}`);
        for (let round = 0; round < 5; round += 1) {
          const input = { lines: [{ productId, quantity: 1 }] };
          const key = randomUUID();
          const placed = await send<{ createOrder: { order: { id: string } } }>(PLACE, { input }, token, key);
          expect(placed.body.errors).toBeUndefined();
          const replayed = await send(PLACE, { input }, token, key);
          expect(replayed.body.data).toEqual(placed.body.data);
          const orderId = placed.body.data!.createOrder.order.id;
          expected.push(eventId(OrderEvent.OrderPlaced, orderId));
          const failed = await send(PLACE, { input: { lines: [{ productId, quantity: 1001 }] } }, token);
          expect(failed.body.errors?.[0]?.extensions?.code).toBe('BAD_USER_INPUT');
          if (round % 2 === 0) {
            const cancelled = await send(CANCEL, { input: { orderId } }, token);
            expect(cancelled.body.errors).toBeUndefined();
            expected.push(eventId(OrderEvent.OrderCancelled, orderId));
            const again = await send(CANCEL, { input: { orderId } }, token);
            expect(again.body.errors?.[0]?.extensions?.code).toBe('ORDER_NOT_CANCELLABLE');
          }
        }
      }),
    );
    try {
      await writers;
    } finally {
      writing = false;
      await paging;
    }
    await feed.until(before + expected.length);
    while (await feed.step());

    const ids = feed.seen.slice(before).map((node) => node.id);
    expect(new Set(ids).size).toBe(ids.length);
    expect([...ids].sort()).toEqual([...expected].sort());
    // Each order's OrderPlaced comes before its OrderCancelled.
    const position = new Map(ids.map((id, index) => [id, index]));
    for (const node of feed.seen.slice(before).filter((event) => event.type === 'OrderCancelled')) {
      expect(position.get(eventId(OrderEvent.OrderPlaced, node.data.orderId as string))).toBeLessThan(position.get(node.id) as number);
    }
  });

  it('gives a consumer with an inbox exactly one effect per order, even when pages are delivered again', async () => {
    await sql('create table consumer_inbox (event_id uuid primary key)');
    await sql('create table consumer_effects (order_id uuid not null, event_type text not null)');
    const token = await server.token('inbox-writer');
    const orderIds: string[] = [];
    for (let index = 0; index < 12; index += 1) {
      const placed = await server.gql<{ createOrder: { order: { id: string } } }>(
        PLACE,
        { input: { lines: [{ productId, quantity: 1 }] } },
        { token },
      );
      orderIds.push(placed.body.data!.createOrder.order.id);
    }
    const consumer = new Client({ connectionString: server.databaseUrl });
    await consumer.connect();
    try {
      // The consumer crashes after each page's effects but before saving its cursor: every page
      // is delivered twice. The inbox, written in the effect's transaction, absorbs the repeat.
      let cursor: string | null = null;
      for (;;) {
        const page = await readPage(cursor);
        for (let delivery = 0; delivery < 2; delivery += 1) {
          for (const { node } of page.edges) {
            await consumer.query('BEGIN');
            const fresh = await consumer.query('insert into consumer_inbox values ($1) on conflict do nothing', [node.id]);
            if (fresh.rowCount === 1 && node.type === 'OrderPlaced') {
              await consumer.query('insert into consumer_effects values ($1, $2)', [node.data.orderId, node.type]);
            }
            await consumer.query('COMMIT');
          }
        }
        cursor = page.pageInfo.endCursor ?? cursor;
        if (!page.pageInfo.hasNextPage) {
          const [done] = await sql<{ n: number }>('select count(*)::int as n from consumer_effects where order_id = any($1)', [orderIds]);
          if (done!.n >= orderIds.length) break;
          await new Promise((resolve) => setTimeout(resolve, 20));
        }
      }
    } finally {
      await consumer.end();
    }
    const effects = await sql<{ order_id: string; n: number }>(
      'select order_id, count(*)::int as n from consumer_effects where order_id = any($1) group by order_id',
      [orderIds],
    );
    expect(effects.map((row) => row.n)).toEqual(orderIds.map(() => 1));
    expect(effects.map((row) => row.order_id).sort()).toEqual([...orderIds].sort());
  });
});

describe('a server killed in the middle of a mutation', () => {
  let databaseUrl: string;

  beforeAll(async () => {
    databaseUrl = await createTestDatabase();
  });

  afterAll(async () => {
    await stopAllServers();
    await dropTestDatabase(databaseUrl);
  });

  it('leaves neither the order nor its event, and the retry writes both once', async () => {
    const crashed = await startServer(serverEnv(databaseUrl));
    const token = await signToken({ id: 'killed-user', roles: ['events:read'] }, SPAWNED_JWT_SECRET, '1h');
    const headers = { authorization: `Bearer ${token}`, 'idempotency-key': randomUUID() };
    const [product] = await withClient(
      databaseUrl,
      async (client) => (await client.query<{ id: string }>(`select id from products where stock > 10 order by sku limit 1`)).rows,
    );
    const input = { lines: [{ productId: product!.id, quantity: 1 }] };

    const blocker = new Client({ connectionString: databaseUrl });
    await blocker.connect();
    try {
      // The order's rows are written; the event's insert waits for this lock, mid-transaction.
      await blocker.query('BEGIN');
      await blocker.query('LOCK TABLE outbox_events IN SHARE MODE');
      const request = postGraphQL(crashed.url, PLACE, { input }, headers).catch(() => undefined);
      for (;;) {
        const { rows } = await blocker.query(
          `select 1 from pg_locks l join pg_class c on c.oid = l.relation where c.relname = 'outbox_events' and not l.granted`,
        );
        if (rows.length > 0) break;
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      await signalServer(crashed, 'SIGKILL');
      await request;
      await blocker.query('ROLLBACK');
    } finally {
      await blocker.end();
    }

    const restarted = await startServer(serverEnv(databaseUrl));
    const retried = await postGraphQL<{ createOrder: { order: { id: string } } }>(restarted.url, PLACE, { input }, headers);
    expect(retried.body.errors).toBeUndefined();
    const orderId = retried.body.data!.createOrder.order.id;
    const rows = await withClient(databaseUrl, async (client) => {
      // The killed transaction may end only once its backend notices the closed socket.
      for (;;) {
        const { rows: active } = await client.query(
          `select 1 from pg_stat_activity where datname = current_database() and state like 'idle in transaction%'`,
        );
        if (active.length === 0) break;
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      return (await client.query<{ id: string; order_id: string }>(`select id, data->>'orderId' as order_id from outbox_events`)).rows;
    });
    expect(rows).toEqual([{ id: eventId(OrderEvent.OrderPlaced, orderId), order_id: orderId }]);
    expect(await withClient(databaseUrl, async (client) => (await client.query('select id from orders')).rows)).toEqual([{ id: orderId }]);

    // The feed shows an event once every transaction older than it has ended, in the whole
    // PostgreSQL cluster (docs/events.md); other test files' transactions run on the same cluster.
    const feedIds = async () =>
      (await postGraphQL<FeedPage>(restarted.url, EVENTS, { first: 10 }, { authorization: `Bearer ${token}` })).body.data?.events.edges.map(
        (edge) => edge.node.id,
      ) ?? [];
    let ids = await feedIds();
    for (const deadline = Date.now() + 30_000; ids.length === 0 && Date.now() < deadline; ids = await feedIds()) {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    expect(ids).toEqual([eventId(OrderEvent.OrderPlaced, orderId)]);
  });
});
