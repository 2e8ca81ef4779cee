import type { CreatedResource, Tombstone } from './store';

/** Every code the engine itself answers with. */
export const IdempotencyErrorCode = {
  KeyMissing: 'IDEMPOTENCY_KEY_MISSING',
  KeyInvalid: 'IDEMPOTENCY_KEY_INVALID',
  KeyReused: 'IDEMPOTENCY_KEY_REUSED',
  RequestInProgress: 'IDEMPOTENCY_REQUEST_IN_PROGRESS',
  RecordUnreadable: 'IDEMPOTENCY_RECORD_UNREADABLE',
  KeyExpired: 'IDEMPOTENCY_KEY_EXPIRED',
} as const;

/** What `extensions.idempotency` reports for one idempotent field. */
export interface IdempotencyMarker {
  readonly path: readonly (string | number)[];
  readonly key: string;
  readonly replayed: boolean;
  readonly firstExecutedAt: string;
  readonly expiresAt: string;
  /** When the key is unused again: the end of its tombstone, else `expiresAt`. */
  readonly forgottenAt: string;
}

/** Base of every error the engine raises for a client; the host publishes `code`, `message` and `details` as they are. */
export class IdempotencyError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly details: Readonly<Record<string, unknown>> = {},
    /** The field's marker when a record was involved, so the client sees which record. */
    readonly marker?: IdempotencyMarker,
  ) {
    super(message);
    this.name = new.target.name;
  }
}

/** A mutation's deterministic failure: stored and replayed like a payload. */
export type DomainFailure = Pick<IdempotencyError, 'code' | 'message' | 'details'>;

export const keyMissing = (operation: string) =>
  new IdempotencyError(
    IdempotencyErrorCode.KeyMissing,
    `${operation} is idempotent: pass an idempotencyKey argument or an Idempotency-Key header`,
  );

export const keyInvalid = (message: string) => new IdempotencyError(IdempotencyErrorCode.KeyInvalid, message);

export const keyReused = (key: string) =>
  new IdempotencyError(
    IdempotencyErrorCode.KeyReused,
    `Idempotency key ${key} was already used with a different operation or arguments; use a new key for a new request`,
  );

/** `waitMs` is how long a duplicate waits: a retry after that many whole seconds, at least 1, may be served. */
export const requestInProgress = (key: string, waitMs: number) =>
  new IdempotencyError(
    IdempotencyErrorCode.RequestInProgress,
    `A request with idempotency key ${key} is still in progress; retry with the same key`,
    { retryAfterSeconds: Math.max(1, Math.ceil(waitMs / 1000)) },
  );

/** Not retryable: the record stays as it is until it expires, and is never re-executed. */
export const recordUnreadable = (key: string, marker: IdempotencyMarker) =>
  new IdempotencyError(
    IdempotencyErrorCode.RecordUnreadable,
    `The stored outcome of idempotency key ${key} cannot be read (for example its encryption key is no longer configured); it is not executed again`,
    { retryable: false },
    marker,
  );

/** A late retry of an expired result: its resources tell the client what to fetch instead of creating them again. */
export const keyExpired = (key: string, resources: readonly CreatedResource[], marker: IdempotencyMarker) =>
  new IdempotencyError(
    IdempotencyErrorCode.KeyExpired,
    `Idempotency key ${key} was first executed at ${marker.firstExecutedAt}; its result expired at ${marker.expiresAt} and is not executed again. Fetch the current state of its resources instead`,
    { retryable: false, firstExecutedAt: marker.firstExecutedAt, resources: resources.map(({ type, id }) => ({ type, id })) },
    marker,
  );

export const storedFailure = (failure: DomainFailure, marker: IdempotencyMarker) =>
  new IdempotencyError(failure.code, failure.message, { ...failure.details }, marker);

/** The marker of a field answered from the record (or tombstone) of its key. */
export const markerOf = (
  record: Pick<Tombstone, 'createdAt' | 'expiresAt' | 'forgottenAt'>,
  { path, key }: { readonly path: readonly (string | number)[]; readonly key: string },
  replayed: boolean,
): IdempotencyMarker => ({
  path,
  key,
  replayed,
  firstExecutedAt: record.createdAt.toISOString(),
  expiresAt: record.expiresAt.toISOString(),
  forgottenAt: record.forgottenAt.toISOString(),
});
