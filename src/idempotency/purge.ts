import type { EntityManager } from '@mikro-orm/postgresql';
import type { RecordStore } from './store';

/** Rows deleted per statement: one short transaction each, so live traffic never waits long. */
const PURGE_BATCH_SIZE = 5_000;

/** Pause after each batch, as a share of the batch's time, leaving capacity to live traffic. */
const PURGE_PAUSE_RATIO = 1.5;

export interface PurgeOptions {
  readonly batchSize?: number;
  readonly pauseRatio?: number;
}

/** Deletes every expired record in bounded, paced batches; returns how many were deleted. */
export async function purgeExpired(
  store: RecordStore<EntityManager>,
  em: () => EntityManager,
  { batchSize = PURGE_BATCH_SIZE, pauseRatio = PURGE_PAUSE_RATIO }: PurgeOptions = {},
): Promise<number> {
  let total = 0;
  for (let from: Date | null = null; ; ) {
    const started = performance.now();
    const batch = await store.purge(em(), batchSize, from);
    total += batch.deleted;
    if (batch.deleted < batchSize) return total;
    from = batch.last;
    if (pauseRatio > 0) await new Promise((resolve) => setTimeout(resolve, (performance.now() - started) * pauseRatio));
  }
}

/** Runs `purge` every `intervalSeconds` (0: never); returns a function that stops it. */
export function startPurgeJob(
  purge: () => Promise<number>,
  intervalSeconds: number,
  onPurged: (deleted: number) => void,
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
