import { randomUUID } from 'node:crypto';
import { Client } from 'pg';
import { signToken } from '../../src/auth/token';
import { encodeCursor } from '../../src/cursor';
import { startTestServer, type TestServer } from '../support/server';

interface FeedPage {
  events: {
    edges: { cursor: string; node: { id: string; type: string; occurredAt: string; data: Record<string, unknown> } }[];
    pageInfo: { hasNextPage: boolean; endCursor: string | null };
  };
}

const EVENTS = `query Events($first: Int, $after: String) {
  events(first: $first, after: $after) { edges { cursor node { id type occurredAt data } } pageInfo { hasNextPage endCursor } }
}`;

describe('the event feed', () => {
  let server: TestServer;
  let reader: string;

  beforeAll(async () => {
    server = await startTestServer();
    reader = await signToken({ id: 'feed-reader', roles: ['events:read'] }, server.config.jwtSecret, '1h');
  });

  afterAll(async () => {
    await server?.close();
  });

  async function page(after: string | null, first = 100) {
    const response = await server.gql<FeedPage>(EVENTS, { first, after }, { token: reader });
    expect(response.body.errors).toBeUndefined();
    return response.body.data!.events;
  }

  /** Every event after `after`, page by page, and the cursor to continue from. */
  async function drain(after: string | null, first = 100) {
    const ids: string[] = [];
    let cursor = after;
    for (;;) {
      const current = await page(cursor, first);
      ids.push(...current.edges.map((edge) => edge.node.id));
      cursor = current.pageInfo.endCursor ?? cursor;
      if (!current.pageInfo.hasNextPage) return { ids, cursor };
    }
  }

  /**
   * Pages until `count` events after `after` are visible. Any open transaction of the cluster
   * with a smaller id (another test's, on another database) holds the feed back until it ends.
   */
  async function drainUntil(after: string | null, count: number) {
    for (;;) {
      const drained = await drain(after);
      if (drained.ids.length >= count) return drained;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }

  async function connect(): Promise<Client> {
    const client = new Client({ connectionString: server.databaseUrl });
    await client.connect();
    return client;
  }

  async function insertEvent(client: Client): Promise<{ id: string; seq: string }> {
    const id = randomUUID();
    const { rows } = await client.query<{ seq: string }>(
      `insert into outbox_events (id, type, occurred_at, data) values ($1, 'ProductCreated', now(), $2) returning seq`,
      [id, { productId: id }],
    );
    return { id, seq: rows[0]!.seq };
  }

  it('needs the events:read or admin role', async () => {
    const anonymous = await server.gql(EVENTS, {});
    const user = await server.gql(EVENTS, {}, { token: await server.token('alice') });
    const admin = await server.gql(EVENTS, {}, { token: await server.token('root', { admin: true }) });
    expect(anonymous.body.errors?.[0]?.extensions?.code).toBe('UNAUTHENTICATED');
    expect(user.body.errors?.[0]?.extensions?.code).toBe('FORBIDDEN');
    expect(admin.body.errors).toBeUndefined();
  });

  it.each([
    ['not base64 JSON', '!!!'],
    ['another kind', encodeCursor('order', ['1', '1'])],
    ['a negative position', encodeCursor('event', ['-1', '1'])],
    ['a transaction id beyond xid8', encodeCursor('event', ['18446744073709551616', '1'])],
    ['a sequence beyond bigint', encodeCursor('event', ['1', '9223372036854775808'])],
    ['a number with a leading zero', encodeCursor('event', ['01', '1'])],
  ])('refuses a forged cursor (%s) as BAD_USER_INPUT', async (_name, after) => {
    const response = await server.gql(EVENTS, { after }, { token: reader });
    expect(response.body.errors?.[0]?.extensions?.code).toBe('BAD_USER_INPUT');
    expect(response.body.data).toBeNull();
  });

  it('returns events of mutations with their data, in order, across pages', async () => {
    const { cursor } = await drain(null);
    const admin = await server.token('root', { admin: true });
    const created: string[] = [];
    for (let index = 0; index < 3; index += 1) {
      const response = await server.gql<{ createProduct: { product: { id: string } } }>(
        `mutation Create($input: CreateProductInput!) { createProduct(input: $input) { product { id } } }`,
        { input: { sku: `FEED-${index}-${randomUUID().slice(0, 6)}`, name: 'Feed', priceCents: 1, currency: 'USD', stock: 1 } },
        { token: admin },
      );
      created.push(response.body.data!.createProduct.product.id);
    }
    await drainUntil(cursor, 3);
    const first = await page(cursor, 2);
    expect(first.pageInfo.hasNextPage).toBe(true);
    const rest = await page(first.pageInfo.endCursor, 2);
    expect(rest.pageInfo.hasNextPage).toBe(false);
    const nodes = [...first.edges, ...rest.edges].map((edge) => edge.node);
    expect(nodes.map((node) => node.data.productId)).toEqual(created);
    expect(nodes.every((node) => node.type === 'ProductCreated' && !Number.isNaN(Date.parse(node.occurredAt)))).toBe(true);
  });

  it('never skips an event whose transaction took a smaller sequence number but committed later', async () => {
    const { cursor } = await drain(null);
    const early = await connect();
    const late = await connect();
    try {
      await early.query('BEGIN');
      const slow = await insertEvent(early);
      await late.query('BEGIN');
      const fast = await insertEvent(late);
      await late.query('COMMIT');
      // The committed event has the larger sequence number: a reader polling by sequence would
      // return it now and move its cursor past the one still to commit.
      expect(BigInt(fast.seq)).toBeGreaterThan(BigInt(slow.seq));

      const meanwhile = await drain(cursor);
      expect(meanwhile.ids).toEqual([]);

      await early.query('COMMIT');
      const after = await drainUntil(meanwhile.cursor, 2);
      expect(after.ids).toEqual([slow.id, fast.id]);
    } finally {
      await early.end();
      await late.end();
    }
  });

  it('returns nothing from a rolled-back transaction and moves on past it', async () => {
    const { cursor } = await drain(null);
    const client = await connect();
    try {
      await client.query('BEGIN');
      await insertEvent(client);
      await client.query('ROLLBACK');
      const committed = await insertEvent(client);
      expect((await drainUntil(cursor, 1)).ids).toEqual([committed.id]);
    } finally {
      await client.end();
    }
  });
});
