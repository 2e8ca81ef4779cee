import { randomBytes, randomUUID } from 'node:crypto';
import pg from 'pg';
import { userId } from './fixture';
import { type LoadResult, loadResult } from './load';
import type { LoadSettings } from './scenarios';
import { reportIdleClientError } from './support';

/** The statements a first execution adds to the baseline's, as src/idempotency/postgres.store.ts sends them. */
export interface EngineStatements {
  /** The key's read, before the transaction. */
  readonly read: boolean;
  /** `set_config('lock_timeout', …, true)`, first in the transaction. */
  readonly bound: boolean;
  /** The record's insert, last in the transaction. */
  readonly record: boolean;
}

export const NO_ENGINE: EngineStatements = { read: false, bound: false, record: false };
export const FIRST_EXECUTION: EngineStatements = { read: true, bound: true, record: true };

/**
 * The SQL ceiling of the order transaction: the statements the baseline (createOrder with the
 * engine bypassed) sends, in its order, from a tight pg loop on `settings.connections` pooled
 * connections, without HTTP, GraphQL or the ORM. Each transaction is one "response". `engine`
 * adds a first execution's statements around the same order (all of them: its SQL ceiling).
 */
export class SqlCeiling {
  private readonly pool: pg.Pool;
  private counter = 0;

  constructor(
    databaseUrl: string,
    private readonly products: readonly string[],
    private readonly users: number,
    connections: number,
    private readonly engine: EngineStatements = NO_ENGINE,
  ) {
    this.pool = new pg.Pool({ connectionString: databaseUrl, max: connections });
    this.pool.on('error', reportIdleClientError);
  }

  /** Resolves once every connection has closed: `end()` resolves before they have, and a database stopped then would end them with errors. */
  async close(): Promise<void> {
    let open = this.pool.totalCount;
    const closed = new Promise<void>((resolve) => {
      if (open === 0) resolve();
      this.pool.on('remove', () => {
        if (--open === 0) resolve();
      });
    });
    await this.pool.end();
    await closed;
  }

  /** The warm-up, then the measured loop. */
  async run(settings: LoadSettings): Promise<LoadResult> {
    if (settings.warmupSeconds > 0) await this.loop(settings.connections, settings.warmupSeconds);
    return this.loop(settings.connections, settings.seconds);
  }

  private async loop(connections: number, seconds: number): Promise<LoadResult> {
    const at: number[] = [];
    const latency: number[] = [];
    let errors = 0;
    let sampleError: string | undefined;
    const started = performance.now();
    const deadline = started + seconds * 1000;
    const worker = async () => {
      const client = await this.pool.connect();
      try {
        while (performance.now() < deadline) {
          const n = this.counter++;
          const begun = performance.now();
          try {
            const user = userId(n % this.users);
            const lines = [
              { id: this.products[n % this.products.length] as string, quantity: 1 },
              { id: this.products[(n + 1) % this.products.length] as string, quantity: 2 },
            ];
            await placeOrder(client, user, lines, this.engine);
            const done = performance.now();
            at.push(done - started);
            latency.push(done - begun);
          } catch (error) {
            errors++;
            sampleError ??= (error as Error).message;
            await client.query('rollback').catch(() => undefined);
          }
        }
      } finally {
        client.release();
      }
    };
    await Promise.all(Array.from({ length: connections }, worker));
    const counts = { transport: errors, non2xx: 0, graphqlErrors: 0, notReplayed: 0 };
    return loadResult(at, latency, (performance.now() - started) / 1000, counts, sampleError);
  }
}

interface TakenRow {
  id: string;
  price_cents: number;
  currency: string;
}

/**
 * One order as src/orders/order.service.ts places it: the stock taken in one statement that
 * locks the products in id order, then the order, its OrderPlaced event and its lines in one; with the
 * `engine` statements of a first execution around them.
 */
async function placeOrder(
  client: pg.PoolClient,
  user: string,
  lines: readonly { id: string; quantity: number }[],
  engine: EngineStatements,
): Promise<void> {
  const key = randomUUID();
  if (engine.read) await client.query(READ_RECORD, [user, key]);
  await client.query('begin');
  if (engine.bound) await client.query(`select set_config('lock_timeout', $1, true)`, ['10000ms']);
  const sorted = [...lines].sort((a, b) => (a.id < b.id ? -1 : 1));
  const { rows } = await client.query<TakenRow>(
    `with wanted (id, quantity) as (values ($1::uuid, $2::int), ($3::uuid, $4::int)),
          locked as materialized (
            select p.id from products p where p.id in (select id from wanted) order by p.id for update
          )
     update products p set stock = p.stock - w.quantity
       from wanted w join locked l on l.id = w.id
      where p.id = w.id and p.stock >= w.quantity
     returning p.id, p.sku, p.name, p.price_cents, p.currency, p.stock, p.created_at`,
    sorted.flatMap((line) => [line.id, line.quantity]),
  );
  const byId = new Map(rows.map((row) => [row.id, row]));
  const priced = lines.map((line) => ({ ...line, price: (byId.get(line.id) as TakenRow).price_cents }));
  const total = priced.reduce((sum, line) => sum + line.price * line.quantity, 0);
  const orderId = randomUUID();
  const now = new Date();
  const data = {
    orderId,
    userId: user,
    totalCents: total,
    currency: 'USD',
    note: 'bench',
    lines: priced.map((line) => ({
      productId: line.id,
      quantity: line.quantity,
      unitPriceCents: line.price,
      lineTotalCents: line.quantity * line.price,
    })),
  };
  // The OrderPlaced event, the order and its lines in one statement, as src/events/outbox.ts's asOneStatement sends them.
  await client.query(
    `with write_1 as (
       insert into outbox_events (id, type, occurred_at, data) values ($1, $2, $3, $4::jsonb) on conflict (id) do nothing
     ), write_2 as (
       insert into orders (id, user_id, status, total_cents, currency, note, created_at, cancelled_at) values ($5, $6, $7, $8, $9, $10, $11, $12)
     )
     insert into order_lines (order_id, position, product_id, quantity, unit_price_cents, line_total_cents)
     values ($13, $14, $15, $16, $17, $18), ($19, $20, $21, $22, $23, $24)`,
    [
      ...[randomUUID(), 'OrderPlaced', now, JSON.stringify(data)],
      ...[orderId, user, 'PLACED', total, 'USD', 'bench', now, null],
      ...priced.flatMap((line, position) => [orderId, position, line.id, line.quantity, line.price, line.quantity * line.price]),
    ],
  );
  if (engine.record) {
    // The stored result: the payload's JSON, about the size of the engine's.
    const result = Buffer.from(JSON.stringify({ kind: 'payload', payload: { order: { id: orderId, status: 'PLACED', ...data } } }));
    const resources = JSON.stringify([{ type: 'Order', id: orderId }]);
    await client.query(INSERT_RECORD, [user, key, randomBytes(32), result, resources, 86_400, 86_400 + 2_592_000]);
  }
  await client.query('commit');
}

const READ_RECORD = `select operation, fingerprint, outcome, format, key_id, case when expires_at > now() then result end as result,
       resources, created_at, expires_at, coalesce(forgotten_at, expires_at) as forgotten_at, expires_at > now() as live
  from idempotency_records where user_id = $1 and key = $2 and coalesce(forgotten_at, expires_at) > now()`;

const INSERT_RECORD = `insert into idempotency_records as r
       (user_id, key, operation, fingerprint, outcome, format, key_id, result, resources, created_at, expires_at, forgotten_at)
values ($1, $2, 'createOrder', $3, 'SUCCEEDED', 1, null, $4, $5::jsonb, now(), now() + make_interval(secs => $6), now() + make_interval(secs => $7))
on conflict (user_id, key) do update
   set operation = excluded.operation, fingerprint = excluded.fingerprint, outcome = excluded.outcome,
       format = excluded.format, key_id = excluded.key_id, result = excluded.result, resources = excluded.resources,
       created_at = excluded.created_at, expires_at = excluded.expires_at, forgotten_at = excluded.forgotten_at
 where coalesce(r.forgotten_at, r.expires_at) <= now()
returning created_at, expires_at, forgotten_at, xmax <> 0 as replaced`;
