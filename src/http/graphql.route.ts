import type { ApolloServer } from '@apollo/server';
import { fastifyApolloHandler } from '@as-integrations/fastify';
import type { FastifyInstance, FastifyReply, FastifyRequest, RouteHandlerMethod } from 'fastify';
import { ErrorCode } from '../errors';
import type { Context } from '../graphql/context';

export interface GraphQLRouteOptions {
  readonly context: (request: FastifyRequest) => Promise<Context>;
  /** A request still executing after this long is answered 503 (the work itself finishes). */
  readonly timeoutMs: number;
  /** Extra route options (rate limiting). */
  readonly config?: Record<string, unknown>;
}

/**
 * `/graphql` through Apollo Server. A request that runs past the timeout is answered with a
 * retryable SERVICE_UNAVAILABLE; an idempotent mutation that commits later replays on retry.
 */
export function registerGraphQLRoute(app: FastifyInstance, apollo: ApolloServer<Context>, options: GraphQLRouteOptions): void {
  // The integration types its reply as a string body; the route here is the default generic one.
  const handle = fastifyApolloHandler(apollo, { context: options.context }) as unknown as RouteHandlerMethod;
  app.route({
    url: '/graphql',
    method: ['GET', 'POST', 'OPTIONS'],
    config: options.config ?? {},
    handler: async function graphql(request, reply) {
      let timedOut = false;
      // The integration writes status and headers when execution ends; after a timeout answer
      // those late writes must not touch the reply that was already sent.
      const guarded = new Proxy(reply, {
        get(target, property, receiver) {
          if (timedOut && (property === 'header' || property === 'code' || property === 'send')) return () => receiver;
          return Reflect.get(target, property, receiver);
        },
      });
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<typeof TIMED_OUT>((resolve) => {
        timer = setTimeout(() => resolve(TIMED_OUT), options.timeoutMs);
      });
      try {
        const result = await Promise.race([handle.call(this, request, guarded as FastifyReply) as Promise<unknown>, timeout]);
        if (result !== TIMED_OUT) return result;
        timedOut = true;
        request.log.warn({ timeoutMs: options.timeoutMs }, 'GraphQL request timed out');
        return reply
          .code(503)
          .header('retry-after', '1')
          .type('application/json; charset=utf-8')
          .send({
            errors: [
              {
                message: 'The request took too long; retry it (with the same idempotency key for a mutation)',
                extensions: { code: ErrorCode.ServiceUnavailable, retryable: true },
              },
            ],
          });
      } finally {
        clearTimeout(timer);
      }
    },
  });
}

const TIMED_OUT = Symbol('timed out');
