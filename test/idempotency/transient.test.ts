import { Client } from 'pg';
import { countRows, withClient } from '../support/database';
import { startTestServer, type TestServer } from '../support/server';

const CREATE = `mutation($input: CreateOrderInput!, $key: IdempotencyKey) {
  createOrder(input: $input, idempotencyKey: $key) { order { id } }
}`;

interface Created {
  createOrder: { order: { id: string } } | null;
}

describe('a transient database failure during the first execution', () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer({ env: { IDEMPOTENCY_PURGE_INTERVAL_SECONDS: '0' } });
  });
  afterAll(async () => {
    await server.close();
  });

  const count = (sql: string, params: unknown[]) => countRows(server, sql, params);

  it('stores nothing when the connection is terminated mid-transaction, and the retry executes once', async () => {
    const token = await server.token('unlucky');
    const productId = await withClient(
      server.databaseUrl,
      async (client) => (await client.query('SELECT id FROM products LIMIT 1')).rows[0].id as string,
    );
    const input = { lines: [{ productId, quantity: 1 }] };

    // Hold the product's row lock so the request stops inside its transaction, then kill its backend.
    const blocker = new Client({ connectionString: server.databaseUrl });
    await blocker.connect();
    await blocker.query('BEGIN');
    await blocker.query('SELECT id FROM products WHERE id = $1 FOR UPDATE', [productId]);
    const pending = server.gql<Created>(CREATE, { input, key: 'terminated' }, { token, autoKey: false });
    let pid: number | undefined;
    for (let attempt = 0; attempt < 500 && pid === undefined; attempt++) {
      const { rows } = await blocker.query(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()",
      );
      pid = rows[0]?.pid;
      if (pid === undefined) await new Promise((resolve) => setTimeout(resolve, 10));
    }
    expect(pid).toBeDefined();
    await blocker.query('SELECT pg_terminate_backend($1)', [pid]);
    const failed = await pending;
    await blocker.query('COMMIT');
    await blocker.end();

    expect(failed.body.data?.createOrder ?? null).toBeNull();
    expect(failed.body.errors?.[0]?.extensions?.code).toBe('SERVICE_UNAVAILABLE');
    expect(JSON.stringify(failed.body)).not.toMatch(/terminat|pg_|select/i);
    expect(await count('SELECT count(*) FROM idempotency_records WHERE user_id = $1', ['unlucky'])).toBe(0);
    expect(await count('SELECT count(*) FROM orders WHERE user_id = $1', ['unlucky'])).toBe(0);

    const retry = await server.gql<Created>(CREATE, { input, key: 'terminated' }, { token, autoKey: false });
    expect(retry.body.errors).toBeUndefined();
    expect(retry.headers.get('idempotent-replayed')).toBeNull();
    const replay = await server.gql<Created>(CREATE, { input, key: 'terminated' }, { token, autoKey: false });
    expect(replay.body.data?.createOrder?.order.id).toBe(retry.body.data?.createOrder?.order.id);
    expect(replay.headers.get('idempotent-replayed')).toBe('true');
    expect(await count('SELECT count(*) FROM orders WHERE user_id = $1', ['unlucky'])).toBe(1);
    expect(await count('SELECT count(*) FROM idempotency_records WHERE user_id = $1', ['unlucky'])).toBe(1);
  });
});
