import { ApolloServer, type ApolloServerPlugin } from '@apollo/server';
import { ApolloServerPluginCacheControlDisabled } from '@apollo/server/plugin/disabled';
import type { MikroORM } from '@mikro-orm/postgresql';
import Fastify, { type FastifyBaseLogger, type FastifyInstance, LogController } from 'fastify';
import type { Logger } from 'pino';
import { TokenVerifier } from '../auth/token';
import type { Config } from '../config';
import { AppError } from '../errors';
import type { Context } from '../graphql/context';
import { errorLogPlugin, formatError } from '../graphql/format-error';
import { queryLimits } from '../graphql/limits';
import { nulInputPlugin } from '../graphql/nul-input.plugin';
import { buildSchema } from '../graphql/schema';
import { createIdempotency, type Idempotency, type IdempotencyOptions } from '../idempotency';
import { Metrics } from '../observability/metrics';
import { requestLogPlugin } from '../observability/request-log.plugin';
import { safeError, safeRequest } from '../observability/serializers';
import { ormMetricsSources } from '../observability/sources';
import type { OrderService } from '../orders/order.service';
import { createContext } from './context';
import { explorerLandingPage, registerExplorerAssets, type SandboxOptions } from './explorer';
import { registerGraphQLRoute } from './graphql.route';
import { registerGraphQLOverHttp } from './graphql-over-http';
import { registerHealthRoutes } from './health.routes';
import { registerMetricsRoute } from './metrics.routes';
import { mutationRateLimitRouteConfig, registerMutationRateLimit } from './rate-limit';
import { registerSecurity, requestId } from './security';

export interface AppOptions {
  readonly config: Config;
  readonly orm: MikroORM;
  readonly logger: Logger;
  /** Development landing page contents; ignored when the explorer is off. */
  readonly sandbox?: SandboxOptions;
  /** Replaces the idempotency engine built from the config. */
  readonly idempotency?: Idempotency;
  /** Metrics registry to record into; default: a new one with the ORM's pool and record estimate. */
  readonly metrics?: Metrics;
  /** Replaces the order rules (a benchmark's variant); default: {@link OrderService} with the outbox. */
  readonly orders?: OrderService;
}

/** The idempotency engine configured from the environment, with optional overrides. */
export function createIdempotencyHandler(config: Config, overrides: IdempotencyOptions = {}): Idempotency {
  const { ttlSeconds, tombstoneSeconds, waitMs, encryptionKey, previousEncryptionKeys } = config.idempotency;
  return createIdempotency({
    ttlSeconds,
    tombstoneSeconds,
    waitMs,
    encryptionKey,
    previousEncryptionKeys,
    // Domain failures are deterministic outcomes of the input: stored and replayed like payloads.
    domainFailure: (error) =>
      error instanceof AppError && error.domain ? { code: error.code, message: error.message, details: error.details } : undefined,
    ...overrides,
  });
}

/** Maximum request body, in bytes; larger bodies are answered 413. */
export const BODY_LIMIT = 100 * 1024;

/** Builds the HTTP server: /graphql through Apollo Server, health, readiness and metrics. */
export async function buildApp(options: AppOptions): Promise<FastifyInstance> {
  const { config, orm } = options;
  // Whatever logger is handed in, errors and requests are logged without SQL values or query strings.
  const logger = options.logger.child({}, { serializers: { err: safeError, req: safeRequest } });
  const app = Fastify({
    loggerInstance: logger as FastifyBaseLogger,
    bodyLimit: BODY_LIMIT,
    genReqId: requestId,
    logController: new LogController({ requestIdLogLabel: 'requestId' }),
  });
  const explorer = config.http.explorer !== 'off';
  const metrics = options.metrics ?? new Metrics(ormMetricsSources(orm));
  const idempotency = options.idempotency ?? createIdempotencyHandler(config, { observer: metrics.idempotencyObserver() });
  const limits = queryLimits(config.nodeEnv === 'production');
  const plugins: ApolloServerPlugin<Context>[] = [
    explorerLandingPage({ ...options.sandbox, kind: config.http.explorer, production: config.nodeEnv === 'production' }),
    nulInputPlugin() as ApolloServerPlugin<Context>,
    idempotency.plugin as ApolloServerPlugin<Context>,
    // No field sets cache hints; the default cache-control plugin would still visit every field.
    ApolloServerPluginCacheControlDisabled(),
    requestLogPlugin(metrics),
    errorLogPlugin<Context>(logger),
    ...(limits.plugins as ApolloServerPlugin<Context>[]),
  ];
  const apollo = new ApolloServer<Context>({
    schema: buildSchema(idempotency, options.orders),
    plugins,
    validationRules: limits.validationRules,
    parseOptions: limits.parseOptions,
    introspection: explorer,
    includeStacktraceInErrorResponses: false,
    allowBatchedHttpRequests: false,
    // Automatic persisted queries would hide the operation from the mutation rate limit, which
    // reads the query text; clients here send full documents.
    persistedQueries: false,
    formatError,
    // Callers authenticate with a bearer token, never a cookie: a cross-site request carries no
    // credential, so there is no request forgery to prevent, and urql's default GET queries work.
    csrfPrevention: false,
    // Shutdown order is owned by main.ts: HTTP drains first, then the pool, then the database.
    stopOnTerminationSignals: false,
  });
  await apollo.start();

  await registerSecurity(app, { explorer, corsOrigins: config.http.corsOrigins });
  const tokens = new TokenVerifier({ secret: config.jwtSecret, maxLifetimeSeconds: config.jwtMaxLifetimeSeconds });
  await registerMutationRateLimit(app, config.http.mutationsPerMinute, tokens);
  registerGraphQLOverHttp(app, { landingPage: explorer });
  registerExplorerAssets(app, config.http.explorer);
  registerGraphQLRoute(app, apollo, {
    context: (request) => createContext(request, orm, tokens, idempotency),
    timeoutMs: config.http.requestTimeoutMs,
    config: mutationRateLimitRouteConfig(config.http.mutationsPerMinute),
  });
  registerHealthRoutes(app, orm);
  registerMetricsRoute(app, metrics, { token: config.http.metricsToken });
  // app.close() drains HTTP itself (in-flight requests finish); Apollo stops after it.
  app.addHook('onClose', async () => {
    await apollo.stop();
  });
  return app;
}
