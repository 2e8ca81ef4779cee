import type { EntityManager } from '@mikro-orm/postgresql';
import type { Outcome } from './record.entity';

/** A record as read from or written to the database. */
export interface RecordRow {
  readonly userId: string;
  readonly key: string;
  readonly operation: string;
  readonly fingerprint: Buffer;
  readonly outcome: Outcome;
  /** The codec's JSON form of the stored result. */
  readonly result: unknown;
  readonly createdAt: Date;
  readonly expiresAt: Date;
  /** True when the insert replaced an expired record of the same key. */
  readonly replacedExpired?: boolean;
}

export type NewRecord = Omit<RecordRow, 'createdAt' | 'expiresAt'> & { readonly ttlSeconds: number };

interface Row {
  operation: string;
  fingerprint: Buffer;
  outcome: Outcome;
  result: unknown;
  created_at: Date;
  expires_at: Date;
  replaced?: boolean;
}

/**
 * Storage of idempotency records, as single SQL statements through MikroORM's connection (the
 * hot path needs exact control of round trips). Times come from the database clock, so every
 * process agrees on expiry.
 */
export class IdempotencyStore {
  /** The live record of (user, key), or null: one primary-key read. */
  async findLive(em: EntityManager, userId: string, key: string): Promise<RecordRow | null> {
    const rows = await em.execute<Row[]>(
      `select operation, fingerprint, outcome, result, created_at, expires_at
         from idempotency_records
        where user_id = ? and key = ? and expires_at > now()`,
      [userId, key],
    );
    const row = rows[0];
    return row ? toRecord(userId, key, row) : null;
  }

  /**
   * Writes a finished record, replacing an expired one. Returns the stored row, or null when a
   * live record already holds the key. When another transaction is writing the same key, the
   * statement waits for it (bounded by the connection's lock_timeout).
   */
  async insert(em: EntityManager, record: NewRecord): Promise<RecordRow | null> {
    const rows = await em.execute<Pick<Row, 'created_at' | 'expires_at' | 'replaced'>[]>(
      `insert into idempotency_records as r
              (user_id, key, operation, fingerprint, outcome, result, created_at, expires_at)
       values (?, ?, ?, ?, ?, ?::jsonb, now(), now() + make_interval(secs => ?))
       on conflict (user_id, key) do update
          set operation = excluded.operation, fingerprint = excluded.fingerprint, outcome = excluded.outcome,
              result = excluded.result, created_at = excluded.created_at, expires_at = excluded.expires_at
        where r.expires_at <= now()
       returning created_at, expires_at, xmax <> 0 as replaced`,
      [record.userId, record.key, record.operation, record.fingerprint, record.outcome, JSON.stringify(record.result), record.ttlSeconds],
    );
    const row = rows[0];
    // Only the times come back: the written values are already at hand, and the stored result
    // (a whole payload) need not travel back from the database and be parsed again.
    return row
      ? {
          userId: record.userId,
          key: record.key,
          operation: record.operation,
          fingerprint: record.fingerprint,
          outcome: record.outcome,
          result: record.result,
          createdAt: new Date(row.created_at),
          expiresAt: new Date(row.expires_at),
          replacedExpired: row.replaced === true,
        }
      : null;
  }

  /**
   * Deletes up to `batchSize` expired records, oldest first, from `from` on (the expiry where
   * the previous batch ended; null: from the start). Rows are found through the expiry index
   * and deleted by their physical address (ctid), several times faster than joining back on
   * the primary key; rows another transaction holds (a key being re-executed) are skipped, so
   * the purge never waits on live traffic. Starting where the previous batch ended keeps the
   * index scan off the entries of rows already deleted, which stay in the index until vacuum.
   */
  async purgeExpiredBatch(em: EntityManager, batchSize: number, from: Date | null = null): Promise<PurgedBatch> {
    const rows = await em.execute<{ deleted: string; last: Date | string | null }[]>(
      `with gone as (
         delete from idempotency_records
          where ctid = any (array(
                  select ctid from idempotency_records
                   where expires_at <= now() and expires_at >= coalesce(?::timestamptz, '-infinity')
                   order by expires_at
                   limit ?
                     for update skip locked))
         returning expires_at)
       select count(*) as deleted, max(expires_at) as last from gone`,
      [from ? from.toISOString() : null, batchSize],
    );
    const row = rows[0];
    return { deleted: Number(row?.deleted ?? 0), last: row?.last ? new Date(row.last) : null };
  }
}

/** What one purge batch did. */
export interface PurgedBatch {
  readonly deleted: number;
  /** The latest expiry among the deleted rows; the next batch starts there. */
  readonly last: Date | null;
}

function toRecord(userId: string, key: string, row: Row): RecordRow {
  return {
    userId,
    key,
    operation: row.operation,
    fingerprint: row.fingerprint,
    outcome: row.outcome,
    result: row.result,
    createdAt: new Date(row.created_at),
    expiresAt: new Date(row.expires_at),
  };
}
