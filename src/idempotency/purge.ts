import type { EntityManager } from '@mikro-orm/postgresql';
import type { PurgedBatch, RecordStore } from './store';

export interface PurgeOptions {
  /** Rows changed per statement: one short transaction each, so live traffic never waits long. Default 5000. */
  readonly batchSize?: number;
  /** Pause after each batch, as a share of the batch's time, leaving capacity to live traffic. Default 0.3. */
  readonly pauseRatio?: number;
}

/** What one purge did. */
export interface PurgeResult {
  /** Rows deleted: their tombstone ended, or they expired without one. */
  readonly deleted: number;
  /** Expired records whose result was dropped; they stay as tombstones. */
  readonly tombstoned: number;
}

/**
 * Deletes the rows whose tombstone ended and turns the expired records into tombstones, in
 * bounded, paced batches. The two passes take turns, the one whose last batch ended earlier
 * in time going next, so that where both kinds of row lie on the same pages each page is read
 * and logged once for both, while it is still in the buffer cache (docs/performance.md).
 */
export async function purgeExpired(
  store: RecordStore<EntityManager>,
  em: () => EntityManager,
  { batchSize = 5_000, pauseRatio = 0.3 }: PurgeOptions = {},
): Promise<PurgeResult> {
  const deleting: Pass = { batch: (from) => store.purge(em(), batchSize, from), from: null, total: 0, done: false };
  const tombstoning: Pass = { batch: (from) => store.tombstone(em(), batchSize, from), from: null, total: 0, done: false };
  for (;;) {
    // A pass that has not run yet sorts first; ties keep deleting first.
    const [pass] = [deleting, tombstoning].filter((open) => !open.done).sort((a, b) => (a.from?.getTime() ?? 0) - (b.from?.getTime() ?? 0));
    if (!pass) return { deleted: deleting.total, tombstoned: tombstoning.total };
    const started = performance.now();
    const done = await pass.batch(pass.from);
    pass.total += done.count;
    pass.done = done.count < batchSize;
    pass.from = done.last;
    const more = !(deleting.done && tombstoning.done);
    if (more && pauseRatio > 0) await new Promise((resolve) => setTimeout(resolve, (performance.now() - started) * pauseRatio));
  }
}

/** One of the purge's two passes: its batch, where its next batch starts, its rows so far. */
interface Pass {
  readonly batch: (from: Date | null) => Promise<PurgedBatch>;
  from: Date | null;
  total: number;
  done: boolean;
}

/** Runs `purge` every `intervalSeconds` (0: never); returns a function that stops it. */
export function startPurgeJob(
  purge: () => Promise<PurgeResult>,
  intervalSeconds: number,
  onPurged: (purged: PurgeResult) => void,
  onError: (error: unknown) => void,
): () => Promise<void> {
  if (intervalSeconds <= 0) return async () => {};
  let running: Promise<void> | undefined;
  const timer = setInterval(() => {
    if (running) return;
    running = purge()
      .then(onPurged, onError)
      .finally(() => {
        running = undefined;
      });
  }, intervalSeconds * 1000);
  timer.unref();
  return async () => {
    clearInterval(timer);
    await running;
  };
}
