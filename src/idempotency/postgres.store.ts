import type { EntityManager } from '@mikro-orm/postgresql';
import type { CreatedResource, Found, NewRecord, PurgedBatch, RecordStore, StoredRecord, WriteResult } from './store';

/** PostgreSQL `lock_not_available`: lock_timeout ended a wait. */
const LOCK_NOT_AVAILABLE = '55P03';

/** When a row's tombstone ends; the expression its index is built on (the migration's). */
const FORGOTTEN_AT = 'coalesce(forgotten_at, expires_at)';

interface Row {
  operation: string;
  fingerprint: Buffer;
  outcome: StoredRecord['outcome'];
  format: number;
  keyId: string | null;
  result: Buffer | null;
  resources: CreatedResource[];
  createdAt: string;
  expiresAt: string;
  forgottenAt: string;
  live: boolean;
}

/** The records in PostgreSQL's `idempotency_records`, through `em.execute` with parameters: no value is written into SQL text here. */
export class PostgresRecordStore implements RecordStore<EntityManager> {
  async find(em: EntityManager, scope: string, key: string): Promise<Found | null> {
    // An expired result is never read back, whether or not the purge has dropped it yet.
    const [row] = await em.execute<Row[]>(
      `select operation, fingerprint, outcome, format, key_id as "keyId", case when expires_at > now() then result end as result,
              resources, created_at as "createdAt", expires_at as "expiresAt", ${FORGOTTEN_AT} as "forgottenAt", expires_at > now() as live
         from idempotency_records where user_id = ? and key = ? and ${FORGOTTEN_AT} > now()`,
      [scope, key],
    );
    if (!row) return null;
    const { live, result, format, keyId, ...rest } = row;
    // The driver hands timestamps over as text (forceUtcTimezone).
    const tombstone = {
      scope,
      key,
      ...rest,
      createdAt: new Date(row.createdAt),
      expiresAt: new Date(row.expiresAt),
      forgottenAt: new Date(row.forgottenAt),
    };
    return live && result ? { kind: 'live', record: { ...tombstone, format, keyId, result } } : { kind: 'expired', tombstone };
  }

  async transaction<T>(em: EntityManager, waitMs: number, work: (tx: EntityManager) => Promise<{ commit: boolean; value: T }>) {
    const tx = em.fork();
    await tx.begin();
    try {
      // SET LOCAL: the bound ends with this transaction and governs no other lock wait.
      await tx.execute(`select set_config('lock_timeout', ?, true)`, [`${waitMs}ms`]);
      const { commit, value } = await work(tx);
      if (commit) await tx.commit();
      else await tx.rollback();
      return value;
    } catch (error) {
      if (tx.isInTransaction()) await tx.rollback().catch(() => {});
      throw error;
    }
  }

  async write(tx: EntityManager, record: NewRecord): Promise<WriteResult> {
    try {
      // Waits for a transaction writing the same key; xmax is set only on the row an update replaced.
      const [row] = await tx.execute<{ created_at: string; expires_at: string; forgotten_at: string; replaced: boolean }[]>(
        `insert into idempotency_records as r
                (user_id, key, operation, fingerprint, outcome, format, key_id, result, resources, created_at, expires_at, forgotten_at)
         values (?, ?, ?, ?, ?, ?, ?, ?, ?::jsonb, now(), now() + make_interval(secs => ?), now() + make_interval(secs => ?))
         on conflict (user_id, key) do update
            set operation = excluded.operation, fingerprint = excluded.fingerprint, outcome = excluded.outcome,
                format = excluded.format, key_id = excluded.key_id, result = excluded.result, resources = excluded.resources,
                created_at = excluded.created_at, expires_at = excluded.expires_at, forgotten_at = excluded.forgotten_at
          where coalesce(r.forgotten_at, r.expires_at) <= now()
         returning created_at, expires_at, forgotten_at, xmax <> 0 as replaced`,
        [
          record.scope,
          record.key,
          record.operation,
          record.fingerprint,
          record.outcome,
          record.format,
          record.keyId,
          record.result,
          JSON.stringify(record.resources),
          record.ttlSeconds,
          record.ttlSeconds + record.tombstoneSeconds,
        ],
      );
      if (!row) return { kind: 'taken' };
      const { ttlSeconds: _ttl, tombstoneSeconds: _tombstone, ...written } = record;
      return {
        kind: 'written',
        record: {
          ...written,
          createdAt: new Date(row.created_at),
          expiresAt: new Date(row.expires_at),
          forgottenAt: new Date(row.forgotten_at),
        },
        replacedExpired: row.replaced === true,
      };
    } catch (error) {
      if ((error as { code?: unknown }).code === LOCK_NOT_AVAILABLE) return { kind: 'busy' };
      throw error;
    }
  }

  async tombstone(em: EntityManager, batchSize: number, from: Date | null): Promise<PurgedBatch> {
    return this.batch(em, batchSize, from ?? (await this.tombstonesEnd(em)), {
      change: 'update idempotency_records set result = null, key_id = null',
      time: 'expires_at',
      // A row whose tombstone ended is left to the delete pass.
      only: `result is not null and ${FORGOTTEN_AT} > now()`,
    });
  }

  /**
   * Where the expired records still holding a result begin: a minute before the newest tombstone,
   * since each purge drops results in expiry order, so tombstones come first. No index tells a
   * tombstone from a record (dropping a result is then a HOT update), so a binary search over the
   * expired rows' times finds that tombstone to within a minute, one row per probe. Missed: only a
   * record committed over a minute after its own expiry; it is answered as expired all the same
   * and deleted with its tombstone (docs/operations.md#tombstones).
   */
  private async tombstonesEnd(em: EntityManager): Promise<Date | null> {
    // Times as epoch milliseconds: numbers to bisect, whatever the session's time zone.
    const [range] = await em.execute<{ low: number | null; high: number | null }[]>(
      `select (extract(epoch from min(expires_at)) * 1000)::float8 as low, (extract(epoch from max(expires_at)) * 1000)::float8 as high
         from idempotency_records where expires_at <= now()`,
    );
    if (range?.low == null || range.high == null) return null;
    let low = range.low;
    let high = range.high + 1;
    let newest: number | null = null;
    while (high - low > 60_000) {
      const middle = (low + high) / 2;
      const [first] = await em.execute<{ at: number; tombstone: boolean }[]>(
        `select (extract(epoch from expires_at) * 1000)::float8 as at, result is null as tombstone from idempotency_records
          where expires_at >= to_timestamp(?::float8 / 1000) and expires_at <= now() order by expires_at limit 1`,
        [middle],
      );
      if (first?.tombstone) {
        newest = first.at;
        low = newest;
      } else high = middle;
    }
    return newest === null ? null : new Date(newest - 60_000);
  }

  async purge(em: EntityManager, batchSize: number, from: Date | null): Promise<PurgedBatch> {
    return this.batch(em, batchSize, from, { change: 'delete from idempotency_records', time: FORGOTTEN_AT, only: null });
  }

  /**
   * Finds the batch's last time, then changes the rows up to it: with both ends given as values
   * the planner scans just that range of the index on `time` (docs/performance.md). `change` is
   * the statement without its `where`; `only` narrows the rows to those still holding a result.
   */
  private async batch(
    em: EntityManager,
    batchSize: number,
    from: Date | null,
    sql: { readonly change: string; readonly time: string; readonly only: string | null },
  ): Promise<PurgedBatch> {
    if (!Number.isInteger(batchSize) || batchSize < 1) throw new RangeError('batchSize must be a positive integer');
    const start = from ? from.toISOString() : null;
    const due = `${sql.only ? `${sql.only} and ` : ''}${sql.time} <= now() and ${sql.time} >= coalesce(?::timestamptz, '-infinity')`;
    return em.transactional(async (tx) => {
      // Its commit need not wait for the WAL to reach the disk: a batch a crash loses is redone by the next purge.
      await tx.execute(`select set_config('synchronous_commit', 'off', true)`);
      // The time as text keeps its microseconds, which a Date would drop.
      const ends = await tx.execute<{ last: string }[]>(
        `select ${sql.time}::text as last from idempotency_records where ${due} order by ${sql.time} offset ? limit 1`,
        [start, batchSize - 1],
      );
      const end = ends[0]?.last ?? null;
      const [row] = await tx.execute<{ count: string; last: Date | string | null }[]>(
        `with changed as (
           ${sql.change}
            where ${due} and ${sql.time} <= coalesce(?::timestamptz, 'infinity')
           returning ${sql.time} as due_at)
         select count(*) as count, max(due_at) as last from changed`,
        [start, end],
      );
      return { count: Number(row?.count ?? 0), last: row?.last ? new Date(row.last) : null };
    });
  }
}
