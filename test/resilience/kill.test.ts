import { Client } from 'pg';
import { createTestDatabase, dropTestDatabase } from '../support/database';
import { closeGate, type Gate } from '../support/gate';
import {
  type CreateOrderResponse,
  createOrder,
  ledger,
  markerOf,
  orderIdOf,
  productId,
  sleep,
  sql,
  untilNoOtherConnections,
} from '../support/orders-client';
import { type ServerProcess, serverEnv, signalServer, startServer, stopAllServers, tokenFor } from '../support/processes';

// docs/idempotency.md, Guarantees: "There is no moment — crash, kill, lost connection — at which
// an order exists without its record, or a record claims an outcome that did not commit."
// The server is killed (SIGKILL) while transactions are provably open: some wait for a product
// row the test holds (nothing written yet), others wait behind a gate after writing their order,
// just before their idempotency record is written. No order may ever exist without its record,
// nor a record without its order, and retries on a restarted server execute each key once.

const USER = 'killed-buyer';
const ACKNOWLEDGED = 4;
const BLOCKED_ON_LOCK = 8;
const BLOCKED_AFTER_WRITING = 4;

/** What a client saw: an answer, or the connection failing under it. */
type Seen = { kind: 'answer'; response: CreateOrderResponse } | { kind: 'lost'; error: unknown };

function settle(request: Promise<CreateOrderResponse>): Promise<Seen> {
  return request.then(
    (response) => ({ kind: 'answer', response }),
    (error: unknown) => ({ kind: 'lost', error }),
  );
}

/** The server's sessions (not `own`) inside a transaction, by what they wait for. */
async function openTransactions(observer: Client, own: number[]): Promise<{ state: string; waiting: string | null }[]> {
  const { rows } = await observer.query<{ state: string; waiting: string | null }>(
    `select state, wait_event as waiting from pg_stat_activity
      where datname = current_database() and xact_start is not null and pid <> all($1::int[]) and pid <> pg_backend_pid()
      order by state, wait_event`,
    [own],
  );
  return rows;
}

/** Resolves once the server has `locked` sessions waiting for the held row and `gated` at the gate. */
async function untilBlocked(observer: Client, own: number[], locked: number, gated: number): Promise<void> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    const open = await openTransactions(observer, own);
    const onLock = open.filter((session) => session.waiting === 'tuple' || session.waiting === 'transactionid').length;
    const atGate = open.filter((session) => session.waiting === 'PgSleep').length;
    if (onLock === locked && atGate === gated) return;
    if (Date.now() > deadline) throw new Error(`expected ${locked} on the lock and ${gated} at the gate: ${JSON.stringify(open)}`);
    await sleep(20);
  }
}

async function pidOf(client: Client): Promise<number> {
  return (await client.query<{ pid: number }>('select pg_backend_pid() as pid')).rows[0]!.pid;
}

describe('a server process killed while transactions are open', () => {
  let databaseUrl: string;

  beforeAll(async () => {
    databaseUrl = await createTestDatabase();
  });
  afterAll(async () => {
    await stopAllServers();
    if (databaseUrl) await dropTestDatabase(databaseUrl);
  });

  it('never shows an order without its record, and retries after a restart execute each key exactly once', async () => {
    // Ten-minute lock and statement timeouts: the blocked transactions stay open until the kill whatever the pace.
    const env = serverEnv(databaseUrl, { IDEMPOTENCY_WAIT_MS: '600000', STATEMENT_TIMEOUT_MS: '600000' });
    const killed: ServerProcess = await startServer(env);
    const token = await tokenFor(USER);
    const pen = await productId(databaseUrl, 'PEN-001');
    const notebook = await productId(databaseUrl, 'NB-001');
    // Each order that reaches the gate has a product of its own, so none waits for another's row.
    const gatedProducts = (
      await sql<{ id: string }>(databaseUrl, 'select id::text as id from products where id <> all($1::uuid[]) order by sku limit $2', [
        [pen, notebook],
        BLOCKED_AFTER_WRITING,
      ])
    ).map((row) => row.id);
    const stockBefore = { pen: (await ledger(databaseUrl, USER, pen)).stock, notebook: (await ledger(databaseUrl, USER, notebook)).stock };

    const acknowledged = new Map<string, string>();
    for (let index = 0; index < ACKNOWLEDGED; index++) {
      const key = `acknowledged-${index}`;
      const id = orderIdOf(await createOrder(killed.url, token, key, index % 2 === 0 ? pen : notebook));
      expect(id).toEqual(expect.any(String));
      acknowledged.set(key, id as string);
    }

    const holder = new Client({ connectionString: databaseUrl });
    const observer = new Client({ connectionString: databaseUrl });
    await holder.connect();
    await observer.connect();
    let gate: Gate | undefined;
    const lost = new Map<string, string>();
    try {
      gate = await closeGate(databaseUrl, 'before-record');
      const own = [await pidOf(holder), await pidOf(observer)];
      await holder.query('begin');
      await holder.query('select id from products where id = $1 for update', [pen]);

      const inFlight: Promise<Seen>[] = [];
      for (let index = 0; index < BLOCKED_ON_LOCK; index++) lost.set(`on-lock-${index}`, pen);
      for (const [index, product] of gatedProducts.entries()) lost.set(`after-writing-${index}`, product);
      for (const [key, product] of lost) inFlight.push(settle(createOrder(killed.url, token, key, product)));

      // The gate's own connection is the test's too; every other session in a transaction is the server's.
      await untilBlocked(observer, own, BLOCKED_ON_LOCK, BLOCKED_AFTER_WRITING);
      const atKill = await openTransactions(observer, own);
      // Nothing can move while the row lock and the gate are held: this is the state at the kill.
      expect(atKill).toHaveLength(BLOCKED_ON_LOCK + BLOCKED_AFTER_WRITING);
      expect(atKill.every((session) => session.state === 'active')).toBe(true);
      // The gated ones have written their order: they hold the table lock an insert takes.
      const writers = await observer.query<{ count: number }>(
        `select count(distinct pid)::int as count from pg_locks
          where relation = 'orders'::regclass and mode = 'RowExclusiveLock' and pid <> all($1::int[])`,
        [own],
      );
      expect(writers.rows[0]!.count).toBe(BLOCKED_AFTER_WRITING);

      expect(await signalServer(killed, 'SIGKILL')).toEqual({ code: null, signal: 'SIGKILL' });
      const seen = await Promise.all(inFlight);
      expect(seen.map((outcome) => outcome.kind)).toEqual(Array(lost.size).fill('lost'));

      // The process is dead, its transactions still open in the database: what has committed
      // is exactly what was answered, every order with its record.
      const whileOpen = await ledger(databaseUrl, USER, pen);
      expect(whileOpen.orphanOrders).toBe(0);
      expect(whileOpen.records).toEqual(Object.fromEntries(acknowledged));
      expect(whileOpen.orderIds).toEqual([...acknowledged.values()].sort());

      await holder.query('commit');
      await gate.remove();
      await untilNoOtherConnections(databaseUrl, own);
    } finally {
      // The row lock goes first: sessions behind it may hold locks the gate's removal waits for.
      await holder.end();
      await gate?.remove();
      await observer.end();
    }

    // Once the killed server's sessions are gone nothing more of it can commit. A transaction
    // whose COMMIT had already reached the database may have committed after the kill, but only
    // whole: an order with its record. Nothing waiting for the row lock had written anything.
    const settled = await ledger(databaseUrl, USER, pen);
    expect(settled.orphanOrders).toBe(0);
    expect(Object.values(settled.records).every((id) => id !== null && settled.orderIds.includes(id))).toBe(true);
    expect(Object.keys(settled.records).filter((key) => key.startsWith('on-lock-'))).toEqual([]);
    for (const [key, id] of acknowledged) expect(settled.records[key]).toBe(id);
    expect(settled.stock).toBe(stockBefore.pen - ACKNOWLEDGED / 2);
    const failed = await sql<{ count: number }>(
      databaseUrl,
      "select count(*)::int as count from idempotency_records where user_id = $1 and outcome <> 'SUCCEEDED'",
      [USER],
    );
    expect(failed[0]!.count).toBe(0);

    const restarted = await startServer(env);
    const keys = [...acknowledged.keys(), ...lost.keys()];
    const productOf = (key: string) => lost.get(key) ?? (Number(key.split('-')[1]) % 2 === 0 ? pen : notebook);
    const retries = await Promise.all(keys.map((key) => createOrder(restarted.url, token, key, productOf(key))));
    const placed = new Map<string, string>();
    retries.forEach((retry, index) => {
      const key = keys[index]!;
      expect(retry.body.errors).toBeUndefined();
      placed.set(key, orderIdOf(retry) as string);
      // A key whose order committed (answered or not) replays it; every other key executes now.
      const committed = settled.records[key];
      expect(markerOf(retry)).toMatchObject({ key, replayed: committed !== undefined });
      if (committed !== undefined) expect(orderIdOf(retry)).toBe(committed);
    });

    const final = await ledger(databaseUrl, USER, pen);
    expect(final.records).toEqual(Object.fromEntries(placed));
    expect(final.orderIds).toEqual([...new Set(placed.values())].sort());
    expect(final.orderIds).toHaveLength(keys.length);
    const penOrders = keys.filter((key) => productOf(key) === pen).length;
    expect(final.stock).toBe(stockBefore.pen - penOrders);
    expect((await ledger(databaseUrl, USER, notebook)).stock).toBe(stockBefore.notebook - ACKNOWLEDGED / 2);
    expect(await signalServer(restarted, 'SIGTERM')).toEqual({ code: 0, signal: null });
  });
});
