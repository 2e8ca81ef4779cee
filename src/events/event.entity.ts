import { OptionalProps } from '@mikro-orm/core';
import { Entity, Index, PrimaryKey, Property, Unique } from '@mikro-orm/decorators/legacy';

/**
 * One event in the transactional outbox, written in the transaction of the mutation that
 * caused it, so it exists exactly when that mutation committed.
 */
@Entity({ tableName: 'outbox_events' })
@Unique({ name: 'outbox_events_id_unique', properties: ['id'] })
@Index({ name: 'outbox_events_xid_seq_index', properties: ['xid', 'seq'] })
@Index({ name: 'outbox_events_published_at_index', properties: ['publishedAt'] })
export class OutboxEvent {
  [OptionalProps]?: 'seq' | 'xid' | 'publishedAt';

  /** Insertion order; breaks ties between events of one transaction. */
  @PrimaryKey({ type: 'bigint', autoincrement: true })
  seq!: string;

  /** Derived from what caused the event (see event-id.ts), so a duplicate is recognisable downstream. */
  @Property({ type: 'uuid' })
  id!: string;

  @Property({ type: 'string', length: 64 })
  type!: string;

  @Property({ type: 'datetime' })
  occurredAt!: Date;

  @Property({ type: 'json' })
  data!: object;

  /**
   * The writing transaction's id, filled in by PostgreSQL: the feed exposes an event only once
   * every transaction with a smaller id has ended (feed.ts).
   */
  @Property({ columnType: 'xid8', type: 'string', defaultRaw: 'pg_current_xact_id()' })
  xid!: string;

  /** When the relay had JetStream's acknowledgement; null until then. */
  @Property({ type: 'datetime', nullable: true })
  publishedAt: Date | null = null;
}
