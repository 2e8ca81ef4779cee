import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import type pg from 'pg';
import { createIdempotency } from '../src/idempotency';
import { type BenchDatabase, type BenchServer, FLOOR_BODY, headers, orderBody, scrape } from './fixture';
import { type LoadResult, runLoad, window } from './load';
import { fmt, percentiles, sleep } from './support';

/** Settings every autocannon scenario shares. */
export interface LoadSettings {
  readonly connections: number;
  readonly seconds: number;
  readonly warmupSeconds: number;
}

/** `{ __typename }`: the stack's own floor. */
export function floor(server: BenchServer, tokens: readonly string[], settings: LoadSettings): Promise<LoadResult> {
  let i = 0;
  return runLoad({
    ...settings,
    url: server.url,
    next: () => ({ headers: headers(tokens[i++ % tokens.length] as string), body: FLOOR_BODY }),
  });
}

/** createOrder with a new key per request, users and products round-robin. */
export function firstOrders(server: BenchServer, tokens: readonly string[], bodies: readonly string[], settings: LoadSettings) {
  return runLoad({ ...settings, url: server.url, next: newOrderRequest(tokens, bodies) });
}

function newOrderRequest(tokens: readonly string[], bodies: readonly string[]) {
  let i = 0;
  return () => {
    const n = i++;
    return { headers: headers(tokens[n % tokens.length] as string, randomUUID()), body: bodies[n % bodies.length] as string };
  };
}

/** The same stored key, again and again. */
export function replayOne(server: BenchServer, token: string, key: string, body: string, settings: LoadSettings) {
  const requestHeaders = headers(token, key);
  return runLoad({ ...settings, url: server.url, expectReplayed: true, next: () => ({ headers: requestHeaders, body }) });
}

/** Loaded records, picked at random: with the cache off each one is a primary-key read. */
export function replayLoaded(
  server: BenchServer,
  recordTokens: readonly string[],
  prefix: string,
  count: number,
  body: string,
  settings: LoadSettings,
) {
  return runLoad({
    ...settings,
    url: server.url,
    expectReplayed: true,
    next: () => {
      const n = 1 + Math.floor(Math.random() * count);
      return { headers: headers(recordTokens[n % recordTokens.length] as string, `${prefix}${n}`), body };
    },
  });
}

/** What a storm of duplicates did. */
export interface StormResult {
  readonly keys: number;
  readonly size: number;
  readonly p50: number;
  readonly p99: number;
  readonly errors: number;
  readonly sampleError?: string;
  /** Orders per key, from the database (each key's note names it). */
  readonly minExecutions: number;
  readonly maxExecutions: number;
  /** Keys whose duplicates did not all return the same order. */
  readonly divergentKeys: number;
  readonly replayed: number;
  /** Executions the engine counted (idempotency_requests_total{outcome="executed"}). */
  readonly engineExecuted: number;
}

/** For each of `keys` keys, `size` concurrent identical createOrder requests with that key. */
export async function storm(
  server: BenchServer,
  db: BenchDatabase,
  tokens: readonly string[],
  products: readonly string[],
  keys: number,
  size: number,
  runId: string,
): Promise<StormResult> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: size });
  try {
    // Opens the sockets first, so that the storms do not measure TCP connects.
    await Promise.all(
      Array.from({ length: size }, (_, i) => send(agent, server.url, headers(tokens[i % tokens.length] as string), FLOOR_BODY)),
    );
    const executedBefore = await scrape(server.origin, 'idempotency_requests_total', { operation: 'createOrder', outcome: 'executed' });
    const latencies: number[] = [];
    let errors = 0;
    let replayed = 0;
    let divergentKeys = 0;
    let sampleError: string | undefined;
    for (let k = 0; k < keys; k++) {
      const key = `storm-${runId}-${k}`;
      const requestHeaders = headers(tokens[k % tokens.length] as string, key);
      const body = orderBody(products, k, key);
      const answers = await Promise.all(Array.from({ length: size }, () => send(agent, server.url, requestHeaders, body)));
      const orderIds = new Set<string>();
      for (const answer of answers) {
        latencies.push(answer.ms);
        if (answer.replayed) replayed++;
        const id = /"order":\{"id":"([^"]+)"/.exec(answer.body)?.[1];
        if (answer.status !== 200 || answer.body.includes('"errors"') || !id) {
          errors++;
          sampleError ??= `HTTP ${answer.status}: ${answer.body.slice(0, 300)}`;
        } else {
          orderIds.add(id);
        }
      }
      if (orderIds.size > 1) divergentKeys++;
    }
    const executedAfter = await scrape(server.origin, 'idempotency_requests_total', { operation: 'createOrder', outcome: 'executed' });
    const { rows } = await db.pool.query<{ note: string; orders: number }>(
      'select note, count(*)::int as orders from orders where note like $1 group by note',
      [`storm-${runId}-%`],
    );
    const counts = Array.from({ length: keys }, (_, k) => rows.find((row) => row.note === `storm-${runId}-${k}`)?.orders ?? 0);
    const [p50, p99] = percentiles(latencies, [50, 99]);
    return {
      keys,
      size,
      p50: p50 as number,
      p99: p99 as number,
      errors,
      sampleError,
      minExecutions: Math.min(...counts),
      maxExecutions: Math.max(...counts),
      divergentKeys,
      replayed,
      engineExecuted: executedAfter - executedBefore,
    };
  } finally {
    agent.destroy();
  }
}

interface Answer {
  readonly status: number;
  readonly body: string;
  readonly replayed: boolean;
  readonly ms: number;
}

function send(agent: http.Agent, url: string, requestHeaders: Record<string, string>, body: string): Promise<Answer> {
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const request = http.request(
      url,
      { method: 'POST', agent, headers: { ...requestHeaders, 'content-length': Buffer.byteLength(body) } },
      (response) => {
        const chunks: Buffer[] = [];
        response.on('data', (chunk: Buffer) => chunks.push(chunk));
        response.on('end', () =>
          resolve({
            status: response.statusCode ?? 0,
            body: Buffer.concat(chunks).toString('utf8'),
            replayed: response.headers['idempotent-replayed'] === 'true',
            ms: performance.now() - started,
          }),
        );
        response.on('error', reject);
      },
    );
    request.on('error', reject);
    request.end(body);
  });
}

/** Users the loaded records belong to (`user-0` ... ), the bench users among them. */
export const RECORD_USERS = 10_000;

/** How far apart the first and the last of a load's records were written: 22 hours. */
const LOAD_SPAN_SECONDS = 79_200;

/**
 * Inserts `count` records `<prefix><n>` (n = 1..count) for users `user-<n mod RECORD_USERS>`,
 * copying operation, fingerprint and stored result from a real record, so that a request with
 * the template's arguments replays any of them. Live records expire 2 to 24 hours from now;
 * expired ones expired 1 to 23 hours ago. Every record has a 30-day tombstone except every
 * other expired one, whose tombstone has ended: a purge deletes those and turns the rest of the
 * expired ones into tombstones.
 *
 * As in a table written by real traffic, records lie in the table in the order they were
 * written, so expiry follows their position: n = 1 is the oldest. The chunks are inserted one
 * after another for that reason (two concurrent inserts would interleave their pages).
 */
export async function loadRecords(
  pool: pg.Pool,
  template: { userId: string; key: string },
  prefix: string,
  count: number,
  state: 'live' | 'expired',
): Promise<number> {
  const started = performance.now();
  const chunk = 100_000;
  const ageOffset = state === 'live' ? 0 : 86_400 + 3_600;
  for (let from = 1; from <= count; from += chunk) {
    const to = Math.min(count, from + chunk - 1);
    await pool.query(
      `insert into idempotency_records (user_id, key, operation, fingerprint, outcome, result, resources, created_at, expires_at, forgotten_at)
       select 'user-' || (i % $5::int), $4::text || i, t.operation, t.fingerprint, t.outcome, t.result, t.resources, w.at, w.at + interval '1 day',
              w.at + interval '1 day' + case when $10::boolean and i % 2 = 1 then interval '0' else interval '30 days' end
         from generate_series($1::int, $2::int) as i
              cross join lateral (select now() - make_interval(secs => $6::int + ($8::int - i) * $9::float8 / $8::int) as at) as w,
              (select operation, fingerprint, outcome, result, resources from idempotency_records where user_id = $3 and key = $7) as t`,
      [from, to, template.userId, prefix, RECORD_USERS, ageOffset, template.key, count, LOAD_SPAN_SECONDS, state === 'expired'],
    );
    process.stderr.write(`  ${state} records: ${fmt(to)} / ${fmt(count)}\r`);
  }
  process.stderr.write('\n');
  return performance.now() - started;
}

/** The purge run while createOrder load continues. */
export interface PurgeResult {
  readonly deleted: number;
  /** Expired records whose result the purge dropped, leaving their tombstones. */
  readonly tombstoned: number;
  readonly seconds: number;
  /** Rows deleted or turned into tombstones, per second. */
  readonly rowsPerSecond: number;
  /** createOrder throughput and latency while the purge ran. */
  readonly during: { rps: number; p50: number; p99: number; responses: number };
  /** The same load, warmed up, in the seconds before the purge started. */
  readonly before: { rps: number; p50: number; p99: number; responses: number };
  readonly load: LoadResult;
  /** What else the database and the machine did while the purge ran. */
  readonly conditions: PurgeConditions;
}

/**
 * What else happened while the purge ran, for reading a slow purge: a checkpoint makes the
 * first change to each page write the whole page to the WAL, autovacuum reads the same table,
 * and pages PostgreSQL reads from outside its shared buffers come from the OS cache or the disk.
 */
export interface PurgeConditions {
  /** Checkpoints that started or ended during the purge (timed or requested). */
  readonly checkpoints: number;
  /** Seconds during which an autovacuum worker was seen working, sampled every 250 ms. */
  readonly autovacuumSeconds: number;
  /** MB PostgreSQL read into its shared buffers in the purged database (from the OS cache or disk). */
  readonly readMb: number;
  /** MB the machine's disks read meanwhile, all processes together; null where /proc/diskstats is unreadable. */
  readonly diskReadMb: number | null;
}

interface ConditionCounters {
  readonly checkpoints: number;
  readonly blocksRead: number;
  readonly diskSectorsRead: number | null;
}

async function conditionCounters(pool: pg.Pool): Promise<ConditionCounters> {
  const { rows } = await pool.query<{ checkpoints: string; blocks_read: string }>(
    `select (select num_timed + num_requested from pg_stat_checkpointer) as checkpoints,
            (select blks_read from pg_stat_database where datname = current_database()) as blocks_read`,
  );
  const row = rows[0];
  return { checkpoints: Number(row?.checkpoints), blocksRead: Number(row?.blocks_read), diskSectorsRead: diskSectorsRead() };
}

/** Sectors (512 bytes) read by the whole disks of this machine since boot; null when unknown. */
function diskSectorsRead(): number | null {
  try {
    let sectors = 0;
    for (const line of readFileSync('/proc/diskstats', 'utf8').split('\n')) {
      const fields = line.trim().split(/\s+/);
      // Whole disks only (partitions would count twice): vda, sda, xvda, nvme0n1.
      if (/^(?:[svx]?vd[a-z]+|sd[a-z]+|nvme\d+n\d+)$/.test(fields[2] ?? '')) sectors += Number(fields[5]);
    }
    return sectors;
  } catch {
    return null;
  }
}

/** Samples, every 250 ms until stopped, whether an autovacuum worker is running; resolves to the seconds seen. */
function watchAutovacuum(pool: pg.Pool): { stop(): Promise<number> } {
  let stopped = false;
  let seen = 0;
  const watching = (async () => {
    while (!stopped) {
      const { rows } = await pool.query<{ n: number }>(
        "select count(*)::int as n from pg_stat_activity where backend_type = 'autovacuum worker'",
      );
      if ((rows[0]?.n ?? 0) > 0) seen += 0.25;
      await sleep(250);
    }
    return seen;
  })();
  return {
    stop: () => {
      stopped = true;
      return watching;
    },
  };
}

/** A purge of one database: the engine's own by default; bench/purge.ts passes another build's. */
export type Purge = (db: BenchDatabase) => Promise<{ deleted: number; tombstoned: number }>;

/** Runs the engine's own purge once, in this process, under createOrder load. */
export async function purgeUnderLoad(
  server: BenchServer,
  db: BenchDatabase,
  tokens: readonly string[],
  bodies: readonly string[],
  settings: LoadSettings,
  purge: Purge = (purged) => createIdempotency().purge(purged.orm),
): Promise<PurgeResult> {
  // The load is warmed up, then measured for a while before the purge starts: the dip is the
  // throughput during the purge against the same load's just before it.
  const leadMs = 5_000;
  let purgeStart = 0;
  let purgeEnd = 0;
  let purged = { deleted: 0, tombstoned: 0 };
  let conditions: PurgeConditions | undefined;
  const load = await runLoad({
    ...settings,
    url: server.url,
    next: newOrderRequest(tokens, bodies),
    until: async (elapsed) => {
      await sleep(leadMs);
      const first = await conditionCounters(db.pool);
      const autovacuum = watchAutovacuum(db.pool);
      purgeStart = elapsed();
      purged = await purge(db);
      purgeEnd = elapsed();
      const last = await conditionCounters(db.pool);
      conditions = {
        checkpoints: last.checkpoints - first.checkpoints,
        autovacuumSeconds: await autovacuum.stop(),
        readMb: ((last.blocksRead - first.blocksRead) * 8192) / 1e6,
        diskReadMb:
          last.diskSectorsRead === null || first.diskSectorsRead === null
            ? null
            : ((last.diskSectorsRead - first.diskSectorsRead) * 512) / 1e6,
      };
      await sleep(1_000);
    },
  });
  const seconds = (purgeEnd - purgeStart) / 1000;
  if (!conditions) throw new Error('the purge did not run');
  return {
    ...purged,
    seconds,
    rowsPerSecond: (purged.deleted + purged.tombstoned) / seconds,
    during: window(load, purgeStart, purgeEnd),
    before: window(load, 0, purgeStart),
    load,
    conditions,
  };
}

/** A short id naming this run's keys; letters and digits only (LIKE patterns stay exact). */
export function runId(): string {
  return Date.now().toString(36);
}
