import { readFileSync } from 'node:fs';
import type pg from 'pg';
import { createIdempotency } from '../src/idempotency';
import type { BenchDatabase, BenchServer } from './fixture';
import { type LoadResult, runLoad, window } from './load';
import { type LoadSettings, newOrderRequest } from './scenarios';
import { fmt, sleep } from './support';

// Records loaded into a database as real traffic would have written them, and the purge of
// their expired part under createOrder load.

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

/**
 * The records the scale scenarios and the purge run on: `count` live and as many expired copies
 * of `template`'s (keys `live-<id>-n` and `expired-<id>-n`), then VACUUM ANALYZE.
 */
export async function loadScaleRecords(pool: pg.Pool, template: { userId: string; key: string }, id: string, count: number): Promise<void> {
  await loadRecords(pool, template, `live-${id}-`, count, 'live');
  await loadRecords(pool, template, `expired-${id}-`, count, 'expired');
  await pool.query('vacuum analyze idempotency_records');
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
