import { GraphQLScalarType, Kind } from 'graphql';
import { IDEMPOTENCY_KEY_PATTERN } from './key';

/** Error thrown from variable coercion; graphql-js keeps its extensions on the request error. */
class InvalidKeyValueError extends Error {
  readonly extensions = { code: 'IDEMPOTENCY_KEY_INVALID' };
}

/**
 * `IdempotencyKey`: a string of 1 to 64 characters of A-Z a-z 0-9 _ -. A malformed key in a
 * variable fails with IDEMPOTENCY_KEY_INVALID; a string literal is checked by the engine, which
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
  parseLiteral: (ast) => {
    if (ast.kind !== Kind.STRING) throw new InvalidKeyValueError('an idempotency key is a string');
    return ast.value;
  },
});
