import { GraphQLScalarType, Kind, valueFromASTUntyped } from 'graphql';
import { IDEMPOTENCY_KEY_PATTERN } from './key';

/** Error thrown from variable coercion; graphql-js keeps its extensions on the request error. */
class InvalidKeyValueError extends Error {
  readonly extensions = { code: 'IDEMPOTENCY_KEY_INVALID' };
}

/**
 * `IdempotencyKey`: a string of 1 to 64 characters of A-Z a-z 0-9 _ -. A malformed key in a
 * variable fails with IDEMPOTENCY_KEY_INVALID; a literal is checked by the engine, which
 * answers with the same code.
 */
export const IdempotencyKeyScalar = new GraphQLScalarType<string, string>({
  name: 'IdempotencyKey',
  description: '1 to 64 characters of A-Z a-z 0-9 _ -',
  serialize: (value) => String(value),
  parseValue: (value) => {
    if (typeof value !== 'string' || !IDEMPOTENCY_KEY_PATTERN.test(value)) {
      throw new InvalidKeyValueError('an idempotency key is 1 to 64 characters of A-Z a-z 0-9 _ -');
    }
    return value;
  },
  // Literals pass through unchecked: a failure here would surface as GRAPHQL_VALIDATION_FAILED,
  // while the engine answers any malformed key, string or not, with IDEMPOTENCY_KEY_INVALID.
  parseLiteral: (ast, variables) => (ast.kind === Kind.STRING ? ast.value : (valueFromASTUntyped(ast, variables) as string)),
});
