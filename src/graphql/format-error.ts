import { ApolloServerErrorCode, unwrapResolverError } from '@apollo/server/errors';
import type { GraphQLFormattedError } from 'graphql';
import type { Logger } from 'pino';
import { isTransientDatabaseError } from '../database/transient';
import { AppError, ErrorCode, ServiceUnavailableError } from '../errors';

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

/**
 * Builds Apollo's `formatError`: client-facing errors keep their code and message; anything
 * unexpected is logged with its cause and masked, so no stack, SQL or path reaches a client.
 */
export function createFormatError(logger: Logger) {
  return (formatted: GraphQLFormattedError, error: unknown): GraphQLFormattedError => {
    const original = unwrapResolverError(error);
    const base = { locations: formatted.locations, path: formatted.path };
    if (original instanceof AppError) {
      return { ...base, message: original.message, extensions: { ...original.details, code: original.code } };
    }
    if (isTransientDatabaseError(original)) {
      logger.warn({ err: original, path: formatted.path }, 'database unavailable');
      const unavailable = new ServiceUnavailableError();
      return { ...base, message: unavailable.message, extensions: { ...unavailable.details, code: unavailable.code } };
    }
    const code = formatted.extensions?.code;
    if (typeof code === 'string' && REQUEST_ERROR_CODES.has(code) && original === error) {
      const { stacktrace: _stacktrace, exception: _exception, ...extensions } = formatted.extensions ?? {};
      return { ...formatted, message: formatted.message.replace(/^Context creation failed: /, ''), extensions };
    }
    logger.error({ err: original, path: formatted.path }, 'unexpected error in GraphQL execution');
    return { ...base, message: 'Internal server error', extensions: { code: ErrorCode.InternalServerError } };
  };
}
