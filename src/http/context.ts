import type { MikroORM } from '@mikro-orm/postgresql';
import type { FastifyRequest } from 'fastify';
import { GraphQLError } from 'graphql';
import { bearerToken, type TokenVerifier, type Viewer } from '../auth/token';
import { AppError } from '../errors';
import { type Context, createLoaders } from '../graphql/context';
import type { Idempotency } from '../idempotency';

const viewers = new WeakMap<FastifyRequest, Promise<Viewer | null>>();

/**
 * The request's viewer from its bearer token, verified once per request (the rate limiter and
 * the GraphQL context both ask). Null when anonymous; rejects with UNAUTHENTICATED when bad.
 */
export function authenticate(request: FastifyRequest, tokens: TokenVerifier): Promise<Viewer | null> {
  let viewer = viewers.get(request);
  if (!viewer) {
    viewer = (async () => {
      const token = bearerToken(request.headers.authorization);
      return token === undefined ? null : tokens.verify(token);
    })();
    viewers.set(request, viewer);
  }
  return viewer;
}

/** Builds the per-request GraphQL context: viewer, EntityManager fork, loaders, idempotency state. */
export async function createContext(
  request: FastifyRequest,
  orm: MikroORM,
  tokens: TokenVerifier,
  idempotency: Idempotency,
): Promise<Context> {
  let viewer: Viewer | null;
  try {
    viewer = await authenticate(request, tokens);
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
    idempotency: idempotency.request(viewer?.id ?? null, headerValue(request.headers['idempotency-key'])),
  };
}

function headerValue(value: string | string[] | undefined): string | undefined {
  // Repeated headers are joined, which no valid key matches: the request is rejected as invalid.
  return Array.isArray(value) ? value.join(', ') : value;
}
