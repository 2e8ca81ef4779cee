import { createTestDatabase, dropTestDatabase, withClient } from '../support/database';
import { storedOrderIds } from '../support/records';
import type { GraphQLResponse } from '../support/server';
import { postGraphQL, type ServerProcess, serverEnv, signalServer, startServer, stopAllServers, tokenFor } from './process-helpers';

// Rules I4 and I8 across real server processes sharing one database: in-process coalescing cannot
// help here, only the database can arbitrate between processes, and a crash must leave no half work.

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

interface Marker {
  key: string;
  replayed: boolean;
}

function createOrder(server: ServerProcess, token: string, key: string, lines: LineInput[]): Promise<CreateOrderResponse> {
  return postGraphQL<CreateOrderData>(server.url, CREATE_ORDER, { input: { lines }, key }, { authorization: `Bearer ${token}` });
}

function errorCode(response: CreateOrderResponse): string | undefined {
  const code = response.body.errors?.[0]?.extensions?.code;
  return code === undefined ? undefined : String(code);
}

function markerOf(response: CreateOrderResponse): Marker | undefined {
  return (response.body.extensions?.idempotency as Marker[] | undefined)?.[0];
}

/** The response's order, failing the test with the whole response when it is not a success. */
function orderOf(response: CreateOrderResponse) {
  const order = response.body.data?.createOrder?.order;
  if (!order || response.body.errors) throw new Error(`expected an order, got ${response.status} ${JSON.stringify(response.body)}`);
  return order;
}

function sql<T>(databaseUrl: string, text: string, params: unknown[] = []): Promise<T[]> {
  return withClient(databaseUrl, async (client) => (await client.query(text, params)).rows as T[]);
}

async function productIdsBySku(databaseUrl: string): Promise<Map<string, string>> {
  const rows = await sql<{ id: string; sku: string }>(databaseUrl, 'select id::text, sku from products');
  return new Map(rows.map((row) => [row.sku, row.id]));
}

/** The user's orders and records, read in one statement so they come from one snapshot. */
interface Ledger {
  orderIds: string[];
  /** key -> order id stored in the record's payload. */
  records: Record<string, string>;
  /** Records whose outcome is not SUCCEEDED. */
  failedRecords: number;
  stock: number;
}

async function ledger(databaseUrl: string, user: string, productId: string): Promise<Ledger> {
  const [row] = await sql<Omit<Ledger, 'records'> & { results: Record<string, string> }>(
    databaseUrl,
    `select coalesce((select array_agg(id::text order by id) from orders where user_id = $1), '{}') as "orderIds",
            coalesce((select jsonb_object_agg(key, encode(result, 'base64')) from idempotency_records where user_id = $1), '{}')
              as results,
            (select count(*)::int from idempotency_records where user_id = $1 and outcome <> 'SUCCEEDED') as "failedRecords",
            (select stock from products where id = $2) as stock`,
    [user, productId],
  );
  const { results, ...rest } = row!;
  return { ...rest, records: storedOrderIds(results) as Record<string, string> };
}

/** Waits until no session but the caller's is connected to the database (a killed server's backends end on EOF). */
async function untilNoOtherConnections(databaseUrl: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const [row] = await sql<{ others: number }>(
      databaseUrl,
      'select count(*)::int as others from pg_stat_activity where datname = current_database() and pid <> pg_backend_pid()',
    );
    if (row!.others === 0) return;
    if (Date.now() > deadline) throw new Error(`${row!.others} connections of the killed server are still open`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
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
        expect(errorCode(response)).toBe('IDEMPOTENCY_KEY_REUSED');
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

describe('a server process killed with requests in flight', () => {
  const REQUESTS = 100;
  // Killing at the first few responses leaves most requests mid-flight: queued, executing or committing.
  const KILL_AFTER_RESPONSES = 8;
  const KILL_AFTER_MS = 2_000;
  const STOCK = 1_000;
  let databaseUrl: string | undefined;

  beforeAll(async () => {
    databaseUrl = await createTestDatabase();
  });

  afterAll(async () => {
    await stopAllServers();
    if (databaseUrl) await dropTestDatabase(databaseUrl);
  });

  it('leaves no order without its record, and retries after a restart replay acknowledged orders and place the rest once', async () => {
    const db = databaseUrl as string;
    const user = 'crash-buyer';
    const token = await tokenFor(user);
    const crashed = await startServer(serverEnv(db));
    const pen = (await productIdsBySku(db)).get('PEN-001') as string;
    await sql(db, 'update products set stock = $1 where id = $2', [STOCK, pen]);
    const lines = [{ productId: pen, quantity: 1 }];
    const keys = Array.from({ length: REQUESTS }, (_, index) => `crash-${String(index).padStart(3, '0')}`);

    const acknowledged = new Map<string, CreateOrderResponse>();
    let kill: Promise<unknown> | undefined;
    const killNow = () => {
      kill ??= signalServer(crashed, 'SIGKILL');
    };
    const fallback = setTimeout(killNow, KILL_AFTER_MS);
    const attempts = await Promise.allSettled(
      keys.map(async (key) => {
        const response = await createOrder(crashed, token, key, lines);
        acknowledged.set(key, response);
        if (acknowledged.size >= KILL_AFTER_RESPONSES) killNow();
      }),
    );
    clearTimeout(fallback);
    killNow();
    expect(await kill).toEqual({ code: null, signal: 'SIGKILL' });
    const lost = attempts.filter((attempt) => attempt.status === 'rejected').length;
    expect(acknowledged.size + lost).toBe(REQUESTS);

    // Once PostgreSQL has dropped every connection of the killed process, nothing of it can still commit.
    await untilNoOtherConnections(db);
    // I4 at the moment of the crash (one snapshot): every committed order has its record and vice versa.
    const atCrash = await ledger(db, user, pen);
    expect(atCrash.failedRecords).toBe(0);
    expect(Object.values(atCrash.records).sort()).toEqual(atCrash.orderIds);
    expect(atCrash.stock).toBe(STOCK - atCrash.orderIds.length);
    for (const [key, response] of acknowledged) {
      expect(atCrash.records[key]).toBe(orderOf(response).id);
    }

    const restarted = await startServer(serverEnv(db));
    const retries = await Promise.all(keys.map((key) => createOrder(restarted, token, key, lines)));

    const retried = new Map(keys.map((key, index) => [key, orderOf(retries[index]!).id]));
    keys.forEach((key, index) => {
      const retry = retries[index]!;
      const before = acknowledged.get(key);
      if (before) {
        // An acknowledged order is replayed exactly as first answered.
        expect(retry.body.data).toEqual(before.body.data);
        expect(markerOf(retry)).toMatchObject({ key, replayed: true });
      }
      const committedBeforeCrash = atCrash.records[key];
      if (committedBeforeCrash) {
        // Committed but perhaps never answered: still replayed, not placed again.
        expect(retried.get(key)).toBe(committedBeforeCrash);
        expect(markerOf(retry)).toMatchObject({ key, replayed: true });
      } else {
        expect(markerOf(retry)).toMatchObject({ key, replayed: false });
      }
    });

    const after = await ledger(db, user, pen);
    expect(after.failedRecords).toBe(0);
    expect(after.records).toEqual(Object.fromEntries(retried));
    expect(after.orderIds).toHaveLength(REQUESTS);
    expect(after.orderIds).toEqual([...retried.values()].sort());
    expect(after.stock).toBe(STOCK - REQUESTS);
  });
});
