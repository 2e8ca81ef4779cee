import 'reflect-metadata';
import { ConfigError, loadConfig } from './config';
import { type EmbeddedDatabase, runningEmbeddedUrl, startEmbeddedPostgres } from './database/embedded';
import { openOrm } from './database/orm';
import { createIdempotency } from './idempotency';
import { createLogger } from './observability/logger';

/** The only variables the purge reads; the server's others (JWT_SECRET...) are not its business. */
const PURGE_VARIABLES = ['DATABASE_URL', 'DATA_DIR', 'EMBEDDED_PG_PORT', 'LOG_LEVEL'] as const;

/**
 * `npm run idempotency:purge` (node dist/src/purge.cli.js): deletes idempotency records whose
 * tombstone ended and drops the results of expired ones, in bounded batches, and prints how
 * many. Uses DATABASE_URL, else the embedded server `npm start` runs on DATA_DIR, else starts
 * that embedded server for the duration of the purge.
 */
async function main(): Promise<void> {
  const config = loadConfig(Object.fromEntries(PURGE_VARIABLES.map((name) => [name, process.env[name]])));
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
    const { deleted, tombstoned } = await createIdempotency().purge(orm);
    process.stdout.write(
      `purged idempotency records: ${deleted} deleted, ${tombstoned} expired turned into tombstones, in ${Date.now() - started} ms\n`,
    );
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
