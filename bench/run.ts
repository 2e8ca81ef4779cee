import 'reflect-metadata';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { FIRST_EXECUTION, SqlCeiling } from './ceiling';
import {
  addDatabase,
  type BenchServer,
  mintTokens,
  orderBodies,
  placeKeyedOrder,
  productIds,
  scrape,
  startDatabase,
  startServer,
  userId,
} from './fixture';
import { combine, type LoadResult, runLoad, summary } from './load';
import { profileByPackage } from './profile';
import { loadRecords, loadScaleRecords, purgeUnderLoad, RECORD_USERS } from './records';
import { measureRelay, RELAY_DEFAULTS, relayText } from './relay';
import { conditionsText, type Row, report } from './report';
import { environment } from './results';
import { firstOrders, floor, type LoadSettings, loadSettingsOf, replayLoaded, replayOne, runId, storm } from './scenarios';
import { commandLine, fmt, numberArg, readArgs, runCommand, stopPid } from './support';

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
    change: { type: 'string', description: 'the adopted change this run measures, for the history row of RESULTS.md' },
    'compare-dist': {
      type: 'string',
      description: "another build's dist folder: its bypass server runs as baseline-B in the baseline's rounds (an A/B of two builds)",
    },
  });
  const settings = loadSettingsOf(args);
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
  // The anchors and variants: Apollo standalone with one field, and the engine without outbox events.
  const bare = await startServer(cleanup, 'bare', db.url, { mode: 'bare', profileDir });
  const noEvents = await startServer(cleanup, 'engine-noevents', db.url, { mode: 'noevents', profileDir });
  const compareDist = args['compare-dist'];
  const bypassB =
    compareDist === undefined
      ? undefined
      : await startServer(cleanup, 'bypass-B', db.url, { mode: 'bypass', dist: compareDist, profileDir });
  const recordTokens = await mintTokens(RECORD_USERS);
  const tokens = recordTokens.slice(0, users);
  const products = await productIds(db.pool);
  const bodies = orderBodies(products);
  const scaleBodies = orderBodies(await productIds(scaleDb.pool));
  const ceiling = new SqlCeiling(db.url, products, users, settings.connections);
  cleanup.add('close the SQL ceiling pool', () => ceiling.close());
  // The same with a first execution's statements: the database's own limit on first / baseline.
  const firstCeiling = new SqlCeiling(db.url, products, users, settings.connections, FIRST_EXECUTION);
  cleanup.add('close the first execution SQL ceiling pool', () => firstCeiling.close());

  // The stored key every replay uses (one per database); its record is the template of the loaded ones.
  const template = { userId: userId(0), key: `replay-${id}` };
  for (const [server, body] of [
    [engine, bodies[0]],
    [scaleEngine, scaleBodies[0]],
  ] as const) {
    await placeKeyedOrder(server.url, tokens[0] as string, template.key, body as string);
  }
  await loadRecords(db.pool, template, `small-${id}-`, SMALL_RECORDS, 'live');
  await db.pool.query('vacuum analyze idempotency_records');

  process.stderr.write(`scale: loading ${fmt(records)} live and ${fmt(records)} expired records into the second database...\n`);
  const loadStarted = performance.now();
  await loadScaleRecords(scaleDb.pool, template, id, records);
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
    const cpuTime: (number | undefined)[] = group.map(() => 0);
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
        const label = count > 1 ? `${name} (round ${round + 1} of ${count})` : name;
        process.stderr.write(`${label} on ${server.name}: ${settings.warmupSeconds} s warm-up, ${settings.seconds} s measured...\n`);
        // The warm-up runs apart, so that the server's CPU time and engine time cover the measured load only.
        if (settings.warmupSeconds > 0) await run({ ...settings, seconds: settings.warmupSeconds, warmupSeconds: 0 });
        const overhead = server.engine ? await engineOverhead(server) : undefined;
        const cpuBefore = await server.cpuSeconds();
        const result = await run({ ...settings, warmupSeconds: 0 });
        const cpuAfter = await server.cpuSeconds();
        const used = cpuBefore === undefined || cpuAfter === undefined ? undefined : cpuAfter - cpuBefore;
        cpuTime[index] = used === undefined ? undefined : (cpuTime[index] ?? Number.NaN) + used;
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
      const result = combine(runs[index] as LoadResult[]);
      rows.push({
        name: scenario.name,
        server: scenario.server.name,
        result,
        rounds: runs[index] as LoadResult[],
        engineMs: spent.count > 0 ? (spent.sum / spent.count) * 1000 : undefined,
        cpuMsPerRequest: cpuTime[index] === undefined ? undefined : ((cpuTime[index] as number) / result.responses) * 1000,
      });
    });
  };

  const engineSide = (server: BenchServer): RoundServer => ({ ...server, engine: true });
  const plain = (server: BenchServer): RoundServer => ({ ...server, engine: false });
  await measureRounds(rounds, [
    { name: 'bare', server: plain(bare), run: (load) => runLoad({ ...load, url: bare.url, next: () => BARE_REQUEST }) },
    { name: 'floor', server: engineSide(engine), run: (load) => floor(engine, tokens, load) },
    {
      name: 'replay',
      server: engineSide(engine),
      run: (load) => replayOne(engine, tokens[0] as string, template.key, bodies[0] as string, load),
    },
    {
      name: 'scale-replay',
      server: engineSide(scaleEngine),
      run: (load) => replayOne(scaleEngine, tokens[0] as string, template.key, scaleBodies[0] as string, load),
    },
  ]);
  await measureRounds(rounds, [
    { name: 'sql', server: { ...SQL_SERVER, engine: false }, run: (load) => ceiling.run(load) },
    { name: 'sql-first', server: { ...SQL_SERVER, engine: false }, run: (load) => firstCeiling.run(load) },
    { name: 'baseline', server: plain(bypass), run: (load) => firstOrders(bypass, tokens, bodies, load) },
    ...(bypassB
      ? [{ name: 'baseline-B', server: plain(bypassB), run: (load: LoadSettings) => firstOrders(bypassB, tokens, bodies, load) }]
      : []),
    { name: 'first', server: engineSide(engine), run: (load) => firstOrders(engine, tokens, bodies, load) },
    { name: 'first-noevents', server: engineSide(noEvents), run: (load) => firstOrders(noEvents, tokens, bodies, load) },
    { name: 'scale-first', server: engineSide(scaleEngine), run: (load) => firstOrders(scaleEngine, tokens, scaleBodies, load) },
    {
      name: 'replay-db',
      server: engineSide(uncached),
      run: (load) => replayLoaded(uncached, recordTokens, `small-${id}-`, SMALL_RECORDS, bodies[0] as string, load),
    },
    {
      name: 'scale-replay-db',
      server: engineSide(scaleUncached),
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

  process.stderr.write('CPU profile of an engine server under first executions...\n');
  const profile = await profileFirst(cleanup, db.url, tokens, bodies, settings);

  process.stderr.write('outbox relay: a backlog, then the lag from COMMIT to a JetStream subscriber...\n');
  const relay = await measureRelay(cleanup, await addDatabase(cleanup, db, 'bench_events'), RELAY_DEFAULTS);
  process.stderr.write(`  ${relayText(relay)}\n`);

  const memory = await Promise.all(
    [engine, bypass, uncached, scaleEngine, scaleUncached, noEvents, bare, ...(bypassB ? [bypassB] : [])].map(async (server) => ({
      name: server.name,
      peak: await server.peakRss(),
    })),
  );
  await report({
    command: commandLine('bench'),
    change: args.change as string | undefined,
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
    relay,
    memory,
    profile,
  });
});

/** The bare server's request: its one field, no token. */
const BARE_REQUEST = { headers: { 'content-type': 'application/json' }, body: JSON.stringify({ query: '{ hello }' }) };

const SQL_SERVER: BenchServer = {
  name: 'PostgreSQL (pg loop)',
  pid: 0,
  url: '',
  origin: '',
  rss: async () => undefined,
  peakRss: async () => undefined,
  // Unknown: the ceiling's "server" is PostgreSQL itself, shared by every scenario.
  cpuSeconds: async () => undefined,
};

/**
 * A server of its own (so that the profiler slows no measured server) under first executions:
 * after the warm-up, V8's CPU profiler (node:inspector) records the measured load; the server
 * writes the profile when it is stopped. Its self time is summarised by package.
 */
async function profileFirst(
  cleanup: import('./support').Cleanup,
  databaseUrl: string,
  tokens: readonly string[],
  bodies: readonly string[],
  settings: LoadSettings,
) {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'orders-bench-profile-'));
  cleanup.add('remove the profile folder', () => rm(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'engine-first.cpuprofile');
  const server = await startServer(cleanup, 'engine-profiled', databaseUrl, { mode: 'engine', cpuProfile: file });
  // A pass as long as the measured one first, as every measured server had its rounds before.
  await firstOrders(server, tokens, bodies, { ...settings, warmupSeconds: 0 });
  if (settings.warmupSeconds > 0)
    await firstOrders(server, tokens, bodies, { ...settings, seconds: settings.warmupSeconds, warmupSeconds: 0 });
  process.kill(server.pid, 'SIGUSR2');
  const cpuBefore = await server.cpuSeconds();
  const load = await firstOrders(server, tokens, bodies, { ...settings, warmupSeconds: 0 });
  const cpuMs = (((await server.cpuSeconds()) ?? Number.NaN) - (cpuBefore ?? Number.NaN)) * 1000;
  process.stderr.write(`  ${summary('first (profiled)', load)}\n`);
  await stopPid(server.pid, 30_000);
  if (!(await stat(file).catch(() => undefined))) throw new Error('the profiled server wrote no CPU profile');
  return { ...(await profileByPackage(file)), cpuMs, responses: load.responses, seconds: load.seconds };
}

/** A server of a round; `engine`: it serves the engine's overhead histogram on /metrics. */
type RoundServer = BenchServer & { readonly engine: boolean };

/** One autocannon scenario on one server. */
interface Scenario {
  readonly name: string;
  readonly server: RoundServer;
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
