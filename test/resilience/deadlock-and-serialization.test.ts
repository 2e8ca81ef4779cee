import { Client } from 'pg';
import { createTestDatabase, dropTestDatabase, withClient } from '../support/database';
import { untilLockWaiters } from '../support/locks';
import { type GraphQLResponse, startTestServer, type TestServer } from '../support/server';

// docs/idempotency.md, Guarantees: "If the first attempt failed for a transient reason (...
// deadlock, serialization failure ...), nothing is stored and a retry with the same key executes
// normally", answered SERVICE_UNAVAILABLE ("retry with the same key"). Both failures are real
// ones, raised by PostgreSQL in the server's own transaction, driven by a connection of the test.

const CREATE = `mutation($input: CreateOrderInput!, $key: IdempotencyKey) {
  createOrder(input: $input, idempotencyKey: $key) { order { id lines { quantity } } }
}`;

interface Created {
  createOrder: { order: { id: string } } | null;
}

/** What the user has in the database: orders, records, and the stock of some products. */
async function holdings(databaseUrl: string, user: string, products: string[]) {
  return withClient(databaseUrl, async (client) => {
    const count = async (sql: string) => Number((await client.query<{ count: string }>(sql, [user])).rows[0]!.count);
    const { rows } = await client.query<{ id: string; stock: number }>('select id, stock from products where id = any($1) order by id', [
      products,
    ]);
    return {
      orders: await count('select count(*) from orders where user_id = $1'),
      records: await count('select count(*) from idempotency_records where user_id = $1'),
      stock: rows.map((row) => row.stock),
    };
  });
}

function expectRetryableAndClean(response: GraphQLResponse<Created>): void {
  expect(response.status).toBe(200);
  expect(response.body.data?.createOrder ?? null).toBeNull();
  expect(response.body.errors?.map((error) => error.extensions?.code)).toEqual(['SERVICE_UNAVAILABLE']);
  expect(JSON.stringify(response.body)).not.toMatch(/deadlock|serializ|concurrent update|select |40P01|40001/i);
}

async function connect(databaseUrl: string): Promise<Client> {
  const client = new Client({ connectionString: databaseUrl });
  await client.connect();
  return client;
}

describe('a deadlock in the first execution', () => {
  let server: TestServer;
  let products: [string, string];

  beforeAll(async () => {
    // Ten-minute lock timeout: only PostgreSQL's deadlock detection can end the wait below.
    server = await startTestServer({ env: { IDEMPOTENCY_WAIT_MS: '600000', IDEMPOTENCY_PURGE_INTERVAL_SECONDS: '0' } });
    products = await withClient(
      server.databaseUrl,
      async (client) =>
        (await client.query<{ id: string }>('select id from products order by id limit 2')).rows.map((row) => row.id) as [string, string],
    );
  });
  afterAll(async () => {
    await server?.close();
  });

  it('answers SERVICE_UNAVAILABLE, stores nothing, and the retry with the same key executes once', async () => {
    const user = 'deadlocked';
    const token = await server.token(user);
    const [first, second] = products;
    const input = {
      lines: [
        { productId: first, quantity: 1 },
        { productId: second, quantity: 2 },
      ],
    };
    const before = await holdings(server.databaseUrl, user, products);
    const deadlocksBefore = await withClient(server.databaseUrl, async (client) => deadlocks(client));

    // The server locks its products in id order: first, then second. The test holds the second
    // and, once the server waits for it, asks for the first: a cycle. With the test's session
    // checking late, the server's session finds the deadlock and is the one cancelled.
    const other = await connect(server.databaseUrl);
    const observer = await connect(server.databaseUrl);
    try {
      await other.query('begin');
      await other.query("set local deadlock_timeout = '10min'");
      await other.query('select id from products where id = $1 for update', [second]);
      const answer = server.gql<Created>(CREATE, { input, key: 'deadlock-key' }, { token, autoKey: false });
      await untilLockWaiters(observer);
      const otherLocked = other.query('select id from products where id = $1 for update', [first]);

      expectRetryableAndClean(await answer);
      await otherLocked;
      await other.query('rollback');
      await untilDeadlocksExceed(observer, deadlocksBefore);
    } finally {
      await other.end();
      await observer.end();
    }
    expect(await holdings(server.databaseUrl, user, products)).toEqual(before);

    const retry = await server.gql<Created>(CREATE, { input, key: 'deadlock-key' }, { token, autoKey: false });
    expect(retry.body.errors).toBeUndefined();
    expect(retry.headers.get('idempotent-replayed')).toBeNull();
    const replay = await server.gql<Created>(CREATE, { input, key: 'deadlock-key' }, { token, autoKey: false });
    expect(replay.headers.get('idempotent-replayed')).toBe('true');
    expect(replay.body.data).toEqual(retry.body.data);
    expect(await holdings(server.databaseUrl, user, products)).toEqual({
      orders: 1,
      records: 1,
      stock: [before.stock[0]! - 1, before.stock[1]! - 2],
    });
  });
});

/** Deadlocks PostgreSQL has detected in the current database. */
async function deadlocks(client: Client): Promise<number> {
  await client.query('select pg_stat_clear_snapshot()');
  const { rows } = await client.query<{ deadlocks: string }>('select deadlocks from pg_stat_database where datname = current_database()');
  return Number(rows[0]!.deadlocks);
}

/** Resolves once PostgreSQL's statistics count more deadlocks than `count` (they are flushed lazily). */
async function untilDeadlocksExceed(client: Client, count: number): Promise<void> {
  const deadline = Date.now() + 15_000;
  while ((await deadlocks(client)) <= count) {
    if (Date.now() > deadline) throw new Error('PostgreSQL detected no deadlock');
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

describe('a serialization failure in the first execution', () => {
  let databaseUrl: string;
  let server: TestServer;
  let product: string;

  beforeAll(async () => {
    // Read committed, the server's default, never fails to serialize a row lock. A database whose
    // sessions default to repeatable read does: a row updated after the transaction's snapshot
    // cannot be locked by it (SQLSTATE 40001).
    databaseUrl = await createTestDatabase();
    const name = new URL(databaseUrl).pathname.slice(1);
    await withClient(databaseUrl, (client) => client.query(`alter database ${name} set default_transaction_isolation = 'repeatable read'`));
    server = await startTestServer({
      databaseUrl,
      env: { IDEMPOTENCY_WAIT_MS: '600000', IDEMPOTENCY_PURGE_INTERVAL_SECONDS: '0' },
    });
    product = await withClient(
      databaseUrl,
      async (client) => (await client.query<{ id: string }>('select id from products order by id limit 1')).rows[0]!.id,
    );
  });
  afterAll(async () => {
    await server?.close();
    if (databaseUrl) await dropTestDatabase(databaseUrl);
  });

  it('answers SERVICE_UNAVAILABLE, stores nothing, and the retry with the same key executes once', async () => {
    const user = 'unserializable';
    const token = await server.token(user);
    const input = { lines: [{ productId: product, quantity: 1 }] };
    const before = await holdings(databaseUrl, user, [product]);

    // The server's transaction takes its snapshot, then waits for the product the test holds; the
    // test updates the product and commits, so the row the server wants changed after its snapshot.
    const other = await connect(databaseUrl);
    try {
      await other.query('begin');
      await other.query('select id from products where id = $1 for update', [product]);
      const answer = server.gql<Created>(CREATE, { input, key: 'serialization-key' }, { token, autoKey: false });
      await untilLockWaiters(other);
      await other.query('update products set stock = stock where id = $1', [product]);
      await other.query('commit');

      expectRetryableAndClean(await answer);
    } finally {
      await other.end();
    }
    expect(await holdings(databaseUrl, user, [product])).toEqual(before);

    const retry = await server.gql<Created>(CREATE, { input, key: 'serialization-key' }, { token, autoKey: false });
    expect(retry.body.errors).toBeUndefined();
    expect(retry.headers.get('idempotent-replayed')).toBeNull();
    const replay = await server.gql<Created>(CREATE, { input, key: 'serialization-key' }, { token, autoKey: false });
    expect(replay.headers.get('idempotent-replayed')).toBe('true');
    expect(replay.body.data).toEqual(retry.body.data);
    expect(await holdings(databaseUrl, user, [product])).toEqual({ orders: 1, records: 1, stock: [before.stock[0]! - 1] });
  });
});
