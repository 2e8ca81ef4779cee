import { setTimeout as delay } from 'node:timers/promises';
import type { Found, NewRecord, PurgedBatch, RecordStore, StoredRecord, WriteResult } from '../../src/idempotency/store';

/** A row as stored: a tombstone's result is null once the purge dropped it. */
type Row = StoredRecord | (Omit<StoredRecord, 'result'> & { readonly result: null });

/** A transaction of the in-memory store: its writes become visible when it commits. */
export interface MemoryTx {
  readonly writes: Map<string, StoredRecord>;
  readonly waitMs: number;
  /** Settles when the transaction ends. */
  readonly ended: Promise<void>;
}

/**
 * The store contract in memory, for fast unit tests of the handler. Like PostgreSQL, a write
 * to a key another open transaction has written waits for that transaction to end, bounded by
 * the transaction's wait.
 */
export class MemoryRecordStore implements RecordStore<MemoryTx | null> {
  private readonly holders = new Map<string, MemoryTx>();

  constructor(private readonly now: () => number = Date.now) {}

  readonly records = new Map<string, Row>();

  async find(_db: MemoryTx | null, scope: string, key: string): Promise<Found | null> {
    const record = this.records.get(idOf(scope, key));
    if (!record || record.forgottenAt.getTime() <= this.now()) return null;
    if (record.expiresAt.getTime() > this.now() && record.result) return { kind: 'live', record: { ...record, result: record.result } };
    const { format: _format, keyId: _keyId, result: _result, ...tombstone } = record;
    return { kind: 'expired', tombstone };
  }

  async transaction<T>(_db: MemoryTx | null, waitMs: number, work: (tx: MemoryTx) => Promise<{ commit: boolean; value: T }>) {
    const ending = new AbortController();
    const ended = new Promise<void>((resolve) => ending.signal.addEventListener('abort', () => resolve()));
    const tx: MemoryTx = { writes: new Map(), waitMs, ended };
    try {
      const { commit, value } = await work(tx);
      if (commit) for (const [id, record] of tx.writes) this.records.set(id, record);
      return value;
    } finally {
      for (const id of tx.writes.keys()) if (this.holders.get(id) === tx) this.holders.delete(id);
      ending.abort();
    }
  }

  async write(tx: MemoryTx | null, record: NewRecord): Promise<WriteResult> {
    if (!tx) throw new Error('write needs a transaction');
    const id = idOf(record.scope, record.key);
    for (let holder = this.holders.get(id); holder && holder !== tx; holder = this.holders.get(id)) {
      if (!(await settlesWithin(holder.ended, tx.waitMs))) return { kind: 'busy' };
    }
    const existing = this.records.get(id);
    if (existing && existing.forgottenAt.getTime() > this.now()) return { kind: 'taken' };
    const { ttlSeconds, tombstoneSeconds, ...fields } = record;
    const now = this.now();
    const expiresAt = now + ttlSeconds * 1000;
    const written: StoredRecord = {
      ...fields,
      createdAt: new Date(now),
      expiresAt: new Date(expiresAt),
      forgottenAt: new Date(expiresAt + tombstoneSeconds * 1000),
    };
    this.holders.set(id, tx);
    tx.writes.set(id, written);
    return { kind: 'written', record: written, replacedExpired: existing !== undefined };
  }

  async tombstone(_db: MemoryTx | null, batchSize: number, from: Date | null): Promise<PurgedBatch> {
    // A row whose tombstone ended is left to the delete pass.
    const batch = this.due(batchSize, from, (record) =>
      record.result && record.forgottenAt.getTime() > this.now() ? record.expiresAt : null,
    );
    for (const [id, record] of batch) this.records.set(id, { ...record, keyId: null, result: null });
    return { count: batch.length, last: batch.at(-1)?.[1].expiresAt ?? null };
  }

  async purge(_db: MemoryTx | null, batchSize: number, from: Date | null): Promise<PurgedBatch> {
    const batch = this.due(batchSize, from, (record) => record.forgottenAt);
    for (const [id] of batch) this.records.delete(id);
    return { count: batch.length, last: batch.at(-1)?.[1].forgottenAt ?? null };
  }

  /** The first `batchSize` rows whose `time` (null: never) has passed and is at least `from`, earliest first. */
  private due(batchSize: number, from: Date | null, time: (record: Row) => Date | null) {
    if (!Number.isInteger(batchSize) || batchSize < 1) throw new RangeError('batchSize must be a positive integer');
    const timed = [...this.records.entries()].map(([id, record]) => ({ id, record, at: time(record) }));
    return timed
      .filter(({ at }) => at !== null && at.getTime() <= this.now() && (!from || at >= from))
      .sort((a, b) => (a.at as Date).getTime() - (b.at as Date).getTime())
      .slice(0, batchSize)
      .map(({ id, record }) => [id, record] as const);
  }
}

function idOf(scope: string, key: string): string {
  return `${scope}\u0000${key}`;
}

/** Whether `promise` settles within `ms` (0: no bound, like PostgreSQL's lock_timeout). */
async function settlesWithin(promise: Promise<void>, ms: number): Promise<boolean> {
  if (ms <= 0) return promise.then(() => true);
  const timer = new AbortController();
  try {
    return await Promise.race([promise.then(() => true), delay(ms, false, { signal: timer.signal })]);
  } finally {
    timer.abort();
  }
}
