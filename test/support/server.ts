import { randomUUID } from 'node:crypto';
import type { MikroORM } from '@mikro-orm/postgresql';
import type { FastifyInstance } from 'fastify';
import pino from 'pino';
import { signToken } from '../../src/auth/token';
import { type Config, loadConfig } from '../../src/config';
import { migrate, openOrm } from '../../src/database/orm';
import { seedCatalog } from '../../src/database/seed';
import { buildApp, createIdempotencyHandler } from '../../src/http/app';
import { createTestDatabase, dropTestDatabase } from './database';

export interface GraphQLResponse<T = Record<string, unknown>> {
  status: number;
  headers: Headers;
  body: {
    data?: T | null;
    errors?: { message: string; path?: (string | number)[]; extensions?: Record<string, unknown> }[];
    extensions?: Record<string, unknown>;
  };
}

export interface TestServer {
  readonly url: string;
  readonly databaseUrl: string;
  readonly orm: MikroORM;
  readonly app: FastifyInstance;
  readonly config: Config;
  /** SQL statements sent since the last {@link resetStatements}. */
  readonly statements: string[];
  resetStatements(): void;
  token(sub: string, options?: { admin?: boolean; expiresIn?: string }): Promise<string>;
  gql<T = Record<string, unknown>>(
    query: string,
    variables?: Record<string, unknown>,
    options?: { token?: string; headers?: Record<string, string>; autoKey?: boolean },
  ): Promise<GraphQLResponse<T>>;
  close(): Promise<void>;
}

export interface TestServerOptions {
  /** Environment variables on top of NODE_ENV=test. */
  readonly env?: Record<string, string>;
  /** Seed the demo catalog (default true). */
  readonly seed?: boolean;
  /** Size of the engine's in-memory replay cache (default: the engine's); 0 makes every replay read the database. */
  readonly cacheSize?: number;
  /** An existing database to serve instead of a fresh one (it is not dropped on close). */
  readonly databaseUrl?: string;
}

/** Starts the real HTTP server on a fresh database of its own, listening on a free port. */
export async function startTestServer(options: TestServerOptions = {}): Promise<TestServer> {
  const databaseUrl = options.databaseUrl ?? (await createTestDatabase());
  // Tests fire hundreds of mutations per user; the rate limit is tested where it is set.
  const config = loadConfig({
    NODE_ENV: 'test',
    LOG_LEVEL: 'silent',
    RATE_LIMIT_MUTATIONS_PER_MINUTE: '0',
    ...options.env,
    DATABASE_URL: databaseUrl,
  });
  const statements: string[] = [];
  const orm = await openOrm({
    clientUrl: databaseUrl,
    statementTimeoutMs: config.statementTimeoutMs || undefined,
    onQuery: (sql) => statements.push(sql),
  });
  await migrate(orm);
  if (options.seed ?? true) await seedCatalog(orm.em.fork());
  const logger = pino({ level: config.logLevel });
  const idempotency = options.cacheSize === undefined ? undefined : createIdempotencyHandler(config, { cacheSize: options.cacheSize });
  const app = await buildApp({ config, orm, logger, idempotency });
  await app.listen({ port: 0, host: '127.0.0.1' });
  const address = app.server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  const url = `http://127.0.0.1:${port}/graphql`;

  return {
    url,
    databaseUrl,
    orm,
    app,
    config,
    statements,
    resetStatements: () => {
      statements.length = 0;
    },
    token: (sub, tokenOptions = {}) =>
      signToken({ id: sub, roles: tokenOptions.admin ? ['admin'] : [] }, config.jwtSecret, tokenOptions.expiresIn ?? '1h'),
    gql: async (query, variables, requestOptions = {}) => {
      const headers: Record<string, string> = { 'content-type': 'application/json', ...requestOptions.headers };
      // Mutations are idempotent and need a key: unless a test manages keys itself, each request
      // gets a fresh Idempotency-Key header, which operations without idempotent fields ignore.
      if ((requestOptions.autoKey ?? true) && !Object.keys(headers).some((name) => name.toLowerCase() === 'idempotency-key')) {
        headers['idempotency-key'] = randomUUID();
      }
      if (requestOptions.token) headers.authorization = `Bearer ${requestOptions.token}`;
      const response = await fetch(url, { method: 'POST', headers, body: JSON.stringify({ query, variables }) });
      return { status: response.status, headers: response.headers, body: (await response.json()) as GraphQLResponse<never>['body'] };
    },
    close: async () => {
      await app.close();
      await orm.close(true);
      if (!options.databaseUrl) await dropTestDatabase(databaseUrl);
    },
  };
}
