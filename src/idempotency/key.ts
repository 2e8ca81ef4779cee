import { GraphQLScalarType, Kind, valueFromASTUntyped } from 'graphql';
import { Arg } from 'type-graphql';
import { IdempotencyErrorCode, keyInvalid } from './errors';

/** 1 to 64 characters of A-Z a-z 0-9 _ -, matched exactly (no trimming). */
export const IDEMPOTENCY_KEY_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;

/** Name of the key argument every idempotent mutation declares. */
export const IDEMPOTENCY_KEY_ARG = 'idempotencyKey';

const isKey = (value: unknown): value is string => typeof value === 'string' && IDEMPOTENCY_KEY_PATTERN.test(value);

/** Returns the key unchanged when valid; throws IDEMPOTENCY_KEY_INVALID otherwise. */
export function validateKey(value: unknown, source = 'idempotency key'): string {
  if (!isKey(value)) throw keyInvalid(`Invalid ${source}: expected 1 to 64 characters of A-Z a-z 0-9 _ -`);
  return value;
}

/**
 * `IdempotencyKey`. A malformed key in a variable fails coercion with IDEMPOTENCY_KEY_INVALID (graphql-js
 * keeps the thrown error's extensions); a literal passes through and the engine answers it with the same
 * code, where a failure here would surface as GRAPHQL_VALIDATION_FAILED.
 */
export const IdempotencyKeyScalar = new GraphQLScalarType<string, string>({
  name: 'IdempotencyKey',
  description: `An idempotency key: 1 to 64 characters matching ${IDEMPOTENCY_KEY_PATTERN.source}, unique per request the client means once.`,
  specifiedByURL: 'https://datatracker.ietf.org/doc/draft-ietf-httpapi-idempotency-key-header/',
  serialize: (value) => String(value),
  parseValue: (value) => {
    if (isKey(value)) return value;
    throw Object.assign(new Error('an idempotency key is 1 to 64 characters of A-Z a-z 0-9 _ -'), {
      extensions: { code: IdempotencyErrorCode.KeyInvalid },
    });
  },
  parseLiteral: (ast, variables) => (ast.kind === Kind.STRING ? ast.value : (valueFromASTUntyped(ast, variables) as string)),
});

/** Declares the optional `idempotencyKey: IdempotencyKey` argument of an idempotent mutation. */
export const IdempotencyKeyArg = (): ReturnType<typeof Arg> =>
  Arg(IDEMPOTENCY_KEY_ARG, () => IdempotencyKeyScalar, {
    nullable: true,
    description:
      'Makes the mutation idempotent: a retry with the same key returns the first outcome. Defaults to the Idempotency-Key header.',
  });
