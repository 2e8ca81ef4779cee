import type { EncodedResult } from './codec';

/** Outcome of a first execution, as stored and replayed. */
export const Outcome = { Succeeded: 'SUCCEEDED', Failed: 'FAILED' } as const;
export type Outcome = (typeof Outcome)[keyof typeof Outcome];

/** A resource a first execution created, named so that a late retry can fetch it (e.g. `{ type: 'Order', id }`). */
export interface CreatedResource {
  readonly type: string;
  readonly id: string;
}

/**
 * What a record keeps about its first execution once its result expired: no payload, enough to
 * answer a late retry until `forgottenAt`.
 */
export interface Tombstone {
  readonly scope: string;
  readonly key: string;
  readonly operation: string;
  readonly fingerprint: Buffer;
  readonly outcome: Outcome;
  readonly resources: readonly CreatedResource[];
  readonly createdAt: Date;
  /** The result replays until then. */
  readonly expiresAt: Date;
  /** The tombstone ends then and the key is unused again; equal to `expiresAt` without a tombstone. */
  readonly forgottenAt: Date;
}

/** A finished record: the outcome of the first execution with (scope, key), result included. */
export interface StoredRecord extends Tombstone, EncodedResult {}

export type NewRecord = Omit<StoredRecord, 'createdAt' | 'expiresAt' | 'forgottenAt'> & {
  readonly ttlSeconds: number;
  /** How long the tombstone lives after the result expires; 0: none. */
  readonly tombstoneSeconds: number;
};

/** What {@link RecordStore.find} found for a key that is not unused. */
export type Found = { readonly kind: 'live'; readonly record: StoredRecord } | { readonly kind: 'expired'; readonly tombstone: Tombstone };

/** What {@link RecordStore.write} did. */
export type WriteResult =
  | { readonly kind: 'written'; readonly record: StoredRecord; readonly replacedExpired: boolean }
  /** A live record or a tombstone holds the key: another transaction wrote it first. */
  | { readonly kind: 'taken' }
  /** Another open transaction holds the key for longer than the transaction's wait. */
  | { readonly kind: 'busy' };

/** What one purge batch did. */
export interface PurgedBatch {
  /** Rows changed: results dropped by {@link RecordStore.tombstone}, rows deleted by {@link RecordStore.purge}. */
  readonly count: number;
  /** The latest expiry (or end of tombstone) among those rows; the next batch starts there. */
  readonly last: Date | null;
}

/**
 * Where records live. `Db` is how the store reaches its data: an EntityManager for
 * PostgreSQL. Times come from the store's clock, so every process agrees on expiry. Whether a
 * key is live, a tombstone or unused follows from its times alone; the purge only reclaims space.
 */
export interface RecordStore<Db> {
  /** The live record or tombstone of (scope, key), or null: one read, in no transaction. */
  find(db: Db, scope: string, key: string): Promise<Found | null>;
  /**
   * Runs `work` in a new transaction whose lock waits end after `waitMs` (0: no bound), and
   * commits it when `work` says so, else rolls it back. Errors roll back and propagate.
   */
  transaction<T>(db: Db, waitMs: number, work: (tx: Db) => Promise<{ commit: boolean; value: T }>): Promise<T>;
  /** Writes a record in `tx`'s transaction, replacing only a record whose tombstone ended. */
  write(tx: Db, record: NewRecord): Promise<WriteResult>;
  /**
   * Drops the results of up to about `batchSize` expired records, oldest first, from expiry `from` on; the rows stay as
   * tombstones. A row whose tombstone also ended is left to {@link RecordStore.purge}.
   */
  tombstone(db: Db, batchSize: number, from: Date | null): Promise<PurgedBatch>;
  /** Deletes up to about `batchSize` rows whose tombstone ended, oldest first, from that end `from` on. */
  purge(db: Db, batchSize: number, from: Date | null): Promise<PurgedBatch>;
}
