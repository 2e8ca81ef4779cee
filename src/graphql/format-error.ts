import type { ApolloServerPlugin } from '@apollo/server';
import { ApolloServerErrorCode, unwrapResolverError } from '@apollo/server/errors';
import type { FastifyBaseLogger } from 'fastify';
import type { GraphQLFormattedError } from 'graphql';
import type { Logger } from 'pino';
import { isTransientDatabaseError } from '../database/transient';
import { AppError, ErrorCode, ServiceUnavailableError } from '../errors';
import { IdempotencyError } from '../idempotency';

/** Codes Apollo Server itself assigns to request errors; they describe the request, not the server. */
const REQUEST_ERROR_CODES = new Set<string>([
  ApolloServerErrorCode.GRAPHQL_PARSE_FAILED,
  ApolloServerErrorCode.GRAPHQL_VALIDATION_FAILED,
  ApolloServerErrorCode.BAD_USER_INPUT,
  ApolloServerErrorCode.BAD_REQUEST,
  ApolloServerErrorCode.OPERATION_RESOLUTION_FAILURE,
  ApolloServerErrorCode.PERSISTED_QUERY_NOT_FOUND,
  ApolloServerErrorCode.PERSISTED_QUERY_NOT_SUPPORTED,
  ErrorCode.Unauthenticated,
  // A malformed key in a variable fails coercion before execution.
  ErrorCode.IdempotencyKeyInvalid,
]);

/** How an error reaches the client: as itself, as SERVICE_UNAVAILABLE, or masked. */
export type ErrorClass = 'client' | 'request' | 'transient' | 'unexpected';

/** Classifies an error as Apollo hands it over (possibly wrapping a resolver's error). */
export function classifyError(error: unknown, code?: unknown): ErrorClass {
  const original = unwrapResolverError(error);
  if (original instanceof AppError || original instanceof IdempotencyError) return 'client';
  if (isTransientDatabaseError(original)) return 'transient';
  if (typeof code === 'string' && REQUEST_ERROR_CODES.has(code) && original === error) return 'request';
  return 'unexpected';
}

/**
 * Apollo's `formatError`: client-facing errors keep their code and message; anything
 * unexpected is masked, so no stack, SQL or path reaches a client. Logging happens in
 * {@link errorLogPlugin}, under the request's id.
 */
export function formatError(formatted: GraphQLFormattedError, error: unknown): GraphQLFormattedError {
  const original = unwrapResolverError(error);
  const base = { locations: formatted.locations, path: formatted.path };
  const kind = classifyError(error, formatted.extensions?.code);
  switch (kind) {
    case 'client': {
      const client = original as AppError | IdempotencyError;
      return { ...base, message: client.message, extensions: { ...client.details, code: client.code } };
    }
    case 'transient': {
      const unavailable = new ServiceUnavailableError();
      return { ...base, message: unavailable.message, extensions: { ...unavailable.details, code: unavailable.code } };
    }
    case 'request': {
      const { stacktrace: _stacktrace, exception: _exception, ...extensions } = formatted.extensions ?? {};
      return { ...formatted, message: formatted.message.replace(/^Context creation failed: /, ''), extensions };
    }
    case 'unexpected':
      return { ...base, message: 'Internal server error', extensions: { code: ErrorCode.InternalServerError } };
    default: {
      const unreachable: never = kind;
      throw new Error(`unknown error class ${String(unreachable)}`);
    }
  }
}

/** Logs transient and unexpected errors with their cause, under the request's logger. */
export function errorLogPlugin<C extends { log?: FastifyBaseLogger }>(fallback: Logger): ApolloServerPlugin<C> {
  return {
    async requestDidStart() {
      return {
        async didEncounterErrors({ contextValue, errors }) {
          const log = contextValue?.log ?? fallback;
          for (const error of errors) {
            const kind = classifyError(error, error.extensions?.code);
            const original = unwrapResolverError(error);
            if (kind === 'transient') log.warn({ err: original, path: error.path }, 'database unavailable');
            if (kind === 'unexpected') log.error({ err: original, path: error.path }, 'unexpected error in GraphQL execution');
          }
        },
      };
    },
  };
}
