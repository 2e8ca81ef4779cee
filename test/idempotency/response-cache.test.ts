import { randomUUID } from 'node:crypto';
import { scrape } from '../support/metrics';
import { type GraphQLResponse, startTestServer, type TestServer } from '../support/server';

const CREATE = `mutation Place($input: CreateOrderInput!) {
  createOrder(input: $input) { order { id totalCents lines { quantity product { id name } } } }
}`;
const CREATE_IDS = `mutation Place($input: CreateOrderInput!) { createOrder(input: $input) { order { id } } }`;
const CREATE_PRODUCT = `mutation Add($input: CreateProductInput!) { createProduct(input: $input) { product { id sku } } }`;

type Placed = { createOrder: { order: { id: string } } };

/**
 * A request repeating an earlier fully replayed request exactly is answered with that earlier
 * response, without executing (idempotencyResponsePlugin). These tests tell such an answer from
 * an executed replay by the engine's own histogram, which counts every call the engine handles.
 */
describe('remembered replay responses', () => {
  let server: TestServer;
  let shortLived: TestServer;
  let product: string;

  beforeAll(async () => {
    server = await startTestServer({ env: { IDEMPOTENCY_PURGE_INTERVAL_SECONDS: '0' } });
    shortLived = await startTestServer({
      databaseUrl: server.databaseUrl,
      env: { IDEMPOTENCY_PURGE_INTERVAL_SECONDS: '0', IDEMPOTENCY_TTL_SECONDS: '2' },
    });
    const products = await server.gql<{ products: { edges: { node: { id: string } }[] } }>(
      '{ products(first: 1) { edges { node { id } } } }',
    );
    product = products.body.data?.products.edges[0]?.node.id as string;
  });
  afterAll(async () => {
    await shortLived.close();
    await server.close();
  });

  /** Engine calls and replays counted by the server's metrics. */
  async function counters(target: TestServer, operation = 'createOrder') {
    const metrics = await scrape(target);
    return {
      engineCalls: metrics.value('idempotency_engine_overhead_seconds_count', { operation }),
      replayed: metrics.value('idempotency_requests_total', { operation, outcome: 'replayed' }),
    };
  }

  /** Sends the request and reports how the engine counters moved. */
  async function sendCounted<T>(
    target: TestServer,
    query: string,
    variables: Record<string, unknown>,
    options: { token: string; key: string },
    operation = 'createOrder',
  ): Promise<{ response: GraphQLResponse<T>; engineCalls: number; replayed: number }> {
    const before = await counters(target, operation);
    const response = await target.gql<T>(query, variables, { token: options.token, headers: { 'idempotency-key': options.key } });
    const after = await counters(target, operation);
    return { response, engineCalls: after.engineCalls - before.engineCalls, replayed: after.replayed - before.replayed };
  }

  const order = (quantity = 1) => ({ input: { lines: [{ productId: product, quantity }] } });

  it('answers a repeat of a replayed request with the same response, without executing or reading anything', async () => {
    const token = await server.token(`remember-${randomUUID()}`);
    const key = randomUUID();
    const first = await sendCounted<Placed>(server, CREATE, order(), { token, key });
    expect(first.response.body.errors).toBeUndefined();
    expect(first.engineCalls).toBe(1);

    const replay = await sendCounted<Placed>(server, CREATE, order(), { token, key });
    expect(replay).toMatchObject({ engineCalls: 1, replayed: 1 });
    const repeat = await sendCounted<Placed>(server, CREATE, order(), { token, key });
    expect(repeat).toMatchObject({ engineCalls: 0, replayed: 1 });
    server.resetStatements();
    const again = await server.gql(CREATE, order(), { token, headers: { 'idempotency-key': key } });
    expect(server.statements).toEqual([]);
    expect(again.body).toEqual(repeat.response.body);

    expect(repeat.response.status).toBe(200);
    expect(repeat.response.headers.get('idempotent-replayed')).toBe('true');
    expect(repeat.response.body).toEqual(replay.response.body);
    expect(repeat.response.body.data).toEqual(first.response.body.data);
    expect(repeat.response.body.extensions?.idempotency).toEqual([
      { path: ['createOrder'], key, replayed: true, firstExecutedAt: expect.any(String), expiresAt: expect.any(String) },
    ]);
  });

  it('executes the replay again when the selection, the variables, the key or the caller differ', async () => {
    const token = await server.token(`remember-${randomUUID()}`);
    const key = randomUUID();
    const first = await sendCounted<Placed>(server, CREATE, order(2), { token, key });
    await sendCounted(server, CREATE, order(2), { token, key });
    const orderId = first.response.body.data?.createOrder.order.id;

    const otherSelection = await sendCounted<Placed>(server, CREATE_IDS, order(2), { token, key });
    expect(otherSelection).toMatchObject({ engineCalls: 1, replayed: 1 });
    expect(otherSelection.response.body.data).toEqual({ createOrder: { order: { id: orderId } } });

    const otherVariables = await sendCounted(server, CREATE, order(3), { token, key });
    expect(otherVariables.engineCalls).toBe(1);
    expect(otherVariables.response.body.errors?.map((error) => error.extensions?.code)).toEqual(['IDEMPOTENCY_KEY_REUSED']);

    const otherCaller = await sendCounted<Placed>(server, CREATE, order(2), { token: await server.token(`other-${randomUUID()}`), key });
    expect(otherCaller.engineCalls).toBe(1);
    expect(otherCaller.response.headers.get('idempotent-replayed')).toBeNull();
    expect(otherCaller.response.body.data?.createOrder.order.id).not.toBe(orderId);

    const otherKey = await sendCounted<Placed>(server, CREATE, order(2), { token, key: randomUUID() });
    expect(otherKey.engineCalls).toBe(1);
    expect(otherKey.response.body.data?.createOrder.order.id).not.toBe(orderId);
  });

  it('does not answer a caller who lost the permission the mutation needs', async () => {
    const user = `admin-${randomUUID()}`;
    const admin = await server.token(user, { admin: true });
    const key = randomUUID();
    const input = {
      input: { sku: `REMEMBER-${randomUUID().slice(0, 8)}`, name: 'Remembered', priceCents: 100, currency: 'USD', stock: 1 },
    };
    for (let attempt = 0; attempt < 3; attempt++) {
      const response = await server.gql(CREATE_PRODUCT, input, { token: admin, headers: { 'idempotency-key': key } });
      expect(response.body.errors).toBeUndefined();
    }
    const demoted = await sendCounted(server, CREATE_PRODUCT, input, { token: await server.token(user), key }, 'createProduct');
    expect(demoted.response.body.errors?.map((error) => error.extensions?.code)).toEqual(['FORBIDDEN']);
    expect(demoted.response.body.data ?? null).toBeNull();
    expect(demoted.replayed).toBe(0);
  });

  it('replays a stored failure by executing the replay every time', async () => {
    const token = await server.token(`remember-${randomUUID()}`);
    const key = randomUUID();
    const tooMany = order(1000);
    const attempts = [];
    for (let attempt = 0; attempt < 3; attempt++) attempts.push(await sendCounted(server, CREATE, tooMany, { token, key }));
    for (const attempt of attempts) {
      expect(attempt.engineCalls).toBe(1);
      expect(attempt.response.body.errors?.map((error) => error.extensions?.code)).toEqual(['INSUFFICIENT_STOCK']);
    }
  });

  it('stops answering when the record expires: the same request then executes as new', async () => {
    const token = await shortLived.token(`remember-${randomUUID()}`);
    const key = randomUUID();
    const first = await sendCounted<Placed>(shortLived, CREATE, order(), { token, key });
    await sendCounted(shortLived, CREATE, order(), { token, key });
    const remembered = await sendCounted(shortLived, CREATE, order(), { token, key });
    expect(remembered).toMatchObject({ engineCalls: 0, replayed: 1 });

    const expiresAt = Date.parse((remembered.response.body.extensions?.idempotency as { expiresAt: string }[])[0]?.expiresAt as string);
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, expiresAt - Date.now()) + 100));
    const afterExpiry = await sendCounted<Placed>(shortLived, CREATE, order(), { token, key });
    expect(afterExpiry).toMatchObject({ engineCalls: 1, replayed: 0 });
    expect(afterExpiry.response.headers.get('idempotent-replayed')).toBeNull();
    expect(afterExpiry.response.body.data?.createOrder.order.id).not.toBe(first.response.body.data?.createOrder.order.id);
  });
});
