export type { IdempotencyCall, IdempotencyOptions } from './calls';
export { type AttemptReport, createRetryingFetch, RetriesExhaustedError, type RetryingFetchOptions } from './fetch';
export { type IntentStore, memoryIntentStore, newIdempotencyKey, type StorageLike, webStorageIntentStore } from './intents';
export { type IdempotencyEntry, type IdempotencyInfo, readIdempotency } from './marker';
export { type DocumentLike, idempotentMutationsFromSchema, type OperationPlan, planOperation } from './operation';
export {
  type AttemptFailure,
  backoffDelay,
  decideRetry,
  failureOfResult,
  isRetryable,
  parseRetryAfter,
  RETRYABLE_CODES,
  type RetryDecision,
  type RetryOptions,
  type RetryPolicy,
  retryPolicy,
} from './policy';
export { IDEMPOTENT_MUTATIONS } from './schema.generated';
