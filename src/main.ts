import 'reflect-metadata';
import type { MikroORM } from '@mikro-orm/postgresql';
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { signToken } from './auth/token';
import { Product } from './catalog/product.entity';
import { type Config, ConfigError, loadConfig } from './config';
import { type EmbeddedDatabase, startEmbeddedPostgres } from './database/embedded';
import { migrate, openOrm } from './database/orm';
import { seedCatalog } from './database/seed';
import { type Relay, startRelay } from './events/relay';
import { buildApp, createIdempotencyHandler } from './http/app';
import { createLogger } from './observability/logger';
import { Metrics } from './observability/metrics';
import { withoutPassword } from './observability/serializers';
import { ormMetricsSources } from './observability/sources';
import { withTimeout } from './timeout';

/** Bootstrap only: config -> database -> migrate -> seed -> http -> signals. */
async function main(): Promise<void> {
  let config: Config;
  try {
    config = loadConfig();
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`Invalid configuration: ${error.message}\n`);
      process.exit(78);
    }
    throw error;
  }
  const logger = createLogger(config.logLevel);
  if (config.jwtSecretIsDefault) {
    logger.warn('JWT_SECRET is not set: using the built-in development secret; never do this in production');
  }

  let embedded: EmbeddedDatabase | undefined;
  let orm: MikroORM | undefined;
  let app: FastifyInstance | undefined;
  let stopPurge: (() => Promise<void>) | undefined;
  let relay: Relay | undefined;
  let stopping = false;

  const shutdown = async (signal: string, exitCode = 0) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'shutting down');
    const deadline = Date.now() + config.http.shutdownGraceMs;
    try {
      await stopPurge?.();
      await relay?.stop();
      await closeWithin(app, config.http.shutdownGraceMs, logger);
      logger.debug('http server closed');
      // A request cut by the grace period may still hold a connection (waiting on a lock or a
      // slow statement); its transaction rolls back when the process exits and the socket closes.
      await withTimeout(orm?.close(true) ?? Promise.resolve(), Math.max(1_000, deadline - Date.now()), 'closing the pool').catch(
        (error: unknown) => {
          logger.warn({ err: error }, 'database pool still busy after the grace period; its transactions roll back on exit');
        },
      );
      logger.debug('database pool closed');
    } catch (error) {
      logger.error({ err: error }, 'error while closing the server');
      exitCode ||= 1;
    }
    try {
      await withTimeout(embedded?.stop() ?? Promise.resolve(), 15_000, 'stopping the embedded database');
    } catch (error) {
      logger.error({ err: error }, 'error while stopping the embedded database');
      exitCode ||= 1;
    }
    process.exit(exitCode);
  };
  process.on('SIGINT', () => void shutdown('SIGINT'));
  process.on('SIGTERM', () => void shutdown('SIGTERM'));

  try {
    let databaseUrl = config.databaseUrl;
    if (!databaseUrl) {
      embedded = await startEmbeddedPostgres({ dataDir: config.dataDir, port: config.embeddedPgPort, logger });
      databaseUrl = embedded.url;
      logger.info({ dataDir: config.dataDir, databaseUrl: withoutPassword(databaseUrl) }, 'embedded PostgreSQL started');
    }
    orm = await openOrm({
      clientUrl: databaseUrl,
      statementTimeoutMs: config.statementTimeoutMs || undefined,
      onDriverWarning: (message) => logger.warn({ driver: message }, 'database driver warning'),
    });
    const applied = await migrate(orm);
    if (applied.length > 0) logger.info({ migrations: applied }, 'migrations applied');
    if (config.seedDemoCatalog) {
      const seeded = await seedCatalog(orm.em.fork());
      if (seeded > 0) logger.info({ products: seeded }, 'demo catalog seeded');
    }

    const metrics = new Metrics(ormMetricsSources(orm));
    const idempotency = createIdempotencyHandler(config, { observer: metrics.idempotencyObserver() });
    stopPurge = idempotency.startPurgeJob(
      orm,
      config.idempotency.purgeIntervalSeconds,
      ({ deleted, tombstoned }) => {
        metrics.recordsPurged.inc(deleted);
        if (deleted + tombstoned > 0) logger.info({ deleted, tombstoned }, 'purged expired idempotency records');
      },
      (error) => logger.warn({ err: error }, 'idempotency purge failed; will retry'),
    );
    const { natsUrl, relayBatch, relayPollMs, retentionSeconds } = config.events;
    if (natsUrl) {
      const options = { natsUrl, batchSize: relayBatch, pollMs: relayPollMs, retentionSeconds, logger, registry: metrics.registry };
      relay = await startRelay(orm, options);
    }
    // A production configuration never mints a token: the development one exists for the explorer and the banner.
    const token = config.nodeEnv === 'production' ? undefined : await signToken({ id: 'dev-user', roles: [] }, config.jwtSecret, '30d');
    const [example] = await orm.em.fork().find(Product, {}, { orderBy: { sku: 'asc' }, limit: 1 });
    app = await buildApp({ config, orm, logger, metrics, idempotency, sandbox: { token, exampleProductId: example?.id } });
    await app.listen({ port: config.port, host: config.host });
    const address = app.server.address();
    const port = typeof address === 'object' && address ? address.port : config.port;
    const url = `http://${config.host.includes(':') ? `[${config.host}]` : config.host}:${port}/graphql`;
    logger.info({ url, node: process.version }, 'GraphQL API ready');
    if (config.nodeEnv !== 'production') {
      process.stdout.write(`\nGraphQL API: ${url}\nDevelopment token (user dev-user, 30 days):\n${token}\n\n`);
    }
  } catch (error) {
    logger.fatal({ err: error }, 'start-up failed');
    await shutdown('startup-failure', 1);
  }
}

/** How often the drain closes connections that went idle. */
const IDLE_SWEEP_MS = 100;

/**
 * Stops accepting connections and lets in-flight requests finish; after `graceMs` the
 * remaining connections are cut so shutdown stays bounded.
 */
async function closeWithin(app: FastifyInstance | undefined, graceMs: number, logger: Logger): Promise<void> {
  if (!app) return;
  const timer = setTimeout(() => {
    logger.warn({ graceMs }, 'grace period over: closing remaining connections');
    app.server.closeAllConnections();
  }, graceMs);
  // A keep-alive connection whose request finishes during the drain would otherwise stay open,
  // holding the exit back until the grace period ends.
  const sweep = setInterval(() => app.server.closeIdleConnections(), IDLE_SWEEP_MS);
  try {
    await app.close();
  } finally {
    clearTimeout(timer);
    clearInterval(sweep);
  }
}

void main();
