import { failureOfResult, isRetryable } from '../../../clients/src/policy';
import { createIdempotency } from '../../../src/idempotency';
import { withClient } from '../../support/database';
import { type GraphQLResponse, startTestServer, type TestServer } from '../../support/server';
import { CREATE_ORDER_ID_ONLY, codesOf, type Marker, markersOf, newKey, type Placed } from './support';

// Rule I10 as amended in DESIGN.md section 9 (tombstones), over HTTP against the real server and
// database, with short windows. Waits follow the database clock, which decides expiry; what must
// happen within a window gets the whole window, however slow the machine.

const TTL_MS = 2_000;
const TOMBSTONE_MS = 5_000;

const LOOKUP = `query Record($key: IdempotencyKey!) {
  idempotencyRecord(key: $key) { operation expiresAt forgottenAt expired resources { type id } }
}`;
const ORDER = 'query Order($id: ID!) { order(id: $id) { id status } }';

describe('tombstones (IDEMPOTENCY_TTL_SECONDS=2, IDEMPOTENCY_TOMBSTONE_SECONDS=5)', () => {
  let server: TestServer;
  /** A second process on the same database, without a replay cache: every retry reads the record. */
  let uncached: TestServer;
  let token: string;
  let mug: string;

  beforeAll(async () => {
    const env = { IDEMPOTENCY_TTL_SECONDS: String(TTL_MS / 1000), IDEMPOTENCY_TOMBSTONE_SECONDS: String(TOMBSTONE_MS / 1000) };
    server = await startTestServer({ env });
    uncached = await startTestServer({ env, databaseUrl: server.databaseUrl, cacheSize: 0 });
    token = await server.token('alice');
    [{ id: mug }] = (await sql<{ id: string }>("select id::text from products where sku = 'MUG-001'")) as [{ id: string }];
  });

  afterAll(async () => {
    await uncached?.close();
    await server?.close();
  });

  function sql<T>(text: string, params: unknown[] = []): Promise<T[]> {
    return withClient(server.databaseUrl, async (client) => (await client.query(text, params)).rows as T[]);
  }

  function place(key: string, quantity = 1, on: TestServer = server): Promise<GraphQLResponse<Placed>> {
    return on.gql<Placed>(CREATE_ORDER_ID_ONLY, { input: { lines: [{ productId: mug, quantity }] }, key }, { token, autoKey: false });
  }

  async function ordersOf(user: string): Promise<number> {
    const [row] = await sql<{ count: number }>('select count(*)::int as count from orders where user_id = $1', [user]);
    return row!.count;
  }

  /** Makes the tombstones of `user`'s keys outlive the test, which then waits only for expiry. */
  async function keepTombstones(user: string): Promise<void> {
    await sql("update idempotency_records set forgotten_at = forgotten_at + interval '1 hour' where user_id = $1", [user]);
  }

  /** Resolves once the database clock has passed `instant`. */
  async function until(instant: string): Promise<void> {
    for (;;) {
      const [row] = await sql<{ passed: boolean }>('select now() > $1::timestamptz as passed', [instant]);
      if (row!.passed) return;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }

  it('replays before expiry, answers IDEMPOTENCY_KEY_EXPIRED with the order id after it, and executes again once the tombstone is gone', async () => {
    const key = newKey();
    const first = await place(key);
    const orderId = first.body.data!.createOrder.order.id;
    const marker = markersOf(first)![0]!;
    const replay = await place(key);
    expect(replay.body.data).toEqual(first.body.data);
    expect(markersOf(replay)).toEqual([{ ...marker, replayed: true }]);
    expect(Date.parse(marker.expiresAt) - Date.parse(marker.firstExecutedAt)).toBe(TTL_MS);
    expect(Date.parse(marker.forgottenAt) - Date.parse(marker.expiresAt)).toBe(TOMBSTONE_MS);
    const orders = await ordersOf('alice');

    await until(marker.expiresAt);
    const purged = await createIdempotency().purge(server.orm);
    const [row] = await sql<{ result: Buffer | null; resources: unknown }>(
      'select result, resources from idempotency_records where user_id = $1 and key = $2',
      ['alice', key],
    );
    const lateHere = await place(key);
    const lateThere = await place(key, 1, uncached);
    const other = await place(key, 2);
    const lookup = await server.gql(LOOKUP, { key }, { token });

    expect(purged.tombstoned).toBeGreaterThanOrEqual(1);
    expect(row).toEqual({ result: null, resources: [{ type: 'Order', id: orderId }] });
    for (const late of [lateHere, lateThere]) {
      expect(late.body.data).toBeNull();
      expect(late.body.errors).toEqual([
        expect.objectContaining({
          path: ['createOrder'],
          extensions: {
            code: 'IDEMPOTENCY_KEY_EXPIRED',
            retryable: false,
            firstExecutedAt: marker.firstExecutedAt,
            resources: [{ type: 'Order', id: orderId }],
          },
        }),
      ]);
      expect(markersOf(late)).toEqual([{ ...marker, replayed: false }]);
      expect(late.headers.get('idempotent-replayed')).toBeNull();
      // The client package gives up at once instead of sending the request again.
      expect(isRetryable(failureOfResult(late.body)!)).toBe(false);
    }
    expect(codesOf(other)).toEqual(['IDEMPOTENCY_KEY_REUSED']);
    expect(lookup.body.data).toEqual({
      idempotencyRecord: {
        operation: 'createOrder',
        expiresAt: marker.expiresAt,
        forgottenAt: marker.forgottenAt,
        expired: true,
        resources: [{ type: 'Order', id: orderId }],
      },
    });
    expect(await ordersOf('alice')).toBe(orders);
    // What the client does with the answer: fetch the order instead of placing it again.
    expect((await server.gql(ORDER, { id: orderId }, { token })).body.data).toEqual({ order: { id: orderId, status: 'PLACED' } });

    await until(marker.forgottenAt);
    const again = await place(key, 1, uncached);

    expect(again.body.errors).toBeUndefined();
    expect(again.body.data!.createOrder.order.id).not.toBe(orderId);
    expect(markersOf(again)).toEqual([expect.objectContaining({ key, replayed: false })]);
    expect(await ordersOf('alice')).toBe(orders + 1);
  });

  it('never executes a key twice while retries cross its expiry and the purge turns its record into a tombstone', async () => {
    const user = 'boundary';
    const userToken = await server.token(user);
    const send = (key: string, on: TestServer) =>
      on.gql<Placed>(
        CREATE_ORDER_ID_ONLY,
        { input: { lines: [{ productId: mug, quantity: 1 }] }, key },
        { token: userToken, autoKey: false },
      );
    const keys = Array.from({ length: 16 }, () => newKey());
    const firsts = await Promise.all(keys.map((key) => send(key, server)));
    const orderIds = new Map(keys.map((key, index) => [key, firsts[index]!.body.data!.createOrder.order.id]));
    const markers = firsts.map((first) => markersOf(first)![0]!);
    await keepTombstones(user);
    const lastExpiry = markers
      .map((marker) => marker.expiresAt)
      .sort()
      .at(-1)!;
    // Until the database clock is past every expiry, each key is retried without pause on both
    // processes while the purge runs in a loop, so retries meet the record live, mid-purge and
    // as a tombstone.
    const answers: { key: string; response: GraphQLResponse<Placed> }[] = [];
    let crossed = false;
    const purging = (async () => {
      while (!crossed) await createIdempotency().purge(server.orm, { pauseRatio: 0 });
    })();
    const retrying = keys.map(async (key, index) => {
      for (let round = 0; !crossed; round++)
        answers.push({ key, response: await send(key, (index + round) % 2 === 0 ? server : uncached) });
    });
    await until(lastExpiry);
    crossed = true;
    await Promise.all(retrying);
    await purging;
    for (const key of keys) for (const on of [server, uncached]) answers.push({ key, response: await send(key, on) });
    await createIdempotency().purge(server.orm);

    const kinds = answers.map(({ key, response }) => {
      if (response.body.data?.createOrder.order.id === orderIds.get(key) && markersOf(response)?.[0]?.replayed) return 'replayed';
      const expected = { code: 'IDEMPOTENCY_KEY_EXPIRED', resources: [{ type: 'Order', id: orderIds.get(key) }] };
      expect({ status: response.status, body: response.body }).toMatchObject({ body: { errors: [{ extensions: expected }] } });
      return 'expired';
    });
    expect(kinds.slice(-2 * keys.length).every((kind) => kind === 'expired')).toBe(true);
    expect(await sql('select key from idempotency_records where user_id = $1 and result is not null', [user])).toEqual([]);
    expect(await ordersOf(user)).toBe(keys.length);
  });

  it('answers a retry IDEMPOTENCY_KEY_EXPIRED without waiting while the purge holds the row it is turning into a tombstone', async () => {
    const key = newKey();
    const first = await place(key);
    const marker: Marker = markersOf(first)![0]!;
    await keepTombstones('alice');
    await until(marker.expiresAt);
    const orders = await ordersOf('alice');

    const late = await withClient(server.databaseUrl, async (purge) => {
      // The purge's statement for this row, left uncommitted: it holds the row's lock.
      await purge.query('begin');
      await purge.query('update idempotency_records set result = null, key_id = null where user_id = $1 and key = $2', ['alice', key]);
      try {
        return await place(key, 1, uncached);
      } finally {
        await purge.query('commit');
      }
    });

    expect(codesOf(late)).toEqual(['IDEMPOTENCY_KEY_EXPIRED']);
    expect(await ordersOf('alice')).toBe(orders);
  });

  it('executes a key once when its retry meets the purge deleting the ended tombstone, waiting for the delete', async () => {
    const key = newKey();
    const first = await place(key);
    const marker = markersOf(first)![0]!;
    await until(marker.forgottenAt);
    const orders = await ordersOf('alice');

    const again = await withClient(server.databaseUrl, async (purge) => {
      await purge.query('begin');
      await purge.query('delete from idempotency_records where user_id = $1 and key = $2', ['alice', key]);
      const retry = place(key, 1, uncached);
      // The retry's record insert waits on the deleted row's lock; then the delete commits.
      for (;;) {
        const [row] = await sql<{ waiting: number }>(
          "select count(*)::int as waiting from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock'",
        );
        if (row!.waiting > 0) break;
        await new Promise((resolve) => setImmediate(resolve));
      }
      await purge.query('commit');
      return retry;
    });

    expect(again.body.errors).toBeUndefined();
    expect(again.body.data!.createOrder.order.id).not.toBe(first.body.data!.createOrder.order.id);
    expect(await ordersOf('alice')).toBe(orders + 1);
    expect(await sql('select key from idempotency_records where user_id = $1 and key = $2', ['alice', key])).toEqual([{ key }]);
  });
});
