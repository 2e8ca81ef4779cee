export { orderCancelled, orderPlaced, productCreated } from './domain-events';
export { OutboxEvent } from './event.entity';
export { appendEvent, EventType, eventId, type NewEvent } from './outbox';
