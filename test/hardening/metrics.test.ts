import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { withClient } from '../support/database';
import { closeGate } from '../support/gate';
import { scrape } from '../support/metrics';
import { codeOf } from '../support/responses';
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

/** Resolves once the record of `key` has expired by the database's clock (polled). */
async function untilExpired(server: TestServer, key: string): Promise<void> {
  for (;;) {
    const expired = await withClient(server.databaseUrl, async (client) => {
      const { rows } = await client.query<{ expired: boolean }>(
        'select expires_at <= now() as expired from idempotency_records where key = $1',
        [key],
      );
      return rows[0]?.expired === true;
    });
    if (expired) return;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** Resolves once `count` more requests have reached the server with their whole body. */
function requestsArrived(server: TestServer, count: number): Promise<void> {
  return new Promise((resolve) => {
    let arrived = 0;
    const onRequest = (request: IncomingMessage) => {
      const counted = () => {
        arrived += 1;
        if (arrived === count) {
          server.app.server.off('request', onRequest);
          resolve();
        }
      };
      if (request.complete) counted();
      else request.once('end', counted);
    };
    server.app.server.on('request', onRequest);
  });
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
    const gate = await closeGate(server.databaseUrl);
    let answers: GraphQLResponse<Created>[];
    const tookSeconds: number[] = [];
    try {
      const first = place(key, productId);
      await gate.untilWaiting();
      const arrived = requestsArrived(server, 4);
      const sentAt = performance.now();
      const duplicates = Array.from({ length: 4 }, () =>
        place(key, productId).then((answer) => {
          tookSeconds.push((performance.now() - sentAt) / 1000);
          return answer;
        }),
      );
      // The first request stays inside its transaction until every duplicate has reached the server.
      await arrived;
      await gate.open();
      answers = await Promise.all([first, ...duplicates]);
    } finally {
      await gate.remove();
    }
    const after = await scrape(server);

    expect(new Set(answers.map((answer) => answer.body.data?.createOrder?.order.id)).size).toBe(1);
    expect(answers[0]?.body.data?.createOrder?.order.id).toEqual(expect.any(String));
    const waits = after.value('idempotency_duplicate_wait_seconds_count') - before.value('idempotency_duplicate_wait_seconds_count');
    const waited = after.value('idempotency_duplicate_wait_seconds_sum') - before.value('idempotency_duplicate_wait_seconds_sum');
    expect(waits).toBe(4);
    // Each wait is recorded in seconds and lies within what its client saw.
    expect(waited).toBeGreaterThan(0);
    expect(waited).toBeLessThanOrEqual(tookSeconds.reduce((sum, seconds) => sum + seconds, 0));
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
      env: {
        IDEMPOTENCY_WAIT_MS: '1000',
        IDEMPOTENCY_TTL_SECONDS: '1',
        IDEMPOTENCY_TOMBSTONE_SECONDS: '0',
        IDEMPOTENCY_PURGE_INTERVAL_SECONDS: '0',
      },
    });
    token = await server.token('metrics-timers');
    products = await productIds(server);
  });
  afterAll(async () => {
    await server?.close();
  });

  it('counts duplicates that gave up waiting as in_progress_rejected, each having waited IDEMPOTENCY_WAIT_MS', async () => {
    const key = randomUUID();
    const send = () =>
      server.gql<Created>(CREATE, { input: { lines: [{ productId: products[0], quantity: 1 }] }, key }, { token, autoKey: false });
    const before = await scrape(server);
    // The first request stays inside its transaction until both duplicates have answered.
    const gate = await closeGate(server.databaseUrl);
    let tookSeconds = 0;
    try {
      const first = send();
      await gate.untilWaiting();
      const sentAt = performance.now();
      const duplicates = await Promise.all([send(), send()]);
      tookSeconds = (performance.now() - sentAt) / 1000;
      expect(duplicates.map(codeOf)).toEqual(['IDEMPOTENCY_REQUEST_IN_PROGRESS', 'IDEMPOTENCY_REQUEST_IN_PROGRESS']);
      await gate.open();
      expect((await first).body.errors).toBeUndefined();
    } finally {
      await gate.remove();
    }
    const after = await scrape(server);

    const moved = (outcome: string) =>
      after.value('idempotency_requests_total', { operation: 'createOrder', outcome }) -
      before.value('idempotency_requests_total', { operation: 'createOrder', outcome });
    expect([moved('in_progress_rejected'), moved('executed')]).toEqual([2, 1]);
    expect(after.value('idempotency_duplicate_wait_seconds_count') - before.value('idempotency_duplicate_wait_seconds_count')).toBe(2);
    // Each gave up at its deadline, which a timer never reaches early (0.1 s spare for clock
    // reads), and waited no longer than its client saw.
    const waited = after.value('idempotency_duplicate_wait_seconds_sum') - before.value('idempotency_duplicate_wait_seconds_sum');
    expect(waited).toBeGreaterThanOrEqual(2 * 0.9);
    expect(waited).toBeLessThanOrEqual(2 * tookSeconds);
  });

  it('counts a key used again after its record expired as expired_reexecuted', async () => {
    const key = randomUUID();
    const send = () =>
      server.gql<Created>(CREATE, { input: { lines: [{ productId: products[3], quantity: 1 }] }, key }, { token, autoKey: false });
    const first = await send();
    expect(first.body.errors).toBeUndefined();
    // Until the database's clock, which set expires_at, has passed it.
    await untilExpired(server, key);
    const moved = await outcomesDuring(server, async () => {
      const again = await send();
      expect(again.body.errors).toBeUndefined();
      expect(again.headers.get('idempotent-replayed')).toBeNull();
      expect(again.body.data?.createOrder?.order.id).not.toBe(first.body.data?.createOrder?.order.id);
    });
    expect(moved).toEqual({ expired_reexecuted: 1 });
  });
});
