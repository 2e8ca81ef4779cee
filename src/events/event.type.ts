import { GraphQLJSON } from 'graphql-scalars';
import { Field, ID, ObjectType } from 'type-graphql';
import type { StoredEvent } from './feed';

@ObjectType('Event', { description: 'Something that happened, read from the outbox in commit order.' })
export class FeedEvent {
  @Field(() => ID, { description: 'Stable id derived from the event type and its subject: a duplicate has the same id.' })
  id!: string;

  @Field({ description: 'OrderPlaced, OrderCancelled or ProductCreated (docs/events.md).' })
  type!: string;

  @Field({ description: 'When it happened.' })
  occurredAt!: Date;

  @Field(() => GraphQLJSON, { description: 'The facts of the event: orderId or productId and what a consumer needs.' })
  data!: Record<string, unknown>;
}

/** The GraphQL view of a stored event. */
export function toEventView(event: StoredEvent): FeedEvent {
  return { id: event.id, type: event.type, occurredAt: event.occurredAt, data: event.data };
}
