import type { EntityManager } from '@mikro-orm/postgresql';
import type { IdempotencyHandler, IdempotencyMarker } from './idempotency.handler';

/** Idempotency state of one request: the engine, who is asking, the header and the markers. */
export class IdempotencyRequest {
  readonly markers: IdempotencyMarker[] = [];
  /** The mutation field of each marker, in the same order. */
  readonly fields: string[] = [];

  constructor(
    readonly handler: IdempotencyHandler,
    /** The user the records belong to; null when anonymous. */
    readonly scope: string | null,
    /** The raw `Idempotency-Key` header, undefined when absent. */
    readonly headerKey: string | undefined,
    /**
     * What the caller may do (their roles, say) in a stable form. A remembered replay response
     * is reused only for the same scope and grants, so a lost permission is never bypassed.
     */
    readonly grants = '',
  ) {}

  /** Reports one idempotent field's outcome. */
  mark(field: string, marker: IdempotencyMarker): void {
    this.markers.push(marker);
    this.fields.push(field);
  }

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
