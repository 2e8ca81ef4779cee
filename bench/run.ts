import 'reflect-metadata';
import path from 'node:path';
import {
  addDatabase,
  type BenchServer,
  headers,
  mintTokens,
  orderBodies,
  post,
  productIds,
  scrape,
  startDatabase,
  startServer,
  userId,
} from './fixture';
import { combine, type LoadResult, summary } from './load';
import { conditionsText, type Row, report } from './report';
import { environment } from './results';
import {
  firstOrders,
  floor,
  type LoadSettings,
  loadRecords,
  purgeUnderLoad,
  RECORD_USERS,
  replayLoaded,
  replayOne,
  runId,
  storm,
} from './scenarios';
import { commandLine, fmt, numberArg, readArgs, runCommand } from './support';

/** Records preloaded for the no-scale replay-db run (the scale run loads --records). */
const SMALL_RECORDS = 10_000;

runCommand(async (cleanup) => {
  const args = readArgs('npm run bench', {
    duration: { type: 'string', default: '10', description: 'seconds of measured load per scenario' },
    warmup: { type: 'string', default: '3', description: 'seconds of unmeasured load before each scenario' },
    rounds: {
      type: 'string',
      default: '4',
      description: 'measured runs of every autocannon scenario, alternating their order within each group (even: each order equally often)',
    },
    connections: { type: 'string', default: '10', description: 'concurrent connections of the load generator' },
    users: { type: 'string', default: '100', description: 'users the requests are spread over (round-robin)' },
    records: { type: 'string', default: '1000000', description: 'live records loaded for the scale runs (as many expired ones too)' },
    'storm-keys': { type: 'string', default: '50', description: 'keys in the storm scenario' },
    'storm-size': { type: 'string', default: '100', description: 'concurrent requests per storm key' },
    profile: { type: 'string', description: 'folder for V8 CPU profiles of the servers (written when they stop)' },
  });
  const settings: LoadSettings = {
    seconds: numberArg(args, 'duration', 1),
    warmupSeconds: numberArg(args, 'warmup', 0),
    connections: numberArg(args, 'connections', 1),
  };
  const users = Math.min(numberArg(args, 'users', 1), RECORD_USERS);
  const records = numberArg(args, 'records', 1);
  const stormKeys = numberArg(args, 'storm-keys', 1);
  const stormSize = numberArg(args, 'storm-size', 2);
  const rounds = numberArg(args, 'rounds', 1);
  const started = new Date();
  const id = runId();

  const db = await startDatabase(cleanup);
  // The scale scenarios run on a second database of the same cluster, loaded with the records,
  // in the same rounds as their counterparts on the first: drift falls on both alike.
  const scaleDb = await addDatabase(cleanup, db, 'bench_scale');
  const env = await environment(db.pool);
  const profileDir = args.profile === undefined ? undefined : path.resolve(args.profile);
  const engine = await startServer(cleanup, 'engine', db.url, { mode: 'engine', profileDir });
  const bypass = await startServer(cleanup, 'bypass', db.url, { mode: 'bypass', profileDir });
  // replay-db: the engine with its replay cache off, so every replay reads the record.
  const uncached = await startServer(cleanup, 'engine-nocache', db.url, { mode: 'engine', cacheSize: 0, profileDir });
  const scaleEngine = await startServer(cleanup, 'engine-scale', scaleDb.url, { mode: 'engine', profileDir });
  const scaleUncached = await startServer(cleanup, 'engine-scale-nocache', scaleDb.url, { mode: 'engine', cacheSize: 0, profileDir });
  const recordTokens = await mintTokens(RECORD_USERS);
  const tokens = recordTokens.slice(0, users);
  const products = await productIds(db.pool);
  const bodies = orderBodies(products);
  const scaleBodies = orderBodies(await productIds(scaleDb.pool));

  // The stored key every replay uses (one per database); its record is the template of the loaded ones.
  const template = { userId: userId(0), key: `replay-${id}` };
  for (const [server, body] of [
    [engine, bodies[0]],
    [scaleEngine, scaleBodies[0]],
  ] as const) {
    const created = await post(server.url, headers(tokens[0] as string, template.key), body as string);
    if (created.status !== 200 || created.text.includes('"errors"')) throw new Error(`could not create the replay order: ${created.text}`);
  }
  await loadRecords(db.pool, template, `small-${id}-`, SMALL_RECORDS, 'live');
  await db.pool.query('vacuum analyze idempotency_records');

  process.stderr.write(`scale: loading ${fmt(records)} live and ${fmt(records)} expired records into the second database...\n`);
  const loadStarted = performance.now();
  await loadRecords(scaleDb.pool, template, `live-${id}-`, records, 'live');
  await loadRecords(scaleDb.pool, template, `expired-${id}-`, records, 'expired');
  await scaleDb.pool.query('vacuum analyze idempotency_records');
  await scaleDb.pool.query('checkpoint');
  const loadSeconds = (performance.now() - loadStarted) / 1000;
  const tableSize = await scaleDb.pool.query<{ size: string; rows: string }>(
    `select pg_size_pretty(pg_total_relation_size('idempotency_records')) as size, (select count(*) from idempotency_records) as rows`,
  );
  process.stderr.write(`  loaded in ${fmt(loadSeconds, 1)} s: ${tableSize.rows[0]?.rows} rows, ${tableSize.rows[0]?.size}\n`);

  const rows: Row[] = [];
  /**
   * Runs a group of scenarios in `rounds` rounds, alternating their order (A B C, C B A, ...),
   * so a drift of the shared machine's speed falls on both sides of their ratios alike; each
   * scenario's figures are its rounds combined.
   */
  const measureRounds = async (count: number, group: readonly Scenario[]) => {
    const runs = group.map(() => [] as LoadResult[]);
    const engineTime = group.map(() => ({ sum: 0, count: 0 }));
    // One unmeasured pass first: a server that has served nothing of this group yet (the bypass
    // server, say) would otherwise run its first round on less warmed-up code than the others.
    for (const { name, server, run } of group) {
      process.stderr.write(`${name} on ${server.name}: warm-up pass, ${settings.seconds} s...\n`);
      await run({ ...settings, warmupSeconds: 0 });
    }
    for (let round = 0; round < count; round++) {
      const order = round % 2 === 0 ? group.map((_, index) => index) : group.map((_, index) => group.length - 1 - index);
      for (const index of order) {
        const { name, server, run } = group[index] as Scenario;
        const overhead = server === bypass ? undefined : await engineOverhead(server);
        const label = count > 1 ? `${name} (round ${round + 1} of ${count})` : name;
        process.stderr.write(`${label} on ${server.name}: ${settings.warmupSeconds} s warm-up, ${settings.seconds} s measured...\n`);
        const result = await run(settings);
        const spent = overhead ? await overhead() : undefined;
        const total = engineTime[index];
        if (spent && total) {
          total.sum += spent.sum;
          total.count += spent.count;
        }
        process.stderr.write(`  ${summary(name, result)}\n`);
        (runs[index] as LoadResult[]).push(result);
      }
    }
    group.forEach((scenario, index) => {
      const spent = engineTime[index] as { sum: number; count: number };
      rows.push({
        name: scenario.name,
        server: scenario.server.name,
        result: combine(runs[index] as LoadResult[]),
        rounds: runs[index] as LoadResult[],
        engineMs: spent.count > 0 ? (spent.sum / spent.count) * 1000 : undefined,
      });
    });
  };

  await measureRounds(rounds, [
    { name: 'floor', server: engine, run: (load) => floor(engine, tokens, load) },
    { name: 'replay', server: engine, run: (load) => replayOne(engine, tokens[0] as string, template.key, bodies[0] as string, load) },
    {
      name: 'scale-replay',
      server: scaleEngine,
      run: (load) => replayOne(scaleEngine, tokens[0] as string, template.key, scaleBodies[0] as string, load),
    },
  ]);
  await measureRounds(rounds, [
    { name: 'baseline', server: bypass, run: (load) => firstOrders(bypass, tokens, bodies, load) },
    { name: 'first', server: engine, run: (load) => firstOrders(engine, tokens, bodies, load) },
    { name: 'scale-first', server: scaleEngine, run: (load) => firstOrders(scaleEngine, tokens, scaleBodies, load) },
    {
      name: 'replay-db',
      server: uncached,
      run: (load) => replayLoaded(uncached, recordTokens, `small-${id}-`, SMALL_RECORDS, bodies[0] as string, load),
    },
    {
      name: 'scale-replay-db',
      server: scaleUncached,
      run: (load) => replayLoaded(scaleUncached, recordTokens, `live-${id}-`, records, scaleBodies[0] as string, load),
    },
  ]);

  process.stderr.write(`storm: ${stormKeys} keys × ${stormSize} concurrent requests...\n`);
  const stormResult = await storm(engine, db, tokens, products, stormKeys, stormSize, id);
  process.stderr.write(
    `  storm: p99 ${fmt(stormResult.p99, 1)} ms, executions per key ${stormResult.minExecutions}..${stormResult.maxExecutions}, ${stormResult.errors} errors\n`,
  );

  process.stderr.write('purge of the expired records under createOrder load...\n');
  const purge = await purgeUnderLoad(scaleEngine, scaleDb, tokens, scaleBodies, settings);
  const leftExpired = await scaleDb.pool.query<{ n: string }>(
    'select count(*) as n from idempotency_records where (result is not null and expires_at <= now()) or coalesce(forgotten_at, expires_at) <= now()',
  );
  process.stderr.write(
    `  purged ${fmt(purge.deleted)} rows, ${fmt(purge.tombstoned)} turned into tombstones, in ${fmt(purge.seconds, 1)} s (${fmt(purge.rowsPerSecond)} rows/s)\n`,
  );
  process.stderr.write(`  meanwhile: ${conditionsText(purge.conditions)}\n`);

  const memory = await Promise.all(
    [engine, bypass, uncached, scaleEngine, scaleUncached].map(async (server) => ({
      name: server.name,
      peak: await server.peakRss(),
    })),
  );
  await report({
    command: commandLine('bench'),
    started,
    environment: env,
    settings,
    rounds,
    users,
    records,
    rows,
    storm: stormResult,
    scale: { loadSeconds, rows: Number(tableSize.rows[0]?.rows), size: tableSize.rows[0]?.size ?? '?' },
    purge: { ...purge, leftExpired: Number(leftExpired.rows[0]?.n) },
    memory,
  });
});

/** One autocannon scenario on one server. */
interface Scenario {
  readonly name: string;
  readonly server: BenchServer;
  readonly run: (load: LoadSettings) => Promise<LoadResult>;
}

/** Time the engine added around createOrder over what follows (from its own histogram), seconds. */
async function engineOverhead(server: BenchServer): Promise<() => Promise<{ sum: number; count: number }>> {
  const read = async () => ({
    sum: await scrape(server.origin, 'idempotency_engine_overhead_seconds_sum', { operation: 'createOrder' }),
    count: await scrape(server.origin, 'idempotency_engine_overhead_seconds_count', { operation: 'createOrder' }),
  });
  const before = await read();
  return async () => {
    const after = await read();
    return { sum: after.sum - before.sum, count: after.count - before.count };
  };
}
