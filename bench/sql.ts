import 'reflect-metadata';
import { createHash, randomUUID } from 'node:crypto';
import pg, { escapeLiteral } from 'pg';
import { productIds, startDatabase, userId } from './fixture';
import { environment, Section, sharedMachineNote, timestamp, writeResults } from './results';
import { commandLine, fmt, numberArg, percentiles, readArgs, reportIdleClientError, runCommand, table } from './support';

/** What one transaction of a variant sends, beyond BEGIN/COMMIT. */
interface Variant {
  readonly name: string;
  readonly description: string;
  /** The engine's primary-key read: none, before the transaction, or in the BEGIN's message as the server sends it. */
  readonly lookup: false | 'before' | 'with BEGIN';
  /** The record insert inside the transaction. */
  readonly record: boolean;
  /** The record insert sent in the COMMIT's message, as the server sends it. */
  readonly riding?: boolean;
}

const VARIANTS: readonly Variant[] = [
  { name: 'order tx', description: "the baseline's statements (engine bypassed)", lookup: false, record: false },
  { name: 'order tx + record', description: 'plus the record insert in the same transaction', lookup: false, record: true },
  { name: 'lookup + order tx + record', description: "a first execution's statements", lookup: 'before', record: true },
  {
    name: 'lookup + order tx + record with COMMIT',
    description: "a first execution's statements, the record insert in the COMMIT's message",
    lookup: 'before',
    record: true,
    riding: true,
  },
  {
    name: 'lookup with BEGIN + order tx + record with COMMIT',
    description:
      "a first execution's statements as the server sends them: the lookup in the BEGIN's message, the record insert in the COMMIT's",
    lookup: 'with BEGIN',
    record: true,
    riding: true,
  },
];

interface Product {
  id: string;
  price_cents: number;
  currency: string;
  stock: number;
  sku: string;
  name: string;
}

/**
 * The createOrder transaction as raw SQL in a tight pg loop (the statements MikroORM and the
 * engine send, in the same order), to show the database's own ceiling for that work.
 */
runCommand(async (cleanup) => {
  const args = readArgs('npm run bench:sql', {
    duration: { type: 'string', default: '10', description: 'seconds measured per variant' },
    warmup: { type: 'string', default: '3', description: 'seconds of unmeasured load before each variant' },
    clients: { type: 'string', default: '10', description: 'pooled connections, one loop each' },
    users: { type: 'string', default: '100', description: 'users the orders are spread over' },
  });
  const seconds = numberArg(args, 'duration', 1);
  const warmup = numberArg(args, 'warmup', 0);
  const clients = numberArg(args, 'clients', 1);
  const users = numberArg(args, 'users', 1);
  const started = new Date();

  const db = await startDatabase(cleanup);
  const env = await environment(db.pool);
  const pool = new pg.Pool({ connectionString: db.url, max: clients });
  pool.on('error', reportIdleClientError);
  cleanup.add('close the benchmark pool', () => pool.end());
  const products = await productIds(db.pool);

  const rows: string[][] = [];
  const results: { name: string; tps: number }[] = [];
  for (const variant of VARIANTS) {
    process.stderr.write(`${variant.name}: ${warmup} s warm-up, ${seconds} s measured with ${clients} clients...\n`);
    await drive(pool, variant, products, users, clients, warmup);
    const result = await drive(pool, variant, products, users, clients, seconds);
    const [p50, p99] = percentiles(result.latencies, [50, 99]);
    const tps = result.latencies.length / result.seconds;
    process.stderr.write(`  ${fmt(tps)} tx/s, p50 ${fmt(p50, 2)} ms, p99 ${fmt(p99, 2)} ms, ${result.errors} errors\n`);
    rows.push([variant.name, variant.description, fmt(tps), fmt(p50, 2), fmt(p99, 2), fmt(result.errors)]);
    results.push({ name: variant.name, tps });
  }

  const body = [
    `Taken ${timestamp(started)} with \`${commandLine('bench:sql')}\`: ${clients} pooled pg connections, each in a tight loop, ${warmup} s warm-up then ${seconds} s per variant, on a fresh embedded PostgreSQL of its own.`,
    '',
    sharedMachineNote(),
    '',
    env,
    '',
    table(['variant', 'what it sends', 'tx/s', 'p50 ms', 'p99 ms', 'errors'], rows),
    '',
    'Each transaction: `BEGIN`; `SELECT … FROM products WHERE id IN (…) ORDER BY id FOR UPDATE`; `INSERT INTO orders`; `INSERT INTO order_lines` (2 rows); `UPDATE products SET stock = CASE …`; [the record upsert]; `COMMIT`, or in the last two variants the record insert and `COMMIT` in one message; the lookup is the engine’s `SELECT …, expires_at > now() AS live FROM idempotency_records WHERE user_id = … AND key = …` (values as literals, as the server sends it), before the transaction or, in the last variant, in one message with `BEGIN`. A new key per transaction, users and products round-robin as in `npm run bench`.',
  ].join('\n');
  process.stdout.write(`\n${body}\n`);
  const ratio = (a: number, b: number) => fmt((results[a]?.tps ?? Number.NaN) / (results[b]?.tps ?? Number.NaN), 2);
  await writeResults(
    Section.SqlCeiling,
    body,
    `${timestamp(started)} bench:sql (${seconds} s × ${clients} clients): ${results.map((r) => `${r.name} ${fmt(r.tps)} tx/s`).join(', ')}; with record / without ${ratio(1, 0)}, full first / without ${ratio(2, 0)}, with the insert in the COMMIT's message / without ${ratio(3, 0)}, with the lookup in the BEGIN's message too / without ${ratio(4, 0)}`,
  );
});

async function drive(pool: pg.Pool, variant: Variant, products: readonly string[], users: number, clients: number, seconds: number) {
  const latencies: number[] = [];
  let errors = 0;
  let counter = 0;
  const started = performance.now();
  const deadline = started + seconds * 1000;
  const loop = async () => {
    const client = await pool.connect();
    try {
      while (performance.now() < deadline) {
        const n = counter++;
        const begun = performance.now();
        try {
          await placeOrder(client, variant, userId(n % users), randomUUID(), [
            { id: products[n % products.length] as string, quantity: 1 },
            { id: products[(n + 1) % products.length] as string, quantity: 2 },
          ]);
          latencies.push(performance.now() - begun);
        } catch (error) {
          errors++;
          await client.query('rollback').catch(() => undefined);
          if (errors === 1) process.stderr.write(`  first error: ${(error as Error).message}\n`);
        }
      }
    } finally {
      client.release();
    }
  };
  await Promise.all(Array.from({ length: clients }, loop));
  return { latencies, errors, seconds: (performance.now() - started) / 1000 };
}

async function placeOrder(
  client: pg.PoolClient,
  variant: Variant,
  user: string,
  key: string,
  lines: readonly { id: string; quantity: number }[],
): Promise<void> {
  // The engine's lookup, written only for the variants that send it.
  const lookup = () => `select operation, fingerprint, outcome, result, created_at, expires_at, expires_at > now() as live
       from idempotency_records
      where user_id = ${escapeLiteral(user)} and key = ${escapeLiteral(key)}`;
  if (variant.lookup === 'before') await client.query(lookup());
  // Literals in one simple-protocol message, which alone may hold two statements.
  await client.query(variant.lookup === 'with BEGIN' ? `BEGIN;\n${lookup()}` : 'begin');
  const ids = lines.map((line) => line.id).sort();
  const { rows: locked } = await client.query<Product>(
    'select "p0".* from "products" as "p0" where "p0"."id" in ($1, $2) order by "p0"."id" asc for update',
    ids,
  );
  const byId = new Map(locked.map((product) => [product.id, product]));
  const orderId = randomUUID();
  const now = new Date();
  const priced = lines.map((line) => ({ ...line, product: byId.get(line.id) as Product }));
  const total = priced.reduce((sum, line) => sum + line.product.price_cents * line.quantity, 0);
  await client.query(
    'insert into "orders" ("id", "user_id", "status", "total_cents", "currency", "note", "created_at", "cancelled_at") values ($1, $2, $3, $4, $5, $6, $7, $8)',
    [orderId, user, 'PLACED', total, 'USD', 'bench', now, null],
  );
  await client.query(
    'insert into "order_lines" ("order_id", "position", "product_id", "quantity", "unit_price_cents", "line_total_cents") values ($1, $2, $3, $4, $5, $6), ($7, $8, $9, $10, $11, $12)',
    priced.flatMap((line, position) => [
      orderId,
      position,
      line.id,
      line.quantity,
      line.product.price_cents,
      line.quantity * line.product.price_cents,
    ]),
  );
  const [a, b] = priced as [(typeof priced)[number], (typeof priced)[number]];
  await client.query(
    'update "products" set "stock" = case when ("id" = $1) then $2 when ("id" = $3) then $4 else "stock" end where "id" in ($5, $6) returning "id"',
    [a.id, a.product.stock - a.quantity, b.id, b.product.stock - b.quantity, a.id, b.id],
  );
  if (variant.record) {
    const payload = {
      kind: 'payload' as const,
      payload: {
        order: {
          id: orderId,
          status: 'PLACED',
          totalCents: total,
          currency: 'USD',
          note: 'bench',
          createdAt: now.toISOString(),
          cancelledAt: null,
          lines: priced.map((line) => ({
            productId: line.id,
            quantity: line.quantity,
            unitPriceCents: line.product.price_cents,
            lineTotalCents: line.quantity * line.product.price_cents,
            product: { ...line.product, stock: line.product.stock - line.quantity },
          })),
        },
      },
    };
    if (variant.riding) {
      await client.query(
        `insert into idempotency_records (user_id, key, operation, fingerprint, outcome, format, result, created_at, expires_at)
         values (${escapeLiteral(user)}, ${escapeLiteral(key)}, 'createOrder', decode('${createHash('sha256').update(key).digest('hex')}', 'hex'),
                 'SUCCEEDED', 1, decode('${storedResult(payload).toString('hex')}', 'hex'), now(), now() + make_interval(secs => 86400))
         returning created_at, expires_at;
         COMMIT`,
      );
      return;
    }
    await client.query(
      `insert into idempotency_records as r
              (user_id, key, operation, fingerprint, outcome, format, result, created_at, expires_at)
       values ($1, $2, $3, $4, $5, 1, $6, now(), now() + make_interval(secs => $7))
       on conflict (user_id, key) do update
          set operation = excluded.operation, fingerprint = excluded.fingerprint, outcome = excluded.outcome,
              result = excluded.result, created_at = excluded.created_at, expires_at = excluded.expires_at
        where r.expires_at <= now()
       returning operation, fingerprint, outcome, result, created_at, expires_at, xmax <> 0 as replaced`,
      [user, key, 'createOrder', createHash('sha256').update(key).digest(), 'SUCCEEDED', storedResult(payload), 86_400],
    );
  }
  await client.query('commit');
}

/** The payload as the server stores it unencrypted: its JSON text (record format 1). */
function storedResult(payload: { readonly kind: 'payload'; readonly payload: unknown }): Buffer {
  return Buffer.from(JSON.stringify(payload));
}
