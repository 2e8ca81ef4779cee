import type { EntityManager } from '@mikro-orm/postgresql';
import type { IdempotencyHandler, IdempotencyMarker } from './idempotency.handler';

/** Idempotency state of one request: the engine, who is asking, the header and the markers. */
export class IdempotencyRequest {
  readonly markers: IdempotencyMarker[] = [];

  constructor(
    readonly handler: IdempotencyHandler,
    /** The user the records belong to; null when anonymous. */
    readonly scope: string | null,
    /** The raw `Idempotency-Key` header, undefined when absent. */
    readonly headerKey: string | undefined,
  ) {}

  /** Whether any field of this request was answered from a stored outcome. */
  get replayed(): boolean {
    return this.markers.some((marker) => marker.replayed);
  }
}

/** What the engine needs from the GraphQL context. */
export interface IdempotencyContext {
  readonly em: EntityManager;
  readonly idempotency: IdempotencyRequest;
}
