import { AppError, ErrorCode } from '../errors';

/** Neither the `idempotencyKey` argument nor the `Idempotency-Key` header was given. */
export class IdempotencyKeyMissingError extends AppError {
  readonly code = ErrorCode.IdempotencyKeyMissing;
  constructor(operation: string) {
    super(`${operation} is idempotent: pass an idempotencyKey argument or an Idempotency-Key header`);
  }
}

/** The key is malformed, or the argument and header disagree, or the header is ambiguous. */
export class IdempotencyKeyInvalidError extends AppError {
  readonly code = ErrorCode.IdempotencyKeyInvalid;
}

/** The key was used by the same user for a different operation or different arguments. */
export class IdempotencyKeyReusedError extends AppError {
  readonly code = ErrorCode.IdempotencyKeyReused;
  constructor(key: string) {
    super(`Idempotency key ${key} was already used with a different operation or arguments; use a new key for a new request`);
  }
}

/** A request with this key is still executing; retry with the same key after the hint. */
export class IdempotencyRequestInProgressError extends AppError {
  readonly code = ErrorCode.IdempotencyRequestInProgress;
  constructor(key: string, retryAfterSeconds: number) {
    super(`A request with idempotency key ${key} is still in progress; retry with the same key`, { retryAfterSeconds });
  }
}
