import 'reflect-metadata';
import { writeFile } from 'node:fs/promises';
import { Session } from 'node:inspector/promises';
import type { MikroORM } from '@mikro-orm/postgresql';
import type { FastifyInstance } from 'fastify';
import { loadConfig } from '../src/config';
import { openOrm } from '../src/database/orm';
import { buildApp, createIdempotencyHandler } from '../src/http/app';
import type { Idempotency } from '../src/idempotency';
import { createLogger } from '../src/observability/logger';
import { Metrics } from '../src/observability/metrics';
import { ormMetricsSources } from '../src/observability/sources';
import { OrderService } from '../src/orders/order.service';
import { bypassIdempotency } from './bypass-handler';
import { BENCH_JWT_SECRET, describeError, numberArg, readArgs, UsageError } from './support';

/** The line a bench server prints on stdout once it listens. */
export interface ReadyLine {
  readonly event: 'ready';
  readonly port: number;
  readonly pid: number;
}

/**
 * A bench-only server entry (never used by src/main.ts): the same stack as main.ts in
 * production mode, on a database the runner has already migrated and seeded. `--mode bypass`
 * replaces the idempotency engine with {@link BypassHandler}; `--mode noevents` keeps the
 * engine but builds the order rules with an event appender that writes nothing;
 * `--cache-size` changes the engine's replay cache (0: every replay reads the database);
 * `--cpu-profile` records a CPU profile from the first SIGUSR2 until the server stops.
 */
async function serve(): Promise<void> {
  const args = readArgs('node dist/bench/server.js', {
    mode: { type: 'string', default: 'engine', description: 'engine | bypass | noevents' },
    port: { type: 'string', default: '0', description: 'port on 127.0.0.1; 0 picks a free one' },
    'database-url': { type: 'string', description: 'postgres:// URL of a migrated, seeded database' },
    'cache-size': { type: 'string', description: "engine replay cache entries (default: the engine's)" },
    'cpu-profile': {
      type: 'string',
      description: 'file for a V8 CPU profile (.cpuprofile) taken from the first SIGUSR2 until the server stops',
    },
  });
  const mode = args.mode;
  if (mode !== 'engine' && mode !== 'bypass' && mode !== 'noevents') {
    throw new UsageError(`--mode must be engine, bypass or noevents, got ${mode}`);
  }
  const databaseUrl = args['database-url'];
  if (!databaseUrl) throw new UsageError('--database-url is required');
  const port = numberArg(args, 'port', 0);
  const cacheSize = args['cache-size'] === undefined ? undefined : numberArg(args, 'cache-size', 0);

  // An explicit environment, not process.env: every bench run serves with the same settings.
  const config = loadConfig({
    NODE_ENV: 'production',
    JWT_SECRET: BENCH_JWT_SECRET,
    DATABASE_URL: databaseUrl,
    HOST: '127.0.0.1',
    PORT: String(port),
    LOG_LEVEL: 'warn',
    RATE_LIMIT_MUTATIONS_PER_MINUTE: '0',
    IDEMPOTENCY_PURGE_INTERVAL_SECONDS: '0',
  });
  const logger = createLogger(config.logLevel);
  const profiler = args['cpu-profile'] === undefined ? undefined : cpuProfiler(args['cpu-profile']);
  let orm: MikroORM | undefined;
  let app: FastifyInstance | undefined;
  let stopping = false;
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    try {
      await profiler?.stop();
      await app?.close();
      await orm?.close(true);
    } finally {
      process.exit(0);
    }
  };
  process.on('SIGTERM', () => void stop());
  process.on('SIGINT', () => void stop());

  // The same ORM options as main.ts.
  orm = await openOrm({
    clientUrl: databaseUrl,
    statementTimeoutMs: config.statementTimeoutMs || undefined,
    onDriverWarning: (message) => logger.warn({ driver: message }, 'database driver warning'),
  });
  const metrics = new Metrics(ormMetricsSources(orm));
  const idempotency: Idempotency | undefined =
    mode === 'bypass'
      ? bypassIdempotency()
      : cacheSize !== undefined
        ? createIdempotencyHandler(config, { observer: metrics.idempotencyObserver(), cacheSize })
        : undefined;
  // noevents: the engine, with the order rules appending no outbox event (the events' cost, measured).
  const orders = mode === 'noevents' ? new OrderService({ append: async () => {}, attach: (_event, writes) => writes }) : undefined;
  app = await buildApp({ config, orm, logger, metrics, idempotency, orders });
  await app.listen({ port: config.port, host: config.host });
  const address = app.server.address();
  const ready: ReadyLine = { event: 'ready', port: typeof address === 'object' && address ? address.port : port, pid: process.pid };
  process.stdout.write(`${JSON.stringify(ready)}\n`);
}

/**
 * V8's CPU profiler through node:inspector, started by SIGUSR2 (so that the runner profiles the
 * load it chooses, not the start-up) and written to `file` when stopped.
 */
function cpuProfiler(file: string): { stop(): Promise<void> } {
  const session = new Session();
  session.connect();
  let started: Promise<unknown> | undefined;
  process.once('SIGUSR2', () => {
    started = session.post('Profiler.enable').then(() => session.post('Profiler.start'));
  });
  return {
    stop: async () => {
      if (!started) return;
      await started;
      const { profile } = await session.post('Profiler.stop');
      await writeFile(file, JSON.stringify(profile));
      session.disconnect();
    },
  };
}

serve().catch((error: unknown) => {
  process.stderr.write(`bench server failed: ${describeError(error, !(error instanceof UsageError))}\n`);
  process.exit(error instanceof UsageError ? 64 : 1);
});
