import type { EntityManager } from '@mikro-orm/postgresql';
import type { NewRecord, PurgedBatch, RecordStore, StoredRecord, WriteResult } from './store';

/** PostgreSQL `lock_not_available`: lock_timeout ended a wait. */
const LOCK_NOT_AVAILABLE = '55P03';

/** The records in PostgreSQL's `idempotency_records`, through MikroORM with bound parameters. */
export class PostgresRecordStore implements RecordStore<EntityManager> {
  async find(em: EntityManager, scope: string, key: string): Promise<StoredRecord | null> {
    const [row] = await em.execute<Omit<StoredRecord, 'scope' | 'key'>[]>(
      `select operation, fingerprint, outcome, format, key_id as "keyId", result, created_at as "createdAt", expires_at as "expiresAt"
         from idempotency_records where user_id = ? and key = ? and expires_at > now()`,
      [scope, key],
    );
    // The driver hands timestamps over as text (forceUtcTimezone).
    return row ? { scope, key, ...row, createdAt: new Date(row.createdAt), expiresAt: new Date(row.expiresAt) } : null;
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
    if (!Number.isInteger(record.ttlSeconds) || record.ttlSeconds < 1) throw new RangeError('ttlSeconds must be a positive integer');
    try {
      // Waits for a transaction writing the same key; xmax is set only on the row an update replaced.
      const [row] = await tx.execute<{ created_at: Date; expires_at: Date; replaced: boolean }[]>(
        `insert into idempotency_records as r
                (user_id, key, operation, fingerprint, outcome, format, key_id, result, created_at, expires_at)
         values (?, ?, ?, ?, ?, ?, ?, ?, now(), now() + make_interval(secs => ?))
         on conflict (user_id, key) do update
            set operation = excluded.operation, fingerprint = excluded.fingerprint, outcome = excluded.outcome,
                format = excluded.format, key_id = excluded.key_id, result = excluded.result,
                created_at = excluded.created_at, expires_at = excluded.expires_at
          where r.expires_at <= now()
         returning created_at, expires_at, xmax <> 0 as replaced`,
        [
          record.scope,
          record.key,
          record.operation,
          record.fingerprint,
          record.outcome,
          record.format,
          record.keyId,
          record.result,
          record.ttlSeconds,
        ],
      );
      if (!row) return { kind: 'taken' };
      const { ttlSeconds: _ttl, ...written } = record;
      return {
        kind: 'written',
        record: { ...written, createdAt: new Date(row.created_at), expiresAt: new Date(row.expires_at) },
        replacedExpired: row.replaced === true,
      };
    } catch (error) {
      if ((error as { code?: unknown }).code === LOCK_NOT_AVAILABLE) return { kind: 'busy' };
      throw error;
    }
  }

  /**
   * Finds the batch's last expiry, then deletes the range up to it: with both ends given as
   * values the planner scans just that range of the expiry index (docs/performance.md).
   */
  async purge(em: EntityManager, batchSize: number, from: Date | null): Promise<PurgedBatch> {
    if (!Number.isInteger(batchSize) || batchSize < 1) throw new RangeError('batchSize must be a positive integer');
    const start = from ? from.toISOString() : null;
    // The expiry as text keeps its microseconds, which a Date would drop.
    const ends = await em.execute<{ last: string }[]>(
      `select expires_at::text as last from idempotency_records
        where expires_at <= now() and expires_at >= coalesce(?::timestamptz, '-infinity')
        order by expires_at offset ? limit 1`,
      [start, batchSize - 1],
    );
    const end = ends[0]?.last ?? null;
    const [row] = await em.execute<{ deleted: string; last: Date | string | null }[]>(
      `with gone as (
         delete from idempotency_records
          where expires_at <= now()
            and expires_at >= coalesce(?::timestamptz, '-infinity')
            and expires_at <= coalesce(?::timestamptz, 'infinity')
         returning expires_at)
       select count(*) as deleted, max(expires_at) as last from gone`,
      [start, end],
    );
    return { deleted: Number(row?.deleted ?? 0), last: row?.last ? new Date(row.last) : null };
  }
}
