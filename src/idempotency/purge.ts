import type { MikroORM } from '@mikro-orm/postgresql';
import type { Logger } from 'pino';
import type { IdempotencyStore } from './record.store';

/** Rows deleted per statement: one short transaction each, so live traffic never waits long. */
export const PURGE_BATCH_SIZE = 5_000;

/**
 * Pause after each batch, as a share of the time the batch took: at 1.5 the purge works two
 * fifths of the time, leaving the rest of the database's capacity to live traffic.
 */
export const PURGE_PAUSE_RATIO = 1.5;

/** Deletes every expired record in bounded, paced batches; returns how many were deleted. */
export async function purgeExpired(
  orm: MikroORM,
  store: IdempotencyStore,
  batchSize = PURGE_BATCH_SIZE,
  pauseRatio = PURGE_PAUSE_RATIO,
): Promise<number> {
  let total = 0;
  let from: Date | null = null;
  for (;;) {
    const started = performance.now();
    const batch = await store.purgeExpiredBatch(orm.em.fork(), batchSize, from);
    total += batch.deleted;
    if (batch.deleted < batchSize) return total;
    from = batch.last;
    if (pauseRatio > 0) await new Promise((resolve) => setTimeout(resolve, (performance.now() - started) * pauseRatio));
  }
}

/** Runs {@link purgeExpired} every `intervalSeconds` (0: never); returns a function that stops it. */
export function startPurgeJob(
  orm: MikroORM,
  store: IdempotencyStore,
  intervalSeconds: number,
  logger: Logger,
  onPurged: (deleted: number) => void = () => {},
): () => Promise<void> {
  if (intervalSeconds <= 0) return async () => {};
  let running: Promise<void> | undefined;
  const timer = setInterval(() => {
    if (running) return;
    running = purgeExpired(orm, store)
      .then((deleted) => {
        onPurged(deleted);
        if (deleted > 0) logger.info({ deleted }, 'purged expired idempotency records');
      })
      .catch((error: unknown) => logger.warn({ err: error }, 'idempotency purge failed; will retry'))
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
