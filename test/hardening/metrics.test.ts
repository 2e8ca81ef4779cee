import { randomUUID } from 'node:crypto';
import { lockProducts, withClient } from '../support/database';
import { scrape } from '../support/metrics';
import { type GraphQLResponse, startTestServer, type TestServer } from '../support/server';

const CREATE = `mutation PlaceOrder($input: CreateOrderInput!, $key: IdempotencyKey) {
  createOrder(input: $input, idempotencyKey: $key) { order { id } }
}`;

interface Created {
  createOrder: { order: { id: string } } | null;
}

/** How much each outcome counter moved while `work` ran. */
async function outcomesDuring(server: TestServer, work: () => Promise<void>): Promise<Record<string, number>> {
  const outcomes = [
    'executed',
    'replayed',
    'reused_rejected',
    'missing_key',
    'invalid_key',
    'failure_stored',
    'in_progress_rejected',
    'expired_reexecuted',
  ];
  const before = await scrape(server);
  await work();
  const after = await scrape(server);
  const moved: Record<string, number> = {};
  for (const outcome of outcomes) {
    const labels = { operation: 'createOrder', outcome };
    const delta = after.value('idempotency_requests_total', labels) - before.value('idempotency_requests_total', labels);
    if (delta !== 0) moved[outcome] = delta;
  }
  return moved;
}

async function productIds(server: TestServer): Promise<string[]> {
  return withClient(server.databaseUrl, async (client) => {
    const { rows } = await client.query<{ id: string }>('SELECT id FROM products ORDER BY id');
    return rows.map((row) => row.id);
  });
}

async function waitForLockWaiters(server: TestServer, count: number): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    const waiting = await withClient(server.databaseUrl, async (client) => {
      const { rows } = await client.query<{ count: string }>(
        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()",
      );
      return Number(rows[0]?.count);
    });
    if (waiting >= count) return;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  throw new Error('no request started waiting for the lock');
}

function codeOf<T>(response: GraphQLResponse<T>): unknown {
  return response.body.errors?.[0]?.extensions?.code;
}

describe('metrics', () => {
  let server: TestServer;
  let token: string;
  let products: string[];

  beforeAll(async () => {
    server = await startTestServer({ env: { IDEMPOTENCY_PURGE_INTERVAL_SECONDS: '0' } });
    token = await server.token('metrics-user');
    products = await productIds(server);
  });
  afterAll(async () => {
    await server?.close();
  });

  function place(key: string | undefined, productId = products[0], headers: Record<string, string> = {}) {
    return server.gql<Created>(CREATE, { input: { lines: [{ productId, quantity: 1 }] }, key }, { token, headers, autoKey: false });
  }

  it('serves Prometheus text with the default process metrics', async () => {
    const metrics = await scrape(server);
    expect(metrics.has('process_cpu_user_seconds_total')).toBe(true);
    expect(metrics.has('nodejs_heap_size_used_bytes')).toBe(true);
  });

  it('counts a first execution as executed and its retry as replayed', async () => {
    const key = randomUUID();
    expect(await outcomesDuring(server, async () => expect((await place(key)).body.errors).toBeUndefined())).toEqual({ executed: 1 });
    expect(await outcomesDuring(server, async () => expect((await place(key)).headers.get('idempotent-replayed')).toBe('true'))).toEqual({
      replayed: 1,
    });
  });

  it('counts a key reused with another payload as reused_rejected', async () => {
    const key = randomUUID();
    await place(key, products[0]);
    const moved = await outcomesDuring(server, async () => {
      expect(codeOf(await place(key, products[1]))).toBe('IDEMPOTENCY_KEY_REUSED');
    });
    expect(moved).toEqual({ reused_rejected: 1 });
  });

  it('counts a mutation without a key as missing_key', async () => {
    const moved = await outcomesDuring(server, async () => {
      expect(codeOf(await place(undefined))).toBe('IDEMPOTENCY_KEY_MISSING');
    });
    expect(moved).toEqual({ missing_key: 1 });
  });

  it('counts a malformed key in the header or in an argument literal as invalid_key', async () => {
    const moved = await outcomesDuring(server, async () => {
      expect(codeOf(await place(undefined, products[0], { 'idempotency-key': 'not a valid key!' }))).toBe('IDEMPOTENCY_KEY_INVALID');
      const literal = await server.gql(
        `mutation { createOrder(input: { lines: [{ productId: "${products[0]}", quantity: 1 }] }, idempotencyKey: "bad key") { order { id } } }`,
        undefined,
        { token, autoKey: false },
      );
      expect(codeOf(literal)).toBe('IDEMPOTENCY_KEY_INVALID');
    });
    expect(moved).toEqual({ invalid_key: 2 });
  });

  it('counts a stored domain failure as failure_stored and its retry as replayed', async () => {
    const key = randomUUID();
    const missingProduct = randomUUID();
    expect(
      await outcomesDuring(server, async () => {
        expect(codeOf(await place(key, missingProduct))).toBe('PRODUCT_NOT_FOUND');
      }),
    ).toEqual({ failure_stored: 1 });
    expect(
      await outcomesDuring(server, async () => {
        expect(codeOf(await place(key, missingProduct))).toBe('PRODUCT_NOT_FOUND');
      }),
    ).toEqual({ replayed: 1 });
  });

  it('records how long concurrent duplicates waited for the first request', async () => {
    const key = randomUUID();
    const productId = products[2];
    const before = await scrape(server);
    const release = await lockProducts(server.databaseUrl, [productId!]);
    let answers: GraphQLResponse<Created>[];
    try {
      const first = place(key, productId);
      await waitForLockWaiters(server, 1);
      const duplicates = Array.from({ length: 4 }, () => place(key, productId));
      await new Promise((resolve) => setTimeout(resolve, 300));
      await release();
      answers = await Promise.all([first, ...duplicates]);
    } finally {
      await release();
    }
    const after = await scrape(server);

    expect(new Set(answers.map((answer) => answer.body.data?.createOrder?.order.id)).size).toBe(1);
    expect(after.value('idempotency_duplicate_wait_seconds_count') - before.value('idempotency_duplicate_wait_seconds_count')).toBe(4);
    expect(after.value('idempotency_duplicate_wait_seconds_sum') - before.value('idempotency_duplicate_wait_seconds_sum')).toBeGreaterThan(
      4 * 0.2,
    );
    const outcome = (name: string) =>
      after.value('idempotency_requests_total', { operation: 'createOrder', outcome: name }) -
      before.value('idempotency_requests_total', { operation: 'createOrder', outcome: name });
    expect([outcome('executed'), outcome('replayed')]).toEqual([1, 4]);
  });

  it('records the engine overhead of every idempotent call', async () => {
    const key = randomUUID();
    const before = await scrape(server);
    await place(key);
    await place(key);
    const after = await scrape(server);
    const labels = { operation: 'createOrder' };
    expect(
      after.value('idempotency_engine_overhead_seconds_count', labels) - before.value('idempotency_engine_overhead_seconds_count', labels),
    ).toBe(2);
    expect(after.value('idempotency_engine_overhead_seconds_sum', labels)).toBeGreaterThan(
      before.value('idempotency_engine_overhead_seconds_sum', labels),
    );
  });

  it('reports the pool size and an estimate of the stored idempotency records', async () => {
    await place(randomUUID());
    await withClient(server.databaseUrl, (client) => client.query('ANALYZE idempotency_records'));
    const metrics = await scrape(server);
    expect(metrics.value('db_pool_connections', { state: 'max' })).toBe(20);
    for (const state of ['used', 'free', 'pending']) expect(metrics.has('db_pool_connections', { state })).toBe(true);
    expect(metrics.has('idempotency_records_estimate')).toBe(true);
    expect(metrics.value('idempotency_records_estimate')).toBeGreaterThan(0);
  });
});

describe('metrics of waits and expiry', () => {
  let server: TestServer;
  let token: string;
  let products: string[];

  beforeAll(async () => {
    server = await startTestServer({
      env: { IDEMPOTENCY_WAIT_MS: '1000', IDEMPOTENCY_TTL_SECONDS: '1', IDEMPOTENCY_PURGE_INTERVAL_SECONDS: '0' },
    });
    token = await server.token('metrics-timers');
    products = await productIds(server);
  });
  afterAll(async () => {
    await server?.close();
  });

  it('counts a duplicate that gave up waiting as in_progress_rejected', async () => {
    const [a, b] = products as [string, string];
    const input = {
      lines: [
        { productId: a, quantity: 1 },
        { productId: b, quantity: 1 },
      ],
    };
    const key = randomUUID();
    const send = () => server.gql<Created>(CREATE, { input, key }, { token, autoKey: false });
    // The first request waits for two row locks in turn, each under the 1 s lock timeout: it
    // runs for about 1.6 s, longer than a duplicate may wait.
    const releaseA = await lockProducts(server.databaseUrl, [a]);
    const releaseB = await lockProducts(server.databaseUrl, [b]);
    try {
      const moved = await outcomesDuring(server, async () => {
        const first = send();
        await waitForLockWaiters(server, 1);
        const duplicate = send();
        setTimeout(() => void releaseA(), 800);
        setTimeout(() => void releaseB(), 1600);
        expect(codeOf(await duplicate)).toBe('IDEMPOTENCY_REQUEST_IN_PROGRESS');
        expect((await first).body.errors).toBeUndefined();
      });
      expect(moved).toEqual({ in_progress_rejected: 1, executed: 1 });
    } finally {
      await releaseA();
      await releaseB();
    }
  });

  it('counts a key used again after its record expired as expired_reexecuted', async () => {
    const key = randomUUID();
    const send = () =>
      server.gql<Created>(CREATE, { input: { lines: [{ productId: products[3], quantity: 1 }] }, key }, { token, autoKey: false });
    const first = await send();
    expect(first.body.errors).toBeUndefined();
    await new Promise((resolve) => setTimeout(resolve, 1_300));
    const moved = await outcomesDuring(server, async () => {
      const again = await send();
      expect(again.body.errors).toBeUndefined();
      expect(again.headers.get('idempotent-replayed')).toBeNull();
      expect(again.body.data?.createOrder?.order.id).not.toBe(first.body.data?.createOrder?.order.id);
    });
    expect(moved).toEqual({ expired_reexecuted: 1 });
  });
});
