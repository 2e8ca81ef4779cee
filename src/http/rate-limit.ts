import rateLimit from '@fastify/rate-limit';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { getOperationAST, parse } from 'graphql';
import type { TokenVerifier } from '../auth/token';
import { ErrorCode } from '../errors';
import { authenticate } from './context';

/**
 * Limits mutations per user (per client address when anonymous) to `perMinute`; queries are
 * not counted. A refused request gets 429, `Retry-After` and a RATE_LIMITED GraphQL error.
 */
export async function registerMutationRateLimit(app: FastifyInstance, perMinute: number, tokens: TokenVerifier): Promise<void> {
  if (perMinute <= 0) return;
  await app.register(rateLimit, {
    global: false,
    hook: 'preHandler',
    max: perMinute,
    timeWindow: 60_000,
    keyGenerator: async (request) => {
      const viewer = await authenticate(request, tokens).catch(() => null);
      return viewer ? `user:${viewer.id}` : `ip:${request.ip}`;
    },
    allowList: (request) => !isMutation(request),
    errorResponseBuilder: (_request, context) => {
      const retryAfterSeconds = Math.max(1, Math.ceil(context.ttl / 1000));
      return {
        statusCode: 429,
        errors: [
          {
            message: `Rate limit exceeded: at most ${context.max} mutations per minute; retry after ${retryAfterSeconds} s`,
            extensions: { code: ErrorCode.RateLimited, retryAfterSeconds },
          },
        ],
      };
    },
  });
}

/** The route option that applies the mutation limit to a route. */
export function mutationRateLimitRouteConfig(perMinute: number) {
  return perMinute > 0 ? { rateLimit: { max: perMinute, timeWindow: 60_000 } } : {};
}

function isMutation(request: FastifyRequest): boolean {
  const body = request.body as { query?: unknown; operationName?: unknown } | undefined;
  if (request.method !== 'POST' || typeof body?.query !== 'string') return false;
  try {
    const operationName = typeof body.operationName === 'string' ? body.operationName : undefined;
    return getOperationAST(parse(body.query, { maxTokens: 5000 }), operationName)?.operation === 'mutation';
  } catch {
    // Apollo answers unparsable documents itself; they execute nothing.
    return false;
  }
}
