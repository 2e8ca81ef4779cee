import { setTimeout as delay } from 'node:timers/promises';
import type { NewRecord, PurgedBatch, RecordStore, StoredRecord, WriteResult } from '../../src/idempotency/store';

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
  readonly records = new Map<string, StoredRecord>();
  private readonly holders = new Map<string, MemoryTx>();

  constructor(private readonly now: () => number = Date.now) {}

  async find(_db: MemoryTx | null, scope: string, key: string): Promise<StoredRecord | null> {
    const record = this.records.get(idOf(scope, key));
    return record && record.expiresAt.getTime() > this.now() ? record : null;
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
    if (existing && existing.expiresAt.getTime() > this.now()) return { kind: 'taken' };
    const { ttlSeconds, ...fields } = record;
    const now = this.now();
    const written: StoredRecord = { ...fields, createdAt: new Date(now), expiresAt: new Date(now + ttlSeconds * 1000) };
    this.holders.set(id, tx);
    tx.writes.set(id, written);
    return { kind: 'written', record: written, replacedExpired: existing !== undefined };
  }

  async purge(_db: MemoryTx | null, batchSize: number, from: Date | null): Promise<PurgedBatch> {
    if (!Number.isInteger(batchSize) || batchSize < 1) throw new RangeError('batchSize must be a positive integer');
    const expired = [...this.records.entries()]
      .filter(([, record]) => record.expiresAt.getTime() <= this.now() && (!from || record.expiresAt >= from))
      .sort(([, a], [, b]) => a.expiresAt.getTime() - b.expiresAt.getTime())
      .slice(0, batchSize);
    for (const [id] of expired) this.records.delete(id);
    return { deleted: expired.length, last: expired.at(-1)?.[1].expiresAt ?? null };
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
