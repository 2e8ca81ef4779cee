import { randomUUID } from 'node:crypto';
import cors from '@fastify/cors';
import type { FastifyInstance } from 'fastify';
import helmet from 'helmet';

/** An incoming X-Request-Id is kept when it looks like an id; otherwise a UUID is generated. */
const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/** Request id for Fastify's `genReqId`: the client's X-Request-Id when sane, else a new UUID. */
export function requestId(request: { headers: Record<string, string | string[] | undefined> }): string {
  const incoming = request.headers['x-request-id'];
  return typeof incoming === 'string' && REQUEST_ID.test(incoming) ? incoming : randomUUID();
}

export interface SecurityOptions {
  /** An explorer page is served: the Sandbox sets its own nonce-based policy. */
  readonly explorer: boolean;
  /** Origins allowed cross-origin; `*` for any; empty for none. */
  readonly corsOrigins: readonly string[];
}

/** Security headers, CORS and the X-Request-Id echo. */
export async function registerSecurity(app: FastifyInstance, options: SecurityOptions): Promise<void> {
  // Helmet's own middleware, built once: the headers are the same on every response, where
  // @fastify/helmet would build the middleware again for each request.
  const securityHeaders = helmet({
    // The Sandbox page sets its own nonce-based policy; the API's JSON needs none at all.
    contentSecurityPolicy: options.explorer ? false : { directives: { defaultSrc: ["'none'"], frameAncestors: ["'none'"] } },
    crossOriginEmbedderPolicy: false,
    hsts: { maxAge: 15_552_000, includeSubDomains: true },
  });
  app.addHook('onRequest', (request, reply, done) => securityHeaders(request.raw, reply.raw, (error) => done(error as Error | undefined)));
  if (options.corsOrigins.length > 0) {
    await app.register(cors, {
      origin: options.corsOrigins.includes('*') ? '*' : [...options.corsOrigins],
      methods: ['GET', 'POST', 'OPTIONS'],
      // Apollo Client adds its client awareness and operation name headers by default.
      allowedHeaders: [
        'content-type',
        'authorization',
        'idempotency-key',
        'x-request-id',
        'apollo-require-preflight',
        'apollographql-client-name',
        'apollographql-client-version',
        'x-apollo-operation-name',
      ],
      exposedHeaders: ['idempotent-replayed', 'x-request-id', 'retry-after'],
      maxAge: 600,
    });
  }
  app.addHook('onSend', async (request, reply) => {
    reply.header('x-request-id', request.id);
  });
}
