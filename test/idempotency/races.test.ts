import { countRows, withClient } from '../support/database';
import { lockProducts, lockWaiters, untilLockWaitersOn } from '../support/locks';
import { startTestServer, type TestServer } from '../support/server';

const CREATE = `mutation Create($input: CreateOrderInput!, $key: IdempotencyKey) {
  createOrder(input: $input, idempotencyKey: $key) {
    order { id status totalCents createdAt lines { quantity unitPriceCents product { id stock } } }
  }
}`;

interface Created {
  createOrder: { order: { id: string; lines: { quantity: number }[] } } | null;
}

async function stockOf(server: TestServer, productId: string): Promise<number> {
  return withClient(server.databaseUrl, async (client) => {
    const { rows } = await client.query<{ stock: number }>('SELECT stock FROM products WHERE id = $1', [productId]);
    return rows[0]?.stock ?? Number.NaN;
  });
}

async function productIds(server: TestServer): Promise<string[]> {
  return withClient(server.databaseUrl, async (client) => {
    const { rows } = await client.query<{ id: string }>('SELECT id FROM products ORDER BY id');
    return rows.map((row) => row.id);
  });
}

describe('concurrent duplicates in one process', () => {
  let server: TestServer;
  let products: string[];

  beforeAll(async () => {
    server = await startTestServer({ env: { IDEMPOTENCY_PURGE_INTERVAL_SECONDS: '0' } });
    products = await productIds(server);
  });
  afterAll(async () => {
    await server.close();
  });

  it('executes 100 identical concurrent requests once and answers all with the same payload', async () => {
    const token = await server.token('racer-1');
    const productId = products[0] as string;
    const before = await stockOf(server, productId);
    const input = { lines: [{ productId, quantity: 2 }] };

    const responses = await Promise.all(
      Array.from({ length: 100 }, () => server.gql<Created>(CREATE, { input, key: 'race-identical' }, { token, autoKey: false })),
    );

    const payloads = new Set(responses.map((response) => JSON.stringify(response.body.data)));
    expect(responses.every((response) => response.body.errors === undefined)).toBe(true);
    expect(payloads.size).toBe(1);
    expect(await countRows(server, 'SELECT count(*) FROM orders WHERE user_id = $1', ['racer-1'])).toBe(1);
    expect(await stockOf(server, productId)).toBe(before - 2);
    const replayed = responses.filter((response) => response.headers.get('idempotent-replayed') === 'true');
    expect(replayed).toHaveLength(99);
  });

  it('lets one of two concurrent payloads win a key and answers the rest with its replay or IDEMPOTENCY_KEY_REUSED', async () => {
    const token = await server.token('racer-2');
    const productId = products[1] as string;
    const before = await stockOf(server, productId);

    const responses = await Promise.all(
      Array.from({ length: 20 }, (_, index) =>
        server.gql<Created>(
          CREATE,
          { input: { lines: [{ productId, quantity: (index % 2) + 1 }] }, key: 'race-two-payloads' },
          { token, autoKey: false },
        ),
      ),
    );

    const winners = responses.filter((response) => response.body.data?.createOrder);
    const orderIds = new Set(winners.map((response) => response.body.data?.createOrder?.order.id));
    expect(orderIds.size).toBe(1);
    const quantity = winners[0]?.body.data?.createOrder?.order.lines[0]?.quantity as number;
    for (const response of responses) {
      if (response.body.data?.createOrder) {
        expect(response.body.data.createOrder.order.lines[0]?.quantity).toBe(quantity);
      } else {
        expect(response.body.errors?.[0]?.extensions?.code).toBe('IDEMPOTENCY_KEY_REUSED');
      }
    }
    expect(await countRows(server, 'SELECT count(*) FROM orders WHERE user_id = $1', ['racer-2'])).toBe(1);
    expect(await stockOf(server, productId)).toBe(before - quantity);
  });

  it('keeps serving unrelated requests while 100 duplicates wait for a slow first request', async () => {
    const token = await server.token('racer-3');
    const productId = products[2] as string;
    const release = await lockProducts(server.databaseUrl, [productId]);
    let released = false;
    try {
      const input = { lines: [{ productId, quantity: 1 }] };
      const first = server.gql<Created>(CREATE, { input, key: 'slow-first' }, { token, autoKey: false });
      await untilLockWaitersOn(server.databaseUrl);
      const duplicates = Array.from({ length: 100 }, () =>
        server.gql<Created>(CREATE, { input, key: 'slow-first' }, { token, autoKey: false }),
      );

      // More unrelated requests than the pool has connections (20): had the duplicates taken
      // connections, these would queue behind them until the lock is released.
      const other = products[3] as string;
      const unrelated = await Promise.all([
        ...Array.from({ length: 30 }, () => server.gql('{ products(first: 5) { edges { node { id stock } } } }')),
        ...Array.from({ length: 10 }, (_, index) =>
          server.gql<Created>(
            CREATE,
            { input: { lines: [{ productId: other, quantity: 1 }] }, key: `unrelated-${index}` },
            { token, autoKey: false },
          ),
        ),
      ]);
      expect(unrelated.every((response) => response.status === 200 && response.body.errors === undefined)).toBe(true);
      expect(await lockWaiters(server.databaseUrl)).toBe(1);

      await release();
      released = true;
      const answers = await Promise.all([first, ...duplicates]);
      const ids = new Set(answers.map((response) => response.body.data?.createOrder?.order.id));
      expect(ids.size).toBe(1);
      expect(ids.has(undefined)).toBe(false);
      expect(
        await countRows(
          server,
          'SELECT count(*) FROM orders o JOIN order_lines l ON l.order_id = o.id WHERE o.user_id = $1 AND l.product_id = $2',
          ['racer-3', productId],
        ),
      ).toBe(1);
    } finally {
      if (!released) await release();
    }
  });
});

describe('a first request and its duplicate held on a row lock past IDEMPOTENCY_WAIT_MS', () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer({ env: { IDEMPOTENCY_WAIT_MS: '500', IDEMPOTENCY_PURGE_INTERVAL_SECONDS: '0' } });
  });
  afterAll(async () => {
    await server.close();
  });

  it('answers the first SERVICE_UNAVAILABLE and the duplicate a retryable error, stores nothing, and a retry after the lock is released executes once', async () => {
    const token = await server.token('patient');
    const [a] = (await productIds(server)) as [string];
    const input = { lines: [{ productId: a, quantity: 1 }] };
    const before = await stockOf(server, a);
    // The row lock is held until both have answered: only the engine's lock_timeout can end their waits.
    const release = await lockProducts(server.databaseUrl, [a]);
    try {
      const first = server.gql<Created>(CREATE, { input, key: 'held-on-a-lock' }, { token, autoKey: false });
      await untilLockWaitersOn(server.databaseUrl);
      const duplicate = server.gql<Created>(CREATE, { input, key: 'held-on-a-lock' }, { token, autoKey: false });
      expect((await first).body.errors?.[0]?.extensions).toEqual({ code: 'SERVICE_UNAVAILABLE', retryable: true });
      // The duplicate's own wait and the first request's lock wait end about together: either
      // answer tells the client to retry with the same key, and neither stores anything.
      expect([
        { code: 'SERVICE_UNAVAILABLE', retryable: true },
        { code: 'IDEMPOTENCY_REQUEST_IN_PROGRESS', retryAfterSeconds: 1 },
      ]).toContainEqual((await duplicate).body.errors?.[0]?.extensions);
    } finally {
      await release();
    }
    expect(await countRows(server, 'SELECT count(*) FROM idempotency_records WHERE key = $1', ['held-on-a-lock'])).toBe(0);
    const retry = await server.gql<Created>(CREATE, { input, key: 'held-on-a-lock' }, { token, autoKey: false });
    expect(retry.body.errors).toBeUndefined();
    expect(await countRows(server, 'SELECT count(*) FROM orders WHERE user_id = $1', ['patient'])).toBe(1);
    expect(await stockOf(server, a)).toBe(before - 1);
  });
});
