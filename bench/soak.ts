import 'reflect-metadata';
import { randomUUID } from 'node:crypto';
import { headers, mintTokens, orderBodies, post, productIds, scrape, startDatabase, startServer } from './fixture';
import { runLoad, summary } from './load';
import { environment, Section, sharedMachineNote, timestamp, writeResults } from './results';
import { commandLine, fmt, numberArg, readArgs, runCommand, slope, table } from './support';

const SAMPLE_SECONDS = 5;
/** The engine's default replay cache: it fills before memory can level off. */
const CACHE_ENTRIES = 10_000;
/** A slope above this over the second half counts as growth. */
const GROWTH_MB_PER_MINUTE = 1;

const ORDERS = JSON.stringify({ query: '{ orders(first: 5) { edges { node { id status totalCents lines { quantity } } } } }' });
const PRODUCTS = JSON.stringify({ query: '{ products(first: 20) { edges { node { id sku name priceCents stock } } } }' });

interface Sample {
  readonly second: number;
  readonly rssMb: number;
  readonly heapMb: number;
}

/**
 * A steady mixed load (40% new orders, 40% replays, 20% queries) at a fixed rate on the engine
 * server, sampling its memory every 5 s: the second half must show no growth trend.
 */
runCommand(async (cleanup) => {
  const args = readArgs('npm run bench:soak', {
    minutes: { type: 'string', default: '20', description: 'length of the soak (fractions allowed, e.g. 0.5)' },
    rate: { type: 'string', default: '100', description: 'requests per second, all connections together' },
    connections: { type: 'string', default: '10', description: 'concurrent connections' },
    users: { type: 'string', default: '100', description: 'users the requests are spread over' },
    change: { type: 'string', description: 'the adopted change this soak measures, for the history row of RESULTS.md' },
  });
  const minutes = numberArg(args, 'minutes', 0.1, false);
  const rate = numberArg(args, 'rate', 1);
  const connections = numberArg(args, 'connections', 1);
  const users = numberArg(args, 'users', 1);
  const started = new Date();

  const db = await startDatabase(cleanup);
  const env = await environment(db.pool);
  const server = await startServer(cleanup, 'engine', db.url, { mode: 'engine' });
  const tokens = await mintTokens(users);
  const bodies = orderBodies(await productIds(db.pool));
  // One stored key per user for the replays.
  const replayKeys = tokens.map((_, index) => `soak-replay-${index}`);
  for (const [index, token] of tokens.entries()) {
    const created = await post(server.url, headers(token, replayKeys[index]), bodies[index % bodies.length] as string);
    if (created.status !== 200 || created.text.includes('"errors"')) throw new Error(`could not store a replay key: ${created.text}`);
  }

  const samples: Sample[] = [];
  const sample = async (second: number) => {
    const rss = (await server.rss()) ?? Number.NaN;
    const heap = await scrape(server.origin, 'nodejs_heap_size_used_bytes').catch(() => Number.NaN);
    samples.push({ second, rssMb: rss / 1024 / 1024, heapMb: heap / 1024 / 1024 });
    process.stderr.write(`  ${fmt(second)} s: RSS ${fmt(rss / 1024 / 1024, 1)} MiB, heap ${fmt(heap / 1024 / 1024, 1)} MiB\n`);
  };

  let i = 0;
  const totalSeconds = minutes * 60;
  process.stderr.write(`soak: ${fmt(rate)} req/s for ${fmt(minutes, 2)} min, memory every ${SAMPLE_SECONDS} s\n`);
  const result = await runLoad({
    url: server.url,
    connections,
    rate,
    seconds: totalSeconds,
    warmupSeconds: 0,
    next: () => {
      const n = i++;
      const user = n % tokens.length;
      const token = tokens[user] as string;
      switch (n % 10) {
        case 0:
        case 1:
        case 2:
        case 3:
          return { headers: headers(token, randomUUID()), body: bodies[n % bodies.length] as string };
        case 4:
        case 5:
        case 6:
        case 7:
          return { headers: headers(token, replayKeys[user]), body: bodies[user % bodies.length] as string };
        case 8:
          return { headers: headers(token), body: ORDERS };
        default:
          return { headers: headers(token), body: PRODUCTS };
      }
    },
    until: async (elapsed) => {
      await sample(0);
      while (elapsed() < totalSeconds * 1000) {
        const next = Math.min(samples.length * SAMPLE_SECONDS, totalSeconds) * 1000;
        await new Promise((resolve) => setTimeout(resolve, Math.max(0, next - elapsed())));
        await sample(Math.round(elapsed() / 1000));
      }
    },
  });
  process.stderr.write(`  ${summary('soak', result)}\n`);

  const secondHalf = samples.filter((s) => s.second >= totalSeconds / 2);
  const rawRss = slope(
    secondHalf.map((s) => s.second / 60),
    secondHalf.map((s) => s.rssMb),
  );
  // Garbage collection makes memory a sawtooth; what a leak raises is its floor, the lowest
  // value of each minute.
  const floors = minuteFloors(secondHalf);
  const rssSlope = slope(
    floors.map((f) => f.minute),
    floors.map((f) => f.rssMb),
  );
  const heapSlope = slope(
    floors.map((f) => f.minute),
    floors.map((f) => f.heapMb),
  );
  const peak = await server.peakRss();
  const cacheFillSeconds = CACHE_ENTRIES / (rate * 0.4);
  const verdict =
    floors.length < 3 || totalSeconds / 2 < cacheFillSeconds
      ? `inconclusive: the second half holds ${floors.length} full minute(s) and ${totalSeconds / 2 >= cacheFillSeconds ? 'starts after' : 'starts before'} the replay cache is full; use the default 20 minutes for a verdict`
      : rssSlope > GROWTH_MB_PER_MINUTE || heapSlope > GROWTH_MB_PER_MINUTE
        ? '**growing**'
        : 'no growth trend';
  const every = Math.max(1, Math.round(samples.length / 20));
  const body = [
    `Taken ${timestamp(started)} with \`${commandLine('bench:soak')}\`: the engine server at a steady ${fmt(rate)} req/s (${connections} connections) for ${fmt(minutes, 2)} min — 40% createOrder with a new key, 40% replays of ${tokens.length} stored keys, 10% \`orders\`, 10% \`products\` — with its memory sampled every ${SAMPLE_SECONDS} s.`,
    '',
    sharedMachineNote(),
    '',
    env,
    '',
    `- Load: ${fmt(result.rps, 1)} req/s achieved, p50 ${fmt(result.p50, 1)} ms, p99 ${fmt(result.p99, 1)} ms, ${fmt(result.responses)} responses, ${fmt(result.errors)} errors`,
    `- Memory: RSS ${fmt(samples[0]?.rssMb, 0)} → ${fmt(samples.at(-1)?.rssMb, 0)} MiB, peak ${fmt((peak ?? Number.NaN) / 1024 / 1024, 0)} MiB`,
    `- Trend over the second half (least squares over each minute's lowest sample): RSS ${fmt(rssSlope, 2)} MiB/min, V8 heap ${fmt(heapSlope, 2)} MiB/min (over every RSS sample: ${fmt(rawRss, 2)} MiB/min) → ${verdict}; growth means above ${GROWTH_MB_PER_MINUTE} MiB/min`,
    `- The engine's replay cache holds up to ${fmt(CACHE_ENTRIES)} records; at this rate it fills in about ${fmt(cacheFillSeconds)} s, and memory grows with it until then.`,
    '',
    table(
      ['second', 'RSS MiB', 'heap MiB'],
      samples
        .filter((_, index) => index % every === 0 || index === samples.length - 1)
        .map((s) => [fmt(s.second), fmt(s.rssMb, 1), fmt(s.heapMb, 1)]),
    ),
  ].join('\n');
  process.stdout.write(`\n${body}\n`);
  await writeResults(Section.Soak, body, {
    when: started,
    command: `bench:soak (${fmt(minutes, 2)} min at ${fmt(rate)} req/s)`,
    change: args.change as string | undefined,
    figures: `${fmt(result.errors)} errors, p99 ${fmt(result.p99, 1)} ms, RSS floor slope ${fmt(rssSlope, 2)} MiB/min, heap floor slope ${fmt(heapSlope, 2)} MiB/min (${verdict.split(':')[0]}), peak ${fmt((peak ?? Number.NaN) / 1024 / 1024, 0)} MiB`,
  });
});

/** The lowest RSS and heap of each full minute of samples, at the minute's midpoint. */
function minuteFloors(samples: readonly Sample[]): { minute: number; rssMb: number; heapMb: number }[] {
  const first = samples[0]?.second ?? 0;
  const last = samples.at(-1)?.second ?? 0;
  const floors: { minute: number; rssMb: number; heapMb: number }[] = [];
  for (let start = first; start + 60 <= last + SAMPLE_SECONDS; start += 60) {
    const inMinute = samples.filter((s) => s.second >= start && s.second < start + 60);
    if (inMinute.length === 0) continue;
    floors.push({
      minute: (start + 30) / 60,
      rssMb: Math.min(...inMinute.map((s) => s.rssMb)),
      heapMb: Math.min(...inMinute.map((s) => s.heapMb)),
    });
  }
  return floors;
}
