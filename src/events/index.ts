export { orderCancelled, orderPlaced, productCreated } from './domain-events';
export { OutboxEvent } from './event.entity';
export { EventResolver } from './event.resolver';
export { eventCursor, readEvents, type StoredEvent } from './feed';
export { appendEvent, EventType, eventId, type NewEvent } from './outbox';
