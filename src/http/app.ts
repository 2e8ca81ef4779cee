import { ApolloServer, type ApolloServerPlugin } from '@apollo/server';
import { ApolloServerPluginLandingPageDisabled } from '@apollo/server/plugin/disabled';
import { fastifyApolloHandler } from '@as-integrations/fastify';
import type { MikroORM } from '@mikro-orm/postgresql';
import Fastify, { type FastifyBaseLogger, type FastifyInstance, type FastifyRequest } from 'fastify';
import { GraphQLError } from 'graphql';
import type { Logger } from 'pino';
import { bearerToken, verifyToken } from '../auth/token';
import type { Config } from '../config';
import { AppError } from '../errors';
import { type Context, createLoaders } from '../graphql/context';
import { createFormatError } from '../graphql/format-error';
import { buildSchema } from '../graphql/schema';
import {
  encryptedCodec,
  type HandlerConfig,
  IdempotencyHandler,
  IdempotencyRequest,
  IdempotencyStore,
  idempotencyResponsePlugin,
  plainCodec,
} from '../idempotency';
import { registerHealthRoutes } from './health.routes';
import { type SandboxOptions, sandboxLandingPage } from './sandbox';

export interface AppOptions {
  readonly config: Config;
  readonly orm: MikroORM;
  readonly logger: Logger;
  /** Development landing page contents; ignored in production. */
  readonly sandbox?: SandboxOptions;
  /** Replaces the idempotency engine built from the config (tests share one across servers). */
  readonly idempotency?: IdempotencyHandler;
}

/** The idempotency engine configured from the environment, with optional overrides. */
export function createIdempotencyHandler(config: Config, overrides: HandlerConfig = {}): IdempotencyHandler {
  const { ttlSeconds, waitMs, encryptionKey } = config.idempotency;
  return new IdempotencyHandler(new IdempotencyStore(), {
    ttlSeconds,
    waitMs,
    codec: encryptionKey ? encryptedCodec(encryptionKey) : plainCodec,
    ...overrides,
  });
}

/** Maximum request body, in bytes. */
export const BODY_LIMIT = 100 * 1024;

/** Builds the HTTP server: /graphql through Apollo Server, health and readiness probes. */
export async function buildApp(options: AppOptions): Promise<FastifyInstance> {
  const { config, orm, logger } = options;
  const app = Fastify({
    loggerInstance: logger as FastifyBaseLogger,
    bodyLimit: BODY_LIMIT,
    requestIdHeader: 'x-request-id',
  });
  const production = config.nodeEnv === 'production';
  const store = new IdempotencyStore();
  const idempotency = options.idempotency ?? createIdempotencyHandler(config, { logger });
  const plugins: ApolloServerPlugin<Context>[] = [
    production ? ApolloServerPluginLandingPageDisabled() : sandboxLandingPage(options.sandbox),
    idempotencyResponsePlugin<Context>(),
  ];
  const apollo = new ApolloServer<Context>({
    schema: buildSchema(store),
    plugins,
    introspection: !production,
    includeStacktraceInErrorResponses: false,
    formatError: createFormatError(logger),
    csrfPrevention: true,
    // Shutdown order is owned by main.ts: HTTP drains first, then the pool, then the database.
    stopOnTerminationSignals: false,
  });
  await apollo.start();

  app.route({
    url: '/graphql',
    method: ['GET', 'POST', 'OPTIONS'],
    handler: fastifyApolloHandler(apollo, { context: (request) => createContext(request, orm, config, idempotency) }),
  });
  registerHealthRoutes(app, orm);
  // app.close() drains HTTP itself (in-flight requests finish); Apollo stops after it.
  app.addHook('onClose', async () => {
    await apollo.stop();
  });
  return app;
}

async function createContext(request: FastifyRequest, orm: MikroORM, config: Config, idempotency: IdempotencyHandler): Promise<Context> {
  let viewer = null;
  try {
    const token = bearerToken(request.headers.authorization);
    if (token !== undefined) viewer = await verifyToken(token, config.jwtSecret);
  } catch (error) {
    if (!(error instanceof AppError)) throw error;
    throw new GraphQLError(error.message, {
      extensions: { code: error.code, http: { status: 401, headers: new Map([['www-authenticate', 'Bearer error="invalid_token"']]) } },
    });
  }
  const em = orm.em.fork();
  return {
    em,
    viewer,
    loaders: createLoaders(em),
    headers: request.headers as Record<string, string | undefined>,
    log: request.log,
    idempotency: new IdempotencyRequest(idempotency, viewer?.id ?? null, headerValue(request.headers['idempotency-key'])),
  };
}

function headerValue(value: string | string[] | undefined): string | undefined {
  // Repeated headers are joined, which no valid key matches: the request is rejected as invalid.
  return Array.isArray(value) ? value.join(', ') : value;
}
