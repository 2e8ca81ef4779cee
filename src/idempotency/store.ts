import type { EncodedResult } from './codec';

/** Outcome of a first execution, as stored and replayed. */
export const Outcome = { Succeeded: 'SUCCEEDED', Failed: 'FAILED' } as const;
export type Outcome = (typeof Outcome)[keyof typeof Outcome];

/** A finished record: the outcome of the first execution with (scope, key). */
export interface StoredRecord extends EncodedResult {
  readonly scope: string;
  readonly key: string;
  readonly operation: string;
  readonly fingerprint: Buffer;
  readonly outcome: Outcome;
  readonly createdAt: Date;
  readonly expiresAt: Date;
}

export type NewRecord = Omit<StoredRecord, 'createdAt' | 'expiresAt'> & { readonly ttlSeconds: number };

/** What {@link RecordStore.write} did. */
export type WriteResult =
  | { readonly kind: 'written'; readonly record: StoredRecord; readonly replacedExpired: boolean }
  /** A live record holds the key: another transaction wrote it first. */
  | { readonly kind: 'taken' }
  /** Another open transaction holds the key for longer than the transaction's wait. */
  | { readonly kind: 'busy' };

/** What one purge batch did. */
export interface PurgedBatch {
  readonly deleted: number;
  /** The latest expiry among the deleted rows; the next batch starts there. */
  readonly last: Date | null;
}

/**
 * Where records live. `Db` is how the store reaches its data: an EntityManager for
 * PostgreSQL. Times come from the store's clock, so every process agrees on expiry.
 */
export interface RecordStore<Db> {
  /** The live record of (scope, key), or null: one read, in no transaction. */
  find(db: Db, scope: string, key: string): Promise<StoredRecord | null>;
  /**
   * Runs `work` in a new transaction whose lock waits end after `waitMs` (0: no bound), and
   * commits it when `work` says so, else rolls it back. Errors roll back and propagate.
   */
  transaction<T>(db: Db, waitMs: number, work: (tx: Db) => Promise<{ commit: boolean; value: T }>): Promise<T>;
  /** Writes a record in `tx`'s transaction, replacing only an expired record of the key. */
  write(tx: Db, record: NewRecord): Promise<WriteResult>;
  /** Deletes up to about `batchSize` expired records, oldest first, from expiry `from` on. */
  purge(db: Db, batchSize: number, from: Date | null): Promise<PurgedBatch>;
}
