import 'reflect-metadata';
import { ConfigError, loadConfig } from '../config';
import { type EmbeddedDatabase, runningEmbeddedUrl, startEmbeddedPostgres } from '../database/embedded';
import { openOrm } from '../database/orm';
import { createLogger } from '../observability/logger';
import { purgeExpired } from './purge';
import { IdempotencyStore } from './record.store';

/**
 * `npm run idempotency:purge`: deletes expired idempotency records in bounded batches and
 * prints how many. Uses DATABASE_URL, else the embedded server `npm start` runs on DATA_DIR,
 * else starts that embedded server for the duration of the purge.
 */
async function main(): Promise<void> {
  const config = loadConfig();
  const logger = createLogger(config.logLevel === 'info' ? 'warn' : config.logLevel);
  let embedded: EmbeddedDatabase | undefined;
  let url = config.databaseUrl ?? (await runningEmbeddedUrl(config.dataDir));
  if (!url) {
    embedded = await startEmbeddedPostgres({ dataDir: config.dataDir, port: config.embeddedPgPort, logger });
    url = embedded.url;
  }
  const orm = await openOrm({ clientUrl: url, poolSize: 2 });
  try {
    const started = Date.now();
    const deleted = await purgeExpired(orm, new IdempotencyStore());
    process.stdout.write(`purged ${deleted} expired idempotency records in ${Date.now() - started} ms\n`);
  } finally {
    await orm.close(true);
    await embedded?.stop();
  }
}

main().catch((error: unknown) => {
  process.stderr.write(
    `${error instanceof ConfigError ? 'Invalid configuration: ' : ''}${error instanceof Error ? error.message : String(error)}\n`,
  );
  process.exitCode = 1;
});
