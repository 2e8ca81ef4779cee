import 'reflect-metadata';
import { type EngineStatements, FIRST_EXECUTION, NO_ENGINE, SqlCeiling } from './ceiling';
import { productIds, startDatabase } from './fixture';
import type { LoadResult } from './load';
import { loadSettingsOf } from './scenarios';
import { fmt, numberArg, readArgs, runCommand, table } from './support';

/**
 * What each statement of a first execution costs the database: the SQL ceiling of the order
 * transaction (bench/ceiling.ts) alone, with each of the engine's three statements added by
 * itself, and with all three, alternating in rounds on one database. No server runs: each
 * variant's transactions/s against the baseline's statements' is the database's share.
 */
runCommand(async (cleanup) => {
  const args = readArgs('node dist/bench/sql.js', {
    duration: { type: 'string', default: '6', description: 'seconds measured per variant and round' },
    warmup: { type: 'string', default: '1', description: 'seconds of unmeasured load before each measurement' },
    rounds: { type: 'string', default: '4', description: 'rounds; the variants run in reverse order every other round' },
    connections: { type: 'string', default: '10', description: 'pooled connections, as many as the load generator of npm run bench' },
  });
  const settings = loadSettingsOf(args);
  const rounds = numberArg(args, 'rounds', 1);
  const db = await startDatabase(cleanup);
  const products = await productIds(db.pool);
  const variants: { name: string; engine: EngineStatements }[] = [
    { name: 'baseline statements', engine: NO_ENGINE },
    { name: '+ the key read', engine: { ...NO_ENGINE, read: true } },
    { name: '+ set_config', engine: { ...NO_ENGINE, bound: true } },
    { name: '+ the record insert', engine: { ...NO_ENGINE, record: true } },
    { name: 'first execution (all three)', engine: FIRST_EXECUTION },
  ];
  const ceilings = variants.map(({ engine }) => {
    const ceiling = new SqlCeiling(db.url, products, 100, settings.connections, engine);
    cleanup.add('close a ceiling pool', () => ceiling.close());
    return ceiling;
  });
  for (const ceiling of ceilings) await ceiling.run({ ...settings, warmupSeconds: 0 });
  const results = variants.map(() => [] as LoadResult[]);
  for (let round = 0; round < rounds; round++) {
    const order = variants.map((_, index) => (round % 2 === 0 ? index : variants.length - 1 - index));
    for (const index of order) {
      const result = await (ceilings[index] as SqlCeiling).run(settings);
      if (result.errors > 0) throw new Error(`${variants[index]?.name}: ${result.errors} errors: ${result.sampleError}`);
      (results[index] as LoadResult[]).push(result);
      process.stderr.write(`round ${round + 1} ${variants[index]?.name}: ${fmt(result.rps)} tx/s\n`);
    }
  }
  const baseline = results[0] as LoadResult[];
  const mean = (runs: readonly LoadResult[]) => runs.reduce((sum, run) => sum + run.rps, 0) / runs.length;
  const rows = variants.map(({ name }, index) => {
    const runs = results[index] as LoadResult[];
    const perRound = runs.map((run, round) => fmt(run.rps / (baseline[round]?.rps ?? Number.NaN), 2)).join(' ');
    return [name, fmt(mean(runs)), fmt(mean(runs) / mean(baseline), 3), perRound];
  });
  process.stdout.write(`${table(['statements', 'tx/s (mean of rounds)', 'against the baseline statements', 'per round'], rows)}\n`);
});
