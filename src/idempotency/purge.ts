import type { EntityManager } from '@mikro-orm/postgresql';
import type { RecordStore } from './store';

export interface PurgeOptions {
  /** Rows deleted per statement: one short transaction each, so live traffic never waits long. Default 5000. */
  readonly batchSize?: number;
  /** Pause after each batch, as a share of the batch's time, leaving capacity to live traffic. Default 1.5. */
  readonly pauseRatio?: number;
}

/** Deletes every expired record in bounded, paced batches; returns how many were deleted. */
export async function purgeExpired(
  store: RecordStore<EntityManager>,
  em: () => EntityManager,
  { batchSize = 5_000, pauseRatio = 1.5 }: PurgeOptions = {},
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
