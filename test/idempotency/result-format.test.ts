import { randomBytes } from 'node:crypto';
import { keyIdOf } from '../../src/idempotency/codec';
import { createTestDatabase, dropTestDatabase, withClient } from '../support/database';
import { type GraphQLResponse, startTestServer, type TestServer } from '../support/server';

// Retries keep replaying while the operator turns encryption on and rotates its key: each step
// restarts the server on the same database with new settings, as a deployment would.

const CREATE_ORDER = `mutation Place($input: CreateOrderInput!) {
  createOrder(input: $input) { order { id status totalCents note } }
}`;

type Placed = GraphQLResponse<{ createOrder: { order: { id: string } } }>;

describe('stored results across enabling encryption and rotating its key', () => {
  const [k1, k2, k3] = [randomBytes(32), randomBytes(32), randomBytes(32)];
  let databaseUrl: string;
  let current: TestServer | undefined;
  let input: { lines: { productId: string; quantity: number }[] };

  const sql = <T>(text: string, params: unknown[] = []) =>
    withClient(databaseUrl, async (client) => (await client.query(text, params)).rows as T[]);

  /** Stops the running server and starts one on the same database with `env`. */
  async function restart(env: Record<string, string>): Promise<TestServer> {
    await current?.close();
    current = await startTestServer({ databaseUrl, cacheSize: 0, seed: false, env: { IDEMPOTENCY_PURGE_INTERVAL_SECONDS: '0', ...env } });
    return current;
  }

  async function place(server: TestServer, key: string, order = input): Promise<Placed> {
    return server.gql(CREATE_ORDER, { input: order }, { token: await server.token('rotating-user'), headers: { 'idempotency-key': key } });
  }
  const orderCount = async () => (await sql<{ count: number }>('select count(*)::int as count from orders'))[0]?.count;
  const storedAs = async (key: string) =>
    (await sql<{ format: number; key_id: string | null }>('select format, key_id from idempotency_records where key = $1', [key]))[0];

  beforeAll(async () => {
    databaseUrl = await createTestDatabase();
    const seeded = await startTestServer({ databaseUrl });
    await seeded.close();
    const [{ id }] = await sql<{ id: string }>("select id::text from products where sku = 'MUG-001'");
    input = { lines: [{ productId: id, quantity: 1 }] };
  });
  afterAll(async () => {
    await current?.close();
    if (databaseUrl) await dropTestDatabase(databaseUrl);
  });

  it('replays plain records after encryption is turned on, and records of a previous key after a rotation', async () => {
    const plain = await restart({});
    const first = await place(plain, 'plain-1');
    const missing = { lines: [{ productId: '00000000-0000-4000-8000-000000000000', quantity: 1 }] };
    const failed = await place(plain, 'plain-failed', missing);
    expect(first.body.errors).toBeUndefined();
    expect(failed.body.errors?.[0]?.extensions?.code).toBe('PRODUCT_NOT_FOUND');
    expect(await storedAs('plain-1')).toEqual({ format: 1, key_id: null });

    const encrypted = await restart({ IDEMPOTENCY_ENCRYPTION_KEY: k1.toString('base64') });
    const orders = await orderCount();
    const replayed = await place(encrypted, 'plain-1');
    expect(replayed.body.data).toEqual(first.body.data);
    expect(replayed.headers.get('idempotent-replayed')).toBe('true');
    expect((await place(encrypted, 'plain-failed', missing)).body.errors?.[0]?.extensions?.code).toBe('PRODUCT_NOT_FOUND');
    const underK1 = await place(encrypted, 'k1-1');
    expect(underK1.body.errors).toBeUndefined();
    expect(await storedAs('k1-1')).toEqual({ format: 2, key_id: keyIdOf(k1) });

    const rotated = await restart({
      IDEMPOTENCY_ENCRYPTION_KEY: k2.toString('base64'),
      IDEMPOTENCY_ENCRYPTION_PREVIOUS_KEYS: `${k3.toString('base64')}, ${k1.toString('base64')}`,
    });
    expect((await place(rotated, 'k1-1')).body.data).toEqual(underK1.body.data);
    expect((await place(rotated, 'plain-1')).body.data).toEqual(first.body.data);
    await place(rotated, 'k2-1');
    expect(await storedAs('k2-1')).toEqual({ format: 2, key_id: keyIdOf(k2) });
    // Every retry above replayed: only k1-1 and k2-1 placed orders.
    expect(await orderCount()).toBe((orders ?? 0) + 2);
  });

  it('answers IDEMPOTENCY_RECORD_UNREADABLE, not retryable and with the marker, when the key of a record is gone', async () => {
    const forgetful = await restart({ IDEMPOTENCY_ENCRYPTION_KEY: k3.toString('base64') });
    const orders = await orderCount();
    for (let attempt = 0; attempt < 2; attempt++) {
      const response = await place(forgetful, 'k1-1');
      expect(response.status).toBe(200);
      expect(response.body.errors?.[0]).toMatchObject({
        path: ['createOrder'],
        extensions: { code: 'IDEMPOTENCY_RECORD_UNREADABLE', retryable: false },
      });
      expect(response.body.errors?.[0]?.message).not.toMatch(/aes|gcm|decipher|stack/i);
      expect(response.body.extensions?.idempotency).toEqual([expect.objectContaining({ key: 'k1-1', replayed: true })]);
    }
    // Never executed again; the plain record still replays.
    expect(await orderCount()).toBe(orders);
    expect((await place(forgetful, 'plain-1')).body.errors).toBeUndefined();
  });
});
