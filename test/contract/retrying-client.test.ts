import { randomUUID } from 'node:crypto';
import net, { type AddressInfo } from 'node:net';
import { print } from 'graphql';
import { type AttemptReport, PlaceOrderError, placeOrderWithRetries } from '../../examples/retrying-client';
import { withClient } from '../support/database';
import { lockProducts } from '../support/locks';
import { startTestServer, type TestServer } from '../support/server';
import { CreateOrderDocument } from './generated/graphql';
import { type Fault, type FaultyProxy, startFaultyProxy } from './support/faulty-proxy';

// Short backoff: the behaviour under test is what is retried and with which key, not the waiting.
const FAST = { maxAttempts: 4, baseDelayMs: 10, maxDelayMs: 50 } as const;

describe('examples/retrying-client.ts through a faulty network', () => {
  let server: TestServer;
  let proxy: FaultyProxy | undefined;

  beforeAll(async () => {
    server = await startTestServer();
  });

  afterEach(async () => {
    await proxy?.close();
    proxy = undefined;
  });

  afterAll(async () => {
    await server?.close();
  });

  async function sql<T>(text: string, params: unknown[] = []): Promise<T[]> {
    return withClient(server.databaseUrl, async (client) => (await client.query(text, params)).rows as T[]);
  }

  async function productId(sku: string): Promise<string> {
    const [row] = await sql<{ id: string }>('select id from products where sku = $1', [sku]);
    if (!row) throw new Error(`no seeded product ${sku}`);
    return row.id;
  }

  const ordersOf = (user: string) => ordersOfUser(server, user);

  /** A new buyer behind a new proxy with the given fault. */
  async function buyer(fault: Fault) {
    const user = `retrying-${randomUUID()}`;
    proxy = await startFaultyProxy(server.url, fault);
    const attempts: AttemptReport[] = [];
    return {
      user,
      token: await server.token(user),
      url: proxy.url,
      proxy,
      attempts,
      onAttempt: (report: AttemptReport) => attempts.push(report),
    };
  }

  it('retries a lost response with the same key and gets the replay of the one committed order', async () => {
    const { user, token, url, proxy, attempts, onAttempt } = await buyer('drop-response');
    const mug = await productId('MUG-001');

    const result = await placeOrderWithRetries({ url, token, input: { lines: [{ productId: mug, quantity: 2 }] }, onAttempt, ...FAST });

    expect(await ordersOf(user)).toEqual([result.order.id]);
    expect(result.attempts).toBe(2);
    expect(result.replayed).toBe(true);
    expect(result.order).toMatchObject({ status: 'PLACED', lines: [{ quantity: 2, product: { id: mug } }] });
    expect(attempts.map((report) => report.outcome)).toEqual([
      { kind: 'retrying', reason: 'network error', delayMs: expect.any(Number) },
      { kind: 'answered' },
    ]);
    // The first request reached the server and committed (no replay); the second was answered from its record.
    expect(proxy.requests).toEqual([
      { operation: 'createOrder', key: result.idempotencyKey, faulted: true, replayedHeader: undefined, answer: expect.any(String) },
      { operation: 'createOrder', key: result.idempotencyKey, faulted: false, replayedHeader: 'true', answer: expect.any(String) },
    ]);
  });

  it('retries an HTTP 503 from the gateway with the same key, and the order executes once', async () => {
    const { user, token, url, proxy, attempts, onAttempt } = await buyer('answer-503');
    const cap = await productId('CAP-001');

    const result = await placeOrderWithRetries({ url, token, input: { lines: [{ productId: cap, quantity: 1 }] }, onAttempt, ...FAST });

    expect(await ordersOf(user)).toEqual([result.order.id]);
    expect(result.attempts).toBe(2);
    expect(result.replayed).toBe(false);
    expect(attempts[0]?.outcome).toEqual({ kind: 'retrying', reason: 'HTTP 503', delayMs: expect.any(Number) });
    expect(proxy.requests.map((request) => [request.key, request.faulted])).toEqual([
      [result.idempotencyKey, true],
      [result.idempotencyKey, false],
    ]);
  });

  it('retries after a timeout with the same key, and gets the replay of the order the server committed meanwhile', async () => {
    const { user, token, url, proxy, attempts, onAttempt } = await buyer('delay-past-timeout');
    const mug = await productId('MUG-001');

    const result = await placeOrderWithRetries({
      url,
      token,
      input: { lines: [{ productId: mug, quantity: 1 }] },
      onAttempt,
      ...FAST,
      attemptTimeoutMs: 1_000,
    });

    expect(attempts.map((report) => report.outcome)).toEqual([
      { kind: 'retrying', reason: 'timeout', delayMs: expect.any(Number) },
      { kind: 'answered' },
    ]);
    expect(result).toMatchObject({ attempts: 2, replayed: true });
    expect(await ordersOf(user)).toEqual([result.order.id]);
    expect(proxy.requests.map((request) => request.key)).toEqual([result.idempotencyKey, result.idempotencyKey]);
  });

  it('retries RATE_LIMITED after the Retry-After the answer carries, with the same key', async () => {
    const { user, token, url, proxy, attempts, onAttempt } = await buyer('answer-429');
    const mug = await productId('MUG-001');

    const result = await placeOrderWithRetries({ url, token, input: { lines: [{ productId: mug, quantity: 1 }] }, onAttempt, ...FAST });

    // FAST's backoff is at most 50 ms: the wait came from Retry-After (1 s).
    expect(attempts[0]?.outcome).toEqual({ kind: 'retrying', reason: 'HTTP 429', delayMs: 1_000 });
    expect(result).toMatchObject({ attempts: 2, replayed: false });
    expect(await ordersOf(user)).toEqual([result.order.id]);
    expect(proxy.requests.map((request) => [request.key, request.faulted])).toEqual([
      [result.idempotencyKey, true],
      [result.idempotencyKey, false],
    ]);
  });

  it('does not retry a domain error: INSUFFICIENT_STOCK fails after one attempt', async () => {
    const { user, token, url, proxy, attempts, onAttempt } = await buyer('none');
    const umbrella = await productId('UMB-001');
    await sql('update products set stock = 1 where id = $1', [umbrella]);

    const failure = await placeOrderWithRetries({
      url,
      token,
      input: { lines: [{ productId: umbrella, quantity: 1000 }] },
      onAttempt,
      ...FAST,
    }).catch((error: unknown) => error);

    expect(failure).toBeInstanceOf(PlaceOrderError);
    expect(failure).toMatchObject({ code: 'INSUFFICIENT_STOCK', attempts: 1 });
    expect(attempts).toHaveLength(1);
    expect(proxy.requests).toHaveLength(1);
    expect(await ordersOf(user)).toEqual([]);
    expect(await sql('select stock from products where id = $1', [umbrella])).toEqual([{ stock: 1 }]);
  });

  it('does not retry IDEMPOTENCY_KEY_REUSED: a key already used for another order fails after one attempt', async () => {
    const { user, token, url, proxy, attempts, onAttempt } = await buyer('none');
    const pen = await productId('PEN-001');
    const key = randomUUID();
    const first = await placeOrderWithRetries({
      url,
      token,
      idempotencyKey: key,
      input: { lines: [{ productId: pen, quantity: 1 }] },
      ...FAST,
    });

    const failure = await placeOrderWithRetries({
      url,
      token,
      idempotencyKey: key,
      input: { lines: [{ productId: pen, quantity: 2 }] },
      onAttempt,
      ...FAST,
    }).catch((error: unknown) => error);

    expect(failure).toBeInstanceOf(PlaceOrderError);
    expect(failure).toMatchObject({ code: 'IDEMPOTENCY_KEY_REUSED', attempts: 1, idempotencyKey: key });
    expect(attempts).toEqual([
      { attempt: 1, idempotencyKey: key, outcome: { kind: 'gave-up', reason: 'IDEMPOTENCY_KEY_REUSED is final' } },
    ]);
    expect(proxy.requests).toHaveLength(2);
    expect(await ordersOf(user)).toEqual([first.order.id]);
  });

  it('gives up after maxAttempts when the network keeps failing, with the code of the last failure', async () => {
    const token = await server.token(`retrying-${randomUUID()}`);
    const attempts: AttemptReport[] = [];
    // A listener that hangs up on every connection: each attempt is a real network error.
    const hangUp = net.createServer((socket) => socket.destroy());
    await new Promise<void>((resolve) => hangUp.listen(0, '127.0.0.1', resolve));
    const { port } = hangUp.address() as AddressInfo;
    const failure = await placeOrderWithRetries({
      url: `http://127.0.0.1:${port}/graphql`,
      token,
      input: { lines: [{ productId: randomUUID(), quantity: 1 }] },
      onAttempt: (report) => attempts.push(report),
      ...FAST,
      maxAttempts: 3,
    }).catch((error: unknown) => error);
    await new Promise((resolve) => hangUp.close(resolve));

    expect(failure).toBeInstanceOf(PlaceOrderError);
    expect(failure).toMatchObject({ code: 'NETWORK_ERROR', attempts: 3 });
    expect(attempts.map((report) => report.outcome.kind)).toEqual(['retrying', 'retrying', 'gave-up']);
    expect(new Set(attempts.map((report) => report.idempotencyKey)).size).toBe(1);
  });
});

describe('examples/retrying-client.ts while the first request with its key is still running', () => {
  let server: TestServer;

  beforeAll(async () => {
    // Duplicates wait at most 1 s for the first request before IDEMPOTENCY_REQUEST_IN_PROGRESS.
    server = await startTestServer({ env: { IDEMPOTENCY_WAIT_MS: '1000', IDEMPOTENCY_PURGE_INTERVAL_SECONDS: '0' } });
  });

  afterAll(async () => {
    await server?.close();
  });

  it('waits retryAfterSeconds after IDEMPOTENCY_REQUEST_IN_PROGRESS, then gets the replay of the first request', async () => {
    const user = `patient-${randomUUID()}`;
    const token = await server.token(user);
    const [a, b] = await withClient(server.databaseUrl, async (client) =>
      (await client.query<{ id: string }>("select id from products where sku in ('BAG-001', 'BTL-001') order by id")).rows.map(
        (row) => row.id,
      ),
    );
    const input = {
      lines: [
        { productId: a!, quantity: 1 },
        { productId: b!, quantity: 1 },
      ],
    };
    const key = randomUUID();
    // The first request (another tab, say) waits for two row locks in turn, each under the 1 s lock
    // timeout: it runs for about 1.6 s, longer than a duplicate may wait.
    const releaseA = await lockProducts(server.databaseUrl, [a!]);
    const releaseB = await lockProducts(server.databaseUrl, [b!]);
    const first = server.gql<{ createOrder: { order: { id: string } } }>(
      print(CreateOrderDocument),
      { input, key },
      { token, autoKey: false },
    );
    await new Promise((resolve) => setTimeout(resolve, 100));
    setTimeout(() => void releaseA(), 700);
    setTimeout(() => void releaseB(), 1500);
    const attempts: AttemptReport[] = [];

    const result = await placeOrderWithRetries({
      url: server.url,
      token,
      input,
      idempotencyKey: key,
      onAttempt: (report) => attempts.push(report),
      ...FAST,
    });

    const original = await first;
    expect(original.body.errors).toBeUndefined();
    expect(result.order.id).toBe(original.body.data?.createOrder.order.id);
    expect(result).toMatchObject({ attempts: 2, replayed: true });
    expect(attempts[0]?.outcome).toEqual({ kind: 'retrying', reason: 'IDEMPOTENCY_REQUEST_IN_PROGRESS', delayMs: expect.any(Number) });
    // FAST's backoff is at most 50 ms: the wait came from the server's retryAfterSeconds (at least 1 s).
    expect(attempts[0]?.outcome.kind === 'retrying' && attempts[0].outcome.delayMs).toBeGreaterThanOrEqual(1000);
    expect(await ordersOfUser(server, user)).toEqual([result.order.id]);
  });
});

async function ordersOfUser(server: TestServer, user: string): Promise<string[]> {
  return withClient(server.databaseUrl, async (client) =>
    (await client.query<{ id: string }>('select id from orders where user_id = $1', [user])).rows.map((row) => row.id),
  );
}
