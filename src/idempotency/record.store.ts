import type { EntityManager, Knex } from '@mikro-orm/postgresql';
import type { QueryResult, QueryResultRow } from 'pg';
import { beginWith, rideWithCommit } from '../database/transaction-riders';
import type { Outcome } from './record.entity';

/** A record as read from or written to the database. */
export interface RecordRow {
  readonly userId: string;
  readonly key: string;
  readonly operation: string;
  readonly fingerprint: Buffer;
  readonly outcome: Outcome;
  /** The stored result, as the codec wrote it. */
  readonly result: Buffer;
  readonly createdAt: Date;
  readonly expiresAt: Date;
  /** True when the insert replaced an expired record of the same key. */
  readonly replacedExpired?: boolean;
}

export type NewRecord = Omit<RecordRow, 'createdAt' | 'expiresAt'> & {
  readonly ttlSeconds: number;
};

/** A record read by its key, whether it is still live or has expired. */
export type FoundRecord = RecordRow & { readonly live: boolean };

/** The key's record is live: nothing ran. */
export interface Live {
  readonly live: FoundRecord;
}

/** The key had no live record: the work ran, and this is its result. */
export interface Worked<T> {
  readonly live: null;
  readonly value: T;
}

/** A record written with its transaction's COMMIT. */
export interface PendingRecord {
  /** The stored record; only once the transaction has committed. */
  committed(): RecordRow;
}

/** The name of the (user_id, key) primary key: a violation of it means the key is taken. */
export const RECORD_KEY_CONSTRAINT = 'idempotency_records_pkey';

interface Row extends QueryResultRow {
  operation: string;
  fingerprint: Buffer;
  outcome: Outcome;
  result: Buffer;
  created_at: Date;
  expires_at: Date;
  replaced?: boolean;
  live?: boolean;
}

/**
 * Storage of idempotency records, as single SQL statements on MikroORM's connections (the hot
 * path needs exact control of round trips). Times come from the database clock, so every
 * process agrees on expiry.
 */
export class IdempotencyStore {
  /** The record of (user, key), live or expired, or null: one primary-key read. */
  async find(em: EntityManager, userId: string, key: string): Promise<FoundRecord | null> {
    const { rows } = await query<Row>(em, findStatement(userId, key));
    return foundRecord(userId, key, rows);
  }

  /**
   * Reads the record of (user, key) as a new transaction of `em` begins, in the same message as
   * the BEGIN (see database/transaction-riders.ts), so the read costs no round trip of its own.
   * A live record is returned, and the transaction ends having written nothing. Otherwise `work`
   * runs in that transaction (through `em.transactional`), given the key's expired record or
   * null, and its result is returned. When `em` is already in a transaction, the read is sent
   * on its own first, and `work` runs in a savepoint.
   */
  async unlessLive<T>(
    em: EntityManager,
    userId: string,
    key: string,
    work: (tx: EntityManager, expired: FoundRecord | null) => Promise<T>,
  ): Promise<Live | Worked<T>> {
    if (em.getTransactionContext()) {
      const found = await this.find(em, userId, key);
      if (found?.live) return { live: found };
      return { live: null, value: await em.transactional((tx) => work(tx, found)) };
    }
    const text = seenByOrm(em, findStatement(userId, key));
    return beginWith(em.getConnection().getKnex(), text, async (transaction) => {
      const found = foundRecord(userId, key, transaction.result.rows as Row[]);
      if (found?.live) return { live: found };
      return { live: null, value: await transaction.continueIn(() => em.transactional((tx) => work(tx, found))) };
    });
  }

  /** The live record of (user, key), or null: one primary-key read. */
  async findLive(em: EntityManager, userId: string, key: string): Promise<RecordRow | null> {
    const found = await this.find(em, userId, key);
    return found?.live ? found : null;
  }

  /**
   * Writes the record of a key that has none, live or expired, in the same message as the
   * COMMIT of `em`'s transaction (see database/transaction-riders.ts): the insert costs no round trip
   * of its own. If a record of the key was written meanwhile, the insert fails with a unique
   * violation of {@link RECORD_KEY_CONSTRAINT} and the whole transaction rolls back; if another
   * transaction is writing one, the insert waits for it (bounded by lock_timeout). Returns
   * undefined when the transaction cannot carry the insert: then {@link insert} it.
   */
  insertWithCommit(em: EntityManager, record: NewRecord): PendingRecord | undefined {
    checkTtl(record.ttlSeconds);
    const trx = em.getTransactionContext<Knex.Transaction>();
    if (!trx) return undefined;
    const rider = rideWithCommit(
      trx,
      seenByOrm(em, `insert into idempotency_records ${columnsAndValues(record)} returning created_at, expires_at`),
    );
    if (!rider) return undefined;
    return {
      committed: () => {
        const row = rider.result?.rows[0] as Pick<Row, 'created_at' | 'expires_at'> | undefined;
        if (!row) throw new Error('the record was not written: its transaction has not committed');
        return stored(record, row);
      },
    };
  }

  /**
   * Writes a finished record, replacing an expired one. Returns the stored row, or null when a
   * live record already holds the key. When another transaction is writing the same key, the
   * statement waits for it (bounded by the connection's lock_timeout).
   */
  async insert(em: EntityManager, record: NewRecord): Promise<RecordRow | null> {
    checkTtl(record.ttlSeconds);
    const { rows } = await query<Pick<Row, 'created_at' | 'expires_at' | 'replaced'>>(
      em,
      `insert into idempotency_records as r ${columnsAndValues(record)}
       on conflict (user_id, key) do update
          set operation = excluded.operation, fingerprint = excluded.fingerprint, outcome = excluded.outcome,
              result = excluded.result, created_at = excluded.created_at, expires_at = excluded.expires_at
        where r.expires_at <= now()
       returning created_at, expires_at, xmax <> 0 as replaced`,
    );
    const row = rows[0];
    return row ? stored(record, row) : null;
  }

  /**
   * Deletes one batch of expired records, oldest first, from `from` on (the expiry where the
   * previous batch ended, inclusive; null: from the start): every expired record whose expiry
   * lies between `from` and the expiry of the `batchSize`-th one. That is `batchSize` records
   * plus any sharing that last expiry to the microsecond, which only records written by one
   * bulk statement do.
   *
   * Two statements: the first finds the batch's last expiry (an index-only scan of
   * `batchSize` entries of the expiry index), the second deletes the range up to it. With
   * both ends given as values, the planner knows the range holds about one batch and scans
   * just that range of the index. With the end left to a subquery in the same statement, it
   * could only guess the range's size, and purges of a large backlog were seen reading about
   * every remaining expired row's page for each batch. Each row's page is visited once;
   * as records lie in the table roughly in the order they were written, the pages of a batch
   * are mostly neighbours. A record being re-executed (its expired row replaced in an open
   * transaction) is waited for, bounded by lock_timeout, and then kept, as it no longer
   * matches. Starting where the previous batch ended keeps the scans off the entries of rows
   * already deleted, which stay in the index until vacuum.
   */
  async purgeExpiredBatch(em: EntityManager, batchSize: number, from: Date | null = null): Promise<PurgedBatch> {
    if (!Number.isInteger(batchSize) || batchSize < 1) throw new RangeError('batchSize must be a positive integer');
    const start = from ? from.toISOString() : null;
    // The expiry as text keeps its microseconds, which a Date would drop.
    const ends = await em.execute<{ last: string }[]>(
      `select expires_at::text as last from idempotency_records
        where expires_at <= now() and expires_at >= coalesce(?::timestamptz, '-infinity')
        order by expires_at
       offset ? limit 1`,
      [start, batchSize - 1],
    );
    // No batchSize-th expired record: fewer remain, and the batch takes them all.
    const end = ends[0]?.last ?? null;
    const rows = await em.execute<{ deleted: string; last: Date | string | null }[]>(
      `with gone as (
         delete from idempotency_records
          where expires_at <= now()
            and expires_at >= coalesce(?::timestamptz, '-infinity')
            and expires_at <= coalesce(?::timestamptz, 'infinity')
         returning expires_at)
       select count(*) as deleted, max(expires_at) as last from gone`,
      [start, end],
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

/**
 * Sends one statement, its values already written as literals, on the connection `em` uses:
 * its transaction's, else one borrowed from the pool for this statement. The statement goes as
 * a single simple-protocol message, without the ORM's per-query formatting and logging, which
 * cost as much CPU as the statement itself on the engine's two hot-path statements. The ORM's
 * `onQuery` hook still sees (and may rewrite) every statement.
 */
async function query<R extends QueryResultRow>(em: EntityManager, sql: string): Promise<QueryResult<R>> {
  const text = seenByOrm(em, sql);
  const knex = em.getTransactionContext<Knex.Transaction>() ?? em.getConnection().getKnex();
  const connection: { query(sql: string): Promise<QueryResult<R>> } = await knex.client.acquireConnection();
  try {
    return await connection.query(text);
  } finally {
    await knex.client.releaseConnection(connection);
  }
}

/** `sql` as the ORM's `onQuery` hook returns it (the hook may rewrite it), for a statement sent past the ORM. */
function seenByOrm(em: EntityManager, sql: string): string {
  const onQuery = em.config.get('onQuery');
  return onQuery ? onQuery(sql, []) : sql;
}

function checkTtl(ttlSeconds: number): void {
  if (!Number.isInteger(ttlSeconds) || ttlSeconds < 1) throw new RangeError('ttlSeconds must be a positive integer');
}

/** The column list and values of a record's insert, as literals; times from the database clock. */
function columnsAndValues(record: NewRecord): string {
  return `(user_id, key, operation, fingerprint, outcome, result, created_at, expires_at)
    values (${literal(record.userId)}, ${literal(record.key)}, ${literal(record.operation)},
           decode('${record.fingerprint.toString('hex')}', 'hex'), ${literal(record.outcome)},
           decode('${record.result.toString('hex')}', 'hex'), now(), now() + make_interval(secs => ${record.ttlSeconds}))`;
}

/**
 * The record as written. Only the times come back from the insert: the written values are
 * already at hand, and the stored result (a whole payload) need not travel back and be parsed.
 */
function stored(record: NewRecord, row: Pick<Row, 'created_at' | 'expires_at' | 'replaced'>): RecordRow {
  return {
    userId: record.userId,
    key: record.key,
    operation: record.operation,
    fingerprint: record.fingerprint,
    outcome: record.outcome,
    result: record.result,
    createdAt: new Date(row.created_at),
    expiresAt: new Date(row.expires_at),
    replacedExpired: row.replaced === true,
  };
}

/**
 * `value` as an SQL string literal, written as pg's `escapeLiteral` writes it (quotes doubled,
 * and the `E''` form with doubled backslashes when there are any, so it reads the same whatever
 * `standard_conforming_strings` says), but without its loop over every character, which on a
 * stored payload cost more than the rest of the statement's text.
 */
function literal(value: string): string {
  const quoted = value.replaceAll("'", "''");
  return value.includes('\\') ? ` E'${quoted.replaceAll('\\', '\\\\')}'` : `'${quoted}'`;
}

/** The primary-key read of a record, live or expired. */
function findStatement(userId: string, key: string): string {
  return `select operation, fingerprint, outcome, result, created_at, expires_at, expires_at > now() as live
     from idempotency_records
    where user_id = ${literal(userId)} and key = ${literal(key)}`;
}

function foundRecord(userId: string, key: string, rows: readonly Row[]): FoundRecord | null {
  const row = rows[0];
  return row ? { ...toRecord(userId, key, row), live: row.live === true } : null;
}

function toRecord(userId: string, key: string, row: Row): RecordRow {
  return {
    userId,
    key,
    operation: row.operation,
    fingerprint: ownCopy(row.fingerprint),
    outcome: row.outcome,
    result: ownCopy(row.result),
    createdAt: new Date(row.created_at),
    expiresAt: new Date(row.expires_at),
  };
}

/**
 * `bytes` in a buffer of its own. The driver cuts small column values from Node's shared 8 kB
 * pool; a record kept in the replay cache would otherwise hold a whole pool slab alive.
 */
function ownCopy(bytes: Buffer): Buffer {
  const copy = Buffer.allocUnsafeSlow(bytes.length);
  bytes.copy(copy);
  return copy;
}
