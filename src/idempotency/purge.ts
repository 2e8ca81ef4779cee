import type { EntityManager } from '@mikro-orm/postgresql';
import type { PurgedBatch, RecordStore } from './store';

export interface PurgeOptions {
  /** Rows changed per statement: one short transaction each, so live traffic never waits long. Default 5000. */
  readonly batchSize?: number;
  /** Pause after each batch, as a share of the batch's time, leaving capacity to live traffic. Default 1.5. */
  readonly pauseRatio?: number;
}

/** What one purge did. */
export interface PurgeResult {
  /** Rows deleted: their tombstone ended, or they expired without one. */
  readonly deleted: number;
  /** Expired records whose result was dropped; they stay as tombstones. */
  readonly tombstoned: number;
}

/** Deletes the rows whose tombstone ended, then turns the expired records into tombstones, in bounded, paced batches. */
export async function purgeExpired(
  store: RecordStore<EntityManager>,
  em: () => EntityManager,
  options: PurgeOptions = {},
): Promise<PurgeResult> {
  // Deleting first spares the second pass the results of rows that are deleted anyway.
  const deleted = await inBatches((from, batchSize) => store.purge(em(), batchSize, from), options);
  const tombstoned = await inBatches((from, batchSize) => store.tombstone(em(), batchSize, from), options);
  return { deleted, tombstoned };
}

async function inBatches(
  batch: (from: Date | null, batchSize: number) => Promise<PurgedBatch>,
  { batchSize = 5_000, pauseRatio = 1.5 }: PurgeOptions,
): Promise<number> {
  let total = 0;
  for (let from: Date | null = null; ; ) {
    const started = performance.now();
    const done = await batch(from, batchSize);
    total += done.count;
    if (done.count < batchSize) return total;
    from = done.last;
    if (pauseRatio > 0) await new Promise((resolve) => setTimeout(resolve, (performance.now() - started) * pauseRatio));
  }
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
