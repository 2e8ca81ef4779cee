import type { EntityManager } from '@mikro-orm/postgresql';
import { v5 as uuidV5 } from 'uuid';
import { OutboxEvent } from './event.entity';

/** The event types written to the outbox; their `data` is described in docs/events.md. */
export const EventType = {
  OrderPlaced: 'OrderPlaced',
  OrderCancelled: 'OrderCancelled',
  ProductCreated: 'ProductCreated',
} as const;
export type EventType = (typeof EventType)[keyof typeof EventType];

/** An event as a mutation states it. */
export interface NewEvent {
  readonly type: EventType;
  /** The id of the order or product the event is about. */
  readonly subjectId: string;
  readonly occurredAt: Date;
  readonly data: Record<string, unknown>;
}

// Fixed namespace of this service's event ids (a random UUID chosen once, never to change).
const EVENT_ID_NAMESPACE = '0d7f6c55-3c2e-4f1b-9a53-5d0e8f4b7a21';

/**
 * The event's id: a name-based UUID (version 5) of its type and subject. Each type happens at
 * most once per order or product (placed once, cancelled once, created once), so the id names
 * the fact itself: every write, publish or delivery of it carries the same id.
 */
export function eventId(type: EventType, subjectId: string): string {
  return uuidV5(`${type}:${subjectId}`, EVENT_ID_NAMESPACE);
}

/**
 * Appends an event in the transaction of `em`, the mutation's own: it commits or rolls back
 * with the business rows and the idempotency record. An event whose id is already stored is the
 * same fact and is not written again (only possible when a row was reset outside the API, such
 * as an order set back to PLACED and cancelled again).
 */
export async function appendEvent(em: EntityManager, event: NewEvent): Promise<void> {
  await em
    .createQueryBuilder(OutboxEvent)
    .insert({
      id: eventId(event.type, event.subjectId),
      type: event.type,
      occurredAt: event.occurredAt,
      data: event.data,
      publishedAt: null,
    })
    .onConflict('id')
    .ignore()
    .execute('run');
}
