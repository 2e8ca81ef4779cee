import { GraphQLScalarType, Kind, valueFromASTUntyped } from 'graphql';
import { Arg } from 'type-graphql';
import { IdempotencyErrorCode, keyInvalid } from './errors';

/** 1 to 64 characters of A-Z a-z 0-9 _ -, matched exactly (no trimming). */
export const IDEMPOTENCY_KEY_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;

/** Name of the key argument every idempotent mutation declares. */
export const IDEMPOTENCY_KEY_ARG = 'idempotencyKey';

/** Returns the key unchanged when valid; throws IDEMPOTENCY_KEY_INVALID otherwise. */
export function validateKey(value: unknown, source = 'idempotency key'): string {
  if (typeof value !== 'string' || !IDEMPOTENCY_KEY_PATTERN.test(value)) {
    throw keyInvalid(`Invalid ${source}: expected 1 to 64 characters of A-Z a-z 0-9 _ -`);
  }
  return value;
}

/** graphql-js keeps a coercion error's extensions on the request error it reports. */
class InvalidKeyValueError extends Error {
  readonly extensions = { code: IdempotencyErrorCode.KeyInvalid };
}

/**
 * `IdempotencyKey`. A malformed key in a variable fails coercion with IDEMPOTENCY_KEY_INVALID;
 * a literal passes through and the engine answers it with the same code (a failure here would
 * surface as GRAPHQL_VALIDATION_FAILED instead).
 */
export const IdempotencyKeyScalar = new GraphQLScalarType<string, string>({
  name: 'IdempotencyKey',
  description: `An idempotency key: 1 to 64 characters matching ${IDEMPOTENCY_KEY_PATTERN.source}, unique per request the client means once.`,
  specifiedByURL: 'https://datatracker.ietf.org/doc/draft-ietf-httpapi-idempotency-key-header/',
  serialize: (value) => String(value),
  parseValue: (value) => {
    if (typeof value !== 'string' || !IDEMPOTENCY_KEY_PATTERN.test(value)) {
      throw new InvalidKeyValueError('an idempotency key is 1 to 64 characters of A-Z a-z 0-9 _ -');
    }
    return value;
  },
  parseLiteral: (ast, variables) => (ast.kind === Kind.STRING ? ast.value : (valueFromASTUntyped(ast, variables) as string)),
});

/** Declares the optional `idempotencyKey: IdempotencyKey` argument of an idempotent mutation. */
export function IdempotencyKeyArg(): ReturnType<typeof Arg> {
  return Arg(IDEMPOTENCY_KEY_ARG, () => IdempotencyKeyScalar, {
    nullable: true,
    description:
      'Makes the mutation idempotent: a retry with the same key returns the first outcome. Defaults to the Idempotency-Key header.',
  });
}
