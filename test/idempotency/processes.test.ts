import { createTestDatabase, dropTestDatabase } from '../support/database';
import { ledger, markerOf, sql } from '../support/orders-client';
import { postGraphQL, type ServerProcess, serverEnv, startServer, stopAllServers, tokenFor } from '../support/processes';
import { codeOf } from '../support/responses';
import type { GraphQLResponse } from '../support/server';

// Rules I4 and I8 of docs/idempotency.md (#i4-atomic-first-execution, #i8-concurrency) across real
// server processes sharing one database: in-process coalescing cannot help here, only the database
// can arbitrate between processes, and a crash must leave no half work
// (the crash itself: test/resilience/kill.test.ts).

const CREATE_ORDER = `mutation($input: CreateOrderInput!, $key: IdempotencyKey) {
  createOrder(input: $input, idempotencyKey: $key) { order { id totalCents lines { quantity product { id stock } } } }
}`;

interface LineInput {
  productId: string;
  quantity: number;
}

interface CreateOrderData {
  createOrder: { order: { id: string; totalCents: number; lines: { quantity: number; product: { id: string; stock: number } }[] } } | null;
}

type CreateOrderResponse = GraphQLResponse<CreateOrderData>;

function createOrder(server: ServerProcess, token: string, key: string, lines: LineInput[]): Promise<CreateOrderResponse> {
  return postGraphQL<CreateOrderData>(server.url, CREATE_ORDER, { input: { lines }, key }, { authorization: `Bearer ${token}` });
}

/** The response's order, failing the test with the whole response when it is not a success. */
function orderOf(response: CreateOrderResponse) {
  const order = response.body.data?.createOrder?.order;
  if (!order || response.body.errors) throw new Error(`expected an order, got ${response.status} ${JSON.stringify(response.body)}`);
  return order;
}

async function productIdsBySku(databaseUrl: string): Promise<Map<string, string>> {
  const rows = await sql<{ id: string; sku: string }>(databaseUrl, 'select id::text, sku from products');
  return new Map(rows.map((row) => [row.sku, row.id]));
}

describe('one key raced across two server processes on one database', () => {
  let databaseUrl: string | undefined;
  let servers: ServerProcess[] = [];
  let products = new Map<string, string>();

  beforeAll(async () => {
    databaseUrl = await createTestDatabase();
    // One after the other: the first start migrates and seeds, the second finds it done.
    const first = await startServer(serverEnv(databaseUrl));
    const second = await startServer(serverEnv(databaseUrl));
    servers = [first, second];
    products = await productIdsBySku(databaseUrl);
    // Warm both processes up (pool connections, JIT) so that the races below overlap in the database.
    const token = await tokenFor('warm-up');
    for (const [index, server] of servers.entries()) {
      orderOf(await createOrder(server, token, `warm-up-${index}`, [{ productId: productId('KEY-001'), quantity: 1 }]));
    }
  });

  afterAll(async () => {
    await stopAllServers();
    if (databaseUrl) await dropTestDatabase(databaseUrl);
  });

  function db(): string {
    if (!databaseUrl) throw new Error('no test database');
    return databaseUrl;
  }

  function productId(sku: string): string {
    const id = products.get(sku);
    if (!id) throw new Error(`no seeded product ${sku}`);
    return id;
  }

  async function stockOf(id: string): Promise<number> {
    const [row] = await sql<{ stock: number }>(db(), 'select stock from products where id = $1', [id]);
    return row!.stock;
  }

  it('places one order when 50 identical requests with one key race across both processes, and all 50 get its payload', async () => {
    const user = 'identical-racer';
    const token = await tokenFor(user);
    const mug = productId('MUG-001');
    const stockBefore = await stockOf(mug);
    const lines = [{ productId: mug, quantity: 2 }];

    const responses = await Promise.all(
      Array.from({ length: 50 }, (_, index) => createOrder(servers[index % 2]!, token, 'one-key', lines)),
    );

    const first = orderOf(responses[0]!);
    for (const response of responses) {
      expect(response.status).toBe(200);
      expect(response.body.errors).toBeUndefined();
      expect(response.body.data).toEqual(responses[0]!.body.data);
    }
    expect(first.lines).toEqual([{ quantity: 2, product: { id: mug, stock: stockBefore - 2 } }]);
    // Exactly one request executed; every other one, in either process, was a replay.
    expect(responses.filter((response) => markerOf(response)?.replayed === false)).toHaveLength(1);

    const after = await ledger(db(), user, mug);
    expect(after.orderIds).toEqual([first.id]);
    expect(after.records).toEqual({ 'one-key': first.id });
    expect(after.stock).toBe(stockBefore - 2);
  });

  it('places one order when two payloads race for one key across both processes: the other payload gets IDEMPOTENCY_KEY_REUSED', async () => {
    const user = 'conflicting-racer';
    const token = await tokenFor(user);
    const tee = productId('TEE-001');
    const stockBefore = await stockOf(tee);
    // Each process receives both payloads: quantities 1, 1, 2, 2, 1, 1, ... on servers 0, 1, 0, 1, ...
    const quantities = Array.from({ length: 20 }, (_, index) => (Math.floor(index / 2) % 2) + 1);

    const responses = await Promise.all(
      quantities.map((quantity, index) => createOrder(servers[index % 2]!, token, 'contested-key', [{ productId: tee, quantity }])),
    );

    const after = await ledger(db(), user, tee);
    expect(after.orderIds).toHaveLength(1);
    const winnerId = after.orderIds[0]!;
    expect(after.records).toEqual({ 'contested-key': winnerId });
    const [winnerLine] = await sql<{ quantity: number }>(db(), 'select quantity from order_lines where order_id = $1', [winnerId]);
    const winnerQuantity = winnerLine!.quantity;
    expect(after.stock).toBe(stockBefore - winnerQuantity);

    const winnerPayload = responses.find((response) => response.body.data?.createOrder)?.body.data;
    responses.forEach((response, index) => {
      expect(response.status).toBe(200);
      if (quantities[index] === winnerQuantity) {
        expect(response.body.errors).toBeUndefined();
        expect(orderOf(response).id).toBe(winnerId);
        expect(orderOf(response).lines.map((line) => line.quantity)).toEqual([winnerQuantity]);
        expect(response.body.data).toEqual(winnerPayload);
      } else {
        expect(codeOf(response)).toBe('IDEMPOTENCY_KEY_REUSED');
        expect(response.body.data?.createOrder ?? null).toBeNull();
        expect(JSON.stringify(response.body)).not.toContain(winnerId);
      }
    });
    expect(responses.filter((response) => markerOf(response)?.replayed === false)).toHaveLength(1);
  });

  it('places one order per key when several keys race across both processes at once, round after round', async () => {
    const user = 'many-keys-racer';
    const token = await tokenFor(user);
    const cap = productId('CAP-001');
    const stockBefore = await stockOf(cap);
    const rounds = 3;
    const keysPerRound = 5;
    const requestsPerKey = 20;
    const placed = new Map<string, string>();

    for (let round = 0; round < rounds; round += 1) {
      const keys = Array.from({ length: keysPerRound }, (_, index) => `round-${round}-key-${index}`);
      // Keys interleave, and each key alternates between the processes (5 keys, 2 servers).
      const requests = Array.from({ length: keysPerRound * requestsPerKey }, (_, index) => ({
        key: keys[index % keysPerRound]!,
        server: servers[index % 2]!,
      }));
      const responses = await Promise.all(
        requests.map(({ key, server }) => createOrder(server, token, key, [{ productId: cap, quantity: 1 }])),
      );

      for (const key of keys) {
        const forKey = responses.filter((_, index) => requests[index]!.key === key);
        expect(forKey).toHaveLength(requestsPerKey);
        const id = orderOf(forKey[0]!).id;
        for (const response of forKey) {
          expect(response.body.errors).toBeUndefined();
          expect(response.body.data).toEqual(forKey[0]!.body.data);
        }
        expect(forKey.filter((response) => markerOf(response)?.replayed === false)).toHaveLength(1);
        placed.set(key, id);
      }
    }

    const after = await ledger(db(), user, cap);
    expect(new Set(placed.values()).size).toBe(rounds * keysPerRound);
    expect(after.orderIds).toEqual([...placed.values()].sort());
    expect(after.records).toEqual(Object.fromEntries(placed));
    expect(after.stock).toBe(stockBefore - rounds * keysPerRound);
  });
});
