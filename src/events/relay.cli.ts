import 'reflect-metadata';
import { ConfigError, loadConfig } from '../config';
import { runningEmbeddedUrl } from '../database/embedded';
import { openOrm } from '../database/orm';
import { createLogger } from '../observability/logger';
import { startRelay } from './relay';

/**
 * `npm run events:relay`: a relay process of its own (any number may run beside the servers).
 * Needs NATS_URL, and DATABASE_URL or the embedded server `npm start` runs on DATA_DIR.
 * SIGTERM or SIGINT lets the current batch finish.
 */
async function main(): Promise<void> {
  const config = loadConfig();
  const logger = createLogger(config.logLevel);
  const natsUrl = config.events.natsUrl;
  if (!natsUrl) throw new ConfigError('NATS_URL', 'is required by the relay');
  const url = config.databaseUrl ?? (await runningEmbeddedUrl(config.dataDir));
  if (!url) throw new ConfigError('DATABASE_URL', `is unset and no server is running on ${config.dataDir}`);
  const orm = await openOrm({ clientUrl: url, poolSize: 2, statementTimeoutMs: config.statementTimeoutMs || undefined });
  const relay = await startRelay(orm, {
    natsUrl,
    batchSize: config.events.relayBatch,
    pollMs: config.events.relayPollMs,
    retentionSeconds: config.events.retentionSeconds,
    logger,
  });
  const stop = async () => {
    await relay.stop();
    await orm.close(true);
  };
  process.once('SIGTERM', () => void stop());
  process.once('SIGINT', () => void stop());
}

main().catch((error: unknown) => {
  process.stderr.write(
    `${error instanceof ConfigError ? 'Invalid configuration: ' : ''}${error instanceof Error ? error.message : String(error)}\n`,
  );
  process.exitCode = 1;
});
