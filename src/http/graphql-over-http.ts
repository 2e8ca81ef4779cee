import { ApolloServerErrorCode } from '@apollo/server/errors';
import type {
  FastifyError,
  FastifyInstance,
  FastifyReply,
  FastifyRequest,
  onRequestHookHandler,
  onSendHookHandler,
  RouteOptions,
} from 'fastify';
import { ErrorCode } from '../errors';
import { essenceOf, MEDIA_TYPES, prefersHtml, requestContentTypeProblem, responseMediaType } from './media-types';

/** How the GraphQL route is served beyond the specification. */
export interface GraphQLOverHttpOptions {
  /** Apollo serves its landing page to a GET that prefers text/html (development only): such a GET skips Accept negotiation. */
  readonly landingPage: boolean;
}

const GRAPHQL_PATH = '/graphql';
const ALLOWED_METHODS = 'GET, POST';

/**
 * Codes of the request errors Apollo raises for a well-formed request (parse, validation, operation
 * selection, variable coercion). The specification wants 200 for these with application/json, where
 * Apollo answers 400; BAD_REQUEST (a malformed request) keeps its 400.
 */
const WELL_FORMED_REQUEST_ERROR_CODES = new Set<unknown>([
  ApolloServerErrorCode.GRAPHQL_PARSE_FAILED,
  ApolloServerErrorCode.GRAPHQL_VALIDATION_FAILED,
  ApolloServerErrorCode.OPERATION_RESOLUTION_FAILURE,
  ApolloServerErrorCode.BAD_USER_INPUT,
  // A malformed key in a variable fails coercion of the IdempotencyKey scalar.
  ErrorCode.IdempotencyKeyInvalid,
]);

/**
 * Closes the gaps Apollo Server and Fastify leave in the GraphQL-over-HTTP specification on
 * `/graphql` (docs/graphql-over-http.md lists each requirement). Call it before the route is
 * registered: the route's own hooks are attached as it is added.
 */
export function registerGraphQLOverHttp(app: FastifyInstance, options: GraphQLOverHttpOptions): void {
  // The resource exists, so other methods are 405 with Allow rather than Fastify's 404. Answered
  // in onRequest so that no body is parsed first.
  // HEAD is declared here, before the GET route, so that Fastify does not derive it from GET.
  app.route({ url: GRAPHQL_PATH, method: ['HEAD', 'PUT', 'PATCH', 'DELETE'], onRequest: methodNotAllowed, handler: methodNotAllowed });

  let attached = false;
  app.addHook('onRoute', (route) => {
    if (route.url !== GRAPHQL_PATH || !methodsOf(route).includes('POST')) return;
    attached = true;
    route.onRequest = [...asArray(route.onRequest), negotiateRequest(options)];
    route.onSend = [...asArray(route.onSend), legacyJsonStatus];
    route.errorHandler = bodyErrorHandler(route.errorHandler);
  });
  app.addHook('onReady', async () => {
    if (!attached) throw new Error(`registerGraphQLOverHttp() must be called before the ${GRAPHQL_PATH} route is registered`);
  });
}

/** Accept and Content-Type are settled before the body is parsed, so a refused request executes nothing. */
function negotiateRequest(options: GraphQLOverHttpOptions): onRequestHookHandler {
  return async function graphqlOverHttp(request, reply) {
    // OPTIONS stays Apollo's and CORS's (preflight).
    if (request.method !== 'GET' && request.method !== 'POST') return;
    const accept = headerValue(request.headers.accept);
    if (request.method === 'GET' && options.landingPage && prefersHtml(accept)) return;
    // Apollo negotiates too, but only after executing: a mutation would commit and its answer be lost.
    if (responseMediaType(accept) === null) {
      return sendRequestError(reply, 406, MEDIA_TYPES.json, `Accept must allow application/graphql-response+json or application/json`);
    }
    if (request.method === 'POST') {
      const problem = requestContentTypeProblem(headerValue(request.headers['content-type']));
      if (problem !== null) return sendRequestError(reply, 415, responseMediaTypeOf(request), problem);
      return;
    }
    dropAbsentGetParameters(request);
  };
}

/**
 * For GET the specification makes an empty operationName the same as none, and (by its note on
 * optional parameters) `variables=null` or `extensions=null` the same as absent, where Apollo
 * rejects all three. The integration reads the raw URL, so the URL itself is rewritten.
 */
function dropAbsentGetParameters(request: FastifyRequest): void {
  const url = request.raw.url ?? '';
  const start = url.indexOf('?');
  if (start === -1) return;
  const params = new URLSearchParams(url.slice(start + 1));
  const absent = (name: string, value: string) => params.getAll(name).length === 1 && params.get(name) === value;
  let changed = false;
  for (const [name, value] of [
    ['operationName', ''],
    ['variables', 'null'],
    ['extensions', 'null'],
  ] as const) {
    if (absent(name, value)) {
      params.delete(name);
      changed = true;
    }
  }
  if (!changed) return;
  const search = params.toString();
  request.raw.url = search ? `${url.slice(0, start)}?${search}` : url.slice(0, start);
}

/**
 * With application/json the specification asks for 200 on every well-formed request, request
 * errors included, because a 4xx JSON body might come from any intermediary.
 */
const legacyJsonStatus: onSendHookHandler = async (_request, reply, payload) => {
  if (reply.statusCode === 400 && typeof payload === 'string' && essenceOf(reply.getHeader('content-type')) === 'application/json') {
    if (isWellFormedRequestErrorResponse(payload)) reply.code(200);
  }
  return payload;
};

function isWellFormedRequestErrorResponse(payload: string): boolean {
  let body: unknown;
  try {
    body = JSON.parse(payload);
  } catch {
    return false;
  }
  if (typeof body !== 'object' || body === null || 'data' in body) return false;
  const { errors } = body as { errors?: unknown };
  return (
    Array.isArray(errors) &&
    errors.length > 0 &&
    errors.every((error: { extensions?: { code?: unknown } } | null) => WELL_FORMED_REQUEST_ERROR_CODES.has(error?.extensions?.code))
  );
}

type RouteErrorHandler = NonNullable<RouteOptions['errorHandler']>;

/**
 * Body parsing failures (invalid or empty JSON, too large) are answered as GraphQL errors in the
 * negotiated media type instead of Fastify's own error shape; every other error goes on to the
 * route's or the server's handler.
 */
function bodyErrorHandler(next: RouteOptions['errorHandler']): RouteErrorHandler {
  return function graphqlBodyError(this: FastifyInstance, error: FastifyError, request: FastifyRequest, reply: FastifyReply) {
    if (isPreparedAnswer(error)) {
      // @fastify/rate-limit throws the GraphQL-shaped body it built; it carries its own status.
      const { statusCode, ...body } = error;
      return reply.code(statusCode).type(responseMediaTypeOf(request)).send(body);
    }
    const status = error.statusCode ?? 500;
    if (!(error instanceof Error) || !error.code?.startsWith('FST_ERR_CTP_') || status < 400 || status >= 500) {
      if (next) return next.call(this, error, request, reply);
      throw error;
    }
    request.log.info({ err: error }, 'malformed GraphQL-over-HTTP request body');
    return sendRequestError(reply, status, responseMediaTypeOf(request), error.message);
  };
}

async function methodNotAllowed(request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply> {
  return sendRequestError(
    reply.header('allow', ALLOWED_METHODS),
    405,
    responseMediaTypeOf(request),
    `${request.method} is not supported: use GET or POST`,
  );
}

function isPreparedAnswer(error: unknown): error is { statusCode: number; errors: unknown[] } {
  if (error instanceof Error || error === null || typeof error !== 'object') return false;
  const { statusCode, errors } = error as { statusCode?: unknown; errors?: unknown };
  return typeof statusCode === 'number' && statusCode >= 400 && Array.isArray(errors);
}

function sendRequestError(reply: FastifyReply, status: number, mediaType: string, message: string): FastifyReply {
  const body = { errors: [{ message, extensions: { code: ApolloServerErrorCode.BAD_REQUEST } }] };
  return reply.code(status).type(mediaType).send(JSON.stringify(body));
}

function responseMediaTypeOf(request: FastifyRequest): string {
  return responseMediaType(headerValue(request.headers.accept)) ?? MEDIA_TYPES.json;
}

function headerValue(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value.join(', ') : value;
}

function methodsOf(route: RouteOptions): string[] {
  return (Array.isArray(route.method) ? route.method : [route.method]).map((method) => method.toUpperCase());
}

function asArray<T>(value: T | T[] | undefined): T[] {
  if (value === undefined) return [];
  return Array.isArray(value) ? value : [value];
}
