import type { LoadResult } from './load';
import type { ProfileShare } from './profile';
import type { PurgeConditions, PurgeResult } from './records';
import { type RelayResult, relayText } from './relay';
import { Section, sharedMachineNote, timestamp, writeResults } from './results';
import type { LoadSettings, StormResult } from './scenarios';
import { fmt, mib, table } from './support';

/** One autocannon scenario's figures. */
export interface Row {
  readonly name: string;
  readonly server: string;
  /** All its measured runs combined. */
  readonly result: LoadResult;
  /** Each measured run, when the scenario ran in rounds. */
  readonly rounds?: readonly LoadResult[];
  /** Mean idempotency_engine_overhead_seconds per createOrder during the scenario, ms. */
  readonly engineMs?: number;
  /** The server process's CPU time (user + system) over the measured seconds, per response, ms. */
  readonly cpuMsPerRequest?: number;
}

export interface RunReport {
  readonly command: string;
  /** The adopted change the run measures (`--change`). */
  readonly change: string | undefined;
  readonly started: Date;
  readonly environment: string;
  readonly settings: LoadSettings;
  /** Measured runs of each paired scenario. */
  readonly rounds: number;
  readonly users: number;
  readonly records: number;
  readonly rows: readonly Row[];
  readonly storm: StormResult;
  readonly scale: { readonly loadSeconds: number; readonly rows: number; readonly size: string };
  readonly purge: PurgeResult & { readonly leftExpired: number };
  /** The outbox relay's throughput and lag, or why they were not measured. */
  readonly relay: RelayResult | string;
  readonly memory: readonly { readonly name: string; readonly peak: number | undefined }[];
  /** The CPU profile of an engine server under first executions, by package. */
  readonly profile: {
    readonly busyMs: number;
    readonly idleMs: number;
    /** CPU time the process used over the same load (/proc), against which `busyMs` counts wall time. */
    readonly cpuMs: number;
    readonly shares: readonly ProfileShare[];
    readonly responses: number;
    readonly seconds: number;
  };
}

interface Check {
  readonly name: string;
  readonly value: string;
  readonly target: string;
  /** Undefined: shown for information, no target. */
  readonly pass: boolean | undefined;
}

/**
 * A ratio to two decimals; a miss that would round up onto its target is shown to three,
 * rounded down (0.8996 against 0.90: 0.899).
 */
function ratioText(value: number, target: number): string {
  return value < target && Number(value.toFixed(2)) >= target ? fmt(Math.floor(value * 1000) / 1000, 3) : fmt(value, 2);
}

/** Prints the run's tables and ratios and writes them to RESULTS.md. */
export async function report(run: RunReport): Promise<void> {
  const rps = (name: string) => run.rows.find((row) => row.name === name)?.result.rps ?? Number.NaN;
  const p99 = (name: string) => run.rows.find((row) => row.name === name)?.result.p99 ?? Number.NaN;
  const ratio = (a: string, b: string, target: number): Check => {
    const value = rps(a) / rps(b);
    const rounds = roundRatios(run.rows, a, b, value);
    return {
      name: `${a} / ${b}`,
      value: `${ratioText(value, target)} (p99 ${fmt(p99(a) / p99(b), 2)}×${rounds ? `; ${rounds}` : ''})`,
      target: `≥ ${fmt(target, 2)}`,
      pass: value >= target,
    };
  };
  const { storm, purge } = run;
  const dip = purge.during.rps / purge.before.rps;
  const errors = run.rows.reduce((sum, row) => sum + row.result.errors, storm.errors);
  const p50 = (name: string) => run.rows.find((row) => row.name === name)?.result.p50 ?? Number.NaN;
  const has = (name: string) => run.rows.some((row) => row.name === name);
  const checks: Check[] = [
    ratio('baseline', 'sql', 0.5),
    ratio('first', 'sql', 0.45),
    ratio('floor', 'bare', 0.7),
    ratio('first', 'baseline', 0.85),
    // The database's own limit on first / baseline, and how close first executions come to their statements' ceiling.
    { ...ratio('sql-first', 'sql', 0), target: 'information', pass: undefined },
    { ...ratio('first', 'sql-first', 0), target: 'information', pass: undefined },
    {
      name: 'p99 / p50 of first',
      value: `${fmt(p99('first') / p50('first'), 2)} (${fmt(p99('first'), 1)} / ${fmt(p50('first'), 1)} ms)`,
      target: '≤ 3',
      pass: p99('first') <= 3 * p50('first'),
    },
    ratio('first', 'first-noevents', 0.9),
    ...(has('baseline-B') ? [{ ...ratio('baseline', 'baseline-B', 1.05), target: 'A/B: ≥ 1.05 to adopt', pass: undefined }] : []),
    // A replay executes the payload from the in-process record cache (there is no whole-response cache).
    ratio('replay', 'floor', 0.6),
    ratio('replay-db', 'first', 2),
    {
      name: 'storm executions per key',
      value: storm.minExecutions === storm.maxExecutions ? `${storm.maxExecutions}` : `${storm.minExecutions}..${storm.maxExecutions}`,
      target: '= 1',
      pass: storm.minExecutions === 1 && storm.maxExecutions === 1 && storm.divergentKeys === 0,
    },
    {
      name: 'storm p99 / first p99',
      value: `${fmt(storm.p99 / p99('first'), 2)} (${fmt(storm.p99, 1)} / ${fmt(p99('first'), 1)} ms)`,
      target: '< 3',
      pass: storm.p99 < 3 * p99('first'),
    },
    ratio('scale-first', 'first', 0.9),
    ratio('scale-replay', 'replay', 0.9),
    ratio('scale-replay-db', 'replay-db', 0.9),
    { name: 'purge rows/s', value: fmt(purge.rowsPerSecond), target: '≥ 50,000', pass: purge.rowsPerSecond >= 50_000 },
    {
      name: 'first during purge / before it',
      value: `${ratioText(dip, 0.8)} (${fmt(purge.during.rps)} / ${fmt(purge.before.rps)} req/s)`,
      target: '≥ 0.80',
      pass: dip >= 0.8,
    },
    {
      name: 'first during purge / scale-first',
      value: `${fmt(purge.during.rps / rps('scale-first'), 2)} (${fmt(purge.during.rps)} / ${fmt(rps('scale-first'))} req/s)`,
      target: 'information',
      pass: undefined,
    },
    ...(typeof run.relay === 'string'
      ? []
      : [
          { name: 'outbox relay, events/s', value: fmt(run.relay.eventsPerSecond), target: 'information', pass: undefined },
          {
            name: 'COMMIT → JetStream subscriber, p99 ms',
            value: `${fmt(run.relay.lagP99, 1)} (p50 ${fmt(run.relay.lagP50, 1)})`,
            target: 'information',
            pass: undefined,
          },
        ]),
    { name: 'errors in all scenarios', value: fmt(errors), target: '= 0', pass: errors === 0 },
  ];

  const scenarioTable = table(
    ['scenario', 'server', 'req/s', 'p50 ms', 'p99 ms', 'errors', 'responses', 'CPU ms/req', 'engine ms/call'],
    [
      ...run.rows.map((row) => [
        row.name,
        row.server,
        fmt(row.result.rps),
        fmt(row.result.p50, 1),
        fmt(row.result.p99, 1),
        fmt(row.result.errors),
        fmt(row.result.responses),
        fmt(row.cpuMsPerRequest, 2),
        fmt(row.engineMs, 2),
      ]),
      [
        'storm',
        'engine',
        'n/a',
        fmt(storm.p50, 1),
        fmt(storm.p99, 1),
        fmt(storm.errors),
        `${fmt(storm.keys)} × ${fmt(storm.size)}`,
        'n/a',
        'n/a',
      ],
      [
        'purge (first under load, second database)',
        'engine-scale',
        fmt(purge.during.rps),
        fmt(purge.during.p50, 1),
        fmt(purge.during.p99, 1),
        fmt(purge.load.errors),
        fmt(purge.during.responses),
        'n/a',
        'n/a',
      ],
    ],
  );
  const checkTable = table(
    ['ratio / check', 'value', 'target', 'result'],
    checks.map((check) => [check.name, check.value, check.target, check.pass === undefined ? 'n/a' : check.pass ? 'pass' : '**FAIL**']),
  );
  const errorNotes = run.rows
    .filter((row) => row.result.errors > 0)
    .map((row) => `- ${row.name}: ${row.result.errors} errors, e.g. \`${(row.result.sampleError ?? '').replaceAll('`', "'")}\``);
  if (storm.errors > 0) errorNotes.push(`- storm: ${storm.errors} errors, e.g. \`${(storm.sampleError ?? '').replaceAll('`', "'")}\``);
  const finished = new Date();
  const minutes = (finished.getTime() - run.started.getTime()) / 60_000;

  const body = [
    `Taken ${timestamp(run.started)}; the whole run took ${fmt(minutes, 1)} minutes.`,
    '',
    sharedMachineNote(),
    '',
    run.environment,
    `- Command: \`${run.command}\``,
    `- Load: autocannon, ${run.settings.connections} connections, ${run.settings.warmupSeconds} s warm-up then ${run.settings.seconds} s per scenario, ${run.users} users round-robin, 14 order variants (2 lines each)`,
    `- Rounds: each scenario ran ${run.rounds} round${run.rounds === 1 ? '' : 's'} in its group (${groupsText(run.rows)}), after one unmeasured ${run.settings.seconds} s pass of every scenario of the group (so that no server starts its rounds on less warmed-up code), alternating the order (A B C, C B A, ...) so a drift of the machine's speed falls on every scenario of a group alike; a row combines its rounds, and a ratio lists its per-round values (round i against round i) and their spread, the largest distance of a round from the combined ratio, marked where it is over ±0.05`,
    '',
    '### Scenarios',
    '',
    scenarioTable,
    '',
    'bare: `{ hello }` on Apollo Server 5 standalone with a TypeGraphQL schema of that one field, no middleware (bench/bare-server.ts) · sql: the baseline’s statements from a tight `pg` loop on as many connections as the load generator has (bench/ceiling.ts), a transaction per response; the SQL ceiling · sql-first: the same loop with a first execution’s statements added (the key’s read, `set_config`, the record’s insert), the ceiling of a first execution · floor: `{ __typename }` with a bearer token · baseline: createOrder with the engine bypassed (bench/bypass-handler.ts) · first: a new key per request · first-noevents: the same on an engine server whose order rules append no outbox event (bench/server.ts --mode noevents) · baseline-B: the baseline on another build (`--compare-dist`), for an A/B · replay: one stored key, the same request again and again; each replay executes the payload from the in-process record cache · replay-db: random stored keys on a server with the replay cache off (one primary-key read each) · storm: concurrent duplicates of one key, repeated per key · scale-*: the same on a second database of the same PostgreSQL, holding the records below, on servers of its own; measured in the same rounds as the others · CPU ms/req: the server process’s CPU time (user + system, /proc/<pid>/stat) over the measured seconds per response; it includes work finishing after a round’s last response · engine ms/call: mean of the server’s own `idempotency_engine_overhead_seconds` over the scenario (warm-up included; it counts everything around the mutation: pool waits, the lookup, BEGIN, the record insert and COMMIT).',
    '',
    `Storm: ${fmt(storm.keys)} keys × ${fmt(storm.size)} concurrent requests; orders per key ${storm.minExecutions}..${storm.maxExecutions} (from the database), engine executions ${fmt(storm.engineExecuted)}, replayed answers ${fmt(storm.replayed)}, keys with differing answers ${storm.divergentKeys}.`,
    '',
    `Scale: ${fmt(run.records)} live + ${fmt(run.records)} expired records loaded into the second database before the measured scenarios, in ${fmt(run.scale.loadSeconds, 1)} s (SQL, then VACUUM ANALYZE and CHECKPOINT); idempotency_records then held ${fmt(run.scale.rows)} rows, ${run.scale.size} with indexes.`,
    '',
    `Purge: ${fmt(purge.deleted)} rows deleted (tombstone ended) and ${fmt(purge.tombstoned)} expired records turned into tombstones in ${fmt(purge.seconds, 1)} s (${fmt(purge.rowsPerSecond)} rows/s, batches of 5,000) while createOrder ran on that database; throughput ${fmt(purge.before.rps)} req/s in the 5 s before it (after a warm-up), ${fmt(purge.during.rps)} req/s during it (p99 ${fmt(purge.before.p99, 1)} → ${fmt(purge.during.p99, 1)} ms); rows still due to the purge left: ${fmt(purge.leftExpired)}. Meanwhile: ${conditionsText(purge.conditions)}.`,
    '',
    `Outbox relay (a third database of the same PostgreSQL, after the rounds): ${relayText(run.relay)}.`,
    '',
    '### Ratios and targets',
    '',
    checkTable,
    '',
    '### CPU profile of first executions',
    '',
    `An engine server of its own with V8’s profiler on (node:inspector, after a pass and a warm-up), under first executions for ${fmt(run.profile.seconds, 1)} s (${fmt(run.profile.responses)} responses, ${fmt(run.profile.responses / run.profile.seconds)} req/s with the profiler’s overhead): ${fmt(run.profile.busyMs)} ms busy, ${fmt(run.profile.idleMs)} ms idle. The profiler samples wall time, so busy time also counts time spent off the CPU inside system calls; the process used ${fmt(run.profile.cpuMs)} ms of CPU over the same load. Self time by package (\`src/*\`: this app; \`native:\` functions without script, such as socket writes):`,
    '',
    profileTable(run.profile.shares),
    '',
    '### Memory',
    '',
    `Peak RSS (VmHWM) of each server process over the whole run: ${run.memory.map((server) => `${server.name} ${mib(server.peak)}`).join(', ')}.`,
    ...(errorNotes.length > 0 ? ['', '### Errors', '', ...errorNotes] : []),
  ].join('\n');

  process.stdout.write(`\n${body}\n`);
  const targets = checks.filter((check) => check.pass !== undefined);
  const passed = targets.filter((check) => check.pass).length;
  const key = (name: string) => checks.find((check) => check.name.startsWith(name))?.value.split(' ')[0] ?? 'n/a';
  await writeResults(Section.Latest, body, {
    when: run.started,
    command: `bench (${fmt(run.records)} records, ${run.settings.seconds} s × ${run.settings.connections} connections × ${run.rounds} rounds)`,
    change: run.change,
    figures:
      `baseline/sql ${key('baseline / sql')}, first/sql ${key('first / sql')}, floor/bare ${key('floor / bare')}, first/baseline ${key('first / baseline')} (sql-first/sql ${key('sql-first / sql')}), p99/p50 first ${key('p99 / p50')}, first/first-noevents ${key('first / first-noevents')}${has('baseline-B') ? `, baseline/baseline-B ${key('baseline / baseline-B')}` : ''}, ` +
      `sql ${fmt(rps('sql'))} tx/s, bare ${fmt(rps('bare'))} req/s, replay/floor ${key('replay / floor')}, replay-db/first ${key('replay-db / first')}, ` +
      `storm ${key('storm executions')} execution/key p99 ×${key('storm p99')}, scale first ${key('scale-first')} replay ${key('scale-replay /')} replay-db ${key('scale-replay-db')}, ` +
      `purge ${key('purge rows/s')} rows/s at ${key('first during purge')} throughput, ` +
      `relay ${key('outbox relay')} events/s, lag p99 ${key('COMMIT')} ms; ${passed}/${targets.length} checks pass`,
  });
}

/** The ratio of two scenarios' req/s in each round both ran, and their spread around `combined`; undefined with one round. */
function roundRatios(rows: readonly Row[], a: string, b: string, combined: number): string | undefined {
  const first = rows.find((row) => row.name === a)?.rounds;
  const second = rows.find((row) => row.name === b)?.rounds;
  if (!first || !second || first.length < 2 || first.length !== second.length) return undefined;
  const ratios = first.map((result, index) => result.rps / (second[index] as LoadResult).rps);
  const spread = Math.max(...ratios.map((ratio) => Math.abs(ratio - combined)));
  return `rounds ${ratios.map((ratio) => fmt(ratio, 2)).join(', ')}; spread ±${fmt(spread, 2)}${spread > 0.05 ? ', over ±0.05' : ''}`;
}

/** The groups of scenarios, as they ran: `a, b · c, d`. */
function groupsText(rows: readonly Row[]): string {
  const firstGroup = new Set(['bare', 'floor', 'replay', 'scale-replay']);
  const names = (inFirst: boolean) => rows.filter((row) => firstGroup.has(row.name) === inFirst).map((row) => row.name);
  return `${names(true).join(', ')} · ${names(false).join(', ')}`;
}

/** The profile's largest shares, the rest summed in one line. */
function profileTable(shares: readonly ProfileShare[]): string {
  const shown = shares.slice(0, 15);
  const rest = shares.slice(15);
  const rows = shown.map((share) => [share.where, fmt(share.ms), `${fmt(share.share * 100, 1)} %`]);
  if (rest.length > 0) {
    const ms = rest.reduce((sum, share) => sum + share.ms, 0);
    const part = rest.reduce((sum, share) => sum + share.share, 0);
    rows.push([`${rest.length} others`, fmt(ms), `${fmt(part * 100, 1)} %`]);
  }
  return table(['where (self time)', 'ms', 'share of busy time'], rows);
}

/** The purge's conditions (see {@link PurgeConditions}) as one sentence. */
export function conditionsText(conditions: PurgeConditions): string {
  const disk = conditions.diskReadMb === null ? 'disk reads unknown' : `the machine's disks read ${fmt(conditions.diskReadMb)} MB`;
  return [
    `${fmt(conditions.checkpoints)} checkpoint${conditions.checkpoints === 1 ? '' : 's'}`,
    `autovacuum seen for ${fmt(conditions.autovacuumSeconds, 1)} s`,
    `PostgreSQL read ${fmt(conditions.readMb)} MB into shared buffers in that database`,
    disk,
  ].join(', ');
}
