import type { EntityManager } from '@mikro-orm/postgresql';
import { v5 as uuidV5 } from 'uuid';

/**
 * An event as a mutation states it. The outbox knows no event type: each module names its own
 * (src/orders/order.events.ts, src/catalog/product.events.ts) and docs/events.md describes them.
 */
export interface NewEvent {
  /** A PascalCase name, also the relay's subject suffix (`events.<type>`). */
  readonly type: string;
  /** The id of what the event is about (an order, a product). */
  readonly subjectId: string;
  readonly occurredAt: Date;
  readonly data: Record<string, unknown>;
}

// Fixed namespace of this service's event ids (a random UUID chosen once, never to change).
const EVENT_ID_NAMESPACE = '0d7f6c55-3c2e-4f1b-9a53-5d0e8f4b7a21';

/**
 * The event's id: a name-based UUID (version 5) of its type and subject. A type names something
 * that happens at most once to its subject (an order is placed once, cancelled once), so the id
 * names the fact itself: every write, publish or delivery of it carries the same id.
 */
export function eventId(type: string, subjectId: string): string {
  return uuidV5(`${type}:${subjectId}`, EVENT_ID_NAMESPACE);
}

/** One SQL statement with `?` placeholders and its parameters, bound in that order. */
export interface Statement {
  readonly sql: string;
  readonly params: readonly unknown[];
}

const INSERT_EVENT = 'insert into outbox_events (id, type, occurred_at, data) values (?, ?, ?, ?::jsonb) on conflict (id) do nothing';

/**
 * Appends an event in the transaction of `em`, the mutation's own: it commits or rolls back
 * with the business rows and the idempotency record. An event whose id is already stored is the
 * same fact and is not written again (only possible when a row was reset outside the API, such
 * as an order set back to PLACED and cancelled again).
 */
export async function appendEvent(em: EntityManager, event: NewEvent): Promise<void> {
  await em.execute(INSERT_EVENT, eventParams(event), 'run');
}

/**
 * Writes sent as one statement: each but the last runs as a data-modifying CTE in front of the
 * last. PostgreSQL runs each of them once, whether or not anything reads it, and checks foreign
 * keys when the whole statement is done, so a row may refer to one written before it in the list.
 * One round trip instead of one per write, and all are written or none. None may have a WITH
 * clause of its own.
 */
export function asOneStatement(writes: readonly Statement[]): Statement {
  const last = writes.at(-1);
  if (!last) throw new RangeError('asOneStatement needs at least one statement');
  const ctes = writes.slice(0, -1).map((write, index) => `write_${index + 1} as (${write.sql})`);
  return { sql: ctes.length > 0 ? `with ${ctes.join(', ')} ${last.sql}` : last.sql, params: writes.flatMap((write) => write.params) };
}

/** `writes` with the insert of `event` in front, as {@link appendEvent} would write it, for {@link asOneStatement}. */
export function withEvent(event: NewEvent, writes: readonly Statement[]): Statement[] {
  return [{ sql: INSERT_EVENT, params: eventParams(event) }, ...writes];
}

function eventParams(event: NewEvent): unknown[] {
  return [eventId(event.type, event.subjectId), event.type, event.occurredAt, JSON.stringify(event.data)];
}
