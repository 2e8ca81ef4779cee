import 'reflect-metadata';
import path from 'node:path';
import type pg from 'pg';
import type { BenchDatabase, BenchServer } from './fixture';
import { mintTokens, orderBodies, placeKeyedOrder, productIds, startDatabase, startServer, userId } from './fixture';
import { loadScaleRecords, type PurgeResult, purgeUnderLoad } from './records';
import { conditionsText } from './report';
import { type LoadSettings, runId } from './scenarios';
import { fmt, numberArg, readArgs, runCommand, table, UsageError } from './support';

/**
 * `npm run build && node dist/bench/purge.js`: the purge scenario of `npm run bench` alone. Each
 * side (`--a`, `--b`: dist folders, each with its own purge options) gets a database of the
 * same cluster loaded as the bench loads its second one (`--records` live and as many expired
 * records), migrated by that build, and one engine server of that build for the createOrder
 * load; then each database is purged under that load, sides alternating by round (A B, B A, ...).
 * Besides the bench's figures it prints the WAL the cluster wrote meanwhile.
 */
runCommand(async (cleanup) => {
  const args = readArgs('node dist/bench/purge.js', {
    a: { type: 'string', default: path.resolve(__dirname, '..'), description: 'dist folder of build A' },
    b: { type: 'string', description: 'dist folder of build B (optional: only A runs without it)' },
    'a-options': { type: 'string', default: '{}', description: "JSON of A's purge options (batchSize, pauseRatio)" },
    'b-options': { type: 'string', default: '{}', description: "JSON of B's purge options" },
    records: { type: 'string', default: '1000000', description: 'live records loaded per database (as many expired ones too)' },
    rounds: { type: 'string', default: '1', description: 'purges of each side, each on a database of its own' },
    connections: { type: 'string', default: '10', description: 'concurrent connections of the createOrder load' },
    users: { type: 'string', default: '100', description: 'users the requests are spread over' },
  });
  const records = numberArg(args, 'records', 1);
  const rounds = numberArg(args, 'rounds', 1);
  const settings: LoadSettings = { seconds: 10, warmupSeconds: 3, connections: numberArg(args, 'connections', 1) };
  const sides = [
    { name: 'A', dist: path.resolve(args.a as string), options: parseOptions(args['a-options'] as string) },
    ...(args.b ? [{ name: 'B', dist: path.resolve(args.b), options: parseOptions(args['b-options'] as string) }] : []),
  ];
  const db = await startDatabase(cleanup);
  const tokens = await mintTokens(numberArg(args, 'users', 1));
  const id = runId();

  const runs: { side: (typeof sides)[number]; round: number; db: BenchDatabase; server: BenchServer; bodies: string[] }[] = [];
  for (let round = 0; round < rounds; round++) {
    for (const side of round % 2 === 0 ? sides : [...sides].reverse()) {
      const fixture = (await import(path.join(side.dist, 'bench', 'fixture.js'))) as typeof import('./fixture');
      const name = `purge_${side.name.toLowerCase()}_${round}`;
      const sideDb = await fixture.addDatabase(cleanup as never, db as never, name);
      const server = await startServer(cleanup, `${side.name}-${round}`, sideDb.url, { mode: 'engine', dist: side.dist });
      const bodies = orderBodies(await productIds(sideDb.pool));
      const template = { userId: userId(0), key: `purge-${id}` };
      await placeKeyedOrder(server.url, tokens[0] as string, template.key, bodies[0] as string);
      process.stderr.write(`${name}: loading ${fmt(records)} live and ${fmt(records)} expired records...\n`);
      await loadScaleRecords(sideDb.pool, template, id, records);
      runs.push({ side, round, db: sideDb as BenchDatabase, server, bodies });
    }
  }
  await db.pool.query('checkpoint');

  const results: { name: string; result: PurgeResult; walMb: number | undefined }[] = [];
  for (const run of runs) {
    const name = `${run.side.name} (round ${run.round + 1})`;
    process.stderr.write(`${name}: purge under createOrder load, options ${JSON.stringify(run.side.options)}...\n`);
    const index = (await import(path.join(run.side.dist, 'src', 'idempotency', 'index.js'))) as typeof import('../src/idempotency');
    let walMb: number | undefined;
    const result = await purgeUnderLoad(run.server, run.db, tokens, run.bodies, settings, async (purged) => {
      const before = await walBytes(purged.pool);
      const done = await index.createIdempotency().purge(purged.orm as never, run.side.options);
      walMb = ((await walBytes(purged.pool)) - before) / 1e6;
      return done;
    });
    process.stderr.write(
      `  ${fmt(result.deleted)} deleted, ${fmt(result.tombstoned)} tombstoned in ${fmt(result.seconds, 1)} s: ${fmt(result.rowsPerSecond)} rows/s; ` +
        `first ${fmt(result.before.rps)} → ${fmt(result.during.rps)} req/s; ${conditionsText(result.conditions)}\n`,
    );
    results.push({ name, result, walMb });
  }
  process.stdout.write(
    `${table(
      ['purge', 'rows/s', 'seconds', 'WAL MB', 'first during / before', 'checkpoints'],
      results.map(({ name, result, walMb }) => [
        name,
        fmt(result.rowsPerSecond),
        fmt(result.seconds, 1),
        fmt(walMb),
        fmt(result.during.rps / result.before.rps, 2),
        String(result.conditions.checkpoints),
      ]),
    )}\n`,
  );
});

function parseOptions(text: string): { batchSize?: number; pauseRatio?: number } {
  try {
    return JSON.parse(text) as { batchSize?: number; pauseRatio?: number };
  } catch {
    throw new UsageError(`purge options must be JSON, got ${text}`);
  }
}

/** WAL the whole cluster has written since its statistics were reset, bytes. */
async function walBytes(pool: pg.Pool): Promise<number> {
  const { rows } = await pool.query<{ wal: string }>('select wal_bytes as wal from pg_stat_wal');
  return Number(rows[0]?.wal);
}
