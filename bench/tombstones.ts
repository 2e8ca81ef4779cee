import 'reflect-metadata';
import type pg from 'pg';
import { createIdempotency } from '../src/idempotency';
import { mintTokens, orderBodies, placeKeyedOrder, productIds, startDatabase, startServer, userId } from './fixture';
import { RECORD_USERS } from './records';
import { fmt, numberArg, readArgs, runCommand } from './support';

/**
 * `npm run build && node dist/bench/tombstones.js [--records N]`: the size of a record and of its
 * tombstone, and how fast the purge turns expired records into tombstones and deletes ended
 * tombstones, on a table of N expired two-line order records and nothing else. No load runs
 * meanwhile (`npm run bench` measures the purge under load).
 */
runCommand(async (cleanup) => {
  const args = readArgs('node dist/bench/tombstones.js', {
    records: { type: 'string', default: '200000', description: 'expired records loaded' },
  });
  const count = numberArg(args, 'records', 1);
  const db = await startDatabase(cleanup);
  const server = await startServer(cleanup, 'engine', db.url, { mode: 'engine' });
  const [token] = await mintTokens(1);
  const template = { userId: userId(0), key: 'tombstone-template' };
  await placeKeyedOrder(server.url, token as string, template.key, orderBodies(await productIds(db.pool))[0] as string);

  process.stderr.write(`loading ${fmt(count)} expired records whose tombstones live 29 more days...\n`);
  await db.pool.query(
    `insert into idempotency_records (user_id, key, operation, fingerprint, outcome, result, resources, created_at, expires_at, forgotten_at)
     select 'user-' || (i % $2::int), 'bench-' || i, t.operation, t.fingerprint, t.outcome, t.result, t.resources,
            w.expires_at - interval '1 day', w.expires_at, w.expires_at + interval '30 days'
       from generate_series(1, $1::int) as i
            cross join lateral (select now() - interval '1 day' + i * interval '1 millisecond' as expires_at) as w,
            (select operation, fingerprint, outcome, result, resources from idempotency_records where user_id = $3 and key = $4) as t`,
    [count, RECORD_USERS, template.userId, template.key],
  );
  const records = await sizes(db.pool, 'result is not null');

  const purge = async (label: string) => {
    await db.pool.query('vacuum analyze idempotency_records');
    await db.pool.query('checkpoint');
    const started = performance.now();
    const purged = await createIdempotency().purge(db.orm);
    const seconds = (performance.now() - started) / 1000;
    const rows = purged.deleted + purged.tombstoned;
    process.stderr.write(`${label}: ${fmt(purged.tombstoned)} tombstoned, ${fmt(purged.deleted)} deleted in ${fmt(seconds, 1)} s\n`);
    return { ...purged, seconds, rowsPerSecond: rows / seconds };
  };
  const tombstoning = await purge('expired records to tombstones');
  await db.pool.query('vacuum analyze idempotency_records');
  const tombstones = await sizes(db.pool, 'result is null');
  await db.pool.query(`update idempotency_records set forgotten_at = expires_at + interval '1 second' where result is null`);
  const deleting = await purge('ended tombstones deleted');

  const line = (name: string, size: Sizes) =>
    `${name}: ${fmt(size.rows)} rows, ${fmt(size.tupleBytes)} bytes per row (tuple, pg_column_size), ${fmt(size.indexBytes)} bytes per row in the indexes, ${fmt(size.tableBytes)} bytes per row in the table's pages`;
  process.stdout.write(
    [
      line('records (two-line order, plain JSON)', records),
      line('tombstones', tombstones),
      `purge, expired records to tombstones: ${fmt(tombstoning.tombstoned)} rows in ${fmt(tombstoning.seconds, 1)} s, ${fmt(tombstoning.rowsPerSecond)} rows/s (batches of 5,000, paced)`,
      `purge, ended tombstones deleted: ${fmt(deleting.deleted)} rows in ${fmt(deleting.seconds, 1)} s, ${fmt(deleting.rowsPerSecond)} rows/s (batches of 5,000, paced)`,
      '',
    ].join('\n'),
  );
});

interface Sizes {
  readonly rows: number;
  /** Average bytes of a row's tuple, TOAST included (pg_column_size of the whole row). */
  readonly tupleBytes: number;
  /** Bytes of every index of the table, per row. */
  readonly indexBytes: number;
  /** Bytes of the table's pages per row, free space included (the fill factor leaves room for updates). */
  readonly tableBytes: number;
}

async function sizes(pool: pg.Pool, where: 'result is not null' | 'result is null'): Promise<Sizes> {
  // Rebuilt so that their size is that of the rows they hold, not of the pages a purge emptied.
  await pool.query('vacuum analyze idempotency_records');
  await pool.query('reindex table idempotency_records');
  const { rows } = await pool.query<{ rows: string; tuple: string; indexes: string; table: string }>(
    `select count(*) as rows, avg(pg_column_size(r.*)) as tuple, pg_indexes_size('idempotency_records') as indexes,
            pg_relation_size('idempotency_records') as table
       from idempotency_records r where ${where}`,
  );
  const row = rows[0] as { rows: string; tuple: string; indexes: string; table: string };
  const count = Number(row.rows);
  return { rows: count, tupleBytes: Number(row.tuple), indexBytes: Number(row.indexes) / count, tableBytes: Number(row.table) / count };
}
