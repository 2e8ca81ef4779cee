import { IdempotencyKeyInvalidError } from './idempotency.errors';

/** 1 to 64 characters of A-Z a-z 0-9 _ -, matched exactly (no trimming). */
export const IDEMPOTENCY_KEY_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;

/** Returns the key unchanged when valid; throws IDEMPOTENCY_KEY_INVALID otherwise. */
export function validateKey(value: unknown, source = 'idempotency key'): string {
  if (typeof value !== 'string' || !IDEMPOTENCY_KEY_PATTERN.test(value)) {
    throw new IdempotencyKeyInvalidError(`Invalid ${source}: expected 1 to 64 characters of A-Z a-z 0-9 _ -`);
  }
  return value;
}
