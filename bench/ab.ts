import 'reflect-metadata';
import path from 'node:path';
import { type BenchServer, headers, mintTokens, orderBodies, post, productIds, startDatabase, startServer } from './fixture';
import { combine, type LoadResult, runLoad } from './load';
import { firstOrders, floor, type LoadSettings, loadSettingsOf, replayOne, runId } from './scenarios';
import { fmt, numberArg, readArgs, runCommand, table, UsageError } from './support';

/**
 * An A/B of two builds in one run: the engine server of each build (`--a`, `--b`: dist folders)
 * on one database, floor, replay and first executions alternating in rounds (A B, B A, ...), each measured as
 * requests/s and as the server's CPU time per response. With `--b-mode noevents`, B is a server
 * that writes no outbox event (of build A unless `--b` names another), which measures what the
 * outbox costs first executions: first / first-noevents.
 */
runCommand(async (cleanup) => {
  const args = readArgs('node dist/bench/ab.js', {
    a: { type: 'string', default: path.resolve(__dirname, '..'), description: 'dist folder of build A' },
    b: { type: 'string', description: 'dist folder of build B (required unless --b-mode is noevents; then --a by default)' },
    'b-mode': {
      type: 'string',
      default: 'engine',
      description: "B's server: engine, or noevents (the engine with the order rules writing no outbox event)",
    },
    duration: { type: 'string', default: '5', description: 'seconds measured per scenario and round' },
    warmup: { type: 'string', default: '1', description: 'seconds of unmeasured load before each measurement' },
    rounds: { type: 'string', default: '6', description: 'rounds; A and B swap order every round' },
    connections: { type: 'string', default: '10', description: 'concurrent connections' },
    scenarios: {
      type: 'string',
      default: 'floor,replay',
      description: 'comma-separated: floor, replay, first (a new key per request), bare (the bare Apollo anchor, once per round)',
    },
    profile: { type: 'string', description: 'folder for V8 CPU profiles of both servers (node --cpu-prof)' },
  });
  const bMode = args['b-mode'];
  if (bMode !== 'engine' && bMode !== 'noevents') throw new UsageError(`--b-mode must be engine or noevents, got ${bMode}`);
  const bDist = args.b ?? (bMode === 'noevents' ? args.a : undefined);
  if (!bDist) throw new UsageError('--b is required: the dist folder of the build to compare with');
  const settings = loadSettingsOf(args);
  const rounds = numberArg(args, 'rounds', 1);
  const db = await startDatabase(cleanup);
  const builds: { name: string; dist: string; mode: 'engine' | 'noevents' }[] = [
    { name: 'A', dist: path.resolve(args.a as string), mode: 'engine' },
    { name: 'B', dist: path.resolve(bDist), mode: bMode },
  ];
  const servers: BenchServer[] = [];
  for (const build of builds) {
    servers.push(await startServer(cleanup, build.name, db.url, { mode: build.mode, dist: build.dist, profileDir: args.profile }));
  }
  const tokens = await mintTokens(100);
  const bodies = orderBodies(await productIds(db.pool));
  const [body] = bodies;
  const key = `ab-${runId()}`;
  for (const server of servers) {
    // Each server stores the key's outcome in its own cache: the first call records or replays it.
    const answer = await post(server.url, headers(tokens[0] as string, key), body as string);
    if (answer.status !== 200 || answer.text.includes('"errors"')) throw new Error(`the replay key was not stored: ${answer.text}`);
  }
  const chosen = (args.scenarios as string).split(',');
  const bare = chosen.includes('bare') ? await startServer(cleanup, 'bare', db.url, { mode: 'bare', dist: builds[0]?.dist }) : undefined;
  const available: AbScenario[] = [
    { name: 'floor', run: (server, load) => floor(server, tokens, load) },
    { name: 'replay', run: (server, load) => replayOne(server, tokens[0] as string, key, body as string, load) },
    { name: 'first', run: (server, load) => firstOrders(server, tokens, bodies, load) },
    ...(bare
      ? [
          {
            name: 'bare',
            target: bare,
            run: (server: BenchServer, load: LoadSettings) => runLoad({ ...load, url: server.url, next: () => BARE_REQUEST }),
          },
        ]
      : []),
  ];
  const scenarios = available.filter((scenario) => chosen.includes(scenario.name));
  if (scenarios.length === 0) throw new UsageError(`--scenarios must name floor, replay, first or bare, got ${args.scenarios}`);
  // One unmeasured pass first, so that both servers have run this code before the rounds.
  for (const scenario of scenarios)
    for (const server of servers) await scenario.run(scenario.target ?? server, { ...settings, warmupSeconds: 0 });
  const results = new Map<string, { runs: LoadResult[]; cpuMs: number[] }>();
  for (let round = 0; round < rounds; round++) {
    const order = round % 2 === 0 ? servers : [...servers].reverse();
    for (const scenario of scenarios) {
      // The bare anchor is one server: measured once per round.
      for (const server of scenario.target ? [scenario.target] : order) {
        if (settings.warmupSeconds > 0) await scenario.run(server, { ...settings, seconds: settings.warmupSeconds, warmupSeconds: 0 });
        const before = await server.cpuSeconds();
        const result = await scenario.run(server, { ...settings, warmupSeconds: 0 });
        const after = await server.cpuSeconds();
        if (result.errors > 0) throw new Error(`${scenario.name} on ${server.name}: ${result.errors} errors: ${result.sampleError}`);
        const cpuMs = (((after ?? Number.NaN) - (before ?? Number.NaN)) / result.responses) * 1000;
        const entry = results.get(`${scenario.name} ${server.name}`) ?? { runs: [], cpuMs: [] };
        entry.runs.push(result);
        entry.cpuMs.push(cpuMs);
        results.set(`${scenario.name} ${server.name}`, entry);
        process.stderr.write(
          `round ${round + 1} ${scenario.name} ${server.name}: ${fmt(result.rps)} req/s, ${fmt(cpuMs, 3)} ms CPU/request\n`,
        );
      }
    }
  }
  const rows = scenarios.map(({ name, target }) => {
    const [a, b] = (target ? [target] : servers).map(
      (server) => results.get(`${name} ${server.name}`) as { runs: LoadResult[]; cpuMs: number[] },
    );
    // The bare anchor has one side only: its row shows it under A.
    const rps = [a, b].map((side) => (side ? combine(side.runs).rps : undefined));
    const cpu = [a, b].map((side) => median(side?.cpuMs ?? []));
    const roundRatios = (b?.cpuMs ?? []).map((ms, index) => ms / (a?.cpuMs[index] ?? Number.NaN));
    return [
      name,
      fmt(rps[0]),
      fmt(rps[1]),
      fmt((rps[1] as number) / (rps[0] as number), 3),
      fmt(cpu[0], 3),
      fmt(cpu[1], 3),
      fmt((cpu[1] as number) / (cpu[0] as number), 3),
      fmt(median(roundRatios), 3),
      roundRatios.map((ratio) => fmt(ratio, 2)).join(' '),
    ];
  });
  process.stdout.write(
    `${table(['scenario', 'A req/s', 'B req/s', 'B/A', 'A CPU ms/req (median)', 'B CPU ms/req (median)', 'B/A', 'B/A CPU, median of rounds', 'per round'], rows)}\n`,
  );
  // The ratios, per side and round: floor / bare and replay / floor, of requests/s.
  const rps = (name: string, side: string) => results.get(`${name} ${side}`)?.runs.map((run) => run.rps) ?? [];
  for (const server of servers) {
    for (const [top, bottom] of [
      ['floor', 'bare'],
      ['replay', 'floor'],
    ] as const) {
      const over = rps(bottom, bottom === 'bare' ? 'bare' : server.name);
      const ratios = rps(top, server.name).map((value, index) => value / (over[index] ?? Number.NaN));
      if (ratios.length > 0 && over.length > 0) {
        process.stdout.write(
          `${server.name} ${top}/${bottom}: ${fmt(median(ratios), 2)} (rounds ${ratios.map((ratio) => fmt(ratio, 2)).join(' ')})\n`,
        );
      }
    }
  }
  if (bMode === 'noevents') {
    // Issue #20's ratio: A's first executions over B's, which write no event, per round.
    const [a, b] = servers.map((server) => results.get(`first ${server.name}`));
    if (a && b) {
      const rpsRatios = a.runs.map((run, index) => run.rps / (b.runs[index]?.rps ?? Number.NaN));
      const cpuRatios = a.cpuMs.map((ms, index) => ms / (b.cpuMs[index] ?? Number.NaN));
      process.stdout.write(
        `first / first-noevents, req/s: ${fmt(median(rpsRatios), 3)} (rounds ${rpsRatios.map((ratio) => fmt(ratio, 2)).join(' ')})\n` +
          `first / first-noevents, CPU ms/req: ${fmt(median(cpuRatios), 3)} (rounds ${cpuRatios.map((ratio) => fmt(ratio, 2)).join(' ')})\n`,
      );
    }
  }
});

/** A scenario measured on each build's server, or on its `target` alone (the bare anchor). */
interface AbScenario {
  readonly name: string;
  readonly target?: BenchServer;
  readonly run: (server: BenchServer, load: LoadSettings) => Promise<LoadResult>;
}

const BARE_REQUEST = { headers: { 'content-type': 'application/json' }, body: JSON.stringify({ query: '{ hello }' }) };

function median(values: readonly number[]): number {
  const sorted = [...values].sort((x, y) => x - y);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? (sorted[middle] as number) : ((sorted[middle - 1] as number) + (sorted[middle] as number)) / 2;
}
