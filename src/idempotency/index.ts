export { encryptedCodec, plainCodec, type ResultCodec, UnreadableRecordError } from './codec';
export { fingerprint } from './fingerprint';
export { type IdempotencyContext, IdempotencyRequest } from './idempotency.context';
export {
  IdempotencyKeyInvalidError,
  IdempotencyKeyMissingError,
  IdempotencyKeyReusedError,
  IdempotencyRequestInProgressError,
} from './idempotency.errors';
export { type HandlerConfig, IdempotencyHandler, type IdempotencyMarker, IdempotentFailure } from './idempotency.handler';
export { type IdempotencyObserver, ObservedOutcome } from './idempotency.observer';
export { idempotencyResponsePlugin, REPLAYED_HEADER } from './idempotency.plugin';
export { IdempotencyKeyScalar } from './idempotency.scalar';
export { IDEMPOTENCY_KEY_ARG, IDEMPOTENCY_KEY_DESCRIPTION, Idempotent, type IdempotentOptions } from './idempotent.decorator';
export { IDEMPOTENCY_KEY_PATTERN, validateKey } from './key';
export { PURGE_BATCH_SIZE, PURGE_PAUSE_RATIO, purgeExpired, startPurgeJob } from './purge';
export { IdempotencyRecord, Outcome } from './record.entity';
export { IdempotencyRecordResolver, IdempotencyRecordType } from './record.resolver';
export { IdempotencyStore, type RecordRow } from './record.store';
