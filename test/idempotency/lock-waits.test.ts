import { createHash } from 'node:crypto';
import { Client } from 'pg';
import { countRows, withClient } from '../support/database';
import { lockProducts } from '../support/locks';
import { startTestServer, type TestServer } from '../support/server';

const CREATE = `mutation Create($input: CreateOrderInput!, $key: IdempotencyKey) {
  createOrder(input: $input, idempotencyKey: $key) { order { id } }
}`;

/**
 * Waits for locks are bounded per transaction by IDEMPOTENCY_WAIT_MS (docs/idempotency.md,
 * docs/operations.md). Each lock here is held until the request has answered, so only the
 * engine's lock_timeout can end the wait: without it these requests never answer and the
 * tests fail.
 */
describe('lock waits bounded by the engine transaction', () => {
  let server: TestServer;
  let productId: string;

  beforeAll(async () => {
    server = await startTestServer({ env: { IDEMPOTENCY_WAIT_MS: '300', IDEMPOTENCY_PURGE_INTERVAL_SECONDS: '0' } });
    productId = await withClient(
      server.databaseUrl,
      async (client) => (await client.query('SELECT id FROM products ORDER BY id LIMIT 1')).rows[0].id,
    );
  });
  afterAll(async () => {
    await server.close();
  });

  const count = (sql: string, params: unknown[] = []) => countRows(server, sql, params);
  const snapshot = async () => ({
    orders: await count('SELECT count(*) FROM orders'),
    records: await count('SELECT count(*) FROM idempotency_records'),
    stock: await count('SELECT stock AS count FROM products WHERE id = $1', [productId]),
  });

  it('answers IDEMPOTENCY_REQUEST_IN_PROGRESS, storing nothing, while another transaction holds an uncommitted record of the key', async () => {
    const token = await server.token('lock-waiter');
    const sub = 'lock-waiter';
    const holder = new Client({ connectionString: server.databaseUrl });
    await holder.connect();
    try {
      // Another process's first execution, its record written and not yet committed.
      await holder.query('BEGIN');
      await holder.query(
        `INSERT INTO idempotency_records (user_id, key, operation, fingerprint, outcome, format, result, created_at, expires_at)
         VALUES ($1, 'held-key', 'createOrder', $2, 'SUCCEEDED', 1, convert_to('{"kind":"payload","payload":null}', 'UTF8'), now(), now() + interval '1 hour')`,
        [sub, createHash('sha256').update('other').digest()],
      );
      const before = await snapshot();
      const response = await server.gql(
        CREATE,
        { input: { lines: [{ productId, quantity: 1 }] }, key: 'held-key' },
        { token, autoKey: false },
      );

      expect(response.body.errors?.[0]?.extensions).toEqual({ code: 'IDEMPOTENCY_REQUEST_IN_PROGRESS', retryAfterSeconds: 1 });
      expect(await snapshot()).toEqual(before);
    } finally {
      await holder.query('ROLLBACK');
      await holder.end();
    }
    expect(await count("SELECT count(*) FROM idempotency_records WHERE key = 'held-key'")).toBe(0);
  });

  it('answers SERVICE_UNAVAILABLE, storing nothing, while a product row stays locked past the wait', async () => {
    const token = await server.token('stock-waiter');
    const release = await lockProducts(server.databaseUrl, [productId]);
    try {
      const before = await snapshot();
      const response = await server.gql(
        CREATE,
        { input: { lines: [{ productId, quantity: 1 }] }, key: 'locked-product' },
        { token, autoKey: false },
      );

      expect(response.body.errors?.[0]?.extensions).toEqual({ code: 'SERVICE_UNAVAILABLE', retryable: true });
      expect(await snapshot()).toEqual(before);
    } finally {
      await release();
    }
  });

  it('bounds only the engine transaction: other statements on the pool keep the server default lock_timeout', async () => {
    const rows = await server.orm.em.fork().execute<{ lock_timeout: string }[]>('show lock_timeout');
    expect(rows[0]?.lock_timeout).toBe('0');
  });
});
